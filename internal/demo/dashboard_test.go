package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/nsutil"
	"github.com/fastpath-router/fastpath/internal/testio"
)

// TestRunDashboard: with Dashboard set, the demo prints a URL on this host
// that reaches what listens on the router's loopback (the daemon's
// dashboard; here a stand-in), keeps the lab up after the checks, and
// removes everything when cancelled, returning no error.
func TestRunDashboard(t *testing.T) {
	requireRoot(t)
	name := testName()
	cleanupLab(t, name)
	bin, pidFile := fakeDaemon(t, "exec sleep 60")
	out := &testio.SyncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, Options{Name: name, Out: out, Binary: bin, Dashboard: "127.0.0.1:0"},
			func(string) client { return &fakeClient{readyAfter: 1} })
	}()

	// The demo prints the URL once the daemon is ready; then a stand-in
	// for its dashboard listens on the router's loopback.
	url := regexp.MustCompile(`dashboard: (http://127\.0\.0\.1:\d+/)`)
	var u string
	for deadline := time.Now().Add(30 * time.Second); u == ""; {
		if m := url.FindStringSubmatch(out.String()); m != nil {
			u = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no dashboard URL in the output:\n%s", out.String())
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	var l net.Listener
	if err := nsutil.Do("fp-"+name+"-rtr", func() (err error) {
		l, err = net.Listen("tcp", dashboardInNS)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "stand-in dashboard")
	})}
	go srv.Serve(l)
	defer srv.Close()

	res, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "stand-in dashboard" {
		t.Errorf("GET %s: %q, want the router's page", u, body)
	}

	// It stays up after the checks until cancelled.
	for deadline := time.Now().Add(40 * time.Second); !strings.Contains(out.String(), "the lab stays up"); {
		if time.Now().After(deadline) {
			t.Fatalf("the demo did not stay up:\n%s", out.String())
		}
		select {
		case err := <-done:
			t.Fatalf("run returned %v before it was cancelled:\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run after Ctrl-C: %v\n%s", err, out.String())
	}
	if _, err := http.Get(u); err == nil {
		t.Errorf("%s still answers after the demo ended", u)
	}
	checkGone(t, name, pidFile)
}
