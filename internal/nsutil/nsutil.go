// Package nsutil runs Go code inside named network namespaces, the ones
// `ip netns add` keeps as bind mounts under /run/netns, and creates and
// deletes such namespaces the way iproute2 does, so both tools see the same
// namespaces.
//
// A network namespace belongs to an OS thread, not to a goroutine or to the
// process. Everything here therefore pins the calling goroutine to its thread
// while the thread is in another namespace. Sockets remember the namespace
// they were created in: a listener or connection opened inside Do keeps
// working in that namespace after Do returns, from any goroutine.
package nsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir is where named network namespaces are bind-mounted (iproute2's
// convention).
const Dir = "/run/netns"

// threadNetNS names the network namespace of the calling thread. /proc/self
// would name the thread group leader's, which is not ours once we setns.
const threadNetNS = "/proc/thread-self/ns/net"

// Path returns the bind-mount path of the named namespace.
func Path(name string) string { return filepath.Join(Dir, name) }

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || len(name) > 255 {
		return fmt.Errorf("invalid netns name %q", name)
	}
	return nil
}

// Do runs fn on the calling goroutine with its thread switched into the
// network namespace name, then switches the thread back. Goroutines started
// by fn run on other threads and are not in the namespace. If the thread
// cannot be switched back, Do returns an error and leaves the goroutine
// locked to that thread, so the thread is discarded when the goroutine ends.
func Do(name string, fn func() error) error {
	if err := checkName(name); err != nil {
		return err
	}
	return DoPath(Path(name), fn)
}

// DoPath is Do for a namespace named by a file: /run/netns/NAME,
// /proc/PID/ns/net, a bind mount of one.
func DoPath(path string, fn func() error) error {
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer unix.Close(target)
	return onOwnThread(func() error {
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("enter netns %s: %w", path, err)
		}
		return fn()
	})
}

// Exists reports whether a named network namespace exists.
func Exists(name string) bool {
	if checkName(name) != nil {
		return false
	}
	_, err := os.Stat(Path(name))
	return err == nil
}

// Create makes a new, empty network namespace and keeps it as
// /run/netns/name, like `ip netns add name`. It fails with an error matching
// fs.ErrExist if the name is taken. The caller's thread is not changed.
func Create(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := ensureSharedDir(); err != nil {
		return fmt.Errorf("create netns %s: %w", name, err)
	}
	p := Path(name)
	// O_EXCL makes the name claim atomic against concurrent creators.
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create netns %s: %w", name, err)
	}
	f.Close()

	if err := onOwnThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		if err := unix.Mount(threadNetNS, p, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind mount %s: %w", p, err)
		}
		return nil
	}); err != nil {
		// A failed bind mount leaves nothing mounted on p, so removing
		// the placeholder is all the cleanup needed.
		os.Remove(p)
		return fmt.Errorf("create netns %s: %w", name, err)
	}
	return nil
}

// onOwnThread runs fn with the calling goroutine locked to its thread; fn
// may move the thread to another network namespace, and onOwnThread moves it
// back afterwards.
//
// It does not use the "lock the thread and let the goroutine exit" trick:
// if that goroutine happens to run on the main thread, the runtime cannot
// end the thread and parks it forever instead, still in the new namespace.
// The main thread is what /proc/self/net shows, and it would keep the
// namespace alive after Delete.
func onOwnThread(fn func() error) (err error) {
	runtime.LockOSThread()
	orig, err := unix.Open(threadNetNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open current netns: %w", err)
	}
	defer unix.Close(orig)
	// Deferred so that a panic in fn also restores the thread.
	defer func() {
		if rerr := unix.Setns(orig, unix.CLONE_NEWNET); rerr != nil {
			// The thread is stuck in the wrong namespace. We keep it
			// locked to this goroutine on purpose: when the goroutine
			// ends, the runtime then terminates the thread instead of
			// handing it to other goroutines, which would silently run
			// in the wrong namespace. The caller sees the error.
			err = errors.Join(err, fmt.Errorf("restore netns: %w", rerr))
			return
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// ensureSharedDir makes /run/netns a mount point with shared propagation, as
// iproute2 does. Then unmounting a namespace here also unmounts it in mount
// namespaces created later (e.g. by `ip netns exec`), so a process running
// in one lab namespace does not keep the others alive.
func ensureSharedDir() error {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return fmt.Errorf("make %s: %w", Dir, err)
	}
	err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s shared: %w", Dir, err)
	}
	// EINVAL: not a mount point yet. Bind it onto itself, then retry once.
	if err := unix.Mount(Dir, Dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind mount %s: %w", Dir, err)
	}
	if err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", Dir, err)
	}
	return nil
}

// Delete removes a named network namespace like `ip netns delete`. A
// missing namespace is not an error. The namespace itself (and its
// interfaces) goes away once no process or open file still refers to it.
func Delete(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	p := Path(name)
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	// EINVAL means nothing is mounted there (a placeholder left by a
	// crashed creator); ENOENT a concurrent delete. Both still end in
	// removing the file.
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete netns %s: unmount: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	return nil
}

// Inode returns the inode number identifying the network namespace of the
// calling thread. Two threads are in the same namespace iff the numbers are
// equal. Call it inside Do to identify a named namespace.
func Inode() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(threadNetNS, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", threadNetNS, err)
	}
	return st.Ino, nil
}
