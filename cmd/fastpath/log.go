package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// logFlags are the --log-* flags shared by the commands that log.
type logFlags struct {
	level, format string
}

func (f *logFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.level, "log-level", "info", "log level: debug, info, warn or error")
	cmd.Flags().StringVar(&f.format, "log-format", "text", "log format: text or json")
}

// logger builds the slog logger the flags describe, writing to w. When w
// is the journal (a systemd service's stderr), each record starts with its
// syslog priority, so that journalctl -p warning finds the warnings.
func (f *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.level)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q: use debug, info, warn or error", f.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	var pw *priorityWriter
	if isJournal(w, os.Getenv("JOURNAL_STREAM")) {
		pw = &priorityWriter{w: w}
		w = pw
	}
	var h slog.Handler
	switch f.format {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("invalid --log-format %q: use text or json", f.format)
	}
	if pw != nil {
		h = priorityHandler{inner: h, out: pw}
	}
	return slog.New(h), nil
}

// isJournal tells whether w is the stream systemd connected to the
// journal: $JOURNAL_STREAM holds its device and inode (systemd.exec(5)).
func isJournal(w io.Writer, stream string) bool {
	f, ok := w.(*os.File)
	if !ok || stream == "" {
		return false
	}
	var dev, ino uint64
	if n, err := fmt.Sscanf(stream, "%d:%d", &dev, &ino); n != 2 || err != nil {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && st.Ino == ino
}

// priorityHandler puts a record's syslog priority before it as "<N>",
// which journald takes from a service's output (SyslogLevelPrefix=, on by
// default) and strips. Without it every line would have the service's
// default priority, info, and journalctl -p warning would miss the
// daemon's warnings and errors.
type priorityHandler struct {
	inner slog.Handler
	out   *priorityWriter
}

// priorityWriter writes the prefix of the record being handled before the
// handler's one write of that record.
type priorityWriter struct {
	mu     sync.Mutex // held through a record: the prefix is that record's
	w      io.Writer
	prefix string
}

func (p *priorityWriter) Write(b []byte) (int, error) {
	if _, err := p.w.Write(append([]byte(p.prefix), b...)); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (h priorityHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h priorityHandler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.prefix = syslogPriority(r.Level)
	return h.inner.Handle(ctx, r)
}

func (h priorityHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return priorityHandler{inner: h.inner.WithAttrs(as), out: h.out}
}

func (h priorityHandler) WithGroup(name string) slog.Handler {
	return priorityHandler{inner: h.inner.WithGroup(name), out: h.out}
}

// syslogPriority maps a level to sd-daemon(3)'s prefix: err, warning,
// info, debug.
func syslogPriority(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>"
	case l >= slog.LevelWarn:
		return "<4>"
	case l >= slog.LevelInfo:
		return "<6>"
	}
	return "<7>"
}
