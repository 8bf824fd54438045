package metrics

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fastpath-router/fastpath/internal/api"
)

// fakeSource answers from fixed values, or with an error per method.
// block, when set, makes every call wait for it (or for ctx, if honorCtx).
type fakeSource struct {
	status                        *api.Status
	stats                         *api.Stats
	flows                         *api.Flows
	statusErr, statsErr, flowsErr error
	block                         <-chan struct{}
	honorCtx                      bool
}

func (f *fakeSource) wait(ctx context.Context) error {
	if f.block == nil {
		return nil
	}
	if f.honorCtx {
		select {
		case <-f.block:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	<-f.block
	return nil
}

func (f *fakeSource) Status(ctx context.Context) (*api.Status, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	return f.status, f.statusErr
}

func (f *fakeSource) Stats(ctx context.Context) (*api.Stats, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	return f.stats, f.statsErr
}

func (f *fakeSource) Flows(ctx context.Context, q api.FlowQuery) (*api.Flows, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	if f.flowsErr != nil || f.flows == nil {
		return f.flows, f.flowsErr
	}
	return q.Apply(f.flows), nil
}

var _ Source = (*fakeSource)(nil)

func reasons(icmp, noNeigh, notIP, ttl uint64) map[string]uint64 {
	return map[string]uint64{"icmp": icmp, "no_neigh": noNeigh, "not_ip": notIP, "ttl": ttl}
}

// newFake returns a source with two attached interfaces, one off and one
// missing, as the daemon's backend would report them.
func newFake() *fakeSource {
	return &fakeSource{
		status: &api.Status{
			Version:   "1.2.3",
			StartedAt: time.Date(2025, 1, 2, 3, 4, 5, 500_000_000, time.UTC),
			Interfaces: []api.InterfaceStatus{
				{Name: "wan0", Mode: "offload", Attach: "auto", AttachedAs: "xdp", State: api.StateAttached},
				{Name: "lan0", Mode: "offload", Attach: "tc", AttachedAs: "tc", State: api.StateAttached},
				{Name: "mgmt0", Mode: "off", Attach: "auto", State: api.StateOff},
				{Name: "lab0", Mode: "route", Attach: "xdp", State: api.StateMissing},
			},
		},
		stats: &api.Stats{Interfaces: []api.InterfaceStats{
			{
				Name: "wan0", Ifindex: 2,
				Forwarded:  api.Counter{Packets: 1000, Bytes: 1_500_000},
				Passed:     api.Counter{Packets: 10, Bytes: 900},
				FlowsAdded: 4, FlowsRemoved: 1, EventsLost: 3,
				PassReasons: reasons(0, 0, 3, 7),
				Dropped:     api.Counter{Packets: 2, Bytes: 132},
				DropReasons: map[string]uint64{"tcp_out_of_window": 2},
			},
			{
				Name: "lan0", Ifindex: 3,
				Forwarded:  api.Counter{Packets: 2000, Bytes: 3_000_000},
				Passed:     api.Counter{Packets: 7, Bytes: 700},
				FlowsAdded: 4, FlowsRemoved: 2,
				PassReasons: reasons(2, 5, 0, 0),
				DropReasons: map[string]uint64{"tcp_out_of_window": 0},
			},
		}},
		flows: &api.Flows{Capacity: 65536, Flows: make([]api.Flow, 3)},
	}
}

// wantNetlink is what the netlink watches report in both expositions below.
const wantNetlink = `# HELP fastpath_netlink_overruns_total Times a kernel watch lost messages because the kernel outpaced the daemon (ENOBUFS); each is followed by a resync.
# TYPE fastpath_netlink_overruns_total counter
fastpath_netlink_overruns_total{watch="links"} 0
fastpath_netlink_overruns_total{watch="route_mtus"} 2
# HELP fastpath_route_mtu_resyncs_total Full reads of the routing tables for the route MTU mirror after start, by reason (overrun, links).
# TYPE fastpath_route_mtu_resyncs_total counter
fastpath_route_mtu_resyncs_total{reason="links"} 1
fastpath_route_mtu_resyncs_total{reason="overrun"} 2
# HELP fastpath_route_mtu_routes Routes with an MTU metric the datapath mirrors (all tables, IPv4 and IPv6).
# TYPE fastpath_route_mtu_routes gauge
fastpath_route_mtu_routes 3
`

const wantAll = `
# HELP fastpath_build_info Always 1; the labels say which build runs: version, VCS revision and Go version.
# TYPE fastpath_build_info gauge
fastpath_build_info{BUILD,version="v0.9.0"} 1
# HELP fastpath_daemon_start_time_seconds When the running daemon started, in seconds since the Unix epoch.
# TYPE fastpath_daemon_start_time_seconds gauge
fastpath_daemon_start_time_seconds 1735787045.5
# HELP fastpath_interface_up 1 if the datapath is attached to the configured interface, 0 if not (mode off, missing, or attach failed); hook is how it is attached (xdp, xdp-generic, tc) or none.
# TYPE fastpath_interface_up gauge
fastpath_interface_up{device="lab0",hook="none",interface="lab0",mode="route"} 0
fastpath_interface_up{device="mgmt0",hook="none",interface="mgmt0",mode="off"} 0
fastpath_interface_up{device="lan0",hook="tc",interface="lan0",mode="offload"} 1
fastpath_interface_up{device="wan0",hook="xdp",interface="wan0",mode="offload"} 1
` + wantNetlink + `# HELP fastpath_datapath_forwarded_packets_total Packets arriving on the interface that fastpath forwarded itself.
# TYPE fastpath_datapath_forwarded_packets_total counter
fastpath_datapath_forwarded_packets_total{device="lan0",interface="lan0"} 2000
fastpath_datapath_forwarded_packets_total{device="wan0",interface="wan0"} 1000
# HELP fastpath_datapath_events_lost_total Flow events of the interface the datapath dropped because the daemon did not read them in time.
# TYPE fastpath_datapath_events_lost_total counter
fastpath_datapath_events_lost_total{device="lan0",interface="lan0"} 0
fastpath_datapath_events_lost_total{device="wan0",interface="wan0"} 3
# HELP fastpath_datapath_forwarded_bytes_total Bytes (whole frames) arriving on the interface that fastpath forwarded itself.
# TYPE fastpath_datapath_forwarded_bytes_total counter
fastpath_datapath_forwarded_bytes_total{device="lan0",interface="lan0"} 3e+06
fastpath_datapath_forwarded_bytes_total{device="wan0",interface="wan0"} 1.5e+06
# HELP fastpath_datapath_passed_packets_total Packets arriving on the interface that fastpath passed to the kernel, by reason (see docs/counters.md).
# TYPE fastpath_datapath_passed_packets_total counter
fastpath_datapath_passed_packets_total{device="lan0",interface="lan0",reason="icmp"} 2
fastpath_datapath_passed_packets_total{device="lan0",interface="lan0",reason="no_neigh"} 5
fastpath_datapath_passed_packets_total{device="lan0",interface="lan0",reason="not_ip"} 0
fastpath_datapath_passed_packets_total{device="lan0",interface="lan0",reason="ttl"} 0
fastpath_datapath_passed_packets_total{device="wan0",interface="wan0",reason="icmp"} 0
fastpath_datapath_passed_packets_total{device="wan0",interface="wan0",reason="no_neigh"} 0
fastpath_datapath_passed_packets_total{device="wan0",interface="wan0",reason="not_ip"} 3
fastpath_datapath_passed_packets_total{device="wan0",interface="wan0",reason="ttl"} 7
# HELP fastpath_datapath_passed_bytes_total Bytes (whole frames) arriving on the interface that fastpath passed to the kernel.
# TYPE fastpath_datapath_passed_bytes_total counter
fastpath_datapath_passed_bytes_total{device="lan0",interface="lan0"} 700
fastpath_datapath_passed_bytes_total{device="wan0",interface="wan0"} 900
# HELP fastpath_datapath_dropped_packets_total Packets arriving on the interface that the datapath dropped itself, by reason (see docs/counters.md; the guard's drops are fastpath_guard_dropped_packets_total).
# TYPE fastpath_datapath_dropped_packets_total counter
fastpath_datapath_dropped_packets_total{device="lan0",reason="tcp_out_of_window"} 0
fastpath_datapath_dropped_packets_total{device="wan0",reason="tcp_out_of_window"} 2
# HELP fastpath_datapath_dropped_bytes_total Bytes (whole frames) arriving on the interface that the datapath dropped itself.
# TYPE fastpath_datapath_dropped_bytes_total counter
fastpath_datapath_dropped_bytes_total{device="lan0"} 0
fastpath_datapath_dropped_bytes_total{device="wan0"} 132
# HELP fastpath_flows_added_total Flows (one per direction of a connection) put into the flow cache by packets arriving on the interface (offload mode).
# TYPE fastpath_flows_added_total counter
fastpath_flows_added_total{device="lan0",interface="lan0"} 4
fastpath_flows_added_total{device="wan0",interface="wan0"} 4
# HELP fastpath_flows_removed_total Flows (one per direction) of the interface that left the flow cache: TCP FIN/RST, conntrack entry gone or destroyed, idle (not LRU replacements).
# TYPE fastpath_flows_removed_total counter
fastpath_flows_removed_total{device="lan0",interface="lan0"} 2
fastpath_flows_removed_total{device="wan0",interface="wan0"} 1
# HELP fastpath_flows_active Flows (one per direction of a connection) in the flow cache now.
# TYPE fastpath_flows_active gauge
fastpath_flows_active 3
# HELP fastpath_flows_capacity Flows the flow cache can hold (flows.max_entries).
# TYPE fastpath_flows_capacity gauge
fastpath_flows_capacity 65536
`

func TestCollect(t *testing.T) {
	c := newCollector(t.Context(), newFake(), "v0.9.0", time.Second)
	if err := testutil.CollectAndCompare(c, strings.NewReader(withBuild(wantAll))); err != nil {
		t.Error(err)
	}
}

// Every scrape reads the source anew: counters move with the datapath.
func TestCollectReadsAtScrapeTime(t *testing.T) {
	src := newFake()
	c := newCollector(t.Context(), src, "v0.9.0", time.Second)
	const name = "fastpath_datapath_forwarded_packets_total"
	want := func(wan0 int) string {
		return "# HELP " + name + " Packets arriving on the interface that fastpath forwarded itself.\n" +
			"# TYPE " + name + " counter\n" +
			name + `{device="lan0",interface="lan0"} 2000` + "\n" +
			name + `{device="wan0",interface="wan0"} ` + strconv.Itoa(wan0) + "\n"
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want(1000)), name); err != nil {
		t.Error(err)
	}
	src.stats.Interfaces[0].Forwarded.Packets = 1234
	if err := testutil.CollectAndCompare(c, strings.NewReader(want(1234)), name); err != nil {
		t.Error(err)
	}
}

// With no interfaces and an empty cache, the unlabelled families are still
// there and nothing fails.
func TestCollectEmpty(t *testing.T) {
	src := &fakeSource{
		status: &api.Status{},
		stats:  &api.Stats{},
		flows:  &api.Flows{Capacity: 1024},
	}
	c := newCollector(t.Context(), src, "dev", time.Second)
	want := `
# HELP fastpath_build_info Always 1; the labels say which build runs: version, VCS revision and Go version.
# TYPE fastpath_build_info gauge
fastpath_build_info{BUILD,version="dev"} 1
# HELP fastpath_flows_active Flows (one per direction of a connection) in the flow cache now.
# TYPE fastpath_flows_active gauge
fastpath_flows_active 0
# HELP fastpath_flows_capacity Flows the flow cache can hold (flows.max_entries).
# TYPE fastpath_flows_capacity gauge
fastpath_flows_capacity 1024
` + wantNetlink
	if err := testutil.CollectAndCompare(c, strings.NewReader(withBuild(want))); err != nil {
		t.Error(err)
	}
}

func TestLint(t *testing.T) {
	c := newCollector(t.Context(), newFake(), "v0.9.0", time.Second)
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// A failing source method fails the families it feeds, with its error;
// the others are still collected, and nothing panics.
func TestCollectSourceErrors(t *testing.T) {
	boom := errors.New("read map fp_if_stats: boom")
	for _, tt := range []struct {
		name   string
		fail   func(*fakeSource)
		failed []string // families that must be missing
		err    string
	}{
		{"status", func(f *fakeSource) { f.statusErr = boom },
			[]string{"fastpath_daemon_start_time_seconds", "fastpath_interface_up"}, "read status: " + boom.Error()},
		{"stats", func(f *fakeSource) { f.statsErr = boom },
			[]string{"fastpath_datapath_forwarded_packets_total", "fastpath_datapath_passed_packets_total", "fastpath_flows_added_total"},
			"read stats: " + boom.Error()},
		{"flows", func(f *fakeSource) { f.flowsErr = boom },
			[]string{"fastpath_flows_active", "fastpath_flows_capacity"}, "read flows: " + boom.Error()},
		{"nil stats", func(f *fakeSource) { f.stats = nil },
			[]string{"fastpath_datapath_forwarded_bytes_total"}, "read stats: no data"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := newFake()
			tt.fail(src)
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(newCollector(t.Context(), src, "v0.9.0", time.Second))
			mfs, err := reg.Gather()
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Gather error %v, want one containing %q", err, tt.err)
			}
			got := map[string]bool{}
			for _, mf := range mfs {
				got[mf.GetName()] = true
			}
			for _, name := range tt.failed {
				if got[name] {
					t.Errorf("%s collected despite the error", name)
				}
			}
			if !got["fastpath_build_info"] {
				t.Errorf("fastpath_build_info missing; the other families must still be collected")
			}
		})
	}
}

// The source sees the collector's deadline.
func TestCollectTimeout(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	src := newFake()
	src.block, src.honorCtx = block, true
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(t.Context(), src, "v0.9.0", 10*time.Millisecond))
	_, err := reg.Gather()
	if !errors.Is(err, context.DeadlineExceeded) && (err == nil || !strings.Contains(err.Error(), "context deadline exceeded")) {
		t.Fatalf("Gather error %v, want a deadline error", err)
	}
}

// withBuild fills in the build_info labels this test binary reports
// (Go does not stamp test binaries with a VCS revision).
func withBuild(text string) string {
	rev, gover := buildRevision()
	return strings.ReplaceAll(text, "BUILD", fmt.Sprintf("goversion=%q,revision=%q", gover, rev))
}

// ControlPlane makes the fake a ControlSource.
func (f *fakeSource) ControlPlane() ControlPlane {
	return ControlPlane{
		NetlinkOverruns: map[string]uint64{"links": 0, "route_mtus": 2},
		RouteMTUResyncs: map[string]uint64{"links": 1, "overrun": 2},
		RouteMTURoutes:  3,
	}
}

var _ ControlSource = (*fakeSource)(nil)
