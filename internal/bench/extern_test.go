package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

func TestExternOptions(t *testing.T) {
	// Without --extern-up, all configurations but extern and those run
	// only when named (the FIB's); with it, extern too, under its label.
	var all Options
	if err := all.defaults(); err != nil {
		t.Fatal(err)
	}
	fib := []string{ConfigRouteXDP6, ConfigRouteXDP6Big, ConfigOffloadXDP6, ConfigOffloadXDP6Big}
	if slices.Contains(all.Configs, ConfigExtern) || len(all.Configs) != len(ConfigNames())-1-len(fib) {
		t.Errorf("default configurations without --extern-up: %v", all.Configs)
	}
	for _, name := range fib {
		if slices.Contains(all.Configs, name) {
			t.Errorf("default configurations have %s", name)
		}
	}
	named := Options{Configs: []string{ConfigOffloadXDP6Big, ConfigRouteXDP6Big, ConfigOffloadXDP6, ConfigRouteXDP6}}
	if err := named.defaults(); err != nil || !slices.Equal(named.Configs, fib) {
		t.Errorf("named FIB configurations: %v, %v", named.Configs, err)
	}
	with := Options{Extern: Extern{Up: "xdp-forward load $IN $OUT", Down: "xdp-forward unload $IN $OUT", Label: "xdp-forward"}}
	if err := with.defaults(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(with.Configs, ConfigExtern) {
		t.Errorf("default configurations with --extern-up lack extern: %v", with.Configs)
	}
	if c, _ := with.configByName(ConfigExtern); c.label != "xdp-forward" || !c.extern || c.conntrack || c.masq || c.mode != "" {
		t.Errorf("extern configuration %+v", c)
	}
	if c, _ := with.configByName(ConfigKernel); c.label != "kernel forwarding" {
		t.Errorf("kernel relabelled: %+v", c)
	}
	if c, _ := configByName(ConfigExtern); !latencyConfig(c) || slices.Contains(tcpConfigNames, ConfigExtern) {
		t.Error("extern must have round trips and no bulk TCP")
	}
	if s := externSettings(with); s == nil || s.Label != "xdp-forward" || s.Up != with.Extern.Up {
		t.Errorf("settings record %+v", s)
	}
	if s := externSettings(Options{Configs: []string{ConfigExtern}, Extern: Extern{Up: "true"}}); s == nil || s.Label != externLabel {
		t.Errorf("default label: settings record %+v", s)
	}
	if s := externSettings(all); s != nil {
		t.Errorf("settings record %+v for a run without extern", s)
	}
	r := &Report{Settings: Settings{Extern: externSettings(with)}}
	if got := r.shortLabel(ConfigExtern); got != "xdp-forward" {
		t.Errorf("chart labels extern %q", got)
	}

	good := Options{Configs: []string{ConfigKernel, ConfigExtern}, Extern: Extern{Up: "true"}}
	if err := good.defaults(); err != nil {
		t.Errorf("up alone refused: %v", err)
	}
	for _, bad := range []struct {
		o    Options
		want string
	}{
		{Options{Configs: []string{ConfigExtern}}, "needs --extern-up"},
		{Options{Configs: []string{ConfigKernel}, Extern: Extern{Up: "true"}}, "not among the configurations"},
		{Options{Extern: Extern{Down: "true"}}, "need --extern-up"},
		{Options{Extern: Extern{Label: "x"}}, "need --extern-up"},
		{Options{Extern: Extern{Up: "  "}}, "blank"},
		{Options{Extern: Extern{Up: "true", Label: strings.Repeat("x", maxExternLabel+1)}}, "at most"},
		{Options{Extern: Extern{Up: "true", Label: "a\tb"}}, "printable"},
	} {
		err := bad.o.defaults()
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("options %+v: error %v, want one saying %q", bad.o.Extern, err, bad.want)
		}
	}
}

func TestOneLine(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "no output"},
		{"\n \n", "no output"},
		{"no bpffs\nENOENT\n", "no bpffs | ENOENT"},
		{strings.Repeat("a", 30) + "END", "..." + strings.Repeat("a", 17) + "END"},
	} {
		if got := oneLine(c.in, 20); got != c.want {
			t.Errorf("oneLine(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// marker is a file the extern commands touch, in a directory the test
// owns (rtr shares the file system).
func marker(dir, name string) string { return filepath.Join(dir, name) }

// alive reports whether process pid runs (a zombie does not: the process
// is gone, its parent has not reaped it yet).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestExternSmoke measures an extern configuration whose up command
// attaches nothing: the kernel forwards, so the cell must have a rate and a
// router cost, and the round trips through it must come back. Up must see
// $IN and $OUT inside rtr; down must run.
func TestExternSmoke(t *testing.T) {
	name := "bext"
	requireLab(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	up, down := marker(dir, "up"), marker(dir, "down")
	r, err := Run(ctx, Options{
		Name:    name,
		Configs: []string{ConfigVeth, ConfigExtern},
		Extern: Extern{
			Up:    `ip link show dev "$IN" >/dev/null && ip link show dev "$OUT" >/dev/null && test "$(ip netns identify)" = fp-bext-rtr && touch ` + up,
			Down:  "touch " + down,
			Label: "kernel via extern",
		},
		Sizes: []int{64}, Flows: []int{1}, Repeats: 1,
		Duration: 500 * time.Millisecond, Warmup: 200 * time.Millisecond, Quick: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !exists(up) || !exists(down) {
		t.Errorf("up ran: %v, down ran: %v", exists(up), exists(down))
	}
	c := r.Cell(ConfigExtern, 64, 1)
	if c == nil || c.Failed() {
		t.Fatalf("extern cell %+v", c)
	}
	if c.Label != "kernel via extern" || r.Settings.Extern == nil || r.Settings.Extern.Label != c.Label {
		t.Errorf("label %q, settings %+v", c.Label, r.Settings.Extern)
	}
	if s := c.Samples[0]; s.RxPackets == 0 || s.RxPackets > s.TxPackets+s.TxPackets/100+genChunk {
		t.Errorf("extern sample %+v: want packets received, about no more than sent", s)
	}
	if c.RouterNs == nil || c.RouterNs.Median <= 0 {
		t.Errorf("extern router cost %+v, want a positive ns/pkt", c.RouterNs)
	} else {
		t.Logf("extern (the kernel), 64 B, 1 flow: %.2f Mpps, router %.0f ns/pkt", c.RxMpps.Median, c.RouterNs.Median)
	}
	if c.Profile != nil {
		t.Errorf("profile %+v with no XDP program on r0", c.Profile)
	}
	if len(r.TCP) != 0 {
		t.Errorf("%d bulk TCP cells, want none for extern", len(r.TCP))
	}
	if len(r.Latency) != 1 || r.Latency[0].Config != ConfigExtern || r.Latency[0].Error != "" || r.Latency[0].Idle == nil {
		t.Errorf("latency %+v", r.Latency)
	}
	if nsutil.Exists("fp-" + name + "-rtr") {
		t.Error("the lab outlived the run")
	}
}

// TestExternUpFails: an up command that fails is the configuration's FAIL
// cells with its output, not a failed run, and down runs all the same.
// Then an up command that hangs is cut short when the run is cancelled
// (Ctrl-C), and down still runs.
func TestExternUpFails(t *testing.T) {
	name := "bextf"
	requireLab(t, name)
	dir := t.TempDir()
	down := marker(dir, "down")
	opts := Options{
		Name:    name,
		Configs: []string{ConfigExtern},
		Extern: Extern{
			Up:   `echo "attaching to $IN" && echo "no such forwarder" >&2 && exit 3`,
			Down: "touch " + down,
		},
		Sizes: []int{64}, Flows: []int{1, 10}, Repeats: 1,
		Duration: 200 * time.Millisecond, Warmup: 100 * time.Millisecond, Quick: true,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Cells) != 2 {
		t.Fatalf("%d cells, want 2", len(r.Cells))
	}
	for _, c := range r.Cells {
		if !c.Failed() || !strings.Contains(c.Error, "exit status 3") || !strings.Contains(c.Error, "attaching to r0 | no such forwarder") {
			t.Errorf("cell %d flows: error %q, want the exit status and the output", c.Flows, c.Error)
		}
	}
	if len(r.Latency) != 0 {
		t.Errorf("round trips through a forwarder that did not start: %+v", r.Latency)
	}
	if !exists(down) {
		t.Error("down did not run after up failed")
	}

	os.Remove(down)
	// Up leaves a child behind, as a forwarder's daemon would: cancelling
	// must end it too, not only the shell.
	started, pidFile := marker(dir, "started"), marker(dir, "pid")
	opts.Extern.Up = "sleep 120 & echo $! > " + pidFile + " && touch " + started + " && wait"
	ctx, cancel = context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() {
		// Cancel once up is under way, as Ctrl-C would.
		for !exists(started) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond) // polling for the file, bounded by ctx
		}
		cancel()
	}()
	t0 := time.Now()
	_, err = Run(ctx, opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run returned %v", err)
	}
	if !exists(started) || !exists(down) {
		t.Errorf("up started: %v, down ran: %v", exists(started), exists(down))
	}
	if took := time.Since(t0); took > 45*time.Second {
		t.Errorf("cancelled run took %s: up was not cut short", took)
	}
	if b, err := os.ReadFile(pidFile); err != nil {
		t.Error(err)
	} else if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
		t.Error(err)
	} else if alive(pid) {
		t.Errorf("up's child %d outlived the cancelled run", pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if nsutil.Exists("fp-" + name + "-rtr") {
		t.Error("the lab outlived the run")
	}
}
