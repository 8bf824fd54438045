package api

import (
	"errors"
	"fmt"
)

// ConfigError is what a Backend returns when the config it was asked to
// load is invalid, so it changed nothing: the server answers it with 422
// Unprocessable Entity instead of 500, and the client returns a
// *ConfigError for a 422. Return it as a pointer (&ConfigError{...}); the
// server finds it with errors.As anywhere in the error's chain.
//
// The message is Err's, unchanged, one problem per line as config.Load
// reports them.
type ConfigError struct {
	Err error
}

func (e *ConfigError) Error() string {
	if e.Err == nil {
		return "invalid config"
	}
	return e.Err.Error()
}

func (e *ConfigError) Unwrap() error { return e.Err }

// ErrStreamEnded is wrapped by the error Client.Events returns when the
// daemon ends the stream (it stopped, or the connection broke) while the
// caller still wanted events.
var ErrStreamEnded = errors.New("event stream ended")

// streamEndedError says the daemon went away, keeping any transport error.
type streamEndedError struct {
	socket string
	err    error // nil after a clean end of the stream
}

func (e *streamEndedError) Error() string {
	msg := fmt.Sprintf("the fastpath daemon at %s ended the event stream (stopped or restarting?)", e.socket)
	if e.err != nil {
		msg += ": " + e.err.Error()
	}
	return msg
}

func (e *streamEndedError) Is(target error) bool { return target == ErrStreamEnded }

func (e *streamEndedError) Unwrap() error { return e.err }
