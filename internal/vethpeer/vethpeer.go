// Package vethpeer reads, for a veth, how the frames it receives are sent
// at its other end: whether the stack there leaves their checksums for the
// device to complete (tx checksum offload on, so frames carry
// CHECKSUM_PARTIAL), which an XDP program sees unfinished and a redirect
// sends out that way (the receiver drops them); and whether frames come by
// XDP (redirected into the peer, or sent back by its own XDP program),
// which native XDP on this end takes as they are, while every frame from a
// stack is copied into an XDP buffer first. The peer is
// usually in another network namespace (a container's); it is found among
// the namespaces that /run/netns and /proc name, by the id the kernel gave
// it in ours.
package vethpeer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/ethtool"
	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// Peer is what was found about a veth's peer.
type Peer struct {
	Name string // its name, in its namespace
	// Netns names the peer's namespace: a file that opens it, or "" when it
	// is the caller's.
	Netns string
	// PartialChecksums: the peer's tx checksum offload is on.
	PartialChecksums bool
	// XDPSent counts the frames the peer has sent by XDP since it was
	// created (redirected into it or sent back by its XDP program, those it
	// could not deliver included); XDPSentKnown is false when its
	// statistics could not be read (XDPSent is 0 then).
	XDPSent      uint64
	XDPSentKnown bool
}

func (p Peer) String() string {
	if p.Netns == "" {
		return p.Name
	}
	return fmt.Sprintf("%s (netns %s)", p.Name, p.Netns)
}

// ErrNotVeth is returned for a link that is not a veth.
var ErrNotVeth = errors.New("not a veth")

// Finder finds veth peers; it remembers where it found each namespace.
// Safe for concurrent use.
type Finder struct {
	mu    sync.Mutex
	paths map[int]string // netns id (as seen from here) -> a file opening it
	roots []string       // directories of namespace files, before /proc
}

// NewFinder returns a Finder that looks in /run/netns and /proc.
func NewFinder() *Finder {
	return &Finder{paths: map[int]string{}, roots: []string{nsutil.Dir, "/var/run/netns"}}
}

// Lookup reads l's peer. It must run in the namespace l belongs to.
func (f *Finder) Lookup(l netlink.Link) (Peer, error) {
	if l.Type() != "veth" {
		return Peer{}, ErrNotVeth
	}
	a := l.Attrs()
	peerIdx := a.ParentIndex // IFLA_LINK: the peer's ifindex, in its namespace
	if peerIdx == 0 {
		if v, ok := l.(*netlink.Veth); ok {
			idx, err := netlink.VethPeerIndex(v)
			if err != nil {
				return Peer{}, fmt.Errorf("peer of %s: %w", a.Name, err)
			}
			peerIdx = idx
		}
	}
	if peerIdx == 0 {
		return Peer{}, fmt.Errorf("peer of %s: no peer index", a.Name)
	}
	read := func() (Peer, error) {
		pl, err := netlink.LinkByIndex(peerIdx)
		if err != nil {
			return Peer{}, fmt.Errorf("peer ifindex %d: %w", peerIdx, err)
		}
		on, err := ethtool.TxChecksum(pl.Attrs().Name)
		if err != nil {
			return Peer{}, err
		}
		p := Peer{Name: pl.Attrs().Name, PartialChecksums: on}
		if st, err := ethtool.Stats(p.Name); err == nil {
			p.XDPSent, p.XDPSentKnown = xdpSent(st), true
		}
		return p, nil
	}
	if a.NetNsID < 0 { // same namespace
		return read()
	}
	path, err := f.find(a.NetNsID)
	if err != nil {
		return Peer{}, fmt.Errorf("peer of %s: %w", a.Name, err)
	}
	// On a goroutine of its own: if the thread could not come back from
	// the peer's namespace, only that goroutine's thread is lost, not the
	// caller's (the daemon's main loop).
	var p Peer
	done := make(chan error, 1)
	go func() {
		done <- nsutil.DoPath(path, func() error {
			var err error
			p, err = read()
			return err
		})
	}()
	err = <-done
	if err != nil {
		return Peer{}, fmt.Errorf("peer of %s in %s: %w", a.Name, path, err)
	}
	p.Netns = path
	return p, nil
}

// find returns a file that opens the namespace with id nsid.
func (f *Finder) find(nsid int) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.paths[nsid]; ok && idOf(p) == nsid {
		return p, nil
	}
	delete(f.paths, nsid)
	var cands []string
	for _, root := range f.roots {
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			cands = append(cands, filepath.Join(root, e.Name()))
		}
	}
	procs, _ := os.ReadDir("/proc")
	for _, e := range procs {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			cands = append(cands, filepath.Join("/proc", e.Name(), "ns", "net"))
		}
	}
	seen := map[uint64]bool{}
	for _, c := range cands {
		var st unix.Stat_t
		if unix.Stat(c, &st) != nil || seen[st.Ino] {
			continue
		}
		seen[st.Ino] = true
		if idOf(c) == nsid {
			f.paths[nsid] = c
			return c, nil
		}
	}
	return "", fmt.Errorf("no namespace with id %d found under /run/netns or /proc", nsid)
}

// idOf is the id this namespace gave the one path opens; -1 if none.
func idOf(path string) int {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	defer unix.Close(fd)
	id, err := netlink.GetNetNsIdByFd(fd)
	if err != nil {
		return -1
	}
	return id
}

// xdpSent sums a veth's counters of frames sent by XDP (drivers/net/veth.c):
// tx_queue_N_xdp_xmit[_errors], frames redirected into it (the errors being
// those its peer could not take), and rx_queue_N_xdp_tx[_errors], frames its
// own XDP program sent back.
func xdpSent(st map[string]uint64) uint64 {
	var n uint64
	for k, v := range st {
		switch {
		case strings.HasPrefix(k, "tx_queue_") && (strings.HasSuffix(k, "_xdp_xmit") || strings.HasSuffix(k, "_xdp_xmit_errors")),
			strings.HasPrefix(k, "rx_queue_") && (strings.HasSuffix(k, "_xdp_tx") || strings.HasSuffix(k, "_xdp_tx_errors")):
			n += v
		}
	}
	return n
}
