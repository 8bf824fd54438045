package e2e

import (
	"net/netip"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/traffic"
)

// Traffic sizes of TestForwarding: small, so the package stays fast.
const (
	fwdPings     = 10
	fwdTCPBytes  = 4 << 20
	fwdUDPCount  = 1000
	fwdUDPSize   = 512
	fwdUDPGap    = 100 * time.Microsecond
	fwdUDPMaxLos = 0.05
)

// TestForwarding runs ping, a TCP transfer and a UDP stream over IPv4 and
// IPv6 from gen to sink through the daemon, for each attach method, and
// checks from the counters that fastpath, not the kernel, forwarded them.
func TestForwarding(t *testing.T) {
	requireBinary(t)
	for _, tc := range []struct {
		attach, want string
	}{
		{"xdp", "xdp"},
		{"tc", "tc"},
		// gen and sink keep tx checksum offload on (their default), so
		// their frames carry partial checksums and auto picks TC
		// (TestAutoFollowsFacts covers the rest).
		{"auto", "tc"},
	} {
		t.Run(tc.attach, func(t *testing.T) {
			l := newLab(t, tc.attach)
			d, st := runDaemon(t, l.Rtr, routeIfaces(l, tc.attach)...)
			for _, ifc := range st.Interfaces {
				if ifc.AttachedAs != tc.want || ifc.ProgramID == 0 {
					t.Errorf("%s: attached as %q (program %d), want %q", ifc.Name, ifc.AttachedAs, ifc.ProgramID, tc.want)
				}
			}
			ctx := testContext(t)

			before := d.counters(t, l.Rtr)
			// Lower bound of the packets that crossed rtr: each answered
			// ping is a request and a reply; each UDP datagram that arrived.
			var routed uint64
			for _, fam := range []struct {
				name string
				dst  netip.Addr
			}{{"IPv4", l.SinkAddr4}, {"IPv6", l.SinkAddr6}} {
				p := mustPing(ctx, t, l, fam.dst, fwdPings)
				routed += 2 * uint64(p.Received)

				tr, err := traffic.TCPTransfer(ctx, l.Gen, l.Sink, netip.AddrPortFrom(fam.dst, 0), fwdTCPBytes)
				if err != nil {
					t.Errorf("%s: %v", fam.name, err)
				} else if !tr.OK() || tr.Received != fwdTCPBytes {
					t.Errorf("%s tcp: sent %d, received %d bytes, sha256 equal %v", fam.name, tr.Sent, tr.Received, tr.SentSHA256 == tr.RecvSHA256)
				}

				u, err := traffic.UDPStream(ctx, l.Gen, l.Sink, netip.AddrPortFrom(fam.dst, 0), fwdUDPCount, fwdUDPSize, fwdUDPGap)
				if err != nil {
					t.Errorf("%s: %v", fam.name, err)
				} else if u.Sent != fwdUDPCount || u.LossRatio() > fwdUDPMaxLos {
					t.Errorf("%s udp: %d/%d datagrams sent, %d received (%.1f%% loss, max %.0f%%)",
						fam.name, u.Sent, fwdUDPCount, u.Received, 100*u.LossRatio(), 100*fwdUDPMaxLos)
				}
				routed += uint64(u.Received)
				t.Logf("%s: ping %d/%d, tcp %d B at %.2f Gbit/s, udp %d/%d", fam.name,
					p.Received, p.Transmitted, tr.Received, tr.Gbps(), u.Received, u.Sent)
			}
			after := d.counters(t, l.Rtr)

			fp := after.forwarded() - before.forwarded()
			kernel := after.kernel() - before.kernel()
			t.Logf("forwarded by fastpath %d, by the kernel %d (%d IPv4 + %d IPv6); routed at least %d",
				fp, kernel, after.kernel4-before.kernel4, after.kernel6-before.kernel6, routed)
			// TCP segments come on top of routed, so this holds with room.
			if fp < routed*9/10 {
				t.Errorf("fastpath forwarded %d packets, want at least 90%% of the %d pings and datagrams that crossed rtr", fp, routed)
			}
			// The first packets towards a next hop whose neighbour entry is
			// not resolved yet pass as no_neigh and the kernel forwards
			// them (and resolves ARP/ND): a few per family and direction.
			if limit := fp/50 + 10; kernel > limit {
				t.Errorf("kernel forwarded %d datagrams, want at most %d (2%% of fastpath's %d + 10); %s; %s",
					kernel, limit, fp, before.reasonDeltas(after, l.RtrIn), before.reasonDeltas(after, l.RtrOut))
			}
		})
	}
}
