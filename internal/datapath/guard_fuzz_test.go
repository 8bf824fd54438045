package datapath

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// guardFuzzDeny is what FuzzGuard's router denies: the sender of most
// seed frames, so mutations land on both sides of the prefixes.
var guardFuzzDeny = []netip.Prefix{netip.MustParsePrefix("198.18.10.0/28"), netip.MustParsePrefix("fd00:10::/124")}

// modelGuard is the guard's reference model, from docs/guard.md: after
// Ethernet and up to two VLAN tags, an IPv4 or IPv6 header whose source is
// in the deny list is dropped, whatever else the frame holds; anything
// else is not the guard's business.
func modelGuard(frame []byte) (drop bool) {
	if len(frame) < 14 {
		return false
	}
	proto, off := binary.BigEndian.Uint16(frame[12:]), 14
	for range 2 {
		if proto != 0x8100 && proto != 0x88a8 {
			break
		}
		if len(frame) < off+4 {
			return false
		}
		proto, off = binary.BigEndian.Uint16(frame[off+2:]), off+4
	}
	var src netip.Addr
	switch {
	case proto == 0x0800 && len(frame) >= off+20:
		src = netip.AddrFrom4([4]byte(frame[off+12 : off+16]))
	case proto == 0x86dd && len(frame) >= off+40:
		src = netip.AddrFrom16([16]byte(frame[off+8 : off+24]))
	default:
		return false
	}
	for _, p := range guardFuzzDeny {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

// FuzzGuard: FuzzXDP with a deny list. Every frame is dropped exactly when
// modelGuard says so, and otherwise handled as modelXDP says (passed
// unchanged or forwarded as the model forwards it).
func FuzzGuard(f *testing.F) {
	tn := newTestNet(f)
	if _, _, err := tn.d.SyncGuardList(GuardDeny, guardFuzzDeny); err != nil {
		f.Fatal(err)
	}
	for _, fr := range seedFrames(f) {
		f.Add(fr)
	}
	f.Add(from(tcp4(ipDst), "198.18.10.17").bytes(f)) // just outside the IPv4 prefix
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > maxFuzzFrame {
			return
		}
		res := runFuzzFrame(t, tn, frame)
		if drop := modelGuard(frame); drop != (res.verdict == xdpDrop) {
			t.Fatalf("verdict %s, the guard model drops: %v; %s", hookXDP.verdictName(res.verdict), drop, headers(frame))
		}
		if res.verdict == xdpDrop {
			return
		}
		checkModelXDP(t, frame, res)
	})
}
