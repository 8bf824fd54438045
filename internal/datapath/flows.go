package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Tuple is one direction of a connection as packets carry it.
type Tuple struct {
	Proto    uint8 // unix.IPPROTO_TCP or IPPROTO_UDP
	Src, Dst netip.AddrPort
}

// Flow is a cached flow: the tuple packets arrive with and what fastpath
// does with them.
type Flow struct {
	In         Tuple // as it arrives
	Out        Tuple // as it leaves (after NAT)
	SNAT, DNAT bool
	Reply      bool // this is conntrack's reply direction
	IfindexIn  int
	IfindexOut int
	Packets    uint64
	Bytes      uint64
	Created    time.Duration // CLOCK_MONOTONIC, see Monotonic
	Last       time.Duration
	MTU        int
	// Stale: built under older routes or ruleset, or (TCP) waiting for its
	// conntrack entry to become window-liberal: rechecked on its next packet.
	Stale bool
}

func addrOf(family uint8, w [4]uint32) netip.Addr {
	var b [16]byte
	for i, v := range w {
		// map words are in network byte order in memory: copy the bytes
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	}
	if family == unix.AF_INET {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

func wordsOf(a netip.Addr) [4]uint32 {
	var w [4]uint32
	b := a.As16()
	if a.Is4() {
		b4 := a.As4()
		b = [16]byte{}
		copy(b[:4], b4[:])
	}
	for i := range w {
		w[i] = uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24
	}
	return w
}

// ntohs/htons for ports stored in network byte order in little-endian words.
func swap16(v uint16) uint16 { return v<<8 | v>>8 }

func keyOf(t Tuple) fastpathFpFlowKey {
	k := fastpathFpFlowKey{Proto: t.Proto, Sport: swap16(t.Src.Port()), Dport: swap16(t.Dst.Port())}
	k.Family = unix.AF_INET6
	if t.Src.Addr().Is4() {
		k.Family = unix.AF_INET
	}
	k.Saddr = wordsOf(t.Src.Addr())
	k.Daddr = wordsOf(t.Dst.Addr())
	return k
}

func flowOf(k fastpathFpFlowKey, v fastpathFpFlow, fibGen, fwGen uint32) Flow {
	return Flow{
		In: Tuple{Proto: k.Proto,
			Src: netip.AddrPortFrom(addrOf(k.Family, k.Saddr), swap16(k.Sport)),
			Dst: netip.AddrPortFrom(addrOf(k.Family, k.Daddr), swap16(k.Dport))},
		Out: Tuple{Proto: k.Proto,
			Src: netip.AddrPortFrom(addrOf(k.Family, v.NatSaddr), swap16(v.NatSport)),
			Dst: netip.AddrPortFrom(addrOf(k.Family, v.NatDaddr), swap16(v.NatDport))},
		SNAT:      v.Flags&flagSNAT != 0,
		DNAT:      v.Flags&flagDNAT != 0,
		Reply:     v.Flags&flagReply != 0,
		IfindexIn: int(v.IfindexIn), IfindexOut: int(v.IfindexOut),
		Packets: v.Packets, Bytes: v.Bytes,
		Created: time.Duration(v.CreatedNs), Last: time.Duration(v.LastNs),
		MTU:   int(v.Mtu),
		Stale: v.FibGen != fibGen || v.FwGen != fwGen || v.Flags&flagPending != 0,
	}
}

const (
	flagSNAT    = uint8(fastpathFpFlowFlagsFP_FLOW_SNAT)
	flagDNAT    = uint8(fastpathFpFlowFlagsFP_FLOW_DNAT)
	flagReply   = uint8(fastpathFpFlowFlagsFP_FLOW_REPLY)
	flagPending = uint8(fastpathFpFlowFlagsFP_FLOW_PENDING)
)

// Flows lists the flow cache. The cache changes while it is read; a flow
// may be missed or listed after it went.
func (d *Datapath) Flows() ([]Flow, error) {
	var out []Flow
	err := d.EachFlow(func(f Flow) { out = append(out, f) })
	return out, err
}

// EachFlow calls fn for every flow in the cache, as Flows would list it,
// without holding them all.
func (d *Datapath) EachFlow(fn func(Flow)) error {
	fib, fw := d.Generations()
	return d.eachFlow(func(k *fastpathFpFlowKey, v *fastpathFpFlow) { fn(flowOf(*k, *v, fib, fw)) })
}

// flowBatch is how many flow entries one system call reads.
const flowBatch = 4096

// eachFlow calls fn for every entry of the flow cache, read in batches: one
// system call per flowBatch entries rather than two per entry, which at a
// million flows is the difference between seconds of CPU per scan and a
// fraction of one. fn must not keep its pointers.
func (d *Datapath) eachFlow(fn func(*fastpathFpFlowKey, *fastpathFpFlow)) error {
	keys := make([]fastpathFpFlowKey, flowBatch)
	vals := make([]fastpathFpFlow, flowBatch)
	var cursor ebpf.MapBatchCursor
	for first := true; ; first = false {
		n, err := d.objs.FpFlows.BatchLookup(&cursor, keys, vals, nil)
		if first && errors.Is(err, ebpf.ErrNotSupported) {
			return d.eachFlowSlow(fn)
		}
		for i := range n {
			fn(&keys[i], &vals[i])
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return nil // the end
		case err != nil:
			return fmt.Errorf("list flows: %w", err)
		}
	}
}

// eachFlowSlow is eachFlow for kernels without batch lookups.
func (d *Datapath) eachFlowSlow(fn func(*fastpathFpFlowKey, *fastpathFpFlow)) error {
	var (
		k fastpathFpFlowKey
		v fastpathFpFlow
	)
	it := d.objs.FpFlows.Iterate()
	for it.Next(&k, &v) {
		fn(&k, &v)
	}
	if err := it.Err(); err != nil && !errors.Is(err, ebpf.ErrIterationAborted) {
		return fmt.Errorf("list flows: %w", err)
	}
	return nil
}

// FlowCapacity is the flow cache's size.
func (d *Datapath) FlowCapacity() int { return int(d.objs.FpFlows.MaxEntries()) }

// ForgetConnection removes both directions of a connection from the
// record of what netfilter accepted and from the cache, given conntrack's
// two tuples (original and reply, as packets arrive): when conntrack
// destroys the entry, or (changed) another program changes it. The work
// is fp_forget's, in the kernel, so that each removed flow is counted and
// announced (flow_removed, reason no_conntrack or conntrack_changed) as
// every removal is: while the event ring has room to spare, as for the
// idle sweep (a conntrack flush brings thousands at once); unannounced
// counts the others. Returns how many directions were cached.
func (d *Datapath) ForgetConnection(orig, reply Tuple, changed bool) (removed, unannounced int, err error) {
	args := fastpathFpForgetArgs{K: [2]fastpathFpFlowKey{keyOf(orig), keyOf(reply)}}
	if changed {
		args.Changed = 1
	}
	if _, err := d.objs.FpForget.Run(&ebpf.RunOptions{Context: args, ContextOut: &args}); err != nil {
		return 0, 0, fmt.Errorf("forget connection %v: %w", orig, err)
	}
	return int(args.Removed), int(args.Unannounced), nil
}

// ExpireIdle removes flows whose last packet is older than idle. The LRU
// would evict them under pressure anyway, and a flow whose conntrack entry
// expired is forgotten by its destroy event or its next packet; this keeps
// `fastpath flows` about live traffic. The walk runs in the kernel
// (fp_sweep_idle): at a million flows it costs a fraction of reading them
// out. Each flow that goes is counted, and announced (flow_removed, reason
// idle) while the event ring has room to spare; unannounced counts the
// others. Returns how many went.
func (d *Datapath) ExpireIdle(idle time.Duration) (expired, unannounced int, err error) {
	now := Monotonic()
	if now <= idle {
		return 0, 0, nil // booted less than idle ago: nothing can be that old
	}
	args := fastpathFpSweepArgs{OlderThanNs: uint64(now - idle)}
	// A syscall program writes its results back into its context.
	if _, err := d.objs.FpSweepIdle.Run(&ebpf.RunOptions{Context: args, ContextOut: &args}); err != nil {
		return 0, 0, fmt.Errorf("expire idle flows: %w", err)
	}
	return int(args.Expired), int(args.Unannounced), nil
}
