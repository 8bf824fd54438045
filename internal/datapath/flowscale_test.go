package datapath

import (
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TestFlowScale measures what the daemon's periodic passes over the flow
// cache cost with many flows cached: ExpireIdle (every resync, 5 s) and
// Flows (every `fastpath flows`, API call and metrics scrape). Skipped
// unless FASTPATH_FLOWSCALE=N (flows to cache, e.g. 100000 or 1000000);
// it fills the cache with synthetic flows and only logs the figures
// (docs/scale.md).
func TestFlowScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("FASTPATH_FLOWSCALE"))
	if n <= 0 {
		t.Skip("set FASTPATH_FLOWSCALE=N to measure N cached flows")
	}
	requireRoot(t)
	d, err := Load(Options{FlowEntries: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	now := uint64(Monotonic())
	const chunk = 4096
	keys := make([]fastpathFpFlowKey, 0, chunk)
	vals := make([]fastpathFpFlow, 0, chunk)
	flush := func() {
		if len(keys) == 0 {
			return
		}
		if _, err := d.objs.FpFlows.BatchUpdate(keys, vals, &ebpf.BatchOptions{}); err != nil {
			t.Fatalf("fill the flow cache: %v", err)
		}
		keys, vals = keys[:0], vals[:0]
	}
	for i := range n {
		keys = append(keys, fastpathFpFlowKey{
			Family: unix.AF_INET, Proto: unix.IPPROTO_UDP, Sport: uint16(i), Dport: 53,
			Saddr: [4]uint32{0x0a12c6 | uint32(i>>16)<<24}, Daddr: [4]uint32{0x0100c6c6},
		})
		vals = append(vals, fastpathFpFlow{LastNs: now, CreatedNs: now})
		if len(keys) == chunk {
			flush()
		}
	}
	flush()

	measure := func(what string, fn func() int) {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		var ru0, ru1 unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &ru0)
		start := time.Now()
		got := fn()
		wall := time.Since(start)
		unix.Getrusage(unix.RUSAGE_SELF, &ru1)
		runtime.ReadMemStats(&after)
		cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
		t.Logf("%d flows: %s: %v wall, %v CPU, %d MB allocated (result %d)", n, what, wall.Round(time.Millisecond),
			cpu.Round(time.Millisecond), (after.TotalAlloc-before.TotalAlloc)>>20, got)
	}
	measure("ExpireIdle (nothing idle)", func() int {
		gone, err := d.ExpireIdle(time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if gone != 0 {
			t.Errorf("ExpireIdle removed %d fresh flows", gone)
		}
		return gone
	})
	measure("Flows", func() int {
		fl, err := d.Flows()
		if err != nil {
			t.Fatal(err)
		}
		if len(fl) < n*95/100 { // a full LRU cache evicts a few while it fills
			t.Errorf("Flows listed %d of %d", len(fl), n)
		}
		return len(fl)
	})
}
