package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/lab"
	"github.com/fastpath-router/fastpath/internal/labd"
)

// cleanupTimeout bounds the wait for the kernel to free programs, maps and
// links after the daemon ends: it frees them after an RCU grace period.
const cleanupTimeout = 5 * time.Second

// exitUsage is the daemon's exit status for a bad config.
const exitUsage = 2

// TestConfigErrors runs the daemon on invalid configs: it must exit with
// status 2 and name the offending field, before touching anything.
func TestConfigErrors(t *testing.T) {
	l := newLab(t)
	// SOCKET is replaced by a socket of the test's own, so that a daemon
	// that wrongly accepted a config could not touch the default socket.
	for _, tc := range []struct {
		name, yaml, field string
	}{
		{"bad mode", "version: 1\ninterfaces:\n  - {name: r0, mode: fast}\napi: {socket: SOCKET}\n", "interfaces[0].mode"},
		{"bad attach", "version: 1\ninterfaces:\n  - {name: r0, mode: route}\n  - {name: r1, mode: route, attach: ebpf}\napi: {socket: SOCKET}\n", "interfaces[1].attach"},
		{"unknown key", "version: 1\ninterfaces:\n  - {name: r0, mode: route, colour: blue}\napi: {socket: SOCKET}\n", "colour"},
		{"no version", "interfaces:\n  - {name: r0, mode: route}\napi: {socket: SOCKET}\n", "version"},
		{"relative socket", "version: 1\ninterfaces:\n  - {name: r0, mode: route}\napi: {socket: fp.sock}\n", "api.socket"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "-"), func(t *testing.T) {
			dir := t.TempDir()
			socket, cfg := filepath.Join(dir, "api.sock"), filepath.Join(dir, "bad.yaml")
			if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(tc.yaml, "SOCKET", socket)), 0o644); err != nil {
				t.Fatal(err)
			}
			d := startDaemonWithConfig(t, l.Rtr, cfg, socket)
			out := d.waitFailed(t)
			if code := d.p.ExitCode(); code != exitUsage {
				t.Errorf("exit status %d, want %d; output:\n%s", code, exitUsage, out)
			}
			if !strings.Contains(out, tc.field) {
				t.Errorf("error does not name %q:\n%s", tc.field, out)
			}
			assertNothingAttached(t, l, l.RtrIn, l.RtrOut)
		})
	}
}

// TestMissingInterface configures r0 and an interface rtr does not have:
// the daemon must refuse to start, name the interface, and leave nothing
// attached to r0, nor its API socket behind.
func TestMissingInterface(t *testing.T) {
	l := newLab(t, "xdp")
	d := startDaemon(t, l.Rtr,
		labd.Interface{Name: l.RtrIn, Attach: "xdp"}, labd.Interface{Name: "nosuch0", Attach: "xdp"})
	out := d.waitFailed(t)
	if code := d.p.ExitCode(); code == 0 {
		t.Errorf("exit status 0 with a missing interface")
	}
	if !strings.Contains(out, "nosuch0") {
		t.Errorf("error does not name nosuch0:\n%s", out)
	}
	assertNothingAttached(t, l, l.RtrIn)
	if _, err := os.Lstat(d.socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("api socket %s left behind: %v", d.socket, err)
	}
}

// TestAttachFailureRollsBack makes the last of three interfaces fail to
// attach (a bridge has no native XDP) after r0 and r1 were attached: start
// is all or nothing, so the daemon must exit and detach r0 and r1 again.
func TestAttachFailureRollsBack(t *testing.T) {
	l := newLab(t, "xdp")
	const bridge = "br9"
	inNS(t, l.Rtr, func() error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridge}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("add bridge: %w", err)
		}
		return netlink.LinkSetUp(br)
	})
	d := startDaemon(t, l.Rtr,
		labd.Interface{Name: l.RtrIn, Attach: "tc"},
		labd.Interface{Name: l.RtrOut, Attach: "xdp"},
		labd.Interface{Name: bridge, Attach: "xdp"})
	out := d.waitFailed(t)
	if d.p.ExitCode() == 0 || !strings.Contains(out, bridge) {
		t.Errorf("exit status %d, want non-zero and an error naming %s:\n%s", d.p.ExitCode(), bridge, out)
	}
	// The daemon logs each attach; make sure the rollback had work to do.
	if !strings.Contains(out, "msg=attached interface="+l.RtrIn) {
		t.Errorf("the daemon did not attach %s before failing, so nothing here shows a rollback:\n%s", l.RtrIn, out)
	}
	assertNothingAttached(t, l, l.RtrIn, l.RtrOut, bridge)
}

// TestSecondDaemon starts a second daemon in the same namespace, which must
// refuse, leaving the first one working; and one in another namespace,
// which must run beside it.
func TestSecondDaemon(t *testing.T) {
	l := newLab(t)
	first, st := runDaemon(t, l.Rtr, routeIfaces(l, "auto")...)
	ctx := testContext(t)

	second := startDaemon(t, l.Rtr, routeIfaces(l, "auto")...)
	out := second.waitFailed(t)
	holder := fmt.Sprintf("already running in this network namespace (pid %d)", st.PID)
	if second.p.ExitCode() == 0 || !strings.Contains(out, holder) {
		t.Errorf("second daemon in %s: exit status %d, want non-zero and %q:\n%s",
			l.Rtr, second.p.ExitCode(), holder, out)
	}
	if _, err := os.Lstat(second.socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("second daemon's api socket %s exists: %v", second.socket, err)
	}

	checkFirst := func(when string) {
		t.Helper()
		now := first.status(t)
		if ok, why := labd.Attached(now); !ok || !first.p.Running() {
			t.Fatalf("%s: first daemon (running %v): %s", when, first.p.Running(), why)
		}
		for i, ifc := range now.Interfaces {
			if ifc.ProgramID != st.Interfaces[i].ProgramID || ifc.LinkID != st.Interfaces[i].LinkID {
				t.Errorf("%s: %s program/link changed from %d/%d to %d/%d", when, ifc.Name,
					st.Interfaces[i].ProgramID, st.Interfaces[i].LinkID, ifc.ProgramID, ifc.LinkID)
			}
		}
		mustPing(ctx, t, l, l.SinkAddr4, 2)
		mustPing(ctx, t, l, l.SinkAddr6, 2)
	}
	checkFirst("after the second daemon failed")

	other, ost := runDaemon(t, l.Sink, labd.Interface{Name: l.SinkIf, Attach: "auto"})
	if ost.NetNS == st.NetNS || ost.PID == st.PID {
		t.Errorf("daemon in %s reports netns %s pid %d, the same as the one in %s", l.Sink, ost.NetNS, ost.PID, l.Rtr)
	}
	checkFirst("with a daemon in " + l.Sink)
	if !other.p.Running() {
		t.Errorf("daemon in %s exited", l.Sink)
	}
}

// TestCleanupAfterStop checks that nothing of the daemon outlives it: after
// SIGTERM (a clean stop) and after SIGKILL (a crash), its programs, maps and
// links are freed, no XDP or tcx program is attached, and traffic flows
// through the kernel. r0 uses XDP and r1 TC, so both kinds are covered.
func TestCleanupAfterStop(t *testing.T) {
	requireBinary(t)
	for _, sig := range []string{"SIGTERM", "SIGKILL"} {
		t.Run(sig, func(t *testing.T) {
			l := newLab(t, "xdp")
			ifaces := []labd.Interface{{Name: l.RtrIn, Attach: "xdp"}, {Name: l.RtrOut, Attach: "tc"}}
			d, st := runDaemon(t, l.Rtr, ifaces...)
			ctx := testContext(t)
			objs := daemonObjects(t, st)

			// The checks below must see what is attached, or they prove
			// nothing.
			for _, ifc := range st.Interfaces {
				h, err := hooksOn(l.Rtr, ifc.Name)
				if err != nil {
					t.Fatal(err)
				}
				if ifc.AttachedAs == "xdp" && h.xdpProg != ifc.ProgramID ||
					ifc.AttachedAs == "tc" && (len(h.tcx) != 1 || h.tcx[0] != ebpf.ProgramID(ifc.ProgramID)) {
					t.Fatalf("%s attached as %s, program %d; the kernel shows %s", ifc.Name, ifc.AttachedAs, ifc.ProgramID, h)
				}
			}
			if err := objs.gone(); err == nil {
				t.Fatal("the daemon's programs already look gone while it runs")
			}

			if sig == "SIGTERM" {
				if err := d.p.Stop(nil); err != nil {
					t.Fatal(err)
				}
				if err := d.p.ExitErr(); err != nil {
					t.Errorf("daemon exit after SIGTERM: %v, want status 0", err)
				}
			} else if err := d.p.Kill(); err != nil {
				t.Fatal(err)
			}

			pollUntil(t, cleanupTimeout, "daemon objects freed after "+sig, func() error {
				if err := objs.gone(); err != nil {
					return err
				}
				for _, name := range []string{l.RtrIn, l.RtrOut} {
					h, err := hooksOn(l.Rtr, name)
					if err != nil {
						return err
					}
					if !h.empty() {
						return fmt.Errorf("%s still has %s", name, h)
					}
				}
				return nil
			})
			if sig == "SIGTERM" {
				if _, err := os.Lstat(d.socket); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("api socket %s not removed: %v", d.socket, err)
				}
			}
			mustPing(ctx, t, l, l.SinkAddr4, 3)
			mustPing(ctx, t, l, l.SinkAddr6, 3)

			if sig == "SIGKILL" {
				// The kernel freed the lock with the process; the API socket
				// file it left is stale and must not stop a new daemon.
				d2 := startDaemonWithConfig(t, l.Rtr, d.config, d.socket)
				if _, err := d2.p.WaitReady(ctx, d2.c, readyTimeout); err != nil {
					t.Fatalf("restart after SIGKILL: %v", err)
				}
				mustPing(ctx, t, l, l.SinkAddr4, 3)
			}
		})
	}
}

// bpfObjects are a daemon's kernel objects, by ID.
type bpfObjects struct {
	progs []ebpf.ProgramID
	maps  []ebpf.MapID
	links []link.ID
}

// daemonObjects collects the programs and links a status names and the
// maps those programs use.
func daemonObjects(t *testing.T, st *api.Status) bpfObjects {
	t.Helper()
	var o bpfObjects
	seenProg, seenMap := map[ebpf.ProgramID]bool{}, map[ebpf.MapID]bool{}
	for _, ifc := range st.Interfaces {
		if ifc.ProgramID == 0 || ifc.LinkID == 0 {
			t.Fatalf("%s: status has no program/link ID (%d/%d)", ifc.Name, ifc.ProgramID, ifc.LinkID)
		}
		o.links = append(o.links, link.ID(ifc.LinkID))
		id := ebpf.ProgramID(ifc.ProgramID)
		if seenProg[id] {
			continue
		}
		seenProg[id] = true
		o.progs = append(o.progs, id)
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			t.Fatalf("program %d of %s: %v", id, ifc.Name, err)
		}
		info, err := p.Info()
		p.Close()
		if err != nil {
			t.Fatalf("program %d info: %v", id, err)
		}
		ids, ok := info.MapIDs()
		if !ok || len(ids) == 0 {
			t.Fatalf("program %d: no map IDs (supported %v)", id, ok)
		}
		for _, m := range ids {
			if !seenMap[m] {
				seenMap[m] = true
				o.maps = append(o.maps, m)
			}
		}
	}
	return o
}

// gone returns nil once none of the objects exists, else what is left.
func (o bpfObjects) gone() error {
	var left []string
	for _, id := range o.progs {
		if ok, err := progGone(id); err != nil {
			return err
		} else if !ok {
			left = append(left, fmt.Sprintf("program %d", id))
		}
	}
	for _, id := range o.maps {
		if ok, err := mapGone(id); err != nil {
			return err
		} else if !ok {
			left = append(left, fmt.Sprintf("map %d", id))
		}
	}
	for _, id := range o.links {
		if ok, err := linkGone(id); err != nil {
			return err
		} else if !ok {
			left = append(left, fmt.Sprintf("link %d", id))
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("still there: %s", strings.Join(left, ", "))
	}
	return nil
}

// assertNothingAttached fails the test if any of the interfaces in rtr has
// an XDP or tcx program.
func assertNothingAttached(t *testing.T, l *lab.Lab, ifnames ...string) {
	t.Helper()
	for _, name := range ifnames {
		h, err := hooksOn(l.Rtr, name)
		if err != nil {
			t.Fatal(err)
		}
		if !h.empty() {
			t.Errorf("%s/%s: %s, want nothing attached", l.Rtr, name, h)
		}
	}
}

// TestInterfaceFlap deletes r1 under the running daemon and creates it
// again: the daemon must mark it missing while r0 stays attached, keep
// answering, attach the new r1 by itself, and forward through it.
func TestInterfaceFlap(t *testing.T) {
	requireBinary(t)
	for _, attach := range []string{"tc", "xdp"} {
		t.Run(attach, func(t *testing.T) {
			l := newLab(t, attach)
			d, st := runDaemon(t, l.Rtr, routeIfaces(l, attach)...)
			ctx := testContext(t)
			old, _ := interfaceStatus(st, l.RtrOut)

			deleteLink(t, l.Rtr, l.RtrOut) // takes s0 in sink along
			if _, err := d.p.WaitStatus(ctx, d.c, readyTimeout, func(st *api.Status) (bool, string) {
				in, _ := interfaceStatus(st, l.RtrIn)
				out, _ := interfaceStatus(st, l.RtrOut)
				return in.State == api.StateAttached && out.State == api.StateMissing,
					fmt.Sprintf("%s %s, %s %s", in.Name, in.State, out.Name, out.State)
			}); err != nil {
				t.Fatalf("after deleting %s: %v", l.RtrOut, err)
			}
			if h, err := hooksOn(l.Rtr, l.RtrIn); err != nil || h.empty() {
				t.Errorf("%s lost its program when %s went away: %s %v", l.RtrIn, l.RtrOut, h, err)
			}

			recreateOutLink(ctx, t, l)
			// Ready means r1 attached again; for XDP also wait until the
			// kernel says the new r1 takes XDP frames (its peer s0 got GRO
			// after the veth appeared), else r0 passes to the kernel.
			st, err := d.p.WaitStatus(ctx, d.c, readyTimeout, func(st *api.Status) (bool, string) {
				if ok, why := labd.Attached(st); !ok {
					return false, why
				}
				out, _ := interfaceStatus(st, l.RtrOut)
				return attach != "xdp" || out.XDPTarget, fmt.Sprintf("%s xdp_target %v", out.Name, out.XDPTarget)
			})
			if err != nil {
				t.Fatalf("after recreating %s: %v", l.RtrOut, err)
			}
			if now, _ := interfaceStatus(st, l.RtrOut); now.Ifindex == old.Ifindex || now.AttachedAs != attach {
				t.Errorf("%s now ifindex %d attached as %q; before ifindex %d: want a new ifindex, attached as %s",
					l.RtrOut, now.Ifindex, now.AttachedAs, old.Ifindex, attach)
			}

			mustPing(ctx, t, l, l.SinkAddr4, 3) // also resolves the neighbours again
			mustPing(ctx, t, l, l.SinkAddr6, 3)
			before := d.counters(t, l.Rtr)
			u, err := udpStream(ctx, l, l.SinkAddr4, 500)
			if err != nil || u.LossRatio() > fwdUDPMaxLos {
				t.Errorf("udp after the flap: %v (%d/%d received)", err, u.Received, u.Sent)
			}
			after := d.counters(t, l.Rtr)
			if fp := after.forwarded() - before.forwarded(); fp < uint64(u.Received)*9/10 {
				t.Errorf("fastpath forwarded %d packets of %d UDP datagrams received after the flap; %s",
					fp, u.Received, before.reasonDeltas(after, l.RtrIn))
			}
		})
	}
}

// TestStatusConfigPath: a daemon started with a config path relative to
// its working directory shows the file's absolute path in its status.
func TestStatusConfigPath(t *testing.T) {
	l := newLab(t)
	cfg, socket := daemonConfig(t, routeIfaces(l, "tc")...)
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, cfg)
	if err != nil || filepath.IsAbs(rel) {
		t.Fatalf("no relative path from %s to %s: %q, %v", wd, cfg, rel, err)
	}
	d := startDaemonWithConfig(t, l.Rtr, rel, socket)
	st, err := d.p.WaitReady(context.Background(), d.c, readyTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if st.ConfigFile != cfg {
		t.Errorf("status config %q, want %q (started with %q)", st.ConfigFile, cfg, rel)
	}
}
