package netwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	mdnetlink "github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/xdpfeat"
)

// Events are coalescing "something changed" signals from the kernel; each
// consumer rereads what it needs, so a burst of changes costs one pass.
type Events struct {
	Links  chan struct{} // links, XDP features, qdiscs: reconcile interfaces
	FIB    chan struct{} // neighbours, addresses, rules, netconf: re-route flows
	Rules  chan struct{} // nftables ruleset, IPsec policies: flows must be accepted again
	Addrs  chan struct{} // addresses, links: the host's own addresses may have changed
	Routes *Routes       // routes: re-route flows, mirror route MTUs (off the main loop)
	stats  *watchStats
}

// Overruns counts, by watch, the times it lost messages (ENOBUFS), route
// MTUs included.
func (ev *Events) Overruns() map[string]uint64 {
	out := ev.stats.snapshot()
	out["route_mtus"] = ev.Routes.mtus.Stats().Overruns
	return out
}

// watchStats counts netlink overruns (ENOBUFS: the kernel outpaced a
// watch and dropped messages) by watch, for metrics; each is followed by
// a resync, and logged at most once a minute per watch.
type watchStats struct {
	mu       sync.Mutex
	overruns map[string]uint64
	logged   map[string]time.Time
}

// watchNames are the watches' names in logs and the metric's watch label,
// listed so every series exists from the start. (The route MTU watch
// counts its own, as route_mtus.)
var watchNames = []string{"links", "neighbours", "addresses", "rules", "qdiscs", "nftables", "xfrm"}

func newWatchStats() *watchStats {
	s := &watchStats{overruns: map[string]uint64{}, logged: map[string]time.Time{}}
	for _, w := range watchNames {
		s.overruns[w] = 0
	}
	return s
}

// failed records a receive error of watch what; it logs each kind (ENOBUFS,
// with the count so far, or any other error) at most once a minute.
func (s *watchStats) failed(log *slog.Logger, what string, err error) {
	overrun, key := isOverrun(err), what
	if !overrun {
		key += " error"
	}
	s.mu.Lock()
	if overrun {
		s.overruns[what]++
	}
	n, quiet := s.overruns[what], time.Since(s.logged[key]) >= overrunLogEvery
	if quiet {
		s.logged[key] = time.Now()
	}
	s.mu.Unlock()
	switch {
	case !quiet:
	case overrun:
		log.Warn("kernel watch overran: resyncing", "what", what, "overruns", n)
	default:
		log.Warn("kernel watch", "what", what, "err", err)
	}
}

// isOverrun: vishvananda/netlink reports receive errors as text only.
func isOverrun(err error) bool {
	return errors.Is(err, unix.ENOBUFS) || strings.Contains(err.Error(), unix.ENOBUFS.Error())
}

// snapshot returns the overrun counts by watch.
func (s *watchStats) snapshot() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.overruns))
	for k, v := range s.overruns {
		out[k] = v
	}
	return out
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

// follow keeps one netlink subscription alive, handing each update to got.
// The first subscription is made before follow returns, so nothing between
// it and the caller's first read of the kernel state is missed. The
// library closes the channel after a receive error (ENOBUFS when the
// kernel outpaces us, e.g. a full BGP table load): follow then calls lost,
// since updates may have been lost, and subscribes again in the
// background (lost again after each failed attempt). got, lost and
// subscribe, after the first, run on one goroutine.
func follow[T any](ctx context.Context, log *slog.Logger, stats *watchStats, what string, subscribe subscribeFunc[T], got func(T), lost func()) error {
	onErr := func(err error) {
		if ctx.Err() == nil {
			stats.failed(log, what, err)
		}
	}
	// start subscribes; end releases the subscription's socket (once).
	start := func() (ch chan T, end func(), err error) {
		ch, done := make(chan T, 256), make(chan struct{})
		if err := subscribe(ch, done, onErr); err != nil {
			close(done)
			return nil, nil, fmt.Errorf("watch %s: %w", what, err)
		}
		stop := context.AfterFunc(ctx, func() { close(done) })
		return ch, func() {
			if stop() {
				close(done)
			}
		}, nil
	}
	ch, end, err := start()
	if err != nil {
		return err
	}
	go func() {
		for ctx.Err() == nil {
			if ch != nil {
				for u := range ch {
					got(u)
				}
				end()
			}
			lost()
			t := time.NewTimer(resubscribeAfter)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			var err error
			if ch, end, err = start(); err != nil {
				log.Warn("kernel watch", "err", err) // ch is nil: retried after the next interval
			}
		}
	}()
	return nil
}

// Watch subscribes to everything the datapath's view depends on. The
// subscriptions are made before it returns, so nothing between them and the
// caller's first read of the kernel's state is missed.
func Watch(ctx context.Context, log *slog.Logger) (*Events, error) {
	ev := &Events{Links: make(chan struct{}, 1), FIB: make(chan struct{}, 1), Addrs: make(chan struct{}, 1),
		Rules: make(chan struct{}, 1), stats: newWatchStats()}
	feats, err := xdpfeat.Watch(ctx)
	if err != nil {
		return nil, err
	}
	if err := watchRuleset(ctx, log, ev.stats, ev.Rules); err != nil {
		return nil, err
	}
	if err := watchXfrm(ctx, log, ev.stats, ev.Rules); err != nil {
		return nil, err
	}
	if err := watchRtnl(ctx, log, ev.stats, "rules", routingGroups, ev.FIB); err != nil {
		return nil, err
	}
	if err := watchRtnl(ctx, log, ev.stats, "qdiscs", tcGroups, ev.Links); err != nil {
		return nil, err
	}
	// Routes are not followed with the library's subscription: it parses
	// every message, a million of them while a BGP table loads.
	if ev.Routes, err = watchRoutes(ctx, log); err != nil {
		return nil, err
	}
	linksChanged := func() { poke(ev.Links); poke(ev.FIB); poke(ev.Addrs); ev.Routes.linksChanged() }
	addrsChanged := func() { poke(ev.FIB); poke(ev.Addrs); ev.Routes.linksChanged() }
	if err := errors.Join(
		follow(ctx, log, ev.stats, "links", func(ch chan netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error {
			return netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{ErrorCallback: onErr})
		}, func(netlink.LinkUpdate) { linksChanged() }, linksChanged),
		watchNeighbours(ctx, log, ev.stats, netlink.NeighList, func(_ *netlink.NeighUpdate, matters bool) {
			if matters {
				poke(ev.FIB)
			}
		}),
		follow(ctx, log, ev.stats, "addresses", func(ch chan netlink.AddrUpdate, done <-chan struct{}, onErr func(error)) error {
			return netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{ErrorCallback: onErr})
		}, func(netlink.AddrUpdate) { addrsChanged() }, addrsChanged),
	); err != nil {
		return nil, err
	}
	go func() {
		for range feats { // closed on a socket error: the periodic resync covers features then
			poke(ev.Links)
		}
	}()
	return ev, nil
}

// watchRuleset signals every nftables ruleset change (iptables-nft
// included; iptables-legacy sends no events, see docs/offload.md).
func watchRuleset(ctx context.Context, log *slog.Logger, stats *watchStats, out chan struct{}) error {
	c, err := netfilter.Dial(nil)
	if err != nil {
		return err
	}
	if err := c.JoinGroups([]netfilter.NetlinkGroup{netfilter.GroupNFTables}); err != nil {
		c.Close()
		return err
	}
	listen(ctx, log, stats, "nftables", func() error { _, err := c.Receive(); return err }, c.Close, out)
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
func watchRtnl(ctx context.Context, log *slog.Logger, stats *watchStats, what string, groups []uint32, out chan struct{}) error {
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
	listen(ctx, log, stats, what, func() error { _, err := c.Receive(); return err }, c.Close, out)
	return nil
}

// listen pokes out for every read and for every error (ENOBUFS: messages
// were lost, so assume a change), until ctx ends, which closes the socket.
func listen(ctx context.Context, log *slog.Logger, stats *watchStats, what string, read func() error, closeFn func() error, out chan struct{}) {
	context.AfterFunc(ctx, func() { closeFn() }) // ends a read in progress
	go Receive(ctx, func() (struct{}, error) { return struct{}{}, read() },
		func(struct{}) bool { poke(out); return true },
		func(err error) bool {
			stats.failed(log, what, err)
			poke(out) // the periodic resync covers what is missed meanwhile
			return true
		})
}
