// Package testio holds helpers for tests: a buffer a running command
// writes while the test reads it, a network namespace of the test's own,
// the test binary run again inside one.
package testio

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// SyncBuffer is a bytes.Buffer safe for one writer and concurrent readers:
// a command running on another goroutine writes it, the test polls String.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Netns creates a network namespace for one test, named prefix and six
// random hex digits, and removes it at cleanup; the test is skipped
// without root.
func Netns(t testing.TB, prefix string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	name := fmt.Sprintf("%s%06x", prefix, rand.IntN(1<<24))
	if err := nsutil.Create(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nsutil.Delete(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	return name
}

// SelfIn returns a command that runs the calling test again, alone, in
// network namespace ns by ip netns exec (which keeps the pid and mounts a
// /sys of its own), with env (NAME=value) added: the test sees env and
// plays the part to be played in there.
func SelfIn(t testing.TB, ns, env string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, os.Args[0], "-test.run", "^" + t.Name() + "$", "-test.count", "1"}, args...)...)
	cmd.Env = append(os.Environ(), env)
	return cmd
}
