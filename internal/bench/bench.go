// Package bench implements `fastpath bench`: a forwarding benchmark on its
// own lab (gen <-> rtr <-> sink, see package lab) that needs no external
// traffic tool.
//
// The generator is a tiny XDP program run with BPF_PROG_RUN in live-frames
// mode from a thread in gen: every run transmits real frames out of g0, one
// per flow in turn, at up to ~15 Mpps of 64-byte frames on one core. An XDP
// program on the sink's s0 counts what arrives and drops it. rtr is set up
// in turn as each configuration (plain XDP redirect, kernel forwarding, the
// kernel with conntrack and masquerade, fastpath in route and offload mode,
// XDP and TC); r0's receive path runs in a NAPI thread pinned to one CPU,
// the generator and everything else on the other, so each configuration's
// rate is what one core of router can forward.
//
// The rate is the sink's count over a fixed window while the generator
// runs flat out: the forwarding rate under overload. Each cell is repeated
// and reported as the median with min and max. Configurations with
// conntrack get every flow established through the kernel first, one
// exchange in each direction, so conntrack holds them as replied (and
// fastpath may offload them).
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultName is the lab name used when Options.Name is empty.
const DefaultName = "bench"

// Defaults of a full run and of a quick one.
var (
	DefaultSizes      = []int{64, 512, 1500}
	DefaultFlows      = []int{1, 1000, 100_000}
	QuickSizes        = []int{64}
	QuickFlows        = []int{1, 1000}
	DefaultRepeats    = 3
	QuickRepeats      = 2
	DefaultDuration   = 2 * time.Second
	QuickDuration     = time.Second
	DefaultWarmup     = 500 * time.Millisecond
	QuickWarmup       = 300 * time.Millisecond
	profileWindow     = 500 * time.Millisecond
	maxRunTime        = 30 * time.Minute // the whole run, whatever the options
	establishChunk    = 256              // flows per round trip while establishing
	establishWait     = 200 * time.Millisecond
	establishAttempts = 3
)

// Options configure Run. Zero values take the full run's defaults.
type Options struct {
	Name     string   // lab name, default "bench"
	Configs  []string // default all, in ConfigNames order
	Sizes    []int    // frame sizes in bytes, Ethernet header to payload end
	Flows    []int    // flow counts
	Repeats  int
	Duration time.Duration // one sample's window
	Warmup   time.Duration // traffic before the first window of a cell
	// Profile adds a window per cell with BPF run-time statistics on, to
	// report the router program's own cost per packet.
	Profile bool
	// Perf samples the router's CPU with perf during each cell's last
	// window (needs the perf tool).
	Perf bool
	// Split gives the router a CPU of its own (r0's NAPI thread), the
	// generator the other: the rate is then the router's alone, up to the
	// generator's. By default one CPU does it all, the generator included,
	// as the design's reference numbers were measured.
	Split bool
	Quick bool // recorded in the report; the caller picks the quick values
	// Generator is GenAuto (default), GenLive or GenLoop.
	Generator string
	// NoTCP skips bulk TCP, NoLatency the round-trip measurements; both run
	// through the selected configurations that route TCP and UDP both ways.
	NoTCP, NoLatency bool
	// Extern is the forwarder measured as configuration extern.
	Extern Extern
	// Checks measures what the datapath's checks of offloaded packets
	// cost: the generated frames carry UDP checksums (else 0, "none",
	// which nothing verifies), and offload-xdp and offload-tc are each
	// measured again with checksum verification off
	// (nf_conntrack_checksum=0: offload-xdp-nocsum, offload-tc-nocsum).
	Checks     bool
	tcpConfigs []string
	// Binary is the fastpath executable run as the daemon; default the
	// running executable.
	Binary string
	// Progress receives a progress line while the run goes on; nil for
	// none. Terminal: the line is redrawn in place, else one line per cell.
	Progress io.Writer
	Terminal bool
	Log      *slog.Logger
	// Version and CommandLine are recorded in the report.
	Version, CommandLine string
}

func (o *Options) defaults() error {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Perf {
		if err := PerfAvailable(); err != nil {
			return err
		}
	}
	if len(o.Configs) == 0 {
		// All of them but those measured only when named; extern where
		// its commands are given.
		for _, name := range ConfigNames() {
			if c, _ := configByName(name); !c.named && (name != ConfigExtern || o.Extern.Up != "") {
				o.Configs = append(o.Configs, name)
			}
		}
	}
	if len(o.Sizes) == 0 {
		o.Sizes = DefaultSizes
	}
	if len(o.Flows) == 0 {
		o.Flows = DefaultFlows
	}
	if o.Repeats == 0 {
		o.Repeats = DefaultRepeats
	}
	if o.Generator == "" {
		o.Generator = GenAuto
	}
	if !slices.Contains(GeneratorNames(), o.Generator) {
		return fmt.Errorf("unknown generator %q (have %s)", o.Generator, strings.Join(GeneratorNames(), ", "))
	}
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Warmup == 0 {
		o.Warmup = DefaultWarmup
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	// Run order is the table's order, whatever order they were given in.
	var ordered []string
	for _, name := range ConfigNames() {
		if slices.Contains(o.Configs, name) {
			ordered = append(ordered, name)
		}
	}
	for _, name := range o.Configs {
		if !slices.Contains(ConfigNames(), name) {
			return fmt.Errorf("unknown configuration %q (have %s; --checks adds the -nocsum ones)", name, strings.Join(ConfigNames(), ", "))
		}
	}
	o.Configs = ordered
	if err := o.Extern.validate(slices.Contains(o.Configs, ConfigExtern)); err != nil {
		return err
	}
	if o.Checks {
		o.Configs = withChecks(o.Configs)
	}
	o.tcpConfigs = nil
	for _, name := range tcpConfigNames {
		// A quick run streams through what users run (auto) and the two
		// references only.
		forced := name == ConfigOffloadXDP || name == ConfigOffloadTC
		if slices.Contains(o.Configs, name) && !o.NoTCP && !(o.Quick && forced) {
			o.tcpConfigs = append(o.tcpConfigs, name)
		}
	}
	for _, s := range o.Sizes {
		if s < MinFrame || s > MaxFrame {
			return fmt.Errorf("frame size %d outside %d..%d", s, MinFrame, MaxFrame)
		}
	}
	for _, f := range o.Flows {
		if f < 1 || f > MaxFlows {
			return fmt.Errorf("flow count %d outside 1..%d", f, MaxFlows)
		}
	}
	o.Sizes = sortedUnique(o.Sizes)
	o.Flows = sortedUnique(o.Flows)
	switch {
	case o.Repeats < 1 || o.Repeats > 100:
		return fmt.Errorf("repeats %d outside 1..100", o.Repeats)
	case o.Duration < 100*time.Millisecond || o.Duration > time.Minute:
		return fmt.Errorf("duration %s outside 100ms..1m", o.Duration)
	case o.Warmup < 0 || o.Warmup > time.Minute:
		return fmt.Errorf("warmup %s outside 0..1m", o.Warmup)
	}
	if o.Binary == "" && o.needsDaemon() {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find fastpath binary: %w", err)
		}
		o.Binary = exe
	}
	return nil
}

// Validate reports what is wrong with o, if anything (Run checks it too).
func (o Options) Validate() error { return o.defaults() }

func (o *Options) needsDaemon() bool {
	for _, name := range o.Configs {
		if c, _ := configByName(name); c.mode != "" {
			return true
		}
	}
	return false
}

func sortedUnique(vs []int) []int {
	s := slices.Clone(vs)
	slices.Sort(s)
	return slices.Compact(s)
}

// Estimate is how long a run with o takes, roughly (setup not included).
func (o Options) Estimate() time.Duration {
	if err := o.defaults(); err != nil {
		return 0
	}
	per := o.Warmup + time.Duration(o.Repeats)*o.Duration
	if o.Profile {
		per += profileWindow
	}
	tcp := time.Duration(4*len(o.tcpConfigs)) * (o.Warmup + time.Duration(tcpRepeats(o))*o.Duration)
	var lat time.Duration
	if !o.NoLatency {
		for _, name := range o.Configs {
			if c, _ := configByName(name); latencyConfig(c) {
				lat += latencyEstimate(o.Quick)
			}
		}
	}
	return time.Duration(len(o.Configs)*len(o.Sizes)*len(o.Flows))*per + tcp + lat
}

// runner holds one run's state.
type runner struct {
	opts        Options
	env         *env
	flowEntries int
	prog        *progress
	report      *Report
}

// benchCPUs checks that a bench may run here, as root with two CPUs at
// least, and returns the CPUs this process may use.
func benchCPUs() ([]int, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("bench needs root: it creates network namespaces and loads BPF programs")
	}
	cpus, err := processAffinity()
	if err != nil {
		return nil, err
	}
	if len(cpus) < 2 {
		return nil, fmt.Errorf("bench needs two CPUs, this process may use %v", cpus)
	}
	return cpus, nil
}

// closeEnv removes the bench lab, joining its failure to *err; deferred
// by Run and RunFlood.
func (r *runner) closeEnv(err *error) {
	if cerr := r.env.close(); cerr != nil {
		*err = errors.Join(*err, fmt.Errorf("remove bench lab: %w", cerr))
	}
}

// Run builds the bench lab, measures every configuration, removes the lab
// and returns the report. Cells that fail are in the report with their
// error; Run itself fails only when the lab cannot be built, or ctx ends.
func Run(ctx context.Context, o Options) (_ *Report, err error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	cpus, err := benchCPUs()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, maxRunTime)
	defer cancel()

	r := &runner{opts: o, prog: newProgress(o.Progress, o.Terminal)}
	r.flowEntries = flowEntries(slices.Max(o.Flows))
	r.report = &Report{
		Schema:   SchemaVersion,
		Started:  time.Now().UTC().Truncate(time.Second),
		Machine:  machine(len(cpus), o.Version),
		Baseline: Baseline,
		Settings: Settings{
			Configs: o.Configs, FrameSizes: o.Sizes, Flows: o.Flows, Repeats: o.Repeats,
			DurationSec: o.Duration.Seconds(), WarmupSec: o.Warmup.Seconds(), Profile: o.Profile,
			FlowEntries: r.flowEntries, Quick: o.Quick, CommandLine: o.CommandLine, Split: o.Split,
			TCPConfigs:   o.tcpConfigs,
			Extern:       externSettings(o),
			FrameDetails: "IPv4 UDP 198.18.1.1 -> 198.18.2.1, UDP checksum 0; size counts the Ethernet header, not the FCS",
			Checks:       o.Checks,
		},
	}
	if o.Checks {
		r.report.Settings.FrameDetails = "IPv4 UDP 198.18.1.1 -> 198.18.2.1, UDP checksum filled in; size counts the Ethernet header, not the FCS"
	}
	start := time.Now()
	r.env, err = newEnv(ctx, o.Name, o.Generator, o.Split, 0, cpus, o.Log)
	if err != nil {
		return nil, err
	}
	r.env.udpChecksum = o.Checks
	r.report.Settings.Generator = r.env.gen.kind()
	r.report.Machine.RouterCPU, r.report.Machine.GenCPU = r.env.routerCPU, r.env.genCPU
	// This process (and the daemons it starts) stays off the router's CPU.
	// Its goroutines pinned to the generator's CPU (the generator's, the
	// probe's) each need a processor of the runtime's: GOMAXPROCS would
	// otherwise follow the narrowed affinity down to 1.
	runtime.GOMAXPROCS(len(cpus) + 4)
	defer runtime.SetDefaultGOMAXPROCS()
	if err := pinProcess(os.Getpid(), r.env.restCPU); err != nil {
		return nil, err
	}
	defer restoreAffinity(cpus)
	defer r.closeEnv(&err)
	r.prog.total = len(o.Configs) * len(o.Sizes) * len(o.Flows)
	r.prog.start = start
	for _, name := range o.Configs {
		cfg, _ := o.configByName(name)
		if err := r.config(ctx, cfg); err != nil {
			r.prog.done()
			return nil, err
		}
	}
	if len(o.tcpConfigs) > 0 {
		if err := r.tcpPhase(ctx); err != nil {
			r.prog.done()
			return nil, err
		}
	}
	r.prog.done()
	r.report.fillCosts()
	r.report.Took = round3(time.Since(start).Seconds())
	r.report.Machine.LoadAfter = loadAverage()
	return r.report, nil
}

// flowEntries sizes fastpath's flow cache for n flows: two entries per
// connection, and LRU hash maps evict early when nearly full.
func flowEntries(n int) int {
	want := 4 * n
	size := 65536
	for size < want {
		size *= 2
	}
	return size
}

// restoreAffinity undoes the pinning, for a caller that goes on after Run
// (tests). Best effort.
func restoreAffinity(cpus []int) {
	_ = pinProcess(os.Getpid(), cpus...)
}

// config measures every cell of one configuration. A configuration that
// cannot be set up fails its cells, not the run.
func (r *runner) config(ctx context.Context, cfg config) error {
	o := r.opts
	r.prog.show(cfg.name, 0, 0, "setting up")
	a, err := r.setup(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.opts.Log.Error("configuration failed", "config", cfg.name, "err", err)
		for _, f := range o.Flows {
			for _, s := range o.Sizes {
				r.add(Cell{Config: cfg.name, Label: cfg.label, FrameSize: s, Flows: f, Error: "setup: " + firstLine(err.Error())})
			}
		}
		return nil
	}
	defer func() {
		if err := a.teardown(); err != nil {
			r.opts.Log.Warn("teardown", "config", cfg.name, "err", err)
		}
	}()
	for _, f := range o.Flows {
		var est *Establish
		var estErr error
		if cfg.conntrack {
			r.prog.show(cfg.name, 0, f, "establishing flows")
			est, estErr = r.establish(ctx, cfg, f)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		for _, s := range o.Sizes {
			c := Cell{Config: cfg.name, Label: cfg.label, FrameSize: s, Flows: f, Establish: est}
			if estErr != nil {
				c.Error = "establish flows: " + firstLine(estErr.Error())
			} else {
				r.measure(ctx, a, &c)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.finish(o.Split)
			r.add(c)
			r.prog.cell(&c)
		}
	}
	if !o.NoLatency && latencyConfig(cfg) {
		r.latency(ctx, cfg)
	}
	return ctx.Err()
}

func (r *runner) add(c Cell) { r.report.Cells = append(r.report.Cells, c) }

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// machine describes this machine for the report.
func machine(cpus int, version string) Machine {
	m := Machine{CPUs: cpus, Version: version, LoadBefore: loadAverage()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// loadAverage is the 1-minute load average (0 if unknown).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
