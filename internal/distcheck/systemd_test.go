package distcheck

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The package under a real systemd: scripts/systemd-check.sh boots a
// minimal Debian with systemd as PID 1 (systemd-nspawn), installs the
// package there and operates the service (start, CLI, traffic, reload,
// watchdog, stop, detach, remove, purge). About 1.5 minutes with its root
// file system cached, one more the first time (debootstrap from the
// Debian mirror); so it runs only when asked, with
// FASTPATH_SYSTEMD_CHECK=1 (make systemd-check runs the script alone).
// Not merely when systemd-nspawn and debootstrap happen to be installed:
// whether a test runs must not depend on what was left on a machine.
func TestSystemdCheck(t *testing.T) {
	if os.Getenv("FASTPATH_SYSTEMD_CHECK") != "1" {
		t.Skip("set FASTPATH_SYSTEMD_CHECK=1 to boot the package under systemd (scripts/systemd-check.sh, about 2 minutes)")
	}
	if os.Geteuid() != 0 {
		t.Skip("boots a container and creates network namespaces: needs root")
	}
	for _, tool := range []string{"systemd-nspawn", "debootstrap", "bpftool", "iperf3", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: scripts/deps.sh systemd-check installs it", tool)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	bin := buildBinary(ctx, t)
	deb := strings.TrimSpace(run(ctx, t, "", nil, "../../scripts/package.sh", "deb", bin, filepath.Join(t.TempDir(), "dist")))

	cmd := exec.CommandContext(ctx, "../../scripts/systemd-check.sh", deb)
	// On a timeout, SIGTERM lets the script remove the container and
	// the namespaces; SIGKILL only if that takes more than a minute.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	out, err := cmd.CombinedOutput()
	t.Logf("scripts/systemd-check.sh %s:\n%s", deb, out)
	if err != nil {
		t.Fatalf("systemd-check: %v", err)
	}
	if !strings.Contains(string(out), "] PASS: systemd ") {
		t.Fatal("systemd-check exited 0 without its PASS line")
	}
}
