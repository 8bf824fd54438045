package daemon

import (
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/fastpath-router/fastpath/internal/offload"
)

// sdWatchdog feeds systemd's service watchdog (WatchdogSec= in the unit)
// from the main loop's heartbeat tick: the same loop that reconciles links,
// invalidates flows and writes the datapath's heartbeat. If that loop
// hangs, systemd stops receiving WATCHDOG=1, kills the daemon and restarts
// it, while the datapath's own watchdog has already sent everything to the
// kernel (docs/operations.md).
type sdWatchdog struct {
	sock  string        // $NOTIFY_SOCKET
	every time.Duration // half of $WATCHDOG_USEC, as sd_watchdog_enabled(3) advises
	last  time.Time
	log   *slog.Logger
}

// newSDWatchdog returns nil unless systemd asked this process for
// keep-alives ($WATCHDOG_USEC, and $WATCHDOG_PID if set is ours).
func newSDWatchdog(log *slog.Logger) *sdWatchdog {
	return sdWatchdogFrom(os.Getenv, os.Getpid(), log)
}

func sdWatchdogFrom(getenv func(string) string, pid int, log *slog.Logger) *sdWatchdog {
	sock, usec := getenv("NOTIFY_SOCKET"), getenv("WATCHDOG_USEC")
	if sock == "" || usec == "" {
		return nil
	}
	if p := getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(pid) {
		return nil // meant for another process (a wrapper)
	}
	n, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || n == 0 {
		log.Warn("sd_notify: ignoring invalid WATCHDOG_USEC", "value", usec)
		return nil
	}
	return &sdWatchdog{sock: sock, every: time.Duration(n) * time.Microsecond / 2, log: log}
}

// beat sends WATCHDOG=1 when half the watchdog interval has passed since
// the last one (at once the first time). A nil watchdog does nothing.
func (w *sdWatchdog) beat(now time.Time) {
	if w == nil || (!w.last.IsZero() && now.Sub(w.last) < w.every-offload.HeartbeatEvery/2) {
		return
	}
	if err := sdNotify(w.sock, "WATCHDOG=1"); err != nil {
		w.log.Warn("sd_notify watchdog", "err", err)
		return
	}
	w.last = now
}

// sdNotify sends one notification datagram to systemd's socket (an
// abstract one when it starts with '@', which net handles).
func sdNotify(sock, state string) error {
	c, err := net.Dial("unixgram", sock)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}

// notifyReady tells systemd (Type=notify) that the daemon is serving.
func notifyReady(log *slog.Logger) {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return
	}
	c, err := net.Dial("unixgram", sock)
	if err != nil {
		log.Warn("sd_notify", "err", err)
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte("READY=1")); err != nil {
		log.Warn("sd_notify", "err", err)
	}
}
