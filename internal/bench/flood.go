package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/api"
)

// The flood scenario (`fastpath bench --flood`, docs/guard.md): legitimate
// flows offloaded by fastpath (offload mode, masquerade) run at a paced
// rate while a flood of 64-byte UDP frames from many spoofed sources, each
// frame a new flow, arrives on the same interface; once with the guard off
// and once with a total new-flow limit. It measures what the legitimate
// flows keep of their rate, what the router program costs per packet under
// the flood, and how much the conntrack table grows.

// FloodOptions configure RunFlood; zero values take the defaults.
type FloodOptions struct {
	Name     string  // lab name, default "flood"
	Binary   string  // the fastpath executable run as the daemon
	Attach   string  // xdp (default) or tc
	Flows    int     // legitimate flows, default 1000
	LegitPPS float64 // their paced rate, default 200000 frames/s
	Sources  int     // flood sources, default 100000
	NewFlows int     // the guard's total new-flow limit, default 1000/s
	// Queues: r0's receive queues (and every other veth end's), default
	// 1. With 1 the flood and the legitimate flows share r0's one queue,
	// polled by one CPU; with 2 each generator's CPU receives its own
	// frames, as RSS would spread a NIC's flows.
	Queues   int
	Duration time.Duration // one measurement window, default 2s
	Log      *slog.Logger
	Progress io.Writer
}

// Flood defaults.
const (
	DefaultFloodName     = "flood"
	defaultFloodFlows    = 1000
	defaultFloodPPS      = 200_000
	defaultFloodSources  = 100_000
	defaultFloodNewFlows = 1000
	floodDport           = 9 // the flood's destination port (discard)
	floodWarmup          = 500 * time.Millisecond
	maxFloodQueues       = 8
)

// floodBase is the first flood source: the flood comes from floodBase up to
// Sources addresses on, within 198.18.0.0/15 and clear of the lab's own.
var floodBase = netip.MustParseAddr("198.18.64.0")

// FloodPhase is one measurement of the scenario.
type FloodPhase struct {
	// Router: what rtr ran, a configuration's name: offload-xdp or
	// offload-tc for the guard's phases; for the reference phases (the
	// flood alone, no legitimate flows) veth-direct (the flood counted
	// and dropped on arrival at r0: what the generator costs by itself)
	// and the plain redirect of the hook measured.
	Router string `json:"router"`
	Guard  string `json:"guard,omitempty"` // off | on (fastpath's phases)
	Flood  bool   `json:"flood"`
	// LegitMpps: packets of the legitimate flows fastpath forwarded (they
	// are offloaded; the flood never is), millions a second.
	LegitMpps float64 `json:"legit_mpps"`
	// LegitSentMpps: what the legitimate generator sent.
	LegitSentMpps float64 `json:"legit_sent_mpps"`
	// LegitShare: LegitMpps over the same guard setting's no-flood rate.
	LegitShare float64 `json:"legit_share,omitempty"`
	// FloodMpps: the flood generator's send rate. Unpaced, it is what its
	// CPU manages with the router's work on the same CPU (the frames' NAPI
	// runs where they were sent): 1000/FloodMpps ns is the CPU's time per
	// flood frame, generator and router together.
	FloodMpps float64 `json:"flood_mpps,omitempty"`
	// DeliveredMpps (reference phases): flood frames counted past the
	// router, at r0 for veth-direct, at the sink for the redirects.
	DeliveredMpps float64 `json:"delivered_mpps,omitempty"`
	// GuardDropMpps: flood packets the guard dropped.
	GuardDropMpps float64 `json:"guard_drop_mpps,omitempty"`
	// ConntrackGrowth: conntrack entries added in rtr during the window.
	ConntrackGrowth int `json:"conntrack_growth"`
	// DaemonCPU (fastpath's phases): the daemon's CPU time over the
	// window, a share of one CPU. It runs on the flood generator's CPU,
	// so the flood's rate carries it; the references run no daemon.
	DaemonCPU float64 `json:"daemon_cpu_share,omitempty"`
	// RouterNsPerRun: the router program's mean run time (BPF statistics)
	// over every packet, legitimate and flood, in a quarter window after
	// the rates' window (statistics slow every program down).
	RouterNsPerRun float64 `json:"router_ns_per_run,omitempty"`
	// Void says why the legitimate rate does not measure the router: a
	// generator's loop moved to another CPU, taking its pacing (per CPU)
	// and the receive queue its frames land on with it. The flood's
	// counts and conntrack's growth still hold.
	Void string `json:"void,omitempty"`
	// FloodVoid says why the flood's rate does not price the router: the
	// flood generator's loop moved to another CPU. Only this one voids
	// the drop's price (DropCost); Void, the legitimate share.
	FloodVoid string `json:"flood_void,omitempty"`
	Error     string `json:"error,omitempty"`
}

// FloodReport is the scenario's result.
type FloodReport struct {
	Started  time.Time    `json:"started"`
	Attach   string       `json:"attach"`
	Flows    int          `json:"flows"`
	LegitPPS float64      `json:"legit_pps"`
	Sources  int          `json:"sources"`
	NewFlows int          `json:"guard_new_flows_per_sec"`
	Queues   int          `json:"queues"`
	Duration float64      `json:"duration_sec"`
	Load     float64      `json:"load_average_after"`
	Phases   []FloodPhase `json:"phases"`
	// DropCost compares, per flood frame, the guard's drop with the plain
	// redirect's forwarding, both on the flood's CPU; nil if a phase it
	// needs is missing or void.
	DropCost *FloodDropCost `json:"drop_cost,omitempty"`
}

// FloodDropCost is the flood CPU's time per flood frame (1000/FloodMpps)
// in three phases of one run, and the router's share of each: the time
// less the generator's own (veth-direct, where the frame is counted and
// dropped on arrival). The target: the guard's share no more than
// the plain redirect's.
type FloodDropCost struct {
	GeneratorNs  float64 `json:"generator_ns"`    // veth-direct
	RedirectNs   float64 `json:"redirect_ns"`     // the plain redirect, generator included
	GuardDropNs  float64 `json:"guard_drop_ns"`   // the guard dropping, generator included
	RedirectOwn  float64 `json:"redirect_own_ns"` // RedirectNs - GeneratorNs
	GuardDropOwn float64 `json:"guard_drop_own_ns"`
	Met          bool    `json:"met"` // GuardDropNs <= RedirectNs
}

func (o *FloodOptions) defaults() error {
	if o.Name == "" {
		o.Name = DefaultFloodName
	}
	if o.Attach == "" {
		o.Attach = "xdp"
	}
	if o.Attach != "xdp" && o.Attach != "tc" {
		return fmt.Errorf("flood: attach %q: want xdp or tc", o.Attach)
	}
	if o.Flows == 0 {
		o.Flows = defaultFloodFlows
	}
	if o.LegitPPS == 0 {
		o.LegitPPS = defaultFloodPPS
	}
	if o.Sources == 0 {
		o.Sources = defaultFloodSources
	}
	if o.NewFlows == 0 {
		o.NewFlows = defaultFloodNewFlows
	}
	if o.Queues == 0 {
		o.Queues = 1
	}
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	switch {
	case o.Flows < 1 || o.Flows > MaxFlows:
		return fmt.Errorf("flood: %d legitimate flows outside 1..%d", o.Flows, MaxFlows)
	case o.Sources < 2 || o.Sources > 1<<17-1<<14:
		return fmt.Errorf("flood: %d sources outside 2..%d (198.18.64.0 on, within 198.18.0.0/15)", o.Sources, 1<<17-1<<14)
	case o.LegitPPS < 1000:
		return fmt.Errorf("flood: legitimate rate %.0f/s below 1000", o.LegitPPS)
	case o.Queues < 1 || o.Queues > maxFloodQueues:
		return fmt.Errorf("flood: %d queues outside 1..%d", o.Queues, maxFloodQueues)
	}
	return nil
}

// RunFlood builds a lab, runs the scenario with the guard off and on, and
// removes the lab.
func RunFlood(ctx context.Context, o FloodOptions) (_ *FloodReport, err error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	cpus, err := benchCPUs()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, maxRunTime)
	defer cancel()
	r := &runner{opts: Options{Binary: o.Binary, Log: o.Log}, flowEntries: flowEntries(o.Flows)}
	// The loop generator: its pacing is what keeps the legitimate rate
	// below overload, and a second one sends the flood.
	r.env, err = newEnv(ctx, o.Name, GenLoop, false, o.Queues, cpus, o.Log)
	if err != nil {
		return nil, err
	}
	runtime.GOMAXPROCS(len(cpus) + 4)
	defer runtime.SetDefaultGOMAXPROCS()
	defer r.closeEnv(&err)
	// The flood's loop runs on the other CPU: on the legitimate
	// generator's, its softirq would starve that generator's pacing
	// thread, and the legitimate rate would measure the generator.
	fl, err := newLoopGenPair(ctx, pinned{ns: r.env.lab.Gen, cpu: r.env.restCPU}, r.env.lab.GenIf, [2]string{"gf0", "gf1"})
	if err != nil {
		return nil, err
	}
	defer fl.Close()
	spec := r.env.frames(MinFrame)
	spec.from = floodBase
	if err := fl.objs.configureFlood(spec, o.Sources); err != nil {
		return nil, err
	}

	rep := &FloodReport{Started: time.Now().UTC().Truncate(time.Second), Attach: o.Attach, Flows: o.Flows,
		LegitPPS: o.LegitPPS, Sources: o.Sources, NewFlows: o.NewFlows, Queues: o.Queues, Duration: o.Duration.Seconds()}
	redirect := ConfigXDPRedirect
	if o.Attach == "tc" {
		redirect = ConfigTCRedirect
	}
	for _, name := range []string{ConfigVeth, redirect} {
		ph, err := r.floodReference(ctx, o, fl, name)
		if err != nil {
			// A reference only prices the drop: the guard's phases
			// still run, unless the run itself is over.
			ph.Error = err.Error()
			o.Log.Warn("flood reference", "config", name, "err", err)
		}
		rep.Phases = append(rep.Phases, ph)
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	for _, guard := range []bool{false, true} {
		phases, err := r.floodPhases(ctx, o, fl, guard)
		rep.Phases = append(rep.Phases, phases...)
		if err != nil {
			return rep, err
		}
	}
	if o.Queues >= 2 {
		rep.DropCost = dropCost(rep.Phases, redirect)
	}
	rep.Load = loadAverage()
	return rep, nil
}

// floodReference runs the flood alone through a reference configuration
// (no daemon, no legitimate flows) and measures the flood generator's rate
// and what arrived past the router.
func (r *runner) floodReference(ctx context.Context, o FloodOptions, fl *loopGen, name string) (FloodPhase, error) {
	ph := FloodPhase{Router: name, Flood: true}
	cfg, _ := configByName(name)
	fmt.Fprintf(o.Progress, "flood: reference %s: setting up\n", name)
	a, err := r.setup(ctx, cfg)
	if err != nil {
		return ph, err
	}
	defer func() {
		if err := a.teardown(); err != nil {
			o.Log.Warn("teardown", "err", err)
		}
	}()
	run := fl.start(ctx, o.Duration+floodWarmup+10*time.Second, 0)
	defer run.halt()
	if err := pause(ctx, run, floodWarmup); err != nil {
		return ph, err
	}
	read := func() (sent, got uint64, cpus []uint64, at time.Time, err error) {
		if cpus, err = fl.maps().sentPerCPU(); err != nil {
			return
		}
		if got, _, err = a.count.read(); err != nil {
			return
		}
		if sent, err = fl.sent(); err != nil {
			return
		}
		return sent, got, cpus, time.Now(), nil
	}
	sent0, got0, cpus0, t0, err := read()
	if err != nil {
		return ph, err
	}
	if err := pause(ctx, run, o.Duration); err != nil {
		return ph, err
	}
	sent1, got1, cpus1, t1, err := read()
	if err != nil {
		return ph, err
	}
	if off, all := offCPU(cpus0, cpus1, r.env.restCPU); off*100 > all {
		ph.FloodVoid = fmt.Sprintf("the flood generator's loop left CPU %d (%d of %d frames elsewhere)", r.env.restCPU, off, all)
	}
	ph.FloodMpps = round3(rate(sent1-sent0, t1.Sub(t0)))
	ph.DeliveredMpps = round3(rate(got1-got0, t1.Sub(t0)))
	note := ""
	if ph.FloodVoid != "" {
		note = "; void: " + ph.FloodVoid
	}
	fmt.Fprintf(o.Progress, "flood: reference %s: flood %.3f Mpps, %.3f Mpps past the router%s\n", name, ph.FloodMpps, ph.DeliveredMpps, note)
	return ph, run.halt()
}

// dropCost compares the guard's drop with the plain redirect from a run's
// phases (with a receive queue per generator: on a shared one the flood's
// CPU carries the legitimate flows too). nil without all three, or when
// in one of them the flood generator left its CPU (its rate then counts
// another CPU's time) or the router handled under 98% of the flood (a
// frame lost in a full ring costs the router nothing, and would make it
// look cheaper).
func dropCost(phases []FloodPhase, redirect string) *FloodDropCost {
	ns := map[string]float64{}
	for _, p := range phases {
		if !p.Flood || p.FloodVoid != "" || p.Error != "" || p.FloodMpps <= 0 {
			continue
		}
		switch {
		case p.Router == ConfigVeth, p.Router == redirect:
			if p.DeliveredMpps >= floodHandled*p.FloodMpps {
				ns[p.Router] = 1000 / p.FloodMpps
			}
		case p.Guard == "on":
			if p.GuardDropMpps >= floodHandled*p.FloodMpps {
				ns["guard"] = 1000 / p.FloodMpps
			}
		}
	}
	gen, okG := ns[ConfigVeth]
	red, okR := ns[redirect]
	drop, okD := ns["guard"]
	if !okG || !okR || !okD {
		return nil
	}
	return &FloodDropCost{GeneratorNs: round1(gen), RedirectNs: round1(red), GuardDropNs: round1(drop),
		RedirectOwn: round1(red - gen), GuardDropOwn: round1(drop - gen), Met: drop <= red}
}

// processCPU is the CPU time (user and system) process pid has used.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from the last ')'. utime and stime are fields 14 and 15 of the
	// whole line, in clock ticks (100 a second on Linux).
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	var ticks uint64
	for _, v := range f[11:13] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// floodHandled: the share of the flood a phase's router must have handled
// (delivered, or dropped by the guard) for its rate to price it.
const floodHandled = 0.98

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// floodPhases measures one guard setting: the legitimate flows alone, then
// with the flood.
// floodAPIWait bounds an API call during the flood: without the guard the
// flood takes the CPUs, and the daemon answers late.
const floodAPIWait = 20 * time.Second

func (r *runner) floodPhases(ctx context.Context, o FloodOptions, fl *loopGen, guard bool) ([]FloodPhase, error) {
	name := "off"
	cfg, _ := configByName(ConfigOffloadXDP)
	if o.Attach == "tc" {
		cfg, _ = configByName(ConfigOffloadTC)
	}
	guarded := cfg
	if guard {
		name = "on"
		guarded.guard = fmt.Sprintf("guard:\n  total:\n    new_flows: {rate: %d}\n", o.NewFlows)
	}
	fmt.Fprintf(o.Progress, "flood: guard %s: setting up\n", name)
	a, err := r.setup(ctx, cfg)
	if err != nil {
		return nil, err
	}
	a.d.apiWait = floodAPIWait
	defer func() {
		if err := a.teardown(); err != nil {
			o.Log.Warn("teardown", "err", err)
		}
	}()
	// The previous phase's flood left its entries (the guard off, up to
	// the table's size): flows established into a full table would miss
	// some of theirs.
	if err := conntrackFlush(r.env.lab.Rtr); err != nil {
		return nil, err
	}
	if _, err := r.establish(ctx, cfg, o.Flows); err != nil {
		return nil, fmt.Errorf("establish flows: %w", err)
	}
	// The guard comes after: the legitimate flows stand for traffic that
	// was there before the flood, not for a thousand new flows in a
	// second, which a total of that size would meter as a flood.
	if guard {
		if err := r.reconfigure(ctx, a.d, guarded); err != nil {
			return nil, err
		}
	}
	e := r.env
	if err := e.gen.configure(e.framesOf(cfg, MinFrame), o.Flows); err != nil {
		return nil, err
	}
	limit := 4*o.Duration + 4*floodWarmup + 10*time.Second
	legit := e.gen.start(ctx, limit, o.LegitPPS)
	defer legit.halt()
	if err := pause(ctx, legit, floodWarmup); err != nil {
		return nil, err
	}
	alone := r.floodWindow(ctx, a, legit, o.Duration, nil)
	alone.Router, alone.Guard = cfg.name, name
	fmt.Fprintf(o.Progress, "flood: guard %s, no flood: legit %.3f Mpps\n", name, alone.LegitMpps)

	flood := fl.start(ctx, limit, 0)
	defer flood.halt()
	if err := pause(ctx, flood, floodWarmup); err != nil {
		return []FloodPhase{alone}, err
	}
	with := r.floodWindow(ctx, a, flood, o.Duration, fl)
	with.Router, with.Guard, with.Flood = cfg.name, name, true
	if alone.Void != "" && with.Void == "" {
		with.Void = "its no-flood window: " + alone.Void
	}
	if alone.LegitMpps > 0 && with.Void == "" {
		with.LegitShare = round3(with.LegitMpps / alone.LegitMpps)
	}
	fmt.Fprintf(o.Progress, "flood: guard %s, flood %.3f Mpps: legit %.3f Mpps (%.1f%%), conntrack +%d, router %.0f ns/run, daemon %.1f%% of a CPU%s\n",
		name, with.FloodMpps, with.LegitMpps, 100*with.LegitShare, with.ConntrackGrowth, with.RouterNsPerRun, 100*with.DaemonCPU, voidNote(with))
	return []FloodPhase{alone, with}, nil
}

// floodWindow measures one window while run goes on: fastpath's forwarded
// packets on r0 (the legitimate flows), the flood generator's sends (fl,
// if flooding), the guard's drops, conntrack's growth and the router
// program's run time.
func (r *runner) floodWindow(ctx context.Context, a *active, run *running, d time.Duration, fl *loopGen) FloodPhase {
	var ph FloodPhase
	fail := func(err error) FloodPhase {
		ph.Error = err.Error()
		return ph
	}
	rtr := r.env.lab.Rtr
	// Each count with the time its call returned: under a flood the
	// daemon answers late (seconds without the guard), and a rate over
	// the window's ends instead would be off by that much. The daemon
	// reads its maps just before it answers. The local counts (the
	// generators', the daemon's CPU time) are read inside the API calls'
	// bracket: the daemon answers on the flood's CPU, and its answers
	// must not count against the flood's rate.
	type snap struct {
		fwd, drops, sent, legit uint64
		daemonCPU               time.Duration
		ct                      int
		atFwd, atDrops, atLocal time.Time
	}
	readAPI := func(s *snap) error {
		c, err := a.d.counters(ctx, r.env.lab.RtrIn)
		if err != nil {
			return err
		}
		s.fwd, s.atFwd = c.fwd, time.Now()
		cctx, cancel := a.d.callCtx(ctx)
		defer cancel()
		g, err := a.d.client.Guard(cctx, api.GuardQuery{})
		if err != nil {
			return err
		}
		s.atDrops = time.Now()
		for _, i := range g.Interfaces {
			if i.Name == r.env.lab.RtrIn {
				for _, n := range i.Dropped {
					s.drops += n
				}
			}
		}
		s.ct, err = conntrackCount(rtr)
		return err
	}
	readLocal := func(s *snap) (err error) {
		if fl != nil {
			if s.sent, err = fl.sent(); err != nil {
				return err
			}
		}
		if s.legit, err = r.env.gen.sent(); err != nil {
			return err
		}
		s.atLocal = time.Now()
		s.daemonCPU, err = processCPU(a.d.proc.PID())
		return err
	}
	// Each loop generator must stay on its CPU: its pacing is per CPU,
	// and the CPU picks the receive queue its frames land on.
	legitGen, ok := r.env.gen.(*loopGen)
	if !ok {
		return fail(fmt.Errorf("flood: %s generator, want the loop", r.env.gen.kind()))
	}
	type pinnedGen struct {
		what string
		m    *stampMaps
		cpu  int
	}
	gens := []pinnedGen{{"legitimate", legitGen.maps(), r.env.genCPU}}
	if fl != nil {
		gens = append(gens, pinnedGen{"flood", fl.maps(), r.env.restCPU})
	}
	perCPU := func() ([][]uint64, error) {
		var out [][]uint64
		for _, g := range gens {
			v, err := g.m.sentPerCPU()
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	cpus0, err := perCPU()
	if err != nil {
		return fail(err)
	}
	var r0, r1 snap
	if err := readAPI(&r0); err != nil {
		return fail(err)
	}
	if err := readLocal(&r0); err != nil {
		return fail(err)
	}
	if err := pause(ctx, run, d); err != nil {
		return fail(err)
	}
	if err := readLocal(&r1); err != nil {
		return fail(err)
	}
	if err := readAPI(&r1); err != nil {
		return fail(err)
	}
	cpus1, err := perCPU()
	if err != nil {
		return fail(err)
	}
	for i, g := range gens {
		off, all := offCPU(cpus0[i], cpus1[i], g.cpu)
		if off*100 <= all {
			continue
		}
		why := fmt.Sprintf("the %s generator's loop left CPU %d (%d of %d frames elsewhere)", g.what, g.cpu, off, all)
		if ph.Void == "" {
			ph.Void = why
		}
		if g.what == "flood" {
			ph.FloodVoid = why
		}
	}
	ph.LegitMpps = round3(rate(r1.fwd-r0.fwd, r1.atFwd.Sub(r0.atFwd)))
	ph.LegitSentMpps = round3(rate(r1.legit-r0.legit, r1.atLocal.Sub(r0.atLocal)))
	ph.FloodMpps = round3(rate(r1.sent-r0.sent, r1.atLocal.Sub(r0.atLocal)))
	ph.GuardDropMpps = round3(rate(r1.drops-r0.drops, r1.atDrops.Sub(r0.atDrops)))
	ph.ConntrackGrowth = r1.ct - r0.ct
	if w := r1.atLocal.Sub(r0.atLocal); w > 0 {
		ph.DaemonCPU = round3(float64(r1.daemonCPU-r0.daemonCPU) / float64(w))
	}
	// The router program's run time over a window of its own after the
	// rates': BPF statistics time every program's every run, the
	// generators' too, which would slow the flood and bias the rates
	// against the reference phases, measured without.
	ns, err := r.routerNsPerRun(ctx, a, run, d/4)
	if err != nil {
		return fail(err)
	}
	ph.RouterNsPerRun = ns
	return ph
}

// routerNsPerRun: the router program's mean run time over d (BPF
// statistics), every packet counted, legitimate and flood.
func (r *runner) routerNsPerRun(ctx context.Context, a *active, run *running, d time.Duration) (float64, error) {
	prog, _, err := a.routerProgram(r.env)
	if err != nil || prog == nil {
		return 0, fmt.Errorf("router program: %v", err)
	}
	defer prog.Close()
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return 0, fmt.Errorf("enable bpf stats: %w", err)
	}
	defer stats.Close()
	s0, err := prog.Stats()
	if err != nil {
		return 0, err
	}
	if err := pause(ctx, run, d); err != nil {
		return 0, err
	}
	s1, err := prog.Stats()
	if err != nil {
		return 0, err
	}
	if runs := s1.RunCount - s0.RunCount; runs > 0 {
		return round3(float64(s1.Runtime-s0.Runtime) / float64(runs)), nil
	}
	return 0, nil
}

// voidNote: why a phase's legitimate share is void, if it is.
func voidNote(p FloodPhase) string {
	if p.Void == "" {
		return ""
	}
	return "; legitimate share void: " + p.Void
}

// offCPU counts a loop generator's frames between two per-CPU reads: all
// of them, and those stamped on CPUs other than cpu.
func offCPU(before, after []uint64, cpu int) (off, all uint64) {
	for c := range min(len(before), len(after)) {
		n := after[c] - before[c]
		all += n
		if c != cpu {
			off += n
		}
	}
	return off, all
}

// configureFlood sets the generator up for the flood: every frame a new
// flow, from one of sources addresses from f.from on, to a port the
// legitimate flows do not use.
func (m *stampMaps) configureFlood(f frameSpec, sources int) error {
	if f.ipv6() {
		return errors.New("the flood's frames are IPv4 (its sources spread over IPv4 addresses)")
	}
	h, err := f.header()
	if err != nil {
		return err
	}
	frame, err := f.frame()
	if err != nil {
		return err
	}
	cfg := benchBenchGenCfg{Hdr: h, SportBase: 1024, DportBase: floodDport, Flows: uint32(sources),
		SportSpan: uint32(sources), SaddrSpan: uint32(sources)}
	if err := m.Cfg.Update(uint32(0), cfg, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("configure flood generator: %w", err)
	}
	m.frame = frame
	return nil
}

// WriteTable prints the report for people.
func (rep *FloodReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "flood: %d legitimate flows at %.0f frames/s (offload, masquerade, %s), flood of 64-byte frames from %d sources, %d receive queue(s); guard on: total new flows %d/s\n\n",
		rep.Flows, rep.LegitPPS, rep.Attach, rep.Sources, max(rep.Queues, 1), rep.NewFlows)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	var voids []string
	fmt.Fprintln(tw, "router\tguard\tflood\tlegit sent Mpps\tlegit fwd Mpps\tof no-flood\tflood Mpps\tpast router Mpps\tguard drops Mpps\tconntrack +\trouter ns/run\t")
	for _, p := range rep.Phases {
		guard := p.Guard
		if guard == "" {
			guard = "-"
		}
		if p.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t%v\terror: %s\t\t\t\t\t\t\t\t\n", p.Router, guard, p.Flood, p.Error)
			continue
		}
		if p.Guard == "" { // a reference phase: the flood alone
			flood := fmt.Sprintf("%.3f", p.FloodMpps)
			if p.FloodVoid != "" {
				flood += "*"
				voids = append(voids, fmt.Sprintf("* %s: %s", p.Router, p.FloodVoid))
			}
			fmt.Fprintf(tw, "%s\t-\t%v\t-\t-\t-\t%s\t%.3f\t-\t-\t-\t\n", p.Router, p.Flood, flood, p.DeliveredMpps)
			continue
		}
		share, flood := "-", "-"
		if p.Flood {
			share = fmt.Sprintf("%.1f%%", 100*p.LegitShare)
			flood = fmt.Sprintf("%.3f", p.FloodMpps)
		}
		if p.Void != "" {
			share = "void*"
			voids = append(voids, fmt.Sprintf("* %s, guard %s, flood %v: %s", p.Router, p.Guard, p.Flood, p.Void))
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%.3f\t%.3f\t%s\t%s\t-\t%.3f\t%d\t%.0f\t\n", p.Router, p.Guard, p.Flood, p.LegitSentMpps, p.LegitMpps, share, flood, p.GuardDropMpps, p.ConntrackGrowth, p.RouterNsPerRun)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, v := range voids {
		fmt.Fprintln(w, v)
	}
	if c := rep.DropCost; c != nil {
		verdict := "more than"
		if c.Met {
			verdict = "no more than"
		}
		fmt.Fprintf(w, "\nper flood frame on the flood's CPU: generator alone %.0f ns, plain redirect %.0f ns, guard drop %.0f ns;\nthe router's share: redirect %.0f ns, guard drop %.0f ns: the drop costs %s the redirect\n",
			c.GeneratorNs, c.RedirectNs, c.GuardDropNs, c.RedirectOwn, c.GuardDropOwn, verdict)
	} else if rep.Queues < 2 {
		fmt.Fprintln(w, "\nper flood frame: no comparison with one receive queue (the flood's CPU also carries the legitimate flows, and frames are lost in the shared ring); --flood-queues 2 prices the drop")
	} else {
		fmt.Fprintln(w, "\nper flood frame: no comparison (a phase it needs failed, is void, or lost over 2% of the flood before the router)")
	}
	_, err := fmt.Fprintf(w, "\nload average after: %.2f\n", rep.Load)
	return err
}

// SaveJSON writes the report to path.
func (rep *FloodReport) SaveJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
