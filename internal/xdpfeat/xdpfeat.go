// Package xdpfeat asks the kernel what XDP a network device supports, using
// the "netdev" generic netlink family (Linux 6.3+). This is the kernel's own
// answer, e.g. a veth can receive redirected XDP frames only while its peer
// has an XDP program or GRO on, and the NDO_XMIT bit follows that live.
package xdpfeat

import (
	"context"
	"fmt"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nlenc"
)

// Features is the NETDEV_A_DEV_XDP_FEATURES bit set (enum netdev_xdp_act).
type Features uint64

const (
	Basic     Features = 1 << 0 // XDP_PASS/DROP/ABORTED/TX in the driver: native XDP
	Redirect  Features = 1 << 1 // the driver can redirect frames it received
	NDOXmit   Features = 1 << 2 // the device can transmit frames redirected to it
	XSKZeroCp Features = 1 << 3
	HWOffload Features = 1 << 4
	RXSG      Features = 1 << 5
	NDOXmitSG Features = 1 << 6
)

// NativeXDP reports whether an XDP program can run in the driver.
func (f Features) NativeXDP() bool { return f&Basic != 0 }

// RedirectTarget reports whether XDP frames redirected to the device are
// transmitted (otherwise the kernel drops them).
func (f Features) RedirectTarget() bool { return f&NDOXmit != 0 }

const (
	familyName    = "netdev"
	mcastGroup    = "mgmt"
	cmdDevGet     = 1
	cmdDevAddNtf  = 2
	cmdDevDelNtf  = 3
	cmdDevChgNtf  = 4
	attrIfindex   = 1
	attrXDPFeats  = 3
	errNoFamilyFm = "kernel has no %q generic netlink family (needs Linux 6.3 or later): %w"
)

// Querier answers feature questions; safe for concurrent use.
type Querier struct {
	conn   *genetlink.Conn
	family genetlink.Family
}

// Open connects to the netdev family in the caller's network namespace.
func Open() (*Querier, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("dial generic netlink: %w", err)
	}
	f, err := c.GetFamily(familyName)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf(errNoFamilyFm, familyName, err)
	}
	return &Querier{conn: c, family: f}, nil
}

// Close closes the netlink socket.
func (q *Querier) Close() error { return q.conn.Close() }

// Get returns the XDP features of the device with the given ifindex.
func (q *Querier) Get(ifindex int) (Features, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(attrIfindex, uint32(ifindex))
	b, err := ae.Encode()
	if err != nil {
		return 0, err
	}
	msgs, err := q.conn.Execute(genetlink.Message{
		Header: genetlink.Header{Command: cmdDevGet, Version: q.family.Version},
		Data:   b,
	}, q.family.ID, netlink.Request)
	if err != nil {
		return 0, fmt.Errorf("query xdp features of ifindex %d: %w", ifindex, err)
	}
	for _, m := range msgs {
		if f, ok := decode(m.Data); ok {
			return f, nil
		}
	}
	return 0, fmt.Errorf("query xdp features of ifindex %d: no features in kernel answer", ifindex)
}

func decode(b []byte) (Features, bool) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return 0, false
	}
	for ad.Next() {
		if ad.Type() == attrXDPFeats && len(ad.Bytes()) == 8 {
			return Features(nlenc.Uint64(ad.Bytes())), true
		}
	}
	return 0, false
}

// Watch reports, by ifindex, devices whose XDP features may have changed
// (added, removed, changed). The channel closes when ctx ends or the socket
// fails; callers should resynchronise then, not trust it blindly.
func Watch(ctx context.Context) (<-chan int, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("dial generic netlink: %w", err)
	}
	f, err := c.GetFamily(familyName)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf(errNoFamilyFm, familyName, err)
	}
	var group uint32
	for _, g := range f.Groups {
		if g.Name == mcastGroup {
			group = g.ID
		}
	}
	if group == 0 {
		c.Close()
		return nil, fmt.Errorf("netdev family has no %q multicast group", mcastGroup)
	}
	if err := c.JoinGroup(group); err != nil {
		c.Close()
		return nil, fmt.Errorf("join netdev %s group: %w", mcastGroup, err)
	}
	out := make(chan int, 64)
	go func() {
		<-ctx.Done()
		c.Close() // unblocks Receive
	}()
	go func() {
		defer close(out)
		for {
			msgs, _, err := c.Receive()
			if err != nil {
				return // closed by ctx, or a socket error: the channel closing says so
			}
			for _, m := range msgs {
				switch m.Header.Command {
				case cmdDevAddNtf, cmdDevDelNtf, cmdDevChgNtf:
				default:
					continue
				}
				if idx, ok := ifindexOf(m.Data); ok {
					select {
					case out <- idx:
					case <-ctx.Done():
						return
					}
				}
			}
		}
	}()
	return out, nil
}

func ifindexOf(b []byte) (int, bool) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return 0, false
	}
	for ad.Next() {
		if ad.Type() == attrIfindex {
			return int(ad.Uint32()), true
		}
	}
	return 0, false
}
