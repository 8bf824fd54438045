package netwatch

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/fastpath-router/fastpath/internal/testio"
)

// emptyNS creates a network namespace for one test, removed at cleanup; the
// test is skipped without root.
func emptyNS(t *testing.T) string {
	t.Helper()
	return testio.Netns(t, "fpn-")
}

// ipCmds runs ip commands (their arguments space-separated) in ns.
func ipCmds(t *testing.T, ns string, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		args := append([]string{"-n", ns}, strings.Fields(c)...)
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", c, err, out)
		}
	}
}

// inNS runs a command in ns.
func inNS(t *testing.T, ns string, stdin string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}
