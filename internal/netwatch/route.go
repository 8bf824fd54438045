package netwatch

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// routeKey names one kernel route as the kernel does: a replace or delete
// of the same key acts on the same route. (IPv4 keys routes by table,
// prefix, TOS and priority; IPv6 by table, prefix, source prefix and
// metric.)
type routeKey struct {
	table    uint32
	dst      netip.Prefix
	src      netip.Prefix // IPv6 source-specific routes; zero otherwise
	tos      uint8
	priority uint32
}

// routeMsg is what the mirror needs from one RTM_NEWROUTE/RTM_DELROUTE.
type routeMsg struct {
	key     routeKey
	mtu     int  // RTAX_MTU, 0 without one
	del     bool // RTM_DELROUTE
	replace bool // NLM_F_REPLACE: the route with this key was replaced
}

const (
	rtmsgLen   = 12 // struct rtmsg
	rtattrHdr  = 4  // struct rtattr
	nlaTypeMsk = 0x3fff
)

// decodeRoute reads one route message's payload (after the nlmsghdr):
// only the header fields and attributes that make up the key, and the MTU
// metric. ok is false for messages the mirror ignores (malformed, other
// families, cached clones such as IPv6 PMTU exceptions).
func decodeRoute(typ, flags uint16, b []byte) (m routeMsg, ok bool) {
	if len(b) < rtmsgLen || (typ != unix.RTM_NEWROUTE && typ != unix.RTM_DELROUTE) {
		return m, false
	}
	family, dstLen, srcLen := b[0], int(b[1]), int(b[2])
	m.key.tos, m.key.table = b[3], uint32(b[4])
	if binary.NativeEndian.Uint32(b[8:12])&unix.RTM_F_CLONED != 0 {
		return m, false
	}
	var zero netip.Addr
	switch family {
	case unix.AF_INET:
		zero = netip.IPv4Unspecified()
	case unix.AF_INET6:
		zero = netip.IPv6Unspecified()
	default:
		return m, false
	}
	dst, src := zero, zero
	var haveDst, haveSrc bool
	for a := b[rtmsgLen:]; len(a) >= rtattrHdr; {
		l := int(binary.NativeEndian.Uint16(a[0:2]))
		if l < rtattrHdr || l > len(a) {
			return m, false
		}
		v := a[rtattrHdr:l]
		switch binary.NativeEndian.Uint16(a[2:4]) & nlaTypeMsk {
		case unix.RTA_DST:
			if dst, haveDst = addrOf(family, v); !haveDst {
				return m, false
			}
		case unix.RTA_SRC:
			if src, haveSrc = addrOf(family, v); !haveSrc {
				return m, false
			}
		case unix.RTA_TABLE:
			if len(v) >= 4 {
				m.key.table = binary.NativeEndian.Uint32(v)
			}
		case unix.RTA_PRIORITY:
			if len(v) >= 4 {
				m.key.priority = binary.NativeEndian.Uint32(v)
			}
		case unix.RTA_METRICS:
			m.mtu = metricMTU(v)
		}
		a = a[min(len(a), (l+3)&^3):]
	}
	if (dstLen > 0 && !haveDst) || (srcLen > 0 && !haveSrc) {
		return m, false // a prefix length without its address
	}
	var err error
	if m.key.dst, err = dst.Prefix(dstLen); err != nil {
		return m, false
	}
	if srcLen > 0 {
		if m.key.src, err = src.Prefix(srcLen); err != nil {
			return m, false
		}
	}
	m.del = typ == unix.RTM_DELROUTE
	m.replace = flags&unix.NLM_F_REPLACE != 0
	return m, true
}

func addrOf(family byte, v []byte) (netip.Addr, bool) {
	switch {
	case family == unix.AF_INET && len(v) == 4:
		return netip.AddrFrom4([4]byte(v)), true
	case family == unix.AF_INET6 && len(v) == 16:
		return netip.AddrFrom16([16]byte(v)), true
	}
	return netip.Addr{}, false
}

// metricMTU finds RTAX_MTU in the nested RTA_METRICS attribute.
func metricMTU(a []byte) int {
	for len(a) >= rtattrHdr {
		l := int(binary.NativeEndian.Uint16(a[0:2]))
		if l < rtattrHdr || l > len(a) {
			return 0
		}
		if binary.NativeEndian.Uint16(a[2:4])&nlaTypeMsk == unix.RTAX_MTU && l >= rtattrHdr+4 {
			return int(binary.NativeEndian.Uint32(a[rtattrHdr:]))
		}
		a = a[min(len(a), (l+3)&^3):]
	}
	return 0
}

// mirror holds the routes that carry an MTU metric, and only those: a
// router with a full BGP table and no MTU routes keeps nothing here.
type mirror struct {
	routes map[routeKey]int
}

func newMirror() *mirror { return &mirror{routes: map[routeKey]int{}} }

// apply folds one route message in and reports whether the set of MTU
// routes changed. A new route without an MTU matters only when it replaces
// one that had one; a route appended beside another leaves that one be.
func (m *mirror) apply(r routeMsg) bool {
	old, had := m.routes[r.key]
	switch {
	case r.del || (r.mtu <= 0 && r.replace):
		if had {
			delete(m.routes, r.key)
		}
		return had
	case r.mtu > 0:
		m.routes[r.key] = r.mtu
		return !had || old != r.mtu
	}
	return false
}

// prefixes is the datapath's view: MTU by destination prefix, the lowest
// where tables, metrics or sources disagree.
func (m *mirror) prefixes() map[netip.Prefix]int {
	out := make(map[netip.Prefix]int, len(m.routes))
	for k, mtu := range m.routes {
		if old, seen := out[k.dst]; !seen || mtu < old {
			out[k.dst] = mtu
		}
	}
	return out
}

// has4 reports whether any IPv4 route is mirrored: the kernel removes IPv4
// routes without an event when their device goes down or loses its
// address, so only then do link and address changes call for a resync.
func (m *mirror) has4() bool {
	for k := range m.routes {
		if k.dst.Addr().Is4() {
			return true
		}
	}
	return false
}
