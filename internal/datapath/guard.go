package datapath

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// GuardList names one of the guard's prefix lists.
type GuardList string

// The guard's lists: allow wins over deny and exempts from every limit.
const (
	GuardAllow GuardList = "allow"
	GuardDeny  GuardList = "deny"
)

// GuardLimit is a rate (per second) with a burst (in the same unit). A zero
// Rate means no limit.
type GuardLimit struct {
	Rate  uint64
	Burst uint64
}

// GuardConfig is the guard's configuration, apart from the lists.
type GuardConfig struct {
	// Prefix4 and Prefix6 are the source prefix lengths one bucket of the
	// per-source limits covers (32 and 64 when zero).
	Prefix4, Prefix6 int
	// Per source.
	Packets, Bytes, SYN, NewFlows GuardLimit
	// All sources together; each CPU enforces its share (see docs/guard.md).
	SYNTotal, NewFlowsTotal GuardLimit
	// EventInterval: at most one drop event per CPU this often; 0 none.
	EventInterval time.Duration
}

// Bounds of what the datapath can represent; the config checks the same.
const (
	MaxGuardRate       = 1_000_000_000     // per second: one nanosecond per unit
	MaxGuardByteRate   = 1_000_000_000_000 // bytes per second
	MaxGuardBurstTime  = time.Hour         // a burst holds at most this much of its rate
	MinGuardBytesBurst = 65536             // the largest packet (a GRO aggregate in TC) must fit
)

// limitOf converts a limit to the datapath's GCRA form: cost per unit and
// burst tolerance in nanoseconds. shift scales the cost (bytes: << 16).
// share divides the rate (a CPU's share of a total).
func limitOf(what string, l GuardLimit, maxRate uint64, shift uint, share int) (fastpathFpGuardLimit, error) {
	if l.Rate == 0 {
		return fastpathFpGuardLimit{}, nil
	}
	if l.Rate > maxRate {
		return fastpathFpGuardLimit{}, fmt.Errorf("guard %s: rate %d above the maximum %d", what, l.Rate, maxRate)
	}
	if l.Burst == 0 {
		return fastpathFpGuardLimit{}, fmt.Errorf("guard %s: burst 0", what)
	}
	// cost = 1e9 * share / rate (<< shift), burst = burst * 1e9 * share / rate, in big
	// numbers: the products overflow 64 bits at the bounds.
	num := new(big.Int).Mul(big.NewInt(1e9), big.NewInt(int64(share)))
	cost := new(big.Int).Lsh(num, shift)
	cost.Quo(cost, new(big.Int).SetUint64(l.Rate))
	// A CPU's share of a burst is burst/share at share times the cost:
	// the same time.
	burstNs := new(big.Int).Mul(big.NewInt(1e9), new(big.Int).SetUint64(l.Burst))
	burstNs.Quo(burstNs, new(big.Int).SetUint64(l.Rate))
	if burstNs.Cmp(big.NewInt(int64(MaxGuardBurstTime))) > 0 {
		return fastpathFpGuardLimit{}, fmt.Errorf("guard %s: burst %d is more than %v at rate %d", what, l.Burst, MaxGuardBurstTime, l.Rate)
	}
	if cost.Sign() == 0 {
		cost.SetInt64(1)
	}
	if !cost.IsUint64() {
		return fastpathFpGuardLimit{}, fmt.Errorf("guard %s: rate %d too low", what, l.Rate)
	}
	return fastpathFpGuardLimit{CostNs: cost.Uint64(), BurstNs: burstNs.Uint64()}, nil
}

// CheckGuard says whether the datapath can take c, changing nothing.
func CheckGuard(c GuardConfig) error {
	_, err := guardCfgOf(c)
	return err
}

// guardCfgOf converts c to the datapath's form (flags left 0).
func guardCfgOf(c GuardConfig) (fastpathFpGuardCfg, error) {
	p4, p6 := c.Prefix4, c.Prefix6
	if p4 == 0 {
		p4 = 32
	}
	if p6 == 0 {
		p6 = 64
	}
	if p4 < 1 || p4 > 32 || p6 < 1 || p6 > 128 {
		return fastpathFpGuardCfg{}, fmt.Errorf("guard source prefix lengths /%d and /%d: allowed 1-32 and 1-128", p4, p6)
	}
	if c.EventInterval < 0 {
		return fastpathFpGuardCfg{}, fmt.Errorf("guard event interval %v is negative", c.EventInterval)
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return fastpathFpGuardCfg{}, err
	}
	v := fastpathFpGuardCfg{Prefix4: uint8(p4), Prefix6: uint8(p6), EventNs: uint64(c.EventInterval)}
	// The total burst is shared like the rate, but each CPU gets at least
	// one packet of it.
	total := func(l GuardLimit) GuardLimit {
		if l.Rate != 0 && l.Burst < uint64(ncpu) {
			l.Burst = uint64(ncpu)
		}
		return l
	}
	for _, l := range []struct {
		what  string
		dst   *fastpathFpGuardLimit
		l     GuardLimit
		max   uint64
		shift uint
		share int
	}{
		{"packets", &v.Pkt, c.Packets, MaxGuardRate, 0, 1},
		{"bytes", &v.Byte, c.Bytes, MaxGuardByteRate, 16, 1},
		{"syn", &v.Syn, c.SYN, MaxGuardRate, 0, 1},
		{"new flows", &v.NewFlow, c.NewFlows, MaxGuardRate, 0, 1},
		{"total syn", &v.SynAll, total(c.SYNTotal), MaxGuardRate, 0, ncpu},
		{"total new flows", &v.NewAll, total(c.NewFlowsTotal), MaxGuardRate, 0, ncpu},
	} {
		if *l.dst, err = limitOf(l.what, l.l, l.max, l.shift, l.share); err != nil {
			return fastpathFpGuardCfg{}, err
		}
	}
	if c.Bytes.Rate != 0 && c.Bytes.Burst < MinGuardBytesBurst {
		return fastpathFpGuardCfg{}, fmt.Errorf("guard bytes: burst %d below %d (the largest packet must fit)", c.Bytes.Burst, MinGuardBytesBurst)
	}
	return v, nil
}

// SetGuard writes the guard's limits. The list flags are kept: they follow
// the lists' contents.
func (d *Datapath) SetGuard(c GuardConfig) error {
	v, err := guardCfgOf(c)
	if err != nil {
		return err
	}
	d.guardMu.Lock()
	defer d.guardMu.Unlock()
	var old fastpathFpGuardCfg
	if err := d.objs.FpGuardConf.Lookup(uint32(0), &old); err != nil {
		return fmt.Errorf("read guard config: %w", err)
	}
	v.Flags = old.Flags
	// A changed total starts afresh, its full burst and no pressure of
	// the old one's: each CPU resets its share when it sees the new
	// generation, the pressure counts only under its own. The limits and
	// the reset go in one map update (a packet meanwhile may read a mix
	// of old and new fields: one packet judged by either).
	v.Gen = old.Gen
	if v.SynAll != old.SynAll || v.NewAll != old.NewAll {
		v.Gen++
	}
	if err := d.objs.FpGuardConf.Update(uint32(0), v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write guard config: %w", err)
	}
	return nil
}

// setGuardFlag turns a list's flag on or off; guardMu held.
func (d *Datapath) setGuardFlag(flag fastpathFpGuardFlags, on bool) error {
	var v fastpathFpGuardCfg
	if err := d.objs.FpGuardConf.Lookup(uint32(0), &v); err != nil {
		return fmt.Errorf("read guard config: %w", err)
	}
	was := v.Flags&uint32(flag) != 0
	if was == on {
		return nil
	}
	v.Flags ^= uint32(flag)
	if err := d.objs.FpGuardConf.Update(uint32(0), v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write guard config: %w", err)
	}
	return nil
}

func (d *Datapath) guardMaps(l GuardList) (m4, m6 *ebpf.Map, flag fastpathFpGuardFlags, err error) {
	switch l {
	case GuardAllow:
		return d.objs.FpGuardAllow4, d.objs.FpGuardAllow6, fastpathFpGuardFlagsFP_GUARD_F_ALLOW, nil
	case GuardDeny:
		return d.objs.FpGuardDeny4, d.objs.FpGuardDeny6, fastpathFpGuardFlagsFP_GUARD_F_DENY, nil
	}
	return nil, nil, 0, fmt.Errorf("unknown guard list %q", l)
}

// GuardEntry is one prefix of a guard list with the packets it matched.
type GuardEntry struct {
	Prefix  netip.Prefix
	Packets uint64
	Bytes   uint64
}

// GuardEntries reads a list, sorted by prefix.
func (d *Datapath) GuardEntries(l GuardList) ([]GuardEntry, error) {
	m4, m6, _, err := d.guardMaps(l)
	if err != nil {
		return nil, err
	}
	var out []GuardEntry
	var (
		k4 fastpathFpLpm4
		k6 fastpathFpLpm6
		v  fastpathFpGuardHits
	)
	it := m4.Iterate()
	for it.Next(&k4, &v) {
		a := addrOf(2, [4]uint32{k4.Addr})
		out = append(out, GuardEntry{Prefix: netip.PrefixFrom(a, int(k4.Prefixlen)), Packets: v.Packets, Bytes: v.Bytes})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read guard %s list: %w", l, err)
	}
	it = m6.Iterate()
	for it.Next(&k6, &v) {
		a := addrOf(10, k6.Addr)
		out = append(out, GuardEntry{Prefix: netip.PrefixFrom(a, int(k6.Prefixlen)), Packets: v.Packets, Bytes: v.Bytes})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read guard %s list: %w", l, err)
	}
	slices.SortFunc(out, func(a, b GuardEntry) int { return comparePrefix(a.Prefix, b.Prefix) })
	return out, nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// SyncGuardList makes a list hold exactly want, without a moment where a
// prefix that stays listed is missing or one being removed is still
// matched after the call: new entries go in first, stale ones leave after;
// entries that stay keep their counters. The prefixes must be masked.
func (d *Datapath) SyncGuardList(l GuardList, want []netip.Prefix) (added, removed int, err error) {
	m4, m6, flag, err := d.guardMaps(l)
	if err != nil {
		return 0, 0, err
	}
	for _, p := range want {
		if p != p.Masked() || !p.IsValid() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			return 0, 0, fmt.Errorf("guard %s list: %v is not a plain masked prefix", l, p)
		}
	}
	d.guardMu.Lock()
	defer d.guardMu.Unlock()
	have, err := d.GuardEntries(l)
	if err != nil {
		return 0, 0, err
	}
	wantSet := make(map[netip.Prefix]bool, len(want))
	for _, p := range want {
		wantSet[p] = true
	}
	haveSet := make(map[netip.Prefix]bool, len(have))
	for _, e := range have {
		haveSet[e.Prefix] = true
	}
	// New entries go in before stale ones leave: both must fit at once,
	// checked before anything changes.
	var n4, n6 uint32
	count := func(p netip.Prefix) {
		if p.Addr().Is4() {
			n4++
		} else {
			n6++
		}
	}
	for p := range wantSet {
		count(p)
	}
	for p := range haveSet {
		if !wantSet[p] {
			count(p)
		}
	}
	if n4 > m4.MaxEntries() || n6 > m6.MaxEntries() {
		return 0, 0, fmt.Errorf("guard %s list: %d IPv4 and %d IPv6 prefixes during the update (new before old leave); the datapath holds at most %d of each",
			l, n4, n6, m4.MaxEntries())
	}
	if len(want) > 0 {
		if err := d.setGuardFlag(flag, true); err != nil {
			return 0, 0, err
		}
	}
	for p := range wantSet {
		if haveSet[p] {
			continue
		}
		if err := guardUpdate(m4, m6, p, false); err != nil {
			return added, 0, fmt.Errorf("guard %s list: add %v: %w", l, p, err)
		}
		added++
	}
	for p := range haveSet {
		if wantSet[p] {
			continue
		}
		if err := guardUpdate(m4, m6, p, true); err != nil {
			return added, removed, fmt.Errorf("guard %s list: remove %v: %w", l, p, err)
		}
		removed++
	}
	if len(want) == 0 {
		if err := d.setGuardFlag(flag, false); err != nil {
			return added, removed, err
		}
	}
	return added, removed, nil
}

func guardUpdate(m4, m6 *ebpf.Map, p netip.Prefix, del bool) error {
	var (
		m   = m6
		key any
	)
	if p.Addr().Is4() {
		m = m4
		key = fastpathFpLpm4{Prefixlen: uint32(p.Bits()), Addr: wordsOf(p.Addr())[0]}
	} else {
		key = fastpathFpLpm6{Prefixlen: uint32(p.Bits()), Addr: wordsOf(p.Addr())}
	}
	if del {
		if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
		return nil
	}
	err := m.Update(key, fastpathFpGuardHits{}, ebpf.UpdateNoExist)
	if errors.Is(err, ebpf.ErrKeyExist) {
		return nil
	}
	return err
}

// GuardStats are one interface's guard counters summed over CPUs.
type GuardStats struct {
	DropPackets []uint64 // indexed like GuardReasonNames
	DropBytes   []uint64
	Allowed     uint64
	EventsLost  uint64
}

// GuardReasonNames returns the guard's drop reason names, e.g. "deny".
func (d *Datapath) GuardReasonNames() []string { return d.guardReasons }

// GuardStats reads the guard counters of every managed interface.
func (d *Datapath) GuardStats() (map[int]GuardStats, error) {
	d.slotMu.Lock()
	slots := make(map[int]uint32, len(d.slots))
	for k, v := range d.slots {
		slots[k] = v
	}
	d.slotMu.Unlock()
	out := make(map[int]GuardStats, len(slots))
	var percpu []fastpathFpGuardStats
	for ifindex, slot := range slots {
		if err := d.objs.FpGuardCnt.Lookup(slot, &percpu); err != nil {
			return nil, fmt.Errorf("read guard counters: %w", err)
		}
		s := GuardStats{DropPackets: make([]uint64, len(d.guardReasons)), DropBytes: make([]uint64, len(d.guardReasons))}
		for _, c := range percpu {
			for i := range s.DropPackets {
				s.DropPackets[i] += c.DropPackets[i]
				s.DropBytes[i] += c.DropBytes[i]
			}
			s.Allowed += c.Allowed
			s.EventsLost += c.EventsLost
		}
		out[ifindex] = s
	}
	return out, nil
}

// resetGuardStats zeroes a slot's guard counters (a new interface).
func (d *Datapath) resetGuardStats(slot uint32) error {
	zero := make([]fastpathFpGuardStats, ebpf.MustPossibleCPU())
	if err := d.objs.FpGuardCnt.Update(slot, zero, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("reset guard counters: %w", err)
	}
	return nil
}

// GuardSource is a source (masked to the bucket prefix) the guard dropped
// packets of. Counts are estimates: one drop in 16 per CPU is counted, as 16.
type GuardSource struct {
	Prefix  netip.Prefix
	Packets uint64
	Bytes   uint64
	Reason  string // the last drop's
}

// GuardTop returns up to n dropped sources, most packets first (n <= 0:
// all the datapath keeps).
func (d *Datapath) GuardTop(n int) ([]GuardSource, error) {
	var cfg fastpathFpGuardCfg
	if err := d.objs.FpGuardConf.Lookup(uint32(0), &cfg); err != nil {
		return nil, fmt.Errorf("read guard config: %w", err)
	}
	var (
		k   fastpathFpGuardSrc
		v   fastpathFpGuardTop
		out []GuardSource
	)
	it := d.objs.FpGuardTops.Iterate()
	for it.Next(&k, &v) {
		a := addrOf(uint8(k.Family), k.Addr)
		bits := int(cfg.Prefix6)
		if a.Is4() {
			bits = int(cfg.Prefix4)
		}
		p, err := a.Prefix(bits)
		if err != nil {
			p = netip.PrefixFrom(a, a.BitLen())
		}
		s := GuardSource{Prefix: p, Packets: v.Packets, Bytes: v.Bytes}
		if int(v.Reason) < len(d.guardReasons) {
			s.Reason = d.guardReasons[v.Reason]
		}
		out = append(out, s)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read dropped sources: %w", err)
	}
	slices.SortFunc(out, func(a, b GuardSource) int {
		if a.Packets != b.Packets {
			if a.Packets > b.Packets {
				return -1
			}
			return 1
		}
		return comparePrefix(a.Prefix, b.Prefix)
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// guardReasonNames reads enum fp_guard_reason from BTF, like reasonNames.
func guardReasonNames(spec *ebpf.CollectionSpec) ([]string, error) {
	var e *btf.Enum
	if err := spec.Types.TypeByName("fp_guard_reason", &e); err != nil {
		return nil, fmt.Errorf("bpf object has no enum fp_guard_reason: %w", err)
	}
	var names []string
	for i, v := range e.Values {
		if v.Value != uint64(i) {
			return nil, fmt.Errorf("enum fp_guard_reason is not dense at %s", v.Name)
		}
		if v.Name == "FP_GUARD_MAX" {
			break
		}
		names = append(names, strings.ToLower(strings.TrimPrefix(v.Name, "FP_GUARD_")))
	}
	if len(names) != len(fastpathFpGuardStats{}.DropPackets) {
		return nil, fmt.Errorf("enum fp_guard_reason has %d reasons, counters have %d", len(names), len(fastpathFpGuardStats{}.DropPackets))
	}
	return names, nil
}
