package dashboard

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
)

// FlowRate is a flow of the cache with its rate over the last period.
type FlowRate struct {
	api.Flow
	Rate Rate `json:"rate"`
}

// FlowTable is the "flows" message: the page's filter applied, largest
// rate first.
type FlowTable struct {
	Capacity int        `json:"capacity"`
	Total    int        `json:"total"`   // flows in the cache
	Matched  int        `json:"matched"` // flows the filter matched
	Filter   string     `json:"filter"`
	Flows    []FlowRate `json:"flows"`
}

// flowKey names one direction of a connection across samples.
type flowKey struct {
	ingress, proto string
	src, dst       string
}

func keyOf(f *api.Flow) flowKey {
	return flowKey{f.Ingress, f.Proto, f.In.Src.String(), f.In.Dst.String()}
}

// flowRates remembers the last reading of each flow's counters.
type flowRates struct {
	prev   map[flowKey]api.Counter
	prevAt time.Time
}

// update returns the rates of flows since the last reading (nil flows:
// no reading this tick; the memory is cleared).
func (fr *flowRates) update(flows *api.Flows, now time.Time) []Rate {
	if flows == nil {
		clear(fr.prev)
		fr.prevAt = time.Time{}
		return nil
	}
	dt := 0.0
	if !fr.prevAt.IsZero() {
		dt = now.Sub(fr.prevAt).Seconds()
	}
	next := make(map[flowKey]api.Counter, len(flows.Flows))
	out := make([]Rate, len(flows.Flows))
	for i := range flows.Flows {
		f := &flows.Flows[i]
		k := keyOf(f)
		c := api.Counter{Packets: f.Packets, Bytes: f.Bytes}
		next[k] = c
		p, seen := fr.prev[k]
		switch {
		case seen && dt > 0 && c.Packets >= p.Packets:
			out[i] = rate(c, p, dt)
		case !seen && f.AgeSec > 0:
			// New since the last reading: its whole life.
			out[i] = rate(c, api.Counter{}, max(f.AgeSec, dt))
		}
	}
	fr.prev, fr.prevAt = next, now
	return out
}

// flowFilter is a page's flow filter: words that must all match. A word
// matches a flow's protocol, family, NAT kind, interface, an address or a
// port exactly, or is part of an address:port ("198.18.1." matches its
// subnet).
type flowFilter struct {
	text  string
	words []string
}

func parseFilter(s string) flowFilter {
	if len(s) > 200 {
		s = s[:200]
	}
	return flowFilter{text: s, words: strings.Fields(strings.ToLower(s))}
}

func (ff flowFilter) match(f *api.Flow) bool {
	for _, w := range ff.words {
		if !matchWord(f, w) {
			return false
		}
	}
	return true
}

func matchWord(f *api.Flow, w string) bool {
	switch w {
	case f.Proto, f.Family, f.Direction, strings.ToLower(f.Ingress), strings.ToLower(f.Egress):
		return true
	case "nat":
		return f.NAT != ""
	}
	if f.NAT != "" && strings.Contains(f.NAT, w) {
		return true
	}
	for _, ap := range []string{f.In.Src.String(), f.In.Dst.String(), f.Out.Src.String(), f.Out.Dst.String()} {
		if strings.Contains(strings.ToLower(ap), w) {
			return true
		}
	}
	if p, err := strconv.ParseUint(strings.TrimPrefix(w, ":"), 10, 16); err == nil {
		for _, port := range []uint16{f.In.Src.Port(), f.In.Dst.Port(), f.Out.Src.Port(), f.Out.Dst.Port()} {
			if uint64(port) == p {
				return true
			}
		}
	}
	return false
}

// top returns the n flows the filter matches with the largest rates
// (bytes as the tie-break).
func (ff flowFilter) top(rates []Rate, flows *api.Flows, n int) FlowTable {
	t := FlowTable{Capacity: flows.Capacity, Total: len(flows.Flows), Filter: ff.text, Flows: []FlowRate{}}
	for i := range flows.Flows {
		f := &flows.Flows[i]
		if !ff.match(f) {
			continue
		}
		var r Rate
		if i < len(rates) {
			r = rates[i]
		}
		t.Flows = append(t.Flows, FlowRate{Flow: *f, Rate: r})
	}
	t.Matched = len(t.Flows)
	slices.SortFunc(t.Flows, func(a, b FlowRate) int {
		return cmp.Or(cmp.Compare(b.Rate.BPS, a.Rate.BPS), cmp.Compare(b.Bytes, a.Bytes),
			cmp.Compare(a.In.Src.String(), b.In.Src.String()))
	})
	if len(t.Flows) > n {
		t.Flows = t.Flows[:n]
	}
	return t
}
