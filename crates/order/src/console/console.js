// The checkout console: polls api/state every second and draws it. No framework, no CDN.
"use strict";

const POLL_MS = 1000;
const PHASES = { trying: "try", committing: "commit", aborting: "cancel" };
let selected = null; // the selected transaction, kept while it scrolls out of the lists

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "onclick") node.onclick = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child != null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function shape(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text != null) node.textContent = text;
  return node;
}

function ms(value) {
  if (value == null) return "–";
  if (value < 10) return value.toFixed(1) + " ms";
  if (value < 1000) return Math.round(value) + " ms";
  return (value / 1000).toFixed(2) + " s";
}

function tile(label, value, unit) {
  return el("div", { class: "tile" },
    el("div", { class: "label" }, label),
    el("div", { class: "value" }, value, unit ? el("small", {}, " " + unit) : null));
}

// Checkouts per second in each bucket; the last one is still filling.
function rates(s) {
  return s.series.map((p) => {
    const elapsed = Math.min(s.bucket_s, Math.max(1, (s.now_ms - p.t) / 1000));
    return p.count / elapsed;
  });
}

function drawTiles(s) {
  const r = rates(s);
  const now = r.length > 1 ? r[r.length - 2] : 0;
  const m = s.last_minute;
  const committed = m.count ? Math.round((100 * m.committed) / m.count) + "%" : "–";
  document.getElementById("tiles").replaceChildren(
    tile("throughput", now.toFixed(now < 10 ? 1 : 0), "checkouts/s"),
    tile("p50 · 1 min", ms(m.p50)),
    tile("p95 · 1 min", ms(m.p95)),
    tile("p99 · 1 min", ms(m.p99)),
    tile("in flight", s.in_flight),
    tile("committed · 1 min", committed, "of " + m.count));
}

function drawChart(s) {
  const svg = document.getElementById("chart");
  // Drawn at the element's own width, so text keeps its size.
  const W = Math.max(600, Math.round(svg.getBoundingClientRect().width) || 1200);
  svg.setAttribute("viewBox", "0 0 " + W + " 250");
  const left = 46, right = 56, n = s.series.length;
  const bars = { top: 12, bottom: 112 }, lat = { top: 132, bottom: 222 };
  const step = (W - left - right) / Math.max(1, n);
  const r = rates(s);
  const max = niceMax(Math.max(1, ...r));
  const nodes = [];
  // Throughput bars.
  for (const y of [bars.top, bars.bottom]) nodes.push(shape("line", { class: "grid", x1: left, x2: W - right, y1: y, y2: y }));
  nodes.push(shape("text", { x: left - 6, y: bars.top + 4, "text-anchor": "end" }, fmtRate(max)));
  nodes.push(shape("text", { x: left - 6, y: bars.bottom + 4, "text-anchor": "end" }, "0"));
  r.forEach((rate, i) => {
    const h = ((bars.bottom - bars.top) * rate) / max;
    if (h > 0) nodes.push(shape("rect", { class: "bar", x: left + i * step + 1, y: bars.bottom - h, width: Math.max(1, step - 2), height: h }));
  });
  // Latency percentiles on a log scale, 1 ms to 10 s.
  const y = (v) => lat.bottom - ((lat.bottom - lat.top) * Math.min(4, Math.max(0, Math.log10(Math.max(v, 1))))) / 4;
  for (const [v, label] of [[1, "1 ms"], [10, "10 ms"], [100, "100 ms"], [1000, "1 s"], [10000, "10 s"]]) {
    nodes.push(shape("line", { class: "grid", x1: left, x2: W - right, y1: y(v), y2: y(v) }));
    nodes.push(shape("text", { x: W - right + 6, y: y(v) + 4 }, label));
  }
  for (const key of ["p50", "p95", "p99"]) {
    let d = "";
    s.series.forEach((p, i) => {
      if (p[key] == null) return;
      d += (d && s.series[i - 1] && s.series[i - 1][key] != null ? "L" : "M") + (left + (i + 0.5) * step).toFixed(1) + " " + y(p[key]).toFixed(1);
    });
    if (d) nodes.push(shape("path", { class: key, d }));
  }
  for (let minutes = 5; minutes >= 0; minutes--) {
    const x = W - right - (minutes * 60 * (W - left - right)) / (n * s.bucket_s);
    nodes.push(shape("text", { x, y: 244, "text-anchor": "middle" }, minutes ? "−" + minutes + " min" : "now"));
  }
  svg.replaceChildren(...nodes);
}

function niceMax(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmtRate(v) {
  return v >= 1000 ? (v / 1000).toFixed(v >= 10000 ? 0 : 1) + "k/s" : v + "/s";
}

function drawOutcomes(s) {
  const entries = Object.entries(s.outcomes).sort((a, b) => b[1] - a[1]);
  const total = entries.reduce((sum, [, n]) => sum + n, 0);
  const box = document.getElementById("outcomes");
  if (!total) {
    box.replaceChildren(el("p", { class: "empty" }, "No checkouts in the last 5 minutes."));
    return;
  }
  box.replaceChildren(...entries.map(([outcome, n]) => el("div", { class: "row" },
    el("span", {}, outcome.replaceAll("_", " ")),
    el("div", { class: "track" }, el("div", { class: "fill " + outcome, style: "width:" + (100 * n) / total + "%" })),
    el("span", { class: "n" }, n))));
}

function stepCell(tx, participant) {
  const steps = tx.steps.filter((st) => st.participant === participant);
  if (!steps.length) return el("td", { class: "empty" }, tx.state === "trying" ? "asking…" : "–");
  return el("td", { class: "steps" }, ...steps.map((st) => el("span", { class: "pill step " + resultClass(st.result), title: st.result },
    st.phase + " " + st.ms + " ms")));
}

function resultClass(result) {
  if (result === "sent") return "r-done"; // a commit, durably in the broker
  if (result === "done" || result === "busy" || result === "silent") return "r-" + result;
  return "r-refused";
}

function answeredAt(tx) {
  return tx.times.committing || tx.times.aborted || null;
}

function row(tx, now, age) {
  const tr = el("tr", { "data-tx": tx.id, "data-order": tx.order, onclick: () => select(tx) },
    el("td", { class: "order", title: tx.order }, tx.order),
    el("td", {}, el("span", { class: "pill s-" + tx.state, title: tx.code || "" }, tx.code && tx.state.startsWith("abort") ? tx.state + ": " + tx.code.replaceAll("_", " ") : tx.state)),
    stepCell(tx, "stock"),
    stepCell(tx, "payment"),
    el("td", {}, age ? ms(now - tx.started) : answeredAt(tx) ? ms(answeredAt(tx) - tx.started) : "–"));
  if (selected && selected.id === tx.id) tr.classList.add("selected");
  return tr;
}

function drawTables(s) {
  document.getElementById("inflight-count").textContent = s.in_flight + " now";
  const active = s.active.length ? s.active.map((tx) => row(tx, s.now_ms, true))
    : [el("tr", {}, el("td", { class: "empty", colspan: 5 }, "Nothing in flight."))];
  document.getElementById("active").replaceChildren(...active);
  const recent = s.recent.length ? s.recent.map((tx) => row(tx, s.now_ms, false))
    : [el("tr", {}, el("td", { class: "empty", colspan: 5 }, "No checkout yet."))];
  document.getElementById("recent").replaceChildren(...recent);
  if (selected) {
    const fresh = s.active.concat(s.recent).find((tx) => tx.id === selected.id);
    if (fresh) select(fresh, true);
  } else if (s.recent.length) {
    showTimeline(s.recent[0], "latest: ");
  }
}

function select(tx, quiet) {
  selected = tx;
  showTimeline(tx, "");
  if (!quiet) {
    for (const tr of document.querySelectorAll("tr.selected")) tr.classList.remove("selected");
    for (const tr of document.querySelectorAll("tr[data-tx]")) {
      if (tr.getAttribute("data-tx") === tx.id) tr.classList.add("selected");
    }
  }
}

// The timeline of `tx`: each state with its time since the start, and the answers that led
// out of it.
function showTimeline(tx, prefix) {
  const states = Object.entries(tx.times).sort((a, b) => a[1] - b[1]);
  const items = states.map(([state, at]) => {
    const phase = PHASES[state];
    const answers = tx.steps.filter((st) => st.phase === phase)
      .map((st) => st.participant + " " + st.result + " after " + st.ms + " ms");
    return el("li", {},
      el("span", { class: "pill s-" + state }, state),
      el("span", { class: "at" }, "+" + ms(at - tx.started)),
      answers.length ? el("div", { class: "answers" }, answers.join(" · ")) : null);
  });
  document.getElementById("timeline").replaceChildren(
    el("h3", {}, prefix + "order " + tx.order),
    el("div", { class: "sub" }, tx.protocol + " · transaction " + tx.id + " · " + tx.owner
      + (tx.code ? " · " + tx.code + (tx.detail ? ": " + tx.detail : "") : "")),
    el("ol", {}, ...items));
}

async function poll() {
  const live = document.getElementById("live");
  try {
    const response = await fetch("api/state", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const s = await response.json();
    document.getElementById("meta").textContent = "served by " + s.replica + " · protocol " + s.protocol;
    drawTiles(s);
    drawChart(s);
    drawOutcomes(s);
    drawTables(s);
    live.className = "live";
    live.textContent = "live · " + new Date(s.now_ms).toLocaleTimeString();
  } catch (e) {
    live.className = "live stale";
    live.textContent = "reconnecting… (" + e.message + ")";
  }
  setTimeout(poll, POLL_MS);
}

poll();
