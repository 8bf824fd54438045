package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// Latency: UDP request/response round trips gen -> sink -> gen through the
// router, one at a time, idle and while the generator floods the same
// router at half the rate this configuration was measured to forward. The
// counters on g0 and s0 let the probe's port through to the stack.

// latPort is the probe's UDP port on both ends (the counters pass it).
const latPort = 6999

// Probe sizes: round trips per measurement (a full run, a quick one), the
// exchanges before it (conntrack, then fastpath, take the flow over), and
// how long one reply may take before it counts as lost.
const (
	latSamples      = 5000
	latSamplesQuick = 2000
	latWarmup       = 200
	latTimeout      = 100 * time.Millisecond
	latLoadShare    = 0.5
)

// RTT summarises round trips in microseconds.
type RTT struct {
	Samples int     `json:"samples"`
	Lost    int     `json:"lost"`
	P50     float64 `json:"p50_us"`
	P99     float64 `json:"p99_us"`
	P999    float64 `json:"p999_us"`
	Max     float64 `json:"max_us"`
}

// LatencyCell is one configuration's round trips.
type LatencyCell struct {
	Config string `json:"config"`
	Label  string `json:"label"`
	Idle   *RTT   `json:"idle,omitempty"`
	// Loaded is measured while the generator sends LoadMpps, half of the
	// configuration's median rate at the smallest frame and flow count.
	Loaded   *RTT    `json:"loaded,omitempty"`
	LoadMpps float64 `json:"load_mpps,omitempty"`
	// SentMpps is what the generator actually sent meanwhile.
	SentMpps float64 `json:"sent_mpps,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// latencyEstimate is roughly how long one configuration's round trips take:
// warmup, idle and loaded, each a round trip plus the gap.
func latencyEstimate(quick bool) time.Duration {
	n := latSamples
	if quick {
		n = latSamplesQuick
	}
	return time.Duration(latWarmup+2*n) * (probeGap + 50*time.Microsecond)
}

// latencyConfig reports whether cfg routes the probe both ways: the plain
// redirect sends frames on unchanged (the sink's stack drops them, they
// still carry r0's MAC) and veth-direct has no router.
func latencyConfig(cfg config) bool {
	return !cfg.veth && !cfg.redirect && !cfg.tcRedirect && !cfg.noChecksum && !cfg.ipv6
}

// latency measures cfg's round trips; the flood rate comes from its cell at
// the smallest frame size and flow count.
func (r *runner) latency(ctx context.Context, cfg config) {
	e, o := r.env, r.opts
	lc := LatencyCell{Config: cfg.name, Label: cfg.label}
	defer func() {
		r.report.Latency = append(r.report.Latency, lc)
		res := "FAIL: " + lc.Error
		if lc.Error == "" {
			res = fmt.Sprintf("idle p50 %.0f us p99 %.0f us", lc.Idle.P50, lc.Idle.P99)
			if lc.Loaded != nil {
				res += fmt.Sprintf("; at %.2f Mpps (sent %.2f) p50 %.0f us p99 %.0f us", lc.LoadMpps, lc.SentMpps, lc.Loaded.P50, lc.Loaded.P99)
			}
		}
		r.prog.line(fmt.Sprintf("latency %s: %s", cfg.name, res))
	}()
	n := latSamples
	if o.Quick {
		n = latSamplesQuick
	}
	p, err := e.openProbe()
	if err != nil {
		lc.Error = err.Error()
		return
	}
	defer p.Close()
	r.prog.show("latency "+cfg.name, 0, 0, "idle")
	if _, err := p.run(latWarmup); err != nil {
		lc.Error = "warmup: " + err.Error()
		return
	}
	if lc.Idle, err = p.run(n); err != nil {
		lc.Error = err.Error()
		return
	}
	size, flows := o.Sizes[0], o.Flows[0]
	c := r.report.Cell(cfg.name, size, flows)
	if c == nil || c.Failed() {
		return // no measured maximum to take half of
	}
	lc.LoadMpps = round3(latLoadShare * c.RxMpps.Median)
	if err := e.gen.configure(e.frames(size), flows); err != nil {
		lc.Error = err.Error()
		return
	}
	r.prog.show("latency "+cfg.name, 0, 0, fmt.Sprintf("at %.2f Mpps", lc.LoadMpps))
	run := e.gen.start(ctx, time.Minute, lc.LoadMpps*1e6)
	t0 := time.Now()
	loaded, err := p.run(n)
	if sent, serr := e.gen.sent(); serr == nil {
		lc.SentMpps = round3(rate(sent, time.Since(t0)))
	}
	if herr := run.halt(); err == nil && herr != nil {
		err = fmt.Errorf("generator: %w", herr)
	}
	if err != nil {
		lc.Error = "under load: " + err.Error()
		return
	}
	lc.Loaded = loaded
}

// probe is the round-trip client in gen and its echo server in sink, both
// on the generator's CPU: the probe's packets then wait behind the flood's
// for the same CPU, as they would on a loaded router. Both run on threads
// of their own blocked in the kernel (not Go's netpoller, whose wake-ups go
// through another thread and CPU), so what the round trips show is the
// packets' wait more than the probe's. (Not SCHED_FIFO: a realtime Go
// thread spinning for the runtime's processor can starve the one holding
// it on the same CPU.)
type probe struct {
	cpu    int
	client int // UDP sockets
	server int
	stop   atomic.Bool
	done   chan struct{}
}

// probeSocket opens a blocking UDP socket in ns bound to local:port,
// connected to remote:port when remote is valid, with receive and send
// timeout t.
func probeSocket(ns string, local, remote netip.Addr, port int, t time.Duration) (int, error) {
	fd := -1
	err := nsutil.Do(ns, func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(t.Nanoseconds())
		for _, opt := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} {
			if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
				return err
			}
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: local.As4(), Port: port}); err != nil {
			return err
		}
		if remote.IsValid() {
			return unix.Connect(fd, &unix.SockaddrInet4{Addr: remote.As4(), Port: port})
		}
		return nil
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("probe socket in %s: %w", ns, err)
	}
	return fd, nil
}

// echoPoll bounds how long the server takes to notice Close.
const echoPoll = 50 * time.Millisecond

func (e *env) openProbe() (_ *probe, err error) {
	p := &probe{cpu: e.genCPU, done: make(chan struct{})}
	// The server answers whoever asked: behind masquerade that is the
	// router's address, not gen's.
	if p.server, err = probeSocket(e.lab.Sink, e.lab.SinkAddr4, netip.Addr{}, latPort, echoPoll); err != nil {
		return nil, err
	}
	if p.client, err = probeSocket(e.lab.Gen, e.lab.GenAddr4, e.lab.SinkAddr4, latPort, latTimeout); err != nil {
		unix.Close(p.server)
		return nil, err
	}
	go p.echo()
	return p, nil
}

func (p *probe) Close() error {
	p.stop.Store(true)
	<-p.done
	unix.Close(p.server)
	unix.Close(p.client)
	return nil
}

// echo answers every request until Close.
func (p *probe) echo() {
	defer close(p.done)
	_ = onCPU(p.cpu, 0, func() error {
		buf := make([]byte, 64)
		for !p.stop.Load() {
			n, from, err := unix.Recvfrom(p.server, buf, 0)
			if err != nil {
				continue // timeout (look at stop again) or a signal
			}
			_ = unix.Sendto(p.server, buf[:n], 0, from)
		}
		return nil
	})
}

// probeGap is the pause between round trips: a probe that asked back to
// back would take the CPU it shares with the generator and the router.
const probeGap = 200 * time.Microsecond

// latGiveUp: when this many first requests all go unanswered, the path is
// broken; the rest are not tried.
const latGiveUp = 20

// run makes n round trips, one at a time.
func (p *probe) run(n int) (*RTT, error) {
	var rtts []time.Duration
	lost := 0
	err := onCPU(p.cpu, 0, func() error {
		req := make([]byte, 18) // a 64-byte frame
		buf := make([]byte, 64)
		for i := range n {
			binary.BigEndian.PutUint64(req, uint64(i))
			t0 := time.Now()
			if _, err := unix.Write(p.client, req); err != nil && !errors.Is(err, unix.ECONNREFUSED) {
				return fmt.Errorf("send request: %w", err)
			}
			for {
				m, err := unix.Read(p.client, buf)
				if errors.Is(err, unix.EAGAIN) || time.Since(t0) > latTimeout {
					if lost++; lost == latGiveUp && len(rtts) == 0 {
						return fmt.Errorf("the first %d requests went unanswered", lost)
					}
					if lost > n/10 {
						return fmt.Errorf("%d of %d requests went unanswered", lost, i+1)
					}
					break
				}
				if err != nil {
					if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNREFUSED) {
						continue
					}
					return fmt.Errorf("read reply: %w", err)
				}
				if m == len(req) && binary.BigEndian.Uint64(buf) == uint64(i) {
					rtts = append(rtts, time.Since(t0))
					break
				}
			}
			nap(probeGap)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(rtts) == 0 {
		return nil, fmt.Errorf("all %d requests lost", n)
	}
	slices.Sort(rtts)
	at := func(q float64) float64 {
		return round3(float64(rtts[int(q*float64(len(rtts)-1))].Nanoseconds()) / 1e3)
	}
	return &RTT{Samples: len(rtts), Lost: lost, P50: at(0.5), P99: at(0.99), P999: at(0.999), Max: at(1)}, nil
}

// onCPU runs fn on a thread pinned to cpu, SCHED_FIFO at prio (0: the
// normal policy).
func onCPU(cpu int, prio uint32, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		return err
	}
	var one unix.CPUSet
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return fmt.Errorf("pin to cpu %d: %w", cpu, err)
	}
	defer unix.SchedSetaffinity(0, &orig)
	if prio > 0 {
		if err := makeRealtime(0, prio); err != nil {
			return err
		}
		defer unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}, 0)
	}
	return fn()
}
