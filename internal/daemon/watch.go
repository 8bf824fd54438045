package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	mdnetlink "github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/xdpfeat"
)

// events are coalescing "something changed" signals from the kernel; each
// consumer rereads what it needs, so a burst of changes costs one pass.
type events struct {
	links  chan struct{} // links, XDP features, qdiscs: reconcile interfaces
	routes chan struct{} // routes: re-route flows, mirror route MTUs
	fib    chan struct{} // neighbours, addresses, rules, netconf: re-route flows
	rules  chan struct{} // nftables ruleset: flows must be accepted again
}

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default: // already pending: that pass will see this change too
	}
}

// resubscribeAfter spaces out attempts to re-establish a failed
// subscription; meanwhile the periodic resync covers what it would say.
const resubscribeAfter = time.Second

// subscribeFunc starts one netlink subscription into ch until done closes.
type subscribeFunc[T any] func(ch chan T, done <-chan struct{}, onErr func(error)) error

// follow keeps one netlink subscription alive. The first subscription is
// made before follow returns, so nothing between it and the caller's first
// read of the kernel state is missed. The library closes the channel after
// a receive error (ENOBUFS when the kernel outpaces us, e.g. a full BGP
// table load): follow then subscribes again, in the background, signalling
// a change each time, since updates may have been lost.
func follow[T any](ctx context.Context, log *slog.Logger, what string, subscribe subscribeFunc[T], changed func()) error {
	onErr := func(err error) {
		if ctx.Err() == nil {
			log.Warn("kernel watch", "what", what, "err", err)
		}
	}
	start := func() (chan T, chan struct{}, error) {
		ch, done := make(chan T, 256), make(chan struct{})
		if err := subscribe(ch, done, onErr); err != nil {
			close(done)
			return nil, nil, fmt.Errorf("watch %s: %w", what, err)
		}
		context.AfterFunc(ctx, func() { close(done) })
		return ch, done, nil
	}
	ch, _, err := start()
	if err != nil {
		return err
	}
	go func() {
		for ctx.Err() == nil {
			if ch != nil {
				for range ch {
					changed()
				}
			}
			changed()
			t := time.NewTimer(resubscribeAfter)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			var err error
			if ch, _, err = start(); err != nil {
				log.Warn("kernel watch", "err", err) // ch is nil: retried after the next interval
			}
		}
	}()
	return nil
}

// watch subscribes to everything the datapath's view depends on.
func watch(ctx context.Context, log *slog.Logger) (*events, error) {
	ev := &events{links: make(chan struct{}, 1), routes: make(chan struct{}, 1),
		fib: make(chan struct{}, 1), rules: make(chan struct{}, 1)}
	feats, err := xdpfeat.Watch(ctx)
	if err != nil {
		return nil, err
	}
	if err := watchRuleset(ctx, log, ev.rules); err != nil {
		return nil, err
	}
	if err := watchRtnl(ctx, log, "rule and netconf events", routingGroups, ev.fib); err != nil {
		return nil, err
	}
	if err := watchRtnl(ctx, log, "qdisc and filter events", tcGroups, ev.links); err != nil {
		return nil, err
	}
	if err := errors.Join(
		follow(ctx, log, "links", func(ch chan netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error {
			return netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{ErrorCallback: onErr})
		}, func() { poke(ev.links); poke(ev.fib) }),
		follow(ctx, log, "routes", func(ch chan netlink.RouteUpdate, done <-chan struct{}, onErr func(error)) error {
			return netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{ErrorCallback: onErr})
		}, func() { poke(ev.routes) }),
		follow(ctx, log, "neighbours", func(ch chan netlink.NeighUpdate, done <-chan struct{}, onErr func(error)) error {
			return netlink.NeighSubscribeWithOptions(ch, done, netlink.NeighSubscribeOptions{ErrorCallback: onErr})
		}, func() { poke(ev.fib) }),
		follow(ctx, log, "addresses", func(ch chan netlink.AddrUpdate, done <-chan struct{}, onErr func(error)) error {
			return netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{ErrorCallback: onErr})
		}, func() { poke(ev.fib) }),
	); err != nil {
		return nil, err
	}
	go func() {
		for range feats { // closed on a socket error: the periodic resync covers features then
			poke(ev.links)
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
	listen(ctx, log, "nftables events", func() error { _, err := c.Receive(); return err }, c.Close, out)
	return nil
}

// Rtnetlink groups the library has no subscription for. routingGroups
// change how the kernel routes without a route, neighbour or address
// event: policy routing rules and the per-device configuration
// (forwarding on or off). tcGroups are qdisc and filter changes: an egress
// the operator shapes takes no XDP frames.
var (
	routingGroups = []uint32{unix.RTNLGRP_IPV4_RULE, unix.RTNLGRP_IPV6_RULE, unix.RTNLGRP_IPV4_NETCONF, unix.RTNLGRP_IPV6_NETCONF}
	tcGroups      = []uint32{unix.RTNLGRP_TC}
)

// watchRtnl signals every message of the rtnetlink groups.
func watchRtnl(ctx context.Context, log *slog.Logger, what string, groups []uint32, out chan struct{}) error {
	c, err := mdnetlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return fmt.Errorf("rtnetlink: %w", err)
	}
	for _, g := range groups {
		if err := c.JoinGroup(g); err != nil {
			c.Close()
			return fmt.Errorf("join rtnetlink group %d: %w", g, err)
		}
	}
	listen(ctx, log, what, func() error { _, err := c.Receive(); return err }, c.Close, out)
	return nil
}

// backOff waits a moment after a receive error, so that an error that
// repeats does not spin; false if ctx ended meanwhile.
func backOff(ctx context.Context) bool {
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// listen pokes out for every message receive returns, and for every error
// (ENOBUFS: messages were lost, so assume a change), until ctx ends.
func listen(ctx context.Context, log *slog.Logger, what string, receive func() error, closeFn func() error, out chan struct{}) {
	go func() {
		<-ctx.Done()
		closeFn() // unblocks receive
	}()
	go func() {
		for {
			if err := receive(); err != nil {
				if ctx.Err() != nil {
					return
				}
				log.Warn(what, "err", err)
				poke(out)
				// The periodic resync covers what is missed meanwhile.
				if !backOff(ctx) {
					return
				}
				continue
			}
			poke(out)
		}
	}()
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
