package datapath

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Pinning keeps the datapath alive across daemon restarts and upgrades:
// maps under <dir>/maps, links under <dir>/links. A daemon that finds them
// adopts the maps if their layout matches its own (counters, flows and
// verdicts carry over) and swaps its programs into the pinned links with
// BPF_LINK_UPDATE: there is no moment without a program. If the layout
// changed (an upgrade), it switches the links to its own programs and
// fresh maps, then pins those over the old ones.

const (
	mapsDir  = "maps"
	linksDir = "links"
)

// DefaultPinRoot is where each network namespace gets its pin directory.
const DefaultPinRoot = "/sys/fs/bpf/fastpath"

// PinDirFor returns the pin directory of the calling thread's network
// namespace: named by the netns cookie, which the kernel never reuses
// (inode numbers are), so a new namespace never adopts a dead one's pins.
func PinDirFor(root string) (string, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("netns cookie: %w", err)
	}
	defer unix.Close(fd)
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return "", fmt.Errorf("netns cookie (needs Linux 5.14+): %w", err)
	}
	return filepath.Join(root, fmt.Sprintf("netns-%d", cookie)), nil
}

// bpffsMount is the mount point holding root.
func bpffsMount(root string) string {
	if mnt := "/sys/fs/bpf"; root == mnt || strings.HasPrefix(root, mnt+"/") {
		return mnt
	}
	return root
}

// IsBPFFS reports whether root lies on a mounted BPF filesystem.
func IsBPFFS(root string) bool {
	var st unix.Statfs_t
	return unix.Statfs(bpffsMount(root), &st) == nil && st.Type == unix.BPF_FS_MAGIC
}

// EnsureBPFFS mounts the BPF filesystem on root's mount point if it is not
// there (a fresh machine), as Cilium does; mounted says it had to.
func EnsureBPFFS(root string) (mounted bool, err error) {
	if IsBPFFS(root) {
		return false, nil
	}
	mnt := bpffsMount(root)
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		return false, fmt.Errorf("bpffs mount point %s: %w", mnt, err)
	}
	if err := unix.Mount("bpf", mnt, "bpf", 0, "mode=0700"); err != nil {
		return false, fmt.Errorf("mount bpffs on %s: %w", mnt, err)
	}
	return true, nil
}

// pinState is what loadPinned found.
type pinState int

const (
	pinsCreated      pinState = iota // nothing was pinned: new maps, now pinned
	pinsAdopted                      // a previous daemon's maps, reused
	pinsIncompatible                 // another layout is pinned: nothing loaded
)

// RemovePinned detaches and removes everything pinned under dir: what
// `fastpath detach` does when no daemon runs. It returns what it removed.
func RemovePinned(dir string) ([]string, error) {
	var removed []string
	var errs []error
	if ents, err := os.ReadDir(filepath.Join(dir, linksDir)); err == nil {
		for _, e := range ents {
			if err := removePinnedLink(filepath.Join(dir, linksDir, e.Name())); err != nil {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, "link "+e.Name())
		}
	}
	if ents, err := os.ReadDir(filepath.Join(dir, mapsDir)); err == nil {
		for _, e := range ents {
			if err := os.Remove(filepath.Join(dir, mapsDir, e.Name())); err != nil {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, "map "+e.Name())
		}
	}
	for _, sub := range []string{linksDir, mapsDir, ""} {
		if err := os.Remove(filepath.Join(dir, sub)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	os.Remove(filepath.Dir(dir)) // the root too, once no namespace has pins
	return removed, errors.Join(errs...)
}

// PinDir is where this datapath's pins live ("" when not pinning).
func (d *Datapath) PinDir() string { return d.pinDir }

// Adopted reports whether the maps of a previous daemon were adopted.
func (d *Datapath) Adopted() bool { return d.adopted }

// Replaced reports whether pins of a different layout were found: they are
// replaced by this datapath's maps when Settle runs.
func (d *Datapath) Replaced() bool { return d.replaced }

// RemoveDefunct removes the pin directories under root, other than keep,
// left by namespaces that are gone: directories whose interface links are
// all defunct (their devices were destroyed with the namespace). A
// directory without interface links is left alone.
func RemoveDefunct(root, keep string) ([]string, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		dir := filepath.Join(root, e.Name())
		if !e.IsDir() || dir == keep || !allDefunct(filepath.Join(dir, linksDir)) {
			continue
		}
		if _, err := RemovePinned(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, dir)
	}
	return removed, errors.Join(errs...)
}

func allDefunct(links string) bool {
	ents, err := os.ReadDir(links)
	if err != nil {
		return false
	}
	seen := 0
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "nf-") {
			continue
		}
		seen++
		l, err := link.LoadPinnedLink(filepath.Join(links, e.Name()), nil)
		if err != nil {
			return false
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			return false
		}
		if x := info.XDP(); x != nil && x.Ifindex != 0 {
			return false
		}
		if t := info.TCX(); t != nil && t.Ifindex != 0 {
			return false
		}
	}
	return seen > 0
}
