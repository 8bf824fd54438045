package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// TestForgedResetOutOfWindow (issue 16, case 1): a masqueraded TCP
// connection is offloaded; a forged RST, and then a forged FIN, with the
// reply tuple (sink -> the router's masquerade address and port) and a
// sequence number half the sequence space away from the sink's is sent
// from the sink's namespace. The kernel alone calls such a segment out of
// window and keeps the connection; so must fastpath, although the
// offloaded entry is window-liberal: the connection must still carry data
// both ways and the conntrack entry stay ESTABLISHED, and the datapath
// counts the drops (tcp_out_of_window). Before the datapath judged windows
// the RST evicted the flow and conntrack, liberal, closed the entry.
func TestForgedResetOutOfWindow(t *testing.T) {
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			l, d, ctx := offloadLab(t, attach, masqueradeRuleset+filterRuleset)
			for _, f := range families(l) {
				t.Run(f.name, func(t *testing.T) {
					p := openTCP(ctx, t, l.Gen, l.Sink, netip.AddrPortFrom(f.sink, 0), netip.AddrPortFrom(f.sink, 0))
					d.offloadTCP(ctx, t, p)
					seq := sinkSeq(ctx, t, l.Sink, p)
					before := d.counters(t, l.Rtr)
					for _, how := range []string{"RST", "FIN"} {
						forgeSegment(t, l.Sink, p, seq+1<<31, how)
					}
					// Both must have reached the router: they are dropped
					// there, counted; poll for the count, not for time.
					pollUntil(t, offloadWait, "forged segments counted as tcp_out_of_window", func() error {
						if n := d.counters(t, l.Rtr).dropSum("tcp_out_of_window") - before.dropSum("tcp_out_of_window"); n < 2 {
							return fmt.Errorf("tcp_out_of_window grew by %d, want 2", n)
						}
						return nil
					})
					if r := copyN(ctx, p.client, p.server, 64<<10, offChunk, 0, nil); !r.ok(64 << 10) {
						t.Errorf("gen -> sink after the forged segments: %+v", r)
					}
					if r := copyN(ctx, p.server, p.client, 64<<10, offChunk, 0, nil); !r.ok(64 << 10) {
						t.Errorf("sink -> gen after the forged segments: %+v", r)
					}
					var found bool
					for _, e := range conntrackList(ctx, t, l, f, "tcp", p.listen.Port()) {
						if strings.Contains(e, "sport="+fmt.Sprint(p.clientAddr.Port())+" ") {
							found = true
							if !strings.Contains(e, " ESTABLISHED ") {
								t.Errorf("conntrack entry no longer ESTABLISHED: %s", e)
							}
						}
					}
					if !found {
						t.Errorf("conntrack entry of %s -> %s gone", p.clientAddr, p.listen)
					}
				})
			}
		})
	}
}

// dropSum is a drop reason summed over interfaces.
func (c counters) dropSum(reason string) (n uint64) {
	for _, s := range c.stats.Interfaces {
		n += s.DropReasons[reason]
	}
	return n
}

// sinkSeq returns the sink's next sequence number on p: it sniffs a
// segment the sink sends while gen writes a little.
func sinkSeq(ctx context.Context, t *testing.T, sinkNS string, p *tcpPair) uint32 {
	t.Helper()
	var fd int
	inNS(t, sinkNS, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		return err
	})
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	written := 0
	// what gen wrote is read back, so later transfers compare clean
	defer func() {
		p.server.SetReadDeadline(time.Now().Add(offloadWait))
		if _, err := io.ReadFull(p.server, make([]byte, written)); err != nil {
			t.Fatalf("sink: read the %d sniffing bytes: %v", written, err)
		}
		p.server.SetReadDeadline(time.Time{})
	}()
	deadline := time.Now().Add(offloadWait)
	for time.Now().Before(deadline) {
		if _, err := p.client.Write([]byte("x")); err != nil {
			t.Fatalf("gen write: %v", err)
		}
		written++
		for i := 0; i < 64; i++ {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				break // timeout: write again
			}
			pkt := gopacket.NewPacket(buf[:n], layers.LayerTypeEthernet, gopacket.NoCopy)
			tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if tcp == nil || uint16(tcp.SrcPort) != p.listen.Port() || uint16(tcp.DstPort) != p.serverSees.Port() {
				continue
			}
			return tcp.Seq
		}
	}
	t.Fatalf("no segment of the sink seen on %s -> %s", p.listen, p.serverSees)
	return 0
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// forgeSegment sends, from the sink's namespace, a segment with p's reply
// tuple (sink -> what the sink sees as the client) with sequence number
// seq: how is "RST" or "FIN" (FIN|ACK).
func forgeSegment(t *testing.T, sinkNS string, p *tcpPair, seq uint32, how string) {
	t.Helper()
	src, dst := p.listen.Addr(), p.serverSees.Addr()
	th := &layers.TCP{SrcPort: layers.TCPPort(p.listen.Port()), DstPort: layers.TCPPort(p.serverSees.Port()), Seq: seq, Window: 1000}
	if how == "RST" {
		th.RST = true
	} else {
		th.FIN, th.ACK, th.Ack = true, true, 1
	}
	var nl gopacket.NetworkLayer
	family := unix.AF_INET
	if src.Is4() {
		nl = &layers.IPv4{SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice()), Protocol: layers.IPProtocolTCP}
	} else {
		family = unix.AF_INET6
		nl = &layers.IPv6{SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice()), NextHeader: layers.IPProtocolTCP}
	}
	if err := th.SetNetworkLayerForChecksum(nl); err != nil {
		t.Fatal(err)
	}
	b := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(b, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, th); err != nil {
		t.Fatal(err)
	}
	inNS(t, sinkNS, func() error {
		fd, err := unix.Socket(family, unix.SOCK_RAW, unix.IPPROTO_TCP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		var sa unix.Sockaddr
		if src.Is4() {
			sa = &unix.SockaddrInet4{Addr: dst.As4()}
			if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
				return err
			}
		} else {
			sa = &unix.SockaddrInet6{Addr: dst.As16()}
			if err := unix.Bind(fd, &unix.SockaddrInet6{Addr: src.As16()}); err != nil {
				return err
			}
		}
		return unix.Sendto(fd, b.Bytes(), 0, sa)
	})
}
