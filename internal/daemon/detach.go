package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/datapath"
)

// DetachReport lists what Detach removed.
type DetachReport struct {
	Removed []string `json:"removed"`
}

// Detach removes everything a daemon left attached and pinned in the
// calling process's network namespace. It refuses while a daemon runs
// there: that daemon would fight it.
func Detach(ctx context.Context, log *slog.Logger) (DetachReport, error) {
	var rep DetachReport
	lock, err := takeLock()
	if errors.Is(err, ErrAlreadyRunning) {
		return rep, errors.New("a fastpath daemon is running in this network namespace: stop it first (it detaches on exit unless run with --keep-datapath)")
	}
	if err != nil {
		return rep, err
	}
	defer lock.Close()
	rep.Removed, err = datapath.RemoveAll()
	// The caller prints the report (fastpath detach): at the default
	// level the log would only say each line twice.
	for _, r := range rep.Removed {
		log.Debug("removed", "what", r)
	}
	return rep, err
}

// takeLock takes the namespace's single-instance lock.
func takeLock() (net.Listener, error) {
	l, err := net.Listen("unix", lockName)
	if errors.Is(err, unix.EADDRINUSE) {
		return nil, ErrAlreadyRunning
	}
	if err != nil {
		return nil, fmt.Errorf("take the single-instance lock: %w", err)
	}
	return l, nil
}
