package difftest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/lab"
	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// craftPayload is the payload of a crafted packet: our header naming the
// step, then a fixed pattern (frames stay above Ethernet's 60-byte
// minimum, so no padding can pass for a trailer).
const craftPayload = 32

// crafter sends a run's crafted packets (Craft): each is built from the
// flow's addresses and the sequence numbers the captures saw, and written
// as an Ethernet frame on the sending host's interface with a packet
// socket, bypassing the host's own stack.
type crafter struct {
	// sink sees the flow's packets as they arrive (gen's sequence
	// numbers, the addresses after NAT); gen sees the sink's segments.
	sink, gen *capture
	// orig: gen -> router; reply: sink -> router.
	orig, reply  craftEnd
	gen4, gen6   netip.Addr
	sink4, sink6 netip.Addr
}

// craftEnd is where a crafted packet leaves: the host's namespace and
// interface, its MAC and the MAC of the router interface facing it.
type craftEnd struct {
	ns      string
	ifindex int
	src     net.HardwareAddr
	dst     net.HardwareAddr
}

func newCrafter(l *lab.Lab, sink, gen *capture) (*crafter, error) {
	c := &crafter{sink: sink, gen: gen, gen4: l.GenAddr4, gen6: l.GenAddr6, sink4: l.SinkAddr4, sink6: l.SinkAddr6}
	var err error
	if c.orig, err = lookupEnd(l.Gen, l.GenIf, l.Rtr, l.RtrIn); err != nil {
		return nil, err
	}
	if c.reply, err = lookupEnd(l.Sink, l.SinkIf, l.Rtr, l.RtrOut); err != nil {
		return nil, err
	}
	return c, nil
}

func lookupEnd(hostNS, hostIf, rtrNS, rtrIf string) (craftEnd, error) {
	e := craftEnd{ns: hostNS}
	err := nsutil.Do(hostNS, func() error {
		ifi, err := net.InterfaceByName(hostIf)
		if err != nil {
			return err
		}
		e.ifindex, e.src = ifi.Index, ifi.HardwareAddr
		return nil
	})
	if err == nil {
		err = nsutil.Do(rtrNS, func() error {
			ifi, err := net.InterfaceByName(rtrIf)
			if err != nil {
				return err
			}
			e.dst = ifi.HardwareAddr
			return nil
		})
	}
	if err != nil {
		return e, fmt.Errorf("craft: interfaces of %s/%s and %s/%s: %w", hostNS, hostIf, rtrNS, rtrIf, err)
	}
	return e, nil
}

// tcpNumbers is what a sender's last segments say: the next sequence
// number it will send, and its last acknowledgement and window.
type tcpNumbers struct {
	next, ack uint32
	win       uint16
}

// tcpNumbers reads the TCP numbers of flow's sender from the segments c
// saw (at the sink: gen's; at gen: the sink's).
func (c *capture) tcpNumbers(flow int) (tcpNumbers, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n tcpNumbers
	found := false
	for _, s := range c.got {
		if !s.tcp || s.crafted || s.flow != flow {
			continue
		}
		end := s.tcpSeq + uint32(s.tcpLen)
		if s.tcpFlags&(FlagSYN|FlagFIN) != 0 {
			end++
		}
		if !found || int32(end-n.next) > 0 {
			n.next = end
		}
		n.ack, n.win, found = s.tcpAck, s.tcpWin, true
	}
	return n, found
}

// latest is the last packet of flow c saw (not a crafted one).
func (c *capture) latest(flow int) (seen, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.got) - 1; i >= 0; i-- {
		if s := c.got[i]; s.flow == flow && !s.crafted {
			return s, true
		}
	}
	return seen{}, false
}

// send builds the crafted packet of step (at index step of the script)
// against flow f and sends it.
func (c *crafter) send(cr *Craft, f Flow, step int) error {
	frame, end, err := c.build(cr, f, step)
	if err != nil {
		return fmt.Errorf("craft %s: %w", cr, err)
	}
	proto := uint16(unix.ETH_P_IP)
	if f.V6 {
		proto = unix.ETH_P_IPV6
	}
	err = nsutil.Do(end.ns, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: end.ifindex, Protocol: htons(proto)})
	})
	if err != nil {
		return fmt.Errorf("craft %s: send from %s: %w", cr, end.ns, err)
	}
	return nil
}

// build returns the frame of cr and where it leaves.
func (c *crafter) build(cr *Craft, f Flow, step int) ([]byte, craftEnd, error) {
	// The flow as gen sends it, and as it arrives at the sink.
	gen, sink := netip.AddrPortFrom(c.gen4, f.SrcPort()), netip.AddrPortFrom(c.sink4, f.DstPort())
	if f.V6 {
		gen, sink = netip.AddrPortFrom(c.gen6, f.SrcPort()), netip.AddrPortFrom(c.sink6, f.DstPort())
	}
	src, dst, end := gen, sink, c.orig
	// Whose segments tell the sender's numbers: gen's arrive at the sink,
	// the sink's at gen.
	numbersFrom := c.sink
	if cr.Reply {
		at, ok := c.sink.latest(f.Index)
		if !ok {
			return nil, end, errors.New("no packet of the flow seen at the sink yet: its address after NAT is unknown")
		}
		src, dst, end = sink, netip.AddrPortFrom(at.hdr.Src, at.hdr.Sport), c.reply
		numbersFrom = c.gen
	}

	payload := make([]byte, craftPayload)
	putHeader(payload, f.Index, kindCrafted, uint64(step))
	for i := headerLen; i < len(payload); i++ {
		payload[i] = 0xa5
	}
	var l4 gopacket.SerializableLayer
	var csumAt int // the L4 checksum's offset in the L4 header
	switch f.Proto {
	case "tcp":
		n, ok := numbersFrom.tcpNumbers(f.Index)
		if !ok {
			return nil, end, fmt.Errorf("no segment of the sender seen at %s yet", numbersFrom.host)
		}
		flags := cr.TCPFlags()
		t := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
			Seq: n.next + cr.SeqOffset, Window: n.win,
			FIN: flags&FlagFIN != 0, SYN: flags&FlagSYN != 0, RST: flags&FlagRST != 0,
			PSH: flags&FlagPSH != 0, ACK: flags&FlagACK != 0, URG: flags&FlagURG != 0}
		if t.ACK {
			t.Ack = n.ack + cr.AckOffset
		}
		l4, csumAt = t, 16
	case "udp":
		l4, csumAt = &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}, 6
	default:
		return nil, end, fmt.Errorf("flow %s is %s", f.Name, f.Proto)
	}
	eth := &layers.Ethernet{SrcMAC: end.src, DstMAC: end.dst, EthernetType: layers.EthernetTypeIPv4}
	var ip gopacket.NetworkLayer
	ipLen := 20
	proto := layers.IPProtocolTCP
	if f.Proto == "udp" {
		proto = layers.IPProtocolUDP
	}
	if f.V6 {
		eth.EthernetType, ipLen = layers.EthernetTypeIPv6, 40
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
	} else {
		ip = &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: proto,
			SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
	}
	switch t := l4.(type) {
	case *layers.TCP:
		t.SetNetworkLayerForChecksum(ip)
	case *layers.UDP:
		t.SetNetworkLayerForChecksum(ip)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip.(gopacket.SerializableLayer), l4, gopacket.Payload(payload)); err != nil {
		return nil, end, err
	}
	frame := buf.Bytes()
	if cr.BadSum {
		at := 14 + ipLen + csumAt
		sum := binary.BigEndian.Uint16(frame[at:]) ^ 0x0100
		if sum == 0 {
			sum = 0x0200 // 0 is "no checksum" to UDP
		}
		binary.BigEndian.PutUint16(frame[at:], sum)
	}
	for range cr.Trailer {
		frame = append(frame, 0x5a)
	}
	return frame, end, nil
}
