package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// Header sizes of the generated frames: Ethernet, IPv4 without options or
// IPv6 without extension headers, UDP.
const (
	ethLen  = 14
	ipLen   = 20
	ip6Len  = 40
	udpLen  = 8
	hdrLen  = ethLen + ipLen + udpLen
	hdr6Len = ethLen + ip6Len + udpLen
)

// The port plan of the generated flows: flow i has source port
// sportBase + i%sportSpan and destination port dportBase + i/sportSpan, so
// every flow is a distinct 5-tuple, also after masquerade (which keeps a
// source port that is free for the destination).
const (
	sportBase = 10000
	sportSpan = 50000
	dportBase = 7000
)

// MinFrame and MaxFrame bound the frame sizes (bytes from the Ethernet
// header to the end of the payload, no FCS): the headers, and the lab's
// MTU of 1500 plus the Ethernet header.
const (
	MinFrame = 64
	MaxFrame = 1514
)

// MaxFlows bounds the flow count: the destination ports must stay below
// 65536.
const MaxFlows = 1 << 20

// flowTuple returns the UDP ports of flow i, as the generator writes them.
func flowTuple(i int) (sport, dport uint16) {
	return uint16(sportBase + i%sportSpan), uint16(dportBase + i/sportSpan)
}

// frameSpec describes the generated frames: IPv4, or IPv6 when from and
// to are.
type frameSpec struct {
	size     int
	dst, src net.HardwareAddr
	from, to netip.Addr
	// udpChecksum: the generator fills in each frame's UDP checksum from
	// udpSum; else it is 0 ("none").
	udpChecksum bool
	// dsts > 1 (IPv6 only): flow i goes to destination i % dsts, to
	// with bytes 2..5 set to that number (to's must be 0).
	dsts int
}

func (f frameSpec) ipv6() bool { return f.from.Is6() }

// udpOff is the offset of the UDP header in the frame.
func (f frameSpec) udpOff() int {
	if f.ipv6() {
		return ethLen + ip6Len
	}
	return ethLen + ipLen
}

// udpSum is what the generator adds a frame's ports (and destination
// index) to for its UDP checksum: the one's complement sum, folded, of the
// pseudo header, the UDP header with ports and checksum 0, and the (zero)
// payload; 0 when frames carry none.
func (f frameSpec) udpSum() uint16 {
	if !f.udpChecksum {
		return 0
	}
	n := uint32(f.size - f.udpOff())
	sum := unix.IPPROTO_UDP + n + n // pseudo header (its length) and the header's length field
	sum = onesSum(onesSum(sum, f.from.AsSlice()), f.to.AsSlice())
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// header returns the Ethernet + IP + UDP header the generator writes into
// every frame (IPv4: the first hdrLen bytes), ports left zero (the program
// writes them per flow). The IPv4 checksum does not cover the ports, and
// the UDP checksum is 0 ("none"): the program fills it in when the frames
// carry one.
func (f frameSpec) header() ([hdr6Len]byte, error) {
	var h [hdr6Len]byte
	if f.size < MinFrame || f.size > MaxFrame {
		return h, fmt.Errorf("frame size %d outside %d..%d", f.size, MinFrame, MaxFrame)
	}
	if len(f.dst) != 6 || len(f.src) != 6 || !f.from.IsValid() || f.from.Is4() != f.to.Is4() || f.from.Is4In6() || f.to.Is4In6() {
		return h, fmt.Errorf("frame needs Ethernet addresses and two IP addresses of one family (got %s %s %s %s)", f.dst, f.src, f.from, f.to)
	}
	if f.dsts > 1 {
		to := f.to.As16()
		if !f.ipv6() || f.dsts > math.MaxUint32 || to[2]|to[3]|to[4]|to[5] != 0 {
			return h, fmt.Errorf("frames cycling through %d destinations need an IPv6 destination with bytes 2..5 zero (got %s)", f.dsts, f.to)
		}
	}
	copy(h[0:6], f.dst)
	copy(h[6:12], f.src)
	udp := h[f.udpOff():]
	binary.BigEndian.PutUint16(udp[4:], uint16(f.size-f.udpOff()))
	if f.ipv6() {
		binary.BigEndian.PutUint16(h[12:], unix.ETH_P_IPV6)
		ip := h[ethLen : ethLen+ip6Len]
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(f.size-ethLen-ip6Len))
		ip[6] = unix.IPPROTO_UDP
		ip[7] = 64 // hop limit
		from, to := f.from.As16(), f.to.As16()
		copy(ip[8:24], from[:])
		copy(ip[24:40], to[:])
		return h, nil
	}
	binary.BigEndian.PutUint16(h[12:], unix.ETH_P_IP)
	ip := h[ethLen : ethLen+ipLen]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(f.size-ethLen))
	ip[8] = 64 // TTL
	ip[9] = unix.IPPROTO_UDP
	from, to := f.from.As4(), f.to.As4()
	copy(ip[12:16], from[:])
	copy(ip[16:20], to[:])
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	return h, nil
}

// frame returns a whole frame: the header and a zero payload.
func (f frameSpec) frame() ([]byte, error) {
	h, err := f.header()
	if err != nil {
		return nil, err
	}
	b := make([]byte, f.size)
	copy(b, h[:f.udpOff()+udpLen])
	return b, nil
}

// flowFrame is flow i's frame as the generator stamps it: its ports, its
// destination (dsts) and, when the frames carry one, its UDP checksum.
func (f frameSpec) flowFrame(i int) ([]byte, error) {
	b, err := f.frame()
	if err != nil {
		return nil, err
	}
	udp := b[f.udpOff():]
	sport, dport := flowTuple(i)
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	if f.dsts > 1 {
		binary.BigEndian.PutUint32(b[ethLen+24+2:], uint32(i%f.dsts))
	}
	if f.udpChecksum {
		var addrs []byte
		if f.ipv6() {
			addrs = b[ethLen+8 : ethLen+40]
		} else {
			addrs = b[ethLen+12 : ethLen+20]
		}
		sum := onesSum(onesSum(uint32(unix.IPPROTO_UDP)+uint32(len(udp)), addrs), udp)
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		check := ^uint16(sum)
		if check == 0 {
			check = 0xffff // 0 would mean "none"
		}
		binary.BigEndian.PutUint16(udp[6:], check)
	}
	return b, nil
}

// onesSum adds b's 16-bit big-endian words (an odd last byte padded) to
// sum, unfolded.
func onesSum(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

// ipChecksum is the Internet checksum of an IPv4 header whose checksum
// field is zero.
func ipChecksum(h []byte) uint16 {
	sum := onesSum(0, h)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// sinkObjects are a counter's program and maps; Tx holds the counter's own
// device, where reflected frames leave.
type sinkObjects struct {
	Prog   *ebpf.Program `ebpf:"bench_sink"`
	Pass   *ebpf.Map     `ebpf:"bench_pass"`
	Counts *ebpf.Map     `ebpf:"bench_counts"`
	Mode   *ebpf.Map     `ebpf:"bench_mode"`
	Tx     *ebpf.Map     `ebpf:"bench_tx"`
}

// fwdObjects are the plain redirect's program and devmap.
type fwdObjects struct {
	Prog *ebpf.Program `ebpf:"bench_fwd"`
	Tx   *ebpf.Map     `ebpf:"bench_tx"`
}

// load loads the programs and maps objs names from a fresh copy of the
// object: every role has its own maps. A verifier rejection comes with the
// verifier's full log.
func load(objs any) error {
	spec, err := loadBench()
	if err != nil {
		return fmt.Errorf("parse bench bpf object: %w", err)
	}
	if err := spec.LoadAndAssign(objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return fmt.Errorf("load bench bpf programs: %+v", verr)
		}
		return fmt.Errorf("load bench bpf programs: %w", err)
	}
	return nil
}

func closeAll(cs ...interface{ Close() error }) {
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}

// counter is an XDP program counting the IPv4 UDP frames arriving on an
// interface, then dropping them (or reflecting them: see reflect).
type counter struct {
	objs sinkObjects
	link link.Link
}

// attachCounter loads a counter and attaches it to ifname in ns (native
// XDP: a veth peer with an XDP program also takes redirected frames).
func attachCounter(ns, ifname string) (*counter, error) {
	c := &counter{}
	if err := load(&c.objs); err != nil {
		return nil, err
	}
	err := nsutil.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		if err := c.objs.Tx.Update(uint32(0), uint32(ifi.Index), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("devmap: %w", err)
		}
		// The latency probe's traffic goes on to the stack.
		if err := c.objs.Pass.Update(uint32(0), htons(latPort), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("pass port: %w", err)
		}
		c.link, err = link.AttachXDP(link.XDPOptions{Program: c.objs.Prog, Interface: ifi.Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("attach counter to %s in %s: %w", ifname, ns, err)
	}
	return c, nil
}

func (c *counter) Close() error {
	closeAll(c.link, c.objs.Prog, c.objs.Pass, c.objs.Counts, c.objs.Mode, c.objs.Tx)
	return nil
}

// read returns the packets and bytes counted so far.
func (c *counter) read() (packets, bytes uint64, err error) {
	var vals []benchBenchCount
	if err := c.objs.Counts.Lookup(uint32(0), &vals); err != nil {
		return 0, 0, fmt.Errorf("read counter: %w", err)
	}
	for _, v := range vals {
		packets += v.Packets
		bytes += v.Bytes
	}
	return packets, bytes, nil
}

// reflect makes the counter send every counted frame back where it came
// from, addresses and ports swapped (on), or drop it (off).
func (c *counter) reflect(on bool) error {
	mode := benchBenchSinkModeBENCH_SINK_DROP
	if on {
		mode = benchBenchSinkModeBENCH_SINK_REFLECT
	}
	if err := c.objs.Mode.Update(uint32(0), uint32(mode), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set counter mode: %w", err)
	}
	return nil
}

// redirector is the plain XDP redirect: everything arriving on one
// interface leaves by another, untouched.
type redirector struct {
	objs fwdObjects
	link link.Link
}

// attachRedirector attaches the redirect to in, towards out, both in ns. The
// devmap resolves out's ifindex in the netns of the updating thread.
func attachRedirector(ns, in, out string) (*redirector, error) {
	r := &redirector{}
	if err := load(&r.objs); err != nil {
		return nil, err
	}
	err := nsutil.Do(ns, func() error {
		ii, err := net.InterfaceByName(in)
		if err != nil {
			return err
		}
		oi, err := net.InterfaceByName(out)
		if err != nil {
			return err
		}
		if err := r.objs.Tx.Update(uint32(0), uint32(oi.Index), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("devmap: %w", err)
		}
		r.link, err = link.AttachXDP(link.XDPOptions{Program: r.objs.Prog, Interface: ii.Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("attach xdp redirect %s -> %s in %s: %w", in, out, ns, err)
	}
	return r, nil
}

func (r *redirector) Close() error {
	closeAll(r.link, r.objs.Prog, r.objs.Tx)
	return nil
}

// tcFwdObjects are the plain TC redirect's program and its next hop.
type tcFwdObjects struct {
	Prog *ebpf.Program `ebpf:"bench_tc_fwd"`
	Hops *ebpf.Map     `ebpf:"bench_tc_hops"`
}

// tcRedirector is the plain TC redirect both ways through rtr: TCP and UDP
// arriving on r0 leave by r1 towards s0, and back, with only the MACs
// rewritten. Each direction loads its own copy of the object.
type tcRedirector struct {
	dirs [2]struct {
		objs tcFwdObjects
		link link.Link
	}
}

// attachTCRedirector attaches the TC redirect to e's router interfaces.
func (e *env) attachTCRedirector() (*tcRedirector, error) {
	r := &tcRedirector{}
	hops := []struct {
		in, out    string
		smac, dmac net.HardwareAddr
	}{
		{e.lab.RtrIn, e.lab.RtrOut, e.r1, e.s0},
		{e.lab.RtrOut, e.lab.RtrIn, e.r0, e.g0},
	}
	err := nsutil.Do(e.lab.Rtr, func() error {
		for i, h := range hops {
			d := &r.dirs[i]
			if err := load(&d.objs); err != nil {
				return err
			}
			ii, err := net.InterfaceByName(h.in)
			if err != nil {
				return err
			}
			oi, err := net.InterfaceByName(h.out)
			if err != nil {
				return err
			}
			hop := benchBenchTcHop{Ifindex: uint32(oi.Index)}
			copy(hop.Smac[:], h.smac)
			copy(hop.Dmac[:], h.dmac)
			if err := d.objs.Hops.Update(uint32(0), &hop, ebpf.UpdateAny); err != nil {
				return fmt.Errorf("next hop of %s: %w", h.in, err)
			}
			d.link, err = link.AttachTCX(link.TCXOptions{Program: d.objs.Prog, Attach: ebpf.AttachTCXIngress, Interface: ii.Index})
			if err != nil {
				return fmt.Errorf("tcx ingress of %s: %w", h.in, err)
			}
		}
		return nil
	})
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("attach tc redirect in %s: %w", e.lab.Rtr, err)
	}
	return r, nil
}

func (r *tcRedirector) Close() error {
	for _, d := range r.dirs {
		closeAll(d.link, d.objs.Prog, d.objs.Hops)
	}
	return nil
}
