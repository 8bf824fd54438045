package netwatch

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// TestEventlessRuleset: a static ruleset changes only with events; sets
// with timeouts, dynamic sets, rules adding to sets, time-of-day rules and
// iptables-legacy tables can change verdicts without one, and are named.
func TestEventlessRuleset(t *testing.T) {
	ns := emptyNS(t)
	nft := func(ruleset string) { t.Helper(); inNS(t, ns, ruleset, "nft", "-f", "-") }
	read := func() []string {
		t.Helper()
		var why []string
		if err := nsutil.Do(ns, func() (err error) {
			why, err = EventlessRuleset()
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return why
	}
	nft(`table inet fw {
	set allow { type ipv4_addr; elements = { 198.18.0.1 } }
	chain forward {
		type filter hook forward priority 0; policy drop;
		ct state established accept
		ip saddr @allow accept
		iifname "r0" oifname "r1" accept
	}
}
table ip nat {
	chain post {
		type nat hook postrouting priority srcnat;
		masquerade
	}
}
`)
	if why := read(); len(why) != 0 {
		t.Errorf("static ruleset: %q, want nothing", why)
	}
	for _, c := range []struct{ ruleset, want string }{
		{"table inet fw {\n set temp {\n type ipv4_addr\n flags timeout\n }\n}\n", "set inet fw temp: elements time out"},
		{"table inet fw {\n set seen {\n type ipv4_addr\n flags dynamic\n }\n}\n", "set inet fw seen: updated from the packet path"},
		{"add rule inet fw forward update @seen { ip saddr }\n", "chain inet fw forward: a rule adds to set seen from the packet path"},
		{"table inet rp {\n chain pre {\n type filter hook prerouting priority -150;\n fib saddr . iif oif missing drop\n }\n}\n", "chain inet rp pre: a rule matches on the routing table (fib, rt)"},
		{"table inet tod {\n chain f {\n type filter hook forward priority 10;\n meta hour \"08:00\"-\"17:00\" drop\n }\n}\n", "chain inet tod f: a rule matches the time of day"},
	} {
		nft(c.ruleset)
		if why := read(); !strings.Contains(strings.Join(why, "\n"), c.want) {
			t.Errorf("after %q: %q, want %q among them", c.ruleset, why, c.want)
		}
	}
	if _, err := exec.LookPath("iptables-legacy"); err != nil {
		t.Log("no iptables-legacy: its case is not checked")
		return
	}
	if out, err := exec.Command("ip", "netns", "exec", ns, "iptables-legacy", "-t", "filter", "-A", "FORWARD", "-j", "ACCEPT").CombinedOutput(); err != nil {
		t.Logf("iptables-legacy unusable here (%v: %s): its case is not checked", err, out)
		return
	}
	if why := read(); !strings.Contains(strings.Join(why, "\n"), "iptables-legacy tables filter") {
		t.Errorf("with an iptables-legacy rule: %q", why)
	}
}
