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
	"syscall"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/config"
	"github.com/fastpath-router/fastpath/internal/datapath"
	"github.com/fastpath-router/fastpath/internal/eventhub"
	"github.com/fastpath-router/fastpath/internal/guard"
	"github.com/fastpath-router/fastpath/internal/metrics"
	"github.com/fastpath-router/fastpath/internal/netwatch"
	"github.com/fastpath-router/fastpath/internal/offload"
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
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := &daemon{cfg: cfg, opts: opts, log: opts.Logger, cancel: cancel}
	defer d.close()
	// SIGHUP from the start on: its default action would end the process
	// mid-start without any cleanup. One that comes during the start is
	// kept and reloads once the main loop runs.
	d.hup = make(chan os.Signal, 1)
	signal.Notify(d.hup, syscall.SIGHUP)
	defer signal.Stop(d.hup)
	if err := d.open(ctx); err != nil {
		return err
	}
	if err := d.start(ctx); err != nil {
		if ctx.Err() != nil { // the failure is the stop's doing (a socket closed under a read, say)
			err = fmt.Errorf("stopped by a signal during start: %w", err)
		}
		return d.abandon(err)
	}
	return d.loop(ctx)
}

// daemon is one run: what open acquired (each released by close, in
// reverse), what start attached, and the loop's state.
type daemon struct {
	cfg     *config.Config
	opts    Options
	log     *slog.Logger
	cancel  context.CancelFunc
	closers []func() // released by close, last first

	srv    *api.Server
	ln, ml net.Listener
	dash   *dash // the web dashboard, if configured
	gplan  *guardPlan
	dp     *datapath.Datapath
	feats  *xdpfeat.Querier
	ev     *netwatch.Events
	hub    *eventhub.Hub
	r      *reconciler
	b      *backend
	off    offloadState
	reval  *revalidation
	main   *mainLoop
	netns  string
	hup    chan os.Signal // SIGHUP, registered at Run's start
}

func (d *daemon) onClose(f func()) { d.closers = append(d.closers, f) }

func (d *daemon) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// open takes what a run needs before it changes anything: the lock, the API
// socket and metrics port (a busy one fails the start with nothing
// changed), the guard's list files, the datapath (adopting pins), the
// kernel watches (subscribed before the first reconcile, so no change in
// between is missed).
func (d *daemon) open(ctx context.Context) error {
	log, cfg := d.log, d.cfg
	lock, err := takeLock()
	if err != nil {
		return err
	}
	d.onClose(func() { lock.Close() })
	d.netns, _ = os.Readlink("/proc/self/ns/net") // informational only
	d.b = &backend{status: api.Status{
		Version: d.opts.Version, PID: os.Getpid(), NetNS: d.netns,
		ConfigFile: d.opts.ConfigPath, StartedAt: time.Now().UTC(),
	}}
	d.srv = api.NewServer(d.b, log)
	if d.ln, err = d.srv.Listen(cfg.API.Socket); err != nil {
		return err
	}
	d.onClose(func() { d.ln.Close() })
	if cfg.Metrics.Listen != "" {
		if d.ml, err = metrics.Listen(cfg.Metrics.Listen); err != nil {
			return err
		}
		d.onClose(func() { d.ml.Close() })
	}
	if d.dash, err = openDashboard(cfg.Dashboard, d.b, log); err != nil { // likewise its port
		return err
	}
	d.onClose(d.dash.close)
	// The guard's list files are read before anything changes: a bad line
	// fails the start with nothing attached.
	if d.gplan, err = planGuard(cfg); err != nil {
		return err
	}
	if d.dp, err = datapath.Open(datapath.OpenOptions{FlowEntries: cfg.Flows.Entries(), Keep: d.opts.KeepDatapath, Log: log}); err != nil {
		return err
	}
	d.onClose(func() { d.dp.Close() })
	if d.feats, err = xdpfeat.Open(); err != nil {
		return err
	}
	d.onClose(func() { d.feats.Close() })
	if d.ev, err = netwatch.Watch(ctx, log); err != nil {
		return fmt.Errorf("watch kernel state: %w", err)
	}
	d.hub = eventhub.New(eventhub.DefaultRate, eventhub.DefaultBurst)
	d.r = newReconciler(cfg, d.dp, d.feats, vethpeer.NewFinder(), d.hub, log)
	// Set before any goroutine reads them; the API serves only later.
	d.b.r, d.b.dp, d.b.events, d.b.watch = d.r, d.dp, d.hub, d.ev
	d.off = offloadState{start: func() (housekeeper, error) {
		m, err := offload.Start(ctx, offload.Options{DP: d.dp, Idle: cfg.Flows.Idle(), Log: log,
			OnEvent: d.publish, OnWatchdog: func(detail string) {
				d.hub.Publish(api.Event{Kind: api.EventWatchdog, Detail: detail})
			}})
		if err != nil {
			return nil, err
		}
		return m, nil
	}}
	d.onClose(d.off.close)
	return nil
}

// start makes the datapath what the config asks for: the verdict hook
// before any interface attaches in offload mode, revalidation, the guard,
// route MTUs, the heartbeat (until then the datapath passes everything),
// then every interface (all or nothing), then the pins settle.
func (d *daemon) start(ctx context.Context) error {
	log, cfg, dp := d.log, d.cfg, d.dp
	if usesOffload(cfg) {
		if err := d.off.ensure(); err != nil {
			return err
		}
	}
	d.reval = &revalidation{set: dp.SetRevalidate, read: netwatch.EventlessRuleset, log: log}
	d.b.reval = d.reval
	if err := d.setRevalidate(cfg); err != nil {
		return err
	}
	gm := guard.NewManager(dp)
	if acts, err := applyGuard(dp, gm, d.gplan); err != nil {
		return fmt.Errorf("guard: %w", err)
	} else if len(acts) > 0 {
		log.Info("guard", "actions", strings.Join(acts, "; "))
	}
	d.b.guard = gm
	// Offload started by a reload beats at once: its interfaces attach
	// next, and the main loop's next tick may be a second away.
	startOffload := func() error {
		if err := d.off.ensure(); err != nil {
			return err
		}
		d.off.beat()
		return nil
	}
	rl := &reloader{path: d.opts.ConfigPath, cfg: cfg, r: d.r, startOffload: startOffload, setRevalidate: d.setRevalidate,
		applyGuard: func(p *guardPlan) ([]string, error) { return applyGuard(dp, gm, p) }}
	d.main = newMainLoop(log, d.r, signalsOf(d.ev), dp, &d.off, d.reval, rl)
	d.main.localAddrs = d.syncLocalAddrs
	d.b.reload = d.main.reload // API reloads are requests to the main loop
	// Route MTUs and the host's own addresses are mirrored before
	// anything is attached.
	if err := d.ev.Routes.Start(dp); err != nil {
		return fmt.Errorf("route mtus: %w", err)
	}
	if err := d.syncLocalAddrs(); err != nil {
		return err
	}
	// The first heartbeat, now that every watch is subscribed: written
	// before, it could be older than the watchdog by now (the route dump of
	// a full table takes seconds), and an adopted datapath would trust its
	// cache while route changes went unwatched.
	d.off.beat()
	if err := d.r.start(); err != nil {
		return err
	}
	if err := dp.Settle(d.r.managedIndexes()); err != nil {
		return err
	}
	d.onClose(func() {
		if dp.Kept() {
			if dp.MountedBPFFS() {
				log.Warn("leaving the datapath pinned in the BPF filesystem this daemon mounted: if this mount namespace "+
					"is private (ip netns exec), the pins end with this process and the datapath with them", "pins", dp.PinDir())
			} else {
				log.Info("leaving the datapath attached and pinned for the next daemon", "pins", dp.PinDir())
			}
			d.r.release()
			return
		}
		d.r.detachAll()
	})
	return nil
}

// abandon undoes a failed start, leaving nothing behind, not even what a
// previous daemon pinned: the kernel is the correct fallback.
func (d *daemon) abandon(err error) error {
	d.r.detachAll()
	d.off.close()
	if aerr := d.dp.Abandon(); aerr != nil {
		d.log.Warn("remove the pinned datapath", "err", aerr)
	}
	return err
}

func (d *daemon) setRevalidate(c *config.Config) error {
	return d.reval.configure(c.Flows.RevalidateEvery(), c.Flows.RevalidateAlways)
}

// syncLocalAddrs mirrors the host's own addresses into the datapath, which
// tells "local" from "no route" by them (both are "not forwarded" to the FIB
// lookup).
func (d *daemon) syncLocalAddrs() error {
	addrs, err := netwatch.LocalAddrs()
	if err != nil {
		return err
	}
	return d.dp.SetLocalAddrs(addrs)
}

// publish hands a datapath event to the event stream.
func (d *daemon) publish(ev datapath.Event) {
	name := d.b.flowName
	if ev.Type == datapath.GuardDrop {
		d.hub.Publish(guardDropEvent(ev, name))
		return
	}
	f := apiFlow(ev.Flow, name, ev.Time)
	// The age as the event left (the cache's clock is the coarse one, a
	// tick behind at most); no idle time: the event has no last packet.
	f.AgeSec, f.IdleSec = max(f.AgeSec, 0), 0
	kind := api.EventFlowAdded
	if ev.Type == datapath.FlowRemoved {
		kind = api.EventFlowRemoved
	}
	d.hub.Publish(api.Event{Kind: kind, Interface: f.Ingress, Flow: &f, Reason: ev.Reason})
}

// loop serves the API, metrics and dashboard, and runs the main loop until
// ctx ends.
func (d *daemon) loop(ctx context.Context) error {
	log := d.log
	serveErr := make(chan error, 1)
	serveDone := make(chan struct{})
	go func() {
		defer close(serveDone)
		serveErr <- d.srv.ServeListener(ctx, d.ln)
	}()
	// Before the teardown: no API call may act after it (a reload cannot:
	// it is the main loop's, which has returned by then).
	d.onClose(func() { d.cancel(); <-serveDone })
	if d.ml != nil {
		metricsDone := make(chan struct{})
		go func() {
			defer close(metricsDone)
			if err := metrics.Serve(ctx, d.ml, d.b, d.opts.Version, log); err != nil {
				log.Error("metrics server", "err", err)
			}
		}()
		d.onClose(func() { d.cancel(); <-metricsDone })
	}
	if d.dash != nil {
		dashDone := d.dash.serve(ctx, log)
		d.onClose(func() { d.cancel(); <-dashDone })
	}
	log.Info("fastpath running", "interfaces", len(d.cfg.Interfaces), "socket", d.cfg.API.Socket, "netns", d.netns)
	notifyReady(log)
	d.main.wd = newSDWatchdog(log)
	d.main.wd.beat(time.Now())
	return d.main.run(ctx, d.hup, serveErr)
}

func usesOffload(cfg *config.Config) bool {
	for _, ifc := range cfg.Interfaces {
		if ifc.Mode == config.ModeOffload {
			return true
		}
	}
	return false
}
