package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/config"
	"github.com/fastpath-router/fastpath/internal/datapath"
	"github.com/fastpath-router/fastpath/internal/guard"
)

// guardPlan is a guard configuration read and checked in full (list files
// included), ready to apply: nothing is applied from a config with a bad
// line anywhere.
type guardPlan struct {
	lists guard.Lists
	cfg   datapath.GuardConfig
}

// planGuard reads the lists and checks the limits of c. Its errors are
// *api.ConfigError: the config (or a file it names) is wrong.
func planGuard(c *config.Config) (*guardPlan, error) {
	lists, err := guard.Load(guard.SpecOf(c.Guard))
	if err != nil {
		return nil, &api.ConfigError{Err: err}
	}
	gc := guard.DatapathConfig(c.Guard)
	if err := datapath.CheckGuard(gc); err != nil {
		return nil, &api.ConfigError{Err: err}
	}
	return &guardPlan{lists: lists, cfg: gc}, nil
}

// applyGuard writes a plan: limits, then lists (each list adds its new
// entries before it removes stale ones).
func applyGuard(dp *datapath.Datapath, m *guard.Manager, p *guardPlan) ([]string, error) {
	if err := dp.SetGuard(p.cfg); err != nil {
		return nil, fmt.Errorf("guard limits: %w", err)
	}
	return m.SetConfig(p.lists)
}

// Guard answers GET /v1/guard.
func (b *backend) Guard(_ context.Context, q api.GuardQuery) (*api.Guard, error) {
	if b.r == nil || b.guard == nil {
		return nil, errStarting
	}
	out := &api.Guard{Allow: []api.GuardEntry{}, Deny: []api.GuardEntry{}, Interfaces: []api.GuardInterface{}, Top: []api.GuardSource{}}
	for _, l := range []struct {
		list datapath.GuardList
		dst  *[]api.GuardEntry
	}{{datapath.GuardAllow, &out.Allow}, {datapath.GuardDeny, &out.Deny}} {
		n := b.guard.Count(l.list)
		if l.list == datapath.GuardAllow {
			out.AllowEntries = n
		} else {
			out.DenyEntries = n
		}
		if !q.Entries {
			continue
		}
		es, err := b.guard.Entries(l.list)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			*l.dst = append(*l.dst, api.GuardEntry{Prefix: e.Prefix.String(), Origin: e.Origin, Packets: e.Packets, Bytes: e.Bytes})
		}
	}
	counters, err := b.dp.GuardStats()
	if err != nil {
		return nil, err
	}
	names := b.dp.GuardReasonNames()
	for _, ic := range b.r.status() {
		c, ok := counters[ic.Ifindex]
		if ic.Ifindex == 0 || !ok {
			continue
		}
		gi := api.GuardInterface{Name: ic.Name, Ifindex: ic.Ifindex, Allowed: c.Allowed, EventsLost: c.EventsLost,
			Dropped: make(map[string]uint64, len(names)), DroppedBytes: make(map[string]uint64, len(names))}
		for i, n := range names {
			gi.Dropped[n] = c.DropPackets[i]
			gi.DroppedBytes[n] = c.DropBytes[i]
		}
		out.Interfaces = append(out.Interfaces, gi)
	}
	if q.Top > 0 {
		srcs, err := b.dp.GuardTop(q.Top)
		if err != nil {
			return nil, err
		}
		for _, s := range srcs {
			out.Top = append(out.Top, api.GuardSource{Source: s.Prefix.String(), Packets: s.Packets, Bytes: s.Bytes, Reason: s.Reason})
		}
	}
	return out, nil
}

// GuardChange answers POST /v1/guard/add and /v1/guard/del: every prefix
// is checked before any is applied.
func (b *backend) GuardChange(_ context.Context, add bool, list string, prefixes []string) (*api.GuardChangeResult, error) {
	if b.guard == nil {
		return nil, errStarting
	}
	l, err := guard.ParseList(list)
	if err != nil {
		return nil, &api.RequestError{Code: http.StatusBadRequest, Err: err}
	}
	if len(prefixes) == 0 {
		return nil, &api.RequestError{Code: http.StatusBadRequest, Err: errors.New("no prefix given")}
	}
	var ps []netip.Prefix
	var errs []error
	for _, s := range prefixes {
		p, err := config.ParsePrefix(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, &api.RequestError{Code: http.StatusBadRequest, Err: err}
	}
	if add {
		err = b.guard.Add(l, ps)
	} else {
		err = b.guard.Del(l, ps)
	}
	var nl *guard.NotListedError
	if errors.Is(err, guard.ErrFromConfig) || errors.As(err, &nl) {
		return nil, &api.RequestError{Code: http.StatusConflict, Err: err}
	}
	if err != nil {
		return nil, err
	}
	res := &api.GuardChangeResult{List: string(l), Changed: []string{}}
	for _, p := range ps {
		res.Changed = append(res.Changed, p.String())
	}
	return res, nil
}

// guardDropEvent describes a sampled guard drop: the interface, the reason
// and the packet's addresses (ports when it had them).
func guardDropEvent(ev datapath.Event, name func(int) string) api.Event {
	in := ev.Flow.In
	proto := fmt.Sprintf("proto %d", in.Proto)
	switch in.Proto {
	case 6:
		proto = "tcp"
	case 17:
		proto = "udp"
	case 1, 58:
		proto = "icmp"
	}
	detail := fmt.Sprintf("%s %v -> %v", proto, in.Src, in.Dst)
	if in.Proto != 6 && in.Proto != 17 {
		detail = fmt.Sprintf("%s %v -> %v", proto, in.Src.Addr(), in.Dst.Addr())
	}
	return api.Event{Kind: api.EventGuardDrop, Interface: name(ev.Flow.IfindexIn), Reason: ev.Reason, Detail: detail}
}

var _ api.GuardBackend = (*backend)(nil)
