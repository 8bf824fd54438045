package datapath

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastpath-router/fastpath/internal/netwatch"
	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// The test router: one network namespace holding veth pairs whose router
// ends are in0 (ingress), out0 (managed egress) and un0 (never managed).
// The peers stay in the same namespace: they give the router ends a
// carrier, and the live tests send and listen on them. These fixtures are
// never written to.
var (
	macIn0   = net.HardwareAddr{0x02, 0, 0, 0, 0x10, 0x01}
	macOut0  = net.HardwareAddr{0x02, 0, 0, 0, 0x20, 0x01}
	macUn0   = net.HardwareAddr{0x02, 0, 0, 0, 0x70, 0x01}
	macPeer  = net.HardwareAddr{0x02, 0, 0, 0, 0x10, 0x02} // sender on the in0 segment
	macNhop  = net.HardwareAddr{0x02, 0, 0, 0, 0x20, 0x02} // next hop on out0
	macUnNh  = net.HardwareAddr{0x02, 0, 0, 0, 0x70, 0x02} // next hop on un0
	macOther = net.HardwareAddr{0x02, 0, 0, 0, 0x99, 0x99} // some other host's unicast MAC
)

const out0MTU = 1400

// Routes of the test router, by what the datapath must do with them.
var (
	ipSender     = net.ParseIP("198.18.10.2")
	ip6Sender    = net.ParseIP("fd00:10::2")
	ipIn0        = net.ParseIP("198.18.10.1")
	ip6In0       = net.ParseIP("fd00:10::1")
	ipOut0       = net.ParseIP("198.18.20.1")
	ipDst        = net.ParseIP("198.18.30.5")   // via 198.18.20.2 on out0
	ip6Dst       = net.ParseIP("fd00:30::5")    // via fd00:20::2 on out0
	ipRouteMTU   = net.ParseIP("198.18.31.5")   // via 198.18.20.2, mtu lock 1300
	ipRouteMTUu  = net.ParseIP("198.18.32.5")   // via 198.18.20.2, mtu 1300 (not locked)
	ip6RouteMTU  = net.ParseIP("fd00:31::5")    // via fd00:20::2, mtu lock 1300
	ip6RouteMTUu = net.ParseIP("fd00:32::5")    // via fd00:20::2, mtu 1300 (not locked)
	ipNoNeigh    = net.ParseIP("198.18.40.5")   // via 198.18.20.3, never resolved
	ip6NoNeigh   = net.ParseIP("fd00:40::5")    // via fd00:20::3, never resolved
	ipBlackh     = net.ParseIP("198.18.50.5")   // blackhole
	ipUnreach    = net.ParseIP("198.18.51.5")   // unreachable
	ipProhib     = net.ParseIP("198.18.52.5")   // prohibit
	ip6Blackh    = net.ParseIP("fd00:50::5")    // blackhole
	ip6Unreach   = net.ParseIP("fd00:51::5")    // unreachable
	ipUnmgd      = net.ParseIP("198.18.60.5")   // via 198.18.70.2 on un0
	ip6Unmgd     = net.ParseIP("fd00:60::5")    // via fd00:70::2 on un0
	ipHairpin    = net.ParseIP("198.18.80.5")   // via 198.18.10.3 on in0
	ip6Hairpin   = net.ParseIP("fd00:80::5")    // via fd00:10::3 on in0
	ipNhop       = net.ParseIP("198.18.20.2")   // the next hop itself (connected)
	ip6Nhop      = net.ParseIP("fd00:20::2")    // the next hop itself (connected)
	ipSubnetBc   = net.ParseIP("198.18.10.255") // in0's subnet broadcast
)

const routeMTU = 1300

// testNet is one router namespace with a datapath loaded for it.
type testNet struct {
	ns             string
	in0, out0, un0 int // ifindexes
	d              *Datapath
}

// randomName returns prefix plus 6 random hex characters.
func randomName(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random netns name: %v", err)
	}
	return prefix + hex.EncodeToString(b)
}

func ipCmd(ns string, args ...string) error {
	full := append([]string{"-n", ns}, args...)
	out, err := exec.Command("ip", full...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(full, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// sysctl writes a /proc/sys value from a thread inside the namespace: the
// net.* files belong to the netns of the opening thread.
func sysctl(ns, key, value string) error {
	return nsutil.Do(ns, func() error {
		p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
		}
		return nil
	})
}

// newTestNet builds the router namespace and loads and configures the
// datapath in it. Everything is undone by t.Cleanup, also when setup fails
// half way.
func newTestNet(t testing.TB) *testNet {
	t.Helper()
	requireRoot(t)
	tn := &testNet{ns: randomName(t, "fpt-")}
	if err := nsutil.Create(tn.ns); err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() {
		if err := nsutil.Delete(tn.ns); err != nil {
			t.Errorf("delete netns %s: %v", tn.ns, err)
		}
	})

	cmds := [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "in0", "address", macIn0.String(), "type", "veth", "peer", "name", "in0p"},
		{"link", "add", "out0", "address", macOut0.String(), "mtu", fmt.Sprint(out0MTU), "type", "veth", "peer", "name", "out0p", "mtu", fmt.Sprint(out0MTU)},
		{"link", "add", "un0", "address", macUn0.String(), "type", "veth", "peer", "name", "un0p"},
	}
	for _, dev := range []string{"in0", "in0p", "out0", "out0p", "un0", "un0p"} {
		cmds = append(cmds, []string{"link", "set", dev, "up"})
	}
	cmds = append(cmds,
		[]string{"addr", "add", "198.18.10.1/24", "dev", "in0"},
		[]string{"addr", "add", "fd00:10::1/64", "dev", "in0", "nodad"},
		[]string{"addr", "add", "198.18.20.1/24", "dev", "out0"},
		[]string{"addr", "add", "fd00:20::1/64", "dev", "out0", "nodad"},
		[]string{"addr", "add", "198.18.70.1/24", "dev", "un0"},
		[]string{"addr", "add", "fd00:70::1/64", "dev", "un0", "nodad"},
		[]string{"neigh", "add", "198.18.20.2", "lladdr", macNhop.String(), "dev", "out0", "nud", "permanent"},
		[]string{"neigh", "add", "fd00:20::2", "lladdr", macNhop.String(), "dev", "out0", "nud", "permanent"},
		[]string{"neigh", "add", "198.18.70.2", "lladdr", macUnNh.String(), "dev", "un0", "nud", "permanent"},
		[]string{"neigh", "add", "fd00:70::2", "lladdr", macUnNh.String(), "dev", "un0", "nud", "permanent"},
		[]string{"neigh", "add", "198.18.10.3", "lladdr", macPeer.String(), "dev", "in0", "nud", "permanent"},
		[]string{"neigh", "add", "fd00:10::3", "lladdr", macPeer.String(), "dev", "in0", "nud", "permanent"},
		[]string{"route", "add", "198.18.30.0/24", "via", "198.18.20.2"},
		[]string{"route", "add", "198.18.31.0/24", "via", "198.18.20.2", "mtu", "lock", fmt.Sprint(routeMTU)},
		[]string{"route", "add", "198.18.32.0/24", "via", "198.18.20.2", "mtu", fmt.Sprint(routeMTU)},
		[]string{"-6", "route", "add", "fd00:30::/64", "via", "fd00:20::2"},
		[]string{"-6", "route", "add", "fd00:31::/64", "via", "fd00:20::2", "mtu", "lock", fmt.Sprint(routeMTU)},
		[]string{"-6", "route", "add", "fd00:32::/64", "via", "fd00:20::2", "mtu", fmt.Sprint(routeMTU)},
		[]string{"route", "add", "198.18.40.0/24", "via", "198.18.20.3"},
		[]string{"-6", "route", "add", "fd00:40::/64", "via", "fd00:20::3"},
		[]string{"route", "add", "blackhole", "198.18.50.0/24"},
		[]string{"route", "add", "unreachable", "198.18.51.0/24"},
		[]string{"route", "add", "prohibit", "198.18.52.0/24"},
		[]string{"-6", "route", "add", "blackhole", "fd00:50::/64"},
		[]string{"-6", "route", "add", "unreachable", "fd00:51::/64"},
		[]string{"route", "add", "198.18.60.0/24", "via", "198.18.70.2"},
		[]string{"-6", "route", "add", "fd00:60::/64", "via", "fd00:70::2"},
		[]string{"route", "add", "198.18.80.0/24", "via", "198.18.10.3"},
		[]string{"-6", "route", "add", "fd00:80::/64", "via", "fd00:10::3"},
	)
	for _, c := range cmds {
		if err := ipCmd(tn.ns, c...); err != nil {
			t.Fatal(err)
		}
	}
	for _, kv := range [][2]string{
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv6.conf.all.forwarding", "1"},
	} {
		if err := sysctl(tn.ns, kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}

	d, err := Load(Options{FlowEntries: testFlowEntries})
	if err != nil {
		t.Fatalf("load datapath: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	tn.d = d

	// Ifindexes and the devmap resolve in the netns of the calling thread.
	err = nsutil.Do(tn.ns, func() error {
		for _, x := range []struct {
			name string
			idx  *int
		}{{"in0", &tn.in0}, {"out0", &tn.out0}, {"un0", &tn.un0}} {
			ifi, err := net.InterfaceByName(x.name)
			if err != nil {
				return fmt.Errorf("look up %s: %w", x.name, err)
			}
			*x.idx = ifi.Index
		}
		if err := d.SetIface(Iface{Index: tn.in0, MAC: macIn0, MTU: 1500, Mode: ModeRoute}); err != nil {
			return err
		}
		if err := d.SetIface(Iface{Index: tn.out0, MAC: macOut0, MTU: out0MTU, Mode: ModeRoute}); err != nil {
			return err
		}
		// As the daemon does: mirror route MTU metrics, which
		// bpf_fib_lookup ignores unless locked.
		mtus, err := netwatch.RouteMTUs()
		if err != nil {
			return err
		}
		if err := d.SetRouteMTUs(mtus); err != nil {
			return err
		}
		// And its own addresses: local and no_route tell apart by them.
		local, err := netwatch.LocalAddrs()
		if err != nil {
			return err
		}
		if err := d.SetLocalAddrs(local); err != nil {
			return err
		}
		return d.SetXDPTarget(tn.out0, true)
	})
	if err != nil {
		t.Fatalf("configure datapath: %v", err)
	}
	return tn
}

// do runs fn inside the router namespace.
func (tn *testNet) do(fn func() error) error { return nsutil.Do(tn.ns, fn) }

// must runs fn inside the router namespace and fails the test on error.
func (tn *testNet) must(t testing.TB, fn func() error) {
	t.Helper()
	if err := tn.do(fn); err != nil {
		t.Fatal(err)
	}
}
