package datapath

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// The offload-mode reference, written from DESIGN §2.1 and the kernel's
// NAT (net/netfilter/nf_nat_proto.c) rather than from the C: a packet of an
// offloaded flow leaves with the addresses and ports of the other
// direction's conntrack tuple turned around, one hop less, new MACs and
// checksums that are right for the new headers. An IPv4 UDP checksum of 0
// ("none") stays 0; a UDP checksum that computes to 0 is sent as 0xffff.

// natConn is one connection through the router as conntrack holds it: the
// original and the reply tuple, each as that direction's packets arrive.
type natConn struct {
	orig, reply Tuple
}

func reverse(t Tuple) Tuple { return Tuple{Proto: t.Proto, Src: t.Dst, Dst: t.Src} }

// snatConn: client -> server leaves as public -> server (masquerade).
func snatConn(proto uint8, client, server, public netip.AddrPort) natConn {
	return natConn{orig: Tuple{proto, client, server}, reply: Tuple{proto, server, public}}
}

// dnatConn: client -> public is forwarded to server (a port forward).
func dnatConn(proto uint8, client, public, server netip.AddrPort) natConn {
	return natConn{orig: Tuple{proto, client, public}, reply: Tuple{proto, server, client}}
}

// plainConn: no NAT.
func plainConn(proto uint8, client, server netip.AddrPort) natConn {
	return natConn{orig: Tuple{proto, client, server}, reply: Tuple{proto, server, client}}
}

// leg is one direction of a connection as the router forwards it.
type leg struct {
	in, out Tuple // as its packets arrive, and as they leave
	reply   bool  // conntrack's reply direction
}

func (c natConn) leg(reply bool) leg {
	if reply {
		return leg{in: c.reply, out: reverse(c.orig), reply: true}
	}
	return leg{in: c.orig, out: reverse(c.reply)}
}

func (l leg) snat() bool { return l.out.Src != l.in.Src }
func (l leg) dnat() bool { return l.out.Dst != l.in.Dst }

// side is a router interface of the test net as a flow sees it.
type side struct {
	name      string
	mac, peer net.HardwareAddr // the router's MAC on it; the next hop's
	mtu       int
	nets      []netip.Prefix // what lies behind it
}

var (
	sideIn0 = &side{name: "in0", mac: macIn0, peer: macPeer, mtu: 1500,
		nets: []netip.Prefix{netip.MustParsePrefix("198.18.10.0/24"), netip.MustParsePrefix("fd00:10::/64")}}
	sideOut0 = &side{name: "out0", mac: macOut0, peer: macNhop, mtu: out0MTU,
		nets: []netip.Prefix{
			netip.MustParsePrefix("198.18.20.0/24"), netip.MustParsePrefix("198.18.30.0/24"),
			netip.MustParsePrefix("fd00:20::/64"), netip.MustParsePrefix("fd00:30::/64"),
		}}
)

// sideOf is where a address lies, from the test router's routes.
func sideOf(a netip.Addr) *side {
	for _, s := range []*side{sideIn0, sideOut0} {
		for _, p := range s.nets {
			if p.Contains(a) {
				return s
			}
		}
	}
	panic(fmt.Sprintf("address %s is on no side of the test router", a))
}

// ingress and egress of a leg: where its packets arrive (from their
// source) and leave (towards their destination after NAT).
func (l leg) ingress() *side { return sideOf(l.in.Src.Addr()) }
func (l leg) egress() *side  { return sideOf(l.out.Dst.Addr()) }

// seg is what a test packet carries besides its tuple.
type seg struct {
	tcp     func(*layers.TCP) // TCP header tweak (flags); nil: ACK|PSH
	payload []byte            // nil: 32 bytes
	ttl     uint8             // TTL / hop limit; 0: 64
	noCsum  bool              // UDP: checksum field 0 ("none" in IPv4)
}

// tuplePkt builds a packet of tuple tp sent from MAC src to MAC dst.
func tuplePkt(tp Tuple, src, dst net.HardwareAddr, s seg) pkt {
	proto := layers.IPProtocol(tp.Proto)
	ttl := s.ttl
	if ttl == 0 {
		ttl = 64
	}
	var l3 gopacket.SerializableLayer
	if tp.Src.Addr().Is4() {
		h := ip4Hdr(net.IP(tp.Dst.Addr().AsSlice()), proto)
		h.SrcIP, h.TTL = net.IP(tp.Src.Addr().AsSlice()), ttl
		l3 = h
	} else {
		h := ip6Hdr(net.IP(tp.Dst.Addr().AsSlice()), proto)
		h.SrcIP, h.HopLimit = net.IP(tp.Src.Addr().AsSlice()), ttl
		l3 = h
	}
	var l4 gopacket.SerializableLayer
	switch tp.Proto {
	case unix.IPPROTO_TCP:
		th := tcpHdr()
		th.SrcPort, th.DstPort = layers.TCPPort(tp.Src.Port()), layers.TCPPort(tp.Dst.Port())
		if s.tcp != nil {
			s.tcp(th)
		}
		l4 = th
	case unix.IPPROTO_UDP:
		uh := udpHdr()
		uh.SrcPort, uh.DstPort = layers.UDPPort(tp.Src.Port()), layers.UDPPort(tp.Dst.Port())
		l4 = uh
	default:
		panic("tuplePkt: tcp or udp only")
	}
	p := s.payload
	if p == nil {
		p = payload(32)
	}
	return pkt{srcMAC: src, dstMAC: dst, l3: l3, l4: l4, payload: p}
}

// segFrame serializes tuplePkt, honouring noCsum.
func segFrame(t testing.TB, tp Tuple, src, dst net.HardwareAddr, s seg) []byte {
	t.Helper()
	b := tuplePkt(tp, src, dst, s).bytes(t)
	if s.noCsum {
		off, _ := l4Offset(b)
		b[off+6], b[off+7] = 0, 0
	}
	return b
}

// inFrame is a packet of the leg as it arrives on its ingress.
func (l leg) inFrame(t testing.TB, s seg) []byte {
	ing := l.ingress()
	return segFrame(t, l.in, ing.peer, ing.mac, s)
}

// natExpect is the Go reference for a forwarded packet of the leg: the
// frame gopacket builds for the translated tuple, with the egress MACs and
// one hop less, checksums computed from scratch. An IPv4 UDP packet
// without checksum stays without; so does an IPv6 one (the kernel's NAT
// leaves a zero UDP checksum alone whatever the family, see
// __udp_manip_pkt, and RFC 6935 allows it for tunnels over IPv6).
func (l leg) natExpect(t testing.TB, s seg) []byte {
	eg := l.egress()
	if s.ttl == 0 {
		s.ttl = 64
	}
	s.ttl--
	return trimmed(segFrame(t, l.out, eg.mac, eg.peer, s)) // padding trimmed, as the kernel does
}

// zeroingPayload returns a payload for the leg whose UDP checksum after
// NAT is computed as 0 (and so must be sent as 0xffff): the first payload
// word cancels the rest of the sum.
func (l leg) zeroingPayload(t testing.TB) []byte {
	t.Helper()
	p := payload(24)
	p[0], p[1] = 0, 0
	out := segFrame(t, l.out, macOut0, macNhop, seg{payload: p})
	off, _ := l4Offset(out)
	c := binary.BigEndian.Uint16(out[off+6:])
	// The sum with the word at 0 is ~c; adding c makes it 0xffff (-0), whose
	// complement, the checksum, is 0.
	binary.BigEndian.PutUint16(p, c)
	return p
}

// l4Offset returns where the L4 header of an untagged IPv4/IPv6 frame
// starts, and the IP version.
func l4Offset(frame []byte) (int, int) {
	off := l3Offset(frame)
	if frame[off]>>4 == 4 {
		return off + int(frame[off]&0x0f)*4, 4
	}
	return off + 40, 6
}

// natRule is what the router does with one offloaded flow direction.
type natRule struct {
	out             Tuple
	ingress, egress *side
}

// natModel is the reference model of offload mode for arbitrary frames:
// the flows it knows are the ones conntrack holds as established and
// netfilter accepted, keyed by the tuple as they arrive.
type natModel map[Tuple]natRule

func (m natModel) add(c natConn) {
	for _, r := range []bool{false, true} {
		l := c.leg(r)
		m[l.in] = natRule{out: l.out, ingress: l.ingress(), egress: l.egress()}
	}
}

// natVerdict is what the model says of a frame: forward as want (IPv4
// header and L4 checksums aside, see checkNAT), or pass (want nil).
type natVerdict struct {
	want []byte
	why  string // for pass: a hint for failure messages
	// mayDrop: a FIN or RST of a known flow, which the datapath drops when
	// it lies outside the window the other direction advertised (its
	// cached acks and windows, which the model does not follow); passed
	// unchanged otherwise.
	mayDrop bool
}

// expect applies the model to a frame arriving on ingress.
func (m natModel) expect(frame []byte, ingress *side) natVerdict {
	if len(frame) < 14 || !bytes.Equal(frame[0:6], ingress.mac) {
		return natVerdict{why: "not for the ingress's MAC"}
	}
	l3 := frame[14:]
	var (
		v6     bool
		l3Len  int
		proto  byte
		l4     []byte
		src    netip.Addr
		dst    netip.Addr
		hopOff int
	)
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		if !modelIPv4Parses(l3) {
			return natVerdict{why: "ipv4 guards"}
		}
		l3Len, proto, hopOff = int(binary.BigEndian.Uint16(l3[2:])), l3[9], 8
		l4 = l3[20:l3Len]
		src, dst = netip.AddrFrom4([4]byte(l3[12:16])), netip.AddrFrom4([4]byte(l3[16:20]))
	case 0x86dd:
		if !modelIPv6Parses(l3) {
			return natVerdict{why: "ipv6 guards"}
		}
		v6 = true
		l3Len, proto, hopOff = 40+int(binary.BigEndian.Uint16(l3[4:])), l3[6], 7
		l4 = l3[40:l3Len]
		src, dst = netip.AddrFrom16([16]byte(l3[8:24])), netip.AddrFrom16([16]byte(l3[24:40]))
	default:
		return natVerdict{why: "not ip (or tagged)"}
	}
	if !modelL4(proto, l4, v6) {
		return natVerdict{why: "l4"}
	}
	if proto != unix.IPPROTO_TCP && proto != unix.IPPROTO_UDP {
		return natVerdict{why: "icmp"}
	}
	if proto == unix.IPPROTO_TCP {
		// conntrack's valid flag combinations, PSH, ECE and CWR aside: only
		// ACK and ACK|URG are forwarded; FIN|ACK, RST, RST|ACK,
		// FIN|ACK|URG close the flow; the rest goes to the kernel.
		switch l4[13] & 0x37 {
		case 0x10, 0x30:
		case 0x04, 0x14, 0x11, 0x31:
			in := Tuple{Proto: proto,
				Src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4[0:])),
				Dst: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:]))}
			_, known := m[in]
			return natVerdict{why: "tcp fin/rst", mayDrop: known}
		default:
			return natVerdict{why: "tcp flags"}
		}
	}
	in := Tuple{Proto: proto,
		Src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4[0:])),
		Dst: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:]))}
	r, ok := m[in]
	if !ok {
		return natVerdict{why: "no offloadable flow"}
	}
	if r.egress == ingress {
		return natVerdict{why: "hairpin"}
	}
	if l3Len > r.egress.mtu {
		return natVerdict{why: "over the egress mtu"}
	}
	// The flows were judged (verdictOf) on packets with the test frames'
	// DSCP, TTL 64 and flow label: one that arrives otherwise goes to the
	// kernel to be judged (nf_rewrite); the ECN bits are not judged.
	if v6 {
		if w := binary.BigEndian.Uint32(l3); w&0x0fcfffff != 0x28<<20|0x12345 || l3[7] != 64 {
			return natVerdict{why: "headers other than the judged ones"}
		}
	} else if l3[1]&0xfc != 0x10 || l3[8] != 64 {
		return natVerdict{why: "headers other than the judged ones"}
	}
	// conntrack verifies L4 checksums (nf_conntrack_checksum=1): a wrong
	// one is invalid to it, so the datapath leaves it to the kernel; a
	// UDP checksum of 0 means none, in both families (udp_error)
	if !(proto == unix.IPPROTO_UDP && l4[6] == 0 && l4[7] == 0) && !l4ChecksumOK(src, dst, proto, l4) {
		return natVerdict{why: "bad l4 checksum"}
	}

	want := bytes.Clone(frame[:14+l3Len]) // trailing bytes trimmed
	copy(want[0:6], r.egress.peer)
	copy(want[6:12], r.egress.mac)
	w3 := want[14:]
	w3[hopOff]--
	if v6 {
		a, b := r.out.Src.Addr().As16(), r.out.Dst.Addr().As16()
		copy(w3[8:24], a[:])
		copy(w3[24:40], b[:])
	} else {
		a, b := r.out.Src.Addr().As4(), r.out.Dst.Addr().As4()
		copy(w3[12:16], a[:])
		copy(w3[16:20], b[:])
		fixIPv4Checksum(want, 14)
	}
	w4 := want[14+l3Len-len(l4):]
	binary.BigEndian.PutUint16(w4[0:], r.out.Src.Port())
	binary.BigEndian.PutUint16(w4[2:], r.out.Dst.Port())
	return natVerdict{want: want}
}

// modelIPv4Parses: the IPv4 guards of route mode (modelIPv4) without its
// routing, which offload mode does on the translated tuple.
func modelIPv4Parses(l3 []byte) bool {
	if len(l3) < 20 || l3[0]>>4 != 4 || l3[0]&0x0f != 5 {
		return false
	}
	totLen := int(binary.BigEndian.Uint16(l3[2:]))
	if totLen < 20 || totLen > len(l3) || binary.BigEndian.Uint16(l3[6:])&0x3fff != 0 {
		return false
	}
	if ipv4Checksum(l3[:20]) != binary.BigEndian.Uint16(l3[10:]) {
		return false // the kernel's receive path drops it
	}
	return !special4(net.IP(l3[12:16])) && !special4(net.IP(l3[16:20])) && l3[8] > 1
}

func modelIPv6Parses(l3 []byte) bool {
	if len(l3) < 40 || l3[0]>>4 != 6 {
		return false
	}
	plen := int(binary.BigEndian.Uint16(l3[4:]))
	if plen == 0 || 40+plen > len(l3) {
		return false
	}
	return !special6(net.IP(l3[8:24])) && !special6(net.IP(l3[24:40])) && l3[7] > 1
}

// l4Residual is the ones' complement sum (onesSum) of the L4 pseudo-header
// addresses and protocol and every byte from the L4 header to the end of
// the IP datagram (a trailer after it is trimmed on the way out), checksum
// field included. It is 0 for a packet with a right checksum; a router that
// updates the checksum incrementally (RFC 1624) keeps it as it was, right
// or wrong, whatever it rewrites.
func l4Residual(frame []byte) uint16 {
	off := l3Offset(frame)
	l4, ver := l4Offset(frame)
	var b []byte
	if ver == 4 {
		b = append(b, frame[off+12:off+20]...)
		b = append(b, 0, frame[off+9])
	} else {
		b = append(b, frame[off+8:off+40]...)
		b = append(b, 0, frame[off+6])
	}
	b = append(b, trimmed(frame)[l4:]...) // the datagram's bytes, not a trailer's
	if len(b)%2 == 1 {
		b = append(b, 0)
	}
	return onesSum(b)
}

// checkNAT compares a forwarded frame with the model's. Bytes other than
// the checksums must be exactly want's. The IPv4 header checksum must be
// right (a wrong one on input is never forwarded). The L4 checksum must
// carry the input's residual (right stays right), a UDP one must not
// become 0, and a UDP checksum of 0 must stay 0 (IPv4 and IPv6, as the
// kernel's NAT does).
func checkNAT(in, got, want []byte) error {
	if len(got) != len(want) {
		return fmt.Errorf("output is %d bytes, want %d", len(got), len(want))
	}
	off := l3Offset(in)
	l4, ver := l4Offset(in)
	udp := (ver == 4 && in[off+9] == unix.IPPROTO_UDP) || (ver == 6 && in[off+6] == unix.IPPROTO_UDP)
	cs := l4 + 16
	if udp {
		cs = l4 + 6
	}
	g, w := bytes.Clone(got), bytes.Clone(want)
	for _, p := range []int{cs, off + 10} {
		if ver == 6 && p == off+10 {
			continue
		}
		g[p], g[p+1], w[p], w[p+1] = 0, 0, 0, 0
	}
	if !bytes.Equal(g, w) {
		return fmt.Errorf("output outside the checksums %s", diffBytes(got, want))
	}
	if ver == 4 {
		hgot := got[off : off+20]
		if c, calc := binary.BigEndian.Uint16(hgot[10:]), ipv4Checksum(hgot); c != calc {
			return fmt.Errorf("ipv4 header checksum %#04x, recomputed %#04x", c, calc)
		}
	}
	cin, cgot := binary.BigEndian.Uint16(in[cs:]), binary.BigEndian.Uint16(got[cs:])
	if udp && cin == 0 {
		if cgot != 0 {
			return fmt.Errorf("ipv%d udp checksum 0 (none) became %#04x; the kernel's NAT leaves it 0", ver, cgot)
		}
		return nil
	}
	if udp && cgot == 0 {
		return fmt.Errorf("udp checksum became 0 (none); a computed 0 is sent as 0xffff (input %#04x)", cin)
	}
	if rin, rgot := l4Residual(in), l4Residual(got); rin != rgot {
		return fmt.Errorf("l4 checksum %#04x does not carry the input's residual %#04x (output's %#04x, input checksum %#04x)",
			cgot, rin, rgot, cin)
	}
	return nil
}

// l4ChecksumOK reports whether a TCP/UDP segment's checksum is right over
// its pseudo-header.
func l4ChecksumOK(src, dst netip.Addr, proto byte, l4 []byte) bool {
	var sum uint64
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint64(b[i])<<8 | uint64(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint64(b[len(b)-1]) << 8
		}
	}
	add(src.AsSlice())
	add(dst.AsSlice())
	sum += uint64(proto) + uint64(len(l4))
	add(l4)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}
