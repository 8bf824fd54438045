package datapath

import (
	"os"
	"strings"
	"testing"

	"github.com/fastpath-router/fastpath/internal/testio"
)

// TestRemoveAllWithoutBPFFS: run where no BPF filesystem is mounted (a
// command of ip netns exec, which mounts its own /sys), RemoveAll fails,
// naming nsenter, instead of reporting nothing to detach while a kept
// datapath may run unseen. The test binary runs itself that way.
func TestRemoveAllWithoutBPFFS(t *testing.T) {
	if os.Getenv("FP_REMOVEALL_CHILD") != "" {
		if IsBPFFS(DefaultPinRoot) {
			t.Skip("a BPF filesystem is mounted here after all")
		}
		removed, err := RemoveAll()
		if err == nil || len(removed) != 0 || !strings.Contains(err.Error(), "nsenter --net=") {
			t.Fatalf("RemoveAll without a BPF filesystem = %v, %v; want an error naming nsenter", removed, err)
		}
		return
	}
	name := testio.Netns(t, "fp-rmall-")
	cmd := testio.SelfIn(t, name, "FP_REMOVEALL_CHILD=1", "-test.v")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the test run by ip netns exec: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "SKIP") {
		t.Skipf("ip netns exec left a BPF filesystem in sight:\n%s", out)
	}
}
