package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// route is one endpoint: the method it takes and what serves it.
type route struct {
	method string
	serve  http.HandlerFunc
}

// Handler returns the API's HTTP handler. It routes by hand rather than
// with http.ServeMux so that 404 and 405 answers are JSON too.
func (s *Server) Handler() http.Handler {
	routes := map[string]route{
		"/v1/status": {http.MethodGet, serveGet(s, s.b.Status)},
		"/v1/stats":  {http.MethodGet, serveGet(s, s.b.Stats)},
		"/v1/flows":  {http.MethodGet, s.serveFlows},
		"/v1/events": {http.MethodGet, s.serveEvents},
		"/v1/reload": {http.MethodPost, s.serveReload},
	}
	s.guardRoutes(routes)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, ok := routes[r.URL.Path]
		switch {
		case !ok:
			s.writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
			return
		case r.Method != rt.method:
			w.Header().Set("Allow", rt.method)
			s.writeError(w, http.StatusMethodNotAllowed,
				"method "+r.Method+" not allowed on "+r.URL.Path+"; use "+rt.method)
			return
		}
		rt.serve(w, r)
	})
}

// serveGet answers with what get returns, as JSON.
func serveGet[T any](s *Server, get func(context.Context) (*T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := get(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.writeJSON(w, http.StatusOK, v)
	}
}

// serveFlows answers the flow cache: ?limit=N keeps the N largest flows by
// bytes (-1: only the count), and proto, src, dst, sport, dport select
// connections as conntrack -L does (see FlowFilter), so a big cache does
// not become a response too big to read, nor a big allocation.
func (s *Server) serveFlows(w http.ResponseWriter, r *http.Request) {
	q, err := parseFlowQuery(r.URL.Query())
	if err != nil {
		s.writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	f, err := s.b.Flows(r.Context(), q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, f)
}

// serveReload asks the backend to reload its config, with the request's
// context: a client that goes away before the reload begins (it waits its
// turn behind the daemon's other work) cancels it, one that goes away
// later does not stop it (Backend.Reload). A reload that failed in part
// still reports what it did, in the error body's actions.
func (s *Server) serveReload(w http.ResponseWriter, r *http.Request) {
	res, err := s.b.Reload(r.Context())
	var ce *ConfigError
	switch {
	case err != nil && res != nil && !errors.As(err, &ce):
		s.log.Warn("api request failed", "path", r.URL.Path, "err", err)
		s.writeJSON(w, http.StatusInternalServerError,
			errorBody{Error: err.Error(), Actions: append([]string{}, res.Actions...)})
		return
	case err != nil:
		s.fail(w, r, err)
		return
	}
	out := ReloadResult{Actions: []string{}}
	if res != nil {
		out.Changed = res.Changed
		out.Actions = append(out.Actions, res.Actions...)
	}
	s.writeJSON(w, http.StatusOK, out)
}

// serveEvents streams the backend's events as JSON lines, flushing each,
// until the client goes away, the backend closes the channel, the server
// shuts down, or a write fails. It takes events only from the channel the
// backend gave, which never waits for a slow reader (the backend drops
// events and says so); a reader that takes nothing for streamWriteTimeout
// loses the stream, so it cannot hold the server.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if stop, ok := r.Context().Value(streamsKey{}).(context.Context); ok {
		defer context.AfterFunc(stop, cancel)()
	}
	events, err := s.b.Events(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}

	rc := http.NewResponseController(w)
	wd := &writeDeadline{rc: rc}
	defer context.AfterFunc(ctx, wd.expire)()
	defer wd.stop()

	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-store")
	// The deadlines set here must not outlive the stream on a reused
	// connection.
	h.Set("Connection", "close")
	w.WriteHeader(http.StatusOK)
	// The headers go out now, so the client knows it is subscribed.
	if err := rc.Flush(); err != nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-events:
			if !ok {
				return
			}
			if err := s.writeEvent(w, rc, wd, e); err != nil {
				s.log.Debug("api event stream ended", "err", err)
				return
			}
		}
	}
}

// writeEvent sends e as one JSON line and flushes it to the client.
func (s *Server) writeEvent(w http.ResponseWriter, rc *http.ResponseController, wd *writeDeadline, e Event) error {
	line, err := marshalLine(e)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	wd.extend(s.streamWriteTimeout)
	if _, err := w.Write(line); err != nil {
		return err
	}
	return rc.Flush()
}

// writeDeadline bounds each write of a stream, and ends a write blocked on
// a reader that does not read as soon as the stream must end (shutdown).
// The connection's deadline may be set from another goroutine, but not
// once the handler has returned, hence the lock and the flag.
type writeDeadline struct {
	mu   sync.Mutex
	rc   *http.ResponseController
	done bool // the stream ended or the handler returned: leave the deadline
}

// extend gives the next write d, unless the stream has ended.
func (wd *writeDeadline) extend(d time.Duration) {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if !wd.done {
		wd.rc.SetWriteDeadline(time.Now().Add(d))
	}
}

// streamEndGrace is what a stream that must end (the client left, the
// server shuts down) still has for its writes: a write blocked on a reader
// that does not read fails then, while a reading client gets the stream's
// end (the last chunk), which a deadline already past would cut.
const streamEndGrace = 500 * time.Millisecond

// expire makes a blocked or later write fail within streamEndGrace.
func (wd *writeDeadline) expire() {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if !wd.done {
		wd.rc.SetWriteDeadline(time.Now().Add(streamEndGrace))
		wd.done = true
	}
}

// stop is called as the handler returns.
func (wd *writeDeadline) stop() {
	wd.mu.Lock()
	wd.done = true
	wd.mu.Unlock()
}

// streamsKey marks, in a request's context, the context that ends when
// the server shuts down and its streams must end (see ServeListener).
type streamsKey struct{}

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error string `json:"error"`
	// Errors lists the problems one by one, for 422 (invalid config).
	Errors []string `json:"errors,omitempty"`
	// Actions, for a reload that failed in part, lists what it did.
	Actions []string `json:"actions,omitempty"`
}

// fail answers err: 422 for a ConfigError, 500 for anything else.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ce *ConfigError
	if errors.As(err, &ce) {
		s.log.Info("api request refused: invalid config", "path", r.URL.Path, "err", err)
		msg := ce.Error()
		s.writeJSON(w, http.StatusUnprocessableEntity, errorBody{Error: msg, Errors: problems(msg)})
		return
	}
	s.log.Warn("api request failed", "path", r.URL.Path, "err", err)
	s.writeError(w, http.StatusInternalServerError, err.Error())
}

// problems splits an error message into its lines, one problem each.
func problems(msg string) []string {
	var out []string
	for line := range strings.SplitSeq(msg, "\n") {
		if strings.TrimSpace(line) != "" {
			out = append(out, line)
		}
	}
	return out
}

func (s *Server) writeError(w http.ResponseWriter, code int, msg string) {
	s.writeJSON(w, code, errorBody{Error: msg})
}

func (s *Server) writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := marshalLine(v)
	if err != nil {
		s.log.Error("api encode response", "err", err)
		code = http.StatusInternalServerError
		body, _ = marshalLine(errorBody{Error: "encode response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(body)
}

// marshalLine encodes v as one line of JSON. It leaves <, > and & as they
// are (actions read "mode offload -> route"): no browser reads this API.
func marshalLine(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
