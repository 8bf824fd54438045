package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/api"
)

const (
	minTopInterval = 100 * time.Millisecond
	topReasonRows  = 5    // pass reasons shown, the biggest rates
	topFlowRows    = 10   // flows shown, the most bytes in the interval
	topFlowsFetch  = 2000 // flows fetched per frame: the largest by bytes
)

// ANSI sequences, written only when stdout is a terminal.
const (
	ansiHome        = "\x1b[H"
	ansiClearScreen = "\x1b[H\x1b[2J"
	ansiClearLine   = "\x1b[K" // from the cursor to the end of the line
	ansiClearBelow  = "\x1b[J" // from the cursor to the end of the screen
	ansiHideCursor  = "\x1b[?25l"
	ansiShowCursor  = "\x1b[?25h"
)

// topOptions are top's flags.
type topOptions struct {
	socket   string
	interval time.Duration
	count    int // frames to show; 0 until stopped
	once     bool
}

func newTopCmd() *cobra.Command {
	var (
		o    topOptions
		conn connFlags
	)
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Live view of what fastpath forwards and what goes to the kernel",
		Long: `A live view of the traffic fastpath carries, redrawn every --interval from
the daemon's counters (GET /v1/stats and /v1/flows):

  - per interface, the packets and bits per second arriving there that
    fastpath forwarded itself (FWD) and that it passed to the kernel
    (KERNEL), and OFFLOAD, the share fastpath forwarded:
    forwarded / (forwarded + passed), in packets. The headline and the
    total row sum all interfaces.
  - why packets went to the kernel, the biggest rates first
    (docs/counters.md explains each reason).
  - what the guard dropped, by reason, when it dropped anything
    (docs/guard.md).
  - the flows that moved the most bytes in the last interval, with their
    addresses as packets arrive (IN) and leave (OUT, "-" without NAT).

Rates are differences between two samples, so the first frame comes after
one interval. Bit rates count whole frames, Ethernet header included. An
interface whose counters went backwards (the daemon restarted) shows "-"
for one frame. Flows are matched between samples by protocol and arriving
addresses.

On a terminal the view is redrawn in place; into a pipe or a file, frames
follow one another. Ctrl-C or SIGTERM ends it.`,
		Example: `  fastpath top
  fastpath top --interval 5s
  fastpath top --once             # one frame, one interval's rates`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case o.interval < minTopInterval:
				return usageError(cmd.CommandPath(), fmt.Errorf("invalid --interval %v: the minimum is %v", o.interval, minTopInterval))
			case o.count < 0:
				return usageError(cmd.CommandPath(), fmt.Errorf("invalid --count %d: use 0 to run until stopped, or a positive number", o.count))
			case o.once && o.count > 1:
				return usageError(cmd.CommandPath(), errors.New("--once shows one frame; it cannot be combined with --count"))
			}
			if o.once {
				o.count = 1
			}
			c, err := conn.client()
			if err != nil {
				return err
			}
			o.socket = c.Socket()
			ctx, stop := signalContext(cmd)
			defer stop()
			out := cmd.OutOrStdout()
			return conn.explain(runTop(ctx, c, o, out, isTerminal(out) && !o.once))
		},
	}
	f := cmd.Flags()
	conn.register(cmd)
	f.DurationVar(&o.interval, "interval", time.Second, "time between frames (at least 100ms)")
	f.BoolVar(&o.once, "once", false, "print a single frame, without clearing the screen, and exit")
	f.IntVar(&o.count, "count", 0, "exit after this many frames; 0 runs until stopped")
	return cmd
}

// runTop shows frames on out until ctx ends or o.count frames are done.
// With tty, it redraws them in place and hides the cursor meanwhile.
func runTop(ctx context.Context, c *api.Client, o topOptions, out io.Writer, tty bool) error {
	if tty {
		io.WriteString(out, ansiHideCursor+ansiClearScreen+"fastpath top: sampling...\n")
		defer io.WriteString(out, ansiShowCursor)
	}
	prev, err := takeSample(ctx, c)
	if err != nil {
		return quiet(ctx, err)
	}
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for frames := 0; o.count == 0 || frames < o.count; frames++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		cur, err := takeSample(ctx, c)
		if err != nil {
			return quiet(ctx, err)
		}
		v := topView{socket: o.socket, interval: o.interval}
		if tty {
			v.width = terminalWidth(out)
		}
		frame := renderTop(v, prev, cur)
		switch {
		case tty:
			frame = ansiHome + strings.ReplaceAll(frame, "\n", ansiClearLine+"\n") + ansiClearBelow
		case frames > 0:
			frame = "\n" + frame
		}
		if _, err := io.WriteString(out, frame); err != nil {
			return err
		}
		prev = cur
	}
	return nil
}

// quiet drops err when ctx ended (Ctrl-C during a request is no failure).
func quiet(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// topSample is one reading of the daemon's counters.
type topSample struct {
	at       time.Time
	stats    *api.Stats
	flows    *api.Flows // nil if flowsErr
	flowsErr error
	guard    *api.Guard // nil if the daemon has no guard to show
}

// takeSample reads the counters. Without stats there is nothing to show;
// without flows (the daemon could not list them) the rest still is.
func takeSample(ctx context.Context, c *api.Client) (topSample, error) {
	sctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	st, err := c.Stats(sctx)
	if err != nil {
		return topSample{}, err
	}
	s := topSample{at: time.Now(), stats: st}
	// Bounded: the largest flows by bytes are the ones a live view shows.
	s.flows, s.flowsErr = c.FlowsLimit(sctx, topFlowsFetch)
	s.guard, _ = c.Guard(sctx, api.GuardQuery{}) // counters only; none from an older daemon
	return s, nil
}

// terminalWidth is w's width in columns, or 0 if unknown.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}

// topView is what a frame needs besides the samples.
type topView struct {
	socket   string
	interval time.Duration
	width    int // cut lines to this many columns; 0 leaves them whole
}

// renderTop draws one frame from two samples, prev taken before cur.
func renderTop(v topView, prev, cur topSample) string {
	var b strings.Builder
	fmt.Fprintf(&b, "fastpath top  %s  every %v  %s\n\n", cur.at.Format("15:04:05"), v.interval, v.socket)
	dt := cur.at.Sub(prev.at).Seconds()

	ifaces, total, reasons := interfaceRates(prev.stats, cur.stats, dt)
	if len(ifaces) == 0 {
		b.WriteString("no interfaces served by the datapath\n")
	} else {
		ratio, ok := total.offload()
		switch {
		case ok:
			fmt.Fprintf(&b, "offload %s: fastpath forwarded %s pkt/s, the kernel got %s pkt/s\n\n",
				percent(ratio), si(total.fwdPkts), si(total.passPkts))
		case total.known:
			b.WriteString("offload -: no packets arrived\n\n")
		default:
			b.WriteString("offload -: no rates yet (new interfaces, or the daemon restarted)\n\n")
		}
		rows := [][]string{{"INTERFACE", "FWD PKT/S", "FWD BIT/S", "KERNEL PKT/S", "KERNEL BIT/S", "OFFLOAD"}}
		for _, r := range append(ifaces, total) {
			rows = append(rows, r.cells())
		}
		writeTable(&b, rows, 1)
	}

	if len(reasons) > 0 {
		b.WriteString("\n")
		rows := [][]string{{"PASSED TO KERNEL", "PKT/S"}}
		for _, r := range reasons[:min(len(reasons), topReasonRows)] {
			rows = append(rows, []string{r.name, si(r.rate)})
		}
		writeTable(&b, rows, 1)
	}

	writeGuardRates(&b, prev.guard, cur.guard, dt)

	b.WriteString("\n")
	writeTopFlows(&b, prev, cur, dt)

	if v.width <= 0 {
		return b.String()
	}
	var out strings.Builder
	for line := range strings.Lines(b.String()) {
		out.WriteString(strings.TrimRight(cut(strings.TrimSuffix(line, "\n"), v.width), " "))
		out.WriteString("\n")
	}
	return out.String()
}

// ifaceRate is one row of the interface table, in units per second.
type ifaceRate struct {
	name                                 string
	known                                bool // false: no earlier sample, or counters reset
	fwdPkts, fwdBits, passPkts, passBits float64
}

func (r ifaceRate) offload() (float64, bool) {
	all := r.fwdPkts + r.passPkts
	if !r.known || all == 0 {
		return 0, false
	}
	return r.fwdPkts / all, true
}

func (r ifaceRate) cells() []string {
	if !r.known {
		return []string{r.name, "-", "-", "-", "-", "-"}
	}
	ratio := "-"
	if x, ok := r.offload(); ok {
		ratio = percent(x)
	}
	return []string{r.name, si(r.fwdPkts), si(r.fwdBits), si(r.passPkts), si(r.passBits), ratio}
}

type reasonRate struct {
	name string
	rate float64
}

// interfaceRates turns the counters of two samples dt seconds apart into
// rates: per interface (in cur's order), their total, and the pass reasons
// over all interfaces, biggest first (only those that occurred).
func interfaceRates(prev, cur *api.Stats, dt float64) ([]ifaceRate, ifaceRate, []reasonRate) {
	before := map[string]api.InterfaceStats{}
	if prev != nil {
		for _, i := range prev.Interfaces {
			before[i.Name] = i
		}
	}
	total := ifaceRate{name: "total"}
	byReason := map[string]float64{}
	var rows []ifaceRate
	if cur == nil {
		return rows, total, nil
	}
	for _, c := range cur.Interfaces {
		r := ifaceRate{name: c.Name}
		p, ok := before[c.Name]
		if ok && dt > 0 && !countersReset(p, c) {
			r.known = true
			r.fwdPkts = float64(c.Forwarded.Packets-p.Forwarded.Packets) / dt
			r.fwdBits = float64(c.Forwarded.Bytes-p.Forwarded.Bytes) * 8 / dt
			r.passPkts = float64(c.Passed.Packets-p.Passed.Packets) / dt
			r.passBits = float64(c.Passed.Bytes-p.Passed.Bytes) * 8 / dt
			total.known = true
			total.fwdPkts += r.fwdPkts
			total.fwdBits += r.fwdBits
			total.passPkts += r.passPkts
			total.passBits += r.passBits
			for name, n := range c.PassReasons {
				if d := n - p.PassReasons[name]; d > 0 {
					byReason[name] += float64(d) / dt
				}
			}
		}
		rows = append(rows, r)
	}
	var reasons []reasonRate
	for name, rate := range byReason {
		reasons = append(reasons, reasonRate{name, rate})
	}
	slices.SortFunc(reasons, func(a, b reasonRate) int {
		return cmp.Or(cmp.Compare(b.rate, a.rate), cmp.Compare(a.name, b.name))
	})
	return rows, total, reasons
}

// countersReset reports whether any counter of c is below p's: the
// daemon restarted between the samples.
func countersReset(p, c api.InterfaceStats) bool {
	if c.Forwarded.Packets < p.Forwarded.Packets || c.Forwarded.Bytes < p.Forwarded.Bytes ||
		c.Passed.Packets < p.Passed.Packets || c.Passed.Bytes < p.Passed.Bytes {
		return true
	}
	for name, n := range c.PassReasons {
		if n < p.PassReasons[name] {
			return true
		}
	}
	return false
}

// flowKey matches a flow between samples.
type flowKey struct {
	proto    string
	src, dst netip.AddrPort
}

func keyOf(f api.Flow) flowKey { return flowKey{f.Proto, f.In.Src, f.In.Dst} }

type flowRate struct {
	flow         api.Flow
	bytes, pkts  uint64 // in the interval
	bits, pktsPS float64
}

func writeTopFlows(b *strings.Builder, prev, cur topSample, dt float64) {
	switch {
	case cur.flowsErr != nil:
		fmt.Fprintf(b, "flows: %v\n", cur.flowsErr)
		return
	case cur.flows == nil:
		return
	case prev.flows == nil || dt <= 0:
		fmt.Fprintf(b, "TOP FLOWS: rates from the next frame (%d cached)\n", len(cur.flows.Flows))
		return
	}
	before := make(map[flowKey]api.Flow, len(prev.flows.Flows))
	for _, f := range prev.flows.Flows {
		before[keyOf(f)] = f
	}
	var moved []flowRate
	for _, f := range cur.flows.Flows {
		r := flowRate{flow: f, bytes: f.Bytes, pkts: f.Packets}
		// A flow not seen before, or whose counters restarted (evicted
		// and cached again), carries only this interval's traffic.
		if p, ok := before[keyOf(f)]; ok && f.Bytes >= p.Bytes && f.Packets >= p.Packets {
			r.bytes, r.pkts = f.Bytes-p.Bytes, f.Packets-p.Packets
		}
		if r.bytes == 0 {
			continue
		}
		r.bits, r.pktsPS = float64(r.bytes)*8/dt, float64(r.pkts)/dt
		moved = append(moved, r)
	}
	slices.SortFunc(moved, func(a, b flowRate) int {
		return cmp.Or(cmp.Compare(b.bytes, a.bytes), cmp.Compare(b.pkts, a.pkts), compareFlows(a.flow, b.flow))
	})
	n := len(cur.flows.Flows)
	if len(moved) == 0 {
		fmt.Fprintf(b, "TOP FLOWS: none of the %d cached flow%s forwarded traffic\n", n, plural(n))
		return
	}
	fmt.Fprintf(b, "TOP FLOWS by bytes: %d of %d cached flow%s forwarded traffic\n", len(moved), n, plural(n))
	rows := [][]string{{"PROTO", "IN", "OUT", "NAT", "INGRESS", "EGRESS", "BIT/S", "PKT/S"}}
	for _, r := range moved[:min(len(moved), topFlowRows)] {
		f := r.flow
		out := "-"
		if f.NAT != "" {
			out = tupleString(f.Out)
		}
		rows = append(rows, []string{orDash(f.Proto), tupleString(f.In), out, orDash(f.NAT),
			orDash(f.Ingress), orDash(f.Egress), si(r.bits), si(r.pktsPS)})
	}
	writeTable(b, rows, 6)
}

// writeTable lays rows out in columns two spaces apart: the first left
// columns aligned left, the others (numbers) right. No trailing blanks.
func writeTable(b *strings.Builder, rows [][]string, left int) {
	var widths []int
	for _, row := range rows {
		for i, c := range row {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, row := range rows {
		var line strings.Builder
		for i, c := range row {
			if i > 0 {
				line.WriteString("  ")
			}
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i < left {
				line.WriteString(c + pad)
			} else {
				line.WriteString(pad + c)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " "))
		b.WriteString("\n")
	}
}

// si formats a rate with three significant digits and an SI prefix:
// 0, 950, 1.23k, 45.6M, 789G.
func si(v float64) string {
	if v < 999.5 {
		return fmt.Sprintf("%.0f", max(v, 0))
	}
	const units = "kMGT"
	i := 0
	for v /= 1000; v >= 999.5 && i < len(units)-1; i++ {
		v /= 1000
	}
	switch {
	case v < 9.995:
		return fmt.Sprintf("%.2f%c", v, units[i])
	case v < 99.95:
		return fmt.Sprintf("%.1f%c", v, units[i])
	}
	return fmt.Sprintf("%.0f%c", v, units[i])
}

func percent(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) }

// cut shortens s to at most n runes.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}
