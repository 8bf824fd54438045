package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/lab"
	"github.com/fastpath-router/fastpath/internal/labd"
	"github.com/fastpath-router/fastpath/internal/traffic"
)

// TestGuard: with real traffic on both hooks, a source the deny list names
// (from a list file of tens of thousands of lines) is dropped at the
// router while another source on the same segment is forwarded; run-time
// additions and removals through the API and a reload take effect without
// reattaching; a reload with an unreadable list file changes nothing.
func TestGuard(t *testing.T) {
	for _, attach := range []string{"xdp", "tc"} {
		t.Run(attach, func(t *testing.T) { testGuard(t, attach) })
	}
}

func testGuard(t *testing.T, attach string) {
	ctx := testContext(t)
	l := newLab(t, attach)
	// A second source on gen's segment, for each family.
	bad4, bad6 := "198.18.1.7", "fd00:1::7"
	for _, args := range [][]string{
		{"addr", "add", bad4 + "/24", "dev", l.GenIf},
		{"addr", "add", bad6 + "/64", "dev", l.GenIf, "nodad"},
	} {
		if out, err := l.Command(ctx, l.Gen, "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	dir := t.TempDir()
	socket := filepath.Join(dir, "api.sock")
	denyFile := filepath.Join(dir, "deny.txt")
	writeDeny := func(extra ...string) {
		t.Helper()
		var b strings.Builder
		b.WriteString("# generated\n")
		for i := range 30000 { // tens of thousands of prefixes none of the lab uses
			fmt.Fprintf(&b, "198.19.%d.%d/32\n", i/256, i%256)
		}
		for _, e := range extra {
			b.WriteString(e + "\n")
		}
		if err := os.WriteFile(denyFile, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ifaces := routeIfaces(l, attach)
	writeConfig := func(files ...string) {
		t.Helper()
		cfg := labd.ConfigYAML(socket, ifaces...) + fmt.Sprintf("guard:\n  deny: [%q]\n  deny_files: [%s]\n",
			bad6+"/128", strings.Join(files, ", "))
		if err := os.WriteFile(filepath.Join(dir, labd.ConfigFile), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeDeny(bad4 + "/32")
	writeConfig(denyFile)
	d := startDaemonWithConfig(t, l.Rtr, filepath.Join(dir, labd.ConfigFile), socket)
	st, err := d.p.WaitReady(ctx, d.c, readyTimeout)
	if err != nil {
		t.Fatal(err)
	}
	r0 := mustIface(t, st, l.RtrIn)
	if r0.AttachedAs != attach {
		t.Fatalf("%s attached as %q, want %s", l.RtrIn, r0.AttachedAs, attach)
	}

	pass := func(src string, dst string) {
		t.Helper()
		mustPing(ctx, t, l, netip.MustParseAddr(dst), 3, "-I", src)
	}
	blocked := func(src, dst string) {
		t.Helper()
		p, err := traffic.Ping(ctx, l, l.Gen, dst, 3, "-i", "0.05", "-W", "1", "-I", src)
		if p.Transmitted != 3 || p.Received != 0 {
			t.Fatalf("ping %s from %s: %d/%d replies (%v), want none: the guard should drop it\n%s", dst, src, p.Received, p.Transmitted, err, p.Output)
		}
	}
	drops := func() uint64 {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		g, err := d.c.Guard(c, api.GuardQuery{Top: 5})
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range g.Interfaces {
			if i.Name == l.RtrIn {
				return i.Dropped["deny"]
			}
		}
		t.Fatalf("guard lists no %s: %+v", l.RtrIn, g.Interfaces)
		return 0
	}

	// From the config: the listed sources are dropped, the others pass.
	pass(l.GenAddr4.String(), l.SinkAddr4.String())
	pass(l.GenAddr6.String(), l.SinkAddr6.String())
	before := drops()
	blocked(bad4, l.SinkAddr4.String())
	blocked(bad6, l.SinkAddr6.String())
	if got := drops() - before; got < 6 {
		t.Errorf("deny drops on %s: +%d, want >= 6", l.RtrIn, got)
	}

	// At run time: allow wins over deny; del takes it back.
	change := func(add bool, list string, ps ...string) error {
		c, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		_, err := d.c.GuardChange(c, add, list, ps)
		return err
	}
	if err := change(true, "allow", bad4); err != nil {
		t.Fatal(err)
	}
	pass(bad4, l.SinkAddr4.String())
	if err := change(false, "allow", bad4); err != nil {
		t.Fatal(err)
	}
	blocked(bad4, l.SinkAddr4.String())
	if err := change(true, "deny", l.GenAddr6.String()); err != nil {
		t.Fatal(err)
	}
	blocked(l.GenAddr6.String(), l.SinkAddr6.String())
	if err := change(false, "deny", bad4+"/32"); err == nil || !strings.Contains(err.Error(), "config") {
		t.Errorf("del of a config entry: %v, want a refusal naming the config", err)
	}
	if err := change(true, "deny", "198.18.1.7/24"); err == nil || !strings.Contains(err.Error(), "host bits") {
		t.Errorf("add of a bad prefix: %v", err)
	}

	reload := func() (*api.ReloadResult, error) {
		c, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		return d.c.Reload(c)
	}
	// A reload with an unreadable file is refused whole: still dropped.
	writeConfig(denyFile, filepath.Join(dir, "missing.txt"))
	var ce *api.ConfigError
	if _, err := reload(); !errors.As(err, &ce) || !strings.Contains(err.Error(), "missing.txt") {
		t.Errorf("reload with a missing list file: %v, want a config error naming it", err)
	}
	blocked(bad4, l.SinkAddr4.String())

	// A reload without bad4 in the file: it passes; the run-time entry
	// stays; nothing was reattached.
	writeDeny()
	writeConfig(denyFile)
	res, err := reload()
	if err != nil || !strings.Contains(strings.Join(res.Actions, ";"), "guard deny list") {
		t.Fatalf("reload: %+v, %v", res, err)
	}
	pass(bad4, l.SinkAddr4.String())
	blocked(l.GenAddr6.String(), l.SinkAddr6.String())
	if now := mustIface(t, d.status(t), l.RtrIn); now.LinkID != r0.LinkID || now.ProgramID != r0.ProgramID {
		t.Errorf("guard changes reattached %s: link %d -> %d, program %d -> %d", l.RtrIn, r0.LinkID, now.LinkID, r0.ProgramID, now.ProgramID)
	}
	if err := change(false, "deny", l.GenAddr6.String()); err != nil {
		t.Fatal(err)
	}
	pass(l.GenAddr6.String(), l.SinkAddr6.String())
}

// TestGuardNewFlowFlood: in offload mode behind masquerade, a flood of new
// UDP flows (one packet to each of 2000 ports of the sink) arrives while
// an offloaded flow streams. With a total new-flow limit, the conntrack
// table grows by at most what the limit admits, the guard counts the rest
// as new_total or (under pressure: gen never completed a TCP handshake
// here) new_unknown drops, and the offloaded flow keeps its packets (it
// hits the flow cache, which the new-flow check asks first).
func TestGuardNewFlowFlood(t *testing.T) {
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			const (
				floodFlows = 2000
				rate       = 20 // new flows a second, all CPUs together
			)
			l := newLab(t, attach)
			ctx := testContext(t)
			nft(ctx, t, l, masqueradeRuleset+filterRuleset)
			dir := t.TempDir()
			socket := filepath.Join(dir, "api.sock")
			cfg := labd.ConfigYAML(socket, offloadIfaces(l, attach)...) +
				fmt.Sprintf("guard:\n  total:\n    new_flows: {rate: %d, burst: %d}\n", rate, rate)
			path := filepath.Join(dir, labd.ConfigFile)
			if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			d := startDaemonWithConfig(t, l.Rtr, path, socket)
			if _, err := d.p.WaitReady(ctx, d.c, readyTimeout); err != nil {
				t.Fatal(err)
			}

			// The legitimate flow, offloaded before the flood.
			u := newUDPFlow(t, l.Gen, l.Sink, netip.AddrPort{}, netip.AddrPortFrom(l.SinkAddr4, 0), netip.AddrPortFrom(l.SinkAddr4, 0))
			u.handshake(t)
			u.send(ctx, 20, 64, time.Millisecond)
			u.waitReceived(t, 20, offloadWait)
			d.waitFlow(t, u.local, u.dst)

			ctCount := func() int {
				out := strings.TrimSpace(rtrRun(ctx, t, l, "conntrack", "-C"))
				n, err := strconv.Atoi(out)
				if err != nil {
					t.Fatalf("conntrack -C: %q", out)
				}
				return n
			}
			// The flood's source never completed a TCP handshake through
			// the router, so under pressure its drops count as new_unknown
			// (docs/guard.md, Pressure), the first ones as new_total.
			newTotal := func() uint64 {
				return guardDropped(ctx, t, d, "new_total") + guardDropped(ctx, t, d, "new_unknown")
			}
			// Drop events are sampled into the event stream.
			evCtx, evStop := context.WithCancel(ctx)
			defer evStop()
			guardEvents := make(chan api.Event, 16)
			go d.c.Events(evCtx, func(e api.Event) error {
				if e.Kind == api.EventGuardDrop {
					select {
					case guardEvents <- e:
					default:
					}
				}
				return nil
			})
			ct0, drops0 := ctCount(), newTotal()
			start := time.Now()
			legit := u.stream(t, ctx, 2000, 64, 500*time.Microsecond)
			flood(t, l, 20000, floodFlows)
			sent := legit.wait()
			got := u.settle(t, 20+sent, 500*time.Millisecond) - 20
			elapsed := time.Since(start)

			// The flood's drops are counted as they happen; conntrack is read
			// once they are all in.
			pollUntil(t, 5*time.Second, "guard counted the flood", func() error {
				if d := newTotal() - drops0; d < floodFlows/2 {
					return fmt.Errorf("new_total drops %d", d)
				}
				return nil
			})
			dropped := newTotal() - drops0
			grew := ctCount() - ct0
			// Admitted at most: the burst, the rate over the time taken, and
			// the legitimate flow's own entries (none: it exists).
			admit := rate + int(elapsed.Seconds()*rate) + 1
			if grew > admit {
				t.Errorf("conntrack grew by %d entries during the flood of %d new flows; the limit admits at most %d", grew, floodFlows, admit)
			}
			if int(dropped)+grew < floodFlows-admit {
				t.Errorf("new_total drops %d and %d new entries for %d flood flows", dropped, grew, floodFlows)
			}
			if loss := 1 - float64(got)/float64(sent); loss > offUDPMaxLoss {
				t.Errorf("offloaded flow: %d of %d received during the flood (%.1f%% loss)", got, sent, 100*loss)
			}
			t.Logf("flood of %d new flows: %d dropped (new_total, new_unknown), conntrack +%d in %v; offloaded flow %d/%d", floodFlows, dropped, grew, elapsed.Round(time.Millisecond), got, sent)
			// At most one event per CPU per second: the stream may have
			// subscribed after the flood's first drops, so more new flows
			// go out (bounded) until an event arrives.
			more := 40000
			pollUntil(t, 5*time.Second, "a guard_drop event", func() error {
				select {
				case e := <-guardEvents:
					if (e.Reason != "new_total" && e.Reason != "new_unknown") || e.Interface != l.RtrIn || !strings.Contains(e.Detail, l.SinkAddr4.String()) {
						t.Errorf("guard_drop event %+v: want reason new_total or new_unknown on %s towards %s", e, l.RtrIn, l.SinkAddr4)
					}
					return nil
				default:
				}
				flood(t, l, more, 10)
				more += 10
				return errors.New("none yet")
			})
			evStop()

			// The control: without the guard (reload), the same flood fills
			// conntrack.
			if err := os.WriteFile(path, []byte(labd.ConfigYAML(socket, offloadIfaces(l, attach)...)), 0o644); err != nil {
				t.Fatal(err)
			}
			c, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			if _, err := d.c.Reload(c); err != nil {
				t.Fatal(err)
			}
			ct1 := ctCount()
			flood(t, l, 30000, floodFlows)
			pollUntil(t, 5*time.Second, "the unguarded flood in conntrack", func() error {
				if n := ctCount() - ct1; n < floodFlows*9/10 {
					return fmt.Errorf("conntrack +%d", n)
				}
				return nil
			})
			t.Logf("without the guard: conntrack +%d", ctCount()-ct1)
		})
	}
}

// flood sends one UDP datagram from gen to each of n ports of the sink from
// first on: n new flows for conntrack, unless something drops them.
func flood(t *testing.T, l *lab.Lab, first, n int) {
	t.Helper()
	inNS(t, l.Gen, func() error {
		c, err := net.ListenUDP("udp4", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range n {
			if _, err := c.WriteToUDPAddrPort([]byte("flood"), netip.AddrPortFrom(l.SinkAddr4, uint16(first+i))); err != nil {
				return err
			}
		}
		return nil
	})
}

// TestGuardLimits: per-source packet and SYN limits with real traffic on
// both hooks (route mode): a fast ping from gen is cut to what the bucket
// admits, SYNs beyond the SYN limit are dropped, and allow-listed sources
// are exempt.
func TestGuardLimits(t *testing.T) {
	for _, attach := range []string{"xdp", "tc"} {
		t.Run(attach, func(t *testing.T) {
			const pings = 200
			ctx := testContext(t)
			l := newLab(t, attach)
			dir := t.TempDir()
			socket := filepath.Join(dir, "api.sock")
			cfg := labd.ConfigYAML(socket, routeIfaces(l, attach)...) + fmt.Sprintf(`guard:
  allow: [%q, %q]
  per_source:
    packets: {rate: 20, burst: 20}
    syn: {rate: 5, burst: 5}
`, l.GenAddr6, l.SinkAddr6)
			path := filepath.Join(dir, labd.ConfigFile)
			if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			d := startDaemonWithConfig(t, l.Rtr, path, socket)
			if _, err := d.p.WaitReady(ctx, d.c, readyTimeout); err != nil {
				t.Fatal(err)
			}
			dropped := func(reason string) uint64 { return guardDropped(ctx, t, d, reason) }

			// SYNs first (the packet bucket is full): 15 connects to a
			// closed port of the sink, one SYN each, sent at once from
			// non-blocking sockets made in gen; 5 pass (the SYN burst), the
			// rest are dropped as SYNs over the source's limit.
			const syns = 15
			inNS(t, l.Gen, func() error {
				var fds []int
				defer func() {
					for _, fd := range fds {
						unix.Close(fd)
					}
				}()
				for i := range syns {
					fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
					if err != nil {
						return err
					}
					fds = append(fds, fd)
					err = unix.Connect(fd, &unix.SockaddrInet4{Port: 9 + i, Addr: l.SinkAddr4.As4()})
					if err != nil && !errors.Is(err, unix.EINPROGRESS) {
						return err
					}
				}
				return nil
			})
			pollUntil(t, 5*time.Second, "SYN drops counted", func() error {
				if n := dropped("syn_source"); n < syns-5-2 {
					return fmt.Errorf("syn_source drops %d of %d SYNs", n, syns)
				}
				return nil
			})

			// Allowed both ways: every ping of a fast series is answered.
			mustPing(ctx, t, l, l.SinkAddr6, pings, "-i", "0.002")

			// IPv4 is limited: the requests (gen's bucket on r0, partly
			// spent on the SYNs) and the replies (sink's bucket on r1) both
			// hold at most 20 and refill 20/s.
			start := time.Now()
			p, _ := traffic.Ping(ctx, l, l.Gen, l.SinkAddr4.String(), pings, "-i", "0.002", "-W", "1")
			admit := 20 + int(time.Since(start).Seconds()*20) + 1
			if p.Transmitted != pings || p.Received > admit || p.Received == 0 {
				t.Errorf("ping at 500/s: %d of %d answered, want 1 to %d (the bucket)\n%s", p.Received, p.Transmitted, admit, p.Output)
			}
			if n := dropped("rate_pkt"); n < uint64(pings-admit) {
				t.Errorf("rate_pkt drops %d, want >= %d", n, pings-admit)
			}
		})
	}
}

// guardDropped sums the guard's drops for reason over all interfaces of
// the daemon d.
func guardDropped(ctx context.Context, t *testing.T, d *daemon, reason string) uint64 {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	g, err := d.c.Guard(c, api.GuardQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, i := range g.Interfaces {
		n += i.Dropped[reason]
	}
	return n
}
