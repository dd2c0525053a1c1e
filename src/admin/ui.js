// hookgate's admin UI: plain JS, no build step. Talks only to /api on this listener.
// Every value from the server is put in the page with textContent, never as HTML.
"use strict";

const TOKEN_KEY = "hookgate.adminToken";
const $ = (id) => document.getElementById(id);
let nextCursor = null;

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function say(text, isError) {
  const m = $("message");
  m.textContent = text || "";
  m.className = isError ? "error" : "";
}

async function api(method, path) {
  const headers = {};
  if (token()) headers["Authorization"] = "Bearer " + token();
  let resp;
  try {
    resp = await fetch(path, { method, headers });
  } catch (e) {
    throw new Error("cannot reach hookgate: " + e.message);
  }
  let body = null;
  try { body = await resp.json(); } catch (_) { /* not JSON */ }
  if (resp.status === 401) throw new Error("unauthorized: enter the admin token above");
  if (!resp.ok) throw new Error(resp.status + " " + ((body && body.error) || resp.statusText));
  return body;
}

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (className) e.className = className;
  return e;
}

function row(cells, classes) {
  const tr = document.createElement("tr");
  cells.forEach((c, i) => tr.appendChild(el("td", c, classes && classes[i])));
  return tr;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  const s = q.toString();
  return s ? "?" + s : "";
}

// ---- list ----

async function loadEvents(append) {
  const params = {
    source: $("f-source").value.trim(),
    status: $("f-status").value,
    since: $("f-since").value.trim(),
    limit: $("f-limit").value,
    cursor: append ? nextCursor : "",
  };
  try {
    const page = await api("GET", "/api/events" + query(params));
    const tbody = $("events");
    if (!append) tbody.replaceChildren();
    for (const e of page.items) {
      const tr = row([e.id, e.received_at, e.source, e.status, e.dedupe_key],
        ["mono", "", "", "status-" + e.status, "mono"]);
      tr.className = "clickable";
      tr.addEventListener("click", () => { location.hash = "#event/" + encodeURIComponent(e.id); });
      tbody.appendChild(tr);
    }
    nextCursor = page.next_cursor;
    $("more").hidden = !nextCursor;
    say(tbody.children.length ? "" : "no events match");
  } catch (err) {
    say(err.message, true);
  }
}

async function replayDead() {
  const source = $("f-source").value.trim();
  const what = source ? "every dead delivery of source " + source : "every dead delivery";
  if (!confirm("Replay " + what + "?")) return;
  try {
    const r = await api("POST", "/api/deliveries/replay" + query({ status: "dead", source }));
    say("replayed " + r.replayed + " deliveries");
    loadEvents(false);
  } catch (err) {
    say(err.message, true);
  }
}

// ---- one event ----

async function showEvent(id) {
  $("list-view").hidden = true;
  $("event-view").hidden = false;
  $("ev-id").textContent = id;
  try {
    const e = await api("GET", "/api/events/" + encodeURIComponent(id));
    renderEvent(e);
    say("");
  } catch (err) {
    say(err.message, true);
  }
}

function renderEvent(e) {
  const meta = $("ev-meta");
  meta.replaceChildren();
  for (const [k, v] of [["source", e.source], ["received", e.received_at], ["status", e.status],
    ["dedupe key", e.dedupe_key], ["content type", e.content_type || "-"]]) {
    meta.appendChild(row([k, v], ["", k === "status" ? "status-" + v : "mono"]));
  }
  const headers = $("ev-headers");
  headers.replaceChildren();
  for (const [k, v] of Object.entries(e.headers || {})) headers.appendChild(row([k, v], ["mono", "mono"]));
  if (e.body_encoding === "base64") {
    $("ev-body-note").textContent = "(not UTF-8; shown as base64)";
    $("ev-body").textContent = e.body;
  } else {
    $("ev-body-note").textContent = "";
    let text = e.body;
    try { text = JSON.stringify(JSON.parse(e.body), null, 2); } catch (_) { /* not JSON: as is */ }
    $("ev-body").textContent = text;
  }
  const box = $("ev-deliveries");
  box.replaceChildren();
  for (const d of e.deliveries) {
    const head = el("p");
    head.appendChild(el("strong", d.destination));
    head.appendChild(el("span", "  " + d.status + "  ", "status-" + d.status));
    head.appendChild(el("span", d.attempts + " attempt(s)" + (d.next_attempt_at ? ", next at " + d.next_attempt_at : ""), "muted"));
    const btn = el("button", "replay");
    btn.style.marginLeft = "1rem";
    btn.addEventListener("click", () => replay(e.id, d.destination));
    head.appendChild(btn);
    box.appendChild(head);
    // Why a filter left this destination out (CONTRACT §7): its delivery has no attempts to show.
    if (d.status === "filtered" && d.last_error) box.appendChild(el("p", d.last_error, "mono filter-reason"));
    const t = document.createElement("table");
    const h = document.createElement("tr");
    for (const c of ["#", "at", "outcome", "code", "took", "error"]) h.appendChild(el("th", c));
    t.appendChild(h);
    for (const a of d.attempt_log) {
      const code = a.status_code != null ? "HTTP " + a.status_code : a.exit_code != null ? "exit " + a.exit_code : "-";
      t.appendChild(row([a.attempt, a.at, a.outcome, code, a.duration_ms + " ms", a.error || ""],
        ["", "", a.outcome === "success" ? "status-succeeded" : "status-dead", "", "", "mono"]));
    }
    box.appendChild(t);
  }
}

async function replay(id, destination) {
  try {
    const r = await api("POST", "/api/events/" + encodeURIComponent(id) + "/replay" + query({ destination }));
    say("replayed " + r.replayed + " deliveries" + (r.replayed === 0 ? " (an attempt in flight is not replayed)" : ""));
    setTimeout(() => showEvent(id), 500);
  } catch (err) {
    say(err.message, true);
  }
}

// ---- destinations ----

const SVG = "http://www.w3.org/2000/svg";
const OUTCOMES = ["success", "failure", "timeout"];

async function showDestinations() {
  for (const v of ["list-view", "event-view"]) $(v).hidden = true;
  $("destinations-view").hidden = false;
  try {
    const page = await api("GET", "/api/destinations");
    const tbody = $("destinations");
    tbody.replaceChildren();
    const charts = $("charts");
    charts.replaceChildren();
    for (const d of page.items) {
      const tr = row([d.name, d.type, d.state, d.pending, d.in_flight, d.failed, d.dead, d.last_error || "-",
        d.last_success_at || "-"], ["", "", "state-" + d.state, "", "", "", "", "mono", ""]);
      tr.dataset.destination = d.name;
      tr.children[2].classList.add("state");
      const paused = d.state === "paused";
      const btn = el("button", paused ? "resume" : "pause");
      btn.dataset.action = paused ? "resume" : "pause";
      btn.dataset.destination = d.name;
      btn.addEventListener("click", () => setPaused(d.name, !paused));
      const cell = document.createElement("td");
      cell.appendChild(btn);
      tr.appendChild(cell);
      tbody.appendChild(tr);
      const box = el("div");
      box.appendChild(el("h2", d.name));
      charts.appendChild(box);
      loadChart(d.name, box);
    }
    say(page.items.length ? "" : "no destinations");
  } catch (err) {
    say(err.message, true);
  }
}

async function setPaused(name, paused) {
  try {
    const d = await api("POST", "/api/destinations/" + encodeURIComponent(name) + (paused ? "/pause" : "/resume"));
    await showDestinations();
    say(name + " is " + d.state);
  } catch (err) {
    say(err.message, true);
  }
}

async function loadChart(name, box) {
  try {
    const series = await api("GET", "/api/destinations/" + encodeURIComponent(name) + "/attempts");
    box.appendChild(chart(name, series.items));
  } catch (err) {
    box.appendChild(el("p", err.message, "error"));
  }
}

// One stacked bar per minute (oldest on the left), scaled to the busiest minute.
function chart(name, items) {
  const w = 8, h = 80, top = 12;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("data-destination", name);
  svg.setAttribute("width", String(items.length * w + 40));
  svg.setAttribute("height", String(h + top + 16));
  svg.setAttribute("role", "img");
  const max = Math.max(1, ...items.map((m) => OUTCOMES.reduce((n, o) => n + m[o], 0)));
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("x", "0");
  label.setAttribute("y", "10");
  label.setAttribute("font-size", "10");
  label.textContent = max + "/min";
  svg.appendChild(label);
  items.forEach((m, i) => {
    let y = top + h;
    for (const o of OUTCOMES) {
      if (!m[o]) continue;
      const bh = (m[o] / max) * h;
      y -= bh;
      const r = document.createElementNS(SVG, "rect");
      r.setAttribute("class", "bar bar-" + o);
      r.setAttribute("x", String(i * w));
      r.setAttribute("y", String(y));
      r.setAttribute("width", String(w - 1));
      r.setAttribute("height", String(Math.max(bh, 1)));
      r.setAttribute("data-minute", m.minute);
      r.setAttribute("data-count", String(m[o]));
      const t = document.createElementNS(SVG, "title");
      t.textContent = m.minute + ": " + m[o] + " " + o;
      r.appendChild(t);
      svg.appendChild(r);
    }
  });
  const axis = document.createElementNS(SVG, "text");
  axis.setAttribute("x", "0");
  axis.setAttribute("y", String(h + top + 14));
  axis.setAttribute("font-size", "10");
  axis.textContent = "−60 min … now";
  svg.appendChild(axis);
  return svg;
}

// ---- navigation ----

function route() {
  const m = location.hash.match(/^#event\/(.+)$/);
  if (m) {
    $("destinations-view").hidden = true;
    showEvent(decodeURIComponent(m[1]));
  } else if (location.hash === "#destinations") {
    showDestinations();
  } else {
    $("destinations-view").hidden = true;
    $("event-view").hidden = true;
    $("list-view").hidden = false;
    loadEvents(false);
  }
}

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  $("token").value = "";
  route();
});
$("forget").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); say("token forgotten"); });
$("filters").addEventListener("submit", (ev) => { ev.preventDefault(); loadEvents(false); });
$("more").addEventListener("click", () => loadEvents(true));
$("replay-dead").addEventListener("click", replayDead);
$("back").addEventListener("click", () => { location.hash = ""; });
$("refresh-destinations").addEventListener("click", showDestinations);
$("replay-event").addEventListener("click", () => replay($("ev-id").textContent, ""));
window.addEventListener("hashchange", route);
if (token()) $("token").placeholder = "(token set for this tab)";
route();
