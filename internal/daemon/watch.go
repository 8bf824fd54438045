package daemon

import (
	"context"
	"log/slog"
	"net"
	"os"

	"github.com/ti-mo/netfilter"
	"github.com/vishvananda/netlink"

	"github.com/fastpath-router/fastpath/internal/xdpfeat"
)

// events are coalescing "something changed" signals from the kernel; each
// consumer rereads what it needs, so a burst of changes costs one pass.
type events struct {
	links chan struct{} // links or XDP features: reconcile interfaces
	fib   chan struct{} // routes, neighbours, addresses, links: re-route flows
	rules chan struct{} // nftables ruleset: flows must be accepted again
}

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default: // already pending: that pass will see this change too
	}
}

// watch subscribes to everything the datapath's view depends on. On a
// subscription error it signals a change, so the consumer resynchronises;
// the periodic resync covers anything lost.
func watch(ctx context.Context, log *slog.Logger) (*events, error) {
	ev := &events{links: make(chan struct{}, 1), fib: make(chan struct{}, 1), rules: make(chan struct{}, 1)}
	onErr := func(what string) func(error) {
		return func(err error) {
			if ctx.Err() == nil { // closing the sockets at shutdown is no news
				log.Warn("kernel watch", "what", what, "err", err)
				poke(ev.links)
				poke(ev.fib)
			}
		}
	}
	links := make(chan netlink.LinkUpdate, 256)
	if err := netlink.LinkSubscribeWithOptions(links, ctx.Done(), netlink.LinkSubscribeOptions{ErrorCallback: onErr("links")}); err != nil {
		return nil, err
	}
	routes := make(chan netlink.RouteUpdate, 256)
	if err := netlink.RouteSubscribeWithOptions(routes, ctx.Done(), netlink.RouteSubscribeOptions{ErrorCallback: onErr("routes")}); err != nil {
		return nil, err
	}
	neighs := make(chan netlink.NeighUpdate, 256)
	if err := netlink.NeighSubscribeWithOptions(neighs, ctx.Done(), netlink.NeighSubscribeOptions{ErrorCallback: onErr("neighbours")}); err != nil {
		return nil, err
	}
	addrs := make(chan netlink.AddrUpdate, 256)
	if err := netlink.AddrSubscribeWithOptions(addrs, ctx.Done(), netlink.AddrSubscribeOptions{ErrorCallback: onErr("addresses")}); err != nil {
		return nil, err
	}
	feats, err := xdpfeat.Watch(ctx)
	if err != nil {
		return nil, err
	}
	if err := watchRuleset(ctx, log, ev.rules); err != nil {
		return nil, err
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-links:
				poke(ev.links)
				poke(ev.fib)
			case _, ok := <-feats:
				if !ok {
					feats = nil // the periodic resync still covers feature changes
				}
				poke(ev.links)
			case <-routes:
				poke(ev.fib)
			case <-neighs:
				poke(ev.fib)
			case <-addrs:
				poke(ev.fib)
			}
		}
	}()
	return ev, nil
}

// watchRuleset signals every nftables ruleset change (iptables-nft
// included; iptables-legacy sends no events, see docs/offload.md).
func watchRuleset(ctx context.Context, log *slog.Logger, out chan struct{}) error {
	c, err := netfilter.Dial(nil)
	if err != nil {
		return err
	}
	if err := c.JoinGroups([]netfilter.NetlinkGroup{netfilter.GroupNFTables}); err != nil {
		c.Close()
		return err
	}
	go func() {
		<-ctx.Done()
		c.Close() // unblocks Receive
	}()
	go func() {
		for {
			if _, err := c.Receive(); err != nil {
				if ctx.Err() != nil {
					return
				}
				log.Warn("nftables events", "err", err) // e.g. ENOBUFS: assume a change
			}
			poke(out)
		}
	}()
	return nil
}

// notifyReady tells systemd (Type=notify) that the daemon is serving.
func notifyReady(log *slog.Logger) {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return
	}
	c, err := net.Dial("unixgram", sock)
	if err != nil {
		log.Warn("sd_notify", "err", err)
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte("READY=1")); err != nil {
		log.Warn("sd_notify", "err", err)
	}
}
