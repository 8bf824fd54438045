package datapath

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
)

// The pin lifecycle of a daemon's run, owned here so callers need not know
// its order: Open decides where to pin and adopts what a previous daemon
// left; Settle, once every interface is attached, commits an upgrade's
// maps, prunes what the config no longer wants and unpins unless the
// datapath is kept; Abandon undoes a failed start, pins included.

// OpenOptions configure a daemon's datapath.
type OpenOptions struct {
	FlowEntries int
	// Keep: pin maps and links so that they outlive the process (the next
	// daemon adopts them), mounting the BPF filesystem if needed. Without
	// it, pins a previous daemon left are adopted, then dropped by Settle.
	Keep bool
	Log  *slog.Logger
}

// Open loads the datapath for a daemon run in the calling thread's network
// namespace, adopting a previous daemon's pins.
func Open(opts OpenOptions) (*Datapath, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, mounted, err := pinDirForRun(opts.Keep, log)
	if err != nil {
		return nil, err
	}
	d, err := Load(Options{FlowEntries: opts.FlowEntries, PinDir: dir})
	if err != nil {
		return nil, err
	}
	d.keep, d.mountedFS, d.log = opts.Keep, mounted, log
	switch {
	case d.Adopted():
		log.Info("adopting the datapath a previous daemon left", "pins", dir)
	case d.Replaced():
		log.Info("replacing a pinned datapath of another layout (upgrade): flows re-offload, counters restart", "pins", dir)
	}
	return d, nil
}

// pinDirForRun decides where a run pins: always with keep (mounting bpffs
// if needed, and removing the pins of namespaces that are gone); without
// keep only if a previous daemon left pins to adopt.
func pinDirForRun(keep bool, log *slog.Logger) (dir string, mounted bool, err error) {
	root := DefaultPinRoot
	if keep {
		mounted, err = EnsureBPFFS(root)
		if err != nil {
			return "", false, err
		}
		if mounted {
			log.Warn("mounted the BPF filesystem on /sys/fs/bpf; if this mount namespace is private " +
				"(ip netns exec remounts /sys), the pins end with it: start the daemon with nsenter --net=... instead")
		}
	}
	dir, err = PinDirFor(root)
	if err != nil {
		return "", false, err
	}
	if keep {
		removed, err := RemoveDefunct(root, dir)
		for _, d := range removed {
			log.Info("removed the pins of a network namespace that is gone", "pins", d)
		}
		if err != nil {
			log.Warn("remove stale pins", "err", err)
		}
		return dir, mounted, nil
	}
	if _, err := os.Stat(dir); err == nil {
		return dir, false, nil
	}
	return "", false, nil
}

// Settle finishes a start, once every managed interface (managed: by
// ifindex) runs this datapath's programs: an upgrade's maps replace the
// old pins; pinned links nobody attached this run are detached; an
// adopted datapath forgets interfaces no longer managed; without keep,
// nothing stays pinned.
func (d *Datapath) Settle(managed map[int]bool) error {
	if d.pinDir == "" {
		return nil
	}
	if err := d.commitPinsOnce(); err != nil {
		return err
	}
	removed, err := d.pruneLinks()
	for _, name := range removed {
		d.log.Info("detached a pinned link the configuration no longer wants", "link", name)
	}
	if err != nil {
		return fmt.Errorf("prune pinned links: %w", err)
	}
	if d.adopted {
		if err := d.pruneIfaces(managed); err != nil {
			return err
		}
	}
	if !d.keep {
		return d.Unpin()
	}
	return nil
}

// Abandon undoes a failed start's pins, those a previous daemon left
// included: the kernel alone is the correct fallback. The caller detaches
// and closes as usual.
func (d *Datapath) Abandon() error {
	if d.pinDir == "" {
		return nil
	}
	err := d.Unpin()
	if _, rerr := RemovePinned(d.pinDir); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

// Kept says whether this datapath outlives the process (OpenOptions.Keep).
func (d *Datapath) Kept() bool { return d.keep }

// MountedBPFFS reports whether this run mounted the BPF filesystem its pins
// are in: in a private mount namespace (ip netns exec) they end with it.
func (d *Datapath) MountedBPFFS() bool { return d.mountedFS }

// RemoveAll removes everything a daemon left pinned in the calling
// thread's network namespace (`fastpath detach`, with no daemon running).
// Without a BPF filesystem in sight it fails: it cannot tell "nothing
// left" from "left where this process cannot see" (ip netns exec mounts
// its own /sys), and saying "nothing" would leave a datapath running.
func RemoveAll() (removed []string, err error) {
	if !IsBPFFS(DefaultPinRoot) {
		return nil, errors.New("no BPF filesystem at /sys/fs/bpf in this mount namespace, so what a daemon left pinned cannot be seen: " +
			"ip netns exec mounts its own /sys; run `nsenter --net=/run/netns/NAME fastpath detach` instead")
	}
	dir, err := PinDirFor(DefaultPinRoot)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return RemovePinned(dir)
}
