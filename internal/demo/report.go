package demo

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/lab"
)

// maxReasons is how many pass reasons the report lists.
const maxReasons = 3

// report is what the demo saw: the traffic checks and the counters before
// and after them.
type report struct {
	lab           *lab.Lab
	results       []result
	before, after counters
	took          time.Duration
}

// failed names the checks that failed, e.g. "tcp IPv6".
func (r report) failed() []string {
	var f []string
	for _, res := range r.results {
		if !res.ok {
			f = append(f, res.kind+" "+res.family)
		}
	}
	return f
}

// ifaceDelta is one interface's counter growth during the traffic.
type ifaceDelta struct {
	name                 string
	fwdPackets, fwdBytes uint64
	passed               uint64
	flowsAdded           uint64
}

// deltas returns per-interface growth of fastpath's counters, in the
// daemon's interface order, and the growth per pass reason over all
// interfaces.
func deltas(before, after *api.Stats) ([]ifaceDelta, map[string]uint64) {
	prev := map[string]api.InterfaceStats{}
	if before != nil {
		for _, s := range before.Interfaces {
			prev[s.Name] = s
		}
	}
	var out []ifaceDelta
	reasons := map[string]uint64{}
	if after == nil {
		return out, reasons
	}
	for _, s := range after.Interfaces {
		p := prev[s.Name]
		out = append(out, ifaceDelta{
			name:       s.Name,
			fwdPackets: sub(s.Forwarded.Packets, p.Forwarded.Packets),
			fwdBytes:   sub(s.Forwarded.Bytes, p.Forwarded.Bytes),
			passed:     sub(s.Passed.Packets, p.Passed.Packets),
			flowsAdded: sub(s.FlowsAdded, p.FlowsAdded),
		})
		for k, v := range s.PassReasons {
			reasons[k] += sub(v, p.PassReasons[k])
		}
	}
	return out, reasons
}

// sub is a-b for counters; a counter that went backwards was reset (e.g. a
// daemon restart), and then a is the growth since the reset.
func sub(a, b uint64) uint64 {
	if a < b {
		return a
	}
	return a - b
}

// topReasons returns up to n non-zero reasons, largest first.
func topReasons(m map[string]uint64, n int) []string {
	type kv struct {
		k string
		v uint64
	}
	var all []kv
	for k, v := range m {
		if v > 0 {
			all = append(all, kv{k, v})
		}
	}
	slices.SortFunc(all, func(a, b kv) int {
		if c := cmp.Compare(b.v, a.v); c != 0 {
			return c
		}
		return strings.Compare(a.k, b.k)
	})
	var out []string
	for i := 0; i < len(all) && i < n; i++ {
		out = append(out, fmt.Sprintf("%s %d", all[i].k, all[i].v))
	}
	return out
}

// share returns fastpath's share of all routed packets as a summary line.
func share(byFastpath, byKernel uint64) string {
	total := byFastpath + byKernel
	if total == 0 {
		return "no packets were routed, so there is nothing to compare"
	}
	// Rounded down: 99.99% must not read as 100.0% while the kernel did
	// forward something. Integer per-mille, so no float rounding either.
	pm := byFastpath * 1000 / total
	return fmt.Sprintf("fastpath forwarded %d.%d%% of routed packets (%d by fastpath, %d by the kernel)",
		pm/10, pm%10, byFastpath, byKernel)
}

func (r report) write(w io.Writer) {
	fmt.Fprintf(w, "\ntraffic %s -> %s\n", r.lab.Gen, r.lab.Sink)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, res := range r.results {
		verdict := "OK"
		if !res.ok {
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", res.kind, res.family, verdict, res.detail)
	}
	tw.Flush()

	ifs, reasons := deltas(r.before.stats, r.after.stats)
	k4, k6 := sub(r.after.kernel4, r.before.kernel4), sub(r.after.kernel6, r.before.kernel6)
	fmt.Fprintf(w, "\ncounters in %s during the traffic\n", r.lab.Rtr)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var fp uint64
	for _, d := range ifs {
		fp += d.fwdPackets
		fmt.Fprintf(tw, "  fastpath %s:\tforwarded %d packets / %s,\tflows offloaded %d,\tpassed to the kernel %d\n",
			d.name, d.fwdPackets, bytesString(d.fwdBytes), d.flowsAdded, d.passed)
	}
	tw.Flush()
	if top := topReasons(reasons, maxReasons); len(top) > 0 {
		fmt.Fprintf(w, "  top pass reasons: %s\n", strings.Join(top, ", "))
	}
	fmt.Fprintf(w, "  kernel forwarded: %d IPv4 + %d IPv6 datagrams\n", k4, k6)
	fmt.Fprintf(w, "\n%s\n", share(fp, k4+k6))
	if f := r.failed(); len(f) > 0 {
		fmt.Fprintf(w, "FAILED: %s (demo took %s)\n", strings.Join(f, ", "), r.took.Round(time.Millisecond))
	} else {
		fmt.Fprintf(w, "all traffic checks passed (demo took %s)\n", r.took.Round(time.Millisecond))
	}
}

func bytesString(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
