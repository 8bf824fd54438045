package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// waitTime bounds every wait in these tests; nothing here should take
// more than a fraction of it.
const waitTime = 10 * time.Second

func testEvents() []Event {
	at := func(sec int) time.Time { return time.Date(2025, 1, 2, 3, 4, sec, 0, time.UTC) }
	f := testFlows().Flows[0]
	f.Packets, f.Bytes, f.AgeSec, f.IdleSec = 0, 0, 0, 0
	return []Event{
		{Time: at(1), Kind: EventAttach, Interface: "r0", Detail: "offload, xdp"},
		{Time: at(2), Kind: EventFlowAdded, Interface: "lan0", Flow: &f},
		{Time: at(3), Kind: EventDropped, Dropped: 7},
		{Time: at(4), Kind: EventFlowRemoved, Interface: "lan0", Flow: &f, Reason: "tcp_close"},
		{Time: at(5), Kind: EventReload, Detail: "2 changes"},
	}
}

func newEventBackend() *fakeBackend {
	return &fakeBackend{events: make(chan Event), subscribed: make(chan context.Context, 1)}
}

// subscription waits for the server to subscribe to f's events and
// returns the context it subscribed with.
func subscription(t *testing.T, f *fakeBackend) context.Context {
	t.Helper()
	select {
	case ctx := <-f.subscribed:
		return ctx
	case <-time.After(waitTime):
		t.Fatal("the server never subscribed to events")
		return nil
	}
}

// publish hands e to the server's event handler.
func publish(t *testing.T, f *fakeBackend, e Event) {
	t.Helper()
	select {
	case f.events <- e:
	case <-time.After(waitTime):
		t.Fatal("the server stopped taking events")
	}
}

func ended(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(waitTime):
		t.Fatalf("%s: the server kept the subscription", what)
	}
}

func result[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTime):
		t.Fatalf("%s: nothing after %v", what, waitTime)
		var zero T
		return zero
	}
}

// streamEvents runs Client.Events in the background, passing events on.
func streamEvents(ctx context.Context, path string, fn func(Event) error) (<-chan Event, <-chan error) {
	got := make(chan Event, 100)
	done := make(chan error, 1)
	go func() {
		done <- NewClient(path).Events(ctx, func(e Event) error {
			got <- e
			if fn != nil {
				return fn(e)
			}
			return nil
		})
	}()
	return got, done
}

func TestEventsInOrder(t *testing.T) {
	f := newEventBackend()
	path := startServer(t, f)
	got, done := streamEvents(t.Context(), path, nil)
	subscription(t, f)

	for _, e := range testEvents() {
		publish(t, f, e)
	}
	for i, want := range testEvents() {
		if e := result(t, got, "event"); !reflect.DeepEqual(e, want) {
			t.Errorf("event %d = %+v, want %+v", i, e, want)
		}
	}
	// The backend's channel closing ends the stream: the daemon went away.
	close(f.events)
	err := result(t, done, "Events after the channel closed")
	want := "the fastpath daemon at " + path + " ended the event stream (stopped or restarting?)"
	if !errors.Is(err, ErrStreamEnded) || err.Error() != want {
		t.Errorf("Events = %v, want %q", err, want)
	}
}

func TestEventsEndWithContext(t *testing.T) {
	f := newEventBackend()
	path := startServer(t, f)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	got, done := streamEvents(ctx, path, nil)
	sub := subscription(t, f)
	publish(t, f, testEvents()[0])
	result(t, got, "first event")

	cancel()
	if err := result(t, done, "Events after cancel"); !errors.Is(err, context.Canceled) {
		t.Errorf("Events = %v, want context.Canceled", err)
	}
	ended(t, sub, "client cancelled")
}

func TestEventsCallbackError(t *testing.T) {
	f := newEventBackend()
	path := startServer(t, f)
	stop := errors.New("enough")
	_, done := streamEvents(t.Context(), path, func(Event) error { return stop })
	sub := subscription(t, f)
	publish(t, f, testEvents()[0])
	if err := result(t, done, "Events"); err != stop {
		t.Errorf("Events = %v, want the callback's error", err)
	}
	ended(t, sub, "callback error")
}

func TestEventsBackendError(t *testing.T) {
	path := startServer(t, &fakeBackend{err: errors.New("daemon is starting")})
	err := NewClient(path).Events(t.Context(), func(Event) error { return nil })
	if err == nil || err.Error() != "daemon: daemon is starting (HTTP 500)" {
		t.Errorf("Events = %v", err)
	}
}

// Each event is flushed as one JSON line as it happens, while the stream
// stays open.
func TestEventsWire(t *testing.T) {
	f := newEventBackend()
	path := startServer(t, f)
	ctx, cancel := context.WithTimeout(t.Context(), waitTime)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://fastpath/v1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := unixHTTPClient(path).Do(req)
	if err != nil {
		t.Fatalf("GET /v1/events: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("GET /v1/events: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	sub := subscription(t, f)
	r := bufio.NewReader(resp.Body)
	for i, want := range []string{
		`{"time":"2025-01-02T03:04:01Z","kind":"attach","interface":"r0","detail":"offload, xdp"}`,
		`{"time":"2025-01-02T03:04:03Z","kind":"dropped","dropped":7}`,
	} {
		publish(t, f, testEvents()[2*i])
		line, err := r.ReadString('\n')
		if err != nil || line != want+"\n" {
			t.Errorf("line %d = %q, %v; want %q", i, line, err, want)
		}
	}
	cancel()
	ended(t, sub, "request cancelled")
}

// A reader that stops reading loses its stream after streamWriteTimeout;
// the server, and the other clients, carry on.
func TestEventsReaderNotReading(t *testing.T) {
	f := &fakeBackend{status: testStatus(), events: flood(8192), subscribed: make(chan context.Context, 1)}
	srv := NewServer(f, nil)
	srv.streamWriteTimeout = 50 * time.Millisecond
	path, stop := serveWith(t, srv)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	}()

	c := stuckReader(t, path)
	defer c.Close()
	ended(t, subscription(t, f), "reader not reading")
	if _, err := NewClient(path).Status(t.Context()); err != nil {
		t.Errorf("Status beside a stuck stream: %v", err)
	}
}

// Shutting down ends every stream at once, also one whose writes are
// blocked on a reader that does not read: ServeListener then returns nil
// rather than a shutdown timeout.
func TestShutdownEndsStreams(t *testing.T) {
	f := newEventBackend()
	path, stop := serveWith(t, NewServer(f, nil))

	// A client reading normally.
	_, done := streamEvents(t.Context(), path, nil)
	subscription(t, f)
	// And one that does not read, with a channel of its own, fed until
	// the server's writes to it block.
	f.events = make(chan Event)
	c := stuckReader(t, path)
	defer c.Close()
	subscription(t, f)
	feedUntilBlocked(t, f.events)

	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("ServeListener: %v", err)
	}
	if d := time.Since(start); d >= shutdownTimeout {
		t.Errorf("shutdown took %v", d)
	}
	// The reading client's stream ends normally (docs/api.md), not cut
	// short: it can tell the daemon went away from a broken connection.
	if err := result(t, done, "Events at shutdown"); !errors.Is(err, ErrStreamEnded) || errors.Unwrap(err) != nil {
		t.Errorf("Events at shutdown = %v, want ErrStreamEnded, ended cleanly", err)
	}
}

// flood returns a full channel of n large events.
func flood(n int) chan Event {
	ch := make(chan Event, n)
	detail := strings.Repeat("x", 1000)
	for i := range n {
		ch <- Event{Kind: EventReload, Detail: fmt.Sprintf("%d %s", i, detail)}
	}
	return ch
}

// feedUntilBlocked sends large events on ch until one waits unusually long to be taken: the stuck stream's writes
// are then blocked. If the heuristic misjudges, the test still holds, it
// just does not prove as much.
func feedUntilBlocked(t *testing.T, ch chan Event) {
	t.Helper()
	detail := strings.Repeat("x", 1000)
	deadline := time.Now().Add(waitTime)
	for i := 0; time.Now().Before(deadline); i++ {
		select {
		case ch <- Event{Kind: EventReload, Detail: fmt.Sprintf("%d %s", i, detail)}:
		case <-time.After(200 * time.Millisecond):
			return
		}
	}
	t.Fatal("the server kept taking events for a reader that does not read")
}

// stuckReader asks for the event stream on a raw connection and never
// reads from it.
func stuckReader(t *testing.T, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET /v1/events HTTP/1.1\r\nHost: fastpath\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestReload(t *testing.T) {
	want := &ReloadResult{Changed: true, Actions: []string{"attach r2 (offload, xdp)", "detach r1"}}
	path := startServer(t, &fakeBackend{reload: func(ctx context.Context) (*ReloadResult, error) {
		return want, nil
	}})
	got, err := NewClient(path).Reload(t.Context())
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Reload = %+v, %v; want %+v", got, err, want)
	}
}

// TestReloadClientGone: the backend gets the request's context, which ends
// when the client goes away, so that a reload still waiting for its turn
// is not run for nobody (a begun one the backend runs to its end).
func TestReloadClientGone(t *testing.T) {
	entered, cancelled := make(chan struct{}), make(chan bool, 1)
	path := startServer(t, &fakeBackend{reload: func(ctx context.Context) (*ReloadResult, error) {
		close(entered)
		select {
		case <-ctx.Done():
			cancelled <- true
		case <-time.After(10 * time.Second):
			cancelled <- false
		}
		return nil, ctx.Err()
	}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { _, err := NewClient(path).Reload(ctx); done <- err }()
	<-entered
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Reload after the client's context ended: %v", err)
	}
	if !<-cancelled {
		t.Error("the backend's reload context did not end when the client went away")
	}
}

func TestReloadNoChange(t *testing.T) {
	path := startServer(t, &fakeBackend{reload: func(context.Context) (*ReloadResult, error) {
		return &ReloadResult{}, nil
	}})
	code, body := post(t, path, "/v1/reload")
	if code != http.StatusOK || body != `{"changed":false,"actions":[]}` {
		t.Errorf("POST /v1/reload = %d %s", code, body)
	}
}

func TestReloadInvalidConfig(t *testing.T) {
	problems := errors.Join(
		errors.New(`/etc/fp.yaml:4: interfaces[0].mode (r0): unknown mode "ofload"`),
		errors.New(`/etc/fp.yaml:5: interfaces[0].atach: unknown field`))
	path := startServer(t, &fakeBackend{reload: func(context.Context) (*ReloadResult, error) {
		return nil, fmt.Errorf("reload: %w", &ConfigError{Err: problems})
	}})

	_, err := NewClient(path).Reload(t.Context())
	var ce *ConfigError
	if !errors.As(err, &ce) || err.Error() != problems.Error() {
		t.Errorf("Reload = %#v, want a *ConfigError saying %q", err, problems)
	}

	code, body := post(t, path, "/v1/reload")
	want := `{"error":"/etc/fp.yaml:4: interfaces[0].mode (r0): unknown mode \"ofload\"\n` +
		`/etc/fp.yaml:5: interfaces[0].atach: unknown field",` +
		`"errors":["/etc/fp.yaml:4: interfaces[0].mode (r0): unknown mode \"ofload\"",` +
		`"/etc/fp.yaml:5: interfaces[0].atach: unknown field"]}`
	if code != http.StatusUnprocessableEntity || body != want {
		t.Errorf("POST /v1/reload = %d %s\nwant 422 %s", code, body, want)
	}
}

func TestReloadFailure(t *testing.T) {
	path := startServer(t, &fakeBackend{err: errors.New("attach r2: no such device")})
	_, err := NewClient(path).Reload(t.Context())
	var ce *ConfigError
	if err == nil || err.Error() != "daemon: attach r2: no such device (HTTP 500)" || errors.As(err, &ce) {
		t.Errorf("Reload = %v", err)
	}
}

// A reload that failed in part says what it did as well as the error.
func TestReloadPartialFailure(t *testing.T) {
	path := startServer(t, &fakeBackend{reload: func(context.Context) (*ReloadResult, error) {
		return &ReloadResult{Changed: true, Actions: []string{"r1: mode offload -> route", "add r2: failed: no such device"}},
			errors.New("attach r2: no such device")
	}})
	res, err := NewClient(path).Reload(t.Context())
	want := &ReloadResult{Changed: true, Actions: []string{"r1: mode offload -> route", "add r2: failed: no such device"}}
	if err == nil || err.Error() != "daemon: attach r2: no such device (HTTP 500)" || !reflect.DeepEqual(res, want) {
		t.Errorf("Reload = %+v, %v; want %+v and the error", res, err, want)
	}
	code, body := post(t, path, "/v1/reload")
	if code != 500 || body != `{"error":"attach r2: no such device","actions":["r1: mode offload -> route","add r2: failed: no such device"]}` {
		t.Errorf("POST /v1/reload = %d %s", code, body)
	}
}

// post POSTs to path on the server at socket and returns the status and
// the body without its final newline.
func post(t *testing.T, socket, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://fastpath"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := unixHTTPClient(socket).Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("POST %s: Content-Type %q", path, ct)
	}
	return resp.StatusCode, strings.TrimSuffix(string(body), "\n")
}
