package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Server timeouts: requests are small, so anything slower is a stuck client.
const (
	readHeaderTimeout = 5 * time.Second
	shutdownTimeout   = 5 * time.Second
	probeTimeout      = time.Second
	idleTimeout       = time.Minute
	// streamWriteTimeout: an event stream whose reader takes nothing for
	// this long is closed (its events were being dropped anyway).
	streamWriteTimeout = 30 * time.Second
)

// Server serves Backend over HTTP+JSON on a unix socket.
//
// Access control is the socket's file mode: 0600, owned by the daemon's
// user (root). The API is for the root operator, like the netlink and bpf
// operations it reports on; there is no other authentication.
type Server struct {
	b                  Backend
	log                *slog.Logger
	streamWriteTimeout time.Duration
}

// NewServer returns a Server for b. A nil log discards messages.
func NewServer(b Backend, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{b: b, log: log, streamWriteTimeout: streamWriteTimeout}
}

// Serve listens on socketPath and serves until ctx is done; see Listen and
// ServeListener.
func (s *Server) Serve(ctx context.Context, socketPath string) error {
	l, err := s.Listen(socketPath)
	if err != nil {
		return err
	}
	return s.ServeListener(ctx, l)
}

// Listen takes socketPath: it creates the parent directory, refuses a
// socket that a live server still answers on, replaces a stale one, and
// makes the new socket root-only. The daemon calls it before attaching
// anything, so a busy socket fails the start with nothing changed. Closing
// the listener removes the socket file.
func (s *Server) Listen(socketPath string) (net.Listener, error) {
	if socketPath == "" {
		return nil, errors.New("api socket: empty path; set api.socket or leave it out for " + DefaultSocket)
	}
	if err := os.MkdirAll(filepath.Dir(socketPath), 0o755); err != nil {
		return nil, fmt.Errorf("api socket directory: %w", err)
	}
	if err := checkSocketDir(filepath.Dir(socketPath)); err != nil {
		return nil, err
	}
	if err := removeStale(socketPath); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", socketPath)
	if err != nil {
		return nil, fmt.Errorf("listen on api socket: %w", err)
	}
	// Other users must not reach the API (see Server). The directory is
	// root's, so the moment before the chmod exposes nothing in practice.
	if err := os.Chmod(socketPath, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("restrict api socket %s: %w", socketPath, err)
	}
	s.log.Debug("api listening", "socket", socketPath)
	return l, nil
}

// checkSocketDir refuses a directory where another user could replace the
// socket (and so impersonate the daemon to root's CLI, or lock it out): it
// must belong to the daemon's user (root) and not be writable by others.
func checkSocketDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("api socket directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("api socket directory %s is not a directory", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return fmt.Errorf("api socket directory %s belongs to %s, not to %s that runs the daemon; "+
			"put api.socket in a directory of its own, such as %s", dir, userName(st.Uid), userName(uint32(euid)), filepath.Dir(DefaultSocket))
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("api socket directory %s is writable by other users (mode %04o); "+
			"put api.socket in a directory of its own, such as %s", dir, fi.Mode().Perm(), filepath.Dir(DefaultSocket))
	}
	return nil
}

// userName is "user NAME (uid N)", or "uid N" when the name is unknown.
func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return fmt.Sprintf("user %s (uid %d)", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}

// removeStale clears the way for a new socket at path: nothing there is
// fine, a socket nobody listens on (left by a daemon that died) is
// removed, anything else is refused.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("api socket: %w", err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("api socket %s exists and is not a socket; refusing to replace it", path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("api socket %s belongs to %s, not to a fastpath daemon of %s; refusing to replace it (remove it, or set api.socket)",
			path, userName(st.Uid), userName(uint32(os.Geteuid())))
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("api socket %s is in use by another fastpath daemon (another network namespace?); set api.socket", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("api socket %s exists and cannot be probed, refusing to replace it: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale api socket: %w", err)
	}
	return nil
}

// ServeListener serves on l until ctx is done, then shuts down gracefully,
// waiting briefly for requests in flight, and closes l (which removes the
// socket file Listen created). Event streams end at once at shutdown. It
// returns nil after a shutdown by ctx.
func (s *Server) ServeListener(ctx context.Context, l net.Listener) error {
	// streams ends when the shutdown starts: event streams never finish
	// by themselves, so they are told to.
	streams, endStreams := context.WithCancel(context.WithoutCancel(ctx))
	defer endStreams()
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		IdleTimeout:       idleTimeout,
		// Requests keep ctx's values but not its cancellation, so those in
		// flight at shutdown can finish within shutdownTimeout.
		BaseContext: func(net.Listener) context.Context {
			return context.WithValue(context.WithoutCancel(ctx), streamsKey{}, streams)
		},
	}
	srv.RegisterOnShutdown(endStreams)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()

	select {
	case err := <-done:
		l.Close()
		return fmt.Errorf("api server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-done // Serve has returned ErrServerClosed
	l.Close()
	if err != nil {
		return fmt.Errorf("api server shutdown: %w", err)
	}
	return nil
}
