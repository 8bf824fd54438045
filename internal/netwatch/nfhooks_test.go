package netwatch

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// TestNFTDeviceHooks reads the chains bound to devices (netdev ingress and
// egress, inet ingress, a chain on two devices) and ignores the rest.
func TestNFTDeviceHooks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (creates a network namespace)")
	}
	ns := fmt.Sprintf("fpn-%06x", rand.IntN(1<<24))
	if err := nsutil.Create(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsutil.Delete(ns) })
	for _, args := range [][]string{
		{"link", "add", "v0", "type", "veth", "peer", "name", "v1"},
		{"link", "add", "w0", "type", "veth", "peer", "name", "w1"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
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
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
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
