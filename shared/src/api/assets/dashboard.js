// The operator's dashboard: reads this origin's admin and statistics routes and draws
// its own small SVG charts. No libraries and nothing loaded from elsewhere; the
// page's policy only lets it talk to its own origin. The queue's depth is recorded
// nowhere, so its chart is the samples this page took while it was open.
"use strict";

(function () {
  // The viewer's key: a token pasted into either page serves both.
  const TOKEN_KEY = "facesvg.token";
  const POLL_MS = 10 * 1000;
  const MAX_SAMPLES = 360;
  const W = 560, H = 220, PAD = { l: 44, r: 24, t: 10, b: 34 };
  // The parser put the page's <svg> elements in the SVG namespace; the page names no URL.
  const SVGNS = document.querySelector("figure.chart svg").namespaceURI;
  const TIERS = [["l0", "in-process"], ["redis", "redis"], ["postgres", "postgres"], ["miss", "miss"]];
  const STAGES = ["decode", "trace", "simplify", "svg", "s3_put", "commit", "total"];

  const $ = (id) => document.getElementById(id);
  const samples = []; // { t: Date, visible, in_flight }
  let timer = null;
  let loading = false;

  function authHeaders() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  // Relative to the page, so that a stage prefix (/dev/dashboard) is kept.
  function apiUrl(path) {
    return new URL(path, document.baseURI);
  }

  function errorText(path, status, body) {
    const e = body && body.error;
    if (e && typeof e === "object") {
      return `${path}: ${status} ${e.code}: ${e.message}${e.field ? ` (field: ${e.field})` : ""}`;
    }
    return `${path}: the service answered ${status}`;
  }

  async function getJson(path) {
    const resp = await fetch(apiUrl(path), { headers: authHeaders(), cache: "no-store" });
    const text = await resp.text();
    let body = null;
    try { body = JSON.parse(text); } catch (_) { body = null; }
    // The health route answers 503 with its verdict when a backend is down.
    if (!resp.ok && !(resp.status === 503 && body && body.status)) {
      throw new Error(errorText(path, resp.status, body));
    }
    return body;
  }

  // --- drawing -----------------------------------------------------------------------
  function el(name, attrs, text) {
    const node = document.createElementNS(SVGNS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fresh(id) {
    const svg = document.querySelector(`#${id} svg`);
    svg.replaceChildren();
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("role", "img");
    return svg;
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function fmt(v) {
    if (v >= 1000) return `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)}k`;
    if (Number.isInteger(v)) return String(v);
    return String(Number(v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)));
  }

  // Axes, grid and y labels; returns the scales.
  function frame(svg, yMax, yLabel) {
    const iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
    const y = (v) => PAD.t + ih - (v / yMax) * ih;
    for (let i = 0; i <= 4; i++) {
      const v = (yMax * i) / 4;
      svg.append(el("line", { class: i ? "grid" : "axis", x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v) }));
      svg.append(el("text", { x: PAD.l - 6, y: y(v) + 4, "text-anchor": "end" }, yLabel(v)));
    }
    svg.append(el("line", { class: "axis", x1: PAD.l, x2: PAD.l, y1: PAD.t, y2: PAD.t + ih }));
    return { iw, ih, y };
  }

  function xLabels(svg, labels, xAt) {
    const step = Math.max(1, Math.ceil(labels.length / 8));
    const last = labels.length - 1;
    labels.forEach((label, i) => {
      // The last label too, unless it would sit on the one before it.
      if (i % step === 0 || (i === last && last % step >= step / 2)) {
        svg.append(el("text", { x: xAt(i), y: H - PAD.b + 16, "text-anchor": "middle" }, label));
      }
    });
  }

  function legend(svg, series) {
    let x = PAD.l;
    for (const s of series) {
      svg.append(el("rect", { class: s.cls, x, y: H - 12, width: 10, height: 10 }));
      svg.append(el("text", { x: x + 14, y: H - 3 }, s.name));
      x += 24 + 7 * s.name.length;
    }
  }

  function emptyNote(svg, text) {
    svg.append(el("text", { class: "empty-note", x: W / 2, y: H / 2, "text-anchor": "middle" }, text));
  }

  // series: [{ name, cls, values: [number|null] }] over `labels`.
  function lineChart(id, labels, series, opts) {
    const svg = fresh(id);
    const all = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
    const yMax = opts.yMax || niceMax(Math.max(0, ...all));
    const { iw, y } = frame(svg, yMax, opts.yLabel || fmt);
    const xAt = (i) => PAD.l + (labels.length < 2 ? iw / 2 : (i / (labels.length - 1)) * iw);
    xLabels(svg, labels, xAt);
    let points = 0;
    for (const s of series) {
      const coords = [];
      s.values.forEach((v, i) => { if (v !== null && v !== undefined) coords.push([xAt(i), y(v), v, i]); });
      if (coords.length > 1) {
        svg.append(el("polyline", { class: `line ${s.cls}`, points: coords.map((c) => `${c[0]},${c[1]}`).join(" ") }));
      }
      for (const [cx, cy, v, i] of coords) {
        const dot = el("circle", { class: `point ${s.cls}`, cx, cy, r: coords.length > 60 ? 1.5 : 3, "data-value": v });
        dot.append(el("title", {}, `${s.name} ${labels[i]}: ${opts.tip ? opts.tip(v) : fmt(v)}`));
        svg.append(dot);
        points++;
      }
    }
    legend(svg, series);
    if (!points) emptyNote(svg, opts.empty || "no data yet");
    return points;
  }

  // Bars per category; stacked or side by side.
  function barChart(id, labels, series, opts) {
    const svg = fresh(id);
    const totals = labels.map((_, i) =>
      opts.stacked ? series.reduce((a, s) => a + (s.values[i] || 0), 0) : Math.max(0, ...series.map((s) => s.values[i] || 0)));
    const yMax = niceMax(Math.max(0, ...totals));
    const { iw, y } = frame(svg, yMax, fmt);
    const slot = iw / Math.max(1, labels.length);
    const xAt = (i) => PAD.l + slot * (i + 0.5);
    xLabels(svg, labels, xAt);
    const barW = Math.max(1, Math.min(40, slot * 0.8));
    let points = 0;
    labels.forEach((label, i) => {
      let base = 0;
      series.forEach((s, k) => {
        const v = s.values[i];
        if (v === null || v === undefined) return;
        const w = opts.stacked ? barW : barW / series.length;
        const x = opts.stacked ? xAt(i) - barW / 2 : xAt(i) - barW / 2 + k * w;
        const top = y(base + v), bottom = y(base);
        // A zero still gets a hairline, so that a measured zero differs from no data.
        const rect = el("rect", { class: `point ${s.cls}`, x, y: Math.min(top, bottom - 1), width: Math.max(1, w - 1),
          height: Math.max(1, bottom - top), "data-value": v });
        rect.append(el("title", {}, `${s.name} ${label}: ${fmt(v)}`));
        svg.append(rect);
        points++;
        if (opts.stacked) base += v;
      });
    });
    legend(svg, series);
    if (!points) emptyNote(svg, opts.empty || "no data yet");
    return points;
  }

  // --- the data ----------------------------------------------------------------------
  function draw(m) {
    const days = m.requests.map((d) => d.date.slice(5));
    lineChart("chart-ratio", days, [{ name: "hit ratio", cls: "s0", values: m.requests.map((d) => d.hit_ratio * 100) }],
      { yMax: 100, yLabel: (v) => `${v}%`, tip: (v) => `${v.toFixed(1)}%`, empty: "no requests folded yet" });
    barChart("chart-tiers", days, TIERS.map(([k, name], i) => ({ name, cls: `s${i}`, values: m.requests.map((d) => d[k]) })),
      { stacked: true, empty: "no requests folded yet" });
    const stages = STAGES.filter((s) => m.stages[s]);
    barChart("chart-stages", stages, [
      { name: "p50", cls: "s0", values: stages.map((s) => m.stages[s].p50) },
      { name: "p95", cls: "s2", values: stages.map((s) => m.stages[s].p95) },
    ], { stacked: false, empty: "no renders in this window" });
    const minutes = m.per_minute.map((x) => new Date(x.minute).toISOString().slice(11, 16));
    barChart("chart-minutes", minutes, [
      { name: "renders", cls: "s1", values: m.per_minute.map((x) => x.renders) },
      { name: "failures", cls: "s3", values: m.per_minute.map((x) => x.failures) },
    ], { stacked: true });

    if (m.queue) samples.push({ t: new Date(), visible: m.queue.visible, in_flight: m.queue.in_flight });
    while (samples.length > MAX_SAMPLES) samples.shift();
    lineChart("chart-queue", samples.map((s) => s.t.toISOString().slice(11, 19)), [
      { name: "waiting", cls: "s0", values: samples.map((s) => s.visible) },
      { name: "in flight", cls: "s2", values: samples.map((s) => s.in_flight) },
    ], { empty: "the queue did not answer" });
    $("queue-now").textContent = m.queue ? `${m.queue.visible} · ${m.queue.in_flight}` : "n/a";

    const today = m.requests[m.requests.length - 1];
    $("ratio-today").textContent = today ? `${(today.hit_ratio * 100).toFixed(1)}%` : "n/a";
  }

  function showHealth(h) {
    const node = $("health");
    node.textContent = h.status;
    node.className = `value ${h.status === "ok" ? "status-ok" : h.status === "degraded" ? "status-warn" : "status-bad"}`;
    $("checks").textContent = Object.entries(h.checks || {})
      .map(([k, c]) => `${k} ${c.disabled ? "off" : c.ok ? "✓" : "✗"}`).join(" · ");
  }

  function showTenant(s) {
    const r = s.requests;
    $("ratio-tenant").textContent = r ? `${(r.hit_ratio * 100).toFixed(1)}%` : "n/a";
    $("tenant-requests").textContent = r ? `${r.total} requests, ${r.misses} misses` : "Redis unavailable";
  }

  async function refresh() {
    if (loading) return;
    loading = true;
    const q = `minutes=${encodeURIComponent($("minutes").value)}&days=${encodeURIComponent($("days").value)}`;
    try {
      const [metrics, health, tenant, kv] = await Promise.all([
        getJson(`api/v1/admin/metrics?${q}`),
        getJson("api/v1/health"),
        getJson("api/v1/cache/stats?days=1"),
        getJson("api/v1/admin/cache/stats"),
      ]);
      draw(metrics);
      showHealth(health);
      showTenant(tenant);
      $("kv-errors").textContent = String(kv.callers.errors);
      $("message").hidden = true;
      $("updated").textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
      document.body.setAttribute("data-state", "ready");
    } catch (e) {
      $("message").hidden = false;
      $("message").textContent = e.message;
      document.body.setAttribute("data-state", "error");
    } finally {
      loading = false;
    }
  }

  function restart() {
    if (timer) clearInterval(timer);
    timer = setInterval(refresh, POLL_MS);
    refresh();
  }

  const token = $("token");
  token.value = sessionStorage.getItem(TOKEN_KEY) || "";
  token.addEventListener("change", () => {
    if (token.value.trim()) sessionStorage.setItem(TOKEN_KEY, token.value.trim());
    else sessionStorage.removeItem(TOKEN_KEY);
    restart();
  });
  $("minutes").addEventListener("change", restart);
  $("days").addEventListener("change", refresh);
  $("refresh").addEventListener("click", refresh);
  restart();
})();
