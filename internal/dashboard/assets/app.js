// fastpath dashboard. Plain JavaScript, no library, no build step.
//
// Everything the daemon sends (interface names, flow fields, event text) may
// come from an attacker: it only ever reaches the page as text nodes
// (textContent, createTextNode) or attribute values set with
// setAttribute, never as markup: nothing here parses HTML (a test checks).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  // el builds an element; string and number children become text nodes.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // ---- formatting ----
  function si(v, unit) {
    if (!isFinite(v)) return "-";
    const steps = [[1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (const [f, p] of steps) {
      if (Math.abs(v) >= f) return (v / f).toFixed(v / f >= 100 ? 0 : 1) + " " + p + unit;
    }
    return (v >= 10 || v === 0 ? v.toFixed(0) : v.toFixed(1)) + (unit ? " " + unit : "");
  }
  // A flow tuple's ends as address:port ([v6]:port), as the CLI prints them.
  const hostPort = (a, p) => (String(a).includes(":") ? "[" + a + "]" : String(a)) + ":" + p;
  const src = (t) => hostPort(t.src, t.sport);
  const dst = (t) => hostPort(t.dst, t.dport);
  const pps = (v) => si(v, "");
  const bps = (v) => si(v, "bit/s");
  function duration(sec) {
    sec = Math.max(0, Math.floor(sec));
    const d = Math.floor(sec / 86400), h = Math.floor(sec / 3600) % 24, m = Math.floor(sec / 60) % 60, s = sec % 60;
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + (d || h || m ? m + "m " : "") + s + "s";
  }

  // ---- state ----
  const state = {
    history: [],      // Samples, oldest first
    period: 1,
    status: null,
    stats: null,
    events: [],       // newest first
    filter: "",
    maxPoints: 300,
  };

  // ---- charts: a small line chart on a canvas ----
  const colors = { fwd: "#1f9d55", pass: "#d97706", reasons: ["#cf222e", "#8250df", "#0969da", "#bf8700", "#1a7f37", "#57606a"] };

  function drawChart(canvas, series, fmt) {
    const ctx = canvas.getContext("2d");
    const W = canvas.width, H = canvas.height, left = 64, bottom = 18, top = 8;
    ctx.clearRect(0, 0, W, H);
    ctx.font = "11px system-ui, sans-serif";
    let maxV = 0;
    for (const s of series) for (const v of s.values) maxV = Math.max(maxV, v);
    maxV = maxV > 0 ? maxV * 1.1 : 1;
    // The window grows with the history, from one minute to maxPoints.
    const n = Math.max(2, Math.min(state.maxPoints, Math.max(state.history.length, Math.round(60 / state.period))));
    const x = (i, len) => left + (W - left - 4) * (n - len + i) / (n - 1);
    const y = (v) => top + (H - top - bottom) * (1 - v / maxV);
    ctx.strokeStyle = "#d0d7de";
    ctx.fillStyle = "#57606a";
    ctx.lineWidth = 1;
    for (let g = 0; g <= 4; g++) {
      const v = maxV * g / 4, yy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(W, yy); ctx.stroke();
      ctx.fillText(fmt(v), 2, yy + 4);
    }
    const span = n * state.period;
    ctx.fillText("-" + (span >= 60 && span % 60 < 1 ? Math.round(span / 60) + " min" : duration(span)), left, H - 4);
    ctx.fillText("now", W - 26, H - 4);
    for (const s of series) {
      if (s.values.length < 2) continue;
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      s.values.forEach((v, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, x(i, s.values.length), y(v)));
      ctx.stroke();
    }
    // For tests and curious people: the newest values drawn.
    canvas.setAttribute("data-points", String(series.length ? series[0].values.length : 0));
    canvas.setAttribute("data-last", JSON.stringify(series.map((s) => s.values.length ? s.values[s.values.length - 1] : 0)));
  }

  function ifaceRate(sample, name) {
    const r = { fp: 0, fb: 0, pp: 0, pb: 0 };
    for (const i of sample.interfaces || []) {
      if (name && i.name !== name) continue;
      r.fp += i.forwarded.pps; r.fb += i.forwarded.bps; r.pp += i.passed.pps; r.pb += i.passed.bps;
    }
    return r;
  }

  function drawCharts() {
    const name = $("chart-iface").value;
    const rs = state.history.map((s) => ifaceRate(s, name));
    drawChart($("chart-pps"), [
      { color: colors.fwd, values: rs.map((r) => r.fp) },
      { color: colors.pass, values: rs.map((r) => r.pp) },
    ], pps);
    drawChart($("chart-bps"), [
      { color: colors.fwd, values: rs.map((r) => r.fb) },
      { color: colors.pass, values: rs.map((r) => r.pb) },
    ], bps);

    // Pass reasons: the six busiest over the window, summed over interfaces.
    const totals = new Map();
    const per = state.history.map((s) => {
      const m = new Map();
      for (const i of s.interfaces || []) {
        for (const [reason, v] of Object.entries(i.pass_reasons || {})) {
          m.set(reason, (m.get(reason) || 0) + v);
          totals.set(reason, (totals.get(reason) || 0) + v);
        }
      }
      return m;
    });
    const top = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, colors.reasons.length).map((e) => e[0]);
    const keys = $("reason-keys");
    keys.replaceChildren(...(top.length ? top.map((r, i) => el("span", { class: "key k" + i }, r))
      : ["no packets passed to the kernel in this window"]));
    drawChart($("chart-reasons"), top.map((r, i) => ({ color: colors.reasons[i], values: per.map((m) => m.get(r) || 0) })), pps);
  }

  // ---- sections ----
  function renderInterfaces() {
    const st = state.status, last = state.history[state.history.length - 1];
    if (!st) return;
    const counters = new Map((state.stats && state.stats.interfaces || []).map((i) => [i.name, i]));
    const rates = new Map((last && last.interfaces || []).map((i) => [i.name, i]));
    const rows = (st.interfaces || []).map((i) => {
      const c = counters.get(i.name), r = rates.get(i.name);
      const why = [];
      if (i.attach_reason) why.push(i.attach_reason);
      if (i.error) why.push("error: " + i.error);
      if ((i.nft_ingress_chains || []).length) why.push("arriving packets stay with the kernel: nftables ingress chains " + i.nft_ingress_chains.join(", "));
      if ((i.nft_egress_chains || []).length) why.push("no redirect leaves here: nftables egress chains " + i.nft_egress_chains.join(", "));
      if (i.state === "attached") why.push(i.xdp_target ? "XDP redirect target: yes" : "XDP redirect target: no");
      return el("tr", { "data-name": i.name },
        el("td", { class: "name" }, i.name),
        el("td", { class: "state state-" + i.state }, i.state),
        el("td", { class: "mode" }, i.mode),
        el("td", { class: "hook" }, (i.attached_as || "-") + " (" + i.attach + ")"),
        el("td", { class: "reason" }, why.join("; ") || "-"),
        el("td", { class: "num fwd-pps" }, r ? pps(r.forwarded.pps) : "-"),
        el("td", { class: "num fwd-bps" }, r ? bps(r.forwarded.bps) : "-"),
        el("td", { class: "num pass-pps" }, r ? pps(r.passed.pps) : "-"),
        el("td", { class: "num pass-bps" }, r ? bps(r.passed.bps) : "-"),
        el("td", { class: "num fwd-packets" }, c ? c.forwarded.packets : "-"),
        el("td", { class: "num pass-packets" }, c ? c.passed.packets : "-"));
    });
    $("iface-rows").replaceChildren(...rows);

    const sel = $("chart-iface"), names = (st.interfaces || []).map((i) => i.name);
    const have = [...sel.options].slice(1).map((o) => o.value);
    if (have.join("\n") !== names.join("\n")) {
      const cur = sel.value;
      sel.replaceChildren(el("option", { value: "" }, "all interfaces"), ...names.map((n) => el("option", { value: n }, n)));
      sel.value = names.includes(cur) ? cur : "";
    }
  }

  function renderReasons() {
    const last = state.history[state.history.length - 1];
    const rates = new Map();
    for (const i of last && last.interfaces || []) rates.set(i.name, i.pass_reasons || {});
    const rows = [];
    for (const i of state.stats && state.stats.interfaces || []) {
      for (const [reason, n] of Object.entries(i.pass_reasons || {}).sort((a, b) => b[1] - a[1])) {
        if (!n) continue;
        const r = (rates.get(i.name) || {})[reason] || 0;
        rows.push(el("tr", { "data-name": i.name, "data-reason": reason },
          el("td", {}, i.name), el("td", { class: "reason-name" }, reason),
          el("td", { class: "num" }, pps(r)), el("td", { class: "num count" }, n)));
      }
    }
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 4 }, "no packet passed to the kernel yet")));
    $("reason-rows").replaceChildren(...rows);
  }

  function renderFlows(t) {
    $("flow-error").hidden = !t.error;
    $("flow-error").textContent = t.error ? "filter: " + t.error : "";
    $("flow-summary").textContent = (t.filter ? t.matched + " match, " : "") + t.total + " flows in the cache (capacity " + t.capacity + ")" +
      (t.flows.length < t.matched ? ", the " + t.flows.length + " fastest shown" : "");
    const rows = t.flows.map(({ flow: f, rate }) => el("tr", { "data-src": src(f.in), "data-dst": dst(f.in), "data-proto": f.proto },
      el("td", {}, f.proto), el("td", {}, f.direction),
      el("td", { class: "in-src" }, src(f.in)), el("td", { class: "in-dst" }, dst(f.in)),
      el("td", { class: "nat" }, f.nat || "-"),
      el("td", { class: "out-src" }, src(f.out)), el("td", { class: "out-dst" }, dst(f.out)),
      el("td", { class: "ingress" }, f.ingress), el("td", { class: "egress" }, f.egress),
      el("td", { class: "num" }, pps(rate.pps)), el("td", { class: "num" }, bps(rate.bps)),
      el("td", { class: "num packets" }, f.packets), el("td", { class: "num bytes" }, f.bytes),
      el("td", { class: "num" }, Math.round(f.age_seconds))));
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 14 }, t.filter ? "no flow matches" : "no flow in the cache")));
    $("flow-rows").replaceChildren(...rows);
  }

  function eventText(e) {
    const parts = [];
    if (e.interface) parts.push(e.interface);
    if (e.flow) {
      const f = e.flow;
      parts.push(f.proto + " " + src(f.in) + " -> " + dst(f.in) + (f.nat ? " (" + f.nat + " " + src(f.out) + " -> " + dst(f.out) + ")" : "") +
        " " + f.ingress + " -> " + f.egress);
    }
    if (e.reason) parts.push("reason " + e.reason);
    if (e.detail) parts.push(e.detail);
    if (e.dropped) parts.push(e.dropped + " events lost");
    return parts.join("  ");
  }

  function eventItem(e) {
    const t = new Date(e.time);
    return el("li", { "data-kind": e.kind },
      el("span", { class: "ev-time" }, isNaN(t) ? "" : t.toLocaleTimeString()),
      el("span", { class: "ev-kind" }, e.kind),
      el("span", { class: "ev-text" }, eventText(e)));
  }

  function addEvent(e) {
    state.events.unshift(e);
    const list = $("event-list");
    list.prepend(eventItem(e));
    while (state.events.length > 200) { state.events.pop(); list.lastChild.remove(); }
  }

  // The guard: list sizes and entries, drops per interface and reason, the
  // sources it dropped most. Absent when the daemon has none.
  function renderGuard(tick) {
    const g = tick.guard, body = $("guard-body");
    if (!g) {
      body.replaceChildren(el("p", { class: "hint" }, "This daemon reports no guard."));
      return;
    }
    const drops = tick.guard_drops || {};
    const dropRows = [];
    for (const i of g.interfaces || []) {
      const rate = drops[i.name] || {};
      for (const [reason, n] of Object.entries(i.dropped || {}).sort((a, b) => b[1] - a[1])) {
        if (!n) continue;
        dropRows.push(el("tr", { "data-name": i.name, "data-reason": reason },
          el("td", {}, i.name), el("td", { class: "reason-name" }, reason), el("td", { class: "num" }, pps(rate[reason] || 0)),
          el("td", { class: "num count" }, n), el("td", { class: "num" }, (i.dropped_bytes || {})[reason] || 0)));
      }
      if (i.allowed) {
        dropRows.push(el("tr", { "data-name": i.name, "data-reason": "allowed" },
          el("td", {}, i.name), el("td", {}, "allowed (allow list, not dropped)"), el("td", {}), el("td", { class: "num count" }, i.allowed), el("td", {})));
      }
    }
    if (!dropRows.length) dropRows.push(el("tr", {}, el("td", { colspan: 5 }, "nothing dropped")));
    const list = (name, entries, total) => el("div", { class: "guard-list", id: "guard-" + name },
      el("h3", {}, name + " list: " + total + (total === 1 ? " entry" : " entries") + (entries.length < total ? " (the first " + entries.length + " shown)" : "")),
      entries.length ? el("table", {},
        el("thead", {}, el("tr", {}, el("th", {}, "prefix"), el("th", {}, "from"), el("th", { class: "num" }, "packets"), el("th", { class: "num" }, "bytes"))),
        el("tbody", {}, ...entries.map((e) => el("tr", { "data-prefix": e.prefix },
          el("td", { class: "prefix" }, e.prefix), el("td", {}, e.origin), el("td", { class: "num" }, e.packets), el("td", { class: "num" }, e.bytes))))) : "");
    const top = g.top || [];
    body.replaceChildren(
      el("table", { id: "guard-drops" },
        el("thead", {}, el("tr", {}, el("th", {}, "interface"), el("th", {}, "dropped because"), el("th", { class: "num" }, "packets/s"),
          el("th", { class: "num" }, "packets"), el("th", { class: "num" }, "bytes"))),
        el("tbody", {}, ...dropRows)),
      el("div", { class: "guard-lists" }, list("allow", g.allow || [], g.allow_entries), list("deny", g.deny || [], g.deny_entries)),
      el("h3", {}, "Sources dropped most"),
      top.length ? el("table", { id: "guard-top" },
        el("thead", {}, el("tr", {}, el("th", {}, "source"), el("th", {}, "last reason"), el("th", { class: "num" }, "packets"), el("th", { class: "num" }, "bytes"))),
        el("tbody", {}, ...top.map((t) => el("tr", {}, el("td", { class: "source" }, t.source), el("td", {}, t.reason),
          el("td", { class: "num" }, t.packets), el("td", { class: "num" }, t.bytes))))) : el("p", { class: "hint" }, "none"));
  }

  // A write action: POST with the token; the answer's text, or why not.
  async function write(path) {
    const res = await fetch(path, { method: "POST", headers: { Authorization: "Bearer " + $("token").value } });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error);
    return body;
  }

  async function guardChange(add) {
    const out = $("guard-result");
    const list = $("guard-list").value, prefix = $("guard-prefix").value.trim();
    out.textContent = "...";
    try {
      const q = new URLSearchParams({ list: list, prefix: prefix });
      const res = await write("api/v1/guard/" + (add ? "add" : "del") + "?" + q);
      out.textContent = (add ? "added to " : "removed from ") + res.list + ": " + res.changed.join(", ");
    } catch (err) {
      out.textContent = "failed: " + err.message;
    }
  }
  $("guard-add").addEventListener("click", () => guardChange(true));
  $("guard-del").addEventListener("click", () => guardChange(false));

  function renderDaemon(tick) {
    const st = state.status;
    if (!st) return;
    $("version").textContent = "version " + st.version;
    const facts = [];
    const add = (k, v, id) => facts.push(el("dt", {}, k), el("dd", id ? { id: id } : {}, v));
    const started = new Date(st.started_at);
    add("version", st.version, "d-version");
    add("pid", st.pid, "d-pid");
    add("network namespace", st.netns || "-", "d-netns");
    add("config file", st.config_file || "-", "d-config");
    add("started", isNaN(started) ? "-" : started.toISOString(), "d-started");
    add("uptime", isNaN(started) ? "-" : duration((Date.now() - started) / 1000), "d-uptime");
    const dp = st.datapath;
    if (dp) {
      add("route generation", dp.route_generation, "d-route-gen");
      add("ruleset generation", dp.ruleset_generation, "d-ruleset-gen");
      add("watchdog", dp.watchdog + (dp.watchdog_seconds ? " (heartbeat " + dp.heartbeat_age_seconds.toFixed(1) + " s ago, fires after " + dp.watchdog_seconds + " s)" : ""), "d-watchdog");
    }
    let fa = 0, fr = 0, lost = 0;
    for (const i of state.stats && state.stats.interfaces || []) { fa += i.flows_added; fr += i.flows_removed; lost += i.events_lost; }
    add("flows added / removed by the datapath", fa + " / " + fr, "d-flows");
    add("flow events lost", lost, "d-events-lost");
    const db = st.dashboard;
    if (db) {
      add("dashboard", db.url + (db.write ? " (write actions with the token)" : " (read-only)"), "d-dashboard");
      if (db.warning) add("warning", db.warning, "d-warning");
    }
    add("dashboard pages open", tick.clients, "d-clients");
    if (tick.dropped) add("updates this page missed", tick.dropped);
    $("daemon-facts").replaceChildren(...facts);
    const canWrite = !!(db && db.write);
    $("write").hidden = !canWrite;
    $("write-token").hidden = !canWrite;
    $("guard-write").hidden = !(canWrite && tick.guard);
  }

  // ---- reload (only with dashboard.write) ----
  $("reload").addEventListener("click", async () => {
    const out = $("reload-result");
    out.textContent = "reloading...";
    try {
      const body = await write("api/v1/reload");
      out.textContent = body.changed ? "done: " + body.actions.join("; ") : "no change";
    } catch (err) {
      out.textContent = "failed: " + err.message;
    }
  });

  // ---- the event stream ----
  let source = null;
  function connect() {
    if (source) source.close();
    const url = "events" + (state.filter ? "?flows=" + encodeURIComponent(state.filter) : "");
    source = new EventSource(url);
    const conn = $("conn");
    conn.textContent = "connecting"; conn.className = "conn-wait";
    source.addEventListener("hello", (m) => {
      const h = JSON.parse(m.data);
      state.period = h.period_seconds || 1;
      state.history = h.history || [];
      state.events = [];
      $("event-list").replaceChildren();
      for (const e of h.events || []) addEvent(e);
      conn.textContent = "live"; conn.className = "conn-live";
      drawCharts();
    });
    source.addEventListener("tick", (m) => {
      const t = JSON.parse(m.data);
      $("error").hidden = !t.error;
      $("error").textContent = t.error ? "daemon: " + t.error : "";
      state.history.push(t.sample);
      if (state.history.length > state.maxPoints) state.history.shift();
      if (t.status) state.status = t.status;
      if (t.stats) state.stats = t.stats;
      renderInterfaces();
      renderReasons();
      renderGuard(t);
      renderDaemon(t);
      drawCharts();
      document.body.setAttribute("data-ticks", String(Number(document.body.getAttribute("data-ticks") || 0) + 1));
    });
    source.addEventListener("flows", (m) => renderFlows(JSON.parse(m.data)));
    source.addEventListener("event", (m) => addEvent(JSON.parse(m.data)));
    source.onerror = () => { conn.textContent = "reconnecting"; conn.className = "conn-down"; };
  }

  let filterTimer = 0;
  $("flow-filter").addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => { state.filter = $("flow-filter").value.trim(); connect(); }, 300);
  });
  $("chart-iface").addEventListener("change", drawCharts);
  connect();
})();
