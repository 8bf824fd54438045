package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/fastpath-router/fastpath/internal/lab"
)

// Bounds for stopping the daemon.
const (
	termTimeout = 5 * time.Second // SIGTERM until SIGKILL
	killTimeout = 2 * time.Second // SIGKILL until we give up
	outputLimit = 64 << 10        // daemon output kept for error reports
)

// daemon is the fastpath daemon running as our child in the router
// namespace.
type daemon struct {
	cmd     *exec.Cmd
	out     *tailBuffer
	done    chan struct{} // closed once the process has been waited for
	waitErr error         // valid after done is closed
}

// startDaemon runs `ip netns exec <rtr> <binary> run -c <cfg>`. ip execs
// the binary in place, so the child's PID is the daemon's.
func startDaemon(ctx context.Context, l *lab.Lab, binary, cfg string) (*daemon, error) {
	// Not tied to ctx: on cancel we stop the daemon ourselves with SIGTERM,
	// so it can detach its programs, instead of exec's SIGKILL.
	cmd := l.Command(context.WithoutCancel(ctx), l.Rtr, binary, "run", "-c", cfg)
	// Own process group: a Ctrl-C in the terminal reaches only us, and we
	// shut the daemon down in order (daemon first, then the lab).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &tailBuffer{max: outputLimit}
	cmd.Stdout, cmd.Stderr = out, out
	// Bounds Wait if something the daemon spawned keeps its output open.
	cmd.WaitDelay = killTimeout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start daemon %s in %s: %w", binary, l.Rtr, err)
	}
	d := &daemon{cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		d.waitErr = cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) running() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, waits up to termTimeout, then SIGKILLs the process
// (by PID: only the process we started) and waits up to killTimeout.
func (d *daemon) stop(log *slog.Logger) error {
	if !d.running() {
		return nil
	}
	// ErrProcessDone: it exited on its own meanwhile; done closes shortly.
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop daemon pid %d: %w", d.pid(), err)
	}
	if d.waitFor(termTimeout) {
		log.Debug("daemon stopped", "pid", d.pid(), "exit", d.waitErr)
		return nil
	}
	log.Warn("daemon ignored SIGTERM, killing it", "pid", d.pid(), "after", termTimeout)
	if err := d.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill daemon pid %d: %w", d.pid(), err)
	}
	if d.waitFor(killTimeout) {
		return nil
	}
	return fmt.Errorf("daemon pid %d still running %s after SIGKILL", d.pid(), killTimeout)
}

func (d *daemon) waitFor(timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-d.done:
		return true
	case <-t.C:
		return false
	}
}

// withOutput prints what the daemon wrote so far under err's explanation
// and returns err, so a failed demo shows the daemon's side of the story.
func (d *daemon) withOutput(w io.Writer, err error) error {
	if d == nil {
		return err
	}
	out, truncated := d.out.snapshot()
	if len(out) == 0 {
		fmt.Fprintf(w, "\n(the daemon wrote nothing)\n")
		return err
	}
	fmt.Fprintf(w, "\ndaemon output")
	if truncated {
		fmt.Fprintf(w, " (last %d bytes)", len(out))
	}
	fmt.Fprintf(w, ":\n%s", out)
	if out[len(out)-1] != '\n' {
		fmt.Fprintln(w)
	}
	return err
}

// tailBuffer keeps the last max bytes written to it; safe for concurrent
// use (exec copies stdout and stderr from separate goroutines).
type tailBuffer struct {
	mu        sync.Mutex
	buf       []byte
	max       int
	truncated bool
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
		b.truncated = true
	}
	return len(p), nil
}

func (b *tailBuffer) snapshot() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...), b.truncated
}
