package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
)

// Bounds of what the sampler keeps and sends.
const (
	eventHistory = 200 // events a newly opened page gets
	topFlows     = 50  // flows per sample, largest rate first
	clientBuffer = 16  // messages waiting for a slow page before it loses some
	callTimeout  = 2 * time.Second
	// flowsDuty: reading the flow table takes at most 1/flowsDuty of the
	// daemon's time (see nextFlowsRead).
	flowsDuty = 100
	// What the guard section gets: list entries (of each list) and the
	// most dropped sources.
	guardEntries = 100
	guardTop     = 10
)

// Rate is packets and bits per second.
type Rate struct {
	PPS float64 `json:"pps"`
	BPS float64 `json:"bps"`
}

// IfaceRate is one interface's rates over the last sample period.
type IfaceRate struct {
	Name      string `json:"name"`
	Forwarded Rate   `json:"forwarded"`
	Passed    Rate   `json:"passed"`
	// PassReasons: packets per second passed to the kernel, by reason;
	// only reasons with packets in the period.
	PassReasons map[string]float64 `json:"pass_reasons,omitempty"`
}

// Sample is one sampler tick's rates.
type Sample struct {
	Time       time.Time   `json:"time"`
	Interfaces []IfaceRate `json:"interfaces"`
}

// Tick is what every page receives each period ("tick" event): the rates,
// and the status and counters as the API returns them at that moment.
type Tick struct {
	Sample Sample      `json:"sample"`
	Status *api.Status `json:"status,omitempty"`
	Stats  *api.Stats  `json:"stats,omitempty"`
	// Guard is GET /v1/guard's answer (lists cut to guardEntries each,
	// guardTop sources), read while a page is open; absent when the
	// daemon has no guard.
	Guard *api.Guard `json:"guard,omitempty"`
	// GuardDrops: packets per second the guard dropped in the period, per
	// interface and reason (only reasons with drops).
	GuardDrops map[string]map[string]float64 `json:"guard_drops,omitempty"`
	Error      string                        `json:"error,omitempty"` // the backend failed this tick
	// Clients: pages open now; Dropped: messages this page lost.
	Clients int    `json:"clients"`
	Dropped uint64 `json:"dropped"`
}

// Hello is the first message of a stream: the history the charts and the
// event list start from.
type Hello struct {
	History []Sample    `json:"history"`
	Events  []api.Event `json:"events"` // oldest first
	Period  float64     `json:"period_seconds"`
}

// client is one open event stream.
type client struct {
	ch      chan []byte
	filter  flowFilter
	dropped uint64 // under sampler.mu
}

// sampler reads the backend once per period for every page together and
// keeps the recent history. Counters and status are read always (cheap:
// a few per-CPU entries); the flow table only while a page is open.
type sampler struct {
	b       api.Backend
	every   time.Duration
	history int
	log     *slog.Logger

	mu      sync.Mutex
	clients map[*client]struct{}
	samples []Sample    // ring, oldest first
	events  []api.Event // ring, oldest first

	// Tick state, sampler goroutine only.
	prevStats map[string]api.InterfaceStats
	prevAt    time.Time
	flows     flowRates
	nextFlows time.Time // no flow table read before this
	prevGuard map[string]api.GuardInterface
	guardAt   time.Time
	nextGuard time.Time // no guard read before this
	lastGuard *api.Guard
	lastDrops map[string]map[string]float64
}

// nextFlowsRead is when the flow table (or the guard, whose lists may be
// long) may be read again after a read at now that took took: the next
// tick, unless reading it takes more than 1/flowsDuty of the time (a big
// table, read entry by entry); then less often, so open pages never cost
// the daemon more than that.
func nextFlowsRead(now time.Time, every, took time.Duration) time.Time {
	return now.Add(max(every, flowsDuty*took) - every/2) // half a period: ticks jitter
}

func newSampler(b api.Backend, every time.Duration, history int, log *slog.Logger) *sampler {
	return &sampler{b: b, every: every, history: history, log: log, clients: map[*client]struct{}{},
		flows: flowRates{prev: map[flowKey]api.Counter{}}}
}

// run samples until ctx ends.
func (s *sampler) run(ctx context.Context) {
	go s.followEvents(ctx)
	t := time.NewTicker(s.every)
	defer t.Stop()
	s.tick(ctx, time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.tick(ctx, now)
		}
	}
}

// followEvents keeps the recent events and passes each to every page. The
// backend may not serve events yet (the daemon is starting): it retries.
func (s *sampler) followEvents(ctx context.Context) {
	for ctx.Err() == nil {
		ch, err := s.b.Events(ctx)
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(s.every):
				continue
			}
		}
		for e := range ch {
			s.addEvent(e)
		}
	}
}

func (s *sampler) addEvent(e api.Event) {
	msg := sseMessage("event", e)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = appendRing(s.events, e, eventHistory)
	for c := range s.clients {
		s.send(c, msg)
	}
}

// tick reads the backend once and sends every page its message.
func (s *sampler) tick(ctx context.Context, now time.Time) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	t := Tick{Sample: Sample{Time: now.UTC(), Interfaces: []IfaceRate{}}}
	st, err := s.b.Status(cctx)
	if err == nil {
		t.Status = st
		t.Stats, err = s.b.Stats(cctx)
	}
	if err != nil {
		t.Error = err.Error()
	} else {
		t.Sample.Interfaces = s.rates(t.Stats, now)
	}

	s.mu.Lock()
	open := len(s.clients)
	s.mu.Unlock()
	var (
		flows *api.Flows
		rated []Rate
	)
	switch {
	case open == 0 || err != nil:
		s.flows.update(nil, now) // rates start afresh with the next page
	case !now.Before(s.nextFlows):
		start := time.Now()
		if flows, err = s.b.Flows(cctx, api.FlowQuery{}); err != nil {
			t.Error = err.Error()
			s.flows.update(nil, now)
		} else {
			rated = s.flows.update(flows, now)
		}
		took := time.Since(start)
		s.nextFlows = nextFlowsRead(now, s.every, took)
		if flows != nil {
			s.log.Debug("dashboard read the flow table", "flows", len(flows.Flows), "took", took, "next_in", s.nextFlows.Sub(now))
		}
	}
	switch {
	case open == 0 || err != nil:
		s.lastGuard, s.lastDrops, s.nextGuard = nil, nil, time.Time{}
	case !now.Before(s.nextGuard):
		start := time.Now()
		s.lastGuard, s.lastDrops = s.readGuard(cctx, now)
		s.nextGuard = nextFlowsRead(now, s.every, time.Since(start)) // long lists: the same 1% rule
	}
	// Between readings of a big guard, pages get the last one.
	t.Guard, t.GuardDrops = s.lastGuard, s.lastDrops

	s.mu.Lock()
	s.samples = appendRing(s.samples, t.Sample, s.history)
	pages := make([]*client, 0, len(s.clients))
	for c := range s.clients {
		pages = append(pages, c)
	}
	s.mu.Unlock()
	// Each page's flow table is filtered and encoded without the lock, so
	// events keep flowing meanwhile.
	t.Clients = len(pages)
	for _, c := range pages {
		var table []byte
		if flows != nil {
			table = sseMessage("flows", c.filter.top(rated, flows, topFlows))
		}
		s.mu.Lock()
		t.Dropped = c.dropped
		s.mu.Unlock()
		tick := sseMessage("tick", t)
		s.mu.Lock()
		s.send(c, tick)
		if table != nil {
			s.send(c, table)
		}
		s.mu.Unlock()
	}
}

// rates turns two readings of the counters into per-second rates.
func (s *sampler) rates(st *api.Stats, now time.Time) []IfaceRate {
	out := []IfaceRate{}
	dt := now.Sub(s.prevAt).Seconds()
	next := make(map[string]api.InterfaceStats, len(st.Interfaces))
	for _, i := range st.Interfaces {
		next[i.Name] = i
		prev, ok := s.prevStats[i.Name]
		r := IfaceRate{Name: i.Name}
		// A counter that went down was reset (datapath replaced): no rate.
		if ok && dt > 0 && i.Forwarded.Packets >= prev.Forwarded.Packets && i.Passed.Packets >= prev.Passed.Packets {
			r.Forwarded = rate(i.Forwarded, prev.Forwarded, dt)
			r.Passed = rate(i.Passed, prev.Passed, dt)
			for reason, n := range i.PassReasons {
				if p := prev.PassReasons[reason]; n > p {
					if r.PassReasons == nil {
						r.PassReasons = map[string]float64{}
					}
					r.PassReasons[reason] = float64(n-p) / dt
				}
			}
		}
		out = append(out, r)
	}
	s.prevStats, s.prevAt = next, now
	return out
}

func rate(now, prev api.Counter, dt float64) Rate {
	return Rate{PPS: float64(now.Packets-prev.Packets) / dt, BPS: 8 * float64(now.Bytes-prev.Bytes) / dt}
}

// join adds a page; it returns nil when too many are open.
func (s *sampler) join(f flowFilter) (*client, *Hello) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.clients) >= maxClients {
		return nil, nil
	}
	c := &client{ch: make(chan []byte, clientBuffer), filter: f}
	s.clients[c] = struct{}{}
	return c, &Hello{History: append([]Sample{}, s.samples...), Events: append([]api.Event{}, s.events...),
		Period: s.every.Seconds()}
}

func (s *sampler) leave(c *client) {
	s.mu.Lock()
	delete(s.clients, c)
	s.mu.Unlock()
}

// send queues msg for c without waiting; a full queue loses it. Called
// with s.mu held.
func (s *sampler) send(c *client, msg []byte) {
	select {
	case c.ch <- msg:
	default:
		c.dropped++
	}
}

func appendRing[T any](ring []T, v T, max int) []T {
	if len(ring) >= max {
		ring = append(ring[:0], ring[len(ring)-max+1:]...)
	}
	return append(ring, v)
}

// sseMessage is one server-sent event: its name and v as one line of JSON.
// The JSON escapes <, > and & (encoding/json's default): the page never
// treats data as markup, and this keeps it so even if it did.
func sseMessage(event string, v any) []byte {
	data, err := jsonLine(v)
	if err != nil {
		data, _ = jsonLine(map[string]string{"error": "encode: " + err.Error()})
	}
	var b bytes.Buffer
	b.WriteString("event: ")
	b.WriteString(event)
	b.WriteString("\ndata: ")
	b.Write(bytes.TrimRight(data, "\n"))
	b.WriteString("\n\n")
	return b.Bytes()
}

func jsonLine(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// readGuard reads the guard when the backend has one, and the drop rates
// since the last reading.
func (s *sampler) readGuard(ctx context.Context, now time.Time) (*api.Guard, map[string]map[string]float64) {
	gb, ok := s.b.(api.GuardBackend)
	if !ok {
		return nil, nil
	}
	g, err := gb.Guard(ctx, api.GuardQuery{Top: guardTop, Entries: true})
	if err != nil {
		s.log.Debug("dashboard: read the guard", "err", err)
		return nil, nil
	}
	g.Allow = g.Allow[:min(len(g.Allow), guardEntries)]
	g.Deny = g.Deny[:min(len(g.Deny), guardEntries)]
	var drops map[string]map[string]float64
	dt := now.Sub(s.guardAt).Seconds()
	next := make(map[string]api.GuardInterface, len(g.Interfaces))
	for _, gi := range g.Interfaces {
		next[gi.Name] = gi
		prev, ok := s.prevGuard[gi.Name]
		if !ok || s.guardAt.IsZero() || dt <= 0 {
			continue
		}
		for reason, n := range gi.Dropped {
			if p := prev.Dropped[reason]; n > p {
				if drops == nil {
					drops = map[string]map[string]float64{}
				}
				if drops[gi.Name] == nil {
					drops[gi.Name] = map[string]float64{}
				}
				drops[gi.Name][reason] = float64(n-p) / dt
			}
		}
	}
	s.prevGuard, s.guardAt = next, now
	return g, drops
}
