package datapath

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Outcomes of a packet case, per hook.
const (
	fwd  = "fwd" // redirected to out0, rewritten as forwarded() says
	skip = ""    // the case does not apply to this hook
)

// pktCase is one table-driven BPF_PROG_RUN case. xdp and tc name the
// expected outcome: fwd, or the pass reason whose counter must go up while
// the frame goes to the kernel byte for byte unchanged.
type pktCase struct {
	name    string
	frame   []byte
	xdp, tc string
	gso     bool // TC: present the frame as a GRO aggregate (gso_size set)
	// setup changes the router for this case and registers the undo with
	// t.Cleanup.
	setup func(t *testing.T, tn *testNet)
}

// both is the usual case: the same outcome for XDP and TC.
func both(name string, frame []byte, want string) pktCase {
	return pktCase{name: name, frame: frame, xdp: want, tc: want}
}

// udp4Len is an IPv4 UDP packet of exactly ipLen bytes of IP to dst.
func udp4Len(dst net.IP, ipLen int) pkt {
	p := udp4(dst)
	p.payload = payload(ipLen - 20 - 8)
	return p
}

func udp6Len(dst net.IP, ipLen int) pkt {
	p := udp6(dst)
	p.payload = payload(ipLen - 40 - 8)
	return p
}

// patch returns a copy of frame with fn applied to the bytes from the L3
// header on; used for the inconsistencies gopacket will not build.
func patch(frame []byte, fn func(l3 []byte)) []byte {
	out := append([]byte(nil), frame...)
	fn(out[l3Offset(out):])
	return out
}

// withTrailer appends n bytes after the frame's IP datagram.
func withTrailer(frame []byte, n int) []byte {
	tr := make([]byte, n)
	for i := range tr {
		tr[i] = 0xee
	}
	return append(frame, tr...)
}

// forwardCases are frames the datapath must forward to out0.
func forwardCases(t testing.TB) []pktCase {
	return []pktCase{
		both("ipv4 tcp", tcp4(ipDst).bytes(t), fwd),
		both("ipv4 udp", udp4(ipDst).bytes(t), fwd),
		both("ipv4 icmp", icmp4(ipDst).bytes(t), fwd),
		// DF is not a fragment: most TCP carries it.
		both("ipv4 tcp DF", tcp4(ipDst).with(func(p *pkt) { p.v4().Flags = layers.IPv4DontFragment }).bytes(t), fwd),
		// 42 bytes of frame padded to 60: the padding is trimmed, as the kernel does.
		both("ipv4 udp padded", udp4Len(ipDst, 28).bytes(t), fwd),
		// Trailers after the datagram are trimmed, and do not count
		// against the MTU: the kernel trims them on receive.
		both("ipv4 udp with a 320-byte trailer", withTrailer(udp4(ipDst).bytes(t), 320), fwd),
		both("ipv6 tcp with a 320-byte trailer", withTrailer(tcp6(ip6Dst).bytes(t), 320), fwd),
		both("ipv4 at egress mtu with a trailer", withTrailer(udp4Len(ipDst, out0MTU).bytes(t), 100), fwd),
		both("ipv4 ttl 2", udp4(ipDst).with(func(p *pkt) { p.v4().TTL = 2 }).bytes(t), fwd),
		both("ipv4 to connected next hop", udp4(ipNhop).bytes(t), fwd),
		both("ipv4 at egress mtu", udp4Len(ipDst, out0MTU).bytes(t), fwd),
		both("ipv4 tcp DF at egress mtu", tcp4(ipDst).with(func(p *pkt) {
			p.v4().Flags = layers.IPv4DontFragment
			p.payload = payload(out0MTU - 40)
		}).bytes(t), fwd),
		both("ipv6 tcp", tcp6(ip6Dst).bytes(t), fwd),
		both("ipv6 udp", udp6(ip6Dst).bytes(t), fwd),
		both("ipv6 icmpv6", icmp6(ip6Dst).bytes(t), fwd),
		both("ipv6 hop limit 2", udp6(ip6Dst).with(func(p *pkt) { p.v6().HopLimit = 2 }).bytes(t), fwd),
		both("ipv6 to connected next hop", udp6(ip6Nhop).bytes(t), fwd),
		both("ipv6 at egress mtu", udp6Len(ip6Dst, out0MTU).bytes(t), fwd),
	}
}

// guardCases are frames the datapath must leave to the kernel.
func guardCases(t testing.TB) []pktCase {
	hbh := &layers.IPv6HopByHop{}
	hbh.NextHeader = layers.IPProtocolUDP
	hbh.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}} // PadN
	withExt := func(next layers.IPProtocol, ext gopacket.SerializableLayer) []byte {
		p := udp6(ip6Dst)
		return p.with(func(p *pkt) {
			p.v6().NextHeader = next
			p.ext = []gopacket.SerializableLayer{ext}
		}).bytes(t)
	}
	v4proto := func(proto layers.IPProtocol) []byte {
		return pkt{l3: ip4Hdr(ipDst, proto), payload: payload(32)}.bytes(t)
	}
	v6proto := func(proto layers.IPProtocol) []byte {
		return pkt{l3: ip6Hdr(ip6Dst, proto), payload: payload(32)}.bytes(t)
	}
	dstMAC := func(p pkt, mac net.HardwareAddr) []byte {
		p.dstMAC = mac
		return p.bytes(t)
	}
	src4 := func(src string) []byte {
		return udp4(ipDst).with(func(p *pkt) { p.v4().SrcIP = net.ParseIP(src) }).bytes(t)
	}
	src6 := func(src string) []byte {
		return udp6(ip6Dst).with(func(p *pkt) { p.v6().SrcIP = net.ParseIP(src) }).bytes(t)
	}

	return []pktCase{
		both("ipv4 ttl 1", udp4(ipDst).with(func(p *pkt) { p.v4().TTL = 1 }).bytes(t), "ttl"),
		both("ipv4 ttl 0", tcp4(ipDst).with(func(p *pkt) { p.v4().TTL = 0 }).bytes(t), "ttl"),
		both("ipv6 hop limit 1", udp6(ip6Dst).with(func(p *pkt) { p.v6().HopLimit = 1 }).bytes(t), "ttl"),
		both("ipv6 hop limit 0", tcp6(ip6Dst).with(func(p *pkt) { p.v6().HopLimit = 0 }).bytes(t), "ttl"),

		both("ipv4 fragment MF", udp4(ipDst).with(func(p *pkt) { p.v4().Flags = layers.IPv4MoreFragments }).bytes(t), "fragment"),
		both("ipv4 fragment offset", udp4(ipDst).with(func(p *pkt) { p.v4().FragOffset = 185 }).bytes(t), "fragment"),
		both("ipv4 options ihl 6", udp4(ipDst).with(func(p *pkt) {
			p.v4().Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}} // router alert
		}).bytes(t), "ip_options"),
		both("ipv6 hop-by-hop", withExt(layers.IPProtocolIPv6HopByHop, hbh), "ipv6_ext"),
		both("ipv6 fragment header", withExt(layers.IPProtocolIPv6Fragment,
			&layers.IPv6Fragment{NextHeader: layers.IPProtocolUDP, MoreFragments: true, Identification: 9}), "ipv6_ext"),

		// The FIB says RTN_LOCAL / RTN_BROADCAST: bpf_fib_lookup answers
		// NOT_FWDED, counted as local. The subnet broadcast is not in the
		// parser's list: only the FIB knows which subnets the router has.
		both("ipv4 to in0 address", tcp4(ipIn0).bytes(t), "local"),
		both("ipv4 to out0 address", tcp4(ipOut0).bytes(t), "local"),
		both("ipv4 to in0 subnet broadcast", udp4(ipSubnetBc).bytes(t), "local"),
		both("ipv6 to in0 address", tcp6(ip6In0).bytes(t), "local"),
		// Limited broadcast, multicast, link-local, loopback and 0/8 are
		// refused by the parser before any FIB lookup (l3_special): they are
		// never forwardable whatever the routes say. The dst MAC is in0's,
		// so the L2 guard does not speak first in either hook.
		both("ipv4 to limited broadcast", udp4(net.IPv4bcast).bytes(t), "l3_special"),
		both("ipv4 to multicast", udp4(net.ParseIP("224.0.0.5")).bytes(t), "l3_special"),
		both("ipv4 to 0.0.0.1", udp4(net.ParseIP("0.0.0.1")).bytes(t), "l3_special"),
		both("ipv4 from loopback", src4("127.0.0.1"), "l3_special"),
		both("ipv4 from multicast", src4("239.1.1.1"), "l3_special"),
		both("ipv6 to ff02::1", udp6(net.ParseIP("ff02::1")).bytes(t), "l3_special"),
		both("ipv6 to ::1", udp6(net.IPv6loopback).bytes(t), "l3_special"),
		both("ipv6 from fe80::", src6("fe80::1"), "l3_special"),
		both("ipv6 from ::", src6("::"), "l3_special"),
		// An IPv4 source of the router's own (or a broadcast address of
		// its subnets) is a martian to the kernel's input routing
		// (fib_validate_source); an IPv6 one it forwards.
		both("ipv4 from out0 address", src4(ipOut0.String()), "l3_special"),
		both("ipv4 from in0 subnet broadcast", src4(ipSubnetBc.String()), "l3_special"),
		both("ipv6 from out0 address", src6("fd00:20::1"), fwd),

		// XDP compares the dst MAC itself; TC has the kernel's pkt_type.
		both("l2 broadcast", dstMAC(udp4(ipDst), layers.EthernetBroadcast), "l2_not_host"),
		both("l2 multicast", dstMAC(udp4(ipDst), net.HardwareAddr{0x01, 0x00, 0x5e, 0, 0, 5}), "l2_not_host"),
		both("l2 other host", dstMAC(tcp6(ip6Dst), macOther), "l2_not_host"),

		both("ipv4 unresolved next hop", tcp4(ipNoNeigh).bytes(t), "no_neigh"),
		both("ipv6 unresolved next hop", tcp6(ip6NoNeigh).bytes(t), "no_neigh"),
		both("ipv4 no route at all", tcp4(net.ParseIP("198.19.250.1")).bytes(t), "no_route"),
		both("ipv6 no route at all", tcp6(net.ParseIP("fd00:ffff::1")).bytes(t), "no_route"),
		both("ipv4 blackhole", tcp4(ipBlackh).bytes(t), "no_route"),
		both("ipv4 unreachable", tcp4(ipUnreach).bytes(t), "no_route"),
		both("ipv4 prohibit", tcp4(ipProhib).bytes(t), "no_route"),
		both("ipv6 blackhole", tcp6(ip6Blackh).bytes(t), "no_route"),
		both("ipv6 unreachable", tcp6(ip6Unreach).bytes(t), "no_route"),

		both("ipv4 egress unmanaged", tcp4(ipUnmgd).bytes(t), "egress"),
		both("ipv6 egress unmanaged", tcp6(ip6Unmgd).bytes(t), "egress"),
		{name: "egress removed", frame: tcp4(ipDst).bytes(t), xdp: "egress", tc: "egress", setup: removeOut0},
		// TC redirects with bpf_redirect, which needs no devmap entry.
		{name: "egress not an xdp target", frame: tcp4(ipDst).bytes(t), xdp: "egress", tc: fwd, setup: noXDPTarget},

		{name: "ingress mode off", frame: tcp4(ipDst).bytes(t), xdp: "disabled", tc: "disabled", setup: in0Off},
		{name: "nftables chain on the ingress device", frame: udp6(ip6Dst).bytes(t), xdp: "nf_device_chain", tc: "nf_device_chain", setup: nfChainOn(true, false)},
		{name: "nftables chain on the egress device", frame: tcp4(ipDst).bytes(t), xdp: "nf_device_chain", tc: "nf_device_chain", setup: nfChainOn(false, true)},
		{name: "ingress forwarding off ipv4", frame: tcp4(ipDst).bytes(t), xdp: "fwd_disabled", tc: "fwd_disabled", setup: in0NoForwarding},
		{name: "ingress forwarding off ipv6", frame: tcp6(ip6Dst).bytes(t), xdp: "fwd_disabled", tc: "fwd_disabled", setup: in0NoForwarding},

		both("arp unicast", arpFrame(t, macIn0), "not_ip"),
		// XDP parses before its MAC check; TC sees pkt_type first.
		{name: "arp broadcast", frame: arpFrame(t, layers.EthernetBroadcast), xdp: "not_ip", tc: "l2_not_host"},

		both("ipv4 gre", pkt{l3: ip4Hdr(ipDst, layers.IPProtocolGRE), l4: &layers.GRE{Protocol: layers.EthernetTypeIPv4}, payload: payload(28)}.bytes(t), "l4_proto"),
		both("ipv4 sctp", v4proto(layers.IPProtocolSCTP), "l4_proto"),
		both("ipv4 esp", v4proto(layers.IPProtocolESP), "l4_proto"),
		both("ipv6 gre", v6proto(layers.IPProtocolGRE), "l4_proto"),
		both("ipv6 sctp", v6proto(layers.IPProtocolSCTP), "l4_proto"),
		// Each family has its own ICMP: ICMPv6 in IPv4 (or ICMP in IPv6)
		// is just another protocol to the fast path.
		both("ipv4 carrying icmpv6", v4proto(layers.IPProtocolICMPv6), "l4_proto"),
		both("ipv6 carrying icmp", v6proto(layers.IPProtocolICMPv4), "l4_proto"),

		both("ipv4 hairpin", tcp4(ipHairpin).bytes(t), "hairpin"),
		both("ipv6 hairpin", tcp6(ip6Hairpin).bytes(t), "hairpin"),
	}
}

// mtuCases are frames larger than the egress MTU. The kernel forwarding
// path would fragment them or send ICMP frag-needed / packet-too-big
// (TestKernelMTU shows it does not forward them), so the datapath must pass
// them.
//
// XDP gives tot_len to bpf_fib_lookup, which compares it with the route's
// MTU (a locked route MTU, or the device MTU). TC leaves tot_len 0 on
// purpose (bpf/lib/forward.h): bpf_fib_lookup then checks the skb itself
// with is_skb_forwardable(), which lets GSO skbs through (a GRO aggregate is
// larger than the MTU but is segmented on transmit) and compares the others
// with the device MTU. That check has slack: it allows mtu + hard_header_len
// + VLAN_HLEN bytes of frame, i.e. 4 bytes of IP over the MTU for an
// untagged frame, and it never looks at the route MTU. The TC cases at
// MTU+1..MTU+4 and over a route MTU fail for that reason (datapath bug).
func mtuCases(t testing.TB) []pktCase {
	return []pktCase{
		both("ipv4 over egress mtu", udp4Len(ipDst, 1450).bytes(t), "frag_needed"),
		both("ipv6 over egress mtu", udp6Len(ip6Dst, 1450).bytes(t), "frag_needed"),
		both("ipv4 one byte over egress mtu", udp4Len(ipDst, out0MTU+1).bytes(t), "frag_needed"),
		both("ipv4 tcp DF one byte over egress mtu", tcp4(ipDst).with(func(p *pkt) {
			p.v4().Flags = layers.IPv4DontFragment
			p.payload = payload(out0MTU + 1 - 40)
		}).bytes(t), "frag_needed"),
		both("ipv4 four bytes over egress mtu", udp4Len(ipDst, out0MTU+4).bytes(t), "frag_needed"),
		both("ipv4 five bytes over egress mtu", udp4Len(ipDst, out0MTU+5).bytes(t), "frag_needed"),
		both("ipv6 one byte over egress mtu", udp6Len(ip6Dst, out0MTU+1).bytes(t), "frag_needed"),
		// A route MTU below the device's. Kernel forwarding honours it,
		// locked or not (TestKernelMTU). bpf_fib_lookup honours only a locked one
		// (ip_mtu_from_fib_result / ip6_mtu_from_fib6 take the route's
		// MTU only when locked, or with ip_fwd_use_pmtu), so the unlocked
		// cases fail for XDP too (datapath bug: the fast path forwards what
		// the kernel would not).
		both("ipv4 at route mtu", udp4Len(ipRouteMTU, routeMTU).bytes(t), fwd),
		both("ipv4 over locked route mtu", udp4Len(ipRouteMTU, routeMTU+50).bytes(t), "frag_needed"),
		both("ipv4 over unlocked route mtu", udp4Len(ipRouteMTUu, routeMTU+50).bytes(t), "frag_needed"),
		both("ipv6 at route mtu", udp6Len(ip6RouteMTU, routeMTU).bytes(t), fwd),
		both("ipv6 over locked route mtu", udp6Len(ip6RouteMTU, routeMTU+50).bytes(t), "frag_needed"),
		both("ipv6 over unlocked route mtu", udp6Len(ip6RouteMTUu, routeMTU+50).bytes(t), "frag_needed"),
		{name: "gro aggregate over egress mtu", frame: tcp4(ipDst).with(func(p *pkt) { p.payload = payload(1450) }).bytes(t), tc: fwd, gso: true},
	}
}

// malformedCases have headers that contradict each other or the frame.
func malformedCases(t testing.TB) []pktCase {
	good4, good6 := tcp4(ipDst).bytes(t), tcp6(ip6Dst).bytes(t)
	return []pktCase{
		both("ipv4 tot_len beyond frame", patch(good4, func(l3 []byte) {
			binary.BigEndian.PutUint16(l3[2:], uint16(len(l3)+1))
			fixIPv4Checksum(l3, 0)
		}), "malformed"),
		both("ipv4 tot_len below header", patch(good4, func(l3 []byte) {
			binary.BigEndian.PutUint16(l3[2:], 19)
			fixIPv4Checksum(l3, 0)
		}), "malformed"),
		both("ipv4 ihl 4", patch(good4, func(l3 []byte) { l3[0] = 0x44 }), "malformed"),
		both("ipv4 ethertype, version 6", patch(good4, func(l3 []byte) { l3[0] = 0x65 }), "malformed"),
		both("ipv4 tcp doff 4", patch(good4, func(l3 []byte) { l3[20+12] = 4 << 4 }), "malformed"),
		both("ipv6 payload_len 0", patch(good6, func(l3 []byte) { binary.BigEndian.PutUint16(l3[4:], 0) }), "malformed"),
		both("ipv6 payload_len beyond frame", patch(good6, func(l3 []byte) { binary.BigEndian.PutUint16(l3[4:], uint16(len(l3)-40+1)) }), "malformed"),
		both("ipv6 ethertype, version 4", patch(good6, func(l3 []byte) { l3[0] = 0x45 }), "malformed"),
		// The kernel drops a wrong IPv4 header checksum on receive; an
		// incremental TTL update would carry the error on.
		both("ipv4 header checksum wrong", patch(good4, func(l3 []byte) { l3[10] ^= 0x5a }), "malformed"),
		// A UDP length short of the IP payload: the receiver checks the
		// checksum over the UDP length only.
		both("ipv4 udp length short of the payload", patch(udp4(ipDst).bytes(t), func(l3 []byte) {
			binary.BigEndian.PutUint16(l3[20+4:], binary.BigEndian.Uint16(l3[20+4:])-2)
		}), "malformed"),
		both("ipv6 udp length short of the payload", patch(udp6(ip6Dst).bytes(t), func(l3 []byte) {
			binary.BigEndian.PutUint16(l3[40+4:], binary.BigEndian.Uint16(l3[40+4:])-2)
		}), "malformed"),
	}
}

// vlanCases: tagged frames belong to VLAN devices; the kernel forwards them.
func vlanCases(t testing.TB) []pktCase {
	tagged := func(p pkt, tpids ...layers.EthernetType) []byte {
		p.tpids = tpids
		return p.bytes(t)
	}
	q, ad := layers.EthernetTypeDot1Q, layers.EthernetTypeQinQ
	single := tagged(udp4(ipDst), q)
	return []pktCase{
		// Parsed to the end (vlan is decided after L4), so not malformed.
		both("802.1q ipv4 udp", single, "vlan"),
		both("802.1ad+802.1q ipv4 udp", tagged(udp4(ipDst), ad, q), "vlan"),
		both("802.1q ipv6 tcp", tagged(tcp6(ip6Dst), q), "vlan"),
		both("802.1q ipv4 truncated in ip header", single[:14+4+12], "malformed"),
		both("802.1q truncated in the tag", single[:14+2], "malformed"),
		both("three tags", tagged(udp4(ipDst), ad, q, q), "vlan"),
	}
}

func removeOut0(t *testing.T, tn *testNet) {
	tn.must(t, func() error { return tn.d.RemoveIface(tn.out0) })
	t.Cleanup(func() {
		if err := tn.do(func() error {
			if err := tn.d.SetIface(Iface{Index: tn.out0, MAC: macOut0, MTU: out0MTU, Mode: ModeRoute}); err != nil {
				return err
			}
			return tn.d.SetXDPTarget(tn.out0, true)
		}); err != nil {
			t.Errorf("restore out0: %v", err)
		}
	})
}

func noXDPTarget(t *testing.T, tn *testNet) {
	tn.must(t, func() error { return tn.d.SetXDPTarget(tn.out0, false) })
	t.Cleanup(func() {
		if err := tn.do(func() error { return tn.d.SetXDPTarget(tn.out0, true) }); err != nil {
			t.Errorf("restore xdp target: %v", err)
		}
	})
}

func in0Off(t *testing.T, tn *testNet) {
	tn.must(t, func() error { return tn.d.SetIface(Iface{Index: tn.in0, MAC: macIn0, MTU: 1500, Mode: ModeOff}) })
	t.Cleanup(func() {
		if err := tn.d.SetIface(Iface{Index: tn.in0, MAC: macIn0, MTU: 1500, Mode: ModeRoute}); err != nil {
			t.Errorf("restore in0: %v", err)
		}
	})
}

// nfChainOn flags in0 (ingress) or out0 (egress) as bound to nftables
// device chains, as the daemon does when it reads them.
func nfChainOn(ingress, egress bool) func(*testing.T, *testNet) {
	return func(t *testing.T, tn *testNet) {
		set := func(on bool) error {
			if err := tn.d.SetIface(Iface{Index: tn.in0, MAC: macIn0, MTU: 1500, Mode: ModeRoute, NFIngress: on && ingress}); err != nil {
				return err
			}
			return tn.d.SetIface(Iface{Index: tn.out0, MAC: macOut0, MTU: out0MTU, Mode: ModeRoute, NFEgress: on && egress})
		}
		tn.must(t, func() error { return set(true) })
		t.Cleanup(func() {
			if err := tn.do(func() error { return set(false) }); err != nil {
				t.Errorf("restore: %v", err)
			}
		})
	}
}

func in0NoForwarding(t *testing.T, tn *testNet) {
	keys := []string{"net.ipv4.conf.in0.forwarding", "net.ipv6.conf.in0.forwarding"}
	for _, k := range keys {
		if err := sysctl(tn.ns, k, "0"); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, k := range keys {
			if err := sysctl(tn.ns, k, "1"); err != nil {
				t.Errorf("restore: %v", err)
			}
		}
	})
}

// runCases runs every case on every hook it names, as subtests, on one
// router namespace.
func runCases(t *testing.T, tn *testNet, cases []pktCase) {
	for _, c := range cases {
		for _, h := range []hook{hookXDP, hookTC} {
			want := c.xdp
			if h == hookTC {
				want = c.tc
			}
			if want == skip {
				continue
			}
			t.Run(h.String()+"/"+c.name, func(t *testing.T) {
				if c.setup != nil {
					c.setup(t, tn)
				}
				o := runOpts{ingress: tn.in0}
				if c.gso {
					o.gsoSize, o.gsoSegs = 1000, 2
				}
				checkOne(t, tn, h, c.frame, o, want)
			})
		}
	}
}

// checkOne runs one frame and asserts verdict, output bytes and counters.
func checkOne(t *testing.T, tn *testNet, h hook, frame []byte, o runOpts, want string) {
	t.Helper()
	before, counted := tn.stats(t, o.ingress)
	res, err := tn.run(h, frame, o)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := tn.stats(t, o.ingress)

	if want == fwd {
		if res.verdict != h.redirectCode() {
			t.Fatalf("verdict %s, want %s (reason counters %s)", h.verdictName(res.verdict),
				h.verdictName(h.redirectCode()), tn.reasonDiff(before, after))
		}
		exp := forwarded(frame)
		if !bytes.Equal(res.out, exp) {
			t.Errorf("output frame %s", diffBytes(res.out, exp))
		}
		if off := l3Offset(res.out); res.out[off]>>4 == 4 {
			hdr := res.out[off : off+20]
			if got, calc := binary.BigEndian.Uint16(hdr[10:]), ipv4Checksum(hdr); got != calc {
				t.Errorf("ipv4 header checksum %#04x, recomputed %#04x", got, calc)
			}
		}
	} else {
		if res.verdict != h.passCode() {
			t.Fatalf("verdict %s, want %s with reason %s (reason counters: %s)", h.verdictName(res.verdict),
				h.verdictName(h.passCode()), want, tn.reasonDiff(before, after))
		}
		if !bytes.Equal(res.out, frame) {
			t.Errorf("passed frame was modified: %s", diffBytes(res.out, frame))
		}
	}
	if !counted {
		return
	}
	d := counterDelta{fwd: want == fwd, reason: want, bytes: len(frame)}
	if want == fwd {
		d.bytes = len(trimmed(frame)) // as sent on: padding trimmed
	}
	tn.checkDelta(t, before, after, d)
}

// reasonDiff names the reason counters that moved, for failure messages.
func (tn *testNet) reasonDiff(before, after IfaceStats) string {
	s := ""
	for i, n := range tn.d.ReasonNames() {
		if i < len(before.PassReason) && i < len(after.PassReason) && after.PassReason[i] != before.PassReason[i] {
			s += n + " "
		}
	}
	if s == "" {
		return "none moved"
	}
	return s + "moved"
}

func TestForward(t *testing.T) {
	tn := newTestNet(t)
	runCases(t, tn, forwardCases(t))
}

func TestGuards(t *testing.T) {
	tn := newTestNet(t)
	runCases(t, tn, guardCases(t))
}

func TestMTU(t *testing.T) {
	tn := newTestNet(t)
	runCases(t, tn, mtuCases(t))
}

func TestMalformed(t *testing.T) {
	tn := newTestNet(t)
	runCases(t, tn, malformedCases(t))
}

func TestVLAN(t *testing.T) {
	tn := newTestNet(t)
	runCases(t, tn, vlanCases(t))
}

// TestUnmanagedIngress: a frame arriving on an interface the datapath does
// not know is passed and counted nowhere (it has no counters).
func TestUnmanagedIngress(t *testing.T) {
	tn := newTestNet(t)
	frame := tcp4(ipDst).with(func(p *pkt) { p.dstMAC = macUn0 }).bytes(t)
	for _, h := range []hook{hookXDP, hookTC} {
		t.Run(h.String(), func(t *testing.T) {
			if _, ok := tn.stats(t, tn.un0); ok {
				t.Fatal("un0 has counters but was never configured")
			}
			checkOne(t, tn, h, frame, runOpts{ingress: tn.un0}, "disabled")
			all, err := tn.d.Stats()
			if err != nil {
				t.Fatal(err)
			}
			for idx, s := range all {
				if s.PassPackets != 0 || s.FwdPackets != 0 {
					t.Errorf("interface %d counted %+v", idx, s)
				}
			}
		})
	}
}
