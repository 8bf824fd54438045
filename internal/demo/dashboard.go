package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/fastpath-router/fastpath/internal/lab"
	"github.com/fastpath-router/fastpath/internal/labd"
	"github.com/fastpath-router/fastpath/internal/tcplisten"
	"github.com/fastpath-router/fastpath/internal/traffic"
)

// DefaultDashboard is where `fastpath demo --dashboard` serves the page.
const DefaultDashboard = "127.0.0.1:9469"

// dashboardInNS is where the daemon serves its dashboard inside the
// router namespace: loopback there, which only the forwarder reaches.
const dashboardInNS = "127.0.0.1:9469"

// Light traffic while the dashboard is up: one UDP stream per round,
// bounded in count and time, so the charts have something to show.
const (
	keepUDPCount    = 5000
	keepUDPInterval = time.Millisecond
	keepRoundPause  = 2 * time.Second
)

// writeConfig writes the daemon's config, with a dashboard if asked.
func writeConfig(dir, socket string, dashboard bool, ifaces ...labd.Interface) (string, error) {
	doc := labd.ConfigYAML(socket, ifaces...)
	if dashboard {
		doc += "dashboard:\n  listen: " + dashboardInNS + "\n"
	}
	path := filepath.Join(dir, labd.ConfigFile)
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		return "", fmt.Errorf("write daemon config: %w", err)
	}
	return path, nil
}

// dashboard forwards addr on this host to the daemon's dashboard in rtr.
type dashboard struct {
	url    string
	cancel context.CancelFunc
	done   chan struct{}
}

func openDashboard(ctx context.Context, addr, rtr string) (*dashboard, error) {
	l, err := tcplisten.Listen(addr)
	if err != nil {
		return nil, fmt.Errorf("dashboard on %s: %w (choose another with --dashboard-addr)", addr, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	d := &dashboard{url: "http://" + l.Addr().String() + "/", cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		labd.Forward(ctx, l, rtr, dashboardInNS)
	}()
	return d, nil
}

func (d *dashboard) close() {
	d.cancel()
	<-d.done
}

// keepUp keeps the lab and daemon running, with a light UDP stream in
// rounds, until ctx ends (Ctrl-C), which is the normal end here.
func (d *dashboard) keepUp(ctx context.Context, out io.Writer, l *lab.Lab, p *labd.Process) error {
	fmt.Fprintf(out, "\nthe lab stays up with light traffic; open %s and press Ctrl-C to end\n", d.url)
	for ctx.Err() == nil {
		for _, dst := range []netip.Addr{l.SinkAddr4, l.SinkAddr6} {
			traffic.UDPStream(ctx, l.Gen, l.Sink, netip.AddrPortFrom(dst, 0), keepUDPCount, udpSize, keepUDPInterval)
		}
		if !p.Running() {
			return errors.New("daemon exited while the dashboard was up")
		}
		select {
		case <-ctx.Done():
		case <-time.After(keepRoundPause):
		}
	}
	fmt.Fprintln(out, "stopping")
	return nil
}
