package difftest

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Header is what the comparator looks at in a delivered packet: where it
// arrived and the fields NAT, routing and the rules may rewrite.
type Header struct {
	Host       string // "sink" or "sink2": the egress the router chose
	Src, Dst   netip.Addr
	Sport      uint16 // ICMP: the echo id
	Dport      uint16
	TTL        uint8 // TTL or hop limit
	DSCP       uint8
	Fragmented bool // arrived as IPv4/IPv6 fragments
}

func (h Header) String() string {
	frag := ""
	if h.Fragmented {
		frag = " fragmented"
	}
	return fmt.Sprintf("%s %s:%d->%s:%d ttl %d dscp %d%s", h.Host, h.Src, h.Sport, h.Dst, h.Dport, h.TTL, h.DSCP, frag)
}

// Packet is the fate of one sequence number of a flow in one run.
type Packet struct {
	Sent      time.Duration // send time, relative to t0
	Delivered bool
	Arrived   time.Duration // relative to t0, if delivered
	Hdr       Header        // if delivered
}

// FlowResult is what one flow sent and what of it arrived. Packets[i] is
// the i-th packet sent at or after t0.
type FlowResult struct {
	Name    string
	Packets []Packet
	// Offloaded: fastpath had the flow in its cache at t0 (fastpath runs).
	Offloaded bool
}

// StepTimes is when a step's command ran, relative to t0.
type StepTimes struct{ Start, Done time.Duration }

// CraftResult is where a crafted packet (a Craft step) arrived, if
// anywhere: the sink hosts or gen (a reply the router sent back).
type CraftResult struct {
	Step      int // index in the script's steps
	Delivered bool
	Hdr       Header
	// Flags: a TCP packet's flags as it arrived ("" for UDP); Trailer:
	// the bytes its frame carried after the IP datagram.
	Flags   string
	Trailer int
}

// outcome is the crafted packet's fate as compared.
func (c CraftResult) outcome() string {
	if !c.Delivered {
		return "lost"
	}
	s := fmt.Sprintf("%s trailer %d", c.Hdr, c.Trailer)
	if c.Flags != "" {
		s += " flags " + c.Flags
	}
	return s
}

// Result is one run of a script.
type Result struct {
	Mode    string // "kernel", "fastpath-xdp", "fastpath-tc"
	Flows   []FlowResult
	Steps   []StepTimes
	Crafted []CraftResult // one per craft step, in step order
	// Router: how the router's counters of hostile packets grew over the
	// scripted part (scripts that craft only; zeros left out), for the
	// report; not compared.
	Router map[string]uint64
}

// Tolerances of the comparison.
const (
	// windowBefore: packets sent this long before a command starts may
	// meet the change already (they are still in flight in the router).
	// On a loaded machine packets can sit in a backlog far longer: the
	// window then starts earlier, by the largest transit time (send to
	// sink) seen in either run in latencyLookback before the command.
	windowBefore    = 20 * time.Millisecond
	latencyLookback = 500 * time.Millisecond
	// windowSlack is added after each bound: the time stamps are taken by
	// the runner, which a loaded machine may deschedule for a few ms
	// between the command returning and the clock being read.
	windowSlack = 50 * time.Millisecond
	// Isolated losses (one packet lost while both neighbours arrived) are
	// noise of a loaded machine (a full socket or veth queue), not a
	// verdict; a run may have a few more of them than the other: up to
	// noiseFixed plus noiseRatio of the packets compared.
	noiseFixed = 2
	noiseRatio = 0.02
	// While egress shaping is on, which packets the shaper lets through
	// depends on timing: the delivered counts must agree within
	// rateTolerance of the packets sent plus rateFixed.
	rateTolerance = 0.20
	rateFixed     = 5
)

// window is a span of send times in which the runs may differ, around a
// command that started at cmd (the earlier run's start). A crafted
// packet's step has none (craft: the window is empty).
type window struct {
	from, to, cmd time.Duration
	craft         bool
}

// windows are the tolerance windows of the steps: from just before the
// earlier run's command start to the later run's command end plus the
// step's effect delay and bound.
func windows(s *Script, a, b *Result) []window {
	var ws []window
	for i, st := range s.Steps {
		if i >= len(a.Steps) || i >= len(b.Steps) {
			break
		}
		if st.Craft != nil {
			ws = append(ws, window{cmd: a.Steps[i].Start, craft: true})
			continue
		}
		bound := EventBound
		if st.Bound == BoundReval {
			bound += Revalidate
		}
		start := min(a.Steps[i].Start, b.Steps[i].Start)
		before := max(windowBefore, maxTransit(s, a, start), maxTransit(s, b, start))
		ws = append(ws, window{
			cmd:  start,
			from: start - before,
			to:   max(a.Steps[i].Done, b.Steps[i].Done) + st.Effect + bound + windowSlack,
		})
	}
	return ws
}

// maxTransit is the longest time from send to arrival of a UDP or ICMP
// packet of r sent in latencyLookback before t, plus a margin of one send
// interval (TCP records are left out: their arrival is the socket's read,
// which retransmissions and the window delay).
func maxTransit(s *Script, r *Result, t time.Duration) time.Duration {
	var m time.Duration
	for _, f := range s.Flows {
		fr := flowOf(r, f.Name)
		if isTCP(f) || fr == nil {
			continue
		}
		for _, p := range fr.Packets {
			if p.Delivered && p.Sent >= t-latencyLookback && p.Sent <= t {
				m = max(m, p.Arrived-p.Sent+Interval)
			}
		}
	}
	return m
}

// shapedAt reports whether egress shaping is on at send time t (in both
// runs: a step's window counts as shaped on either side).
func shapedAt(s *Script, ws []window, t time.Duration) bool {
	on := false
	for i, st := range s.Steps {
		if st.Shape == 0 || i >= len(ws) || ws[i].craft {
			continue
		}
		if t >= ws[i].from {
			on = st.Shape > 0
		}
	}
	return on
}

func inWindow(ws []window, t time.Duration) bool {
	for _, w := range ws {
		if !w.craft && t >= w.from && t <= w.to {
			return true
		}
	}
	return false
}

// Divergence is one disagreement between the runs beyond the bounds.
type Divergence struct {
	Flow string
	What string
}

// Comparison is the outcome of Compare.
type Comparison struct {
	Divergences []Divergence
	// Report is the readable diff: per flow and step, how each run
	// behaved, and the divergences.
	Report string
}

// Compare compares run against base (the kernel alone) for script s.
func Compare(s *Script, base, run *Result) Comparison {
	var c Comparison
	var rep strings.Builder
	ws := windows(s, base, run)
	fmt.Fprintf(&rep, "script %s: %s vs %s\n", s.Name, base.Mode, run.Mode)
	for i, st := range s.Steps {
		if i < len(ws) && st.Craft != nil {
			fmt.Fprintf(&rep, "  step %d at %s (craft %s): sent at %s / %s\n", i+1, st.At, st.Craft,
				base.Steps[i].Start.Round(time.Millisecond), run.Steps[i].Start.Round(time.Millisecond))
			continue
		}
		if i < len(ws) {
			fmt.Fprintf(&rep, "  step %d at %s (%s): ran %s..%s / %s..%s, tolerance window %s..%s\n", i+1, st.At, st.Cmd,
				base.Steps[i].Start.Round(time.Millisecond), base.Steps[i].Done.Round(time.Millisecond),
				run.Steps[i].Start.Round(time.Millisecond), run.Steps[i].Done.Round(time.Millisecond),
				ws[i].from.Round(time.Millisecond), ws[i].to.Round(time.Millisecond))
		}
	}
	for _, f := range s.Flows {
		bf, rf := flowOf(base, f.Name), flowOf(run, f.Name)
		if bf == nil || rf == nil {
			c.Divergences = append(c.Divergences, Divergence{f.Name, "flow missing from a run's result"})
			continue
		}
		divs, text := compareFlow(s, f, ws, base.Mode, run.Mode, bf, rf)
		c.Divergences = append(c.Divergences, divs...)
		rep.WriteString(text)
	}
	divs, text := compareCrafted(s, base, run)
	c.Divergences = append(c.Divergences, divs...)
	rep.WriteString(text)
	if len(c.Divergences) == 0 {
		rep.WriteString("  no divergence beyond the bounds\n")
	} else {
		fmt.Fprintf(&rep, "  %d divergence(s):\n", len(c.Divergences))
		for _, d := range c.Divergences {
			fmt.Fprintf(&rep, "    flow %s: %s\n", d.Flow, d.What)
		}
	}
	c.Report = rep.String()
	return c
}

func flowOf(r *Result, name string) *FlowResult {
	for i := range r.Flows {
		if r.Flows[i].Name == name {
			return &r.Flows[i]
		}
	}
	return nil
}

// outcome is a packet's fate as compared: lost, or delivered with a header.
// The header fields that legitimately differ between runs are cleared
// here, each for its reason.
func outcome(f Flow, p Packet) string {
	if !p.Delivered {
		return "lost"
	}
	h := p.Hdr
	if isTCP(f) {
		// How TCP cuts the stream into segments depends on timing
		// (writes, ACKs), so whether a record travelled in an IP
		// fragment is not the router's decision; the other fields are.
		h.Fragmented = false
	}
	if f.Proto == "tcpconn" {
		// Connections overlap: the segment a record's header is taken
		// from may be another connection's, with its own source port.
		h.Sport = 0
	}
	return h.String()
}

// isolatedLoss: packet i is lost while both neighbours arrived.
func isolatedLoss(ps []Packet, i int) bool {
	return !ps[i].Delivered && i > 0 && i+1 < len(ps) && ps[i-1].Delivered && ps[i+1].Delivered
}

func compareFlow(s *Script, f Flow, ws []window, bmode, rmode string, b, r *FlowResult) ([]Divergence, string) {
	var rep strings.Builder
	var divs []Divergence
	fam := "IPv4"
	if f.V6 {
		fam = "IPv6"
	}
	carried := ""
	if r.Offloaded {
		carried = fmt.Sprintf(", in %s's flow cache at t0", rmode)
	}
	fmt.Fprintf(&rep, "  flow %s (%s %s, %d bytes%s):\n", f.Name, f.Proto, fam, f.Size, carried)
	n := min(len(b.Packets), len(r.Packets))
	// Per step: what each run did with the packets sent after it, and
	// when its outcome settled: the time from the command to the last
	// packet whose fate differs from the steady fate after the window.
	for i := range ws {
		if ws[i].craft {
			continue
		}
		fmt.Fprintf(&rep, "    step %d: %s %s; %s %s\n", i+1, bmode, settle(f, b.Packets, ws, i), rmode, settle(f, r.Packets, ws, i))
	}

	// Packet by packet outside the windows, in runs of equal (base, run)
	// outcomes for the report.
	type span struct {
		from, to int
		bo, ro   string
	}
	var spans []span
	var noiseB, noiseR, compared int
	shapedB, shapedR, shapedN := 0, 0, 0
	for i := 0; i < n; i++ {
		pb, pr := b.Packets[i], r.Packets[i]
		t := pb.Sent
		if inWindow(ws, t) || inWindow(ws, pr.Sent) {
			continue
		}
		if shapedAt(s, ws, t) {
			shapedN++
			if pb.Delivered {
				shapedB++
			}
			if pr.Delivered {
				shapedR++
			}
			continue
		}
		compared++
		bo, ro := outcome(f, pb), outcome(f, pr)
		if bo == ro {
			continue
		}
		// Allowed: a lost packet against a delivered one with its
		// neighbours delivered in the losing run (noise, counted below).
		// Not for TCP: it retransmits, so a lost record or connection
		// is a reset, never noise.
		if pb.Delivered != pr.Delivered && !isTCP(f) {
			if isolatedLoss(b.Packets, i) {
				noiseB++
				continue
			}
			if isolatedLoss(r.Packets, i) {
				noiseR++
				continue
			}
		}
		if k := len(spans) - 1; k >= 0 && spans[k].to == i-1 && spans[k].bo == bo && spans[k].ro == ro {
			spans[k].to = i
			continue
		}
		spans = append(spans, span{i, i, bo, ro})
	}
	for _, sp := range spans {
		what := fmt.Sprintf("packets %d..%d (sent %s..%s): %s: %s; %s: %s", sp.from, sp.to,
			b.Packets[sp.from].Sent.Round(time.Millisecond), b.Packets[sp.to].Sent.Round(time.Millisecond),
			bmode, sp.bo, rmode, sp.ro)
		divs = append(divs, Divergence{f.Name, what})
	}
	allowed := noiseFixed + int(noiseRatio*float64(compared))
	if d := noiseR - noiseB; d > allowed {
		divs = append(divs, Divergence{f.Name, fmt.Sprintf("%s lost %d isolated packets more than %s (allowed %d)", rmode, d, bmode, allowed)})
	}
	if d := noiseB - noiseR; d > allowed {
		divs = append(divs, Divergence{f.Name, fmt.Sprintf("%s lost %d isolated packets more than %s (allowed %d)", bmode, d, rmode, allowed)})
	}
	if shapedN > 0 {
		tol := rateFixed + int(rateTolerance*float64(shapedN))
		fmt.Fprintf(&rep, "    shaped: %d sent, %s delivered %d, %s %d (tolerance %d)\n", shapedN, bmode, shapedB, rmode, shapedR, tol)
		if shapedR-shapedB > tol || shapedB-shapedR > tol {
			divs = append(divs, Divergence{f.Name, fmt.Sprintf("under egress shaping %s delivered %d of %d packets, %s %d (tolerance %d)", bmode, shapedB, shapedN, rmode, shapedR, tol)})
		}
	}
	fmt.Fprintf(&rep, "    %d packets compared outside the windows; isolated losses %s %d, %s %d; %d divergent span(s)\n",
		compared, bmode, noiseB, rmode, noiseR, len(spans))
	return divs, rep.String()
}

// settle describes how a run's packets behaved around step i: the steady
// fate of the packets after its window (until the next window), and the
// send time, relative to the step's window start, of the last packet whose
// fate differed from it.
func settle(f Flow, ps []Packet, ws []window, i int) string {
	w := ws[i]
	// Until the next window that starts after this one ends (steps at
	// the same time share their packets).
	end := time.Duration(1 << 62)
	for _, n := range ws[i+1:] {
		if !n.craft && n.from > w.to {
			end = n.from
			break
		}
	}
	counts := map[string]int{}
	steady, best := "", 0
	for _, p := range ps {
		if p.Sent > w.to && p.Sent < end {
			o := outcome(f, p)
			counts[o]++
			if counts[o] > best {
				steady, best = o, counts[o]
			}
		}
	}
	if best == 0 {
		return "no packets after the window"
	}
	last := time.Duration(-1)
	for _, p := range ps {
		if p.Sent >= w.from && p.Sent < end && outcome(f, p) != steady {
			last = p.Sent
		}
	}
	if last < 0 || last < w.cmd {
		return fmt.Sprintf("%s at once", steady)
	}
	return fmt.Sprintf("%s, settled %s after the command", steady, (last - w.cmd).Round(time.Millisecond))
}

// compareCrafted compares where each crafted packet arrived: exactly, as
// a crafted packet is one packet the router must treat as the kernel
// does, with no change under way to excuse a difference.
func compareCrafted(s *Script, base, run *Result) ([]Divergence, string) {
	var rep strings.Builder
	var divs []Divergence
	find := func(r *Result, step int) (CraftResult, bool) {
		for _, c := range r.Crafted {
			if c.Step == step {
				return c, true
			}
		}
		return CraftResult{}, false
	}
	for i, st := range s.Steps {
		if st.Craft == nil {
			continue
		}
		name := fmt.Sprintf("craft %d (%s)", i+1, st.Craft)
		b, okb := find(base, i)
		r, okr := find(run, i)
		if !okb || !okr {
			divs = append(divs, Divergence{name, "missing from a run's result"})
			continue
		}
		fmt.Fprintf(&rep, "  step %d, %s: %s %s; %s %s\n", i+1, name, base.Mode, b.outcome(), run.Mode, r.outcome())
		if b.outcome() != r.outcome() {
			divs = append(divs, Divergence{name, fmt.Sprintf("%s: %s; %s: %s", base.Mode, b.outcome(), run.Mode, r.outcome())})
		}
	}
	for _, r := range []*Result{base, run} {
		if r.Router != nil {
			fmt.Fprintf(&rep, "  router counted during the script (%s): %s\n", r.Mode, countsString(r.Router))
		}
	}
	return divs, rep.String()
}

func countsString(m map[string]uint64) string {
	if len(m) == 0 {
		return "nothing"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
