package datapath

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// SetLocalAddrs makes the datapath's list of the host's own addresses
// (fp_local_addrs) exactly addrs: the FIB lookup answers the same for a
// local destination and for one with no route, and the list tells the two
// apart (pass reasons local and no_route). New entries go in before stale
// ones go.
func (d *Datapath) SetLocalAddrs(addrs []netip.Addr) error {
	want := make(map[fastpathFpAddr]bool, len(addrs))
	for _, a := range addrs {
		want[addrKey(a)] = true
	}
	var errs []error
	for k := range want {
		if err := d.objs.FpLocalAddrs.Update(k, uint8(1), ebpf.UpdateAny); err != nil {
			errs = append(errs, fmt.Errorf("local address: %w", err))
		}
	}
	var (
		k     fastpathFpAddr
		v     uint8
		stale []fastpathFpAddr
	)
	it := d.objs.FpLocalAddrs.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		errs = append(errs, fmt.Errorf("list local addresses: %w", err))
	}
	for _, k := range stale {
		if err := d.objs.FpLocalAddrs.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("local address: %w", err))
		}
	}
	return errors.Join(errs...)
}

// addrKey is an address as fp_local_addrs keys it: IPv6, IPv4 mapped.
func addrKey(a netip.Addr) fastpathFpAddr {
	b := netip.AddrFrom16(a.As16()).As16() // IPv4 becomes ::ffff:a.b.c.d
	var k fastpathFpAddr
	for i := range k.A {
		k.A[i] = uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24 // network order in memory
	}
	return k
}
