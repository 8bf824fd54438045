package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/lab"
	"github.com/fastpath-router/fastpath/internal/traffic"
)

// stopWindow is how long a stream keeps sending after a change that must
// stop it: the window in which nothing may arrive after stopGrace.
const stopWindow = 400 * time.Millisecond

// TestRouterChangesStopFlows: changes to the router that make the kernel
// stop forwarding a flow, with no route, neighbour or ruleset event, stop
// an offloaded flow too, within stopGrace of the command returning:
// forwarding turned off (sysctl), a policy routing rule that prohibits
// the destination (ip rule), an IPsec policy that blocks it (ip xfrm), and
// a drop in an nftables chain that runs after fastpath's verdict hook.
// Each is undone before the next.
func TestRouterChangesStopFlows(t *testing.T) {
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			l, d, ctx := offloadLab(t, attach, masqueradeRuleset+filterRuleset)
			for _, f := range families(l) {
				ipf, fwd, host := "-4", "net.ipv4.ip_forward", "/32"
				if f.sink.Is6() {
					ipf, fwd, host = "-6", "net.ipv6.conf.all.forwarding", "/128"
				}
				daddr := f.nftIP() + " daddr"
				changes := []struct {
					name     string
					do, undo []string
				}{
					{"forwarding off", []string{"sysctl", "-qw", fwd + "=0"}, []string{"sysctl", "-qw", fwd + "=1"}},
					{"prohibit rule", []string{"ip", ipf, "rule", "add", "to", f.sink.String(), "prohibit", "pref", "100"},
						[]string{"ip", ipf, "rule", "del", "pref", "100"}},
					// IPsec decides after routing, where bpf_fib_lookup
					// does not look: the kernel must carry everything. A
					// forward block drops before the verdict hook; an
					// output policy that wants a tunnel with no SA yet
					// drops after it (the plaintext packet passes
					// postrouting first), so the hold is what stops it.
					{"ipsec block policy", []string{"ip", "xfrm", "policy", "add", "dst", f.sink.String() + host, "dir", "fwd", "action", "block"},
						[]string{"ip", "xfrm", "policy", "del", "dst", f.sink.String() + host, "dir", "fwd"}},
					{"ipsec tunnel policy without a key", []string{"ip", "xfrm", "policy", "add", "dst", f.sink.String() + host, "dir", "out",
						"tmpl", "src", f.rtrOut.String(), "dst", f.sink.String(), "proto", "esp", "mode", "tunnel"},
						[]string{"ip", "xfrm", "policy", "del", "dst", f.sink.String() + host, "dir", "out"}},
					// A chain after the verdict hook: its drops are not
					// seen there, so offload mode must stop.
					{"drop in a chain after the verdict hook", []string{"nft", "add table inet fplate; add chain inet fplate late { type filter hook postrouting priority 2147483647; policy accept; }; add rule inet fplate late " + daddr + " " + f.sink.String() + " drop"},
						[]string{"nft", "delete table inet fplate"}},
				}
				for _, c := range changes {
					t.Run(f.name+"/"+c.name, func(t *testing.T) {
						changeStopsFlow(ctx, t, l, d, f, stopGrace, func() time.Time {
							rtrRun(ctx, t, l, c.do[0], c.do[1:]...)
							return time.Now()
						})
						rtrRun(ctx, t, l, c.undo[0], c.undo[1:]...)
					})
				}
			}
		})
	}
}

// TestConntrackMarkStopsFlow: a rule that drops by conntrack mark, and the
// mark set on an offloaded flow's entry through ctnetlink (conntrack -U,
// what connection-killing tools do): the flow stops within stopGrace.
func TestConntrackMarkStopsFlow(t *testing.T) {
	const markRule = `table inet fpmark {
	chain forward {
		type filter hook forward priority -10; policy accept;
		ct mark 0x1 counter drop
	}
}
`
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			l, d, ctx := offloadLab(t, attach, masqueradeRuleset+filterRuleset+markRule)
			for _, f := range families(l) {
				t.Run(f.name, func(t *testing.T) {
					changeStopsFlow(ctx, t, l, d, f, stopGrace, func() time.Time {
						rtrRun(ctx, t, l, "conntrack", "-U", "-f", f.ctFamily, "-p", "udp", "-d", f.sink.String(), "-m", "1")
						return time.Now()
					})
				})
			}
		})
	}
}

// changeStopsFlow runs an offloaded UDP stream (one datagram a
// millisecond), applies change, which returns when the change is in place,
// and wants no datagram to arrive later than grace after that.
func changeStopsFlow(ctx context.Context, t *testing.T, l *lab.Lab, d *daemon, f fam, grace time.Duration, change func() time.Time) {
	t.Helper()
	u := newUDPFlow(t, l.Gen, l.Sink, netip.AddrPort{}, netip.AddrPortFrom(f.sink, 0), netip.AddrPortFrom(f.sink, 0))
	changeStopsStream(ctx, t, l, d, f, u, 200, grace, change)
}

// changeStopsStream is changeStopsFlow for a flow the caller made, with
// datagrams of size bytes.
func changeStopsStream(ctx context.Context, t *testing.T, l *lab.Lab, d *daemon, f fam, u *udpFlow, size int, grace time.Duration, change func() time.Time) {
	t.Helper()
	const count = 10000
	str := offloadedStream(ctx, t, l, d, f, u, count, size)
	defer str.stop()
	at := change()
	pollUntil(t, 2*(grace+stopWindow), "the stream sends on after the change", func() error {
		if time.Since(at) < grace+stopWindow {
			return errors.New("window still open")
		}
		return nil
	})
	if sent := str.stop(); sent >= count {
		t.Fatalf("the stream ended (%d sent) before the window closed: nothing was tested", sent)
	}
	arr, _ := u.snapshot()
	var late []uint64
	for _, a := range arr {
		if a.at.Sub(at) > grace {
			late = append(late, a.seq)
		}
	}
	t.Logf("last datagram arrived %v after the change", lastArrival(arr).Sub(at).Round(time.Microsecond))
	if len(late) > 0 {
		t.Errorf("%d datagrams arrived more than %v after the change (seqs %v)", len(late), grace, head(late, 10))
	}
}

// TestEgressShaperHonoured: a shaper the operator puts on the egress (tbf
// at 20 Mbit/s on r1) holds for offloaded traffic. Hosts that finish their
// checksums, their peers fed by XDP, so auto would pick XDP, whose
// redirect skips qdiscs: r1 stops
// taking XDP frames and auto moves r0 to TC, whose redirect goes through
// the qdisc. A UDP blast then reaches the sink at the shaper's rate, not
// the router's.
func TestEgressShaperHonoured(t *testing.T) {
	l, d, ctx := autoLabFedByXDP(t, "xdp")
	d.waitAttachedAs(t, map[string]string{l.RtrIn: "xdp", l.RtrOut: "xdp"}, map[string]string{l.RtrIn: "", l.RtrOut: ""})
	rtrRun(ctx, t, l, "tc", "qdisc", "replace", "dev", l.RtrOut, "root", "tbf", "rate", "20mbit", "burst", "32kbit", "latency", "50ms")
	d.waitAttachedAs(t, map[string]string{l.RtrIn: "tc"}, map[string]string{l.RtrIn: "egress " + l.RtrOut + " has the operator's root qdisc tbf"})

	const size, count = 1200, 3000 // 3.6 MB: 1.4 s at 20 Mbit/s
	r, err := traffic.UDPStream(ctx, l.Gen, l.Sink, netip.AddrPortFrom(l.SinkAddr4, 0), count, size, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := float64(r.Received*size*8) / r.Duration.Seconds() / 1e6
	t.Logf("udp blast: %d of %d datagrams in %v: %.1f Mbit/s through a 20 Mbit/s shaper", r.Received, r.Sent, r.Duration, got)
	// What arrives is the rate over the stream plus the shaper's burst and
	// the drain time: far below what the router moves unshaped.
	if max := 20e6*r.Duration.Seconds()*1.5/8/size + 64; float64(r.Received) > max {
		t.Errorf("%d datagrams arrived in %v, more than a 20 Mbit/s shaper lets through (%.0f)", r.Received, r.Duration, max)
	}
}

// TestSetTimeoutStopsFlow: a change the kernel announces nothing of, an
// allowlist element expiring (forward policy drop, `ip saddr @allow
// accept`, the element added with a timeout), reaches an offloaded flow
// within the revalidation interval (flows.revalidate, 1 s by default).
func TestSetTimeoutStopsFlow(t *testing.T) {
	const timeout = 3 * time.Second
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			l, d, ctx := offloadLab(t, attach, masqueradeRuleset+filterRuleset)
			for _, f := range families(l) {
				t.Run(f.name, func(t *testing.T) {
					fam, set := "ip", "allow4"
					if f.sink.Is6() {
						fam, set = "ip6", "allow6"
					}
					nft(ctx, t, l, fmt.Sprintf(`table inet fpallow {
	set %[2]s { type %[3]s_addr; flags timeout; }
	chain forward {
		type filter hook forward priority -10; policy drop;
		%[1]s saddr @%[2]s accept
		%[1]s daddr @%[2]s accept
	}
}
`, fam, set, map[string]string{"ip": "ipv4", "ip6": "ipv6"}[fam]))
					t.Cleanup(func() { nft(context.Background(), t, l, "delete table inet fpallow\n") })
					expiry := nft(ctx, t, l, fmt.Sprintf("add element inet fpallow %s { %s timeout %s }\n", set, f.gen, timeout)).Add(timeout)
					changeStopsFlow(ctx, t, l, d, f, time.Second+stopGrace, func() time.Time {
						pollUntil(t, 2*timeout, "the element expires", func() error {
							if time.Now().Before(expiry) {
								return fmt.Errorf("%v to go", time.Until(expiry))
							}
							return nil
						})
						return expiry
					})
				})
			}
		})
	}
}

// TestNFTDeviceChainsHonoured: nftables chains bound to the router's
// devices (a netdev egress chain on r1, a netdev ingress chain on r0, each
// setting a DSCP) run for every packet of an offloaded flow within
// stopGrace of the ruleset change, as the kernel alone would run them: no
// redirect passes through them, so the flow goes back to the kernel on that
// side. When the chain goes, the flow is carried again.
func TestNFTDeviceChainsHonoured(t *testing.T) {
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			l, d, ctx := offloadLab(t, attach, masqueradeRuleset+filterRuleset)
			for _, f := range families(l) {
				ipf := f.nftIP()
				for _, c := range []struct {
					side, dev, dscp string
					want            int // DSCP value
				}{
					{"egress", l.RtrOut, "cs1", 8},
					{"ingress", l.RtrIn, "cs2", 16},
				} {
					t.Run(f.name+"/"+c.side, func(t *testing.T) {
						ruleset := fmt.Sprintf("table netdev fpdev {\n\tchain c {\n\t\ttype filter hook %s device %q priority 0;\n\t\t%s dscp set %s\n\t}\n}\n",
							c.side, c.dev, ipf, c.dscp)
						changeMarksFlow(ctx, t, l, d, f, c.want, func() time.Time { return nft(ctx, t, l, ruleset) })
						nft(ctx, t, l, "delete table netdev fpdev\n")
					})
				}
			}
		})
	}
}

// TestForwardChainRewrites: a rule in a forward chain that rewrites every
// packet (DSCP) or marks it (which policy routing, egress filters and later
// rules may act on), added under an offloaded flow: from stopGrace on,
// every datagram carries the DSCP the kernel gives it, and a marked flow
// stays with the kernel (nf_rewrite), as the verdict hook sees what the
// ruleset did to the packet.
func TestForwardChainRewrites(t *testing.T) {
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			l, d, ctx := offloadLab(t, attach, masqueradeRuleset+filterRuleset)
			for _, f := range families(l) {
				ipf := f.nftIP()
				t.Run(f.name+"/dscp", func(t *testing.T) {
					rule := fmt.Sprintf("table inet fprw {\n\tchain rw {\n\t\ttype filter hook forward priority 10;\n\t\t%s dscp set cs3\n\t}\n}\n", ipf)
					changeMarksFlow(ctx, t, l, d, f, 24, func() time.Time { return nft(ctx, t, l, rule) })
					nft(ctx, t, l, "delete table inet fprw\n")
				})
				t.Run(f.name+"/mark", func(t *testing.T) {
					u := newUDPFlow(t, l.Gen, l.Sink, netip.AddrPort{}, netip.AddrPortFrom(f.sink, 0), netip.AddrPortFrom(f.sink, 0))
					str := offloadedStream(ctx, t, l, d, f, u, 10000, 200)
					defer str.stop()
					nft(ctx, t, l, "table inet fprw {\n\tchain rw {\n\t\ttype filter hook forward priority 10;\n\t\tmeta mark set 0x10\n\t}\n}\n")
					defer nft(ctx, t, l, "delete table inet fprw\n")
					u.waitReceived(t, u.received()+200, offloadWait) // past stopGrace
					before := d.counters(t, l.Rtr)
					u.waitReceived(t, u.received()+300, offloadWait)
					after := d.counters(t, l.Rtr)
					if s, fp, k := share(before, after, f); s > 0.02 {
						t.Errorf("marked flow: fastpath forwarded %d, the kernel %d (%.1f%%); %s", fp, k, 100*s, before.reasonDeltas(after, l.RtrIn))
					}
					if n := after.reasonSum("nf_rewrite") - before.reasonSum("nf_rewrite"); n == 0 {
						t.Errorf("pass reason nf_rewrite did not grow; %s", before.reasonDeltas(after, l.RtrIn))
					}
				})
			}
		})
	}
}

// changeMarksFlow runs an offloaded UDP stream, applies change, and wants
// every datagram that arrives later than stopGrace after it to carry DSCP
// want; then, with the change undone by the caller, nothing more.
func changeMarksFlow(ctx context.Context, t *testing.T, l *lab.Lab, d *daemon, f fam, want int, change func() time.Time) {
	t.Helper()
	u := newUDPFlow(t, l.Gen, l.Sink, netip.AddrPort{}, netip.AddrPortFrom(f.sink, 0), netip.AddrPortFrom(f.sink, 0))
	const count = 10000
	str := offloadedStream(ctx, t, l, d, f, u, count, 200)
	defer str.stop()
	at := change()
	n := u.received()
	u.waitReceived(t, n+200, offloadWait)
	if sent := str.stop(); sent >= count {
		t.Fatalf("the stream ended (%d sent) before enough arrived: nothing was tested", sent)
	}
	arr, _ := u.snapshot()
	var wrong []string
	checked := 0
	for _, a := range arr {
		if a.at.Sub(at) <= stopGrace {
			continue
		}
		checked++
		if a.tos>>2 != want {
			wrong = append(wrong, fmt.Sprintf("seq %d dscp %d at +%v", a.seq, a.tos>>2, a.at.Sub(at).Round(time.Millisecond)))
		}
	}
	if checked == 0 {
		t.Fatal("no datagram arrived after the grace: nothing was tested")
	}
	if len(wrong) > 0 {
		t.Errorf("%d of %d datagrams arriving more than %v after the change skipped the chain (want dscp %d): %v",
			len(wrong), checked, stopGrace, want, head(wrong, 10))
	}
}

// TestIPv6InterfaceMTU: the egress's IPv6 MTU lowered below an offloaded
// NAT66 flow's packets (net.ipv6.conf.r1.mtu, what a router
// advertisement's MTU option sets; the kernel announces it to nobody): as
// with the kernel alone, no oversized packet crosses the router from
// stopGrace after the write, and the sender learns the new path MTU from a
// Packet Too Big.
func TestIPv6InterfaceMTU(t *testing.T) {
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			l, d, ctx := offloadLab(t, attach, masqueradeRuleset+filterRuleset)
			f := families(l)[1]
			u := newUDPFlow(t, l.Gen, l.Sink, netip.AddrPort{}, netip.AddrPortFrom(f.sink, 0), netip.AddrPortFrom(f.sink, 0))
			raw, err := u.tx.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var serr error
			raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG, 1) })
			if serr != nil {
				t.Fatalf("IPV6_DONTFRAG: %v", serr)
			}
			key := "net.ipv6.conf." + l.RtrOut + ".mtu"
			t.Cleanup(func() { rtrRun(context.Background(), t, l, "sysctl", "-qw", key+"=1500") })
			changeStopsStream(ctx, t, l, d, f, u, 1300, stopGrace, func() time.Time {
				rtrRun(ctx, t, l, "sysctl", "-qw", key+"=1280")
				return time.Now()
			})
			if out := nsRun(ctx, t, l, l.Gen, "ip", "-6", "route", "get", f.sink.String()); !strings.Contains(out, "mtu 1280") {
				t.Errorf("gen did not learn the path MTU from a Packet Too Big: %s", out)
			}
		})
	}
}

// TestRevalidationOnlyWhenNeeded: with a ruleset whose every change comes
// with an event (masquerade, a forward chain, a counter), offloaded flows
// send no packet through the kernel to be revalidated, and status says so;
// a set whose elements time out turns revalidation on, within the
// daemon's ruleset read interval, and the flow then passes the ruleset
// about once per flows.revalidate.
func TestRevalidationOnlyWhenNeeded(t *testing.T) {
	l, d, ctx := offloadLab(t, "tc", masqueradeRuleset+filterRuleset)
	if st := d.status(t); st.RevalidateEvery != "off" {
		t.Fatalf("static ruleset: revalidation %q (%q), want off", st.RevalidateEvery, st.RevalidateWhy)
	}
	f := families(l)[0]
	u := newUDPFlow(t, l.Gen, l.Sink, netip.AddrPort{}, netip.AddrPortFrom(f.sink, 0), netip.AddrPortFrom(f.sink, 0))
	u.handshake(t)
	str := u.stream(t, ctx, 6000, 200, time.Millisecond)
	defer str.stop()
	d.waitFlow(t, u.local, u.dst)
	before := d.counters(t, l.Rtr)
	u.waitReceived(t, u.received()+2500, offloadWait) // 2.5 s: more than two intervals of 1 s
	if n := d.counters(t, l.Rtr).reasonSum("revalidate") - before.reasonSum("revalidate"); n != 0 {
		t.Errorf("static ruleset: %d packets went to the kernel to be revalidated", n)
	}
	nft(ctx, t, l, "table inet fptimeouts {\n\tset temp {\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t}\n}\n")
	pollUntil(t, offloadWait, "revalidation on", func() error {
		if st := d.status(t); st.RevalidateEvery != "1s" || !strings.Contains(strings.Join(st.RevalidateWhy, ";"), "set inet fptimeouts temp") {
			return fmt.Errorf("revalidation %q (%q)", st.RevalidateEvery, st.RevalidateWhy)
		}
		return nil
	})
	before = d.counters(t, l.Rtr)
	u.waitReceived(t, u.received()+2500, offloadWait)
	if n := d.counters(t, l.Rtr).reasonSum("revalidate") - before.reasonSum("revalidate"); n < 1 || n > 4 {
		t.Errorf("with a timeout set: %d revalidation packets in 2.5 s, want about one a second", n)
	}
}

// offloadedStream starts a stream of count datagrams of size bytes on u,
// one a millisecond, and returns once fastpath carries it.
func offloadedStream(ctx context.Context, t *testing.T, l *lab.Lab, d *daemon, f fam, u *udpFlow, count, size int) *sender {
	t.Helper()
	u.handshake(t)
	str := u.stream(t, ctx, count, size, time.Millisecond)
	d.waitFlow(t, u.local, u.dst)
	before := d.counters(t, l.Rtr)
	u.waitReceived(t, u.received()+100, offloadWait)
	if s, fp, k := share(before, d.counters(t, l.Rtr), f); s < minShare {
		t.Fatalf("before the change: fastpath forwarded %d, the kernel %d packets: not offloaded", fp, k)
	}
	return str
}

// TestRewriteVouchesForArrivals: a packet the ruleset rewrote vouches
// only for packets that arrive as it did. With `dscp af21 drop` ahead of
// `dscp cs1 -> set af21`, a flow's cs1 datagrams leave as af21; when the
// same flow then sends af21 itself, the kernel drops it, and fastpath must
// not forward it on the strength of the af21 the cs1 packets left with.
func TestRewriteVouchesForArrivals(t *testing.T) {
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			l, d, ctx := offloadLab(t, attach, masqueradeRuleset+filterRuleset)
			for _, f := range families(l) {
				t.Run(f.name, func(t *testing.T) {
					ipf := f.nftIP()
					nft(ctx, t, l, fmt.Sprintf("table inet fprw {\n\tchain rw {\n\t\ttype filter hook forward priority 10;\n\t\t%s dscp af21 drop\n\t\t%s dscp cs1 %s dscp set af21\n\t}\n}\n", ipf, ipf, ipf))
					defer nft(ctx, t, l, "delete table inet fprw\n")
					u := newUDPFlow(t, l.Gen, l.Sink, netip.AddrPort{}, netip.AddrPortFrom(f.sink, 0), netip.AddrPortFrom(f.sink, 0))
					const cs1, af21, n = 8 << 2, 18 << 2, 300
					u.setTOS(t, cs1)
					u.handshake(t)
					first := u.received()
					u.send(ctx, n, 200, 200*time.Microsecond)
					u.waitReceived(t, first+n*9/10, offloadWait)
					u.setTOS(t, af21)
					before := d.counters(t, l.Rtr)
					u.send(ctx, n, 200, 200*time.Microsecond)
					u.settle(t, first+n, 300*time.Millisecond)
					arr, _ := u.snapshot()
					leaked := 0
					for _, a := range arr {
						if a.tos>>2 != 18 {
							t.Fatalf("seq %d arrived with dscp %d, want af21 (18): the rewrite was skipped", a.seq, a.tos>>2)
						}
						if a.seq >= uint64(n) { // sent as af21: the kernel drops them
							leaked++
						}
					}
					if leaked > 0 {
						t.Errorf("%d of %d datagrams sent as af21 crossed the router; the ruleset drops them (%s)",
							leaked, n, before.reasonDeltas(d.counters(t, l.Rtr), l.RtrIn))
					}
				})
			}
		})
	}
}
