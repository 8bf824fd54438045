// Package labd runs the fastpath daemon in a network namespace, for the
// demo and tests: it starts `fastpath run -c FILE` as a child process inside
// a named namespace, keeps the tail of its output, waits until it reports
// every interface attached, and stops it (SIGTERM, then SIGKILL by PID:
// only the process it started).
package labd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// Bounds for stopping the daemon and for the output kept.
const (
	TermTimeout = 5 * time.Second // Stop: SIGTERM until SIGKILL
	KillTimeout = 2 * time.Second // SIGKILL until we give up waiting
	OutputLimit = 64 << 10        // bytes of the daemon's output kept
)

// Process is a fastpath daemon running as our child in a network namespace.
type Process struct {
	netns   string
	cmd     *exec.Cmd
	out     *tailBuffer
	done    chan struct{} // closed once the process has been waited for
	waitErr error         // valid after done is closed
}

// Start runs `nsenter --net=/run/netns/<netns> <binary> run -c <configPath>
// args...`. nsenter switches only the network namespace (ip netns exec also
// remounts /sys, hiding /sys/fs/bpf, where --keep-datapath pins) and execs
// the binary in place, so the child's PID is the daemon's. The
// daemon gets its own process group, so a Ctrl-C in a terminal reaches only
// the caller, which can then stop the daemon in order.
//
// The process is not tied to ctx (only checked before starting): cancelling
// must not SIGKILL a daemon that could still detach cleanly, so the caller
// always ends it with Stop or Kill.
func Start(ctx context.Context, netns, binary, configPath string, args ...string) (*Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start daemon in %s: %w", netns, err)
	}
	if !nsutil.Exists(netns) {
		return nil, fmt.Errorf("start daemon: network namespace %s does not exist", netns)
	}
	argv := append([]string{"--net=" + nsutil.Path(netns), "--", binary, "run", "-c", configPath}, args...)
	cmd := exec.Command("nsenter", argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &tailBuffer{max: OutputLimit}
	cmd.Stdout, cmd.Stderr = out, out
	// Bounds Wait if something the daemon spawned keeps its output open.
	cmd.WaitDelay = KillTimeout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start daemon %s in %s: %w", binary, netns, err)
	}
	p := &Process{netns: netns, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID is the daemon's process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// NetNS is the namespace the daemon runs in.
func (p *Process) NetNS() string { return p.netns }

// Done is closed once the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// ExitErr is how the process ended (nil for exit status 0), once Done is
// closed; nil while it runs.
func (p *Process) ExitErr() error {
	if p.Running() {
		return nil
	}
	return p.waitErr
}

// ExitCode is the process's exit status once Done is closed; -1 while it
// runs or if a signal ended it.
func (p *Process) ExitCode() int {
	if p.Running() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Output is what the daemon wrote to stdout and stderr so far; only the last
// OutputLimit bytes, after a note saying how much was dropped.
func (p *Process) Output() string { return p.out.String() }

// WaitExit waits up to timeout for the process to exit on its own and
// returns an error if it is still running then.
func (p *Process) WaitExit(timeout time.Duration) error {
	if p.waitFor(timeout) {
		return nil
	}
	return fmt.Errorf("daemon pid %d still running after %s", p.PID(), timeout)
}

// Stop sends SIGTERM, waits up to TermTimeout, then SIGKILLs the process
// (by PID: only the process we started) and waits up to KillTimeout. It
// returns nil once the process is gone, whatever its exit status (see
// ExitErr); a process that already exited is not an error.
func (p *Process) Stop(log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !p.Running() {
		return nil
	}
	// ErrProcessDone: it exited on its own meanwhile; done closes shortly.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop daemon pid %d: %w", p.PID(), err)
	}
	if p.waitFor(TermTimeout) {
		log.Debug("daemon stopped", "pid", p.PID(), "exit", p.waitErr)
		return nil
	}
	log.Warn("daemon ignored SIGTERM, killing it", "pid", p.PID(), "after", TermTimeout)
	return p.Kill()
}

// Kill sends SIGKILL (by PID) and waits up to KillTimeout for the process
// to be reaped. Tests use it to play a daemon crash.
func (p *Process) Kill() error {
	if !p.Running() {
		return nil
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill daemon pid %d: %w", p.PID(), err)
	}
	if p.waitFor(KillTimeout) {
		return nil
	}
	return fmt.Errorf("daemon pid %d still running %s after SIGKILL", p.PID(), KillTimeout)
}

func (p *Process) waitFor(timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}
