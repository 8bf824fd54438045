package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/datapath"
	"github.com/fastpath-router/fastpath/internal/eventhub"

	"github.com/fastpath-router/fastpath/internal/api"
)

// backend answers API requests from the reconciler's state.
type backend struct {
	r      *reconciler
	dp     *datapath.Datapath // counters and flows; the reconciler sees only what it changes
	events *eventhub.Hub
	reload func(context.Context) (*api.ReloadResult, error)
	status api.Status // the fixed part
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
	return &st, nil
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
	b.r.mu.Lock()
	defer b.r.mu.Unlock()
	out := &api.Stats{Interfaces: []api.InterfaceStats{}}
	for _, ic := range b.r.ifaces {
		c, ok := counters[ic.ifindex]
		if ic.ifindex == 0 || !ok {
			continue
		}
		s := api.InterfaceStats{
			Name: ic.cfg.Name, Ifindex: ic.ifindex,
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

func (b *backend) Flows(context.Context) (*api.Flows, error) {
	if b.r == nil {
		return nil, errStarting
	}
	flows, err := b.dp.Flows()
	if err != nil {
		return nil, err
	}
	name := b.flowNamer()
	now := datapath.Monotonic()
	out := &api.Flows{Capacity: b.dp.FlowCapacity(), Flows: make([]api.Flow, 0, len(flows))}
	for _, f := range flows {
		out.Flows = append(out.Flows, apiFlow(f, name, now))
	}
	return out, nil
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
		b.r.mu.Lock()
		for _, ic := range b.r.ifaces {
			if ic.ifindex != 0 {
				names[ic.ifindex] = ic.cfg.Name
			}
		}
		b.r.mu.Unlock()
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
