// Command fastpath is the fastpath router daemon and its command-line
// client: `fastpath run` forwards, the other commands inspect and test it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1 // the command ran and failed
	exitUsage   = 2 // bad flags, arguments or config
)

func main() {
	os.Exit(execute(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// execute runs the command line args and returns the exit code. Errors are
// printed to stderr as "fastpath: <error>", one line per problem.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitRuntime
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
		if ee.err == nil {
			return code // already reported
		}
		err = ee.err
	}
	for line := range strings.SplitSeq(err.Error(), "\n") {
		fmt.Fprintf(stderr, "fastpath: %s\n", line)
	}
	if ee != nil && ee.hint != "" {
		fmt.Fprintln(stderr, ee.hint)
	}
	return code
}

// exitError carries an exit code other than exitRuntime. A nil err means
// the command has already said everything it had to.
type exitError struct {
	code int
	err  error
	hint string // printed as is after the error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageError marks err as a command-line mistake (exit 2) and points at
// the command's help.
func usageError(cmdPath string, err error) error {
	return &exitError{code: exitUsage, err: err,
		hint: fmt.Sprintf("Run '%s --help' for usage.", cmdPath)}
}

// configError marks err as a bad config (exit 2).
func configError(err error) error {
	return &exitError{code: exitUsage, err: err}
}
