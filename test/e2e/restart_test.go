package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/datapath"
	"github.com/fastpath-router/fastpath/internal/labd"
	"github.com/fastpath-router/fastpath/internal/nsutil"
	"github.com/fastpath-router/fastpath/internal/traffic"
)

// TestRestartWithoutLoss: with --keep-datapath, a SIGTERM + restart and an
// upgrade whose maps have another layout (a new flows.max_entries) happen
// under a fixed-rate UDP stream and a TCP transfer through masquerade, and
// not one datagram is lost: the pinned links keep forwarding while no
// daemon runs and each new daemon swaps its programs in atomically.
func TestRestartWithoutLoss(t *testing.T) {
	for _, attach := range []string{"xdp", "tc"} {
		t.Run(attach, func(t *testing.T) {
			ctx := testContext(t)
			l := newLab(t, attach)
			if err := l.Masquerade(ctx); err != nil {
				t.Fatal(err)
			}
			bin := requireBinary(t)
			cfg, socket := daemonConfig(t, labd.Interface{Name: l.RtrIn, Mode: "offload", Attach: attach}, labd.Interface{Name: l.RtrOut, Mode: "offload", Attach: attach})
			t.Cleanup(func() { detachAndCheck(t, bin, l.Rtr, l.RtrIn, l.RtrOut) })

			d := startKept(t, l.Rtr, bin, cfg, socket)

			// Traffic first through the kernel, then offloaded; it lasts
			// across both restarts (a daemon takes seconds to load its
			// programs on a busy 2-core machine).
			udpDone := make(chan traffic.UDPResult, 1)
			udpErr := make(chan error, 1)
			go func() {
				r, err := traffic.UDPStream(ctx, l.Gen, l.Sink, netip.AddrPortFrom(l.SinkAddr4, 0), 15000, 256, time.Millisecond)
				udpDone <- r
				udpErr <- err
			}()
			tcp := startPacedTCP(ctx, t, l.Gen, l.Sink, l.SinkAddr4, 12*time.Second)
			pollUntil(t, 5*time.Second, "flows offloaded", func() error {
				if f := d.counters(t, l.Rtr).forwarded(); f < 200 {
					return fmt.Errorf("fastpath forwarded %d packets", f)
				}
				return nil
			})

			// Restart: same layout, adopted.
			stopKept(t, d)
			d = startKept(t, l.Rtr, bin, cfg, socket)
			if out := d.p.Output(); !strings.Contains(out, "adopting the datapath") {
				t.Errorf("second daemon did not adopt the pinned datapath:\n%s", out)
			}
			before := d.counters(t, l.Rtr).forwarded()
			pollUntil(t, 5*time.Second, "forwarding by the restarted daemon's datapath", func() error {
				if f := d.counters(t, l.Rtr).forwarded(); f < before+100 {
					return fmt.Errorf("forwarded %d -> %d", before, f)
				}
				return nil
			})

			// Upgrade: a different map layout is replaced atomically.
			b, err := os.ReadFile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			upgraded := strings.Replace(string(b), "api:", "flows:\n  max_entries: 131072\napi:", 1)
			if err := os.WriteFile(cfg, []byte(upgraded), 0o644); err != nil {
				t.Fatal(err)
			}
			stopKept(t, d)
			d = startKept(t, l.Rtr, bin, cfg, socket)
			if out := d.p.Output(); !strings.Contains(out, "replacing a pinned datapath of another layout") {
				t.Errorf("upgraded daemon did not replace the pinned datapath:\n%s", out)
			}
			pollUntil(t, 5*time.Second, "forwarding by the upgraded datapath", func() error {
				if f := d.counters(t, l.Rtr).forwarded(); f < 100 {
					return fmt.Errorf("upgraded datapath forwarded %d packets", f)
				}
				return nil
			})

			u, err := <-udpDone, <-udpErr
			if err != nil {
				t.Fatalf("udp stream: %v", err)
			}
			if u.Lost() != 0 || u.SendErrors != 0 {
				t.Errorf("udp: sent %d, received %d, send errors %d: lost %d datagrams across restart and upgrade",
					u.Sent, u.Received, u.SendErrors, u.Lost())
			}
			t.Logf("udp: %d/%d datagrams arrived across restart and upgrade", u.Received, u.Sent)
			tcp.check(t)
			stopKept(t, d)
		})
	}
}

// startKept starts a daemon with --keep-datapath and waits until ready.
func startKept(t *testing.T, netns, bin, cfg, socket string) *daemon {
	t.Helper()
	p, err := labd.Start(context.Background(), netns, bin, cfg, "--keep-datapath")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop(slog.New(slog.DiscardHandler))
		if t.Failed() {
			t.Logf("daemon pid %d output:\n%s", p.PID(), p.Output())
		}
	})
	d := &daemon{p: p, c: api.NewClient(socket), socket: socket, config: cfg}
	if _, err := p.WaitReady(context.Background(), d.c, readyTimeout); err != nil {
		t.Fatalf("daemon: %v\n%s", err, p.Output())
	}
	return d
}

func stopKept(t *testing.T, d *daemon) {
	t.Helper()
	if err := d.p.Stop(slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if code := d.p.ExitCode(); code != 0 {
		t.Fatalf("daemon exited with %d:\n%s", code, d.p.Output())
	}
}

// detachAndCheck runs `fastpath detach` in netns (with nsenter, which keeps
// /sys/fs/bpf visible) and checks nothing is left attached or pinned.
func detachAndCheck(t *testing.T, bin, netns string, ifnames ...string) {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+nsutil.Path(netns), "--", bin, "detach").CombinedOutput()
	if err != nil {
		t.Errorf("fastpath detach: %v: %s", err, out)
	}
	var dir string
	inNS(t, netns, func() (err error) {
		dir, err = datapath.PinDirFor(datapath.DefaultPinRoot)
		return err
	})
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("after detach the pins of %s remain in %s", netns, dir)
	}
	for _, ifname := range ifnames {
		h, err := hooksOn(netns, ifname)
		if err != nil {
			t.Error(err)
			continue
		}
		if !h.empty() {
			t.Errorf("after detach %s still has %s", ifname, h)
		}
	}
}

// pacedTCP is a TCP transfer at a bounded rate running in the background,
// long enough to span restarts: chunk bytes every tick for the duration.
type pacedTCP struct {
	done chan error
	sent int64
	got  chan [2]any // bytes received, sha256
	sum  [32]byte
}

func startPacedTCP(ctx context.Context, t *testing.T, client, server string, addr netip.Addr, d time.Duration) *pacedTCP {
	t.Helper()
	var ln net.Listener
	inNS(t, server, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		return err
	})
	t.Cleanup(func() { ln.Close() })
	var c net.Conn
	inNS(t, client, func() (err error) {
		c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", ln.Addr().String())
		return err
	})
	t.Cleanup(func() { c.Close() })
	p := &pacedTCP{done: make(chan error, 1), got: make(chan [2]any, 1)}
	go func() {
		s, err := ln.Accept()
		if err != nil {
			p.got <- [2]any{int64(-1), err}
			return
		}
		defer s.Close()
		s.SetDeadline(time.Now().Add(d + 30*time.Second))
		h := sha256.New()
		n, err := io.Copy(h, s)
		if err != nil {
			p.got <- [2]any{n, err}
			return
		}
		p.got <- [2]any{n, [32]byte(h.Sum(nil))}
	}()
	go func() {
		const chunk = 32 << 10 // every 2 ms: ~130 Mbit/s
		buf := make([]byte, chunk)
		h := sha256.New()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		end := time.Now().Add(d)
		for seq := 0; time.Now().Before(end); seq++ {
			for i := range buf {
				buf[i] = byte(seq + i*7)
			}
			if _, err := c.Write(buf); err != nil {
				p.done <- err
				return
			}
			h.Write(buf)
			p.sent += chunk
			select {
			case <-ctx.Done():
				p.done <- ctx.Err()
				return
			case <-tick.C:
			}
		}
		p.sum = [32]byte(h.Sum(nil))
		p.done <- c.(*net.TCPConn).CloseWrite()
	}()
	return p
}

// check waits for the transfer and verifies every byte arrived intact.
func (p *pacedTCP) check(t *testing.T) {
	t.Helper()
	if err := <-p.done; err != nil {
		t.Fatalf("tcp send: %v", err)
	}
	r := <-p.got
	n, _ := r[0].(int64)
	sum, ok := r[1].([32]byte)
	if !ok {
		t.Fatalf("tcp receive after %d bytes: %v", n, r[1])
	}
	if n != p.sent || sum != p.sum {
		t.Fatalf("tcp: sent %d bytes, received %d, sha256 equal: %v", p.sent, n, sum == p.sum)
	}
	t.Logf("tcp: %.1f MiB intact across restart and upgrade", float64(n)/(1<<20))
}
