package e2e

// Offload mode end to end: netfilter, conntrack and NAT decide in the
// kernel, then fastpath carries the established flows (DESIGN §2.1 step 4).
// Each test runs under XDP and TC, over IPv4 and IPv6. The invalidation
// tests (ruleset, conntrack, routes, timeouts, watchdog, crash) are in
// offload_invalidation_test.go; helpers in offload_helpers_test.go.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/lab"
	"github.com/fastpath-router/fastpath/internal/traffic"
)

// Traffic of the offload tests: small, the package must stay fast.
const (
	offTCPBytes   = 48 << 20 // the first packets wait for the entry to be made window-liberal: a fixed cost per flow
	offUDPCount   = 3000
	offUDPSize    = 512
	offUDPGap     = 50 * time.Microsecond
	offUDPMaxLoss = 0.05
	offChunk      = 64 << 10
)

// offloadLab builds a lab, applies ruleset in rtr and runs the daemon in
// offload mode with attach.
func offloadLab(t *testing.T, attach, ruleset string) (*lab.Lab, *daemon, context.Context) {
	t.Helper()
	l := newLab(t, attach)
	ctx := testContext(t)
	if ruleset != "" {
		nft(ctx, t, l, ruleset)
	}
	d, st := runDaemon(t, l.Rtr, offloadIfaces(l, attach)...)
	// The daemon writes the first heartbeat right before it attaches: the
	// watchdog is armed from its first answer on, not a tick later.
	if st.Datapath == nil || st.Datapath.Watchdog != api.WatchdogArmed {
		t.Fatalf("datapath at start: %+v, want the watchdog armed", st.Datapath)
	}
	for _, ifc := range st.Interfaces {
		if ifc.AttachedAs != attach || ifc.Mode != "offload" {
			t.Fatalf("%s: attached as %q in mode %q, want %s in offload", ifc.Name, ifc.AttachedAs, ifc.Mode, attach)
		}
	}
	return l, d, ctx
}

// TestOffloadMasquerade is the edge router: masquerade on r1. A TCP
// transfer and a UDP stream from gen to sink must arrive intact with r1's
// address as their source (seen by the sink's sockets), both directions of
// the TCP connection and the UDP flow must be in the flow cache with the
// NAT conntrack chose, and fastpath must carry at least 95% of the packets.
func TestOffloadMasquerade(t *testing.T) {
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			l, d, ctx := offloadLab(t, attach, masqueradeRuleset+filterRuleset)
			csum0 := checksumErrors(t, l.Sink)
			for _, f := range families(l) {
				t.Run(f.name, func(t *testing.T) {
					// TCP: the connection stays open while the flows are checked.
					before := d.counters(t, l.Rtr)
					p := openTCP(ctx, t, l.Gen, l.Sink, netip.AddrPortFrom(f.sink, 0), netip.AddrPortFrom(f.sink, 0))
					if p.serverSees.Addr() != f.rtrOut {
						t.Errorf("tcp: sink accepted a connection from %s, want masqueraded source %s", p.serverSees, f.rtrOut)
					}
					r := copyN(ctx, p.client, p.server, offTCPBytes, offChunk, 0, nil)
					if !r.ok(offTCPBytes) {
						t.Fatalf("tcp: sent %d, received %d of %d bytes, sha256 equal %v: %v",
							r.sent, r.received, offTCPBytes, r.sentSum == r.recvSum, r.err)
					}
					afterTCP := d.counters(t, l.Rtr)
					fl := d.flows(t)
					orig, ok := flowIn(fl, p.clientAddr, p.listen)
					if !ok || orig.Direction != "original" || orig.NAT != "snat" || orig.Out.Src != p.serverSees ||
						orig.Out.Dst != p.listen || orig.Ingress != l.RtrIn || orig.Egress != l.RtrOut {
						t.Errorf("tcp original direction %s -> %s: want cached, snat to %s, %s -> %s; cache: %s",
							p.clientAddr, p.listen, p.serverSees, l.RtrIn, l.RtrOut, flowList(fl))
					}
					reply, ok := flowIn(fl, p.listen, p.serverSees)
					if !ok || reply.Direction != "reply" || reply.NAT != "dnat" || reply.Out.Dst != p.clientAddr ||
						reply.Ingress != l.RtrOut || reply.Egress != l.RtrIn {
						t.Errorf("tcp reply direction %s -> %s: want cached, dnat to %s, %s -> %s; cache: %s",
							p.listen, p.serverSees, p.clientAddr, l.RtrOut, l.RtrIn, flowList(fl))
					}
					// The wait for the liberal entry is short: a few
					// packets, not a share of the transfer.
					if nl := afterTCP.reasonSum("not_liberal") - before.reasonSum("not_liberal"); nl > (afterTCP.forwarded()-before.forwarded())/4 {
						t.Errorf("tcp: %d packets waited for the conntrack entry to be made liberal", nl)
					}
					if s, fp, k := share(before, afterTCP, f); s < minShare {
						t.Errorf("tcp: fastpath forwarded %d packets, the kernel %d: %.1f%%, want >= %.0f%%; %s; %s",
							fp, k, 100*s, 100*minShare, before.reasonDeltas(afterTCP, l.RtrIn), before.reasonDeltas(afterTCP, l.RtrOut))
					} else {
						t.Logf("tcp %d MiB: fastpath %d packets, kernel %d (%.2f%%)", offTCPBytes>>20, fp, k, 100*s)
					}

					// UDP: a hello and its echo make the flow established.
					u := newUDPFlow(t, l.Gen, l.Sink, netip.AddrPort{}, netip.AddrPortFrom(f.sink, 0), netip.AddrPortFrom(f.sink, 0))
					beforeUDP := d.counters(t, l.Rtr)
					u.handshake(t)
					sent := u.send(ctx, offUDPCount, offUDPSize, offUDPGap)
					got := u.settle(t, sent, 500*time.Millisecond)
					afterUDP := d.counters(t, l.Rtr)
					if loss := 1 - float64(got)/float64(offUDPCount); sent != offUDPCount || loss > offUDPMaxLoss {
						t.Errorf("udp: %d/%d sent, %d received (%.1f%% loss, max %.0f%%)", sent, offUDPCount, got, 100*loss, 100*offUDPMaxLoss)
					}
					if _, peer := u.snapshot(); peer.Addr() != f.rtrOut {
						t.Errorf("udp: sink received datagrams from %s, want masqueraded source %s", peer, f.rtrOut)
					}
					if s, fp, k := share(beforeUDP, afterUDP, f); s < minShare {
						t.Errorf("udp: fastpath forwarded %d packets, the kernel %d: %.1f%%, want >= %.0f%%; %s",
							fp, k, 100*s, 100*minShare, beforeUDP.reasonDeltas(afterUDP, l.RtrIn))
					} else {
						t.Logf("udp %d x %d B: fastpath %d packets, kernel %d (%.2f%%)", offUDPCount, offUDPSize, fp, k, 100*s)
					}
					if uf, ok := flowIn(d.flows(t), u.local, u.dst); !ok || uf.NAT != "snat" || uf.Out.Src.Addr() != f.rtrOut {
						t.Errorf("udp flow %s -> %s: want cached with snat to %s; cache: %s", u.local, u.dst, f.rtrOut, flowList(d.flows(t)))
					}
					// TCP both ways, UDP the original direction.
					if added := afterUDP.flowsAdded() - before.flowsAdded(); added < 3 {
						t.Errorf("flows_added grew by %d, want >= 3 (tcp both directions, udp)", added)
					}
				})
			}
			if n := checksumErrors(t, l.Sink) - csum0; n != 0 {
				t.Errorf("sink counted %d TCP/UDP checksum errors: the NAT rewrite broke checksums", n)
			}
			if n := invalidCount(ctx, t, l); n != 0 {
				t.Errorf("conntrack in rtr called %d forwarded packets INVALID", n)
			}
		})
	}
}

// dnatRuleset forwards port 8080 of rtr's sink-side address to port 80 of
// gen, as a home router's port forward does.
const dnatRuleset = `table ip nat {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "r1" tcp dport 8080 dnat to 198.18.1.1:80
	}
}
table ip6 nat {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "r1" tcp dport 8080 dnat to [fd00:1::1]:80
	}
}
`

// TestOffloadDNAT connects from sink to rtr's port 8080, which rtr
// forwards to a server on port 80 in gen. Data both ways must arrive
// intact, the server must see the client's own address, the flow cache
// must show the original direction (sink -> rtr:8080) with nat "dnat" to
// gen:80, and fastpath must carry at least 95% of the packets.
func TestOffloadDNAT(t *testing.T) {
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			l, d, ctx := offloadLab(t, attach, dnatRuleset)
			csum0 := checksumErrors(t, l.Sink) + checksumErrors(t, l.Gen)
			for _, f := range families(l) {
				t.Run(f.name, func(t *testing.T) {
					before := d.counters(t, l.Rtr)
					p := openTCP(ctx, t, l.Sink, l.Gen, netip.AddrPortFrom(f.gen, 80), netip.AddrPortFrom(f.rtrOut, 8080))
					if p.serverSees.Addr() != f.sink {
						t.Errorf("server in gen sees the client as %s, want %s (no SNAT)", p.serverSees, f.sink)
					}
					const half = offTCPBytes / 2
					if r := copyN(ctx, p.client, p.server, half, offChunk, 0, nil); !r.ok(half) {
						t.Fatalf("sink -> gen: sent %d, received %d of %d bytes, sha256 equal %v: %v", r.sent, r.received, half, r.sentSum == r.recvSum, r.err)
					}
					if r := copyN(ctx, p.server, p.client, half, offChunk, 0, nil); !r.ok(half) {
						t.Fatalf("gen -> sink: sent %d, received %d of %d bytes, sha256 equal %v: %v", r.sent, r.received, half, r.sentSum == r.recvSum, r.err)
					}
					after := d.counters(t, l.Rtr)
					fl := d.flows(t)
					orig, ok := flowIn(fl, p.clientAddr, p.dial)
					if !ok || orig.Direction != "original" || orig.NAT != "dnat" || orig.Out.Dst != p.listen ||
						orig.Out.Src != p.clientAddr || orig.Ingress != l.RtrOut || orig.Egress != l.RtrIn {
						t.Errorf("original direction %s -> %s: want cached with nat \"dnat\" to %s, %s -> %s; cache: %s",
							p.clientAddr, p.dial, p.listen, l.RtrOut, l.RtrIn, flowList(fl))
					}
					reply, ok := flowIn(fl, p.listen, p.clientAddr)
					if !ok || reply.Direction != "reply" || reply.NAT != "snat" || reply.Out.Src != p.dial {
						t.Errorf("reply direction %s -> %s: want cached with nat \"snat\" from %s; cache: %s",
							p.listen, p.clientAddr, p.dial, flowList(fl))
					}
					if s, fp, k := share(before, after, f); s < minShare {
						t.Errorf("fastpath forwarded %d packets, the kernel %d: %.1f%%, want >= %.0f%%; %s; %s",
							fp, k, 100*s, 100*minShare, before.reasonDeltas(after, l.RtrIn), before.reasonDeltas(after, l.RtrOut))
					} else {
						t.Logf("port forward, %d MiB each way: fastpath %d packets, kernel %d (%.2f%%)", half>>20, fp, k, 100*s)
					}
				})
			}
			if n := checksumErrors(t, l.Sink) + checksumErrors(t, l.Gen) - csum0; n != 0 {
				t.Errorf("gen and sink counted %d TCP/UDP checksum errors: the NAT rewrite broke checksums", n)
			}
		})
	}
}

// blockedPort is the port TestOffloadDropRule's forward chain drops.
const blockedPort = 9999

const dropRuleset = `table inet fpt {
	chain forward {
		type filter hook forward priority filter; policy accept;
		tcp dport 9999 drop
		udp dport 9999 drop
	}
}
`

// TestOffloadDropRule drops TCP and UDP port 9999 in the forward chain
// while other flows are offloaded: not one packet to port 9999 may reach a
// listener, before and while other flows are offloaded. That includes the
// reply direction of an allowed flow: gen:9999 -> sink:P is allowed, but
// sink's answers go to port 9999 and are dropped, so that direction must
// never be offloaded (though conntrack marks the entry SEEN_REPLY: it sees
// the reply before the forward chain drops it).
func TestOffloadDropRule(t *testing.T) {
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			l, d, ctx := offloadLab(t, attach, masqueradeRuleset+dropRuleset)
			for _, f := range families(l) {
				t.Run(f.name, func(t *testing.T) {
					blocked := netip.AddrPortFrom(f.sink, blockedPort)
					tl := newTCPSink(t, l.Sink, blocked)
					bu := newUDPFlow(t, l.Gen, l.Sink, netip.AddrPort{}, blocked, blocked)
					probe := func(when string) {
						t.Helper()
						// TCP: the SYN must not get through, so the dial times out.
						dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
						defer cancel()
						err := dialFrom(dctx, l.Gen, blocked)
						if err == nil {
							t.Errorf("%s: tcp connect to %s succeeded through a drop rule", when, blocked)
						}
						// UDP: a bounded burst, none may arrive.
						bu.send(ctx, 200, 100, 500*time.Microsecond)
						fence(t, l.Gen, l.Sink, f.sink)
						if n := bu.received(); n != 0 {
							t.Errorf("%s: %d udp datagrams to port %d reached the sink", when, n, blockedPort)
						}
					}
					probe("before any flow was offloaded")

					// Allowed flows, offloaded: a UDP stream (running on) and the
					// reverse case, whose replies go to gen's port 9999.
					other := newUDPFlow(t, l.Gen, l.Sink, netip.AddrPort{}, netip.AddrPortFrom(f.sink, 0), netip.AddrPortFrom(f.sink, 0))
					other.handshake(t)
					other.stream(t, ctx, 5000, 200, time.Millisecond)
					rev := newUDPFlow(t, l.Gen, l.Sink, netip.AddrPortFrom(f.gen, blockedPort), netip.AddrPortFrom(f.sink, 0), netip.AddrPortFrom(f.sink, 0))
					rev.echoEvery.Store(1) // the sink answers every datagram, to gen:9999
					rev.send(ctx, 50, 100, time.Millisecond)
					d.waitFlow(t, other.local, other.dst)
					rev.waitReceived(t, 1, offloadWait)
					before := rev.received()
					rev.send(ctx, 200, 100, 500*time.Microsecond)

					probe("while other flows are offloaded")
					if n := rev.echoes.Load(); n != 0 {
						t.Errorf("gen received %d datagrams on port %d (sink's replies): the drop rule was bypassed", n, blockedPort)
					}
					for _, fl := range flowsOfPort(d.flows(t), "udp", blockedPort) {
						if fl.In.Dst.Port() == blockedPort || fl.Out.Dst.Port() == blockedPort {
							t.Errorf("a flow towards port %d is in the flow cache: %s", blockedPort, flowList([]api.Flow{fl}))
						}
					}
					if _, ok := flowIn(d.flows(t), rev.local, rev.dst); ok {
						t.Logf("gen:%d -> sink is offloaded (conntrack saw the replies the forward chain dropped), its reply direction is not", blockedPort)
					}
					if rev.received() <= before {
						t.Errorf("gen:%d -> sink is allowed, but no datagram arrived", blockedPort)
					}
					if n, b := tl.accepts.Load(), tl.bytes.Load(); n != 0 || b != 0 {
						t.Errorf("the listener on %s accepted %d connections, %d bytes", blocked, n, b)
					}
				})
			}
		})
	}
}

// TestOffloadClose ends offloaded TCP connections with FIN and with RST:
// the datapath must evict both directions (flows_removed, pass reason
// tcp_close) and pass the teardown to the kernel, so conntrack sees it
// (TIME_WAIT after FINs, CLOSE after RST) and NAT still applies to it (the
// other end sees the RST).
func TestOffloadClose(t *testing.T) {
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			l, d, ctx := offloadLab(t, attach, masqueradeRuleset+filterRuleset)
			for _, f := range families(l) {
				t.Run(f.name, func(t *testing.T) {
					for _, how := range []string{"FIN", "RST"} {
						t.Run(how, func(t *testing.T) {
							p := openTCP(ctx, t, l.Gen, l.Sink, netip.AddrPortFrom(f.sink, 0), netip.AddrPortFrom(f.sink, 0))
							d.offloadTCP(ctx, t, p)
							before := d.counters(t, l.Rtr)
							want := "TIME_WAIT"
							if how == "FIN" {
								closeFIN(t, p)
							} else {
								// Fails on fastpath as of this writing: conntrack keeps
								// the entry ESTABLISHED (with the 10 s CLOSE timeout)
								// because its RST check compares the RST's sequence
								// number with td_maxack, which offloaded segments left
								// stale; window-liberal does not cover that check.
								// nftables' flowtable clears IP_CT_TCP_FLAG_MAXACK_SET
								// on teardown for this reason. The kernel path alone
								// shows CLOSE here.
								want = "CLOSE"
								closeRST(t, p)
							}
							pollUntil(t, offloadWait, how+": flows evicted", func() error {
								if fl := flowsOfPort(d.flows(t), "tcp", p.listen.Port()); len(fl) > 0 {
									return fmt.Errorf("still cached: %s", flowList(fl))
								}
								return nil
							})
							after := d.counters(t, l.Rtr)
							if n := after.flowsRemoved() - before.flowsRemoved(); n < 1 {
								t.Errorf("%s: flows_removed grew by %d, want >= 1", how, n)
							}
							wantClose := uint64(2) // a FIN each way
							if how == "RST" {
								wantClose = 1
							}
							if n := after.reasonSum("tcp_close") - before.reasonSum("tcp_close"); n < wantClose {
								t.Errorf("%s: pass reason tcp_close grew by %d, want >= %d", how, n, wantClose)
							}
							var last []string
							// conntrack handles the FIN/RST with the packet itself: by
							// now only the last ACK may still be on its way.
							pollUntil(t, 1500*time.Millisecond, fmt.Sprintf("%s: conntrack shows %s", how, want), func() error {
								last = conntrackList(ctx, t, l, f, "tcp", p.listen.Port())
								for _, e := range last {
									if strings.Contains(e, " "+want+" ") && strings.Contains(e, "sport="+fmt.Sprint(p.clientAddr.Port())+" ") {
										return nil
									}
								}
								return fmt.Errorf("conntrack -L: %q", last)
							})
						})
					}
				})
			}
			if n := invalidCount(ctx, t, l); n != 0 {
				t.Errorf("conntrack in rtr called %d forwarded packets INVALID (the teardown of offloaded connections)", n)
			}
		})
	}
}

// closeFIN closes p in order: gen half-closes, sink reads EOF and closes,
// gen reads EOF and closes.
func closeFIN(t *testing.T, p *tcpPair) {
	t.Helper()
	deadline := time.Now().Add(offloadWait)
	if err := p.client.CloseWrite(); err != nil {
		t.Fatalf("close write: %v", err)
	}
	p.server.SetReadDeadline(deadline)
	if n, err := p.server.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("sink: read after gen's FIN = %d, %v; want EOF", n, err)
	}
	p.server.Close()
	p.client.SetReadDeadline(deadline)
	if n, err := p.client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("gen: read after sink's FIN = %d, %v; want EOF", n, err)
	}
	p.client.Close()
}

// closeRST aborts p from gen (SO_LINGER 0): the sink must get the RST.
func closeRST(t *testing.T, p *tcpPair) {
	t.Helper()
	if err := p.client.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	p.client.Close()
	p.server.SetReadDeadline(time.Now().Add(offloadWait))
	if n, err := p.server.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("sink: read after gen's RST = %d, %v; want ECONNRESET (the RST did not arrive, or not NATed)", n, err)
	}
	p.server.Close()
}

// Sizes of TestOffloadFlowCounters.
const (
	ctrWarmup = 20
	ctrCount  = 500
	ctrSize   = 200 // UDP payload bytes
)

// TestOffloadFlowCounters sends exactly ctrCount datagrams of an offloaded
// flow: its packet counter must grow by exactly that, and its byte counter
// by that many whole frames (Ethernet + IP + UDP + payload).
//
// A flow that is re-created meanwhile (evicted and offloaded anew: its age
// goes down) starts its counters over, so such a measurement is repeated;
// a mere revalidation keeps them (TestOffloadFlowCountersRevalidated).
func TestOffloadFlowCounters(t *testing.T) {
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			l, d, ctx := offloadLab(t, attach, masqueradeRuleset)
			for _, f := range families(l) {
				t.Run(f.name, func(t *testing.T) {
					u := offloadedUDPFlow(ctx, t, l, d, f.sink)
					frame := uint64(ethHdr + f.ipHdr + udpHdr + ctrSize)
					for attempt := 1; ; attempt++ {
						first, ok := flowIn(d.flows(t), u.local, u.dst)
						firstAt := time.Now() // after the call: the elapsed time is never overestimated
						if !ok {
							t.Fatalf("flow %s -> %s left the cache", u.local, u.dst)
						}
						want := u.received() + ctrCount
						if sent := u.send(ctx, ctrCount, ctrSize, 200*time.Microsecond); sent != ctrCount {
							t.Fatalf("sent %d of %d datagrams", sent, ctrCount)
						}
						// Every datagram that arrived crossed rtr; wait for all.
						u.waitReceived(t, want, offloadWait)
						nowAt := time.Now() // before the call, likewise
						now, ok := flowIn(d.flows(t), u.local, u.dst)
						if !ok {
							t.Fatalf("flow %s -> %s left the cache", u.local, u.dst)
						}
						if restarted(first, firstAt, now, nowAt) && attempt < 3 {
							t.Logf("the flow was revalidated during attempt %d (age %.3fs -> %.3fs): again", attempt, first.AgeSec, now.AgeSec)
							continue
						}
						if dp, db := now.Packets-first.Packets, now.Bytes-first.Bytes; dp != ctrCount || db != ctrCount*frame {
							t.Errorf("flow counters grew by %d packets, %d bytes; want exactly %d packets, %d bytes (%d-byte frames); age %.3fs -> %.3fs",
								dp, db, ctrCount, ctrCount*frame, frame, first.AgeSec, now.AgeSec)
						}
						break
					}
				})
			}
		})
	}
}

// TestOffloadFlowCountersRevalidated makes every cached flow revalidate
// (an unrelated route is added in rtr: the FIB generation changes, each
// flow redoes its FIB lookup on its next packet, with no kernel pass).
// The flow is still the same connection forwarded by fastpath throughout,
// so its exact counters (docs/offload.md: "Per-flow packet and byte counts
// of fastpath are exact") and its age must go on across the revalidation.
// Nothing else may bump the generation meanwhile, or the flow reads stale
// at the end: neighbour churn (entries the kernel makes from the hosts'
// solicitations, moves between valid states) did, every few seconds,
// until the daemon learnt to ignore what cannot change a cached flow.
func TestOffloadFlowCountersRevalidated(t *testing.T) {
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			l, d, ctx := offloadLab(t, attach, masqueradeRuleset)
			for i, f := range families(l) {
				t.Run(f.name, func(t *testing.T) {
					u := offloadedUDPFlow(ctx, t, l, d, f.sink)
					first, _ := flowIn(d.flows(t), u.local, u.dst)
					firstAt := time.Now() // after the call, as above
					u.send(ctx, ctrCount, ctrSize, 200*time.Microsecond)
					u.waitReceived(t, ctrWarmup+ctrCount, offloadWait)

					rtrRun(ctx, t, l, "ip", "route", "add", fmt.Sprintf("198.19.%d.0/24", 200+i), "via", l.SinkAddr4.String())
					pollUntil(t, offloadWait, "flow marked stale after the route change", func() error {
						if fl, ok := flowIn(d.flows(t), u.local, u.dst); !ok || !fl.Stale {
							return fmt.Errorf("cache: %s", flowList(d.flows(t)))
						}
						return nil
					})
					u.send(ctx, ctrCount, ctrSize, 200*time.Microsecond)
					u.waitReceived(t, ctrWarmup+2*ctrCount, offloadWait)
					nowAt := time.Now()
					now, ok := flowIn(d.flows(t), u.local, u.dst)
					if !ok || now.Stale || now.Egress != first.Egress {
						t.Fatalf("after the route change: want the flow revalidated with egress %s; cache: %s", first.Egress, flowList(d.flows(t)))
					}
					frame := uint64(ethHdr + f.ipHdr + udpHdr + ctrSize)
					if dp, db := now.Packets-first.Packets, now.Bytes-first.Bytes; dp != 2*ctrCount || db != 2*ctrCount*frame {
						t.Errorf("flow counters: %d packets, %d bytes before the route change, %d, %d now: grew by %d packets, %d bytes; want exactly %d, %d (both batches of %d)",
							first.Packets, first.Bytes, now.Packets, now.Bytes, int64(now.Packets-first.Packets), int64(now.Bytes-first.Bytes), 2*ctrCount, 2*ctrCount*frame, ctrCount)
					}
					if restarted(first, firstAt, now, nowAt) {
						t.Errorf("flow age %.3fs, %.3fs later %.3fs: it restarted at the revalidation", first.AgeSec, nowAt.Sub(firstAt).Seconds(), now.AgeSec)
					}
				})
			}
		})
	}
}

// restarted reports whether a flow read at nowAt is younger than the same
// flow read at firstAt can be: it was re-created in between. Ages are
// computed when the daemon answers; 50 ms cover the API calls.
func restarted(first api.Flow, firstAt time.Time, now api.Flow, nowAt time.Time) bool {
	return now.AgeSec < first.AgeSec+nowAt.Sub(firstAt).Seconds()-0.05
}

// TestOffloadICMP pings through offload mode: ICMP cannot be offloaded
// (conntrack lookup from BPF serves TCP and UDP only), so every echo request
// and reply goes through the kernel, counted under pass reason icmp.
func TestOffloadICMP(t *testing.T) {
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			l, d, ctx := offloadLab(t, attach, masqueradeRuleset)
			const n = 5
			before := d.counters(t, l.Rtr)
			mustPing(ctx, t, l, l.SinkAddr4, n)
			mustPing(ctx, t, l, l.SinkAddr6, n)
			after := d.counters(t, l.Rtr)
			for _, ifc := range []string{l.RtrIn, l.RtrOut} {
				if got := after.reason(ifc, "icmp") - before.reason(ifc, "icmp"); got < 2*n {
					t.Errorf("%s: pass reason icmp grew by %d, want >= %d (echo requests or replies, both families); %s",
						ifc, got, 2*n, before.reasonDeltas(after, ifc))
				}
			}
			if fp := after.forwarded() - before.forwarded(); fp != 0 {
				t.Errorf("fastpath forwarded %d packets of the pings; ICMP must stay on the kernel path", fp)
			}
		})
	}
}

// TestOffloadWithoutConntrack runs offload mode in a namespace whose
// ruleset never uses conntrack (here: none at all), so the kernel tracks
// nothing: nothing may be offloaded, traffic must flow through the kernel,
// and docs/offload.md says the pass reason is no_conntrack. As of this
// writing the datapath counts not_accepted instead: the verdict recorder
// skips packets without a conntrack entry, so the accepted check fails
// before the conntrack lookup would.
func TestOffloadWithoutConntrack(t *testing.T) {
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			l, d, ctx := offloadLab(t, attach, "")
			for _, f := range families(l) {
				u := newUDPFlow(t, l.Gen, l.Sink, netip.AddrPort{}, netip.AddrPortFrom(f.sink, 0), netip.AddrPortFrom(f.sink, 0))
				u.handshake(t)
				before := d.counters(t, l.Rtr)
				sent := u.send(ctx, 200, 200, 200*time.Microsecond)
				got := u.settle(t, sent, 300*time.Millisecond)
				after := d.counters(t, l.Rtr)
				if got < sent*95/100 {
					t.Errorf("%s: %d of %d datagrams arrived", f.name, got, sent)
				}
				if fp := after.forwarded() - before.forwarded(); fp != 0 {
					t.Errorf("%s: fastpath forwarded %d packets without conntrack", f.name, fp)
				}
				if n := after.reason(l.RtrIn, "no_conntrack") - before.reason(l.RtrIn, "no_conntrack"); n < uint64(got) {
					t.Errorf("%s: pass reason no_conntrack grew by %d for %d datagrams (docs/offload.md); %s",
						f.name, n, got, before.reasonDeltas(after, l.RtrIn))
				}
			}
		})
	}
}

// offloadedUDPFlow opens a UDP flow gen -> sink, has it answered and warmed
// up, and returns once the flow is in fastpath's cache.
func offloadedUDPFlow(ctx context.Context, t *testing.T, l *lab.Lab, d *daemon, sink netip.Addr) *udpFlow {
	t.Helper()
	u := newUDPFlow(t, l.Gen, l.Sink, netip.AddrPort{}, netip.AddrPortFrom(sink, 0), netip.AddrPortFrom(sink, 0))
	u.handshake(t)
	u.send(ctx, ctrWarmup, ctrSize, time.Millisecond)
	u.waitReceived(t, ctrWarmup, offloadWait)
	d.waitFlow(t, u.local, u.dst)
	return u
}

// TestNoResetsBehindNAT: with path MTU discovery off on the hosts and a
// smaller MTU out of the router, gen's data is fragmented by the kernel
// (it stays on the kernel path) while the sink's ACKs may be offloaded. A
// flow offloaded before its conntrack entry is window-liberal makes
// conntrack judge the kernel-path data out of window: not un-NATed, the
// router answers with a RST. Every transfer must arrive whole.
func TestNoResetsBehindNAT(t *testing.T) {
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			l, d, ctx := offloadLab(t, attach, masqueradeRuleset+filterRuleset)
			for _, ns := range []string{l.Gen, l.Sink} {
				nsRun(ctx, t, l, ns, "sysctl", "-qw", "net.ipv4.ip_no_pmtu_disc=1")
			}
			setMTU(t, l.Rtr, l.RtrOut, 1400)
			before := d.counters(t, l.Rtr)
			const transfers = 20
			for i := range transfers {
				r, err := traffic.TCPTransfer(ctx, l.Gen, l.Sink, netip.AddrPortFrom(l.SinkAddr4, 0), 1<<20)
				if err != nil || !r.OK() {
					t.Fatalf("transfer %d of %d: %+v, %v", i+1, transfers, r, err)
				}
			}
			after := d.counters(t, l.Rtr)
			if after.forwarded() <= before.forwarded() {
				t.Errorf("fastpath carried nothing (%d -> %d): the test shows nothing", before.forwarded(), after.forwarded())
			}
		})
	}
}

// TestOffloadECN: the ECN bits change packet by packet (TCP marks data
// ECT and leaves pure ACKs and retransmissions unmarked; routers mark CE),
// and forwarding leaves them alone: flows are judged by their DSCP, not by
// those bits. A UDP flow whose datagrams alternate Not-ECT, ECT(0) and
// ECT(1) is carried by fastpath like any other, and each arrives with the
// codepoint it was sent with.
func TestOffloadECN(t *testing.T) {
	for _, attach := range offloadAttaches {
		t.Run(attach, func(t *testing.T) {
			l, d, ctx := offloadLab(t, attach, masqueradeRuleset+filterRuleset)
			for _, f := range families(l) {
				t.Run(f.name, func(t *testing.T) {
					u := newUDPFlow(t, l.Gen, l.Sink, netip.AddrPort{}, netip.AddrPortFrom(f.sink, 0), netip.AddrPortFrom(f.sink, 0))
					u.handshake(t)
					const warm = 20
					u.send(ctx, warm, 200, time.Millisecond) // the flow gets cached
					d.waitFlow(t, u.local, u.dst)
					const n = 600
					before := d.counters(t, l.Rtr)
					first := u.received()
					for i := range n {
						u.setTOS(t, i%3) // the ECN bits: Not-ECT, ECT(1), ECT(0)
						u.send(ctx, 1, 200, 0)
					}
					u.settle(t, first+n, 500*time.Millisecond)
					after := d.counters(t, l.Rtr)
					if s, fp, k := share(before, after, f); s < minShare {
						t.Errorf("alternating ECN: fastpath forwarded %d packets, the kernel %d: %.1f%%, want >= %.0f%%; %s",
							fp, k, 100*s, 100*minShare, before.reasonDeltas(after, l.RtrIn))
					}
					arr, _ := u.snapshot()
					wrong := 0
					for _, a := range arr {
						want := 0 // the warm-up's
						if a.seq >= warm {
							want = int((a.seq - warm) % 3)
						}
						if a.tos >= 0 && a.tos&3 != want {
							wrong++
						}
					}
					if wrong > 0 {
						t.Errorf("%d datagrams arrived with an ECN codepoint they were not sent with", wrong)
					}
				})
			}
		})
	}
}
