// sessionmem ui: the page. Plain DOM, no framework, no build step. Every value from the
// daemon is untrusted: it reaches the page through textContent only, never as HTML.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const PAGE = 50;           // messages per "older" page
const MAX_HELD = 1000;     // messages the page holds at most (the oldest go; "older" brings them back)
const $ = (id) => document.getElementById(id);

const view = {
  follow: true,      // show the current session, and move when it moves
  pinned: false,     // `sessionmem --session ID ui`: never follow
  sid: null,         // the session shown
  rev: 0,            // its last change the page reflects
  total: 0,          // its messages, all of them
  held: 0,           // the newest of them the page shows
  task: null, ticket: null, files: [], context: {},
  loading: null,     // a load in flight: events wait in `buffered` for it
  buffered: [],
  lastRevision: 0,   // the feed's: the last change applied (the next watch starts after it)
  events: null,
};
window.sessionmemLoads = 0;  // how many snapshots the page read (tests: live updates need none)

function api(path) {
  return fetch(path, { headers: { "X-Sessionmem-Token": TOKEN }, cache: "no-store" }).then((r) => {
    if (!r.ok) { const e = new Error(path + ": HTTP " + r.status); e.status = r.status; throw e; }
    return r.json();
  });
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function setText(id, value, empty) {
  const e = $(id);
  const has = value !== null && value !== undefined && value !== "";
  e.textContent = has ? String(value) : empty;
  e.classList.toggle("empty", !has);
}

function time(ms) {
  const d = new Date(ms);
  return isNaN(d) ? "" : d.toLocaleString();
}

// -- loading a snapshot ------------------------------------------------------------
async function load(sid) {
  const q = sid ? "?session=" + encodeURIComponent(sid) : "";
  const token = {};
  view.loading = token;
  try {
    const st = await api("/api/state" + q);
    if (view.loading !== token) return;  // a newer load took over
    window.sessionmemLoads += 1;
    view.pinned = !st.follow;
    if (view.pinned) view.follow = false;
    const s = st.session;
    view.sid = s.sessionId; view.rev = s.revision; view.total = s.messagesCount;
    view.task = s.task; view.ticket = s.ticket; view.files = s.files.slice(); view.context = s.context;
    view.leases = s.leases;  // null: the daemon has no leases (older than protocol 3)
    if (!view.pinned) view.follow = view.follow || s.current;
    renderSessions(st.sessions);
    renderDetail();
    renderMessages(s.messages.slice().reverse());
    if (view.events === null) {
      view.lastRevision = st.revision;
      listen();
    }
  } finally {
    if (view.loading === token) {
      view.loading = null;
      const waiting = view.buffered;
      view.buffered = [];
      for (const ch of waiting) deliver(ch);
    }
  }
}

function loadSoon(sid) {
  load(sid).catch((e) => {
    console.error(e);
    if (e.status === 404 && sid) { view.follow = true; loadSoon(null); return; }  // it is gone: the current one
    setTimeout(() => loadSoon(sid), 1000);
  });
}

// -- the change feed ---------------------------------------------------------------
function listen() {
  const url = "/events?token=" + encodeURIComponent(TOKEN) + "&since=" + view.lastRevision;
  const es = new EventSource(url);
  view.events = es;
  es.addEventListener("hello", () => status("live"));
  es.addEventListener("change", (e) => {
    const ch = JSON.parse(e.data);
    view.lastRevision = ch.revision;
    deliver(ch);
    sessionsSoon();
  });
  es.addEventListener("reset", () => {
    // The daemon can no longer replay from our revision: read everything again.
    es.close(); view.events = null;
    loadSoon(view.follow ? null : view.sid);
  });
  es.addEventListener("down", () => status("reconnecting"));
  es.onerror = () => status(es.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
}

function status(state) {
  const e = $("status");
  e.dataset.state = state;
  e.textContent = { live: "live", reconnecting: "reconnecting…", closed: "disconnected" }[state] || state;
}

function deliver(ch) {
  if (view.loading) view.buffered.push(ch); else apply(ch);
}

function apply(ch) {
  if (ch.current !== undefined && view.follow && ch.current !== view.sid) {
    loadSoon(null);  // the current session moved: follow it
    return;
  }
  if (ch.op === "restore" && ch.revision > view.rev) {  // every session went back to its snapshot
    loadSoon(view.follow ? null : view.sid);
    return;
  }
  if (ch.sessionId !== view.sid || ch.revision <= view.rev) return;
  view.rev = ch.revision;
  switch (ch.op) {
    case "addMessage": {
      view.total += 1;
      addNewest(ch.message);
      if (ch.removed) { view.total -= ch.removed; view.held = Math.min(view.held, view.total); dropOldest(); }
      break;
    }
    case "setCurrentTask": view.task = ch.task; renderDetail(); break;
    case "setActiveTicket": view.ticket = ch.ticketId; renderDetail(); break;
    case "setContext": view.context[ch.key] = ch.value; renderDetail(); break;
    case "deleteContext": delete view.context[ch.key]; renderDetail(); break;
    case "trackOpenFile": if (!view.files.includes(ch.filePath)) view.files.push(ch.filePath); renderDetail(); break;
    case "untrackFile": view.files = view.files.filter((f) => f !== ch.filePath); renderDetail(); break;
    case "acquireLease":
      view.leases = (view.leases || []).filter((l) => l.name !== ch.lease.name).concat([ch.lease]); renderDetail(); break;
    case "releaseLease": case "leaseExpired":
      view.leases = (view.leases || []).filter((l) => l.name !== ch.lease.name); renderDetail(); break;
    case "deleteSession": loadSoon(null); break;  // the shown session is gone: show the current one
    default: loadSoon(view.sid);  // popMessage, trimMessages, clear, importSession, restore: re-read it
  }
}

// -- the sessions list: re-read after changes, at most one read in flight -----------
let sessionsBusy = false, sessionsAgain = false;
function sessionsSoon() {
  if (sessionsBusy) { sessionsAgain = true; return; }
  sessionsBusy = true;
  setTimeout(() => {
    api("/api/sessions").then((r) => renderSessions(r.sessions)).catch((e) => console.error(e)).finally(() => {
      sessionsBusy = false;
      if (sessionsAgain) { sessionsAgain = false; sessionsSoon(); }
    });
  }, 200);
}

function renderSessions(sessions) {
  const ul = $("sessions");
  ul.replaceChildren();
  $("sessions-count").textContent = String(sessions.length);
  for (const s of sessions) {
    const li = el("li");
    li.dataset.sessionId = s.sessionId;
    if (s.sessionId === view.sid) li.setAttribute("aria-current", "true");
    const head = el("div", "sid", s.sessionId);
    if (s.current) head.append(el("span", "cur", "current"));
    li.append(head);
    li.append(el("div", "sub", s.messagesCount + " msg · " + s.filesOpenCount + " files · " + s.contextKeysCount + " keys"));
    if (s.currentTask) li.append(el("div", "sub", "task: " + s.currentTask));
    li.addEventListener("click", () => {
      if (view.pinned) view.pinned = false;
      view.follow = s.current;
      loadSoon(s.current ? null : s.sessionId);
    });
    ul.append(li);
  }
}

function renderDetail() {
  $("session-title").textContent = view.follow ? "Current session" : "Session";
  $("session-id").textContent = view.sid || "";
  $("session-rev").textContent = "r" + view.rev;
  $("follow").textContent = view.pinned ? "pinned by --session" : view.follow ? "following the current session" : "not following";
  setText("task", view.task, "none");
  setText("ticket", view.ticket, "none");
  // Name, owner, token: what the feed keeps current (a renewal moves the expiry without
  // a change, so the page does not show one it cannot keep right).
  setText("leases", view.leases === null ? null : view.leases.map((l) =>
    l.name + " (" + l.owner + ", token " + l.token + (l.expiresAt === null ? ", until its connection closes" : "") +
    ")").join("; "), view.leases === null ? "not available (this daemon has no leases)" : "none");
  const files = $("files");
  files.replaceChildren(...view.files.map((f) => el("li", null, f)));
  $("files-count").textContent = String(view.files.length);
  const table = $("context");
  const keys = Object.keys(view.context).sort();
  table.replaceChildren(...keys.map((k) => {
    const tr = el("tr");
    const v = el("td");
    v.append(el("pre", null, JSON.stringify(view.context[k], null, 1)));
    tr.append(el("td", null, k), v);
    return tr;
  }));
  $("context-count").textContent = String(keys.length);
  for (const li of $("sessions").children) {
    if (li.dataset.sessionId === view.sid) li.setAttribute("aria-current", "true"); else li.removeAttribute("aria-current");
  }
}

// -- the conversation, newest first --------------------------------------------------
function messageItem(m) {
  const li = el("li");
  li.dataset.role = String(m.role);
  const head = el("div", "head");
  head.append(el("span", "role", m.role), el("span", "time", time(m.timestamp)));
  li.append(head, el("div", "content", m.content));
  return li;
}

function renderMessages(newestFirst) {
  $("messages").replaceChildren(...newestFirst.map(messageItem));
  view.held = newestFirst.length;
  renderCount();
}

function addNewest(m) {
  $("messages").prepend(messageItem(m));
  view.held += 1;
  dropOldest();
}

function dropOldest() {
  const ol = $("messages");
  while (ol.children.length > Math.min(view.held, MAX_HELD)) ol.lastElementChild.remove();
  view.held = ol.children.length;
  renderCount();
}

function renderCount() {
  $("messages-count").textContent = view.held + " of " + view.total;
  $("older").hidden = view.held >= view.total;
}

async function older() {
  const sid = view.sid;
  for (let tries = 0; tries < 20 && sid === view.sid; tries++) {
    // The page holds the newest view.held of view.total: the page before them, by index
    // (getRecentMessages before), so a deep page costs what a first one does.
    const before = Math.max(0, view.total - view.held);
    const r = await api("/api/messages?session=" + encodeURIComponent(sid) + "&before=" + before + "&limit=" + PAGE);
    if (sid !== view.sid) return;
    if (r.revision === view.rev && !view.loading) {  // read at the revision the page shows: they fit
      $("messages").append(...r.messages.slice().reverse().map(messageItem));
      view.held += r.messages.length;
      renderCount();
      return;
    }
    await new Promise((ok) => setTimeout(ok, 100));  // the feed has not caught up yet (or went on)
  }
}

// Search (searchMessages over every session). The daemon marks each match in a
// snippet between U+0002 and U+0003: split on them and build <mark>s with textContent.
function snippetNodes(snippet) {
  const out = [];
  String(snippet).split("\u0002").forEach((part, i) => {
    if (i === 0) { out.push(document.createTextNode(part)); return; }
    const end = part.indexOf("\u0003");
    const hit = end < 0 ? part : part.slice(0, end);
    out.push(el("mark", null, hit));
    if (end >= 0) out.push(document.createTextNode(part.slice(end + 1)));
  });
  return out;
}

function hitItem(h) {
  const li = el("li", "hit");
  const head = el("div", "hit-head");
  head.append(el("span", "mono", h.sessionId), el("span", "muted", " #" + h.index + " "),
              el("span", "role", h.role), el("span", "muted", " " + new Date(h.timestamp).toLocaleString()));
  const body = el("div", "hit-snippet");
  body.append(...snippetNodes(h.snippet));
  li.append(head, body);
  return li;
}

async function search(q) {
  const box = $("results"), list = $("hits");
  if (!q.trim()) { box.hidden = true; return; }
  const r = await fetch("api/search?q=" + encodeURIComponent(q),
                        { headers: { "X-Sessionmem-Token": TOKEN }, cache: "no-store" });
  const body = await r.json();
  box.hidden = false;
  if (!r.ok) {
    list.replaceChildren(el("li", "empty", body.error || ("HTTP " + r.status)));
    $("results-count").textContent = "";
    return;
  }
  list.replaceChildren(...(body.hits.length ? body.hits.map(hitItem) : [el("li", "empty", "no message matches")]));
  $("results-count").textContent = body.hits.length + (body.nextCursor ? "+" : "") +
    (body.complete ? "" : " (index still being built: some may be missing)");
}

document.addEventListener("DOMContentLoaded", () => {
  $("older").addEventListener("click", () => { older().catch((e) => console.error(e)); });
  $("search").addEventListener("submit", (e) => {
    e.preventDefault();
    search($("search-input").value).catch((err) => console.error(err));
  });
  $("results-close").addEventListener("click", () => { $("results").hidden = true; });
  loadSoon(null);
});
