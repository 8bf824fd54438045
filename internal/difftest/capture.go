package difftest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// Payload header of every UDP datagram, ICMP echo and TCP record:
// magic, flow index, kind, sequence number.
const (
	headerLen   = 16
	magic       = 0x66706474 // "fpdt"
	kindData    = 0
	kindHello   = 1 // UDP: the sink echoes it, so conntrack sees a reply
	kindCrafted = 2 // a crafted packet (Craft); the sequence number is its step's index
)

func putHeader(b []byte, flow int, kind byte, seq uint64) {
	binary.BigEndian.PutUint32(b, magic)
	binary.BigEndian.PutUint16(b[4:], uint16(flow))
	b[6] = kind
	b[7] = 0
	binary.BigEndian.PutUint64(b[8:], seq)
}

func readHeader(b []byte) (flow int, kind byte, seq uint64, ok bool) {
	if len(b) < headerLen || binary.BigEndian.Uint32(b) != magic {
		return 0, 0, 0, false
	}
	return int(binary.BigEndian.Uint16(b[4:])), b[6], binary.BigEndian.Uint64(b[8:]), true
}

// seen is one packet the capture saw: the header, and the flow and
// sequence number from the payload (seq < 0: none, a TCP segment or a
// fragment without our header).
type seen struct {
	at   time.Time
	hdr  Header
	flow int
	seq  int64
	tcp  bool
	// A TCP segment's numbers, flags and payload length.
	tcpSeq, tcpAck uint32
	tcpWin         uint16
	tcpFlags       uint8
	tcpLen         int
	// crafted: a crafted packet (seq is its step); trailer is how many
	// bytes the frame carried after the IP datagram.
	crafted bool
	trailer int
}

// capture records every packet arriving on one interface of a sink host
// with an AF_PACKET socket, before the host's own stack sees it: packets
// for addresses the host does not own (a flow moved to sink2) are recorded
// too. At gen (host "gen") it records only crafted packets and the sink's
// TCP segments (whose sequence numbers a crafted reply takes): the rest
// arriving there are replies, no flow's packets.
type capture struct {
	fd   int
	host string
	mu   sync.Mutex
	got  []seen
	done chan struct{}
	stop chan struct{}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func startCapture(ns, ifname, host string) (*capture, error) {
	c := &capture{host: host, done: make(chan struct{}), stop: make(chan struct{})}
	err := nsutil.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		c.fd = fd
		idx, err := ifIndex(ifname)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: idx}); err != nil {
			return fmt.Errorf("bind packet socket to %s: %w", ifname, err)
		}
		// Only what arrives: the host's own replies are not the flow.
		unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
		// Reads wake up regularly to check for stop.
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 50_000})
	})
	if err != nil {
		if c.fd > 0 {
			unix.Close(c.fd)
		}
		return nil, fmt.Errorf("capture on %s/%s: %w", ns, ifname, err)
	}
	go c.loop()
	return c, nil
}

func ifIndex(name string) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, fmt.Errorf("ifindex of %s: %w", name, err)
	}
	return int(ifr.Uint32()), nil
}

func (c *capture) loop() {
	defer close(c.done)
	buf := make([]byte, 65536)
	oob := make([]byte, 128)
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		n, oobn, _, _, err := unix.Recvmsg(c.fd, buf, oob, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		at := stamp(oob[:oobn])
		if s, ok := parseFrame(buf[:n]); ok {
			if c.host == "gen" {
				if !s.crafted && !s.tcp {
					continue
				}
				if s.tcp && !s.crafted {
					s.flow = int(s.hdr.Sport) - 5000 // the sink's segments, from the flow's port
				}
			}
			s.at = at
			s.hdr.Host = c.host
			c.mu.Lock()
			c.got = append(c.got, s)
			c.mu.Unlock()
		}
	}
}

// close stops the capture and returns what it saw.
func (c *capture) close() []seen {
	close(c.stop)
	<-c.done
	unix.Close(c.fd)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got
}

func stamp(oob []byte) time.Time {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
				ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
				return time.Unix(ts.Sec, ts.Nsec)
			}
		}
	}
	return time.Now()
}

// parseFrame reads an Ethernet frame carrying IPv4 or IPv6 with UDP, TCP
// or an ICMP echo request. Non-first fragments carry no ports: skipped
// (the first fragment tells the packet's fate and header). So are TCP
// resets that are not crafted: no record travels in one, and one from
// the router's own stack (an answer to a crafted segment) would only
// muddle the flow's headers and sequence numbers.
func parseFrame(b []byte) (seen, bool) {
	s := seen{seq: -1}
	if len(b) < 14 {
		return s, false
	}
	et := binary.BigEndian.Uint16(b[12:])
	b = b[14:]
	var proto byte
	switch et {
	case 0x0800:
		if len(b) < 20 || b[0]>>4 != 4 {
			return s, false
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || len(b) < ihl {
			return s, false
		}
		frag := binary.BigEndian.Uint16(b[6:])
		if frag&0x1fff != 0 {
			return s, false
		}
		s.hdr.Fragmented = frag&0x2000 != 0
		s.hdr.DSCP = b[1] >> 2
		s.hdr.TTL = b[8]
		proto = b[9]
		s.hdr.Src = netip.AddrFrom4([4]byte(b[12:16]))
		s.hdr.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		if tl := int(binary.BigEndian.Uint16(b[2:])); tl >= ihl && tl <= len(b) {
			s.trailer = len(b) - tl
			b = b[:tl] // no Ethernet padding
		}
		b = b[ihl:]
	case 0x86dd:
		if len(b) < 40 || b[0]>>4 != 6 {
			return s, false
		}
		tc := (b[0]&0x0f)<<4 | b[1]>>4
		s.hdr.DSCP = tc >> 2
		s.hdr.TTL = b[7]
		proto = b[6]
		s.hdr.Src = netip.AddrFrom16([16]byte(b[8:24]))
		s.hdr.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		if pl := int(binary.BigEndian.Uint16(b[4:])); 40+pl <= len(b) {
			s.trailer = len(b) - 40 - pl
			b = b[:40+pl]
		}
		b = b[40:]
		if proto == 44 { // fragment header
			if len(b) < 8 || binary.BigEndian.Uint16(b[2:])&0xfff8 != 0 {
				return s, false
			}
			s.hdr.Fragmented = true
			proto = b[0]
			b = b[8:]
		}
	default:
		return s, false
	}
	var payload []byte
	switch proto {
	case unix.IPPROTO_UDP:
		if len(b) < 8 {
			return s, false
		}
		s.hdr.Sport, s.hdr.Dport = binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
		payload = b[8:]
	case unix.IPPROTO_TCP:
		if len(b) < 20 {
			return s, false
		}
		s.hdr.Sport, s.hdr.Dport = binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
		s.tcp = true
		s.tcpSeq, s.tcpAck = binary.BigEndian.Uint32(b[4:]), binary.BigEndian.Uint32(b[8:])
		s.tcpFlags, s.tcpWin = b[13], binary.BigEndian.Uint16(b[14:])
		off := int(b[12]>>4) * 4
		if off < 20 || off > len(b) {
			return s, false
		}
		s.tcpLen = len(b) - off
		if flow, kind, seq, ok := readHeader(b[off:]); ok && kind == kindCrafted {
			s.flow, s.seq, s.crafted = flow, int64(seq), true
			return s, true
		}
		if s.tcpFlags&FlagRST != 0 {
			return s, false
		}
		// TCP records are counted by the receiving socket; the capture
		// gives their headers, found by destination port.
		s.flow = int(s.hdr.Dport) - 5000
		return s, true
	case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		if len(b) < 8 || (b[0] != 8 && b[0] != 128) { // echo requests only
			return s, false
		}
		s.hdr.Sport = binary.BigEndian.Uint16(b[4:])
		payload = b[8:]
	default:
		return s, false
	}
	flow, kind, seq, ok := readHeader(payload)
	if !ok || kind != kindData && kind != kindCrafted {
		return s, false
	}
	s.flow, s.seq, s.crafted = flow, int64(seq), kind == kindCrafted
	return s, true
}
