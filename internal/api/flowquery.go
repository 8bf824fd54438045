package api

import (
	"cmp"
	"container/heap"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// FlowQuery selects what GET /v1/flows answers: the flows Filter matches,
// the Limit largest of them by bytes (0: all of them; CountOnly: none,
// only Total). The daemon applies it while it reads the cache, so a
// million cached flows never become a million listed ones.
type FlowQuery struct {
	Limit  int
	Filter FlowFilter
}

// CountOnly as a FlowQuery's Limit asks for Total alone.
const CountOnly = -1

// FlowFilter selects connections as conntrack -L does: by the original
// direction's protocol, addresses and ports (the client's view), so both
// directions of a connection match. Zero fields match everything.
type FlowFilter struct {
	Proto        string       // "tcp" or "udp"
	Src, Dst     netip.Prefix // the original direction's addresses
	Sport, Dport uint16       // the original direction's ports
}

// ParseFlowFilter reads a filter from command-line style values: proto
// tcp/udp (or 6/17), src and dst an address or a prefix, ports 1-65535. An
// empty value leaves that part out. Errors name the flag (as given in
// names: proto, src, dst, sport, dport) and the bad value.
func ParseFlowFilter(proto, src, dst, sport, dport string, names [5]string) (FlowFilter, error) {
	var f FlowFilter
	switch p := strings.ToLower(proto); p {
	case "":
	case "6", "tcp":
		f.Proto = "tcp"
	case "17", "udp":
		f.Proto = "udp"
	default:
		return f, fmt.Errorf("invalid %s %q: fastpath forwards tcp and udp flows only", names[0], proto)
	}
	for i, a := range []struct {
		val string
		out *netip.Prefix
	}{{src, &f.Src}, {dst, &f.Dst}} {
		if a.val == "" {
			continue
		}
		p, err := parseAddrOrPrefix(a.val)
		if err != nil {
			return f, fmt.Errorf("invalid %s %q: give an address or a prefix, such as 198.18.1.2 or fd00::/64", names[1+i], a.val)
		}
		*a.out = p
	}
	for i, p := range []struct {
		val string
		out *uint16
	}{{sport, &f.Sport}, {dport, &f.Dport}} {
		if p.val == "" {
			continue
		}
		n, err := strconv.ParseUint(p.val, 10, 16)
		if err != nil || n == 0 {
			return f, fmt.Errorf("invalid %s %q: give a port number, 1 to 65535", names[3+i], p.val)
		}
		*p.out = uint16(n)
	}
	return f, nil
}

func parseAddrOrPrefix(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked(), nil
}

// Empty says the filter matches every flow.
func (f FlowFilter) Empty() bool { return f == FlowFilter{} }

// Match says whether fl belongs to a connection the filter selects.
func (f FlowFilter) Match(fl Flow) bool {
	if f.Proto != "" && fl.Proto != f.Proto {
		return false
	}
	o := OriginalTuple(fl)
	if f.Src.IsValid() && !f.Src.Contains(o.Src.Addr().Unmap()) {
		return false
	}
	if f.Dst.IsValid() && !f.Dst.Contains(o.Dst.Addr().Unmap()) {
		return false
	}
	if f.Sport != 0 && o.Src.Port() != f.Sport {
		return false
	}
	return f.Dport == 0 || o.Dst.Port() == f.Dport
}

// OriginalTuple is the connection's original direction as conntrack names
// it: a reply flow leaves (after NAT is undone) towards the original
// sender, so its Out tuple reversed is the original one.
func OriginalTuple(fl Flow) Tuple {
	if fl.Direction == "reply" {
		return Tuple{Src: fl.Out.Dst, Dst: fl.Out.Src}
	}
	return fl.In
}

// values encodes the query as /v1/flows parameters.
func (q FlowQuery) values() url.Values {
	v := url.Values{}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	f := q.Filter
	if f.Proto != "" {
		v.Set("proto", f.Proto)
	}
	if f.Src.IsValid() {
		v.Set("src", f.Src.String())
	}
	if f.Dst.IsValid() {
		v.Set("dst", f.Dst.String())
	}
	if f.Sport != 0 {
		v.Set("sport", strconv.Itoa(int(f.Sport)))
	}
	if f.Dport != 0 {
		v.Set("dport", strconv.Itoa(int(f.Dport)))
	}
	return v
}

// parseFlowQuery reads /v1/flows parameters.
func parseFlowQuery(v url.Values) (FlowQuery, error) {
	var q FlowQuery
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < CountOnly {
			return q, fmt.Errorf("limit: want a whole number >= 0 (or -1 for the count alone), got %q", s)
		}
		q.Limit = n
	}
	var err error
	q.Filter, err = ParseFlowFilter(v.Get("proto"), v.Get("src"), v.Get("dst"), v.Get("sport"), v.Get("dport"),
		[5]string{"proto", "src", "dst", "sport", "dport"})
	return q, err
}

// FlowCollector applies a FlowQuery to flows given one at a time, keeping
// only what the answer needs: the Limit largest matches in a heap.
type FlowCollector struct {
	q     FlowQuery
	total int
	top   flowHeap
}

// NewFlowCollector starts collecting for q.
func NewFlowCollector(q FlowQuery) *FlowCollector { return &FlowCollector{q: q} }

// Add offers one flow.
func (c *FlowCollector) Add(fl Flow) {
	if !c.q.Filter.Match(fl) {
		return
	}
	c.total++
	switch {
	case c.q.Limit == CountOnly:
	case c.q.Limit == 0: // all of them: sorted once at the end
		c.top = append(c.top, fl)
	case len(c.top) < c.q.Limit:
		heap.Push(&c.top, fl)
	case fl.Bytes > c.top[0].Bytes:
		c.top[0] = fl
		heap.Fix(&c.top, 0)
	}
}

// Result is the answer: the kept flows largest first, Total the matches.
func (c *FlowCollector) Result(capacity int) *Flows {
	out := &Flows{Capacity: capacity, Total: c.total, Flows: make([]Flow, len(c.top))}
	if c.q.Limit == 0 {
		copy(out.Flows, c.top)
		slices.SortStableFunc(out.Flows, func(a, b Flow) int { return cmp.Compare(b.Bytes, a.Bytes) })
		return out
	}
	for i := len(c.top) - 1; i >= 0; i-- {
		out.Flows[i] = heap.Pop(&c.top).(Flow)
	}
	return out
}

// flowHeap is a min-heap by bytes (the smallest kept flow on top, the
// first to go).
type flowHeap []Flow

func (h flowHeap) Len() int           { return len(h) }
func (h flowHeap) Less(i, j int) bool { return cmp.Less(h[i].Bytes, h[j].Bytes) }
func (h flowHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *flowHeap) Push(x any)        { *h = append(*h, x.(Flow)) }
func (h *flowHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Apply answers q from a list of every flow (for backends that hold one).
func (q FlowQuery) Apply(all *Flows) *Flows {
	c := NewFlowCollector(q)
	for _, fl := range all.Flows {
		c.Add(fl)
	}
	return c.Result(all.Capacity)
}
