// Package dashboard serves fastpath's web dashboard: one page, embedded in
// the binary (no CDN, no build step), that shows the interfaces, the rates
// fastpath forwards and passes to the kernel, pass reasons, the flow table,
// events and the daemon's state, updated live by server-sent events.
//
// Every number comes from the API's Backend, the same one the unix socket
// serves; the JSON endpoints are the API's own handler, mounted read-only.
// One sampler, shared by all open pages, reads the backend once a second.
// Write actions (reload) need dashboard.write and the token, and are the
// API socket's own endpoints, so the dashboard can never do more than the
// socket allows. docs/dashboard.md describes it for operators.
package dashboard

import (
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/tcplisten"
)

//go:embed assets
var assets embed.FS

// Server bounds.
const (
	readHeaderTimeout = 5 * time.Second
	idleTimeout       = time.Minute
	shutdownTimeout   = 5 * time.Second
	// maxClients bounds open event streams: each costs the sampler a
	// filter over the flow table per tick.
	maxClients = 32
	// streamWriteTimeout: a page that takes nothing for this long loses
	// its stream (the browser reconnects).
	streamWriteTimeout = 10 * time.Second
	// maxTokenFile bounds what LoadToken reads.
	maxTokenFile = 4096
)

// Options configure a Server.
type Options struct {
	// Write allows write actions (POST /api/v1/reload, /api/v1/guard/add
	// and /del) to requests with "Authorization: Bearer <Token>".
	Write bool
	Token string
	Log   *slog.Logger
	// SampleEvery is the sampler's period; 0 means one second.
	SampleEvery time.Duration
	// History is how many samples a newly opened page gets for its charts;
	// 0 means 300 (five minutes at one second).
	History int
}

// Server is the dashboard of one daemon.
type Server struct {
	b       api.Backend
	o       Options
	log     *slog.Logger
	api     http.Handler
	sampler *sampler
	static  http.Handler
}

// New returns the dashboard for b.
func New(b api.Backend, o Options) *Server {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = time.Second
	}
	if o.History <= 0 {
		o.History = 300
	}
	sub, _ := fs.Sub(assets, "assets") // cannot fail: the directory is embedded
	return &Server{
		b: b, o: o, log: o.Log,
		api:     api.NewServer(b, o.Log).Handler(),
		sampler: newSampler(b, o.SampleEvery, o.History, o.Log),
		static:  http.FileServerFS(sub),
	}
}

// LoadToken reads the write token from path: one line, surrounding
// whitespace removed, at least 16 characters. A file other users can read
// is refused: the token allows what root's API socket allows.
func LoadToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("dashboard.token_file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("dashboard.token_file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("dashboard.token_file %s: mode %04o lets other users read it; chmod 600 it", path, fi.Mode().Perm())
	}
	buf := make([]byte, maxTokenFile+1)
	n, _ := f.Read(buf)
	if n > maxTokenFile {
		return "", fmt.Errorf("dashboard.token_file %s: longer than %d bytes", path, maxTokenFile)
	}
	tok := strings.TrimSpace(string(buf[:n]))
	switch {
	case len(tok) < 16:
		return "", fmt.Errorf("dashboard.token_file %s: the token must be at least 16 characters", path)
	case strings.ContainsAny(tok, " \t\r\n"):
		return "", fmt.Errorf("dashboard.token_file %s: the token must be one word on one line", path)
	}
	return tok, nil
}

// Listen takes the TCP address addr. The daemon calls it before attaching
// anything, so a port in use fails the start with nothing changed.
func Listen(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, errors.New("dashboard.listen: no address")
	}
	l, err := tcplisten.Listen(addr)
	if err != nil {
		return nil, fmt.Errorf("dashboard.listen: %w", err)
	}
	return l, nil
}

// Status describes the dashboard on l for the status API: its URL, and a
// warning when other hosts can reach it.
func Status(l net.Listener, write bool) *api.DashboardStatus {
	ap, _ := netip.ParseAddrPort(l.Addr().String())
	st := &api.DashboardStatus{URL: "http://" + l.Addr().String() + "/", Loopback: ap.Addr().IsLoopback(), Write: write}
	if !st.Loopback {
		st.Warning = "the dashboard listens on " + l.Addr().String() + ", reachable from other hosts: " +
			"it shows addresses and flows, unencrypted and without login (see docs/dashboard.md)"
	}
	return st
}

// Serve serves the dashboard on l until ctx ends, then shuts down and
// returns nil. It closes l in every case.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	samplerDone := make(chan struct{})
	go func() { defer close(samplerDone); s.sampler.run(ctx) }()
	defer func() { cancel(); <-samplerDone }()

	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		// Streams end when the server shuts down (ctx below).
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	if st := Status(l, s.o.Write); st.Warning != "" {
		s.log.Warn("dashboard reachable from other hosts", "addr", l.Addr().String(), "warning", st.Warning)
	}
	s.log.Info("serving the dashboard", "url", "http://"+l.Addr().String()+"/", "write", s.o.Write)
	select {
	case err := <-done:
		return fmt.Errorf("serve dashboard: %w", err)
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-done
	return nil
}

// Handler is the dashboard's HTTP handler: the page, the event stream and
// the API's read endpoints (plus reload and the guard's list changes, with
// write and the token). An endpoint the API does not serve (the guard's,
// for a backend without one) answers the API's 404.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", s.static)
	mux.Handle("GET /app.js", s.static)
	mux.Handle("GET /app.css", s.static)
	mux.Handle("GET /favicon.svg", s.static)
	mux.HandleFunc("GET /events", s.serveEvents)
	for _, p := range []string{"/v1/status", "/v1/stats", "/v1/flows", "/v1/guard"} {
		mux.Handle("GET /api"+p, http.StripPrefix("/api", s.api))
	}
	for _, p := range []string{"/v1/reload", "/v1/guard/add", "/v1/guard/del"} {
		mux.HandleFunc("POST /api"+p, s.serveWrite)
	}
	return s.secure(mux)
}

// secure sets the headers every answer carries and refuses requests for
// another host name (DNS rebinding: a page elsewhere whose name resolves
// to 127.0.0.1 must not read a loopback dashboard).
func (s *Server) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		if !hostAllowed(r) {
			http.Error(w, "dashboard: unexpected Host header; open it by IP address or localhost", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// hostAllowed accepts a Host that is an IP address or localhost (any
// port): the addresses an operator types, never a name an attacker's DNS
// may point at the daemon.
func hostAllowed(r *http.Request) bool {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	_, err := netip.ParseAddr(host)
	return err == nil
}

// serveWrite passes a write request to the API's own handler, only with
// dashboard.write and the right token.
func (s *Server) serveWrite(w http.ResponseWriter, r *http.Request) {
	if !s.o.Write || s.o.Token == "" {
		writeError(w, http.StatusForbidden, "the dashboard is read-only (dashboard.write is off)")
		return
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.o.Token)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="fastpath"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong token (dashboard.token_file)")
		return
	}
	s.log.Info("dashboard write", "path", r.URL.Path, "remote", r.RemoteAddr)
	http.StripPrefix("/api", s.api).ServeHTTP(w, r)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	b, _ := jsonLine(map[string]string{"error": msg})
	w.Write(b)
}
