package netwatch

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// DeviceHooks are the nftables base chains bound to one device: "family
// table chain" names, sorted.
type DeviceHooks struct {
	Ingress []string // netdev or inet ingress: runs after tc ingress, so no redirect at ingress reaches it
	Egress  []string // netdev egress: skipped by XDP redirects and by tc ingress redirects alike
}

// Hook numbers of the device-bound chains (linux/netfilter.h): the netdev
// family's ingress and egress, the inet family's ingress.
const (
	nftaHookDevs    = 4 // NFTA_HOOK_DEVS, not in x/sys: a chain bound to several devices
	nfNetdevIngress = 0
	nfNetdevEgress  = 1
	nfInetIngress   = 5
)

// NFTDeviceHooks lists the nftables chains bound to devices, by device name,
// in the calling thread's network namespace. A packet that fastpath
// redirects skips them (the kernel runs them around tc), so an interface
// named here must leave its packets to the kernel on that side.
func NFTDeviceHooks() (map[string]DeviceHooks, error) {
	chains, err := dumpChains()
	if err != nil {
		return nil, err
	}
	out := map[string]DeviceHooks{}
	for _, ch := range chains {
		ch.addTo(out)
	}
	for dev, dh := range out {
		sort.Strings(dh.Ingress)
		sort.Strings(dh.Egress)
		out[dev] = dh
	}
	return out, nil
}

// Where fastpath's netfilter hooks sit: an IPv4, IPv6 or inet postrouting
// chain at LateChainPriority or above may run after the verdict hook
// (math.MaxInt32-1, or -2 while a successor replaces it), which then cannot
// see what it drops; a prerouting chain at EarlyChainPriority or below may
// run before the arrival hook (math.MinInt32+1, or +2), which then notes a
// packet as that chain left it.
const (
	LateChainPriority  = math.MaxInt32 - 2
	EarlyChainPriority = math.MinInt32 + 2
)

// NFTUnseenChains lists ("family table chain hook priority N", sorted) the
// nftables chains outside fastpath's hooks (LateChainPriority,
// EarlyChainPriority), in the calling thread's network namespace.
func NFTUnseenChains() ([]string, error) {
	chains, err := dumpChains()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ch := range chains {
		switch ch.family {
		case unix.NFPROTO_IPV4, unix.NFPROTO_IPV6, unix.NFPROTO_INET:
		default:
			continue
		}
		switch {
		case !ch.hasHook:
		case ch.hook == unix.NF_INET_POST_ROUTING && ch.priority >= LateChainPriority:
			out = append(out, fmt.Sprintf("%s %s %s postrouting priority %d", familyName(ch.family), ch.table, ch.name, ch.priority))
		case ch.hook == unix.NF_INET_PRE_ROUTING && ch.priority <= EarlyChainPriority:
			out = append(out, fmt.Sprintf("%s %s %s prerouting priority %d", familyName(ch.family), ch.table, ch.name, ch.priority))
		}
	}
	sort.Strings(out)
	return out, nil
}

// dumpChains reads every nftables chain's hook. github.com/google/nftables
// does not decode a chain's device, so the chains are dumped here with
// nfnetlink directly.
func dumpChains() ([]chainHook, error) {
	c, err := netfilter.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("nfnetlink: %w", err)
	}
	defer c.Close()
	req, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysNFTables,
		MessageType: netfilter.MessageType(unix.NFT_MSG_GETCHAIN),
		Family:      netfilter.ProtoUnspec,
		Flags:       netlink.Request | netlink.Dump,
	}, nil)
	if err != nil {
		return nil, err
	}
	msgs, err := c.Query(req)
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	var out []chainHook
	for _, m := range msgs {
		h, attrs, err := netfilter.UnmarshalNetlink(m)
		if err != nil {
			return nil, fmt.Errorf("decode nftables chain: %w", err)
		}
		ch, err := decodeChain(uint8(h.Family), attrs)
		if err != nil {
			return nil, err
		}
		out = append(out, ch)
	}
	return out, nil
}

// chainHook is what decodeChain keeps of one chain.
type chainHook struct {
	family      uint8
	table, name string
	hook        uint32
	priority    int32
	hasHook     bool
	devices     []string
}

func decodeChain(family uint8, attrs []netfilter.Attribute) (chainHook, error) {
	ch := chainHook{family: family}
	for _, a := range attrs {
		switch a.Type {
		case unix.NFTA_CHAIN_TABLE:
			ch.table = cString(a.Data)
		case unix.NFTA_CHAIN_NAME:
			ch.name = cString(a.Data)
		case unix.NFTA_CHAIN_HOOK:
			hook, err := children(a)
			if err != nil {
				return ch, fmt.Errorf("nftables chain %s: %w", ch.name, err)
			}
			for _, ha := range hook {
				switch ha.Type {
				case unix.NFTA_HOOK_HOOKNUM:
					if len(ha.Data) != 4 {
						return ch, fmt.Errorf("nftables chain %s: hook number of %d bytes", ch.name, len(ha.Data))
					}
					ch.hook, ch.hasHook = binary.BigEndian.Uint32(ha.Data), true
				case unix.NFTA_HOOK_PRIORITY:
					if len(ha.Data) != 4 {
						return ch, fmt.Errorf("nftables chain %s: hook priority of %d bytes", ch.name, len(ha.Data))
					}
					ch.priority = int32(binary.BigEndian.Uint32(ha.Data))
				case unix.NFTA_HOOK_DEV: // newer kernels send DEVS as well, with the same device
					if len(ch.devices) == 0 {
						ch.devices = []string{cString(ha.Data)}
					}
				case nftaHookDevs:
					devs, err := children(ha)
					if err != nil {
						return ch, fmt.Errorf("nftables chain %s: %w", ch.name, err)
					}
					ch.devices = ch.devices[:0]
					for _, d := range devs {
						ch.devices = append(ch.devices, cString(d.Data))
					}
				}
			}
		}
	}
	return ch, nil
}

// children decodes a nested attribute; nf_tables nests without setting
// NLA_F_NESTED, so the library leaves the payload undecoded.
func children(a netfilter.Attribute) ([]netfilter.Attribute, error) {
	if a.Nested {
		return a.Children, nil
	}
	return netfilter.UnmarshalAttributes(a.Data)
}

func (ch chainHook) addTo(out map[string]DeviceHooks) {
	if !ch.hasHook || len(ch.devices) == 0 {
		return
	}
	ingress := (ch.family == unix.NFPROTO_NETDEV && ch.hook == nfNetdevIngress) ||
		(ch.family == unix.NFPROTO_INET && ch.hook == nfInetIngress)
	egress := ch.family == unix.NFPROTO_NETDEV && ch.hook == nfNetdevEgress
	if !ingress && !egress {
		return
	}
	name := fmt.Sprintf("%s %s %s", familyName(ch.family), ch.table, ch.name)
	for _, dev := range ch.devices {
		dh := out[dev]
		if ingress {
			dh.Ingress = append(dh.Ingress, name)
		} else {
			dh.Egress = append(dh.Egress, name)
		}
		out[dev] = dh
	}
}

func familyName(f uint8) string {
	switch f {
	case unix.NFPROTO_NETDEV:
		return "netdev"
	case unix.NFPROTO_INET:
		return "inet"
	case unix.NFPROTO_IPV4:
		return "ip"
	case unix.NFPROTO_IPV6:
		return "ip6"
	}
	return fmt.Sprintf("family-%d", f)
}

func cString(b []byte) string { return strings.TrimRight(string(b), "\x00") }
