package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// Bulk TCP: one stream gen -> sink through the router, end hosts' offloads
// at their defaults (tx checksum, TSO and GSO on, as containers and VMs run
// them) or off. The stream is checked byte for byte: a configuration that
// stalls, resets or corrupts it is a FAIL with the reason, never a rate.

// Offload settings of the end hosts' interfaces (g0, s0).
const (
	HostOffloadsDefault = "default"
	HostOffloadsOff     = "off"
)

// tcpConfigNames are the configurations bulk TCP runs through. The plain TC
// redirect is the bound: what the two end hosts reach through a router that
// costs nearly nothing, so the most any router could gain over the kernel
// on this lab.
var tcpConfigNames = []string{ConfigTCRedirect, ConfigKernelMasq, ConfigOffloadAuto, ConfigOffloadXDP, ConfigOffloadTC}

// tcpPort is the sink's listening port.
const tcpPort = 5201

// Bounds of one stream: the time to connect, and how long no byte may
// arrive before the stream counts as stalled.
const (
	tcpConnect = 2 * time.Second
	tcpStall   = time.Second
)

// The stream's content: the byte at offset k is pattern[k%patternLen], so
// the receiver checks every byte with a few memory compares.
const (
	patternLen = 1 << 20
	tcpWrite   = 128 << 10
)

var pattern = func() []byte {
	b := make([]byte, patternLen+tcpWrite)
	for i := range b {
		b[i] = byte(i*131 + i>>11)
	}
	return b
}()

// TCPCell is one configuration's bulk TCP result at one offload setting.
type TCPCell struct {
	Config       string `json:"config"`
	Label        string `json:"label"`
	HostOffloads string `json:"host_offloads"` // default or off
	Family       string `json:"family"`        // IPv4 or IPv6
	// AttachedAs is the hook fastpath used on r0 (auto shows its choice).
	AttachedAs string `json:"attached_as,omitempty"`
	// Refused: the daemon refused this configuration as one that cannot be
	// correct on these hosts (attach: xdp where their frames carry partial
	// checksums). Not a failure: that refusal is the right answer.
	Refused string    `json:"refused,omitempty"`
	Error   string    `json:"error,omitempty"`
	Samples []float64 `json:"gbps_samples"`
	Gbps    Summary   `json:"gbps"`
	// FastpathShare is the share of r0's packets fastpath forwarded itself.
	FastpathShare *float64 `json:"fastpath_share,omitempty"`
}

// Failed reports whether the cell has no valid rate.
func (c *TCPCell) Failed() bool { return c.Error != "" }

// tcpPhase measures bulk TCP through each configuration. The counters on g0
// and s0 come off first: an XDP program on a veth takes GSO away from its
// peer, and end hosts have none. The host offloads are set before the
// daemon starts, so attach: auto decides on what users' hosts do.
func (r *runner) tcpPhase(ctx context.Context) error {
	e := r.env
	e.dropCounters()
	for _, name := range r.opts.tcpConfigs {
		cfg, _ := configByName(name)
		for _, off := range []string{HostOffloadsDefault, HostOffloadsOff} {
			cells := []TCPCell{
				{Config: name, Label: cfg.label, HostOffloads: off, Family: "IPv4"},
				{Config: name, Label: cfg.label, HostOffloads: off, Family: "IPv6"},
			}
			r.prog.show("tcp "+name, 0, 0, "host offloads "+off)
			r.tcpCells(ctx, cfg, cells)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			for _, c := range cells {
				r.report.TCP = append(r.report.TCP, c)
				r.prog.line(fmt.Sprintf("tcp %s %s, host offloads %s: %s", name, c.Family, off, c.result()))
			}
		}
	}
	return nil
}

func (c *TCPCell) result() string {
	if c.Refused != "" {
		return "refused: " + c.Refused
	}
	if c.Failed() {
		return "FAIL: " + c.Error
	}
	return fmt.Sprintf("%.2f Gbit/s", c.Gbps.Median)
}

// tcpCells sets the host offloads, sets cfg up once and runs Repeats
// streams of Duration for each cell (one per address family).
func (r *runner) tcpCells(ctx context.Context, cfg config, cells []TCPCell) {
	e, o := r.env, r.opts
	fail := func(msg string) {
		for i := range cells {
			cells[i].Error = msg
		}
	}
	if err := e.hostOffloads(ctx, cells[0].HostOffloads == HostOffloadsDefault); err != nil {
		fail(err.Error())
		return
	}
	a, err := r.setup(ctx, cfg)
	if err != nil {
		if why := refusal(err.Error()); why != "" {
			for i := range cells {
				cells[i].Refused = why
			}
			return
		}
		fail("setup: " + firstLine(err.Error()))
		return
	}
	defer func() {
		if err := a.teardown(); err != nil {
			r.opts.Log.Warn("teardown", "config", cfg.name, "err", err)
		}
	}()
	for i := range cells {
		c := &cells[i]
		before, berr := ingressCounters{}, error(nil)
		if a.d != nil {
			before, berr = a.d.counters(ctx, e.lab.RtrIn)
		}
		for range tcpRepeats(o) {
			gbps, err := e.stream(ctx, c.Family == "IPv6", o.Warmup, o.Duration)
			if err != nil {
				c.Error = err.Error()
				break
			}
			c.Samples = append(c.Samples, round3(gbps))
		}
		if a.d != nil {
			c.AttachedAs = a.d.attachedAs(ctx, e.lab.RtrIn)
		}
		if a.d != nil && berr == nil {
			if after, err := a.d.counters(ctx, e.lab.RtrIn); err == nil {
				if fwd, pass := after.fwd-before.fwd, after.pass-before.pass; fwd+pass > 0 {
					share := round3(float64(fwd) / float64(fwd+pass))
					c.FastpathShare = &share
				}
			}
		}
		c.Gbps = summarize(c.Samples)
	}
}

// refusal is the daemon's reason for refusing to start with an attach that
// cannot be correct (reconcile.go words it "cannot be correct"), or "".
func refusal(msg string) string {
	for _, line := range strings.Split(msg, "\n") {
		if i := strings.Index(line, "attach: xdp cannot be correct"); i >= 0 {
			return strings.TrimSpace(line[i:])
		}
	}
	return ""
}

// tcpRepeats is how many streams a TCP cell runs: one in a quick run.
func tcpRepeats(o Options) int {
	if o.Quick {
		return 1
	}
	return o.Repeats
}

// hostOffloads sets the end hosts' tx checksum offload and TSO on or off.
func (e *env) hostOffloads(ctx context.Context, on bool) error {
	v := "off"
	if on {
		v = "on"
	}
	for _, h := range []struct{ ns, ifc string }{{e.lab.Gen, e.lab.GenIf}, {e.lab.Sink, e.lab.SinkIf}} {
		if err := e.run(ctx, h.ns, "", "ethtool", "-K", h.ifc, "tx", v, "tso", v, "gso", v); err != nil {
			return err
		}
	}
	return nil
}

// stream sends one TCP stream gen -> sink for warmup+d and returns the rate
// the receiver saw during d. The stream must arrive whole and byte-exact.
func (e *env) stream(ctx context.Context, v6 bool, warmup, d time.Duration) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, warmup+d+tcpConnect+5*time.Second)
	defer cancel()
	network, sink := "tcp4", e.lab.SinkAddr4
	if v6 {
		network, sink = "tcp6", e.lab.SinkAddr6
	}
	var ln net.Listener
	err := nsutil.Do(e.lab.Sink, func() error {
		var err error
		ln, err = net.Listen(network, netip.AddrPortFrom(sink, tcpPort).String())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("listen in %s: %w", e.lab.Sink, err)
	}
	defer ln.Close()
	var conn net.Conn
	err = nsutil.Do(e.lab.Gen, func() error {
		var err error
		dl := net.Dialer{Timeout: tcpConnect}
		conn, err = dl.DialContext(ctx, network, ln.Addr().String())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	srv, err := ln.Accept()
	if err != nil {
		return 0, fmt.Errorf("accept: %w", err)
	}
	defer srv.Close()

	var got atomic.Uint64
	recvDone := make(chan error, 1)
	go func() { recvDone <- receive(srv, &got) }()
	var sent uint64
	sendDone := make(chan error, 1)
	stop := make(chan struct{})
	go func() { sendDone <- send(conn, &sent, stop) }()

	// Sample the receiver at the window's edges; watch for stalls.
	t0 := time.Now()
	var mark uint64
	var markAt time.Time
	last, lastAt := uint64(0), t0
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var fail error
	for fail == nil {
		select {
		case <-ctx.Done():
			fail = fmt.Errorf("stalled: %d bytes arrived", got.Load())
		case err := <-recvDone:
			fail = fmt.Errorf("receiver: %w after %d bytes", orEOF(err), got.Load())
		case err := <-sendDone:
			fail = fmt.Errorf("sender: %w after %d bytes", orEOF(err), got.Load())
		case now := <-tick.C:
			n := got.Load()
			if n != last {
				last, lastAt = n, now
			} else if now.Sub(lastAt) > tcpStall {
				fail = fmt.Errorf("stalled: no data for %s after %d bytes", tcpStall, n)
				continue
			}
			if markAt.IsZero() && now.Sub(t0) >= warmup {
				mark, markAt = n, now
			}
			if !markAt.IsZero() && now.Sub(markAt) >= d {
				rate := float64(n-mark) * 8 / now.Sub(markAt).Seconds() / 1e9
				close(stop)
				select {
				case err := <-sendDone:
					if err != nil {
						return 0, fmt.Errorf("sender: %w", err)
					}
				case <-ctx.Done(): // the last write blocks: the path stalled
					return 0, fmt.Errorf("stalled at the end: %d bytes arrived", got.Load())
				}
				conn.(*net.TCPConn).CloseWrite()
				select {
				case err := <-recvDone:
					if err != nil {
						return 0, fmt.Errorf("receiver: %w", err)
					}
				case <-ctx.Done():
					return 0, fmt.Errorf("stalled at the end: %d of %d bytes arrived", got.Load(), sent)
				}
				if got.Load() != sent {
					return 0, fmt.Errorf("lost data: %d of %d bytes arrived", got.Load(), sent)
				}
				return rate, nil
			}
		}
	}
	conn.Close()
	srv.Close()
	return 0, fail
}

func orEOF(err error) error {
	if err == nil {
		return errors.New("closed early")
	}
	return err
}

// send writes the pattern until stop is closed.
func send(c net.Conn, sent *uint64, stop <-chan struct{}) error {
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		off := int(*sent % patternLen)
		n, err := c.Write(pattern[off : off+tcpWrite])
		*sent += uint64(n)
		if err != nil {
			return err
		}
	}
}

// receive reads to EOF, checking every byte against the pattern.
func receive(c net.Conn, got *atomic.Uint64) error {
	buf := make([]byte, tcpWrite)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			off := int(got.Load() % patternLen)
			if !bytes.Equal(buf[:n], pattern[off:off+n]) {
				return fmt.Errorf("corrupt data at byte %d", got.Load())
			}
			got.Add(uint64(n))
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// attachedAs is the hook the daemon has ifname on now (auto may move it
// while traffic runs), or as it started if the daemon cannot say.
func (d *daemon) attachedAs(ctx context.Context, ifname string) string {
	st := d.status
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	if now, err := d.client.Status(ctx); err == nil {
		st = now
	}
	for _, ifc := range st.Interfaces {
		if ifc.Name == ifname {
			return ifc.AttachedAs
		}
	}
	return ""
}
