package netwatch

import (
	"context"
	"log/slog"
	"net/netip"
	"time"
)

// routeChangeEvery bounds how often a stream of route changes (a BGP table
// loading, churn) bumps the route generation: the first change of a burst
// bumps it at once, later ones within this interval wait for its end, well
// inside the 100 ms a route change may take to reach offloaded flows.
const routeChangeEvery = 20 * time.Millisecond

// Routes follows the kernel's routes for the datapath, on goroutines of
// its own so that neither waits on the main loop: every change makes
// cached flows look up their route again (the route generation), and the
// routes that carry an MTU metric are mirrored (datapath.SetRouteMTUs).
// Neither reads the routes themselves: a million routes loading cost the
// daemon a few wakeups, not a million messages (see docs/scale.md).
type Routes struct {
	ctx  context.Context // the watches' lifetime: its end closes their sockets
	log  *slog.Logger
	mtus *RouteMTUWatch
}

// watchRoutes subscribes to the route MTUs: events from now on queue
// until Start. The sockets close when ctx ends, started or not.
func watchRoutes(ctx context.Context, log *slog.Logger) (*Routes, error) {
	mtus, err := WatchRouteMTUs(ctx, log)
	if err != nil {
		return nil, err
	}
	return &Routes{ctx: ctx, log: log, mtus: mtus}, nil
}

// RouteSink is what Routes changes in the datapath (*datapath.Datapath; a
// fake in tests).
type RouteSink interface {
	SetRouteMTUs(map[netip.Prefix]int) error
	InvalidateRoutes() error
}

// Start mirrors the route MTUs (one dump, now), then keeps dp current
// until the context Watch was given ends. It runs before anything is
// attached, so route changes before it need no generation bump.
func (rt *Routes) Start(dp RouteSink) error {
	if err := rt.mtus.Start(dp.SetRouteMTUs); err != nil {
		return err
	}
	return WatchRouteChanges(rt.ctx, rt.log, routeChangeEvery, func() {
		if err := dp.InvalidateRoutes(); err != nil {
			rt.log.Error("invalidate cached flows", "what", "routes", "err", err)
		}
	})
}

// MTUStats are the route MTU mirror's counters, for metrics.
func (rt *Routes) MTUStats() RouteMTUStats { return rt.mtus.Stats() }

// linksChanged: the kernel may have removed IPv4 routes without an event.
func (rt *Routes) linksChanged() { rt.mtus.LinksChanged() }
