package bench

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// TestStampUDPChecksum runs the generator's stamping (bench_gen with a
// plain BPF_PROG_RUN, no live frames) for flows across the port plan: with
// checksums on (--checks) every frame's UDP checksum verifies, also when
// the flood spreads the source address; with them off it stays 0.
func TestStampUDPChecksum(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to load BPF programs")
	}
	g, err := newLiveGen(pinned{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, size := range []int{MinFrame, 777, MaxFrame} {
		for _, sum := range []bool{true, false} {
			f := frameSpec{size: size, udpChecksum: sum,
				dst: net.HardwareAddr{2, 0, 0, 0, 0, 1}, src: net.HardwareAddr{2, 0, 0, 0, 0, 2},
				from: netip.MustParseAddr("198.18.1.1"), to: netip.MustParseAddr("198.18.2.1")}
			if err := g.configure(f, MaxFlows); err != nil {
				t.Fatal(err)
			}
			for _, spread := range []uint32{0, 997} {
				if spread > 0 {
					var cfg benchBenchGenCfg
					if err := g.objs.Cfg.Lookup(uint32(0), &cfg); err != nil {
						t.Fatal(err)
					}
					cfg.SaddrSpan = spread
					if err := g.objs.Cfg.Update(uint32(0), cfg, ebpf.UpdateAny); err != nil {
						t.Fatal(err)
					}
				}
				for _, flow := range []int{0, 1, sportSpan - 1, sportSpan, 3*sportSpan + 12345, MaxFlows - 1} {
					frame := stampOne(t, g, flow)
					udp := frame[ethLen+ipLen:]
					sport, dport := flowTuple(flow)
					if binary.BigEndian.Uint16(udp) != sport || binary.BigEndian.Uint16(udp[2:]) != dport {
						t.Fatalf("flow %d: ports %x", flow, udp[:4])
					}
					check := binary.BigEndian.Uint16(udp[6:])
					switch {
					case !sum && check != 0:
						t.Errorf("size %d flow %d: checksum %#x, want 0 (none)", size, flow, check)
					case sum && (check == 0 || !udpChecksumOK(frame)):
						t.Errorf("size %d flow %d spread %d: checksum %#x does not verify", size, flow, spread, check)
					}
				}
			}
		}
	}
}

// stampOne runs the generator once as flow's frame and returns the frame.
func stampOne(t *testing.T, g *liveGen, flow int) []byte {
	t.Helper()
	seq := make([]uint64, ebpf.MustPossibleCPU())
	for i := range seq {
		seq[i] = uint64(flow)
	}
	if err := g.objs.Seq.Update(uint32(0), seq, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(g.objs.frame))
	v, err := g.objs.Prog.Run(&ebpf.RunOptions{Data: g.objs.frame, DataOut: out})
	if err != nil || v != 3 { // XDP_TX
		t.Fatalf("bench_gen: verdict %d, %v", v, err)
	}
	return out
}

// udpChecksumOK verifies the UDP checksum of an IPv4 frame.
func udpChecksumOK(frame []byte) bool {
	ip := frame[ethLen : ethLen+ipLen]
	udp := frame[ethLen+ipLen:]
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(ip[12:20])
	sum += uint32(ip[9]) + uint32(len(udp))
	add(udp)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}
