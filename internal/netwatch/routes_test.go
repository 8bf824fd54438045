package netwatch

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// fakeRouteSink records what the route watches hand the datapath: the
// route MTUs in its recorder, and how often the routes were invalidated.
type fakeRouteSink struct {
	recorder
	invalidated int
}

func (f *fakeRouteSink) SetRouteMTUs(m map[netip.Prefix]int) error { return f.set(m) }

func (f *fakeRouteSink) InvalidateRoutes() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.invalidated++
	return nil
}

func (f *fakeRouteSink) snapshot() (map[netip.Prefix]int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.last), f.invalidated
}

// poll waits until cond holds, failing after a generous deadline.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(time.Millisecond) // polling
	}
}

// TestRoutesReachDatapathUnderChurn: while routes without an MTU churn
// (thousands of adds and deletes a second), a route MTU change still
// reaches the datapath, and a route change still bumps the route
// generation, promptly.
func TestRoutesReachDatapathUnderChurn(t *testing.T) {
	ns := emptyNS(t)
	ipCmds(t, ns, "link add v0 type veth peer name v1", "link set v0 up", "link set v1 up",
		"addr add 198.18.70.1/24 dev v0")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var rt *Routes
	if err := nsutil.Do(ns, func() (err error) {
		rt, err = watchRoutes(ctx, slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	sink := &fakeRouteSink{}
	if err := nsutil.Do(ns, func() error { return rt.Start(sink) }); err != nil {
		t.Fatal(err)
	}

	// Idle: one route change, one generation bump.
	_, before := sink.snapshot()
	ipCmds(t, ns, "route add 198.18.71.0/24 via 198.18.70.2")
	poll(t, "a route change bumps the generation", func() bool { _, n := sink.snapshot(); return n > before })

	// Churn: 20k /32 routes added and deleted, again and again, until the
	// test ends (bounded: at most 20 rounds).
	var adds, dels strings.Builder
	for i := range 20000 {
		p := fmt.Sprintf("198.19.%d.%d/32", i/256, i%256)
		fmt.Fprintf(&adds, "route add %s via 198.18.70.2 table 100\n", p)
		fmt.Fprintf(&dels, "route del %s table 100\n", p)
	}
	churnDone := make(chan struct{})
	go func() {
		defer close(churnDone)
		for range 20 {
			for _, b := range []string{adds.String(), dels.String()} {
				if ctx.Err() != nil {
					return
				}
				cmd := exec.CommandContext(ctx, "ip", "-n", ns, "-batch", "-")
				cmd.Stdin = strings.NewReader(b)
				cmd.Run() // a cancelled round is fine
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-churnDone })
	poll(t, "churn is under way", func() bool { _, n := sink.snapshot(); return n > before+5 })

	p := netip.MustParsePrefix("198.18.72.0/24")
	for _, step := range []struct {
		cmd string
		mtu int
	}{
		{"route add 198.18.72.0/24 via 198.18.70.2 mtu 1300", 1300},
		{"route change 198.18.72.0/24 via 198.18.70.2 mtu 1280", 1280},
		{"route replace 198.18.72.0/24 via 198.18.70.2", 0},
		{"route replace 198.18.72.0/24 via 198.18.70.2 mtu 1400", 1400},
		{"route del 198.18.72.0/24", 0},
	} {
		start := time.Now()
		ipCmds(t, ns, step.cmd)
		poll(t, step.cmd, func() bool {
			m, _ := sink.snapshot()
			mtu, ok := m[p]
			return mtu == step.mtu && ok == (step.mtu != 0)
		})
		t.Logf("%s: in the datapath %v after ip started", step.cmd, time.Since(start))
	}
	select {
	case <-churnDone:
		t.Error("the churn ended before the MTU changes were checked: make it longer")
	default:
	}
}
