// Package demo implements `fastpath demo`: it builds a lab (see package
// lab), runs the fastpath daemon in the lab's router namespace, sends ping,
// TCP and UDP traffic over IPv4 and IPv6 through it, and prints how much of
// that traffic fastpath forwarded compared with the kernel. Everything it
// creates is removed at the end, also on failure and on Ctrl-C.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/lab"
	"github.com/fastpath-router/fastpath/internal/labd"
	"github.com/fastpath-router/fastpath/internal/traffic"
)

// DefaultName is the lab name used when Options.Name is empty.
const DefaultName = "demo"

// Timeouts. Each bounds one phase, so a broken step cannot hang the demo.
const (
	readyTimeout   = 10 * time.Second // daemon start until all interfaces attached
	trafficTimeout = 60 * time.Second // all traffic together
	callTimeout    = 2 * time.Second  // one API call
)

// Traffic sizes.
const (
	pingCount    = 5
	tcpBytes     = 8 << 20
	udpCount     = 2000
	udpSize      = 512
	udpInterval  = 100 * time.Microsecond
	udpFailRatio = 0.05 // more loss than this fails the UDP check
)

// Options configure Run.
type Options struct {
	Name string    // lab name, default "demo"
	Out  io.Writer // the report; default os.Stdout
	Log  *slog.Logger
	// KeepOnFailure leaves the lab and the daemon running when the demo
	// fails (not when it is cancelled), for inspection.
	KeepOnFailure bool
	// Binary is the fastpath executable to run as the daemon; default the
	// running executable.
	Binary string
	// Dashboard, if set, is a host:port on this host where the daemon's
	// dashboard is made reachable (see dashboard.go); the demo then keeps
	// the lab up, with light traffic, until ctx ends (Ctrl-C).
	Dashboard string
}

// client is the part of the API client the demo uses; tests substitute it.
type client interface {
	Status(ctx context.Context) (*api.Status, error)
	Stats(ctx context.Context) (*api.Stats, error)
}

func newAPIClient(socket string) client { return api.NewClient(socket) }

// Run runs the demo and writes its report to o.Out. It returns an error if
// the setup failed or any traffic check failed.
func Run(ctx context.Context, o Options) error {
	return run(ctx, o, newAPIClient)
}

func run(ctx context.Context, o Options, newClient func(socket string) client) (err error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if err := lab.ValidateName(o.Name); err != nil {
		return err
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find fastpath binary: %w", err)
		}
		o.Binary = exe
	}
	log := o.Log.With("lab", o.Name)

	start := time.Now()
	l, err := lab.Up(ctx, lab.Options{Name: o.Name, Log: o.Log})
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "lab %s up: %s (%s, %s) -> %s -> %s (%s, %s)\n", l.Name,
		l.Gen, l.GenAddr4, l.GenAddr6, l.Rtr, l.Sink, l.SinkAddr4, l.SinkAddr6)

	var d *labd.Process
	dir := ""
	socket := filepath.Join("/run/fastpath", "demo-"+o.Name+".sock")
	defer func() {
		// Keep things for inspection only on a real failure, not on Ctrl-C.
		if err != nil && o.KeepOnFailure && ctx.Err() == nil {
			fmt.Fprintf(o.Out, "\nkept for inspection (--keep-on-failure):\n")
			if d != nil && d.Running() {
				fmt.Fprintf(o.Out, "  daemon pid %d (stop it with: kill %d)\n", d.PID(), d.PID())
			}
			if dir != "" {
				fmt.Fprintf(o.Out, "  config %s\n", filepath.Join(dir, labd.ConfigFile))
			}
			fmt.Fprintf(o.Out, "  lab %s (remove it with: fastpath lab down --name %s)\n", l.Name, l.Name)
			return
		}
		var errs []error
		if d != nil {
			if serr := d.Stop(log); serr != nil {
				errs = append(errs, serr)
			} else if rerr := os.Remove(socket); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				// Our own demo socket: a daemon killed with SIGKILL leaves it.
				errs = append(errs, fmt.Errorf("remove %s: %w", socket, rerr))
			}
		}
		if derr := lab.Down(l.Name); derr != nil {
			errs = append(errs, derr)
		}
		if dir != "" {
			os.RemoveAll(dir)
		}
		if terr := errors.Join(errs...); terr != nil {
			err = errors.Join(err, fmt.Errorf("demo teardown: %w", terr))
		}
	}()

	// The usual edge router: masquerade towards the sink. fastpath must
	// carry the flows the firewall accepted, NAT included.
	if err := l.Masquerade(ctx); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "%s masquerades towards %s (nftables)\n", l.Rtr, l.Sink)

	dir, err = os.MkdirTemp("", "fastpath-demo-")
	if err != nil {
		return fmt.Errorf("make config dir: %w", err)
	}
	cfg, err := writeConfig(dir, socket, o.Dashboard != "", daemonInterfaces(l)...)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		return fmt.Errorf("make socket dir: %w", err)
	}

	d, err = labd.Start(ctx, l.Rtr, o.Binary, cfg)
	if err != nil {
		return err
	}
	log.Debug("daemon started", "pid", d.PID(), "config", cfg)
	c := newClient(socket)
	st, err := d.WaitReady(ctx, c, readyTimeout)
	if err != nil {
		return withOutput(o.Out, d, fmt.Errorf("wait for daemon: %w", err))
	}
	fmt.Fprintf(o.Out, "fastpath running in %s (pid %d): %s\n", l.Rtr, d.PID(), describeAttach(st))
	var dash *dashboard
	if o.Dashboard != "" {
		if dash, err = openDashboard(ctx, o.Dashboard, l.Rtr); err != nil {
			return err
		}
		defer dash.close()
		fmt.Fprintf(o.Out, "dashboard: %s (served by the daemon in %s, forwarded to this host)\n", dash.url, l.Rtr)
	}

	before, err := snapshot(ctx, c, l.Rtr)
	if err != nil {
		return withOutput(o.Out, d, err)
	}
	fmt.Fprintf(o.Out, "sending traffic %s -> %s ...\n", l.Gen, l.Sink)
	tctx, cancel := context.WithTimeout(ctx, trafficTimeout)
	results := sendTraffic(tctx, l)
	cancel()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("demo cancelled: %w", err)
	}
	after, err := snapshot(ctx, c, l.Rtr)
	if err != nil {
		return withOutput(o.Out, d, err)
	}

	rep := report{lab: l, results: results, before: before, after: after, took: time.Since(start)}
	rep.write(o.Out)
	if failed := rep.failed(); len(failed) > 0 {
		return withOutput(o.Out, d, fmt.Errorf("demo failed: %s", strings.Join(failed, ", ")))
	}
	if !d.Running() {
		return withOutput(o.Out, d, errors.New("daemon exited during the demo"))
	}
	if dash != nil {
		return dash.keepUp(ctx, o.Out, l, d)
	}
	return nil
}

// daemonInterfaces are the daemon's interfaces: both router interfaces in
// offload mode, the default: the kernel's firewall and NAT decide, fastpath
// carries the established flows.
func daemonInterfaces(l *lab.Lab) []labd.Interface {
	return []labd.Interface{
		{Name: l.RtrIn, Mode: "offload", Attach: "auto"},
		{Name: l.RtrOut, Mode: "offload", Attach: "auto"},
	}
}

// withOutput prints what the daemon wrote so far under err's explanation
// and returns err, so a failed demo shows the daemon's side of the story.
func withOutput(w io.Writer, d *labd.Process, err error) error {
	if d == nil {
		return err
	}
	out := d.Output()
	if out == "" {
		fmt.Fprintf(w, "\n(the daemon wrote nothing)\n")
		return err
	}
	fmt.Fprintf(w, "\ndaemon output:\n%s", out)
	if !strings.HasSuffix(out, "\n") {
		fmt.Fprintln(w)
	}
	return err
}

func describeAttach(st *api.Status) string {
	var parts []string
	for _, ifc := range st.Interfaces {
		as := ifc.AttachedAs
		if as == "" {
			as = ifc.Attach
		}
		parts = append(parts, fmt.Sprintf("%s attached (%s, %s)", ifc.Name, as, ifc.Mode))
	}
	return strings.Join(parts, ", ")
}

// counters is one reading of fastpath's and the kernel's counters in rtr.
type counters struct {
	stats            *api.Stats
	kernel4, kernel6 uint64
}

func snapshot(ctx context.Context, c client, rtr string) (counters, error) {
	var s counters
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	st, err := c.Stats(cctx)
	if err != nil {
		return s, fmt.Errorf("read fastpath counters: %w", err)
	}
	s.stats = st
	if s.kernel4, s.kernel6, err = traffic.KernelForwarded(rtr); err != nil {
		return s, err
	}
	return s, nil
}

// result is the outcome of one traffic check.
type result struct {
	kind, family string // "ping", "tcp", "udp"; "IPv4", "IPv6"
	ok           bool
	detail       string
}

// sendTraffic runs every check for both families, in order, and records
// each outcome; a failing check does not stop the others.
func sendTraffic(ctx context.Context, l *lab.Lab) []result {
	var out []result
	for _, fam := range []struct {
		name string
		dst  netip.Addr
	}{{"IPv4", l.SinkAddr4}, {"IPv6", l.SinkAddr6}} {
		p, err := traffic.Ping(ctx, l, l.Gen, fam.dst.String(), pingCount, "-i", "0.2", "-W", "2")
		r := result{kind: "ping", family: fam.name, ok: err == nil && p.OK(),
			detail: fmt.Sprintf("%d/%d replies", p.Received, p.Transmitted)}
		if err != nil {
			r.detail = err.Error()
		}
		out = append(out, r)

		t, err := traffic.TCPTransfer(ctx, l.Gen, l.Sink, netip.AddrPortFrom(fam.dst, 0), tcpBytes)
		r = result{kind: "tcp", family: fam.name, ok: err == nil,
			detail: fmt.Sprintf("%s, sha256 equal, %.2f Gbit/s, sink saw source %s (masqueraded)",
				mib(t.Received), t.Gbps(), t.Peer.Addr())}
		if err != nil {
			r.detail = err.Error()
		}
		out = append(out, r)

		u, err := traffic.UDPStream(ctx, l.Gen, l.Sink, netip.AddrPortFrom(fam.dst, 0), udpCount, udpSize, udpInterval)
		r = result{kind: "udp", family: fam.name, ok: err == nil && u.LossRatio() <= udpFailRatio,
			detail: fmt.Sprintf("%d/%d datagrams of %d B (%.1f%% loss)", u.Received, u.Sent, udpSize, 100*u.LossRatio())}
		if err != nil {
			r.detail = err.Error()
		}
		out = append(out, r)
	}
	return out
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
