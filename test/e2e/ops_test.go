package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/nsutil"
	"github.com/fastpath-router/fastpath/internal/traffic"
)

// TestEventsAndMetrics: a real daemon streams flow events for an offloaded
// flow (added, then removed when conntrack forgets it), and serves
// Prometheus metrics whose counters match the API's.
func TestEventsAndMetrics(t *testing.T) {
	ctx := testContext(t)
	l := newLab(t)
	if err := l.Masquerade(ctx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	socket := filepath.Join(dir, "api.sock")
	cfg := filepath.Join(dir, "fastpath.yaml")
	body := fmt.Sprintf(`version: 1
interfaces:
  - {name: %s, attach: tc}
  - {name: %s, attach: tc}
metrics:
  listen: 127.0.0.1:9469
api:
  socket: %s
`, l.RtrIn, l.RtrOut, socket)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemonWithConfig(t, l.Rtr, cfg, socket)
	if _, err := d.p.WaitReady(ctx, d.c, readyTimeout); err != nil {
		t.Fatal(err)
	}

	// Subscribe first: events are not replayed.
	evctx, stopEvents := context.WithCancel(ctx)
	defer stopEvents()
	events := make(chan api.Event, 256)
	go d.c.Events(evctx, func(e api.Event) error {
		select {
		case events <- e:
		default:
		}
		return nil
	})
	// The subscription is live only once the server has taken the request,
	// which the client cannot see: offload fresh flows (a new port each
	// time) until one's flow_added arrives, a bounded number of times.
	var added api.Event
	for attempt := 0; ; attempt++ {
		if _, err := traffic.UDPStream(ctx, l.Gen, l.Sink, netip.AddrPortFrom(l.SinkAddr4, 0), 100, 256, time.Millisecond); err != nil {
			t.Fatal(err)
		}
		e, ok := waitEvent(events, 2*time.Second, func(e api.Event) bool {
			return e.Kind == api.EventFlowAdded && e.Flow != nil && e.Flow.Proto == "udp" &&
				e.Flow.In.Dst.Addr() == l.SinkAddr4 && e.Flow.NAT == "snat"
		})
		if ok {
			added = e
			break
		}
		if attempt == 4 {
			t.Fatal("no flow_added event for 5 offloaded UDP flows")
		}
	}
	if added.Flow.Out.Src.Addr() != l.RtrOutAddr4 || added.Interface != l.RtrIn {
		t.Errorf("flow_added event: %+v, want SNAT to %s on %s", added.Flow, l.RtrOutAddr4, l.RtrIn)
	}
	t.Logf("event %s %s -> %s as %s", added.Kind, added.Flow.In.Src, added.Flow.In.Dst, added.Flow.Out.Src)

	// Metrics agree with the API.
	st := d.counters(t, l.Rtr)
	text := scrape(t, l.Rtr, "127.0.0.1:9469")
	for _, s := range st.stats.Interfaces {
		want := fmt.Sprintf(`fastpath_datapath_forwarded_packets_total{device=%q,interface=%q} `, s.Name, s.Name)
		i := strings.Index(text, want)
		if i < 0 {
			t.Errorf("metrics lack %s", want)
			continue
		}
		var got uint64
		fmt.Sscan(text[i+len(want):], &got)
		// read before the scrape, so the metric is at least the API's value
		if got < s.Forwarded.Packets || (s.Name == l.RtrIn && got == 0) {
			t.Errorf("%s: metric %d, API %d", want, got, s.Forwarded.Packets)
		}
	}
	for _, name := range []string{"fastpath_flows_active", "fastpath_build_info", `fastpath_interface_up{device="r0",hook="tc",interface="r0",mode="offload"} 1`} {
		if !strings.Contains(text, name) {
			t.Errorf("metrics lack %s", name)
		}
	}
}

// waitEvent returns the first event that matches within d.
func waitEvent(events <-chan api.Event, d time.Duration, match func(api.Event) bool) (api.Event, bool) {
	deadline := time.After(d)
	for {
		select {
		case e := <-events:
			if match(e) {
				return e, true
			}
		case <-deadline:
			return api.Event{}, false
		}
	}
}

// scrape GETs /metrics from addr inside netns: the connection is made by a
// thread inside that namespace.
func scrape(t *testing.T, netns, addr string) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			var c net.Conn
			err := nsutil.Do(netns, func() (err error) {
				c, err = (&net.Dialer{}).DialContext(ctx, network, a)
				return err
			})
			return c, err
		},
	}}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %d, %v", resp.StatusCode, errors.Join(err))
	}
	return string(b)
}
