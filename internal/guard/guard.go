// Package guard holds the guard's prefix lists on the daemon's side: it
// parses prefixes and list files, and keeps the datapath's allow and deny
// lists equal to what the config and the run-time additions ask for. The
// packet side is bpf/lib/guard.h; docs/guard.md describes both.
package guard

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/fastpath-router/fastpath/internal/config"
	"github.com/fastpath-router/fastpath/internal/datapath"
)

// MaxFileLines bounds one list file, so a wrong path (a log, a disk image)
// fails clearly instead of filling memory.
const MaxFileLines = 1 << 20

// ReadFile reads a list file: one prefix a line; blank lines and text after
// '#' are ignored. Every bad line is reported (file:line), up to a few.
func ReadFile(path string) ([]netip.Prefix, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("guard list file: %w", err)
	}
	defer f.Close()
	var (
		out  []netip.Prefix
		errs []error
		line int
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line++
		if line > MaxFileLines {
			return nil, fmt.Errorf("%s: more than %d lines; is this a prefix list?", path, MaxFileLines)
		}
		text, _, _ := strings.Cut(sc.Text(), "#")
		if strings.TrimSpace(text) == "" {
			continue
		}
		p, err := config.ParsePrefix(text)
		if err != nil {
			if len(errs) < 10 {
				errs = append(errs, fmt.Errorf("%s:%d: %w", path, line, err))
			}
			continue
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// Spec is what the config says of the lists.
type Spec struct {
	Allow, Deny           []string
	AllowFiles, DenyFiles []string
}

// Lists are parsed, deduplicated and sorted prefix lists.
type Lists struct {
	Allow, Deny []netip.Prefix
}

// Load reads the inline prefixes and every file. Any problem fails the
// whole load, with every problem found: nothing is applied from half a
// list.
func Load(s Spec) (Lists, error) {
	var (
		errs []error
		out  Lists
	)
	read := func(name string, inline, files []string) []netip.Prefix {
		var ps []netip.Prefix
		for i, x := range inline {
			p, err := config.ParsePrefix(x)
			if err != nil {
				errs = append(errs, fmt.Errorf("guard.%s[%d]: %w", name, i, err))
				continue
			}
			ps = append(ps, p)
		}
		for _, path := range files {
			fp, err := ReadFile(path)
			if err != nil {
				errs = append(errs, fmt.Errorf("guard.%s_files: %w", name, err))
				continue
			}
			ps = append(ps, fp...)
		}
		return sortPrefixes(ps)
	}
	out.Allow = read("allow", s.Allow, s.AllowFiles)
	out.Deny = read("deny", s.Deny, s.DenyFiles)
	if err := errors.Join(errs...); err != nil {
		return Lists{}, err
	}
	return out, nil
}

func sortPrefixes(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, comparePrefix)
	return slices.Compact(ps)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// Datapath is what the manager needs of the datapath.
type Datapath interface {
	SyncGuardList(l datapath.GuardList, want []netip.Prefix) (added, removed int, err error)
	GuardEntries(l datapath.GuardList) ([]datapath.GuardEntry, error)
}

// Origins of a list entry.
const (
	OriginConfig  = "config"  // the config file (inline or a list file)
	OriginRuntime = "runtime" // added through the API; gone with the daemon
)

// Entry is one prefix of a list as the manager and the datapath see it.
type Entry struct {
	Prefix  netip.Prefix
	Origin  string
	Packets uint64
	Bytes   uint64
}

// Manager keeps the datapath's lists equal to the config's entries plus
// the run-time ones. A reload replaces the config's part and keeps the
// run-time part.
type Manager struct {
	mu      sync.Mutex
	dp      Datapath
	conf    map[datapath.GuardList]map[netip.Prefix]bool
	runtime map[datapath.GuardList]map[netip.Prefix]bool
}

// NewManager returns a manager with empty lists (nothing applied yet).
func NewManager(dp Datapath) *Manager {
	m := &Manager{dp: dp, conf: map[datapath.GuardList]map[netip.Prefix]bool{}, runtime: map[datapath.GuardList]map[netip.Prefix]bool{}}
	for _, l := range []datapath.GuardList{datapath.GuardAllow, datapath.GuardDeny} {
		m.conf[l] = map[netip.Prefix]bool{}
		m.runtime[l] = map[netip.Prefix]bool{}
	}
	return m
}

// ParseList names a list ("allow" or "deny").
func ParseList(s string) (datapath.GuardList, error) {
	switch l := datapath.GuardList(s); l {
	case datapath.GuardAllow, datapath.GuardDeny:
		return l, nil
	}
	return "", fmt.Errorf("unknown guard list %q; allowed: allow, deny", s)
}

// sync writes one list's union to the datapath; mu held.
func (m *Manager) sync(l datapath.GuardList) (added, removed int, err error) {
	want := make([]netip.Prefix, 0, len(m.conf[l])+len(m.runtime[l]))
	for p := range m.conf[l] {
		want = append(want, p)
	}
	for p := range m.runtime[l] {
		if !m.conf[l][p] {
			want = append(want, p)
		}
	}
	return m.dp.SyncGuardList(l, want)
}

// SetConfig replaces the config's part of both lists. It returns what
// changed, for the reload's actions.
func (m *Manager) SetConfig(ls Lists) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var actions []string
	// Allow first: a prefix moving from deny to allow is never dropped
	// on the way.
	for _, x := range []struct {
		l  datapath.GuardList
		ps []netip.Prefix
	}{{datapath.GuardAllow, ls.Allow}, {datapath.GuardDeny, ls.Deny}} {
		l, ps := x.l, x.ps
		old := m.conf[l]
		m.conf[l] = make(map[netip.Prefix]bool, len(ps))
		for _, p := range ps {
			m.conf[l][p] = true
		}
		added, removed, err := m.sync(l)
		if err != nil {
			m.conf[l] = old
			if _, _, rerr := m.sync(l); rerr != nil {
				err = errors.Join(err, rerr)
			}
			return actions, fmt.Errorf("guard %s list: %w", l, err)
		}
		if act := listChange(l, old, m.conf[l], len(m.runtime[l]), added, removed); act != "" {
			actions = append(actions, act)
		}
	}
	return actions, nil
}

// listChange says what a reload did to one list: the config's part (what
// the operator edited) and the datapath's whole list, whose run-time
// entries a reload keeps. Empty when neither changed.
func listChange(l datapath.GuardList, old, conf map[netip.Prefix]bool, runtime, added, removed int) string {
	var cadd, cdel int
	for p := range conf {
		if !old[p] {
			cadd++
		}
	}
	for p := range old {
		if !conf[p] {
			cdel++
		}
	}
	if cadd+cdel+added+removed == 0 {
		return ""
	}
	s := fmt.Sprintf("guard %s list: config +%d -%d (now %d); datapath +%d -%d", l, cadd, cdel, len(conf), added, removed)
	if runtime > 0 {
		s += fmt.Sprintf(", %d run-time entries kept", runtime)
	}
	return s
}

// Add lists prefixes at run time. Already listed ones are no error.
func (m *Manager) Add(l datapath.GuardList, ps []netip.Prefix) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	rt := m.runtime[l]
	var fresh []netip.Prefix
	for _, p := range ps {
		if !rt[p] {
			rt[p] = true
			fresh = append(fresh, p)
		}
	}
	if _, _, err := m.sync(l); err != nil {
		for _, p := range fresh {
			delete(rt, p)
		}
		m.sync(l)
		return err
	}
	return nil
}

// ErrFromConfig is returned by Del for a prefix the config lists.
var ErrFromConfig = errors.New("listed by the config file: remove it there and reload")

// NotListedError is returned by Del for a prefix not in the list.
type NotListedError struct {
	List   datapath.GuardList
	Prefix netip.Prefix
}

func (e *NotListedError) Error() string {
	return fmt.Sprintf("%v is not in the guard %s list", e.Prefix, e.List)
}

// Del removes run-time prefixes. All are checked first: a prefix the
// config lists or one not listed at all fails the call with nothing
// removed.
func (m *Manager) Del(l datapath.GuardList, ps []netip.Prefix) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range ps {
		switch {
		case m.conf[l][p]:
			return fmt.Errorf("%v: %w", p, ErrFromConfig)
		case !m.runtime[l][p]:
			return &NotListedError{List: l, Prefix: p}
		}
	}
	for _, p := range ps {
		delete(m.runtime[l], p)
	}
	if _, _, err := m.sync(l); err != nil {
		for _, p := range ps {
			m.runtime[l][p] = true
		}
		m.sync(l)
		return err
	}
	return nil
}

// Entries lists a list with the datapath's counters, sorted by prefix.
func (m *Manager) Entries(l datapath.GuardList) ([]Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	have, err := m.dp.GuardEntries(l)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(have))
	for _, e := range have {
		origin := OriginRuntime
		if m.conf[l][e.Prefix] {
			origin = OriginConfig
		}
		out = append(out, Entry{Prefix: e.Prefix, Origin: origin, Packets: e.Packets, Bytes: e.Bytes})
	}
	return out, nil
}

// Count is how many prefixes a list holds (config and run-time entries),
// without reading the datapath.
func (m *Manager) Count(l datapath.GuardList) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(m.conf[l])
	for p := range m.runtime[l] {
		if !m.conf[l][p] {
			n++
		}
	}
	return n
}

// SpecOf is the lists part of the guard's config, for Load.
func SpecOf(g config.Guard) Spec {
	return Spec{Allow: g.Allow, Deny: g.Deny, AllowFiles: g.AllowFiles, DenyFiles: g.DenyFiles}
}

// DatapathConfig is the limits part of the guard's config as the datapath
// takes it, defaults filled.
func DatapathConfig(g config.Guard) datapath.GuardConfig {
	lim := func(l config.Limit, minBurst int64) datapath.GuardLimit {
		if l.Rate == 0 {
			return datapath.GuardLimit{}
		}
		b := l.Burst
		if b == 0 {
			b = max(l.Rate, minBurst)
		}
		return datapath.GuardLimit{Rate: uint64(l.Rate), Burst: uint64(b)}
	}
	c := datapath.GuardConfig{
		Prefix4: g.SourcePrefix.IPv4, Prefix6: g.SourcePrefix.IPv6,
		Packets: lim(g.PerSource.Packets, 1), Bytes: lim(g.PerSource.Bytes, config.GuardMinBytesBurst),
		SYN: lim(g.PerSource.SYN, 1), NewFlows: lim(g.PerSource.NewFlows, 1),
		SYNTotal: lim(g.Total.SYN, 1), NewFlowsTotal: lim(g.Total.NewFlows, 1),
		EventInterval: g.EventInterval.Std(),
	}
	if c.Prefix4 == 0 {
		c.Prefix4 = config.DefaultGuardPrefix4
	}
	if c.Prefix6 == 0 {
		c.Prefix6 = config.DefaultGuardPrefix6
	}
	if c.EventInterval == 0 {
		c.EventInterval = config.DefaultGuardEventInterval
	}
	return c
}
