// Package daemon runs fastpath in one network namespace: it holds the
// single-instance lock, loads the datapath, keeps the configured interfaces
// attached as links come and go, and serves the API.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/config"
	"github.com/fastpath-router/fastpath/internal/datapath"
	"github.com/fastpath-router/fastpath/internal/eventhub"
	"github.com/fastpath-router/fastpath/internal/guard"
	"github.com/fastpath-router/fastpath/internal/metrics"
	"github.com/fastpath-router/fastpath/internal/netwatch"
	"github.com/fastpath-router/fastpath/internal/vethpeer"
	"github.com/fastpath-router/fastpath/internal/xdpfeat"
)

// Options are the daemon's settings that do not come from the config file.
type Options struct {
	Logger     *slog.Logger
	ConfigPath string
	Version    string
	// KeepDatapath leaves programs attached and maps and links pinned
	// when the daemon exits, so a restart or upgrade does not interrupt
	// forwarding; `fastpath detach` removes them.
	KeepDatapath bool
}

// resyncEvery bounds how long a missed netlink event can leave the datapath
// out of step with the kernel.
const resyncEvery = 5 * time.Second

// ipv6MTUPoll is how often the interfaces' IPv6 MTUs are read: the kernel
// announces no change of net.ipv6.conf.IF.mtu (a sysctl write or a router
// advertisement's MTU option), and cached flows hold the MTU they were
// routed with. It bounds how long a lowered MTU takes to reach them.
const ipv6MTUPoll = 50 * time.Millisecond

// rulesetReadEvery spaces out reading the whole ruleset after ruleset
// events (a burst of set element updates is one read), for what in it
// changes without events (see revalidation).
const rulesetReadEvery = 250 * time.Millisecond

// lockName is an abstract unix socket: abstract names belong to a network
// namespace, so there is one per namespace, and the kernel frees it when the
// process dies, however it dies.
const lockName = "@fastpath-daemon-lock"

// ErrAlreadyRunning is returned when another daemon serves this namespace.
var ErrAlreadyRunning = errors.New("another fastpath daemon is already running in this network namespace")

// Run runs the daemon until ctx ends, then detaches everything it attached
// (unless opts.KeepDatapath). It returns an error, with nothing left
// attached, if the configuration cannot be applied in full at start. A
// datapath pinned by a previous daemon in this namespace is adopted without
// a gap in forwarding.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lock, err := takeLock()
	if err != nil {
		return err
	}
	defer lock.Close()

	netns, _ := os.Readlink("/proc/self/ns/net") // informational only
	b := &backend{status: api.Status{
		Version: opts.Version, PID: os.Getpid(), NetNS: netns,
		ConfigFile: opts.ConfigPath, StartedAt: time.Now().UTC(),
	}}
	// Take the socket before attaching anything, so a busy socket fails the
	// start with nothing changed.
	srv := api.NewServer(b, log)
	ln, err := srv.Listen(cfg.API.Socket)
	if err != nil {
		return err
	}
	defer ln.Close()
	var ml net.Listener // likewise the metrics port
	if cfg.Metrics.Listen != "" {
		if ml, err = metrics.Listen(cfg.Metrics.Listen); err != nil {
			return err
		}
		defer ml.Close()
	}

	// The guard's list files are read before anything changes: a bad line
	// fails the start with nothing attached.
	gplan, err := planGuard(cfg)
	if err != nil {
		return err
	}

	pinDir, err := pinDirFor(opts.KeepDatapath, log)
	if err != nil {
		return err
	}
	dp, err := datapath.Load(datapath.Options{FlowEntries: cfg.Flows.Entries(), PinDir: pinDir})
	if err != nil {
		return err
	}
	defer dp.Close()
	switch {
	case dp.Adopted():
		log.Info("adopting the datapath a previous daemon left", "pins", pinDir)
	case dp.Replaced():
		log.Info("replacing a pinned datapath of another layout (upgrade): flows re-offload, counters restart", "pins", pinDir)
	}
	feats, err := xdpfeat.Open()
	if err != nil {
		return err
	}
	defer feats.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Subscribe before the first reconcile, so no change between the two
	// is missed.
	ev, err := watch(ctx, log)
	if err != nil {
		return fmt.Errorf("watch kernel state: %w", err)
	}
	hub := eventhub.New(eventhub.DefaultRate, eventhub.DefaultBurst)
	b.events, b.watch = hub, ev
	r := newReconciler(cfg, dp, feats, vethpeer.NewFinder(), hub, log)
	b.r, b.dp = r, dp // set before any goroutine reads them; the API serves only later
	// The heartbeat and the verdict hook go in before any interface is
	// attached in offload mode: until then the datapath passes everything.
	// A reload (API goroutine) may start offload mode later: the main loop
	// reads it through an atomic pointer.
	var offp atomic.Pointer[offload]
	defer func() { offp.Load().close() }()
	startOff := func() error {
		if offp.Load() != nil {
			return nil
		}
		o, err := startOffload(ctx, dp, cfg.Flows.Idle(), hub, b.flowName, log)
		if err != nil {
			return fmt.Errorf("offload mode: %w", err)
		}
		offp.Store(o)
		return nil
	}
	if usesOffload(cfg) {
		if err := startOff(); err != nil {
			return err
		}
	}
	reval := &revalidation{set: dp.SetRevalidate, read: netwatch.EventlessRuleset, log: log}
	b.reval = reval
	setRevalidate := func(c *config.Config) error {
		return reval.configure(c.Flows.RevalidateEvery(), c.Flows.RevalidateAlways)
	}
	if err := setRevalidate(cfg); err != nil {
		return err
	}
	// The guard is in place before any interface is attached.
	gm := guard.NewManager(dp)
	if acts, err := applyGuard(dp, gm, gplan); err != nil {
		return fmt.Errorf("guard: %w", err)
	} else if len(acts) > 0 {
		log.Info("guard", "actions", strings.Join(acts, "; "))
	}
	b.guard = gm
	rl := &reloader{path: opts.ConfigPath, cfg: cfg, r: r, startOffload: startOff, setRevalidate: setRevalidate,
		applyGuard: func(p *guardPlan) ([]string, error) { return applyGuard(dp, gm, p) }}
	b.reload = rl.reload
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// A failed start leaves nothing behind, not even what a previous daemon
	// pinned: the kernel is the correct fallback.
	abandon := func(err error) error {
		r.detachAll()
		offp.Load().close()
		dp.Unpin()
		if pinDir != "" {
			if _, rerr := datapath.RemovePinned(pinDir); rerr != nil {
				log.Warn("remove the pinned datapath", "err", rerr)
			}
		}
		return err
	}
	// Route MTUs are mirrored before anything is attached.
	if err := ev.routes.start(ctx, dp); err != nil {
		return abandon(fmt.Errorf("route mtus: %w", err))
	}
	if err := r.start(); err != nil {
		return abandon(err)
	}
	if err := settlePins(dp, r, opts.KeepDatapath, log); err != nil {
		return abandon(err)
	}
	defer func() {
		if opts.KeepDatapath {
			log.Info("leaving the datapath attached and pinned for the next daemon", "pins", pinDir)
			r.release()
			return
		}
		r.detachAll()
	}()

	serveErr := make(chan error, 1)
	serveDone := make(chan struct{})
	go func() {
		defer close(serveDone)
		serveErr <- srv.ServeListener(ctx, ln)
	}()
	// Runs before the teardown: no API call (a reload) may act after it.
	defer func() { cancel(); <-serveDone }()
	if ml != nil {
		metricsDone := make(chan struct{})
		go func() {
			defer close(metricsDone)
			if err := metrics.Serve(ctx, ml, b, opts.Version, log); err != nil {
				log.Error("metrics server", "err", err)
			}
		}()
		defer func() { cancel(); <-metricsDone }()
	}
	log.Info("fastpath running", "interfaces", len(cfg.Interfaces), "socket", cfg.API.Socket, "netns", netns)
	notifyReady(log)
	wd := newSDWatchdog(log)
	wd.beat(time.Now())

	tick := time.NewTicker(resyncEvery)
	defer tick.Stop()
	beat := time.NewTicker(heartbeatEvery)
	defer beat.Stop()
	mtu6 := time.NewTicker(ipv6MTUPoll)
	defer mtu6.Stop()
	rulesRead := time.NewTicker(rulesetReadEvery)
	defer rulesRead.Stop()
	rulesDirty := false
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping")
			return nil
		case err := <-serveErr:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("api server: %w", err)
		case <-ev.links:
			r.sync()
		case <-ev.fib:
			invalidate(log, "neighbours or addresses", dp.InvalidateRoutes)
		case now := <-beat.C:
			if off := offp.Load(); off != nil {
				off.beat()
			}
			wd.beat(now)
		case <-ev.rules:
			invalidate(log, "ruleset", dp.InvalidateRuleset)
			r.sync() // chains bound to devices may have come or gone
			rulesDirty = true
		case <-rulesRead.C:
			if rulesDirty {
				rulesDirty = false
				if err := reval.refresh(); err != nil {
					log.Error("flow revalidation", "err", err)
				}
			}
		case <-hup:
			res, err := rl.reload(ctx)
			switch {
			case err != nil:
				log.Error("reload (SIGHUP): the running state is kept where it failed", "err", err)
			case res.Changed:
				log.Info("reloaded (SIGHUP)", "actions", strings.Join(res.Actions, "; "))
			default:
				log.Info("reloaded (SIGHUP): no change")
			}
		case <-mtu6.C:
			r.pollIPv6MTUs()
		case <-tick.C:
			r.sync()
			rulesDirty = true // iptables-legacy sends no events
			if off := offp.Load(); off != nil {
				off.resync()
			}
		}
	}
}

func invalidate(log *slog.Logger, what string, f func() error) {
	if err := f(); err != nil {
		log.Error("invalidate cached flows", "what", what, "err", err)
	}
}

func usesOffload(cfg *config.Config) bool {
	for _, ifc := range cfg.Interfaces {
		if ifc.Mode == config.ModeOffload {
			return true
		}
	}
	return false
}
