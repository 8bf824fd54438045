package bench

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TestStampUDPChecksum runs the generator's stamping (bench_gen with a
// plain BPF_PROG_RUN, no live frames) for flows across the port plan: with
// checksums on (--checks) every frame's UDP checksum verifies, also when
// the flood spreads the source address; with them off it stays 0.
func TestStampUDPChecksum(t *testing.T) {
	g := stampGen(t)
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
					if want, err := f.flowFrame(flow); spread == 0 && (err != nil || !bytes.Equal(frame, want)) {
						t.Errorf("flow %d stamped\n% x\nflowFrame (establishing flows)\n% x (%v)", flow, frame[:hdrLen], want[:hdrLen], err)
					}
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

// TestStampIPv6Routes: IPv6 frames whose destinations spread over the
// FIB's routes (route-xdp6-1m): flow i goes to route i % dsts with its
// ports, and its UDP checksum verifies when it has one.
func TestStampIPv6Routes(t *testing.T) {
	g := stampGen(t)
	const routes = 1_000_000
	for _, size := range []int{MinFrame, MaxFrame} {
		for _, sum := range []bool{true, false} {
			f := frameSpec{size: size, udpChecksum: sum, dsts: routes,
				dst: net.HardwareAddr{2, 0, 0, 0, 0, 1}, src: net.HardwareAddr{2, 0, 0, 0, 0, 2},
				from: netip.MustParseAddr("fd00:1::1"), to: fibDst}
			if err := g.configure(f, MaxFlows); err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{0, 1, 999, routes - 1, routes, MaxFlows - 1, MaxFlows + 3} {
				frame := stampOne(t, g, n)
				if want, err := f.flowFrame(n % MaxFlows); err != nil || !bytes.Equal(frame, want) {
					t.Errorf("frame %d stamped\n% x\nflowFrame (establishing flows)\n% x (%v)", n, frame[:hdr6Len], want[:hdr6Len], err)
				}
				if len(frame) != size || binary.BigEndian.Uint16(frame[12:]) != unix.ETH_P_IPV6 ||
					int(binary.BigEndian.Uint16(frame[ethLen+4:])) != size-ethLen-ip6Len {
					t.Fatalf("frame %d: not an IPv6 frame of %d bytes: % x", n, size, frame[:hdr6Len])
				}
				to, _ := netip.AddrFromSlice(frame[ethLen+24 : ethLen+40])
				if want := fibRoute(n % MaxFlows % routes); !want.Contains(net.IP(to.AsSlice())) || to.As16()[15] != 5 {
					t.Errorf("frame %d to %s, want ::5 in %s", n, to, want)
				}
				udp := frame[ethLen+ip6Len:]
				sport, dport := flowTuple(n % MaxFlows)
				if binary.BigEndian.Uint16(udp) != sport || binary.BigEndian.Uint16(udp[2:]) != dport {
					t.Errorf("frame %d: ports %x", n, udp[:4])
				}
				check := binary.BigEndian.Uint16(udp[6:])
				switch {
				case !sum && check != 0:
					t.Errorf("size %d frame %d: checksum %#x, want 0 (none)", size, n, check)
				case sum && (check == 0 || !udpChecksumOK(frame)):
					t.Errorf("size %d frame %d: checksum %#x does not verify", size, n, check)
				}
			}
		}
	}
	bad := frameSpec{size: MinFrame, dsts: 2, dst: net.HardwareAddr{2, 0, 0, 0, 0, 1}, src: net.HardwareAddr{2, 0, 0, 0, 0, 2},
		from: netip.MustParseAddr("fd00:1::1"), to: netip.MustParseAddr("fd01:2::5")}
	if err := g.configure(bad, 1); err == nil {
		t.Error("destinations with bytes 2..5 set accepted for cycling")
	}
	bad.from, bad.to = netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("198.18.2.1")
	if err := g.configure(bad, 1); err == nil {
		t.Error("IPv4 frames accepted for cycling destinations")
	}
	bad.dsts, bad.to = 0, netip.MustParseAddr("fd00:2::1")
	if err := g.configure(bad, 1); err == nil {
		t.Error("mixed families accepted")
	}
}

// stampGen loads the generator for BPF_PROG_RUN (no live frames), closed
// at the test's end; the test is skipped without root.
func stampGen(t *testing.T) *liveGen {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to load BPF programs")
	}
	g, err := newLiveGen(pinned{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
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

// udpChecksumOK verifies the UDP checksum of an IPv4 or IPv6 frame.
func udpChecksumOK(frame []byte) bool {
	ip := frame[ethLen : ethLen+ipLen]
	udp := frame[ethLen+ipLen:]
	addrs, proto := ip[12:20], ip[9]
	if binary.BigEndian.Uint16(frame[12:]) == unix.ETH_P_IPV6 {
		ip = frame[ethLen : ethLen+ip6Len]
		udp = frame[ethLen+ip6Len:]
		addrs, proto = ip[8:40], ip[6]
	}
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(addrs)
	sum += uint32(proto) + uint32(len(udp))
	add(udp)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}
