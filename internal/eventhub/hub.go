// Package eventhub fans daemon events out to API subscribers. Publishing
// never blocks: a slow subscriber loses events (and is told how many), and a
// rate limit keeps a flood of flow events from costing the daemon more than
// a bounded amount of work.
package eventhub

import (
	"context"
	"sync"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
)

const (
	// subscriberBuffer events wait for a slow reader before it loses some.
	subscriberBuffer = 1024
	// DefaultRate and DefaultBurst bound published events per second.
	DefaultRate  = 2000
	DefaultBurst = 4000
)

// Hub is safe for concurrent use.
type Hub struct {
	mu      sync.Mutex
	subs    map[*sub]struct{}
	rate    float64
	burst   float64
	tokens  float64
	last    time.Time
	limited uint64 // events refused by the rate limit, not yet reported
	now     func() time.Time
}

type sub struct {
	ch      chan api.Event
	dropped uint64
}

// New returns a hub that passes at most rate events per second on average,
// with bursts up to burst.
func New(rate, burst int) *Hub {
	return &Hub{subs: map[*sub]struct{}{}, rate: float64(rate), burst: float64(burst),
		tokens: float64(burst), now: time.Now}
}

// Publish hands e to every subscriber that has room; it never waits.
func (h *Hub) Publish(e api.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) == 0 {
		return
	}
	now := h.now()
	if !h.last.IsZero() {
		h.tokens = min(h.burst, h.tokens+now.Sub(h.last).Seconds()*h.rate)
	}
	h.last = now
	if h.tokens < 1 {
		h.limited++
		return
	}
	h.tokens--
	if e.Time.IsZero() {
		e.Time = now
	}
	limited := h.limited
	h.limited = 0
	for s := range h.subs {
		s.dropped += limited
		deliver(s, e)
	}
}

// deliver sends e, first reporting what this subscriber missed.
func deliver(s *sub, e api.Event) {
	if s.dropped > 0 {
		select {
		case s.ch <- api.Event{Time: e.Time, Kind: api.EventDropped, Dropped: s.dropped}:
			s.dropped = 0
		default:
			s.dropped++
			return
		}
	}
	select {
	case s.ch <- e:
	default:
		s.dropped++
	}
}

// Subscribe returns a channel of events published from now on; it is closed
// when ctx ends.
func (h *Hub) Subscribe(ctx context.Context) <-chan api.Event {
	s := &sub{ch: make(chan api.Event, subscriberBuffer)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.limited = 0 // a new reader is not owed earlier losses
	h.mu.Unlock()
	context.AfterFunc(ctx, func() {
		h.mu.Lock()
		delete(h.subs, s)
		close(s.ch)
		h.mu.Unlock()
	})
	return s.ch
}
