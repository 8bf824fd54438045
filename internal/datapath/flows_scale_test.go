package datapath

import (
	"fmt"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
)

// fillFlows writes n synthetic flows (IPv4 UDP, distinct source ports and
// addresses) into the cache, last seen at last.
func fillFlows(t testing.TB, d *Datapath, n int, last time.Duration) []fastpathFpFlowKey {
	t.Helper()
	keys := make([]fastpathFpFlowKey, n)
	vals := make([]fastpathFpFlow, n)
	for i := range keys {
		keys[i] = fastpathFpFlowKey{Family: 2, Proto: 17, Sport: uint16(i), Dport: 53}
		keys[i].Saddr[0] = uint32(0xc6120000 | i>>16) // 198.18.x.x, host order does not matter here
		vals[i] = fastpathFpFlow{Packets: 1, Bytes: 100, LastNs: uint64(last), CreatedNs: uint64(last)}
	}
	for i := 0; i < n; i += flowBatch {
		j := min(i+flowBatch, n)
		if _, err := d.objs.FpFlows.BatchUpdate(keys[i:j], vals[i:j], nil); err != nil {
			t.Fatalf("fill flows: %v", err)
		}
	}
	return keys
}

// TestFlowScan: the batched scan lists every flow exactly once; the
// in-kernel idle sweep deletes exactly the idle flows and says how many.
func TestFlowScan(t *testing.T) {
	requireRoot(t)
	const n = 3*flowBatch + 17
	d, err := Load(Options{FlowEntries: 2 * n})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	now := Monotonic()
	fillFlows(t, d, n, now-time.Hour)
	fs, err := d.Flows()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint16]int{}
	for _, f := range fs {
		seen[f.In.Src.Port()]++
	}
	if len(fs) != n || len(seen) != n {
		t.Fatalf("listed %d flows (%d distinct), want %d", len(fs), len(seen), n)
	}
	fillFlows(t, d, 10, now) // ports 0..9 live again
	expired, _, err := d.ExpireIdle(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rest, err := d.Flows()
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 10 || expired != n-10 {
		t.Errorf("idle sweep: %d expired, %d remain; want %d expired and the 10 live ones", expired, len(rest), n-10)
	}
	for _, f := range rest {
		if f.Last < now {
			t.Errorf("an idle flow survived: %v", f.In)
		}
	}
}

// BenchmarkFlowScan measures what the daemon's periodic idle sweep (in the
// kernel) and a flow listing (read out in batches, against one lookup per
// entry) cost at 100k and 1M flows:
//
//	go test -run '^$' -bench FlowScan -benchtime 3x ./internal/datapath
func BenchmarkFlowScan(b *testing.B) {
	requireRoot(b)
	for _, n := range []int{100_000, 1_000_000} {
		d, err := Load(Options{FlowEntries: n + n/4})
		if err != nil {
			b.Fatal(err)
		}
		fillFlows(b, d, n, Monotonic())
		for _, how := range []struct {
			name string
			scan func(fn func(*fastpathFpFlowKey, *fastpathFpFlow)) error
		}{{"batch", d.eachFlow}, {"per-entry", d.eachFlowSlow}} {
			b.Run(fmt.Sprintf("%s/%dk", how.name, n/1000), func(b *testing.B) {
				for b.Loop() {
					count := 0
					if err := how.scan(func(*fastpathFpFlowKey, *fastpathFpFlow) { count++ }); err != nil {
						b.Fatal(err)
					}
					if count != n {
						b.Fatalf("scanned %d, want %d", count, n)
					}
				}
			})
		}
		b.Run(fmt.Sprintf("sweep-in-kernel/%dk", n/1000), func(b *testing.B) {
			for b.Loop() {
				if gone, _, err := d.ExpireIdle(time.Hour); err != nil || gone != 0 {
					b.Fatalf("swept %d, %v", gone, err)
				}
			}
		})
		b.Run(fmt.Sprintf("top50/%dk", n/1000), func(b *testing.B) {
			// What the daemon does for `fastpath flows`: only the 50
			// largest are kept while the cache is read.
			b.ReportAllocs()
			for b.Loop() {
				c := api.NewFlowCollector(api.FlowQuery{Limit: 50})
				if err := d.EachFlow(func(f Flow) { c.Add(api.Flow{Proto: "udp", Bytes: f.Bytes, Packets: f.Packets}) }); err != nil {
					b.Fatal(err)
				}
				if got := c.Result(n); got.Total != n || len(got.Flows) != 50 {
					b.Fatalf("total %d, %d flows", got.Total, len(got.Flows))
				}
			}
		})
		b.Run(fmt.Sprintf("list/%dk", n/1000), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				fs, err := d.Flows()
				if err != nil || len(fs) != n {
					b.Fatalf("%d flows, %v", len(fs), err)
				}
			}
		})
		d.Close()
	}
}

// TestSweepLeavesRoom: a sweep of many idle flows announces removals only
// while the event ring has room to spare for the packet path's events; it
// removes every idle flow and counts those it did not announce, pending
// flows (never announced) in neither. Once the daemon has read the ring, the
// next sweep announces again.
func TestSweepLeavesRoom(t *testing.T) {
	requireRoot(t)
	const n, pending = 20_000, 100 // far more events than the ring holds
	d, err := Load(Options{FlowEntries: 4 * n})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ev, err := d.Events()
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	// What the sweep may take of the ring (FP_HOUSEKEEPING_EVENTS_MAX_USED),
	// over one event's record (128 bytes and an 8-byte header), plus the
	// one that crosses the mark.
	const most = 64*1024/136 + 1
	for round := range 2 {
		fillFlows(t, d, n, Monotonic()-time.Hour)
		pk := make([]fastpathFpFlowKey, pending)
		pv := make([]fastpathFpFlow, pending)
		for i := range pk {
			pk[i] = fastpathFpFlowKey{Family: 2, Proto: 6, Sport: uint16(i), Dport: 80}
			pv[i] = fastpathFpFlow{Flags: uint8(fastpathFpFlowFlagsFP_FLOW_PENDING)}
		}
		if _, err := d.objs.FpFlows.BatchUpdate(pk, pv, nil); err != nil {
			t.Fatal(err)
		}
		expired, quiet, err := d.ExpireIdle(time.Minute)
		if err != nil || expired != n+pending {
			t.Fatalf("round %d: %d expired, %v; want %d", round, expired, err, n+pending)
		}
		ev.rd.SetDeadline(time.Now())
		announced := 0
		for {
			e, err := ev.Read()
			if err != nil {
				break
			}
			if e.Type != FlowRemoved || e.Reason != RemovedIdle {
				t.Fatalf("event %s %s, want flow_removed idle", e.Type, e.Reason)
			}
			announced++
		}
		if announced == 0 || announced > most || announced+quiet != n {
			t.Errorf("round %d: %d announced, %d unannounced of %d (and %d pending): want 1..%d announced and the rest of the %d counted",
				round, announced, quiet, n, pending, most, n)
		}
	}
}
