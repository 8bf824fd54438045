package distcheck

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
)

const unitPath = "../../packaging/fastpath.service"

// binary is where the package installs fastpath; make install with another
// PREFIX rewrites the unit's paths (scripts/package.sh).
const binary = "/usr/bin/fastpath"

// MinimalCaps is the capability set the unit gives the daemon; the e2e
// test TestMinimalCapabilities runs the daemon with exactly the unit's set.
var minimalCaps = []string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"}

// unit is a systemd unit file: section -> key -> values in file order
// (a key may be given several times, e.g. ExecReload).
type unit map[string]map[string][]string

// parseUnit reads the subset of the unit file syntax the file uses:
// [Section] headers, Key=Value lines, # and ; comments, blank lines. Line
// continuations are refused rather than misread.
func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasSuffix(line, "\\"):
			t.Fatalf("%s:%d: line continuations are not supported by this check", path, n)
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if _, dup := u[section]; dup {
				t.Fatalf("%s:%d: section [%s] twice", path, n, section)
			}
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: expected Key=Value inside a section, got %q", path, n, line)
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			u[section][k] = append(u[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// one returns the single value of section.key, failing if it is missing or
// given more than once.
func (u unit) one(t *testing.T, section, key string) string {
	t.Helper()
	vs := u[section][key]
	if len(vs) != 1 {
		t.Errorf("[%s] %s: want exactly one value, got %q", section, key, vs)
		return ""
	}
	return vs[0]
}

// words splits every value of section.key into space-separated words.
func (u unit) words(section, key string) []string {
	var out []string
	for _, v := range u[section][key] {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

func TestUnitKeyLines(t *testing.T) {
	u := parseUnit(t, unitPath)
	for _, s := range []string{"Unit", "Service", "Install"} {
		if u[s] == nil {
			t.Fatalf("no [%s] section", s)
		}
	}
	for _, tt := range []struct{ key, want string }{
		// READY=1 is sent by the daemon (internal/daemon notifyReady).
		{"Type", "notify"},
		// The daemon feeds the watchdog (internal/daemon sdWatchdog) every
		// WatchdogSec/2, from a loop that ticks every second.
		{"WatchdogSec", "30"},
		{"ProtectProc", "invisible"},
		// The config path in one place, which a drop-in can change.
		{"Environment", "FASTPATH_CONFIG=/etc/fastpath/fastpath.yaml"},
		{"ExecStart", binary + " run -c ${FASTPATH_CONFIG} --keep-datapath"},
		{"Restart", "on-failure"},
		{"RestartSec", "1"},
		{"LimitMEMLOCK", "infinity"},
		// Exit status 2 is an invalid config (cmd/fastpath): retrying is useless.
		{"RestartPreventExitStatus", "2"},
	} {
		if got := u.one(t, "Service", tt.key); got != tt.want {
			t.Errorf("[Service] %s=%s, want %s", tt.key, got, tt.want)
		}
	}
	reload := u["Service"]["ExecReload"]
	if len(reload) == 0 || reload[len(reload)-1] != "/bin/kill -HUP $MAINPID" {
		t.Errorf("[Service] ExecReload=%q, want it to end with /bin/kill -HUP $MAINPID", reload)
	}
	for _, r := range reload[:max(len(reload)-1, 0)] {
		if r != binary+" check-config ${FASTPATH_CONFIG}" {
			t.Errorf("[Service] ExecReload=%s: only check-config of ${FASTPATH_CONFIG} may run before the SIGHUP", r)
		}
	}
	// No other mention of a config file: it would go stale under a drop-in.
	for _, k := range []string{"ExecStart", "ExecReload", "ExecStartPre", "ExecStartPost"} {
		for _, v := range u["Service"][k] {
			if strings.Contains(v, ".yaml") {
				t.Errorf("[Service] %s=%s names a config file; use ${FASTPATH_CONFIG}", k, v)
			}
		}
	}
	if got := u.one(t, "Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("[Install] WantedBy=%s, want multi-user.target", got)
	}
}

// The hardening must leave the daemon what it needs.
func TestUnitHardeningAllowsDaemon(t *testing.T) {
	u := parseUnit(t, unitPath)
	s := u["Service"]

	if user := s["User"]; len(user) > 0 && user[len(user)-1] != "root" {
		t.Errorf("User=%s: the daemon runs as root", user[len(user)-1])
	}
	caps := u.words("Service", "CapabilityBoundingSet")
	slices.Sort(caps)
	if !slices.Equal(caps, minimalCaps) {
		t.Errorf("CapabilityBoundingSet=%s, want %s (the set test/e2e/caps_test.go proves)", caps, minimalCaps)
	}
	// It must see the host's links, routes, conntrack and nftables, and
	// BPF needs real capabilities (not those of a user namespace).
	// Pins must be created in the host's bpf filesystem:
	// ProtectKernelTunables= mounts /sys/fs/bpf read-only (systemd's
	// namespace.c lists it explicitly, and read-only wins over
	// ReadWritePaths= for the same path); PrivateBPF=yes gives the service
	// a bpffs of its own, whose pins die with it.
	for _, k := range []string{"PrivateNetwork", "PrivateUsers", "IPAddressDeny", "DynamicUser",
		"ProtectKernelTunables", "PrivateBPF"} {
		if v := s[k]; len(v) > 0 && v[len(v)-1] != "no" {
			t.Errorf("%s=%s would break the daemon", k, v[len(v)-1])
		}
	}
	// Pins under /sys/fs/bpf; the API socket's directory.
	if !slices.Contains(u.words("Service", "ReadWritePaths"), "/sys/fs/bpf") {
		t.Errorf("ReadWritePaths lacks /sys/fs/bpf (pins), needed under ProtectSystem=strict")
	}
	sockDir := filepath.Dir(api.DefaultSocket)
	runtimeDirs := u.words("Service", "RuntimeDirectory")
	if !slices.Contains(runtimeDirs, strings.TrimPrefix(sockDir, "/run/")) &&
		!slices.Contains(u.words("Service", "ReadWritePaths"), sockDir) {
		t.Errorf("the default API socket's directory %s is not writable (RuntimeDirectory=%q)", sockDir, runtimeDirs)
	}
	// A runtime directory is removed at stop unless preserved; the socket
	// directory of a running restart must not vanish under the next daemon.
	if len(runtimeDirs) > 0 && u.one(t, "Service", "RuntimeDirectoryPreserve") == "no" {
		t.Errorf("RuntimeDirectoryPreserve=no removes %s at every stop", sockDir)
	}
	if fams := u.words("Service", "RestrictAddressFamilies"); len(fams) > 0 {
		if strings.HasPrefix(fams[0], "~") {
			t.Errorf("RestrictAddressFamilies deny lists are not checked here; use an allow list")
		}
		for _, f := range []string{"AF_UNIX", "AF_NETLINK", "AF_INET", "AF_INET6"} {
			if !slices.Contains(fams, f) {
				t.Errorf("RestrictAddressFamilies lacks %s", f)
			}
		}
	}
	// bpf() is in @privileged, perf_event_open in @debug, mount (bpffs when
	// missing) in @mount, setrlimit in @resources.
	for _, f := range s["SystemCallFilter"] {
		if !strings.HasPrefix(f, "~") {
			t.Errorf("SystemCallFilter=%s: allow lists are not checked here; use a deny list (~...)", f)
			continue
		}
		for _, denied := range strings.Fields(strings.TrimPrefix(f, "~")) {
			if slices.Contains([]string{"@privileged", "@debug", "@mount", "@resources", "@system-service",
				"@network-io", "@file-system", "@basic-io", "@io-event", "@process", "@signal",
				"bpf", "perf_event_open", "mount", "setrlimit", "prlimit64"}, denied) {
				t.Errorf("SystemCallFilter denies %s, which the daemon needs", denied)
			}
		}
	}
}

// systemd-analyze verify checks the syntax and every key against the
// installed systemd, when there is one.
func TestUnitVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed; skipping the systemd check of the unit")
	}
	data, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	// verify insists that ExecStart's binary exists: stand in an
	// executable for the installed one.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "fastpath.service")
	text := strings.ReplaceAll(string(data), binary, self)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, analyze, "verify", "--man=no", path)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_PAGER=")
	out, err := cmd.CombinedOutput()
	// Warnings (unknown keys, bad values) do not change the exit status:
	// anything said about this file is a failure.
	var problems []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, path) {
			problems = append(problems, line)
		}
	}
	if err != nil || len(problems) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitPath, err, out)
	}
}
