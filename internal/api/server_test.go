package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

type fakeBackend struct {
	status *Status
	stats  *Stats
	flows  *Flows
	err    error
	// events is the channel Events hands out; each subscription's ctx is
	// then sent to subscribed, if set (so a test may change events for
	// the next subscription once it received the last one's ctx).
	events     chan Event
	subscribed chan context.Context
	reload     func(context.Context) (*ReloadResult, error)
}

func (f *fakeBackend) Status(context.Context) (*Status, error) { return f.status, f.err }
func (f *fakeBackend) Stats(context.Context) (*Stats, error)   { return f.stats, f.err }
func (f *fakeBackend) Flows(_ context.Context, q FlowQuery) (*Flows, error) {
	if f.err != nil {
		return nil, f.err
	}
	return q.Apply(f.flows), nil
}

func (f *fakeBackend) Events(ctx context.Context) (<-chan Event, error) {
	if f.err != nil {
		return nil, f.err
	}
	ch := f.events
	if f.subscribed != nil {
		f.subscribed <- ctx
	}
	return ch, nil
}

func (f *fakeBackend) Reload(ctx context.Context) (*ReloadResult, error) {
	if f.reload == nil {
		return nil, f.err
	}
	return f.reload(ctx)
}

func testStatus() *Status {
	return &Status{
		Version: "test", PID: 42, NetNS: "net:[1]", ConfigFile: "/etc/fastpath.yaml",
		StartedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Interfaces: []InterfaceStatus{
			{Name: "r0", Ifindex: 3, Mode: "route", Attach: "auto", AttachedAs: "xdp",
				ProgramID: 17, LinkID: 5, XDPTarget: true, State: StateAttached},
			{Name: "r9", Mode: "route", Attach: "tc", State: StateMissing},
		},
	}
}

func testStats() *Stats {
	return &Stats{Interfaces: []InterfaceStats{{
		Name: "r0", Ifindex: 3,
		Forwarded:    Counter{Packets: 10, Bytes: 1000},
		Passed:       Counter{Packets: 2, Bytes: 120},
		FlowsAdded:   4,
		FlowsRemoved: 2,
		PassReasons:  map[string]uint64{"no_neigh": 2, "ttl": 0},
	}}}
}

func testFlows() *Flows {
	ap := netip.MustParseAddrPort
	return &Flows{Capacity: 65536, Flows: []Flow{
		{Proto: "tcp", Family: "ipv4", Direction: "original",
			In:  Tuple{Src: ap("10.0.0.2:40000"), Dst: ap("198.18.2.1:443")},
			Out: Tuple{Src: ap("198.18.2.254:40000"), Dst: ap("198.18.2.1:443")},
			NAT: "snat", Ingress: "lan0", Egress: "wan0",
			Packets: 10, Bytes: 9000, AgeSec: 12.5, IdleSec: 0.25},
		{Proto: "udp", Family: "ipv6", Direction: "reply",
			In:      Tuple{Src: ap("[fd00::2]:53"), Dst: ap("[fd00:1::2]:5353")},
			Out:     Tuple{Src: ap("[fd00::2]:53"), Dst: ap("[fd00:1::2]:5353")},
			Ingress: "r1", Egress: "r0", Packets: 1, Bytes: 100, Stale: true},
	}}
}

// startServer serves b on a fresh socket and returns its path; the server
// is stopped, and its exit checked, when the test ends.
func startServer(t *testing.T, b Backend) string {
	t.Helper()
	path, stop := serveWith(t, NewServer(b, slog.New(slog.DiscardHandler)))
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	})
	return path
}

// serveWith serves srv on a fresh socket; stop shuts it down and returns
// what ServeListener returned.
func serveWith(t *testing.T, srv *Server) (path string, stop func() error) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "run", "fastpath.sock")
	l, err := srv.Listen(path)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListener(ctx, l) }()
	return path, func() error {
		cancel()
		return <-done
	}
}

func TestRoundTrip(t *testing.T) {
	path := startServer(t, &fakeBackend{status: testStatus(), stats: testStats()})
	c := NewClient(path)
	ctx := t.Context()

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if !reflect.DeepEqual(st, testStatus()) {
		t.Errorf("Status = %+v, want %+v", st, testStatus())
	}
	stats, err := c.Stats(ctx)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if !reflect.DeepEqual(stats, testStats()) {
		t.Errorf("Stats = %+v, want %+v", stats, testStats())
	}
}

func TestFlowsRoundTrip(t *testing.T) {
	path := startServer(t, &fakeBackend{flows: testFlows()})
	got, err := NewClient(path).Flows(t.Context())
	if err != nil {
		t.Fatalf("Flows: %v", err)
	}
	want := testFlows()
	want.Total = len(want.Flows)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Flows = %+v, want %+v", got, want)
	}
	top, err := NewClient(path).FlowsLimit(t.Context(), 1)
	if err != nil || top.Total != 2 || len(top.Flows) != 1 || top.Flows[0].Bytes != 9000 {
		t.Errorf("FlowsLimit(1) = %+v, %v; want the largest flow of 2", top, err)
	}
}

// Tools read /v1/flows with jq: addresses and ports are fields of their
// own, and a flow without NAT has "nat": null.
func TestFlowsWire(t *testing.T) {
	path := startServer(t, &fakeBackend{flows: testFlows()})
	body := getBody(t, path, "/v1/flows")
	var raw struct {
		Capacity int              `json:"capacity"`
		Flows    []map[string]any `json:"flows"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if raw.Capacity != 65536 || len(raw.Flows) != 2 {
		t.Fatalf("got %s", body)
	}
	f := raw.Flows[1]
	in, _ := f["in"].(map[string]any)
	if nat, ok := f["nat"]; in["src"] != "fd00::2" || in["sport"] != 53.0 || in["dst"] != "fd00:1::2" || in["dport"] != 5353.0 ||
		f["stale"] != true || !ok || nat != nil {
		t.Errorf("flow on the wire: %v", f)
	}
	for _, key := range []string{"proto", "family", "direction", "out", "ingress", "egress",
		"packets", "bytes", "age_seconds", "idle_seconds"} {
		if _, ok := f[key]; !ok {
			t.Errorf("flow lacks %q: %v", key, f)
		}
	}
}

func TestFlowsError(t *testing.T) {
	path := startServer(t, &fakeBackend{err: errors.New("no interface in offload mode")})
	_, err := NewClient(path).Flows(t.Context())
	if err == nil || err.Error() != "daemon: no interface in offload mode (HTTP 500)" {
		t.Errorf("Flows error = %v", err)
	}
}

// getBody GETs path from the server at socket and returns the body of a
// 200 answer.
func getBody(t *testing.T, socket, path string) []byte {
	t.Helper()
	body, code := getStatus(t, socket, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	return []byte(body)
}

func unixHTTPClient(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
}

func TestBackendError(t *testing.T) {
	path := startServer(t, &fakeBackend{err: errors.New("datapath not loaded")})
	_, err := NewClient(path).Status(t.Context())
	if err == nil || err.Error() != "daemon: datapath not loaded (HTTP 500)" {
		t.Errorf("Status error = %v", err)
	}
}

func TestSocketMode(t *testing.T) {
	path := startServer(t, &fakeBackend{})
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want a socket with 0600", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o755 {
		t.Errorf("created directory mode = %v, want 0755", di.Mode().Perm())
	}
}

func TestSecondServerRefused(t *testing.T) {
	path := startServer(t, &fakeBackend{status: testStatus()})
	_, err := NewServer(&fakeBackend{}, nil).Listen(path)
	want := "api socket " + path + " is in use by another fastpath daemon (another network namespace?); set api.socket"
	if err == nil || err.Error() != want {
		t.Fatalf("second Listen = %v, want %q", err, want)
	}
	// The first server must be unharmed.
	if _, err := NewClient(path).Status(t.Context()); err != nil {
		t.Errorf("first server after refused takeover: %v", err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fastpath.sock")
	// A bound socket nobody listens on: what a killed daemon leaves.
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)

	l, err := NewServer(&fakeBackend{}, nil).Listen(path)
	if err != nil {
		t.Fatalf("Listen over stale socket: %v", err)
	}
	l.Close()
}

func TestNotASocketRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fastpath.sock")
	if err := os.WriteFile(path, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := NewServer(&fakeBackend{}, nil).Listen(path)
	if err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Fatalf("Listen on a regular file = %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep me" {
		t.Errorf("regular file was changed")
	}
}

func TestSocketRemovedAfterShutdown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fastpath.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewServer(&fakeBackend{status: testStatus()}, nil).Serve(ctx, path) }()

	// Wait for the server to answer, then stop it.
	c := NewClient(path)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Status(t.Context())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server never answered: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("Serve returned early: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after shutdown: %v", err)
	}
}

func TestClientUnreachable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.sock")
	_, err := NewClient(path).Status(t.Context())
	want := "cannot reach fastpath daemon at " + path + ": is it running? (use --socket or -n NETNS for another daemon)"
	if err == nil || err.Error() != want {
		t.Errorf("Status on missing socket = %v, want %q", err, want)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error does not wrap the cause: %v", err)
	}
}

func TestHTTPErrors(t *testing.T) {
	path := startServer(t, &fakeBackend{status: testStatus()})
	hc := unixHTTPClient(path)
	tests := []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/v1/nope", 404, `{"error":"no such endpoint: /v1/nope"}`},
		{"GET", "/", 404, `{"error":"no such endpoint: /"}`},
		{"POST", "/v1/status", 405, `{"error":"method POST not allowed on /v1/status; use GET"}`},
		{"DELETE", "/v1/stats", 405, `{"error":"method DELETE not allowed on /v1/stats; use GET"}`},
		{"PUT", "/v1/flows", 405, `{"error":"method PUT not allowed on /v1/flows; use GET"}`},
		{"GET", "/v1/flows/1", 404, `{"error":"no such endpoint: /v1/flows/1"}`},
		{"POST", "/v1/events", 405, `{"error":"method POST not allowed on /v1/events; use GET"}`},
		{"GET", "/v1/reload", 405, `{"error":"method GET not allowed on /v1/reload; use POST"}`},
		{"PUT", "/v1/reload", 405, `{"error":"method PUT not allowed on /v1/reload; use POST"}`},
	}
	for _, tt := range tests {
		req, err := http.NewRequestWithContext(t.Context(), tt.method, "http://fastpath"+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.method, tt.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code || strings.TrimSpace(string(body)) != tt.body {
			t.Errorf("%s %s = %d %s, want %d %s", tt.method, tt.path, resp.StatusCode, body, tt.code, tt.body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", tt.method, tt.path, ct)
		}
		allow := "GET"
		if tt.path == "/v1/reload" {
			allow = "POST"
		}
		if tt.code == 405 && resp.Header.Get("Allow") != allow {
			t.Errorf("%s %s: Allow %q", tt.method, tt.path, resp.Header.Get("Allow"))
		}
	}
}

// The daemon listens first and may fail before serving: closing the
// listener must leave no socket behind.
func TestListenCloseRemovesSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fastpath.sock")
	l, err := NewServer(&fakeBackend{}, nil).Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after Close: %v", err)
	}
}

func TestEmptySocketPathRefused(t *testing.T) {
	_, err := NewServer(&fakeBackend{}, nil).Listen("")
	if err == nil || !strings.Contains(err.Error(), "api socket: empty path") {
		t.Fatalf("Listen(\"\") = %v", err)
	}
}

// A directory others can write to would let them replace the socket.
func TestWorldWritableSocketDirRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "fastpath.sock")
	_, err := NewServer(&fakeBackend{}, nil).Listen(path)
	want := "api socket directory " + dir + " is writable by other users (mode 0777)"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Listen in a world-writable directory = %v, want prefix %q", err, want)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a socket was created despite the refusal: %v", err)
	}
}

func TestForeignSocketDirRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	dir := t.TempDir()
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := NewServer(&fakeBackend{}, nil).Listen(filepath.Join(dir, "fastpath.sock"))
	want := "api socket directory " + dir + " belongs to "
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "uid 65534") {
		t.Fatalf("Listen in another user's directory = %v, want prefix %q naming uid 65534", err, want)
	}
}

// Another user's socket is not a fastpath daemon's, stale or not.
func TestForeignSocketRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	path := filepath.Join(t.TempDir(), "fastpath.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Lchown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err = NewServer(&fakeBackend{}, nil).Listen(path)
	if err == nil || !strings.Contains(err.Error(), "api socket "+path+" belongs to ") ||
		!strings.Contains(err.Error(), "uid 65534") || strings.Contains(err.Error(), "in use by another fastpath daemon") {
		t.Fatalf("Listen over another user's socket = %v", err)
	}
}
