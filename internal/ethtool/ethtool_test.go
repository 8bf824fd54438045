package ethtool

import (
	"net"
	"os/exec"
	"testing"

	"github.com/fastpath-router/fastpath/internal/nsutil"
	"github.com/fastpath-router/fastpath/internal/testio"
)

// TestFeatures reads a veth's GRO and tx checksum offload as ethtool sets
// them, and fails clearly for a missing device.
func TestFeatures(t *testing.T) {
	ns := testio.Netns(t, "fpe-")
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	run("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	for _, f := range []struct {
		feature string
		read    func(string) (bool, error)
	}{{"gro", GRO}, {"tx", TxChecksum}} {
		for _, want := range []bool{true, false} {
			state := map[bool]string{true: "on", false: "off"}[want]
			run("ethtool", "-K", "v0", f.feature, state)
			var got bool
			if err := nsutil.Do(ns, func() (err error) { got, err = f.read("v0"); return err }); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s %s: read %v", f.feature, state, got)
			}
		}
	}
	if err := nsutil.Do(ns, func() error { _, err := GRO("nosuchdev"); return err }); err == nil {
		t.Error("no error for a missing device")
	}

	// The driver's statistics, as ethtool -S names them: a veth gives its
	// peer's ifindex and its XDP counters.
	var st map[string]uint64
	var peer int
	if err := nsutil.Do(ns, func() (err error) {
		if st, err = Stats("v0"); err != nil {
			return err
		}
		ifi, err := net.InterfaceByName("v1")
		if err != nil {
			return err
		}
		peer = ifi.Index
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if v, ok := st["peer_ifindex"]; !ok || v != uint64(peer) {
		t.Errorf("peer_ifindex %d (present %v), want %d; stats %v", v, ok, peer, st)
	}
	for _, k := range []string{"tx_queue_0_xdp_xmit", "rx_queue_0_xdp_tx"} {
		if _, ok := st[k]; !ok {
			t.Errorf("no %s in %v", k, st)
		}
	}
	if err := nsutil.Do(ns, func() error { _, err := Stats("nosuchdev"); return err }); err == nil {
		t.Error("no statistics error for a missing device")
	}
}
