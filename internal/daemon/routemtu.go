package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/fastpath-router/fastpath/internal/datapath"
	"github.com/fastpath-router/fastpath/internal/netwatch"
)

// routeChangeEvery bounds how often a stream of route changes (a BGP table
// loading, churn) bumps the route generation: the first change of a burst
// bumps it at once, later ones within this interval wait for its end, well
// inside the 100 ms a route change may take to reach offloaded flows.
const routeChangeEvery = 20 * time.Millisecond

// routes follows the kernel's routes for the datapath, on goroutines of
// its own so that neither waits on the main loop: every change makes
// cached flows look up their route again (the route generation), and the
// routes that carry an MTU metric are mirrored (datapath.SetRouteMTUs).
// Neither reads the routes themselves: a million routes loading cost the
// daemon a few wakeups, not a million messages (see docs/scale.md).
type routes struct {
	log  *slog.Logger
	mtus *netwatch.RouteMTUWatch
}

// watchRoutes subscribes to the route MTUs: events from now on queue
// until start. The sockets close when ctx ends, started or not.
func watchRoutes(ctx context.Context, log *slog.Logger) (*routes, error) {
	mtus, err := netwatch.WatchRouteMTUs(log)
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, mtus.Close)
	return &routes{log: log, mtus: mtus}, nil
}

// routeSink is what routes changes in the datapath (a fake in tests).
type routeSink interface {
	SetRouteMTUs(map[netip.Prefix]int) error
	InvalidateRoutes() error
}

var _ routeSink = (*datapath.Datapath)(nil)

// start mirrors the route MTUs (one dump, now), then keeps dp current
// until ctx ends. It runs before anything is attached, so route changes
// before it need no generation bump.
func (rt *routes) start(ctx context.Context, dp routeSink) error {
	if err := rt.mtus.Start(ctx, dp.SetRouteMTUs); err != nil {
		return err
	}
	return netwatch.WatchRouteChanges(ctx, rt.log, routeChangeEvery, func() {
		invalidate(rt.log, "routes", dp.InvalidateRoutes)
	})
}

// linksChanged: the kernel may have removed IPv4 routes without an event.
func (rt *routes) linksChanged() { rt.mtus.LinksChanged() }
