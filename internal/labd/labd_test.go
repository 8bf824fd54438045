package labd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/config"
	"github.com/fastpath-router/fastpath/internal/nsutil"
	"github.com/fastpath-router/fastpath/internal/testio"
)

func TestConfigYAMLLoads(t *testing.T) {
	dir := t.TempDir()
	path, err := WriteConfig(dir, "/run/fastpath/x.sock",
		Interface{Name: "r0"}, Interface{Name: "r1", Mode: "off", Attach: "tc"})
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, ConfigFile) {
		t.Errorf("path = %s", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"  - {name: r0, mode: route, attach: auto}\n",
		"  - {name: r1, mode: off, attach: tc}\n",
		"api:\n  socket: /run/fastpath/x.sock\n",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("config lacks %q:\n%s", want, b)
		}
	}
	// What the helper writes must be what the daemon accepts.
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config.Load: %v\n%s", err, b)
	}
	if len(cfg.Interfaces) != 2 || cfg.Interfaces[1].Mode != config.ModeOff || cfg.API.Socket != "/run/fastpath/x.sock" {
		t.Errorf("loaded %+v", cfg)
	}
}

func TestAttached(t *testing.T) {
	for _, tc := range []struct {
		st   *api.Status
		ok   bool
		why  string
		name string
	}{
		{nil, false, "no interfaces", "nil"},
		{&api.Status{}, false, "no interfaces", "empty"},
		{&api.Status{Interfaces: []api.InterfaceStatus{
			{Name: "r0", State: api.StateAttached},
			{Name: "r1", State: api.StateError, Error: "no xdp"},
		}}, false, "r1 error (no xdp)", "one error"},
		{&api.Status{Interfaces: []api.InterfaceStatus{
			{Name: "r0", State: api.StateAttached},
			{Name: "r1", State: api.StateAttached},
		}}, true, "", "all attached"},
	} {
		ok, why := Attached(tc.st)
		if ok != tc.ok || !strings.Contains(why, tc.why) {
			t.Errorf("%s: Attached = %v, %q; want %v, %q", tc.name, ok, why, tc.ok, tc.why)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 8}
	b.Write([]byte("hello "))
	if got := b.String(); got != "hello " {
		t.Errorf("String = %q", got)
	}
	b.Write([]byte("world"))
	if got := b.String(); got != "[3 earlier bytes dropped]\nlo world" {
		t.Errorf("String = %q", got)
	}
}

// fakeClient answers Status with an error until readyAfter calls have
// been made (never if readyAfter < 0), then with two attached interfaces.
type fakeClient struct {
	mu         sync.Mutex
	readyAfter int
	calls      int
}

func (f *fakeClient) Status(context.Context) (*api.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.readyAfter < 0 || f.calls <= f.readyAfter {
		return nil, errors.New("connection refused")
	}
	return &api.Status{Interfaces: []api.InterfaceStatus{
		{Name: "r0", State: api.StateAttached}, {Name: "r1", State: api.StateAttached},
	}}, nil
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces (run `sudo go test`)")
	}
}

// testNetns creates a throw-away network namespace, removed at cleanup.
func testNetns(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	return testio.Netns(t, "fp-labd-")
}

// fakeDaemon writes a shell script standing in for the fastpath binary: it
// records its PID and network namespace, prints its arguments, then runs
// body.
// startFake starts a fake daemon running body (see fakeDaemon) in a fresh
// namespace, stopped at cleanup; dir is the fake's directory.
func startFake(t *testing.T, body string, args ...string) (p *Process, dir string) {
	t.Helper()
	ns := testNetns(t)
	bin, dir := fakeDaemon(t, body)
	p, err := Start(context.Background(), ns, bin, "/etc/x.yaml", args...)
	if err != nil {
		t.Fatal(err)
	}
	stopAtCleanup(t, p)
	return p, dir
}

func fakeDaemon(t *testing.T, body string) (binary, dir string) {
	t.Helper()
	dir = t.TempDir()
	binary = filepath.Join(dir, "fastpath")
	script := "#!/bin/sh\necho $$ > " + filepath.Join(dir, "pid") +
		"\nreadlink /proc/self/ns/net > " + filepath.Join(dir, "netns") +
		"\necho \"fake daemon: $*\" >&2\n" + body + "\n"
	if err := os.WriteFile(binary, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return binary, dir
}

// readPID polls for the PID the fake daemon records when it starts.
func readPID(t *testing.T, dir string) int {
	t.Helper()
	deadline := time.After(3 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := os.ReadFile(filepath.Join(dir, "pid"))
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil {
			return pid
		}
		select {
		case <-deadline:
			t.Fatal("fake daemon did not record its pid")
		case <-tick.C:
		}
	}
}

// stopAtCleanup makes sure the process is gone at the end of the test.
func stopAtCleanup(t *testing.T, p *Process) {
	t.Cleanup(func() {
		if err := p.Kill(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestStartReadyStop(t *testing.T) {
	p, dir := startFake(t, "exec sleep 60", "--log-level", "debug")
	if got := readPID(t, dir); got != p.PID() {
		t.Errorf("daemon pid %d, Process.PID %d: nsenter should exec in place", got, p.PID())
	}
	st, err := p.WaitReady(context.Background(), &fakeClient{readyAfter: 2}, 5*time.Second)
	if err != nil || len(st.Interfaces) != 2 {
		t.Fatalf("WaitReady = %v, %v", st, err)
	}
	var want uint64
	if err := nsutil.Do(p.NetNS(), func() error {
		var err error
		want, err = nsutil.Inode()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "netns"))
	if !strings.Contains(string(got), "["+strconv.FormatUint(want, 10)+"]") {
		t.Errorf("daemon ran in %s, want netns inode %d", got, want)
	}
	if out := p.Output(); !strings.Contains(out, "fake daemon: run -c /etc/x.yaml --log-level debug") {
		t.Errorf("output = %q", out)
	}
	if !p.Running() || p.ExitCode() != -1 || p.ExitErr() != nil {
		t.Errorf("running process: Running %v, ExitCode %d, ExitErr %v", p.Running(), p.ExitCode(), p.ExitErr())
	}
	start := time.Now()
	if err := p.Stop(nil); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > TermTimeout {
		t.Errorf("Stop took %s: SIGTERM should have ended sleep", took)
	}
	select {
	case <-p.Done():
	default:
		t.Error("Done not closed after Stop")
	}
	if p.ExitErr() == nil || p.ExitCode() != -1 {
		t.Errorf("after SIGTERM: ExitErr %v, ExitCode %d; want a signal exit", p.ExitErr(), p.ExitCode())
	}
	if alive(p.PID()) {
		t.Errorf("pid %d still alive", p.PID())
	}
	if err := p.Stop(nil); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestWaitReadyFailsWhenProcessExits(t *testing.T) {
	p, _ := startFake(t, "echo 'boom: cannot attach' >&2; exit 3")
	start := time.Now()
	_, err := p.WaitReady(context.Background(), &fakeClient{readyAfter: -1}, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "daemon exited") {
		t.Fatalf("WaitReady = %v, want a 'daemon exited' error", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("WaitReady took %s to notice the exit", took)
	}
	if p.ExitCode() != 3 {
		t.Errorf("ExitCode = %d, want 3", p.ExitCode())
	}
	if !strings.Contains(p.Output(), "boom: cannot attach") {
		t.Errorf("output = %q", p.Output())
	}
}

func TestWaitReadyTimeout(t *testing.T) {
	p, _ := startFake(t, "exec sleep 60")
	_, err := p.WaitReady(context.Background(), &fakeClient{readyAfter: -1}, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("WaitReady = %v, want a timeout naming the last answer", err)
	}
	if err := p.WaitExit(100 * time.Millisecond); err == nil {
		t.Error("WaitExit succeeded on a running process")
	}
}

func TestKillIgnoresSIGTERMHandler(t *testing.T) {
	// Ignores SIGTERM; the shell waits in a bounded loop of short sleeps.
	p, dir := startFake(t, "trap '' TERM; i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done")
	readPID(t, dir) // the trap is set right after
	start := time.Now()
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > KillTimeout {
		t.Errorf("Kill took %s", took)
	}
	if alive(p.PID()) {
		t.Errorf("pid %d still alive", p.PID())
	}
}

func TestStopKillsStubbornProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: waits for the SIGTERM timeout")
	}
	p, dir := startFake(t, "trap '' TERM; i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done")
	readPID(t, dir)
	if err := p.Stop(nil); err != nil {
		t.Fatal(err)
	}
	if p.Running() || alive(p.PID()) {
		t.Errorf("pid %d survived Stop", p.PID())
	}
}

func TestStartErrors(t *testing.T) {
	requireRoot(t)
	if _, err := Start(context.Background(), "fp-labd-does-not-exist", "/bin/true", "/x"); err == nil ||
		!strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Start in a missing netns = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Start(ctx, "any", "/bin/true", "/x"); !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a cancelled ctx = %v", err)
	}
}
