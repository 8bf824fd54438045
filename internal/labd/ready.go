package labd

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
)

// Polling bounds of WaitReady.
const (
	callTimeout  = 2 * time.Second // one API call
	pollInterval = 100 * time.Millisecond
)

// Client is the part of the API client WaitReady needs; *api.Client has it,
// and tests substitute fakes.
type Client interface {
	Status(ctx context.Context) (*api.Status, error)
}

// WaitReady polls the daemon through c until it reports every configured
// interface attached, and returns that status. It fails when timeout passes,
// ctx ends, or the process exits first (at once, not at the timeout).
func (p *Process) WaitReady(ctx context.Context, c Client, timeout time.Duration) (*api.Status, error) {
	return p.poll(ctx, c, timeout, Attached, "ready")
}

// WaitStatus polls the daemon through c until ok accepts its status, which
// it returns; otherwise ok says why not, for the error. It fails like
// WaitReady.
func (p *Process) WaitStatus(ctx context.Context, c Client, timeout time.Duration, ok func(*api.Status) (bool, string)) (*api.Status, error) {
	return p.poll(ctx, c, timeout, ok, "in the expected state")
}

func (p *Process) poll(ctx context.Context, c Client, timeout time.Duration, ok func(*api.Status) (bool, string), state string) (*api.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	last := "no answer yet"
	for {
		cctx, ccancel := context.WithTimeout(ctx, callTimeout)
		st, err := c.Status(cctx)
		ccancel()
		if err == nil {
			good, why := ok(st)
			if good {
				return st, nil
			}
			last = why
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("daemon exited (%s) before it was %s; last status: %s", exitDesc(p.waitErr), state, last)
		case <-ctx.Done():
			return nil, fmt.Errorf("daemon not %s after %s (%w); last status: %s", state, timeout, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// exitDesc describes how a process ended, given cmd.Wait's error.
func exitDesc(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// Attached reports whether st shows interfaces, all attached, and if not,
// why not.
func Attached(st *api.Status) (bool, string) {
	if st == nil || len(st.Interfaces) == 0 {
		return false, "no interfaces reported"
	}
	var notReady []string
	for _, ifc := range st.Interfaces {
		if ifc.State == api.StateAttached {
			continue
		}
		s := ifc.Name + " " + ifc.State
		if ifc.Error != "" {
			s += " (" + ifc.Error + ")"
		}
		notReady = append(notReady, s)
	}
	if len(notReady) > 0 {
		return false, strings.Join(notReady, ", ")
	}
	return true, ""
}
