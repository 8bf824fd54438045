package datapath

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// pkt describes one test frame; bytes serializes it with gopacket, which
// fills in lengths and checksums.
type pkt struct {
	dstMAC  net.HardwareAddr      // default: in0's MAC
	srcMAC  net.HardwareAddr      // default: the sender's (macPeer)
	tpids   []layers.EthernetType // VLAN tag protocols, outermost first
	l3      gopacket.SerializableLayer
	ext     []gopacket.SerializableLayer // IPv6 extension headers
	l4      gopacket.SerializableLayer
	payload []byte
}

func ip4Hdr(dst net.IP, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{
		Version: 4, IHL: 5, TOS: 0x10, Id: 0x1234, TTL: 64,
		Protocol: proto, SrcIP: ipSender, DstIP: dst,
	}
}

func ip6Hdr(dst net.IP, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{
		Version: 6, TrafficClass: 0x28, FlowLabel: 0x12345, HopLimit: 64,
		NextHeader: next, SrcIP: ip6Sender, DstIP: dst,
	}
}

func tcpHdr() *layers.TCP {
	return &layers.TCP{SrcPort: 40000, DstPort: 443, Seq: 1000, Ack: 2000, ACK: true, PSH: true, Window: 64000}
}

func udpHdr() *layers.UDP { return &layers.UDP{SrcPort: 40001, DstPort: 53} }

// payload returns n recognisable bytes.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(0xa0 + i)
	}
	return b
}

func tcp4(dst net.IP) pkt {
	return pkt{l3: ip4Hdr(dst, layers.IPProtocolTCP), l4: tcpHdr(), payload: payload(32)}
}

func udp4(dst net.IP) pkt {
	return pkt{l3: ip4Hdr(dst, layers.IPProtocolUDP), l4: udpHdr(), payload: payload(24)}
}

func icmp4(dst net.IP) pkt {
	return pkt{
		l3:      ip4Hdr(dst, layers.IPProtocolICMPv4),
		l4:      &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1},
		payload: payload(40),
	}
}

func tcp6(dst net.IP) pkt {
	return pkt{l3: ip6Hdr(dst, layers.IPProtocolTCP), l4: tcpHdr(), payload: payload(32)}
}

func udp6(dst net.IP) pkt {
	return pkt{l3: ip6Hdr(dst, layers.IPProtocolUDP), l4: udpHdr(), payload: payload(24)}
}

func icmp6(dst net.IP) pkt {
	return pkt{
		l3: ip6Hdr(dst, layers.IPProtocolICMPv6),
		l4: &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)},
		// The echo id/seq ride in the payload: ICMPv6Echo would need its own layer.
		payload: append([]byte{0, 7, 0, 1}, payload(40)...),
	}
}

// v4 and v6 give access to the L3 header for tweaks.
func (p pkt) v4() *layers.IPv4 { return p.l3.(*layers.IPv4) }
func (p pkt) v6() *layers.IPv6 { return p.l3.(*layers.IPv6) }

// with applies fn to a copy of p's L3 header and returns the new pkt, so the
// table entries do not share headers.
func (p pkt) with(fn func(p *pkt)) pkt {
	switch l3 := p.l3.(type) {
	case *layers.IPv4:
		c := *l3
		p.l3 = &c
	case *layers.IPv6:
		c := *l3
		p.l3 = &c
	}
	fn(&p)
	return p
}

func (p pkt) bytes(t testing.TB) []byte {
	t.Helper()
	b, err := p.serialize()
	if err != nil {
		t.Fatalf("build frame: %v", err)
	}
	return b
}

func (p pkt) serialize() ([]byte, error) {
	var l3type layers.EthernetType
	switch p.l3.(type) {
	case *layers.IPv4:
		l3type = layers.EthernetTypeIPv4
	case *layers.IPv6:
		l3type = layers.EthernetTypeIPv6
	case *layers.ARP:
		l3type = layers.EthernetTypeARP
	}
	dst := p.dstMAC
	if dst == nil {
		dst = macIn0
	}
	// Each header's type field names the next header.
	types := append(append([]layers.EthernetType(nil), p.tpids...), l3type)
	src := p.srcMAC
	if src == nil {
		src = macPeer
	}
	ls := []gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: types[0]}}
	for i := range p.tpids {
		ls = append(ls, &layers.Dot1Q{Priority: 1, VLANIdentifier: uint16(10 + i), Type: types[i+1]})
	}
	ls = append(ls, p.l3)
	ls = append(ls, p.ext...)
	if p.l4 != nil {
		if nl, ok := p.l3.(gopacket.NetworkLayer); ok {
			switch l4 := p.l4.(type) {
			case *layers.TCP:
				l4.SetNetworkLayerForChecksum(nl)
			case *layers.UDP:
				l4.SetNetworkLayerForChecksum(nl)
			case *layers.ICMPv6:
				l4.SetNetworkLayerForChecksum(nl)
			}
		}
		ls = append(ls, p.l4)
	}
	if p.payload != nil {
		ls = append(ls, gopacket.Payload(p.payload))
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// arpFrame is a who-has for 198.18.10.1 sent to dst.
func arpFrame(t testing.TB, dst net.HardwareAddr) []byte {
	return pkt{dstMAC: dst, l3: &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: macPeer, SourceProtAddress: ipSender.To4(),
		DstHwAddress: make([]byte, 6), DstProtAddress: ipIn0.To4(),
	}}.bytes(t)
}

// l3Offset is where the IP header starts: after Ethernet and any VLAN tags.
func l3Offset(frame []byte) int {
	off := 12
	for off+2 <= len(frame) {
		typ := binary.BigEndian.Uint16(frame[off:])
		if typ != 0x8100 && typ != 0x88a8 {
			break
		}
		off += 4
	}
	return off + 2
}

// ipv4Checksum computes the header checksum of an IPv4 header from scratch
// (RFC 1071), treating the checksum field as zero.
func ipv4Checksum(hdr []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(hdr); i += 2 {
		if i == 10 {
			continue
		}
		sum += uint32(binary.BigEndian.Uint16(hdr[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// fixIPv4Checksum rewrites the header checksum of the IPv4 header at off.
func fixIPv4Checksum(frame []byte, off int) {
	ihl := int(frame[off]&0x0f) * 4
	binary.BigEndian.PutUint16(frame[off+10:], ipv4Checksum(frame[off:off+ihl]))
}

// forwarded is what a correct router makes of an untagged frame it forwards
// to the next hop on out0: new MACs, TTL/hop limit one less, IPv4 header
// checksum recomputed from scratch; every other byte as it was.
// trimmed is a copy of frame without what follows its IP datagram
// (Ethernet padding, a trailer): what the kernel forwards, and the fast
// path too.
func trimmed(frame []byte) []byte {
	off := l3Offset(frame)
	end := len(frame)
	switch frame[off] >> 4 {
	case 4:
		end = off + int(binary.BigEndian.Uint16(frame[off+2:]))
	case 6:
		end = off + 40 + int(binary.BigEndian.Uint16(frame[off+4:]))
	}
	return append([]byte(nil), frame[:min(end, len(frame))]...)
}

func forwarded(frame []byte) []byte {
	out := trimmed(frame)
	copy(out[0:6], macNhop)
	copy(out[6:12], macOut0)
	off := l3Offset(out)
	switch out[off] >> 4 {
	case 4:
		out[off+8]--
		fixIPv4Checksum(out, off)
	case 6:
		out[off+7]--
	}
	return out
}
