package daemon

import (
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"
)

func TestSDWatchdog(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	log := slog.New(slog.DiscardHandler)
	env := map[string]string{"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}
	getenv := func(k string) string { return env[k] }

	if w := sdWatchdogFrom(getenv, 43, log); w != nil {
		t.Errorf("WATCHDOG_PID of another process: watchdog %+v, want none", w)
	}
	w := sdWatchdogFrom(getenv, 42, log)
	if w == nil || w.every != 15*time.Second {
		t.Fatalf("watchdog = %+v, want one every 15s (half of WATCHDOG_USEC)", w)
	}
	// received reports whether a datagram is waiting, and checks it.
	received := func() bool {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		buf := make([]byte, 64)
		n, err := conn.Read(buf)
		if err != nil {
			return false
		}
		if string(buf[:n]) != "WATCHDOG=1" {
			t.Errorf("sent %q, want WATCHDOG=1", buf[:n])
		}
		return true
	}
	t0 := time.Unix(1000, 0)
	for _, step := range []struct {
		at   time.Duration
		sent bool
	}{
		{0, true}, // at once when ready
		{time.Second, false},
		{14 * time.Second, false},
		{15 * time.Second, true},
		{16 * time.Second, false},
		{30 * time.Second, true},
	} {
		w.beat(t0.Add(step.at))
		if got := received(); got != step.sent {
			t.Errorf("beat at +%v: sent %v, want %v", step.at, got, step.sent)
		}
	}

	delete(env, "WATCHDOG_USEC")
	if w := sdWatchdogFrom(getenv, 42, log); w != nil {
		t.Errorf("no WATCHDOG_USEC: watchdog %+v, want none", w)
	}
	var none *sdWatchdog
	none.beat(t0) // a nil watchdog is a no-op
}
