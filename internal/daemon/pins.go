package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/datapath"
)

// pinDirFor decides where this run pins: always with keep (mounting bpffs
// if needed); without keep only if a previous daemon left pins to adopt,
// which settlePins then drops once adopted.
func pinDirFor(keep bool, log *slog.Logger) (string, error) {
	root := datapath.DefaultPinRoot
	if keep {
		mounted, err := datapath.EnsureBPFFS(root)
		if err != nil {
			return "", err
		}
		if mounted {
			log.Warn("mounted the BPF filesystem on /sys/fs/bpf; if this mount namespace is private " +
				"(ip netns exec remounts /sys), the pins end with it: start the daemon with nsenter --net=... instead")
		}
	}
	dir, err := datapath.PinDirFor(root)
	if err != nil {
		return "", err
	}
	if keep {
		// Pins of namespaces that are gone would stay forever otherwise.
		removed, err := datapath.RemoveDefunct(root, dir)
		for _, d := range removed {
			log.Info("removed the pins of a network namespace that is gone", "pins", d)
		}
		if err != nil {
			log.Warn("remove stale pins", "err", err)
		}
		return dir, nil
	}
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	return "", nil
}

// settlePins finishes a start: an upgrade's maps replace the old pins now
// that every link runs the new programs; pinned links the config no longer
// wants are detached; an adopted datapath forgets interfaces it no longer
// manages; without keep, nothing stays pinned.
func settlePins(dp *datapath.Datapath, r *reconciler, keep bool, log *slog.Logger) error {
	if dp.PinDir() == "" {
		return nil
	}
	if err := dp.CommitPins(); err != nil {
		return err
	}
	removed, err := dp.PruneLinks()
	for _, name := range removed {
		log.Info("detached a pinned link the configuration no longer wants", "link", name)
	}
	if err != nil {
		return fmt.Errorf("prune pinned links: %w", err)
	}
	if dp.Adopted() {
		if err := dp.PruneIfaces(r.managedIndexes()); err != nil {
			return err
		}
	}
	if !keep {
		return dp.Unpin()
	}
	return nil
}

// DetachReport lists what Detach removed.
type DetachReport struct {
	Removed []string `json:"removed"`
	Note    string   `json:"note,omitempty"`
}

// Detach removes everything a daemon left attached and pinned in the
// calling process's network namespace. It refuses while a daemon runs
// there: that daemon would fight it.
func Detach(ctx context.Context, log *slog.Logger) (DetachReport, error) {
	var rep DetachReport
	lock, err := takeLock()
	if errors.Is(err, ErrAlreadyRunning) {
		return rep, errors.New("a fastpath daemon is running in this network namespace: stop it first (it detaches on exit unless run with --keep-datapath)")
	}
	if err != nil {
		return rep, err
	}
	defer lock.Close()
	dir, err := datapath.PinDirFor(datapath.DefaultPinRoot)
	if err != nil {
		return rep, err
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if !datapath.IsBPFFS(datapath.DefaultPinRoot) {
			rep.Note = "no BPF filesystem at /sys/fs/bpf in this mount namespace, so no pins are visible; " +
				"under ip netns exec /sys is remounted: run `nsenter --net=/run/netns/NAME fastpath detach`"
		}
		return rep, nil
	}
	rep.Removed, err = datapath.RemovePinned(dir)
	for _, r := range rep.Removed {
		log.Info("removed", "what", r)
	}
	return rep, err
}

// takeLock takes the namespace's single-instance lock.
func takeLock() (net.Listener, error) {
	l, err := net.Listen("unix", lockName)
	if errors.Is(err, unix.EADDRINUSE) {
		return nil, ErrAlreadyRunning
	}
	if err != nil {
		return nil, fmt.Errorf("take the single-instance lock: %w", err)
	}
	return l, nil
}
