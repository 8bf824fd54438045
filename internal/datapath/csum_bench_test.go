package datapath

import (
	"fmt"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
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
