// Package datapath loads the fastpath BPF programs, attaches them to
// interfaces and reads and writes their maps. It knows nothing of config
// files or netlink watching: the daemon drives it.
package datapath

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Mode is how packets arriving on an interface are handled.
type Mode uint32

const (
	// ModeOff: the program passes everything to the kernel.
	ModeOff = Mode(fastpathFpModeFP_MODE_OFF)
	// ModeRoute: stateless FIB forwarding (no conntrack, no firewall).
	ModeRoute = Mode(fastpathFpModeFP_MODE_ROUTE)
	// ModeOffload: forward flows conntrack holds as established and
	// netfilter accepted, NAT included; everything else goes to the kernel.
	ModeOffload = Mode(fastpathFpModeFP_MODE_OFFLOAD)
)

// Hook is where a program is attached.
type Hook string

const (
	HookXDP        Hook = "xdp"         // native (driver) XDP
	HookXDPGeneric Hook = "xdp-generic" // skb-based XDP, slow, for testing
	HookTC         Hook = "tc"          // tcx ingress
	// HookTCGRO is a TC program behind native XDP on the same device: XDP
	// hands it an offloaded flow's bulk TCP, which GRO merged first.
	HookTCGRO Hook = "tc-gro"
)

// Datapath holds the loaded programs and maps of one network namespace.
type Datapath struct {
	objs      fastpathObjects
	reasons   []string
	drops     []string
	g         globals
	pinDir    string               // "" when not pinning
	used      map[string]bool      // pinned links adopted or created by this run
	links     map[string]link.Link // the same, by pin name
	adopted   bool                 // maps came from a previous daemon
	replaced  bool                 // pins of another layout await Settle
	keep      bool                 // pins outlive the process (Open)
	mountedFS bool                 // Open mounted the BPF filesystem for them
	log       *slog.Logger         // Open's; pin lifecycle notes

	slotMu sync.Mutex
	slots  map[int]uint32 // ifindex -> counter slot in fp_if_stats

	pinMu sync.Mutex // used and links: attaches come from the main loop and from reloads

	guardReasons []string   // enum fp_guard_reason's names (guard.go)
	guardMu      sync.Mutex // guard config flags and list syncs
}

// Options size the datapath's maps.
type Options struct {
	// FlowEntries is the flow cache's capacity (config.Flows.Entries: the
	// config owns the default). The record of netfilter verdicts has the
	// same size.
	FlowEntries int
	// PinDir, if set, pins maps and links there and adopts what a previous
	// daemon pinned there (see pin.go).
	PinDir string
}

// Load loads the programs and maps into the kernel. A verifier rejection is
// returned with the verifier's full log.
func Load(opts Options) (*Datapath, error) {
	spec, err := loadFastpath()
	if err != nil {
		return nil, fmt.Errorf("parse bpf object: %w", err)
	}
	n := opts.FlowEntries
	if n <= 0 {
		return nil, fmt.Errorf("flow cache size %d: must be positive", n)
	}
	spec.Maps["fp_flows"].MaxEntries = uint32(n)
	spec.Maps["fp_accepted"].MaxEntries = uint32(n)
	reasons, err := reasonNames(spec)
	if err != nil {
		return nil, err
	}
	guardReasons, err := guardReasonNames(spec)
	if err != nil {
		return nil, err
	}
	drops, err := dropReasonNames(spec)
	if err != nil {
		return nil, err
	}
	d := &Datapath{reasons: reasons, drops: drops, guardReasons: guardReasons, pinDir: opts.PinDir, used: map[string]bool{}, links: map[string]link.Link{},
		slots: map[int]uint32{}}
	if opts.PinDir != "" {
		state, err := loadPinned(spec, &d.objs, opts.PinDir)
		if err != nil {
			return nil, loadError(err)
		}
		switch state {
		case pinsAdopted:
			d.adopted = true
			// Nobody watched the kernel while no daemon ran: before the
			// heartbeat resumes offload, every cached flow must redo its
			// FIB lookup and pass netfilter once more (one kernel pass per
			// direction, no loss). And the previous daemon's heartbeat goes:
			// until this one beats, once it watches everything, the
			// datapath passes every packet to the kernel rather than refill
			// flows that a route change meanwhile would not invalidate.
			err := errors.Join(d.readGlobals(), d.readSlots())
			if err == nil {
				err = d.writeGlobals(func(s *fastpathFpState) { s.FibGen++; s.FwGen++; s.HeartbeatNs = 0 })
			}
			if err != nil {
				d.objs.Close()
				return nil, err
			}
			return d, nil
		case pinsCreated:
			return d, nil
		}
		d.replaced = true // another layout is pinned: load fresh maps, pin them later
	}
	if err := spec.LoadAndAssign(&d.objs, nil); err != nil {
		return nil, loadError(err)
	}
	return d, nil
}

func loadError(err error) error {
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		return fmt.Errorf("load bpf programs: %+v", verr)
	}
	return fmt.Errorf("load bpf programs: %w", err)
}

// Close releases programs and maps. Links attached with Attach hold their
// own references and must be closed by the caller.
func (d *Datapath) Close() error { return d.objs.Close() }

// ReasonNames returns the pass reason counter names, indexed like
// IfaceStats.PassReason, e.g. "ttl", "no_neigh".
func (d *Datapath) ReasonNames() []string { return d.reasons }

// DropReasonNames returns the drop reason counter names, indexed like
// IfaceStats.DropReason, e.g. "tcp_out_of_window".
func (d *Datapath) DropReasonNames() []string { return d.drops }

// reasonNames reads enum fp_reason from the object's BTF, so the C enum is
// the single source of the names.
func reasonNames(spec *ebpf.CollectionSpec) ([]string, error) {
	return enumNames(spec, "fp_reason", "FP_PASS_", len(fastpathFpStats{}.PassReason))
}

// dropReasonNames reads enum fp_drop_reason, as reasonNames does.
func dropReasonNames(spec *ebpf.CollectionSpec) ([]string, error) {
	return enumNames(spec, "fp_drop_reason", "FP_DROP_", len(fastpathFpStats{}.DropReason))
}

// enumNames reads a dense counter enum (prefix + NAME, ending in
// prefix + MAX) whose counters array has n entries.
func enumNames(spec *ebpf.CollectionSpec, enum, prefix string, n int) ([]string, error) {
	var e *btf.Enum
	if err := spec.Types.TypeByName(enum, &e); err != nil {
		return nil, fmt.Errorf("bpf object has no enum %s: %w", enum, err)
	}
	names := make([]string, 0, len(e.Values))
	for i, v := range e.Values {
		if v.Value != uint64(i) {
			return nil, fmt.Errorf("enum %s is not dense at %s", enum, v.Name)
		}
		if v.Name == prefix+"MAX" {
			break
		}
		names = append(names, strings.ToLower(strings.TrimPrefix(v.Name, prefix)))
	}
	if len(names) != n {
		return nil, fmt.Errorf("enum %s has %d reasons, counters have %d", enum, len(names), n)
	}
	return names, nil
}

// Attach attaches the program for hook to the interface. The returned link
// detaches when closed or when the process exits: nothing outlives the
// daemon unless it pins it.
func (d *Datapath) Attach(ifindex int, hook Hook) (link.Link, error) {
	name := fmt.Sprintf("%s-%d", hook, ifindex)
	switch hook {
	case HookXDP, HookXDPGeneric:
		flags := link.XDPDriverMode
		if hook == HookXDPGeneric {
			flags = link.XDPGenericMode
		}
		l, err := d.adoptOrAttach(name, d.objs.FpXdp, func() (link.Link, error) {
			return link.AttachXDP(link.XDPOptions{Program: d.objs.FpXdp, Interface: ifindex, Flags: flags})
		})
		if err != nil {
			return nil, fmt.Errorf("attach %s: %w", hook, err)
		}
		return l, nil
	case HookTC, HookTCGRO:
		l, err := d.adoptOrAttach(name, d.objs.FpTc, func() (link.Link, error) {
			return link.AttachTCX(link.TCXOptions{Program: d.objs.FpTc, Attach: ebpf.AttachTCXIngress, Interface: ifindex})
		})
		if err != nil {
			return nil, fmt.Errorf("attach tcx ingress: %w", err)
		}
		return l, nil
	}
	return nil, fmt.Errorf("unknown hook %q", hook)
}

// Iface is a managed interface as the datapath needs to know it.
type Iface struct {
	Index int
	MAC   net.HardwareAddr
	MTU   int // as an egress: larger (non-GSO) packets go to the kernel
	Mode  Mode
	// nftables chains bound to the device, which no redirect passes
	// through: with NFIngress its packets go to the kernel; with NFEgress
	// it is no redirect's egress.
	NFIngress, NFEgress bool
	// GROTC: native XDP hands bulk TCP to a TC program (HookTCGRO) behind
	// it, which then leaves everything else alone.
	GROTC bool
}

// fp_iface flags (bpf/lib/common.h).
const (
	ifNFIngress = 1
	ifNFEgress  = 2
	ifGROTC     = 4
)

// SetIface declares an interface managed: packets arriving on it are handled
// per mode, and it may be used as an egress. Its counters are created zeroed
// if absent (kept if present, so a mode change does not reset them).
func (d *Datapath) SetIface(ifc Iface) error {
	if len(ifc.MAC) != 6 {
		return fmt.Errorf("interface %d: need a 6-byte ethernet address, got %q", ifc.Index, ifc.MAC)
	}
	if ifc.MTU <= 0 {
		return fmt.Errorf("interface %d: invalid mtu %d", ifc.Index, ifc.MTU)
	}
	slot, fresh, err := d.slotFor(ifc.Index)
	if err != nil {
		return err
	}
	if fresh {
		zero := make([]fastpathFpStats, ebpf.MustPossibleCPU())
		if err := d.objs.FpIfStats.Update(slot, zero, ebpf.UpdateAny); err != nil {
			d.freeSlot(ifc.Index)
			return fmt.Errorf("reset counters of interface %d: %w", ifc.Index, err)
		}
		if err := d.resetGuardStats(slot); err != nil {
			d.freeSlot(ifc.Index)
			return fmt.Errorf("interface %d: %w", ifc.Index, err)
		}
	}
	v := fastpathFpIface{Mode: fastpathFpMode(ifc.Mode), Mtu: uint32(ifc.MTU), Slot: slot}
	if ifc.NFIngress {
		v.Flags |= ifNFIngress
	}
	if ifc.NFEgress {
		v.Flags |= ifNFEgress
	}
	if ifc.GROTC {
		v.Flags |= ifGROTC
	}
	copy(v.Mac[:], ifc.MAC)
	if err := d.objs.FpIfaces.Update(uint32(ifc.Index), v, ebpf.UpdateAny); err != nil {
		if fresh {
			d.freeSlot(ifc.Index)
		}
		return fmt.Errorf("configure interface %d: %w", ifc.Index, err)
	}
	return nil
}

// RemoveIface stops managing an interface: its packets and packets routed
// to it go to the kernel. Its counters are dropped too.
func (d *Datapath) RemoveIface(ifindex int) error {
	key := uint32(ifindex)
	var errs []error
	for _, m := range []*ebpf.Map{d.objs.FpTxPorts, d.objs.FpIfaces} {
		if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	d.freeSlot(ifindex)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove interface %d: %w", ifindex, err)
	}
	return nil
}

// SetXDPTarget adds or removes an interface as a target of XDP redirects.
// Only devices the kernel says can transmit XDP frames belong there: a
// redirect to any other device is dropped by the kernel. The devmap resolves
// ifindex in the network namespace of the calling thread.
func (d *Datapath) SetXDPTarget(ifindex int, ok bool) error {
	key := uint32(ifindex)
	if ok {
		if err := d.objs.FpTxPorts.Update(key, uint32(ifindex), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("add interface %d to xdp targets: %w", ifindex, err)
		}
		return nil
	}
	if err := d.objs.FpTxPorts.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("remove interface %d from xdp targets: %w", ifindex, err)
	}
	return nil
}

// IfaceStats are one interface's counters summed over CPUs.
type IfaceStats struct {
	FwdPackets, FwdBytes     uint64
	PassPackets, PassBytes   uint64
	FlowsAdded, FlowsRemoved uint64
	EventsLost               uint64
	PassReason               []uint64 // indexed like ReasonNames
	DropPackets, DropBytes   uint64   // dropped by the datapath itself
	DropReason               []uint64 // indexed like DropReasonNames
}

// Stats reads the counters of every managed interface, keyed by ifindex.
func (d *Datapath) Stats() (map[int]IfaceStats, error) {
	d.slotMu.Lock()
	slots := maps.Clone(d.slots)
	d.slotMu.Unlock()
	out := make(map[int]IfaceStats, len(slots))
	var percpu []fastpathFpStats
	for ifindex, slot := range slots {
		if err := d.objs.FpIfStats.Lookup(slot, &percpu); err != nil {
			return nil, fmt.Errorf("read counters: %w", err)
		}
		s := IfaceStats{PassReason: make([]uint64, len(d.reasons)), DropReason: make([]uint64, len(d.drops))}
		for _, c := range percpu {
			s.FwdPackets += c.FwdPackets
			s.FwdBytes += c.FwdBytes
			s.PassPackets += c.PassPackets
			s.PassBytes += c.PassBytes
			s.FlowsAdded += c.FlowsAdded
			s.FlowsRemoved += c.FlowsRemoved
			s.EventsLost += c.EventsLost
			for i := range s.PassReason {
				s.PassReason[i] += c.PassReason[i]
			}
			s.DropPackets += c.DropPackets
			s.DropBytes += c.DropBytes
			for i := range s.DropReason {
				s.DropReason[i] += c.DropReason[i]
			}
		}
		out[ifindex] = s
	}
	return out, nil
}

// slotFor returns the interface's counter slot, allocating the lowest free
// one for a new interface (fresh: its counters must be reset).
func (d *Datapath) slotFor(ifindex int) (slot uint32, fresh bool, err error) {
	d.slotMu.Lock()
	defer d.slotMu.Unlock()
	if s, ok := d.slots[ifindex]; ok {
		return s, false, nil
	}
	used := make(map[uint32]bool, len(d.slots))
	for _, s := range d.slots {
		used[s] = true
	}
	for s := uint32(0); s < d.objs.FpIfStats.MaxEntries(); s++ {
		if !used[s] {
			d.slots[ifindex] = s
			return s, true, nil
		}
	}
	return 0, false, fmt.Errorf("interface %d: all %d counter slots in use", ifindex, len(d.slots))
}

func (d *Datapath) freeSlot(ifindex int) {
	d.slotMu.Lock()
	defer d.slotMu.Unlock()
	delete(d.slots, ifindex)
}

// readSlots recovers the slots of an adopted datapath's interfaces, so
// their counters carry on.
func (d *Datapath) readSlots() error {
	var (
		key uint32
		v   fastpathFpIface
	)
	it := d.objs.FpIfaces.Iterate()
	for it.Next(&key, &v) {
		d.slots[int(key)] = v.Slot
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read adopted interfaces: %w", err)
	}
	return nil
}

// AttachNetfilter attaches the verdict recorder to netfilter's IPv4 and
// IPv6 POSTROUTING hooks, after every other chain (NAT included) and just
// before conntrack confirms: a forwarded packet that reaches it was accepted
// by the whole ruleset; and, first in PREROUTING, the note of how each
// packet arrived, before any chain could rewrite it. Offload mode needs
// them; route mode does not.
func (d *Datapath) AttachNetfilter() ([]link.Link, error) {
	var links []link.Link
	for _, f := range []struct {
		name string
		prog *ebpf.Program
		pf   link.NetfilterProtocolFamily
		hook link.NetfilterInetHook
		// prio and step: the priority, and where a successor goes. The
		// first and last are the kernel's own (NF_IP_PRI_FIRST, and
		// NF_IP_PRI_LAST: conntrack confirm's). Two BPF links cannot share
		// a hook priority, so a successor takes the other of the two
		// next to it: it attaches before its predecessor leaves, and the
		// hook is never empty.
		prio, step int32
	}{
		{"nf-ipv4", d.objs.FpNfAccept, link.NetfilterProtoIPv4, link.NetfilterInetPostRouting, math.MaxInt32 - 1, -1},
		{"nf-ipv6", d.objs.FpNfAccept, link.NetfilterProtoIPv6, link.NetfilterInetPostRouting, math.MaxInt32 - 1, -1},
		{"nf-in-ipv4", d.objs.FpNfArrive4, link.NetfilterProtoIPv4, link.NetfilterInetPreRouting, math.MinInt32 + 1, 1},
		{"nf-in-ipv6", d.objs.FpNfArrive6, link.NetfilterProtoIPv6, link.NetfilterInetPreRouting, math.MinInt32 + 1, 1},
	} {
		prio := f.prio
		if old := d.pinnedLink(f.name); old != nil {
			if info, err := old.Info(); err == nil {
				if nf := info.Netfilter(); nf != nil && nf.Priority == prio {
					prio += f.step
				}
			}
			old.Close()
		}
		l, err := d.replacePinned(f.name, func() (link.Link, error) {
			return link.AttachNetfilter(link.NetfilterOptions{
				Program:        f.prog,
				ProtocolFamily: f.pf,
				Hook:           f.hook,
				Priority:       prio,
			})
		})
		if err != nil {
			for _, l := range links {
				d.Detach(l)
			}
			if errors.Is(err, unix.EBUSY) {
				// Both priorities taken: another datapath's links, which
				// this mount namespace cannot see (ip netns exec mounts its
				// own /sys over a --keep-datapath daemon's pins).
				return nil, fmt.Errorf("attach netfilter hook (%s): %w: another fastpath datapath holds it, "+
					"probably one a --keep-datapath daemon left pinned where this process cannot see it (ip netns exec mounts its own /sys); "+
					"run the daemon with nsenter --net=/run/netns/NAME, or remove that datapath first with `nsenter --net=/run/netns/NAME fastpath detach`", f.name, err)
			}
			return nil, fmt.Errorf("attach netfilter hook (%s): %w", f.name, err)
		}
		links = append(links, l)
	}
	return links, nil
}

// VerifiedInstructions returns, per packet program (fp_xdp, fp_tc), how
// many instructions the verifier processed to accept it: what load time
// grows with, and what the kernel's 1M limit applies to. ok is false when
// the kernel does not report it.
func (d *Datapath) VerifiedInstructions() (counts map[string]uint32, ok bool) {
	counts = map[string]uint32{}
	for name, p := range map[string]*ebpf.Program{"fp_xdp": d.objs.FpXdp, "fp_tc": d.objs.FpTc} {
		info, err := p.Info()
		if err != nil {
			return nil, false
		}
		n, ok := info.VerifiedInstructions()
		if !ok {
			return nil, false
		}
		counts[name] = n
	}
	return counts, true
}
