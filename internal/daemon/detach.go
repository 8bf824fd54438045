package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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
		return rep, fmt.Errorf("%w: stop it first (it detaches on exit unless run with --keep-datapath)", err)
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

// takeLock takes the namespace's single-instance lock. Refused, it names
// the holder's pid when it can find it.
func takeLock() (net.Listener, error) {
	l, err := net.Listen("unix", lockName)
	if errors.Is(err, unix.EADDRINUSE) {
		if pid := lockHolder(); pid > 0 {
			return nil, fmt.Errorf("%w (pid %d)", ErrAlreadyRunning, pid)
		}
		return nil, ErrAlreadyRunning
	}
	if err != nil {
		return nil, fmt.Errorf("take the single-instance lock: %w", err)
	}
	return l, nil
}

// lockHolder finds the process holding the lock: the lock socket's inode
// in /proc/net/unix (this network namespace's sockets), then the process
// with a descriptor on it. 0 when not found (gone meanwhile, or /proc
// hides it): the pid is a courtesy, the lock is what counts.
func lockHolder() int {
	b, err := os.ReadFile("/proc/thread-self/net/unix") // this thread's namespace
	if err != nil {
		return 0
	}
	var inode string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 8 && f[7] == lockName {
			inode = f[6]
			break
		}
	}
	if inode == "" {
		return 0
	}
	want := "socket:[" + inode + "]"
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		fds, err := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name())); err == nil && l == want {
				return pid
			}
		}
	}
	return 0
}
