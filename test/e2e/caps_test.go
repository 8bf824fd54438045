package e2e

import (
	"bufio"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/labd"
	"github.com/fastpath-router/fastpath/internal/nsutil"
	"github.com/fastpath-router/fastpath/internal/traffic"
)

// unitPath is the shipped systemd unit, whose capability set this test
// proves.
const unitPath = "../../packaging/fastpath.service"

// capNumbers maps the capability names the unit may use to their numbers.
var capNumbers = map[string]uint{
	"CAP_BPF": unix.CAP_BPF, "CAP_NET_ADMIN": unix.CAP_NET_ADMIN, "CAP_PERFMON": unix.CAP_PERFMON,
	"CAP_SYS_ADMIN": unix.CAP_SYS_ADMIN, "CAP_SYS_RESOURCE": unix.CAP_SYS_RESOURCE, "CAP_NET_RAW": unix.CAP_NET_RAW,
}

// TestMinimalCapabilities: run as systemd runs it for the unit, as root
// with only the unit's CapabilityBoundingSet, the daemon attaches natively
// in offload mode, forwards, pins its datapath, and the next daemon adopts
// it; fastpath detach, with the same set, removes it. Without any one of
// the set, the daemon cannot serve: the set is the smallest.
func TestMinimalCapabilities(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	caps := unitCaps(t)
	ctx := testContext(t)
	l := newLab(t, "xdp")
	if err := l.Masquerade(ctx); err != nil {
		t.Fatal(err)
	}
	bin := requireBinary(t)
	cfg, socket := daemonConfig(t, offloadIfaces(l, "xdp")...)
	// With full capabilities, whatever happened: nothing stays attached.
	t.Cleanup(func() { detachAndCheck(t, bin, l.Rtr, l.RtrIn, l.RtrOut) })

	reduced := capsWrapper(t, bin, caps)
	d := startKept(t, l.Rtr, reduced, cfg, socket)
	checkCapEff(t, d.p.PID(), caps)
	st := d.status(t)
	for _, i := range st.Interfaces {
		if i.AttachedAs != "xdp" {
			t.Errorf("%s attached as %q, want xdp", i.Name, i.AttachedAs)
		}
	}
	stream := func() {
		t.Helper()
		before := d.counters(t, l.Rtr).forwarded()
		if _, err := traffic.UDPStream(ctx, l.Gen, l.Sink, netip.AddrPortFrom(l.SinkAddr4, 0), 400, 256, time.Millisecond); err != nil {
			t.Fatalf("udp stream: %v", err)
		}
		pollUntil(t, 5*time.Second, "offloaded forwarding", func() error {
			if f := d.counters(t, l.Rtr).forwarded(); f < before+100 {
				return fmt.Errorf("fastpath forwarded %d -> %d packets", before, f)
			}
			return nil
		})
	}
	stream()

	stopKept(t, d)
	d = startKept(t, l.Rtr, reduced, cfg, socket)
	if out := d.p.Output(); !strings.Contains(out, "adopting the datapath") {
		t.Errorf("the daemon with the unit's capabilities did not adopt the pins:\n%s", out)
	}
	stream()
	stopKept(t, d)
	out, err := exec.CommandContext(ctx, "nsenter", "--net="+nsutil.Path(l.Rtr), "--", reduced, "detach").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "removed link xdp-") {
		t.Errorf("fastpath detach with the unit's capabilities: %v\n%s", err, out)
	}

	// Each capability of the set is needed.
	for _, drop := range caps {
		less := slices.DeleteFunc(slices.Clone(caps), func(c string) bool { return c == drop })
		p, err := labd.Start(ctx, l.Rtr, capsWrapper(t, bin, less), cfg)
		if err != nil {
			t.Fatal(err)
		}
		c := api.NewClient(socket)
		st, err := p.WaitStatus(ctx, c, readyTimeout, func(*api.Status) (bool, string) { return true, "" })
		if err == nil {
			if ok, _ := labd.Attached(st); ok {
				t.Errorf("without %s the daemon attached every interface: %s is not needed", drop, drop)
			}
		}
		p.Stop(slog.New(slog.DiscardHandler))
		t.Logf("without %s: %s", drop, lastLine(p.Output()))
	}
}

// unitCaps is the unit's CapabilityBoundingSet.
func unitCaps(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var caps []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "CapabilityBoundingSet="); ok {
			caps = append(caps, strings.Fields(v)...)
		}
	}
	if len(caps) == 0 {
		t.Fatalf("%s has no CapabilityBoundingSet", unitPath)
	}
	for _, c := range caps {
		if _, ok := capNumbers[c]; !ok {
			t.Fatalf("%s: capability %s unknown to this test", unitPath, c)
		}
	}
	return caps
}

// capsWrapper writes a script that execs bin as root with only caps, as
// systemd does for User=root with CapabilityBoundingSet= (exec keeps the
// PID, so the daemon's PID is the script's).
func capsWrapper(t *testing.T, bin string, caps []string) string {
	t.Helper()
	set := "-all"
	for _, c := range caps {
		set += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	path := filepath.Join(t.TempDir(), "fastpath-caps")
	script := fmt.Sprintf("#!/bin/sh\nexec setpriv --bounding-set=%s --inh-caps=-all -- %s \"$@\"\n", set, bin)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkCapEff fails unless process pid has exactly caps in effect.
func checkCapEff(t *testing.T, pid int, caps []string) {
	t.Helper()
	var want uint64
	for _, c := range caps {
		want |= 1 << capNumbers[c]
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			got, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil || got != want {
				t.Errorf("daemon CapEff = %s, want %016x (%s)", strings.TrimSpace(v), want, caps)
			}
			return
		}
	}
	t.Errorf("no CapEff in /proc/%d/status", pid)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
