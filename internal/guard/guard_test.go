package guard

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fastpath-router/fastpath/internal/datapath"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.txt")
	var b strings.Builder
	b.WriteString("# a list\n\n198.18.0.0/16  # comment\nfd00::/8\n198.18.3.4\n")
	for i := range 40000 { // tens of thousands of lines
		fmt.Fprintf(&b, "198.19.%d.%d/32\n", i/256, i%256)
	}
	os.WriteFile(good, []byte(b.String()), 0o644)
	ps, err := ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 40003 || ps[2] != netip.MustParsePrefix("198.18.3.4/32") {
		t.Errorf("read %d prefixes, third %v", len(ps), ps[2])
	}
	bad := filepath.Join(dir, "bad.txt")
	os.WriteFile(bad, []byte("198.18.0.0/16\n198.18.0.1/16\nfe80::1%eth0\n::ffff:198.18.0.1\n"), 0o644)
	_, err = ReadFile(bad)
	want := []string{
		bad + `:2: "198.18.0.1/16" has host bits set; did you mean 198.18.0.0/16?`,
		bad + `:3: "fe80::1%eth0": a zone has no place in a source prefix`,
		bad + `:4: "::ffff:198.18.0.1": write IPv4-mapped addresses as IPv4`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("errors:\n%v\nwant\n%s", err, strings.Join(want, "\n"))
	}
	if _, err := ReadFile(filepath.Join(dir, "missing.txt")); err == nil || !strings.Contains(err.Error(), "missing.txt") {
		t.Errorf("missing file: %v", err)
	}
	// Load: every problem, and nothing half-read
	_, err = Load(Spec{Deny: []string{"198.18.0.0/15", "x"}, DenyFiles: []string{good, filepath.Join(dir, "missing.txt")}})
	if err == nil || !strings.Contains(err.Error(), `guard.deny[1]: "x"`) || !strings.Contains(err.Error(), "guard.deny_files:") {
		t.Errorf("load errors: %v", err)
	}
	ls, err := Load(Spec{Allow: []string{"198.18.3.4", "198.18.3.4/32"}, DenyFiles: []string{good}})
	if err != nil || len(ls.Allow) != 1 || len(ls.Deny) != 40003 {
		t.Errorf("load: %d allow, %d deny, %v", len(ls.Allow), len(ls.Deny), err)
	}
}

// fakeDP records list contents and the order of changes.
type fakeDP struct {
	lists map[datapath.GuardList][]netip.Prefix
	fail  bool
}

func (f *fakeDP) SyncGuardList(l datapath.GuardList, want []netip.Prefix) (int, int, error) {
	if f.fail {
		return 0, 0, errors.New("map full")
	}
	old := f.lists[l]
	f.lists[l] = slices.Clone(want)
	slices.SortFunc(f.lists[l], comparePrefix)
	added, removed := 0, 0
	for _, p := range want {
		if !slices.Contains(old, p) {
			added++
		}
	}
	for _, p := range old {
		if !slices.Contains(want, p) {
			removed++
		}
	}
	return added, removed, nil
}

func (f *fakeDP) GuardEntries(l datapath.GuardList) ([]datapath.GuardEntry, error) {
	var out []datapath.GuardEntry
	for _, p := range f.lists[l] {
		out = append(out, datapath.GuardEntry{Prefix: p})
	}
	return out, nil
}

func TestManager(t *testing.T) {
	dp := &fakeDP{lists: map[datapath.GuardList][]netip.Prefix{}}
	m := NewManager(dp)
	p := netip.MustParsePrefix
	if _, err := m.SetConfig(Lists{Deny: []netip.Prefix{p("198.18.0.0/16")}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Add(datapath.GuardDeny, []netip.Prefix{p("198.19.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	// a reload replaces the config's part, keeps the run-time one
	acts, err := m.SetConfig(Lists{Deny: []netip.Prefix{p("198.18.1.0/24")}, Allow: []netip.Prefix{p("198.18.1.1/32")}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.Prefix{p("198.18.1.0/24"), p("198.19.0.0/16")}; !slices.Equal(dp.lists[datapath.GuardDeny], want) {
		t.Errorf("deny after reload %v, want %v", dp.lists[datapath.GuardDeny], want)
	}
	if want := []string{"guard allow list: config +1 -0 (now 1); datapath +1 -0",
		"guard deny list: config +1 -1 (now 1); datapath +1 -1, 1 run-time entries kept"}; !slices.Equal(acts, want) {
		t.Errorf("actions %q, want %q", acts, want)
	}
	// The config drops a prefix a run-time entry also lists: the
	// datapath keeps it, and the action says both.
	if err := m.Add(datapath.GuardDeny, []netip.Prefix{p("198.18.1.0/24")}); err != nil {
		t.Fatal(err)
	}
	acts, err = m.SetConfig(Lists{Allow: []netip.Prefix{p("198.18.1.1/32")}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"guard deny list: config +0 -1 (now 0); datapath +0 -0, 2 run-time entries kept"}; !slices.Equal(acts, want) {
		t.Errorf("actions %q, want %q", acts, want)
	}
	if err := m.Del(datapath.GuardDeny, []netip.Prefix{p("198.18.1.0/24")}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.SetConfig(Lists{Deny: []netip.Prefix{p("198.18.1.0/24")}, Allow: []netip.Prefix{p("198.18.1.1/32")}}); err != nil {
		t.Fatal(err)
	}
	es, _ := m.Entries(datapath.GuardDeny)
	if len(es) != 2 || es[0].Origin != OriginConfig || es[1].Origin != OriginRuntime || m.Count(datapath.GuardDeny) != 2 {
		t.Errorf("entries %+v", es)
	}
	// del: a config entry or an unlisted one fails and removes nothing
	if err := m.Del(datapath.GuardDeny, []netip.Prefix{p("198.19.0.0/16"), p("198.18.1.0/24")}); !errors.Is(err, ErrFromConfig) {
		t.Errorf("del of a config entry: %v", err)
	}
	var nl *NotListedError
	if err := m.Del(datapath.GuardDeny, []netip.Prefix{p("198.20.0.0/16")}); !errors.As(err, &nl) {
		t.Errorf("del of an unlisted entry: %v", err)
	}
	if len(dp.lists[datapath.GuardDeny]) != 2 {
		t.Errorf("failed dels changed the list: %v", dp.lists[datapath.GuardDeny])
	}
	if err := m.Del(datapath.GuardDeny, []netip.Prefix{p("198.19.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	if len(dp.lists[datapath.GuardDeny]) != 1 {
		t.Errorf("after del: %v", dp.lists[datapath.GuardDeny])
	}
	// a failing datapath leaves the manager's view as it was
	dp.fail = true
	if err := m.Add(datapath.GuardDeny, []netip.Prefix{p("198.21.0.0/16")}); err == nil {
		t.Error("add on a failing datapath succeeded")
	}
	dp.fail = false
	es, _ = m.Entries(datapath.GuardDeny)
	if len(es) != 1 {
		t.Errorf("entries after a failed add: %+v", es)
	}
	if _, err := ParseList("block"); err == nil {
		t.Error("unknown list accepted")
	}
}
