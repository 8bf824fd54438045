package netwatch

import (
	"reflect"
	"testing"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// TestNFTDeviceHooks reads the chains bound to devices (netdev ingress and
// egress, inet ingress, a chain on two devices) and ignores the rest.
func TestNFTDeviceHooks(t *testing.T) {
	ns := emptyNS(t)
	ipCmds(t, ns, "link add v0 type veth peer name v1", "link add w0 type veth peer name w1")
	ruleset := `
table netdev nd {
	chain in0 { type filter hook ingress device "v0" priority 0; }
	chain out0 { type filter hook egress device "v0" priority 0; ip dscp set cs1; }
	chain both { type filter hook ingress devices = { "v1", "w0" } priority 10; }
}
table inet fw {
	chain inw { type filter hook ingress device "w1" priority 0; }
	chain forward { type filter hook forward priority 0; }
}
`
	inNS(t, ns, ruleset, "nft", "-f", "-")
	var got map[string]DeviceHooks
	if err := nsutil.Do(ns, func() (err error) {
		got, err = NFTDeviceHooks()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]DeviceHooks{
		"v0": {Ingress: []string{"netdev nd in0"}, Egress: []string{"netdev nd out0"}},
		"v1": {Ingress: []string{"netdev nd both"}},
		"w0": {Ingress: []string{"netdev nd both"}},
		"w1": {Ingress: []string{"inet fw inw"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

// TestNFTUnseenChains lists the chains outside fastpath's netfilter hooks:
// postrouting from the verdict hook's priority up, prerouting up to the
// arrival hook's; others, and other hooks and families, are not.
func TestNFTUnseenChains(t *testing.T) {
	ns := emptyNS(t)
	ruleset := `
table inet a {
	chain late { type filter hook postrouting priority 2147483647; }
	chain lastbut2 { type filter hook postrouting priority 2147483645; }
	chain normal { type filter hook postrouting priority 100; }
	chain early { type filter hook prerouting priority -2147483648; }
	chain raw { type filter hook prerouting priority -300; }
	chain forw { type filter hook forward priority 2147483647; }
}
table ip b {
	chain late4 { type nat hook postrouting priority 2147483646; }
}
table bridge c {
	chain latebr { type filter hook postrouting priority 2147483647; }
}
`
	inNS(t, ns, ruleset, "nft", "-f", "-")
	var got []string
	if err := nsutil.Do(ns, func() (err error) {
		got, err = NFTUnseenChains()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"inet a early prerouting priority -2147483648",
		"inet a lastbut2 postrouting priority 2147483645",
		"inet a late postrouting priority 2147483647",
		"ip b late4 postrouting priority 2147483646",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}
