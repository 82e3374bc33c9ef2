#include "gateway/dashboard.h"

namespace buildd::gateway {

namespace {

// Signing in trades the key for a session: an HttpOnly cookie that fetch and
// EventSource send by themselves; the page never keeps the key. Requests
// that change something send JSON, which the gateway requires of
// cookie-signed requests (with their Origin). Text from the API is only
// ever set through textContent.
constexpr char kPage[] = R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>buildd</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}
#events{font:12px ui-monospace,monospace;list-style:none;padding:0;max-height:24em;overflow:auto}
#events li{border-bottom:1px solid #eee;padding:2px 0}
.err{color:#b00}
</style></head><body>
<h1>buildd</h1>
<form id="signin"><input id="key" type="password" size="48" placeholder="API key (buildd_...)" autocomplete="off" aria-label="API key">
<button>Sign in</button> <button id="signout" type="button">Sign out</button> <span id="who"></span></form>
<h2>Tasks <button id="reload" type="button">Reload</button></h2>
<table><thead><tr><th>Title</th><th>State</th><th>Provider</th><th>Workspace</th><th>Updated</th><th>Id</th><th>Result</th></tr></thead>
<tbody id="tasks"></tbody></table>
<h2>Events <span id="live"></span></h2>
<ul id="events"></ul>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const TYPES = ["created","assigned","rejected","requeued","started","status","output","git",
  "session","assistant_message","tool_use","tool_result","result","warning","plan","question",
  "input","budget","completed","error","failed","canceled"];
let source = null, reloadTimer = null;
function show(el, text, bad) { el.textContent = text; el.className = bad ? "err" : ""; }
async function api(path, options) {
  options = Object.assign({credentials: "same-origin"}, options || {});
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
  return body;
}
async function signIn(k) {
  const body = await api("/api/session", {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify({apiKey: k})});
  const p = body.principal || {};
  show($("who"), "signed in as " + p.accountId + (p.isAdmin ? " (admin)" : ""));
  await loadTasks();
  listen();
}
async function signOut() {
  await api("/api/session", {method: "DELETE"});
  if (source) source.close();
  source = null;
  $("tasks").replaceChildren();
  show($("who"), "signed out");
  show($("live"), "");
}
// Whether the tasks could be read (`quiet`: without saying why not).
async function loadTasks(quiet) {
  const tbody = $("tasks");
  try {
    const body = await api("/api/tasks?limit=100");
    tbody.replaceChildren();
    for (const t of body.tasks || []) {
      const row = document.createElement("tr");
      for (const v of [t.title, t.state, t.provider, t.workspaceId, t.updatedAt, t.id]) {
        const cell = document.createElement("td");
        cell.textContent = v || "";
        row.append(cell);
      }
      row.append(resultCell(t));
      tbody.append(row);
    }
    return true;
  } catch (e) {
    if (!quiet) show($("who"), e.message, true);
    return false;
  }
}
// What a task left, or, while it waits for input, a box to answer it.
function resultCell(t) {
  const cell = document.createElement("td");
  const a = t.artifacts || {};
  if (t.state === "waiting_input" && t.workerId) {
    const form = document.createElement("form");
    const text = document.createElement("input");
    text.placeholder = "answer (empty: approve)";
    const send = document.createElement("button");
    send.textContent = "Send";
    form.append(text, " ", send);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const body = text.value.trim() ? {text: text.value} : {approve: true};
      api("/api/workers/" + t.workerId + "/input", {method: "POST",
          headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)})
        .then(() => loadTasks()).catch((err) => show($("who"), err.message, true));
    });
    cell.append(form);
  } else {
    cell.textContent = [a.commitSha ? a.branch + " @ " + a.commitSha.slice(0, 10) : "",
      a.costUsd ? "$" + a.costUsd.toFixed(4) : "", t.error || ""].filter(Boolean).join("  ");
  }
  return cell;
}
function addEvent(type, e) {
  let text = "";
  try { const ev = JSON.parse(e.data); text = [ev.taskId, ev.status, ev.text].filter(Boolean).join("  "); }
  catch (_) { text = e.data; }
  const item = document.createElement("li");
  item.textContent = "#" + e.lastEventId + " " + type + "  " + text;
  const list = $("events");
  list.prepend(item);
  while (list.children.length > 300) list.lastChild.remove();
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => loadTasks(), 500);
}
function listen() {
  if (source) source.close();
  source = new EventSource("/api/events");
  for (const type of TYPES) source.addEventListener(type, (e) => { if (e.data) addEvent(type, e); });
  source.onopen = () => show($("live"), "(live)");
  source.onerror = () => show($("live"), "(reconnecting...)", true);
}
$("signin").addEventListener("submit", (e) => {
  e.preventDefault();
  signIn($("key").value.trim()).catch((err) => show($("who"), err.message, true));
  $("key").value = "";
});
$("reload").addEventListener("click", () => loadTasks());
$("signout").addEventListener("click", () => signOut().catch((err) => show($("who"), err.message, true)));
// A session from earlier in this browser.
loadTasks(true).then((signedIn) => { if (signedIn) listen(); });
</script></body></html>
)html";

}  // namespace

absl::string_view DashboardHtml() { return absl::string_view(kPage, sizeof(kPage) - 1); }

}  // namespace buildd::gateway
