package dashboard

import (
	"context"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fastpath-router/fastpath/internal/api"
)

// tab is one headless Chromium tab (Debian's chromium package; make test
// installs it).
type tab struct {
	t   *testing.T
	ctx context.Context
}

// newTab starts Chromium, or skips the test when there is none.
func newTab(t *testing.T, timeout time.Duration) *tab {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (make test installs it through scripts/deps.sh): ", err)
	}
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.WindowSize(1400, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() { cancelTimeout(); cancelTab(); cancelAlloc() })
	return &tab{t: t, ctx: ctx}
}

func (b *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// waitFor polls the JavaScript expression until it is true.
func (b *tab) waitFor(expr string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](expr)); err != nil {
		b.t.Fatalf("wait for %s: %v", expr, err)
	}
}

func evalJS[T any](b *tab, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// TestBrowserShowsHostileTextAsText drives the page with a backend whose
// interface names, flow fields and events carry markup: the page must show
// it as text, run none of it, and break no rule of its own CSP.
func TestBrowserShowsHostileTextAsText(t *testing.T) {
	b := newTab(t, 40*time.Second)
	f := newFake()
	f.events <- api.Event{Time: time.Now(), Kind: api.EventAttach, Interface: hostile, Detail: "before the page: " + hostile}
	base := serve(t, f, Options{SampleEvery: 200 * time.Millisecond})

	b.do("open the page", chromedp.Navigate(base+"/"))
	evalJS[int](b, `window.__csp = 0; document.addEventListener("securitypolicyviolation", () => window.__csp++); 0`)
	b.waitFor(`document.querySelectorAll("#flow-rows tr[data-proto]").length === 3`)
	f.events <- api.Event{Time: time.Now(), Kind: api.EventReload, Detail: "live: " + hostile}
	b.waitFor(`document.querySelectorAll("#event-list li").length >= 2 && Number(document.body.dataset.ticks) >= 3`)

	if n := evalJS[int](b, `(window.__pwned ? 1 : 0) + document.querySelectorAll("img, [onerror]").length + window.__csp`); n != 0 {
		t.Errorf("markup from the daemon ran or broke the CSP: %d (pwned + img/onerror elements + CSP violations)", n)
	}
	ifnames := evalJS[[]string](b, `[...document.querySelectorAll("#iface-rows td.name")].map(e => e.textContent)`)
	ingress := evalJS[[]string](b, `[...document.querySelectorAll("#flow-rows td.ingress")].map(e => e.textContent)`)
	if !slices.Contains(ifnames, hostile) || !slices.Contains(ingress, hostile) {
		t.Errorf("interface names %q, flow ingresses %q: want %q shown as text", ifnames, ingress, hostile)
	}
	events := evalJS[[]string](b, `[...document.querySelectorAll("#event-list .ev-text")].map(e => e.textContent)`)
	want := []string{"live: " + hostile, hostile + "  before the page: " + hostile} // newest first
	if !slices.Equal(events, want) {
		t.Errorf("events %q, want %q", events, want)
	}
	if !evalJS[bool](b, `document.getElementById("write").hidden && document.getElementById("guard-write").hidden && document.getElementById("write-token").hidden`) {
		t.Error("a write form shows on a read-only dashboard")
	}
	// The guard: its lists, drops and top sources, as the API gives them.
	b.waitFor(`document.querySelectorAll("#guard-deny tr[data-prefix]").length === 2 && document.querySelector("#guard-drops tr[data-reason=deny]") !== null`)
	if got := evalJS[string](b, `document.querySelector("#guard-top td.source").textContent + " " + document.querySelector("#guard-deny h3").textContent`); got != "198.18.9.7/32 deny list: 2 entries" {
		t.Errorf("guard section shows %q", got)
	}
	if gen := evalJS[string](b, `document.getElementById("d-route-gen").textContent`); gen != "7" {
		t.Errorf("route generation shown %q, want 7", gen)
	}

	// The chart moves: more points, and the forwarded rate drawn is the
	// fake's 100 packets per reading.
	p1 := evalJS[int](b, `Number(document.getElementById("chart-pps").dataset.points)`)
	b.waitFor(`Number(document.getElementById("chart-pps").dataset.points) > ` + strconv.Itoa(p1))
	if last := evalJS[[]float64](b, `JSON.parse(document.getElementById("chart-pps").dataset.last)`); len(last) != 2 || last[0] <= last[1] || last[1] <= 0 {
		t.Errorf("chart's last values %v, want forwarded > passed > 0", last)
	}

	// The filter reaches the server and narrows the table.
	b.do("type a filter", chromedp.SendKeys(`#flow-filter`, "udp"))
	b.waitFor(`(() => { const r = [...document.querySelectorAll("#flow-rows tr[data-proto]")]; return r.length === 1 && r[0].dataset.proto === "udp"; })()`)
	// A filter the API would refuse is refused here too, in words.
	evalJS[int](b, `(() => { const i = document.getElementById("flow-filter"); i.value = "dport=x"; i.dispatchEvent(new Event("input")); return 0; })()`)
	b.waitFor(`document.getElementById("flow-error").textContent === 'filter: invalid dport "x": give a port number, 1 to 65535' && document.querySelectorAll("#flow-rows tr[data-proto]").length === 0`)
}

// TestBrowserReload: with write on, the page's reload button sends the
// token it is given, and shows the daemon's answer (refusal included).
func TestBrowserReload(t *testing.T) {
	b := newTab(t, 30*time.Second)
	f := newFake()
	f.status.Dashboard = &api.DashboardStatus{URL: "http://127.0.0.1:9470/", Loopback: true, Write: true}
	base := serve(t, f, Options{Write: true, Token: "0123456789abcdef", SampleEvery: 200 * time.Millisecond})

	b.do("open the page", chromedp.Navigate(base+"/"))
	b.waitFor(`!document.getElementById("write").hidden`)
	b.do("reload with a wrong token", chromedp.SendKeys(`#token`, "wrong"), chromedp.Click(`#reload`))
	b.waitFor(`document.getElementById("reload-result").textContent.startsWith("failed: missing or wrong token")`)
	if n := f.reloads.Load(); n != 0 {
		t.Fatalf("%d reloads with a wrong token", n)
	}
	b.do("reload with the token", chromedp.SetValue(`#token`, "0123456789abcdef"), chromedp.Click(`#reload`))
	b.waitFor(`document.getElementById("reload-result").textContent === "done: attach r2 (offload, xdp)"`)
	if n := f.reloads.Load(); n != 1 {
		t.Errorf("%d reloads, want 1", n)
	}
	b.do("add to the deny list", chromedp.SendKeys(`#guard-prefix`, "198.18.9.0/24"), chromedp.Click(`#guard-add`))
	b.waitFor(`document.getElementById("guard-result").textContent === "added to deny: 198.18.9.0/24"`)
	if got := f.guardChanges(); !slices.Equal(got, []string{"true deny [198.18.9.0/24]"}) {
		t.Errorf("guard changes %q", got)
	}
}
