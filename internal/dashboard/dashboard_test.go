package dashboard

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
)

// hostile is what an attacker may put in interface names, flow fields (the
// interface names) and event text.
const hostile = `<img src=x onerror="window.__pwned=1">`

// fakeBackend serves fixed status and flows, counters that grow by 100
// packets (forwarded) and 10 (passed, reason no_flow) per call, and the
// events pushed into it.
type fakeBackend struct {
	mu      sync.Mutex
	calls   int
	reloads atomic.Int32
	flowsN  atomic.Int32
	guardN  atomic.Int32
	changes []string // guard changes, under mu
	events  chan api.Event
	status  api.Status
	flows   api.Flows
}

func newFake() *fakeBackend {
	f := &fakeBackend{events: make(chan api.Event, 16)}
	f.status = api.Status{Version: "test", PID: 1, StartedAt: time.Now().Add(-time.Hour).UTC(),
		Interfaces: []api.InterfaceStatus{
			{Name: "r0", Mode: "offload", Attach: "auto", AttachedAs: "xdp", AttachReason: "native XDP", State: api.StateAttached},
			{Name: hostile, Mode: "offload", Attach: "auto", State: api.StateMissing},
		},
		Datapath: &api.DatapathStatus{RouteGeneration: 7, RulesetGeneration: 3, Watchdog: api.WatchdogArmed, HeartbeatAgeSec: 0.2, WatchdogSec: 3},
	}
	f.flows = api.Flows{Capacity: 1024, Flows: []api.Flow{
		flow("198.18.0.2:1000", "198.19.0.2:5201", "tcp", "snat", 1000),
		flow("198.18.0.3:2000", "198.19.0.2:53", "udp", "", 500),
		flow("[fd00::2]:3000", "[fd00:1::2]:443", "tcp", "", 100),
	}}
	f.flows.Flows[0].Ingress = hostile
	return f
}

func flow(src, dst, proto, nat string, bytes uint64) api.Flow {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	out := s
	if nat != "" {
		out = netip.AddrPortFrom(netip.MustParseAddr("198.19.0.1"), 40000)
	}
	fam := "ipv4"
	if s.Addr().Is6() {
		fam = "ipv6"
	}
	return api.Flow{Proto: proto, Family: fam, Direction: "original", In: api.Tuple{Src: s, Dst: d},
		Out: api.Tuple{Src: out, Dst: d}, NAT: nat, Ingress: "r0", Egress: "r1", Packets: bytes / 100, Bytes: bytes, AgeSec: 5}
}

func (f *fakeBackend) Status(context.Context) (*api.Status, error) {
	s := f.status
	return &s, nil
}

func (f *fakeBackend) Stats(context.Context) (*api.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	n := uint64(f.calls)
	reasons := map[string]uint64{"no_flow": 10 * n, "local": 0}
	return &api.Stats{Interfaces: []api.InterfaceStats{{Name: "r0", Ifindex: 2,
		Forwarded: api.Counter{Packets: 100 * n, Bytes: 100000 * n}, Passed: api.Counter{Packets: 10 * n, Bytes: 1000 * n},
		PassReasons: reasons}}}, nil
}

func (f *fakeBackend) readings() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeBackend) Flows(_ context.Context, q api.FlowQuery) (*api.Flows, error) {
	f.flowsN.Add(1)
	fl := f.flows
	fl.Flows = append([]api.Flow{}, f.flows.Flows...)
	return q.Apply(&fl), nil
}

func (f *fakeBackend) Events(ctx context.Context) (<-chan api.Event, error) {
	out := make(chan api.Event)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case e := <-f.events:
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// Guard: a deny list of two, drops for reason deny growing by 5 packets
// per reading.
func (f *fakeBackend) Guard(_ context.Context, q api.GuardQuery) (*api.Guard, error) {
	n := uint64(f.guardN.Add(1))
	g := &api.Guard{DenyEntries: 2, Allow: []api.GuardEntry{}, Deny: []api.GuardEntry{},
		Interfaces: []api.GuardInterface{{Name: "r0", Ifindex: 2,
			Dropped: map[string]uint64{"deny": 5 * n, "rate_pkt": 0}, DroppedBytes: map[string]uint64{"deny": 500 * n, "rate_pkt": 0}}},
		Top: []api.GuardSource{{Source: "198.18.9.7/32", Packets: 5 * n, Bytes: 500 * n, Reason: "deny"}}}
	if q.Entries {
		g.Deny = []api.GuardEntry{{Prefix: "198.18.9.0/24", Origin: "config", Packets: 5 * n}, {Prefix: "fd00:9::/64", Origin: "runtime"}}
	}
	return g, nil
}

func (f *fakeBackend) GuardChange(_ context.Context, add bool, list string, prefixes []string) (*api.GuardChangeResult, error) {
	f.mu.Lock()
	f.changes = append(f.changes, fmt.Sprint(add, " ", list, " ", prefixes))
	f.mu.Unlock()
	return &api.GuardChangeResult{List: list, Changed: prefixes}, nil
}

func (f *fakeBackend) guardChanges() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.changes)
}

// noGuard is a backend without a guard: only api.Backend's methods.
type noGuard struct{ api.Backend }

func (f *fakeBackend) Reload(context.Context) (*api.ReloadResult, error) {
	f.reloads.Add(1)
	return &api.ReloadResult{Changed: true, Actions: []string{"attach r2 (offload, xdp)"}}, nil
}

// serve runs the dashboard for b on a loopback port and returns its URL.
func serve(t *testing.T, b api.Backend, o Options) string {
	t.Helper()
	if o.SampleEvery == 0 {
		o.SampleEvery = 50 * time.Millisecond
	}
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(b, o).Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + l.Addr().String()
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	return do(t, http.MethodGet, url, hdr...)
}

func do(t *testing.T, method, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(body)
}

func TestPageAndHeaders(t *testing.T) {
	base := serve(t, newFake(), Options{})
	for path, ctype := range map[string]string{
		"/":              "text/html",
		"/app.js":        "text/javascript",
		"/app.css":       "text/css",
		"/favicon.svg":   "image/svg+xml",
		"/api/v1/status": "application/json",
	} {
		res, body := get(t, base+path, "Origin", "http://evil.example")
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s: %d %s", path, res.StatusCode, body)
			continue
		}
		h := res.Header
		if !strings.HasPrefix(h.Get("Content-Type"), ctype) {
			t.Errorf("%s: Content-Type %q, want %s", path, h.Get("Content-Type"), ctype)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q", path, h.Get("X-Content-Type-Options"))
		}
		for k := range h {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("%s: CORS header %s: %s", path, k, h.Get(k))
			}
		}
	}
	if res, _ := get(t, base+"/"); !strings.Contains(mustRead(t, "assets/index.html"), `<script src="app.js"`) || res.StatusCode != 200 {
		t.Error("index.html does not load app.js")
	}
	for _, path := range []string{"/nope", "/assets/app.js", "/api/v1/events", "/api/v1/nope", "/../dashboard.go"} {
		if res, body := get(t, base+path); res.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d %s, want 404", path, res.StatusCode, body)
		}
	}
	if res, body := do(t, http.MethodPost, base+"/api/v1/status"); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST status: %d %s, want 405", res.StatusCode, body)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := assets.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHostHeader(t *testing.T) {
	base := serve(t, newFake(), Options{})
	for host, want := range map[string]int{
		"127.0.0.1:9469": 200, "localhost:1": 200, "LOCALHOST": 200, "[::1]:9469": 200, "198.18.0.1": 200,
		"evil.example": http.StatusMisdirectedRequest, "evil.example:9469": http.StatusMisdirectedRequest,
		"127.0.0.1.nip.io:9469": http.StatusMisdirectedRequest,
	} {
		if res, body := get(t, base+"/api/v1/status", "Host", host); res.StatusCode != want {
			t.Errorf("Host %s: %d %s, want %d", host, res.StatusCode, body, want)
		}
	}
}

// The JSON endpoints are the API's own: same answers as the socket.
func TestAPIEndpoints(t *testing.T) {
	f := newFake()
	base := serve(t, f, Options{})
	_, body := get(t, base+"/api/v1/status")
	var st api.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Interfaces[1].Name != hostile || st.Datapath.RouteGeneration != 7 {
		t.Errorf("status = %+v", st)
	}
	_, body = get(t, base+"/api/v1/flows?limit=1")
	var fl api.Flows
	if err := json.Unmarshal([]byte(body), &fl); err != nil {
		t.Fatal(err)
	}
	if fl.Total != 3 || len(fl.Flows) != 1 || fl.Flows[0].Bytes != 1000 {
		t.Errorf("flows?limit=1 = %+v", fl)
	}
	if res, body := get(t, base+"/api/v1/flows?limit=x"); res.StatusCode != http.StatusBadRequest {
		t.Errorf("flows?limit=x: %d %s", res.StatusCode, body)
	}
}

func TestWriteNeedsWriteAndToken(t *testing.T) {
	const token = "0123456789abcdef0123"
	ro := newFake()
	base := serve(t, ro, Options{})
	if res, body := do(t, http.MethodPost, base+"/api/v1/reload", "Authorization", "Bearer "+token); res.StatusCode != http.StatusForbidden {
		t.Errorf("read-only reload: %d %s, want 403", res.StatusCode, body)
	}
	if ro.reloads.Load() != 0 {
		t.Error("read-only dashboard reloaded")
	}

	rw := newFake()
	base = serve(t, rw, Options{Write: true, Token: token})
	for _, auth := range []string{"", "Bearer ", "Bearer wrong", token, "Basic " + token, "Bearer " + token + "x"} {
		res, body := do(t, http.MethodPost, base+"/api/v1/reload", "Authorization", auth)
		if res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("Authorization %q: %d %s, want 401", auth, res.StatusCode, body)
		}
	}
	if res, body := get(t, base+"/api/v1/reload", "Authorization", "Bearer "+token); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET reload: %d %s, want 405", res.StatusCode, body)
	}
	if rw.reloads.Load() != 0 {
		t.Fatal("reloaded without the token")
	}
	res, body := do(t, http.MethodPost, base+"/api/v1/reload", "Authorization", "Bearer "+token)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "attach r2") || rw.reloads.Load() != 1 {
		t.Errorf("reload with the token: %d %s, %d reloads", res.StatusCode, body, rw.reloads.Load())
	}
	// Write on but no token configured: nothing gets through.
	base = serve(t, newFake(), Options{Write: true})
	if res, body := do(t, http.MethodPost, base+"/api/v1/reload", "Authorization", "Bearer "); res.StatusCode != http.StatusForbidden {
		t.Errorf("write without a token: %d %s, want 403", res.StatusCode, body)
	}
}

// sseReader reads server-sent events.
type sseReader struct {
	r    *bufio.Reader
	body io.Closer
}

func openStream(t *testing.T, url string) *sseReader {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	return &sseReader{r: bufio.NewReader(res.Body), body: res.Body}
}

// next returns the next event's name and data.
func (s *sseReader) next(t *testing.T) (string, string) {
	t.Helper()
	var name, data string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("read stream: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && name != "":
			return name, data
		case strings.HasPrefix(line, "event: "):
			name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = line[len("data: "):]
		}
	}
}

// until reads events until one named name whose data satisfies ok.
func (s *sseReader) until(t *testing.T, name string, ok func(string) bool) string {
	t.Helper()
	for range 200 {
		n, d := s.next(t)
		if strings.ContainsAny(d, "<>") {
			t.Fatalf("%s event carries raw < or >: %s", n, d)
		}
		if n == name && ok(d) {
			return d
		}
	}
	t.Fatalf("no %s event as wanted", name)
	return ""
}

func TestEventStream(t *testing.T) {
	f := newFake()
	base := serve(t, f, Options{})
	s := openStream(t, base+"/events")
	var hello Hello
	if err := json.Unmarshal([]byte(s.until(t, "hello", func(string) bool { return true })), &hello); err != nil {
		t.Fatal(err)
	}
	if hello.Period != 0.05 {
		t.Errorf("hello period %v", hello.Period)
	}

	// Rates: the fake's counters grow by 100 forwarded and 10 passed
	// packets per reading, so every tick after the first has both.
	var tick Tick
	s.until(t, "tick", func(d string) bool {
		tick = Tick{}
		if err := json.Unmarshal([]byte(d), &tick); err != nil {
			t.Fatal(err)
		}
		return len(tick.Sample.Interfaces) == 1 && tick.Sample.Interfaces[0].Forwarded.PPS > 0
	})
	r := tick.Sample.Interfaces[0]
	ratio := r.Forwarded.PPS / r.Passed.PPS
	if ratio < 9.99 || ratio > 10.01 || r.PassReasons["no_flow"] != r.Passed.PPS || len(r.PassReasons) != 1 {
		t.Errorf("rates %+v: want forwarded 10x passed, all passed no_flow", r)
	}
	if bits := r.Forwarded.BPS / r.Forwarded.PPS; bits < 7999.99 || bits > 8000.01 {
		t.Errorf("forwarded %v bit/s for %v pkt/s; want 1000-byte packets", r.Forwarded.BPS, r.Forwarded.PPS)
	}
	if tick.Status == nil || tick.Status.Interfaces[1].Name != hostile || tick.Clients != 1 {
		t.Errorf("tick status %+v, clients %d", tick.Status, tick.Clients)
	}

	var ft FlowTable
	s.until(t, "flows", func(d string) bool {
		if err := json.Unmarshal([]byte(d), &ft); err != nil {
			t.Fatal(err)
		}
		return true
	})
	if ft.Total != 3 || ft.Matched != 3 || len(ft.Flows) != 3 || ft.Flows[0].Flow.Bytes != 1000 || ft.Flows[0].Flow.Ingress != hostile {
		t.Errorf("flows %+v", ft)
	}

	f.events <- api.Event{Time: time.Now(), Kind: api.EventReload, Detail: hostile}
	d := s.until(t, "event", func(string) bool { return true })
	var e api.Event
	if err := json.Unmarshal([]byte(d), &e); err != nil || e.Detail != hostile {
		t.Errorf("event %s: %v", d, err)
	}

	// A page opened later gets the event in its history.
	s2 := openStream(t, base+"/events?flows=udp")
	hello = Hello{}
	if err := json.Unmarshal([]byte(s2.until(t, "hello", func(string) bool { return true })), &hello); err != nil {
		t.Fatal(err)
	}
	if len(hello.Events) != 1 || hello.Events[0].Detail != hostile || len(hello.History) == 0 {
		t.Errorf("hello: %d events, %d samples", len(hello.Events), len(hello.History))
	}
	s2.until(t, "flows", func(d string) bool {
		ft = FlowTable{}
		json.Unmarshal([]byte(d), &ft)
		return true
	})
	if ft.Filter != "udp" || ft.Matched != 1 || ft.Flows[0].Flow.Proto != "udp" {
		t.Errorf("flows?flows=udp: %+v", ft)
	}
}

// The flow table is read only while a page is open.
func TestFlowsReadOnlyWithPages(t *testing.T) {
	f := newFake()
	base := serve(t, f, Options{})
	deadline := time.Now().Add(5 * time.Second)
	for f.readings() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("sampler does not read the counters")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := f.flowsN.Load(); n != 0 {
		t.Errorf("flows read %d times with no page open", n)
	}
	s := openStream(t, base+"/events")
	s.until(t, "flows", func(string) bool { return true })
}

func TestTooManyPages(t *testing.T) {
	s := newSampler(newFake(), time.Second, 10, nil)
	for range maxClients {
		if c, _ := s.join(flowFilter{}); c == nil {
			t.Fatal("join refused below the limit")
		}
	}
	if c, _ := s.join(flowFilter{}); c != nil {
		t.Error("join beyond maxClients accepted")
	}
}

func TestSlowPageLosesMessages(t *testing.T) {
	s := newSampler(newFake(), time.Second, 10, nil)
	c, _ := s.join(flowFilter{})
	for range clientBuffer + 5 {
		s.addEvent(api.Event{Kind: api.EventReload})
	}
	if c.dropped != 5 || len(c.ch) != clientBuffer {
		t.Errorf("dropped %d, queued %d", c.dropped, len(c.ch))
	}
	if len(s.events) != clientBuffer+5 {
		t.Errorf("history %d events", len(s.events))
	}
}

func TestFlowFilter(t *testing.T) {
	fl := newFake().flows
	for filter, want := range map[string]int{
		"": 3, "tcp": 2, "UDP": 1, "proto=tcp": 2, "tcp dport=5201": 1, "dport=53": 1, "sport=1000": 1,
		"src=198.18.0.0/24": 2, "src=198.18.0.3": 1, "dst=fd00:1::/64": 1, "dst=198.19.0.0/16 proto=udp": 1,
		"dport=99": 0,
	} {
		got := parseFilter(filter).top(nil, &fl, 10)
		if got.Matched != want || got.Error != "" {
			t.Errorf("filter %q matched %d (%s), want %d", filter, got.Matched, got.Error, want)
		}
	}
	for filter, want := range map[string]string{
		"icmp":         `invalid proto "icmp"`,
		"dport=x":      `invalid dport "x"`,
		"src=host.lan": `invalid src "host.lan"`,
		"198.18.0.1":   `invalid proto "198.18.0.1"`,
		"ingress=r0":   `"ingress=r0": write tcp or udp`,
		"dport=":       `"dport=": write tcp or udp`,
	} {
		got := parseFilter(filter).top(nil, &fl, 10)
		if !strings.Contains(got.Error, want) || len(got.Flows) != 0 {
			t.Errorf("filter %q: error %q, %d flows; want %q and none", filter, got.Error, len(got.Flows), want)
		}
	}
	got := parseFilter("").top([]Rate{{BPS: 1}, {BPS: 3}, {BPS: 2}}, &fl, 2)
	if len(got.Flows) != 2 || got.Flows[0].Flow.Proto != "udp" || got.Flows[1].Flow.Family != "ipv6" {
		t.Errorf("top 2 by rate: %+v", got.Flows)
	}
}

func TestFlowRates(t *testing.T) {
	var fr flowRates
	fr.prev = map[flowKey]api.Counter{}
	now := time.Now()
	fl := &api.Flows{Flows: []api.Flow{flow("198.18.0.2:1", "198.19.0.2:2", "udp", "", 1000)}}
	fl.Flows[0].AgeSec = 2
	if r := fr.update(fl, now); r[0].BPS != 4000 { // new: 8000 bits over its 2 s
		t.Errorf("new flow %v bit/s, want 4000", r[0].BPS)
	}
	fl.Flows[0].Bytes, fl.Flows[0].Packets = 3000, 30
	if r := fr.update(fl, now.Add(time.Second)); r[0].BPS != 16000 || r[0].PPS != 20 {
		t.Errorf("rate %+v, want 16000 bit/s, 20 pkt/s", r[0])
	}
}

// The page builds everything with text nodes: no API that parses markup
// may appear in it.
func TestNoMarkupSinks(t *testing.T) {
	js := mustRead(t, "assets/app.js")
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute(\"on", "srcdoc"} {
		if strings.Contains(js, sink) {
			t.Errorf("app.js uses %s", sink)
		}
	}
	html := mustRead(t, "assets/index.html")
	for _, bad := range []string{"<script>", "style=", "onclick", "http://", "https://"} {
		if strings.Contains(html, bad) {
			t.Errorf("index.html contains %q (inline code or an outside resource)", bad)
		}
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	if tok, err := LoadToken(write("ok", "  0123456789abcdefXYZ\n", 0o600)); err != nil || tok != "0123456789abcdefXYZ" {
		t.Errorf("good token: %q, %v", tok, err)
	}
	for name, tt := range map[string]struct {
		content string
		mode    os.FileMode
		want    string
	}{
		"readable": {"0123456789abcdefXYZ", 0o644, "lets other users read it"},
		"short":    {"abc\n", 0o600, "at least 16"},
		"two":      {"0123456789abcdef 0123456789abcdef", 0o600, "one word"},
		"big":      {strings.Repeat("a", maxTokenFile+1), 0o600, "longer than"},
	} {
		if _, err := LoadToken(write(name, tt.content, tt.mode)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", name, err, tt.want)
		}
	}
	if _, err := LoadToken(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestStatusWarnsOffLoopback(t *testing.T) {
	for addr, loop := range map[string]bool{"127.0.0.1:0": true, "[::1]:0": true, "0.0.0.0:0": false} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Logf("%s: %v", addr, err)
			continue
		}
		st := Status(l, false)
		l.Close()
		if st.Loopback != loop || (st.Warning == "") != loop || !strings.HasPrefix(st.URL, "http://") {
			t.Errorf("%s: %+v", addr, st)
		}
	}
}

// top keeps the n best with a heap: it must agree with sorting everything.
func TestFlowTopMatchesSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		m := rng.IntN(300)
		fl := &api.Flows{Flows: make([]api.Flow, m)}
		rates := make([]Rate, m)
		for i := range fl.Flows {
			fl.Flows[i] = flow("198.18.0.2:1", "198.19.0.2:2", "udp", "", uint64(rng.IntN(5)))
			rates[i] = Rate{BPS: float64(rng.IntN(4))}
		}
		n := rng.IntN(60)
		idx := make([]int, m)
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(i, j int) int {
			return cmp.Or(cmp.Compare(rates[j].BPS, rates[i].BPS), cmp.Compare(fl.Flows[j].Bytes, fl.Flows[i].Bytes))
		})
		got := parseFilter("").top(rates, fl, n)
		if got.Matched != m || len(got.Flows) != min(n, m) {
			t.Fatalf("round %d: matched %d of %d, %d rows for n %d", round, got.Matched, m, len(got.Flows), n)
		}
		for k, f := range got.Flows {
			i := idx[k]
			if f.Rate != rates[i] || f.Flow.Bytes != fl.Flows[i].Bytes {
				t.Fatalf("round %d row %d: %v/%d, want %v/%d", round, k, f.Rate, f.Flow.Bytes, rates[i], fl.Flows[i].Bytes)
			}
		}
	}
}

func BenchmarkFlowTop(b *testing.B) {
	fl := &api.Flows{Flows: make([]api.Flow, 10000)}
	rates := make([]Rate, len(fl.Flows))
	for i := range fl.Flows {
		fl.Flows[i] = flow("198.18.0.2:1", "198.19.0.2:2", "udp", "", uint64(i%977))
		rates[i] = Rate{BPS: float64(i % 331)}
	}
	var fr flowRates
	fr.prev = map[flowKey]api.Counter{}
	now := time.Now()
	for b.Loop() {
		now = now.Add(time.Second)
		fr.update(fl, now)
		parseFilter("").top(rates, fl, topFlows)
	}
}

func TestNextFlowsRead(t *testing.T) {
	now := time.Now()
	for _, tt := range []struct {
		took time.Duration
		want time.Duration // after now, before the next tick at or after it
	}{
		{time.Millisecond, time.Second},            // small table: every tick
		{10 * time.Millisecond, time.Second},       // 1%: still every tick
		{50 * time.Millisecond, 5 * time.Second},   // every 5 s
		{200 * time.Millisecond, 20 * time.Second}, // a million flows: every 20 s
	} {
		next := nextFlowsRead(now, time.Second, tt.took)
		if tick := now.Add(tt.want); next.After(tick) || !next.After(tick.Add(-time.Second)) {
			t.Errorf("read took %v: next read at +%v, want the tick at +%v", tt.took, next.Sub(now), tt.want)
		}
	}
}

func TestGuardEndpoints(t *testing.T) {
	const token = "0123456789abcdef"
	f := newFake()
	base := serve(t, f, Options{Write: true, Token: token})
	res, body := get(t, base+"/api/v1/guard?top=1")
	var g api.Guard
	if err := json.Unmarshal([]byte(body), &g); err != nil || res.StatusCode != 200 || g.DenyEntries != 2 || len(g.Deny) != 2 {
		t.Errorf("guard: %d %s (%v)", res.StatusCode, body, err)
	}
	add := base + "/api/v1/guard/add?list=deny&prefix=198.18.9.0/24"
	if res, body := do(t, http.MethodPost, add); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("guard add without the token: %d %s", res.StatusCode, body)
	}
	if res, body := do(t, http.MethodPost, add, "Authorization", "Bearer "+token); res.StatusCode != 200 || !strings.Contains(body, "198.18.9.0/24") {
		t.Errorf("guard add with the token: %d %s", res.StatusCode, body)
	}
	if res, body := do(t, http.MethodPost, base+"/api/v1/guard/del?list=allow&prefix=fd00::/8", "Authorization", "Bearer "+token); res.StatusCode != 200 {
		t.Errorf("guard del with the token: %d %s", res.StatusCode, body)
	}
	if got, want := f.guardChanges(), []string{"true deny [198.18.9.0/24]", "false allow [fd00::/8]"}; !slices.Equal(got, want) {
		t.Errorf("guard changes %q, want %q", got, want)
	}

	// Read-only: no change gets through.
	ro := newFake()
	base = serve(t, ro, Options{})
	if res, body := do(t, http.MethodPost, base+"/api/v1/guard/add?list=deny&prefix=198.18.9.0/24", "Authorization", "Bearer "+token); res.StatusCode != http.StatusForbidden || len(ro.guardChanges()) != 0 {
		t.Errorf("read-only guard add: %d %s, changes %q", res.StatusCode, body, ro.guardChanges())
	}

	// A backend without a guard: the API's 404, and no guard in the ticks.
	base = serve(t, noGuard{newFake()}, Options{})
	if res, body := get(t, base+"/api/v1/guard"); res.StatusCode != http.StatusNotFound {
		t.Errorf("guard of a backend without one: %d %s", res.StatusCode, body)
	}
	s := openStream(t, base+"/events")
	tick := s.until(t, "tick", func(string) bool { return true })
	if strings.Contains(tick, `"guard"`) {
		t.Errorf("tick of a backend without a guard has one: %s", tick)
	}
}

func TestGuardInTicks(t *testing.T) {
	f := newFake()
	base := serve(t, f, Options{})
	s := openStream(t, base+"/events")
	var tick Tick
	s.until(t, "tick", func(d string) bool {
		tick = Tick{}
		if err := json.Unmarshal([]byte(d), &tick); err != nil {
			t.Fatal(err)
		}
		return tick.Guard != nil && tick.GuardDrops["r0"]["deny"] > 0
	})
	if len(tick.Guard.Deny) != 2 || len(tick.Guard.Top) != 1 || len(tick.GuardDrops["r0"]) != 1 {
		t.Errorf("guard in the tick: %+v, drops %v", tick.Guard, tick.GuardDrops)
	}
}
