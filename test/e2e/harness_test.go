package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/lab"
	"github.com/fastpath-router/fastpath/internal/labd"
	"github.com/fastpath-router/fastpath/internal/nsutil"
	"github.com/fastpath-router/fastpath/internal/traffic"
)

// Bounds of the harness; each test also has its own overall deadline.
const (
	labTimeout   = 20 * time.Second
	readyTimeout = 30 * time.Second // daemon start until all attached (loading the programs takes seconds on a busy machine)
	exitTimeout  = 10 * time.Second // a daemon that must fail, until it exits
	callTimeout  = 2 * time.Second  // one API call
	testTimeout  = 60 * time.Second // one test's traffic and polls
	pollEvery    = 50 * time.Millisecond
)

// testContext is a context bounded by testTimeout and cancelled at cleanup.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newLab builds a lab with a short random name and removes it at cleanup.
// The end hosts keep their default offloads, as users' do, except where a
// test forces native XDP (attaches holds "xdp"): that is correct only for
// hosts that finish their checksums, so those get tx checksum offload off.
func newLab(t *testing.T, attaches ...string) *lab.Lab {
	t.Helper()
	requireBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), labTimeout)
	defer cancel()
	var err error
	for range 3 { // a name clash with another lab is unlikely but possible
		name := "e" + randomName(4)
		var l *lab.Lab
		l, err = lab.Up(ctx, lab.Options{Name: name, HostTxChecksumOff: slices.Contains(attaches, "xdp")})
		if err == nil {
			// Only now: Down of a name we did not create would remove
			// someone else's lab.
			t.Cleanup(func() {
				if err := lab.Down(name); err != nil {
					t.Errorf("lab down: %v", err)
				}
			})
			return l
		}
		if !strings.Contains(err.Error(), "already exists") {
			break
		}
	}
	t.Fatalf("lab up: %v", err)
	return nil
}

func randomName(n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b)
}

// daemon is a fastpath daemon under test.
type daemon struct {
	p      *labd.Process
	c      *api.Client
	socket string
	config string
}

// startDaemon writes a config for ifaces with its own API socket and starts
// the daemon in netns; it does not wait. At cleanup the daemon is stopped
// (SIGTERM, then SIGKILL) and, if the test failed, its output logged.
func startDaemon(t *testing.T, netns string, ifaces ...labd.Interface) *daemon {
	t.Helper()
	cfg, socket := daemonConfig(t, ifaces...)
	return startDaemonWithConfig(t, netns, cfg, socket)
}

// daemonConfig writes a daemon config for ifaces, with an API socket of its
// own, into a directory of the test's, and returns both paths.
func daemonConfig(t *testing.T, ifaces ...labd.Interface) (cfg, socket string) {
	t.Helper()
	dir := t.TempDir()
	socket = filepath.Join(dir, "api.sock")
	cfg, err := labd.WriteConfig(dir, socket, ifaces...)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, socket
}

// startDaemonWithConfig starts the daemon on an existing config file.
func startDaemonWithConfig(t *testing.T, netns, cfg, socket string) *daemon {
	t.Helper()
	p, err := labd.Start(context.Background(), netns, requireBinary(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(slog.New(slog.NewTextHandler(t.Output(), nil))); err != nil {
			t.Errorf("stop daemon: %v", err)
		}
		if t.Failed() {
			t.Logf("daemon pid %d in %s (config %s), exit %d, output:\n%s", p.PID(), netns, cfg, p.ExitCode(), p.Output())
		}
	})
	return &daemon{p: p, c: api.NewClient(socket), socket: socket, config: cfg}
}

// runDaemon starts the daemon and waits until every interface is attached.
func runDaemon(t *testing.T, netns string, ifaces ...labd.Interface) (*daemon, *api.Status) {
	t.Helper()
	d := startDaemon(t, netns, ifaces...)
	st, err := d.p.WaitReady(context.Background(), d.c, readyTimeout)
	if err != nil {
		t.Fatalf("daemon in %s: %v", netns, err) // cleanup logs its output
	}
	return d, st
}

// routeIfaces configures the router's two interfaces in route mode.
func routeIfaces(l *lab.Lab, attach string) []labd.Interface {
	return []labd.Interface{
		{Name: l.RtrIn, Mode: "route", Attach: attach},
		{Name: l.RtrOut, Mode: "route", Attach: attach},
	}
}

// waitFailed waits for a daemon that must fail to start and returns its
// output.
func (d *daemon) waitFailed(t *testing.T) string {
	t.Helper()
	if err := d.p.WaitExit(exitTimeout); err != nil {
		t.Fatalf("%v; it should have failed to start", err) // cleanup logs its output
	}
	return d.p.Output()
}

func (d *daemon) status(t *testing.T) *api.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	st, err := d.c.Status(ctx)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

// counters is one reading of fastpath's and the kernel's counters.
type counters struct {
	stats            *api.Stats
	kernel4, kernel6 uint64
}

func (d *daemon) counters(t *testing.T, rtr string) counters {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	st, err := d.c.Stats(ctx)
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	v4, v6, err := traffic.KernelForwarded(rtr)
	if err != nil {
		t.Fatal(err)
	}
	return counters{stats: st, kernel4: v4, kernel6: v6}
}

// forwarded is fastpath's forwarded packets summed over interfaces.
func (c counters) forwarded() uint64 {
	var n uint64
	for _, s := range c.stats.Interfaces {
		n += s.Forwarded.Packets
	}
	return n
}

func (c counters) kernel() uint64 { return c.kernel4 + c.kernel6 }

// reason is the pass-reason counter of one interface, by name.
func (c counters) reason(ifname, reason string) uint64 {
	for _, s := range c.stats.Interfaces {
		if s.Name == ifname {
			return s.PassReasons[reason]
		}
	}
	return 0
}

// reasonDeltas lists the pass reasons of ifname that grew from c to later,
// for error messages.
func (c counters) reasonDeltas(later counters, ifname string) string {
	var parts []string
	for _, s := range later.stats.Interfaces {
		if s.Name != ifname {
			continue
		}
		for r, n := range s.PassReasons {
			if d := n - c.reason(ifname, r); d > 0 {
				parts = append(parts, fmt.Sprintf("%s +%d", r, d))
			}
		}
	}
	sort.Strings(parts)
	return ifname + " pass reasons: " + strings.Join(parts, ", ")
}

// interfaceStatus finds one interface in a status.
func interfaceStatus(st *api.Status, name string) (api.InterfaceStatus, bool) {
	for _, ifc := range st.Interfaces {
		if ifc.Name == name {
			return ifc, true
		}
	}
	return api.InterfaceStatus{}, false
}

// udpStream sends count datagrams from gen to dst in sink.
func udpStream(ctx context.Context, l *lab.Lab, dst netip.Addr, count int) (traffic.UDPResult, error) {
	return traffic.UDPStream(ctx, l.Gen, l.Sink, netip.AddrPortFrom(dst, 0), count, fwdUDPSize, fwdUDPGap)
}

// pingOutput runs ping in ns with args and returns its output, whatever the
// exit status: for pings that must fail with an ICMP error.
func pingOutput(ctx context.Context, t *testing.T, l *lab.Lab, ns string, args ...string) string {
	t.Helper()
	out, err := l.Command(ctx, ns, "ping", args...).CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("ping %v in %s: %v", args, ns, err)
	}
	return string(out)
}

// mustPing pings addr from gen (with extra ping arguments) and fails the
// test unless every request is answered.
func mustPing(ctx context.Context, t *testing.T, l *lab.Lab, addr netip.Addr, count int, extra ...string) traffic.PingResult {
	t.Helper()
	p, err := traffic.Ping(ctx, l, l.Gen, addr.String(), count, append([]string{"-i", "0.05", "-W", "2"}, extra...)...)
	if err != nil || !p.OK() {
		t.Fatalf("ping %s: %v (%d/%d replies)\n%s", addr, err, p.Received, p.Transmitted, p.Output)
	}
	return p
}

// hooks says what is attached to interface ifname in namespace ns: an XDP
// program (netlink) and tcx ingress/egress programs (BPF_PROG_QUERY).
type hooks struct {
	xdpProg uint32
	tcx     []ebpf.ProgramID
}

func (h hooks) empty() bool { return h.xdpProg == 0 && len(h.tcx) == 0 }

func (h hooks) String() string { return fmt.Sprintf("xdp prog %d, tcx progs %v", h.xdpProg, h.tcx) }

func hooksOn(ns, ifname string) (hooks, error) {
	var h hooks
	err := nsutil.Do(ns, func() error {
		ln, err := netlink.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("find %s: %w", ifname, err)
		}
		if x := ln.Attrs().Xdp; x != nil && (x.Attached || x.ProgId != 0) {
			h.xdpProg = x.ProgId
			if h.xdpProg == 0 {
				h.xdpProg = ^uint32(0) // attached, id unknown
			}
		}
		// Ifindexes are per namespace: the query must run in ns.
		for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			res, err := link.QueryPrograms(link.QueryOptions{Target: ln.Attrs().Index, Attach: at})
			if err != nil {
				return fmt.Errorf("query tcx programs on %s: %w", ifname, err)
			}
			for _, p := range res.Programs {
				h.tcx = append(h.tcx, p.ID)
			}
		}
		return nil
	})
	if err != nil {
		return h, fmt.Errorf("hooks on %s/%s: %w", ns, ifname, err)
	}
	return h, nil
}

// pollUntil calls check every pollEvery until it returns nil or timeout
// passes, and then fails the test with check's last error.
func pollUntil(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	pollUntilEvery(t, timeout, pollEvery, what, check)
}

// pollUntilEvery is pollUntil with its own period.
func pollUntilEvery(t *testing.T, timeout, every time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("%s: not after %s: %v", what, timeout, err)
		case <-tick.C:
		}
	}
}

// inNS runs fn in namespace ns and fails the test on error.
func inNS(t *testing.T, ns string, fn func() error) {
	t.Helper()
	if err := nsutil.Do(ns, fn); err != nil {
		t.Fatalf("in %s: %v", ns, err)
	}
}

// setMTU sets the MTU of ifname in namespace ns.
func setMTU(t *testing.T, ns, ifname string, mtu int) {
	t.Helper()
	inNS(t, ns, func() error {
		ln, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetMTU(ln, mtu); err != nil {
			return fmt.Errorf("set mtu %d on %s: %w", mtu, ifname, err)
		}
		return nil
	})
}

// deleteLink deletes ifname in namespace ns (a veth takes its peer along).
func deleteLink(t *testing.T, ns, ifname string) {
	t.Helper()
	inNS(t, ns, func() error {
		ln, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		if err := netlink.LinkDel(ln); err != nil {
			return fmt.Errorf("delete %s: %w", ifname, err)
		}
		return nil
	})
}

// recreateOutLink rebuilds the lab's rtr <-> sink segment after r1 was
// deleted, as lab.Up builds it: the veth r1 (rtr) <-> s0 (sink), both up,
// the same addresses, sink's default routes via rtr, and gro on / tx off on
// s0 (see the lab package for why).
func recreateOutLink(ctx context.Context, t *testing.T, l *lab.Lab) {
	t.Helper()
	sinkFd, err := netns.GetFromPath(nsutil.Path(l.Sink))
	if err != nil {
		t.Fatalf("open netns %s: %v", l.Sink, err)
	}
	defer sinkFd.Close()
	inNS(t, l.Rtr, func() error {
		v := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: l.RtrOut},
			PeerName:      l.SinkIf,
			PeerNamespace: netlink.NsFd(sinkFd),
		}
		if err := netlink.LinkAdd(v); err != nil {
			return fmt.Errorf("add veth %s <-> %s/%s: %w", l.RtrOut, l.Sink, l.SinkIf, err)
		}
		return nil
	})
	ends := []struct {
		ns, ifc string
		a4, a6  netip.Addr
	}{
		{l.Rtr, l.RtrOut, l.RtrOutAddr4, l.RtrOutAddr6},
		{l.Sink, l.SinkIf, l.SinkAddr4, l.SinkAddr6},
	}
	for _, e := range ends {
		inNS(t, e.ns, func() error {
			ln, err := netlink.LinkByName(e.ifc)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetUp(ln); err != nil {
				return fmt.Errorf("set %s up: %w", e.ifc, err)
			}
			for _, a := range []struct {
				addr  netip.Addr
				bits  int
				flags int
			}{{e.a4, 24, 0}, {e.a6, 64, unix.IFA_F_NODAD}} {
				ipn := &net.IPNet{IP: net.IP(a.addr.AsSlice()), Mask: net.CIDRMask(a.bits, a.addr.BitLen())}
				if err := netlink.AddrAdd(ln, &netlink.Addr{IPNet: ipn, Flags: a.flags}); err != nil {
					return fmt.Errorf("add %s to %s: %w", ipn, e.ifc, err)
				}
			}
			return nil
		})
	}
	for _, e := range ends {
		pollUntil(t, 2*time.Second, "carrier on "+e.ns+"/"+e.ifc, func() error {
			return nsutil.Do(e.ns, func() error {
				ln, err := netlink.LinkByName(e.ifc)
				if err != nil {
					return err
				}
				if ln.Attrs().RawFlags&unix.IFF_LOWER_UP == 0 {
					return errors.New("no carrier")
				}
				return nil
			})
		})
	}
	inNS(t, l.Sink, func() error {
		ln, err := netlink.LinkByName(l.SinkIf)
		if err != nil {
			return err
		}
		for _, r := range []struct {
			gw  netip.Addr
			dst *net.IPNet
		}{
			{l.RtrOutAddr4, &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}},
			{l.RtrOutAddr6, &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}},
		} {
			route := &netlink.Route{LinkIndex: ln.Attrs().Index, Dst: r.dst, Gw: net.IP(r.gw.AsSlice())}
			if err := netlink.RouteAdd(route); err != nil {
				return fmt.Errorf("add default route via %s: %w", r.gw, err)
			}
		}
		return nil
	})
	out, err := l.Command(ctx, l.Sink, "ethtool", "-K", l.SinkIf, "gro", "on", "tx", "off").CombinedOutput()
	if err != nil {
		t.Fatalf("ethtool -K %s gro on tx off in %s: %v: %s", l.SinkIf, l.Sink, err, out)
	}
}

// progGone reports whether no BPF program with this ID exists any more.
func progGone(id ebpf.ProgramID) (bool, error) {
	p, err := ebpf.NewProgramFromID(id)
	if err == nil {
		p.Close() // our fd would keep it alive
		return false, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	return false, err
}

func mapGone(id ebpf.MapID) (bool, error) {
	m, err := ebpf.NewMapFromID(id)
	if err == nil {
		m.Close()
		return false, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	return false, err
}

func linkGone(id link.ID) (bool, error) {
	l, err := link.NewFromID(id)
	if err == nil {
		l.Close()
		return false, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	return false, err
}
