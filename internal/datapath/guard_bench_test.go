package datapath

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/fastpath-router/fastpath/internal/bench/replay"
)

// BenchmarkGuardFlood: what a flood of UDP packets from 100k sources costs
// the datapath per packet (net of the replay wrapper), in offload mode:
// without the guard (every packet misses the flow cache and conntrack and
// goes to the kernel, which then pays its own, much larger, price), and
// dropped by the guard's deny list, by the total new-flow limit, and by it
// with per-source buckets on top (an LRU insert per 16 packets: the sources
// outnumber the buckets); syn_new_total, a SYN flood under the total (new
// by its flags: no flow-cache or conntrack lookup); and new_check_passes,
// the new-flow check (flow cache and conntrack lookups) on packets it lets
// go on. The test router
// has no daemon heartbeat, so "off" stops at the watchdog check: it is the
// guard's absence, not the kernel-bound offload miss. Compare with
// BenchmarkRouteForward, the cost of forwarding a packet.
//
//	go test -run '^$' -bench GuardFlood -benchtime 2s ./internal/datapath
func BenchmarkGuardFlood(b *testing.B) {
	const sources = 100_000
	tn := newTestNet(b)
	tn.must(b, func() error { return tn.d.SetIface(Iface{Index: tn.in0, MAC: macIn0, MTU: 1500, Mode: ModeOffload}) })
	base := netip.MustParseAddr("198.18.64.0") // + up to 100k: within 198.18.0.0/15
	frame := from(udp4Len(ipDst, benchFrameLen-14), base.String()).bytes(b)
	synPkt := from(tcp4(ipDst), base.String())
	synPkt.l4 = &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Seq: 1, Window: 512}
	synPkt.payload = make([]byte, 26) // the replay wrapper wants 80 bytes
	synFrame := synPkt.bytes(b)
	vary := replay.Vary{Offset: 14 + 12, Base: 0xc6124000, N: sources} // the IPv4 source
	var deny []netip.Prefix
	for i := range 16000 { // a realistic list, none of which matches
		deny = append(deny, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32))
	}
	cases := []struct {
		name string
		cfg  GuardConfig
		deny []netip.Prefix
		drop bool
		syn  bool // a SYN flood instead of UDP
	}{
		{"off", GuardConfig{}, nil, false, false},
		{"deny", GuardConfig{}, append(deny, netip.MustParsePrefix("198.18.64.0/18"), netip.MustParsePrefix("198.18.128.0/17"), netip.MustParsePrefix("198.19.0.0/16")), true, false},
		{"new_total", GuardConfig{NewFlowsTotal: GuardLimit{Rate: 1, Burst: 64}}, deny, true, false},
		{"new_check_passes", GuardConfig{NewFlowsTotal: GuardLimit{Rate: 1e9, Burst: 1e9}}, nil, false, false},
		{"syn_new_total", GuardConfig{NewFlowsTotal: GuardLimit{Rate: 1, Burst: 64}}, nil, true, true},
		{"per_source+new_total", GuardConfig{Packets: GuardLimit{Rate: 1000, Burst: 1000},
			NewFlowsTotal: GuardLimit{Rate: 1, Burst: 64}}, deny, true, false},
	}
	for _, c := range cases {
		for _, h := range []hook{hookXDP, hookTC} {
			frame := frame
			if c.syn {
				frame = synFrame
			}
			b.Run(fmt.Sprintf("%s/%s", c.name, h), func(b *testing.B) {
				if err := tn.d.SetGuard(c.cfg); err != nil {
					b.Fatal(err)
				}
				if _, _, err := tn.d.SyncGuardList(GuardDeny, c.deny); err != nil {
					b.Fatal(err)
				}
				r, cost := tn.replayer(b, h, frame, vary)
				// Spend any burst first: every timed packet takes the path named.
				if _, err := tn.runRepeat(r.Program(), h, frame, tn.in0, 4096, nil); err != nil {
					b.Fatal(err)
				}
				want := h.passCode()
				if c.drop {
					want = xdpDrop
					if h == hookTC {
						want = tcShot
					}
				}
				benchPackets(b, tn, r.Program(), h, frame, tn.in0, want)
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)-cost, "net-ns/pkt")
			})
		}
	}
}
