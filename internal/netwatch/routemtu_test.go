package netwatch

import (
	"net/netip"
	"os/exec"
	"testing"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// TestRouteMTUs reads routes with an MTU metric (locked or not, IPv4 and
// IPv6, other tables) from a namespace and ignores the rest.
func TestRouteMTUs(t *testing.T) {
	ns := emptyNS(t)
	for _, args := range [][]string{
		{"link", "add", "v0", "type", "veth", "peer", "name", "v1"},
		{"link", "set", "v0", "up"},
		{"link", "set", "v1", "up"},
		{"addr", "add", "198.18.60.1/24", "dev", "v0"},
		{"-6", "addr", "add", "fd00:60::1/64", "dev", "v0", "nodad"},
		{"route", "add", "198.18.61.0/24", "via", "198.18.60.2", "mtu", "1300"},
		{"route", "add", "198.18.62.0/24", "via", "198.18.60.2", "mtu", "lock", "1280"},
		{"route", "add", "198.18.63.0/24", "via", "198.18.60.2"},
		{"route", "add", "198.18.64.0/24", "via", "198.18.60.2", "mtu", "1400", "table", "100"},
		{"-6", "route", "add", "fd00:61::/64", "via", "fd00:60::2", "mtu", "1350"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	var got map[netip.Prefix]int
	err := nsutil.Do(ns, func() (err error) {
		got, err = RouteMTUs()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[netip.Prefix]int{
		netip.MustParsePrefix("198.18.61.0/24"): 1300,
		netip.MustParsePrefix("198.18.62.0/24"): 1280,
		netip.MustParsePrefix("198.18.64.0/24"): 1400,
		netip.MustParsePrefix("fd00:61::/64"):   1350,
	}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for p, mtu := range want {
		if got[p] != mtu {
			t.Errorf("%s: mtu %d, want %d (all: %v)", p, got[p], mtu, got)
		}
	}
}
