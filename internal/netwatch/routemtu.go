// Package netwatch reads kernel routing state the datapath needs mirrored.
package netwatch

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteMTUs returns every route of the calling thread's network namespace
// (all tables, IPv4 and IPv6) that carries an MTU metric, by destination
// prefix; the lowest MTU wins where tables disagree. Used to make the
// datapath honour route MTUs as the kernel's forwarding does.
func RouteMTUs() (map[netip.Prefix]int, error) {
	filter := &netlink.Route{Table: unix.RT_TABLE_UNSPEC}
	out := map[netip.Prefix]int{}
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		var (
			routes []netlink.Route
			err    error
		)
		for range 5 { // a dump interrupted by concurrent changes is retried
			routes, err = netlink.RouteListFiltered(family, filter, netlink.RT_FILTER_TABLE)
			if !errors.Is(err, netlink.ErrDumpInterrupted) {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("list routes: %w", err)
		}
		for _, r := range routes {
			if r.MTU <= 0 {
				continue
			}
			p, ok := prefixOf(r, family)
			if !ok {
				continue
			}
			if old, seen := out[p]; !seen || r.MTU < old {
				out[p] = r.MTU
			}
		}
	}
	return out, nil
}

func prefixOf(r netlink.Route, family int) (netip.Prefix, bool) {
	if r.Dst == nil { // default route
		if family == netlink.FAMILY_V4 {
			return netip.PrefixFrom(netip.IPv4Unspecified(), 0), true
		}
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0), true
	}
	a, ok := netip.AddrFromSlice(r.Dst.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := r.Dst.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits).Masked(), true
}
