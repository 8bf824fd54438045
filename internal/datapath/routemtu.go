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
	if err := syncLPM(d.objs.FpMtu4, want4); err != nil {
		return fmt.Errorf("route mtus (ipv4): %w", err)
	}
	if err := syncLPM(d.objs.FpMtu6, want6); err != nil {
		return fmt.Errorf("route mtus (ipv6): %w", err)
	}
	return d.writeGlobals(func(s *fastpathFpState) { s.RouteMtus = uint32(len(want4) + len(want6)) })
}

// syncLPM makes the map hold exactly want: adds and updates first, so a
// packet never sees a prefix missing that stays, then deletes the rest.
func syncLPM[K comparable](m *ebpf.Map, want map[K]uint32) error {
	for k, v := range want {
		if err := m.Update(k, v, ebpf.UpdateAny); err != nil {
			return err
		}
	}
	var (
		k     K
		v     uint32
		stale []K
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}
