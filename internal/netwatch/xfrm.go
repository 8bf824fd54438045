package netwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	mdnetlink "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// IPsec (XFRM) policies decide, after routing, whether a forwarded packet
// is encrypted (out), may be forwarded at all (fwd, also for what arrived
// encrypted) or is dropped; bpf_fib_lookup applies none of them. So while
// any exists, or a default policy blocks, the kernel forwards everything.

// Netlink XFRM message types and the default policy values
// (linux/xfrm.h), not in x/sys.
const (
	xfrmMsgGetDefault = 0x28 // XFRM_MSG_GETDEFAULT
	xfrmGroupPolicy   = 4    // XFRMNLGRP_POLICY: policies added, deleted, flushed, defaults set
	xfrmPolicyBlock   = 1    // XFRM_USERPOLICY_BLOCK
)

// XfrmPolicies says why IPsec policies in the calling thread's namespace
// keep forwarding with the kernel, or "" when there are none: the number
// of policies, or the directions whose default policy blocks. A kernel
// without XFRM netlink has none.
func XfrmPolicies() (string, error) {
	ps, err := netlink.XfrmPolicyList(netlink.FAMILY_ALL)
	if errors.Is(err, unix.EPROTONOSUPPORT) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("list IPsec policies: %w", err)
	}
	if len(ps) > 0 {
		return fmt.Sprintf("%d IPsec (xfrm) policies", len(ps)), nil
	}
	blocked, err := xfrmDefaultsBlock()
	if err != nil {
		return "", err
	}
	if blocked != "" {
		return "IPsec (xfrm) default policy blocks " + blocked, nil
	}
	return "", nil
}

// xfrmDefaultsBlock lists the directions (in, fwd, out) whose default
// policy is block ("" none).
func xfrmDefaultsBlock() (string, error) {
	c, err := mdnetlink.Dial(unix.NETLINK_XFRM, nil)
	if err != nil {
		return "", fmt.Errorf("xfrm netlink: %w", err)
	}
	defer c.Close()
	msgs, err := c.Execute(mdnetlink.Message{
		Header: mdnetlink.Header{Type: xfrmMsgGetDefault, Flags: mdnetlink.Request},
		Data:   make([]byte, 4), // struct xfrm_userpolicy_default, padded
	})
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
		return "", nil // a kernel before default policies (5.16)
	}
	if err != nil {
		return "", fmt.Errorf("read IPsec default policies: %w", err)
	}
	out := ""
	for _, m := range msgs {
		if len(m.Data) < 3 {
			continue
		}
		for i, dir := range []string{"in", "fwd", "out"} {
			if m.Data[i] == xfrmPolicyBlock {
				if out != "" {
					out += ", "
				}
				out += dir
			}
		}
	}
	return out, nil
}

// watchXfrm signals every IPsec policy change (policies and defaults).
// A kernel without XFRM netlink has nothing to watch.
func watchXfrm(ctx context.Context, log *slog.Logger, stats *watchStats, out chan struct{}) error {
	c, err := mdnetlink.Dial(unix.NETLINK_XFRM, nil)
	if errors.Is(err, unix.EPROTONOSUPPORT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("xfrm netlink: %w", err)
	}
	if err := c.JoinGroup(xfrmGroupPolicy); err != nil {
		c.Close()
		return fmt.Errorf("join xfrm policy group: %w", err)
	}
	listen(ctx, log, stats, "xfrm", func() error { _, err := c.Receive(); return err }, c.Close, out)
	return nil
}
