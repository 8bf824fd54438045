package datapath

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// TestECMP: for a route with several next hops (a multipath route, and a
// nexthop group as FRR installs them), the datapath picks, flow by flow,
// the next hop the kernel's forwarding picks (bpf_fib_lookup hashes the
// same fields with the same seed), IPv4 and IPv6, with the L4 hash policy
// so that ports spread flows; and when a next hop goes away, its flows
// follow the kernel to the others.
func TestECMP(t *testing.T) {
	tn := newTestNet(t)
	macs := map[string]net.HardwareAddr{
		"198.18.20.2": macNhop, "fd00:20::2": macNhop,
		"198.18.20.4": {0x02, 0, 0, 0, 0x20, 0x04}, "fd00:20::4": {0x02, 0, 0, 0, 0x20, 0x04},
		"198.18.20.5": {0x02, 0, 0, 0, 0x20, 0x05}, "fd00:20::5": {0x02, 0, 0, 0, 0x20, 0x05},
	}
	for _, c := range [][]string{
		{"neigh", "add", "198.18.20.4", "lladdr", macs["198.18.20.4"].String(), "dev", "out0", "nud", "permanent"},
		{"neigh", "add", "198.18.20.5", "lladdr", macs["198.18.20.5"].String(), "dev", "out0", "nud", "permanent"},
		{"neigh", "add", "fd00:20::4", "lladdr", macs["fd00:20::4"].String(), "dev", "out0", "nud", "permanent"},
		{"neigh", "add", "fd00:20::5", "lladdr", macs["fd00:20::5"].String(), "dev", "out0", "nud", "permanent"},
		{"route", "add", "198.18.33.0/24", "nexthop", "via", "198.18.20.2", "nexthop", "via", "198.18.20.4", "nexthop", "via", "198.18.20.5"},
		{"-6", "route", "add", "fd00:33::/64", "nexthop", "via", "fd00:20::2", "nexthop", "via", "fd00:20::4", "nexthop", "via", "fd00:20::5"},
		// Nexthop objects and a group of them, as FRR installs routes.
		{"nexthop", "add", "id", "2", "via", "198.18.20.2", "dev", "out0"},
		{"nexthop", "add", "id", "4", "via", "198.18.20.4", "dev", "out0"},
		{"nexthop", "add", "id", "5", "via", "198.18.20.5", "dev", "out0"},
		{"nexthop", "add", "id", "10", "group", "2/4/5"},
		{"route", "add", "198.18.34.0/24", "nhid", "10"},
		{"-6", "nexthop", "add", "id", "62", "via", "fd00:20::2", "dev", "out0"},
		{"-6", "nexthop", "add", "id", "64", "via", "fd00:20::4", "dev", "out0"},
		{"-6", "nexthop", "add", "id", "65", "via", "fd00:20::5", "dev", "out0"},
		{"nexthop", "add", "id", "60", "group", "62/64/65"},
		{"-6", "route", "add", "fd00:34::/64", "nhid", "60"},
	} {
		if err := ipCmd(tn.ns, c...); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"net.ipv4.fib_multipath_hash_policy", "net.ipv6.fib_multipath_hash_policy"} {
		if err := sysctl(tn.ns, k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	via := regexp.MustCompile(`via (\S+)`)
	// kernelVia asks the kernel which next hop forwards the flow.
	kernelVia := func(dst, src string, sport int) string {
		t.Helper()
		out, err := exec.Command("ip", "-n", tn.ns, "route", "get", dst, "from", src, "iif", "in0",
			"ipproto", "udp", "sport", fmt.Sprint(sport), "dport", "53").CombinedOutput()
		if err != nil {
			t.Fatalf("ip route get: %v: %s", err, out)
		}
		m := via.FindSubmatch(out)
		if m == nil {
			t.Fatalf("ip route get %s: no next hop in %q", dst, out)
		}
		return string(m[1])
	}
	// check runs 48 UDP flows per destination through both hooks and compares
	// each one's next hop (its destination MAC) with the kernel's.
	check := func(what string) {
		t.Helper()
		for _, fam := range []struct {
			dst, src net.IP
			frame    func(net.IP) pkt
		}{
			{net.ParseIP("198.18.33.5"), ipSender, udp4},
			{net.ParseIP("fd00:33::5"), ip6Sender, udp6},
			{net.ParseIP("198.18.34.5"), ipSender, udp4},
			{net.ParseIP("fd00:34::5"), ip6Sender, udp6},
		} {
			used := map[string]int{}
			for sport := 40000; sport < 40048; sport++ {
				p := fam.frame(fam.dst)
				p.l4.(*layers.UDP).SrcPort = layers.UDPPort(sport)
				want := kernelVia(fam.dst.String(), fam.src.String(), sport)
				used[want]++
				for _, h := range []hook{hookXDP, hookTC} {
					res, err := tn.run(h, p.bytes(t), runOpts{})
					if err != nil {
						t.Fatal(err)
					}
					if res.verdict != h.redirectCode() {
						t.Fatalf("%s: %s %s sport %d: verdict %s, want a redirect", what, h, fam.dst, sport, h.verdictName(res.verdict))
					}
					if got := net.HardwareAddr(res.out[0:6]); !bytes.Equal(got, macs[want]) {
						t.Errorf("%s: %s %s sport %d: sent to %s, the kernel sends it via %s (%s)", what, h, fam.dst, sport, got, want, macs[want])
					}
				}
			}
			t.Logf("%s: %s: flows by next hop %v", what, fam.dst, used)
			if len(used) < 2 {
				t.Errorf("%s: %s: the kernel put 48 flows on %v: no spread to compare", what, fam.dst, used)
			}
		}
	}
	check("three next hops")
	// One next hop goes away: its flows go where the kernel sends them now.
	for _, c := range [][]string{
		{"route", "replace", "198.18.33.0/24", "nexthop", "via", "198.18.20.2", "nexthop", "via", "198.18.20.5"},
		{"-6", "route", "replace", "fd00:33::/64", "nexthop", "via", "fd00:20::2", "nexthop", "via", "fd00:20::5"},
		{"nexthop", "replace", "id", "10", "group", "2/5"},
		{"nexthop", "replace", "id", "60", "group", "62/65"},
	} {
		if err := ipCmd(tn.ns, c...); err != nil {
			t.Fatal(err)
		}
	}
	check("next hop .4 gone")
}
