package datapath

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// minRunLen is the shortest frame BPF_PROG_RUN accepts (found on 6.18):
// bpf_test_init rejects less than an Ethernet header for both program
// types, and the skb test run also wants the whole IPv4 or IPv6 header when
// the EtherType announces one (it reads the addresses for its dummy
// socket). Anything shorter is EINVAL and never reaches the program.
func minRunLen(h hook, frame []byte) int {
	const ethHLen = 14
	if h == hookXDP || len(frame) < ethHLen {
		return ethHLen
	}
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		return ethHLen + 20
	case 0x86dd:
		return ethHLen + 40
	}
	return ethHLen
}

// TestTruncation cuts valid frames at every length: a frame cut anywhere is
// passed to the kernel unchanged as malformed; the whole frame still gets
// its normal outcome.
func TestTruncation(t *testing.T) {
	tn := newTestNet(t)
	frames := []struct {
		name string
		full []byte
		last string // outcome of the uncut frame
	}{
		{"ipv4 tcp", tcp4(ipDst).bytes(t), fwd},
		{"ipv6 tcp", tcp6(ip6Dst).bytes(t), fwd},
		{"ipv4 icmp", icmp4(ipDst).bytes(t), fwd},
		{"ipv6 udp", udp6(ip6Dst).bytes(t), fwd},
		{"802.1q ipv4 udp", pkt{tpids: []layers.EthernetType{layers.EthernetTypeDot1Q}, l3: ip4Hdr(ipDst, layers.IPProtocolUDP), l4: udpHdr(), payload: payload(24)}.bytes(t), "vlan"},
	}
	for _, f := range frames {
		full := f.full
		for _, h := range []hook{hookXDP, hookTC} {
			t.Run(h.String()+"/"+f.name, func(t *testing.T) {
				minLen := minRunLen(h, full)
				for n := 0; n < minLen; n++ {
					_, err := tn.run(h, full[:n], runOpts{})
					if !errors.Is(err, unix.EINVAL) {
						t.Fatalf("%d bytes: got error %v, want EINVAL (below the kernel's minimum of %d)", n, err, minLen)
					}
				}
				for n := minLen; n < len(full); n++ {
					checkOne(t, tn, h, full[:n], runOpts{}, "malformed")
					if t.Failed() {
						t.Fatalf("first failure at %d of %d bytes", n, len(full))
					}
				}
				checkOne(t, tn, h, full, runOpts{}, f.last)
			})
		}
	}
}
