package metrics

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fastpath-router/fastpath/internal/api"
)

// guardFake is a Source with a guard.
type guardFake struct {
	*fakeSource
	guard *api.Guard
}

func (g *guardFake) Guard(context.Context, api.GuardQuery) (*api.Guard, error) { return g.guard, nil }

func newGuardFake() *guardFake {
	return &guardFake{fakeSource: newFake(), guard: &api.Guard{AllowEntries: 1, DenyEntries: 2,
		Allow: []api.GuardEntry{{Prefix: "198.18.0.7/32"}},
		Deny:  []api.GuardEntry{{Prefix: "198.18.0.0/16"}, {Prefix: "fd00:bad::/48"}},
		Interfaces: []api.GuardInterface{{Name: "wan0",
			Dropped:      map[string]uint64{"deny": 7, "syn_total": 3},
			DroppedBytes: map[string]uint64{"deny": 420, "syn_total": 180}, Allowed: 2}},
	}}
}

func TestGuardMetrics(t *testing.T) {
	reg, err := newRegistry(t.Context(), newGuardFake(), "v0", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := `# HELP fastpath_guard_dropped_packets_total Packets arriving on the interface that the guard dropped, by reason (docs/guard.md).
# TYPE fastpath_guard_dropped_packets_total counter
fastpath_guard_dropped_packets_total{interface="wan0",reason="deny"} 7
fastpath_guard_dropped_packets_total{interface="wan0",reason="syn_total"} 3
# HELP fastpath_guard_list_entries Prefixes in the guard's allow or deny list now (config and run-time entries).
# TYPE fastpath_guard_list_entries gauge
fastpath_guard_list_entries{list="allow"} 1
fastpath_guard_list_entries{list="deny"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"fastpath_guard_dropped_packets_total", "fastpath_guard_list_entries"); err != nil {
		t.Error(err)
	}
}
