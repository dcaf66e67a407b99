// Supervisor wallboard: a snapshot over REST, then live over the event stream (WebSocket),
// resuming from the last sequence number after a disconnect.
"use strict";
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
const auth = { headers: { Authorization: "Bearer " + token } };
const model = { queues: {}, agents: {}, calls: {}, seq: null };
const now = () => Date.now();
const at = (iso) => (iso ? Date.parse(iso) : now());

async function get(path) {
  const resp = await fetch(path, auth);
  if (!resp.ok) throw new Error(path + ": " + resp.status);
  return resp.json();
}

async function refreshQueues() {
  for (const q of await get("/api/v1/queues")) {
    const known = model.queues[q.id] || {};
    model.queues[q.id] = Object.assign(known, { id: q.id, sl: q.service_level_today,
      answered: q.answered_today, abandoned: q.abandoned_today });
  }
}

async function snapshot() {
  model.seq = (await get("/api/v1/health")).last_seq;  // events after this are replayed by the stream
  await refreshQueues();
  for (const a of await get("/api/v1/agents")) {
    model.agents[a.id] = { id: a.id, state: a.state, since: now() - a.seconds_in_state * 1000, call: a.call_id };
  }
  for (const c of await get("/api/v1/calls?state=active")) {
    model.calls[c.id] = { id: c.id, caller: c.caller_number, state: c.state, queue: c.queue, agent: c.agent_id,
      started: at(c.offered_at), queuedAt: c.state === "queued" ? at(c.queued_at || c.offered_at) : null,
      shownAt: null, signals: "" };
  }
}

let slRefresh = null;
function apply(e) {
  model.seq = e.seq;
  const d = e.data, call = e.call_id ? model.calls[e.call_id] : null;
  switch (e.type) {
    case "call.offered":
      model.calls[e.call_id] = { id: e.call_id, caller: d.caller_number, state: "ivr", queue: null, agent: null,
        started: at(e.occurred_at), queuedAt: null, shownAt: null, signals: "" };
      break;
    case "call.queued":
      if (call) { call.state = "queued"; call.queue = d.queue; call.queuedAt = call.queuedAt || at(e.occurred_at); }
      break;
    case "call.overflowed":
      if (call) call.queue = d.to_queue;
      break;
    case "call.agent_offered":
      if (call) { call.state = "ringing"; call.agent = d.agent_id; }
      break;
    case "call.agent_no_answer":
      if (call) { call.state = "queued"; call.agent = null; }
      break;
    case "call.answered":
      if (call) { call.state = "talking"; call.agent = d.agent_id; call.queuedAt = null; }
      clearTimeout(slRefresh); slRefresh = setTimeout(refreshQueues, 300);
      break;
    case "call.ended":
      delete model.calls[e.call_id];
      clearTimeout(slRefresh); slRefresh = setTimeout(refreshQueues, 300);
      break;
    case "agent.state_changed":
      model.agents[e.agent_id] = { id: e.agent_id, state: d.state, since: at(e.occurred_at), call: e.call_id };
      break;
    default:
      if (call && e.type.startsWith("call.analytics")) call.signals = JSON.stringify(d);
  }
}

function secs(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? s + "s" : Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
}

function rows(table, items, cells, key) {
  const body = document.querySelector("#" + table + " tbody");
  const html = items.map((it) => "<tr data-id=\"" + esc(key(it)) + "\">" + cells(it).map(
    ([v, cls]) => "<td" + (cls ? " class=\"" + cls + "\"" : "") + ">" + esc(v) + "</td>").join("") + "</tr>");
  body.innerHTML = html.join("");
}
function esc(v) { return String(v ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;" })[c]); }

function render() {
  const t = now();
  const calls = Object.values(model.calls).sort((a, b) => a.started - b.started);
  const waiting = {};
  for (const c of calls) if (c.state === "queued" && c.queue) (waiting[c.queue] = waiting[c.queue] || []).push(c);
  rows("queues", Object.values(model.queues).sort((a, b) => a.id.localeCompare(b.id)), (q) => {
    const w = waiting[q.id] || [];
    const longest = w.length ? Math.max(...w.map((c) => t - c.queuedAt)) : 0;
    return [[q.id], [w.length, "num"], [w.length ? secs(longest) : "-", "num" + (longest > 60000 ? " warn" : "")],
      [q.sl == null ? "-" : Math.round(q.sl * 100) + "%", "num"], [q.answered, "num"], [q.abandoned, "num"]];
  }, (q) => q.id);
  rows("agents", Object.values(model.agents).sort((a, b) => a.id.localeCompare(b.id), undefined),
    (a) => [[a.id], [a.state.replace("_", " "), "state-" + a.state], [secs(t - a.since), "num"],
      [a.call ? a.call.slice(0, 8) : ""]], (a) => a.id);
  rows("calls", calls, (c) => [[c.id.slice(0, 8)], [c.caller], [c.state], [c.queue || ""], [c.agent || ""],
    [secs(t - c.started), "num"], [c.signals]], (c) => c.id);
  for (const c of calls) {
    if (c.shownAt === null) c.shownAt = Date.now();
    const tr = document.querySelector("#calls tr[data-id=\"" + c.id + "\"]");
    if (tr) tr.dataset.shownAt = String(c.shownAt);
  }
  document.getElementById("seq").textContent = model.seq ?? "-";
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + "/api/v1/events/ws?after=" + model.seq +
    "&access_token=" + encodeURIComponent(token));
  const link = document.getElementById("link");
  ws.onopen = () => { link.textContent = "live"; link.className = "up"; };
  ws.onmessage = (msg) => { for (const line of msg.data.split("\n")) apply(JSON.parse(line)); render(); };
  ws.onclose = () => { link.textContent = "reconnecting"; link.className = "down"; setTimeout(connect, 1000); };
}

(async () => {
  try {
    await snapshot();
  } catch (err) {
    const link = document.getElementById("link");
    link.textContent = "error: " + err.message;
    return;
  }
  render();
  connect();
  setInterval(render, 1000);
  setInterval(refreshQueues, 15000);
})();
