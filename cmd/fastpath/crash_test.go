package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A crash of the daemon must not exit with status 2, the code of an
// invalid config that the systemd unit does not restart: a panic and an
// outside SIGABRT (systemd's watchdog) both end the process by SIGABRT,
// with every goroutine's stack on stderr.
func TestCrashBySignal(t *testing.T) {
	switch os.Getenv("FASTPATH_TEST_CRASH") {
	case "panic":
		crashChild()
		panic("deliberate")
	case "abort":
		crashChild()
		os.Stdout.WriteString("ready\n")
		time.Sleep(time.Minute) // killed before
		os.Exit(0)
	}
	for _, how := range []string{"panic", "abort"} {
		t.Run(how, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashBySignal$")
			cmd.Env = append(os.Environ(), "FASTPATH_TEST_CRASH="+how)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if how == "abort" {
				buf := make([]byte, 6)
				if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
					t.Fatalf("child did not get ready: %q %v", buf, err)
				}
				if err := cmd.Process.Signal(syscall.SIGABRT); err != nil {
					t.Fatal(err)
				}
			}
			err = cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("child: %v, want a crash", err)
			}
			ws := ee.Sys().(syscall.WaitStatus)
			if !ws.Signaled() || ws.Signal() != syscall.SIGABRT {
				t.Errorf("child ended with %v (exit status %d), want killed by SIGABRT", err, ws.ExitStatus())
			}
			if !strings.Contains(stderr.String(), "goroutine ") {
				t.Errorf("no goroutine dump on stderr:\n%s", stderr.String())
			}
		})
	}
}

// crashChild sets up the crashing child: as fastpath run does, and no
// core file.
func crashChild() {
	unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{})
	crashBySignal()
}
