// Package traffic sends test traffic between network namespaces and checks
// what arrives: ping, a TCP bulk transfer verified by SHA-256, a UDP stream
// with sequence numbers, and the kernel's forwarding counters. `fastpath
// demo` and the integration tests share it.
//
// Sockets are created inside the namespaces with nsutil.Do and then used
// from ordinary goroutines: a socket stays in the namespace it was born in.
package traffic

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/lab"
	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// DefaultTimeout bounds TCPTransfer and UDPStream when ctx has no deadline.
const DefaultTimeout = time.Minute

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

// TCPResult describes one TCP transfer.
type TCPResult struct {
	Sent, Received int64 // bytes written by the sender, read by the receiver
	SentSHA256     [32]byte
	RecvSHA256     [32]byte
	Duration       time.Duration // from connect to the receiver's EOF
	// Peer is the sender's address as the receiver saw it (after any NAT).
	Peer netip.AddrPort
}

// OK reports whether every byte arrived intact.
func (r TCPResult) OK() bool {
	return r.Sent == r.Received && r.SentSHA256 == r.RecvSHA256
}

// Gbps is the transfer's goodput in Gbit/s.
func (r TCPResult) Gbps() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Received) * 8 / r.Duration.Seconds() / 1e9
}

// TCPTransfer sends size pseudo-random bytes over one TCP connection from a
// socket in namespace srcNS to a listener it opens on dst in namespace dstNS
// (port 0 picks a free port), and compares SHA-256 of what was sent and what
// arrived. A mismatch is an error; the result is filled in either way.
func TCPTransfer(ctx context.Context, srcNS, dstNS string, dst netip.AddrPort, size int) (TCPResult, error) {
	var res TCPResult
	if size < 0 {
		return res, fmt.Errorf("tcp transfer: negative size %d", size)
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()

	var ln *net.TCPListener
	if err := nsutil.Do(dstNS, func() error {
		var err error
		ln, err = net.ListenTCP("tcp", net.TCPAddrFromAddrPort(dst))
		return err
	}); err != nil {
		return res, fmt.Errorf("tcp transfer: listen on %s in %s: %w", dst, dstNS, err)
	}
	defer ln.Close()
	dst = ln.Addr().(*net.TCPAddr).AddrPort()
	deadline, _ := ctx.Deadline()
	ln.SetDeadline(deadline)

	type recv struct {
		n    int64
		sum  [32]byte
		at   time.Time
		peer netip.AddrPort
		err  error
	}
	// Buffered: the receiver never blocks on an abandoned transfer.
	got := make(chan recv, 1)
	conns := &connSet{}
	defer conns.closeAll()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- recv{err: fmt.Errorf("accept: %w", err)}
			return
		}
		conns.add(c)
		c.SetDeadline(deadline)
		h := sha256.New()
		n, err := io.Copy(h, c)
		r := recv{n: n, at: time.Now(), peer: c.RemoteAddr().(*net.TCPAddr).AddrPort(), err: err}
		h.Sum(r.sum[:0])
		got <- r
	}()
	// Unblock every socket operation as soon as ctx ends.
	stop := context.AfterFunc(ctx, func() { ln.Close(); conns.closeAll() })
	defer stop()

	var c net.Conn
	if err := nsutil.Do(srcNS, func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp", dst.String())
		return err
	}); err != nil {
		return res, fmt.Errorf("tcp transfer: dial %s from %s: %w", dst, srcNS, err)
	}
	conns.add(c)
	c.SetDeadline(deadline)
	start := time.Now()

	// A fixed seed is enough: the point is incompressible bytes whose hash
	// both sides compute independently.
	src := io.LimitReader(rand.NewChaCha8([32]byte{'f', 'a', 's', 't', 'p', 'a', 't', 'h'}), int64(size))
	h := sha256.New()
	sent, werr := io.CopyBuffer(io.MultiWriter(c, h), src, make([]byte, 64<<10))
	res.Sent = sent
	h.Sum(res.SentSHA256[:0])
	if werr != nil {
		return res, fmt.Errorf("tcp transfer: send to %s after %d bytes: %w", dst, sent, ctxErr(ctx, werr))
	}
	// Half-close: the receiver sees EOF once everything arrived.
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return res, fmt.Errorf("tcp transfer: close write: %w", err)
	}
	var r recv
	select {
	case r = <-got:
	case <-ctx.Done():
		return res, fmt.Errorf("tcp transfer: wait for receiver: %w", ctx.Err())
	}
	res.Received, res.RecvSHA256 = r.n, r.sum
	res.Duration = r.at.Sub(start)
	res.Peer = netip.AddrPortFrom(r.peer.Addr().Unmap(), r.peer.Port())
	if r.err != nil {
		return res, fmt.Errorf("tcp transfer: receive on %s after %d bytes: %w", dst, r.n, ctxErr(ctx, r.err))
	}
	if !res.OK() {
		return res, fmt.Errorf("tcp transfer: sent %d bytes (sha256 %x), received %d (sha256 %x)",
			res.Sent, res.SentSHA256[:6], res.Received, res.RecvSHA256[:6])
	}
	return res, nil
}

// ctxErr prefers the context's reason over the "use of closed connection"
// that our own AfterFunc caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// connSet closes connections opened by different goroutines exactly once.
type connSet struct {
	mu     sync.Mutex
	conns  []io.Closer
	closed bool
}

func (s *connSet) add(c io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return
	}
	s.conns = append(s.conns, c)
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns, s.closed = nil, true
}

// UDPResult describes one UDP stream.
type UDPResult struct {
	Sent       int // datagrams handed to the kernel
	SendErrors int // datagrams the sending kernel refused (e.g. ENOBUFS)
	Received   int // distinct datagrams of this stream that arrived
	Duplicates int
	Reordered  int // arrived after a higher sequence number
	Duration   time.Duration
}

// Lost is the number of datagrams sent but not received.
func (r UDPResult) Lost() int { return r.Sent - r.Received }

// LossRatio is Lost/Sent (0 when nothing was sent).
func (r UDPResult) LossRatio() float64 {
	if r.Sent == 0 {
		return 0
	}
	return float64(r.Lost()) / float64(r.Sent)
}

// udpHeader is a run id (so stray datagrams are ignored) and a sequence
// number at the start of every datagram.
const udpHeader = 16

// udpDrain is how long the receiver keeps listening after the last send.
const udpDrain = 500 * time.Millisecond

// maxUDPCount bounds UDPStream's bookkeeping.
const maxUDPCount = 10_000_000

// UDPStream sends count datagrams of size bytes (at least 16, the header)
// from a socket in srcNS to a receiver it opens on dst in dstNS (port 0
// picks a free port), one every interval (0: as fast as possible), and
// counts what arrives. Loss is not an error; no datagram arriving at all is.
// The receiver answers the first datagram, as request/response protocols
// (DNS, QUIC, games) do: conntrack then sees the flow replied, which is
// what a firewall calls established.
func UDPStream(ctx context.Context, srcNS, dstNS string, dst netip.AddrPort, count, size int, interval time.Duration) (UDPResult, error) {
	var res UDPResult
	if size < udpHeader || size > 65000 {
		return res, fmt.Errorf("udp stream: size %d outside %d..65000", size, udpHeader)
	}
	if count < 1 || count > maxUDPCount {
		return res, fmt.Errorf("udp stream: count %d outside 1..%d", count, maxUDPCount)
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()

	var rc *net.UDPConn
	if err := nsutil.Do(dstNS, func() error {
		var err error
		rc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(dst))
		return err
	}); err != nil {
		return res, fmt.Errorf("udp stream: listen on %s in %s: %w", dst, dstNS, err)
	}
	defer rc.Close()
	setBigReadBuffer(rc)
	dst = rc.LocalAddr().(*net.UDPAddr).AddrPort()

	var sc *net.UDPConn
	if err := nsutil.Do(srcNS, func() error {
		var err error
		sc, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		return err
	}); err != nil {
		return res, fmt.Errorf("udp stream: dial %s from %s: %w", dst, srcNS, err)
	}
	defer sc.Close()
	stop := context.AfterFunc(ctx, func() { rc.Close(); sc.Close() })
	defer stop()

	runID := rand.Uint64()
	sendDone := make(chan time.Time, 1)
	got := make(chan UDPResult, 1)
	go func() { got <- receiveUDP(rc, runID, count, sendDone) }()

	start := time.Now()
	buf := make([]byte, size)
	binary.BigEndian.PutUint64(buf, runID)
	var serr error
	for i := 0; i < count; i++ {
		if interval > 0 {
			if err := WaitUntil(ctx, start.Add(time.Duration(i)*interval)); err != nil {
				serr = err
				break
			}
		}
		binary.BigEndian.PutUint64(buf[8:], uint64(i))
		if _, err := sc.Write(buf); err != nil {
			if ctx.Err() != nil {
				serr = ctx.Err()
				break
			}
			// A full queue or an ICMP error reported back: the datagram is
			// lost, which is what we measure, not a failure of the test.
			res.SendErrors++
			continue
		}
		res.Sent++
	}
	sendDone <- time.Now()

	var r UDPResult
	select {
	case r = <-got:
	case <-ctx.Done():
		return res, fmt.Errorf("udp stream: wait for receiver: %w", ctx.Err())
	}
	res.Received, res.Duplicates, res.Reordered = r.Received, r.Duplicates, r.Reordered
	res.Duration = time.Since(start)
	if serr != nil {
		return res, fmt.Errorf("udp stream: send to %s: %w", dst, serr)
	}
	if res.Received == 0 {
		return res, fmt.Errorf("udp stream: none of %d datagrams arrived at %s", res.Sent, dst)
	}
	return res, nil
}

// udpReadBuffer is the receive buffer UDPStream asks for: a few thousand
// datagrams, so a receiver goroutine that is descheduled for a while (a
// busy machine, the race detector) does not turn into loss.
const udpReadBuffer = 8 << 20

// setBigReadBuffer sets the socket's receive buffer to udpReadBuffer.
// SO_RCVBUFFORCE (root) is not capped by net.core.rmem_max, which is only
// 208 KiB by default; otherwise fall back to the capped SO_RCVBUF. Best
// effort: a small buffer only makes loss more likely, which we measure.
func setBigReadBuffer(c *net.UDPConn) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, udpReadBuffer)
	}); err != nil || serr != nil {
		c.SetReadBuffer(udpReadBuffer)
	}
}

// receiveUDP counts this run's datagrams until all count arrived, or the
// sender finished (sendDone) more than udpDrain ago, or the socket is
// closed.
func receiveUDP(c *net.UDPConn, runID uint64, count int, sendDone <-chan time.Time) UDPResult {
	var r UDPResult
	seen := make([]bool, count)
	buf := make([]byte, 65536)
	var finished time.Time
	highest := -1
	for r.Received < count {
		if finished.IsZero() {
			select {
			case finished = <-sendDone:
			default:
			}
		}
		if !finished.IsZero() && time.Since(finished) > udpDrain {
			break
		}
		// Short reads so the drain check above runs regularly.
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			continue // timeout (or a transient error): check the drain again
		}
		if n < udpHeader || binary.BigEndian.Uint64(buf) != runID {
			continue
		}
		seq := binary.BigEndian.Uint64(buf[8:])
		if seq >= uint64(count) {
			continue
		}
		switch {
		case seen[seq]:
			r.Duplicates++
		default:
			if r.Received == 0 {
				c.WriteToUDPAddrPort(buf[:udpHeader], from) // best effort, see UDPStream
			}
			seen[seq] = true
			r.Received++
			if int(seq) < highest {
				r.Reordered++
			}
			highest = max(highest, int(seq))
		}
	}
	return r
}

// WaitUntil returns at t, or early with ctx's error.
func WaitUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// PingResult is the summary of one ping run.
type PingResult struct {
	Transmitted, Received int
	Output                string // ping's combined output
}

// OK reports whether every echo request was answered.
func (r PingResult) OK() bool { return r.Transmitted > 0 && r.Received == r.Transmitted }

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)

// Ping runs `ping -c count extra... addr` in namespace ns of lab l (ping
// chooses IPv4 or IPv6 from addr). It fails if ping cannot run or no reply
// came; partial loss is in the result, not an error.
func Ping(ctx context.Context, l *lab.Lab, ns, addr string, count int, extra ...string) (PingResult, error) {
	args := append([]string{"-c", strconv.Itoa(count)}, extra...)
	args = append(args, addr)
	out, err := l.Command(ctx, ns, "ping", args...).CombinedOutput()
	res := PingResult{Output: string(out)}
	m := pingSummary.FindSubmatch(out)
	if m != nil {
		res.Transmitted, _ = strconv.Atoi(string(m[1]))
		res.Received, _ = strconv.Atoi(string(m[2]))
	}
	var exit *exec.ExitError
	switch {
	case err != nil && !errors.As(err, &exit):
		return res, fmt.Errorf("ping %s from %s: %w", addr, ns, err)
	case m == nil:
		return res, fmt.Errorf("ping %s from %s: no summary in output (%v): %s", addr, ns, err, out)
	case res.Received == 0:
		return res, fmt.Errorf("ping %s from %s: no reply to %d requests", addr, ns, res.Transmitted)
	case err != nil:
		return res, fmt.Errorf("ping %s from %s: %w: %s", addr, ns, err, out)
	}
	return res, nil
}
