// Package netwatch follows kernel routing state the datapath needs: the
// route MTU metrics it mirrors, and the signal that routes changed.
package netwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

const (
	// mtuReadBuffer is the receive buffer of the filtered MTU socket: it
	// holds only routes with metrics and replaces, yet a burst of those
	// (a full table replaced) must not overrun it easily.
	mtuReadBuffer = 4 << 20
	// resyncSpacing keeps resyncs after overruns at most this frequent: a
	// full dump of a BGP table costs the kernel and us a fraction of a
	// second.
	resyncSpacing = time.Second
	dumpRetries   = 5
)

// Resync reasons, as counted by RouteMTUStats.
const (
	ResyncOverrun = "overrun" // the MTU socket lost messages
	ResyncLinks   = "links"   // a link or address changed while IPv4 MTU routes exist
)

// RouteMTUStats counts what the watch did, for metrics.
type RouteMTUStats struct {
	Routes   int               // routes with an MTU metric mirrored now
	Overruns uint64            // ENOBUFS on the MTU socket
	Resyncs  map[string]uint64 // full dumps after start, by reason
}

// RouteMTUWatch keeps the routes that carry an MTU metric (all tables,
// IPv4 and IPv6) from the kernel's route events, and hands the datapath's
// view (MTU by prefix, see mirror.prefixes) to a setter when it changes.
//
// The kernel filters the events (mtuFilter), so a table of a million
// routes without MTUs costs one dump at start and nothing after. The set
// is dumped again only after the socket overran, and, if IPv4 MTU routes
// are mirrored, after link or address changes (the kernel removes IPv4
// routes of a device going down without telling).
//
// The sockets have one owner, the context given to WatchRouteMTUs: its end
// closes them, started or not, and ends the goroutines Start runs. Until
// Start the dump socket is Start's; after it, the resync loop's alone.
type RouteMTUWatch struct {
	ctx  context.Context // the watch's lifetime
	conn *netlink.Conn   // events, filtered
	dump *netlink.Conn   // dumps; opened with conn, so in the same namespace
	log  *slog.Logger
	poke chan struct{} // links or addresses changed

	routes        atomic.Int64
	overruns      atomic.Uint64
	resyncOverrun atomic.Uint64
	resyncLinks   atomic.Uint64
}

// WatchRouteMTUs subscribes to route events in the calling thread's network
// namespace. Nothing is read until Start: events from now on queue, so a
// change between this call and Start's dump is not missed. The watch's
// sockets close when ctx ends, and only then.
func WatchRouteMTUs(ctx context.Context, log *slog.Logger) (*RouteMTUWatch, error) {
	return watchRouteMTUs(ctx, log, mtuReadBuffer)
}

func watchRouteMTUs(ctx context.Context, log *slog.Logger, rcvbuf int) (*RouteMTUWatch, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, err := dialRoutes(rcvbuf)
	if err != nil {
		return nil, err
	}
	filter, err := mtuFilter()
	if err == nil {
		err = c.SetBPF(filter)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("route mtu filter: %w", err)
	}
	d, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{MessageBufferSize: 64 << 10})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("rtnetlink: %w", err)
	}
	w := &RouteMTUWatch{ctx: ctx, conn: c, dump: d, log: log, poke: make(chan struct{}, 1)}
	context.AfterFunc(ctx, func() { c.Close(); d.Close() }) // ends a read or dump in progress
	return w, nil
}

// dialRoutes opens an rtnetlink socket in the IPv4 and IPv6 route groups
// (and any extra groups) with the given receive buffer (forced past
// rmem_max when root).
func dialRoutes(rcvbuf int, extra ...uint32) (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return nil, fmt.Errorf("rtnetlink: %w", err)
	}
	fail := func(err error) (*netlink.Conn, error) {
		c.Close()
		return nil, err
	}
	if err := setRcvbuf(c, rcvbuf); err != nil {
		return fail(fmt.Errorf("rtnetlink receive buffer: %w", err))
	}
	for _, g := range append([]uint32{unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV6_ROUTE}, extra...) {
		if err := c.JoinGroup(g); err != nil {
			return fail(fmt.Errorf("join rtnetlink group %d: %w", g, err))
		}
	}
	return c, nil
}

func setRcvbuf(c *netlink.Conn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
		if errors.Is(serr, unix.EPERM) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n)
		}
	}); err != nil {
		return err
	}
	return serr
}

// LinksChanged tells the watch a link or address changed; it never blocks.
func (w *RouteMTUWatch) LinksChanged() {
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

// Stats returns the counters; safe from any goroutine.
func (w *RouteMTUWatch) Stats() RouteMTUStats {
	return RouteMTUStats{
		Routes:   int(w.routes.Load()),
		Overruns: w.overruns.Load(),
		Resyncs:  map[string]uint64{ResyncOverrun: w.resyncOverrun.Load(), ResyncLinks: w.resyncLinks.Load()},
	}
}

// batch is what the reader hands the loop: route messages of one receive,
// or an overrun.
type batch struct {
	msgs    []routeMsg
	overrun bool
}

// Start dumps the MTU routes, hands them to set, and then follows events on
// goroutines of its own until the watch's context ends. set is called from
// one of them only, after every change; an error is logged and the full
// set handed again after the next change. Start is called once; if the
// watch's context ends first, or meanwhile, it returns the context's error.
func (w *RouteMTUWatch) Start(set func(map[netip.Prefix]int) error) error {
	ctx := w.ctx
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("stopped: %w", err)
	}
	m := newMirror()
	err := dumpInto(w.dump, m)
	if err != nil && ctx.Err() != nil { // the socket closed under the dump
		err = fmt.Errorf("stopped: %w", ctx.Err())
	}
	if err == nil {
		w.routes.Store(int64(len(m.routes)))
		err = set(m.prefixes())
	}
	if err != nil {
		return err
	}
	batches := make(chan batch, 64)
	go w.read(ctx, batches)
	go w.loop(ctx, m, batches, set)
	return nil
}

// read decodes what the filtered socket delivers, until ctx ends. An error
// is an overrun to the loop: what the lost messages said is unknown.
func (w *RouteMTUWatch) read(ctx context.Context, out chan<- batch) {
	defer close(out)
	send := func(b batch) bool {
		select {
		case out <- b:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var quiet logLimit
	Receive(ctx, w.conn.Receive, func(msgs []netlink.Message) bool {
		var b batch
		for _, nm := range msgs {
			if r, ok := decodeRoute(uint16(nm.Header.Type), uint16(nm.Header.Flags), nm.Data); ok {
				b.msgs = append(b.msgs, r)
			}
		}
		return len(b.msgs) == 0 || send(b)
	}, func(err error) bool {
		if !isOverrun(err) && quiet.allow() {
			w.log.Warn("route mtu watch", "err", err)
		}
		return send(batch{overrun: true})
	})
}

func (w *RouteMTUWatch) loop(ctx context.Context, m *mirror, in <-chan batch, set func(map[netip.Prefix]int) error) {
	var (
		pending string    // a resync is due, for this reason
		last    time.Time // of the last resync
		timer   *time.Timer
		tick    <-chan time.Time
		quiet   logLimit
		failed  bool // the last set failed: hand the set again
	)
	push := func() {
		w.routes.Store(int64(len(m.routes)))
		if err := set(m.prefixes()); err != nil {
			w.log.Warn("route mtus", "err", err)
			failed = true
			return
		}
		failed = false
	}
	due := func(reason string) {
		if pending == "" || reason == ResyncOverrun {
			pending = reason
		}
		if timer == nil {
			timer = time.NewTimer(max(0, time.Until(last.Add(resyncSpacing))))
			tick = timer.C
		}
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case b, ok := <-in:
			if !ok {
				return
			}
			if b.overrun {
				n := w.overruns.Add(1)
				if quiet.allow() {
					w.log.Warn("route events overran the socket: resyncing route mtus", "overruns", n)
				}
				due(ResyncOverrun)
				continue
			}
			changed := false
			for _, r := range b.msgs {
				changed = m.apply(r) || changed
			}
			if changed || failed {
				push()
			}
		case <-w.poke:
			if m.has4() {
				due(ResyncLinks)
			}
		case <-tick:
			timer, tick = nil, nil
			last = time.Now()
			// Events queued meanwhile are applied after the dump: each
			// states its route in full, so replaying them on top of the
			// dump ends where the kernel is.
			fresh := newMirror()
			if err := dumpInto(w.dump, fresh); err != nil {
				if ctx.Err() != nil {
					return // the socket closed under the dump
				}
				w.log.Warn("route mtus resync", "err", err)
				due(pending)
				continue
			}
			if pending == ResyncOverrun {
				w.resyncOverrun.Add(1)
			} else {
				w.resyncLinks.Add(1)
			}
			pending = ""
			m = fresh
			push()
		}
	}
}

// dumpInto reads every route (all tables, IPv4 and IPv6) once, keeping the
// ones with an MTU. A dump of a full table streams through a small buffer;
// only routes with an MTU are kept.
func dumpInto(c *netlink.Conn, m *mirror) error {
	for _, family := range []byte{unix.AF_INET, unix.AF_INET6} {
		var err error
		for range dumpRetries { // a dump interrupted by concurrent changes is retried
			if err = dumpFamily(c, family, m); !errors.Is(err, errDumpInterrupted) {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("list routes: %w", err)
		}
	}
	return nil
}

var errDumpInterrupted = errors.New("route dump interrupted by concurrent changes")

func dumpFamily(c *netlink.Conn, family byte, m *mirror) error {
	for k := range m.routes {
		if (family == unix.AF_INET) == k.dst.Addr().Is4() {
			delete(m.routes, k)
		}
	}
	req := netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETROUTE, Flags: netlink.Request | netlink.Dump},
		Data:   make([]byte, rtmsgLen),
	}
	req.Data[0] = family
	if _, err := c.Send(req); err != nil {
		return err
	}
	intr := false
	for nm, err := range c.ReceiveIter() {
		if err != nil {
			return err
		}
		if nm.Header.Flags&netlink.DumpInterrupted != 0 {
			intr = true
		}
		if r, ok := decodeRoute(uint16(nm.Header.Type), uint16(nm.Header.Flags), nm.Data); ok && r.mtu > 0 {
			m.apply(r)
		}
	}
	if intr {
		return errDumpInterrupted
	}
	return nil
}

// RouteMTUs dumps the routes with an MTU metric of the calling thread's
// network namespace, by prefix (the lowest MTU where routes disagree).
func RouteMTUs() (map[netip.Prefix]int, error) {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{MessageBufferSize: 64 << 10})
	if err != nil {
		return nil, fmt.Errorf("rtnetlink: %w", err)
	}
	defer c.Close()
	m := newMirror()
	if err := dumpInto(c, m); err != nil {
		return nil, err
	}
	return m.prefixes(), nil
}
