package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fastpath-router/fastpath/internal/api"
)

// GuardSource is what the guard's metrics need; a Source that lacks it
// serves none.
type GuardSource interface {
	Guard(ctx context.Context, q api.GuardQuery) (*api.Guard, error)
}

// guardCollector exports the guard's counters (docs/guard.md). Per list
// entry and per source counts stay in the API: they are unbounded labels.
type guardCollector struct {
	ctx     context.Context
	src     GuardSource
	timeout time.Duration

	dropped, droppedBytes, allowed, entries family
}

func newGuardCollector(ctx context.Context, src GuardSource, timeout time.Duration) *guardCollector {
	f := func(name, help string, typ prometheus.ValueType, labels ...string) family {
		return family{desc: prometheus.NewDesc(name, help, labels, nil), typ: typ}
	}
	return &guardCollector{ctx: ctx, src: src, timeout: timeout,
		dropped: f("fastpath_guard_dropped_packets_total",
			"Packets arriving on the interface that the guard dropped, by reason (docs/guard.md).",
			prometheus.CounterValue, "interface", "reason"),
		droppedBytes: f("fastpath_guard_dropped_bytes_total",
			"Bytes (whole frames) arriving on the interface that the guard dropped, by reason.",
			prometheus.CounterValue, "interface", "reason"),
		allowed: f("fastpath_guard_allowed_packets_total",
			"Packets arriving on the interface that the guard's allow list exempted from the deny list and every limit.",
			prometheus.CounterValue, "interface"),
		entries: f("fastpath_guard_list_entries",
			"Prefixes in the guard's allow or deny list now (config and run-time entries).",
			prometheus.GaugeValue, "list"),
	}
}

func (c *guardCollector) families() []family {
	return []family{c.dropped, c.droppedBytes, c.allowed, c.entries}
}

// Describe implements prometheus.Collector.
func (c *guardCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range c.families() {
		ch <- f.desc
	}
}

// Collect implements prometheus.Collector.
func (c *guardCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(c.ctx, c.timeout)
	defer cancel()
	g, err := c.src.Guard(ctx, api.GuardQuery{})
	if err != nil || g == nil {
		invalid(ch, c.families(), "read guard", err)
		return
	}
	for _, i := range g.Interfaces {
		for reason, n := range i.Dropped {
			emit(ch, c.dropped, float64(n), i.Name, reason)
			emit(ch, c.droppedBytes, float64(i.DroppedBytes[reason]), i.Name, reason)
		}
		emit(ch, c.allowed, float64(i.Allowed), i.Name)
	}
	emit(ch, c.entries, float64(g.AllowEntries), "allow")
	emit(ch, c.entries, float64(g.DenyEntries), "deny")
}
