package daemon

import (
	"errors"
	"fmt"
	"strings"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/config"
	"github.com/fastpath-router/fastpath/internal/guard"
)

// reloader applies a changed config file to the running daemon: only the
// difference, and nothing at all if the new file is invalid or asks for a
// change that needs a restart. It is the main loop's: SIGHUP and the API
// both ask the loop, which reloads between its other work.
type reloader struct {
	path string
	cfg  *config.Config // what runs now
	r    *reconciler
	// startOffload starts offload housekeeping the first time a reload
	// brings an offload-mode interface.
	startOffload func() error
	// setRevalidate applies flows.revalidate.
	setRevalidate func(*config.Config) error
	// applyGuard applies the guard section (guard.go); nil: no guard.
	applyGuard func(*guardPlan) ([]string, error)
}

// restartOnly names the settings a running daemon cannot change: they size
// kernel objects or are bound at start.
func restartOnly(old, new *config.Config) []string {
	var diff []string
	if old.API.Socket != new.API.Socket {
		diff = append(diff, "api.socket")
	}
	if old.Flows.MaxEntries != new.Flows.MaxEntries {
		diff = append(diff, "flows.max_entries")
	}
	if old.Flows.IdleTimeout != new.Flows.IdleTimeout {
		diff = append(diff, "flows.idle_timeout")
	}
	if old.Metrics != new.Metrics {
		diff = append(diff, "metrics")
	}
	if old.Dashboard != new.Dashboard {
		diff = append(diff, "dashboard")
	}
	return diff
}

func (rl *reloader) reload() (*api.ReloadResult, error) {
	if rl.path == "" {
		return nil, errors.New("the daemon was started without a config file to reread")
	}
	next, err := config.Load(rl.path)
	if err != nil {
		return nil, &api.ConfigError{Err: err}
	}
	if diff := restartOnly(rl.cfg, next); len(diff) > 0 {
		return nil, &api.ConfigError{Err: fmt.Errorf("%s: changing %s needs a restart; nothing was changed",
			rl.path, strings.Join(diff, ", "))}
	}
	// The guard's list files are read and checked in full before
	// anything changes.
	gplan, err := planGuard(next)
	if err != nil {
		return nil, err
	}
	// An interface the reload adds, or turns on, must exist and be
	// Ethernet, as every interface must at start: a mistyped name would
	// otherwise pass a reload and stop the next start.
	bad, err := rl.r.checkAdded(rl.cfg.Interfaces, next.Interfaces)
	if err != nil {
		return nil, err
	}
	if bad != nil {
		return nil, &api.ConfigError{Err: fmt.Errorf("%s: %w; nothing was changed", rl.path, bad)}
	}
	if usesOffload(next) && !usesOffload(rl.cfg) {
		if err := rl.startOffload(); err != nil {
			return nil, fmt.Errorf("start offload mode: %w", err)
		}
	}
	actions, err := rl.r.apply(next.Interfaces)
	if next.Flows.Revalidate != rl.cfg.Flows.Revalidate || next.Flows.RevalidateAlways != rl.cfg.Flows.RevalidateAlways {
		if rerr := rl.setRevalidate(next); rerr != nil {
			err = errors.Join(err, rerr)
		} else {
			actions = append(actions, fmt.Sprintf("flows.revalidate %v -> %v (always: %v)", rl.cfg.Flows.Revalidate, next.Flows.Revalidate, next.Flows.RevalidateAlways))
		}
	}
	if rl.applyGuard != nil {
		gacts, gerr := rl.applyGuard(gplan)
		actions = append(actions, gacts...)
		if gerr == nil && guard.DatapathConfig(rl.cfg.Guard) != guard.DatapathConfig(next.Guard) {
			actions = append(actions, "guard limits changed")
		}
		err = errors.Join(err, gerr)
	}
	rl.cfg = next
	res := &api.ReloadResult{Changed: len(actions) > 0, Actions: actions}
	if res.Changed {
		rl.r.events.Publish(api.Event{Kind: api.EventReload, Detail: strings.Join(actions, "; ")})
	}
	return res, err
}
