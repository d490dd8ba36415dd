// storehook console: plain JavaScript, no dependencies. Every value from the
// server is put in the page with textContent (never as HTML): ids, types and
// store bodies are data, not markup.
"use strict";

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else if (k === "onclick") e.addEventListener("click", v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function api(path, options) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  if (r.status === 401) {
    location.reload();
    throw new Error("signed out");
  }
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

function postJson(path, value) {
  return api(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(value),
  });
}

// ------------------------------------------------------------- sign in

const loginForm = $("#login-form");
if (loginForm) {
  loginForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await fetch("/_storehook/session", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token: $("#token").value }),
    });
    if (r.status === 204) location.reload();
    else $("#login-error").textContent = "That is not the admin token.";
  });
} else {
  start();
}

// ------------------------------------------------------------- console

function time(ms) {
  return new Date(ms).toISOString().replace("T", " ").replace("Z", "");
}

function groupLink(group) {
  return el("a", { href: "#", class: "group", "data-group": group, onclick: (e) => { e.preventDefault(); openTimeline(group); } }, group);
}

let cursor = 0;
const delivered = new Map(); // event id -> last delivery entry

function feedRows(item) {
  if (item.kind === "notification") {
    const result = item.status >= 200 && item.status < 300
      ? `accepted (${item.status})`
      : `refused ${item.status} ${item.code || ""}`;
    if (!item.events.length) {
      return [el("tr", { class: "feed-row notification " + (item.status >= 400 ? "refused" : "") },
        el("td", {}, time(item.at)), el("td", {}, "notification"), el("td", {}, item.store),
        el("td", {}, "–"), el("td", {}, "–"), el("td", {}, ""), el("td", { class: "result" }, result))];
    }
    return item.events.map((ev) => el("tr", { class: "feed-row notification", "data-event-id": ev.id, "data-group": ev.group },
      el("td", {}, time(item.at)), el("td", {}, "notification → event"), el("td", {}, item.store),
      el("td", { class: "type" }, ev.type), el("td", {}, groupLink(ev.group)), el("td", {}, ""),
      el("td", { class: "result", "data-delivery-for": ev.id }, result)));
  }
  delivered.set(item.event_id, item);
  const status = item.status === null || item.status === undefined ? "no answer" : `HTTP ${item.status}`;
  return [el("tr", { class: "feed-row delivery " + item.outcome, "data-event-id": item.event_id, "data-group": item.group },
    el("td", {}, time(item.at)), el("td", {}, "delivery"), el("td", {}, ""),
    el("td", { class: "type" }, item.type), el("td", {}, groupLink(item.group)),
    el("td", { class: "seq" }, item.sequence),
    el("td", { class: "result" }, `${item.outcome}, attempt ${item.attempt} (${status})`))];
}

async function pollFeed() {
  try {
    const r = await api(`/_storehook/api/feed?after=${cursor}`);
    const rows = $("#feed-rows");
    for (const item of r.body.items) {
      cursor = Math.max(cursor, item.seq);
      for (const row of feedRows(item)) rows.prepend(row);
    }
  } catch (e) {
    // shown as a stale feed; the next poll tries again
  }
}

async function openTimeline(group) {
  const r = await api(`/_storehook/api/timeline?group=${encodeURIComponent(group)}`);
  const panel = $("#timeline");
  panel.hidden = false;
  $("#timeline-group").textContent = group;
  const list = $("#timeline-events");
  list.replaceChildren();
  if (r.status !== 200) {
    $("#timeline-summary").textContent = r.body && r.body.error ? r.body.error.message : `HTTP ${r.status}`;
    return;
  }
  const s = r.body.subscription;
  $("#timeline-summary").textContent = s
    ? `now: ${s.status}, ${r.body.entitlement.active ? "entitled" : "not entitled"}, expires ${s.expires_at || "–"}, sequence ${r.body.sequence}`
    : `sequence ${r.body.sequence}`;
  for (const { event: e, delivery: d } of r.body.events) {
    const snap = e.subscription;
    const deliveryText = d
      ? (d.delivered_at ? `delivered (attempt ${d.attempts})` : `not delivered yet (attempt ${d.attempts}, ${d.last_status ? "HTTP " + d.last_status : "no answer"})`)
      : "no delivery record";
    list.append(el("li", { class: "timeline-event", "data-event-id": e.id },
      el("div", { class: "headline" }, el("span", { class: "seq" }, `#${e.sequence}`), " ", el("strong", {}, e.type), " ", el("span", { class: "when" }, e.occurred_at)),
      el("div", {}, snap ? `status ${snap.status}, auto-renew ${snap.auto_renew ? "on" : "off"}, expires ${snap.expires_at || "–"}` : "no subscription snapshot",
        ` · ${e.entitlement.active ? "entitled" : "not entitled"} · `, el("span", { class: "delivery" }, deliveryText)),
      el("details", {}, el("summary", {}, "event JSON"), el("pre", {}, JSON.stringify(e, null, 2)))));
  }
}

async function loadDead() {
  const r = await api("/_storehook/dead-letters");
  const rows = $("#dead-rows");
  rows.replaceChildren();
  const items = (r.body && r.body.dead_letters) || [];
  $("#dead-count").textContent = items.length;
  $("#dead-empty").hidden = items.length > 0;
  for (const d of items) {
    const button = el("button", { class: "replay", "data-event-id": d.event_id, onclick: () => replay(d.event_id, button) }, "Replay");
    rows.append(el("tr", { class: "dead-row", "data-event-id": d.event_id },
      el("td", {}, d.event_id), el("td", {}, groupLink(d.group)), el("td", {}, d.attempts), el("td", {}, d.reason || ""), el("td", {}, button)));
  }
}

async function replay(eventId, button) {
  button.disabled = true;
  const r = await postJson("/_storehook/replay", { event_ids: [eventId] });
  button.textContent = r.status === 200 ? "Replayed" : `Failed (${r.status})`;
  setTimeout(loadDead, 500);
}

function parseHeaders(text) {
  const out = {};
  for (const line of text.split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

async function translate(e) {
  e.preventDefault();
  const result = $("#translate-result");
  result.replaceChildren(el("p", { class: "hint" }, "…"));
  const query = $("#translate-query").value.trim();
  const r = await postJson("/_storehook/api/translate", {
    store: $("#translate-store").value,
    body: $("#translate-body").value,
    headers: parseHeaders($("#translate-headers").value),
    query: query || null,
  });
  result.replaceChildren();
  const b = r.body || {};
  if (b.error) {
    result.append(el("p", { class: "error", id: "translate-error" },
      `Refused: ${b.error.status ? "HTTP " + b.error.status + " " : ""}${b.error.code} — ${b.error.message}`));
    return;
  }
  result.append(el("p", { id: "translate-summary" }, `${b.events.length} event(s)`));
  for (const ev of b.events) {
    result.append(el("div", { class: "translated", "data-type": ev.type },
      el("strong", {}, ev.type), " ", ev.subscription ? `${ev.subscription.status}, ` : "", ev.entitlement.active ? "entitled" : "not entitled",
      el("pre", {}, JSON.stringify(ev, null, 2))));
  }
}

function start() {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
      for (const p of document.querySelectorAll(".panel")) p.classList.toggle("active", p.id === tab.dataset.tab);
      if (tab.dataset.tab === "dead") loadDead();
    });
  }
  $("#timeline-close").addEventListener("click", () => { $("#timeline").hidden = true; });
  $("#translate-form").addEventListener("submit", translate);
  pollFeed();
  loadDead();
  setInterval(pollFeed, 1000);
  setInterval(loadDead, 5000);
}
