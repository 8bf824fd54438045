package netwatch

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nudValid are the neighbour states in which the kernel's FIB lookup
// (bpf_fib_lookup) answers with the neighbour's link-layer address; in any
// other (incomplete, failed, none) it answers "no neighbour" and the
// datapath caches nothing.
const nudValid = netlink.NUD_PERMANENT | netlink.NUD_NOARP | netlink.NUD_REACHABLE |
	netlink.NUD_PROBE | netlink.NUD_STALE | netlink.NUD_DELAY

type neighKey struct {
	ifindex int
	ip      netip.Addr
}

// neighState is what a FIB lookup sees of a neighbour: resolved (valid,
// with its link-layer address) or not (incomplete, failed, none). An entry
// the filter does not hold is absent.
type neighState struct {
	valid bool
	mac   string
}

// neighFilter tells the neighbour events that can change a FIB answer a
// cached flow holds from those that cannot. A flow holds a resolved
// neighbour's address; and route selection (multipath with
// fib_multipath_use_neigh, IPv6 router selection) prefers next hops whose
// neighbour is not unresolved. So what matters is a resolved neighbour
// that changes its address or stops being resolved, and an unresolved one
// that comes or goes or gets resolved. What does not is most of the churn
// of any router: moves between the valid states (reachable, stale, delay,
// probe) as the kernel confirms its neighbours every few seconds, and new
// entries it makes from the solicitations it receives, resolved from the
// start (an absent neighbour counts as a usable next hop already).
//
// It remembers every neighbour's state, seeded by a dump made after the
// subscription, so that a change of address is told from a new entry.
// While it cannot trust what it remembers (the seed failed), every event
// matters. One goroutine's (the watch's).
type neighFilter struct {
	known  map[neighKey]neighState
	unsure bool
}

func newNeighFilter() *neighFilter { return &neighFilter{known: map[neighKey]neighState{}} }

// seed replaces what the filter remembers with a dump of the kernel's
// neighbours (list: netlink.NeighList). Events that queued meanwhile are
// applied after it: they end where the kernel is.
func (f *neighFilter) seed(list func(linkIndex, family int) ([]netlink.Neigh, error)) {
	f.known = map[neighKey]neighState{}
	var (
		ns  []netlink.Neigh
		err error
	)
	for range dumpRetries {
		if ns, err = list(0, unix.AF_UNSPEC); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if f.unsure = err != nil; f.unsure {
		return
	}
	for _, n := range ns {
		if k, ok := keyOfNeigh(n); ok {
			f.known[k] = stateOf(n)
		}
	}
}

func stateOf(n netlink.Neigh) neighState {
	if n.State&nudValid == 0 {
		return neighState{}
	}
	return neighState{valid: true, mac: n.HardwareAddr.String()}
}

func keyOfNeigh(n netlink.Neigh) (neighKey, bool) {
	if n.Family != unix.AF_INET && n.Family != unix.AF_INET6 {
		return neighKey{}, false // bridge FDB entries: no FIB answer holds them
	}
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return neighKey{}, false
	}
	return neighKey{n.LinkIndex, ip.Unmap()}, true
}

// matters records u and says whether it can change a FIB answer a cached
// flow holds.
func (f *neighFilter) matters(u netlink.NeighUpdate) bool {
	k, ok := keyOfNeigh(u.Neigh)
	if !ok {
		return false
	}
	old, had := f.known[k]
	now, has := stateOf(u.Neigh), u.Type == unix.RTM_NEWNEIGH
	if has {
		f.known[k] = now
	} else {
		delete(f.known, k)
	}
	switch {
	case f.unsure:
		return true
	case !had && !has, !had && now.valid: // nothing, or a new entry resolved from the start
		return false
	}
	return had != has || old != now
}

// watchNeighbours follows the neighbour tables, handing every event to
// decided with whether it can change a cached flow (neighFilter), and nil,
// true after events were lost. Each subscription is seeded with a dump
// (list) made after it.
func watchNeighbours(ctx context.Context, log *slog.Logger, stats *watchStats, list func(int, int) ([]netlink.Neigh, error), decided func(u *netlink.NeighUpdate, matters bool)) error {
	f := newNeighFilter()
	return follow(ctx, log, stats, "neighbours", func(ch chan netlink.NeighUpdate, done <-chan struct{}, onErr func(error)) error {
		if err := netlink.NeighSubscribeWithOptions(ch, done, netlink.NeighSubscribeOptions{ErrorCallback: onErr}); err != nil {
			return err
		}
		f.seed(list)
		return nil
	}, func(u netlink.NeighUpdate) { decided(&u, f.matters(u)) }, func() { decided(nil, true) })
}
