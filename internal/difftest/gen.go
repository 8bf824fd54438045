package difftest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Lab addresses the scripts use (internal/lab's fixed layout).
const (
	gen4, gen6     = "198.18.1.1", "fd00:1::1"
	sink4, sink6   = "198.18.2.1", "fd00:2::1"
	sink24, sink26 = "198.18.3.1", "fd00:3::1"
)

// knownDivergence names a divergence the daemon is known to have for
// generated script s ("" if none): the script is kept and skipped with
// this message until the daemon follows it (DIFFTEST_KNOWN=1 plays it
// anyway). None is known now (nftables device chains, issue 9 case 6,
// were the last). A fixed script names its own with a "known" line.
func knownDivergence(*Script) string { return "" }

// forgedResets is the traffic of the forged-reset scripts (issue 16, case
// 1): two offloaded connections, and resets, then FINs with acks, from the
// sink's side with sequence numbers half the sequence space away.
const forgedResets = `flow t4 tcp 4 200
flow t6 tcp 6 200
at 500ms craft t4 reply flags=R seq=+2147483648
at 500ms craft t6 reply flags=R seq=+2147483648
at 900ms craft t4 reply flags=FA seq=+2147483648 ack=+2147483648
at 900ms craft t6 reply flags=FA seq=+2147483648 ack=+2147483648
`

// Fixed is the set CI runs: issue 16's cases 1 to 5 (hostile and unusual
// packets inside offloaded flows: crafted packets, MTU changes) and issue
// 9's cases 1 to 8, each a change that stops, redirects or reshapes an
// offloaded flow, with flows beside it that the change must leave alone.
func Fixed() []*Script {
	p := func(text string) *Script {
		s, err := Parse(text)
		if err != nil {
			panic(err) // the fixed scripts are constants: a test catches this
		}
		if s.Known == "" {
			s.Known = knownDivergence(s)
		}
		return s
	}
	return []*Script{
		// Issue 16, case 1: forged resets and FINs with the reply tuple
		// of offloaded masqueraded connections and sequence numbers half
		// the sequence space away, sent from the sink's side. The kernel
		// alone calls them out of window: they reach the router's own
		// stack (the masquerade address), not gen, and the connections
		// live. The FIN's ack is as far out, or the router's own stack
		// would answer it with a reset the sink takes as valid.
		p(`script i16-case1-forged-reset
nat
duration 1.6s
` + forgedResets),
		// Case 1 without NAT: the kernel alone forwards the forged
		// segments to gen as INVALID (untracked; gen, out of window,
		// ignores them), fastpath drops them. Kept as a known
		// divergence (docs/offload.md); with `ct state invalid drop`, as
		// routers usually have, the kernel drops them too.
		p(`script i16-case1b-forged-reset-no-nat
duration 1.6s
known fastpath drops out-of-window FIN/RST of offloaded flows; the kernel forwards them as INVALID where no rule drops those (docs/offload.md)
` + forgedResets),
		// The same with `ct state invalid drop`: the kernel drops them.
		p(`script i16-case1c-forged-reset-invalid-drop
duration 1.6s
setup rtr nft add rule inet dt chg ct state invalid counter name invalid drop
` + forgedResets),
		// Issue 16, case 2: packets conntrack calls INVALID with
		// offloaded flows' tuples and in-window numbers, under
		// `ct state invalid drop`: TCP without flags, URG alone, a
		// wrong TCP checksum, wrong UDP checksums.
		p(`script i16-case2-invalid-packets
nat
duration 1.8s
setup rtr nft add rule inet dt chg ct state invalid counter name invalid drop
flow t4 tcp 4 200
flow t6 tcp 6 200
flow u4 udp 4 200
flow u6 udp 6 200
at 400ms craft t4 orig flags=none
at 400ms craft t6 orig flags=none
at 700ms craft t4 orig flags=U
at 700ms craft t6 orig flags=U
at 1000ms craft t4 orig badsum
at 1000ms craft t6 orig badsum
at 1300ms craft u4 orig badsum
at 1300ms craft u6 orig badsum
`),
		// Issue 16, case 3: the egress's IPv6 MTU lowered under an
		// offloaded NAT66 flow (a sysctl or a router advertisement; no
		// event: the daemon polls it), then raised again.
		p(`script i16-case3-ipv6-interface-mtu
nat
duration 2.4s
flow u6 udp 6 1350
flow u4 udp 4 1350
at 700ms event rtr sysctl -qw net.ipv6.conf.r1.mtu=1280
at 1600ms event rtr sysctl -qw net.ipv6.conf.r1.mtu=1500
`),
		// Issue 16, case 4: a route MTU lowered under offloaded flows.
		p(`script i16-case4-route-mtu
nat
duration 2.4s
flow u4 udp 4 1350
flow u6 udp 6 1350
at 700ms event rtr ip route replace 198.18.2.1/32 dev r1 mtu 1000
at 700ms event rtr ip -6 route replace fd00:2::1/128 dev r1 mtu 1280
`),
		// Issue 16, case 5: frames with 320 bytes after the IP datagram
		// (Ethernet padding or a trailer) in offloaded flows: the kernel
		// trims them. The TCP one repeats the last 32 bytes gen sent (the
		// sink drops them as old), so it cannot corrupt the stream.
		p(`script i16-case5-ethernet-trailer
nat
duration 1.2s
flow u4 udp 4 200
flow u6 udp 6 200
flow t4 tcp 4 200
at 400ms craft u4 orig trailer=320
at 400ms craft u6 orig trailer=320
at 600ms craft t4 orig seq=+4294967264 trailer=320
`),
		// 1: a route moves the flow to an egress the ruleset drops on.
		// The next hop is resolved beforehand, as on a router where it
		// carries other traffic: otherwise fastpath leaves the flow to
		// the kernel for want of a neighbour, and the case tests nothing.
		p(`script case1-route-moves-flow
r2
nat
duration 2s
setup rtr ping -q -c 1 -W 1 198.18.3.1
setup rtr ping -q -c 1 -W 1 fd00:3::1
setup rtr nft add rule inet dt chg oifname "r2" drop
flow u4 udp 4 200
flow u6 udp 6 200
flow i4 icmp 4 64
at 700ms event rtr ip route replace 198.18.2.1/32 via 198.18.3.1
at 700ms event rtr ip -6 route replace fd00:2::1/128 via fd00:3::1
`),
		// 1b: the same move without the drop rule: the flow arrives at
		// sink2, un-NATed (masquerade is on r1 only).
		p(`script case1b-route-moves-flow-unfiltered
r2
nat
duration 2s
setup rtr ping -q -c 1 -W 1 198.18.3.1
flow u4 udp 4 200
flow t4 tcp 4 200
at 700ms event rtr ip route replace 198.18.2.1/32 via 198.18.3.1
at 1300ms event rtr ip route del 198.18.2.1/32
`),
		// 2: a policy routing rule prohibits the destination, then goes.
		p(`script case2-ip-rule-prohibit
nat
duration 2.4s
flow u4 udp 4 200
flow t4 tcp 4 200
flow u6 udp 6 200
at 700ms event rtr ip rule add to 198.18.2.1 prohibit pref 100
at 1500ms event rtr ip rule del pref 100
`),
		// 3: IPv4 forwarding off and on again; IPv6 flows go on.
		p(`script case3-ip-forward-off
duration 2.2s
flow u4 udp 4 200
flow u6 udp 6 200
flow i6 icmp 6 64
at 700ms event rtr sysctl -qw net.ipv4.ip_forward=0
at 1400ms event rtr sysctl -qw net.ipv4.ip_forward=1
`),
		// 4: a conntrack mark set through ctnetlink meets a mark rule.
		p(`script case4-ct-mark-drop
nat
duration 2s
setup rtr nft add rule inet dt chg ct mark 0x1 drop
flow u4 udp 4 200
flow u6 udp 6 200
at 700ms event rtr conntrack -U -f ipv4 -p udp -d 198.18.2.1 -m 1
`),
		// 5: an allowlist element expires: no event, the revalidation
		// interval bounds it.
		p(`script case5-set-element-timeout
nat
duration 3.3s
setup rtr nft add set inet dt allow4 { type ipv4_addr; flags timeout; }
setup rtr nft add element inet dt allow4 { 198.18.1.1 timeout 1h }
setup rtr nft add rule inet dt chg ip daddr 198.18.2.1 ip saddr != @allow4 drop
flow u4 udp 4 200
flow t4 tcp 4 200
flow u6 udp 6 200
at 300ms reval+1s rtr nft delete element inet dt allow4 { 198.18.1.1 }; add element inet dt allow4 { 198.18.1.1 timeout 1s }
`),
		// 6: netdev family chains on the router's interfaces: a DSCP
		// rewrite on r1's egress, then a drop on r0's ingress.
		p(`script case6-netdev-chains
nat
duration 2.2s
flow u4 udp 4 200
flow u6 udp 6 200
flow t4 tcp 4 200
at 600ms event rtr nft add table netdev dtn; add chain netdev dtn eg { type filter hook egress device "r1" priority 0; }; add rule netdev dtn eg ip dscp set cs1; add rule netdev dtn eg ip6 dscp set cs1
at 1300ms event rtr nft add chain netdev dtn in { type filter hook ingress device "r0" priority 0; }; add rule netdev dtn in udp dport 5001 drop
`),
		// 7: an egress shaper (tbf at 400 kbit/s against 1.6 Mbit/s
		// offered) holds, then goes.
		p(`script case7-egress-tbf
nat
duration 2.4s
flow u4 udp 4 1000
flow u6 udp 6 1000
at 600ms event,shape rtr tc qdisc replace dev r1 root tbf rate 400kbit burst 4kb latency 50ms
at 1500ms event,unshape rtr tc qdisc del dev r1 root
`),
		// 8: TCP behind NAT with one direction fragmented (path MTU
		// discovery off on the hosts, r1's MTU below gen's segments):
		// gen's data stays on the kernel path while the sink's ACKs may
		// be offloaded; no connection may be reset, neither the fresh
		// ones (a 45 KB connection every 10 ms) nor a long bulk one.
		p(`script case8-tcp-nat-fragmented
nat
duration 1.5s
setup gen sysctl -qw net.ipv4.ip_no_pmtu_disc=1
setup sink sysctl -qw net.ipv4.ip_no_pmtu_disc=1
setup rtr ip link set r1 mtu 1400
flow c4 tcpconn 4 1400 200
flow t4 tcp 4 1400 16
flow u4 udp 4 200
`),
	}
}

// change is one kind of change the generator may pick: steps to apply it
// (and undo it), and setup it needs. target is the flow it aims at.
type change struct {
	name string
	// needs says whether the change applies to a script.
	needs func(s *Script, target Flow) bool
	make  func(r *rand.Rand, s *Script, target Flow) (setup []Cmd, do Step, undo *Step)
}

func famFlags(f Flow) (ipf, addr, plen, nftIP, ctFam string) {
	if f.V6 {
		return "-6", sink6, "128", "ip6", "ipv6"
	}
	return "-4", sink4, "32", "ip", "ipv4"
}

func rtr(argv ...string) Cmd { return Cmd{NS: "rtr", Argv: argv} }

func nftCmd(text string) Cmd { return rtr(append([]string{"nft"}, strings.Fields(text)...)...) }

var changes = []change{
	{"drop-rule", nil, func(r *rand.Rand, s *Script, f Flow) ([]Cmd, Step, *Step) {
		_, addr, _, ip, _ := famFlags(f)
		match := fmt.Sprintf("%s daddr %s", ip, addr)
		if f.Proto != "icmp" {
			match += fmt.Sprintf(" %s dport %d", f.Proto, f.DstPort())
		}
		do := Step{Cmd: nftCmd("add chain inet dt dr { type filter hook forward priority -4; }; add rule inet dt dr " + match + " drop")}
		return nil, do, &Step{Cmd: nftCmd("delete chain inet dt dr")}
	}},
	{"iif-drop-rule", nil, func(r *rand.Rand, s *Script, f Flow) ([]Cmd, Step, *Step) {
		do := Step{Cmd: nftCmd(`add chain inet dt ii { type filter hook forward priority -3; }; add rule inet dt ii iifname "r0" drop`)}
		return nil, do, &Step{Cmd: nftCmd("delete chain inet dt ii")}
	}},
	{"prohibit-route", nil, func(r *rand.Rand, s *Script, f Flow) ([]Cmd, Step, *Step) {
		ipf, addr, plen, _, _ := famFlags(f)
		kind := []string{"prohibit", "blackhole", "unreachable"}[r.IntN(3)]
		return nil, Step{Cmd: rtr("ip", ipf, "route", "add", kind, addr+"/"+plen)},
			&Step{Cmd: rtr("ip", ipf, "route", "del", kind, addr+"/"+plen)}
	}},
	{"ip-rule", nil, func(r *rand.Rand, s *Script, f Flow) ([]Cmd, Step, *Step) {
		ipf, addr, _, _, _ := famFlags(f)
		return nil, Step{Cmd: rtr("ip", ipf, "rule", "add", "to", addr, "prohibit", "pref", "100")},
			&Step{Cmd: rtr("ip", ipf, "rule", "del", "pref", "100")}
	}},
	{"forwarding-off", nil, func(r *rand.Rand, s *Script, f Flow) ([]Cmd, Step, *Step) {
		key := "net.ipv4.ip_forward"
		if f.V6 {
			key = "net.ipv6.conf.all.forwarding"
		}
		return nil, Step{Cmd: rtr("sysctl", "-qw", key+"=0")}, &Step{Cmd: rtr("sysctl", "-qw", key+"=1")}
	}},
	{"ct-mark", func(s *Script, f Flow) bool { return f.Proto != "icmp" }, func(r *rand.Rand, s *Script, f Flow) ([]Cmd, Step, *Step) {
		// conntrack filters updates and deletes by address, not port
		// (ports: "Operation not supported"): every flow of the
		// family and protocol to the sink.
		_, addr, _, _, fam := famFlags(f)
		setup := []Cmd{nftCmd("add rule inet dt chg ct mark 0x1 drop")}
		return setup, Step{Cmd: rtr("conntrack", "-U", "-f", fam, "-p", f.Proto, "-d", addr, "-m", "1")},
			&Step{Cmd: rtr("conntrack", "-U", "-f", fam, "-p", f.Proto, "-d", addr, "-m", "0")}
	}},
	{"ct-delete", func(s *Script, f Flow) bool { return f.Proto == "udp" }, func(r *rand.Rand, s *Script, f Flow) ([]Cmd, Step, *Step) {
		_, addr, _, _, fam := famFlags(f)
		return nil, Step{Cmd: rtr("conntrack", "-D", "-f", fam, "-p", f.Proto, "-d", addr)}, nil
	}},
	{"ct-flush", nil, func(r *rand.Rand, s *Script, f Flow) ([]Cmd, Step, *Step) {
		_, _, _, _, fam := famFlags(f)
		return nil, Step{Cmd: rtr("conntrack", "-F", "-f", fam)}, nil
	}},
	{"link-down", nil, func(r *rand.Rand, s *Script, f Flow) ([]Cmd, Step, *Step) {
		return nil, Step{Cmd: rtr("ip", "link", "set", "r1", "down")}, &Step{Cmd: rtr("ip", "link", "set", "r1", "up")}
	}},
	{"mtu", func(s *Script, f Flow) bool { return f.Proto == "udp" && f.Size > 1300 }, func(r *rand.Rand, s *Script, f Flow) ([]Cmd, Step, *Step) {
		return nil, Step{Cmd: rtr("ip", "link", "set", "r1", "mtu", "1280")}, &Step{Cmd: rtr("ip", "link", "set", "r1", "mtu", "1500")}
	}},
	{"tbf", func(s *Script, f Flow) bool { return offered(s) > 800_000 }, func(r *rand.Rand, s *Script, f Flow) ([]Cmd, Step, *Step) {
		return nil, Step{Shape: 1, Cmd: rtr("tc", "qdisc", "replace", "dev", "r1", "root", "tbf", "rate", "400kbit", "burst", "4kb", "latency", "50ms")},
			&Step{Shape: -1, Cmd: rtr("tc", "qdisc", "del", "dev", "r1", "root")}
	}},
	{"netdev-dscp", nil, func(r *rand.Rand, s *Script, f Flow) ([]Cmd, Step, *Step) {
		dscp := []string{"cs1", "af21", "ef"}[r.IntN(3)]
		do := Step{Cmd: nftCmd(fmt.Sprintf(`add table netdev dtn; add chain netdev dtn eg { type filter hook egress device "r1" priority 0; }; add rule netdev dtn eg ip dscp set %s; add rule netdev dtn eg ip6 dscp set %s`, dscp, dscp))}
		return nil, do, &Step{Cmd: nftCmd("delete table netdev dtn")}
	}},
	{"route-move", func(s *Script, f Flow) bool { return s.R2 }, func(r *rand.Rand, s *Script, f Flow) ([]Cmd, Step, *Step) {
		ipf, addr, plen, _, _ := famFlags(f)
		via := sink24
		if f.V6 {
			via = sink26
		}
		setup := []Cmd{rtr("ping", "-q", "-c", "1", "-W", "1", via)} // the next hop resolved, see case 1
		return setup, Step{Cmd: rtr("ip", ipf, "route", "replace", addr+"/"+plen, "via", via)},
			&Step{Cmd: rtr("ip", ipf, "route", "del", addr+"/"+plen)}
	}},
	{"set-timeout", func(s *Script, f Flow) bool { return !f.V6 }, func(r *rand.Rand, s *Script, f Flow) ([]Cmd, Step, *Step) {
		setup := []Cmd{
			nftCmd("add set inet dt allow4 { type ipv4_addr; flags timeout; }"),
			nftCmd("add element inet dt allow4 { " + gen4 + " timeout 1h }"),
			nftCmd("add rule inet dt chg ip daddr " + sink4 + " ip saddr != @allow4 drop"),
		}
		timeout := time.Duration(300+r.IntN(5)*100) * time.Millisecond
		do := Step{Bound: BoundReval, Effect: timeout,
			Cmd: nftCmd(fmt.Sprintf("delete element inet dt allow4 { %s }; add element inet dt allow4 { %s timeout %dms }", gen4, gen4, timeout.Milliseconds()))}
		return setup, do, nil
	}},
}

// offered is the script's traffic in bit/s.
func offered(s *Script) int {
	n := 0
	for _, f := range s.Flows {
		n += (f.Size + 28) * 8 * int(time.Second/Interval)
	}
	return n
}

// Generate writes the script of a seed: two or three flows (UDP, TCP,
// ICMP; IPv4 and IPv6), with or without NAT and r2, and one or two changes
// from the catalogue above, each possibly undone later.
func Generate(seed uint64) *Script {
	r := rand.New(rand.NewPCG(seed, 0x66617374))
	s := &Script{Name: fmt.Sprintf("gen-%d", seed), Seed: seed, NAT: r.IntN(2) == 0, R2: r.IntN(4) == 0}
	protos := []string{"udp", "udp", "tcp", "icmp"}
	nflows := 2 + r.IntN(2)
	for i := range nflows {
		f := Flow{Proto: protos[r.IntN(len(protos))], V6: r.IntN(2) == 0, Index: i}
		f.Size = []int{64, 200, 700, 1350}[r.IntN(4)]
		if f.Proto == "tcp" && f.Size > 700 {
			f.Size = 700 // TCP segments stay below r1's MTU: fragmenting TCP is case 8's job
		}
		fam := "4"
		if f.V6 {
			fam = "6"
		}
		f.Name = fmt.Sprintf("%s%s%c", f.Proto[:1], fam, 'a'+i)
		s.Flows = append(s.Flows, f)
	}
	// At least one flow fastpath can carry (it leaves ICMP to the kernel).
	if !slices.ContainsFunc(s.Flows, func(f Flow) bool { return f.Proto != "icmp" }) {
		s.Flows[0].Proto = "udp"
		s.Flows[0].Name = "u" + s.Flows[0].Name[1:]
	}
	at := time.Duration(400+r.IntN(5)*100) * time.Millisecond
	used := map[string]bool{}
	nchanges := 1 + r.IntN(2)
	for range nchanges {
		// Changes aim at flows fastpath carries: a change to an ICMP
		// flow shows the kernel against itself.
		var carried []Flow
		for _, f := range s.Flows {
			if f.Proto != "icmp" {
				carried = append(carried, f)
			}
		}
		target := carried[r.IntN(len(carried))]
		var ok []change
		for _, c := range changes {
			if !used[c.name] && (c.needs == nil || c.needs(s, target)) {
				ok = append(ok, c)
			}
		}
		if len(ok) == 0 {
			break
		}
		c := ok[r.IntN(len(ok))]
		used[c.name] = true
		setup, do, undo := c.make(r, s, target)
		for _, sc := range setup {
			if !slices.ContainsFunc(s.Setup, func(x Cmd) bool { return x.String() == sc.String() }) {
				s.Setup = append(s.Setup, sc)
			}
		}
		do.At = at
		s.Steps = append(s.Steps, do)
		at += settleTime(do) + time.Duration(r.IntN(4)*100)*time.Millisecond
		if undo != nil && r.IntN(3) > 0 {
			undo.At = at
			s.Steps = append(s.Steps, *undo)
			at += settleTime(*undo) + time.Duration(r.IntN(4)*100)*time.Millisecond
		}
	}
	// After the last change: enough packets past its window to compare.
	s.Duration = at + 300*time.Millisecond
	s.Known = knownDivergence(s)
	return s
}

// settleTime is how long after a step the next may come: its bound, a
// margin for the runner, and packets to compare in between.
func settleTime(st Step) time.Duration {
	b := EventBound
	if st.Bound == BoundReval {
		b += Revalidate
	}
	return st.Effect + b + windowSlack + 400*time.Millisecond
}
