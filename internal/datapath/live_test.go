package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// TestKernelMTU is the baseline for the MTU cases of TestMTU: with no
// program attached, the kernel's own forwarding refuses (fragments, or
// answers frag-needed / packet-too-big) every one of these packets, which
// the fast path therefore must pass to it.
func TestKernelMTU(t *testing.T) {
	requireRoot(t)
	tn := newTestNet(t)
	df := func(p *pkt) { p.v4().Flags = layers.IPv4DontFragment }
	cases := []struct {
		name       string
		big, small pkt
	}{
		{"ipv4 one byte over egress mtu", udp4Len(ipDst, out0MTU+1).with(df), udp4(ipDst)},
		{"ipv6 one byte over egress mtu", udp6Len(ip6Dst, out0MTU+1), udp6(ip6Dst)},
		{"ipv4 over locked route mtu", udp4Len(ipRouteMTU, routeMTU+50).with(df), udp4(ipRouteMTU)},
		{"ipv4 over unlocked route mtu", udp4Len(ipRouteMTUu, routeMTU+50).with(df), udp4(ipRouteMTUu)},
		{"ipv6 over locked route mtu", udp6Len(ip6RouteMTU, routeMTU+50), udp6(ip6RouteMTU)},
		{"ipv6 over unlocked route mtu", udp6Len(ip6RouteMTUu, routeMTU+50), udp6(ip6RouteMTUu)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			big, small := c.big.with(setID(0x1111)).bytes(t), c.small.with(setID(0x2222)).bytes(t)
			var seen []uint32
			tn.must(t, func() error {
				var err error
				seen, err = sendAndCollect(big, small)
				return err
			})
			if slices.Contains(seen, 0x1111) {
				t.Errorf("kernel forwarded the %d-byte frame", len(big))
			}
		})
	}
}

// setID marks a frame for frameID: the IPv4 ID or the IPv6 flow label.
func setID(id uint16) func(p *pkt) {
	return func(p *pkt) {
		switch l3 := p.l3.(type) {
		case *layers.IPv4:
			l3.Id = id
		case *layers.IPv6:
			l3.FlowLabel = uint32(id)
		}
	}
}

// TestLiveVLANTag sends real frames through the attached programs: a
// BPF_PROG_RUN context cannot carry an offloaded VLAN tag (the kernel
// rejects vlan_present, see TestRunContext), but real receive does: the
// core strips an 802.1Q tag into skb metadata (skb_vlan_untag) before the
// TC ingress hook, so the TC program sees an untagged-looking frame.
//
// A tagged frame must still go to the kernel: with no VLAN device for the
// tag the kernel drops it (PACKET_OTHERHOST), with one it routes it in that
// device's context, never in the trunk's.
//
// fp_tc therefore checks skb->vlan_present; this test caught it when it
// did not (the frame left out0 forwarded, tag still attached).
func TestLiveVLANTag(t *testing.T) {
	requireRoot(t)
	for _, h := range []Hook{HookXDP, HookTC} {
		t.Run(string(h), func(t *testing.T) {
			tn := newTestNet(t)
			tagged := udp4(ipDst).with(setID(0x1111)).with(func(p *pkt) {
				p.tpids = []layers.EthernetType{layers.EthernetTypeDot1Q}
			}).bytes(t)
			// The control frame is forwarded; once it is out on out0p, the
			// tagged one (sent before it on the same CPU, so queued before
			// it all the way) has been handled too.
			control := udp4(ipDst).with(setID(0x2222)).bytes(t)

			var seen []uint32
			before, _ := tn.stats(t, tn.in0)
			tn.must(t, func() error {
				if err := tn.attachLive(t, h); err != nil {
					return err
				}
				var err error
				seen, err = sendAndCollect(tagged, control)
				return err
			})
			after, _ := tn.stats(t, tn.in0)

			if slices.Contains(seen, 0x1111) {
				t.Errorf("the 802.1Q-tagged frame came out of out0: forwarded by the %s program", h)
			}
			vlan := tn.reasonIndex(t, "vlan")
			if got := after.PassReason[vlan] - before.PassReason[vlan]; got != 1 {
				t.Errorf("vlan pass counter went up by %d, want 1", got)
			}
			if got := after.FwdPackets - before.FwdPackets; got != 1 {
				t.Errorf("forwarded %d frames, want 1 (the control frame only)", got)
			}
		})
	}
}

// attachLive attaches the program of hook to in0. XDP redirects into a
// veth need an XDP program on the peer too, so out0p gets one (unmanaged,
// it passes everything up).
func (tn *testNet) attachLive(t *testing.T, h Hook) error {
	l, err := tn.d.Attach(tn.in0, h)
	if err != nil {
		return err
	}
	t.Cleanup(func() { l.Close() })
	if h != HookXDP {
		return nil
	}
	peer, err := net.InterfaceByName("out0p")
	if err != nil {
		return fmt.Errorf("look up out0p: %w", err)
	}
	lp, err := tn.d.Attach(peer.Index, HookXDP)
	if err != nil {
		return err
	}
	t.Cleanup(func() { lp.Close() })
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// packetSocket opens an AF_PACKET socket bound to dev in the calling
// thread's netns.
func packetSocket(dev string) (int, int, error) {
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return -1, 0, fmt.Errorf("look up %s: %w", dev, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return -1, 0, fmt.Errorf("packet socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: htons(unix.ETH_P_ALL)}); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("bind packet socket to %s: %w", dev, err)
	}
	return fd, ifi.Index, nil
}

// frameID identifies a test frame on the wire: the IPv4 ID or the IPv6
// flow label; ok is false for anything else.
func frameID(frame []byte) (uint32, bool) {
	off := l3Offset(frame)
	if off < 2 {
		return 0, false
	}
	switch binary.BigEndian.Uint16(frame[off-2:]) {
	case 0x0800:
		if off+20 <= len(frame) {
			return uint32(binary.BigEndian.Uint16(frame[off+4:])), true
		}
	case 0x86dd:
		if off+40 <= len(frame) {
			return binary.BigEndian.Uint32(frame[off:]) & 0xfffff, true
		}
	}
	return 0, false
}

// sendAndCollect sends first and then last into in0p and returns the IDs
// (frameID) of the frames that come out of out0p until last does. It pins
// the thread to one CPU so both frames take the same backlog queue: when
// last is out, first has been handled.
func sendAndCollect(first, last []byte) ([]uint32, error) {
	lastID, ok := frameID(last)
	if !ok {
		return nil, errors.New("last frame has no id")
	}
	var orig, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		return nil, fmt.Errorf("get affinity: %w", err)
	}
	for cpu := range 1024 {
		if orig.IsSet(cpu) {
			one.Set(cpu)
			break
		}
	}
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return nil, fmt.Errorf("pin thread: %w", err)
	}
	defer unix.SchedSetaffinity(0, &orig)

	rx, _, err := packetSocket("out0p")
	if err != nil {
		return nil, err
	}
	defer unix.Close(rx)
	// A bound on the wait, not a synchronisation: the last frame ends it.
	tv := unix.NsecToTimeval(int64(5 * time.Second))
	if err := unix.SetsockoptTimeval(rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("set receive timeout: %w", err)
	}
	tx, txIdx, err := packetSocket("in0p")
	if err != nil {
		return nil, err
	}
	defer unix.Close(tx)
	for _, f := range [][]byte{first, last} {
		if err := unix.Sendto(tx, f, 0, &unix.SockaddrLinklayer{Ifindex: txIdx}); err != nil {
			return nil, fmt.Errorf("send into in0p: %w", err)
		}
	}

	var ids []uint32
	buf := make([]byte, 4096)
	for range 256 { // out0p also hears the kernel's own IPv6 chatter
		n, _, err := unix.Recvfrom(rx, buf, 0)
		if errors.Is(err, unix.EAGAIN) {
			return ids, fmt.Errorf("last frame never came out of out0p (got ids %x)", ids)
		}
		if err != nil {
			return ids, fmt.Errorf("receive on out0p: %w", err)
		}
		id, ok := frameID(buf[:n])
		if !ok {
			continue
		}
		ids = append(ids, id)
		if id == lastID {
			return ids, nil
		}
	}
	return ids, errors.New("last frame not among the first 256 frames on out0p")
}
