package difftest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// stream is one flow's sender in gen and receiver in sink. Every flow
// sends one packet per Interval; sendAt[seq] is when packet seq left.
type stream struct {
	f      Flow
	dst    netip.Addr
	send   func(seq uint64) error
	closer []io.Closer

	mu     sync.Mutex
	sendAt []time.Time
	// TCP only: when the sink's socket read record seq.
	recvAt map[uint64]time.Time
	dead   bool // TCP: the connection failed (reset); later records are lost

	// tcpconn: connections under way.
	conns    sync.WaitGroup
	inflight atomic.Int64
}

// echoEvery: the sink echoes every echoEvery-th UDP datagram, so the flow
// keeps a reply direction as real request/response traffic does.
const echoEvery = 20

// openStream sets up flow f from gen to dst in sinkNS: for UDP a receiver
// that echoes hellos and a sender bound to the flow's source port, for TCP
// a connection, for ICMP a raw socket.
func openStream(ctx context.Context, genNS, sinkNS string, f Flow, dst netip.Addr) (*stream, error) {
	s := &stream{f: f, dst: dst, recvAt: map[uint64]time.Time{}}
	var err error
	switch f.Proto {
	case "udp":
		err = s.openUDP(ctx, genNS, sinkNS)
	case "tcp":
		err = s.openTCP(ctx, genNS, sinkNS)
	case "tcpconn":
		err = s.openTCPConns(genNS, sinkNS)
	case "icmp":
		err = s.openICMP(genNS)
	default:
		err = fmt.Errorf("proto %q", f.Proto)
	}
	if err != nil {
		s.close()
		return nil, fmt.Errorf("flow %s: %w", f.Name, err)
	}
	return s, nil
}

func (s *stream) close() {
	for i := len(s.closer) - 1; i >= 0; i-- {
		s.closer[i].Close()
	}
	s.conns.Wait() // tcpconn: each connection ends within connTimeout
}

// listenIn opens a listener in sinkNS with listen; it closes with the
// stream.
func listenIn[C io.Closer](s *stream, sinkNS string, listen func() (C, error)) (C, error) {
	var c C
	if err := nsutil.Do(sinkNS, func() (err error) {
		c, err = listen()
		return err
	}); err != nil {
		return c, fmt.Errorf("listen in %s: %w", sinkNS, err)
	}
	s.closer = append(s.closer, c)
	return c, nil
}

// listenTCP listens on the flow's destination port in sinkNS.
func (s *stream) listenTCP(sinkNS string) (*net.TCPListener, error) {
	return listenIn(s, sinkNS, func() (*net.TCPListener, error) {
		return net.ListenTCP(network(s.f.V6, "tcp"), &net.TCPAddr{Port: int(s.f.DstPort())})
	})
}

// received notes that the sink read record rec (if it is a data record) at now.
func (s *stream) received(rec []byte, now time.Time) {
	if _, kind, seq, ok := readHeader(rec); ok && kind == kindData {
		s.mu.Lock()
		s.recvAt[seq] = now
		s.mu.Unlock()
	}
}

func network(v6 bool, base string) string {
	if v6 {
		return base + "6"
	}
	return base + "4"
}

func (s *stream) openUDP(ctx context.Context, genNS, sinkNS string) error {
	rx, err := listenIn(s, sinkNS, func() (*net.UDPConn, error) {
		return net.ListenUDP(network(s.f.V6, "udp"), &net.UDPAddr{Port: int(s.f.DstPort())})
	})
	if err != nil {
		return err
	}
	var tx *net.UDPConn
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := rx.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			_, kind, seq, ok := readHeader(buf[:n])
			if ok && (kind == kindHello || kind == kindData && seq%echoEvery == 0) {
				rx.WriteToUDPAddrPort(buf[:n], from)
			}
		}
	}()
	if err := nsutil.Do(genNS, func() error {
		var err error
		tx, err = net.DialUDP(network(s.f.V6, "udp"), &net.UDPAddr{Port: int(s.f.SrcPort())},
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.dst, s.f.DstPort())))
		return err
	}); err != nil {
		return fmt.Errorf("dial from %s: %w", genNS, err)
	}
	s.closer = append(s.closer, tx)
	// Hellos until one is echoed: conntrack then has seen a reply.
	echoed := make(chan struct{})
	go func() {
		buf := make([]byte, 2048)
		once := sync.Once{}
		for {
			n, err := tx.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // ECONNREFUSED from an ICMP error, for example
			}
			if _, kind, _, ok := readHeader(buf[:n]); ok && kind == kindHello {
				once.Do(func() { close(echoed) })
			}
		}
	}()
	hello := make([]byte, headerLen)
	putHeader(hello, s.f.Index, kindHello, 0)
	deadline := time.After(3 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		tx.Write(hello)
		select {
		case <-echoed:
			buf := make([]byte, s.f.Size)
			s.send = func(seq uint64) error {
				putHeader(buf, s.f.Index, kindData, seq)
				_, err := tx.Write(buf)
				return err
			}
			return nil
		case <-deadline:
			return errors.New("udp hello not echoed in 3s")
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (s *stream) openTCP(ctx context.Context, genNS, sinkNS string) error {
	ln, err := s.listenTCP(sinkNS)
	if err != nil {
		return err
	}
	accepted := make(chan *net.TCPConn, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
		rec := make([]byte, s.f.Size)
		for {
			if _, err := io.ReadFull(c, rec); err != nil {
				return
			}
			s.received(rec, time.Now())
		}
	}()
	var c *net.TCPConn
	if err := nsutil.Do(genNS, func() error {
		d := net.Dialer{
			LocalAddr: &net.TCPAddr{Port: int(s.f.SrcPort())},
			Timeout:   3 * time.Second,
			// The fixed source port may be in TIME_WAIT from nothing
			// else: the namespaces are fresh. SO_REUSEADDR all the same.
			Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				rc.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
					// Room for seconds of records while the path is cut.
					unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
				})
				return serr
			},
		}
		conn, err := d.DialContext(ctx, network(s.f.V6, "tcp"), netip.AddrPortFrom(s.dst, s.f.DstPort()).String())
		if err != nil {
			return err
		}
		c = conn.(*net.TCPConn)
		return nil
	}); err != nil {
		return fmt.Errorf("dial from %s: %w", genNS, err)
	}
	s.closer = append(s.closer, c)
	select {
	case sc, ok := <-accepted:
		if !ok {
			return errors.New("accept failed")
		}
		s.closer = append(s.closer, sc)
	case <-time.After(3 * time.Second):
		return errors.New("no accept in 3s")
	}
	c.SetNoDelay(true)
	buf := make([]byte, s.f.Size)
	s.send = func(seq uint64) error {
		putHeader(buf, s.f.Index, kindData, seq)
		// Never block the pacing for long: the socket buffer (4 MiB)
		// holds seconds of what a cut path does not take.
		c.SetWriteDeadline(time.Now().Add(time.Second))
		_, err := c.Write(buf)
		return err
	}
	return nil
}

// connTimeout bounds one tcpconn connection, both ends.
const connTimeout = 5 * time.Second

// connEvery: a tcpconn flow opens a connection every connEvery Intervals.
const connEvery = 5

// connPort is the source port of tcpconn connection seq: fixed, so both
// runs' connections are the same, and each used once (the client closes
// first and keeps TIME_WAIT).
func connPort(seq uint64) int { return 20000 + int(seq%40000) }

// openTCPConns is the tcpconn flow: every packet is a fresh connection
// (one every connEvery Intervals) that sends Size*Burst bytes (our header first) at full speed and closes;
// it counts as delivered when the sink read all of it. Connection starts
// are when a conntrack entry is young: what case 8 needs.
func (s *stream) openTCPConns(genNS, sinkNS string) error {
	total := s.f.Size * max(s.f.Burst, 1)
	ln, err := s.listenTCP(sinkNS)
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(connTimeout))
				buf := make([]byte, total)
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				s.received(buf, time.Now())
			}()
		}
	}()
	s.send = func(seq uint64) error {
		s.conns.Add(1)
		s.inflight.Add(1)
		go func() {
			defer s.conns.Done()
			defer s.inflight.Add(-1)
			buf := make([]byte, total)
			putHeader(buf, s.f.Index, kindData, seq)
			var c net.Conn
			if err := nsutil.Do(genNS, func() error {
				d := net.Dialer{LocalAddr: &net.TCPAddr{Port: connPort(seq)}, Timeout: connTimeout,
					Control: func(_, _ string, rc syscall.RawConn) error {
						rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) })
						return nil
					}}
				var err error
				c, err = d.Dial(network(s.f.V6, "tcp"), netip.AddrPortFrom(s.dst, s.f.DstPort()).String())
				return err
			}); err != nil {
				return // not delivered
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(connTimeout))
			if _, err := c.Write(buf); err != nil {
				return
			}
			c.(*net.TCPConn).CloseWrite()
			io.Copy(io.Discard, c) // until the sink closes
		}()
		return nil
	}
	return nil
}

func (s *stream) openICMP(genNS string) error {
	var fd int
	if err := nsutil.Do(genNS, func() error {
		var err error
		if s.f.V6 {
			fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
		} else {
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		}
		return err
	}); err != nil {
		return fmt.Errorf("raw icmp socket in %s: %w", genNS, err)
	}
	// The replies are not needed: a tiny receive buffer drops them.
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 256)
	s.closer = append(s.closer, fdCloser(fd))
	var sa unix.Sockaddr
	if s.f.V6 {
		sa = &unix.SockaddrInet6{Addr: s.dst.As16()}
	} else {
		sa = &unix.SockaddrInet4{Addr: s.dst.As4()}
	}
	pkt := make([]byte, 8+s.f.Size)
	s.send = func(seq uint64) error {
		if s.f.V6 {
			pkt[0] = 128 // the kernel fills in the ICMPv6 checksum
		} else {
			pkt[0] = 8
		}
		pkt[1] = 0
		binary.BigEndian.PutUint16(pkt[2:], 0)
		binary.BigEndian.PutUint16(pkt[4:], s.f.EchoID())
		binary.BigEndian.PutUint16(pkt[6:], uint16(seq))
		putHeader(pkt[8:], s.f.Index, kindData, seq)
		if !s.f.V6 {
			binary.BigEndian.PutUint16(pkt[2:], checksum(pkt))
		}
		return unix.Sendto(fd, pkt, 0, sa)
	}
	return nil
}

type fdCloser int

func (f fdCloser) Close() error { return unix.Close(int(f)) }

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// run sends one packet (a burst of Flow.Burst) per Interval from start
// until stop closes (or maxTicks), recording each send time. A TCP write error (reset, or a
// cut path that filled the buffer) marks the stream dead: the records it
// could not send still count as sent, and lost.
func (s *stream) run(start time.Time, stop <-chan struct{}, maxTicks int) {
	burst, every := max(s.f.Burst, 1), Interval
	if s.f.Proto == "tcpconn" {
		// One connection (of Size*Burst bytes) every connEvery ticks.
		burst, every = 1, connEvery*Interval
	}
	for seq := 0; seq < maxTicks*burst; seq++ {
		at := start.Add(time.Duration(seq/burst) * every)
		if d := time.Until(at); d > 0 {
			tm := time.NewTimer(d)
			select {
			case <-stop:
				tm.Stop()
				return
			case <-tm.C:
			}
		} else {
			select {
			case <-stop:
				return
			default:
			}
		}
		now := time.Now()
		s.mu.Lock()
		dead := s.dead
		s.sendAt = append(s.sendAt, now)
		s.mu.Unlock()
		if dead {
			continue
		}
		// A timed-out TCP write may have written part of a record, so
		// the stream's framing is gone: dead as well.
		if err := s.send(uint64(seq)); err != nil && s.f.Proto == "tcp" {
			s.mu.Lock()
			s.dead = true
			s.mu.Unlock()
		}
	}
}
