package xdpfeat

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The verified kernel fact the daemon relies on: a veth can take redirected
// XDP frames (NDO_XMIT) only while its peer has GRO on or an XDP program,
// and the netdev family announces the change.
func TestVethTargetFollowsPeerGRO(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (creates a network namespace)")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // this thread now lives in a fresh, unnamed netns
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic("cannot restore network namespace: " + err.Error())
		}
		ns.Close()
	}()

	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "xf0"}, PeerName: "xf1"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"xf0", "xf1"} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	l, err := netlink.LinkByName("xf0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	changes, err := Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}

	f, err := q.Get(l.Attrs().Index)
	if err != nil {
		t.Fatal(err)
	}
	if !f.NativeXDP() || f.RedirectTarget() {
		t.Fatalf("fresh veth: features %#x, want native XDP and not a redirect target", uint64(f))
	}
	// ethtool runs in this thread's netns: exec inherits it from the thread.
	if out, err := exec.Command("ethtool", "-K", "xf1", "gro", "on").CombinedOutput(); err != nil {
		t.Fatalf("ethtool: %v: %s", err, out)
	}
	f, err = q.Get(l.Attrs().Index)
	if err != nil {
		t.Fatal(err)
	}
	if !f.RedirectTarget() {
		t.Fatalf("peer GRO on: features %#x, want NDO_XMIT", uint64(f))
	}
	for {
		select {
		case idx, ok := <-changes:
			if !ok {
				t.Fatal("watch channel closed")
			}
			if idx == l.Attrs().Index {
				return
			}
		case <-ctx.Done():
			t.Fatal("no change notification for xf0")
		}
	}
}
