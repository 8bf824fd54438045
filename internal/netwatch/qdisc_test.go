package netwatch

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// TestEgressShaping reads what the operator put on a device's transmit
// path: nothing on a fresh veth (its default qdisc is the kernel's), then a
// root tbf, then, with the qdisc gone, a BPF program on tcx egress.
func TestEgressShaping(t *testing.T) {
	ns := emptyNS(t)
	ipCmds(t, ns, "link add v0 type veth peer name v1", "link set v0 up")
	shaping := func() string {
		t.Helper()
		var s string
		if err := nsutil.Do(ns, func() error {
			l, err := netlink.LinkByName("v0")
			if err != nil {
				return err
			}
			s, err = EgressShaping(l.Attrs().Index)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := shaping(); s != "" {
		t.Errorf("fresh veth: %q, want nothing", s)
	}
	inNS(t, ns, "", "tc", "qdisc", "replace", "dev", "v0", "root", "tbf", "rate", "20mbit", "burst", "32kbit", "latency", "50ms")
	if s := shaping(); !strings.Contains(s, "root qdisc tbf") {
		t.Errorf("with a tbf: %q", s)
	}
	inNS(t, ns, "", "tc", "qdisc", "del", "dev", "v0", "root")
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1 /* TCX_NEXT */), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	var l link.Link
	if err := nsutil.Do(ns, func() error {
		nl, err := netlink.LinkByName("v0")
		if err != nil {
			return err
		}
		l, err = link.AttachTCX(link.TCXOptions{Program: prog, Attach: ebpf.AttachTCXEgress, Interface: nl.Attrs().Index})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if s := shaping(); s != "1 tcx egress program" {
		t.Errorf("with a tcx egress program: %q", s)
	}
}

// TestLocalAddrs lists what the kernel keeps for itself: the namespace's
// addresses and the IPv4 subnet broadcast, not a neighbour's address.
func TestLocalAddrs(t *testing.T) {
	ns := emptyNS(t)
	ipCmds(t, ns, "link add v0 type veth peer name v1", "link set v0 up", "link set v1 up",
		"addr add 198.18.60.1/24 dev v0", "-6 addr add fd00:60::1/64 dev v0 nodad")
	// The kernel adds the IPv6 address's local route once the veth's
	// carrier is up, a moment after the commands return.
	var got []netip.Addr
	var missing []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := nsutil.Do(ns, func() (err error) { got, err = LocalAddrs(); return err }); err != nil {
			t.Fatal(err)
		}
		missing = missing[:0]
		for _, want := range []string{"198.18.60.1", "198.18.60.255", "fd00:60::1"} {
			if !slices.Contains(got, netip.MustParseAddr(want)) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling
	}
	if len(missing) > 0 {
		t.Errorf("%v missing from %v", missing, got)
	}
	if slices.Contains(got, netip.MustParseAddr("198.18.60.2")) {
		t.Errorf("a neighbour's address listed as local: %v", got)
	}
}
