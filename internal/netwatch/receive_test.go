package netwatch

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// scriptedSocket hands Receive what a test sends it; closing it fails the
// read in progress, as closing a socket does.
type scriptedSocket struct {
	reads  chan readResult
	closed chan struct{}
}

type readResult struct {
	v   int
	err error
}

func newScriptedSocket() *scriptedSocket {
	return &scriptedSocket{reads: make(chan readResult), closed: make(chan struct{})}
}

func (s *scriptedSocket) read() (int, error) {
	select {
	case r := <-s.reads:
		return r.v, r.err
	case <-s.closed:
		return 0, errors.New("use of closed socket")
	}
}

// runReceive runs Receive on s until it returns (the returned channel
// closes then), recording what it hands on.
func runReceive(ctx context.Context, s *scriptedSocket, stopAt int, failedOK bool) (<-chan struct{}, *[]int, *[]error) {
	var got []int
	var errs []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		Receive(ctx, s.read,
			func(v int) bool { got = append(got, v); return v != stopAt },
			func(err error) bool { errs = append(errs, err); return failedOK })
	}()
	return done, &got, &errs
}

func waitDone(t *testing.T, what string, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: Receive still running", what)
	}
}

// TestReceive: reads and errors reach their handlers in order, an overrun
// is one more error, and the loop ends when a handler says so or when its
// context ends (the socket closing then is no error to report).
func TestReceive(t *testing.T) {
	t.Run("handlers", func(t *testing.T) {
		s := newScriptedSocket()
		done, got, errs := runReceive(t.Context(), s, 99, true)
		s.reads <- readResult{v: 1}
		s.reads <- readResult{err: unix.ENOBUFS}
		s.reads <- readResult{v: 2}
		s.reads <- readResult{err: unix.EIO} // then a back-off
		s.reads <- readResult{v: 99}
		waitDone(t, "got returned false", done)
		if !slices.Equal(*got, []int{1, 2, 99}) {
			t.Errorf("got %v, want [1 2 99]", *got)
		}
		if len(*errs) != 2 || !errors.Is((*errs)[0], unix.ENOBUFS) || !errors.Is((*errs)[1], unix.EIO) {
			t.Errorf("errors %v, want ENOBUFS then EIO", *errs)
		}
	})
	t.Run("failed stops", func(t *testing.T) {
		s := newScriptedSocket()
		done, _, errs := runReceive(t.Context(), s, -1, false)
		s.reads <- readResult{err: unix.ENOBUFS}
		waitDone(t, "failed returned false", done)
		if len(*errs) != 1 {
			t.Errorf("errors %v, want one", *errs)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		s := newScriptedSocket()
		done, got, errs := runReceive(ctx, s, -1, true)
		s.reads <- readResult{v: 1}
		cancel()
		close(s.closed) // what the socket's owner does when ctx ends
		waitDone(t, "context ended", done)
		if len(*got) != 1 || len(*errs) != 0 {
			t.Errorf("got %v, errors %v: want [1] and no error (the close is not one)", *got, *errs)
		}
	})
	t.Run("context ends while backing off", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		s := newScriptedSocket()
		done, _, errs := runReceive(ctx, s, -1, true)
		s.reads <- readResult{err: unix.EIO}
		cancel()
		waitDone(t, "context ended", done)
		if len(*errs) != 1 {
			t.Errorf("errors %v, want one", *errs)
		}
	})
}
