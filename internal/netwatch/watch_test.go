package netwatch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// testNS creates a namespace with a veth pair up and addressed, removed
// at cleanup.
func testNS(t *testing.T) string {
	t.Helper()
	ns := emptyNS(t)
	ipCmds(t, ns,
		"link add v0 type veth peer name v1",
		// No link-local addresses: their routes would come and go later.
		"link set v0 addrgenmode none",
		"link set v1 addrgenmode none",
		"link set v0 up",
		"link set v1 up",
		"addr add 198.18.60.1/24 dev v0",
		"-6 addr add fd00:60::1/64 dev v0 nodad",
	)
	return ns
}

// ipBatch runs ip -batch on lines.
func ipBatch(t *testing.T, ns string, lines []string) {
	t.Helper()
	cmd := exec.Command("ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v: %s", err, out)
	}
}

// recorder keeps what the watch last handed to its setter.
type recorder struct {
	mu   sync.Mutex
	last map[netip.Prefix]int
	sets int
}

func (r *recorder) set(m map[netip.Prefix]int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last, r.sets = maps.Clone(m), r.sets+1
	return nil
}

// await polls until the mirror equals want.
func (r *recorder) await(t *testing.T, what string, want map[netip.Prefix]int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		got := maps.Clone(r.last)
		r.mu.Unlock()
		if maps.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: mirror %v, want %v", what, got, want)
		}
		time.Sleep(5 * time.Millisecond) // polling
	}
}

func startWatch(t *testing.T, ns string, rcvbuf int) (*RouteMTUWatch, *recorder) {
	t.Helper()
	rec := &recorder{}
	var w *RouteMTUWatch
	err := nsutil.Do(ns, func() (err error) {
		w, err = watchRouteMTUs(t.Context(), nil, rcvbuf)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return w, rec
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// TestRouteMTUWatch follows adds, replaces and deletes of routes with and
// without an MTU, in several tables, IPv4 and IPv6, from events alone.
func TestRouteMTUWatch(t *testing.T) {
	ns := testNS(t)
	ipCmds(t, ns,
		"route add 198.18.61.0/24 via 198.18.60.2 mtu 1300",
		"route add 198.18.64.0/24 via 198.18.60.2 mtu 1400 table 100",
		"route add 198.18.63.0/24 via 198.18.60.2",
		"-6 route add fd00:61::/64 via fd00:60::2 mtu 1350",
	)
	w, rec := startWatch(t, ns, mtuReadBuffer)
	if err := w.Start(rec.set); err != nil {
		t.Fatal(err)
	}
	want := map[netip.Prefix]int{
		pfx("198.18.61.0/24"): 1300, pfx("198.18.64.0/24"): 1400, pfx("fd00:61::/64"): 1350,
	}
	rec.await(t, "start", want)

	steps := []struct {
		cmds string
		set  map[netip.Prefix]int // 0 deletes
	}{
		{"route add 198.18.65.0/24 via 198.18.60.2 mtu lock 1280", map[netip.Prefix]int{pfx("198.18.65.0/24"): 1280}},
		{"route replace 198.18.61.0/24 via 198.18.60.2", map[netip.Prefix]int{pfx("198.18.61.0/24"): 0}},
		{"route replace 198.18.63.0/24 via 198.18.60.2 mtu 1200", map[netip.Prefix]int{pfx("198.18.63.0/24"): 1200}},
		{"route change 198.18.63.0/24 via 198.18.60.2 mtu 1250", map[netip.Prefix]int{pfx("198.18.63.0/24"): 1250}},
		{"route del 198.18.64.0/24 table 100", map[netip.Prefix]int{pfx("198.18.64.0/24"): 0}},
		// The same prefix in two tables, and twice in one with other metrics: the lowest MTU.
		{"route add 198.18.67.0/24 via 198.18.60.2 mtu 1400;route add 198.18.67.0/24 via 198.18.60.2 mtu 1300 table 200",
			map[netip.Prefix]int{pfx("198.18.67.0/24"): 1300}},
		{"route add 198.18.67.0/24 via 198.18.60.2 metric 50 mtu 1100", map[netip.Prefix]int{pfx("198.18.67.0/24"): 1100}},
		{"route del 198.18.67.0/24 metric 50", map[netip.Prefix]int{pfx("198.18.67.0/24"): 1300}},
		{"route del 198.18.67.0/24 table 200", map[netip.Prefix]int{pfx("198.18.67.0/24"): 1400}},
		// A route without an MTU beside one with it leaves it be.
		{"route add 198.18.67.0/24 via 198.18.60.2 metric 60", nil},
		{"route del 198.18.67.0/24 metric 60;route add 198.18.68.0/24 via 198.18.60.2 mtu 1280",
			map[netip.Prefix]int{pfx("198.18.68.0/24"): 1280}},
		{"-6 route add fd00:62::/64 via fd00:60::2 mtu 1300 table 300;-6 route del fd00:61::/64",
			map[netip.Prefix]int{pfx("fd00:62::/64"): 1300, pfx("fd00:61::/64"): 0}},
		{"-6 route replace fd00:62::/64 via fd00:60::2 mtu 1290 table 300", map[netip.Prefix]int{pfx("fd00:62::/64"): 1290}},
		{"-6 route replace fd00:62::/64 via fd00:60::2 table 300", map[netip.Prefix]int{pfx("fd00:62::/64"): 0}},
		{"-6 route add default via fd00:60::2 mtu 1400 table 300", map[netip.Prefix]int{pfx("::/0"): 1400}},
		{"route add default via 198.18.60.2 mtu 1450", map[netip.Prefix]int{pfx("0.0.0.0/0"): 1450}},
	}
	for _, s := range steps {
		ipCmds(t, ns, strings.Split(s.cmds, ";")...)
		for p, mtu := range s.set {
			if mtu == 0 {
				delete(want, p)
			} else {
				want[p] = mtu
			}
		}
		rec.await(t, s.cmds, want)
	}
	st := w.Stats()
	if st.Routes != len(want) { // one route per prefix by now
		t.Errorf("stats: %d routes, want %d", st.Routes, len(want))
	}
	if st.Overruns != 0 || st.Resyncs[ResyncOverrun] != 0 {
		t.Errorf("stats %+v: no overrun expected", st)
	}

	// The kernel drops IPv4 routes of a device going down without an
	// event (IPv6 ones with one); a link change makes the watch read
	// them again.
	ipCmds(t, ns, "link set v0 down")
	w.LinksChanged()
	rec.await(t, "v0 down", map[netip.Prefix]int{})
	if got := w.Stats().Resyncs[ResyncLinks]; got < 1 {
		t.Errorf("link resyncs %d, want at least 1", got)
	}
}

// TestRouteMTUWatchOverrun: messages lost to a full socket are recovered
// by a resync, counted.
func TestRouteMTUWatchOverrun(t *testing.T) {
	ns := testNS(t)
	w, rec := startWatch(t, ns, 0) // the smallest buffer the kernel allows
	want := map[netip.Prefix]int{}
	var lines []string
	for i := range 400 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 32)
		lines = append(lines, fmt.Sprintf("route add %s via 198.18.60.2 mtu %d", p, 1280+i))
		want[p] = 1280 + i
	}
	// Nothing reads while these pour in: the socket overruns.
	ipBatch(t, ns, lines)
	if err := w.Start(rec.set); err != nil {
		t.Fatal(err)
	}
	rec.await(t, "after the load", want)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := w.Stats()
		if st.Overruns > 0 && st.Resyncs[ResyncOverrun] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: want an overrun and a resync", st)
		}
		time.Sleep(5 * time.Millisecond) // polling
	}
	// Deletions of half while reading (may overrun again) end right.
	lines = lines[:0]
	for p := range want {
		if p.Addr().As4()[3]%2 == 0 {
			lines = append(lines, fmt.Sprintf("route del %s", p))
			delete(want, p)
		}
	}
	ipBatch(t, ns, lines)
	rec.await(t, "after deleting half", want)
}

// TestRouteMTUWatchFilter: what the kernel filter keeps from the socket.
// Plain routes, and the replace the kernel sends for every route behind a
// nexthop group that changes, never reach it (a socket of the kernel's
// smallest size would overrun on a few hundred); routes with an MTU do,
// also behind a nexthop group.
func TestRouteMTUWatchFilter(t *testing.T) {
	ns := testNS(t)
	ipCmds(t, ns,
		"nexthop add id 2 via 198.18.60.2 dev v0",
		"nexthop add id 3 via 198.18.60.3 dev v0",
		"nexthop add id 10 group 2/3",
	)
	inNS(t, ns, "", "sysctl", "-qw", "net.ipv4.nexthop_compat_mode=1")
	w, rec := startWatch(t, ns, 0)
	if err := w.Start(rec.set); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for i := range 500 {
		lines = append(lines, fmt.Sprintf("route add 198.19.%d.%d/32 nhid 10", i>>8, i&0xff))
	}
	ipBatch(t, ns, lines)
	ipCmds(t, ns, "nexthop replace id 10 group 2", "route add 198.18.70.0/24 nhid 10 mtu 1300")
	rec.await(t, "a route with an MTU behind the group", map[netip.Prefix]int{pfx("198.18.70.0/24"): 1300})
	ipCmds(t, ns, "nexthop replace id 10 group 2/3", "route add 198.18.71.0/24 via 198.18.60.2 mtu 1280")
	rec.await(t, "after a second group change", map[netip.Prefix]int{pfx("198.18.70.0/24"): 1300, pfx("198.18.71.0/24"): 1280})
	if st := w.Stats(); st.Overruns != 0 {
		t.Errorf("stats %+v: the filter let plain routes through", st)
	}
}

// TestWatchRouteChanges: a route change, and a nexthop group change that
// sends no route event (nexthop_compat_mode 0), each call changed.
func TestWatchRouteChanges(t *testing.T) {
	ns := testNS(t)
	ipCmds(t, ns,
		"nexthop add id 2 via 198.18.60.2 dev v0",
		"nexthop add id 3 via 198.18.60.3 dev v0",
		"nexthop add id 10 group 2/3",
		"route add 198.18.70.0/24 nhid 10",
	)
	inNS(t, ns, "", "sysctl", "-qw", "net.ipv4.nexthop_compat_mode=0")
	var (
		mu sync.Mutex
		n  int
	)
	count := func() int { mu.Lock(); defer mu.Unlock(); return n }
	err := nsutil.Do(ns, func() error {
		return WatchRouteChanges(t.Context(), nil, time.Millisecond, func() { mu.Lock(); n++; mu.Unlock() })
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"route add 198.18.71.0/24 via 198.18.60.2", "nexthop replace id 10 group 2"} {
		before := count()
		ipCmds(t, ns, c)
		deadline := time.Now().Add(10 * time.Second)
		for count() == before {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no change signalled", c)
			}
			time.Sleep(time.Millisecond) // polling
		}
	}
}

// TestRouteMTUWatchStopped: the watch's context owns its sockets. A watch
// whose context ends before or during Start's dump says it was stopped,
// never that its socket was gone (EBADF); one started before keeps going.
func TestRouteMTUWatchStopped(t *testing.T) {
	ns := testNS(t)
	ipCmds(t, ns, "route add 198.18.61.0/24 via 198.18.60.2 mtu 1300")
	for i := range 40 {
		ctx, cancel := context.WithCancel(t.Context())
		var w *RouteMTUWatch
		if err := nsutil.Do(ns, func() (err error) { w, err = watchRouteMTUs(ctx, nil, mtuReadBuffer); return err }); err != nil {
			cancel()
			t.Fatal(err)
		}
		before := i%2 == 0
		if before {
			cancel()
		} else {
			go cancel() // during the dump, or after it
		}
		rec := &recorder{}
		err := w.Start(rec.set)
		switch {
		case before && !errors.Is(err, context.Canceled):
			t.Fatalf("start after the context ended: %v, want context.Canceled", err)
		case err != nil && !errors.Is(err, context.Canceled):
			t.Fatalf("start while the context ends: %v, want success or context.Canceled", err)
		}
		cancel()
	}
}
