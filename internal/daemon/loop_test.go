package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/config"
	"github.com/fastpath-router/fastpath/internal/datapath"
	"github.com/fastpath-router/fastpath/internal/netwatch"
	"github.com/fastpath-router/fastpath/internal/testio"
)

// loopFixture runs the main loop over the reconciler's fakes. Its signal
// channels are unbuffered: a send returns once the loop took it, that is
// once it finished what it did before. The test changes the kernel's
// state (links, device chains) only under mu, since the loop reads it.
type loopFixture struct {
	*fixture
	l       *mainLoop
	links   chan struct{}
	rules   chan struct{}
	quiet   chan time.Time // the pace's clock: the test ends quiet intervals
	inval   fakeInvalidator
	mode    fakeMode
	path    string // the config file reloads read
	cancel  context.CancelFunc
	done    chan error // run's result
	stopped bool

	mu        sync.Mutex
	converges atomic.Int64  // links listings: one per converge
	hold      chan struct{} // non-nil: the next converge waits in it for the test to close it
	held      chan struct{} // closed when a converge waits in hold
	holding   atomic.Bool
	overlaps  atomic.Int64 // converges or heartbeats that ran while a converge was held

	logs testio.SyncBuffer // the main loop's log
}

type fakeInvalidator struct{ routes, ruleset atomic.Int64 }

func (f *fakeInvalidator) InvalidateRoutes() error  { f.routes.Add(1); return nil }
func (f *fakeInvalidator) InvalidateRuleset() error { f.ruleset.Add(1); return nil }

// fakeMode is offload mode's housekeeping: it counts heartbeats, and
// heartbeats written while a converge is held.
type fakeMode struct {
	lf     *loopFixture
	beats  atomic.Int64
	closed atomic.Bool
}

func (m *fakeMode) Beat() {
	m.beats.Add(1)
	if m.lf.holding.Load() {
		m.lf.overlaps.Add(1)
	}
}
func (m *fakeMode) Resync() {}
func (m *fakeMode) Close()  { m.closed.Store(true) }

// writeConfig writes a config file with ifaces and returns it parsed.
func writeConfig(t *testing.T, path string, ifaces ...string) *config.Config {
	t.Helper()
	var b strings.Builder
	b.WriteString("version: 1\ninterfaces:\n")
	for _, i := range ifaces { // "name mode attach"
		f := strings.Fields(i)
		fmt.Fprintf(&b, "  - name: %s\n    mode: %s\n    attach: %s\n", f[0], f[1], f[2])
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// newLoopFixture starts the reconciler with r0 in route mode (attach auto)
// and runs the main loop with a heartbeat every millisecond, other ticks
// out of the way.
func newLoopFixture(t *testing.T) *loopFixture {
	t.Helper()
	lf := &loopFixture{links: make(chan struct{}), rules: make(chan struct{}), quiet: make(chan time.Time),
		path: filepath.Join(t.TempDir(), "fastpath.yaml")}
	lf.mode.lf = lf
	cfg := writeConfig(t, lf.path, "r0 route auto")
	lf.fixture = newFixture(t, cfg.Interfaces...)
	links, nfHooks := lf.r.links, lf.r.nfHooks
	lf.r.links = func() (map[string]netlink.Link, error) {
		lf.mu.Lock()
		hold, held := lf.hold, lf.held
		lf.hold = nil
		m, err := links()
		lf.mu.Unlock()
		if lf.holding.Load() {
			lf.overlaps.Add(1) // a second converge while one is held
		}
		lf.converges.Add(1)
		if hold != nil {
			lf.holding.Store(true)
			close(held)
			<-hold
			lf.holding.Store(false)
		}
		return m, err
	}
	lf.r.nfHooks = func() (map[string]netwatch.DeviceHooks, error) {
		lf.mu.Lock()
		defer lf.mu.Unlock()
		return nfHooks()
	}
	if err := lf.r.start(); err != nil {
		t.Fatal(err)
	}
	lf.converges.Store(0)
	off := &offloadState{start: func() (housekeeper, error) { return &lf.mode, nil }}
	if err := off.ensure(); err != nil {
		t.Fatal(err)
	}
	reval := &revalidation{set: func(time.Duration) error { return nil }, read: func() ([]string, error) { return nil, nil },
		log: slog.New(slog.DiscardHandler)}
	rl := &reloader{path: lf.path, cfg: cfg, r: lf.r, startOffload: off.ensure,
		setRevalidate: func(*config.Config) error { return nil }}
	sig := kernelSignals{links: lf.links, rules: lf.rules, fib: make(chan struct{}), addrs: make(chan struct{})}
	lf.l = newMainLoop(slog.New(slog.NewTextHandler(&lf.logs, nil)), lf.r, sig, &lf.inval, off, reval, rl)
	lf.l.legacyTables = func() ([]string, error) { return nil, nil }
	lf.l.times = loopTimes{resync: time.Hour, beat: time.Millisecond, mtu6: time.Hour, peers: time.Hour, rulesRead: time.Hour, quiet: time.Hour}
	lf.l.after = func(time.Duration) <-chan time.Time { return lf.quiet }
	ctx, cancel := context.WithCancel(t.Context())
	lf.cancel, lf.done = cancel, make(chan error, 1)
	go func() { lf.done <- lf.l.run(ctx, nil, nil) }()
	t.Cleanup(func() { lf.stop(t) })
	return lf
}

// stop ends the loop and waits for it; afterwards the test may read the
// fakes the loop wrote.
func (lf *loopFixture) stop(t *testing.T) {
	t.Helper()
	if lf.stopped {
		return
	}
	lf.cancel()
	select {
	case err := <-lf.done:
		lf.stopped = true
		if err != nil {
			t.Errorf("main loop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("main loop still running 10 s after its context ended")
	}
}

// holdNext makes the next converge wait until the returned release is
// called; held closes once it waits.
func (lf *loopFixture) holdNext() (held <-chan struct{}, release func()) {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	hold := make(chan struct{})
	lf.hold, lf.held = hold, make(chan struct{})
	return lf.held, sync.OnceFunc(func() { close(hold) })
}

// send hands the loop v on c, failing the test if it takes none within
// 10 s (a loop not waiting on c: stuck, or not in the state the test
// expects).
func send[T any](t *testing.T, what string, c chan<- T, v T) {
	t.Helper()
	select {
	case c <- v:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the main loop took nothing within 10 s", what)
	}
}

func waitFor(t *testing.T, what string, c <-chan struct{}) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not within 10 s", what)
	}
}

// TestLoopReloadSerialised: an API reload is a request to the main loop:
// it waits while the loop converges for a link event, never converges
// beside it, and no heartbeat is written while any converge runs (the
// heartbeat is the loop's too). The reply carries the reload's result.
func TestLoopReloadSerialised(t *testing.T) {
	lf := newLoopFixture(t)
	writeConfig(t, lf.path, "r0 route auto", "r1 route tc")
	held, release := lf.holdNext()
	defer release()
	send(t, "link event", lf.links, struct{}{})
	waitFor(t, "the resync converge", held)

	type answer struct {
		res *api.ReloadResult
		err error
	}
	replied := make(chan answer, 1)
	go func() {
		res, err := lf.l.reload(t.Context()) // what backend.Reload does
		replied <- answer{res, err}
	}()
	// A window for what must not happen: with a heartbeat every
	// millisecond, a reload or heartbeat beside the held converge would
	// show within it. (Nothing waits on it: correct code passes however
	// short it is.)
	time.Sleep(20 * time.Millisecond)
	select {
	case a := <-replied:
		t.Fatalf("the reload answered while the resync converge was held: %+v, %v", a.res, a.err)
	default:
	}
	beats := lf.mode.beats.Load()
	release()

	var a answer
	select {
	case a = <-replied:
	case <-time.After(10 * time.Second):
		t.Fatal("no reload answer 10 s after the resync converge ended")
	}
	if a.err != nil || a.res == nil || !a.res.Changed || !slices.ContainsFunc(a.res.Actions, func(s string) bool { return strings.HasPrefix(s, "add r1") }) {
		t.Errorf("reload answer %+v, %v; want r1 added", a.res, a.err)
	}
	// The heartbeat goes on after the converges.
	for deadline := time.Now().Add(10 * time.Second); lf.mode.beats.Load() <= beats+2; {
		if time.Now().After(deadline) {
			t.Fatal("no heartbeat after the converges")
		}
		time.Sleep(time.Millisecond) // polling
	}
	lf.stop(t)
	if n := lf.overlaps.Load(); n != 0 {
		t.Errorf("%d converges or heartbeats ran beside a held converge", n)
	}
	// links are read three times: the resync, the reload's check that
	// r1 exists, the reload
	if n := lf.converges.Load(); n != 3 {
		t.Errorf("links read %d times, want 3 (the resync, the reload's check, the reload)", n)
	}
	if hs := lf.dp.hooks(3); len(hs) != 1 || hs[0] != datapath.HookTC {
		t.Errorf("r1 hooks after the reload: %v, want [tc]", hs)
	}
}

// TestLoopReloadAnswers: the reply carries the converge's error with what
// was done, and a config error; a request whose caller left before its
// turn is not run; a stopped loop takes none.
func TestLoopReloadAnswers(t *testing.T) {
	lf := newLoopFixture(t)
	lf.dp.fail[datapath.HookXDP] = errors.New("xdp refused") // the loop reads it only after the request below
	writeConfig(t, lf.path, "r0 route auto", "r1 route xdp")
	res, err := lf.l.reload(t.Context())
	if err == nil || !strings.Contains(err.Error(), "xdp refused") || res == nil ||
		!slices.ContainsFunc(res.Actions, func(s string) bool { return strings.HasPrefix(s, "add r1: failed") }) {
		t.Errorf("reload with a refused attach: %+v, %v; want the failure in actions and error", res, err)
	}
	// An API reload is logged as a SIGHUP one is: the journal shows it.
	if logs := lf.logs.String(); !strings.Contains(logs, `msg="reload (API): the running state is kept where it failed"`) || !strings.Contains(logs, "xdp refused") {
		t.Errorf("the failed API reload is not logged:\n%s", logs)
	}
	writeConfig(t, lf.path, "r0 route auto", "r1 route tc")
	if _, err := lf.l.reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if logs := lf.logs.String(); !strings.Contains(logs, `msg="reloaded (API)" actions=`) {
		t.Errorf("the API reload's changes are not logged:\n%s", logs)
	}

	if err := os.WriteFile(lf.path, []byte("version: 1\ninterfaces:\n  - name: r0\n    mode: ofload\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var ce *api.ConfigError
	if _, err := lf.l.reload(t.Context()); !errors.As(err, &ce) {
		t.Errorf("reload of an invalid file: %v, want a *api.ConfigError", err)
	}
	// An interface the reload adds must exist, as at start; nothing of
	// the reload is applied (r0 stays in route mode).
	writeConfig(t, lf.path, "r0 offload auto", "r1 route tc", "nosuch0 route auto")
	if res, err := lf.l.reload(t.Context()); !errors.As(err, &ce) || !strings.Contains(err.Error(), "interface nosuch0: no such interface") ||
		!strings.Contains(err.Error(), "nothing was changed") || res != nil {
		t.Errorf("reload adding a missing interface: %+v, %v; want a config error naming it", res, err)
	}
	if i := slices.IndexFunc(lf.r.ifaces, func(ic *iface) bool { return ic.cfg.Name == "r0" }); i < 0 || lf.r.ifaces[i].cfg.Mode != config.ModeRoute {
		t.Errorf("the refused reload changed r0: %+v", lf.r.ifaces)
	}
	// So must one it turns on: an off interface that is not Ethernet
	// may stay in the config, but not be managed.
	lf.mu.Lock()
	lf.fixture.links["wg0"] = &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "wg0", Index: 9, MTU: 1420, EncapType: "none"}}
	lf.mu.Unlock()
	if err := os.WriteFile(lf.path, []byte("version: 1\ninterfaces:\n  - {name: r0, mode: route}\n  - {name: r1, mode: route, attach: tc}\n  - {name: wg0, mode: \"off\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := lf.l.reload(t.Context()); err != nil {
		t.Fatalf("reload adding an off non-Ethernet interface: %v", err)
	}
	writeConfig(t, lf.path, "r0 offload auto", "r1 route tc", "wg0 route auto")
	if res, err := lf.l.reload(t.Context()); !errors.As(err, &ce) || !strings.Contains(err.Error(), "interface wg0: not an ethernet device") || res != nil {
		t.Errorf("reload turning on a non-Ethernet interface: %+v, %v; want a config error naming it", res, err)
	}
	if i := slices.IndexFunc(lf.r.ifaces, func(ic *iface) bool { return ic.cfg.Name == "r0" }); i < 0 || lf.r.ifaces[i].cfg.Mode != config.ModeRoute {
		t.Errorf("the refused reload changed r0: %+v", lf.r.ifaces)
	}

	// The caller leaves while a converge holds the loop: its reload is
	// never run.
	writeConfig(t, lf.path, "r0 route auto", "r2 route tc")
	held, release := lf.holdNext()
	defer release()
	send(t, "link event", lf.links, struct{}{})
	waitFor(t, "the resync converge", held)
	ctx, cancel := context.WithCancel(t.Context())
	replied := make(chan error, 1)
	go func() { _, err := lf.l.reload(ctx); replied <- err }()
	cancel()
	if err := <-replied; !errors.Is(err, context.Canceled) {
		t.Errorf("reload whose caller left: %v, want context.Canceled", err)
	}
	release()
	before := lf.converges.Load()
	send(t, "link event", lf.links, struct{}{})         // taken once the held converge ended
	send(t, "quiet interval end", lf.quiet, time.Now()) // the quiet interval after it: the event converges
	send(t, "quiet interval end", lf.quiet, time.Now()) // taken once that converge ended
	lf.stop(t)
	if n := lf.converges.Load() - before; n != 1 {
		t.Errorf("%d converges after the abandoned reload, want 1 (the link event's)", n)
	}
	if len(lf.dp.hooks(4)) != 0 || slices.ContainsFunc(lf.r.ifaces, func(ic *iface) bool { return ic.cfg.Name == "r2" }) {
		t.Errorf("the abandoned reload ran: r2 hooks %v", lf.dp.hooks(4))
	}
	if _, err := lf.l.reload(t.Context()); !errors.Is(err, errStopping) {
		t.Errorf("reload after the loop ended: %v, want errStopping", err)
	}
}

// TestLoopRulesetBurst: a burst of 100 ruleset events re-judges flows on
// each but converges twice: at once on the first (the promise: a change
// reaches the datapath without waiting), once more for the rest at the
// end of the quiet interval, with the state the last one left. The next
// event after a quiet interval without events converges at once again.
func TestLoopRulesetBurst(t *testing.T) {
	lf := newLoopFixture(t)
	chain := func(i int) {
		lf.mu.Lock()
		defer lf.mu.Unlock()
		lf.nf["r0"] = netwatch.DeviceHooks{Ingress: []string{fmt.Sprintf("netdev t c%d", i)}}
	}
	for i := 1; i <= 100; i++ {
		chain(i)
		send(t, "ruleset event", lf.rules, struct{}{})
		if i == 2 { // event 1 was handled in full before the loop took event 2
			if n := lf.converges.Load(); n != 1 {
				t.Fatalf("after the first event: %d converges, want 1 at once", n)
			}
		}
	}
	send(t, "link event", lf.links, struct{}{}) // a link event in the burst: folded too
	if n := lf.converges.Load(); n != 1 {
		t.Errorf("during the burst: %d converges, want 1", n)
	}
	send(t, "quiet interval end", lf.quiet, time.Now()) // the quiet interval ends: one converge for the rest
	send(t, "quiet interval end", lf.quiet, time.Now()) // taken after it; nothing pending now
	if n := lf.converges.Load(); n != 2 {
		t.Errorf("after the burst: %d converges, want 2", n)
	}
	if n := lf.inval.ruleset.Load(); n != 100 {
		t.Errorf("ruleset invalidated %d times, want 100 (each event at once)", n)
	}
	send(t, "ruleset event", lf.rules, struct{}{})
	send(t, "ruleset event", lf.rules, struct{}{}) // taken after the first was handled
	if n := lf.converges.Load(); n != 3 {
		t.Errorf("an event after a quiet interval: %d converges, want 3 (at once)", n)
	}
	lf.stop(t)
	want := netwatch.DeviceHooks{Ingress: []string{"netdev t c100"}}
	if got := lf.iface(t, "r0").nf; !slices.Equal(got.Ingress, want.Ingress) || !lf.dp.ifaces[2].NFIngress {
		t.Errorf("r0 after the burst: chains %v, datapath %+v; want %v", got, lf.dp.ifaces[2], want)
	}
}

// TestPace: the pace alone, against a clock the test drives.
func TestPace(t *testing.T) {
	clock := make(chan time.Time, 1)
	var asked []time.Duration
	p := &pace{quiet: resyncQuiet, after: func(d time.Duration) <-chan time.Time { asked = append(asked, d); return clock }}
	if !p.request() {
		t.Fatal("first request: want converge now")
	}
	p.converged()
	if p.wait == nil || len(asked) != 1 || asked[0] != resyncQuiet {
		t.Fatalf("after a converge: wait %v, asked %v", p.wait, asked)
	}
	if p.request() || p.request() {
		t.Error("requests within the quiet interval: want none now")
	}
	if !p.expired() {
		t.Error("interval end with requests pending: want converge")
	}
	p.converged()
	if p.expired() {
		t.Error("interval end with none pending: want no converge")
	}
	if p.wait != nil || !p.request() {
		t.Error("after a quiet interval without requests: want converge now")
	}
}
