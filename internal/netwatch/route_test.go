package netwatch

import (
	"encoding/binary"
	"maps"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// rtm builds a route message payload (rtmsg and attributes) as the kernel
// sends it.
func rtm(family byte, dst netip.Prefix, table uint32, priority uint32, mtu int, nhID bool) []byte {
	b := make([]byte, rtmsgLen)
	b[0], b[1], b[4] = family, byte(dst.Bits()), unix.RT_TABLE_COMPAT
	attr := func(typ uint16, v []byte) {
		h := make([]byte, rtattrHdr)
		binary.NativeEndian.PutUint16(h[0:], uint16(rtattrHdr+len(v)))
		binary.NativeEndian.PutUint16(h[2:], typ)
		b = append(b, h...)
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	u32 := func(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
	attr(unix.RTA_TABLE, u32(table))
	if dst.Bits() > 0 {
		attr(unix.RTA_DST, dst.Addr().AsSlice())
	}
	attr(unix.RTA_PRIORITY, u32(priority))
	if nhID {
		attr(30, u32(10)) // RTA_NH_ID
	}
	if mtu > 0 {
		var m []byte
		for _, x := range [][2]uint32{{unix.RTAX_LOCK, 0}, {unix.RTAX_MTU, uint32(mtu)}} {
			h := make([]byte, rtattrHdr)
			binary.NativeEndian.PutUint16(h[0:], rtattrHdr+4)
			binary.NativeEndian.PutUint16(h[2:], uint16(x[0]))
			m = append(append(m, h...), u32(x[1])...)
		}
		attr(unix.RTA_METRICS, m)
	}
	return b
}

// TestMirror: the mirror's rules for route messages, without a kernel.
func TestMirror(t *testing.T) {
	p4, p6 := netip.MustParsePrefix("198.18.61.0/24"), netip.MustParsePrefix("fd00:61::/64")
	def := netip.MustParsePrefix("0.0.0.0/0")
	m := newMirror()
	steps := []struct {
		what    string
		typ     uint16
		flags   uint16
		b       []byte
		changed bool
		want    map[netip.Prefix]int
	}{
		{"add with mtu", unix.RTM_NEWROUTE, unix.NLM_F_CREATE, rtm(unix.AF_INET, p4, 254, 0, 1300, false), true, map[netip.Prefix]int{p4: 1300}},
		{"same again", unix.RTM_NEWROUTE, unix.NLM_F_CREATE, rtm(unix.AF_INET, p4, 254, 0, 1300, false), false, map[netip.Prefix]int{p4: 1300}},
		{"other table, lower", unix.RTM_NEWROUTE, unix.NLM_F_CREATE, rtm(unix.AF_INET, p4, 100, 0, 1280, false), true, map[netip.Prefix]int{p4: 1280}},
		{"appended without mtu", unix.RTM_NEWROUTE, unix.NLM_F_CREATE | unix.NLM_F_APPEND, rtm(unix.AF_INET, p4, 254, 0, 0, false), false, map[netip.Prefix]int{p4: 1280}},
		{"replaced without mtu", unix.RTM_NEWROUTE, unix.NLM_F_REPLACE, rtm(unix.AF_INET, p4, 100, 0, 0, false), true, map[netip.Prefix]int{p4: 1300}},
		{"other metric deleted", unix.RTM_DELROUTE, 0, rtm(unix.AF_INET, p4, 254, 20, 1300, false), false, map[netip.Prefix]int{p4: 1300}},
		{"ipv6 default table", unix.RTM_NEWROUTE, unix.NLM_F_CREATE, rtm(unix.AF_INET6, p6, 254, 1024, 1350, false), true, map[netip.Prefix]int{p4: 1300, p6: 1350}},
		{"default route", unix.RTM_NEWROUTE, unix.NLM_F_CREATE, rtm(unix.AF_INET, def, 254, 0, 1400, false), true, map[netip.Prefix]int{p4: 1300, p6: 1350, def: 1400}},
		{"deleted", unix.RTM_DELROUTE, 0, rtm(unix.AF_INET, p4, 254, 0, 1300, false), true, map[netip.Prefix]int{p6: 1350, def: 1400}},
	}
	for _, s := range steps {
		r, ok := decodeRoute(s.typ, s.flags, s.b)
		if !ok {
			t.Fatalf("%s: not decoded", s.what)
		}
		if got := m.apply(r); got != s.changed {
			t.Errorf("%s: changed %v, want %v", s.what, got, s.changed)
		}
		if got := m.prefixes(); !maps.Equal(got, s.want) {
			t.Errorf("%s: %v, want %v", s.what, got, s.want)
		}
	}
	if !m.has4() {
		t.Error("has4: the default route is IPv4")
	}
	// Malformed and foreign messages are ignored, never a panic.
	good := rtm(unix.AF_INET, p4, 254, 0, 1300, false)
	for _, b := range [][]byte{nil, good[:rtmsgLen-1], good[:rtmsgLen+2], append([]byte{unix.AF_BRIDGE}, good[1:]...)} {
		if _, ok := decodeRoute(unix.RTM_NEWROUTE, 0, b); ok {
			t.Errorf("%x decoded", b)
		}
	}
	cloned := append([]byte(nil), good...)
	binary.NativeEndian.PutUint32(cloned[8:], unix.RTM_F_CLONED)
	if _, ok := decodeRoute(unix.RTM_NEWROUTE, 0, cloned); ok {
		t.Error("a cached clone decoded")
	}
}

// FuzzDecodeRoute: any payload decodes or is ignored, without a panic.
func FuzzDecodeRoute(f *testing.F) {
	f.Add(rtm(unix.AF_INET, netip.MustParsePrefix("198.18.61.0/24"), 254, 0, 1300, true))
	f.Add(rtm(unix.AF_INET6, netip.MustParsePrefix("fd00::/8"), 100, 1, 0, false))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, ok := decodeRoute(unix.RTM_NEWROUTE, 0, b); ok && !r.key.dst.IsValid() {
			t.Errorf("decoded an invalid prefix from %x", b)
		}
	})
}
