package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/datapath"
	"github.com/fastpath-router/fastpath/internal/eventhub"
	"github.com/fastpath-router/fastpath/internal/guard"
	"github.com/fastpath-router/fastpath/internal/metrics"
	"github.com/fastpath-router/fastpath/internal/netwatch"

	"github.com/fastpath-router/fastpath/internal/api"
)

// backend answers API requests from the reconciler's state.
type backend struct {
	r      *reconciler
	dp     *datapath.Datapath // counters and flows; the reconciler sees only what it changes
	events *eventhub.Hub
	watch  *netwatch.Events // kernel watches: overruns, route MTUs (see ControlPlane)
	reload func(context.Context) (*api.ReloadResult, error)
	reval  *revalidation
	status api.Status     // the fixed part
	guard  *guard.Manager // the guard's lists (guard.go)
}

func (b *backend) Events(ctx context.Context) (<-chan api.Event, error) {
	if b.events == nil {
		return nil, errStarting
	}
	return b.events.Subscribe(ctx), nil
}

func (b *backend) Reload(ctx context.Context) (*api.ReloadResult, error) {
	if b.reload == nil {
		return nil, errStarting
	}
	return b.reload(ctx)
}

var errStarting = errors.New("daemon is starting")

func (b *backend) Status(context.Context) (*api.Status, error) {
	if b.r == nil {
		return nil, errStarting
	}
	st := b.status
	st.Interfaces = b.r.status()
	st.RevalidateEvery = "off"
	if b.reval != nil {
		every, why := b.reval.status()
		if every > 0 {
			st.RevalidateEvery = every.String()
		}
		st.RevalidateWhy = why
	}
	if b.dp != nil {
		st.Datapath = datapathStatus(b.dp)
	}
	return &st, nil
}

// datapathStatus reads the generations and the heartbeat.
func datapathStatus(dp *datapath.Datapath) *api.DatapathStatus {
	fib, fw := dp.Generations()
	s := &api.DatapathStatus{RouteGeneration: fib, RulesetGeneration: fw, Watchdog: api.WatchdogOff}
	h := dp.Held()
	if h.All != "" {
		s.Held = append(s.Held, "all: "+h.AllWhy)
	}
	if h.Offload != "" {
		s.Held = append(s.Held, "offload: "+h.OffloadWhy)
	}
	at, wd := dp.LastHeartbeat()
	if wd == 0 {
		return s
	}
	age := datapath.Monotonic() - at
	s.HeartbeatAgeSec, s.WatchdogSec = age.Seconds(), wd.Seconds()
	s.Watchdog = api.WatchdogArmed
	if age > wd {
		s.Watchdog = api.WatchdogFired
	}
	return s
}

func (b *backend) Stats(context.Context) (*api.Stats, error) {
	if b.r == nil {
		return nil, errStarting
	}
	counters, err := b.dp.Stats()
	if err != nil {
		return nil, err
	}
	names, drops := b.dp.ReasonNames(), b.dp.DropReasonNames()
	out := &api.Stats{Interfaces: []api.InterfaceStats{}}
	for _, ic := range b.r.status() {
		c, ok := counters[ic.Ifindex]
		if ic.Ifindex == 0 || !ok {
			continue
		}
		s := api.InterfaceStats{
			Name: ic.Name, Ifindex: ic.Ifindex,
			Forwarded:    api.Counter{Packets: c.FwdPackets, Bytes: c.FwdBytes},
			Passed:       api.Counter{Packets: c.PassPackets, Bytes: c.PassBytes},
			FlowsAdded:   c.FlowsAdded,
			FlowsRemoved: c.FlowsRemoved,
			EventsLost:   c.EventsLost,
			PassReasons:  make(map[string]uint64, len(names)),
			Dropped:      api.Counter{Packets: c.DropPackets, Bytes: c.DropBytes},
			DropReasons:  make(map[string]uint64, len(drops)),
		}
		for i, n := range names {
			s.PassReasons[n] = c.PassReason[i]
		}
		for i, n := range drops {
			s.DropReasons[n] = c.DropReason[i]
		}
		out.Interfaces = append(out.Interfaces, s)
	}
	return out, nil
}

// Flows answers q while it reads the cache: only the flows q keeps are
// converted and held.
func (b *backend) Flows(_ context.Context, q api.FlowQuery) (*api.Flows, error) {
	if b.r == nil {
		return nil, errStarting
	}
	name := b.flowNamer()
	now := datapath.Monotonic()
	c := api.NewFlowCollector(q)
	if err := b.dp.EachFlow(func(f datapath.Flow) { c.Add(apiFlow(f, name, now)) }); err != nil {
		return nil, err
	}
	return c.Result(b.dp.FlowCapacity()), nil
}

func apiFlow(f datapath.Flow, name func(int) string, now time.Duration) api.Flow {
	a := api.Flow{
		Proto: "udp", Family: "ipv4", Direction: "original",
		In:      api.Tuple{Src: f.In.Src, Dst: f.In.Dst},
		Out:     api.Tuple{Src: f.Out.Src, Dst: f.Out.Dst},
		Ingress: name(f.IfindexIn), Egress: name(f.IfindexOut),
		Packets: f.Packets, Bytes: f.Bytes,
		AgeSec: (now - f.Created).Seconds(), IdleSec: (now - f.Last).Seconds(),
		Stale: f.Stale,
	}
	if f.In.Proto == unix.IPPROTO_TCP {
		a.Proto = "tcp"
	}
	if f.In.Src.Addr().Is6() {
		a.Family = "ipv6"
	}
	if f.Reply {
		a.Direction = "reply"
	}
	switch {
	case f.SNAT && f.DNAT:
		a.NAT = "snat+dnat"
	case f.SNAT:
		a.NAT = "snat"
	case f.DNAT:
		a.NAT = "dnat"
	}
	return a
}

// flowNamer snapshots ifindex -> configured name, for flows and events.
func (b *backend) flowNamer() func(int) string {
	names := map[int]string{}
	if b.r != nil {
		for _, ic := range b.r.status() {
			if ic.Ifindex != 0 {
				names[ic.Ifindex] = ic.Name
			}
		}
	}
	return func(idx int) string {
		if n, ok := names[idx]; ok {
			return n
		}
		return fmt.Sprintf("ifindex %d", idx)
	}
}

// flowName names one ifindex; flow events call it per event, which is
// fine at the hub's bounded rate.
func (b *backend) flowName(idx int) string { return b.flowNamer()(idx) }

// ControlPlane implements metrics.ControlSource.
func (b *backend) ControlPlane() metrics.ControlPlane {
	if b.watch == nil {
		return metrics.ControlPlane{}
	}
	mtu := b.watch.Routes.MTUStats()
	return metrics.ControlPlane{NetlinkOverruns: b.watch.Overruns(), RouteMTUResyncs: mtu.Resyncs, RouteMTURoutes: mtu.Routes}
}
