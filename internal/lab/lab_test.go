package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/nsutil"
	"github.com/fastpath-router/fastpath/internal/xdpfeat"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces (run `sudo go test`)")
	}
}

// testName returns a lab name unique to this run: "t" + 6 hex digits.
func testName(t *testing.T) string {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

// upLab brings a lab up and tears it down when the test ends.
func upLab(t *testing.T, ctx context.Context) *Lab {
	t.Helper()
	return upLabWith(t, ctx, Options{})
}

func upLabWith(t *testing.T, ctx context.Context, o Options) *Lab {
	t.Helper()
	name := testName(t)
	t.Cleanup(func() {
		if err := Down(name); err != nil {
			t.Errorf("Down(%s): %v", name, err)
		}
	})
	start := time.Now()
	o.Name, o.Log = name, testLogger(t)
	l, err := Up(ctx, o)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Logf("lab %s up in %s", name, time.Since(start))
	return l
}

func TestValidateName(t *testing.T) {
	for _, n := range []string{"lab", "a", "t0-9", "12345678"} {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", n, err)
		}
	}
	for _, n := range []string{"", "123456789", "Lab", "a_b", "a/b", "a b", "é"} {
		if err := ValidateName(n); err == nil {
			t.Errorf("ValidateName(%q) = nil, want an error", n)
		}
	}
}

func TestDescribe(t *testing.T) {
	l := describe("x")
	if l.Gen != "fp-x-gen" || l.Rtr != "fp-x-rtr" || l.Sink != "fp-x-sink" {
		t.Errorf("namespaces %s %s %s", l.Gen, l.Rtr, l.Sink)
	}
	for _, a := range []string{l.GenAddr4.String(), l.RtrInAddr4.String(), l.RtrOutAddr4.String(), l.SinkAddr4.String()} {
		if !strings.HasPrefix(a, "198.18.") {
			t.Errorf("IPv4 address %s outside 198.18.0.0/15", a)
		}
	}
	for _, a := range []string{l.GenAddr6.String(), l.RtrInAddr6.String(), l.RtrOutAddr6.String(), l.SinkAddr6.String()} {
		if !strings.HasPrefix(a, "fd00:") {
			t.Errorf("IPv6 address %s outside fd00::/8", a)
		}
	}
}

// checkHostOffloads wants every line in want in gen's and sink's ethtool -k.
func checkHostOffloads(ctx context.Context, t *testing.T, l *Lab, want ...string) {
	t.Helper()
	for _, e := range []struct{ ns, ifc string }{{l.Gen, l.GenIf}, {l.Sink, l.SinkIf}} {
		out, err := l.Command(ctx, e.ns, "ethtool", "-k", e.ifc).CombinedOutput()
		if err != nil {
			t.Fatalf("ethtool -k %s: %v\n%s", e.ifc, err, out)
		}
		for _, w := range want {
			if !strings.Contains(string(out), w) {
				t.Errorf("%s/%s: ethtool -k lacks %q", e.ns, e.ifc, w)
			}
		}
	}
}

// TestHostTxChecksumOff: the variant for tests that force native XDP.
func TestHostTxChecksumOff(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := upLabWith(t, ctx, Options{HostTxChecksumOff: true})
	checkHostOffloads(ctx, t, l, "generic-receive-offload: on", "tx-checksumming: off")
}

// TestQueues: Options.Queues gives both ends of every veth that many
// receive and transmit queues; out of range is refused before anything is
// made.
func TestQueues(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := upLabWith(t, ctx, Options{Queues: 2})
	for _, e := range []struct{ ns, ifc string }{{l.Gen, l.GenIf}, {l.Rtr, l.RtrIn}, {l.Rtr, l.RtrOut}, {l.Sink, l.SinkIf}} {
		out, err := l.Command(ctx, e.ns, "ls", "/sys/class/net/"+e.ifc+"/queues").CombinedOutput()
		if err != nil {
			t.Fatalf("queues of %s/%s: %v\n%s", e.ns, e.ifc, err, out)
		}
		if got := strings.Join(strings.Fields(string(out)), " "); got != "rx-0 rx-1 tx-0 tx-1" {
			t.Errorf("%s/%s queues %q, want rx-0 rx-1 tx-0 tx-1", e.ns, e.ifc, got)
		}
	}
	if out, err := l.Command(ctx, l.Gen, "ping", "-c1", "-W2", l.SinkAddr4.String()).CombinedOutput(); err != nil {
		t.Errorf("ping across the lab: %v\n%s", err, out)
	}
	name := testName(t)
	if _, err := Up(ctx, Options{Name: name, Queues: maxQueues + 1}); err == nil || !strings.Contains(err.Error(), "queues") {
		t.Errorf("Up with %d queues: %v, want an error naming the queues", maxQueues+1, err)
	}
	if Exists(name) {
		t.Errorf("lab %s made despite the bad queue count", name)
	}
}

func TestUpPingGetDown(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	l := upLab(t, ctx)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Up took %s, want < 2s", took)
	}

	for _, dst := range []string{l.SinkAddr4.String(), l.SinkAddr6.String()} {
		out, err := l.Command(ctx, l.Gen, "ping", "-c1", "-W2", dst).CombinedOutput()
		if err != nil {
			t.Errorf("ping %s from gen: %v\n%s", dst, err, out)
		}
	}
	// The end hosts keep the offloads every container has (GRO on, which
	// lets r0/r1 take XDP frames).
	checkHostOffloads(ctx, t, l, "generic-receive-offload: on", "tx-checksumming: on", "tcp-segmentation-offload: on")
	// GRO on g0/s0 is what makes r0/r1 take XDP-redirected frames: ask the
	// kernel (netdev netlink, from inside rtr).
	if err := nsutil.Do(l.Rtr, func() error {
		q, err := xdpfeat.Open()
		if err != nil {
			return err
		}
		defer q.Close()
		for _, ifc := range []string{l.RtrIn, l.RtrOut} {
			ifi, err := net.InterfaceByName(ifc)
			if err != nil {
				return err
			}
			f, err := q.Get(ifi.Index)
			if err != nil {
				return err
			}
			if !f.RedirectTarget() {
				t.Errorf("%s/%s: xdp_features %#x lack NDO_XMIT", l.Rtr, ifc, uint64(f))
			}
		}
		return nil
	}); err != nil {
		t.Errorf("query xdp features in rtr: %v", err)
	}
	for _, sc := range []struct{ key, want string }{
		{"net/ipv4/ip_forward", "1"}, {"net/ipv6/conf/all/forwarding", "1"},
	} {
		out, err := l.Command(ctx, l.Rtr, "cat", "/proc/sys/"+sc.key).Output()
		if err != nil || strings.TrimSpace(string(out)) != sc.want {
			t.Errorf("rtr %s = %q (%v), want %s", sc.key, out, err, sc.want)
		}
	}

	g, err := Get(l.Name)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if *g != *l {
		t.Errorf("Get = %+v, want %+v", g, l)
	}

	if _, err := Up(ctx, Options{Name: l.Name}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second Up = %v, want an 'already exists' error", err)
	}
	// The failed Up must not have touched the running lab.
	if out, err := l.Command(ctx, l.Gen, "ping", "-c1", "-W2", l.SinkAddr4.String()).CombinedOutput(); err != nil {
		t.Errorf("ping after failed second Up: %v\n%s", err, out)
	}

	if err := Down(l.Name); err != nil {
		t.Fatalf("Down: %v", err)
	}
	for _, ns := range l.Namespaces() {
		if nsutil.Exists(ns) {
			t.Errorf("namespace %s still exists after Down", ns)
		}
	}
	if _, err := Get(l.Name); err == nil {
		t.Error("Get after Down succeeded")
	}
	if err := Down(l.Name); err != nil {
		t.Errorf("second Down: %v", err)
	}
}

// TestUpR2: a lab with r2 has sink2 behind the router's third interface,
// reachable over IPv4 and IPv6 from gen; Get finds it and Down removes it.
func TestUpR2(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l := upLabWith(t, ctx, Options{R2: true})
	if l.Sink2 == "" || len(l.Namespaces()) != 4 {
		t.Fatalf("lab with r2: sink2 %q, namespaces %v", l.Sink2, l.Namespaces())
	}
	for _, a := range []string{l.Sink2Addr4.String(), l.Sink2Addr6.String(), l.SinkAddr4.String()} {
		if out, err := l.Command(ctx, l.Gen, "ping", "-c1", "-W2", a).CombinedOutput(); err != nil {
			t.Errorf("ping %s from gen: %v\n%s", a, err, out)
		}
	}
	g, err := Get(l.Name)
	if err != nil || g.Sink2 != l.Sink2 {
		t.Errorf("Get = %+v, %v; want sink2 %s", g, err, l.Sink2)
	}
	if err := Down(l.Name); err != nil {
		t.Fatal(err)
	}
	if nsutil.Exists(l.Sink2) {
		t.Errorf("%s still exists after Down", l.Sink2)
	}
	// Without r2 there is no sink2.
	if m := describe("x"); m.Sink2 != "" || len(m.Namespaces()) != 3 {
		t.Errorf("plain lab: sink2 %q, namespaces %v", m.Sink2, m.Namespaces())
	}
}

func TestUpCleansUpOnFailure(t *testing.T) {
	requireRoot(t)
	name := testName(t)
	l := describe(name)
	t.Cleanup(func() {
		if err := Down(name); err != nil {
			t.Errorf("Down(%s): %v", name, err)
		}
	})

	// A namespace taken by someone else: Up must refuse and leave it.
	if err := nsutil.Create(l.Sink); err != nil {
		t.Fatal(err)
	}
	if _, err := Up(context.Background(), Options{Name: name}); err == nil {
		t.Fatal("Up succeeded with its sink namespace already present")
	}
	if nsutil.Exists(l.Gen) || nsutil.Exists(l.Rtr) {
		t.Error("failed Up left gen or rtr behind")
	}
	if !nsutil.Exists(l.Sink) {
		t.Error("failed Up removed the pre-existing sink namespace")
	}
	if _, err := Get(name); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Errorf("Get on a partial lab = %v, want 'incomplete'", err)
	}
	if err := nsutil.Delete(l.Sink); err != nil {
		t.Fatal(err)
	}

	// A failure midway through setup (the context ends): everything goes.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Up(ctx, Options{Name: name}); err == nil {
		t.Fatal("Up succeeded with a cancelled context")
	}
	for _, ns := range l.Namespaces() {
		if nsutil.Exists(ns) {
			t.Errorf("failed Up left %s behind", ns)
		}
	}
}

func TestUpRejectsBadName(t *testing.T) {
	if _, err := Up(context.Background(), Options{Name: "Bad_Name"}); err == nil {
		t.Fatal("Up accepted an invalid name")
	}
	if err := Down("../x"); err == nil {
		t.Fatal("Down accepted an invalid name")
	}
}

// testLogger sends debug logs to t.Log, shown with -v or on failure.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
