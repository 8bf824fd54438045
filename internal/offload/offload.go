// Package offload runs what offload mode needs besides attaching and
// invalidating: the netfilter verdict hook, the heartbeat the datapath's
// watchdog checks, forgetting connections conntrack destroys or other
// programs change, the window-liberal updates of TCP entries
// (ctliberal), conntrack's timeouts and idle expiry.
package offload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"

	"github.com/fastpath-router/fastpath/internal/ctliberal"
	"github.com/fastpath-router/fastpath/internal/datapath"
	"github.com/fastpath-router/fastpath/internal/netwatch"
)

// Heartbeat and watchdog: the datapath stops trusting its cache when the
// daemon has not written a heartbeat for WatchdogAfter (hung or killed with
// its programs still attached, e.g. pinned).
const (
	HeartbeatEvery = time.Second
	WatchdogAfter  = 3 * time.Second
)

// Options are what offload mode works with.
type Options struct {
	DP   *datapath.Datapath
	Idle time.Duration // flows.idle_timeout
	Log  *slog.Logger
	// OnEvent receives the datapath's flow and guard events (not the
	// pending ones, which are offload's own business).
	OnEvent func(datapath.Event)
	// OnWatchdog receives what the heartbeat has to say (a stall, a failed
	// write), for the event stream.
	OnWatchdog func(detail string)
}

// Mode is offload mode's housekeeping, running. Beat and Resync belong to
// one goroutine (the daemon's main loop).
type Mode struct {
	lastBeat    time.Duration        // main loop only; 0 until the first Beat
	now         func() time.Duration // datapath.Monotonic; a test's clock
	beatFailing bool
	dp          *datapath.Datapath
	log         *slog.Logger
	onEvent     func(datapath.Event)
	onWatchdog  func(string)
	idle        time.Duration
	lastSweep   time.Duration // main loop only: when idle flows were last swept
	nfLinks     []link.Link
	ct          *netfilter.Conn // conntrack destroy and update events
	ctClosed    atomic.Bool
	nl          *ctliberal.Conn // window-liberal updates; its PID marks their events
	events      *datapath.EventReader
}

// Start sets up offload mode; on error nothing of it remains. The
// goroutines it starts end with ctx or Close.
func Start(ctx context.Context, opts Options) (_ *Mode, err error) {
	o := &Mode{dp: opts.DP, log: opts.Log, idle: opts.Idle, onEvent: opts.OnEvent, onWatchdog: opts.OnWatchdog,
		now: datapath.Monotonic}
	dp := o.dp
	defer func() {
		if err != nil {
			o.Close()
		}
	}()
	if err := o.refreshTimeouts(); err != nil {
		return nil, err
	}
	// No heartbeat yet: the caller's first Beat writes it once the
	// daemon watches everything it must (before attaching at start, after
	// starting offload in a reload). Until then the datapath passes
	// everything, an adopted one too.
	if o.nfLinks, err = dp.AttachNetfilter(); err != nil {
		return nil, err
	}
	if o.nl, err = ctliberal.Dial(); err != nil {
		return nil, err
	}
	if err := o.watchConntrack(ctx); err != nil {
		return nil, err
	}
	if err := o.watchFlows(ctx); err != nil {
		return nil, err
	}
	return o, nil
}

// Close stops offload mode's housekeeping. A nil Mode is fine.
func (o *Mode) Close() {
	if o == nil {
		return
	}
	// Closing a pinned link leaves it attached: the daemon unpins first
	// unless it keeps the datapath for its successor.
	for _, l := range o.nfLinks {
		l.Close()
	}
	o.nfLinks = nil
	if o.ct != nil {
		o.ctClosed.Store(true)
		o.ct.Close()
		o.ct = nil
	}
	if o.events != nil {
		o.events.Close()
		o.events = nil
	}
	if o.nl != nil {
		o.nl.Close()
		o.nl = nil
	}
}

// Beat writes the heartbeat. The main loop calls it, the loop that also
// invalidates the cache: if that loop hangs, the heartbeat stops and the
// watchdog hands everything to the kernel, rather than offloading flows
// nobody re-validates. The first Beat judges no lateness: the daemon calls
// it right before attaching (or right after starting offload in a reload),
// however long reading the kernel's state took (a full routing table:
// seconds), and with no heartbeat before it nothing was offloaded.
func (o *Mode) Beat() {
	now := o.now()
	// A daemon stalled longer than the watchdog (stopped, starved) finds
	// out here: the datapath passed everything to the kernel meanwhile, and
	// whatever changed meanwhile went unwatched: re-validate every flow.
	if gap := now - o.lastBeat; o.lastBeat != 0 && gap > WatchdogAfter {
		o.log.Warn("heartbeat was late: offload was suspended meanwhile (watchdog); flows re-validate", "late_by", gap)
		o.onWatchdog(fmt.Sprintf("heartbeat %s late: offload was suspended; resumes, every flow re-validated", gap.Round(time.Millisecond)))
		if err := errors.Join(o.dp.InvalidateRoutes(), o.dp.InvalidateRuleset()); err != nil {
			o.log.Error("invalidate after a stall", "err", err)
		}
	}
	if err := o.dp.Heartbeat(WatchdogAfter); err != nil {
		if !o.beatFailing {
			o.log.Error("heartbeat: offload stops when the watchdog fires", "err", err)
			o.onWatchdog("heartbeat failed: " + err.Error())
		}
		o.beatFailing = true
		return
	}
	o.beatFailing = false
	o.lastBeat = now
}

// Resync is the periodic housekeeping: timeouts may have been changed with
// sysctl, idle flows leave the cache.
func (o *Mode) Resync() {
	if err := o.refreshTimeouts(); err != nil {
		o.log.Warn("conntrack timeouts", "err", err)
	}
	// Twice per idle timeout: a flow is listed at most half a timeout
	// after it went idle, and a million flows cost a walk every 15 s.
	if now := datapath.Monotonic(); now-o.lastSweep >= o.idle/2 {
		o.lastSweep = now
		if n, quiet, err := o.dp.ExpireIdle(o.idle); err != nil {
			o.log.Warn("expire idle flows", "err", err)
		} else if quiet > 0 {
			o.log.Info("expired idle flows; some without a flow_removed event, to leave the event ring to the packet path",
				"count", n, "unannounced", quiet)
		} else if n > 0 {
			o.log.Debug("expired idle flows", "count", n)
		}
	}
}

// refreshTimeouts copies the namespace's conntrack timeouts into the
// datapath, which refreshes offloaded entries with them, and whether
// conntrack verifies checksums, which the datapath then does too.
func (o *Mode) refreshTimeouts() error {
	read := func(name string) (time.Duration, error) {
		b, err := os.ReadFile("/proc/sys/net/netfilter/" + name)
		if err != nil {
			return 0, fmt.Errorf("conntrack sysctl (is conntrack available in this kernel?): %w", err)
		}
		s, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return 0, fmt.Errorf("parse %s: %w", name, err)
		}
		return time.Duration(s) * time.Second, nil
	}
	var t datapath.Timeouts
	var err error
	if t.TCPEstablished, err = read("nf_conntrack_tcp_timeout_established"); err != nil {
		return err
	}
	if t.UDP, err = read("nf_conntrack_udp_timeout"); err != nil {
		return err
	}
	if t.UDPStream, err = read("nf_conntrack_udp_timeout_stream"); err != nil {
		return err
	}
	if err := o.dp.SetTimeouts(t); err != nil {
		return err
	}
	// nf_conntrack_checksum is a plain 0/1 (read as seconds above: 0 or 1s)
	verify, err := read("nf_conntrack_checksum")
	if err != nil {
		return err
	}
	return o.dp.SetChecksum(verify != 0)
}

// conntrackEventBuffer is the conntrack event socket's receive buffer.
const conntrackEventBuffer = 8 << 20

// watchConntrack forgets connections (cached flows and recorded verdicts)
// whose conntrack entry is destroyed (conntrack -D, flush, expiry) or
// updated by another program through ctnetlink (a mark or label set, as
// `conntrack -U --mark` and connection killers do: rules may match on
// them), so their next packet goes through the ruleset again. Events carry
// the PID of the socket whose request caused them: 0 for the packet path,
// fastpath's own for its window-liberal requests; neither needs a
// forget. A receive error (ENOBUFS when a flush outpaces us) loses events:
// the datapath's once-a-second conntrack check still catches dead entries.
func (o *Mode) watchConntrack(ctx context.Context) error {
	c, err := netfilter.Dial(nil)
	if err != nil {
		return fmt.Errorf("conntrack events: %w", err)
	}
	if err := c.JoinGroups([]netfilter.NetlinkGroup{netfilter.GroupCTDestroy, netfilter.GroupCTUpdate}); err != nil {
		c.Close()
		return fmt.Errorf("listen for conntrack events: %w", err)
	}
	// Room for bursts (a flush, a busy NAT box): fewer lost events.
	if err := c.SetReadBuffer(conntrackEventBuffer); err != nil {
		o.log.Warn("conntrack events buffer", "err", err)
	}
	o.ct = c
	own := o.nl.PID()
	var logged time.Time
	quiet := 0 // removals not announced since the last log line
	go netwatch.Receive(ctx, c.Receive, func(msgs []netlink.Message) bool {
		for _, m := range msgs {
			var ev conntrack.Event
			if err := ev.Unmarshal(m); err != nil || ev.Flow == nil {
				continue
			}
			// An update from the packet path (PID 0) was made by a
			// packet that went through the ruleset, which recorded its
			// verdict anyway; one from fastpath's own socket is the
			// liberal flag. What remains are other programs' changes.
			if ev.Type == conntrack.EventUpdate && (m.Header.PID == 0 || m.Header.PID == own) {
				continue
			}
			changed := ev.Type == conntrack.EventUpdate
			_, q, err := o.dp.ForgetConnection(tupleOf(ev.Flow.TupleOrig), tupleOf(ev.Flow.TupleReply), changed)
			quiet += q
			if (err != nil || quiet > 0) && time.Since(logged) >= time.Minute {
				logged = time.Now()
				if err != nil {
					o.log.Warn("forget a connection conntrack dropped", "err", err)
				}
				if quiet > 0 {
					o.log.Info("flows removed with their conntrack entries; some without a flow_removed event, to leave the event ring to the packet path",
						"unannounced", quiet)
					quiet = 0
				}
			}
		}
		return true
	}, func(err error) bool {
		if o.ctClosed.Load() {
			return false
		}
		if time.Since(logged) >= time.Minute { // a flush can overrun the socket again and again
			logged = time.Now()
			o.log.Warn("conntrack events", "err", err)
		}
		return true
	})
	return nil
}

func tupleOf(t conntrack.Tuple) datapath.Tuple {
	return datapath.Tuple{
		Proto: t.Proto.Protocol,
		Src:   netip.AddrPortFrom(t.IP.SourceAddress, t.Proto.SourcePort),
		Dst:   netip.AddrPortFrom(t.IP.DestinationAddress, t.Proto.DestinationPort),
	}
}

// watchFlows follows the datapath's flow events: a TCP flow's entry is made
// window-liberal (package ctliberal) when the datapath asks, before it
// offloads the flow.
func (o *Mode) watchFlows(ctx context.Context) error {
	var err error
	if o.events, err = o.dp.Events(); err != nil {
		return err
	}
	rd, nl := o.events, o.nl // close() clears the fields; the reader ends on Close
	go func() {
		for {
			ev, err := rd.Read()
			if errors.Is(err, datapath.ErrClosed) {
				return
			}
			if err != nil {
				o.log.Warn("flow events", "err", err)
				continue
			}
			// Pending: made liberal, then the datapath offloads the flow.
			// Added: again, now that the kernel no longer sees the flow's
			// segments, to clear the MAXACK_SET its last ones set (a closing
			// RST would be judged against that stale ack).
			if ev.Type == datapath.FlowPending || ev.Type == datapath.FlowAdded {
				if err := nl.Set(ev.Flow.In.Proto, ev.Flow.In.Src, ev.Flow.In.Dst, ev.Flow.Reply); err != nil && ctx.Err() == nil {
					o.log.Warn("conntrack entry of a flow", "err", err)
				}
			}
			if ev.Type == datapath.FlowPending {
				continue // not news to anyone else: the flow is not offloaded yet
			}
			o.onEvent(ev)
		}
	}()
	return nil
}
