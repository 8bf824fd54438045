package netwatch

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// EgressShaping says what the operator put on ifindex's transmit path (in
// the calling thread's namespace), or "": a qdisc of their own, at the root
// or under the default one (the qdiscs the kernel attaches by itself have
// handle 0: noqueue, mq and its children, pfifo_fast, the default_qdisc
// sysctl's), or tc filters on the clsact egress hook. An XDP redirect skips
// them; the kernel's forwarding, and TC's redirect, go through them. (tcx
// egress programs are not listed here.)
func EgressShaping(ifindex int) (string, error) {
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
