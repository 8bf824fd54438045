package offload

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/datapath"
	"github.com/fastpath-router/fastpath/internal/nsutil"
	"github.com/fastpath-router/fastpath/internal/testio"
)

// TestBeatLateness: a start that took longer than the watchdog (a daemon
// reading a full routing table before it attaches) is no stall: the first
// beat after Start reports nothing and re-validates nothing. A later beat
// that comes after more than the watchdog's time does both.
func TestBeatLateness(t *testing.T) {
	ns := testio.Netns(t, "fpoff-")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var reports []string
	var m *Mode
	var dp *datapath.Datapath
	err := nsutil.Do(ns, func() error {
		var err error
		if dp, err = datapath.Load(datapath.Options{FlowEntries: 1024}); err != nil {
			return err
		}
		m, err = Start(ctx, Options{DP: dp, Idle: time.Minute, Log: slog.New(slog.DiscardHandler),
			OnEvent: func(datapath.Event) {}, OnWatchdog: func(d string) { reports = append(reports, d) }})
		return err
	})
	if err != nil {
		if dp != nil {
			dp.Close()
		}
		t.Fatal(err)
	}
	defer dp.Close()
	defer m.Close()

	// No heartbeat until the caller's first Beat: until then the datapath
	// passes everything to the kernel.
	if at, _ := dp.LastHeartbeat(); at != 0 {
		t.Fatalf("Start wrote a heartbeat (%v)", at)
	}
	start := datapath.Monotonic()
	fib0, fw0 := dp.Generations()
	m.now = func() time.Duration { return start + 2*WatchdogAfter }
	m.Beat()
	if fib, fw := dp.Generations(); len(reports) != 0 || fib != fib0 || fw != fw0 {
		t.Fatalf("first beat, %s after start: reported %q, generations %d/%d -> %d/%d; want nothing", 2*WatchdogAfter, reports, fib0, fw0, fib, fw)
	}
	m.now = func() time.Duration { return start + 2*WatchdogAfter + HeartbeatEvery }
	m.Beat()
	if len(reports) != 0 {
		t.Fatalf("a beat on time reported %q", reports)
	}
	m.now = func() time.Duration { return start + 4*WatchdogAfter }
	m.Beat()
	if fib, fw := dp.Generations(); len(reports) != 1 || fib == fib0 || fw == fw0 {
		t.Fatalf("a beat %s late: reported %q, generations %d/%d -> %d/%d; want one report and both bumped",
			2*WatchdogAfter-HeartbeatEvery, reports, fib0, fw0, fib, fw)
	}
}
