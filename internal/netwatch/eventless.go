package netwatch

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// nft_meta_keys of the time of day (linux/netfilter/nf_tables.h), which
// the library does not name.
const (
	metaTimeNS   = 30
	metaTimeDay  = 31
	metaTimeHour = 32
)

// EventlessRuleset lists what in the calling thread's namespace's
// firewall can change a verdict without the kernel announcing it, so that
// only a packet sent through the ruleset again can tell: sets whose
// elements time out, sets the packet path updates (dynamic sets, rules
// that add to a set), rules on the time of day, rules on the routing table
// (route events re-route offloaded flows but do not re-judge them), and
// iptables-legacy tables, which send no events at all. Empty: every change comes with an
// event. An error means the ruleset could not be read, which the caller
// must treat as the worst case.
func EventlessRuleset() ([]string, error) {
	var why []string
	legacy, err := LegacyTables()
	if err != nil {
		return nil, err
	}
	why = append(why, legacy...)
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	tables, err := c.ListTables()
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	for _, t := range tables {
		sets, err := c.GetSets(t)
		if err != nil {
			return nil, fmt.Errorf("list sets of table %s: %w", t.Name, err)
		}
		for _, s := range sets {
			switch {
			case s.HasTimeout:
				why = append(why, fmt.Sprintf("set %s %s %s: elements time out", familyOf(t), t.Name, s.Name))
			case s.Dynamic:
				why = append(why, fmt.Sprintf("set %s %s %s: updated from the packet path", familyOf(t), t.Name, s.Name))
			}
		}
	}
	chains, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	for _, ch := range chains {
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			return nil, fmt.Errorf("list rules of chain %s: %w", ch.Name, err)
		}
		where := fmt.Sprintf("chain %s %s %s", familyOf(ch.Table), ch.Table.Name, ch.Name)
		for _, r := range rules {
			if w := eventlessRule(r.Exprs); w != "" {
				why = append(why, where+": "+w)
				break // one reason per chain is enough to say why
			}
		}
	}
	slices.Sort(why)
	return slices.Compact(why), nil
}

// eventlessRule says why a rule's verdict can change without an event ("" if
// it cannot).
func eventlessRule(exprs []expr.Any) string {
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Meta:
			if k := uint32(e.Key); k == metaTimeNS || k == metaTimeDay || k == metaTimeHour {
				return "a rule matches the time of day"
			}
		case *expr.Dynset:
			return fmt.Sprintf("a rule adds to set %s from the packet path", e.SetName)
		case *expr.Fib, *expr.Rt:
			// Route events re-route flows, not re-judge them.
			return "a rule matches on the routing table (fib, rt)"
		}
	}
	return ""
}

func familyOf(t *nftables.Table) string {
	switch t.Family {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyNetdev:
		return "netdev"
	case nftables.TableFamilyBridge:
		return "bridge"
	}
	return fmt.Sprintf("family-%d", t.Family)
}

// LegacyTables names the iptables-legacy (x_tables) tables loaded in the
// namespace: their rules change without any event, and so does their
// coming.
func LegacyTables() ([]string, error) {
	var why []string
	for _, f := range []struct{ file, tool string }{
		{"/proc/thread-self/net/ip_tables_names", "iptables-legacy"},
		{"/proc/thread-self/net/ip6_tables_names", "ip6tables-legacy"},
	} {
		b, err := os.ReadFile(f.file)
		if os.IsNotExist(err) {
			continue // x_tables not loaded
		}
		if err != nil {
			return nil, err
		}
		if names := strings.Fields(string(b)); len(names) > 0 {
			why = append(why, fmt.Sprintf("%s tables %s: no events", f.tool, strings.Join(names, ", ")))
		}
	}
	return why, nil
}
