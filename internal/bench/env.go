package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ti-mo/conntrack"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/lab"
	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// env is the bench lab with its fixed instruments: the generator in gen,
// the counter on the sink's s0 and one on gen's g0 (it counts the replies
// while flows are established).
type env struct {
	lab *lab.Lab
	log *slog.Logger
	// split: r0's receive path runs in a NAPI thread of its own on
	// routerCPU; else everything the generated frames cause runs in the
	// generator's thread (softirq at the end of each batch), on genCPU.
	split     bool
	routerCPU int
	genCPU    int
	restCPU   int // this process and the daemon

	// udpChecksum: generated frames carry UDP checksums (Options.Checks).
	udpChecksum bool

	g0, r0, r1, s0 net.HardwareAddr
	g0Index        int // in gen
	r0Index        int // in rtr
	r0Threads      []int

	gen    source
	inject *packetSocket // on g0: single frames (establishing flows)
	sink   *counter      // s0
	back   *counter      // g0
}

// newEnv builds the lab and its instruments; on error nothing remains.
// queues: each veth end's receive and transmit queues (0: veth's one).
func newEnv(ctx context.Context, name, genKind string, split bool, queues int, cpus []int, log *slog.Logger) (_ *env, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &env{log: log, split: split, genCPU: cpus[len(cpus)-1]}
	e.routerCPU, e.restCPU = e.genCPU, cpus[0]
	if split {
		e.routerCPU, e.restCPU = cpus[0], e.genCPU
	}
	// The end hosts finish their checksums for the packet rates (the
	// generator's frames are complete anyway, the probe's must be for the
	// XDP configurations); bulk TCP sets them per cell.
	l, err := lab.Up(ctx, lab.Options{Name: name, Log: log, HostTxChecksumOff: true, Queues: queues})
	if err != nil {
		return nil, err
	}
	e.lab = l
	defer func() {
		if err != nil {
			err = errors.Join(err, e.close())
		}
	}()
	if err := e.setup(ctx, genKind); err != nil {
		return nil, fmt.Errorf("bench lab %s: %w", name, err)
	}
	return e, nil
}

func (e *env) setup(ctx context.Context, genKind string) error {
	l := e.lab
	var err error
	if e.g0, e.g0Index, err = hwaddr(l.Gen, l.GenIf); err != nil {
		return err
	}
	if e.r0, e.r0Index, err = hwaddr(l.Rtr, l.RtrIn); err != nil {
		return err
	}
	if e.r1, _, err = hwaddr(l.Rtr, l.RtrOut); err != nil {
		return err
	}
	if e.s0, _, err = hwaddr(l.Sink, l.SinkIf); err != nil {
		return err
	}
	cmds := [][]string{
		// A veth takes XDP frames (the generator's, the sink's replies)
		// only while NAPI runs on it: GRO on, as on any real NIC.
		{"ethtool", "-K", l.RtrIn, "gro", "on"},
		{"ethtool", "-K", l.RtrOut, "gro", "on"},
		// Static neighbours: no ARP on the measured path, and no neighbour
		// refresh invalidating fastpath's flow cache in the middle of a
		// measurement (each one makes every cached flow redo its FIB lookup).
		{"ip", "neigh", "replace", l.GenAddr4.String(), "lladdr", e.g0.String(), "dev", l.RtrIn, "nud", "permanent"},
		{"ip", "neigh", "replace", l.SinkAddr4.String(), "lladdr", e.s0.String(), "dev", l.RtrOut, "nud", "permanent"},
		{"ip", "neigh", "replace", l.GenAddr6.String(), "lladdr", e.g0.String(), "dev", l.RtrIn, "nud", "permanent"},
		{"ip", "neigh", "replace", l.SinkAddr6.String(), "lladdr", e.s0.String(), "dev", l.RtrOut, "nud", "permanent"},
	}
	if e.split {
		// r0's receive processing (and everything it triggers: routing,
		// netfilter, the transmit to s0 and the sink's counter) in a
		// kernel thread of its own, pinned below to the router's CPU.
		cmds = append(cmds, []string{"sh", "-c", "echo 1 > /sys/class/net/" + l.RtrIn + "/threaded"})
	}
	for _, c := range cmds {
		if out, err := l.Command(ctx, l.Rtr, c[0], c[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s in %s: %w: %s", strings.Join(c, " "), l.Rtr, err, strings.TrimSpace(string(out)))
		}
	}
	if err := nsutil.Do(l.Rtr, func() error {
		if !e.split {
			return nil
		}
		var err error
		e.r0Threads, err = napiThreads(e.r0Index)
		return err
	}); err != nil {
		return fmt.Errorf("find %s's napi thread: %w", l.RtrIn, err)
	}
	for _, tid := range e.r0Threads {
		if err := pinTask(tid, e.routerCPU); err != nil {
			return err
		}
		if err := makeRealtime(tid, routerPriority); err != nil {
			return err
		}
	}
	if e.sink, err = attachCounter(l.Sink, l.SinkIf); err != nil {
		return err
	}
	if e.back, err = attachCounter(l.Gen, l.GenIf); err != nil {
		return err
	}
	if e.inject, err = openPacketSocket(l.Gen, l.GenIf); err != nil {
		return err
	}
	// The live generator's thread carries the router's work in one-CPU
	// runs: realtime, so nothing else takes that CPU mid-window.
	at := pinned{ns: l.Gen, cpu: e.genCPU, rt: !e.split}
	if e.gen, err = newSource(ctx, genKind, at, l.GenIf, e.g0Index, e.frames(MinFrame), e.log); err != nil {
		return err
	}
	e.log.Debug("bench lab ready", "generator", e.gen.kind(), "split", e.split, "router_cpu", e.routerCPU, "gen_cpu", e.genCPU, "r0_napi_threads", e.r0Threads)
	return nil
}

// frames describes the generator's frames of the given size: gen to sink
// through rtr.
func (e *env) frames(size int) frameSpec {
	return frameSpec{size: size, dst: e.r0, src: e.g0, from: e.lab.GenAddr4, to: e.lab.SinkAddr4, udpChecksum: e.udpChecksum}
}

// framesOf describes the generator's frames of the given size for cfg:
// IPv4 gen to sink, or IPv6, to the sink or through cfg's FIB routes. IPv6
// frames always carry a UDP checksum, as IPv6 requires of every sender (RFC
// 8200), and the datapath verifies it as conntrack does.
func (e *env) framesOf(cfg config, size int) frameSpec {
	f := e.frames(size)
	if cfg.ipv6 {
		f.from, f.to, f.udpChecksum = e.lab.GenAddr6, e.lab.SinkAddr6, true
		if cfg.routes > 0 {
			f.to, f.dsts = fibDst, cfg.routes
		}
	}
	return f
}

// The routes a configuration adds to rtr's FIB: route k is
// fd01:kkkk:kkkk::/48 (k in bytes 2..5) via the sink, and the generator's
// flow i goes to address ::5 in route i % routes (frameSpec.dsts): one
// flow, one destination; a million flows, every route.
var fibDst = netip.MustParseAddr("fd01::5")

func fibRoute(k int) *net.IPNet {
	ip := make(net.IP, net.IPv6len)
	ip[0], ip[1] = 0xfd, 0x01
	binary.BigEndian.PutUint32(ip[2:], uint32(k))
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(48, 128)}
}

// fibRoutes adds routes 0..n-1 to rtr's FIB, or (add false) removes those
// that are there.
func (e *env) fibRoutes(ctx context.Context, n int, add bool) error {
	return nsutil.Do(e.lab.Rtr, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		out, err := h.LinkByName(e.lab.RtrOut)
		if err != nil {
			return fmt.Errorf("look up %s in %s: %w", e.lab.RtrOut, e.lab.Rtr, err)
		}
		gw := net.IP(e.lab.SinkAddr6.AsSlice())
		for k := range n {
			if k%4096 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			rt := &netlink.Route{LinkIndex: out.Attrs().Index, Dst: fibRoute(k), Gw: gw}
			if add {
				err = h.RouteReplace(rt) // a run cut short may have left it
			} else if err = h.RouteDel(rt); errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) {
				err = nil
			}
			if err != nil {
				return fmt.Errorf("route %s in %s: %w", rt.Dst, e.lab.Rtr, err)
			}
		}
		return nil
	})
}

// dropCounters takes the counters off g0 and s0 (bulk TCP runs without
// them).
func (e *env) dropCounters() {
	for _, c := range []**counter{&e.sink, &e.back} {
		if *c != nil {
			(*c).Close()
			*c = nil
		}
	}
}

// sendFlows sends one frame of each of cfg's flows lo..lo+n-1 from g0.
func (e *env) sendFlows(cfg config, lo, n int) error {
	f := e.framesOf(cfg, MinFrame)
	for i := lo; i < lo+n; i++ {
		frame, err := f.flowFrame(i)
		if err != nil {
			return err
		}
		if err := e.inject.send(frame); err != nil {
			return fmt.Errorf("send flow %d from %s: %w", i, e.lab.GenIf, err)
		}
	}
	return nil
}

// close removes the instruments and the lab.
func (e *env) close() error {
	if e.gen != nil {
		e.gen.Close()
	}
	if e.inject != nil {
		e.inject.Close()
	}
	if e.sink != nil {
		e.sink.Close()
	}
	if e.back != nil {
		e.back.Close()
	}
	return lab.Down(e.lab.Name)
}

// sysctlRead reads /proc/sys/<key> (dots as slashes) in netns ns.
func sysctlRead(ns, key string) (string, error) {
	var v string
	err := nsutil.Do(ns, func() error {
		b, err := os.ReadFile(filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/")))
		v = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read %s in %s: %w", key, ns, err)
	}
	return v, nil
}

// conntrackCount is the number of conntrack entries in ns (0 when
// conntrack is not active there).
func conntrackCount(ns string) (int, error) {
	v, err := sysctlRead(ns, "net.netfilter.nf_conntrack_count")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(v)
}

// conntrackFlush empties the conntrack table of ns.
func conntrackFlush(ns string) error {
	return nsutil.Do(ns, func() error {
		c, err := conntrack.Dial(nil)
		if err != nil {
			return fmt.Errorf("conntrack: %w", err)
		}
		defer c.Close()
		if err := c.Flush(); err != nil {
			return fmt.Errorf("flush conntrack in %s: %w", ns, err)
		}
		return nil
	})
}

// hwaddr returns the MAC address and ifindex of ifname in ns.
func hwaddr(ns, ifname string) (net.HardwareAddr, int, error) {
	var ifi *net.Interface
	err := nsutil.Do(ns, func() error {
		var err error
		ifi, err = net.InterfaceByName(ifname)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("look up %s in %s: %w", ifname, ns, err)
	}
	return ifi.HardwareAddr, ifi.Index, nil
}
