package netwatch

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/vishvananda/netlink"
)

// EgressShaping says what the operator put on ifindex's transmit path (in
// the calling thread's namespace), or "": a qdisc of their own, at the root
// or under the default one (the qdiscs the kernel attaches by itself have
// handle 0: noqueue, mq and its children, pfifo_fast, the default_qdisc
// sysctl's), tc filters on the clsact egress hook, or BPF programs on the
// tcx egress hook (fastpath attaches none there). An XDP redirect skips
// them; the kernel's forwarding, and TC's redirect, go through them.
func EgressShaping(ifindex int) (string, error) {
	if n, err := tcxEgressPrograms(ifindex); err != nil {
		return "", err
	} else if n > 0 {
		if n == 1 {
			return "1 tcx egress program", nil
		}
		return fmt.Sprintf("%d tcx egress programs", n), nil
	}
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return "", fmt.Errorf("link %d: %w", ifindex, err)
	}
	qdiscs, err := netlink.QdiscList(l)
	if err != nil {
		return "", fmt.Errorf("qdiscs of %s: %w", l.Attrs().Name, err)
	}
	clsact := false
	for _, q := range qdiscs {
		a := q.Attrs()
		switch {
		case q.Type() == "clsact":
			clsact = true
		case q.Type() == "ingress": // receive side only
		case a.Handle != 0:
			where := "qdisc"
			if a.Parent == netlink.HANDLE_ROOT {
				where = "root qdisc"
			}
			return fmt.Sprintf("%s %s %s", where, q.Type(), netlink.HandleStr(a.Handle)), nil
		}
	}
	if !clsact {
		return "", nil
	}
	filters, err := netlink.FilterList(l, netlink.HANDLE_MIN_EGRESS)
	if err != nil {
		return "", fmt.Errorf("egress filters of %s: %w", l.Attrs().Name, err)
	}
	if len(filters) > 0 {
		return fmt.Sprintf("%d tc egress filters", len(filters)), nil
	}
	return "", nil
}

// tcxEgressPrograms counts the programs on ifindex's tcx egress hook (0 on
// kernels without tcx, where none can be attached).
func tcxEgressPrograms(ifindex int) (int, error) {
	res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: ebpf.AttachTCXEgress})
	switch {
	case errors.Is(err, ebpf.ErrNotSupported):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("tcx egress programs of interface %d: %w", ifindex, err)
	}
	return len(res.Programs), nil
}
