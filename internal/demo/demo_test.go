package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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
	"github.com/fastpath-router/fastpath/internal/lab"
	"github.com/fastpath-router/fastpath/internal/labd"
	"github.com/fastpath-router/fastpath/internal/nsutil"
)

func TestConfigYAML(t *testing.T) {
	l := &lab.Lab{RtrIn: "r0", RtrOut: "r1"}
	got := labd.ConfigYAML("/run/fastpath/demo-x.sock", daemonInterfaces(l)...)
	for _, want := range []string{
		"version: 1\n",
		"  - {name: r0, mode: offload, attach: auto}\n",
		"  - {name: r1, mode: offload, attach: auto}\n",
		"api:\n  socket: /run/fastpath/demo-x.sock\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config lacks %q:\n%s", want, got)
		}
	}
}

func TestDeltasAndShare(t *testing.T) {
	before := &api.Stats{Interfaces: []api.InterfaceStats{
		{Name: "r0", Forwarded: api.Counter{Packets: 10, Bytes: 1000}, Passed: api.Counter{Packets: 5},
			PassReasons: map[string]uint64{"not_ip": 3, "ttl": 2}},
	}}
	after := &api.Stats{Interfaces: []api.InterfaceStats{
		{Name: "r0", Forwarded: api.Counter{Packets: 110, Bytes: 101000}, Passed: api.Counter{Packets: 9}, FlowsAdded: 6,
			PassReasons: map[string]uint64{"not_ip": 4, "ttl": 5, "frag": 0}},
		{Name: "r1", Forwarded: api.Counter{Packets: 50, Bytes: 3000}, Passed: api.Counter{Packets: 1},
			PassReasons: map[string]uint64{"not_ip": 1}},
	}}
	ds, reasons := deltas(before, after)
	if len(ds) != 2 || ds[0] != (ifaceDelta{"r0", 100, 100000, 4, 6}) || ds[1] != (ifaceDelta{"r1", 50, 3000, 1, 0}) {
		t.Errorf("deltas = %+v", ds)
	}
	if got := topReasons(reasons, 3); strings.Join(got, ",") != "ttl 3,not_ip 2" {
		t.Errorf("topReasons = %v", got)
	}
	if got := topReasons(map[string]uint64{"a": 1, "b": 1, "c": 1, "d": 9}, 2); strings.Join(got, ",") != "d 9,a 1" {
		t.Errorf("topReasons tie order = %v", got)
	}
	if got := sub(3, 10); got != 3 {
		t.Errorf("sub after a reset = %d, want 3", got)
	}
	if got := share(987, 13); got != "fastpath forwarded 98.7% of routed packets (987 by fastpath, 13 by the kernel)" {
		t.Errorf("share = %q", got)
	}
	if got := share(16058, 2); !strings.HasPrefix(got, "fastpath forwarded 99.9% ") {
		t.Errorf("share(16058, 2) = %q, want 99.9%%", got)
	}
	if got := share(5, 0); !strings.HasPrefix(got, "fastpath forwarded 100.0% ") {
		t.Errorf("share(5, 0) = %q", got)
	}
	if got := share(0, 0); !strings.Contains(got, "no packets") {
		t.Errorf("share(0, 0) = %q", got)
	}
}

func TestReport(t *testing.T) {
	r := report{
		lab: &lab.Lab{Gen: "fp-x-gen", Rtr: "fp-x-rtr", Sink: "fp-x-sink"},
		results: []result{
			{"ping", "IPv4", true, "5/5 replies"},
			{"tcp", "IPv6", false, "tcp transfer: boom"},
		},
		before: counters{stats: &api.Stats{}, kernel4: 100, kernel6: 50},
		after: counters{stats: &api.Stats{Interfaces: []api.InterfaceStats{
			{Name: "r0", Forwarded: api.Counter{Packets: 90, Bytes: 3 << 20}},
		}}, kernel4: 105, kernel6: 55},
	}
	var b bytes.Buffer
	r.write(&b)
	out := b.String()
	for _, want := range []string{
		"ping  IPv4  OK    5/5 replies",
		"tcp   IPv6  FAIL  tcp transfer: boom",
		"fastpath r0:  forwarded 90 packets / 3.0 MiB",
		"kernel forwarded: 5 IPv4 + 5 IPv6 datagrams",
		"fastpath forwarded 90.0% of routed packets (90 by fastpath, 10 by the kernel)",
		"FAILED: tcp IPv6",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if f := r.failed(); len(f) != 1 || f[0] != "tcp IPv6" {
		t.Errorf("failed = %v", f)
	}
}

// fakeClient plays a daemon that becomes ready after a few polls and whose
// counters grow on every Stats call.
type fakeClient struct {
	mu         sync.Mutex
	readyAfter int // Status calls before it reports attached; <0: never
	calls      int
	stats      int
}

func (f *fakeClient) Status(ctx context.Context) (*api.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.readyAfter < 0 || f.calls <= f.readyAfter {
		return nil, errors.New("connection refused")
	}
	return &api.Status{Interfaces: []api.InterfaceStatus{
		{Name: "r0", Mode: "route", Attach: "auto", AttachedAs: "xdp", State: api.StateAttached},
		{Name: "r1", Mode: "route", Attach: "auto", AttachedAs: "xdp", State: api.StateAttached},
	}}, nil
}

func (f *fakeClient) Stats(ctx context.Context) (*api.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats++
	n := uint64(f.stats * 1000)
	return &api.Stats{Interfaces: []api.InterfaceStats{
		{Name: "r0", Forwarded: api.Counter{Packets: n, Bytes: n * 100}, PassReasons: map[string]uint64{"not_ip": n / 100}},
		{Name: "r1", Forwarded: api.Counter{Packets: n, Bytes: n * 100}, PassReasons: map[string]uint64{}},
	}}, nil
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces (run `sudo go test`)")
	}
}

func testName() string {
	b := make([]byte, 3)
	rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

// fakeDaemon writes a shell script standing in for the fastpath binary: it
// records its PID, prints a line, then runs body.
func fakeDaemon(t *testing.T, body string) (binary, pidFile string) {
	t.Helper()
	dir := t.TempDir()
	pidFile = filepath.Join(dir, "pid")
	binary = filepath.Join(dir, "fastpath")
	script := "#!/bin/sh\necho $$ > " + pidFile + "\necho \"fake daemon: $*\" >&2\n" + body + "\n"
	if err := os.WriteFile(binary, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return binary, pidFile
}

// checkGone fails the test if the fake daemon or any lab namespace is left.
func checkGone(t *testing.T, name, pidFile string) {
	t.Helper()
	if b, err := os.ReadFile(pidFile); err == nil {
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if pid > 0 && syscall.Kill(pid, 0) == nil {
			t.Errorf("fake daemon pid %d still running", pid)
		}
	}
	for _, ns := range []string{"fp-" + name + "-gen", "fp-" + name + "-rtr", "fp-" + name + "-sink"} {
		if nsutil.Exists(ns) {
			t.Errorf("namespace %s left behind", ns)
		}
	}
}

// cleanupLab removes the lab whatever happens to the test.
func cleanupLab(t *testing.T, name string) {
	t.Cleanup(func() {
		if err := lab.Down(name); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
}

// TestRunWithFakeDaemon runs the whole demo with a stand-in daemon (a
// script that only waits) and a fake API client. The lab forwards in the
// kernel, so all traffic checks pass and the report compares the fake
// counters with the real kernel ones.
func TestRunWithFakeDaemon(t *testing.T) {
	requireRoot(t)
	name := testName()
	cleanupLab(t, name)
	bin, pidFile := fakeDaemon(t, "exec sleep 60")
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fc := &fakeClient{readyAfter: 3}
	err := run(ctx, Options{Name: name, Out: &out, Binary: bin}, func(string) client { return fc })
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, want := range []string{
		"ping  IPv4  OK", "ping  IPv6  OK", "tcp   IPv4  OK", "tcp   IPv6  OK", "udp   IPv4  OK", "udp   IPv6  OK",
		"fastpath r0:", "fastpath r1:", "top pass reasons: not_ip 10",
		"fastpath forwarded ", "% of routed packets (2000 by fastpath, ",
		"all traffic checks passed",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	checkGone(t, name, pidFile)
}

func TestRunDaemonExitsEarly(t *testing.T) {
	requireRoot(t)
	name := testName()
	cleanupLab(t, name)
	bin, pidFile := fakeDaemon(t, "echo 'boom: cannot attach' >&2; exit 3")
	var out bytes.Buffer
	start := time.Now()
	err := run(context.Background(), Options{Name: name, Out: &out, Binary: bin},
		func(string) client { return &fakeClient{readyAfter: -1} })
	if err == nil || !strings.Contains(err.Error(), "daemon exited") {
		t.Fatalf("run = %v, want a 'daemon exited' error", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("run took %s to notice the daemon's exit", took)
	}
	if !strings.Contains(out.String(), "boom: cannot attach") {
		t.Errorf("daemon output not shown:\n%s", out.String())
	}
	checkGone(t, name, pidFile)
}

func TestRunCancelled(t *testing.T) {
	requireRoot(t)
	name := testName()
	cleanupLab(t, name)
	// The stand-in ignores nothing: sleep dies on SIGTERM.
	bin, pidFile := fakeDaemon(t, "exec sleep 60")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	err := run(ctx, Options{Name: name, Out: &bytes.Buffer{}, Binary: bin, KeepOnFailure: true},
		func(string) client { return &fakeClient{readyAfter: -1} })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run = %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("cancelled run took %s", took)
	}
	// KeepOnFailure does not apply to a cancelled demo.
	checkGone(t, name, pidFile)
}

func TestRunStubbornDaemonIsKilled(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("skipping: waits for the SIGTERM timeout")
	}
	name := testName()
	cleanupLab(t, name)
	// Ignores SIGTERM; the shell waits in a bounded loop of short sleeps.
	bin, pidFile := fakeDaemon(t, "trap '' TERM; i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	err := run(ctx, Options{Name: name, Out: &bytes.Buffer{}, Binary: bin},
		func(string) client { return &fakeClient{readyAfter: -1} })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run = %v, want context.Canceled", err)
	}
	checkGone(t, name, pidFile)
}

func TestRunKeepOnFailure(t *testing.T) {
	requireRoot(t)
	name := testName()
	cleanupLab(t, name)
	bin, _ := fakeDaemon(t, "exit 1")
	var out bytes.Buffer
	err := run(context.Background(), Options{Name: name, Out: &out, Binary: bin, KeepOnFailure: true},
		func(string) client { return &fakeClient{readyAfter: -1} })
	if err == nil {
		t.Fatal("run succeeded with a daemon that exits")
	}
	if _, err := lab.Get(name); err != nil {
		t.Errorf("lab not kept: %v", err)
	}
	if !strings.Contains(out.String(), "fastpath lab down --name "+name) {
		t.Errorf("no cleanup hint:\n%s", out.String())
	}
	// The kept config directory is ours to remove.
	for _, line := range strings.Split(out.String(), "\n") {
		if cfg, ok := strings.CutPrefix(strings.TrimSpace(line), "config "); ok {
			dir := filepath.Dir(cfg)
			if !strings.HasPrefix(filepath.Base(dir), "fastpath-demo-") {
				t.Fatalf("unexpected config dir %s", dir)
			}
			if err := os.RemoveAll(dir); err != nil {
				t.Error(err)
			}
		}
	}
}
