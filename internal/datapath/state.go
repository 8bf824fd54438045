package datapath

import (
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Timeouts are the conntrack timeouts an offloaded flow's entry is refreshed
// with, as the kernel would on each packet (its sysctls, copied).
type Timeouts struct {
	TCPEstablished time.Duration
	UDP            time.Duration
	UDPStream      time.Duration
}

// globals is the daemon's side of fp_globals. The datapath only reads the
// map; every write here replaces the whole value under mu, so concurrent
// callers cannot lose each other's updates.
type globals struct {
	mu   sync.Mutex
	v    fastpathFpState
	hold Hold // as SetHold last set it, with its whys
}

// Monotonic returns CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
func Monotonic() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("clock_gettime(CLOCK_MONOTONIC): " + err.Error()) // cannot fail on Linux
	}
	return time.Duration(ts.Nano())
}

func (d *Datapath) writeGlobals(update func(*fastpathFpState)) error {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	next := d.g.v
	update(&next)
	if err := d.objs.FpGlobals.Update(uint32(0), next, 0); err != nil {
		return fmt.Errorf("write datapath state: %w", err)
	}
	d.g.v = next
	return nil
}

// Heartbeat tells the datapath the daemon is alive. If no heartbeat comes
// for the watchdog period, offload mode stops using its cache and sends
// everything through the kernel.
func (d *Datapath) Heartbeat(watchdog time.Duration) error {
	now := Monotonic()
	return d.writeGlobals(func(s *fastpathFpState) {
		s.HeartbeatNs = uint64(now)
		s.WatchdogNs = uint64(watchdog)
	})
}

// InvalidateRoutes makes every cached flow redo its FIB lookup on its next
// packet (routes, neighbours or links changed).
func (d *Datapath) InvalidateRoutes() error {
	return d.writeGlobals(func(s *fastpathFpState) { s.FibGen++ })
}

// InvalidateRuleset makes every flow prove again that netfilter accepts it
// (one packet through the kernel per direction) before it is offloaded:
// the ruleset changed.
func (d *Datapath) InvalidateRuleset() error {
	return d.writeGlobals(func(s *fastpathFpState) { s.FwGen++ })
}

// SetTimeouts sets the conntrack timeouts offloaded flows are refreshed with.
func (d *Datapath) SetTimeouts(t Timeouts) error {
	ms := func(d time.Duration) uint32 { return uint32(min(d.Milliseconds(), math.MaxUint32)) }
	return d.writeGlobals(func(s *fastpathFpState) {
		s.TcpTimeoutMs = ms(t.TCPEstablished)
		s.UdpTimeoutMs = ms(t.UDP)
		s.UdpStreamTimeoutMs = ms(t.UDPStream)
	})
}

// SetRevalidate makes every offloaded flow send a packet through the
// ruleset again every d (0: never).
func (d *Datapath) SetRevalidate(every time.Duration) error {
	return d.writeGlobals(func(s *fastpathFpState) { s.RevalidateNs = uint64(max(every, 0)) })
}

// Generations returns the current route and ruleset generations.
func (d *Datapath) Generations() (fib, fw uint32) {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	return d.g.v.FibGen, d.g.v.FwGen
}

// LastHeartbeat returns when (CLOCK_MONOTONIC, see Monotonic) the daemon
// last wrote its heartbeat and the watchdog period; zeros before the first.
func (d *Datapath) LastHeartbeat() (at, watchdog time.Duration) {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	return time.Duration(d.g.v.HeartbeatNs), time.Duration(d.g.v.WatchdogNs)
}

// readGlobals takes over an adopted fp_globals value, so generations keep
// counting up from where the previous daemon left them.
func (d *Datapath) readGlobals() error {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	if err := d.objs.FpGlobals.Lookup(uint32(0), &d.g.v); err != nil {
		return fmt.Errorf("read adopted datapath state: %w", err)
	}
	// Holds, by reason name: the new daemon keeps them until it has read
	// the kernel state that decides them.
	name := func(i uint32) string {
		if i > 0 && int(i) < len(d.reasons) {
			return d.reasons[i]
		}
		return ""
	}
	const kept = "kept from the previous daemon until the kernel's state is read"
	if d.g.hold.All = name(d.g.v.HoldAll); d.g.hold.All != "" {
		d.g.hold.AllWhy = kept
	}
	if d.g.hold.Offload = name(d.g.v.HoldOffload); d.g.hold.Offload != "" {
		d.g.hold.OffloadWhy = kept
	}
	return nil
}

// SetChecksum tells the datapath whether conntrack verifies TCP/UDP
// checksums (net.netfilter.nf_conntrack_checksum): when it does, so does
// the datapath for offloaded flows, and a packet that fails goes to the
// kernel, which calls it invalid. The datapath starts with it on, the
// kernel's default.
func (d *Datapath) SetChecksum(verify bool) error {
	return d.writeGlobals(func(s *fastpathFpState) {
		if verify {
			s.Flags &^= uint32(fastpathFpStateFlagsFP_STATE_NO_CHECKSUM)
		} else {
			s.Flags |= uint32(fastpathFpStateFlagsFP_STATE_NO_CHECKSUM)
		}
	})
}

// Hold says what the daemon holds back from the datapath, by pass reason
// name ("" none): All sends every packet of every managed interface to the
// kernel, Offload those of interfaces in offload mode. For kernel state the
// datapath cannot follow packet by packet (IPsec policies, a netfilter
// chain after the verdict hook).
type Hold struct {
	All, Offload string
	// AllWhy and OffloadWhy say what in the kernel caused each, for
	// status.
	AllWhy, OffloadWhy string
}

// SetHold sets what is held back. A change also makes every cached flow
// prove again that netfilter accepts it (its verdicts may predate the
// state that caused or lifted the hold).
func (d *Datapath) SetHold(h Hold) error {
	all, err := d.reasonIndex(h.All)
	if err != nil {
		return err
	}
	off, err := d.reasonIndex(h.Offload)
	if err != nil {
		return err
	}
	err = d.writeGlobals(func(s *fastpathFpState) {
		if s.HoldAll != all || s.HoldOffload != off {
			s.FwGen++
		}
		s.HoldAll, s.HoldOffload = all, off
	})
	if err == nil {
		d.g.mu.Lock()
		d.g.hold = h
		d.g.mu.Unlock()
	}
	return err
}

// Held returns what SetHold last set.
func (d *Datapath) Held() Hold {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	return d.g.hold
}

// reasonIndex is the enum fp_reason value of a pass reason name; "" is 0,
// no hold.
func (d *Datapath) reasonIndex(name string) (uint32, error) {
	if name == "" {
		return 0, nil
	}
	for i, r := range d.reasons {
		if r == name && i > 0 {
			return uint32(i), nil
		}
	}
	return 0, fmt.Errorf("no pass reason %q to hold forwarding back for", name)
}
