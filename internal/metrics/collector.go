package metrics

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fastpath-router/fastpath/internal/api"
)

// family describes one metric family the collector exports. The table in
// newCollector is the only list of them; docs/metrics.md is checked
// against what the collector produces.
type family struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
}

// collector reads the daemon at every collection, so values are those of
// the moment of the scrape, straight from the per-CPU BPF maps.
type collector struct {
	// ctx bounds the source calls of every collection: Collect has no
	// context of its own. It is the server's lifetime, not a request's.
	ctx     context.Context
	src     Source
	version string
	timeout time.Duration

	buildInfo      family
	startTime      family
	interfaceUp    family
	fwdPackets     family
	fwdBytes       family
	passPackets    family
	passBytes      family
	dropPackets    family
	dropBytes      family
	flowsAdded     family
	flowsRemoved   family
	eventsLost     family
	flowsActive    family
	flowsCapacity  family
	overruns       family
	resyncs        family
	mtuRoutes      family
	statusFamilies []family
	statsFamilies  []family
	flowsFamilies  []family
}

func newCollector(ctx context.Context, src Source, version string, timeout time.Duration) *collector {
	f := func(name, help string, typ prometheus.ValueType, labels ...string) family {
		return family{desc: prometheus.NewDesc(name, help, labels, nil), typ: typ}
	}
	const (
		counter = prometheus.CounterValue
		gauge   = prometheus.GaugeValue
	)
	// dev is the per-interface label: device, as node_exporter names it,
	// so the two join without relabelling; interface, the name before,
	// stays for one release (docs/metrics.md).
	dev := func(more ...string) []string { return append([]string{"device", "interface"}, more...) }
	c := &collector{
		ctx: ctx, src: src, version: version, timeout: timeout,

		buildInfo: f("fastpath_build_info",
			"Always 1; the labels say which build runs: version, VCS revision and Go version.", gauge, "version", "revision", "goversion"),
		startTime: f("fastpath_daemon_start_time_seconds",
			"When the running daemon started, in seconds since the Unix epoch.", gauge),
		interfaceUp: f("fastpath_interface_up",
			"1 if the datapath is attached to the configured interface, 0 if not (mode off, missing, or attach failed); hook is how it is attached (xdp, xdp-generic, tc) or none.",
			gauge, dev("mode", "hook")...),

		fwdPackets: f("fastpath_datapath_forwarded_packets_total",
			"Packets arriving on the interface that fastpath forwarded itself.", counter, dev()...),
		fwdBytes: f("fastpath_datapath_forwarded_bytes_total",
			"Bytes (whole frames) arriving on the interface that fastpath forwarded itself.", counter, dev()...),
		passPackets: f("fastpath_datapath_passed_packets_total",
			"Packets arriving on the interface that fastpath passed to the kernel, by reason (see docs/counters.md).",
			counter, dev("reason")...),
		passBytes: f("fastpath_datapath_passed_bytes_total",
			"Bytes (whole frames) arriving on the interface that fastpath passed to the kernel.", counter, dev()...),
		// New families carry device only: interface is deprecated.
		dropPackets: f("fastpath_datapath_dropped_packets_total",
			"Packets arriving on the interface that the datapath dropped itself, by reason (see docs/counters.md; the guard's drops are fastpath_guard_dropped_packets_total).",
			counter, "device", "reason"),
		dropBytes: f("fastpath_datapath_dropped_bytes_total",
			"Bytes (whole frames) arriving on the interface that the datapath dropped itself.", counter, "device"),
		flowsAdded: f("fastpath_flows_added_total",
			"Flows (one per direction of a connection) put into the flow cache by packets arriving on the interface (offload mode).",
			counter, dev()...),
		flowsRemoved: f("fastpath_flows_removed_total",
			"Flows (one per direction) of the interface that left the flow cache: TCP FIN/RST, conntrack entry gone or destroyed, idle (not LRU replacements).",
			counter, dev()...),
		eventsLost: f("fastpath_datapath_events_lost_total",
			"Flow events of the interface the datapath dropped because the daemon did not read them in time.",
			counter, dev()...),

		flowsActive: f("fastpath_flows_active",
			"Flows (one per direction of a connection) in the flow cache now.", gauge),
		flowsCapacity: f("fastpath_flows_capacity",
			"Flows the flow cache can hold (flows.max_entries).", gauge),

		overruns: f("fastpath_netlink_overruns_total",
			"Times a kernel watch lost messages because the kernel outpaced the daemon (ENOBUFS); each is followed by a resync.",
			counter, "watch"),
		resyncs: f("fastpath_route_mtu_resyncs_total",
			"Full reads of the routing tables for the route MTU mirror after start, by reason (overrun, links).",
			counter, "reason"),
		mtuRoutes: f("fastpath_route_mtu_routes",
			"Routes with an MTU metric the datapath mirrors (all tables, IPv4 and IPv6).", gauge),
	}
	c.statusFamilies = []family{c.startTime, c.interfaceUp}
	c.statsFamilies = []family{c.fwdPackets, c.fwdBytes, c.passPackets, c.passBytes, c.dropPackets, c.dropBytes,
		c.flowsAdded, c.flowsRemoved, c.eventsLost}
	c.flowsFamilies = []family{c.flowsActive, c.flowsCapacity}
	return c
}

func (c *collector) families() []family {
	return slices.Concat([]family{c.buildInfo}, c.statusFamilies, c.statsFamilies, c.flowsFamilies,
		c.controlFamilies())
}

// controlFamilies are served only when the source is a ControlSource.
func (c *collector) controlFamilies() []family {
	if _, ok := c.src.(ControlSource); !ok {
		return nil
	}
	return []family{c.overruns, c.resyncs, c.mtuRoutes}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range c.families() {
		ch <- f.desc
	}
}

// Collect implements prometheus.Collector. A source that fails makes the
// families it feeds invalid, so the scrape reports the error; the other
// families are still collected.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	rev, gover := buildRevision()
	emit(ch, c.buildInfo, 1, c.version, rev, gover)

	ctx, cancel := context.WithTimeout(c.ctx, c.timeout)
	defer cancel()

	if st, err := c.src.Status(ctx); err != nil || st == nil {
		invalid(ch, c.statusFamilies, "read status", err)
	} else {
		c.collectStatus(ch, st)
	}
	if st, err := c.src.Stats(ctx); err != nil || st == nil {
		invalid(ch, c.statsFamilies, "read stats", err)
	} else {
		c.collectStats(ch, st)
	}
	if fl, err := c.src.Flows(ctx, api.FlowQuery{Limit: api.CountOnly}); err != nil || fl == nil {
		invalid(ch, c.flowsFamilies, "read flows", err)
	} else {
		emit(ch, c.flowsActive, float64(fl.Total))
		emit(ch, c.flowsCapacity, float64(fl.Capacity))
	}
	if cs, ok := c.src.(ControlSource); ok {
		cp := cs.ControlPlane()
		for watch, n := range cp.NetlinkOverruns {
			emit(ch, c.overruns, float64(n), watch)
		}
		for reason, n := range cp.RouteMTUResyncs {
			emit(ch, c.resyncs, float64(n), reason)
		}
		emit(ch, c.mtuRoutes, float64(cp.RouteMTURoutes))
	}
}

func (c *collector) collectStatus(ch chan<- prometheus.Metric, st *api.Status) {
	if !st.StartedAt.IsZero() {
		emit(ch, c.startTime, float64(st.StartedAt.UnixNano())/1e9)
	}
	for _, i := range st.Interfaces {
		up := 0.0
		if i.State == api.StateAttached {
			up = 1
		}
		hook := i.AttachedAs
		if hook == "" {
			hook = "none"
		}
		emit(ch, c.interfaceUp, up, i.Name, i.Name, i.Mode, hook)
	}
}

func (c *collector) collectStats(ch chan<- prometheus.Metric, st *api.Stats) {
	for _, i := range st.Interfaces {
		emit(ch, c.fwdPackets, float64(i.Forwarded.Packets), i.Name, i.Name)
		emit(ch, c.fwdBytes, float64(i.Forwarded.Bytes), i.Name, i.Name)
		emit(ch, c.passBytes, float64(i.Passed.Bytes), i.Name, i.Name)
		emit(ch, c.flowsAdded, float64(i.FlowsAdded), i.Name, i.Name)
		emit(ch, c.flowsRemoved, float64(i.FlowsRemoved), i.Name, i.Name)
		emit(ch, c.eventsLost, float64(i.EventsLost), i.Name, i.Name)
		for reason, n := range i.PassReasons {
			emit(ch, c.passPackets, float64(n), i.Name, i.Name, reason)
		}
		emit(ch, c.dropBytes, float64(i.Dropped.Bytes), i.Name)
		for reason, n := range i.DropReasons {
			emit(ch, c.dropPackets, float64(n), i.Name, reason)
		}
	}
}

// buildRevision is the VCS revision the go command embedded in the binary
// ("unknown" without one; "-dirty" when built from a modified tree) and the
// Go version it was built with.
func buildRevision() (revision, goversion string) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown", runtime.Version()
	}
	revision = "unknown"
	dirty := false
	for _, st := range bi.Settings {
		switch st.Key {
		case "vcs.revision":
			revision = st.Value
		case "vcs.modified":
			dirty = st.Value == "true"
		}
	}
	if dirty && revision != "unknown" {
		revision += "-dirty"
	}
	return revision, bi.GoVersion
}

// emit sends one sample. NewConstMetric fails only on a label count that
// does not match the family, which is reported as an invalid metric
// rather than a panic.
func emit(ch chan<- prometheus.Metric, f family, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(f.desc, f.typ, v, labels...)
	if err != nil {
		m = prometheus.NewInvalidMetric(f.desc, err)
	}
	ch <- m
}

// invalid marks every family in fs as failed for this collection.
func invalid(ch chan<- prometheus.Metric, fs []family, what string, err error) {
	if err == nil {
		err = errors.New("no data")
	}
	err = fmt.Errorf("%s: %w", what, err)
	for _, f := range fs {
		ch <- prometheus.NewInvalidMetric(f.desc, err)
	}
}
