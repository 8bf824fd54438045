package e2e

// Helpers of the offload-mode tests (offload_test.go,
// offload_invalidation_test.go): nftables and conntrack in rtr, the flow
// cache through the API, and traffic endpoints that the tests can hold open,
// inspect and time (the traffic package's transfers are one-shot).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/lab"
	"github.com/fastpath-router/fastpath/internal/labd"
	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// offloadAttaches are the hooks every offload test runs under: the XDP and
// the TC program differ (kfuncs of their own, checksum handling), so both
// must be exercised.
var offloadAttaches = []string{"xdp", "tc"}

// Bounds of the offload tests' waits.
const (
	offloadWait  = 3 * time.Second        // until a flow is offloaded / evicted
	handshakeGap = 20 * time.Millisecond  // between UDP hellos
	dialTimeout  = 2 * time.Second        // one TCP connect that must work
	ethHdr       = 14                     // untagged Ethernet header
	udpHdr       = 8                      // UDP header
	maxDatagram  = 65536                  // receive buffer of the UDP helpers
	udpRcvBuf    = 8 << 20                // UDP receive buffer (SO_RCVBUFFORCE)
	tsOOB        = 256                    // control-message buffer
	nftTimeout   = 5 * time.Second        // one nft / conntrack invocation
	minShare     = 0.95                   // of the packets fastpath must carry
	stopGrace    = 100 * time.Millisecond // allowed latency of an invalidation
)

// offloadIfaces configures r0 and r1 in offload mode.
func offloadIfaces(l *lab.Lab, attach string) []labd.Interface {
	return []labd.Interface{
		{Name: l.RtrIn, Mode: "offload", Attach: attach},
		{Name: l.RtrOut, Mode: "offload", Attach: attach},
	}
}

// fam is one address family of the lab, as the tests need it.
type fam struct {
	name                     string // "IPv4" | "IPv6"
	gen, rtrIn, rtrOut, sink netip.Addr
	ctFamily                 string // conntrack -f
	ipHdr                    int    // IP header length without options
	forwarded                func(c counters) uint64
}

// nftIP is the family's nftables payload protocol: "ip" or "ip6".
func (f fam) nftIP() string {
	if f.sink.Is6() {
		return "ip6"
	}
	return "ip"
}

func families(l *lab.Lab) []fam {
	return []fam{
		{"IPv4", l.GenAddr4, l.RtrInAddr4, l.RtrOutAddr4, l.SinkAddr4, "ipv4", 20,
			func(c counters) uint64 { return c.kernel4 }},
		{"IPv6", l.GenAddr6, l.RtrInAddr6, l.RtrOutAddr6, l.SinkAddr6, "ipv6", 40,
			func(c counters) uint64 { return c.kernel6 }},
	}
}

// Rulesets. Any stateful or NAT rule makes the kernel track connections in
// the namespace; without one, conntrack never sees rtr's traffic and offload
// mode (rightly) offloads nothing.
const (
	// masqueradeRuleset is the usual edge router: everything leaving r1
	// gets r1's address.
	masqueradeRuleset = `table inet nat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "r1" masquerade
	}
}
`
	// filterRuleset has an empty forward chain for rules added later, and
	// counts the packets conntrack calls INVALID: offloaded TCP entries are
	// made window-liberal, so later kernel-path packets of the same
	// connections must not be INVALID (they would bypass NAT). The counter
	// is a stateful rule, so it also turns conntrack on.
	filterRuleset = `table inet fpt {
	counter invalid { }
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state invalid counter name "invalid"
	}
}
`
)

// nft runs `nft -f -` with ruleset in rtr and returns the time it returned.
func nft(ctx context.Context, t *testing.T, l *lab.Lab, ruleset string) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, nftTimeout)
	defer cancel()
	cmd := l.Command(ctx, l.Rtr, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	out, err := cmd.CombinedOutput()
	done := time.Now()
	if err != nil {
		t.Fatalf("nft -f - in %s: %v: %s\nruleset:\n%s", l.Rtr, err, out, ruleset)
	}
	return done
}

// rtrRun runs a command in rtr and returns its output; it fails the test on
// a non-zero exit.
func rtrRun(ctx context.Context, t *testing.T, l *lab.Lab, name string, args ...string) string {
	t.Helper()
	return nsRun(ctx, t, l, l.Rtr, name, args...)
}

func nsRun(ctx context.Context, t *testing.T, l *lab.Lab, ns, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, nftTimeout)
	defer cancel()
	out, err := l.Command(ctx, ns, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s in %s: %v: %s", name, strings.Join(args, " "), ns, err, out)
	}
	return string(out)
}

// invalidCount reads filterRuleset's counter of INVALID packets.
func invalidCount(ctx context.Context, t *testing.T, l *lab.Lab) uint64 {
	t.Helper()
	out := rtrRun(ctx, t, l, "nft", "list", "counter", "inet", "fpt", "invalid")
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "packets" {
			n, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				t.Fatalf("nft counter output %q: %v", out, err)
			}
			return n
		}
	}
	t.Fatalf("nft counter output has no packets: %q", out)
	return 0
}

// conntrackList returns `conntrack -L` of rtr for one protocol and
// original destination port (and family), one entry per line.
func conntrackList(ctx context.Context, t *testing.T, l *lab.Lab, f fam, proto string, dport uint16) []string {
	t.Helper()
	out := rtrRun(ctx, t, l, "conntrack", "-L", "-f", f.ctFamily, "-p", proto, "--dport", strconv.Itoa(int(dport)))
	var lines []string
	for _, ln := range strings.Split(out, "\n") {
		if strings.HasPrefix(ln, proto) {
			lines = append(lines, ln)
		}
	}
	return lines
}

// flows lists the daemon's flow cache.
func (d *daemon) flows(t *testing.T) []api.Flow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	fl, err := d.c.Flows(ctx)
	if err != nil {
		t.Fatalf("flows: %v", err)
	}
	return fl.Flows
}

// flowIn finds the cached flow whose packets arrive as src -> dst.
func flowIn(fl []api.Flow, src, dst netip.AddrPort) (api.Flow, bool) {
	for _, f := range fl {
		if unmapAP(f.In.Src) == unmapAP(src) && unmapAP(f.In.Dst) == unmapAP(dst) {
			return f, true
		}
	}
	return api.Flow{}, false
}

// flowsOfPort lists the cached flows with port as source or destination
// port on their way in.
func flowsOfPort(fl []api.Flow, proto string, port uint16) []api.Flow {
	var out []api.Flow
	for _, f := range fl {
		if f.Proto == proto && (f.In.Src.Port() == port || f.In.Dst.Port() == port) {
			out = append(out, f)
		}
	}
	return out
}

// waitFlow polls the flow cache until the flow src -> dst is there with
// at least one packet forwarded, and returns it.
func (d *daemon) waitFlow(t *testing.T, src, dst netip.AddrPort) api.Flow {
	t.Helper()
	var got api.Flow
	pollUntil(t, offloadWait, fmt.Sprintf("flow %s -> %s offloaded", src, dst), func() error {
		fl := d.flows(t)
		f, ok := flowIn(fl, src, dst)
		if !ok || f.Packets == 0 {
			return fmt.Errorf("not in the flow cache with packets; cache: %s", flowList(fl))
		}
		got = f
		return nil
	})
	return got
}

// offloadTCP moves data over p until both directions are offloaded and
// carrying packets. The first packets of a TCP flow wait for its conntrack
// entry to be made window-liberal; a short transfer may end before that,
// and an idle connection is not offloaded.
func (d *daemon) offloadTCP(ctx context.Context, t *testing.T, p *tcpPair) {
	t.Helper()
	pollUntil(t, offloadWait, fmt.Sprintf("tcp %s -> %s offloaded both ways", p.clientAddr, p.listen), func() error {
		if r := copyN(ctx, p.client, p.server, 64<<10, offChunk, 0, nil); !r.ok(64 << 10) {
			t.Fatalf("transfer: %v", r.err)
		}
		fl := d.flows(t)
		for _, k := range [][2]netip.AddrPort{{p.clientAddr, p.listen}, {p.listen, p.serverSees}} {
			if f, ok := flowIn(fl, k[0], k[1]); !ok || f.Packets == 0 {
				return fmt.Errorf("%s -> %s not in the flow cache with packets; cache: %s", k[0], k[1], flowList(fl))
			}
		}
		return nil
	})
}

func flowList(fl []api.Flow) string {
	if len(fl) == 0 {
		return "empty"
	}
	var parts []string
	for _, f := range fl {
		parts = append(parts, fmt.Sprintf("[%s %s %s->%s out %s->%s nat %q %s->%s pkts %d stale %v]",
			f.Proto, f.Direction, f.In.Src, f.In.Dst, f.Out.Src, f.Out.Dst, f.NAT, f.Ingress, f.Egress, f.Packets, f.Stale))
	}
	return strings.Join(parts, " ")
}

func unmapAP(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

func (c counters) flowsAdded() (n uint64) {
	for _, s := range c.stats.Interfaces {
		n += s.FlowsAdded
	}
	return n
}

func (c counters) flowsRemoved() (n uint64) {
	for _, s := range c.stats.Interfaces {
		n += s.FlowsRemoved
	}
	return n
}

// reasonSum is a pass reason summed over interfaces.
func (c counters) reasonSum(reason string) (n uint64) {
	for _, s := range c.stats.Interfaces {
		n += s.PassReasons[reason]
	}
	return n
}

// share is fastpath's share of the packets forwarded from before to after
// in family f, with the two deltas. The packets a new TCP flow sends while
// its conntrack entry is made window-liberal (not_liberal, a correctness
// cost each flow pays once, longer on a loaded machine) are not held
// against it (TestOffloadMasquerade bounds them).
func share(before, after counters, f fam) (float64, uint64, uint64) {
	fp := after.forwarded() - before.forwarded()
	k := f.forwarded(after) - f.forwarded(before)
	k -= min(k, after.reasonSum("not_liberal")-before.reasonSum("not_liberal"))
	if fp+k == 0 {
		return 0, fp, k
	}
	return float64(fp) / float64(fp+k), fp, k
}

// checksumErrors sums the TCP and UDP receive checksum errors of namespace
// ns: a wrong incremental checksum update after NAT shows up here (veth
// keeps CHECKSUM_NONE, so the receiver verifies every segment).
func checksumErrors(t *testing.T, ns string) uint64 {
	t.Helper()
	var snmp, snmp6 []byte
	inNS(t, ns, func() error {
		var err error
		if snmp, err = os.ReadFile("/proc/thread-self/net/snmp"); err != nil {
			return err
		}
		snmp6, err = os.ReadFile("/proc/thread-self/net/snmp6")
		return err
	})
	var n uint64
	for _, g := range []string{"Tcp", "Udp"} {
		n += snmpField(t, snmp, g, "InCsumErrors")
	}
	sc := bufio.NewScanner(bytes.NewReader(snmp6))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "Udp6InCsumErrors" {
			v, _ := strconv.ParseUint(f[1], 10, 64)
			n += v
		}
	}
	return n
}

func snmpField(t *testing.T, b []byte, group, field string) uint64 {
	t.Helper()
	var header []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != group+":" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i, h := range header {
			if h == field && i < len(f) {
				v, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					t.Fatalf("snmp %s %s: %v", group, field, err)
				}
				return v
			}
		}
	}
	t.Fatalf("snmp: no %s %s", group, field)
	return 0
}

// ---- receive timestamps and interfaces ----

// enableRecvInfo asks the kernel for receive timestamps (and, for UDP, the
// receiving interface and the TOS / traffic class) on c's socket.
func enableRecvInfo(c syscall.Conn, v6, pktinfo bool) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); serr != nil {
			return
		}
		if !pktinfo {
			return
		}
		if v6 {
			if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1); serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS, 1)
			}
		} else {
			if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1); serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVTOS, 1)
			}
		}
	})
	if err == nil {
		err = serr
	}
	return err
}

// recvInfo decodes the control messages enableRecvInfo asked for: the
// kernel's receive time (now if it gave none), the receiving ifindex (0 if
// none) and the TOS or traffic class byte (-1 if none).
func recvInfo(oob []byte) (at time.Time, ifindex, tos int) {
	tos = -1
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err == nil {
		for _, m := range msgs {
			switch {
			case m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16:
				ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
				at = time.Unix(ts.Sec, ts.Nsec)
			case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= 4:
				ifindex = int(int32(binary.NativeEndian.Uint32(m.Data)))
			case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= 20:
				ifindex = int(binary.NativeEndian.Uint32(m.Data[16:]))
			case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TOS && len(m.Data) >= 1:
				tos = int(m.Data[0])
			case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_TCLASS && len(m.Data) >= 4:
				tos = int(int32(binary.NativeEndian.Uint32(m.Data)))
			}
		}
	}
	if at.IsZero() {
		at = time.Now()
	}
	return at, ifindex, tos
}

// ---- UDP ----

// Datagram kinds of udpFlow: a 16-byte header (run id, sequence number),
// then the kind.
const (
	kindData  = 0
	kindHello = 1 // echoed by the receiver: the flow gets a reply (UDP: conntrack SEEN_REPLY)
	udpMinLen = 17
)

// arrival is one data datagram as the receiver got it.
type arrival struct {
	seq     uint64
	at      time.Time // kernel receive time
	ifindex int
	tos     int // IPv4 TOS or IPv6 traffic class byte (-1: unknown)
}

// udpFlow is a UDP flow from a socket in one namespace to a receiver in
// another. Unlike traffic.UDPStream it can be held open, made bidirectional
// (hellos, echoes) so conntrack sees a reply, and it records when and
// where each datagram arrived.
type udpFlow struct {
	tx, rx    *net.UDPConn
	runID     uint64
	local     netip.AddrPort // the sender's address
	dst       netip.AddrPort // where the sender sends
	listen    netip.AddrPort // the receiver's address
	echoEvery atomic.Uint64  // the receiver echoes data datagrams with seq % echoEvery == 0 (0: none)
	seq       atomic.Uint64  // next data sequence number
	echoes    atomic.Int64   // echoes the sender got back

	mu       sync.Mutex
	arrivals []arrival
	peer     netip.AddrPort // source address of the last datagram the receiver got
}

// newUDPFlow opens a receiver on listen in dstNS (port 0: any) and a
// sender in srcNS bound to local (the zero AddrPort: any) that sends to
// dial (port 0: the receiver's port).
func newUDPFlow(t *testing.T, srcNS, dstNS string, local, listen, dial netip.AddrPort) *udpFlow {
	t.Helper()
	u := &udpFlow{runID: rand.Uint64()}
	inNS(t, dstNS, func() error {
		var err error
		u.rx, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(listen))
		return err
	})
	raw, _ := u.rx.SyscallConn()
	raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, udpRcvBuf) })
	if err := enableRecvInfo(u.rx, listen.Addr().Is6(), true); err != nil {
		u.rx.Close()
		t.Fatalf("udp receiver options: %v", err)
	}
	u.listen = unmapAP(u.rx.LocalAddr().(*net.UDPAddr).AddrPort())
	if dial.Port() == 0 {
		dial = netip.AddrPortFrom(dial.Addr(), u.listen.Port())
	}
	u.dst = dial
	inNS(t, srcNS, func() error {
		var err error
		var laddr *net.UDPAddr
		if local.IsValid() {
			laddr = net.UDPAddrFromAddrPort(local)
		}
		u.tx, err = net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(dial))
		return err
	})
	u.local = unmapAP(u.tx.LocalAddr().(*net.UDPAddr).AddrPort())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); u.receive() }()
	go func() { defer wg.Done(); u.readEchoes() }()
	t.Cleanup(func() {
		u.rx.Close()
		u.tx.Close()
		wg.Wait()
	})
	return u
}

func (u *udpFlow) receive() {
	buf := make([]byte, maxDatagram)
	oob := make([]byte, tsOOB)
	for {
		n, oobn, _, from, err := u.rx.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n < udpMinLen || binary.BigEndian.Uint64(buf) != u.runID {
			continue
		}
		at, ifindex, tos := recvInfo(oob[:oobn])
		seq := binary.BigEndian.Uint64(buf[8:])
		switch buf[16] {
		case kindHello:
			u.rx.WriteToUDPAddrPort(buf[:n], from)
		case kindData:
			u.mu.Lock()
			u.arrivals = append(u.arrivals, arrival{seq: seq, at: at, ifindex: ifindex, tos: tos})
			u.peer = unmapAP(from)
			u.mu.Unlock()
			if e := u.echoEvery.Load(); e > 0 && seq%e == 0 {
				u.rx.WriteToUDPAddrPort(buf[:n], from)
			}
		}
	}
}

func (u *udpFlow) readEchoes() {
	buf := make([]byte, maxDatagram)
	for {
		n, err := u.tx.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ECONNREFUSED from an ICMP error
		}
		if n >= udpMinLen && binary.BigEndian.Uint64(buf) == u.runID {
			u.echoes.Add(1)
		}
	}
}

// setTOS sets the TOS (IPv4) or traffic class (IPv6) of what the sender
// sends from now on, DSCP and ECN bits.
func (u *udpFlow) setTOS(t *testing.T, tos int) {
	t.Helper()
	raw, err := u.tx.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		if u.dst.Addr().Is6() {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_TCLASS, tos)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TOS, tos)
		}
	})
	if err = errors.Join(err, serr); err != nil {
		t.Fatalf("set tos %#x: %v", tos, err)
	}
}

// handshake sends hellos until one is echoed: the flow then has a reply.
func (u *udpFlow) handshake(t *testing.T) {
	t.Helper()
	before := u.echoes.Load()
	buf := make([]byte, udpMinLen)
	binary.BigEndian.PutUint64(buf, u.runID)
	buf[16] = kindHello
	pollUntilEvery(t, offloadWait, handshakeGap, fmt.Sprintf("udp hello %s -> %s echoed", u.local, u.dst), func() error {
		if u.echoes.Load() > before {
			return nil
		}
		u.tx.Write(buf)
		return errors.New("no echo yet")
	})
}

// send sends count data datagrams of size bytes (UDP payload), one every
// gap (0: back to back), and returns how many the kernel took. It stops
// early when ctx ends.
func (u *udpFlow) send(ctx context.Context, count, size int, gap time.Duration) int {
	buf := make([]byte, max(size, udpMinLen))
	binary.BigEndian.PutUint64(buf, u.runID)
	buf[16] = kindData
	start := time.Now()
	sent := 0
	for i := 0; i < count; i++ {
		if gap > 0 {
			if d := time.Until(start.Add(time.Duration(i) * gap)); d > 0 {
				tm := time.NewTimer(d)
				select {
				case <-ctx.Done():
					tm.Stop()
					return sent
				case <-tm.C:
				}
			}
		}
		if ctx.Err() != nil {
			return sent
		}
		binary.BigEndian.PutUint64(buf[8:], u.seq.Add(1)-1)
		if _, err := u.tx.Write(buf); err == nil {
			sent++
		}
	}
	return sent
}

// sender is a background send; its methods are idempotent.
type sender struct {
	cancel context.CancelFunc
	ch     chan int
	once   sync.Once
	sent   int
}

// wait waits until the sender finished and returns how many it sent.
func (s *sender) wait() int {
	s.once.Do(func() { s.sent = <-s.ch })
	return s.sent
}

// stop ends the sender early and returns how many it sent.
func (s *sender) stop() int {
	s.cancel()
	return s.wait()
}

// stream sends like send in the background. The test's cleanup stops it.
func (u *udpFlow) stream(t *testing.T, ctx context.Context, count, size int, gap time.Duration) *sender {
	ctx, cancel := context.WithCancel(ctx)
	s := &sender{cancel: cancel, ch: make(chan int, 1)}
	go func() { s.ch <- u.send(ctx, count, size, gap) }()
	t.Cleanup(func() { s.stop() })
	return s
}

// received is the number of data datagrams that arrived so far.
func (u *udpFlow) received() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.arrivals)
}

// snapshot copies what arrived so far.
func (u *udpFlow) snapshot() ([]arrival, netip.AddrPort) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]arrival(nil), u.arrivals...), u.peer
}

// waitReceived polls until at least n data datagrams arrived.
func (u *udpFlow) waitReceived(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	pollUntil(t, timeout, fmt.Sprintf("%d datagrams %s -> %s received", n, u.local, u.dst), func() error {
		if got := u.received(); got < n {
			return fmt.Errorf("%d received", got)
		}
		return nil
	})
}

// settle waits until want datagrams arrived, or none arrived for quiet,
// and returns how many arrived: for streams where loss is measured.
func (u *udpFlow) settle(t *testing.T, want int, quiet time.Duration) int {
	t.Helper()
	last, lastChange := u.received(), time.Now()
	pollUntil(t, testTimeout/2, "udp receiver settled", func() error {
		n := u.received()
		if n >= want {
			return nil
		}
		if n != last {
			last, lastChange = n, time.Now()
		}
		if time.Since(lastChange) >= quiet {
			return nil
		}
		return fmt.Errorf("%d of %d received, still arriving", n, want)
	})
	return u.received()
}

// ---- TCP ----

// tcpPair is one TCP connection between namespaces, both ends ours.
type tcpPair struct {
	client, server *net.TCPConn
	clientAddr     netip.AddrPort // the client's own address
	serverSees     netip.AddrPort // the client's address as the server sees it
	listen         netip.AddrPort // the server's address
	dial           netip.AddrPort // what the client connected to
}

// openTCP listens on listen in serverNS (port 0: any), connects from
// clientNS to dial (port 0: the listener's port) and accepts.
func openTCP(ctx context.Context, t *testing.T, clientNS, serverNS string, listen, dial netip.AddrPort) *tcpPair {
	t.Helper()
	var ln *net.TCPListener
	inNS(t, serverNS, func() error {
		var err error
		ln, err = net.ListenTCP("tcp", net.TCPAddrFromAddrPort(listen))
		return err
	})
	defer ln.Close()
	p := &tcpPair{listen: unmapAP(ln.Addr().(*net.TCPAddr).AddrPort())}
	if dial.Port() == 0 {
		dial = netip.AddrPortFrom(dial.Addr(), p.listen.Port())
	}
	p.dial = dial
	ln.SetDeadline(time.Now().Add(dialTimeout))
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err == nil {
			p.server = c
		}
		accepted <- err
	}()
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	var c net.Conn
	inNS(t, clientNS, func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(dctx, "tcp", dial.String())
		return err
	})
	p.client = c.(*net.TCPConn)
	if err := <-accepted; err != nil {
		p.client.Close()
		t.Fatalf("accept on %s in %s: %v", p.listen, serverNS, err)
	}
	p.clientAddr = unmapAP(p.client.LocalAddr().(*net.TCPAddr).AddrPort())
	p.serverSees = unmapAP(p.server.RemoteAddr().(*net.TCPAddr).AddrPort())
	t.Cleanup(func() {
		p.client.Close()
		p.server.Close()
	})
	return p
}

// transferResult is one direction of data over a tcpPair.
type transferResult struct {
	sent, received int64
	sentSum        [32]byte
	recvSum        [32]byte
	err            error
}

func (r transferResult) ok(size int) bool {
	return r.err == nil && r.sent == int64(size) && r.received == int64(size) && r.sentSum == r.recvSum
}

// copyN sends size pseudo-random bytes from w to r and reads exactly size
// bytes at r, comparing SHA-256. chunk bytes are written every pace (0:
// as fast as possible). progress, if not nil, counts bytes received. Both
// conns get ctx's deadline.
func copyN(ctx context.Context, w, r *net.TCPConn, size, chunk int, pace time.Duration, progress *atomic.Int64) transferResult {
	deadline, _ := ctx.Deadline()
	w.SetWriteDeadline(deadline)
	r.SetReadDeadline(deadline)
	type recv struct {
		n   int64
		sum [32]byte
		err error
	}
	got := make(chan recv, 1)
	go func() {
		h := sha256.New()
		buf := make([]byte, 256<<10)
		var n int64
		var err error
		for n < int64(size) && err == nil {
			var k int
			k, err = r.Read(buf[:min(int64(len(buf)), int64(size)-n)])
			h.Write(buf[:k])
			n += int64(k)
			if progress != nil {
				progress.Add(int64(k))
			}
		}
		var res recv
		res.n, res.err = n, err
		h.Sum(res.sum[:0])
		got <- res
	}()
	var res transferResult
	src := rand.NewChaCha8([32]byte{'o', 'f', 'f', 'l', 'o', 'a', 'd'})
	h := sha256.New()
	buf := make([]byte, chunk)
	start := time.Now()
	for i := 0; res.sent < int64(size); i++ {
		if pace > 0 {
			if d := time.Until(start.Add(time.Duration(i) * pace)); d > 0 {
				tm := time.NewTimer(d)
				select {
				case <-ctx.Done():
				case <-tm.C:
				}
				tm.Stop()
			}
		}
		k := min(int64(chunk), int64(size)-res.sent)
		src.Read(buf[:k])
		h.Write(buf[:k])
		n, err := w.Write(buf[:k])
		res.sent += int64(n)
		if err != nil {
			res.err = fmt.Errorf("write after %d bytes: %w", res.sent, err)
			break
		}
	}
	h.Sum(res.sentSum[:0])
	rr := <-got
	res.received, res.recvSum = rr.n, rr.sum
	if res.err == nil && rr.err != nil {
		res.err = fmt.Errorf("read after %d bytes: %w", rr.n, rr.err)
	}
	return res
}

// readStamped reads from a TCP conn whose socket has SO_TIMESTAMPNS on and
// returns the bytes read and the kernel's receive time of the last segment
// in them. It honours the conn's read deadline.
func readStamped(c *net.TCPConn, buf, oob []byte) (int, time.Time, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, time.Time{}, err
	}
	var n, oobn int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, 0)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, time.Time{}, err
	}
	if n == 0 {
		return 0, time.Time{}, io.EOF
	}
	at, _, _ := recvInfo(oob[:oobn])
	return n, at, nil
}

// tcpSink is a listener that counts the connections it accepts and the
// bytes they bring.
type tcpSink struct {
	ln      *net.TCPListener
	accepts atomic.Int64
	bytes   atomic.Int64
	wg      sync.WaitGroup
}

func newTCPSink(t *testing.T, ns string, addr netip.AddrPort) *tcpSink {
	t.Helper()
	s := &tcpSink{}
	inNS(t, ns, func() error {
		var err error
		s.ln, err = net.ListenTCP("tcp", net.TCPAddrFromAddrPort(addr))
		return err
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return // closed
			}
			s.accepts.Add(1)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(testTimeout))
				n, _ := io.Copy(io.Discard, c)
				s.bytes.Add(n)
			}()
		}
	}()
	t.Cleanup(func() {
		s.ln.Close()
		s.wg.Wait()
	})
	return s
}

// dialFrom connects from namespace ns to addr, writes a few bytes and
// closes; it returns the connect error.
func dialFrom(ctx context.Context, ns string, addr netip.AddrPort) error {
	var c net.Conn
	err := nsutil.Do(ns, func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr.String())
		return err
	})
	if err != nil {
		return err
	}
	c.Write([]byte("through the drop rule"))
	return c.Close()
}

// fence returns once a fresh UDP exchange from srcNS to dst in dstNS went
// through both ways: datagrams sent on the same path before it had their
// chance to arrive. Used before asserting that something did not arrive.
func fence(t *testing.T, srcNS, dstNS string, dst netip.Addr) {
	t.Helper()
	any := netip.AddrPortFrom(dst, 0)
	newUDPFlow(t, srcNS, dstNS, netip.AddrPort{}, any, any).handshake(t)
}
