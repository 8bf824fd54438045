// Package lab builds a three-namespace test network on one machine:
//
//	gen [g0] <--veth--> [r0] rtr [r1] <--veth--> [s0] sink
//	198.18.1.1/24    198.18.1.254/24  198.18.2.254/24   198.18.2.1/24
//	fd00:1::1/64     fd00:1::fe/64    fd00:2::fe/64     fd00:2::1/64
//
// gen and sink are end hosts with default routes via rtr; rtr forwards IPv4
// and IPv6. With Options.R2 the router has a third interface towards a
// second sink-side host, for tests that move flows between egresses:
//
//	rtr [r2] <--veth--> [s2] sink2
//	198.18.3.254/24     198.18.3.1/24
//	fd00:3::fe/64       fd00:3::1/64
//
// fastpath runs in rtr. `fastpath lab`, `fastpath demo`, the
// integration tests and the benchmark all use it. Addresses come only from
// the benchmarking range 198.18.0.0/15 and the ULA range fd00::/8, and
// nothing is ever created in, or changed on, the host's own namespace.
package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// DefaultName is the lab name used when Options.Name is empty.
const DefaultName = "lab"

// Interface names, the same in every lab (each lives in its own namespace).
const (
	GenIf  = "g0"
	RtrIn  = "r0"
	RtrOut = "r1"
	SinkIf = "s0"
	// With Options.R2 only.
	RtrOut2 = "r2"
	Sink2If = "s2"
)

// Prefix lengths of the two segments.
const (
	prefixLen4 = 24
	prefixLen6 = 64
)

// linkUpTimeout bounds the wait for the veths' carrier.
const linkUpTimeout = 2 * time.Second

// Options configure Up.
type Options struct {
	// Name of the lab, default "lab": 1 to 8 characters from [a-z0-9-].
	// The namespaces are fp-<name>-gen, fp-<name>-rtr and fp-<name>-sink.
	Name string
	// Log receives progress at debug level; nil discards it.
	Log *slog.Logger
	// HostTxChecksumOff turns tx checksum offload (and so TSO) off on gen
	// and sink. By default the end hosts keep their defaults, as every
	// container and VM does: their stacks then send CHECKSUM_PARTIAL
	// frames, which native XDP cannot forward (attach: auto picks TC).
	HostTxChecksumOff bool
	// R2 adds the router's third interface r2 and the namespace
	// fp-<name>-sk2 behind it (see the package comment).
	R2 bool
	// Queues gives each veth end that many receive and transmit queues
	// (default 1, veth's own default). A frame sent by XDP into a veth
	// lands on the receive queue of the sending CPU, and that queue's
	// NAPI runs on it: two queues let two CPUs receive on one interface,
	// as RSS spreads a NIC's.
	Queues int
}

// Lab describes a lab's namespaces, interfaces and addresses.
type Lab struct {
	Name string

	Gen, Rtr, Sink string // netns names

	GenIf, RtrIn, RtrOut, SinkIf string // "g0", "r0", "r1", "s0"

	GenAddr4, RtrInAddr4, RtrOutAddr4, SinkAddr4 netip.Addr // /24 each side
	GenAddr6, RtrInAddr6, RtrOutAddr6, SinkAddr6 netip.Addr // /64 each side

	// The third segment, set only in a lab built with Options.R2 (Sink2
	// is "" otherwise); the addresses are the fixed layout's either way.
	Sink2                    string
	RtrOut2, Sink2If         string // "r2", "s2"
	RtrOut2Addr4, Sink2Addr4 netip.Addr
	RtrOut2Addr6, Sink2Addr6 netip.Addr
}

// ValidateName checks a lab name: 1 to 8 characters from [a-z0-9-], which
// keeps the namespace names short and safe to pass to shells and files.
func ValidateName(name string) error {
	if len(name) < 1 || len(name) > 8 {
		return fmt.Errorf("invalid lab name %q: want 1 to 8 characters", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("invalid lab name %q: only a-z, 0-9 and '-' are allowed", name)
		}
	}
	return nil
}

// describe returns the fixed layout of lab name; it checks nothing.
func describe(name string) *Lab {
	return &Lab{
		Name:   name,
		Gen:    "fp-" + name + "-gen",
		Rtr:    "fp-" + name + "-rtr",
		Sink:   "fp-" + name + "-sink",
		GenIf:  GenIf,
		RtrIn:  RtrIn,
		RtrOut: RtrOut,
		SinkIf: SinkIf,

		GenAddr4:    netip.MustParseAddr("198.18.1.1"),
		RtrInAddr4:  netip.MustParseAddr("198.18.1.254"),
		RtrOutAddr4: netip.MustParseAddr("198.18.2.254"),
		SinkAddr4:   netip.MustParseAddr("198.18.2.1"),
		GenAddr6:    netip.MustParseAddr("fd00:1::1"),
		RtrInAddr6:  netip.MustParseAddr("fd00:1::fe"),
		RtrOutAddr6: netip.MustParseAddr("fd00:2::fe"),
		SinkAddr6:   netip.MustParseAddr("fd00:2::1"),

		RtrOut2:      RtrOut2,
		Sink2If:      Sink2If,
		RtrOut2Addr4: netip.MustParseAddr("198.18.3.254"),
		Sink2Addr4:   netip.MustParseAddr("198.18.3.1"),
		RtrOut2Addr6: netip.MustParseAddr("fd00:3::fe"),
		Sink2Addr6:   netip.MustParseAddr("fd00:3::1"),
	}
}

// sink2Name is the namespace behind r2 in lab name.
func sink2Name(name string) string { return "fp-" + name + "-sk2" }

// Namespaces returns the lab's namespace names: gen, rtr, sink, and sink2
// in a lab with r2.
func (l *Lab) Namespaces() []string {
	if l.Sink2 != "" {
		return []string{l.Gen, l.Rtr, l.Sink, l.Sink2}
	}
	return []string{l.Gen, l.Rtr, l.Sink}
}

// Command returns a command that runs name with args inside namespace netns
// (one of l.Gen, l.Rtr, l.Sink) via `ip netns exec`.
func (l *Lab) Command(ctx context.Context, netns string, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", netns, name}, args...)...)
}

func nameOrDefault(name string) string {
	if name == "" {
		return DefaultName
	}
	return name
}

// Get describes the existing lab name; it fails unless all three of its
// namespaces exist.
func Get(name string) (*Lab, error) {
	name = nameOrDefault(name)
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	l := describe(name)
	var missing []string
	for _, ns := range l.Namespaces() {
		if !nsutil.Exists(ns) {
			missing = append(missing, ns)
		}
	}
	switch len(missing) {
	case 0:
		if nsutil.Exists(sink2Name(name)) {
			l.Sink2 = sink2Name(name)
		}
		return l, nil
	case 3:
		return nil, fmt.Errorf("lab %s does not exist: run `fastpath lab up --name %s`", name, name)
	default:
		return nil, fmt.Errorf("lab %s is incomplete (missing %v): run `fastpath lab down --name %s`", name, missing, name)
	}
}

// Exists reports whether any namespace of lab name exists (all of them or
// a part, which Down removes too).
func Exists(name string) bool {
	return slices.ContainsFunc(describe(nameOrDefault(name)).Namespaces(), nsutil.Exists)
}

// Down removes lab name: its three namespaces, and with them the veths. A
// lab that does not exist, or exists only in part, is not an error.
func Down(name string) error {
	name = nameOrDefault(name)
	if err := ValidateName(name); err != nil {
		return err
	}
	// sink2 too, whether or not the lab was built with r2.
	return deleteAll(append(describe(name).Namespaces(), sink2Name(name)))
}

func deleteAll(names []string) error {
	var errs []error
	for _, ns := range names {
		if err := nsutil.Delete(ns); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove lab namespaces: %w", err)
	}
	return nil
}

// Up creates the lab described in the package comment and returns it ready
// to carry traffic. It fails if any of the lab's namespaces already exists.
// On failure, including a cancelled ctx, it removes whatever it created.
func Up(ctx context.Context, o Options) (_ *Lab, err error) {
	name := nameOrDefault(o.Name)
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if o.Queues < 0 || o.Queues > maxQueues {
		return nil, fmt.Errorf("lab %s: %d queues outside 1..%d (0: veth's default, one)", name, o.Queues, maxQueues)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("lab", name)
	l := describe(name)
	if o.R2 {
		l.Sink2 = sink2Name(name)
	}
	for _, ns := range append(l.Namespaces(), sink2Name(name)) {
		if nsutil.Exists(ns) {
			return nil, fmt.Errorf("lab %s already exists: run `fastpath lab down --name %s`", name, name)
		}
	}

	start := time.Now()
	var created []string
	defer func() {
		if err == nil {
			return
		}
		if derr := deleteAll(created); derr != nil {
			err = errors.Join(err, fmt.Errorf("clean up after failed lab up: %w", derr))
		}
	}()
	for _, ns := range l.Namespaces() {
		if err := nsutil.Create(ns); err != nil {
			return nil, fmt.Errorf("lab %s: %w", name, err)
		}
		created = append(created, ns)
	}
	if err := l.setup(ctx, log, o); err != nil {
		return nil, fmt.Errorf("lab %s: %w", name, err)
	}
	log.Debug("lab up", "took", time.Since(start))
	return l, nil
}

// host is one namespace being configured: a netlink handle whose sockets
// live in it, and an fd naming it (for creating veth ends there).
type host struct {
	ns string
	h  *netlink.Handle
	fd netns.NsHandle
}

func openHost(ns string) (*host, error) {
	fd, err := netns.GetFromPath(nsutil.Path(ns))
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", ns, err)
	}
	var h *netlink.Handle
	// The handle's sockets are created inside the namespace, so every
	// request through it applies there, whichever thread sends it.
	if err := nsutil.Do(ns, func() error {
		var err error
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	}); err != nil {
		fd.Close()
		return nil, fmt.Errorf("netlink handle in %s: %w", ns, err)
	}
	return &host{ns: ns, h: h, fd: fd}, nil
}

func (x *host) close() {
	x.h.Close()
	x.fd.Close()
}

// maxQueues bounds Options.Queues (veth allows up to 4096; a lab needs few).
const maxQueues = 64

func (l *Lab) setup(ctx context.Context, log *slog.Logger, o Options) error {
	hosts := map[string]*host{}
	defer func() {
		for _, x := range hosts {
			x.close()
		}
	}()
	for _, ns := range l.Namespaces() {
		// No DAD anywhere, also for the link-local addresses the kernel
		// adds by itself: nothing to wait for, and these are private links.
		if err := writeSysctls(ns, map[string]string{
			"net/ipv6/conf/default/accept_dad": "0",
			"net/ipv6/conf/all/accept_dad":     "0",
		}); err != nil {
			return err
		}
		x, err := openHost(ns)
		if err != nil {
			return err
		}
		hosts[ns] = x
	}
	gen, rtr, sink := hosts[l.Gen], hosts[l.Rtr], hosts[l.Sink]
	type pair struct {
		local, peer string
		peerHost    *host
	}
	pairs := []pair{{l.RtrIn, l.GenIf, gen}, {l.RtrOut, l.SinkIf, sink}}
	type end struct {
		x     *host
		ifc   string
		a4    netip.Addr
		a6    netip.Addr
		gw4   netip.Addr // zero for rtr: it has connected routes only
		gw6   netip.Addr
		isEnd bool
	}
	ends := []end{
		{gen, l.GenIf, l.GenAddr4, l.GenAddr6, l.RtrInAddr4, l.RtrInAddr6, true},
		{rtr, l.RtrIn, l.RtrInAddr4, l.RtrInAddr6, netip.Addr{}, netip.Addr{}, false},
		{rtr, l.RtrOut, l.RtrOutAddr4, l.RtrOutAddr6, netip.Addr{}, netip.Addr{}, false},
		{sink, l.SinkIf, l.SinkAddr4, l.SinkAddr6, l.RtrOutAddr4, l.RtrOutAddr6, true},
	}
	if l.Sink2 != "" {
		sink2 := hosts[l.Sink2]
		pairs = append(pairs, pair{l.RtrOut2, l.Sink2If, sink2})
		ends = append(ends,
			end{rtr, l.RtrOut2, l.RtrOut2Addr4, l.RtrOut2Addr6, netip.Addr{}, netip.Addr{}, false},
			end{sink2, l.Sink2If, l.Sink2Addr4, l.Sink2Addr6, l.RtrOut2Addr4, l.RtrOut2Addr6, true})
	}

	// The request goes through rtr's handle and names the peer's namespace
	// by fd, so both ends are born where they belong and no interface ever
	// appears in the host namespace.
	for _, p := range pairs {
		v := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: p.local},
			PeerName:      p.peer,
			PeerNamespace: netlink.NsFd(p.peerHost.fd),
		}
		if q := o.Queues; q > 1 {
			v.NumTxQueues, v.NumRxQueues = q, q
			v.PeerNumTxQueues, v.PeerNumRxQueues = uint32(q), uint32(q)
		}
		if err := rtr.h.LinkAdd(v); err != nil {
			return fmt.Errorf("add veth %s/%s <-> %s/%s: %w", l.Rtr, p.local, p.peerHost.ns, p.peer, err)
		}
	}
	log.Debug("veths created")
	if err := ctx.Err(); err != nil {
		return err
	}

	links := map[string]netlink.Link{}
	for _, e := range ends {
		for _, ifc := range []string{"lo", e.ifc} {
			key := e.x.ns + "/" + ifc
			if _, ok := links[key]; ok {
				continue
			}
			ln, err := e.x.h.LinkByName(ifc)
			if err != nil {
				return fmt.Errorf("find %s: %w", key, err)
			}
			if err := e.x.h.LinkSetUp(ln); err != nil {
				return fmt.Errorf("set %s up: %w", key, err)
			}
			links[key] = ln
		}
		ln := links[e.x.ns+"/"+e.ifc]
		for _, a := range []struct {
			addr  netip.Addr
			bits  int
			flags int
		}{
			{e.a4, prefixLen4, 0},
			// NODAD: usable at once instead of tentative for a second.
			{e.a6, prefixLen6, unix.IFA_F_NODAD},
		} {
			addr := &netlink.Addr{IPNet: ipNet(a.addr, a.bits), Flags: a.flags}
			if err := e.x.h.AddrAdd(ln, addr); err != nil {
				return fmt.Errorf("add %s to %s/%s: %w", addr.IPNet, e.x.ns, e.ifc, err)
			}
		}
	}
	log.Debug("links up, addresses set")

	var veths []nsIf
	for _, e := range ends {
		veths = append(veths, nsIf{e.x.ns, e.ifc})
	}
	if err := waitCarrier(ctx, hosts, veths); err != nil {
		return err
	}

	for _, e := range ends {
		if !e.isEnd {
			continue
		}
		ln := links[e.x.ns+"/"+e.ifc]
		for _, gw := range []netip.Addr{e.gw4, e.gw6} {
			r := &netlink.Route{LinkIndex: ln.Attrs().Index, Gw: net.IP(gw.AsSlice())}
			if gw.Is4() {
				r.Dst = ipNet(netip.IPv4Unspecified(), 0)
			} else {
				r.Dst = ipNet(netip.IPv6Unspecified(), 0)
			}
			if err := e.x.h.RouteAdd(r); err != nil {
				return fmt.Errorf("add default route via %s in %s: %w", gw, e.x.ns, err)
			}
		}
	}
	log.Debug("routes set")

	if err := writeSysctls(l.Rtr, map[string]string{
		"net/ipv4/ip_forward":          "1",
		"net/ipv6/conf/all/forwarding": "1",
	}); err != nil {
		return err
	}

	for _, e := range ends {
		if !e.isEnd {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		// gro on: a veth only takes XDP-redirected frames when its peer
		// runs NAPI, which GRO (or an XDP program) on the peer enables;
		// the kernel then advertises NDO_XMIT in r0/r1's xdp_features.
		// tx off (only when asked): the end hosts' stacks then finish
		// their checksums, so native XDP can forward what they send.
		args := []string{"-K", e.ifc, "gro", "on"}
		if o.HostTxChecksumOff {
			args = append(args, "tx", "off")
		}
		cmd := l.Command(ctx, e.x.ns, "ethtool", args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("ethtool %s in %s: %w: %s", strings.Join(args, " "), e.x.ns, err, out)
		}
	}
	log.Debug("offloads set")
	return nil
}

// nsIf is an interface in a namespace.
type nsIf struct{ ns, ifc string }

// waitCarrier polls until all veth ends report lower-up (carrier), so
// traffic sent right after Up is not dropped by a link still coming up.
func waitCarrier(ctx context.Context, hosts map[string]*host, ends []nsIf) error {
	deadline := time.Now().Add(linkUpTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		var down []string
		for _, e := range ends {
			ln, err := hosts[e.ns].h.LinkByName(e.ifc)
			if err != nil {
				return fmt.Errorf("find %s/%s: %w", e.ns, e.ifc, err)
			}
			if ln.Attrs().RawFlags&unix.IFF_LOWER_UP == 0 {
				down = append(down, e.ns+"/"+e.ifc)
			}
		}
		if len(down) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("links without carrier after %s: %v", linkUpTimeout, down)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// writeSysctls writes /proc/sys entries inside namespace ns: /proc/sys/net
// shows the namespace of the thread that opens the file.
func writeSysctls(ns string, kv map[string]string) error {
	return nsutil.Do(ns, func() error {
		for k, v := range kv {
			p := filepath.Join("/proc/sys", k)
			if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
				return fmt.Errorf("set %s=%s in %s: %w", k, v, ns, err)
			}
		}
		return nil
	})
}

func ipNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(bits, a.BitLen())}
}

// MasqueradeRuleset is what Masquerade installs in the router: source NAT
// of everything leaving towards the sink, IPv4 and IPv6, as a home or edge
// router does.
const MasqueradeRuleset = `table inet fastpath_lab {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "r1" masquerade
	}
}
`

// Masquerade makes the router masquerade traffic leaving towards the sink,
// so the sink sees the router's address (198.18.2.254 / fd00:2::fe).
func (l *Lab) Masquerade(ctx context.Context) error {
	cmd := l.Command(ctx, l.Rtr, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(MasqueradeRuleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("install masquerade in %s: %w: %s", l.Rtr, err, strings.TrimSpace(string(out)))
	}
	return nil
}
