package main

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
)

func eventBackend() *fakeBackend {
	return &fakeBackend{events: make(chan api.Event), subscribed: make(chan context.Context, 1)}
}

func subscribedCtx(t *testing.T, f *fakeBackend) context.Context {
	t.Helper()
	select {
	case ctx := <-f.subscribed:
		return ctx
	case <-time.After(waitTime):
		t.Fatal("the command never subscribed to events")
		return nil
	}
}

func send(t *testing.T, f *fakeBackend, events ...api.Event) {
	t.Helper()
	for _, e := range events {
		select {
		case f.events <- e:
		case <-time.After(waitTime):
			t.Fatal("the server stopped taking events")
		}
	}
}

func TestEvents(t *testing.T) {
	f := eventBackend()
	sock := serve(t, f)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c := start(ctx, "events", "--socket", sock, "--kind", "attach", "--kind", "flow_removed")
	sub := subscribedCtx(t, f)

	at := func(sec int) time.Time { return time.Date(2025, 6, 1, 12, 0, sec, 0, time.UTC) }
	ap := netip.MustParseAddrPort
	flow := &api.Flow{Proto: "tcp", Family: "ipv4", Direction: "original",
		In:  api.Tuple{Src: ap("10.0.0.2:40000"), Dst: ap("198.18.2.1:443")},
		Out: api.Tuple{Src: ap("198.18.2.254:40000"), Dst: ap("198.18.2.1:443")},
		NAT: "snat", Ingress: "lan0", Egress: "wan0"}
	send(t, f,
		api.Event{Time: at(1), Kind: api.EventAttach, Interface: "r0", Detail: "xdp, offload mode: native XDP"},
		api.Event{Time: at(2), Kind: api.EventFlowAdded, Interface: "lan0", Flow: flow},
		api.Event{Time: at(3), Kind: api.EventDropped, Dropped: 12},
		api.Event{Time: at(4), Kind: api.EventFlowRemoved, Interface: "lan0", Flow: flow, Reason: "tcp_close"},
		api.Event{Time: at(5), Kind: api.EventDetach, Interface: "r1", Detail: "missing"},
		api.Event{Time: at(6), Kind: api.EventAttach, Interface: "r1", Detail: "tc: attach xdp -> tc"},
	)
	last := `{"time":"2025-06-01T12:00:06Z","kind":"attach","interface":"r1","detail":"tc: attach xdp -> tc"}` + "\n"
	c.waitOutput(t, last)
	cancel() // as Ctrl-C does
	if code := c.exit(t); code != 0 || c.err.String() != "" {
		t.Errorf("after Ctrl-C: code %d, stderr %q", code, c.err.String())
	}
	want := `{"time":"2025-06-01T12:00:01Z","kind":"attach","interface":"r0","detail":"xdp, offload mode: native XDP"}
{"time":"2025-06-01T12:00:03Z","kind":"dropped","dropped":12}
{"time":"2025-06-01T12:00:04Z","kind":"flow_removed","interface":"lan0","flow":{"proto":"tcp","family":"ipv4","direction":"original","in":{"src":"10.0.0.2","sport":40000,"dst":"198.18.2.1","dport":443},"out":{"src":"198.18.2.254","sport":40000,"dst":"198.18.2.1","dport":443},"ingress":"lan0","egress":"wan0","packets":0,"bytes":0,"age_seconds":0,"idle_seconds":0,"stale":false,"nat":"snat"},"reason":"tcp_close"}
` + last
	if got := c.out.String(); got != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
	}
	select {
	case <-sub.Done():
	case <-time.After(waitTime):
		t.Error("the server kept the subscription after the command ended")
	}
}

func TestEventsDaemonGone(t *testing.T) {
	f := eventBackend()
	sock := serve(t, f)
	c := start(t.Context(), "events", "--socket", sock)
	subscribedCtx(t, f)
	send(t, f, api.Event{Time: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC), Kind: api.EventReload, Detail: "no change"})
	c.waitOutput(t, `"kind":"reload"`)
	close(f.events) // the daemon stops

	want := "fastpath: the fastpath daemon at " + sock + " ended the event stream (stopped or restarting?)\n"
	if code := c.exit(t); code != 1 || c.err.String() != want {
		t.Errorf("code %d, stderr %q; want 1, %q", code, c.err.String(), want)
	}
}
