// The buildd dashboard: one page, routed by the URL's hash (#/board,
// #/tasks/:id, #/new, #/runners, #/admin), over the gateway's REST and SSE
// API.
//
// Signing in trades the key for a session: an HttpOnly cookie that fetch and
// EventSource send by themselves; the page never keeps the key. Requests that
// change something send JSON, which the gateway requires of cookie-signed
// requests (with their Origin). Text from the API only ever reaches the page
// through text nodes (textContent), never as markup.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);

  // Every event type the broker and runners write (SSE `event:` names).
  const EVENT_TYPES = [
    "created", "assigned", "rejected", "requeued", "started", "status", "output", "git",
    "session", "assistant_message", "tool_use", "tool_result", "result", "warning", "plan",
    "question", "input", "budget", "progress", "completed", "error", "failed", "canceled",
    "message", "comment", "pull_request", "pull_request_failed",
  ];
  const TERMINAL = new Set(["completed", "failed", "canceled"]);
  const COLUMNS = [
    {key: "pending", title: "Pending", states: ["pending"]},
    {key: "running", title: "Running", states: ["assigned", "running"]},
    {key: "waiting", title: "Waiting for input", states: ["waiting_input"]},
    {key: "done", title: "Done", states: ["completed"]},
    {key: "failed", title: "Failed / canceled", states: ["failed", "canceled"]},
  ];
  const WAITING_REASONS = {
    no_runner: "no connected runner has its provider or labels",
    runners_busy: "every eligible runner is busy",
    branch_busy: "its branch is busy with another task",
    budget: "its account reached today's cost cap",
    account_limit: "its account runs as many workers as it may",
  };
  const PROVIDERS = [
    {value: "claude", label: "Claude Code"},
    {value: "codex", label: "Codex"},
    {value: "command", label: "Shell command"},
  ];

  const S = {
    me: null,               // {accountId, name, isAdmin}
    workspaces: new Map(),  // id → Workspace
    accounts: new Map(),    // id → Account (admins only)
    tasks: new Map(),       // id → Task, as the board shows them
    lastEventId: 0,
    source: null,
    retryTimer: null,
    dropped: false,         // the stream broke since it last opened
    pending: new Set(),     // task ids whose rows are to be read again
    pendingTimer: null,
    onTasks: null,          // the board's re-render, while it is shown
    cleanup: null,          // the current view's teardown
    filter: {workspace: "", text: ""},
  };

  // ---- DOM helpers -------------------------------------------------------

  // h("a", {href: "#/x", class: "c"}, "text", child): an element; strings
  // become text nodes.
  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }
  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }
  function clear(node, ...children) {
    node.replaceChildren();
    return append(node, children);
  }
  let idCounter = 0;
  const nextId = (prefix) => `${prefix}-${++idCounter}`;
  // A labelled control: [label, control].
  function field(labelText, control, hint) {
    if (!control.id) control.id = nextId("f");
    return h("div", {class: "field"}, h("label", {for: control.id, text: labelText}), control,
             hint ? h("div", {class: "muted", text: hint}) : null);
  }
  function checkbox(labelText, checked, name) {
    const box = h("input", {type: "checkbox", name, checked});
    box.id = nextId("c");
    return {box, node: h("label", {class: "inline", for: box.id}, box, labelText)};
  }
  function badge(state) {
    return h("span", {class: `badge state-${state || "unknown"}`, text: label(state)});
  }
  function label(state) {
    return String(state || "").replace(/_/g, " ");
  }
  function short(id) {
    return String(id || "").slice(0, 8);
  }
  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString();
  }
  function fmtCost(usd) {
    return typeof usd === "number" ? `$${usd.toFixed(usd < 1 ? 4 : 2)}` : "";
  }
  let toastTimer = null;
  function toast(text, bad) {
    const node = $("toast");
    node.textContent = text;
    node.className = bad ? "toast error" : "toast";
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { node.hidden = true; }, 6000);
  }

  // ---- API ---------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }
  async function api(path, options) {
    const {method = "GET", body} = options || {};
    const init = {method, credentials: "same-origin", headers: {Accept: "application/json"}};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const text = await response.text();
    let data = {};
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = {}; }
    }
    if (!response.ok) {
      const message = (data.error && data.error.message) || response.statusText ||
                      `HTTP ${response.status}`;
      // The session ended (expired, revoked, its key revoked) while the page
      // was open.
      if (response.status === 401 && S.me && path !== "/api/session") sessionEnded();
      throw new ApiError(response.status, message);
    }
    return data;
  }
  const post = (path, body) => api(path, {method: "POST", body});
  // Runs `action`, saying what went wrong in a toast; `button` is disabled
  // meanwhile.
  async function act(button, action) {
    if (button) button.disabled = true;
    try {
      return await action();
    } catch (e) {
      toast(e.message, true);
      return undefined;
    } finally {
      if (button) button.disabled = false;
    }
  }

  // ---- Session -----------------------------------------------------------

  // Who the session acts as, kept in localStorage across reloads (no
  // credential: the account's id, name and whether it is an admin).
  const ME_KEY = "buildd.principal";
  async function loadMe(principal) {
    const me = {accountId: principal.accountId || "", isAdmin: !!principal.isAdmin,
                type: principal.type || "", name: principal.name || ""};
    if (!me.name) {
      try {
        me.name = (await api(`/api/accounts/${encodeURIComponent(me.accountId)}`)).name || "";
      } catch (_) { /* the id stands in for the name */ }
    }
    localStorage.setItem(ME_KEY, JSON.stringify(me));
    S.me = me;
    showSignedIn();
    await loadNames();
    connectEvents();
  }
  // The session this browser holds, if any: its account, from the caller's
  // own session list.
  async function restoreSession() {
    let kept = {};
    try { kept = JSON.parse(localStorage.getItem(ME_KEY) || "{}") || {}; } catch (_) { kept = {}; }
    try {
      const list = await api("/api/sessions");
      const session = (list.sessions || [])[0];
      if (!session) return false;
      await loadMe(kept.accountId === session.accountId ? kept : {accountId: session.accountId});
      return true;
    } catch (_) {
      localStorage.removeItem(ME_KEY);
      return false;
    }
  }
  function showSignedIn() {
    $("nav").hidden = false;
    $("nav-admin").hidden = !S.me.isAdmin;
    $("signout").hidden = false;
    const who = S.me.name || `${S.me.type ? `${S.me.type} account ` : "account "}${short(S.me.accountId)}`;
    $("who").textContent = `Signed in as ${who}${S.me.isAdmin ? " (admin)" : ""}`;
    $("who").title = S.me.accountId;
  }
  // Back to signing in, saying why.
  function sessionEnded() {
    forgetSession();
    route();
    const error = document.querySelector("#view .error");
    if (error) error.textContent = "Your session ended: sign in again.";
  }
  function forgetSession() {
    closeEvents();
    S.me = null;
    localStorage.removeItem(ME_KEY);
    S.tasks.clear();
    S.lastEventId = 0;
    $("nav").hidden = true;
    $("signout").hidden = true;
    $("who").textContent = "";
    setLive("");
  }
  async function signOut() {
    try { await api("/api/session", {method: "DELETE"}); } catch (e) { toast(e.message, true); }
    forgetSession();
    location.hash = "#/board";
    route();
  }
  async function loadNames() {
    try {
      const ws = await api("/api/workspaces");
      S.workspaces = new Map((ws.workspaces || []).map((w) => [w.id, w]));
    } catch (e) { toast(e.message, true); }
    if (S.me && S.me.isAdmin) {
      try {
        const acc = await api("/api/accounts");
        S.accounts = new Map((acc.accounts || []).map((a) => [a.id, a]));
      } catch (_) { /* names stay ids */ }
    }
  }
  const workspaceName = (id) => (S.workspaces.get(id) || {}).name || short(id);
  function accountName(id) {
    if (!id) return "";
    if (S.me && id === S.me.accountId) return S.me.name || "you";
    return (S.accounts.get(id) || {}).name || short(id);
  }

  function viewSignIn() {
    const key = h("input", {type: "password", autocomplete: "off", placeholder: "buildd_…",
                            required: true});
    const error = h("p", {class: "error", role: "alert"});
    const submit = h("button", {type: "submit", text: "Sign in"});
    const form = h("form", {class: "panel signin", "aria-labelledby": "signin-title"},
                   h("h1", {id: "signin-title", text: "Sign in"}),
                   field("API key", key, "The key is traded for a session cookie and not kept."),
                   h("div", {class: "actions"}, submit), error);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      error.textContent = "";
      submit.disabled = true;
      try {
        const made = await post("/api/session", {apiKey: key.value.trim()});
        key.value = "";
        await loadMe(made.principal || {});
        route();
      } catch (err) {
        error.textContent = err.status === 401 ? "That key was refused." : err.message;
      } finally {
        submit.disabled = false;
      }
    });
    clear($("view"), form);
    key.focus();
  }

  // ---- Live events -------------------------------------------------------

  function setLive(state) {
    const node = $("live");
    node.className = `live ${state === "live" ? "on" : state ? "off" : ""}`;
    node.textContent = {live: "live", reconnecting: "reconnecting…", offline: "offline"}[state] || "";
  }
  function closeEvents() {
    clearTimeout(S.retryTimer);
    if (S.source) S.source.close();
    S.source = null;
  }
  const isMessage = (e) => e instanceof MessageEvent && typeof e.data === "string" && e.data !== "";
  // One stream of every event the account may see; EventSource resumes it by
  // itself after a dropped connection (with Last-Event-ID). A stream the
  // browser gave up on (an error answer) is opened again after the last id.
  function connectEvents() {
    closeEvents();
    // The board reads the tasks themselves: the stream starts now, not with
    // the whole history, until it has an id to resume after.
    const url = S.lastEventId ? `/api/events?lastEventId=${S.lastEventId}` : "/api/events?fromNow=true";
    const source = new EventSource(url);
    S.source = source;
    source.onopen = () => {
      setLive("live");
      if (S.dropped || !S.lastEventId) {
        S.dropped = false;
        // Whatever the stream cannot replay: rows changed meanwhile, or
        // before it started.
        refreshTasks();
      }
    };
    source.onerror = (e) => {
      // An event the server named "error" (an attempt's) is news, not a
      // broken connection: onEvent has it.
      if (isMessage(e) || source.readyState === EventSource.OPEN) return;
      S.dropped = true;
      if (source.readyState === EventSource.CLOSED) {
        setLive("offline");
        S.retryTimer = setTimeout(async () => {
          if (!S.me) return;
          // A refusal (the session ended) signs the page out; else retry.
          try { await api("/api/sessions"); } catch (_) { /* retried below, or signed out */ }
          if (S.me) connectEvents();
        }, 2000);
      } else {
        setLive("reconnecting");
      }
    };
    const onEvent = (message) => {
      // "error" is also the name of the connection's own error event, which
      // carries no data.
      if (!isMessage(message)) return;
      const id = Number(message.lastEventId);
      if (id > S.lastEventId) S.lastEventId = id;
      setLive("live");
      let event;
      try { event = JSON.parse(message.data); } catch (_) { return; }
      if (event.taskId) taskChanged(event.taskId);
    };
    for (const type of EVENT_TYPES) source.addEventListener(type, onEvent);
    source.onmessage = onEvent;
  }
  // Reads the rows of changed tasks again, a moment later (many events come
  // in bursts); many at once read the whole list.
  function taskChanged(id) {
    S.pending.add(id);
    if (S.pendingTimer) return;
    S.pendingTimer = setTimeout(async () => {
      S.pendingTimer = null;
      const ids = [...S.pending];
      S.pending.clear();
      if (ids.length > 20) return refreshTasks();
      await Promise.all(ids.map(async (taskId) => {
        try {
          const got = await api(`/api/tasks/${encodeURIComponent(taskId)}`);
          if (got.task) upsertTask(got.task);
        } catch (_) { /* gone or not visible: the next list read settles it */ }
      }));
      if (S.onTasks) S.onTasks();
    }, 150);
  }
  const updated = (task) => Date.parse(task.updatedAt || "") || 0;
  // Keeps the newer of two reads of a task (reads may answer out of order).
  function upsertTask(task) {
    const had = S.tasks.get(task.id);
    if (had && updated(had) > updated(task)) return;
    S.tasks.set(task.id, task);
  }
  async function refreshTasks() {
    try {
      const list = await api("/api/tasks?limit=1000");
      const fresh = new Map();
      for (const task of list.tasks || []) {
        const had = S.tasks.get(task.id);
        fresh.set(task.id, had && updated(had) > updated(task) ? had : task);
      }
      S.tasks = fresh;
      if (S.onTasks) S.onTasks();
    } catch (e) {
      toast(e.message, true);
    }
  }

  // ---- Board -------------------------------------------------------------

  function viewBoard() {
    const workspace = h("select", {name: "workspace"}, h("option", {value: "", text: "All workspaces"}),
                        [...S.workspaces.values()].map((w) => h("option", {value: w.id, text: w.name})));
    workspace.value = S.filter.workspace;
    const search = h("input", {type: "search", name: "search", placeholder: "title, prompt, branch, id"});
    search.value = S.filter.text;
    const reload = h("button", {type: "button", class: "secondary", text: "Reload"});
    const board = h("div", {class: "board", id: "board"});
    const count = h("p", {class: "muted", id: "board-count", "aria-live": "polite"});
    const render = () => renderBoard(board, count);
    workspace.addEventListener("change", () => { S.filter.workspace = workspace.value; render(); });
    search.addEventListener("input", () => { S.filter.text = search.value; render(); });
    reload.addEventListener("click", () => act(reload, refreshTasks));
    clear($("view"),
          h("h1", {text: "Board"}),
          h("div", {class: "toolbar"}, field("Workspace", workspace), field("Search", search), reload),
          count, board);
    S.onTasks = render;
    render();
    refreshTasks();
    return () => { S.onTasks = null; };
  }
  function matches(task) {
    if (S.filter.workspace && task.workspaceId !== S.filter.workspace) return false;
    const text = S.filter.text.trim().toLowerCase();
    if (!text) return true;
    return [task.title, task.prompt, task.command, task.workBranch, task.id, task.provider,
            workspaceName(task.workspaceId)]
        .some((v) => String(v || "").toLowerCase().includes(text));
  }
  function renderBoard(board, count) {
    // The board is drawn anew on each change; a card link that had the
    // keyboard's focus keeps it.
    const focused = document.activeElement && document.activeElement.closest &&
                    document.activeElement.closest(".card[data-task-id]");
    const focusedId = focused && board.contains(focused) ? focused.dataset.taskId : "";
    drawBoard(board, count);
    if (focusedId) {
      const again = board.querySelector(`.card[data-task-id="${CSS.escape(focusedId)}"] a`);
      if (again) again.focus();
    }
  }
  function drawBoard(board, count) {
    const shown = [...S.tasks.values()].filter(matches);
    count.textContent = `${shown.length} task${shown.length === 1 ? "" : "s"}`;
    board.replaceChildren();
    for (const column of COLUMNS) {
      const tasks = shown.filter((t) => column.states.includes(t.state));
      if (column.key === "pending") {
        tasks.sort((a, b) => (a.queuePosition || 1e9) - (b.queuePosition || 1e9) ||
                             (a.createdAt || "").localeCompare(b.createdAt || ""));
      } else {
        tasks.sort((a, b) => updated(b) - updated(a));
      }
      const headingId = `col-${column.key}`;
      board.append(h("section", {class: "column", "aria-labelledby": headingId, "data-column": column.key},
                     h("h2", {id: headingId}, h("span", {text: column.title}),
                       h("span", {class: "muted", text: String(tasks.length)})),
                     h("ol", null, tasks.map(card))));
    }
  }
  function card(task) {
    const meta = [workspaceName(task.workspaceId), task.provider,
                  task.createdBy ? `by ${accountName(task.createdBy)}` : "", fmtTime(task.updatedAt)]
        .filter(Boolean).join(" · ");
    const item = h("li", {class: "card", "data-task-id": task.id},
                   h("a", {class: "title", href: `#/tasks/${encodeURIComponent(task.id)}`,
                           text: task.title || task.prompt || task.command || short(task.id)}),
                   h("div", {class: "meta", text: meta}));
    if (task.state === "pending") {
      const text = waitingText(task);
      if (text) item.append(h("div", {class: "waiting", text}));
    } else if (task.state === "failed" && task.error) {
      item.append(h("div", {class: "waiting error", text: task.error}));
    } else if (task.state !== "completed" && task.state !== "canceled") {
      item.append(h("div", {class: "meta"}, badge(task.state)));
    }
    return item;
  }

  // Where a pending task is in the queue and why it waits.
  function waitingText(task) {
    const parts = [];
    if (task.queuePosition) parts.push(`#${task.queuePosition} in the queue`);
    // The broker's detail says it more exactly than the reason's name.
    if (task.waitingDetail) {
      parts.push(`waiting: ${task.waitingDetail}`);
    } else if (task.waitingReason) {
      parts.push(`waiting: ${WAITING_REASONS[task.waitingReason] || label(task.waitingReason)}`);
    }
    return parts.join(" — ");
  }

  // ---- Task page ---------------------------------------------------------

  function viewTask(taskId) {
    const path = `/api/tasks/${encodeURIComponent(taskId)}`;
    const head = h("div", {class: "task-head"});
    const controls = h("div", {class: "actions", role: "group", "aria-label": "Task controls"});
    const promptBox = h("section", {class: "panel prompt-box", hidden: true, "aria-live": "polite"});
    const log = h("ol", {class: "log", "aria-label": "Log"});
    const facts = h("dl", {class: "facts"});
    const artifacts = h("div");
    const attempts = h("div", {class: "table-scroll"});
    const diff = h("section", {class: "panel", hidden: true, "aria-labelledby": "changes-title"});
    clear($("view"),
          h("p", null, h("a", {href: "#/board", text: "← Board"})),
          head, controls, promptBox,
          h("div", {class: "task-layout"},
            h("section", {class: "panel", "aria-labelledby": "log-title"},
              h("h2", {id: "log-title", text: "Log"}), log),
            h("div", null,
              h("section", {class: "panel", "aria-labelledby": "facts-title"},
                h("h2", {id: "facts-title", text: "Details"}), facts),
              h("section", {class: "panel", "aria-labelledby": "artifacts-title"},
                h("h2", {id: "artifacts-title", text: "Artifacts"}), artifacts),
              h("section", {class: "panel", "aria-labelledby": "attempts-title"},
                h("h2", {id: "attempts-title", text: "Attempts"}), attempts))),
          diff);

    const page = {task: null, workers: [], events: [], seen: new Set(), tools: new Map(),
                  output: null, usage: {input: 0, output: 0, cost: 0}, answered: 0};
    let closed = false;
    let loadTimer = null;

    async function load() {
      try {
        const got = await api(path);
        if (closed) return;
        page.task = got.task || {};
        page.workers = got.workers || [];
        upsertTask(page.task);
        render();
      } catch (e) {
        if (closed) return;
        clear(head, h("h1", {text: "Task"}), h("p", {class: "error", text: e.message}));
      }
    }
    function loadSoon() {
      clearTimeout(loadTimer);
      loadTimer = setTimeout(load, 120);
    }
    function worker() {
      return page.workers.find((w) => w.id === page.task.workerId) || null;
    }
    function render() {
      const task = page.task;
      clear(head, h("h1", {text: task.title || task.prompt || task.command || short(task.id)}),
            badge(task.state), h("span", {class: "muted", text: `${workspaceName(task.workspaceId)} · ${task.provider || ""}`}));
      renderControls();
      renderPrompt();
      renderFacts();
      renderArtifacts();
      renderAttempts();
    }
    function renderControls() {
      const task = page.task;
      const w = worker();
      const wstate = w ? w.state : "";
      const control = (name, text, enabled, run, cls) => {
        const button = h("button", {type: "button", class: cls || "secondary", text, disabled: !enabled});
        button.addEventListener("click", () => act(button, async () => { await run(); await load(); }));
        return button;
      };
      const workerPath = w ? `/api/workers/${encodeURIComponent(w.id)}` : "";
      clear(controls,
            control("pause", "Pause", !!w && ["running", "starting"].includes(wstate),
                    () => post(`${workerPath}/pause`)),
            control("resume", "Resume", !!w && wstate === "paused", () => post(`${workerPath}/resume`)),
            control("cancel", "Cancel", !TERMINAL.has(task.state), () => post(`${path}/cancel`), "danger"),
            control("retry", "Retry", TERMINAL.has(task.state), retry));
    }
    async function retry() {
      try {
        const made = await post(`${path}/retry`);
        if (made.id) location.hash = `#/tasks/${encodeURIComponent(made.id)}`;
      } catch (e) {
        if (e.status === 404 || e.status === 405) throw new Error("Retry is not available on this gateway.");
        throw e;
      }
    }
    // A plan to approve or a question to answer, while the task waits.
    function renderPrompt() {
      const task = page.task;
      const w = worker();
      const asking = [...page.events].reverse().find((e) => e.type === "plan" || e.type === "question");
      if (task.state !== "waiting_input" || !w || !asking || asking.id <= page.answered) {
        promptBox.hidden = true;
        promptBox.replaceChildren();
        return;
      }
      if (promptBox.dataset.eventId === String(asking.id) && !promptBox.hidden) return;
      promptBox.dataset.eventId = String(asking.id);
      const isPlan = asking.type === "plan";
      const answer = h("textarea", {name: "answer", rows: 3});
      const send = h("button", {type: "submit", class: isPlan ? "secondary" : "", text: "Send answer"});
      const approve = isPlan ? h("button", {type: "button", text: "Approve plan"}) : null;
      const status = h("span", {class: "muted", role: "status"});
      const input = (body, button) => act(button, async () => {
        await post(`/api/workers/${encodeURIComponent(w.id)}/input`, body);
        page.answered = asking.id;
        status.textContent = "Sent.";
        await load();
      });
      const form = h("form", null,
                     field(isPlan ? "Answer (or change the plan)" : "Your answer", answer),
                     h("div", {class: "actions"}, approve, send, status));
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        if (!answer.value.trim()) { toast("Write an answer first.", true); return; }
        input({text: answer.value}, send);
      });
      if (approve) approve.addEventListener("click", () => input({approve: true}, approve));
      clear(promptBox,
            h("h2", {text: isPlan ? "Plan — waiting for approval" : "Question — waiting for an answer"}),
            h("pre", {class: "prompt-text", text: asking.text || ""}), form);
      promptBox.hidden = false;
    }
    function renderFacts() {
      const task = page.task;
      const rows = [
        ["Id", task.id], ["State", label(task.state)], ["Workspace", workspaceName(task.workspaceId)],
        ["Provider", task.provider], ["Command", task.command], ["Prompt", task.prompt],
        ["Plan first", task.planFirst ? "yes" : ""], ["Work branch", task.workBranch],
        ["Base branch", task.baseBranch], ["Labels", (task.requiredLabels || []).join(", ")],
        ["Priority", task.priority ? String(task.priority) : ""],
        ["Created by", accountName(task.createdBy)], ["Created", fmtTime(task.createdAt)],
        ["Updated", fmtTime(task.updatedAt)], ["Attempts", task.attempts ? String(task.attempts) : ""],
        ["Exit code", task.exitCode ? String(task.exitCode) : ""], ["Error", task.error],
      ];
      clear(facts, rows.filter(([, v]) => v).map(([k, v]) => [h("dt", {text: k}), h("dd", {text: v})]));
      if (task.retryOf) {
        append(facts, [h("dt", {text: "Retry of"}),
                       h("dd", null, h("a", {href: `#/tasks/${encodeURIComponent(task.retryOf)}`, text: short(task.retryOf)}))]);
      }
      if (task.state === "pending" && (task.queuePosition || task.waitingReason)) {
        append(facts, [h("dt", {text: "Waiting"}), h("dd", {class: "notice", text: waitingText(task)})]);
      }
    }
    function renderArtifacts() {
      const a = page.task.artifacts || {};
      const cost = typeof a.costUsd === "number" ? a.costUsd : page.usage.cost;
      const rows = [];
      if (a.branch) rows.push(["Branch", a.branch + (a.pushed ? " (pushed)" : "")]);
      if (a.commitSha) rows.push(["Commit", h("code", {title: a.commitSha, text: a.commitSha.slice(0, 12)})]);
      if (a.prUrl) {
        rows.push(["Pull request", /^https?:\/\//.test(a.prUrl)
          ? h("a", {href: a.prUrl, rel: "noopener noreferrer", target: "_blank", text: a.prUrl}) : a.prUrl]);
      }
      if (cost) rows.push(["Cost", fmtCost(cost)]);
      if (page.usage.input || page.usage.output) {
        rows.push(["Tokens", `${page.usage.input} in · ${page.usage.output} out`]);
      }
      const nodes = [];
      if (rows.length) {
        nodes.push(h("dl", {class: "facts"}, rows.map(([k, v]) => [h("dt", {text: k}), h("dd", null, v)])));
      }
      if (a.diffStat) nodes.push(h("h3", {text: "Diff stat"}), h("pre", {class: "diffstat", text: a.diffStat}));
      if (!nodes.length) nodes.push(h("p", {class: "muted", text: TERMINAL.has(page.task.state) ? "None." : "Not yet."}));
      clear(artifacts, nodes);
      if (a.patch) {
        clear(diff, h("h2", {id: "changes-title", text: "Changes"}),
              a.patchTruncated ? h("p", {class: "notice", text: "The patch was cut: it is too large to show whole."}) : null,
              renderDiff(a.patch));
        diff.hidden = false;
      } else {
        diff.hidden = true;
      }
    }
    function renderAttempts() {
      if (!page.workers.length) {
        clear(attempts, h("p", {class: "muted", text: "None yet."}));
        return;
      }
      clear(attempts, h("table", null,
        h("thead", null, h("tr", null, ["Attempt", "Runner", "State", "Started", "Error"].map((t) => h("th", {scope: "col", text: t})))),
        h("tbody", null, page.workers.map((w) => h("tr", null,
          h("td", null, h("code", {title: w.id, text: short(w.id)})), h("td", {text: w.runnerName || short(w.runnerId)}),
          h("td", null, badge(w.state)), h("td", {text: fmtTime(w.createdAt)}),
          h("td", {class: "error", text: w.errorMessage || ""}))))));
    }

    // The log, from the task's own event stream (its whole history first).
    function addEvent(event) {
      if (page.seen.has(event.id)) return;
      page.seen.add(event.id);
      page.events.push(event);
      const node = logEntry(event);
      if (node) {
        const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
        log.append(node);
        if (atEnd) log.scrollTop = log.scrollHeight;
      }
    }
    function logItem(kind, ...body) {
      page.output = null;
      return h("li", {class: `ev-${kind}`}, h("span", {class: "kind", text: label(kind)}), body);
    }
    function logEntry(event) {
      const d = event.data || {};
      const text = event.text || "";
      switch (event.type) {
        case "output": {
          const stream = event.stream || "stdout";
          if (page.output && page.output.stream === stream && log.lastChild === page.output.item) {
            page.output.pre.append(`\n${text}`);
            return null;
          }
          const pre = h("pre", {class: `output ${stream === "stderr" ? "stderr" : ""}`, text});
          const item = logItem(stream === "stderr" ? "stderr" : "output", pre);
          page.output = {stream, pre, item};
          return item;
        }
        case "assistant_message":
          return logItem("assistant", h("div", {class: "assistant", text}));
        case "tool_use": {
          const name = d.name || text || "tool";
          const input = d.input || {};
          const brief = input.file_path || input.command || input.pattern || input.path || input.url || "";
          const details = h("details", {class: "tool"},
                            h("summary", null, h("strong", {text: name}), brief ? ` ${brief}` : ""),
                            h("pre", {class: "tool-input", text: JSON.stringify(input, null, 2)}));
          if (d.id) page.tools.set(d.id, details);
          return logItem("tool", details);
        }
        case "tool_result": {
          const result = h("div", {class: d.isError ? "tool-error" : ""},
                           h("div", {class: "muted", text: d.isError ? "result (error)" : "result"}),
                           h("pre", {class: "tool-output", text: text || "(no output)"}));
          const target = d.toolUseId && page.tools.get(d.toolUseId);
          if (target) {
            target.append(result);
            return null;
          }
          return logItem("tool result", h("details", {class: "tool"}, h("summary", {text: d.name || "result"}), result));
        }
        case "git":
          return logItem("git", `${d.stage ? d.stage + ": " : ""}${text}`);
        case "status":
          return logItem("status", `→ ${label(event.status)}`);
        case "plan":
          return logItem("plan", h("pre", {text}));
        case "question":
          return logItem("question", h("pre", {text}));
        case "input":
          return logItem("answer", h("pre", {text}));
        case "result": {
          if (d.usage) {
            page.usage.input += (d.usage.input_tokens || 0) + (d.usage.cache_read_input_tokens || 0) +
                                (d.usage.cache_creation_input_tokens || 0);
            page.usage.output += d.usage.output_tokens || 0;
          }
          if (typeof d.costUsd === "number") page.usage.cost += d.costUsd;
          const extra = [typeof d.costUsd === "number" ? fmtCost(d.costUsd) : "",
                         d.numTurns ? `${d.numTurns} turns` : ""].filter(Boolean).join(" · ");
          return logItem("result", text, extra ? h("span", {class: "muted", text: ` (${extra})`}) : null);
        }
        case "session":
          return logItem("session", `${text}${d.model ? ` · ${d.model}` : ""}`);
        case "assigned":
          return logItem("assigned", `to ${event.runnerName || "a runner"}`);
        case "error":
        case "failed":
          return logItem(event.type, h("span", {class: "error", text}));
        case "completed":
          return logItem("completed", h("span", {class: "ok", text: text || "done"}));
        default:
          return logItem(event.type, text || label(event.status));
      }
    }

    const source = new EventSource(`/api/events?taskId=${encodeURIComponent(taskId)}`);
    const onEvent = (message) => {
      if (!isMessage(message)) return;
      let event;
      try { event = JSON.parse(message.data); } catch (_) { return; }
      // int64 ids are strings in protobuf's JSON mapping.
      event.id = Number(event.id || message.lastEventId);
      addEvent(event);
      if (event.type !== "output" && event.type !== "assistant_message") loadSoon();
      else if (page.task) renderArtifacts();
    };
    for (const type of EVENT_TYPES) source.addEventListener(type, onEvent);
    source.onmessage = onEvent;
    source.onerror = (e) => {
      if (isMessage(e)) return;
      if (source.readyState === EventSource.CLOSED) toast("The task's log stopped; reload the page to follow it again.", true);
    };
    load();
    return () => {
      closed = true;
      clearTimeout(loadTimer);
      source.close();
    };
  }

  // A unified diff (git's patch) as files, hunks and coloured lines.
  function parsePatch(patch) {
    const files = [];
    let file = null, hunk = null, oldLeft = 0, newLeft = 0;
    const newFile = (path) => {
      file = {path, hunks: [], added: 0, removed: 0, notes: []};
      files.push(file);
      hunk = null;
    };
    for (const line of patch.split("\n")) {
      if (line.startsWith("diff --git ")) {
        const m = /^diff --git a\/(.*) b\/(.*)$/.exec(line);
        newFile(m ? m[2] : line.slice(11));
        continue;
      }
      if (hunk && (oldLeft > 0 || newLeft > 0)) {
        if (line.startsWith("+")) {
          hunk.lines.push({kind: "add", text: line.slice(1), newNo: hunk.newNo++});
          newLeft--; file.added++;
        } else if (line.startsWith("-")) {
          hunk.lines.push({kind: "del", text: line.slice(1), oldNo: hunk.oldNo++});
          oldLeft--; file.removed++;
        } else if (line.startsWith("\\")) {
          hunk.lines.push({kind: "note", text: line});
        } else {
          hunk.lines.push({kind: "ctx", text: line.slice(1), oldNo: hunk.oldNo++, newNo: hunk.newNo++});
          oldLeft--; newLeft--;
        }
        continue;
      }
      if (line.startsWith("\\") && hunk) {
        hunk.lines.push({kind: "note", text: line});
        continue;
      }
      const m = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/.exec(line);
      if (m) {
        if (!file) newFile("");
        hunk = {header: line, oldNo: Number(m[1]), newNo: Number(m[3]), lines: []};
        oldLeft = m[2] === undefined ? 1 : Number(m[2]);
        newLeft = m[4] === undefined ? 1 : Number(m[4]);
        file.hunks.push(hunk);
        continue;
      }
      if (line.startsWith("--- ")) {
        if (!file || file.hunks.length) newFile("");
        const p = line.slice(4).replace(/\t.*$/, "");
        if (!file.path && p !== "/dev/null") file.path = p.replace(/^a\//, "");
        continue;
      }
      if (line.startsWith("+++ ")) {
        if (!file) newFile("");
        const p = line.slice(4).replace(/\t.*$/, "");
        if (p !== "/dev/null") file.path = p.replace(/^b\//, "");
        continue;
      }
      if (file && line && !line.startsWith("index ")) file.notes.push(line);
    }
    return files;
  }
  function renderDiff(patch) {
    const files = parsePatch(patch);
    if (!files.length) return h("pre", {text: patch});
    return h("div", {class: "diff"}, files.map((f) => h("section", {class: "diff-file", "data-path": f.path},
      h("h3", null, f.path || "(unnamed)", " ", h("span", {class: "ok", text: `+${f.added}`}), " ",
        h("span", {class: "error", text: `−${f.removed}`})),
      f.notes.length ? h("div", {class: "hunk-head", text: f.notes.join("\n")}) : null,
      h("div", {class: "diff-scroll"}, f.hunks.map((hk) => [
        h("div", {class: "hunk-head", text: hk.header}),
        hk.lines.map((l) => h("div", {class: `diff-line ${l.kind}`},
          h("span", {class: "ln", text: l.oldNo === undefined ? "" : String(l.oldNo)}),
          h("span", {class: "ln", text: l.newNo === undefined ? "" : String(l.newNo)}),
          h("span", {class: "sign", text: l.kind === "add" ? "+" : l.kind === "del" ? "-" : " "}),
          h("code", {text: l.text}))),
      ])))));
  }

  // ---- New task ----------------------------------------------------------

  function viewNewTask() {
    const workspace = h("select", {name: "workspaceId", required: true},
                        [...S.workspaces.values()].map((w) => h("option", {value: w.id, text: w.name})));
    if (S.filter.workspace) workspace.value = S.filter.workspace;
    const provider = h("select", {name: "provider"},
                       PROVIDERS.map((p) => h("option", {value: p.value, text: p.label})));
    const title = h("input", {name: "title", maxlength: 500});
    const prompt = h("textarea", {name: "prompt", rows: 5});
    const command = h("input", {name: "command", placeholder: "make test"});
    const plan = checkbox("Plan first (approve the plan before it codes)", false, "planFirst");
    const commit = checkbox("Commit the changes", true, "autoCommit");
    const push = checkbox("Push the branch", false, "push");
    const branch = h("input", {name: "workBranch", placeholder: "buildd/<task>"});
    const base = h("input", {name: "baseBranch", placeholder: "the workspace's default"});
    const labels = h("input", {name: "requiredLabels", placeholder: "gpu, linux"});
    const priority = h("input", {name: "priority", type: "number", min: -100, max: 100, step: 1, value: 0});
    const error = h("p", {class: "error", role: "alert"});
    const submit = h("button", {type: "submit", text: "Create task"});
    const promptField = field("Prompt", prompt);
    const commandField = field("Command", command, "Run by the shell in the task's worktree.");
    const planNode = h("div", null, plan.node);
    const sync = () => {
      const isCommand = provider.value === "command";
      commandField.hidden = !isCommand;
      planNode.hidden = isCommand;
      prompt.required = !isCommand;
      command.required = isCommand;
    };
    provider.addEventListener("change", sync);
    sync();
    const form = h("form", {class: "panel", "aria-labelledby": "new-title"},
      h("h1", {id: "new-title", text: "New task"}),
      S.workspaces.size ? null : h("p", {class: "notice", text: "There is no workspace you may use yet."}),
      h("div", {class: "form-grid"}, field("Workspace", workspace), field("Provider", provider),
        field("Title", title)),
      promptField, commandField, planNode,
      h("div", {class: "form-grid"}, field("Work branch", branch), field("Base branch", base),
        field("Required runner labels", labels, "Comma-separated."), field("Priority", priority)),
      h("div", null, commit.node, push.node),
      h("div", {class: "actions"}, submit), error);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      error.textContent = "";
      const body = {workspaceId: workspace.value, provider: provider.value, title: title.value.trim(),
                    autoCommit: commit.box.checked, push: push.box.checked,
                    priority: Number(priority.value) || 0};
      if (provider.value === "command") body.command = command.value;
      else {
        body.prompt = prompt.value;
        body.planFirst = plan.box.checked;
      }
      if (prompt.value && provider.value === "command") body.prompt = prompt.value;
      if (branch.value.trim()) body.workBranch = branch.value.trim();
      if (base.value.trim()) body.baseBranch = base.value.trim();
      const required = labels.value.split(",").map((s) => s.trim()).filter(Boolean);
      if (required.length) body.requiredLabels = required;
      submit.disabled = true;
      try {
        const task = await post("/api/tasks", body);
        upsertTask(task);
        location.hash = `#/tasks/${encodeURIComponent(task.id)}`;
      } catch (err) {
        error.textContent = err.message;
      } finally {
        submit.disabled = false;
      }
    });
    clear($("view"), form);
    workspace.focus();
  }

  // ---- Runners and the queue ---------------------------------------------

  function viewRunners() {
    const runners = h("div", {class: "table-scroll"}, h("p", {class: "muted", text: "Loading…"}));
    const queue = h("div", {class: "table-scroll"}, h("p", {class: "muted", text: "Loading…"}));
    const reload = h("button", {type: "button", class: "secondary", text: "Reload"});
    clear($("view"), h("div", {class: "toolbar"}, h("h1", {text: "Runners"}), reload),
          h("section", {class: "panel", "aria-label": "Runners"}, runners),
          h("section", {class: "panel", "aria-labelledby": "queue-title"},
            h("h2", {id: "queue-title", text: "Queue"}), queue));
    const load = async () => {
      await Promise.all([loadRunners(runners), loadQueue(queue)]);
    };
    reload.addEventListener("click", () => act(reload, load));
    load();
  }
  const notAvailable = (what) => h("p", {class: "muted", text: `${what} is not available on this gateway.`});
  async function loadRunners(node) {
    let got;
    try {
      got = await api("/api/runners");
    } catch (e) {
      clear(node, e.status === 404 ? notAvailable("The runner list") : h("p", {class: "error", text: e.message}));
      return;
    }
    const list = got.runners || [];
    if (!list.length) {
      clear(node, h("p", {class: "muted", text: "No runner is connected."}));
      return;
    }
    clear(node, h("table", null,
      h("thead", null, h("tr", null, ["Name", "Account", "Labels", "Capabilities", "Slots", "Load",
                                      "Connected since", "Draining"].map((t) => h("th", {scope: "col", text: t})))),
      h("tbody", null, list.map((r) => h("tr", {"data-runner": r.name},
        h("td", null, h("strong", {text: r.name || short(r.id)}), r.version ? h("div", {class: "muted", text: r.version}) : null),
        h("td", {text: accountName(r.accountId)}),
        h("td", {text: (r.labels || []).join(", ")}),
        h("td", {text: (r.capabilities || []).map((c) => c.version ? `${c.name} ${c.version}` : c.name).join(", ")}),
        h("td", {class: "slots", text: `${r.activeWorkers || 0} / ${r.maxTasks || 0} used`}),
        h("td", {text: String(r.load || 0)}),
        h("td", {text: fmtTime(r.connectedAt)}),
        h("td", {text: r.draining ? "draining" : "no"}))))));
  }
  async function loadQueue(node) {
    let got;
    try {
      got = await api("/api/queue");
    } catch (e) {
      clear(node, e.status === 404 ? notAvailable("The queue") : h("p", {class: "error", text: e.message}));
      return;
    }
    const queues = got.queues || [];
    clear(node, h("p", {text: `${got.depth || 0} task${got.depth === 1 ? "" : "s"} waiting`}),
          queues.length ? h("table", null,
            h("thead", null, h("tr", null, ["Provider", "Labels", "Depth", "Oldest waiting"].map((t) => h("th", {scope: "col", text: t})))),
            h("tbody", null, queues.map((q) => h("tr", null,
              h("td", {text: q.provider || "any"}), h("td", {text: (q.labels || []).join(", ") || "none"}),
              h("td", {text: String(q.depth || 0)}),
              h("td", null, q.oldestTaskId
                ? h("a", {href: `#/tasks/${encodeURIComponent(q.oldestTaskId)}`,
                          text: `${(S.tasks.get(q.oldestTaskId) || {}).title || short(q.oldestTaskId)} (since ${fmtTime(q.oldestCreatedAt)})`})
                : ""))))) : null);
  }

  // ---- Admin -------------------------------------------------------------

  function viewAdmin() {
    if (!S.me.isAdmin) {
      clear($("view"), h("h1", {text: "Admin"}), h("p", {class: "muted", text: "Only an admin key may manage accounts and workspaces."}));
      return;
    }
    const accounts = h("div", {class: "table-scroll"});
    const keyArea = h("div", {"aria-live": "polite"});
    const workspaces = h("div", {class: "table-scroll"});
    const grants = h("div");
    clear($("view"), h("h1", {text: "Admin"}),
          h("section", {class: "panel", "aria-labelledby": "accounts-title"},
            h("h2", {id: "accounts-title", text: "Accounts"}), keyArea, accounts, accountForm(keyArea, () => refresh())),
          h("section", {class: "panel", "aria-labelledby": "workspaces-title"},
            h("h2", {id: "workspaces-title", text: "Workspaces"}), workspaces, workspaceForm(() => refresh())),
          h("section", {class: "panel", "aria-labelledby": "grants-title"},
            h("h2", {id: "grants-title", text: "Grants"}), grants));
    async function refresh() {
      await loadNames();
      let usage = null;
      try {
        usage = new Map(((await api("/api/usage")).accounts || []).map((u) => [u.accountId, u]));
      } catch (e) {
        if (e.status !== 404) toast(e.message, true);
      }
      renderAccounts(accounts, keyArea, usage);
      renderWorkspaces(workspaces);
      renderGrants(grants);
    }
    refresh();
  }
  function showKey(area, who, key) {
    const copy = h("button", {type: "button", class: "secondary", text: "Copy"});
    const code = h("code", {class: "new-key", text: key});
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(key);
        copy.textContent = "Copied";
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents(code);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        copy.textContent = "Selected: copy it now";
      }
    });
    const dismiss = h("button", {type: "button", class: "secondary", text: "Done"});
    const box = h("div", {class: "key-once", role: "status"},
                  h("span", {text: `New key for ${who} (shown once):`}), code, copy, dismiss);
    dismiss.addEventListener("click", () => box.remove());
    clear(area, box);
  }
  function renderAccounts(node, keyArea, usage) {
    const list = [...S.accounts.values()];
    clear(node, h("table", null,
      h("thead", null, h("tr", null, ["Name", "Type", "Limits", "Cost today", "Keys"].map((t) => h("th", {scope: "col", text: t})))),
      h("tbody", null, list.map((a) => {
        const u = usage && usage.get(a.id);
        const cap = (u && u.maxCostPerDay) || a.maxCostPerDay;
        const cost = !usage ? "not available" : `${fmtCost((u && u.costToday) || 0)}${cap ? ` of ${fmtCost(cap)}` : ""}`;
        const rotate = h("button", {type: "button", class: "secondary", text: "New key", "aria-label": `New key for ${a.name}`});
        rotate.addEventListener("click", () => act(rotate, async () => {
          const made = await post(`/api/accounts/${encodeURIComponent(a.id)}/keys`, {});
          showKey(keyArea, a.name, made.apiKey);
        }));
        const revokeAll = h("button", {type: "button", class: "danger", text: "Revoke all keys", "aria-label": `Revoke all keys of ${a.name}`});
        let armed = false;
        revokeAll.addEventListener("click", () => {
          if (!armed) {
            armed = true;
            revokeAll.textContent = "Confirm: revoke all";
            revokeAll.setAttribute("aria-label", `Confirm: revoke all keys of ${a.name}`);
            return;
          }
          act(revokeAll, async () => {
            const done = await api(`/api/accounts/${encodeURIComponent(a.id)}/keys`, {method: "DELETE"});
            toast(`Revoked ${done.revoked || 0} key(s) of ${a.name}.`);
            armed = false;
            revokeAll.textContent = "Revoke all keys";
            revokeAll.setAttribute("aria-label", `Revoke all keys of ${a.name}`);
          });
        });
        const keyId = h("input", {name: "keyId", placeholder: "key id", size: 10, "aria-label": `Key id of ${a.name} to revoke`});
        const revokeOne = h("button", {type: "button", class: "danger", text: "Revoke"});
        revokeOne.addEventListener("click", () => act(revokeOne, async () => {
          if (!keyId.value.trim()) throw new Error("Give the key id to revoke.");
          const done = await api(`/api/accounts/${encodeURIComponent(a.id)}/keys/${encodeURIComponent(keyId.value.trim())}`, {method: "DELETE"});
          toast(`Revoked ${done.revoked || 0} key(s).`);
          keyId.value = "";
        }));
        return h("tr", {"data-account": a.id},
          h("td", null, h("strong", {text: a.name}), a.isAdmin ? " (admin)" : "", h("div", {class: "muted", text: short(a.id)})),
          h("td", {text: `${a.type || ""}${a.authType ? ` · ${a.authType}` : ""}`}),
          h("td", {text: [a.maxConcurrentWorkers ? `${a.maxConcurrentWorkers} workers` : "",
                          a.maxCostPerDay ? `${fmtCost(a.maxCostPerDay)}/day` : ""].filter(Boolean).join(", ") || "none"}),
          h("td", {text: cost}),
          h("td", null, h("div", {class: "actions"}, rotate, revokeAll, keyId, revokeOne)));
      }))));
  }
  function accountForm(keyArea, refresh) {
    const name = h("input", {name: "name", required: true});
    const type = h("select", {name: "type"}, ["user", "service", "action"].map((t) => h("option", {value: t, text: t})));
    const auth = h("select", {name: "authType"}, ["api", "oauth"].map((t) => h("option", {value: t, text: t})));
    const workers = h("input", {name: "maxConcurrentWorkers", type: "number", min: 0, value: 2});
    const cost = h("input", {name: "maxCostPerDay", type: "number", min: 0, step: "0.01", value: 0});
    const submit = h("button", {type: "submit", text: "Create account"});
    const form = h("form", {"aria-label": "New account"}, h("h3", {text: "New account"}),
      h("div", {class: "form-grid"}, field("Name", name), field("Type", type), field("Billing", auth),
        field("Max concurrent workers", workers), field("Max cost per day (USD, 0: none)", cost)),
      h("div", {class: "actions"}, submit));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      act(submit, async () => {
        const made = await post("/api/accounts", {name: name.value.trim(), type: type.value, authType: auth.value,
                                                  maxConcurrentWorkers: Number(workers.value) || 0,
                                                  maxCostPerDay: Number(cost.value) || 0});
        showKey(keyArea, name.value.trim(), made.apiKey);
        name.value = "";
        await refresh();
      });
    });
    return form;
  }
  function renderWorkspaces(node) {
    const list = [...S.workspaces.values()];
    clear(node, list.length ? h("table", null,
      h("thead", null, h("tr", null, ["Name", "Repository", "Default branch", "Network"].map((t) => h("th", {scope: "col", text: t})))),
      h("tbody", null, list.map((w) => h("tr", {"data-workspace": w.id},
        h("td", null, h("strong", {text: w.name}), h("div", {class: "muted", text: short(w.id)})),
        h("td", {text: w.repoUrl || "(no repository)"}), h("td", {text: w.defaultBranch || ""}),
        h("td", {text: w.network || "default"}))))) : h("p", {class: "muted", text: "No workspace yet."}));
  }
  function workspaceForm(refresh) {
    const name = h("input", {name: "name", required: true});
    const repo = h("input", {name: "repoUrl", placeholder: "https://github.com/org/repo.git"});
    const branch = h("input", {name: "defaultBranch", placeholder: "main"});
    const submit = h("button", {type: "submit", text: "Create workspace"});
    const form = h("form", {"aria-label": "New workspace"}, h("h3", {text: "New workspace"}),
      h("div", {class: "form-grid"}, field("Name", name), field("Repository URL", repo), field("Default branch", branch)),
      h("div", {class: "actions"}, submit));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      act(submit, async () => {
        const body = {name: name.value.trim()};
        if (repo.value.trim()) body.repoUrl = repo.value.trim();
        if (branch.value.trim()) body.defaultBranch = branch.value.trim();
        await post("/api/workspaces", body);
        toast(`Workspace ${body.name} created.`);
        name.value = repo.value = branch.value = "";
        await refresh();
      });
    });
    return form;
  }
  function renderGrants(node) {
    const account = h("select", {name: "accountId"}, [...S.accounts.values()].map((a) => h("option", {value: a.id, text: a.name})));
    const workspace = h("select", {name: "workspaceId"}, [...S.workspaces.values()].map((w) => h("option", {value: w.id, text: w.name})));
    const claim = checkbox("Its runners may take the workspace's tasks", true, "canClaim");
    const create = checkbox("May create tasks there", true, "canCreate");
    const share = checkbox("Shares its provider credentials", false, "shareCredentials");
    const submit = h("button", {type: "submit", text: "Grant"});
    const current = h("div", {class: "table-scroll", "aria-live": "polite"});
    const showGrants = async () => {
      if (!account.value) return;
      try {
        const got = await api(`/api/accounts/${encodeURIComponent(account.value)}/grants`);
        const list = got.grants || [];
        clear(current, list.length ? h("table", null,
          h("thead", null, h("tr", null, ["Workspace", "Claim", "Create", "Shares credentials"].map((t) => h("th", {scope: "col", text: t})))),
          h("tbody", null, list.map((g) => h("tr", null, h("td", {text: workspaceName(g.workspaceId)}),
            h("td", {text: g.canClaim ? "yes" : "no"}), h("td", {text: g.canCreate ? "yes" : "no"}),
            h("td", {text: g.shareCredentials ? "yes" : "no"}))))) : h("p", {class: "muted", text: "No grants."}));
      } catch (e) {
        clear(current, e.status === 404 ? notAvailable("The list of grants") : h("p", {class: "error", text: e.message}));
      }
    };
    account.addEventListener("change", showGrants);
    const form = h("form", {"aria-label": "Grant a workspace"},
      h("div", {class: "form-grid"}, field("Account", account), field("Workspace", workspace)),
      h("div", null, claim.node, create.node, share.node), h("div", {class: "actions"}, submit));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      act(submit, async () => {
        await post(`/api/accounts/${encodeURIComponent(account.value)}/workspaces`,
                   {workspaceId: workspace.value, canClaim: claim.box.checked, canCreate: create.box.checked,
                    shareCredentials: share.box.checked});
        toast("Granted.");
        await showGrants();
      });
    });
    clear(node, form, h("h3", {text: "Grants of the account"}), current);
    showGrants();
  }

  // ---- Routing -----------------------------------------------------------

  function route() {
    if (S.cleanup) S.cleanup();
    S.cleanup = null;
    if (!S.me) {
      viewSignIn();
      return;
    }
    const [name, arg] = (location.hash || "#/board").replace(/^#\/?/, "").split("/");
    for (const link of document.querySelectorAll("#nav a")) {
      const current = link.dataset.route === (name || "board");
      link.classList.toggle("current", current);
      if (current) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    let cleanup;
    switch (name) {
      case "tasks":
        cleanup = arg ? viewTask(decodeURIComponent(arg)) : viewBoard();
        document.title = "Task · buildd";
        break;
      case "new": cleanup = viewNewTask(); document.title = "New task · buildd"; break;
      case "runners": cleanup = viewRunners(); document.title = "Runners · buildd"; break;
      case "admin": cleanup = viewAdmin(); document.title = "Admin · buildd"; break;
      default: cleanup = viewBoard(); document.title = "Board · buildd"; break;
    }
    S.cleanup = typeof cleanup === "function" ? cleanup : null;
  }

  window.addEventListener("hashchange", route);
  document.addEventListener("DOMContentLoaded", async () => {
    $("signout").addEventListener("click", signOut);
    await restoreSession();
    route();
  });
})();
