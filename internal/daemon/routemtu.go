package daemon

import (
	"context"
	"log/slog"
	"time"

	"github.com/fastpath-router/fastpath/internal/datapath"
	"github.com/fastpath-router/fastpath/internal/netwatch"
)

// routeMTUResync bounds how long a missed route event leaves the mirror of
// route MTU metrics stale.
const routeMTUResync = 30 * time.Second

// routeMTUSyncer mirrors route MTU metrics into the datapath (see
// datapath.SetRouteMTUs) off the main loop: a dump of a full BGP table
// takes seconds, which must not delay the heartbeat or invalidation.
// Requests coalesce: a burst of route events costs one dump.
type routeMTUSyncer struct {
	dp   *datapath.Datapath
	log  *slog.Logger
	poke chan struct{}
}

func newRouteMTUSyncer(dp *datapath.Datapath, log *slog.Logger) *routeMTUSyncer {
	return &routeMTUSyncer{dp: dp, log: log, poke: make(chan struct{}, 1)}
}

// sync runs one dump now, on the caller's goroutine (at start).
func (s *routeMTUSyncer) sync() {
	mtus, err := netwatch.RouteMTUs()
	if err == nil {
		err = s.dp.SetRouteMTUs(mtus)
	}
	if err != nil {
		s.log.Warn("route mtus", "err", err)
	}
}

// request asks for a dump soon; it never blocks.
func (s *routeMTUSyncer) request() { poke(s.poke) }

// run serves requests, and resyncs now and then, until ctx ends.
func (s *routeMTUSyncer) run(ctx context.Context) {
	t := time.NewTicker(routeMTUResync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.poke:
		case <-t.C:
		}
		s.sync()
	}
}
