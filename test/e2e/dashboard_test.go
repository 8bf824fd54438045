package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/labd"
	"github.com/fastpath-router/fastpath/internal/traffic"
)

// screenshotsEnv, when set (to anything), makes TestDashboard write its
// screenshots into the module's docs/ (docs/dashboard.md shows them).
const screenshotsEnv = "FASTPATH_DASHBOARD_SCREENSHOTS"

// Interface names an attacker could give links: valid Linux names, and
// markup. The test makes them a veth pair in the router.
const (
	hostileIface  = "<i>hx"
	hostileIface2 = "<b>y"
)

// Traffic while the page watches: ~10 s of UDP at most, bounded in count.
const (
	dashUDPCount = 20000
	dashUDPGap   = 500 * time.Microsecond
)

// page is one headless Chromium tab (Debian's chromium; `make test`
// installs it through scripts/deps.sh).
type page struct {
	t   *testing.T
	ctx context.Context
}

func newPage(t *testing.T, timeout time.Duration) *page {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (make test installs it through scripts/deps.sh test): ", err)
	}
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.WindowSize(1400, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() { cancelTimeout(); cancelTab(); cancelAlloc() })
	return &page{t: t, ctx: ctx}
}

func (p *page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, steps...); err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
}

// waitFor polls the JavaScript expression until it is true.
func (p *page) waitFor(expr string) {
	p.t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Poll[bool](expr)); err != nil {
		p.t.Fatalf("wait for %s: %v", expr, err)
	}
}

func jsEval[T any](p *page, expr string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// shot saves a screenshot: into docs/ with screenshotsEnv, else the test's
// temporary directory (so the code runs either way).
func (p *page) shot(name string, full bool) {
	p.t.Helper()
	var png []byte
	var err error
	if full {
		png, err = chromedp.Run(p.ctx, chromedp.FullScreenshot(100)) // 100: PNG
	} else {
		png, err = chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	}
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := p.t.TempDir()
	if os.Getenv(screenshotsEnv) != "" {
		root, err := moduleRoot()
		if err != nil {
			p.t.Fatal(err)
		}
		dir = filepath.Join(root, "docs")
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// ifaceRow is what the page shows of one interface.
type ifaceRow struct {
	Name, State, Mode, Hook, Reason, FwdPPS, FwdPackets string
}

const ifaceRowsJS = `[...document.querySelectorAll("#iface-rows tr[data-name]")].map(r => ({
	Name: r.querySelector(".name").textContent, State: r.querySelector(".state").textContent,
	Mode: r.querySelector(".mode").textContent, Hook: r.querySelector(".hook").textContent,
	Reason: r.querySelector(".reason").textContent, FwdPPS: r.querySelector(".fwd-pps").textContent,
	FwdPackets: r.querySelector(".fwd-packets").textContent}))`

// TestDashboard drives the dashboard of a real daemon in the lab with
// headless Chromium while UDP runs through it: every section shows what
// the API (and so the CLI) says, the chart moves with the traffic, and
// interface names that are markup stay text.
func TestDashboard(t *testing.T) {
	l := newLab(t)
	p := newPage(t, 90*time.Second)
	ctx := testContext(t)
	if err := l.Masquerade(ctx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	socket := filepath.Join(dir, "api.sock")
	if out, err := exec.Command("ip", "-n", l.Rtr, "link", "add", hostileIface, "type", "veth", "peer", "name", hostileIface2).CombinedOutput(); err != nil {
		t.Fatalf("add veth %s: %v: %s", hostileIface, err, out)
	}
	ifaces := []labd.Interface{{Name: l.RtrIn, Mode: "offload"}, {Name: l.RtrOut, Mode: "offload"}, {Name: hostileIface, Mode: "off"}}
	cfg := filepath.Join(dir, labd.ConfigFile)
	const inNS = "127.0.0.1:9469"
	writeCfg := func(ifaces ...labd.Interface) {
		// The guard denies gen's IPv6 address: pings from it show as drops.
		doc := labd.ConfigYAML(socket, ifaces...) + "dashboard:\n  listen: " + inNS + "\n" +
			fmt.Sprintf("guard:\n  deny: [%q]\n", l.GenAddr6.String()+"/128")
		if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg(ifaces...)
	d := startDaemonWithConfig(t, l.Rtr, cfg, socket)
	st, err := d.p.WaitStatus(ctx, d.c, readyTimeout, func(st *api.Status) (bool, string) {
		for _, name := range []string{l.RtrIn, l.RtrOut} {
			if i, ok := interfaceStatus(st, name); !ok || i.State != api.StateAttached {
				return false, name + " not attached"
			}
		}
		return true, ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Dashboard == nil || st.Dashboard.URL != "http://"+inNS+"/" || !st.Dashboard.Loopback || st.Dashboard.Warning != "" {
		t.Errorf("status.dashboard = %+v, want %s on loopback without a warning", st.Dashboard, inNS)
	}

	// The daemon serves on loopback in the router; the browser reaches it
	// through a forwarder on this host's loopback, as `demo --dashboard`.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fwdDone := make(chan error, 1)
	fctx, stopFwd := context.WithCancel(context.Background())
	go func() { fwdDone <- labd.Forward(fctx, ln, l.Rtr, inNS) }()
	t.Cleanup(func() { stopFwd(); <-fwdDone })

	p.do("open the dashboard", chromedp.Navigate("http://"+ln.Addr().String()+"/"))
	p.waitFor(`document.getElementById("conn").textContent === "live" && Number(document.body.dataset.ticks) >= 2`)

	// A reload adds another hostile name: it shows in the events too.
	writeCfg(append(ifaces, labd.Interface{Name: hostileIface2, Mode: "off"})...)
	rctx, cancel := context.WithTimeout(ctx, callTimeout)
	if _, err := d.c.Reload(rctx); err != nil {
		t.Fatalf("reload: %v", err)
	}
	cancel()

	// Interfaces: what status says, names as text.
	st = d.status(t)
	p.waitFor(fmt.Sprintf(`document.querySelectorAll("#iface-rows tr[data-name]").length === %d`, len(st.Interfaces)))
	rows := jsEval[[]ifaceRow](p, ifaceRowsJS)
	for _, i := range st.Interfaces {
		k := slices.IndexFunc(rows, func(r ifaceRow) bool { return r.Name == i.Name })
		if k < 0 {
			t.Errorf("interface %q not shown; rows %+v", i.Name, rows)
			continue
		}
		r := rows[k]
		if r.State != i.State || r.Mode != i.Mode || !strings.HasPrefix(r.Hook, cmpOr(i.AttachedAs, "-")) || !strings.Contains(r.Reason, i.AttachReason) {
			t.Errorf("interface %s shown as %+v; status says %+v", i.Name, r, i)
		}
	}
	if n := jsEval[int](p, `document.querySelectorAll("main i, main b, main img").length + (window.__pwned ? 1 : 0)`); n != 0 {
		t.Errorf("%d elements made from interface names", n)
	}

	// Traffic: the rates, the chart and the flow table follow it.
	type udpDone struct {
		r   traffic.UDPResult
		err error
	}
	udp := make(chan udpDone, 1)
	go func() {
		r, err := traffic.UDPStream(ctx, l.Gen, l.Sink, netip.AddrPortFrom(l.SinkAddr4, 0), dashUDPCount, fwdUDPSize, dashUDPGap)
		udp <- udpDone{r, err}
	}()
	p.waitFor(fmt.Sprintf(`(() => { const c = document.querySelector('#iface-rows tr[data-name=%q] .fwd-pps'); return c && c.textContent !== "0" && c.textContent !== "-"; })()`, l.RtrIn))
	p.waitFor(fmt.Sprintf(`[...document.querySelectorAll("#flow-rows tr[data-proto=udp]")].some(r => r.dataset.src.startsWith(%q))`, l.GenAddr4.String()+":"))
	p.waitFor(`JSON.parse(document.getElementById("chart-pps").dataset.last)[0] > 0`)
	chart1 := jsEval[string](p, `document.getElementById("chart-pps").toDataURL()`)
	ticks := jsEval[int](p, `Number(document.body.dataset.ticks)`)
	p.waitFor(fmt.Sprintf(`Number(document.body.dataset.ticks) >= %d && Number(document.getElementById("chart-pps").dataset.points) >= 6`, ticks+2))
	if chart2 := jsEval[string](p, `document.getElementById("chart-pps").toDataURL()`); chart2 == chart1 {
		t.Error("the packets/s chart did not change while traffic ran")
	}

	// The flow shown is one the API lists, NAT included.
	shown := jsEval[map[string]string](p, fmt.Sprintf(`(() => { const r = [...document.querySelectorAll("#flow-rows tr[data-proto=udp]")].find(r => r.dataset.src.startsWith(%q));
		return {src: r.querySelector(".in-src").textContent, dst: r.querySelector(".in-dst").textContent, nat: r.querySelector(".nat").textContent,
			osrc: r.querySelector(".out-src").textContent, ingress: r.querySelector(".ingress").textContent}; })()`, l.GenAddr4.String()+":"))
	fctx2, cancel2 := context.WithTimeout(ctx, callTimeout)
	flows, err := d.c.Flows(fctx2)
	cancel2()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(flows.Flows, func(f api.Flow) bool {
		return f.In.Src.String() == shown["src"] && f.In.Dst.String() == shown["dst"] && f.NAT == shown["nat"] &&
			f.Out.Src.String() == shown["osrc"] && f.Ingress == shown["ingress"]
	}) {
		t.Errorf("flow shown %v is not in the API's flows %+v", shown, flows.Flows)
	}
	if shown["nat"] != "snat" || shown["ingress"] != l.RtrIn {
		t.Errorf("flow shown %v, want snat arriving on %s", shown, l.RtrIn)
	}
	// A few more seconds of chart for the screenshots.
	p.waitFor(`Number(document.getElementById("chart-pps").dataset.points) >= 15`)
	p.shot("dashboard.png", false)

	res := <-udp
	if res.err != nil {
		t.Fatalf("udp: %v", res.err)
	}

	// Quiet again: the counters shown equal the API's. The page shows the
	// last tick, so poll until both agree (they must, once it is quiet).
	var last string
	pollUntil(t, 15*time.Second, "page counters equal the API's", func() error {
		stats := d.counters(t, l.Rtr).stats
		rows := jsEval[[]ifaceRow](p, ifaceRowsJS)
		for _, s := range stats.Interfaces {
			k := slices.IndexFunc(rows, func(r ifaceRow) bool { return r.Name == s.Name })
			if k < 0 || rows[k].FwdPackets != strconv.FormatUint(s.Forwarded.Packets, 10) {
				last = fmt.Sprintf("%s: API %d forwarded, page %+v", s.Name, s.Forwarded.Packets, rows)
				return fmt.Errorf("%s", last)
			}
		}
		return nil
	})

	// Guard: pings from the denied address are dropped; the section shows
	// the API's list, drop count and top source.
	if p6, _ := traffic.Ping(ctx, l, l.Gen, l.SinkAddr6.String(), 3, "-i", "0.05", "-W", "1"); p6.Received != 0 {
		t.Fatalf("ping from the denied %s: %d replies, want none", l.GenAddr6, p6.Received)
	}
	pollUntil(t, 10*time.Second, "guard section equals the API's guard", func() error {
		c, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		g, err := d.c.Guard(c, api.GuardQuery{Top: 10, Entries: true})
		if err != nil {
			return err
		}
		var deny uint64
		for _, i := range g.Interfaces {
			if i.Name == l.RtrIn {
				deny = i.Dropped["deny"]
			}
		}
		if deny == 0 || len(g.Deny) != 1 || len(g.Top) == 0 {
			return fmt.Errorf("API guard: %d deny drops on %s, deny list %+v, top %+v", deny, l.RtrIn, g.Deny, g.Top)
		}
		shown := jsEval[map[string]string](p, fmt.Sprintf(`(() => { const q = (s) => (document.querySelector(s) || {}).textContent || "";
			return {drops: q('#guard-drops tr[data-name=%q][data-reason=deny] td.count'), prefix: q("#guard-deny td.prefix"), top: q("#guard-top td.source")}; })()`, l.RtrIn))
		want := map[string]string{"drops": strconv.FormatUint(deny, 10), "prefix": g.Deny[0].Prefix, "top": g.Top[0].Source}
		for k, v := range want {
			if shown[k] != v {
				return fmt.Errorf("guard %s shown %q, API %q", k, shown[k], v)
			}
		}
		return nil
	})

	// Daemon: the facts status gives.
	st = d.status(t)
	pollUntil(t, 5*time.Second, "daemon section matches status", func() error {
		got := jsEval[map[string]string](p, `Object.fromEntries(["d-version", "d-pid", "d-route-gen", "d-ruleset-gen", "d-watchdog", "d-dashboard"].map(id => [id, (document.getElementById(id) || {}).textContent || ""]))`)
		want := map[string]string{"d-version": st.Version, "d-pid": strconv.Itoa(st.PID),
			"d-route-gen":   strconv.FormatUint(uint64(st.Datapath.RouteGeneration), 10),
			"d-ruleset-gen": strconv.FormatUint(uint64(st.Datapath.RulesetGeneration), 10)}
		for k, v := range want {
			if got[k] != v {
				return fmt.Errorf("%s shown %q, status %q (all %v)", k, got[k], v, got)
			}
		}
		if !strings.HasPrefix(got["d-watchdog"], st.Datapath.Watchdog) || !strings.HasPrefix(got["d-dashboard"], st.Dashboard.URL) {
			return fmt.Errorf("watchdog/dashboard shown %v, status %+v %+v", got, st.Datapath, st.Dashboard)
		}
		return nil
	})

	// Events: the flow the datapath took on, and the reload naming the
	// hostile interface, as text.
	events := jsEval[[]string](p, `[...document.querySelectorAll("#event-list li")].map(e => e.dataset.kind + " " + e.querySelector(".ev-text").textContent)`)
	if !slices.ContainsFunc(events, func(e string) bool {
		return strings.HasPrefix(e, api.EventFlowAdded+" ") && strings.Contains(e, l.GenAddr4.String())
	}) {
		t.Errorf("no flow_added event for %s in %q", l.GenAddr4, events)
	}
	if !slices.ContainsFunc(events, func(e string) bool {
		return strings.HasPrefix(e, api.EventReload+" ") && strings.Contains(e, hostileIface2)
	}) {
		t.Errorf("no reload event naming %q in %q", hostileIface2, events)
	}
	if n := jsEval[int](p, `document.querySelectorAll("main i, main b, main img").length + (window.__pwned ? 1 : 0)`); n != 0 {
		t.Errorf("%d elements made from daemon text", n)
	}
	p.shot("dashboard-full.png", true)
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// TestDashboardWarnsOffLoopback: a dashboard on every address works, and
// the daemon says so: in its log, in the status API and in fastpath status.
func TestDashboardWarnsOffLoopback(t *testing.T) {
	l := newLab(t)
	ctx := testContext(t)
	dir := t.TempDir()
	socket := filepath.Join(dir, "api.sock")
	cfg := filepath.Join(dir, labd.ConfigFile)
	doc := labd.ConfigYAML(socket, routeIfaces(l, "auto")...) + "dashboard:\n  listen: \"[::]:9470\"\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemonWithConfig(t, l.Rtr, cfg, socket)
	st, err := d.p.WaitReady(ctx, d.c, readyTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if st.Dashboard == nil || st.Dashboard.Loopback || !strings.Contains(st.Dashboard.Warning, "reachable from other hosts") {
		t.Fatalf("status.dashboard = %+v, want a warning", st.Dashboard)
	}
	out, err := exec.CommandContext(ctx, requireBinary(t), "status", "--socket", socket).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "WARNING: "+st.Dashboard.Warning) {
		t.Errorf("fastpath status (%v) lacks the warning:\n%s", err, out)
	}
	pollUntil(t, 5*time.Second, "the daemon logs the warning", func() error {
		if !strings.Contains(d.p.Output(), "dashboard reachable from other hosts") {
			return fmt.Errorf("not in the output yet")
		}
		return nil
	})
	// Reachable on the router's own addresses, from gen.
	url := fmt.Sprintf("http://%s/api/v1/status", netip.AddrPortFrom(l.RtrInAddr4, 9470))
	out, err = l.Command(ctx, l.Gen, "curl", "-sS", "-m", "5", url).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"dashboard"`) {
		t.Errorf("curl %s from %s: %v\n%s", url, l.Gen, err, out)
	}
}
