package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/labd"
)

// TestReload: a reload applies only the difference (an attach change, an
// interface removed, one added) without touching the rest; an invalid
// config or a restart-only change is rejected and the running state kept.
func TestReload(t *testing.T) {
	ctx := testContext(t)
	l := newLab(t, "xdp")
	dir := t.TempDir()
	socket := filepath.Join(dir, "api.sock")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, labd.ConfigFile), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := labd.WriteConfig(dir, socket,
		labd.Interface{Name: l.RtrIn, Mode: "route", Attach: "xdp"}, labd.Interface{Name: l.RtrOut, Mode: "route", Attach: "xdp"})
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemonWithConfig(t, l.Rtr, cfg, socket)
	st, err := d.p.WaitReady(ctx, d.c, readyTimeout)
	if err != nil {
		t.Fatal(err)
	}
	r0 := mustIface(t, st, l.RtrIn)
	reload := func() (*api.ReloadResult, error) {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return d.c.Reload(c)
	}
	unchanged := func(what string) {
		t.Helper()
		now := mustIface(t, d.status(t), l.RtrIn)
		if now.LinkID != r0.LinkID || now.ProgramID != r0.ProgramID || now.State != api.StateAttached {
			t.Errorf("%s touched %s: link %d -> %d, program %d -> %d, %s", what, l.RtrIn, r0.LinkID, now.LinkID, r0.ProgramID, now.ProgramID, now.State)
		}
	}

	// 1. r1 moves from XDP to TC.
	write(labd.ConfigYAML(socket, labd.Interface{Name: l.RtrIn, Mode: "route", Attach: "xdp"}, labd.Interface{Name: l.RtrOut, Mode: "route", Attach: "tc"}))
	res, err := reload()
	if err != nil || !res.Changed || !strings.Contains(strings.Join(res.Actions, ";"), "attach xdp -> tc") {
		t.Fatalf("reload xdp->tc: %+v, %v", res, err)
	}
	if r1 := mustIface(t, d.status(t), l.RtrOut); r1.AttachedAs != "tc" || r1.State != api.StateAttached {
		t.Errorf("r1 after reload: %+v", r1)
	}
	if h, err := hooksOn(l.Rtr, l.RtrOut); err != nil || h.xdpProg != 0 || len(h.tcx) != 1 {
		t.Errorf("r1 hooks after moving to tc: %v %v", h, err)
	}
	unchanged("attach change of r1")
	mustPing(ctx, t, l, l.SinkAddr4, 3)

	// 2. An invalid config is rejected, nothing changes.
	write("version: 1\ninterfaces:\n  - name: r0\n    colour: blue\n")
	var ce *api.ConfigError
	if _, err := reload(); err == nil {
		t.Fatal("reload of an invalid config succeeded")
	} else if !errors.As(err, &ce) || !strings.Contains(err.Error(), "colour") {
		t.Errorf("invalid config: %v (want a config error naming the key)", err)
	}
	unchanged("rejected reload")

	// 3. A restart-only change is rejected too.
	write(strings.Replace(labd.ConfigYAML(socket, labd.Interface{Name: l.RtrIn, Mode: "route", Attach: "xdp"}, labd.Interface{Name: l.RtrOut, Mode: "route", Attach: "tc"}),
		"api:", "flows:\n  max_entries: 131072\napi:", 1))
	if _, err := reload(); err == nil || !strings.Contains(err.Error(), "needs a restart") {
		t.Errorf("flows.max_entries change: %v, want a needs-a-restart rejection", err)
	}

	// 4. r1 removed (by SIGHUP this time): detached, r0 untouched.
	write(labd.ConfigYAML(socket, labd.Interface{Name: l.RtrIn, Mode: "route", Attach: "xdp"}))
	if err := syscall.Kill(d.p.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, 5*time.Second, "r1 removed", func() error {
		if _, ok := interfaceStatus(d.status(t), l.RtrOut); ok {
			return errors.New("r1 still listed")
		}
		if h, err := hooksOn(l.Rtr, l.RtrOut); err != nil || !h.empty() {
			return errors.New("r1 still has a program")
		}
		return nil
	})
	unchanged("removal of r1")

	// 5. r1 back, in offload mode: offload housekeeping starts on reload.
	write(labd.ConfigYAML(socket, labd.Interface{Name: l.RtrIn, Mode: "route", Attach: "xdp"}, labd.Interface{Name: l.RtrOut, Mode: "offload", Attach: "xdp"}))
	res, err = reload()
	if err != nil || !res.Changed {
		t.Fatalf("re-adding r1: %+v, %v", res, err)
	}
	if r1 := mustIface(t, d.status(t), l.RtrOut); r1.State != api.StateAttached || r1.Mode != "offload" {
		t.Errorf("r1 after re-adding: %+v", r1)
	}
	unchanged("adding r1")
	mustPing(ctx, t, l, l.SinkAddr6, 3)

	// 6. The same file again: no change.
	if res, err := reload(); err != nil || res.Changed {
		t.Errorf("reload without changes: %+v, %v", res, err)
	}
}

func mustIface(t *testing.T, st *api.Status, name string) api.InterfaceStatus {
	t.Helper()
	is, ok := interfaceStatus(st, name)
	if !ok {
		t.Fatalf("status lists no %s", name)
	}
	return is
}
