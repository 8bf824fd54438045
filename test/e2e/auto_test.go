package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/lab"
	"github.com/fastpath-router/fastpath/internal/labd"
	"github.com/fastpath-router/fastpath/internal/nsutil"
	"github.com/fastpath-router/fastpath/internal/traffic"
)

// Bounds of the auto tests: the bytes of each TCP transfer, and how long a
// change the kernel does not announce (a peer's offloads, in its own
// namespace) may take to reach the hook decision: the daemon's resync
// interval plus slack.
const (
	autoTCPBytes = 64 << 20
	autoRedecide = 10 * time.Second
	feedLimit    = 10 * time.Minute // the longest a feedByXDP feeds
)

// attachedAs waits until every interface in want is attached as the hook
// it names, with a reason containing why.
func (d *daemon) waitAttachedAs(t *testing.T, want map[string]string, why map[string]string) {
	t.Helper()
	pollUntil(t, autoRedecide, fmt.Sprintf("hooks %v", want), func() error {
		st := d.status(t)
		for name, hook := range want {
			ifc, ok := interfaceStatus(st, name)
			if !ok || ifc.AttachedAs != hook || !strings.Contains(ifc.AttachReason, why[name]) {
				return fmt.Errorf("%s attached as %q (%s), want %s (%s)", name, ifc.AttachedAs, ifc.AttachReason, hook, why[name])
			}
		}
		return nil
	})
}

// tcpThrough moves a TCP transfer gen -> sink (IPv4 and IPv6) and wants it
// byte-exact.
func tcpThrough(t *testing.T, l *lab.Lab, what string) {
	t.Helper()
	ctx := testContext(t)
	for _, dst := range []netip.Addr{l.SinkAddr4, l.SinkAddr6} {
		r, err := traffic.TCPTransfer(ctx, l.Gen, l.Sink, netip.AddrPortFrom(dst, 0), autoTCPBytes)
		if err != nil || !r.OK() {
			t.Fatalf("%s: tcp to %s: %+v, %v", what, dst, r, err)
		}
		t.Logf("%s: tcp to %s: %.2f Gbit/s", what, dst, r.Gbps())
	}
}

// feedByXDP makes dev (in ns) a veth that sends to rtrDev, its peer on the
// router, by XDP, as in a chain of XDP programs: a veth pair in ns whose
// second end has a native XDP program redirecting every frame it gets to
// dev, and a frame into the first end every 100 ms (an experimental
// ethertype to a MAC no one has: the router drops it). rtrDev gets GRO on,
// as whoever feeds a veth by XDP has it: the kernel refuses XDP frames for
// a veth whose peer has neither GRO nor an XDP program, at the redirect,
// before any counter of dev sees them. The returned stop ends the feeding
// (the test's end does too).
func feedByXDP(t *testing.T, l *lab.Lab, ns, dev, rtrDev string) (stop func()) {
	t.Helper()
	rtrRun(testContext(t), t, l, "ethtool", "-K", rtrDev, "gro", "on")
	var (
		sock int
		xl   link.Link
		from int
	)
	err := nsutil.Do(ns, func() error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "xfeed0"}, PeerName: "xfeed1"}); err != nil {
			return err
		}
		var idx [3]int
		for i, name := range []string{"xfeed0", "xfeed1", dev} {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetUp(l); err != nil {
				return err
			}
			idx[i] = l.Attrs().Index
		}
		from = idx[0]
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type:    ebpf.XDP,
			License: "GPL",
			Instructions: asm.Instructions{
				asm.Mov.Imm(asm.R1, int32(idx[2])),
				asm.Mov.Imm(asm.R2, 0),
				asm.FnRedirect.Call(),
				asm.Return(),
			},
		})
		if err != nil {
			return fmt.Errorf("load the feeding program: %w", err)
		}
		defer prog.Close() // the link holds it
		xl, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: idx[1], Flags: link.XDPDriverMode})
		if err != nil {
			return fmt.Errorf("attach the feeding program: %w", err)
		}
		sock, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	delPair := func() {
		_ = nsutil.Do(ns, func() error {
			l, err := netlink.LinkByName("xfeed0")
			if err != nil {
				return err
			}
			return netlink.LinkDel(l)
		})
	}
	if err != nil {
		if xl != nil {
			xl.Close()
		}
		delPair()
		t.Fatalf("feed %s in %s by XDP: %v", dev, ns, err)
	}
	frame := make([]byte, 60)
	copy(frame, []byte{0x02, 0xfe, 0, 0, 0, 1, 0x02, 0xfe, 0, 0, 0, 2, 0x88, 0xb5})
	to := &unix.SockaddrLinklayer{Ifindex: from}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for range int(feedLimit / (100 * time.Millisecond)) { // bounded; the test's end stops it sooner
			if err := unix.Sendto(sock, frame, 0, to); err != nil {
				t.Errorf("feeding frame: %v", err)
				return
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(done)
			<-finished
			unix.Close(sock)
			xl.Close()
			delPair()
		})
	}
	t.Cleanup(stop)
	return stop
}

// feedBothByXDP feeds r0's and r1's peers by XDP (feedByXDP), so that auto
// decides on the other facts.
func feedBothByXDP(t *testing.T, l *lab.Lab) {
	t.Helper()
	feedByXDP(t, l, l.Gen, l.GenIf, l.RtrIn)
	feedByXDP(t, l, l.Sink, l.SinkIf, l.RtrOut)
}

// autoLabFedByXDP is a lab (newLab's attaches) with masquerade, both
// router veths' peers fed by XDP, and the daemon on both in offload mode,
// attach: auto.
func autoLabFedByXDP(t *testing.T, attaches ...string) (*lab.Lab, *daemon, context.Context) {
	t.Helper()
	l := newLab(t, attaches...)
	ctx := testContext(t)
	nft(ctx, t, l, masqueradeRuleset+filterRuleset)
	feedBothByXDP(t, l)
	d, _ := runDaemon(t, l.Rtr, offloadIfaces(l, "auto")...)
	return l, d, ctx
}

// TestAutoStackFedVeth: hosts that finish their checksums but send from
// their stacks: auto picks TC on both sides (veth copies every frame a
// stack sent into an XDP buffer before native XDP runs; TC takes the skb as
// it is), and TCP flows. Then, each under a UDP stream that must not lose
// packets: frames start coming to r0 by XDP (an XDP program in gen
// redirects into g0) and r0 moves to native XDP; they stop and, after the
// hold, r0 moves back to TC.
func TestAutoStackFedVeth(t *testing.T) {
	l := newLab(t, "xdp")
	ctx := testContext(t)
	nft(ctx, t, l, masqueradeRuleset+filterRuleset)
	d, _ := runDaemon(t, l.Rtr, offloadIfaces(l, "auto")...)
	stack := map[string]string{l.RtrIn: "sends from its stack", l.RtrOut: "sends from its stack"}
	d.waitAttachedAs(t, map[string]string{l.RtrIn: "tc", l.RtrOut: "tc"}, stack)
	tcpThrough(t, l, "stack-fed veths, tc")

	var stop func()
	acrossChange(ctx, t, l, "frames by XDP into g0", func() {
		stop = feedByXDP(t, l, l.Gen, l.GenIf, l.RtrIn)
		d.waitAttachedAs(t, map[string]string{l.RtrIn: "xdp", l.RtrOut: "tc"},
			map[string]string{l.RtrIn: "sends by XDP", l.RtrOut: "sends from its stack"})
	})
	before := d.counters(t, l.Rtr)
	tcpThrough(t, l, "r0 xdp, r1 tc")
	if after := d.counters(t, l.Rtr); after.forwarded() <= before.forwarded() {
		t.Errorf("fastpath forwarded nothing: %d -> %d", before.forwarded(), after.forwarded())
	}
	acrossChange(ctx, t, l, "no more frames by XDP", func() {
		stop()
		d.waitAttachedAs(t, map[string]string{l.RtrIn: "tc"}, map[string]string{l.RtrIn: "sends from its stack"})
	})
}

// TestAutoFollowsFacts: with the end hosts' default offloads (partial
// checksums), auto picks TC and TCP flows, though the hosts' peers also
// send by XDP; turning tx checksum offload off on the hosts while UDP runs
// moves each interface to native XDP, turning it on again on one host
// moves that side back; traffic keeps flowing.
func TestAutoFollowsFacts(t *testing.T) {
	l, d, ctx := autoLabFedByXDP(t)
	partial := map[string]string{l.RtrIn: "sends partial checksums", l.RtrOut: "sends partial checksums"}
	d.waitAttachedAs(t, map[string]string{l.RtrIn: "tc", l.RtrOut: "tc"}, partial)
	tcpThrough(t, l, "default offloads, tc")

	// The change comes while a paced UDP stream runs across it.
	acrossChange(ctx, t, l, "the move to xdp", func() {
		nsRun(ctx, t, l, l.Gen, "ethtool", "-K", l.GenIf, "tx", "off")
		nsRun(ctx, t, l, l.Sink, "ethtool", "-K", l.SinkIf, "tx", "off")
		native := map[string]string{l.RtrIn: "no partial checksums", l.RtrOut: "no partial checksums"}
		d.waitAttachedAs(t, map[string]string{l.RtrIn: "xdp", l.RtrOut: "xdp"}, native)
	})
	before := d.counters(t, l.Rtr)
	tcpThrough(t, l, "tx checksum off, xdp")
	if after := d.counters(t, l.Rtr); after.forwarded() <= before.forwarded() {
		t.Errorf("fastpath forwarded nothing under xdp: %d -> %d", before.forwarded(), after.forwarded())
	}

	// gen turns tx checksum offload back on: r0 goes back to TC, r1 stays.
	nsRun(ctx, t, l, l.Gen, "ethtool", "-K", l.GenIf, "tx", "on")
	d.waitAttachedAs(t, map[string]string{l.RtrIn: "tc", l.RtrOut: "xdp"}, map[string]string{l.RtrIn: "partial checksums", l.RtrOut: ""})
	tcpThrough(t, l, "gen offloads on again, r0 tc, r1 xdp")
}

// TestAutoJumboMTU: veths at MTU 9000 (hosts finishing their checksums,
// their peers fed by XDP too, so only the MTU stands in XDP's way): auto
// starts, on TC because native XDP refuses that MTU, and carries TCP. Then, each under a UDP stream that
// must not lose packets: the MTU back to 1500 moves both to native XDP;
// GRO off at r1's peer (r1 can no longer transmit XDP frames) moves r0 back
// to TC.
func TestAutoJumboMTU(t *testing.T) {
	l := newLab(t, "xdp")
	for _, e := range [][2]string{{l.Gen, l.GenIf}, {l.Rtr, l.RtrIn}, {l.Rtr, l.RtrOut}, {l.Sink, l.SinkIf}} {
		setMTU(t, e[0], e[1], 9000)
	}
	nft(testContext(t), t, l, masqueradeRuleset+filterRuleset)
	feedBothByXDP(t, l)
	d, _ := runDaemon(t, l.Rtr, offloadIfaces(l, "auto")...)
	refused := map[string]string{l.RtrIn: "native XDP refused at MTU 9000", l.RtrOut: "native XDP refused at MTU 9000"}
	d.waitAttachedAs(t, map[string]string{l.RtrIn: "tc", l.RtrOut: "tc"}, refused)
	before := d.counters(t, l.Rtr)
	tcpThrough(t, l, "mtu 9000, tc")
	if after := d.counters(t, l.Rtr); after.forwarded() <= before.forwarded() {
		t.Errorf("fastpath forwarded nothing at MTU 9000: %d -> %d", before.forwarded(), after.forwarded())
	}

	// Facts change while traffic runs. The MTU back to 1500: native XDP
	// fits, auto moves both to it.
	ctx := testContext(t)
	acrossChange(ctx, t, l, "mtu 9000 -> 1500", func() {
		for _, e := range [][2]string{{l.Gen, l.GenIf}, {l.Rtr, l.RtrIn}, {l.Rtr, l.RtrOut}, {l.Sink, l.SinkIf}} {
			setMTU(t, e[0], e[1], 1500)
		}
		d.waitAttachedAs(t, map[string]string{l.RtrIn: "xdp", l.RtrOut: "xdp"}, map[string]string{l.RtrIn: "native XDP", l.RtrOut: "native XDP"})
	})
	// GRO off on the sink's end of r1's veth: r1 can no longer transmit XDP
	// frames, so r0 moves to TC.
	acrossChange(ctx, t, l, "r1's peer without GRO", func() {
		nsRun(ctx, t, l, l.Sink, "ethtool", "-K", l.SinkIf, "gro", "off")
		d.waitAttachedAs(t, map[string]string{l.RtrIn: "tc"}, map[string]string{l.RtrIn: "egress " + l.RtrOut + " cannot transmit XDP frames"})
	})
	tcpThrough(t, l, "r1's peer without GRO, r0 tc")
}

// acrossChange runs a paced UDP stream gen -> sink while change runs (it
// returns once the daemon has acted on it) and wants under 1% of the
// stream lost: a hook decision that changes moves without dropping traffic.
func acrossChange(ctx context.Context, t *testing.T, l *lab.Lab, what string, change func()) {
	t.Helper()
	type res struct {
		r   traffic.UDPResult
		err error
	}
	done := make(chan res, 1)
	go func() {
		r, err := traffic.UDPStream(ctx, l.Gen, l.Sink, netip.AddrPortFrom(l.SinkAddr4, 0), 3000, 200, 2*time.Millisecond)
		done <- res{r, err}
	}()
	change()
	u := <-done
	if u.err != nil || u.r.LossRatio() > 0.01 {
		t.Errorf("udp across %s: %+v, %v (want under 1%% lost)", what, u.r, u.err)
	}
}

// TestForcedXDPRefused: attach: xdp on a router whose hosts send partial
// checksums cannot be correct: the daemon refuses to start, says why, and
// leaves nothing attached.
func TestForcedXDPRefused(t *testing.T) {
	l := newLab(t)
	d := startDaemon(t, l.Rtr, labd.Interface{Name: l.RtrIn, Mode: "offload", Attach: "xdp"}, labd.Interface{Name: l.RtrOut, Mode: "offload", Attach: "tc"})
	out := d.waitFailed(t)
	if !strings.Contains(out, "attach: xdp cannot be correct on "+l.RtrIn) || !strings.Contains(out, "partial checksums") {
		t.Errorf("refusal does not say why:\n%s", out)
	}
	assertNothingAttached(t, l, l.RtrIn, l.RtrOut)
}

// TestAutoFollowsEgressFacts: hosts that finish their checksums and whose
// peers are fed by XDP, so auto picks native XDP. Each of the other facts auto decides on then changes
// while a paced UDP stream runs, and must move the hook without losing the
// stream: an operator's root qdisc on r1 (an XDP redirect would skip it)
// moves r0 to TC and its removal back; a BPF program of another tool on
// r1's tcx egress hook does the same (no event: found by the resync); GRO
// turned off at r0 takes away the TC program behind its XDP for bulk TCP,
// and on brings it back.
func TestAutoFollowsEgressFacts(t *testing.T) {
	l, d, ctx := autoLabFedByXDP(t, "xdp")
	native := map[string]string{l.RtrIn: "native XDP", l.RtrOut: "native XDP"}
	d.waitAttachedAs(t, map[string]string{l.RtrIn: "xdp", l.RtrOut: "xdp"}, native)

	acrossChange(ctx, t, l, "a root qdisc on r1", func() {
		rtrRun(ctx, t, l, "tc", "qdisc", "replace", "dev", l.RtrOut, "root", "tbf", "rate", "1gbit", "burst", "1mb", "latency", "50ms")
		d.waitAttachedAs(t, map[string]string{l.RtrIn: "tc"}, map[string]string{l.RtrIn: "egress " + l.RtrOut + " has the operator's root qdisc tbf"})
	})
	acrossChange(ctx, t, l, "r1's root qdisc removed", func() {
		rtrRun(ctx, t, l, "tc", "qdisc", "del", "dev", l.RtrOut, "root")
		d.waitAttachedAs(t, map[string]string{l.RtrIn: "xdp"}, native)
	})

	var egress link.Link
	acrossChange(ctx, t, l, "a tcx egress program on r1", func() {
		egress = attachTCXEgress(t, l.Rtr, l.RtrOut)
		d.waitAttachedAs(t, map[string]string{l.RtrIn: "tc"}, map[string]string{l.RtrIn: "egress " + l.RtrOut + " has the operator's 1 tcx egress program"})
	})
	acrossChange(ctx, t, l, "r1's tcx egress program gone", func() {
		if err := egress.Close(); err != nil {
			t.Fatalf("detach the tcx egress program: %v", err)
		}
		d.waitAttachedAs(t, map[string]string{l.RtrIn: "xdp"}, native)
	})

	// r0 has GRO on (feedByXDP): a TC program behind its XDP takes bulk
	// TCP after GRO. GRO off takes it away, on brings it back.
	acrossChange(ctx, t, l, "GRO off at r0", func() {
		rtrRun(ctx, t, l, "ethtool", "-K", l.RtrIn, "gro", "off")
		d.waitAttachedAs(t, map[string]string{l.RtrIn: "xdp"}, map[string]string{l.RtrIn: "GRO is off on the device"})
	})
	tcpThrough(t, l, "xdp alone on r0")
	acrossChange(ctx, t, l, "GRO on at r0", func() {
		rtrRun(ctx, t, l, "ethtool", "-K", l.RtrIn, "gro", "on")
		d.waitAttachedAs(t, map[string]string{l.RtrIn: "xdp"}, map[string]string{l.RtrIn: "tc behind it forwards bulk TCP after GRO"})
	})
	tcpThrough(t, l, "xdp with tc behind it on r0")
}

// attachTCXEgress puts a program that does nothing (TCX_NEXT) on ifname's
// tcx egress hook in ns, as another tool would; closing the link removes it.
func attachTCXEgress(t *testing.T, ns, ifname string) link.Link {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}, // TCX_NEXT
	})
	if err != nil {
		t.Fatalf("load a tcx egress program: %v", err)
	}
	defer prog.Close() // the link holds it
	var l link.Link
	err = nsutil.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		l, err = link.AttachTCX(link.TCXOptions{Program: prog, Attach: ebpf.AttachTCXEgress, Interface: ifi.Index})
		return err
	})
	if err != nil {
		t.Fatalf("attach to the tcx egress hook of %s in %s: %v", ifname, ns, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
