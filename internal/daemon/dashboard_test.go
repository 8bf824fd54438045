package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastpath-router/fastpath/internal/config"
)

func TestOpenDashboard(t *testing.T) {
	b := &backend{}
	if d, err := openDashboard(config.Dashboard{}, b, nil); d != nil || err != nil || b.status.Dashboard != nil {
		t.Fatalf("no listen: %v, %v, %+v", d, err, b.status.Dashboard)
	}

	// A bad token fails before the port is taken.
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := openDashboard(config.Dashboard{Listen: "127.0.0.1:0", Write: true, TokenFile: tok}, b, nil); err == nil || !strings.Contains(err.Error(), "other users") {
		t.Errorf("world-readable token: %v", err)
	}
	if err := os.Chmod(tok, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := openDashboard(config.Dashboard{Listen: "127.0.0.1:0", Write: true, TokenFile: tok}, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	st := b.status.Dashboard
	if st == nil || !st.Loopback || !st.Write || st.Warning != "" || st.URL != "http://"+d.l.Addr().String()+"/" {
		t.Errorf("status.dashboard = %+v", st)
	}

	// The port is taken: a second daemon's dashboard fails to start.
	if _, err := openDashboard(config.Dashboard{Listen: d.l.Addr().String()}, &backend{}, nil); err == nil || !strings.Contains(err.Error(), "dashboard.listen") {
		t.Errorf("port in use: %v", err)
	}
}

func TestDashboardChangeNeedsRestart(t *testing.T) {
	old := &config.Config{Dashboard: config.Dashboard{Listen: "127.0.0.1:9470"}}
	for _, d := range []config.Dashboard{{}, {Listen: "127.0.0.1:9471"}, {Listen: "127.0.0.1:9470", Write: true, TokenFile: "/t"}} {
		if diff := restartOnly(old, &config.Config{Dashboard: d}); len(diff) != 1 || diff[0] != "dashboard" {
			t.Errorf("%+v: restart-only diff %q, want dashboard", d, diff)
		}
	}
	if diff := restartOnly(old, &config.Config{Dashboard: old.Dashboard}); len(diff) != 0 {
		t.Errorf("no change: %q", diff)
	}
}
