package eventhub

import (
	"context"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
)

func TestFanOutAndClose(t *testing.T) {
	h := New(1000, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	a, b := h.Subscribe(ctx), h.Subscribe(context.Background())
	h.Publish(api.Event{Kind: api.EventAttach, Interface: "r0"})
	for _, ch := range []<-chan api.Event{a, b} {
		if e := <-ch; e.Kind != api.EventAttach || e.Interface != "r0" || e.Time.IsZero() {
			t.Fatalf("got %+v", e)
		}
	}
	cancel()
	if _, ok := <-a; ok {
		t.Fatal("channel not closed after its context ended")
	}
}

func TestSlowSubscriberLosesAndIsTold(t *testing.T) {
	h := New(1e9, 1e9)
	ch := h.Subscribe(context.Background())
	for i := 0; i < subscriberBuffer+10; i++ {
		h.Publish(api.Event{Kind: api.EventFlowAdded})
	}
	for i := 0; i < subscriberBuffer; i++ { // drain what fitted
		<-ch
	}
	h.Publish(api.Event{Kind: api.EventReload})
	if e := <-ch; e.Kind != api.EventDropped || e.Dropped != 10 {
		t.Fatalf("first event after loss: %+v, want dropped 10", e)
	}
	if e := <-ch; e.Kind != api.EventReload {
		t.Fatalf("then %+v, want the new event", e)
	}
}

func TestRateLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	h := New(10, 5)
	h.now = func() time.Time { return now }
	ch := h.Subscribe(context.Background())
	for i := 0; i < 20; i++ {
		h.Publish(api.Event{Kind: api.EventFlowAdded})
	}
	if len(ch) != 5 {
		t.Fatalf("%d events passed a burst of 5", len(ch))
	}
	for len(ch) > 0 {
		<-ch
	}
	now = now.Add(time.Second) // 10 more tokens, capped at the burst
	h.Publish(api.Event{Kind: api.EventReload})
	if e := <-ch; e.Kind != api.EventDropped || e.Dropped != 15 {
		t.Fatalf("got %+v, want a report of 15 rate-limited events", e)
	}
	if e := <-ch; e.Kind != api.EventReload {
		t.Fatalf("got %+v", e)
	}
}

func TestLossReportedOnce(t *testing.T) {
	now := time.Unix(1000, 0)
	h := New(10, 1)
	h.now = func() time.Time { return now }
	ch := h.Subscribe(context.Background())
	h.Publish(api.Event{Kind: api.EventAttach})
	h.Publish(api.Event{Kind: api.EventAttach}) // rate limited
	<-ch
	for i := 0; i < 2; i++ {
		now = now.Add(time.Second)
		h.Publish(api.Event{Kind: api.EventReload})
	}
	var kinds []string
	for len(ch) > 0 {
		kinds = append(kinds, (<-ch).Kind)
	}
	if len(kinds) != 3 || kinds[0] != api.EventDropped || kinds[1] != api.EventReload || kinds[2] != api.EventReload {
		t.Fatalf("events %v, want one loss report then two reloads", kinds)
	}
}
