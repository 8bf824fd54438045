package datapath

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// SetRouteMTUs makes the datapath's view of route MTU metrics equal to
// mtus (prefix -> MTU). bpf_fib_lookup ignores unlocked route MTUs, while
// the kernel's forwarding honours them; the datapath checks these itself.
func (d *Datapath) SetRouteMTUs(mtus map[netip.Prefix]int) error {
	want4 := map[fastpathFpLpm4]uint32{}
	want6 := map[fastpathFpLpm6]uint32{}
	for p, mtu := range mtus {
		p = p.Masked()
		if p.Addr().Is4() {
			want4[fastpathFpLpm4{Prefixlen: uint32(p.Bits()), Addr: wordsOf(p.Addr())[0]}] = uint32(mtu)
		} else {
			want6[fastpathFpLpm6{Prefixlen: uint32(p.Bits()), Addr: wordsOf(p.Addr())}] = uint32(mtu)
		}
	}
	changed4, err := syncLPM(d.objs.FpMtu4, want4)
	if err != nil {
		return fmt.Errorf("route mtus (ipv4): %w", err)
	}
	changed6, err := syncLPM(d.objs.FpMtu6, want6)
	if err != nil {
		return fmt.Errorf("route mtus (ipv6): %w", err)
	}
	// The route event that led here made cached flows look up their route
	// again at once, maybe before these maps changed: those flows cached
	// the old MTU. Make them look again, now that the maps are right.
	return d.writeGlobals(func(s *fastpathFpState) {
		s.RouteMtus = uint32(len(want4) + len(want6))
		if changed4 || changed6 {
			s.FibGen++
		}
	})
}

// syncLPM makes the map hold exactly want: adds and updates first, so a
// packet never sees a prefix missing that stays, then deletes the rest. It
// reports whether anything changed. (What the map holds comes from
// iterating it: a lookup in an LPM trie answers for the longest match, not
// for the exact prefix.)
func syncLPM[K comparable](m *ebpf.Map, want map[K]uint32) (bool, error) {
	have := map[K]uint32{}
	var (
		k K
		v uint32
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		have[k] = v
	}
	if err := it.Err(); err != nil {
		return false, err
	}
	changed := false
	for k, v := range want {
		if old, ok := have[k]; ok && old == v {
			continue
		}
		if err := m.Update(k, v, ebpf.UpdateAny); err != nil {
			return changed, err
		}
		changed = true
	}
	for k := range have {
		if _, ok := want[k]; ok {
			continue
		}
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return changed, err
		}
		changed = true
	}
	return changed, nil
}
