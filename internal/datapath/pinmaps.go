package datapath

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/cilium/ebpf"
)

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

// maps is every map this datapath pins, by name: all that loadPinned
// pins, read from the objects' tags, so that a map added later is
// replaced and adopted like the rest.
func (d *Datapath) maps() map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	v := reflect.ValueOf(&d.objs.fastpathMaps).Elem()
	for _, f := range reflect.VisibleFields(v.Type()) {
		name := f.Tag.Get("ebpf")
		if !f.IsExported() || name == "" || strings.HasPrefix(name, ".") || strings.Contains(name, ".rodata") {
			continue
		}
		if m, ok := v.FieldByIndex(f.Index).Interface().(*ebpf.Map); ok && m != nil {
			out[name] = m
		}
	}
	return out
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

// commitPinsOnce pins this datapath's maps over older, incompatible ones,
// once every link runs this datapath's programs (Settle).
func (d *Datapath) commitPinsOnce() error {
	if d.pinDir == "" || !d.replaced {
		return nil
	}
	if err := d.commitPins(); err != nil {
		return err
	}
	d.replaced = false
	return nil
}

// pruneIfaces forgets interfaces an adopted datapath still lists but the
// new configuration does not manage.
func (d *Datapath) pruneIfaces(keep map[int]bool) error {
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
