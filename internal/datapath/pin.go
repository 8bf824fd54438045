package datapath

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
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

// pinnable are the maps that carry state across restarts (not .rodata,
// which each load gets anew).
func pinnable(spec *ebpf.CollectionSpec) []string {
	var names []string
	for name := range spec.Maps {
		if !strings.HasPrefix(name, ".") && !strings.Contains(name, ".rodata") {
			names = append(names, name)
		}
	}
	return names
}

// pinState is what loadPinned found.
type pinState int

const (
	pinsCreated      pinState = iota // nothing was pinned: new maps, now pinned
	pinsAdopted                      // a previous daemon's maps, reused
	pinsIncompatible                 // another layout is pinned: nothing loaded
)

// loadPinned loads the collection, adopting compatible pins in dir.
func loadPinned(spec *ebpf.CollectionSpec, objs *fastpathObjects, dir string) (pinState, error) {
	mdir := filepath.Join(dir, mapsDir)
	if err := os.MkdirAll(mdir, 0o700); err != nil {
		return 0, fmt.Errorf("pin dir: %w", err)
	}
	state := pinsCreated
	if ents, err := os.ReadDir(mdir); err == nil && len(ents) > 0 {
		state = pinsAdopted
	}
	pinned := spec.Copy()
	for _, name := range pinnable(pinned) {
		pinned.Maps[name].Pinning = ebpf.PinByName
	}
	err := pinned.LoadAndAssign(objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: mdir}})
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		return pinsIncompatible, nil
	}
	return state, err
}

// commitPins pins the maps in use over whatever is pinned under dir.
func (d *Datapath) commitPins() error {
	mdir := filepath.Join(d.pinDir, mapsDir)
	for name, m := range d.maps() {
		p := filepath.Join(mdir, name)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("replace pin %s: %w", p, err)
		}
		if err := m.Pin(p); err != nil {
			return fmt.Errorf("pin %s: %w", p, err)
		}
	}
	return nil
}

func (d *Datapath) maps() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		"fp_ifaces": d.objs.FpIfaces, "fp_if_stats": d.objs.FpIfStats, "fp_tx_ports": d.objs.FpTxPorts,
		"fp_flows": d.objs.FpFlows, "fp_accepted": d.objs.FpAccepted, "fp_globals": d.objs.FpGlobals,
		"fp_mtu4": d.objs.FpMtu4, "fp_mtu6": d.objs.FpMtu6, "fp_events": d.objs.FpEvents,
	}
}

// linkPin is where the link of hook on ifindex is pinned; the hook is in the
// name because a pinned XDP link cannot change between driver and generic
// mode, nor an XDP link become a tcx one.
func (d *Datapath) linkPin(name string) string {
	return filepath.Join(d.pinDir, linksDir, name)
}

// pinnedLink loads the link pinned under name, if any.
func (d *Datapath) pinnedLink(name string) link.Link {
	if d.pinDir == "" {
		return nil
	}
	l, err := link.LoadPinnedLink(d.linkPin(name), nil)
	if err != nil {
		return nil
	}
	return l
}

// adoptOrAttach swaps prog into the link pinned under name, or attaches
// with attach and pins the result.
func (d *Datapath) adoptOrAttach(name string, prog *ebpf.Program, attach func() (link.Link, error)) (link.Link, error) {
	if old := d.pinnedLink(name); old != nil {
		if err := old.Update(prog); err == nil {
			d.remember(name, old)
			return old, nil
		}
		old.Close() // defunct (its device went away): replacePinned retires it
	}
	return d.replacePinned(name, attach)
}

// replacePinned attaches anew, then retires whatever was pinned under name,
// so the hook is never left empty, and pins the new link there.
func (d *Datapath) replacePinned(name string, attach func() (link.Link, error)) (link.Link, error) {
	l, err := attach()
	if err != nil || d.pinDir == "" {
		return l, err
	}
	path := d.linkPin(name)
	if old := d.pinnedLink(name); old != nil {
		old.Unpin()
		old.Close()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		l.Close()
		return nil, fmt.Errorf("pin dir: %w", err)
	}
	if err := l.Pin(path); err != nil {
		l.Close()
		return nil, fmt.Errorf("pin link %s: %w", path, err)
	}
	d.remember(name, l)
	return l, nil
}

// Detach detaches a link this datapath attached or adopted.
func (d *Datapath) Detach(l link.Link) error {
	if l == nil {
		return nil
	}
	d.pinMu.Lock()
	for name, pl := range d.links {
		if pl == l {
			delete(d.links, name)
		}
	}
	d.pinMu.Unlock()
	if err := l.Unpin(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		l.Close()
		return fmt.Errorf("unpin link: %w", err)
	}
	return l.Close()
}

// PruneLinks detaches pinned links this run did not adopt or create (an
// interface no longer configured, a changed hook). Call after start.
func (d *Datapath) PruneLinks() ([]string, error) {
	if d.pinDir == "" {
		return nil, nil
	}
	ents, err := os.ReadDir(filepath.Join(d.pinDir, linksDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	d.pinMu.Lock()
	used := maps.Clone(d.used)
	d.pinMu.Unlock()
	for _, e := range ents {
		if used[e.Name()] {
			continue
		}
		if err := removePinnedLink(d.linkPin(e.Name())); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}

func removePinnedLink(path string) error {
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		// Not a link we can load: drop the pin itself.
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return fmt.Errorf("remove pin %s: %w", path, rerr)
		}
		return nil
	}
	if err := l.Unpin(); err != nil {
		l.Close()
		return fmt.Errorf("unpin %s: %w", path, err)
	}
	return l.Close()
}

// Unpin removes every pin of this datapath, maps and links. Objects stay
// alive while this process holds them, and links detach when it closes
// them or exits: used when the daemon will not keep the datapath.
func (d *Datapath) Unpin() error {
	if d.pinDir == "" {
		return nil
	}
	var errs []error
	for name, m := range d.maps() {
		if err := m.Unpin(); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin %s: %w", name, err))
		}
	}
	d.pinMu.Lock()
	links := maps.Clone(d.links)
	d.pinMu.Unlock()
	for name, l := range links {
		if err := l.Unpin(); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin link %s: %w", name, err))
		}
	}
	for _, sub := range []string{linksDir, mapsDir, "", ".."} {
		os.Remove(filepath.Join(d.pinDir, sub)) // only if empty; ".." is the root of all namespaces
	}
	return errors.Join(errs...)
}

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
// replaced by this datapath's maps once CommitPins runs.
func (d *Datapath) Replaced() bool { return d.replaced }

// CommitPins pins this datapath's maps over older, incompatible ones. Call
// once every link runs this datapath's programs.
func (d *Datapath) CommitPins() error {
	if d.pinDir == "" || !d.replaced {
		return nil
	}
	if err := d.commitPins(); err != nil {
		return err
	}
	d.replaced = false
	return nil
}

// PruneIfaces forgets interfaces an adopted datapath still lists but the
// new configuration does not manage.
func (d *Datapath) PruneIfaces(keep map[int]bool) error {
	var (
		key   uint32
		v     fastpathFpIface
		stale []int
	)
	it := d.objs.FpIfaces.Iterate()
	for it.Next(&key, &v) {
		if !keep[int(key)] {
			stale = append(stale, int(key))
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("list interfaces: %w", err)
	}
	var errs []error
	for _, idx := range stale {
		errs = append(errs, d.RemoveIface(idx))
	}
	return errors.Join(errs...)
}

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

// remember records a link this run adopted or pinned.
func (d *Datapath) remember(name string, l link.Link) {
	d.pinMu.Lock()
	defer d.pinMu.Unlock()
	d.used[name] = true
	d.links[name] = l
}
