package datapath

// Micro-benchmarks of the datapath through BPF_PROG_RUN: ns per packet of
// fp_xdp and fp_tc on the paths a packet can take (a guard that passes it to
// the kernel, a route-mode FIB forward, an offload cache hit, an offload
// miss that asks conntrack), with the FIB and the flow cache scaled.
//
//	go test -run '^$' -bench . -benchtime 2s ./internal/datapath
//	go test -run '^$' -bench 'Offload/xdp/hit' ./internal/datapath
//
// Frames that go to the kernel are left untouched, so BPF_PROG_RUN can
// repeat them as they are. Frames that are forwarded are edited in place
// (MACs, TTL, NAT), and the test run reuses its buffer across repeats:
// those benchmarks run the program under a replay wrapper
// (internal/bench/replay) that restores the headers before every run and
// steps a 32-bit field through the flows or routes being cycled. Its own
// cost is measured alone and subtracted: the "net-ns/pkt" metric.
//
// The numbers are machine-dependent and reported, never asserted.

import (
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/bench/replay"
)

// benchFrameLen: forwarded frames must cover the replay header.
const benchFrameLen = 128

// runCtx is the BPF_PROG_RUN context of a frame arriving on ingress.
func runCtx(h hook, frame []byte, ingress int) any {
	if h == hookXDP {
		return xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ingress)}
	}
	return skbMD{Ifindex: uint32(ingress)}
}

func (h hook) prog(d *Datapath) *ebpf.Program {
	if h == hookXDP {
		return d.objs.FpXdp
	}
	return d.objs.FpTc
}

// runRepeat runs prog n times on frame inside the router netns and returns
// the last verdict.
func (tn *testNet) runRepeat(prog *ebpf.Program, h hook, frame []byte, ingress, n int, reset func()) (uint32, error) {
	var v uint32
	err := tn.do(func() error {
		for n > 0 {
			rep := min(n, math.MaxUint32)
			var err error
			v, err = prog.Run(&ebpf.RunOptions{Data: frame, Repeat: uint32(rep), Context: runCtx(h, frame, ingress), Reset: reset})
			if err != nil {
				return fmt.Errorf("run %s: %w", h, err)
			}
			n -= rep
		}
		return nil
	})
	return v, err
}

// benchPackets times b.N runs of prog on frame; one untimed run first must
// give verdict want.
func benchPackets(b *testing.B, tn *testNet, prog *ebpf.Program, h hook, frame []byte, ingress int, want uint32) {
	b.Helper()
	if v, err := tn.runRepeat(prog, h, frame, ingress, 1, nil); err != nil {
		b.Fatal(err)
	} else if v != want {
		b.Fatalf("verdict %s, want %s", h.verdictName(v), h.verdictName(want))
	}
	b.ResetTimer()
	v, err := tn.runRepeat(prog, h, frame, ingress, b.N, b.ResetTimer)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if v != want {
		b.Fatalf("verdict %s after %d runs, want %s", h.verdictName(v), b.N, h.verdictName(want))
	}
}

// runCost is what BPF_PROG_RUN costs per repeat of an empty program of
// h's type on frame (ns): subtracted for the net-ns/pkt metric.
func (tn *testNet) runCost(b *testing.B, h hook, frame []byte) float64 {
	b.Helper()
	r, err := replay.New(h.prog(tn.d))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	const n = 1 << 21
	start := time.Now()
	if _, err := tn.runRepeat(r.Nop(), h, frame, tn.in0, n, nil); err != nil {
		b.Fatal(err)
	}
	return float64(time.Since(start).Nanoseconds()) / n
}

// BenchmarkGuards: a packet that a guard hands to the kernel, one case per
// pass reason of route mode (the cheapest paths: parse, maybe a FIB
// lookup, count, pass). net-ns/pkt is net of BPF_PROG_RUN's own cost.
func BenchmarkGuards(b *testing.B) {
	tn := newTestNet(b)
	seen := map[string]bool{}
	cases := append(guardCases(b), mtuCases(b)...)
	for _, h := range []hook{hookXDP, hookTC} {
		base := tn.runCost(b, h, cases[0].frame)
		for _, c := range cases {
			want := c.xdp
			if h == hookTC {
				want = c.tc
			}
			if c.setup != nil || want == fwd || want == skip || seen[h.String()+want] {
				continue
			}
			seen[h.String()+want] = true
			b.Run(fmt.Sprintf("%s/%s", h, want), func(b *testing.B) {
				benchPackets(b, tn, h.prog(tn.d), h, c.frame, tn.in0, h.passCode())
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)-base, "net-ns/pkt")
			})
		}
	}
}

// replayer wraps the program of h for forwarded frames and measures the
// wrapper's own cost per run on frame (ns), to subtract.
func (tn *testNet) replayer(b *testing.B, h hook, frame []byte, v replay.Vary) (*replay.Replayer, float64) {
	b.Helper()
	r, err := replay.New(h.prog(tn.d))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	if err := r.SetFrame(frame, v); err != nil {
		b.Fatal(err)
	}
	if err := r.Baseline(); err != nil {
		b.Fatal(err)
	}
	const n = 1 << 21
	start := time.Now()
	if _, err := tn.runRepeat(r.Program(), h, frame, tn.in0, n, nil); err != nil {
		b.Fatal(err)
	}
	base := float64(time.Since(start).Nanoseconds()) / n
	if err := r.Target(); err != nil {
		b.Fatal(err)
	}
	return r, base
}

// benchReplay times b.N forwarded packets through r and reports the cost
// net of the wrapper, which it returns. Every run must have been
// forwarded. refresh, if set, runs (untimed) before every every packets.
func benchReplay(b *testing.B, tn *testNet, r *replay.Replayer, base float64, h hook, frame []byte, refresh func(), every int) float64 {
	b.Helper()
	before, _ := tn.stats(b, tn.in0)
	if refresh == nil {
		benchPackets(b, tn, r.Program(), h, frame, tn.in0, h.redirectCode())
	} else {
		b.StopTimer()
		refresh()
		if v, err := tn.runRepeat(r.Program(), h, frame, tn.in0, 1, nil); err != nil || v != h.redirectCode() {
			b.Fatalf("verdict %s (%v), want %s", h.verdictName(v), err, h.verdictName(h.redirectCode()))
		}
		b.ResetTimer()
		for done := 0; done < b.N; done += every {
			b.StopTimer()
			refresh()
			b.StartTimer()
			if _, err := tn.runRepeat(r.Program(), h, frame, tn.in0, min(every, b.N-done), nil); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
	}
	after, _ := tn.stats(b, tn.in0)
	if got, want := after.FwdPackets-before.FwdPackets, uint64(b.N)+1; got != want {
		b.Fatalf("forwarded %d of %d packets (pass reasons %v)", got, want, tn.reasonDelta(before, after))
	}
	net := float64(b.Elapsed().Nanoseconds())/float64(b.N) - base
	b.ReportMetric(net, "net-ns/pkt")
	return net
}

// reasonDelta names the pass reasons that went up.
func (tn *testNet) reasonDelta(before, after IfaceStats) string {
	var out []string
	for i, name := range tn.d.ReasonNames() {
		if d := after.PassReason[i] - before.PassReason[i]; d > 0 {
			out = append(out, fmt.Sprintf("%s=%d", name, d))
		}
	}
	return strings.Join(out, " ")
}

// Route scaling: extra routes, one per destination the benchmark cycles
// through. IPv4: 198.19.0.0/16 as /32s (the benchmarking range bounds it
// to 65536); IPv6: fd01:hhhh:llll::/48 (up to 2^32).
var (
	benchRoutes4 = []int{1, 1000, 65536}
	benchRoutes6 = []int{1, 1000, 1_000_000}
	routeBase4   = netip.MustParseAddr("198.19.0.0")
)

// addRoutes adds n routes via the out0 next hop (IPv4 /32s or IPv6 /48s).
func (tn *testNet) addRoutes(b *testing.B, v6 bool, n int) {
	b.Helper()
	start := time.Now()
	err := tn.do(func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		out0, err := h.LinkByName("out0")
		if err != nil {
			return err
		}
		gw := net.IP(ipNhop)
		if v6 {
			gw = ip6Nhop
		}
		for i := range n {
			var dst *net.IPNet
			if v6 {
				ip := make(net.IP, 16)
				ip[0], ip[1] = 0xfd, 0x01
				binary.BigEndian.PutUint32(ip[2:], uint32(i))
				dst = &net.IPNet{IP: ip, Mask: net.CIDRMask(48, 128)}
			} else {
				ip := make(net.IP, 4)
				binary.BigEndian.PutUint32(ip, binary.BigEndian.Uint32(routeBase4.AsSlice())+uint32(i))
				dst = &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)}
			}
			if err := h.RouteAdd(&netlink.Route{LinkIndex: out0.Attrs().Index, Dst: dst, Gw: gw}); err != nil {
				return fmt.Errorf("add route %d (%s): %w", i, dst, err)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("added %d routes in %s", n, time.Since(start).Round(time.Millisecond))
}

// BenchmarkRouteForward: route mode, a forwarded UDP packet (FIB lookup,
// rewrite, redirect), the destinations cycling through n routes.
func BenchmarkRouteForward(b *testing.B) {
	for _, v6 := range []bool{false, true} {
		fam, counts := "ipv4", benchRoutes4
		if v6 {
			fam, counts = "ipv6", benchRoutes6
		}
		for _, n := range counts {
			b.Run(fmt.Sprintf("%s/routes=%d", fam, n), func(b *testing.B) {
				tn := newTestNet(b)
				tn.addRoutes(b, v6, n)
				var frame []byte
				var vary replay.Vary
				if v6 {
					dst := make(net.IP, 16)
					dst[0], dst[1], dst[15] = 0xfd, 0x01, 5
					frame = udp6Len(dst, benchFrameLen-14).bytes(b)
					vary = replay.Vary{Offset: 14 + 24 + 2, N: uint32(n)} // bytes 2..5 of the destination
				} else {
					frame = udp4Len(net.IP(routeBase4.AsSlice()), benchFrameLen-14).bytes(b)
					vary = replay.Vary{Offset: 14 + 16, Base: binary.BigEndian.Uint32(routeBase4.AsSlice()), N: uint32(n)}
				}
				for _, h := range []hook{hookXDP, hookTC} {
					b.Run(h.String(), func(b *testing.B) {
						r, base := tn.replayer(b, h, frame, vary)
						benchReplay(b, tn, r, base, h, frame, nil, 0)
					})
				}
			})
		}
	}
}

// benchFlow is the offloaded flow the cache benchmarks start from: a LAN
// client masqueraded to the router's out0 address, UDP. Flow i of a scaled
// cache has the same addresses and the 32-bit port pair benchPorts+i.
var (
	benchClient = netip.AddrPortFrom(netip.MustParseAddr("198.18.10.2"), 20000)
	benchServer = netip.AddrPortFrom(netip.MustParseAddr("198.18.30.5"), 53)
	benchPublic = netip.MustParseAddr("198.18.20.1")
	benchPorts  = uint32(benchClient.Port())<<16 | uint32(benchServer.Port())
)

// Cache scaling: flows in the cache, all cycled through.
var benchFlows = []int{1, 1000, 100_000, 1_000_000}

// offloadBench is a test router with in0 and out0 in offload mode and the
// flow cache sized for flows.
type offloadBench struct {
	*testNet
}

func newOffloadBench(b *testing.B, flows int) *offloadBench {
	b.Helper()
	if _, err := exec.LookPath("conntrack"); err != nil {
		b.Skip("needs conntrack-tools (the conntrack command) to create conntrack entries")
	}
	tn := newTestNet(b)
	// A datapath of its own, with a cache big enough for the scaled runs
	// (LRU maps evict early when nearly full: twice the flows).
	d, err := Load(Options{FlowEntries: max(2*flows, 1024)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	tn.d = d
	tn.must(b, func() error {
		if err := d.SetIface(Iface{Index: tn.in0, MAC: macIn0, MTU: 1500, Mode: ModeOffload}); err != nil {
			return err
		}
		if err := d.SetIface(Iface{Index: tn.out0, MAC: macOut0, MTU: out0MTU, Mode: ModeOffload}); err != nil {
			return err
		}
		if err := d.SetXDPTarget(tn.out0, true); err != nil {
			return err
		}
		return d.SetXDPTarget(tn.in0, true)
	})
	if err := d.Heartbeat(time.Hour); err != nil {
		b.Fatal(err)
	}
	if err := d.SetTimeouts(Timeouts{TCPEstablished: 24 * time.Hour, UDP: time.Hour, UDPStream: time.Hour}); err != nil {
		b.Fatal(err)
	}
	return &offloadBench{tn}
}

// conntrack runs the conntrack command in the router netns.
func (ob *offloadBench) conntrack(b *testing.B, args ...string) {
	b.Helper()
	full := append([]string{"netns", "exec", ob.ns, "conntrack"}, args...)
	if out, err := exec.Command("ip", full...).CombinedOutput(); err != nil {
		b.Fatalf("ip %s: %v: %s", strings.Join(full, " "), err, out)
	}
}

// addFlow creates the conntrack entry of the benchmark flow with client
// port sport (masqueraded, same port), status "SEEN_REPLY" (offloadable)
// or "-" (unreplied), and records netfilter's acceptance of it unless
// notAccepted.
func (ob *offloadBench) addFlow(b *testing.B, sport uint16, status string, accepted bool) Tuple {
	b.Helper()
	return ob.addFlowProto(b, unix.IPPROTO_UDP, sport, status, accepted)
}

// addFlowProto is addFlow for UDP or TCP (ESTABLISHED; ctnetlink creates
// it window-liberal, so it is offloaded at once).
func (ob *offloadBench) addFlowProto(b *testing.B, proto uint8, sport uint16, status string, accepted bool) Tuple {
	b.Helper()
	orig := Tuple{Proto: proto, Src: netip.AddrPortFrom(benchClient.Addr(), sport), Dst: benchServer}
	args := []string{"-I", "-p", protoName(proto), "-s", orig.Src.Addr().String(), "-d", orig.Dst.Addr().String(),
		"--sport", fmt.Sprint(sport), "--dport", fmt.Sprint(orig.Dst.Port()), "-t", "3600",
		"--src-nat", netip.AddrPortFrom(benchPublic, sport).String()}
	if proto == unix.IPPROTO_TCP {
		args = append(args, "--state", "ESTABLISHED")
	}
	if status != "-" {
		args = append(args, "-u", status)
	}
	ob.conntrack(b, args...)
	if accepted {
		_, fw := ob.d.Generations()
		if err := ob.d.objs.FpAccepted.Update(keyOf(orig), verdictOf(fw, ob.in0, ob.out0, false), ebpf.UpdateAny); err != nil {
			b.Fatal(err)
		}
	}
	return orig
}

// flowFrame is a benchFrameLen-byte UDP frame of tuple t arriving on in0,
// IPv4 UDP checksum 0 (so the replay may change the ports freely).
func flowFrame(b *testing.B, t Tuple) []byte {
	p := udp4Len(net.IP(t.Dst.Addr().AsSlice()), benchFrameLen-14)
	p.v4().SrcIP = net.IP(t.Src.Addr().AsSlice())
	frame := p.bytes(b)
	off := 14 + 20
	binary.BigEndian.PutUint16(frame[off:], t.Src.Port())
	binary.BigEndian.PutUint16(frame[off+2:], t.Dst.Port())
	frame[off+6], frame[off+7] = 0, 0
	return frame
}

// tcpFlowFrame is a benchFrameLen-byte TCP ACK of tuple t arriving on in0,
// its checksum right (the datapath verifies it: part of what a TCP hit
// costs, with the window tracking).
func tcpFlowFrame(b *testing.B, t Tuple) []byte {
	p := tcp4(net.IP(t.Dst.Addr().AsSlice()))
	p.v4().SrcIP = net.IP(t.Src.Addr().AsSlice())
	th := p.l4.(*layers.TCP)
	th.SrcPort, th.DstPort = layers.TCPPort(t.Src.Port()), layers.TCPPort(t.Dst.Port())
	th.PSH = false
	p.payload = payload(benchFrameLen - 14 - 20 - 20)
	return p.bytes(b)
}

// cacheFiller makes the cache hold n flows: the real one (filled by a
// packet through the program) and n-1 copies of it under the keys of port
// pairs benchPorts+1 .. +n-1, all marked as checked against conntrack just
// now, so no hit asks conntrack (it does once a second per flow, and the
// copies have no entry) during the next second.
type cacheFiller struct {
	ob   *offloadBench
	key  fastpathFpFlowKey
	v    fastpathFpFlow
	n    int
	took time.Duration // the last fill's duration
}

// fill writes the n entries. They are stamped with the time the fill is
// expected to end, and fill returns only once that time has come: every
// entry is then fresh for about a second.
func (cf *cacheFiller) fill(b *testing.B) {
	b.Helper()
	if cf.took == 0 {
		cf.write(b, Monotonic()) // calibrates the estimate
	}
	stamp := Monotonic() + cf.took + cf.took/4 + 10*time.Millisecond
	cf.write(b, stamp)
	if wait := stamp - Monotonic(); wait > 0 {
		t := time.NewTimer(wait)
		<-t.C
	} else if -wait > 200*time.Millisecond {
		b.Logf("fill of %d flows took %s longer than estimated", cf.n, -wait)
	}
}

// write writes the entries stamped with stamp and records how long it took.
func (cf *cacheFiller) write(b *testing.B, stamp time.Duration) {
	start := time.Now()
	v := cf.v
	v.CtRefreshNs, v.LastNs = uint64(stamp), uint64(stamp)
	const chunk = 1 << 16
	keys := make([]fastpathFpFlowKey, 0, chunk)
	vals := make([]fastpathFpFlow, 0, chunk)
	flush := func() {
		if len(keys) == 0 {
			return
		}
		if _, err := cf.ob.d.objs.FpFlows.BatchUpdate(keys, vals, nil); err != nil {
			b.Fatalf("fill flow cache: %v", err)
		}
		keys, vals = keys[:0], vals[:0]
	}
	for i := range cf.n {
		k := cf.key
		p := benchPorts + uint32(i)
		k.Sport, k.Dport = swap16(uint16(p>>16)), swap16(uint16(p))
		keys = append(keys, k)
		vals = append(vals, v)
		if len(keys) == chunk {
			flush()
		}
	}
	flush()
	cf.took = time.Since(start)
}

// refreshEvery bounds the packets between two cache fills: they must all
// run within the second the fill keeps the flows fresh.
func refreshEvery(flows int) int {
	if flows >= 500_000 {
		return 200_000
	}
	return 2_000_000
}

// BenchmarkOffload: offload mode, IPv4 UDP with masquerade.
//
//	hit/flows=N   a cache hit, the packets cycling through N cached flows
//	hit-guarded   hit/flows=1 with the guard's total new-flow limit on,
//	              whose check asks the flow cache too (docs/guard.md)
//	hit-tcp       a cache hit of a TCP flow: flags, window tracking and
//	              the TCP checksum on top of the UDP hit
//	miss-ct       a cache miss that asks conntrack, whose entry is not
//	              established yet (unreplied): passed to the kernel
//	miss-no-ct    a cache miss, netfilter accepted, conntrack has no entry
func BenchmarkOffload(b *testing.B) {
	for _, n := range benchFlows {
		b.Run(fmt.Sprintf("hit/flows=%d", n), func(b *testing.B) {
			ob := newOffloadBench(b, n)
			orig := ob.addFlow(b, benchClient.Port(), "SEEN_REPLY", true)
			ob.benchHits(b, orig, flowFrame(b, orig), n)
		})
	}
	b.Run("hit-guarded/flows=1", func(b *testing.B) {
		ob := newOffloadBench(b, 1)
		if err := ob.d.SetGuard(GuardConfig{NewFlowsTotal: GuardLimit{Rate: 1_000_000, Burst: 1_000_000}}); err != nil {
			b.Fatal(err)
		}
		orig := ob.addFlow(b, benchClient.Port(), "SEEN_REPLY", true)
		ob.benchHits(b, orig, flowFrame(b, orig), 1)
	})
	b.Run("hit-tcp/flows=1", func(b *testing.B) {
		ob := newOffloadBench(b, 1)
		orig := ob.addFlowProto(b, unix.IPPROTO_TCP, benchClient.Port(), "SEEN_REPLY,ASSURED", true)
		ob.benchHits(b, orig, tcpFlowFrame(b, orig), 1)
	})
	b.Run("miss", func(b *testing.B) {
		ob := newOffloadBench(b, 1)
		unreplied := flowFrame(b, ob.addFlow(b, 30001, "-", true))
		noCT := flowFrame(b, Tuple{Proto: unix.IPPROTO_UDP, Src: netip.AddrPortFrom(benchClient.Addr(), 30002), Dst: benchServer})
		_, fw := ob.d.Generations()
		k := keyOf(Tuple{Proto: unix.IPPROTO_UDP, Src: netip.AddrPortFrom(benchClient.Addr(), 30002), Dst: benchServer})
		if err := ob.d.objs.FpAccepted.Update(k, verdictOf(fw, ob.in0, ob.out0, false), ebpf.UpdateAny); err != nil {
			b.Fatal(err)
		}
		for _, h := range []hook{hookXDP, hookTC} {
			b.Run(h.String()+"/ct-not-established", func(b *testing.B) {
				ob.benchReason(b, h, unreplied, "not_established")
			})
			b.Run(h.String()+"/ct-none", func(b *testing.B) {
				ob.benchReason(b, h, noCT, "no_conntrack")
			})
		}
	})
	b.Run("guards", func(b *testing.B) {
		ob := newOffloadBench(b, 1)
		icmp := icmp4(ipDst).bytes(b)
		notAccepted := flowFrame(b, Tuple{Proto: unix.IPPROTO_UDP, Src: netip.AddrPortFrom(benchClient.Addr(), 30003), Dst: benchServer})
		for _, h := range []hook{hookXDP, hookTC} {
			b.Run(h.String()+"/icmp", func(b *testing.B) { ob.benchReason(b, h, icmp, "icmp") })
			b.Run(h.String()+"/not_accepted", func(b *testing.B) { ob.benchReason(b, h, notAccepted, "not_accepted") })
		}
		// Last: a stale heartbeat stops offloading for good in this router.
		// A heartbeat 10 s old with a 3 s watchdog: a daemon that stopped.
		now := Monotonic()
		if err := ob.d.writeGlobals(func(s *fastpathFpState) {
			s.HeartbeatNs, s.WatchdogNs = uint64(now-10*time.Second), uint64(3*time.Second)
		}); err != nil {
			b.Fatal(err)
		}
		for _, h := range []hook{hookXDP, hookTC} {
			b.Run(h.String()+"/watchdog", func(b *testing.B) { ob.benchReason(b, h, notAccepted, "watchdog") })
		}
	})
}

// benchHits caches the flow of frame (orig's first packet) and times cache
// hits by each hook, the packets cycling through n cached flows (n > 1:
// the frame's ports varied, the flows filled in around it).
func (ob *offloadBench) benchHits(b *testing.B, orig Tuple, frame []byte, n int) {
	b.Helper()
	if res, err := ob.run(hookXDP, frame, runOpts{}); err != nil || res.verdict != xdpRedirect {
		b.Fatalf("filling the flow: verdict %d, %v", res.verdict, err)
	}
	var v fastpathFpFlow
	if err := ob.d.objs.FpFlows.Lookup(keyOf(orig), &v); err != nil {
		b.Fatalf("flow not cached: %v", err)
	}
	var vary replay.Vary
	if n > 1 {
		vary = replay.Vary{Offset: 14 + 20, Base: benchPorts, N: uint32(n)}
	}
	cf := &cacheFiller{ob: ob, key: keyOf(orig), v: v, n: n}
	for _, h := range []hook{hookXDP, hookTC} {
		b.Run(h.String(), func(b *testing.B) {
			r, base := ob.replayer(b, h, frame, vary)
			benchReplay(b, ob.testNet, r, base, h, frame, func() { cf.fill(b) }, refreshEvery(n))
		})
	}
}

// benchReason times a frame that must go to the kernel for reason.
func (ob *offloadBench) benchReason(b *testing.B, h hook, frame []byte, reason string) {
	b.Helper()
	i := ob.reasonIndex(b, reason)
	base := ob.runCost(b, h, frame)
	before, _ := ob.stats(b, ob.in0)
	benchPackets(b, ob.testNet, h.prog(ob.d), h, frame, ob.in0, h.passCode())
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)-base, "net-ns/pkt")
	after, _ := ob.stats(b, ob.in0)
	if got := after.PassReason[i] - before.PassReason[i]; got != uint64(b.N)+1 {
		b.Fatalf("pass reason %s went up by %d, want %d (%s)", reason, got, b.N+1, ob.reasonDelta(before, after))
	}
}
