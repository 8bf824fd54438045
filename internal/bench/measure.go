package bench

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// establish sets up flows 0..n-1 through the kernel: one packet from gen
// and the sink's answer to it, per flow, so conntrack holds every flow as
// replied (SEEN_REPLY) and netfilter has accepted both directions. The
// flows go in small rounds, each waiting for its replies (the kernel path
// is far slower than the generator; a round too big would overflow the
// veth's ring), and a round that lost packets is sent again. The frames go
// from a packet socket on g0: the same frames as the generator's, whichever
// generator runs.
func (r *runner) establish(ctx context.Context, cfg config, n int) (*Establish, error) {
	e := r.env
	start := time.Now()
	// Past the table's room the rounds would fail one by one, for minutes.
	if v, err := sysctlRead(e.lab.Rtr, "net.netfilter.nf_conntrack_max"); err == nil {
		held, _ := conntrackCount(e.lab.Rtr)
		if limit, err := strconv.Atoi(v); err == nil && limit > 0 && n > limit-held {
			return nil, fmt.Errorf("%d flows do not fit in conntrack here: net.netfilter.nf_conntrack_max is %d (%d in use), which only the host's namespace can raise", n, limit, held)
		}
	}
	if err := e.sink.reflect(true); err != nil {
		return nil, err
	}
	defer e.sink.reflect(false)
	first, _, err := e.back.read()
	if err != nil {
		return nil, err
	}
	for lo := 0; lo < n; lo += establishChunk {
		cnt := min(establishChunk, n-lo)
		for attempt := 1; ; attempt++ {
			base, _, err := e.back.read()
			if err != nil {
				return nil, err
			}
			if err := e.sendFlows(cfg, lo, cnt); err != nil {
				return nil, err
			}
			got, err := waitCount(ctx, e.back, base+uint64(cnt), establishWait)
			if err != nil {
				return nil, err
			}
			if got >= base+uint64(cnt) {
				break
			}
			r.opts.Log.Debug("establish round short of replies", "flows", fmt.Sprintf("%d..%d", lo, lo+cnt-1), "replies", got-base, "attempt", attempt)
			if attempt == establishAttempts {
				return nil, fmt.Errorf("flows %d..%d: %d of %d replies came back after %d attempts",
					lo, lo+cnt-1, got-base, cnt, attempt)
			}
		}
	}
	last, _, err := e.back.read()
	if err != nil {
		return nil, err
	}
	ct, err := conntrackCount(e.lab.Rtr)
	if err != nil {
		return nil, err
	}
	est := &Establish{Flows: n, Replies: last - first, Conntrack: ct, Took: round3(time.Since(start).Seconds())}
	if ct < n {
		return est, fmt.Errorf("conntrack holds %d entries after establishing %d flows", ct, n)
	}
	r.opts.Log.Debug("flows established", "flows", n, "replies", est.Replies, "conntrack", ct, "took", time.Since(start))
	return est, nil
}

// waitCount polls c until it counted at least want packets or timeout
// passes, and returns the last count.
func waitCount(ctx context.Context, c *counter, want uint64, timeout time.Duration) (uint64, error) {
	deadline := time.Now().Add(timeout)
	for {
		got, _, err := c.read()
		if err != nil || got >= want || time.Now().After(deadline) {
			return got, err
		}
		if err := ctx.Err(); err != nil {
			return got, err
		}
	}
}

// reading is one snapshot of the counters of a measurement.
type reading struct {
	at         time.Time
	rx, rxB    uint64
	tx         uint64
	fp         ingressCounters
	fpOK       bool
	fpReadFail error
}

// read snapshots the counters. Fastpath's counters come through its API,
// which takes a while: they are read outside the timed part (before it for
// the start of a window, after it for the end), they only give the share.
func (r *runner) read(ctx context.Context, a *active, end bool) (reading, error) {
	var rd reading
	fastpath := func() {
		if a.d == nil {
			return
		}
		rd.fp, rd.fpReadFail = a.d.counters(ctx, r.env.lab.RtrIn)
		rd.fpOK = rd.fpReadFail == nil
	}
	if !end {
		fastpath()
	}
	var err error
	rd.tx, err = r.env.gen.sent()
	if err != nil {
		return rd, err
	}
	rd.rx, rd.rxB, err = a.count.read()
	rd.at = time.Now()
	if err != nil {
		return rd, err
	}
	if end {
		fastpath()
	}
	return rd, nil
}

// measure runs one cell: the generator flat out, a warmup, then Repeats
// windows of Duration, then (Profile) one window with BPF statistics on.
// autoSettle is the warmup of a cell under attach: auto, which reads where
// a veth's frames come from (the generator's come by XDP) once a second
// and moves the hook after the next read: the windows measure its choice.
const autoSettle = 2500 * time.Millisecond

func (r *runner) measure(ctx context.Context, a *active, c *Cell) {
	e, o := r.env, r.opts
	if err := e.gen.configure(e.framesOf(a.cfg, c.FrameSize), c.Flows); err != nil {
		c.Error = err.Error()
		return
	}
	limit := autoSettle + o.Warmup + time.Duration(o.Repeats)*(o.Duration+time.Second) + profileWindow + 10*time.Second
	run := e.gen.start(ctx, limit, 0)
	defer func() {
		if err := run.halt(); err != nil && c.Error == "" {
			c.Error = err.Error()
		}
	}()
	r.prog.show(c.Config, c.FrameSize, c.Flows, "warming up")
	warm := o.Warmup
	if a.d != nil && a.cfg.attach == "auto" {
		warm = max(warm, autoSettle)
	}
	if err := pause(ctx, run, warm); err != nil {
		c.Error = err.Error()
		return
	}
	if a.d != nil {
		defer func() { c.AttachedAs = a.d.attachedAs(ctx, e.lab.RtrIn) }()
	}
	for i := range o.Repeats {
		before, err := r.read(ctx, a, false)
		if err != nil {
			c.Error = err.Error()
			return
		}
		// --perf samples the last window: the state measured, BPF
		// statistics off.
		var rec *perfRecording
		if o.Perf && i == o.Repeats-1 {
			if rec, err = startPerf(ctx, e.routerCPU, o.Duration); err != nil {
				r.opts.Log.Warn("perf", "config", c.Config, "err", err)
			}
		}
		if err := pause(ctx, run, o.Duration); err != nil {
			c.Error = err.Error()
			if rec != nil {
				rec.finish(ctx)
			}
			return
		}
		if rec != nil {
			shares, err := rec.finish(ctx)
			if err != nil {
				r.opts.Log.Warn("perf", "config", c.Config, "err", err)
			}
			c.Perf = shares
		}
		after, err := r.read(ctx, a, true)
		if err != nil {
			c.Error = err.Error()
			return
		}
		s := sampleOf(before, after)
		c.Samples = append(c.Samples, s)
		r.prog.show(c.Config, c.FrameSize, c.Flows, fmt.Sprintf("repeat %d/%d: %.2f Mpps", i+1, o.Repeats, s.RxMpps))
	}
	if o.Profile {
		p, err := r.profile(ctx, a, run)
		if err != nil {
			r.opts.Log.Warn("profile", "config", c.Config, "err", err)
		}
		c.Profile = p
	}
}

func sampleOf(before, after reading) Sample {
	d := after.at.Sub(before.at)
	s := Sample{
		DurationSec: round3(d.Seconds()),
		RxPackets:   after.rx - before.rx,
		RxBytes:     after.rxB - before.rxB,
		TxPackets:   after.tx - before.tx,
	}
	s.RxMpps = round3(rate(s.RxPackets, d))
	s.RxGbps = round3(gbps(s.RxBytes, d))
	s.TxMpps = round3(rate(s.TxPackets, d))
	if before.fpOK && after.fpOK {
		s.FastpathFwd = after.fp.fwd - before.fp.fwd
		s.FastpathPass = after.fp.pass - before.fp.pass
		s.TopPassReason = topReason(before.fp, after.fp)
	}
	return s
}

// profile measures the router program's own run time per packet with the
// kernel's BPF statistics, which are on only for this window (they cost two
// clock reads per run).
func (r *runner) profile(ctx context.Context, a *active, run *running) (*Profile, error) {
	prog, name, err := a.routerProgram(r.env)
	if err != nil || prog == nil {
		return nil, err
	}
	defer prog.Close()
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enable bpf stats: %w", err)
	}
	defer stats.Close()
	s0, err := prog.Stats()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := pause(ctx, run, profileWindow); err != nil {
		return nil, err
	}
	s1, err := prog.Stats()
	if err != nil {
		return nil, err
	}
	p := &Profile{Program: name, Runs: s1.RunCount - s0.RunCount, WindowSec: round3(time.Since(t0).Seconds())}
	if p.Runs > 0 {
		p.NsPerRun = round3(float64(s1.Runtime-s0.Runtime) / float64(p.Runs))
	}
	return p, nil
}

// pause lets the generator run for d: the measurement window itself, not a
// synchronisation. It returns early if ctx ends or the generator fails.
func pause(ctx context.Context, run *running, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	return run.failed()
}

// progress shows where the run is: one line redrawn in place on a
// terminal, else a line per finished cell.
type progress struct {
	w        io.Writer
	terminal bool
	total    int
	finished int
	start    time.Time
}

func newProgress(w io.Writer, terminal bool) *progress {
	return &progress{w: w, terminal: terminal, start: time.Now()}
}

func (p *progress) prefix() string {
	return fmt.Sprintf("[%*d/%d %s]", len(fmt.Sprint(p.total)), p.finished, p.total, time.Since(p.start).Truncate(time.Second))
}

func cellName(config string, size, flows int) string {
	if size == 0 {
		if flows == 0 {
			return config
		}
		return fmt.Sprintf("%s %s flows", config, FlowsLabel(flows))
	}
	return fmt.Sprintf("%s %d B %s flows", config, size, FlowsLabel(flows))
}

// show redraws the line (terminal only).
func (p *progress) show(config string, size, flows int, what string) {
	if p.w == nil || !p.terminal {
		return
	}
	fmt.Fprintf(p.w, "\r\033[K%s %s: %s", p.prefix(), cellName(config, size, flows), what)
}

// cell records a finished cell.
func (p *progress) cell(c *Cell) {
	p.finished++
	if p.w == nil {
		return
	}
	res := fmt.Sprintf("%.2f Mpps", c.RxMpps.Median)
	if c.Failed() {
		res = "FAIL: " + c.Error
	}
	if p.terminal {
		p.show(c.Config, c.FrameSize, c.Flows, res)
		return
	}
	fmt.Fprintf(p.w, "%s %s: %s\n", p.prefix(), cellName(c.Config, c.FrameSize, c.Flows), res)
}

// line prints a finished result that is not a pps cell.
func (p *progress) line(s string) {
	if p.w == nil {
		return
	}
	if p.terminal {
		fmt.Fprintf(p.w, "\r\033[K%s %s\n", p.prefix(), s)
		return
	}
	fmt.Fprintf(p.w, "%s %s\n", p.prefix(), s)
}

// done clears the line.
func (p *progress) done() {
	if p.w != nil && p.terminal {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
