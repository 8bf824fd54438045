package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
)

// run runs the CLI in-process and returns exit code, stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := execute(t.Context(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const goodConfig = "version: 1\ninterfaces:\n  - {name: r0}\n  - {name: r1, mode: route, attach: tc}\nflows: {idle_timeout: 1m}\n"

const badConfig = "version: 1\ninterfaces:\n  - name: r0\n    mode: offlaod\n    atach: xdp\n"

func TestCheckConfig(t *testing.T) {
	good := writeFile(t, "good.yaml", goodConfig)
	bad := writeFile(t, "bad.yaml", badConfig)

	code, out, errOut := run(t, "check-config", good)
	if code != 0 || out != good+": ok (2 interfaces)\n" || errOut != "" {
		t.Errorf("good: code %d, stdout %q, stderr %q", code, out, errOut)
	}

	code, out, errOut = run(t, "check-config", bad)
	wantErr := "fastpath: " + bad + `:4: interfaces[0].mode (r0): unknown mode "offlaod"; allowed: ` +
		`"offload" (default: the firewall, conntrack and NAT decide, fastpath carries established flows), ` +
		`"route" (stateless forwarding that skips the firewall: trusted segments only), ` +
		`"off" (the kernel handles everything)` + "\n" +
		"fastpath: " + bad + `:5: interfaces[0].atach: unknown field (did you mean "attach"?); allowed here: attach, mode, name` + "\n"
	if code != 2 || out != "" || errOut != wantErr {
		t.Errorf("bad: code %d, stdout %q\nstderr %q\nwant   %q", code, out, errOut, wantErr)
	}

	code, _, errOut = run(t, "check-config", filepath.Join(t.TempDir(), "missing.yaml"))
	if code != 2 || !strings.Contains(errOut, "no such file or directory") {
		t.Errorf("missing file: code %d, stderr %q", code, errOut)
	}

	// The dashboard's token file, as the daemon would refuse it.
	tok := writeFile(t, "token", "0123456789abcdef0123\n")
	if err := os.Chmod(tok, 0o644); err != nil {
		t.Fatal(err)
	}
	dash := writeFile(t, "dash.yaml", goodConfig+"dashboard:\n  listen: 127.0.0.1:9470\n  write: true\n  token_file: "+tok+"\n")
	code, _, errOut = run(t, "check-config", dash)
	if code != 2 || !strings.Contains(errOut, "lets other users read it") {
		t.Errorf("token file 0644: code %d, stderr %q", code, errOut)
	}
	if err := os.Chmod(tok, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut = run(t, "check-config", dash); code != 0 {
		t.Errorf("token file 0600: code %d, stderr %q", code, errOut)
	}
}

func TestCheckConfigJSON(t *testing.T) {
	good := writeFile(t, "good.yaml", goodConfig)
	bad := writeFile(t, "bad.yaml", badConfig)
	for _, tt := range []struct {
		file   string
		code   int
		ok     bool
		errors int
	}{
		{good, 0, true, 0},
		{bad, 2, false, 2},
	} {
		code, out, errOut := run(t, "check-config", "--json", tt.file)
		var res checkResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%s: bad JSON %q: %v", tt.file, out, err)
		}
		if code != tt.code || res.File != tt.file || res.OK != tt.ok || len(res.Errors) != tt.errors || errOut != "" {
			t.Errorf("%s: code %d, result %+v, stderr %q", tt.file, code, res, errOut)
		}
		if !strings.Contains(out, `"errors":[`) {
			t.Errorf("%s: errors must be a list, even empty: %s", tt.file, out)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string // first line of stderr
	}{
		{[]string{"stauts"}, `fastpath: unknown command "stauts" for "fastpath"; did you mean status or stats?`},
		{[]string{"status", "--bogus"}, "fastpath: unknown flag: --bogus"},
		{[]string{"status", "extra"}, `fastpath: unexpected argument "extra"`},
		{[]string{"flows", "--limit", "-1"}, "fastpath: invalid --limit -1: use 0 for all, or a positive number"},
		{[]string{"check-config"}, "fastpath: missing FILE"},
		{[]string{"check-config", "a", "b"}, `fastpath: unexpected argument "b" after FILE`},
		{[]string{"run"}, "fastpath: missing --config FILE"},
		{[]string{"lab", "dwn"}, `fastpath: unknown command "dwn" for "fastpath lab"; did you mean down?`},
		{[]string{"lab", "up", "--name", "Bad Name"}, `fastpath: invalid lab name "Bad Name": only a-z, 0-9 and '-' are allowed`},
		{[]string{"run", "--log-level", "loud", "-c", "x.yaml"}, `fastpath: invalid --log-level "loud": use debug, info, warn or error`},
		{[]string{"detach", "--log-format", "xml"}, `fastpath: invalid --log-format "xml": use text or json`},
		// Logging flags belong to the commands that log, not to clients.
		{[]string{"status", "--log-level", "debug"}, `fastpath: unknown flag: --log-level`},
		{[]string{"status", "--socket", ""}, `fastpath: empty --socket: give the daemon's API socket (its config's api.socket), or leave it out for /run/fastpath/fastpath.sock`},
		{[]string{"stats", "--socket", "/x.sock", "-n", "rtr"}, `fastpath: --socket and --netns both name a daemon; give one of them`},
		{[]string{"flows", "-n", "fp-no-such-netns"}, `fastpath: network namespace "fp-no-such-netns" does not exist (no /run/netns/fp-no-such-netns; see ip netns list)`},
		{[]string{"flows", "-p", "icmp"}, `fastpath: invalid --proto "icmp": fastpath forwards tcp and udp flows only`},
		{[]string{"flows", "--dport", "70000"}, `fastpath: invalid --dport "70000": give a port number, 1 to 65535`},
		{[]string{"flows", "-s", "198.18.0.0/33"}, `fastpath: invalid --src "198.18.0.0/33": give an address or a prefix, such as 198.18.1.2 or fd00::/64`},
		{[]string{"events", "--kind", "flow_add"}, `fastpath: unknown event kind "flow_add": use flow_added, flow_removed, attach, detach, watchdog, reload, dropped, guard_drop`},
		{[]string{"top", "--interval", "50ms"}, "fastpath: invalid --interval 50ms: the minimum is 100ms"},
		{[]string{"top", "--count", "-1"}, "fastpath: invalid --count -1: use 0 to run until stopped, or a positive number"},
		{[]string{"top", "--once", "--count", "3"}, "fastpath: --once shows one frame; it cannot be combined with --count"},
		{[]string{"reload", "now"}, `fastpath: unexpected argument "now"`},
	}
	for _, tt := range tests {
		code, _, errOut := run(t, tt.args...)
		first, _, _ := strings.Cut(errOut, "\n")
		if code != 2 || first != tt.want {
			t.Errorf("%q: code %d, stderr %q; want 2, %q", tt.args, code, errOut, tt.want)
		}
	}
}

func TestRunBadConfig(t *testing.T) {
	bad := writeFile(t, "bad.yaml", badConfig)
	code, _, errOut := run(t, "run", "-c", bad)
	if code != 2 || !strings.Contains(errOut, `unknown mode "offlaod"`) {
		t.Errorf("code %d, stderr %q", code, errOut)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{nil, {"--help"}, {"help", "status"}, {"lab"}, {"run", "--help"}, {"flows", "--help"},
		{"events", "--help"}, {"top", "--help"}, {"reload", "--help"}, {"detach", "--help"}} {
		code, out, errOut := run(t, args...)
		if code != 0 || !strings.Contains(out, "Usage:") || errOut != "" {
			t.Errorf("%q: code %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, "version")
	if code != 0 || !strings.HasPrefix(out, "fastpath "+version+"\n") {
		t.Errorf("version: code %d, %q", code, out)
	}
	code, out, _ = run(t, "version", "--json")
	var v versionInfo
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 0 || v.Version != version || v.Go == "" {
		t.Errorf("version --json: code %d, %q, %v", code, out, err)
	}
}

type fakeBackend struct {
	status *api.Status
	stats  *api.Stats
	flows  *api.Flows
	// statsFn and flowsFn, if set, answer instead of stats and flows.
	statsFn func() *api.Stats
	flowsFn func() (*api.Flows, error)
	// events is the channel Events hands out; each subscription's ctx is
	// then sent to subscribed, if set.
	events     chan api.Event
	subscribed chan context.Context
	reload     func(context.Context) (*api.ReloadResult, error)
}

func (f *fakeBackend) Status(context.Context) (*api.Status, error) { return f.status, nil }

func (f *fakeBackend) Stats(context.Context) (*api.Stats, error) {
	if f.statsFn != nil {
		return f.statsFn(), nil
	}
	return f.stats, nil
}

func (f *fakeBackend) Flows(_ context.Context, q api.FlowQuery) (*api.Flows, error) {
	all := f.flows
	if f.flowsFn != nil {
		var err error
		if all, err = f.flowsFn(); err != nil {
			return nil, err
		}
	}
	if all == nil {
		return nil, nil
	}
	return q.Apply(all), nil
}

func (f *fakeBackend) Events(ctx context.Context) (<-chan api.Event, error) {
	ch := f.events
	if f.subscribed != nil {
		f.subscribed <- ctx
	}
	return ch, nil
}

func (f *fakeBackend) Reload(ctx context.Context) (*api.ReloadResult, error) {
	if f.reload == nil {
		return nil, errors.New("reload not expected")
	}
	return f.reload(ctx)
}

// serve runs an API server with b on a temporary socket for the test.
func serve(t *testing.T, b api.Backend) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fp.sock")
	srv := api.NewServer(b, nil)
	l, err := srv.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListener(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return path
}

func newTestStatus() api.Status {
	return api.Status{
		Version: "1.0", PID: 77, NetNS: "net:[4026532281]", ConfigFile: "/etc/fp.yaml",
		StartedAt: time.Now().Add(-time.Hour).UTC().Truncate(time.Second),
		Interfaces: []api.InterfaceStatus{
			{Name: "r0", Ifindex: 3, Mode: "route", Attach: "auto", AttachedAs: "xdp",
				ProgramID: 41, LinkID: 9, XDPTarget: true, State: api.StateAttached},
			{Name: "r1", Mode: "route", Attach: "xdp", State: api.StateError,
				Error: "attach xdp to r1: operation not supported", NFTEgressChains: []string{"netdev t out"}},
		},
		RevalidateEvery: "1s", RevalidateWhy: []string{"set inet fw allow: elements time out"},
	}
}

func TestStatus(t *testing.T) {
	testStatus := newTestStatus()
	sock := serve(t, &fakeBackend{status: &testStatus})

	code, out, errOut := run(t, "status", "--socket", sock)
	if code != 0 || errOut != "" {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		"fastpath 1.0, pid 77, netns net:[4026532281]\n",
		"config:  /etc/fp.yaml\n",
		"(up 1h0m", // plus the seconds the test took
		"INTERFACE  IFINDEX  MODE   ATTACH  ATTACHED AS  STATE     PROGRAM ID  XDP TARGET  ERROR\n",
		"r0         3        route  auto    xdp          attached  41          yes         -\n",
		"r1         -        route  xdp     -            error     -           no          attach xdp to r1: operation not supported\n",
		"revalidation: every 1s: set inet fw allow: elements time out\n",
		"r1: no redirect leaves here: nftables egress chains netdev t out\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}

	// -j: one line, as ip -j; -p (alone or with -j): indented.
	for _, args := range [][]string{{"--json"}, {"-j"}, {"-p"}, {"-j", "-p"}} {
		code, out, _ = run(t, append([]string{"status", "--socket", sock}, args...)...)
		var got api.Status
		if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 {
			t.Fatalf("status %q: code %d, %v\n%s", args, code, err, out)
		}
		if !reflect.DeepEqual(got, testStatus) {
			t.Errorf("status %q = %+v, want %+v", args, got, testStatus)
		}
		pretty := slices.Contains(args, "-p")
		if indented := strings.Contains(out, "\n  \"version\": \"1.0\",\n"); indented != pretty {
			t.Errorf("status %q: indented %v, want %v:\n%s", args, indented, pretty, out)
		}
		if !pretty && strings.Count(out, "\n") != 1 {
			t.Errorf("status %q: want one line:\n%s", args, out)
		}
	}
}

func TestStats(t *testing.T) {
	stats := &api.Stats{Interfaces: []api.InterfaceStats{
		{Name: "r0", Ifindex: 3,
			Forwarded:   api.Counter{Packets: 123456, Bytes: 98765432},
			Passed:      api.Counter{Packets: 12, Bytes: 1200},
			PassReasons: map[string]uint64{"no_neigh": 2, "ttl_exceeded": 10, "fragment": 0}},
	}}
	sock := serve(t, &fakeBackend{stats: stats})

	code, out, _ := run(t, "stats", "--socket", sock)
	want := `r0 (ifindex 3)
  forwarded       123456 pkts  98765432 bytes
  passed              12 pkts      1200 bytes
    ttl_exceeded      10 pkts
    no_neigh           2 pkts
`
	if code != 0 || out != want {
		t.Errorf("stats: code %d\n%s\nwant\n%s", code, out, want)
	}

	code, out, _ = run(t, "stats", "--socket", sock, "--all")
	if code != 0 || !strings.Contains(out, "    fragment           0 pkts\n") {
		t.Errorf("stats --all: code %d\n%s", code, out)
	}

	code, out, _ = run(t, "stats", "--socket", sock, "--json")
	var got api.Stats
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 || !reflect.DeepEqual(&got, stats) {
		t.Errorf("stats --json: code %d, %v\n%s", code, err, out)
	}
}

func TestStatsFlows(t *testing.T) {
	stats := &api.Stats{Interfaces: []api.InterfaceStats{
		{Name: "wan0", Ifindex: 2,
			Forwarded:  api.Counter{Packets: 5000, Bytes: 4000000},
			Passed:     api.Counter{Packets: 40, Bytes: 4000},
			FlowsAdded: 12345, FlowsRemoved: 7,
			PassReasons: map[string]uint64{"no_conntrack": 30, "icmp": 10}},
		{Name: "r1", Ifindex: 3,
			Forwarded:   api.Counter{Packets: 1, Bytes: 100},
			PassReasons: map[string]uint64{"ttl": 0}},
	}}
	sock := serve(t, &fakeBackend{stats: stats})

	code, out, _ := run(t, "stats", "--socket", sock)
	want := `wan0 (ifindex 2)
  forwarded        5000 pkts  4000000 bytes
  flows           12345 added       7 removed
  passed             40 pkts     4000 bytes
    no_conntrack     30 pkts
    icmp             10 pkts

r1 (ifindex 3)
  forwarded  1 pkts  100 bytes
  passed     0 pkts    0 bytes
`
	if code != 0 || out != want {
		t.Errorf("stats: code %d\n%s\nwant\n%s", code, out, want)
	}

	code, out, _ = run(t, "stats", "--socket", sock, "--all")
	if code != 0 || !strings.Contains(out, "r1 (ifindex 3)\n  forwarded  1 pkts  100 bytes\n  flows      0 added   0 removed\n") {
		t.Errorf("stats --all: code %d\n%s", code, out)
	}
}

func testFlows() *api.Flows {
	ap := netip.MustParseAddrPort
	return &api.Flows{Capacity: 65536, Flows: []api.Flow{
		{Proto: "udp", Family: "ipv6", Direction: "original",
			In:      api.Tuple{Src: ap("[fd00::2]:5353"), Dst: ap("[fd00:2::1]:53")},
			Out:     api.Tuple{Src: ap("[fd00::2]:5353"), Dst: ap("[fd00:2::1]:53")},
			Ingress: "r0", Egress: "r1", Packets: 3, Bytes: 300, AgeSec: 3725, IdleSec: 0.4, Stale: true},
		{Proto: "tcp", Family: "ipv4", Direction: "original",
			In:  api.Tuple{Src: ap("10.0.0.2:40000"), Dst: ap("198.18.2.1:443")},
			Out: api.Tuple{Src: ap("198.18.2.254:40000"), Dst: ap("198.18.2.1:443")},
			NAT: "snat", Ingress: "lan0", Egress: "wan0", Packets: 10, Bytes: 9000, AgeSec: 125, IdleSec: 1.6},
		{Proto: "tcp", Family: "ipv4", Direction: "reply",
			In:  api.Tuple{Src: ap("198.18.2.1:443"), Dst: ap("198.18.2.254:40000")},
			Out: api.Tuple{Src: ap("198.18.2.1:443"), Dst: ap("10.0.0.2:40000")},
			NAT: "snat", Ingress: "wan0", Egress: "lan0", Packets: 20, Bytes: 28000, AgeSec: 125, IdleSec: 1.6},
	}}
}

func TestFlows(t *testing.T) {
	sock := serve(t, &fakeBackend{flows: testFlows()})

	code, out, errOut := run(t, "flows", "--socket", sock)
	want := `PROTO  IN                                    OUT                                   NAT   INGRESS  EGRESS  PACKETS  BYTES  AGE    IDLE
tcp    198.18.2.1:443 -> 198.18.2.254:40000  198.18.2.1:443 -> 10.0.0.2:40000      snat  wan0     lan0    20       28000  2m05s  2s
tcp    10.0.0.2:40000 -> 198.18.2.1:443      198.18.2.254:40000 -> 198.18.2.1:443  snat  lan0     wan0    10       9000   2m05s  2s
udp    [fd00::2]:5353 -> [fd00:2::1]:53      -                                     -     r0       r1      3        300    1h02m  0s    stale

3 flows (capacity 65536)
`
	if code != 0 || out != want || errOut != "" {
		t.Errorf("flows: code %d, stderr %q\n%s\nwant\n%s", code, errOut, out, want)
	}

	code, out, _ = run(t, "flows", "--socket", sock, "--limit", "1")
	if code != 0 || !strings.HasPrefix(out, "PROTO") || strings.Count(out, "\n") != 4 ||
		!strings.Contains(out, "\ntcp    198.18.2.1:443 -> ") ||
		!strings.HasSuffix(out, "\n3 flows (capacity 65536), the 1 biggest shown; --limit 0 shows all\n") {
		t.Errorf("flows --limit 1: code %d\n%s", code, out)
	}

	code, out, _ = run(t, "flows", "--socket", sock, "--limit", "0")
	if code != 0 || strings.Count(out, "\n") != 6 {
		t.Errorf("flows --limit 0: code %d\n%s", code, out)
	}

	code, out, _ = run(t, "flows", "--socket", sock, "--json")
	var got api.Flows
	wantJSON := testFlows()
	wantJSON.Total = len(wantJSON.Flows)
	slices.SortStableFunc(wantJSON.Flows, compareFlows) // the daemon answers the largest first
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 || !reflect.DeepEqual(&got, wantJSON) {
		t.Errorf("flows --json: code %d, %v\n%s", code, err, out)
	}
}

func TestFlowsEmpty(t *testing.T) {
	sock := serve(t, &fakeBackend{flows: &api.Flows{Capacity: 1024}})
	code, out, _ := run(t, "flows", "--socket", sock)
	if code != 0 || out != "0 flows (capacity 1024)\n" {
		t.Errorf("flows: code %d, %q", code, out)
	}
}

func TestShortAge(t *testing.T) {
	for sec, want := range map[float64]string{
		0: "0s", 0.4: "0s", 0.6: "1s", 59.4: "59s", 60: "1m00s", 3599: "59m59s",
		3600: "1h00m", 90061: "25h01m", -1: "-", 1e300: "2562047h47m",
	} {
		if got := shortAge(sec); got != want {
			t.Errorf("shortAge(%v) = %q, want %q", sec, got, want)
		}
	}
}

func TestNoDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, cmd := range []string{"status", "stats", "flows", "events", "top", "reload"} {
		code, out, errOut := run(t, cmd, "--socket", sock)
		want := "fastpath: cannot reach fastpath daemon at " + sock + ": is it running? (use --socket or -n NETNS for another daemon)\n"
		if code != 1 || out != "" || errOut != want {
			t.Errorf("%s: code %d, stdout %q, stderr %q", cmd, code, out, errOut)
		}
	}
}
