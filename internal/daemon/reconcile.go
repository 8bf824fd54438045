package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/config"
	"github.com/fastpath-router/fastpath/internal/datapath"
	"github.com/fastpath-router/fastpath/internal/ethtool"
	"github.com/fastpath-router/fastpath/internal/eventhub"
	"github.com/fastpath-router/fastpath/internal/netwatch"
	"github.com/fastpath-router/fastpath/internal/vethpeer"
	"github.com/fastpath-router/fastpath/internal/xdpfeat"
)

// iface is one configured interface and what the daemon did with it.
type iface struct {
	cfg       config.Interface
	ifindex   int // 0 while missing
	mac       net.HardwareAddr
	mtu       int
	hook      datapath.Hook
	link      link.Link
	progID    uint32
	linkID    uint32
	xdpTarget bool
	targetSet bool   // xdpTarget was written to the datapath (an adopted map may hold anything)
	shaping   string // the operator's egress qdisc or filters, which XDP would skip ("" none)
	// nftables chains bound to the device (netwatch.NFTDeviceHooks), which
	// no redirect passes through: its packets go to the kernel (ingress),
	// it is no redirect's egress (egress).
	nf netwatch.DeviceHooks
	// gro is the TC program behind native XDP in offload mode, which XDP
	// hands bulk TCP to after GRO (datapath.HookTCGRO); groFlag tells XDP
	// it is there (set before it attaches, cleared after it leaves).
	gro     link.Link
	groFlag bool
	groOn   bool // the device merges received segments (GRO): else a TC program behind XDP only costs
	// declared is the mode written into the datapath ("" while not).
	declared config.Mode
	// mtu6 is net.ipv6.conf.IF.mtu when last read (0: no IPv6 on it).
	mtu6  int
	state string
	err   error
	// The hook decision: the kernel's view of the link when last seen, why
	// the hook is what it is, and the MTU at which native XDP refused to
	// attach (auto does not ask again until the MTU changes).
	nl            netlink.Link
	why           string
	xdpRefusedMTU int
	xdpRefused    string // why, as the attach said it
	// The veth peer when last read (readPeer): what it is, or why it could
	// not be read (vethpeer.ErrNotVeth for other links); whether it sends
	// its frames by XDP, and when its count of them last grew.
	peer       vethpeer.Peer
	peerErr    error
	peerRead   bool
	peerReadAt time.Time
	xdpFed     bool
	xdpFedAt   time.Time
}

func (ic *iface) managed() bool { return ic.cfg.Mode != config.ModeOff }

// reconciler makes the datapath match the config and the kernel's links.
// It is one goroutine's: start, then the main loop (every converge, the
// reloads' included), then the teardown. Others read status, a snapshot.
type reconciler struct {
	dp    dataplane
	feats featureSource
	peers peerSource
	// shaping reads an interface's egress shaping (netwatch.EgressShaping).
	shaping func(ifindex int) (string, error)
	// groOn reads whether a device has GRO on (ethtool.GRO).
	groOn func(name string) (bool, error)
	// ipv6MTU reads an interface's IPv6 MTU (0 if it has no IPv6).
	ipv6MTU func(name string) int
	// nfHooks lists the nftables chains bound to devices, by device name.
	nfHooks func() (map[string]netwatch.DeviceHooks, error)
	// xfrm and unseenChains read kernel state the datapath cannot follow
	// packet by packet (netwatch.XfrmPolicies, netwatch.NFTUnseenChains);
	// hold is what updateHolds last set.
	xfrm         func() (string, error)
	unseenChains func() ([]string, error)
	hold         datapath.Hold
	holdSet      bool                                    // hold is written: an adopted datapath may hold what no longer applies
	links        func() (map[string]netlink.Link, error) // the namespace's links by name
	now          func() time.Time
	log          *slog.Logger
	events       *eventhub.Hub
	ifaces       []*iface
	snap         atomic.Pointer[[]api.InterfaceStatus] // what status returns (publish)
}

// dataplane is what the reconciler changes in the datapath; the daemon
// passes a *datapath.Datapath, tests a fake.
type dataplane interface {
	SetIface(datapath.Iface) error
	RemoveIface(ifindex int) error
	SetXDPTarget(ifindex int, ok bool) error
	Attach(ifindex int, hook datapath.Hook) (link.Link, error)
	Detach(link.Link) error
	InvalidateRoutes() error
	SetHold(datapath.Hold) error
	Held() datapath.Hold
}

// featureSource answers what XDP a device supports (xdpfeat.Querier).
type featureSource interface {
	Get(ifindex int) (xdpfeat.Features, error)
}

// peerSource reads a veth's peer (vethpeer.Finder); vethpeer.ErrNotVeth
// for other links.
type peerSource interface {
	Lookup(netlink.Link) (vethpeer.Peer, error)
}

func newReconciler(cfg *config.Config, dp dataplane, feats featureSource, peers peerSource, events *eventhub.Hub, log *slog.Logger) *reconciler {
	r := &reconciler{dp: dp, feats: feats, peers: peers, shaping: netwatch.EgressShaping, nfHooks: netwatch.NFTDeviceHooks, xfrm: netwatch.XfrmPolicies, unseenChains: netwatch.NFTUnseenChains, ipv6MTU: netwatch.IPv6MTU, groOn: ethtool.GRO, links: linksByName, now: time.Now, log: log, events: events}
	for _, c := range cfg.Interfaces {
		st := api.StateMissing
		if c.Mode == config.ModeOff {
			st = api.StateOff
		}
		r.ifaces = append(r.ifaces, &iface{cfg: c, state: st})
	}
	r.publish()
	return r
}

func datapathMode(m config.Mode) datapath.Mode {
	switch m {
	case config.ModeRoute:
		return datapath.ModeRoute
	case config.ModeOffload:
		return datapath.ModeOffload
	}
	return datapath.ModeOff
}

// linksByName lists the namespace's links, retrying a dump the kernel
// interrupted because links changed meanwhile.
func linksByName() (map[string]netlink.Link, error) {
	var (
		links []netlink.Link
		err   error
	)
	for range 5 {
		links, err = netlink.LinkList()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	m := make(map[string]netlink.Link, len(links))
	for _, l := range links {
		m[l.Attrs().Name] = l
	}
	return m, nil
}

func checkEthernet(l netlink.Link) error {
	if l.Attrs().EncapType != "ether" || len(l.Attrs().HardwareAddr) != 6 {
		return fmt.Errorf("not an ethernet device (link type %s): fastpath forwards ethernet frames only", l.Attrs().EncapType)
	}
	return nil
}

// declare writes the interface into the datapath maps (mode, MAC, MTU).
func (r *reconciler) declare(ic *iface, l netlink.Link) error {
	a := l.Attrs()
	if err := r.writeIface(ic, l); err != nil {
		return err
	}
	ic.ifindex, ic.declared = a.Index, ic.cfg.Mode
	ic.mtu6 = r.ipv6MTU(ic.cfg.Name)
	ic.mac = append(net.HardwareAddr(nil), a.HardwareAddr...)
	ic.mtu = a.MTU
	ic.nl = l
	// A new egress, MAC or MTU: cached flows must see it on their next packet
	r.invalidateRoutes()
	return nil
}

// writeIface writes ic's datapath entry; for a flag the packet path reads
// on every packet (the TC program behind XDP), nothing else is needed.
func (r *reconciler) writeIface(ic *iface, l netlink.Link) error {
	a := l.Attrs()
	err := r.dp.SetIface(datapath.Iface{Index: a.Index, MAC: a.HardwareAddr, MTU: a.MTU, Mode: datapathMode(ic.cfg.Mode),
		NFIngress: len(ic.nf.Ingress) > 0, NFEgress: len(ic.nf.Egress) > 0, GROTC: ic.groFlag})
	if err != nil {
		return fmt.Errorf("interface %s: %w", ic.cfg.Name, err)
	}
	return nil
}

// pollIPv6MTUs rereads the declared interfaces' IPv6 MTUs, of which the
// kernel sends no event, and re-routes cached flows when one changed: the
// FIB lookup of their next packet folds the new MTU in.
func (r *reconciler) pollIPv6MTUs() {
	changed := false
	for _, ic := range r.ifaces {
		if !ic.managed() || ic.ifindex == 0 {
			continue
		}
		if mtu := r.ipv6MTU(ic.cfg.Name); mtu != ic.mtu6 {
			r.log.Info("IPv6 MTU changed", "interface", ic.cfg.Name, "from", ic.mtu6, "to", mtu)
			ic.mtu6, changed = mtu, true
		}
	}
	if changed {
		r.invalidateRoutes()
	}
}

// updateHolds holds forwarding back while the kernel has state the
// datapath cannot follow packet by packet: IPsec policies, which decide
// after routing what is encrypted or dropped (everything goes to the
// kernel), and a netfilter chain after the verdict hook, whose drops the
// hook cannot see (offload mode goes to the kernel). What cannot be read
// keeps its last known hold.
func (r *reconciler) updateHolds() {
	h := r.hold
	if !r.holdSet {
		h = r.dp.Held() // an adopted datapath's: what cannot be read keeps it
	}
	if why, err := r.xfrm(); err != nil {
		r.log.Warn("IPsec policies unknown: the last known hold stays", "err", err)
	} else {
		h.All, h.AllWhy = "", ""
		if why != "" {
			h.All, h.AllWhy = "xfrm", why
		}
	}
	if unseen, err := r.unseenChains(); err != nil {
		r.log.Warn("nftables chains unknown: the last known hold stays", "err", err)
	} else {
		h.Offload, h.OffloadWhy = "", ""
		if len(unseen) > 0 {
			h.Offload = "nf_chain_order"
			h.OffloadWhy = fmt.Sprintf("nftables chains outside fastpath's netfilter hooks (postrouting from priority %d, prerouting up to %d): %s",
				netwatch.LateChainPriority, netwatch.EarlyChainPriority, strings.Join(unseen, ", "))
		}
	}
	if h == r.hold && r.holdSet {
		return
	}
	if err := r.dp.SetHold(h); err != nil {
		r.log.Error("hold forwarding back", "err", err)
		return
	}
	if h.All != "" {
		r.log.Warn("every packet goes to the kernel", "why", h.AllWhy)
	}
	if h.Offload != "" {
		r.log.Warn("offload mode's packets go to the kernel", "why", h.OffloadWhy)
	}
	if h.All == "" && h.Offload == "" && r.holdSet {
		r.log.Info("forwarding no longer held back")
	}
	r.hold, r.holdSet = h, true
}

// readNFHooks records each interface's nftables device chains and returns
// the declared interfaces whose chains changed. If the chains cannot be
// read, what was known stays.
func (r *reconciler) readNFHooks() []*iface {
	hooks, err := r.nfHooks()
	if err != nil {
		r.log.Warn("nftables device chains unknown: the last known stay in force", "err", err)
		return nil
	}
	var changed []*iface
	for _, ic := range r.ifaces {
		h := hooks[ic.cfg.Name]
		if slices.Equal(h.Ingress, ic.nf.Ingress) && slices.Equal(h.Egress, ic.nf.Egress) {
			continue
		}
		r.log.Info("nftables chains on the device: its packets there stay with the kernel",
			"interface", ic.cfg.Name, "ingress", h.Ingress, "egress", h.Egress)
		ic.nf = h
		if ic.managed() && ic.ifindex != 0 && ic.nl != nil {
			changed = append(changed, ic)
		}
	}
	return changed
}

func (r *reconciler) invalidateRoutes() {
	if err := r.dp.InvalidateRoutes(); err != nil {
		r.log.Error("invalidate cached flows", "err", err)
	}
}

// resolveHook turns the configured attach into a hook, saying why. auto
// takes native XDP only where it is correct, the kernel can carry it and
// it is the faster hook: the driver runs XDP, every egress takes XDP
// frames, and for a veth the stack at the other end finishes its checksums
// itself (an XDP redirect would send a partial checksum out unfinished)
// and the frames come by XDP (veth copies each frame a stack sent into an
// XDP buffer before the program runs, so TC, which takes the skb as it is,
// forwards stack-sent traffic faster, small packets and bulk TCP alike:
// docs/benchmarks.md). A forced xdp that cannot be correct is an error.
func (r *reconciler) resolveHook(ic *iface) (datapath.Hook, string, error) {
	switch ic.cfg.Attach {
	case config.AttachXDPGeneric:
		// Correct either way (generic XDP sees what the stack holds), but
		// frames whose checksum the peer left unfinished fail the
		// datapath's check and all go to the kernel: say so.
		r.readPeer(ic)
		if why, known := r.partialChecksums(ic); known {
			return datapath.HookXDPGeneric, "configured; " + why + ": its frames fail the checksum check and go to the kernel (bad_checksum), use auto or tc", nil
		}
		return datapath.HookXDPGeneric, "configured", nil
	case config.AttachTC:
		return datapath.HookTC, "configured", nil
	}
	r.readPeer(ic)
	if why, known := r.partialChecksums(ic); why != "" {
		if ic.cfg.Attach == config.AttachXDP {
			if known {
				return "", "", fmt.Errorf("attach: xdp cannot be correct on %s: %s; use attach: auto or tc, or turn tx checksum offload off on the peer", ic.cfg.Name, why)
			}
			return datapath.HookXDP, "configured (" + why + ")", nil
		}
		return datapath.HookTC, why, nil
	}
	if ic.cfg.Attach == config.AttachXDP {
		return datapath.HookXDP, "configured", nil
	}
	f, err := r.feats.Get(ic.ifindex)
	if err != nil {
		return datapath.HookTC, err.Error(), nil
	}
	if !f.NativeXDP() {
		return datapath.HookTC, "driver has no native XDP", nil
	}
	if ic.xdpRefusedMTU != 0 && ic.xdpRefusedMTU == ic.mtu {
		return datapath.HookTC, ic.xdpRefused, nil
	}
	for _, o := range r.ifaces {
		if o == ic || !o.managed() || o.ifindex == 0 || o.xdpTarget {
			continue
		}
		if o.shaping != "" {
			return datapath.HookTC, fmt.Sprintf("egress %s has the operator's %s, which an XDP redirect would skip", o.cfg.Name, o.shaping), nil
		}
		return datapath.HookTC, fmt.Sprintf("egress %s cannot transmit XDP frames (for a veth: its peer needs GRO or an XDP program)", o.cfg.Name), nil
	}
	if ic.peerRead && ic.peerErr == nil { // a veth
		if !ic.xdpFed {
			return datapath.HookTC, fmt.Sprintf("veth peer %s sends from its stack: native XDP would copy every frame, TC takes them as they are", ic.peer), nil
		}
		return datapath.HookXDP, fmt.Sprintf("native XDP, every egress takes XDP frames, no partial checksums, veth peer %s sends by XDP", ic.peer), nil
	}
	return datapath.HookXDP, "native XDP, every egress takes XDP frames, no partial checksums", nil
}

// xdpFedHold is how long a veth counts as fed by XDP after its peer last
// sent a frame that way: a pause in such traffic does not move the hook.
// peerBaselineAge: counts read further apart than this (the interface
// was not on auto meanwhile) are no baseline for growth.
const (
	xdpFedHold      = 3 * time.Second
	peerBaselineAge = 2 * time.Second
)

// readPeer reads ic's veth peer again and reports whether a fact the hook
// is decided on changed: whether it could be read, its partial checksums,
// whether it sends by XDP (its count of such frames grew since the last
// read, less than xdpFedHold ago), or, for the reason shown, its name.
func (r *reconciler) readPeer(ic *iface) bool {
	if ic.nl == nil || r.peers == nil {
		return false
	}
	now := r.now()
	p, err := r.peers.Lookup(ic.nl)
	baseline := ic.peerRead && ic.peerErr == nil && ic.peer.XDPSentKnown && now.Sub(ic.peerReadAt) <= peerBaselineAge
	if err == nil && baseline && p.XDPSentKnown && p.String() == ic.peer.String() && p.XDPSent > ic.peer.XDPSent {
		ic.xdpFedAt = now
	}
	fed := !ic.xdpFedAt.IsZero() && now.Sub(ic.xdpFedAt) < xdpFedHold
	if !fed && ic.xdpFed && ic.hook == datapath.HookXDP && !r.groOnOrUnknown(ic) {
		// The peer's XDP frames stopped coming, but this veth takes such
		// frames only while an XDP program is on it (its GRO is off): on
		// TC, frames its peer sends by XDP later would be refused at the
		// redirect, before any count shows them. Stay.
		fed = true
	}
	changed := !ic.peerRead || fed != ic.xdpFed || p.PartialChecksums != ic.peer.PartialChecksums ||
		(err == nil) != (ic.peerErr == nil) || p.String() != ic.peer.String()
	ic.peer, ic.peerErr, ic.peerRead, ic.peerReadAt, ic.xdpFed = p, err, true, now, fed
	return changed
}

// groOnOrUnknown reads whether ic's device has GRO on; true when it
// cannot be read.
func (r *reconciler) groOnOrUnknown(ic *iface) bool {
	on, err := r.groOn(ic.cfg.Name)
	return on || err != nil
}

// peersChanged rereads the veth peers of the interfaces whose hook follows
// them (auto, and a forced xdp that partial checksums would make
// incorrect) and reports whether any fact the hook is decided on changed.
// A peer's offloads and its XDP sending live in its namespace and announce
// nothing here: this poll bounds how late a change is seen.
func (r *reconciler) peersChanged() bool {
	changed := false
	for _, ic := range r.ifaces {
		// Not a veth, or a peer that could not be read (finding it may scan
		// /proc): the resync reads those again.
		if !ic.managed() || ic.link == nil || ic.peerErr != nil ||
			(ic.cfg.Attach != config.AttachAuto && ic.cfg.Attach != config.AttachXDP) {
			continue
		}
		if r.readPeer(ic) {
			changed = true
		}
	}
	return changed
}

// partialChecksums says why XDP would corrupt frames arriving on ic ("" if
// it would not), and whether that is known rather than feared: a veth's
// peer with tx checksum offload on, or a veth whose peer cannot be read.
// It reads the peer as readPeer last found it.
func (r *reconciler) partialChecksums(ic *iface) (string, bool) {
	switch err := ic.peerErr; {
	case !ic.peerRead, errors.Is(err, vethpeer.ErrNotVeth):
		return "", false
	case err != nil:
		return fmt.Sprintf("veth peer's checksum offload unknown (%v)", err), false
	case ic.peer.PartialChecksums:
		return fmt.Sprintf("veth peer %s sends partial checksums (tx checksum offload on)", ic.peer), true
	}
	return "", false
}

func (r *reconciler) attach(ic *iface) error {
	hook, why, err := r.resolveHook(ic)
	if err != nil {
		return err
	}
	l, hook, why, err := r.attachAs(ic, hook, why)
	if err != nil {
		return fmt.Errorf("interface %s: %w", ic.cfg.Name, explainAttach(ic, hook, err))
	}
	r.attached(ic, l, hook, why)
	return nil
}

// attachAs attaches ic with hook; under auto, native XDP that the kernel
// refuses (a veth's MTU above what its XDP takes, say) falls back to TC.
// When the fallback is the hook ic already has, it returns no new link:
// the one ic holds stays (a second attach would adopt its pin, and
// dropping that handle would unpin the link in use).
func (r *reconciler) attachAs(ic *iface, hook datapath.Hook, why string) (link.Link, datapath.Hook, string, error) {
	l, err := r.dp.Attach(ic.ifindex, hook)
	if err != nil && hook == datapath.HookXDP && ic.cfg.Attach == config.AttachAuto {
		why = fmt.Sprintf("%s (%v)", xdpRefusedAt(ic.mtu), err)
		ic.xdpRefusedMTU, ic.xdpRefused = ic.mtu, why
		hook = datapath.HookTC
		if ic.link != nil && ic.hook == hook {
			return nil, hook, why, nil
		}
		l, err = r.dp.Attach(ic.ifindex, hook)
	}
	return l, hook, why, err
}

// attached records a new attachment of ic, logs it and announces it.
func (r *reconciler) attached(ic *iface, l link.Link, hook datapath.Hook, why string) {
	ic.link, ic.hook, ic.why, ic.state, ic.err = l, hook, why, api.StateAttached, nil
	ic.linkID, ic.progID = 0, 0
	if info, err := l.Info(); err == nil {
		ic.linkID, ic.progID = uint32(info.ID), uint32(info.Program)
	}
	r.log.Info("attached", "interface", ic.cfg.Name, "ifindex", ic.ifindex, "hook", hook, "why", why, "mode", ic.cfg.Mode)
	r.events.Publish(api.Event{Kind: api.EventAttach, Interface: ic.cfg.Name,
		Detail: fmt.Sprintf("%s, %s mode: %s", hook, ic.cfg.Mode, why)})
}

// detach detaches a link, logging a failure (the interface goes to the
// kernel path either way).
func (r *reconciler) detach(ic *iface, l link.Link) {
	if err := r.dp.Detach(l); err != nil {
		r.log.Warn("detach", "interface", ic.cfg.Name, "err", err)
	}
}

func explainAttach(ic *iface, hook datapath.Hook, err error) error {
	if hook != datapath.HookXDP {
		return err
	}
	switch {
	// The kernel answers EOPNOTSUPP when the driver lacks native XDP.
	case errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%w (the driver has no native XDP: use attach: tc, or xdp-generic for tests)", err)
	// ERANGE: a frame of the MTU does not fit one page of XDP (a veth
	// checks its peer's MTU; the datapath takes no multi-buffer frames).
	case errors.Is(err, unix.ERANGE):
		return fmt.Errorf("%s: a frame must fit one page with XDP (a veth checks its peer's MTU: about 3500 bytes at most); "+
			"lower the MTU (the peer's too), or use attach: auto or tc (%w)", xdpRefusedAt(ic.mtu), err)
	}
	return err
}

// xdpRefusedAt says that the kernel refused native XDP at the interface's
// MTU (ERANGE; status and errors say it alike).
func xdpRefusedAt(mtu int) string { return fmt.Sprintf("native XDP refused at MTU %d", mtu) }

// wantsGRO: native XDP in offload mode keeps a TC program behind it for
// bulk TCP, which GRO merges before TC forwards it (bpf/lib/pipeline.h:
// XDP's redirect of each segment costs more than the stack's merging).
func (ic *iface) wantsGRO() bool {
	return ic.managed() && ic.cfg.Mode == config.ModeOffload && ic.hook == datapath.HookXDP && ic.link != nil && ic.groOn
}

// syncGRO attaches or detaches the TC program behind XDP as wantsGRO says.
// The flag goes first when it comes and last when it goes: in between, the
// segments XDP hands over take the kernel's own path, correct and slower.
func (r *reconciler) syncGRO(ic *iface) {
	ic.groOn = false
	if ic.managed() && ic.cfg.Mode == config.ModeOffload && ic.hook == datapath.HookXDP && ic.link != nil {
		on, err := r.groOn(ic.cfg.Name) // read only where it decides something
		if err != nil {
			r.log.Warn("gro of the device unknown: no tc behind xdp", "interface", ic.cfg.Name, "err", err)
		}
		ic.groOn = on && err == nil
	}
	want := ic.wantsGRO()
	if want && ic.gro == nil {
		if !ic.groFlag {
			ic.groFlag = true
			if err := r.writeIface(ic, ic.nl); err != nil {
				r.log.Warn("tc behind xdp", "interface", ic.cfg.Name, "err", err)
				ic.groFlag = false
				return
			}
		}
		l, err := r.dp.Attach(ic.ifindex, datapath.HookTCGRO)
		if err != nil {
			r.log.Warn("tc behind xdp: bulk TCP takes the XDP redirect", "interface", ic.cfg.Name, "err", err)
			ic.groFlag = false
			if err := r.writeIface(ic, ic.nl); err != nil {
				r.log.Warn("tc behind xdp", "interface", ic.cfg.Name, "err", err)
			}
			return
		}
		ic.gro = l
		r.log.Info("tc behind xdp: bulk TCP is merged (GRO) and forwarded by TC", "interface", ic.cfg.Name)
		return
	}
	if !want {
		r.removeGRO(ic)
	}
}

// removeGRO takes the TC program behind XDP away, then its flag: in
// between, XDP hands bulk TCP to the kernel's own path.
func (r *reconciler) removeGRO(ic *iface) {
	if ic.gro != nil {
		r.detach(ic, ic.gro)
		ic.gro = nil
	}
	if ic.groFlag && ic.ifindex != 0 && ic.nl != nil {
		ic.groFlag = false
		if err := r.writeIface(ic, ic.nl); err != nil {
			r.log.Warn("tc behind xdp", "interface", ic.cfg.Name, "err", err)
		}
	}
}

// removedFromConfig is the detach event's detail for an interface a
// reload took out of the config (it has no state any more).
const removedFromConfig = "removed from the config"

// teardown detaches and forgets an interface's datapath state, leaving it
// in state. The detach event says state, or why if not empty.
func (r *reconciler) teardown(ic *iface, state, why string) {
	detail := state
	if why != "" {
		detail = why
	}
	if ic.gro != nil {
		r.detach(ic, ic.gro)
		ic.gro = nil
	}
	ic.groFlag = false
	if ic.link != nil {
		r.detach(ic, ic.link)
		ic.link = nil
		r.events.Publish(api.Event{Kind: api.EventDetach, Interface: ic.cfg.Name, Detail: detail})
	}
	if ic.ifindex != 0 {
		if err := r.dp.RemoveIface(ic.ifindex); err != nil {
			r.log.Warn("remove interface from datapath", "interface", ic.cfg.Name, "err", err)
		}
		r.invalidateRoutes() // flows cached towards it must not keep using it
	}
	ic.ifindex, ic.mac, ic.mtu, ic.hook, ic.progID, ic.linkID, ic.xdpTarget, ic.targetSet = 0, nil, 0, "", 0, 0, false, false
	ic.nl, ic.why, ic.xdpRefusedMTU, ic.xdpRefused, ic.shaping, ic.declared = nil, "", 0, "", "", ""
	ic.peer, ic.peerErr, ic.peerRead, ic.peerReadAt, ic.xdpFed, ic.xdpFedAt = vethpeer.Peer{}, nil, false, time.Time{}, false, time.Time{}
	ic.state = state
}

// release closes the daemon's handles on its links without detaching
// them: pinned, they keep forwarding for the next daemon.
func (r *reconciler) release() {
	for _, ic := range r.ifaces {
		if ic.link != nil {
			ic.link.Close()
			ic.link = nil
		}
		if ic.gro != nil {
			ic.gro.Close()
			ic.gro = nil
		}
	}
}

// status is every configured interface as the last reconcile left it: a
// snapshot, so the API never waits on a reconcile (an attach, a netlink
// dump) in progress. Callers must not change it.
func (r *reconciler) status() []api.InterfaceStatus {
	if s := r.snap.Load(); s != nil {
		return *s
	}
	return nil
}

// publish stores the snapshot status returns.
func (r *reconciler) publish() {
	out := make([]api.InterfaceStatus, 0, len(r.ifaces))
	for _, ic := range r.ifaces {
		why := ic.why
		switch {
		case ic.gro != nil:
			why += "; tc behind it forwards bulk TCP after GRO"
		case ic.hook == datapath.HookXDP && ic.cfg.Mode == config.ModeOffload && !ic.groOn:
			why += "; GRO is off on the device, so bulk TCP takes the XDP redirect (ethtool -K " + ic.cfg.Name + " gro on merges it for TC)"
		}
		is := api.InterfaceStatus{
			Name: ic.cfg.Name, Ifindex: ic.ifindex, Mode: string(ic.cfg.Mode),
			Attach: string(ic.cfg.Attach), AttachedAs: string(ic.hook), AttachReason: why,
			ProgramID: ic.progID, LinkID: ic.linkID, XDPTarget: ic.xdpTarget, State: ic.state,
			NFTIngressChains: ic.nf.Ingress, NFTEgressChains: ic.nf.Egress,
		}
		if ic.err != nil {
			is.Error = ic.err.Error()
		}
		out = append(out, is)
	}
	r.snap.Store(&out)
}

// managedIndexes are the ifindexes the datapath should know now.
func (r *reconciler) managedIndexes() map[int]bool {
	m := map[int]bool{}
	for _, ic := range r.ifaces {
		if ic.managed() && ic.ifindex != 0 {
			m[ic.ifindex] = true
		}
	}
	return m
}

// detachAll undoes everything; the daemon's last act.
func (r *reconciler) detachAll() {
	defer r.publish()
	for _, ic := range r.ifaces {
		if ic.managed() {
			r.teardown(ic, api.StateMissing, "")
		}
	}
}

// updateTargets puts exactly the managed interfaces that can transmit XDP
// frames into the devmap.
func (r *reconciler) updateTargets() {
	for _, ic := range r.ifaces {
		if !ic.managed() || ic.ifindex == 0 {
			continue
		}
		ok := false
		if f, err := r.feats.Get(ic.ifindex); err == nil {
			ok = f.RedirectTarget()
		} else {
			r.log.Warn("xdp features", "interface", ic.cfg.Name, "err", err)
		}
		// An egress the operator shapes or filters takes no XDP frames:
		// flows towards it go through the kernel (or TC, which auto then
		// picks), whose transmit path honours the qdisc and filters.
		shaping, err := r.shaping(ic.ifindex)
		if err != nil {
			r.log.Warn("egress qdiscs", "interface", ic.cfg.Name, "err", err)
			shaping = "qdiscs unknown"
		}
		if shaping != ic.shaping {
			r.log.Info("egress shaping", "interface", ic.cfg.Name, "shaping", shaping)
			ic.shaping = shaping
		}
		ok = ok && shaping == ""
		if ok == ic.xdpTarget && ic.targetSet {
			continue
		}
		if err := r.dp.SetXDPTarget(ic.ifindex, ok); err != nil {
			r.log.Warn("xdp target", "interface", ic.cfg.Name, "err", err)
			continue
		}
		if ok != ic.xdpTarget || !ic.targetSet {
			r.log.Info("xdp redirect target", "interface", ic.cfg.Name, "accepts_xdp_frames", ok)
		}
		ic.xdpTarget, ic.targetSet = ok, true
	}
}

// redecide moves an attached interface whose facts changed (a peer's
// offloads, an egress that stopped taking XDP frames, an MTU) to the hook
// resolveHook now gives, the new program in before the old one leaves. A
// forced xdp that became incorrect moves to TC, loudly: correct first.
func (r *reconciler) redecide(ic *iface) {
	hook, why, err := r.resolveHook(ic)
	if err != nil {
		hook, why = datapath.HookTC, err.Error()
	}
	if hook != ic.hook {
		if err != nil {
			r.log.Error("configured hook is no longer correct: moving to tc", "interface", ic.cfg.Name, "err", err)
		}
		r.log.Info("hook decision changed", "interface", ic.cfg.Name, "from", ic.hook, "to", hook, "why", why)
	}
	if err := r.reattachTo(ic, hook, why); err != nil {
		r.log.Warn("move to the new hook failed: the old one stays", "interface", ic.cfg.Name, "hook", hook, "err", err)
	}
}

// fail records a per-interface error, logging it only when it changes so a
// persistent problem does not flood the log every resync.
func (r *reconciler) fail(ic *iface, err error) {
	if ic.err == nil || ic.err.Error() != err.Error() {
		r.log.Error("interface not attached: its traffic goes through the kernel", "interface", ic.cfg.Name, "err", err)
	}
	if ic.ifindex != 0 && ic.link == nil {
		_ = r.dp.RemoveIface(ic.ifindex)
		r.invalidateRoutes()
		ic.ifindex, ic.mac, ic.xdpTarget, ic.targetSet, ic.declared = 0, nil, false, false, ""
	}
	ic.state, ic.err = api.StateError, err
}
