// Package ctliberal makes the conntrack entry of a TCP flow window-liberal
// through ctnetlink, before fastpath offloads the flow (the datapath
// offloads a TCP flow only once its entry is liberal in both directions).
//
// Once a TCP flow is offloaded, conntrack no longer sees its segments, so
// its window tracking falls behind. A later packet of the flow that goes
// through the kernel (the FIN, or any packet after an eviction) would look
// out of window: conntrack would call it INVALID and NAT would not apply,
// leaking the private address. As nftables' flowtable does, the entry is
// made window-liberal in both directions when it is offloaded. Its
// IP_CT_TCP_FLAG_MAXACK_SET is cleared too (as flowtable's teardown does):
// otherwise conntrack checks a closing RST against an ack it saw long ago,
// keeps the entry ESTABLISHED and only shortens its timeout. ctnetlink can
// change just these flags; ti-mo/conntrack's Update would also rewrite the
// TCP state and window scales, racing with the kernel.
package ctliberal

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// ctnetlink attribute numbers (include/uapi/linux/netfilter/nfnetlink_conntrack.h)
const (
	ctaTupleOrig             = 1
	ctaTupleReply            = 2
	ctaProtoInfo             = 4
	ctaTupleIP               = 1
	ctaTupleProto            = 2
	ctaIPv4Src               = 1
	ctaIPv4Dst               = 2
	ctaIPv6Src               = 3
	ctaIPv6Dst               = 4
	ctaProtoNum              = 1
	ctaProtoSrcPort          = 2
	ctaProtoDstPort          = 3
	ctaProtoInfoTCP          = 1
	ctaProtoInfoTCPFlagsOrig = 4
	ctaProtoInfoTCPFlagsRepl = 5
	ipctnlMsgCtNew           = 0
	tcpFlagBeLiberal         = 0x08 // IP_CT_TCP_FLAG_BE_LIBERAL
	tcpFlagMaxAckSet         = 0x20 // IP_CT_TCP_FLAG_MAXACK_SET
)

// Request builds the ctnetlink update that sets BE_LIBERAL on both
// directions of the connection whose tuple in one direction is proto, src,
// dst (reply: the reply direction's). Without NLM_F_CREATE it only updates
// an existing entry.
func Request(proto uint8, src, dst netip.AddrPort, reply bool) (netlink.Message, error) {
	// struct nf_ct_tcp_flags {flags, mask}: set BE_LIBERAL, clear MAXACK_SET
	return request(proto, src, dst, reply, []byte{tcpFlagBeLiberal, tcpFlagBeLiberal | tcpFlagMaxAckSet})
}

func request(proto uint8, src, dst netip.AddrPort, reply bool, flags []byte) (netlink.Message, error) {
	which, family := uint16(ctaTupleOrig), netfilter.ProtoIPv4
	if reply {
		which = ctaTupleReply
	}
	srcAttr, dstAttr := uint16(ctaIPv4Src), uint16(ctaIPv4Dst)
	if src.Addr().Is6() {
		srcAttr, dstAttr, family = ctaIPv6Src, ctaIPv6Dst, netfilter.ProtoIPv6
	}
	attrs := []netfilter.Attribute{
		{Type: which, Nested: true, Children: []netfilter.Attribute{
			{Type: ctaTupleIP, Nested: true, Children: []netfilter.Attribute{
				{Type: srcAttr, Data: src.Addr().AsSlice()},
				{Type: dstAttr, Data: dst.Addr().AsSlice()},
			}},
			{Type: ctaTupleProto, Nested: true, Children: []netfilter.Attribute{
				{Type: ctaProtoNum, Data: []byte{proto}},
				{Type: ctaProtoSrcPort, Data: netfilter.Uint16Bytes(src.Port())},
				{Type: ctaProtoDstPort, Data: netfilter.Uint16Bytes(dst.Port())},
			}},
		}},
		{Type: ctaProtoInfo, Nested: true, Children: []netfilter.Attribute{
			{Type: ctaProtoInfoTCP, Nested: true, Children: []netfilter.Attribute{
				{Type: ctaProtoInfoTCPFlagsOrig, Data: flags},
				{Type: ctaProtoInfoTCPFlagsRepl, Data: flags},
			}},
		}},
	}
	return netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink,
		MessageType: netfilter.MessageType(ipctnlMsgCtNew),
		Family:      family,
		Flags:       netlink.Request | netlink.Acknowledge,
	}, attrs)
}

// Conn is a ctnetlink socket for these updates. The events the kernel
// sends for them carry its PID (see PID), so a listener can tell them from
// changes others make.
type Conn struct {
	c *netlink.Conn
}

// Dial opens a Conn in the calling thread's network namespace.
func Dial() (*Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("ctnetlink: %w", err)
	}
	return &Conn{c: c}, nil
}

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }

// PID is the socket's netlink port ID: conntrack events caused by its
// updates carry it in their header.
func (c *Conn) PID() uint32 { return c.c.PID() }

// Set applies Request (TCP only; other protocols have nothing to set). An
// entry that is already gone is fine: its flow is being evicted anyway.
func (c *Conn) Set(proto uint8, src, dst netip.AddrPort, reply bool) error {
	return c.apply(proto, src, dst, reply, true)
}

// Clear undoes Set: the entry tracks windows again (entries that ctnetlink
// creates in ESTABLISHED start liberal; tests need the other kind too).
func (c *Conn) Clear(proto uint8, src, dst netip.AddrPort, reply bool) error {
	return c.apply(proto, src, dst, reply, false)
}

func (c *Conn) apply(proto uint8, src, dst netip.AddrPort, reply, liberal bool) error {
	if proto != unix.IPPROTO_TCP {
		return nil
	}
	req, err := Request(proto, src, dst, reply)
	if !liberal {
		req, err = request(proto, src, dst, reply, []byte{0, tcpFlagBeLiberal})
	}
	if err != nil {
		return err
	}
	if _, err := c.c.Execute(req); err != nil {
		if isNotExist(err) {
			return nil
		}
		return fmt.Errorf("make conntrack entry %s -> %s window-liberal: %w", src, dst, err)
	}
	return nil
}

func isNotExist(err error) bool {
	var oe *netlink.OpError
	return errors.As(err, &oe) && errors.Is(oe.Err, unix.ENOENT)
}
