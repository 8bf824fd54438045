package daemon

import (
	"context"
	"errors"

	"github.com/fastpath-router/fastpath/internal/api"
)

// backend answers API requests from the reconciler's state.
type backend struct {
	r      *reconciler
	status api.Status // the fixed part
}

var errStarting = errors.New("daemon is starting")

func (b *backend) Status(context.Context) (*api.Status, error) {
	if b.r == nil {
		return nil, errStarting
	}
	st := b.status
	b.r.mu.Lock()
	defer b.r.mu.Unlock()
	for _, ic := range b.r.ifaces {
		is := api.InterfaceStatus{
			Name: ic.cfg.Name, Ifindex: ic.ifindex, Mode: string(ic.cfg.Mode),
			Attach: string(ic.cfg.Attach), AttachedAs: string(ic.hook),
			ProgramID: ic.progID, LinkID: ic.linkID, XDPTarget: ic.xdpTarget, State: ic.state,
		}
		if ic.err != nil {
			is.Error = ic.err.Error()
		}
		st.Interfaces = append(st.Interfaces, is)
	}
	return &st, nil
}

func (b *backend) Stats(context.Context) (*api.Stats, error) {
	if b.r == nil {
		return nil, errStarting
	}
	counters, err := b.r.dp.Stats()
	if err != nil {
		return nil, err
	}
	names := b.r.dp.ReasonNames()
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
			Forwarded:   api.Counter{Packets: c.FwdPackets, Bytes: c.FwdBytes},
			Passed:      api.Counter{Packets: c.PassPackets, Bytes: c.PassBytes},
			PassReasons: make(map[string]uint64, len(names)),
		}
		for i, n := range names {
			s.PassReasons[n] = c.PassReason[i]
		}
		out.Interfaces = append(out.Interfaces, s)
	}
	return out, nil
}
