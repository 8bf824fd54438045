package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// waitTimeout bounds how long a test waits for the server; reaching it
// is a failure, not a synchronisation.
const waitTimeout = 10 * time.Second

// startServer serves src on a free loopback port with the given scrape
// timeout and returns the base URL and a stop function that shuts the
// server down and checks Serve's result.
func startServer(t *testing.T, src Source, timeout time.Duration) (string, func()) {
	t.Helper()
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, l, src, "v0.9.0", nil, timeout) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v after ctx ended, want nil", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Serve did not return within %v of ctx ending", waitTimeout)
		}
	}
	t.Cleanup(stop)
	return "http://" + l.Addr().String(), stop
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp, string(body)
}

func TestServe(t *testing.T) {
	base, stop := startServer(t, newFake(), time.Second)

	resp, body := get(t, base+"/metrics")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want the text exposition format", ct)
	}
	// The body must parse as the text format and hold the values.
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	for name, want := range map[string]float64{
		"fastpath_build_info":     1,
		"fastpath_flows_active":   3,
		"fastpath_flows_capacity": 65536,
	} {
		mf, ok := mfs[name]
		if !ok || len(mf.GetMetric()) != 1 {
			t.Errorf("%s: missing or not one sample", name)
			continue
		}
		if got := mf.GetMetric()[0].GetGauge().GetValue(); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for _, line := range []string{
		`fastpath_build_info{BUILD,version="v0.9.0"} 1`,
		`fastpath_datapath_passed_packets_total{device="wan0",interface="wan0",reason="ttl"} 7`,
		`fastpath_datapath_dropped_packets_total{device="wan0",reason="tcp_out_of_window"} 2`,
		`fastpath_interface_up{device="wan0",hook="xdp",interface="wan0",mode="offload"} 1`,
	} {
		if line = withBuild(line); !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	for _, prefix := range []string{"go_goroutines ", "process_start_time_seconds "} {
		if !strings.Contains(body, "\n"+prefix) {
			t.Errorf("/metrics lacks the standard %s", strings.TrimSpace(prefix))
		}
	}

	if resp, body := get(t, base+"/"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "/metrics") {
		t.Errorf("GET /: %s %q, want 200 pointing at /metrics", resp.Status, body)
	}
	if resp, _ := get(t, base+"/nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope: %s, want 404", resp.Status)
	}

	stop()
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), waitTimeout); err == nil {
		c.Close()
		t.Errorf("still accepting connections after Serve returned")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after shutdown: %v, want connection refused", err)
	}
}

// A failing source fails the scrape (HTTP 500, so Prometheus's up is 0),
// naming the error.
func TestServeSourceError(t *testing.T) {
	src := newFake()
	src.statsErr = errors.New("read map fp_if_stats: boom")
	base, _ := startServer(t, src, time.Second)
	resp, body := get(t, base+"/metrics")
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "read stats: read map fp_if_stats: boom") {
		t.Errorf("GET /metrics: %s %q, want 500 naming the error", resp.Status, body)
	}
}

// A source that honours its context fails the scrape at the deadline; one
// that ignores it still gets an answer (503) shortly after.
func TestServeScrapeTimeout(t *testing.T) {
	for _, tt := range []struct {
		name     string
		honorCtx bool
		status   int
		body     string
	}{
		{"source honours ctx", true, http.StatusInternalServerError, "context deadline exceeded"},
		{"source ignores ctx", false, http.StatusServiceUnavailable, "Exceeded configured timeout"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			block := make(chan struct{})
			src := newFake()
			src.block, src.honorCtx = block, tt.honorCtx
			base, stop := startServer(t, src, 50*time.Millisecond)
			// Runs before startServer's cleanup: unblock the abandoned
			// collection so the shutdown does not wait for it.
			t.Cleanup(func() { close(block); stop() })
			resp, body := get(t, base+"/metrics")
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.body) {
				t.Errorf("GET /metrics: %s %q, want %d containing %q", resp.Status, body, tt.status, tt.body)
			}
		})
	}
}

func TestListen(t *testing.T) {
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Listen(l.Addr().String())
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.HasPrefix(err.Error(), "metrics.listen: ") {
		t.Errorf("Listen on a taken port: %v, want metrics.listen: ... address already in use", err)
	}
	if _, err := Listen(""); err == nil {
		t.Errorf("Listen(\"\") succeeded; an empty address must not listen anywhere")
	}
}
