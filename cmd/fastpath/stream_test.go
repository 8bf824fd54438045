package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/testio"
)

// waitTime bounds every wait in the tests of long-running commands.
const waitTime = 10 * time.Second

// cli is a command running in the background.
type cli struct {
	out, err testio.SyncBuffer
	code     chan int
}

// start runs the CLI with args until it exits or ctx ends (as Ctrl-C
// would end it).
func start(ctx context.Context, args ...string) *cli {
	c := &cli{code: make(chan int, 1)}
	go func() { c.code <- execute(ctx, args, &c.out, &c.err) }()
	return c
}

// exit waits for the command's exit code.
func (c *cli) exit(t *testing.T) int {
	t.Helper()
	select {
	case code := <-c.code:
		return code
	case <-time.After(waitTime):
		t.Fatalf("command still running after %v; stdout %q, stderr %q", waitTime, c.out.String(), c.err.String())
		return -1
	}
}

// waitOutput polls stdout until it contains want.
func (c *cli) waitOutput(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(waitTime)
	for !strings.Contains(c.out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("stdout lacks %q after %v:\n%s\nstderr: %s", want, waitTime, c.out.String(), c.err.String())
		}
		select {
		case code := <-c.code:
			t.Fatalf("command exited with %d before printing %q:\n%s\nstderr: %s", code, want, c.out.String(), c.err.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
}
