package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/fastpath-router/fastpath/internal/lab"
)

// TestTTL sends one ping with TTL / hop limit 1 from gen to sink: rtr must
// not forward it but answer time exceeded, which only the kernel does, so
// the datapath has to pass it (reason ttl).
func TestTTL(t *testing.T) {
	requireBinary(t)
	for _, attach := range []string{"xdp", "tc"} {
		t.Run(attach, func(t *testing.T) {
			l := newLab(t, attach)
			d, _ := runDaemon(t, l.Rtr, routeIfaces(l, attach)...)
			ctx := testContext(t)
			before := d.counters(t, l.Rtr)

			out := pingOutput(ctx, t, l, l.Gen, "-c1", "-W2", "-t", "1", l.SinkAddr4.String())
			wantICMP(t, out, "From "+l.RtrInAddr4.String(), "Time to live exceeded")
			out = pingOutput(ctx, t, l, l.Gen, "-6", "-c1", "-W2", "-t", "1", l.SinkAddr6.String())
			wantICMP(t, out, "From "+l.RtrInAddr6.String(), "Time exceeded: Hop limit")

			after := d.counters(t, l.Rtr)
			if got := after.reason(l.RtrIn, "ttl") - before.reason(l.RtrIn, "ttl"); got < 2 {
				t.Errorf("%s pass reason ttl grew by %d, want >= 2 (one IPv4, one IPv6 echo request); %s",
					l.RtrIn, got, before.reasonDeltas(after, l.RtrIn))
			}
			// The same pings with the default TTL go through.
			mustPing(ctx, t, l, l.SinkAddr4, 1)
			mustPing(ctx, t, l, l.SinkAddr6, 1)
		})
	}
}

// Path MTU of TestMTU: r1 gets a smaller MTU than the 1500 of everything
// else, so gen's full-size packets do not fit into rtr's egress.
const (
	mtuSmall = 1280
	mtuBig   = 1400 // ping payload: 1428-byte IPv4, 1448-byte IPv6 packets
)

// TestMTU sends DF pings larger than r1's MTU from gen: rtr must answer
// frag needed (IPv4) or packet too big (IPv6) with mtu 1280, which only the
// kernel does. The datapath must pass such packets with reason
// frag_needed, in XDP and in TC alike: it gives bpf_fib_lookup the L3
// length of the packets that will leave (tot_len; for a TC GSO skb, one
// segment's), and the kernel compares it with the egress MTU (see
// bpf/lib/forward.h).
func TestMTU(t *testing.T) {
	requireBinary(t)
	for _, attach := range []string{"xdp", "tc"} {
		t.Run(attach, func(t *testing.T) {
			l := newLab(t, attach)
			// Before the daemon starts: a veth with XDP attached refuses
			// MTUs its XDP buffers cannot hold (lowering is fine, but this
			// keeps the test independent of that).
			setMTU(t, l.Rtr, l.RtrOut, mtuSmall)
			d, _ := runDaemon(t, l.Rtr, routeIfaces(l, attach)...)
			ctx := testContext(t)
			// Resolve rtr's neighbours first, so that the MTU is the only
			// reason left to pass the big pings (not no_neigh).
			mustPing(ctx, t, l, l.SinkAddr4, 1)
			mustPing(ctx, t, l, l.SinkAddr6, 1)
			before := d.counters(t, l.Rtr)

			out := pingOutput(ctx, t, l, l.Gen, "-c1", "-W2", "-M", "do", "-s", "1400", l.SinkAddr4.String())
			wantICMP(t, out, "From "+l.RtrInAddr4.String(), "Frag needed", "mtu = 1280")
			out = pingOutput(ctx, t, l, l.Gen, "-6", "-c1", "-W2", "-M", "do", "-s", "1400", l.SinkAddr6.String())
			wantICMP(t, out, "From "+l.RtrInAddr6.String(), "Packet too big", "mtu=1280")

			after := d.counters(t, l.Rtr)
			if got := after.reason(l.RtrIn, "frag_needed") - before.reason(l.RtrIn, "frag_needed"); got < 2 {
				t.Errorf("%s pass reason frag_needed grew by %d, want >= 2 (one IPv4, one IPv6 echo request); %s",
					l.RtrIn, got, before.reasonDeltas(after, l.RtrIn))
			}
			// Packets that fit still take the fast path.
			mustPing(ctx, t, l, l.SinkAddr4, 3, "-M", "do", "-s", "1200")
			mustPing(ctx, t, l, l.SinkAddr6, 3, "-M", "do", "-s", "1200")
			fwd := d.counters(t, l.Rtr)
			if got := fwd.forwarded() - after.forwarded(); got < 2*3*2-4 {
				t.Errorf("fastpath forwarded %d packets of 12 fitting echo requests and replies, want >= 8", got)
			}

			// Just over the MTU: 1281-byte IP packets. The kernel's own skb
			// check (is_skb_forwardable) allows 4 bytes of VLAN slack, so a
			// TC datapath relying on it would forward these. gen cached the
			// path MTU from the errors above and would refuse them locally,
			// so forget it first.
			flushPMTU(ctx, t, l)
			out = pingOutput(ctx, t, l, l.Gen, "-c1", "-W2", "-M", "do", "-s", "1253", l.SinkAddr4.String())
			wantICMP(t, out, "From "+l.RtrInAddr4.String(), "Frag needed", "mtu = 1280")
			out = pingOutput(ctx, t, l, l.Gen, "-6", "-c1", "-W2", "-M", "do", "-s", "1233", l.SinkAddr6.String())
			wantICMP(t, out, "From "+l.RtrInAddr6.String(), "Packet too big", "mtu=1280")
		})
	}
}

// wantICMP checks ping's output for an ICMP error: every string in want.
func wantICMP(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("ping output lacks %q:\n%s", w, out)
			return
		}
	}
}

// flushPMTU makes gen forget the path MTUs it learned (IPv4 and IPv6).
func flushPMTU(ctx context.Context, t *testing.T, l *lab.Lab) {
	t.Helper()
	for _, args := range [][]string{{"-4", "route", "flush", "cache"}, {"-6", "route", "flush", "cache"}} {
		if out, err := l.Command(ctx, l.Gen, "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v in %s: %v: %s", args, l.Gen, err, out)
		}
	}
}
