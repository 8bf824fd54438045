package netwatch

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LocalAddrs lists the destinations the kernel takes for itself rather
// than forwards, in the calling thread's network namespace: the host
// routes of its local table (its own addresses, IPv4 broadcast addresses,
// IPv6 anycast ones). They change with addresses, which send events.
func LocalAddrs() ([]netip.Addr, error) {
	var routes []netlink.Route
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} { // one dump of all families misses IPv6 here
		rs, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("list the local routing table: %w", err)
		}
		routes = append(routes, rs...)
	}
	var out []netip.Addr
	for _, r := range routes {
		switch r.Type {
		case unix.RTN_LOCAL, unix.RTN_BROADCAST, unix.RTN_ANYCAST:
		default:
			continue
		}
		if r.Dst == nil {
			continue
		}
		ones, bits := r.Dst.Mask.Size()
		if ip, ok := netip.AddrFromSlice(r.Dst.IP); ok && ones == bits {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}
