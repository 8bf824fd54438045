package dashboard

import (
	"net/http"
	"time"
)

// serveEvents is a page's server-sent event stream: "hello" (history),
// then each period "tick" (rates, status, counters) and "flows" (the
// table under the page's ?flows= filter), and "event" for each daemon
// event. A page that changes its filter opens a new stream.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	c, hello := s.sampler.join(parseFilter(r.URL.Query().Get("flows")))
	if c == nil {
		writeError(w, http.StatusServiceUnavailable, "too many dashboard pages open")
		return
	}
	defer s.sampler.leave(c)

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Connection", "close") // deadlines set here must not outlive the stream
	w.WriteHeader(http.StatusOK)
	write := func(msg []byte) bool {
		rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if _, err := w.Write(msg); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: 2000\n\n")) || !write(sseMessage("hello", hello)) {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case msg := <-c.ch:
			if !write(msg) {
				return
			}
		}
	}
}
