package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/netwatch"
	"github.com/fastpath-router/fastpath/internal/offload"
)

// The main loop's timings.
const (
	// resyncEvery bounds how long a missed netlink event can leave the
	// datapath out of step with the kernel.
	resyncEvery = 5 * time.Second
	// ipv6MTUPoll is how often the interfaces' IPv6 MTUs are read: the
	// kernel announces no change of net.ipv6.conf.IF.mtu (a sysctl write or
	// a router advertisement's MTU option), and cached flows hold the MTU
	// they were routed with. It bounds how long a lowered MTU takes to
	// reach them.
	ipv6MTUPoll = 50 * time.Millisecond
	// peerPoll is how often the veth peers that hook decisions follow are
	// read (reconciler.peersChanged): their offloads and whether they send
	// by XDP live in their own namespaces and announce nothing here.
	peerPoll = time.Second
	// rulesetReadEvery spaces out reading the whole ruleset after ruleset
	// events (a burst of set element updates is one read), for what in it
	// changes without events (see revalidation).
	rulesetReadEvery = 250 * time.Millisecond
	// resyncQuiet folds a burst of events (nft -f, iptables-restore, a
	// link coming up) into few converges: after a converge, events within
	// this interval make one more converge at its end. The first event
	// after a quiet spell converges at once, so a change the kernel
	// announces reaches the datapath within resyncQuiet plus a converge,
	// well inside the 100 ms docs/offload.md promises.
	resyncQuiet = 25 * time.Millisecond
)

// loopTimes are the main loop's intervals (shortened in tests).
type loopTimes struct {
	resync, beat, mtu6, peers, rulesRead, quiet time.Duration
}

var defaultLoopTimes = loopTimes{resync: resyncEvery, beat: offload.HeartbeatEvery, mtu6: ipv6MTUPoll,
	peers: peerPoll, rulesRead: rulesetReadEvery, quiet: resyncQuiet}

// kernelSignals are the kernel watches' "something changed" signals the
// main loop follows (netwatch.Events).
type kernelSignals struct {
	links <-chan struct{} // links, XDP features, qdiscs: converge
	fib   <-chan struct{} // neighbours, addresses, rules, netconf: re-route flows
	rules <-chan struct{} // nftables ruleset: re-judge flows, converge (device chains)
	addrs <-chan struct{} // the host's own addresses may have changed
}

func signalsOf(ev *netwatch.Events) kernelSignals {
	return kernelSignals{links: ev.Links, fib: ev.FIB, rules: ev.Rules, addrs: ev.Addrs}
}

// flowInvalidator bumps the datapath's generations, so that cached flows
// are routed (routes) or judged (ruleset) again on their next packet.
type flowInvalidator interface {
	InvalidateRoutes() error
	InvalidateRuleset() error
}

// mainLoop is the one goroutine that changes the datapath once the daemon
// has started: it converges (on link, feature, qdisc and ruleset events,
// the resync tick, and reloads from SIGHUP and the API, which are requests
// to it), invalidates cached flows, mirrors the host's addresses, writes
// the heartbeat and runs offload's housekeeping. Nothing else converges,
// so nothing interleaves with a converge; and if the loop hangs, the
// heartbeat stops and the datapath's watchdog hands everything to the
// kernel.
type mainLoop struct {
	log          *slog.Logger
	r            *reconciler
	sig          kernelSignals
	dp           flowInvalidator
	localAddrs   func() error             // mirror the host's own addresses
	legacyTables func() ([]string, error) // netwatch.LegacyTables
	off          *offloadState
	reval        *revalidation
	rl           *reloader
	wd           *sdWatchdog // nil without systemd's watchdog
	times        loopTimes
	after        func(time.Duration) <-chan time.Time // the pace's clock (time.After)

	reloads chan reloadRequest // from the API
	done    chan struct{}      // closed when run returns
}

func newMainLoop(log *slog.Logger, r *reconciler, sig kernelSignals, dp flowInvalidator, off *offloadState, reval *revalidation, rl *reloader) *mainLoop {
	return &mainLoop{log: log, r: r, sig: sig, dp: dp, localAddrs: func() error { return nil },
		legacyTables: netwatch.LegacyTables, off: off, reval: reval, rl: rl, times: defaultLoopTimes,
		after: time.After, reloads: make(chan reloadRequest), done: make(chan struct{})}
}

// reloadRequest is an API reload for the main loop, answered on reply.
type reloadRequest struct {
	ctx   context.Context
	reply chan reloadReply // buffered: the loop never waits for the caller
}

type reloadReply struct {
	res *api.ReloadResult
	err error
}

// errStopping answers requests the main loop will not take any more.
var errStopping = errors.New("the daemon is stopping")

// logReload logs a reload and what it did, whoever asked for it (SIGHUP or
// the API): the journal is where an operator looks for what changed.
func logReload(log *slog.Logger, by string, res *api.ReloadResult, err error) {
	switch {
	case err != nil && res != nil && len(res.Actions) > 0:
		log.Error("reload ("+by+"): the running state is kept where it failed", "err", err, "actions", strings.Join(res.Actions, "; "))
	case err != nil:
		log.Error("reload ("+by+"): the running state is kept where it failed", "err", err)
	case res != nil && res.Changed:
		log.Info("reloaded ("+by+")", "actions", strings.Join(res.Actions, "; "))
	default:
		log.Info("reloaded (" + by + "): no change")
	}
}

// reload asks the main loop to reload and waits for its answer: what the
// reload did and its error, converge failures included. If ctx ends before
// the loop takes the request, nothing is reloaded and ctx's error
// returned; a reload the loop has begun runs to its end (one abandoned
// halfway is the outcome the daemon must never have), and only the
// answer is lost if ctx ends meanwhile.
func (l *mainLoop) reload(ctx context.Context) (*api.ReloadResult, error) {
	req := reloadRequest{ctx: ctx, reply: make(chan reloadReply, 1)}
	select {
	case l.reloads <- req:
	case <-ctx.Done():
		return nil, fmt.Errorf("reload not begun: %w", ctx.Err())
	case <-l.done:
		return nil, errStopping
	}
	select {
	case rep := <-req.reply:
		return rep.res, rep.err
	case <-ctx.Done():
		return nil, fmt.Errorf("reload begun, its answer not awaited: %w", ctx.Err())
	}
}

// pace folds the converges events ask for: the first request after a quiet
// spell runs at once, the requests within times.quiet after a converge
// make one converge at the interval's end. One goroutine's (the loop's).
type pace struct {
	quiet   time.Duration
	after   func(time.Duration) <-chan time.Time
	wait    <-chan time.Time // the quiet interval's end; nil while none runs
	pending bool
}

// request: an event asks for a converge; true means converge now.
func (p *pace) request() bool {
	if p.wait != nil {
		p.pending = true
		return false
	}
	return true
}

// converged: a converge ended; the quiet interval begins.
func (p *pace) converged() {
	p.pending = false
	p.wait = p.after(p.quiet)
}

// expired: the quiet interval ended; true means converge now (events came
// meanwhile).
func (p *pace) expired() bool {
	p.wait = nil
	return p.pending
}

// run follows the kernel, the ticks and the requests until ctx ends (nil)
// or stop reports the API server's end (its error).
func (l *mainLoop) run(ctx context.Context, hup <-chan os.Signal, stop <-chan error) error {
	defer close(l.done)
	log, t := l.log, l.times
	tick := time.NewTicker(t.resync)
	defer tick.Stop()
	beat := time.NewTicker(t.beat)
	defer beat.Stop()
	mtu6 := time.NewTicker(t.mtu6)
	defer mtu6.Stop()
	peers := time.NewTicker(t.peers)
	defer peers.Stop()
	rulesRead := time.NewTicker(t.rulesRead)
	defer rulesRead.Stop()
	p := &pace{quiet: t.quiet, after: l.after}
	resync := func() {
		if p.request() {
			l.r.sync()
			p.converged()
		}
	}
	rulesDirty := false
	var legacy []string // iptables-legacy tables when last looked
	// A beat now, not a tick from now: the start's beat came before every
	// attach, which on real NICs can take a while.
	l.off.beat()
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping")
			return nil
		case err := <-stop:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("api server: %w", err)
		case <-l.sig.links:
			resync()
		case <-l.sig.fib:
			invalidate(log, "neighbours or addresses", l.dp.InvalidateRoutes)
		case <-l.sig.addrs:
			if err := l.localAddrs(); err != nil {
				log.Warn("local addresses", "err", err)
			}
		case now := <-beat.C:
			l.off.beat()
			l.wd.beat(now)
		case <-l.sig.rules:
			// Every event re-judges flows at once; the converge (chains
			// bound to devices may have come or gone) is paced.
			invalidate(log, "ruleset", l.dp.InvalidateRuleset)
			resync()
			rulesDirty = true
		case <-p.wait:
			if p.expired() {
				l.r.sync()
				p.converged()
			}
		case <-rulesRead.C:
			if rulesDirty {
				rulesDirty = false
				if err := l.reval.refresh(); err != nil {
					log.Error("flow revalidation", "err", err)
				}
			}
		case <-hup:
			res, err := l.rl.reload()
			logReload(log, "SIGHUP", res, err)
		case req := <-l.reloads:
			if err := req.ctx.Err(); err != nil { // the caller left before its turn
				req.reply <- reloadReply{err: fmt.Errorf("reload not begun: %w", err)}
				continue
			}
			res, err := l.rl.reload()
			logReload(log, "API", res, err)
			req.reply <- reloadReply{res, err}
		case <-mtu6.C:
			l.r.pollIPv6MTUs()
		case <-peers.C:
			if l.r.peersChanged() {
				resync()
			}
		case <-tick.C:
			resync()
			// iptables-legacy sends no events, not even of its tables
			// coming: only they need this look; the rest reads on events.
			if lt, err := l.legacyTables(); err != nil || !slices.Equal(lt, legacy) {
				legacy, rulesDirty = lt, true
			}
			l.off.resync()
		}
	}
}

// housekeeper is offload mode's housekeeping (*offload.Mode).
type housekeeper interface {
	Beat()
	Resync()
	Close()
}

// offloadState owns offload mode's housekeeping once some interface is in
// offload mode: from start, or from the reload that first brings one. It
// is the main loop's (start and close run before and after it, on the
// same goroutine).
type offloadState struct {
	start  func() (housekeeper, error)
	mode   housekeeper // nil until started
	closed bool        // the daemon is going: nothing starts any more
}

// ensure starts offload mode unless it runs.
func (o *offloadState) ensure() error {
	if o.closed {
		return errStopping
	}
	if o.mode != nil {
		return nil
	}
	m, err := o.start()
	if err != nil {
		return fmt.Errorf("offload mode: %w", err)
	}
	o.mode = m
	return nil
}

func (o *offloadState) beat() {
	if o.mode != nil {
		o.mode.Beat()
	}
}

func (o *offloadState) resync() {
	if o.mode != nil {
		o.mode.Resync()
	}
}

func (o *offloadState) close() {
	o.closed = true
	if o.mode != nil {
		o.mode.Close()
		o.mode = nil
	}
}

func invalidate(log *slog.Logger, what string, f func() error) {
	if err := f(); err != nil {
		log.Error("invalidate cached flows", "what", what, "err", err)
	}
}
