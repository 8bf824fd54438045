package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// invalidDropRuleset drops, and counts, what conntrack calls INVALID.
const invalidDropRuleset = `table inet fpt {
	counter invalid { }
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state invalid counter name "invalid" drop
	}
}
`

// TestBadChecksumIsInvalid (issue 16, case 2): a datagram with a wrong
// UDP checksum and an offloaded flow's tuple, sent from gen, must get what
// the kernel alone gives it: conntrack (nf_conntrack_checksum=1, the
// default) calls it INVALID, `ct state invalid counter drop` counts and
// drops it, and it never reaches the sink (whose UDP checksum error
// counter stays put). Before the datapath verified checksums it forwarded
// the datagram with NAT applied: the rule's counter stayed 0.
func TestBadChecksumIsInvalid(t *testing.T) {
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			l, d, ctx := offloadLab(t, attach, masqueradeRuleset+invalidDropRuleset)
			for _, f := range families(l) {
				t.Run(f.name, func(t *testing.T) {
					u := newUDPFlow(t, l.Gen, l.Sink, netip.AddrPort{}, netip.AddrPortFrom(f.sink, 0), netip.AddrPortFrom(f.sink, 0))
					u.handshake(t)
					str := u.stream(t, ctx, 2000, 200, 0)
					d.waitFlow(t, u.local, u.dst)
					str.stop()
					invalid0, csum0 := invalidCount(ctx, t, l), checksumErrors(t, l.Sink)
					before := d.counters(t, l.Rtr)
					const n = 3
					for i := 0; i < n; i++ {
						sendBadUDP(t, l.Gen, u.local, u.dst)
					}
					pollUntil(t, offloadWait, "the bad datagrams counted invalid in rtr", func() error {
						if got := invalidCount(ctx, t, l) - invalid0; got < n {
							return fmt.Errorf("ct state invalid counter grew by %d, want %d", got, n)
						}
						return nil
					})
					// Passed as bad_checksum; an IPv6 datagram from the raw
					// socket carries another flow label than the socket's flow
					// (auto_flowlabels), so it may be passed for that first
					// (nf_rewrite), which the kernel judges just the same.
					after := d.counters(t, l.Rtr)
					if got := after.reasonSum("bad_checksum") + after.reasonSum("nf_rewrite") -
						before.reasonSum("bad_checksum") - before.reasonSum("nf_rewrite"); got < n {
						t.Errorf("pass reasons bad_checksum and nf_rewrite grew by %d, want >= %d", got, n)
					}
					if got := checksumErrors(t, l.Sink) - csum0; got != 0 {
						t.Errorf("%d datagrams with bad checksums reached the sink", got)
					}
				})
			}
		})
	}
}

// sendBadUDP sends, from namespace ns, one UDP datagram src -> dst whose
// checksum is wrong (one bit off the right one).
func sendBadUDP(t *testing.T, ns string, src, dst netip.AddrPort) {
	t.Helper()
	uh := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	var nl gopacket.NetworkLayer
	family := unix.AF_INET
	if src.Addr().Is4() {
		nl = &layers.IPv4{SrcIP: net.IP(src.Addr().AsSlice()), DstIP: net.IP(dst.Addr().AsSlice()), Protocol: layers.IPProtocolUDP}
	} else {
		family = unix.AF_INET6
		nl = &layers.IPv6{SrcIP: net.IP(src.Addr().AsSlice()), DstIP: net.IP(dst.Addr().AsSlice()), NextHeader: layers.IPProtocolUDP}
	}
	if err := uh.SetNetworkLayerForChecksum(nl); err != nil {
		t.Fatal(err)
	}
	b := gopacket.NewSerializeBuffer()
	payload := gopacket.Payload([]byte("a datagram with a wrong checksum"))
	if err := gopacket.SerializeLayers(b, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, uh, payload); err != nil {
		t.Fatal(err)
	}
	seg := b.Bytes()
	seg[7] ^= 0x01
	if seg[6] == 0 && seg[7] == 0 {
		seg[7] = 0x02 // 0 would mean "no checksum"
	}
	inNS(t, ns, func() error {
		fd, err := unix.Socket(family, unix.SOCK_RAW, unix.IPPROTO_UDP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		var sa, bind unix.Sockaddr
		if src.Addr().Is4() {
			sa, bind = &unix.SockaddrInet4{Addr: dst.Addr().As4()}, &unix.SockaddrInet4{Addr: src.Addr().As4()}
		} else {
			sa, bind = &unix.SockaddrInet6{Addr: dst.Addr().As16()}, &unix.SockaddrInet6{Addr: src.Addr().As16()}
		}
		if err := unix.Bind(fd, bind); err != nil {
			return err
		}
		return unix.Sendto(fd, seg, 0, sa)
	})
}
