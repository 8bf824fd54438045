package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

func TestFloodOptions(t *testing.T) {
	var o FloodOptions
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	if o.Attach != "xdp" || o.Flows != defaultFloodFlows || o.Sources != defaultFloodSources || o.NewFlows != defaultFloodNewFlows || o.Queues != 1 {
		t.Errorf("defaults: %+v", o)
	}
	for _, bad := range []FloodOptions{
		{Attach: "xdp-generic"},
		{Sources: 1},
		{Sources: 200_000}, // beyond 198.18.0.0/15 from 198.18.64.0
		{LegitPPS: 10},
		{Flows: -1},
		{Queues: -1},
		{Queues: maxFloodQueues + 1},
	} {
		if err := bad.defaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestOffCPU(t *testing.T) {
	before, after := []uint64{10, 100, 5}, []uint64{12, 1100, 5}
	if off, all := offCPU(before, after, 1); off != 2 || all != 1002 {
		t.Errorf("offCPU on CPU 1 = %d of %d, want 2 of 1002", off, all)
	}
	if off, all := offCPU(before, after, 0); off != 1000 || all != 1002 {
		t.Errorf("offCPU on CPU 0 = %d of %d, want 1000 of 1002", off, all)
	}
}

func TestFloodTable(t *testing.T) {
	rep := &FloodReport{Attach: "xdp", Flows: 1000, LegitPPS: 200000, Sources: 100000, NewFlows: 1000, Queues: 2, Phases: []FloodPhase{
		{Router: ConfigVeth, Flood: true, FloodMpps: 2, DeliveredMpps: 1.999},
		{Router: ConfigXDPRedirect, Flood: true, FloodMpps: 1.25, DeliveredMpps: 1.2, FloodVoid: "the flood generator's loop left CPU 1"},
		{Router: ConfigOffloadXDP, Guard: "off", LegitMpps: 0.2, LegitSentMpps: 0.2},
		{Router: ConfigOffloadXDP, Guard: "off", Flood: true, LegitMpps: 0.02, LegitSentMpps: 0.2, LegitShare: 0.1, FloodMpps: 1, ConntrackGrowth: 9000},
		{Router: ConfigOffloadXDP, Guard: "on", Flood: true, Error: "boom"},
		{Router: ConfigOffloadXDP, Guard: "on", Flood: true, LegitMpps: 0.05, Void: "the legitimate generator's loop left CPU 1"},
	}}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"10.0%", "9000", "error: boom", "2 receive queue(s)", "guard on: total new flows 1000/s",
		"void*", "* offload-xdp, guard on, flood true: the legitimate generator's loop left CPU 1",
		"1.999", "1.250*", "* xdp-redirect: the flood generator's loop left CPU 1", "per flood frame: no comparison (a phase"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestDropCost(t *testing.T) {
	phases := []FloodPhase{
		{Router: ConfigVeth, Flood: true, FloodMpps: 2, DeliveredMpps: 2},              // 500 ns
		{Router: ConfigXDPRedirect, Flood: true, FloodMpps: 1.25, DeliveredMpps: 1.25}, // 800 ns
		{Router: ConfigOffloadXDP, Guard: "off", Flood: true, FloodMpps: 0.5},
		{Router: ConfigOffloadXDP, Guard: "on", LegitMpps: 0.2},
		// 1000 ns; the legitimate generator moved: that voids their
		// share, not the flood's rate
		{Router: ConfigOffloadXDP, Guard: "on", Flood: true, FloodMpps: 1, GuardDropMpps: 0.99, Void: "the legitimate generator's loop left CPU 0"},
	}
	c := dropCost(phases, ConfigXDPRedirect)
	want := FloodDropCost{GeneratorNs: 500, RedirectNs: 800, GuardDropNs: 1000, RedirectOwn: 300, GuardDropOwn: 500}
	if c == nil || *c != want {
		t.Fatalf("dropCost = %+v, want %+v", c, want)
	}
	phases[4].FloodMpps, phases[4].GuardDropMpps = 1.6, 1.6 // 625 ns: less than the redirect's 800
	if c = dropCost(phases, ConfigXDPRedirect); c == nil || !c.Met || c.GuardDropOwn != 125 {
		t.Errorf("dropCost with a cheaper drop = %+v", c)
	}
	// Frames lost before the guard (a full ring) cost it nothing: a
	// phase that handled under 98% of the flood prices nothing.
	phases[4].GuardDropMpps = 1.5
	if c = dropCost(phases, ConfigXDPRedirect); c != nil {
		t.Errorf("dropCost with 6%% of the flood lost before the guard = %+v", c)
	}
	phases[4].GuardDropMpps = 1.6
	phases[1].DeliveredMpps = 1.2
	if c = dropCost(phases, ConfigXDPRedirect); c != nil {
		t.Errorf("dropCost with 4%% of the flood lost before the sink = %+v", c)
	}
	phases[1].DeliveredMpps = 1.25
	phases[4].FloodVoid = "moved"
	if c = dropCost(phases, ConfigXDPRedirect); c != nil {
		t.Errorf("dropCost with the flood generator moved = %+v", c)
	}
	phases[4].FloodVoid = ""
	if c = dropCost(phases, ConfigTCRedirect); c != nil {
		t.Errorf("dropCost without the TC redirect's phase = %+v", c)
	}
	phases[1].FloodVoid = "moved"
	if c = dropCost(phases, ConfigXDPRedirect); c != nil {
		t.Errorf("dropCost with a void redirect phase = %+v", c)
	}
	var b bytes.Buffer
	rep := &FloodReport{Queues: 2, Phases: phases, DropCost: &want}
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "the router's share: redirect 300 ns, guard drop 500 ns: the drop costs more than the redirect") {
		t.Errorf("table lacks the drop cost:\n%s", b.String())
	}
	b.Reset()
	rep = &FloodReport{Queues: 1, Phases: phases}
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "no comparison with one receive queue") {
		t.Errorf("table with one queue lacks its reason:\n%s", b.String())
	}
}

// TestFloodPressure runs the flood scenario briefly (XDP, 100 legitimate
// flows, 100k spoofed sources): without the guard the flood reaches
// conntrack; with a total new-flow limit the guard drops a flood of ten
// times the limit or more while its pressure keeps every flood flow out
// (at most a tenth of one second's limit may slip in, where a limit alone
// admits a second's worth each second), and the offloaded flows go on.
func TestFloodPressure(t *testing.T) {
	const name = "bflood"
	requireLab(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "fastpath")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../../cmd/fastpath").CombinedOutput(); err != nil {
		t.Fatalf("build fastpath: %v\n%s", err, out)
	}
	cpus, err := processAffinity()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { restoreAffinity(cpus) })
	rep, err := RunFlood(ctx, FloodOptions{Name: name, Binary: bin, Flows: 100, Duration: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	phase := func(guard string) FloodPhase {
		for _, p := range rep.Phases {
			if p.Guard == guard && p.Flood {
				return p
			}
		}
		t.Fatalf("no flood phase with the guard %s: %+v", guard, rep.Phases)
		return FloodPhase{}
	}
	off, on := phase("off"), phase("on")
	// The references: the flood alone reached the counter at r0, and
	// went through the plain redirect to the sink.
	for _, name := range []string{ConfigVeth, ConfigXDPRedirect} {
		var ref *FloodPhase
		for i := range rep.Phases {
			if rep.Phases[i].Router == name {
				ref = &rep.Phases[i]
			}
		}
		if ref == nil || ref.Error != "" || ref.FloodMpps <= 0 || ref.DeliveredMpps <= 0 || ref.DeliveredMpps > 1.01*ref.FloodMpps {
			t.Errorf("reference %s: %+v", name, ref)
		}
	}
	t.Logf("drop cost: %+v", rep.DropCost)
	t.Logf("guard off: flood %.3f Mpps, conntrack +%d; guard on: flood %.3f Mpps, %.3f Mpps dropped, conntrack +%d, legitimate %.3f Mpps",
		off.FloodMpps, off.ConntrackGrowth, on.FloodMpps, on.GuardDropMpps, on.ConntrackGrowth, on.LegitMpps)
	if off.Error != "" || on.Error != "" {
		t.Fatalf("phase errors: off %q, on %q", off.Error, on.Error)
	}
	// The control: without the guard the flood reaches conntrack (how
	// much depends on what else the machine runs).
	if off.ConntrackGrowth <= on.ConntrackGrowth {
		t.Errorf("without the guard the flood added %d conntrack entries, with it %d: the flood did not reach the kernel", off.ConntrackGrowth, on.ConntrackGrowth)
	}
	// With it: the guard dropped a flood of new flows at ten times the
	// limit or more over the window, of which a limit alone would have
	// admitted a second's worth each second; under pressure none got in.
	if dropped := on.GuardDropMpps * 1e6 * rep.Duration; dropped < 10*float64(rep.NewFlows)*rep.Duration {
		t.Errorf("guard on: %.0f flood frames dropped in %.0f s: not a flood over a limit of %d/s", dropped, rep.Duration, rep.NewFlows)
	}
	if on.ConntrackGrowth > rep.NewFlows/10 {
		t.Errorf("with the guard the flood added %d conntrack entries (limit %d/s)", on.ConntrackGrowth, rep.NewFlows)
	}
	if on.LegitMpps <= 0 {
		t.Errorf("guard on: the offloaded flows forwarded %.3f Mpps", on.LegitMpps)
	}
	if nsutil.Exists("fp-" + name + "-rtr") {
		t.Error("the lab outlived the run")
	}
}

// TestProcessCPU: the test's own CPU time grows while it works, and a
// process that does not exist is an error.
func TestProcessCPU(t *testing.T) {
	t0, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for deadline := time.Now().Add(10 * time.Second); ; x++ {
		if x%1_000_000 == 0 {
			t1, err := processCPU(os.Getpid())
			if err != nil {
				t.Fatal(err)
			}
			if t1 >= t0+20*time.Millisecond {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("CPU time %v -> %v after 10 s of work", t0, t1)
			}
		}
	}
	if _, err := processCPU(1 << 30); err == nil {
		t.Error("a process that does not exist has a CPU time")
	}
}
