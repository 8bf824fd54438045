package daemon

import (
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/datapath"
)

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

// liberalRequest builds the ctnetlink update that sets BE_LIBERAL on both
// directions of the connection the flow belongs to. Without NLM_F_CREATE it
// only updates an existing entry.
func liberalRequest(f datapath.Flow) (netlink.Message, error) {
	t := f.In
	which, family := uint16(ctaTupleOrig), netfilter.ProtoIPv4
	if f.Reply {
		which = ctaTupleReply
	}
	src, dst := uint16(ctaIPv4Src), uint16(ctaIPv4Dst)
	if t.Src.Addr().Is6() {
		src, dst, family = ctaIPv6Src, ctaIPv6Dst, netfilter.ProtoIPv6
	}
	// struct nf_ct_tcp_flags {flags, mask}: set BE_LIBERAL, clear MAXACK_SET
	flags := []byte{tcpFlagBeLiberal, tcpFlagBeLiberal | tcpFlagMaxAckSet}
	attrs := []netfilter.Attribute{
		{Type: which, Nested: true, Children: []netfilter.Attribute{
			{Type: ctaTupleIP, Nested: true, Children: []netfilter.Attribute{
				{Type: src, Data: t.Src.Addr().AsSlice()},
				{Type: dst, Data: t.Dst.Addr().AsSlice()},
			}},
			{Type: ctaTupleProto, Nested: true, Children: []netfilter.Attribute{
				{Type: ctaProtoNum, Data: []byte{t.Proto}},
				{Type: ctaProtoSrcPort, Data: netfilter.Uint16Bytes(t.Src.Port())},
				{Type: ctaProtoDstPort, Data: netfilter.Uint16Bytes(t.Dst.Port())},
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

// setLiberal applies liberalRequest. An entry that is already gone is fine:
// its flow is being evicted anyway.
func setLiberal(c *netfilter.Conn, f datapath.Flow) error {
	if f.In.Proto != unix.IPPROTO_TCP {
		return nil
	}
	req, err := liberalRequest(f)
	if err != nil {
		return err
	}
	if _, err := c.Query(req); err != nil {
		if isNotExist(err) {
			return nil
		}
		return fmt.Errorf("make conntrack entry %s -> %s window-liberal: %w", f.In.Src, f.In.Dst, err)
	}
	return nil
}

func isNotExist(err error) bool {
	var oe *netlink.OpError
	return errors.As(err, &oe) && errors.Is(oe.Err, unix.ENOENT)
}
