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
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// Bulk TCP: one stream gen -> sink through the router, end hosts' offloads
// at their defaults (tx checksum, TSO and GSO on, as containers and VMs run
// them) or off. The stream is checked byte for byte: a configuration that
// stalls, resets or corrupts it is a FAIL with the reason, never a rate.
// In the same rounds, 64-byte UDP frames sent by a socket (what a host's
// stack sends, unlike the XDP generator's frames, which a veth takes
// without a copy): the datagrams the sink's socket received a second.

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
	Refused string `json:"refused,omitempty"`
	Error   string `json:"error,omitempty"`
	// Proto: "" bulk TCP (Gbit/s); "udp64" 64-byte UDP frames from a
	// socket (Samples and Gbps hold Mpps received, IPv4 only).
	Proto   string    `json:"proto,omitempty"`
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
// daemons start, so attach: auto decides on what users' hosts do.
//
// The configurations take turns: each round sets every configuration up
// in turn and runs one stream per address family through it, so that the
// i-th streams of two configurations ran minutes apart at most, never a
// whole phase apart. Streams of 2 s on two shared CPUs drift by more than
// the differences measured; the report compares them round by round.
func (r *runner) tcpPhase(ctx context.Context) error {
	e := r.env
	e.dropCounters()
	for _, off := range []string{HostOffloadsDefault, HostOffloadsOff} {
		if err := e.hostOffloads(ctx, off == HostOffloadsDefault); err != nil {
			return fmt.Errorf("host offloads %s: %w", off, err)
		}
		runs := make([]*tcpRun, 0, len(r.opts.tcpConfigs))
		for _, name := range r.opts.tcpConfigs {
			cfg, _ := configByName(name)
			cells := []TCPCell{
				{Config: name, Label: cfg.label, HostOffloads: off, Family: "IPv4"},
				{Config: name, Label: cfg.label, HostOffloads: off, Family: "IPv6"},
				{Config: name, Label: cfg.label, HostOffloads: off, Family: "IPv4", Proto: ProtoUDP64},
			}
			runs = append(runs, &tcpRun{cfg: cfg, cells: cells, fwd: make([]uint64, len(cells)), pass: make([]uint64, len(cells))})
		}
		for round := range tcpRepeats(r.opts) {
			for _, run := range runs {
				r.prog.show("tcp "+run.cfg.name, 0, 0, fmt.Sprintf("host offloads %s, round %d", off, round+1))
				r.tcpRound(ctx, run)
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
		for _, run := range runs {
			for _, c := range run.finish() {
				r.report.TCP = append(r.report.TCP, c)
				r.prog.line(fmt.Sprintf("tcp %s %s, host offloads %s: %s", c.Config, c.Family, off, c.result()))
			}
		}
	}
	return nil
}

// tcpRun is one configuration's cells (one per family) at one host
// offload setting, filled round by round.
type tcpRun struct {
	cfg       config
	cells     []TCPCell
	fwd, pass []uint64 // fastpath's counters on r0 over the streams, per cell
}

// ProtoUDP64 marks the socket-sent 64-byte UDP cells.
const ProtoUDP64 = "udp64"

func (c *TCPCell) result() string {
	if c.Refused != "" {
		return "refused: " + c.Refused
	}
	if c.Failed() {
		return "FAIL: " + c.Error
	}
	if c.Proto == ProtoUDP64 {
		return fmt.Sprintf("%.3f Mpps (64-byte UDP from a socket)", c.Gbps.Median)
	}
	return fmt.Sprintf("%.2f Gbit/s", c.Gbps.Median)
}

// tcpRound sets run's configuration up and runs one stream per cell that
// has neither failed nor been refused.
func (r *runner) tcpRound(ctx context.Context, run *tcpRun) {
	e := r.env
	live := false
	for i := range run.cells {
		live = live || (!run.cells[i].Failed() && run.cells[i].Refused == "")
	}
	if !live {
		return
	}
	a, err := r.setup(ctx, run.cfg)
	if err != nil {
		for i := range run.cells {
			c := &run.cells[i]
			if why := refusal(err.Error()); why != "" {
				c.Refused = why
			} else if c.Error == "" {
				c.Error = "setup: " + firstLine(err.Error())
			}
		}
		return
	}
	defer func() {
		if err := a.teardown(); err != nil {
			r.opts.Log.Warn("teardown", "config", run.cfg.name, "err", err)
		}
	}()
	for i := range run.cells {
		c := &run.cells[i]
		if c.Failed() || c.Refused != "" {
			continue
		}
		before, berr := ingressCounters{}, error(nil)
		if a.d != nil {
			before, berr = a.d.counters(ctx, e.lab.RtrIn)
		}
		stream := e.stream
		if c.Proto == ProtoUDP64 {
			stream = e.udpStream
		}
		gbps, err := stream(ctx, c.Family == "IPv6", r.opts.Warmup, r.opts.Duration)
		if err != nil {
			c.Error = err.Error()
			continue
		}
		c.Samples = append(c.Samples, round3(gbps))
		if a.d != nil {
			c.AttachedAs = a.d.attachedAs(ctx, e.lab.RtrIn)
		}
		if a.d != nil && berr == nil {
			if after, err := a.d.counters(ctx, e.lab.RtrIn); err == nil {
				run.fwd[i] += after.fwd - before.fwd
				run.pass[i] += after.pass - before.pass
			}
		}
	}
}

// finish summarizes the rounds into the cells.
func (run *tcpRun) finish() []TCPCell {
	for i := range run.cells {
		c := &run.cells[i]
		if fwd, pass := run.fwd[i], run.pass[i]; fwd+pass > 0 {
			share := round3(float64(fwd) / float64(fwd+pass))
			c.FastpathShare = &share
		}
		c.Gbps = summarize(c.Samples)
	}
	return run.cells
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

	// Sender and receiver on threads pinned apart where there are two CPUs
	// (the sender, whose softirq carries the packets through the router,
	// on the generator's): left to the scheduler, where they land moves a
	// stream's rate by more than the router does.
	var got atomic.Uint64
	recvDone := make(chan error, 1)
	go func() { recvDone <- onCPU(e.otherCPU(), 0, func() error { return receive(srv, &got) }) }()
	var sent uint64
	sendDone := make(chan error, 1)
	stop := make(chan struct{})
	go func() { sendDone <- onCPU(e.genCPU, 0, func() error { return send(conn, &sent, stop) }) }()

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

// udpStream sends 64-byte UDP frames (IPv4) from a socket in gen to one in
// sink as fast as the sending thread can for warmup+d (conntrack in rtr
// flushed first), and returns the
// datagrams a second the sink received during d (Mpps). Both sockets
// block in the kernel on threads of their own (Go's netpoller would add a
// thread handoff per datagram, slower than the router). Loss is no error:
// what arrives is the rate.
func (e *env) udpStream(ctx context.Context, v6 bool, warmup, d time.Duration) (float64, error) {
	if v6 {
		return 0, errors.New("socket-sent UDP is measured over IPv4 only")
	}
	srv, err := probeSocket(e.lab.Sink, e.lab.SinkAddr4, netip.Addr{}, tcpPort, echoPoll)
	if err != nil {
		return 0, err
	}
	defer unix.Close(srv)
	cli, err := probeSocket(e.lab.Gen, e.lab.GenAddr4, e.lab.SinkAddr4, tcpPort, echoPoll)
	if err != nil {
		return 0, err
	}
	defer unix.Close(cli)
	// Each configuration starts the flow afresh, answered by its own sink.
	if err := conntrackFlush(e.lab.Rtr); err != nil {
		return 0, err
	}
	var got atomic.Uint64
	var stop atomic.Bool
	var wg sync.WaitGroup
	pinErrs := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		pinErrs <- onCPU(e.otherCPU(), 0, func() error {
			// The first datagram is answered, once: a flow the sink never
			// answered stays unreplied in conntrack, which the forward
			// rules (ct state established) and fastpath's offload both
			// wait for. Every configuration gets the same answer.
			buf := make([]byte, 2048)
			for !stop.Load() {
				_, from, err := unix.Recvfrom(srv, buf, 0)
				if err == nil {
					got.Add(1)
					_ = unix.Sendto(srv, buf[:1], 0, from)
					break
				}
			}
			for !stop.Load() {
				if _, err := unix.Read(srv, buf); err == nil {
					got.Add(1)
				}
			}
			return nil
		})
	}()
	go func() {
		defer wg.Done()
		pinErrs <- onCPU(e.genCPU, 0, func() error {
			payload := make([]byte, 64-14-20-8)
			for !stop.Load() {
				// A full buffer or a refused datagram is the path's
				// business, not the sender's.
				unix.Write(cli, payload)
			}
			return nil
		})
	}()
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()
	wait := func(t time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(t):
			return nil
		}
	}
	if err := wait(warmup); err != nil {
		return 0, err
	}
	n0, t0 := got.Load(), time.Now()
	if err := wait(d); err != nil {
		return 0, err
	}
	n1, t1 := got.Load(), time.Now()
	select {
	case err := <-pinErrs: // a thread that could not be pinned ended at once
		if err != nil {
			return 0, err
		}
	default:
	}
	if n1 == n0 {
		return 0, errors.New("no datagram arrived")
	}
	return float64(n1-n0) / t1.Sub(t0).Seconds() / 1e6, nil
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
	ctx, cancel := d.callCtx(ctx)
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

// otherCPU is the CPU the bench's receiving threads run on: not the
// generator's where there is another.
func (e *env) otherCPU() int {
	if e.restCPU != e.genCPU {
		return e.restCPU
	}
	return e.routerCPU
}
