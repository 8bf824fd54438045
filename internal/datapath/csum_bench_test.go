package datapath

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/bench/replay"
)

// BenchmarkChecksumCheck: what verifying an offloaded flow's TCP/UDP
// checksum costs per packet. Both runs take a cached UDP flow's packet
// through the same path up to the check and pass it to the kernel
// unchanged (so the repeats see the same bytes): "verify" has a wrong
// checksum and fails the check (every byte summed), "baseline" is turned
// away just before the check by an egress MTU below its size. The
// difference is the check's cost, at 64-byte and 1400-byte IP packets.
func BenchmarkChecksumCheck(b *testing.B) {
	on := newOffloadNet(b)
	for _, size := range []int{64 - 14 - 20 - 8, 1400 - 20 - 8} {
		for _, h := range hooks() {
			c := on.offloadConn(b, kindSNAT, unix.IPPROTO_UDP, false)
			l := c.leg(false)
			frame := l.inFrame(b, seg{payload: payload(size)})
			bad := slices.Clone(frame)
			off, _ := l4Offset(bad)
			bad[off+l4CheckOff(unix.IPPROTO_UDP)] ^= 0x40
			for _, mode := range []string{"verify", "baseline"} {
				b.Run(fmt.Sprintf("%s/frame%dB/%s", h, size+42, mode), func(b *testing.B) {
					mtu := 1500
					if mode == "baseline" {
						mtu = 60 // below every packet here: frag_needed, just before the check
					}
					if err := on.d.SetIface(Iface{Index: on.out0, MAC: macOut0, MTU: mtu, Mode: ModeOffload}); err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { on.d.SetIface(Iface{Index: on.out0, MAC: macOut0, MTU: out0MTU, Mode: ModeOffload}) })
					if err := on.d.InvalidateRoutes(); err != nil {
						b.Fatal(err)
					}
					// refill the flow under the new MTU with a good packet
					if _, err := on.run(h, frame, runOpts{ingress: on.in0}); err != nil {
						b.Fatal(err)
					}
					benchPackets(b, on.testNet, h.prog(on.d), h, bad, on.in0, h.passCode())
				})
			}
		}
	}
}

// BenchmarkHitChecks: what the checks against hostile and unusual packets
// (issue 16) cost a cached flow's packet on the hit path, side by side in
// one run. Each case forwards the same packet of an offloaded, masqueraded
// flow (through the replay wrapper, net of it) in modes run one after the
// other:
//
//	checks      as shipped: the TCP/UDP checksum verified
//	            (nf_conntrack_checksum=1, the default), TCP flags classified,
//	            the TCP window edge tracked, a trailer looked for
//	no-csum     the same with checksum verification off, as the datapath
//	            runs under nf_conntrack_checksum=0
//	edge-moves  TCP only: no-csum with the ack number one higher on every
//	            packet, so the window tracking writes the flow's edge on
//	            every packet, as an ACK stream's packets do (the constant
//	            frame of the other modes writes it once): its write's cost
//
// for UDP and TCP, IPv4 and IPv6, 128- and 1414-byte frames, XDP and TC,
// and logs the differences. The rest of the window tracking (a compare per
// segment) and the flag and trailer checks cannot be switched off at run
// time. BPF_PROG_RUN gives TC an skb without checksum state, so TC sums
// every byte here (its worst case); an skb the kernel or a local sender
// vouches for (CHECKSUM_UNNECESSARY, CHECKSUM_PARTIAL) is not summed.
//
// With -v each case logs the differences.
//
//	go test -v -run '^$' -bench '^BenchmarkHitChecks$' -count 5 ./internal/datapath
func BenchmarkHitChecks(b *testing.B) {
	on := newOffloadNet(b)
	b.Cleanup(func() { on.d.SetChecksum(true) })
	for _, h := range hooks() {
		b.Run(h.String(), func(b *testing.B) {
			for _, proto := range []uint8{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
				for _, v6 := range []bool{false, true} {
					name := protoName(proto) + map[bool]string{false: "4", true: "6"}[v6]
					b.Run(name, func(b *testing.B) {
						for _, frameLen := range []int{benchFrameLen, 1414} {
							b.Run(fmt.Sprintf("frame%dB", frameLen), func(b *testing.B) {
								benchHitChecks(b, on, h, proto, v6, frameLen)
							})
						}
					})
				}
			}
		})
	}
}

// benchHitChecks runs the modes of one BenchmarkHitChecks case.
func benchHitChecks(b *testing.B, on *offloadNet, h hook, proto uint8, v6 bool, frameLen int) {
	c := on.offloadConn(b, kindSNAT, proto, v6)
	l := c.leg(false)
	l4, _ := l4Offset(l.inFrame(b, seg{}))
	hdrLen := l4 + 8
	if proto == unix.IPPROTO_TCP {
		hdrLen = l4 + 20
	}
	frame := l.inFrame(b, seg{payload: payload(frameLen - hdrLen)})
	if len(frame) != frameLen {
		b.Fatalf("frame of %d bytes, want %d", len(frame), frameLen)
	}
	modes := []string{"checks", "no-csum"}
	if proto == unix.IPPROTO_TCP {
		modes = append(modes, "edge-moves")
	}
	net := map[string]float64{}
	for _, mode := range modes {
		b.Run(mode, func(b *testing.B) {
			if err := on.d.SetChecksum(mode == "checks"); err != nil {
				b.Fatal(err)
			}
			var vary replay.Vary
			if mode == "edge-moves" {
				// Acks from just where the frame's window moves the
				// flow's edge (the cached one may lie further out), up.
				var f fastpathFpFlow
				if err := on.d.objs.FpFlows.Lookup(keyOf(l.in), &f); err != nil {
					b.Fatal(err)
				}
				s := f.TcpWscale & 15
				edge := f.TcpAck + uint32(f.TcpWin)<<s
				win := uint32(binary.BigEndian.Uint16(frame[l4+14:])) << s
				vary = replay.Vary{Offset: l4 + 8, Base: edge - win + 1, N: 1 << 30}
			}
			r, base := on.replayer(b, h, frame, vary)
			net[mode] = benchReplay(b, on.testNet, r, base, h, frame, nil, 0)
			if mode == "edge-moves" {
				// The flow's edge followed the acks: written every packet.
				var f fastpathFpFlow
				if err := on.d.objs.FpFlows.Lookup(keyOf(l.in), &f); err != nil {
					b.Fatal(err)
				}
				if got := f.TcpAck - vary.Base; got < uint32(b.N)-1 {
					b.Fatalf("the flow's ack moved by %d in %d packets", got, b.N)
				}
			}
		})
	}
	msg := fmt.Sprintf("net ns/pkt: checks %.1f, no-csum %.1f: the checksum check costs %+.1f",
		net["checks"], net["no-csum"], net["checks"]-net["no-csum"])
	if proto == unix.IPPROTO_TCP {
		msg += fmt.Sprintf("; edge written every packet %+.1f", net["edge-moves"]-net["no-csum"])
	}
	b.Log(msg)
}
