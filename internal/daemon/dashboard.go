package daemon

import (
	"context"
	"log/slog"
	"net"

	"github.com/fastpath-router/fastpath/internal/config"
	"github.com/fastpath-router/fastpath/internal/dashboard"
)

// dash is the web dashboard, when the config asks for one.
type dash struct {
	l   net.Listener
	srv *dashboard.Server
}

// openDashboard reads the token and takes the port, before anything is
// attached, so a bad token file or a port in use fails the start with
// nothing changed. It returns nil without dashboard.listen.
func openDashboard(c config.Dashboard, b *backend, log *slog.Logger) (*dash, error) {
	if c.Listen == "" {
		return nil, nil
	}
	var token string
	if c.Write {
		var err error
		if token, err = dashboard.LoadToken(c.TokenFile); err != nil {
			return nil, err
		}
	}
	l, err := dashboard.Listen(c.Listen)
	if err != nil {
		return nil, err
	}
	b.status.Dashboard = dashboard.Status(l, c.Write)
	return &dash{l: l, srv: dashboard.New(b, dashboard.Options{Write: c.Write, Token: token, Log: log})}, nil
}

// serve serves until ctx ends; the returned channel closes after.
func (d *dash) serve(ctx context.Context, log *slog.Logger) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.srv.Serve(ctx, d.l); err != nil {
			log.Error("dashboard server", "err", err)
		}
	}()
	return done
}

func (d *dash) close() {
	if d != nil {
		d.l.Close()
	}
}
