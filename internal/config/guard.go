package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Guard configures the guard, the datapath's first stage on every managed
// interface: it drops by source before anything else runs (docs/guard.md).
// Everything here may change on reload.
type Guard struct {
	// Allow and Deny list source prefixes (or addresses). Allow wins over
	// deny and exempts from every limit.
	Allow []string `yaml:"allow,omitempty"`
	Deny  []string `yaml:"deny,omitempty"`
	// AllowFiles and DenyFiles name files of one prefix a line ('#'
	// comments); they are read at start and on every reload.
	AllowFiles []string `yaml:"allow_files,omitempty"`
	DenyFiles  []string `yaml:"deny_files,omitempty"`
	// SourcePrefix sets how much of a source address one per-source
	// bucket covers: /32 and /64 by default.
	SourcePrefix SourcePrefix `yaml:"source_prefix,omitempty"`
	// PerSource limits each source (prefix) alone.
	PerSource PerSource `yaml:"per_source,omitempty"`
	// Total limits all sources together.
	Total Total `yaml:"total,omitempty"`
	// EventInterval: at most one drop event per CPU this often into
	// `fastpath events` (default 1s).
	EventInterval Duration `yaml:"event_interval,omitempty"`
}

// SourcePrefix is the prefix length of a per-source bucket.
type SourcePrefix struct {
	IPv4 int `yaml:"ipv4,omitempty"`
	IPv6 int `yaml:"ipv6,omitempty"`
}

// PerSource are the limits of each source.
type PerSource struct {
	Packets  Limit `yaml:"packets,omitempty"`   // packets per second
	Bytes    Limit `yaml:"bytes,omitempty"`     // bytes per second
	SYN      Limit `yaml:"syn,omitempty"`       // TCP SYNs (without ACK) per second
	NewFlows Limit `yaml:"new_flows,omitempty"` // packets that would create a conntrack entry, per second
}

// Total are the limits of all sources together.
type Total struct {
	SYN      Limit `yaml:"syn,omitempty"`
	NewFlows Limit `yaml:"new_flows,omitempty"`
}

// Limit is a rate per second with a burst in the same unit; a limit left
// out means none. Burst defaults to one second of the rate (bytes: at
// least 64 KiB).
type Limit struct {
	Rate  int64 `yaml:"rate,omitempty"`
	Burst int64 `yaml:"burst,omitempty"`
}

// Guard defaults, and the bounds of its limits (the datapath's token
// buckets hold rates up to one token a nanosecond, bytes up to a terabyte a
// second, bursts up to an hour of the rate; a byte bucket must hold the
// largest packet, a GRO aggregate under TC).
const (
	GuardMaxRate       = 1_000_000_000
	GuardMaxByteRate   = 1_000_000_000_000
	GuardMaxBurstTime  = time.Hour
	GuardMinBytesBurst = 65536

	DefaultGuardPrefix4       = 32
	DefaultGuardPrefix6       = 64
	DefaultGuardEventInterval = time.Second
	minGuardEventInterval     = time.Millisecond
	maxGuardEventInterval     = time.Hour
)

// Enabled reports whether the guard has anything to do.
func (g Guard) Enabled() bool {
	return len(g.Allow)+len(g.Deny)+len(g.AllowFiles)+len(g.DenyFiles) > 0 ||
		g.PerSource != PerSource{} || g.Total != Total{}
}

// validate checks what can be checked without reading files: prefixes,
// prefix lengths, limits. The files are read (and each line checked) by
// guard.Load, at start, on reload and by check-config.
func (g Guard) validate(p *problems) {
	for _, l := range []struct {
		name string
		ps   []string
	}{{"guard.allow", g.Allow}, {"guard.deny", g.Deny}} {
		for i, s := range l.ps {
			if _, err := ParsePrefix(s); err != nil {
				p.add(fmt.Sprintf("%s[%d]", l.name, i), "", "%v", err)
			}
		}
	}
	for _, l := range []struct {
		name  string
		files []string
	}{{"guard.allow_files", g.AllowFiles}, {"guard.deny_files", g.DenyFiles}} {
		for i, f := range l.files {
			if f == "" {
				p.add(fmt.Sprintf("%s[%d]", l.name, i), "", "empty file name")
			}
		}
	}
	prefixLen := func(key string, v, hi, def int) {
		switch {
		case v == 0 && !p.present(key):
		case v < 1 || v > hi:
			p.add(key, "", "/%d is out of range; allowed 1 to %d (default %d)", v, hi, def)
		}
	}
	prefixLen("guard.source_prefix.ipv4", g.SourcePrefix.IPv4, 32, DefaultGuardPrefix4)
	prefixLen("guard.source_prefix.ipv6", g.SourcePrefix.IPv6, 128, DefaultGuardPrefix6)
	limit := func(key string, l Limit, maxRate, minBurst int64) {
		if !p.present(key) {
			return
		}
		switch {
		case l.Rate < 1 || l.Rate > maxRate:
			p.add(key+".rate", "", "%d is out of range; allowed 1 to %d per second (leave the limit out for none)", l.Rate, maxRate)
			return
		case l.Burst == 0 && !p.present(key+".burst"):
		case l.Burst < minBurst:
			p.add(key+".burst", "", "%d is below %d", l.Burst, minBurst)
		case float64(l.Burst)/float64(l.Rate) > GuardMaxBurstTime.Seconds(): // in seconds: a Duration overflows
			p.add(key+".burst", "", "%d is more than %v at rate %d", l.Burst, GuardMaxBurstTime, l.Rate)
		}
	}
	limit("guard.per_source.packets", g.PerSource.Packets, GuardMaxRate, 1)
	limit("guard.per_source.bytes", g.PerSource.Bytes, GuardMaxByteRate, GuardMinBytesBurst)
	limit("guard.per_source.syn", g.PerSource.SYN, GuardMaxRate, 1)
	limit("guard.per_source.new_flows", g.PerSource.NewFlows, GuardMaxRate, 1)
	limit("guard.total.syn", g.Total.SYN, GuardMaxRate, 1)
	limit("guard.total.new_flows", g.Total.NewFlows, GuardMaxRate, 1)
	durationIn(p, "guard.event_interval", g.EventInterval, minGuardEventInterval, maxGuardEventInterval, DefaultGuardEventInterval)
}

// ParsePrefix reads an IPv4 or IPv6 prefix ("198.18.0.0/15", "fd00::/8")
// or a single address (a /32 or /128). Host bits must be zero: a prefix
// written with them is more likely a typo than a wish.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, errors.New("empty prefix")
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP prefix", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or prefix", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: a zone has no place in a source prefix", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	switch {
	case p.Addr().Zone() != "":
		return netip.Prefix{}, fmt.Errorf("%q: a zone has no place in a source prefix", s)
	case p.Addr().Is4In6():
		return netip.Prefix{}, fmt.Errorf("%q: write IPv4-mapped addresses as IPv4", s)
	case p != p.Masked():
		return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %v?", s, p.Masked())
	}
	return p, nil
}
