// rie dashboard: the page's logic. Pushes arrive on /api/stream (Server-Sent Events): one
// "snapshot" when the page connects, then a "batch" about every 250 ms with what changed.
"use strict";

const WINDOW_S = 900;
const MAX_ROWS = 10000; // as many as rie keeps
const SHOWN_ROWS = 300; // rows in the table at once: the newest that pass the filters
// a row, as rie/observe/feed.py's Record.row() writes it
const R = { seq: 0, at: 1, fn: 2, rid: 3, kind: 4, status: 5, duration: 6, billed: 7, memory: 8, init: 9, error: 10, env: 11 };
// a chart point, as rie/observe/feed.py's _Second.point() writes it
const P = { second: 0, invocations: 1, errors: 2, throttles: 3, concurrency: 4, cold: 5, p50: 6, p99: 7 };

const state = {
  functions: [],
  environments: {},
  totals: {},
  rows: [],
  series: {}, // name -> Map(second -> point)
  serverOffset: 0, // server clock minus ours, seconds
  selected: null,
  chartsDue: true,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function now() {
  return Date.now() / 1000 + state.serverOffset;
}

function fmtTime(epoch) {
  const d = new Date(epoch * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function fmtMs(value) {
  return value === null || value === undefined ? "" : `${value.toFixed(2)} ms`;
}

// --- functions and their environments ---------------------------------------------------------

function renderFunctions() {
  const box = $("functions");
  box.replaceChildren();
  for (const fn of state.functions) {
    const settings = [
      ["handler", fn.handler],
      ["runtime", fn.runtime || "—"],
      ["memory", `${fn.memory} MB`],
      ["timeout", `${fn.timeout} s`],
      ["concurrency", `${fn.maxConcurrency} environment${fn.maxConcurrency === 1 ? "" : "s"} × ${fn.perEnvironmentConcurrency}`],
      ["provisioned", fn.provisioned],
      ["sandbox", fn.sandbox],
      ["routes", fn.routes.length ? fn.routes.join(", ") : "—"],
      ["layers", fn.layers.length ? fn.layers.join(", ") : "—"],
      ["extensions", fn.extensions.length ? fn.extensions.join(", ") : "—"],
    ];
    const dl = el("dl", { class: "settings" });
    for (const [k, v] of settings) dl.append(el("dt", {}, k), el("dd", {}, v));
    const card = el(
      "div",
      { class: "function", "data-function": fn.name },
      el("h3", {}, fn.name, el("small", { class: "fn-count", "data-function": fn.name }, "")),
      dl,
      el("div", { class: "envs", "data-function": fn.name }),
    );
    box.append(card);
  }
  renderEnvironments();
}

function renderEnvironments() {
  // chips are updated in place (a chip per environment, kept while it lives)
  for (const fn of state.functions) {
    const box = document.querySelector(`.envs[data-function="${CSS.escape(fn.name)}"]`);
    if (!box) continue;
    const envs = state.environments[fn.name] || [];
    const existing = new Map([...box.querySelectorAll(".env")].map((chip) => [chip.dataset.env, chip]));
    const wanted = [];
    for (const env of envs) {
      const key = `${fn.name}:${env.id}`;
      let chip = existing.get(key);
      if (!chip) {
        chip = el("span", { class: "env", "data-env": key }, `env ${env.id} · `, el("b", { class: "env-state" }), el("span", { class: "env-count" }));
      }
      existing.delete(key);
      if (chip.dataset.state !== env.state) {
        chip.dataset.state = env.state;
        chip.querySelector(".env-state").textContent = env.state;
      }
      const count = ` · ${env.invocations} invocation${env.invocations === 1 ? "" : "s"}`;
      const counter = chip.querySelector(".env-count");
      if (counter.textContent !== count) counter.textContent = count;
      chip.title = `log stream ${env.logStream} · ${env.inits} init(s)${env.provisioned ? " · provisioned" : ""}`;
      wanted.push(chip);
    }
    for (const chip of existing.values()) chip.remove();
    const none = box.querySelector(".none");
    if (!envs.length && !none) box.append(el("span", { class: "none" }, "no environment yet (cold)"));
    if (envs.length && none) none.remove();
    wanted.forEach((chip, i) => {
      if (box.children[i] !== chip) box.insertBefore(chip, box.children[i] || null);
    });
    const totals = state.totals[fn.name];
    const count = document.querySelector(`.fn-count[data-function="${CSS.escape(fn.name)}"]`);
    if (count && totals) count.textContent = `${totals.invocations} invocations`;
  }
}

function renderTotals() {
  let inv = 0, err = 0, thr = 0, cold = 0;
  for (const t of Object.values(state.totals)) {
    inv += t.invocations; err += t.errors; thr += t.throttles; cold += t.coldStarts;
  }
  $("total-invocations").textContent = inv;
  $("total-errors").textContent = err;
  $("throttle-count").textContent = thr;
  $("total-cold").textContent = cold;
}

function fillFunctionSelects() {
  for (const [id, first] of [["filter-function", ["", "All"]], ["chart-function", ["*", "All functions"]], ["invoke-function", null]]) {
    const select = $(id);
    const keep = select.value;
    select.replaceChildren();
    if (first) select.append(el("option", { value: first[0] }, first[1]));
    for (const fn of state.functions) select.append(el("option", { value: fn.name }, fn.name));
    if ([...select.options].some((o) => o.value === keep)) select.value = keep;
  }
}

// --- the invocations table --------------------------------------------------------------------

function passes(row) {
  const fn = $("filter-function").value;
  if (fn && row[R.fn] !== fn) return false;
  if ($("filter-errors").checked && row[R.status] === "success") return false;
  if ($("filter-cold").checked && row[R.init] === null) return false;
  return true;
}

function rowElement(row) {
  const status = row[R.status];
  const cold = row[R.init] !== null;
  const tr = el(
    "tr",
    { "data-seq": row[R.seq], "data-rid": row[R.rid], "data-status": status, "data-cold": cold ? "yes" : "no", class: row[R.seq] === state.selected ? "selected" : null },
    el("td", {}, fmtTime(row[R.at])),
    el("td", {}, row[R.fn]),
    el("td", { class: "rid" }, row[R.rid]),
    el("td", {}, row[R.kind]),
    el("td", { class: `status status-${status}` }, status === "throttled" ? "throttled (429)" : status, cold ? el("span", { class: "cold-tag" }, "cold") : null),
    el("td", { class: "num" }, fmtMs(row[R.duration])),
    el("td", { class: "num" }, row[R.billed] === null ? "" : `${row[R.billed]} ms`),
    el("td", { class: "num" }, row[R.memory] === null ? "" : `${row[R.memory]} MB`),
    el("td", { class: "num" }, fmtMs(row[R.init])),
    el("td", {}, row[R.error] || ""),
  );
  return tr;
}

function renderTable() {
  const shown = [];
  for (let i = state.rows.length - 1; i >= 0 && shown.length < SHOWN_ROWS; i--) {
    if (passes(state.rows[i])) shown.push(state.rows[i]);
  }
  const body = document.querySelector("#invocations tbody");
  body.replaceChildren(...shown.map(rowElement));
  $("shown-count").textContent = `${shown.length} shown of ${state.rows.length} kept`;
}

function addRows(rows) {
  // a row the snapshot already brought may come again in the next push: seqs only grow
  const last = state.rows.length ? state.rows[state.rows.length - 1][R.seq] : 0;
  rows = rows.filter((row) => row[R.seq] > last);
  if (!rows.length) return;
  state.rows.push(...rows);
  if (state.rows.length > MAX_ROWS) state.rows.splice(0, state.rows.length - MAX_ROWS);
  const body = document.querySelector("#invocations tbody");
  const fresh = rows.filter(passes).slice(-SHOWN_ROWS).reverse().map(rowElement);
  if (!fresh.length) return;
  body.prepend(...fresh);
  while (body.rows.length > SHOWN_ROWS) body.lastElementChild.remove();
  $("shown-count").textContent = `${body.rows.length} shown of ${state.rows.length} kept`;
}

async function select(seq) {
  state.selected = seq;
  for (const tr of document.querySelectorAll("#invocations tbody tr.selected")) tr.classList.remove("selected");
  const tr = document.querySelector(`#invocations tbody tr[data-seq="${seq}"]`);
  if (tr) tr.classList.add("selected");
  const response = await fetch(`/api/invocations/${seq}`);
  const detail = await response.json();
  const aside = $("detail");
  aside.hidden = false;
  if (!response.ok) {
    $("detail-id").textContent = "";
    $("detail-summary").textContent = detail.message;
    for (const part of ["log", "event", "answer"]) $(`detail-${part}`).textContent = "";
    return;
  }
  const row = detail.row;
  $("detail-id").textContent = row[R.rid];
  const env = (state.environments[row[R.fn]] || []).find((e) => e.id === row[R.env]);
  $("detail-summary").textContent =
    `${row[R.fn]} · ${row[R.kind]} · ${row[R.status]}` +
    (row[R.env] ? ` · environment ${row[R.env]}` : "") +
    (env ? ` · log stream ${env.logStream}` : "") +
    (row[R.init] !== null ? " · cold start" : "");
  const dropped = detail.dropped ? "(no longer kept: rie keeps 64 MB of logs, events and answers)" : "";
  $("detail-log").textContent = detail.log ?? dropped;
  $("detail-event").textContent = detail.event ?? dropped;
  $("detail-answer").textContent = detail.answer ?? (row[R.status] === "throttled" ? "(throttled: 429 TooManyRequestsException)" : dropped);
  const cut = (id, on, text) => { const p = $(id); p.hidden = !on; p.textContent = on ? text : ""; };
  cut("detail-log-cut", detail.logCut, "Cut: only the last 64 KB of this log is kept.");
  cut("detail-event-cut", detail.eventCut, `Cut at 256 KB of ${detail.eventSize} bytes.`);
  cut("detail-answer-cut", detail.answerCut, `Cut at 256 KB of ${detail.answerSize} bytes.`);
}

// --- charts -----------------------------------------------------------------------------------

function mergePoints(points) {
  for (const [name, list] of Object.entries(points)) {
    const series = state.series[name] || (state.series[name] = new Map());
    for (const point of list) series.set(point[P.second], point);
  }
}

function renderCharts() {
  state.chartsDue = false;
  const t = now();
  const first = Math.floor(t) - WINDOW_S;
  for (const series of Object.values(state.series)) {
    for (const second of series.keys()) if (second <= first) series.delete(second);
  }
  const series = state.series[$("chart-function").value] || new Map();
  // counts are 0 in a second without events; durations have no value then
  const counts = (index) => {
    const out = [];
    for (let s = first + 1; s <= Math.floor(t); s++) {
      const point = series.get(s);
      out.push([s, point ? point[index] : 0]);
    }
    return out;
  };
  const values = (index) => [...series.values()].sort((a, b) => a[0] - b[0]).map((p) => [p[P.second], p[index]]);
  const draw = (id, lines) => Charts.draw($(id), lines, t, WINDOW_S);
  draw("chart-invocations", [{ points: counts(P.invocations), color: "#2563eb" }]);
  draw("chart-errors", [{ points: counts(P.errors), color: "#c2410c" }]);
  draw("chart-throttles", [{ points: counts(P.throttles), color: "#b45309" }]);
  draw("chart-duration", [
    { points: values(P.p50), color: "#2563eb" },
    { points: values(P.p99), color: "#f59e0b" },
  ]);
  draw("chart-concurrency", [{ points: counts(P.concurrency), color: "#7c3aed" }]);
  draw("chart-cold", [{ points: counts(P.cold), color: "#0e7490" }]);
}

// --- the stream -------------------------------------------------------------------------------

function onSnapshot(doc) {
  state.serverOffset = doc.now - Date.now() / 1000;
  state.functions = doc.functions;
  state.environments = doc.environments;
  state.totals = doc.totals;
  state.rows = doc.rows;
  state.series = {};
  mergePoints(doc.points);
  fillFunctionSelects();
  renderFunctions();
  renderTotals();
  renderTable();
  renderCharts();
}

function onBatch(doc) {
  state.serverOffset = doc.now - Date.now() / 1000;
  state.totals = doc.totals;
  renderTotals();
  if (doc.environments) {
    state.environments = doc.environments;
    renderEnvironments();
  } else {
    renderEnvironments(); // its invocation counts
  }
  if (doc.rows) addRows(doc.rows);
  if (doc.points) {
    mergePoints(doc.points);
    state.chartsDue = true;
  }
}

function connect() {
  const source = new EventSource("/api/stream");
  const status = $("connection");
  source.addEventListener("snapshot", (e) => {
    status.dataset.state = "live";
    status.textContent = "live";
    onSnapshot(JSON.parse(e.data));
  });
  source.addEventListener("batch", (e) => onBatch(JSON.parse(e.data)));
  source.addEventListener("error", () => {
    status.dataset.state = "lost";
    status.textContent = "reconnecting…";
  });
}

// --- the invoke panel -------------------------------------------------------------------------

async function loadSamples() {
  const response = await fetch("/api/samples");
  const list = await response.json();
  const select = $("invoke-sample");
  for (const sample of list) select.append(el("option", { value: sample.name, title: sample.description }, sample.name));
}

async function pickSample() {
  const name = $("invoke-sample").value;
  if (!name) return;
  const response = await fetch(`/api/samples/${encodeURIComponent(name)}`);
  $("invoke-event").value = JSON.stringify(await response.json(), null, 2);
}

async function invoke(event) {
  event.preventDefault();
  const button = $("invoke-button");
  const type = document.querySelector('input[name="invoke-type"]:checked').value;
  button.disabled = true;
  $("invoke-result").hidden = false;
  $("invoke-status").textContent = "invoking…";
  $("invoke-status").dataset.state = "running";
  $("invoke-answer").textContent = "";
  $("invoke-log").textContent = "";
  try {
    const response = await fetch("/api/invoke", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ function: $("invoke-function").value, event: $("invoke-event").value, type }),
    });
    const doc = await response.json();
    if (!response.ok) {
      $("invoke-status").textContent = `refused: ${doc.message}`;
      $("invoke-status").dataset.state = "refused";
      return;
    }
    const parts = [`${doc.status}`, doc.functionError ? `function error (${doc.functionError})` : doc.status === 202 ? "accepted (Event)" : doc.status === 200 ? "success" : doc.errorType, `request ${doc.requestId}`];
    $("invoke-status").textContent = parts.filter(Boolean).join(" · ");
    $("invoke-status").dataset.state = "done";
    $("invoke-status").dataset.requestId = doc.requestId;
    $("invoke-answer").textContent = (doc.answer ?? "") + (doc.answerCut ? "\n… (cut at 256 KB)" : "");
    $("invoke-log").textContent = doc.log ?? (doc.status === 202 ? "(an Event invocation: its log shows in the table)" : "");
  } finally {
    button.disabled = false;
  }
}

// --- start ------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  for (const id of ["filter-function", "filter-errors", "filter-cold"]) $(id).addEventListener("change", renderTable);
  $("chart-function").addEventListener("change", renderCharts);
  $("invocations").addEventListener("click", (e) => {
    const tr = e.target.closest("tbody tr");
    if (tr) select(Number(tr.dataset.seq));
  });
  $("invoke-sample").addEventListener("change", pickSample);
  $("invoke-form").addEventListener("submit", invoke);
  loadSamples();
  connect();
  // the charts move with the clock even when nothing happens; at most once a second
  setInterval(renderCharts, 1000);
});
