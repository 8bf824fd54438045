package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/bench"
	"github.com/fastpath-router/fastpath/internal/lab"
)

func newBenchCmd(lf *logFlags, stderr io.Writer) *cobra.Command {
	var (
		o        bench.Options
		quick    bool
		noProf   bool
		perf     bool
		jsonFile string
		plotFile string
		configs  []string
		flood    floodFlags
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure forwarding rates: kernel, kernel + masquerade, fastpath",
		Long: `Build a throw-away lab (see fastpath lab), and measure in one run how many
packets per second each configuration of the router forwards:

  veth-direct   the generator straight into a counter: the wire limit
  xdp-redirect  plain XDP redirect r0 -> r1: the upper bound of any XDP router
  tc-redirect   plain TC redirect both ways, MACs rewritten: the bound of any
                TC router, and of any router on bulk TCP
  kernel        kernel forwarding, no netfilter
  kernel-masq   kernel + conntrack + nftables masquerade (the baseline)
  route-xdp     fastpath route mode, XDP        route-tc    the same, TC
  offload-xdp   fastpath offload mode with masquerade, XDP
  offload-tc    the same, TC

  offload-auto  the same, the hook chosen by attach: auto
  extern        a forwarder from elsewhere, with --extern-up (see below)

for each frame size and flow count, with the router's own cost per packet
(1/rate - 1/rate(veth-direct)). The generator is an XDP program: run with
BPF_PROG_RUN in live-frames mode where the kernel allows it, else frames
circling a veth pair inside gen that send one frame out per pass (--generator
forces one). The router's work (and the sink's counting XDP program, which
drops what arrives) runs on the generator's CPU, so every rate is what one
core does, generator included (--split gives the router a core of its own
instead). Then one bulk TCP stream per configuration with the end hosts'
offloads at their defaults and off (a stream that stalls or loses data is a
FAIL), and UDP request/response round trips, idle and while the generator
sends half the configuration's measured rate. Flows are
established through the kernel in both directions first where conntrack is
in use. Each cell is repeated and shown as the median with min..max, and as
a ratio to kernel-masq. See docs/benchmarks.md. Needs root and two CPUs;
nothing outside the lab's namespaces is changed.

--extern-up 'CMD' measures any other forwarder in the same run, as the
configuration extern (in the default set once given): CMD runs with sh -c
inside the router's namespace before its cells, --extern-down 'CMD' after
them (always, also when up failed or on Ctrl-C), with $IN and $OUT set to
the router's interfaces (r0, r1). Like kernel and route-xdp: no conntrack,
no ruleset; round trips, no bulk TCP. A failing up command fails the
configuration's cells with its output. An XDP program still on r0 or r1
after the down command is detached, and the run says so.

--checks measures what the datapath's checks of offloaded packets cost on
the hit path: the generated frames carry UDP checksums (otherwise 0, "none",
which nothing verifies), and offload-xdp and offload-tc are each measured
again with checksum verification off (nf_conntrack_checksum=0 in the
router: offload-xdp-nocsum, offload-tc-nocsum), in the rows below them.

--flood runs the guard's flood scenario instead (docs/guard.md): offloaded
flows while 64-byte frames from many spoofed sources arrive, guard off and
on, after the flood alone through veth-direct and the plain redirect, which
price the guard's drop per frame.`,
		Example: `  fastpath bench --quick
  fastpath bench --json bench.json --plot bench.png
  fastpath bench --configs kernel-masq,offload-xdp --sizes 64 --flows 1,100000
  fastpath bench --configs veth-direct,route-xdp,extern --extern-label xdp-forward \
    --extern-up 'xdp-forward load $IN $OUT' --extern-down 'xdp-forward unload $IN $OUT'
  fastpath bench --checks --configs veth-direct,offload-xdp,offload-tc --sizes 64,1500 --flows 1,1000`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := lab.ValidateName(o.Name); err != nil {
				return usageError(cmd.CommandPath(), err)
			}
			log, err := lf.logger(stderr)
			if err != nil {
				return usageError(cmd.CommandPath(), err)
			}
			if flood.on {
				return runFlood(cmd, flood, o, log, stderr, jsonFile)
			}
			if quick {
				if !cmd.Flags().Changed("sizes") {
					o.Sizes = bench.QuickSizes
				}
				if !cmd.Flags().Changed("flows") {
					o.Flows = bench.QuickFlows
				}
				if !cmd.Flags().Changed("repeats") {
					o.Repeats = bench.QuickRepeats
				}
				if !cmd.Flags().Changed("duration") {
					o.Duration = bench.QuickDuration
				}
				if !cmd.Flags().Changed("warmup") {
					o.Warmup = bench.QuickWarmup
				}
			}
			o.Quick = quick
			o.Profile = !noProf
			o.Perf = perf
			o.Configs = configs
			o.Log = log
			o.Progress = stderr
			o.Terminal = isTerminal(stderr)
			o.Version = version
			o.CommandLine = "fastpath " + strings.Join(os.Args[1:], " ")
			if err := o.Validate(); err != nil {
				return usageError(cmd.CommandPath(), err)
			}
			if est := o.Estimate(); est > 0 {
				fmt.Fprintf(stderr, "fastpath bench: about %s of measurement, plus setup\n", est.Round(time.Second))
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			rep, err := bench.Run(ctx, o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if err := rep.WriteTable(out); err != nil {
				return err
			}
			if jsonFile != "" {
				if err := rep.SaveJSON(jsonFile); err != nil {
					return err
				}
				fmt.Fprintf(out, "raw samples: %s\n", jsonFile)
			}
			if plotFile != "" {
				if err := rep.SavePlot(plotFile); err != nil {
					return err
				}
				fmt.Fprintf(out, "chart: %s\n", plotFile)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&quick, "quick", false, "a short run: 64-byte frames, 1 and 1k flows, 2 repeats of 1 s, TCP and round trips (under 2 minutes)")
	f.StringVar(&jsonFile, "json", "", "write the report with every raw sample as JSON to `FILE`")
	f.StringVar(&plotFile, "plot", "", "draw a bar chart of the results into `FILE.png`")
	f.StringSliceVar(&configs, "configs", nil, "configurations to measure, comma-separated (default all but the IPv6 FIB ones, *-xdp6 and *-xdp6-1m, which run when named; extern once --extern-up is given): "+strings.Join(bench.ConfigNames(), ", "))
	f.IntSliceVar(&o.Sizes, "sizes", bench.DefaultSizes, "frame sizes in bytes (Ethernet header to payload end)")
	f.IntSliceVar(&o.Flows, "flows", bench.DefaultFlows, "flow counts (distinct UDP 5-tuples)")
	f.IntVar(&o.Repeats, "repeats", bench.DefaultRepeats, "measurement windows per cell")
	f.DurationVar(&o.Duration, "duration", bench.DefaultDuration, "length of one measurement window")
	f.DurationVar(&o.Warmup, "warmup", bench.DefaultWarmup, "traffic before a cell's first window")
	f.StringVar(&o.Generator, "generator", bench.GenAuto, "traffic generator: auto (live frames where the kernel allows them, else loop), live, loop")
	f.BoolVar(&o.NoTCP, "no-tcp", false, "skip the bulk TCP streams (kernel-masq and offload configurations, host offloads default and off)")
	f.BoolVar(&o.NoLatency, "no-latency", false, "skip the request/response round trips (idle and under a flood at half the measured rate)")
	f.BoolVar(&o.Checks, "checks", false, "measure what the datapath's checks cost: frames carry UDP checksums, and offload-xdp and offload-tc run again without checksum verification (nf_conntrack_checksum=0), as offload-xdp-nocsum and offload-tc-nocsum")
	f.BoolVar(&o.Split, "split", false, "give the router a CPU of its own (r0's NAPI thread), the generator the other; default: one CPU does it all, generator included")
	f.BoolVar(&noProf, "no-profile", false, "skip the extra window per cell that measures the router program's ns/packet")
	f.BoolVar(&perf, "perf", false, "sample the router's CPU with perf in each cell's last window and report the top symbols (needs linux-perf)")
	f.StringVar(&o.Extern.Up, "extern-up", "", "measure another forwarder as configuration extern: `CMD` run with sh -c in the router's namespace, $IN and $OUT naming its interfaces")
	f.StringVar(&o.Extern.Down, "extern-down", "", "`CMD` that stops the extern forwarder, run after its cells whatever happened")
	f.StringVar(&o.Extern.Label, "extern-label", "", "the extern configuration's `NAME` in the tables (default \"external forwarder\")")
	f.StringVar(&o.Name, "name", bench.DefaultName, "lab name, 1 to 8 characters from a-z, 0-9 and '-'")
	lf.register(cmd)
	flood.register(cmd)
	return cmd
}

// isTerminal reports whether w is a terminal (for the progress line).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
