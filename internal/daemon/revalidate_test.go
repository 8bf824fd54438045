package daemon

import (
	"errors"
	"log/slog"
	"testing"
	"time"
)

// TestRevalidation: flows are revalidated only while the ruleset holds
// state that changes without events, always when configured so, and when
// the ruleset cannot be read; the datapath is written only on a change.
func TestRevalidation(t *testing.T) {
	var (
		why     []string
		readErr error
		writes  []time.Duration
	)
	v := &revalidation{
		set:  func(d time.Duration) error { writes = append(writes, d); return nil },
		read: func() ([]string, error) { return why, readErr },
		log:  slog.New(slog.DiscardHandler),
	}
	step := func(name string, want time.Duration, wantWrites int) {
		t.Helper()
		if err := v.refresh(); err != nil {
			t.Fatal(err)
		}
		if got, _ := v.status(); got != want || len(writes) != wantWrites {
			t.Errorf("%s: interval %v after %d writes, want %v after %d", name, got, len(writes), want, wantWrites)
		}
	}
	if err := v.configure(time.Second, false); err != nil {
		t.Fatal(err)
	}
	if got, _ := v.status(); got != 0 || len(writes) != 1 {
		t.Fatalf("static ruleset: %v (%d writes), want off, written once", got, len(writes))
	}
	step("static again", 0, 1)
	why = []string{"set inet fw allow: elements time out"}
	step("set with timeouts", time.Second, 2)
	step("same again", time.Second, 2)
	why, readErr = nil, errors.New("permission denied")
	step("unreadable", time.Second, 2)
	if _, w := v.status(); len(w) != 1 || w[0] != "ruleset unreadable: permission denied" {
		t.Errorf("why: %q", w)
	}
	readErr = nil
	step("static", 0, 3)
	if err := v.configure(500*time.Millisecond, true); err != nil {
		t.Fatal(err)
	}
	if got, w := v.status(); got != 500*time.Millisecond || len(w) != 1 || w[0] != "flows.revalidate_always" {
		t.Errorf("always: %v %q", got, w)
	}
}
