package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/fastpath-router/fastpath/internal/nsutil"
	"github.com/fastpath-router/fastpath/internal/testio"
)

// TestLockNamesHolder: a second daemon in a namespace is refused with the
// pid of the one that holds it. The holder is this test binary run again
// (by ip netns exec, which keeps its pid) in a namespace of the test's.
func TestLockNamesHolder(t *testing.T) {
	if os.Getenv("FP_LOCK_HOLDER") != "" {
		l, err := takeLock()
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		defer l.Close()
		fmt.Println("held")
		io.Copy(io.Discard, os.Stdin) // until the parent closes it
		return
	}
	name := testio.Netns(t, "fp-lock-")
	holder := testio.SelfIn(t, name, "FP_LOCK_HOLDER=1")
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		holder.Wait()
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "held\n" {
		t.Fatalf("the holder said %q (%v)", line, err)
	}
	err = nsutil.Do(name, func() error {
		l, err := takeLock()
		if err == nil {
			l.Close()
		}
		return err
	})
	if !errors.Is(err, ErrAlreadyRunning) || !strings.Contains(err.Error(), fmt.Sprintf("(pid %d)", holder.Process.Pid)) {
		t.Errorf("takeLock beside pid %d: %v; want ErrAlreadyRunning naming that pid", holder.Process.Pid, err)
	}
}
