package datapath

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

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

// pruneLinks detaches pinned links this run did not adopt or create (an
// interface no longer configured, a changed hook). Call after start.
func (d *Datapath) pruneLinks() ([]string, error) {
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

// remember records a link this run adopted or pinned.
func (d *Datapath) remember(name string, l link.Link) {
	d.pinMu.Lock()
	defer d.pinMu.Unlock()
	d.used[name] = true
	d.links[name] = l
}
