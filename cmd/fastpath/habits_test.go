package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/lab"
	"github.com/fastpath-router/fastpath/internal/testio"
)

// `fastpath stats r1` as `ip -s link show r1`.
func TestStatsPositionalInterface(t *testing.T) {
	sock := serve(t, &fakeBackend{stats: &api.Stats{Interfaces: []api.InterfaceStats{
		{Name: "r0", Ifindex: 2, Forwarded: api.Counter{Packets: 5, Bytes: 500}},
		{Name: "r1", Ifindex: 3, Forwarded: api.Counter{Packets: 1, Bytes: 100}},
	}}})
	code, out, errOut := run(t, "stats", "--socket", sock, "r1")
	if code != 0 || !strings.HasPrefix(out, "r1 (ifindex 3)\n") || strings.Contains(out, "r0") || errOut != "" {
		t.Errorf("stats r1: code %d, stderr %q\n%s", code, errOut, out)
	}
	code, out, _ = run(t, "stats", "--socket", sock, "-j", "r1", "r0")
	var st api.Stats
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 || len(st.Interfaces) != 2 ||
		st.Interfaces[0].Name != "r1" || st.Interfaces[1].Name != "r0" {
		t.Errorf("stats -j r1 r0: code %d, %v\n%s", code, err, out)
	}
	code, out, errOut = run(t, "stats", "--socket", sock, "r9")
	if code != 1 || out != "" || errOut != "fastpath: interface \"r9\" is not served by the datapath (it serves r0, r1)\n" {
		t.Errorf("stats r9: code %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// Filters as conntrack -L: both directions of the connections whose
// original direction matches.
func TestFlowsFilters(t *testing.T) {
	sock := serve(t, &fakeBackend{flows: testFlows()})
	for _, tt := range []struct {
		args []string
		want []string // "proto direction" of the flows listed
	}{
		{[]string{"-p", "udp"}, []string{"udp original"}},
		{[]string{"--proto", "TCP"}, []string{"tcp reply", "tcp original"}},
		{[]string{"--dport", "443"}, []string{"tcp reply", "tcp original"}},
		{[]string{"--dport", "53"}, []string{"udp original"}},
		{[]string{"--sport", "40000", "-p", "tcp"}, []string{"tcp reply", "tcp original"}},
		{[]string{"--sport", "443"}, nil},
		{[]string{"-s", "10.0.0.2"}, []string{"tcp reply", "tcp original"}},
		{[]string{"-s", "10.0.0.0/8", "-d", "198.18.2.1"}, []string{"tcp reply", "tcp original"}},
		{[]string{"-d", "fd00:2::/32"}, []string{"udp original"}},
		{[]string{"-s", "198.18.2.1"}, nil}, // the server is the reply's source only
		{[]string{"-p", "udp", "-d", "198.18.2.1"}, nil},
		{[]string{"-p", "tcp", "--limit", "1"}, []string{"tcp reply"}},
	} {
		code, out, errOut := run(t, append([]string{"flows", "--socket", sock, "-j"}, tt.args...)...)
		var fl api.Flows
		if err := json.Unmarshal([]byte(out), &fl); err != nil || code != 0 || errOut != "" {
			t.Errorf("flows %q: code %d, %v, stderr %q", tt.args, code, err, errOut)
			continue
		}
		var got []string
		for _, f := range fl.Flows {
			got = append(got, f.Proto+" "+f.Direction)
		}
		wantTotal := len(tt.want)
		if tt.args[len(tt.args)-2] == "--limit" {
			wantTotal = 2
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) || fl.Total != wantTotal {
			t.Errorf("flows %q = %v (total %d), want %v (total %d)", tt.args, got, fl.Total, tt.want, wantTotal)
		}
	}
	// The table says how many match.
	code, out, _ := run(t, "flows", "--socket", sock, "-p", "udp")
	if code != 0 || !strings.HasSuffix(out, "\n1 flow (capacity 65536)\n") || strings.Contains(out, "tcp") {
		t.Errorf("flows -p udp: code %d\n%s", code, out)
	}
}

// Addresses and ports as fields of their own, null for no NAT.
func TestFlowsJSONFields(t *testing.T) {
	sock := serve(t, &fakeBackend{flows: testFlows()})
	code, out, _ := run(t, "flows", "--socket", sock, "-j", "-p", "udp")
	var raw struct {
		Flows []map[string]any `json:"flows"`
	}
	if err := json.Unmarshal([]byte(out), &raw); err != nil || code != 0 || len(raw.Flows) != 1 {
		t.Fatalf("flows -j -p udp: code %d, %v\n%s", code, err, out)
	}
	f := raw.Flows[0]
	if nat, ok := f["nat"]; !ok || nat != nil {
		t.Errorf("nat = %#v (present %v), want null", nat, ok)
	}
	in := f["in"].(map[string]any)
	if in["src"] != "fd00::2" || in["sport"] != 5353.0 || in["dst"] != "fd00:2::1" || in["dport"] != 53.0 {
		t.Errorf("in = %v, want separate address and port fields", in)
	}
	// --pretty on flows (its -p is the protocol).
	code, out, _ = run(t, "flows", "--socket", sock, "--pretty")
	if code != 0 || !strings.Contains(out, "\n  \"capacity\": 65536,\n") {
		t.Errorf("flows --pretty: code %d\n%s", code, out)
	}
}

// FASTPATH_SOCKET names the daemon when no flag does; --socket wins.
func TestSocketFromEnvironment(t *testing.T) {
	sock := serve(t, &fakeBackend{status: ptr(newTestStatus())})
	t.Setenv(api.SocketEnv, sock)
	code, out, errOut := run(t, "status")
	if code != 0 || !strings.HasPrefix(out, "fastpath 1.0, pid 77") {
		t.Errorf("status with %s: code %d, stderr %q\n%s", api.SocketEnv, code, errOut, out)
	}
	other := filepath.Join(t.TempDir(), "other.sock")
	code, _, errOut = run(t, "status", "--socket", other)
	if code != 1 || !strings.Contains(errOut, "cannot reach fastpath daemon at "+other) {
		t.Errorf("--socket over %s: code %d, stderr %q", api.SocketEnv, code, errOut)
	}
}

// -n NAME reaches the daemon of network namespace NAME at its socket path;
// no setns is involved, so the daemon is served here from the test's own
// namespace, at the path -n resolves to.
func TestNetnsFlag(t *testing.T) {
	name := testio.Netns(t, "fp14-")
	path := api.NetnsSocket(name)
	if path != "/run/fastpath/netns/"+name+".sock" {
		t.Fatalf("NetnsSocket(%q) = %s", name, path)
	}
	code, _, errOut := run(t, "status", "-n", name)
	if code != 1 || !strings.Contains(errOut, "the daemon of network namespace "+name+" must have api.socket: "+path) {
		t.Errorf("status -n %s without a daemon: code %d, stderr %q", name, code, errOut)
	}
	srv := api.NewServer(&fakeBackend{status: ptr(newTestStatus())}, nil)
	l, err := srv.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListener(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	code, out, errOut := run(t, "status", "-n", name)
	if code != 0 || !strings.HasPrefix(out, "fastpath 1.0, pid 77") {
		t.Errorf("status -n %s: code %d, stderr %q\n%s", name, code, errOut, out)
	}
}

func TestLabDownMissing(t *testing.T) {
	code, out, errOut := run(t, "lab", "down", "--name", "fpnone")
	if code != 1 || out != "" || errOut != "fastpath: lab fpnone does not exist (no namespace of it is there), nothing removed\n" {
		t.Errorf("lab down --name fpnone: code %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// lab up --nat leaves the router masquerading towards the sink (conntrack
// on, so offload mode has flows to offload); without it, no ruleset.
func TestLabUpNat(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft (the nftables package)")
	}
	name := fmt.Sprintf("fn%d", os.Getpid()%100000)
	t.Cleanup(func() { lab.Down(name) })
	code, out, errOut := run(t, "lab", "up", "--nat", "--name", name)
	if code != 0 || !strings.Contains(out, "masquerades what leaves r1") {
		t.Fatalf("lab up --nat: code %d, stderr %q\n%s", code, errOut, out)
	}
	ruleset, err := exec.Command("ip", "netns", "exec", "fp-"+name+"-rtr", "nft", "list", "ruleset").CombinedOutput()
	if err != nil || !strings.Contains(string(ruleset), `oifname "r1" masquerade`) {
		t.Errorf("the router's ruleset after lab up --nat: %v\n%s", err, ruleset)
	}
	if code, _, errOut := run(t, "lab", "down", "--name", name); code != 0 {
		t.Fatalf("lab down: code %d, %s", code, errOut)
	}
	code, out, _ = run(t, "lab", "up", "--name", name)
	if code != 0 || !strings.Contains(out, "has no ruleset: conntrack is off there") {
		t.Errorf("lab up: code %d\n%s", code, out)
	}
}

func TestVersionFlag(t *testing.T) {
	code, out, errOut := run(t, "--version")
	if code != 0 || out != "fastpath "+currentVersion().Version+"\n" || errOut != "" {
		t.Errorf("--version: code %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestBuildVersion(t *testing.T) {
	vcs := func(rev, modified string) *debug.BuildInfo {
		bi := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}
		if rev != "" {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.revision", Value: rev},
				debug.BuildSetting{Key: "vcs.modified", Value: modified})
		}
		return bi
	}
	const rev = "6efabc9d0123456789abcdef0123456789abcdef"
	for _, tt := range []struct {
		ldflags string
		bi      *debug.BuildInfo
		want    string
	}{
		{"v1.2.3", vcs(rev, "true"), "v1.2.3"},
		{"dev", vcs(rev, "false"), "dev-6efabc9d0123"},
		{"dev", vcs(rev, "true"), "dev-6efabc9d0123-dirty"},
		{"dev", vcs("", ""), "dev"},
		{"dev", &debug.BuildInfo{Main: debug.Module{Version: "v0.3.0"}}, "v0.3.0"},
	} {
		if got := buildVersion(tt.ldflags, tt.bi, true); got != tt.want {
			t.Errorf("buildVersion(%q, %+v) = %q, want %q", tt.ldflags, tt.bi.Settings, got, tt.want)
		}
	}
	if got := buildVersion("dev", nil, false); got != "dev" {
		t.Errorf("without build info: %q", got)
	}
}

func ptr[T any](v T) *T { return &v }

// Shell completion offers the daemon's interfaces to stats, and the
// protocols to flows -p.
func TestCompletion(t *testing.T) {
	sock := serve(t, &fakeBackend{stats: &api.Stats{Interfaces: []api.InterfaceStats{{Name: "r0"}, {Name: "r1"}}}})
	code, out, _ := run(t, "__complete", "stats", "--socket", sock, "r0", "")
	if code != 0 || !strings.HasPrefix(out, "r1\n:4\n") {
		t.Errorf("complete stats r0: code %d, %q", code, out)
	}
	code, out, _ = run(t, "__complete", "flows", "-p", "")
	if code != 0 || !strings.HasPrefix(out, "tcp\nudp\n:4\n") {
		t.Errorf("complete flows -p: code %d, %q", code, out)
	}
}
