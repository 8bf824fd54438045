package api

import (
	"context"
	"encoding/json"
	"net/http"
)

// Handler returns the API's HTTP handler. It routes by hand rather than
// with http.ServeMux so that 404 and 405 answers are JSON too.
func (s *Server) Handler() http.Handler {
	routes := map[string]func(context.Context) (any, error){
		"/v1/status": func(ctx context.Context) (any, error) { return s.b.Status(ctx) },
		"/v1/stats":  func(ctx context.Context) (any, error) { return s.b.Stats(ctx) },
		"/v1/flows":  func(ctx context.Context) (any, error) { return s.b.Flows(ctx) },
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		get, ok := routes[r.URL.Path]
		switch {
		case !ok:
			s.writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
			return
		case r.Method != http.MethodGet:
			w.Header().Set("Allow", http.MethodGet)
			s.writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+r.URL.Path+"; use GET")
			return
		}
		v, err := get(r.Context())
		if err != nil {
			s.log.Warn("api request failed", "path", r.URL.Path, "err", err)
			s.writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		s.writeJSON(w, http.StatusOK, v)
	})
}

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error string `json:"error"`
}

func (s *Server) writeError(w http.ResponseWriter, code int, msg string) {
	s.writeJSON(w, code, errorBody{Error: msg})
}

func (s *Server) writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.log.Error("api encode response", "err", err)
		code = http.StatusInternalServerError
		body, _ = json.Marshal(errorBody{Error: "encode response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
}
