// Package metrics serves fastpath's counters in the Prometheus text format
// on the address the config names (metrics.listen).
//
// Nothing is cached: every scrape asks the daemon (Source), which reads the
// per-CPU BPF maps at that moment. Metric names are fastpath_<subsystem>_<name>;
// labels are low-cardinality only (device, reason, mode, hook), never a
// flow's addresses or ports. docs/metrics.md lists every metric, and a test
// keeps that list and this package in step.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/tcplisten"
)

// Source is what the metrics need from the daemon; the daemon's API
// backend satisfies it. Each scrape calls every method once.
type Source interface {
	Status(ctx context.Context) (*api.Status, error)
	Stats(ctx context.Context) (*api.Stats, error)
	Flows(ctx context.Context, q api.FlowQuery) (*api.Flows, error)
}

// ControlPlane is the daemon's bookkeeping of its kernel watches.
type ControlPlane struct {
	// NetlinkOverruns counts ENOBUFS by watch: the kernel outpaced it and
	// dropped messages; each is followed by a resync.
	NetlinkOverruns map[string]uint64
	// RouteMTUResyncs counts full route dumps after start, by reason.
	RouteMTUResyncs map[string]uint64
	// RouteMTURoutes is how many routes with an MTU metric are mirrored.
	RouteMTURoutes int
}

// ControlSource is what a Source may add: the control plane's own
// counters. Read without a context: they are in memory.
type ControlSource interface {
	ControlPlane() ControlPlane
}

const (
	// scrapeTimeout bounds the source calls of one scrape.
	scrapeTimeout = 5 * time.Second
	// handlerGrace is how much longer the HTTP handler waits before it
	// answers 503 for a source that ignores its context.
	handlerGrace = 500 * time.Millisecond
	// maxScrapes bounds concurrent scrapes, each of which reads the BPF
	// maps; more get 503.
	maxScrapes = 4

	readHeaderTimeout = 5 * time.Second
	writeTimeout      = 15 * time.Second
	idleTimeout       = time.Minute
	shutdownTimeout   = 5 * time.Second
)

// Listen takes the TCP address addr (host:port, as metrics.listen). The
// daemon calls it before attaching anything, so a port in use fails the
// start with nothing changed. An empty addr is an error: an empty
// metrics.listen means no metrics, and net.Listen would pick a random port
// on every address.
func Listen(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, errors.New("metrics.listen: no address")
	}
	l, err := tcplisten.Listen(addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen: %w", err)
	}
	return l, nil
}

// Serve serves GET /metrics on l until ctx ends, then shuts down
// gracefully (in-flight scrapes get a few seconds) and returns nil. It
// closes l in every case. version is reported as fastpath_build_info.
// A source error fails that scrape with HTTP 500 (so Prometheus's up is 0)
// and is logged; a scrape gives up after about 5 s. A nil log discards
// messages.
func Serve(ctx context.Context, l net.Listener, src Source, version string, log *slog.Logger) error {
	return serve(ctx, l, src, version, log, scrapeTimeout)
}

func serve(ctx context.Context, l net.Listener, src Source, version string, log *slog.Logger, timeout time.Duration) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg, err := newRegistry(ctx, src, version, timeout)
	if err != nil {
		l.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.HTTPErrorOnError,
		MaxRequestsInFlight: maxScrapes,
		Timeout:             timeout + handlerGrace,
	}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "fastpath: Prometheus metrics at /metrics (see docs/metrics.md)")
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	log.Info("serving metrics", "addr", l.Addr().String(), "path", "/metrics")

	select {
	case err := <-done: // Serve closed l
		return fmt.Errorf("serve metrics: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		log.Warn("metrics shutdown", "err", err)
	}
	<-done // http.ErrServerClosed
	return nil
}

// newRegistry is the registry /metrics serves: fastpath's collector and the
// Go runtime's and process's standard metrics (go_*, process_*). Its own,
// never the global one.
func newRegistry(ctx context.Context, src Source, version string, timeout time.Duration) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		newCollector(ctx, src, version, timeout),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	if gs, ok := src.(GuardSource); ok {
		if err := reg.Register(newGuardCollector(ctx, gs, timeout)); err != nil {
			return nil, fmt.Errorf("register guard metrics: %w", err)
		}
	}
	return reg, nil
}
