package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/config"
	"github.com/fastpath-router/fastpath/internal/datapath"
	"github.com/fastpath-router/fastpath/internal/eventhub"
	"github.com/fastpath-router/fastpath/internal/netwatch"
	"github.com/fastpath-router/fastpath/internal/vethpeer"
	"github.com/fastpath-router/fastpath/internal/xdpfeat"
)

// fakeLink stands for an attached program. Embedding link.Link satisfies
// the interface; only the methods the reconciler calls are implemented.
type fakeLink struct {
	link.Link
	id      uint32
	ifindex int
	hook    datapath.Hook
	closed  bool
}

func (l *fakeLink) Close() error { l.closed = true; return nil }
func (l *fakeLink) Info() (*link.Info, error) {
	return &link.Info{ID: link.ID(l.id), Program: ebpf.ProgramID(100 + l.id)}, nil
}

// fakeDP records what the reconciler does to the datapath. Like the
// kernel, it refuses a second XDP program (driver or generic) on a device,
// and the TC program a second time on its tcx hook (tc and tc-gro are the
// same program there).
type fakeDP struct {
	ifaces        map[int]datapath.Iface
	targets       map[int]bool
	links         map[int][]*fakeLink // live links per ifindex
	fail          map[datapath.Hook]error
	attempts      map[datapath.Hook]int // Attach calls, refused ones included
	nextID        uint32
	invalidations int
	hold          datapath.Hold
	holdWrites    int
}

func newFakeDP() *fakeDP {
	return &fakeDP{ifaces: map[int]datapath.Iface{}, targets: map[int]bool{}, links: map[int][]*fakeLink{},
		fail: map[datapath.Hook]error{}, attempts: map[datapath.Hook]int{}}
}

func isXDP(h datapath.Hook) bool { return h == datapath.HookXDP || h == datapath.HookXDPGeneric }

func (d *fakeDP) SetIface(i datapath.Iface) error { d.ifaces[i.Index] = i; return nil }
func (d *fakeDP) RemoveIface(idx int) error {
	delete(d.ifaces, idx)
	delete(d.targets, idx)
	return nil
}
func (d *fakeDP) SetXDPTarget(idx int, ok bool) error { d.targets[idx] = ok; return nil }
func (d *fakeDP) InvalidateRoutes() error             { d.invalidations++; return nil }
func (d *fakeDP) SetHold(h datapath.Hold) error       { d.hold, d.holdWrites = h, d.holdWrites+1; return nil }
func (d *fakeDP) Held() datapath.Hold                 { return d.hold }
func (d *fakeDP) Attach(idx int, hook datapath.Hook) (link.Link, error) {
	d.attempts[hook]++
	if err := d.fail[hook]; err != nil {
		return nil, err
	}
	for _, l := range d.links[idx] {
		if isXDP(l.hook) && isXDP(hook) {
			return nil, errors.New("device busy: an XDP program is attached")
		}
		if !isXDP(l.hook) && !isXDP(hook) {
			return nil, errors.New("attach tcx link: file exists")
		}
	}
	d.nextID++
	l := &fakeLink{id: d.nextID, ifindex: idx, hook: hook}
	d.links[idx] = append(d.links[idx], l)
	return l, nil
}
func (d *fakeDP) Detach(l link.Link) error {
	fl := l.(*fakeLink)
	fl.closed = true
	live := d.links[fl.ifindex][:0]
	for _, x := range d.links[fl.ifindex] {
		if x != fl {
			live = append(live, x)
		}
	}
	d.links[fl.ifindex] = live
	return nil
}

// hooks lists the live hooks on an interface.
func (d *fakeDP) hooks(idx int) []datapath.Hook {
	var hs []datapath.Hook
	for _, l := range d.links[idx] {
		hs = append(hs, l.hook)
	}
	return hs
}

type fakeFeats map[int]xdpfeat.Features

func (f fakeFeats) Get(idx int) (xdpfeat.Features, error) {
	v, ok := f[idx]
	if !ok {
		return 0, fmt.Errorf("no device %d", idx)
	}
	return v, nil
}

const veth = xdpfeat.Basic | xdpfeat.Redirect | xdpfeat.NDOXmit // a veth whose peer has GRO

// fakePeers answers peer lookups by link name; links not listed are not
// veths.
type fakePeers map[string]peerAnswer

type peerAnswer struct {
	p   vethpeer.Peer
	err error
	// xdp: the peer keeps sending by XDP, its count growing between reads.
	xdp bool
	// noStats: the peer's statistics cannot be read.
	noStats bool
	reads   int
}

func (f fakePeers) Lookup(l netlink.Link) (vethpeer.Peer, error) {
	a, ok := f[l.Attrs().Name]
	if !ok {
		return vethpeer.Peer{}, vethpeer.ErrNotVeth
	}
	if a.xdp {
		a.p.XDPSent++
	}
	a.reads++
	f[l.Attrs().Name] = a
	p := a.p
	p.XDPSentKnown = !a.noStats
	if a.noStats {
		p.XDPSent = 0
	}
	return p, a.err
}

type fixture struct {
	shaping map[int]string                  // egress shaping by ifindex
	nf      map[string]netwatch.DeviceHooks // nftables device chains by name
	nfErr   error
	xfrm    string          // netwatch.XfrmPolicies' answer
	late    []string        // netwatch.NFTUnseenChains' answer
	holdErr error           // from both
	mtu6    map[string]int  // IPv6 MTUs by name
	groOff  map[string]bool // devices with GRO off
	r       *reconciler
	dp      *fakeDP
	feats   fakeFeats
	peers   fakePeers
	links   map[string]netlink.Link
}

func newFixture(t *testing.T, ifaces ...config.Interface) *fixture {
	t.Helper()
	fx := &fixture{dp: newFakeDP(), feats: fakeFeats{}, peers: fakePeers{}, links: map[string]netlink.Link{}, shaping: map[int]string{},
		nf: map[string]netwatch.DeviceHooks{}, mtu6: map[string]int{}, groOff: map[string]bool{}}
	for i, name := range []string{"r0", "r1", "r2"} {
		fx.addLink(name, i+2, veth)
	}
	cfg := &config.Config{Version: 1, Interfaces: ifaces}
	fx.r = newReconciler(cfg, fx.dp, fx.feats, fx.peers, eventhub.New(100, 100), slog.New(slog.DiscardHandler))
	fx.r.shaping = func(idx int) (string, error) { return fx.shaping[idx], nil }
	fx.r.ipv6MTU = func(name string) int { return fx.mtu6[name] }
	fx.r.groOn = func(name string) (bool, error) { return !fx.groOff[name], nil }
	fx.r.nfHooks = func() (map[string]netwatch.DeviceHooks, error) { return maps.Clone(fx.nf), fx.nfErr }
	fx.r.xfrm = func() (string, error) { return fx.xfrm, fx.holdErr }
	fx.r.unseenChains = func() ([]string, error) { return fx.late, fx.holdErr }
	fx.r.links = func() (map[string]netlink.Link, error) {
		m := make(map[string]netlink.Link, len(fx.links))
		for k, v := range fx.links {
			m[k] = v
		}
		return m, nil
	}
	return fx
}

func (fx *fixture) addLink(name string, idx int, f xdpfeat.Features) {
	fx.links[name] = &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name, Index: idx, MTU: 1500, EncapType: "ether",
		HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, byte(idx)}}}
	fx.feats[idx] = f
}

func (fx *fixture) iface(t *testing.T, name string) *iface {
	t.Helper()
	for _, ic := range fx.r.ifaces {
		if ic.cfg.Name == name {
			return ic
		}
	}
	t.Fatalf("no interface %s in the reconciler", name)
	return nil
}

func ifc(name string, mode config.Mode, attach config.Attach) config.Interface {
	return config.Interface{Name: name, Mode: mode, Attach: attach}
}

func TestStartAllOrNothing(t *testing.T) {
	fx := newFixture(t, ifc("r0", config.ModeRoute, config.AttachAuto), ifc("r9", config.ModeRoute, config.AttachAuto), ifc("r8", config.ModeOff, config.AttachAuto))
	err := fx.r.start()
	// Every listed interface must exist, off ones too (docs/config.md), and
	// the error names them all.
	if err == nil || !strings.Contains(err.Error(), "r9") || !strings.Contains(err.Error(), "r8") {
		t.Fatalf("start with missing interfaces: %v; want an error naming r9 and r8", err)
	}
	if len(fx.dp.links[2]) != 0 || len(fx.dp.ifaces) != 0 {
		t.Errorf("a failed start touched the datapath: links %v, ifaces %v", fx.dp.links, fx.dp.ifaces)
	}

	fx = newFixture(t, ifc("r0", config.ModeRoute, config.AttachXDP), ifc("r1", config.ModeRoute, config.AttachTC))
	fx.dp.fail[datapath.HookTC] = errors.New("tcx refused")
	if err := fx.r.start(); err == nil || !strings.Contains(err.Error(), "r1") {
		t.Fatalf("start with a failing attach: %v", err)
	}
	fx.r.detachAll()
	if hs := fx.dp.hooks(2); len(hs) != 0 || len(fx.dp.ifaces) != 0 {
		t.Errorf("after a failed start and detachAll: r0 hooks %v, ifaces %v", hs, fx.dp.ifaces)
	}
}

func TestAutoHook(t *testing.T) {
	for _, tc := range []struct {
		name   string
		r0, r1 xdpfeat.Features
		want   datapath.Hook
	}{
		{"native XDP, egress takes XDP frames", veth, veth, datapath.HookXDP},
		{"egress cannot take XDP frames", veth, xdpfeat.Basic | xdpfeat.Redirect, datapath.HookTC},
		{"no native XDP", xdpfeat.Redirect, veth, datapath.HookTC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, ifc("r0", config.ModeRoute, config.AttachAuto), ifc("r1", config.ModeRoute, config.AttachTC))
			fx.feats[2], fx.feats[3] = tc.r0, tc.r1
			if err := fx.r.start(); err != nil {
				t.Fatal(err)
			}
			if got := fx.iface(t, "r0").hook; got != tc.want {
				t.Errorf("auto chose %s, want %s", got, tc.want)
			}
			if fx.dp.targets[3] != (tc.r1&xdpfeat.NDOXmit != 0) {
				t.Errorf("r1 as an XDP target: %v, features %#x", fx.dp.targets[3], uint64(tc.r1))
			}
		})
	}
}

func TestSyncFollowsLinks(t *testing.T) {
	fx := newFixture(t, ifc("r0", config.ModeOffload, config.AttachXDP), ifc("r1", config.ModeOffload, config.AttachTC))
	if err := fx.r.start(); err != nil {
		t.Fatal(err)
	}
	r0link := fx.iface(t, "r0").link

	// r1 goes away: detached and forgotten, flows re-validate, r0 untouched.
	delete(fx.links, "r1")
	inv := fx.dp.invalidations
	fx.r.sync()
	r1 := fx.iface(t, "r1")
	if r1.state != api.StateMissing || r1.link != nil || len(fx.dp.hooks(3)) != 0 {
		t.Errorf("r1 after it went away: state %s, link %v, hooks %v", r1.state, r1.link, fx.dp.hooks(3))
	}
	if _, ok := fx.dp.ifaces[3]; ok || fx.dp.invalidations == inv {
		t.Errorf("r1 still in the datapath (%v) or flows not invalidated", ok)
	}
	if fx.iface(t, "r0").link != r0link || r0link.(*fakeLink).closed {
		t.Error("r0 was touched when r1 went away")
	}

	// r1 comes back with a new ifindex: attached again.
	fx.addLink("r1", 7, veth)
	fx.r.sync()
	if r1 := fx.iface(t, "r1"); r1.state != api.StateAttached || r1.ifindex != 7 || len(fx.dp.hooks(7)) != 1 {
		t.Errorf("r1 back: state %s, ifindex %d, hooks %v", r1.state, r1.ifindex, fx.dp.hooks(7))
	}

	// r0's MAC and MTU change: rewritten, flows invalidated, not re-attached.
	fx.links["r0"].Attrs().HardwareAddr = net.HardwareAddr{2, 0, 0, 0, 0, 0x99}
	fx.links["r0"].Attrs().MTU = 9000
	inv = fx.dp.invalidations
	fx.r.sync()
	if got := fx.dp.ifaces[2]; got.MTU != 9000 || got.MAC[5] != 0x99 || fx.dp.invalidations == inv {
		t.Errorf("r0 after a MAC/MTU change: %+v, invalidations %d -> %d", got, inv, fx.dp.invalidations)
	}
	if fx.iface(t, "r0").link != r0link {
		t.Error("r0 re-attached for a MAC change")
	}
}

func TestApplyOnlyTheDifference(t *testing.T) {
	fx := newFixture(t, ifc("r0", config.ModeRoute, config.AttachXDP), ifc("r1", config.ModeRoute, config.AttachXDP))
	if err := fx.r.start(); err != nil {
		t.Fatal(err)
	}
	r0link := fx.iface(t, "r0").link
	oldR1 := fx.iface(t, "r1").link.(*fakeLink)

	actions, err := fx.r.apply([]config.Interface{
		ifc("r0", config.ModeRoute, config.AttachXDP), // unchanged
		ifc("r1", config.ModeOffload, config.AttachTC),
		ifc("r2", config.ModeRoute, config.AttachTC), // new
	})
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(actions, "; ")
	for _, want := range []string{"r1: mode route -> offload, attach xdp -> tc (tc)", "add r2"} {
		if !strings.Contains(joined, want) {
			t.Errorf("actions %q lack %q", joined, want)
		}
	}
	if fx.iface(t, "r0").link != r0link || r0link.(*fakeLink).closed {
		t.Error("r0 was touched by a reload that did not change it")
	}
	if !oldR1.closed || fmt.Sprint(fx.dp.hooks(3)) != "[tc]" || fx.dp.ifaces[3].Mode != datapath.ModeOffload {
		t.Errorf("r1: old link closed %v, hooks %v, mode %v", oldR1.closed, fx.dp.hooks(3), fx.dp.ifaces[3].Mode)
	}
	if fmt.Sprint(fx.dp.hooks(4)) != "[tc]" {
		t.Errorf("r2 hooks %v", fx.dp.hooks(4))
	}

	// r1 removed, r0 turned off: both detached and forgotten.
	if _, err := fx.r.apply([]config.Interface{ifc("r0", config.ModeOff, config.AttachXDP), ifc("r2", config.ModeRoute, config.AttachTC)}); err != nil {
		t.Fatal(err)
	}
	if len(fx.dp.hooks(2)) != 0 || len(fx.dp.hooks(3)) != 0 || fx.iface(t, "r0").state != api.StateOff {
		t.Errorf("after removing r1 and turning r0 off: hooks r0 %v r1 %v, r0 %s", fx.dp.hooks(2), fx.dp.hooks(3), fx.iface(t, "r0").state)
	}
	if _, ok := fx.dp.ifaces[2]; ok {
		t.Error("r0 (off) still in the datapath")
	}
}

// XDP driver and generic mode cannot coexist on a device: the swap detaches
// first, and if the new mode is refused the old one is put back.
func TestReattachXDPModeRollsBack(t *testing.T) {
	fx := newFixture(t, ifc("r0", config.ModeRoute, config.AttachXDP))
	if err := fx.r.start(); err != nil {
		t.Fatal(err)
	}
	fx.dp.fail[datapath.HookXDPGeneric] = errors.New("generic XDP refused")
	actions, err := fx.r.apply([]config.Interface{ifc("r0", config.ModeRoute, config.AttachXDPGeneric)})
	if err == nil {
		t.Fatal("a refused attach reported no error")
	}
	r0 := fx.iface(t, "r0")
	if r0.hook != datapath.HookXDP || r0.state != api.StateAttached || fmt.Sprint(fx.dp.hooks(2)) != "[xdp]" || r0.cfg.Attach != config.AttachXDP {
		t.Errorf("after a refused swap: hook %s, state %s, hooks %v, attach %s, actions %v", r0.hook, r0.state, fx.dp.hooks(2), r0.cfg.Attach, actions)
	}

	delete(fx.dp.fail, datapath.HookXDPGeneric)
	if _, err := fx.r.apply([]config.Interface{ifc("r0", config.ModeRoute, config.AttachXDPGeneric)}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(fx.dp.hooks(2)) != "[xdp-generic]" {
		t.Errorf("after the swap: hooks %v", fx.dp.hooks(2))
	}
}

// TestAutoHookFacts covers every fact auto decides on beyond TestAutoHook's
// XDP features: a veth peer's checksum offload (on, off, unreadable), and
// native XDP refused by the kernel (a veth's MTU above what its XDP takes).
func TestAutoHookFacts(t *testing.T) {
	partial := peerAnswer{p: vethpeer.Peer{Name: "g0", Netns: "/run/netns/gen", PartialChecksums: true}}
	complete := peerAnswer{p: vethpeer.Peer{Name: "g0", Netns: "/run/netns/gen"}}
	byXDP := peerAnswer{p: vethpeer.Peer{Name: "g0", Netns: "/run/netns/gen"}, xdp: true}
	unreadable := peerAnswer{err: errors.New("no namespace with id 7")}
	for _, tc := range []struct {
		name    string
		peer    *peerAnswer
		xdpFail error
		want    datapath.Hook
		why     string
	}{
		{"not a veth", nil, nil, datapath.HookXDP, "no partial checksums"},
		{"peer finishes its checksums, sends from its stack", &complete, nil, datapath.HookTC, "g0 (netns /run/netns/gen) sends from its stack: native XDP would copy every frame"},
		{"peer finishes its checksums, sends by XDP", &byXDP, nil, datapath.HookXDP, "no partial checksums, veth peer g0 (netns /run/netns/gen) sends by XDP"},
		{"peer sends partial checksums", &partial, nil, datapath.HookTC, "g0 (netns /run/netns/gen) sends partial checksums"},
		{"peer unreadable", &unreadable, nil, datapath.HookTC, "checksum offload unknown (no namespace with id 7)"},
		{"native XDP refused", nil, errors.New("numerical result out of range"), datapath.HookTC, "native XDP refused at MTU 1500 (numerical result out of range)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, ifc("r0", config.ModeOffload, config.AttachAuto), ifc("r1", config.ModeOffload, config.AttachTC))
			if tc.peer != nil {
				fx.peers["r0"] = *tc.peer
			}
			if tc.xdpFail != nil {
				fx.dp.fail[datapath.HookXDP] = tc.xdpFail
			}
			if err := fx.r.start(); err != nil {
				t.Fatal(err)
			}
			fx.r.sync() // a peer's sending by XDP shows between two reads
			ic := fx.iface(t, "r0")
			if ic.hook != tc.want || !strings.Contains(ic.why, tc.why) {
				t.Errorf("auto chose %s (%s), want %s (%s)", ic.hook, ic.why, tc.want, tc.why)
			}
			want := []datapath.Hook{tc.want}
			if tc.want == datapath.HookXDP { // offload mode: TC behind it for bulk TCP
				want = append(want, datapath.HookTCGRO)
			}
			if hs := fx.dp.hooks(2); !slices.Equal(hs, want) {
				t.Errorf("r0 hooks %v, want %v", hs, want)
			}
			if st := fx.r.status(); !strings.HasPrefix(st[0].AttachReason, ic.why) {
				t.Errorf("status reason %q, want %q", st[0].AttachReason, ic.why)
			}
		})
	}
}

// TestGenericXDPSaysPartialChecksums: attach: xdp-generic on a veth whose
// peer sends partial checksums attaches (it is correct: every such frame
// goes to the kernel) and its reason says why nothing is forwarded.
func TestGenericXDPSaysPartialChecksums(t *testing.T) {
	fx := newFixture(t, ifc("r0", config.ModeOffload, config.AttachXDPGeneric))
	fx.peers["r0"] = peerAnswer{p: vethpeer.Peer{Name: "g0", PartialChecksums: true}}
	if err := fx.r.start(); err != nil {
		t.Fatal(err)
	}
	r0 := fx.iface(t, "r0")
	if r0.hook != datapath.HookXDPGeneric || !strings.Contains(r0.why, "g0 sends partial checksums") || !strings.Contains(r0.why, "bad_checksum") {
		t.Errorf("hook %s, why %q", r0.hook, r0.why)
	}
}

// TestForcedXDPMustBeCorrect: attach: xdp on a veth whose peer sends partial
// checksums is refused with the reason, and nothing is attached; a peer
// that cannot be read does not override the operator.
func TestForcedXDPMustBeCorrect(t *testing.T) {
	fx := newFixture(t, ifc("r0", config.ModeOffload, config.AttachXDP))
	fx.peers["r0"] = peerAnswer{p: vethpeer.Peer{Name: "g0", PartialChecksums: true}}
	err := fx.r.start()
	if err == nil || !strings.Contains(err.Error(), "attach: xdp cannot be correct on r0") || !strings.Contains(err.Error(), "g0 sends partial checksums") {
		t.Fatalf("forced xdp with a partial-checksum peer: %v", err)
	}
	fx.r.detachAll()
	if hs := fx.dp.hooks(2); len(hs) != 0 {
		t.Errorf("hooks left after a refused start: %v", hs)
	}

	fx = newFixture(t, ifc("r0", config.ModeOffload, config.AttachXDP))
	fx.peers["r0"] = peerAnswer{err: errors.New("gone")}
	if err := fx.r.start(); err != nil {
		t.Fatal(err)
	}
	if ic := fx.iface(t, "r0"); ic.hook != datapath.HookXDP || !strings.Contains(ic.why, "configured") {
		t.Errorf("forced xdp with an unreadable peer: %s (%s)", ic.hook, ic.why)
	}
}

// TestRedecideOnChange: while attached, a change of any fact moves the
// interface to the right hook on the next sync, new program first; and back.
func TestRedecideOnChange(t *testing.T) {
	fx := newFixture(t, ifc("r0", config.ModeOffload, config.AttachAuto), ifc("r1", config.ModeOffload, config.AttachAuto), ifc("r2", config.ModeOffload, config.AttachXDP))
	fx.peers["r0"] = peerAnswer{p: vethpeer.Peer{Name: "g0"}, xdp: true}
	fx.peers["r2"] = peerAnswer{p: vethpeer.Peer{Name: "x0"}}
	if err := fx.r.start(); err != nil {
		t.Fatal(err)
	}
	fx.r.sync()
	hook := func(name string) datapath.Hook { return fx.iface(t, name).hook }
	if hook("r0") != datapath.HookXDP || hook("r2") != datapath.HookXDP {
		t.Fatalf("start: r0 %s, r2 %s", hook("r0"), hook("r2"))
	}
	// The peer turns tx checksum offload on: auto moves to TC, and so does
	// the forced xdp (it would corrupt traffic), with the reason.
	fx.peers["r0"] = peerAnswer{p: vethpeer.Peer{Name: "g0", PartialChecksums: true, XDPSent: 100}, xdp: true}
	fx.peers["r2"] = peerAnswer{p: vethpeer.Peer{Name: "x0", PartialChecksums: true}}
	fx.r.sync()
	for _, name := range []string{"r0", "r2"} {
		ic := fx.iface(t, name)
		if ic.hook != datapath.HookTC || !strings.Contains(ic.why, "partial checksums") {
			t.Errorf("%s after its peer turned checksum offload on: %s (%s)", name, ic.hook, ic.why)
		}
		if hs := fx.dp.hooks(ic.ifindex); len(hs) != 1 || hs[0] != datapath.HookTC {
			t.Errorf("%s hooks %v, want [tc]", name, hs)
		}
	}
	// And off again: back to XDP.
	fx.peers["r0"] = peerAnswer{p: vethpeer.Peer{Name: "g0", XDPSent: 200}, xdp: true}
	fx.r.sync()
	if hook("r0") != datapath.HookXDP {
		t.Errorf("r0 after its peer turned checksum offload off: %s", hook("r0"))
	}

	// An egress that stops taking XDP frames sends its ingresses to TC.
	fx.feats[3] = xdpfeat.Basic | xdpfeat.Redirect
	fx.r.sync()
	if hook("r0") != datapath.HookTC || !strings.Contains(fx.iface(t, "r0").why, "egress r1 cannot transmit XDP frames") {
		t.Errorf("r0 with an egress that takes no XDP frames: %s (%s)", hook("r0"), fx.iface(t, "r0").why)
	}
	fx.feats[3] = veth
	fx.r.sync()
	if hook("r0") != datapath.HookXDP {
		t.Errorf("r0 once the egress takes XDP frames again: %s", hook("r0"))
	}
}

// TestRedecideOnMTU: native XDP refused at one MTU is not asked again at
// that MTU, and is once the MTU changes.
func TestRedecideOnMTU(t *testing.T) {
	fx := newFixture(t, ifc("r0", config.ModeOffload, config.AttachAuto), ifc("r1", config.ModeOffload, config.AttachTC))
	fx.links["r0"].Attrs().MTU = 9000
	fx.dp.fail[datapath.HookXDP] = errors.New("numerical result out of range")
	if err := fx.r.start(); err != nil {
		t.Fatal(err)
	}
	ic := fx.iface(t, "r0")
	if ic.hook != datapath.HookTC || !strings.Contains(ic.why, "MTU 9000") {
		t.Fatalf("jumbo MTU: %s (%s)", ic.hook, ic.why)
	}
	asked := fx.dp.attempts[datapath.HookXDP]
	fx.r.sync() // same MTU: stays, without asking the kernel again
	if ic.hook != datapath.HookTC || !strings.Contains(ic.why, "refused at MTU 9000") {
		t.Errorf("after a resync: %s (%s)", ic.hook, ic.why)
	}
	if n := fx.dp.attempts[datapath.HookXDP]; n != asked {
		t.Errorf("native XDP asked for again at the same MTU (%d attempts, was %d)", n, asked)
	}
	delete(fx.dp.fail, datapath.HookXDP)
	fx.links["r0"].Attrs().MTU = 1500
	fx.r.sync()
	if ic.hook != datapath.HookXDP {
		t.Errorf("MTU back to 1500: %s (%s)", ic.hook, ic.why)
	}
	if hs := fx.dp.hooks(2); fmt.Sprint(hs) != "[xdp tc-gro]" {
		t.Errorf("r0 hooks %v, want [xdp tc-gro]", hs)
	}
}

// TestForcedXDPJumbo: a forced attach: xdp the kernel refuses for the MTU
// (ERANGE) fails the start with the reason in words, not the bare errno.
func TestForcedXDPJumbo(t *testing.T) {
	fx := newFixture(t, ifc("r0", config.ModeOffload, config.AttachXDP), ifc("r1", config.ModeOffload, config.AttachTC))
	fx.links["r0"].Attrs().MTU = 9000
	fx.dp.fail[datapath.HookXDP] = fmt.Errorf("create link: %w", unix.ERANGE)
	err := fx.r.start()
	if err == nil || !strings.Contains(err.Error(), "interface r0: native XDP refused at MTU 9000") ||
		!strings.Contains(err.Error(), "use attach: auto or tc") || !errors.Is(err, unix.ERANGE) {
		t.Fatalf("forced xdp at MTU 9000: %v", err)
	}
}

// TestRedecideFallbackKeepsLink: an interface on TC for one reason (its
// peer's partial checksums) whose reason goes away, so auto wants XDP, which
// the kernel refuses: it stays on the TC link it has. A second TC attach
// would, with pinning, adopt and then unpin the link in use.
func TestRedecideFallbackKeepsLink(t *testing.T) {
	fx := newFixture(t, ifc("r0", config.ModeOffload, config.AttachAuto), ifc("r1", config.ModeOffload, config.AttachTC))
	fx.peers["r0"] = peerAnswer{p: vethpeer.Peer{Name: "g0", PartialChecksums: true}}
	if err := fx.r.start(); err != nil {
		t.Fatal(err)
	}
	ic := fx.iface(t, "r0")
	first := ic.link.(*fakeLink)
	if ic.hook != datapath.HookTC {
		t.Fatalf("start: %s (%s)", ic.hook, ic.why)
	}
	fx.peers["r0"] = peerAnswer{p: vethpeer.Peer{Name: "g0", XDPSent: 100}, xdp: true}
	fx.dp.fail[datapath.HookXDP] = errors.New("numerical result out of range")
	tcBefore := fx.dp.attempts[datapath.HookTC]
	fx.r.sync()
	if ic.hook != datapath.HookTC || ic.link != link.Link(first) || first.closed || !strings.Contains(ic.why, "native XDP refused") {
		t.Errorf("after XDP was refused: %s (%s), link %v closed %v", ic.hook, ic.why, ic.link, first.closed)
	}
	if n := fx.dp.attempts[datapath.HookTC]; n != tcBefore {
		t.Errorf("TC attached again (%d attempts, was %d)", n, tcBefore)
	}
	if hs := fx.dp.hooks(2); len(hs) != 1 {
		t.Errorf("r0 hooks %v, want the one tc link", hs)
	}
}

// TestEgressShaping: an egress with the operator's qdisc or egress filters
// takes no XDP frames (the devmap drops it), and auto moves its ingresses
// to TC, whose redirect goes through the qdisc; back when it goes.
func TestEgressShaping(t *testing.T) {
	fx := newFixture(t, ifc("r0", config.ModeOffload, config.AttachAuto), ifc("r1", config.ModeOffload, config.AttachAuto))
	if err := fx.r.start(); err != nil {
		t.Fatal(err)
	}
	r0 := fx.iface(t, "r0")
	if r0.hook != datapath.HookXDP || !fx.dp.targets[3] {
		t.Fatalf("start: r0 %s, r1 target %v", r0.hook, fx.dp.targets[3])
	}
	fx.shaping[3] = "root qdisc tbf 8001:"
	fx.r.sync()
	if fx.dp.targets[3] || r0.hook != datapath.HookTC || !strings.Contains(r0.why, "egress r1 has the operator's root qdisc tbf 8001:") {
		t.Errorf("with a shaper on r1: r1 target %v, r0 %s (%s)", fx.dp.targets[3], r0.hook, r0.why)
	}
	delete(fx.shaping, 3)
	fx.r.sync()
	if !fx.dp.targets[3] || r0.hook != datapath.HookXDP {
		t.Errorf("shaper gone: r1 target %v, r0 %s (%s)", fx.dp.targets[3], r0.hook, r0.why)
	}
}

// TestNFTDeviceChains: an nftables chain bound to a managed device is
// written into the datapath (ingress: its packets stay with the kernel;
// egress: no redirect towards it), cached flows are re-routed, status shows
// it, and it is undone when the chain goes; an unreadable ruleset keeps
// what was known.
func TestNFTDeviceChains(t *testing.T) {
	fx := newFixture(t, ifc("r0", config.ModeOffload, config.AttachAuto), ifc("r1", config.ModeRoute, config.AttachAuto))
	fx.nf["r0"] = netwatch.DeviceHooks{Ingress: []string{"netdev t in"}}
	if err := fx.r.start(); err != nil {
		t.Fatal(err)
	}
	if got := fx.dp.ifaces[2]; !got.NFIngress || got.NFEgress {
		t.Fatalf("start: r0 %+v, want ingress chains flagged", got)
	}
	if got := fx.dp.ifaces[3]; got.NFIngress || got.NFEgress {
		t.Fatalf("start: r1 %+v, want no flags", got)
	}
	fx.nf["r1"] = netwatch.DeviceHooks{Egress: []string{"netdev t out"}}
	before := fx.dp.invalidations
	fx.r.sync()
	if got := fx.dp.ifaces[3]; !got.NFEgress {
		t.Errorf("after an egress chain on r1: %+v", got)
	}
	if fx.dp.invalidations == before {
		t.Error("cached flows were not re-routed after the egress chain came")
	}
	var st api.InterfaceStatus
	for _, s := range fx.r.status() {
		if s.Name == "r1" {
			st = s
		}
	}
	if !slices.Equal(st.NFTEgressChains, []string{"netdev t out"}) {
		t.Errorf("status of r1: %+v", st)
	}
	fx.nfErr = errors.New("nfnetlink: permission denied")
	delete(fx.nf, "r0")
	fx.r.sync()
	if got := fx.dp.ifaces[2]; !got.NFIngress {
		t.Errorf("unreadable ruleset: r0 %+v, want the last known chains kept", got)
	}
	fx.nfErr = nil
	fx.r.sync() // the periodic resync reads them too
	if got := fx.dp.ifaces[2]; got.NFIngress {
		t.Errorf("chain gone: r0 %+v", got)
	}
}

// TestHolds: IPsec policies hold every packet back for the kernel, an
// nftables postrouting chain after the verdict hook holds offload mode's;
// each is in the datapath from the start, follows the kernel both ways,
// and state that cannot be read keeps the last known hold.
func TestHolds(t *testing.T) {
	// An adopted datapath may still hold what no longer applies: the first
	// converge writes the hold even when there is none.
	fx := newFixture(t, ifc("r0", config.ModeOffload, config.AttachAuto))
	fx.dp.hold = datapath.Hold{All: "xfrm", AllWhy: "left by the previous daemon"}
	if err := fx.r.start(); err != nil {
		t.Fatal(err)
	}
	if fx.dp.hold != (datapath.Hold{}) || fx.dp.holdWrites != 1 {
		t.Fatalf("start over an adopted hold: %+v after %d writes", fx.dp.hold, fx.dp.holdWrites)
	}
	fx.r.sync()
	if fx.dp.holdWrites != 1 {
		t.Errorf("an unchanged hold was written again (%d writes)", fx.dp.holdWrites)
	}

	// ... but kept while the state that decides it cannot be read: fail
	// closed, IPsec may still want the kernel.
	fx = newFixture(t, ifc("r0", config.ModeOffload, config.AttachAuto))
	fx.dp.hold = datapath.Hold{All: "xfrm", AllWhy: "left by the previous daemon"}
	fx.holdErr = errors.New("netlink: permission denied")
	if err := fx.r.start(); err != nil {
		t.Fatal(err)
	}
	if fx.dp.hold.All != "xfrm" {
		t.Fatalf("adopted hold with unreadable state: %+v, want it kept", fx.dp.hold)
	}

	fx = newFixture(t, ifc("r0", config.ModeOffload, config.AttachAuto), ifc("r1", config.ModeRoute, config.AttachAuto))
	fx.xfrm = "2 IPsec (xfrm) policies"
	if err := fx.r.start(); err != nil {
		t.Fatal(err)
	}
	if h := fx.dp.hold; h.All != "xfrm" || h.AllWhy != fx.xfrm || h.Offload != "" {
		t.Fatalf("start with IPsec policies: hold %+v", h)
	}
	fx.late = []string{"inet t late priority 2147483647"}
	fx.r.sync()
	if h := fx.dp.hold; h.All != "xfrm" || h.Offload != "nf_chain_order" || !strings.Contains(h.OffloadWhy, fx.late[0]) {
		t.Fatalf("a late chain too: hold %+v", h)
	}
	fx.holdErr = errors.New("netlink: permission denied")
	fx.xfrm, fx.late = "", nil
	fx.r.sync()
	if h := fx.dp.hold; h.All != "xfrm" || h.Offload != "nf_chain_order" {
		t.Fatalf("unreadable: hold %+v, want the last known kept", h)
	}
	fx.holdErr = nil
	fx.r.sync()
	if h := fx.dp.hold; h != (datapath.Hold{}) {
		t.Fatalf("policies and chain gone: hold %+v", h)
	}
}

// TestIPv6MTUPoll: the kernel announces no change of an interface's IPv6
// MTU; the poll re-routes cached flows when one changed, and only then.
func TestIPv6MTUPoll(t *testing.T) {
	fx := newFixture(t, ifc("r0", config.ModeOffload, config.AttachAuto), ifc("r1", config.ModeOffload, config.AttachAuto))
	fx.mtu6["r0"], fx.mtu6["r1"] = 1500, 1500
	if err := fx.r.start(); err != nil {
		t.Fatal(err)
	}
	before := fx.dp.invalidations
	fx.r.pollIPv6MTUs()
	if fx.dp.invalidations != before {
		t.Errorf("unchanged MTUs re-routed flows (%d invalidations)", fx.dp.invalidations-before)
	}
	fx.mtu6["r1"] = 1280
	fx.r.pollIPv6MTUs()
	if fx.dp.invalidations != before+1 {
		t.Errorf("r1's IPv6 MTU 1500 -> 1280: %d invalidations, want 1", fx.dp.invalidations-before)
	}
	fx.r.pollIPv6MTUs()
	if fx.dp.invalidations != before+1 {
		t.Errorf("second poll without change: %d invalidations, want 1", fx.dp.invalidations-before)
	}
}

// TestReloadThenResync: what a reload changed stays through later resyncs
// (they converge towards the running config, not the one they started
// with):
// an interface enabled while absent is attached in its new mode when it
// appears; a disabled one stays detached; actions say what happened.
func TestReloadThenResync(t *testing.T) {
	fx := newFixture(t, ifc("r0", config.ModeRoute, config.AttachAuto), ifc("r1", config.ModeOff, config.AttachAuto))
	if err := fx.r.start(); err != nil {
		t.Fatal(err)
	}
	delete(fx.links, "r1")
	actions, err := fx.r.apply([]config.Interface{ifc("r0", config.ModeOff, config.AttachAuto), ifc("r1", config.ModeOffload, config.AttachTC)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(actions, "; "), "disable r0; enable r1 (offload, attach tc; not present now)"; got != want {
		t.Errorf("actions %q, want %q", got, want)
	}
	fx.addLink("r1", 9, veth)
	fx.r.sync()
	fx.r.sync()
	if r1 := fx.iface(t, "r1"); r1.state != api.StateAttached || fmt.Sprint(fx.dp.hooks(9)) != "[tc]" || fx.dp.ifaces[9].Mode != datapath.ModeOffload {
		t.Errorf("r1 after it appeared: state %s, hooks %v, datapath %+v", r1.state, fx.dp.hooks(9), fx.dp.ifaces[9])
	}
	if r0 := fx.iface(t, "r0"); r0.state != api.StateOff || len(fx.dp.hooks(2)) != 0 {
		t.Errorf("r0 after resyncs: state %s, hooks %v", r0.state, fx.dp.hooks(2))
	}
	// A mode change on a present interface rewrites it in place.
	link := fx.iface(t, "r1").link
	if _, err := fx.r.apply([]config.Interface{ifc("r0", config.ModeOff, config.AttachAuto), ifc("r1", config.ModeRoute, config.AttachTC)}); err != nil {
		t.Fatal(err)
	}
	if fx.dp.ifaces[9].Mode != datapath.ModeRoute || fx.iface(t, "r1").link != link {
		t.Errorf("r1 mode change: datapath %+v, relinked %v", fx.dp.ifaces[9], fx.iface(t, "r1").link != link)
	}
}

// TestGROBehindXDP: native XDP in offload mode gets a TC program behind it
// for bulk TCP (the datapath flag set before it attaches); route mode, TC
// and a move away from XDP have none (the flag cleared after it leaves); a
// refused attach leaves XDP alone, flag cleared.
func TestGROBehindXDP(t *testing.T) {
	fx := newFixture(t, ifc("r0", config.ModeOffload, config.AttachAuto), ifc("r1", config.ModeRoute, config.AttachAuto))
	if err := fx.r.start(); err != nil {
		t.Fatal(err)
	}
	if hs := fmt.Sprint(fx.dp.hooks(2)); hs != "[xdp tc-gro]" || !fx.dp.ifaces[2].GROTC {
		t.Errorf("offload on xdp: hooks %s, flag %v", hs, fx.dp.ifaces[2].GROTC)
	}
	if hs := fmt.Sprint(fx.dp.hooks(3)); hs != "[xdp]" || fx.dp.ifaces[3].GROTC {
		t.Errorf("route mode on xdp: hooks %s, flag %v", hs, fx.dp.ifaces[3].GROTC)
	}
	if st := fx.r.status(); !strings.Contains(st[0].AttachReason, "tc behind it") {
		t.Errorf("status reason %q", st[0].AttachReason)
	}
	// r0's peer starts sending partial checksums: r0 moves to TC alone.
	fx.peers["r0"] = peerAnswer{p: vethpeer.Peer{Name: "g0", PartialChecksums: true}}
	fx.r.sync()
	if hs := fmt.Sprint(fx.dp.hooks(2)); hs != "[tc]" || fx.dp.ifaces[2].GROTC {
		t.Errorf("moved to tc: hooks %s, flag %v", hs, fx.dp.ifaces[2].GROTC)
	}
	// Back to XDP, but the kernel refuses the TC program behind it.
	delete(fx.peers, "r0")
	fx.dp.fail[datapath.HookTCGRO] = errors.New("tcx refused")
	fx.r.sync()
	if hs := fmt.Sprint(fx.dp.hooks(2)); hs != "[xdp]" || fx.dp.ifaces[2].GROTC {
		t.Errorf("tc behind refused: hooks %s, flag %v", hs, fx.dp.ifaces[2].GROTC)
	}
	delete(fx.dp.fail, datapath.HookTCGRO)
	fx.r.sync()
	if hs := fmt.Sprint(fx.dp.hooks(2)); hs != "[xdp tc-gro]" || !fx.dp.ifaces[2].GROTC {
		t.Errorf("retried: hooks %s, flag %v", hs, fx.dp.ifaces[2].GROTC)
	}
	// GRO turned off on r0: the TC program behind XDP only costs then.
	fx.groOff["r0"] = true
	fx.r.sync()
	if hs := fmt.Sprint(fx.dp.hooks(2)); hs != "[xdp]" || fx.dp.ifaces[2].GROTC {
		t.Errorf("gro off: hooks %s, flag %v", hs, fx.dp.ifaces[2].GROTC)
	}
	if st := fx.r.status(); !strings.Contains(st[0].AttachReason, "GRO is off") {
		t.Errorf("status reason with gro off: %q", st[0].AttachReason)
	}
	delete(fx.groOff, "r0")
	fx.r.sync()
	// The interface goes away: both detached.
	delete(fx.links, "r0")
	fx.r.sync()
	if hs := fx.dp.hooks(2); len(hs) != 0 {
		t.Errorf("gone: hooks %v", hs)
	}
}

// TestAutoFollowsXDPSending: a veth whose peer sends from its stack is on
// TC; once the peer's count of frames sent by XDP grows, the peer poll
// reports a change and the next converge moves it to native XDP; it stays
// through a pause shorter than xdpFedHold and goes back to TC after a
// longer one. A change of the peer's checksum offload is seen by the same
// poll. Counts that cannot be read, or were read too long ago (the
// interface was on tc meanwhile), are no baseline: no move. With GRO off on
// the veth, XDP stays after the frames stop (on TC the veth would refuse
// the peer's next XDP frames).
func TestAutoFollowsXDPSending(t *testing.T) {
	fx := newFixture(t, ifc("r0", config.ModeOffload, config.AttachAuto), ifc("r1", config.ModeOffload, config.AttachAuto))
	clock := time.Unix(1000, 0)
	fx.r.now = func() time.Time { return clock }
	fx.peers["r0"] = peerAnswer{p: vethpeer.Peer{Name: "g0"}}
	if err := fx.r.start(); err != nil {
		t.Fatal(err)
	}
	ic := fx.iface(t, "r0")
	check := func(when string, changed bool, want datapath.Hook, why string) {
		t.Helper()
		if got := fx.r.peersChanged(); got != changed {
			t.Errorf("%s: peersChanged %v, want %v", when, got, changed)
		}
		fx.r.sync()
		if ic.hook != want || !strings.Contains(ic.why, why) {
			t.Errorf("%s: %s (%s), want %s (%s)", when, ic.hook, ic.why, want, why)
		}
	}
	set := func(f func(a *peerAnswer)) {
		a := fx.peers["r0"]
		f(&a)
		fx.peers["r0"] = a
	}
	check("stack only", false, datapath.HookTC, "g0 sends from its stack")
	set(func(a *peerAnswer) { a.xdp = true })
	clock = clock.Add(time.Second)
	check("peer sends by XDP", true, datapath.HookXDP, "g0 sends by XDP")
	set(func(a *peerAnswer) { a.xdp = false })
	clock = clock.Add(xdpFedHold / 2)
	check("a short pause", false, datapath.HookXDP, "g0 sends by XDP")
	clock = clock.Add(xdpFedHold)
	check("a long pause", true, datapath.HookTC, "g0 sends from its stack")
	set(func(a *peerAnswer) { a.p.PartialChecksums = true })
	check("tx checksum on", true, datapath.HookTC, "partial checksums")
	set(func(a *peerAnswer) { a.p.PartialChecksums = false })
	check("tx checksum off", true, datapath.HookTC, "g0 sends from its stack")

	// Statistics that cannot be read, then can: no growth seen.
	set(func(a *peerAnswer) { a.noStats = true })
	clock = clock.Add(time.Second)
	check("statistics unreadable", false, datapath.HookTC, "g0 sends from its stack")
	set(func(a *peerAnswer) { a.noStats = false; a.p.XDPSent += 1000 })
	clock = clock.Add(time.Second)
	check("statistics readable again", false, datapath.HookTC, "g0 sends from its stack")
	// A count read long ago is no baseline either.
	set(func(a *peerAnswer) { a.p.XDPSent += 1000 })
	clock = clock.Add(time.Hour)
	check("after a long gap", false, datapath.HookTC, "g0 sends from its stack")

	// r0 not a veth peer: the poll does not read it.
	reads := fx.peers["r0"].reads
	fx.iface(t, "r1").peerErr = vethpeer.ErrNotVeth
	fx.r.peersChanged()
	if n := fx.peers["r0"].reads; n != reads+1 {
		t.Errorf("one poll read r0's peer %d times", n-reads)
	}
	if fx.iface(t, "r1").peerErr != vethpeer.ErrNotVeth {
		t.Errorf("r1 (no veth) peer error %v", fx.iface(t, "r1").peerErr)
	}
	if hs := fx.dp.hooks(3); fmt.Sprint(hs) != "[xdp tc-gro]" {
		t.Errorf("r1 (no veth: a NIC with native XDP) hooks %v", hs)
	}

	// GRO off on r0: on XDP by its peer's frames, it stays there when they
	// stop.
	fx.groOff["r0"] = true
	set(func(a *peerAnswer) { a.xdp = true })
	clock = clock.Add(time.Second)
	check("peer sends by XDP, GRO off", true, datapath.HookXDP, "g0 sends by XDP")
	set(func(a *peerAnswer) { a.xdp = false })
	clock = clock.Add(2 * xdpFedHold)
	check("a long pause, GRO off", false, datapath.HookXDP, "g0 sends by XDP")
}

// TestDetachEvents: the detach event says why: an interface turned off is
// "off", one a reload took out of the config "removed from the config"
// (not "missing", which means configured and absent).
func TestDetachEvents(t *testing.T) {
	fx := newFixture(t, ifc("r0", config.ModeOffload, config.AttachTC), ifc("r1", config.ModeOffload, config.AttachTC),
		ifc("r2", config.ModeOffload, config.AttachTC))
	if err := fx.r.start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs := fx.r.events.Subscribe(ctx)
	if _, err := fx.r.apply([]config.Interface{ifc("r0", config.ModeOff, config.AttachTC), ifc("r2", config.ModeOffload, config.AttachTC)}); err != nil {
		t.Fatal(err)
	}
	delete(fx.links, "r2")
	fx.r.sync()
	got := map[string]string{}
	for len(got) < 3 {
		select {
		case e := <-evs:
			if e.Kind == api.EventDetach {
				got[e.Interface] = e.Detail
			}
		default:
			t.Fatalf("detach events %v, want three", got)
		}
	}
	if want := map[string]string{"r0": "off", "r1": "removed from the config", "r2": "missing"}; !maps.Equal(got, want) {
		t.Errorf("detach events %v, want %v", got, want)
	}
}
