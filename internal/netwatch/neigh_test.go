package netwatch

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

func neighUpdate(typ uint16, family, ifindex int, ip string, mac string, state int) netlink.NeighUpdate {
	hw, _ := net.ParseMAC(mac)
	return netlink.NeighUpdate{Type: typ, Neigh: netlink.Neigh{Family: family, LinkIndex: ifindex,
		IP: net.ParseIP(ip), HardwareAddr: hw, State: state}}
}

// TestNeighFilter: what matters is a resolved neighbour that changes its
// address or stops being resolved, and an unresolved one that comes, goes
// or gets resolved; not new entries resolved from the start, moves between
// valid states, FDB entries. Nothing is trusted while the seed failed.
func TestNeighFilter(t *testing.T) {
	const (
		m1, m2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
		newN   = unix.RTM_NEWNEIGH
		delN   = unix.RTM_DELNEIGH
	)
	seeded := []netlink.Neigh{
		{Family: unix.AF_INET, LinkIndex: 2, IP: net.ParseIP("198.18.0.2"), HardwareAddr: mustMAC(m1), State: netlink.NUD_REACHABLE},
		{Family: unix.AF_INET, LinkIndex: 2, IP: net.ParseIP("198.18.0.3"), State: netlink.NUD_FAILED},
	}
	f := newNeighFilter()
	f.seed(func(int, int) ([]netlink.Neigh, error) { return seeded, nil })
	for _, s := range []struct {
		name string
		u    netlink.NeighUpdate
		want bool
	}{
		{"seeded, reachable to stale", neighUpdate(newN, unix.AF_INET, 2, "198.18.0.2", m1, netlink.NUD_STALE), false},
		{"stale to delay to probe", neighUpdate(newN, unix.AF_INET, 2, "198.18.0.2", m1, netlink.NUD_PROBE), false},
		{"address changed", neighUpdate(newN, unix.AF_INET, 2, "198.18.0.2", m2, netlink.NUD_STALE), true},
		{"failed", neighUpdate(newN, unix.AF_INET, 2, "198.18.0.2", "", netlink.NUD_FAILED), true},
		{"failed again", neighUpdate(newN, unix.AF_INET, 2, "198.18.0.2", "", netlink.NUD_FAILED), false},
		{"resolved again", neighUpdate(newN, unix.AF_INET, 2, "198.18.0.2", m2, netlink.NUD_REACHABLE), true},
		{"deleted", neighUpdate(delN, unix.AF_INET, 2, "198.18.0.2", m2, netlink.NUD_REACHABLE), true},
		{"seeded failed one resolved", neighUpdate(newN, unix.AF_INET, 2, "198.18.0.3", m1, netlink.NUD_REACHABLE), true},
		{"new IPv6 entry from a solicitation", neighUpdate(newN, unix.AF_INET6, 3, "fe80::1", m1, netlink.NUD_STALE), false},
		{"the same, other interface: another entry", neighUpdate(newN, unix.AF_INET6, 4, "fe80::1", m2, netlink.NUD_STALE), false},
		{"IPv6 address changed", neighUpdate(newN, unix.AF_INET6, 3, "fe80::1", m2, netlink.NUD_STALE), true},
		{"new unresolved entry", neighUpdate(newN, unix.AF_INET, 2, "198.18.0.9", "", netlink.NUD_INCOMPLETE), true},
		{"unresolved entry deleted", neighUpdate(delN, unix.AF_INET, 2, "198.18.0.9", "", netlink.NUD_INCOMPLETE), true},
		{"unknown entry deleted", neighUpdate(delN, unix.AF_INET, 2, "198.18.0.10", "", netlink.NUD_FAILED), false},
		{"bridge FDB entry", neighUpdate(newN, unix.AF_BRIDGE, 5, "", m1, netlink.NUD_REACHABLE), false},
	} {
		if got := f.matters(s.u); got != s.want {
			t.Errorf("%s: matters %v, want %v", s.name, got, s.want)
		}
	}
	f.seed(func(int, int) ([]netlink.Neigh, error) { return nil, errors.New("dump failed") })
	if !f.matters(neighUpdate(newN, unix.AF_INET, 2, "198.18.0.7", m1, netlink.NUD_STALE)) {
		t.Error("after a failed seed: a new entry must matter (nothing known can be trusted)")
	}
	interrupted := 0
	f.seed(func(int, int) ([]netlink.Neigh, error) {
		if interrupted++; interrupted < 3 {
			return nil, netlink.ErrDumpInterrupted
		}
		return seeded, nil
	})
	if f.matters(neighUpdate(newN, unix.AF_INET, 2, "198.18.0.2", m1, netlink.NUD_STALE)) {
		t.Error("after a seed retried past interrupted dumps: a move between valid states must not matter")
	}
}

func mustMAC(s string) net.HardwareAddr {
	hw, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return hw
}

// TestWatchNeighbours: the kernel's own events through the subscription,
// judged as TestNeighFilter says; an entry made before the watch is known
// from its seed. After each step the test changes a sentinel entry's
// address and waits for that event: the step's came before it.
func TestWatchNeighbours(t *testing.T) {
	ns := testNS(t)
	ipCmds(t, ns, "neigh add 198.18.60.5 lladdr 02:00:00:00:00:05 dev v0 nud reachable")
	type decision struct {
		ip, mac string
		matters bool
	}
	var (
		mu   sync.Mutex
		seen []decision
	)
	err := nsutil.Do(ns, func() error {
		return watchNeighbours(t.Context(), slog.New(slog.DiscardHandler), newWatchStats(), netlink.NeighList,
			func(u *netlink.NeighUpdate, matters bool) {
				d := decision{ip: "lost", matters: matters}
				if u != nil {
					d.ip, d.mac = u.IP.String(), u.HardwareAddr.String()
				}
				mu.Lock()
				seen = append(seen, d)
				mu.Unlock()
			})
	})
	if err != nil {
		t.Fatal(err)
	}
	const sentinel = "198.18.60.99"
	next := 0 // the first decision not looked at
	for i, s := range []struct {
		cmd     string
		ip      string
		matters bool // some event of the step matters (else none)
	}{
		{"neigh change 198.18.60.5 lladdr 02:00:00:00:00:05 dev v0 nud stale", "198.18.60.5", false}, // seeded
		{"neigh add 198.18.60.6 lladdr 02:00:00:00:00:06 dev v0 nud reachable", "198.18.60.6", false},
		{"neigh change 198.18.60.6 lladdr 02:00:00:00:00:06 dev v0 nud stale", "198.18.60.6", false},
		{"neigh change 198.18.60.6 lladdr 02:00:00:00:00:16 dev v0 nud stale", "198.18.60.6", true},
		{"-6 neigh add fd00:60::6 lladdr 02:00:00:00:00:06 dev v0 nud stale", "fd00:60::6", false},
		{"-6 neigh change fd00:60::6 lladdr 02:00:00:00:00:16 dev v0 nud reachable", "fd00:60::6", true},
		{"neigh del 198.18.60.5 dev v0", "198.18.60.5", true},
		{"-6 neigh del fd00:60::6 dev v0", "fd00:60::6", true},
	} {
		mark := fmt.Sprintf("02:00:00:00:01:%02x", i)
		ipCmds(t, ns, s.cmd, "neigh replace "+sentinel+" lladdr "+mark+" dev v0 nud permanent")
		var step []decision
		for deadline := time.Now().Add(10 * time.Second); ; {
			mu.Lock()
			got := seen[next:]
			end := slices.IndexFunc(got, func(d decision) bool { return d.ip == sentinel && d.mac == mark })
			if end >= 0 {
				step, next = slices.Clone(got[:end]), next+end+1
			}
			mu.Unlock()
			if end >= 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%q: the sentinel's event not seen within 10 s", s.cmd)
			}
			time.Sleep(5 * time.Millisecond) // polling
		}
		var mine []decision
		for _, d := range step {
			if d.ip == s.ip {
				mine = append(mine, d)
			}
		}
		matters := slices.ContainsFunc(mine, func(d decision) bool { return d.matters })
		if len(mine) == 0 || matters != s.matters {
			t.Errorf("%q: decisions %+v, want an event that matters: %v", s.cmd, mine, s.matters)
		}
	}
}
