package netwatch

import (
	"context"
	"time"
)

const (
	// errorBackoff spaces out reads after an error other than an overrun.
	errorBackoff = 100 * time.Millisecond
	// overrunLogEvery rate-limits the warnings about overruns and receive
	// errors; the metrics count each overrun.
	overrunLogEvery = time.Minute
)

// Receive is the read loop of every netlink watch: it reads until ctx ends
// (the socket's owner closes it then, which ends a read in progress),
// handing each read's result to got and each error to failed; either
// returns false to stop. After an error other than an overrun (ENOBUFS:
// the kernel dropped messages, the socket itself is fine) it waits a
// moment, so that an error that repeats does not spin. It returns when it
// stops: run it on a goroutine of its own.
func Receive[T any](ctx context.Context, read func() (T, error), got func(T) bool, failed func(error) bool) {
	for {
		v, err := read()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if !failed(err) || (!isOverrun(err) && !sleep(ctx, errorBackoff)) {
				return
			}
			continue
		}
		if !got(v) {
			return
		}
	}
}

// sleep waits d; false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// logLimit lets a watch log a recurring complaint at most once per
// overrunLogEvery (the metrics count every occurrence). One goroutine's.
type logLimit struct{ last time.Time }

func (l *logLimit) allow() bool {
	if time.Since(l.last) < overrunLogEvery {
		return false
	}
	l.last = time.Now()
	return true
}
