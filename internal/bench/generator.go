package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// Generator names (Options.Generator).
const (
	GenAuto = "auto" // live frames where the kernel allows them, else loop
	GenLive = "live" // BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES
	GenLoop = "loop" // frames circling a veth pair inside gen
)

// GeneratorNames lists the values Options.Generator takes.
func GeneratorNames() []string { return []string{GenAuto, GenLive, GenLoop} }

// source is a traffic generator: it sends frames of flows 0..flows-1 in
// turn out of gen's router-facing interface.
type source interface {
	kind() string
	configure(f frameSpec, flows int) error
	// sent is the number of frames sent since the last start.
	sent() (uint64, error)
	// start sends from flow 0 on until halted, ctx ends or limit passes;
	// pps > 0 paces it to that many frames a second, else flat out.
	start(ctx context.Context, limit time.Duration, pps float64) *running
	Close() error
}

// stampMaps are the maps both generators stamp frames from: the header and
// port plan, and the per-CPU frame counter (flow index and send count);
// and the frame they start from.
type stampMaps struct {
	Cfg   *ebpf.Map `ebpf:"bench_cfg"`
	Seq   *ebpf.Map `ebpf:"bench_seq"`
	frame []byte
}

func (m *stampMaps) configure(f frameSpec, flows int) error {
	if flows < 1 || flows > MaxFlows {
		return fmt.Errorf("flow count %d outside 1..%d", flows, MaxFlows)
	}
	h, err := f.header()
	if err != nil {
		return err
	}
	frame, err := f.frame()
	if err != nil {
		return err
	}
	cfg := benchBenchGenCfg{Hdr: h, SportBase: sportBase, DportBase: dportBase, UdpSum: f.udpSum(), Flows: uint32(flows), SportSpan: sportSpan,
		DaddrSpan: uint32(f.dsts)}
	if f.ipv6() {
		cfg.Ipv6 = 1
	}
	if err := m.Cfg.Update(uint32(0), cfg, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("configure generator: %w", err)
	}
	m.frame = frame
	return nil
}

func (m *stampMaps) resetSeq() error {
	zero := make([]uint64, ebpf.MustPossibleCPU())
	if err := m.Seq.Update(uint32(0), zero, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("reset generator counter: %w", err)
	}
	return nil
}

func (m *stampMaps) sent() (uint64, error) {
	vals, err := m.sentPerCPU()
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, v := range vals {
		n += v
	}
	return n, nil
}

// sentPerCPU: the frames stamped on each CPU, by CPU number.
func (m *stampMaps) sentPerCPU() ([]uint64, error) {
	var vals []uint64
	if err := m.Seq.Lookup(uint32(0), &vals); err != nil {
		return nil, fmt.Errorf("read generator counter: %w", err)
	}
	return vals, nil
}

// pinned is where a generator's thread runs: gen's netns, one CPU, and
// SCHED_FIFO when it carries the router's work too (one-CPU runs).
type pinned struct {
	ns  string
	cpu int
	rt  bool
}

func (p pinned) do(fn func() error) error {
	prio := uint32(0)
	if p.rt {
		prio = genPriority
	}
	return nsutil.Do(p.ns, func() error { return onCPU(p.cpu, prio, fn) })
}

// running is a generator sending in the background until halted.
type running struct {
	stop atomic.Bool
	done chan error
}

func goRun(fn func(r *running) error) *running {
	r := &running{done: make(chan error, 1)}
	go func() { r.done <- fn(r) }()
	return r
}

// halt stops the generator and returns its error, if it failed. It may
// be called again (a deferred halt after the measured one).
func (r *running) halt() error {
	r.stop.Store(true)
	err := <-r.done
	r.done <- err // kept for the next call
	return err
}

// failed returns the generator's error if it has stopped already.
func (r *running) failed() error {
	select {
	case err := <-r.done:
		r.done <- err // keep it for halt
		if err == nil {
			return errors.New("generator stopped early")
		}
		return err
	default:
		return nil
	}
}

// paceTick is how often a paced generator tops up its budget; paceAhead
// bounds the burst a late tick may cause.
const (
	paceTick  = time.Millisecond
	paceAhead = 5 * paceTick
)

// budget is how many frames a generator paced at pps should have sent by
// elapsed; MaxUint64 when it is not paced.
func budget(pps float64, elapsed time.Duration) uint64 {
	if pps <= 0 {
		return math.MaxUint64
	}
	return uint64(pps * elapsed.Seconds())
}

// nap sleeps the calling (locked, pinned) thread in the kernel: a pacing
// interval, not synchronisation. time.Sleep would park the goroutine and
// wake it through the runtime's timers on another thread, late by
// milliseconds when that thread is on another, busy CPU.
func nap(d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	for unix.Nanosleep(&ts, &ts) == unix.EINTR {
	}
}

// Live frames ---------------------------------------------------------------

// Frames per BPF_PROG_RUN call of the live generator (about 20 ms at its
// speed), and the kernel's live-frames batch.
const (
	genChunk = 1 << 18
	genBatch = 64
)

// xdpMD mirrors struct xdp_md. For BPF_PROG_RUN the kernel wants data and
// data_meta 0 and data_end the frame's length; ingress_ifindex binds the
// frames to that device, whose XDP_TX sends them.
type xdpMD struct {
	Data, DataEnd, DataMeta      uint32
	IngressIfindex, RxQueueIndex uint32
	EgressIfindex                uint32
}

// liveGen sends frames out of an interface from BPF_PROG_RUN in live
// frames mode: every frame the program returns XDP_TX for is transmitted
// by the device, as if the driver had received and bounced it. Some
// kernels refuse the mode (6.18.44 returns EPERM, even to root).
type liveGen struct {
	objs struct {
		stampMaps
		Prog *ebpf.Program `ebpf:"bench_gen"`
	}
	at      pinned
	ifindex int
}

func newLiveGen(at pinned, ifindex int) (*liveGen, error) {
	g := &liveGen{at: at, ifindex: ifindex}
	if err := load(&g.objs); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *liveGen) kind() string { return GenLive }

func (g *liveGen) Close() error {
	closeAll(g.objs.Prog, g.objs.Cfg, g.objs.Seq)
	return nil
}

func (g *liveGen) configure(f frameSpec, flows int) error { return g.objs.configure(f, flows) }

func (g *liveGen) sent() (uint64, error) { return g.objs.sent() }

func (g *liveGen) runOnce(n uint32) error {
	if g.objs.frame == nil {
		return errors.New("generator not configured")
	}
	_, err := g.objs.Prog.Run(&ebpf.RunOptions{
		Data:      g.objs.frame,
		Repeat:    n,
		Flags:     unix.BPF_F_TEST_XDP_LIVE_FRAMES,
		BatchSize: genBatch,
		Context:   xdpMD{DataEnd: uint32(len(g.objs.frame)), IngressIfindex: uint32(g.ifindex)},
	})
	if err != nil {
		return fmt.Errorf("generator: BPF_PROG_RUN of %d live frames on ifindex %d: %w", n, g.ifindex, err)
	}
	return nil
}

// probe sends one frame: whether this kernel allows live frames.
func (g *liveGen) probe() error {
	return g.at.do(func() error { return g.runOnce(1) })
}

// start sends in chunks; each is bounded, so stopping takes at most one
// chunk's time. Paced, it sends what the budget allows once per tick.
func (g *liveGen) start(ctx context.Context, limit time.Duration, pps float64) *running {
	deadline := time.Now().Add(limit)
	return goRun(func(r *running) error {
		if err := g.objs.resetSeq(); err != nil {
			return err
		}
		return g.at.do(func() error {
			t0 := time.Now()
			for !r.stop.Load() && ctx.Err() == nil && time.Now().Before(deadline) {
				n := uint64(genChunk)
				if pps > 0 {
					sent, err := g.sent()
					if err != nil {
						return err
					}
					due := min(budget(pps, time.Since(t0)), sent+budget(pps, paceAhead))
					if due <= sent {
						nap(paceTick)
						continue
					}
					n = min(n, due-sent)
				}
				if err := g.runOnce(uint32(n)); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// Loop ----------------------------------------------------------------------

// The loop's veth pair inside gen: bench_bounce on loopA returns every
// frame, bench_loop on loopB stamps it and broadcasts it to loopB (round
// again) and to gen's router-facing interface.
const (
	loopA = "gl0"
	loopB = "gl1"
)

// loopSeeds is how many frames circle at once: enough to fill NAPI
// batches (1 frame: 1.4 Mpps into the sink, 8: 1.8, 64: 2.1 here), well
// below the veth ring's 256.
const loopSeeds = 64

// loopWatch is how often an unpaced loop is checked for having died out
// (frames lost to a full ring), and seeded again.
const loopWatch = 20 * time.Millisecond

type loopGen struct {
	objs struct {
		stampMaps
		Loop   *ebpf.Program `ebpf:"bench_loop"`
		Bounce *ebpf.Program `ebpf:"bench_bounce"`
		Ctl    *ebpf.Map     `ebpf:"bench_ctl"`
		Tx     *ebpf.Map     `ebpf:"bench_loop_tx"`
	}
	at     pinned
	links  []link.Link
	inject *packetSocket // on pair[0]: its frames arrive at pair[1]
	pair   [2]string     // the loop's veth pair in gen
}

// newLoopGen creates the veth pair in at.ns and attaches the loop, sending
// out of ifname there.
func newLoopGen(ctx context.Context, at pinned, ifname string) (_ *loopGen, err error) {
	return newLoopGenPair(ctx, at, ifname, [2]string{loopA, loopB})
}

// newLoopGenPair is newLoopGen on a veth pair of the given names: a second
// generator (the flood scenario's) needs a pair of its own.
func newLoopGenPair(ctx context.Context, at pinned, ifname string, pair [2]string) (_ *loopGen, err error) {
	at.rt = false // the loop runs in softirq; its thread only watches
	g := &loopGen{at: at, pair: pair}
	if err := load(&g.objs); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	if err := g.setCtl(benchBenchLoopCtl{Stop: 1}); err != nil {
		return nil, err
	}
	err = nsutil.Do(at.ns, func() error {
		a, b, out, err := makeLoopPair(ifname, g.pair)
		if err != nil {
			return err
		}
		// Broadcast targets: the loop itself first, then the way out.
		for i, idx := range []int{b.Index, out.Index} {
			if err := g.objs.Tx.Update(uint32(i), uint32(idx), ebpf.UpdateAny); err != nil {
				return fmt.Errorf("loop devmap: %w", err)
			}
		}
		for _, x := range []struct {
			p   *ebpf.Program
			idx int
		}{{g.objs.Bounce, a.Index}, {g.objs.Loop, b.Index}} {
			l, err := link.AttachXDP(link.XDPOptions{Program: x.p, Interface: x.idx, Flags: link.XDPDriverMode})
			if err != nil {
				return fmt.Errorf("attach loop program: %w", err)
			}
			g.links = append(g.links, l)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loop generator in %s: %w", at.ns, err)
	}
	if g.inject, err = openPacketSocket(at.ns, g.pair[0]); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *loopGen) kind() string { return GenLoop }

func (g *loopGen) Close() error {
	_ = g.setCtl(benchBenchLoopCtl{Stop: 1})
	for _, l := range g.links {
		l.Close()
	}
	if g.inject != nil {
		g.inject.Close()
	}
	closeAll(g.objs.Loop, g.objs.Bounce, g.objs.Ctl, g.objs.Tx, g.objs.Cfg, g.objs.Seq)
	// The pair goes with gen's namespace; remove it now all the same.
	_ = nsutil.Do(g.at.ns, func() error {
		l, err := netlink.LinkByName(g.pair[0])
		if err != nil {
			return err
		}
		return netlink.LinkDel(l)
	})
	return nil
}

func (g *loopGen) setCtl(c benchBenchLoopCtl) error {
	if err := g.objs.Ctl.Update(uint32(0), c, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("loop generator control: %w", err)
	}
	return nil
}

func (g *loopGen) configure(f frameSpec, flows int) error { return g.objs.configure(f, flows) }

func (g *loopGen) sent() (uint64, error) { return g.objs.sent() }

func (g *loopGen) maps() *stampMaps { return &g.objs.stampMaps }

// seed injects frames into the loop from the calling thread: the loop's
// softirq work then runs on that thread's CPU.
func (g *loopGen) seed(n int) error {
	for range n {
		if err := g.inject.send(g.objs.frame); err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				return nil // the socket's queue is full: enough circle already
			}
			return fmt.Errorf("seed loop generator: %w", err)
		}
	}
	return nil
}

// start seeds the loop and watches it: an unpaced loop that died out is
// seeded again; a paced one gets its frame limit raised every tick (it dies
// out at the limit, costing nothing until the next tick).
func (g *loopGen) start(ctx context.Context, limit time.Duration, pps float64) *running {
	return goRun(func(r *running) error {
		if g.objs.frame == nil {
			return errors.New("generator not configured")
		}
		if err := g.objs.resetSeq(); err != nil {
			return err
		}
		defer g.setCtl(benchBenchLoopCtl{Stop: 1})
		t0 := time.Now()
		deadline := t0.Add(limit)
		ctl := benchBenchLoopCtl{Limit: budget(pps, 0), DeadlineNs: monotonicNs() + uint64(limit)}
		if pps > 0 {
			ctl.Limit = 1 // the seeds' worth: one tick's budget follows
		}
		if err := g.setCtl(ctl); err != nil {
			return err
		}
		return g.at.do(func() error {
			tick := loopWatch
			if pps > 0 {
				tick = paceTick
			}
			last := uint64(0) // nothing sent yet: the first tick seeds
			dead := 0
			for !r.stop.Load() && ctx.Err() == nil && time.Now().Before(deadline) {
				sent, err := g.sent()
				if err != nil {
					return err
				}
				// Paced, the loop dies out at each limit: it needs seeds
				// whenever it reached the last one.
				died := sent == last || (pps > 0 && sent >= ctl.Limit)
				if pps > 0 {
					// A late tick does not turn into a long burst: at most
					// paceAhead ahead of what went out.
					ctl.Limit = min(budget(pps, time.Since(t0)), sent+budget(pps, paceAhead))
					if err := g.setCtl(ctl); err != nil {
						return err
					}
				}
				if died && sent < ctl.Limit {
					if dead++; pps <= 0 && dead > 50 {
						return errors.New("loop generator: frames stopped circling")
					}
					if err := g.seed(loopSeeds); err != nil {
						return err
					}
				} else {
					dead = 0
				}
				last = sent
				nap(tick) // the loop runs in softirq; this thread only watches
			}
			return nil
		})
	})
}

// monotonicNs is CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
func monotonicNs() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// newSource makes the generator kind asks for, sending out of ifname
// (ifindex) in at.ns. auto tries live frames with one frame of probe and
// falls back to the loop when the kernel refuses them.
func newSource(ctx context.Context, kind string, at pinned, ifname string, ifindex int, probe frameSpec, log *slog.Logger) (source, error) {
	switch kind {
	case GenLoop:
		return newLoopGen(ctx, at, ifname)
	case GenLive, GenAuto:
		g, err := newLiveGen(at, ifindex)
		if err != nil {
			return nil, err
		}
		if err := g.configure(probe, 1); err != nil {
			g.Close()
			return nil, err
		}
		perr := g.probe()
		if perr == nil {
			return g, nil
		}
		g.Close()
		if kind == GenLive {
			return nil, fmt.Errorf("live-frames generator unavailable on this kernel: %w (use --generator loop)", perr)
		}
		log.Info("the kernel refuses live frames: using the loop generator", "err", perr)
		return newLoopGen(ctx, at, ifname)
	}
	return nil, fmt.Errorf("unknown generator %q (have %s)", kind, strings.Join(GeneratorNames(), ", "))
}

// makeLoopPair creates the loop's veth pair in the calling thread's netns
// and returns its two ends and the way out.
func makeLoopPair(out string, pair [2]string) (a, b, o *net.Interface, err error) {
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: pair[0], MTU: 1500}, PeerName: pair[1]}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, nil, nil, fmt.Errorf("add veth %s/%s: %w", pair[0], pair[1], err)
	}
	for _, name := range pair {
		l, err := netlink.LinkByName(name)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("set %s up: %w", name, err)
		}
	}
	if a, err = net.InterfaceByName(pair[0]); err != nil {
		return nil, nil, nil, err
	}
	if b, err = net.InterfaceByName(pair[1]); err != nil {
		return nil, nil, nil, err
	}
	if o, err = net.InterfaceByName(out); err != nil {
		return nil, nil, nil, err
	}
	return a, b, o, nil
}

// packetSocket sends whole Ethernet frames out of one interface.
type packetSocket struct {
	fd   int
	addr unix.SockaddrLinklayer
}

// openPacketSocket opens a send-only packet socket on ifname in ns.
func openPacketSocket(ns, ifname string) (*packetSocket, error) {
	s := &packetSocket{fd: -1}
	err := nsutil.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		// Protocol 0: the socket receives nothing.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		s.fd = fd
		s.addr = unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: htons(unix.ETH_P_IP)}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("packet socket on %s in %s: %w", ifname, ns, err)
	}
	return s, nil
}

func (s *packetSocket) send(frame []byte) error { return unix.Sendto(s.fd, frame, 0, &s.addr) }

func (s *packetSocket) Close() error { return unix.Close(s.fd) }

func htons(v uint16) uint16 { return v<<8 | v>>8 }
