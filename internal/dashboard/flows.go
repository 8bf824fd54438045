package dashboard

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
)

// FlowRate is a flow of the cache with its rate over the last period.
// The flow is a field of its own: api.Flow has its own JSON form.
type FlowRate struct {
	Flow api.Flow `json:"flow"`
	Rate Rate     `json:"rate"`
}

// FlowTable is the "flows" message: the page's filter applied, largest
// rate first.
type FlowTable struct {
	Capacity int        `json:"capacity"`
	Total    int        `json:"total"`   // flows in the cache
	Matched  int        `json:"matched"` // flows the filter matched
	Filter   string     `json:"filter"`
	Error    string     `json:"error,omitempty"` // the filter is invalid: no flows
	Flows    []FlowRate `json:"flows"`
}

// flowKey names one direction of a connection across samples.
type flowKey struct {
	ingress, proto string
	src, dst       netip.AddrPort
}

func keyOf(f *api.Flow) flowKey {
	return flowKey{f.Ingress, f.Proto, f.In.Src, f.In.Dst}
}

// flowRates remembers the last reading of each flow's counters. The two
// maps take turns, so a steady table allocates nothing per tick.
type flowRates struct {
	prev, spare map[flowKey]api.Counter
	prevAt      time.Time
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
	next := fr.spare
	if next == nil {
		next = make(map[flowKey]api.Counter, len(flows.Flows))
	}
	clear(next)
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
	fr.prev, fr.spare, fr.prevAt = next, fr.prev, now
	return out
}

// flowFilter is a page's flow filter: the API's own (api.FlowFilter, as
// `fastpath flows --proto/--src/--dst/--sport/--dport` and conntrack -L
// take it: the original direction), written as words: "tcp" or "udp", and
// key=value for proto, src, dst (an address or a prefix), sport, dport.
type flowFilter struct {
	text string
	f    api.FlowFilter
	err  error
}

func parseFilter(s string) flowFilter {
	if len(s) > 200 {
		s = s[:200]
	}
	ff := flowFilter{text: s}
	var v [5]string // proto, src, dst, sport, dport
	keys := []string{"proto", "src", "dst", "sport", "dport"}
	for _, w := range strings.Fields(s) {
		k, val, ok := strings.Cut(w, "=")
		if !ok {
			k, val = "proto", w
		}
		i := slices.Index(keys, strings.ToLower(k))
		if i < 0 || val == "" {
			ff.err = fmt.Errorf("%q: write tcp or udp, or proto=, src=, dst=, sport=, dport= (as fastpath flows takes them)", w)
			return ff
		}
		v[i] = val
	}
	ff.f, ff.err = api.ParseFlowFilter(v[0], v[1], v[2], v[3], v[4], [5]string(keys))
	return ff
}

// top returns the n flows the filter matches with the largest rates
// (bytes, then the table's order, as the tie-breaks). It runs once a
// second per page over the whole table, so it keeps only the best n as it
// goes (a heap) and allocates nothing per flow.
func (ff flowFilter) top(rates []Rate, flows *api.Flows, n int) FlowTable {
	t := FlowTable{Capacity: flows.Capacity, Total: len(flows.Flows), Filter: ff.text, Flows: []FlowRate{}}
	if ff.err != nil {
		t.Error = ff.err.Error()
		return t
	}
	rateOf := func(i int) Rate {
		if i < len(rates) {
			return rates[i]
		}
		return Rate{}
	}
	// before says whether flow i ranks above flow j.
	before := func(i, j int) bool {
		ri, rj := rateOf(i), rateOf(j)
		if ri.BPS != rj.BPS {
			return ri.BPS > rj.BPS
		}
		if bi, bj := flows.Flows[i].Bytes, flows.Flows[j].Bytes; bi != bj {
			return bi > bj
		}
		return i < j
	}
	best := make(rankHeap, 0, n) // min-heap by rank: best[0] is the weakest kept
	for i := range flows.Flows {
		if !ff.f.Empty() && !ff.f.Match(flows.Flows[i]) {
			continue
		}
		t.Matched++
		switch {
		case n <= 0:
		case len(best) < n:
			best.push(i, before)
		case before(i, best[0]):
			best[0] = i
			best.down(0, before)
		}
	}
	slices.SortFunc(best, func(i, j int) int {
		if before(i, j) {
			return -1
		}
		return 1
	})
	for _, i := range best {
		t.Flows = append(t.Flows, FlowRate{Flow: flows.Flows[i], Rate: rateOf(i)})
	}
	return t
}

// rankHeap holds flow indexes, the lowest-ranked at the root.
type rankHeap []int

func (h *rankHeap) push(i int, before func(i, j int) bool) {
	*h = append(*h, i)
	k := len(*h) - 1
	for k > 0 {
		p := (k - 1) / 2
		if !before((*h)[p], (*h)[k]) { // parent ranks below or equal: in place
			break
		}
		(*h)[p], (*h)[k] = (*h)[k], (*h)[p]
		k = p
	}
}

func (h rankHeap) down(k int, before func(i, j int) bool) {
	for {
		l, low := 2*k+1, k
		if l < len(h) && before(h[low], h[l]) {
			low = l
		}
		if r := l + 1; r < len(h) && before(h[low], h[r]) {
			low = r
		}
		if low == k {
			return
		}
		h[k], h[low] = h[low], h[k]
		k = low
	}
}
