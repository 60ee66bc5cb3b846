// Switchyard console: a client of the /v1 API, nothing more. Every request
// carries the token the operator entered (kept in sessionStorage, so it dies
// with the browser session); the server decides what the token may do.
"use strict";

const TOKEN_KEY = "switchyard.token";
// An observation older than this is shown as stale: the observer refreshes
// every few seconds, so a minute means it has stopped seeing the stores.
const STALE_MS = 30000;
const state = { timer: null, stream: null, lastPreview: null, lit: 0 };

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}

class ApiError extends Error {
  constructor(status, problem) { super(problem.detail || problem.title || ("HTTP " + status)); this.status = status; this.problem = problem; }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (token()) headers["Authorization"] = "Bearer " + token();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let v = null;
  try { v = text ? JSON.parse(text) : null; } catch (_) { v = { detail: text }; }
  if (!r.ok) {
    if (r.status === 401) showLogin(v && v.detail);
    throw new ApiError(r.status, v || {});
  }
  return v;
}

function showLogin(why) {
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = why ? "The server says: " + why : "";
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return "unknown";
  if (ms < 1000) return ms + " ms";
  return (ms / 1000).toFixed(1) + " s";
}
function fmtTime(ms) { return ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : ""; }

function stopLive() {
  if (state.timer) { clearInterval(state.timer); state.timer = null; }
  if (state.stream) { state.stream.abort(); state.stream = null; }
}

// A view whose data arrives after the operator moved on must not replace
// the newer view: each route() starts a generation, and a render that
// finds a newer one stops (route() ignores the Stale it throws).
class Stale extends Error {}
function current(gen) { if (gen !== state.gen) throw new Stale("superseded"); }

function setView(title, ...kids) {
  const v = document.getElementById("view");
  v.replaceChildren(h("h2", { id: "view-title" }, title), ...kids);
}

function problemText(e) { return e instanceof ApiError ? `${e.status}: ${e.message}` : String(e); }

// ---- alerts shown on every view: split brain, stale observation, unfinished execution
async function refreshAlerts(given) {
  const out = [];
  try {
    const st = given || await api("GET", "/v1/state");
    if (st.persisted) out.push(h("p", { class: "alert warn", "data-alert": "stale" },
      "Stale observation: shown from the file the server persisted at " + fmtTime(st.observed_at_ms) + "; this server has not observed the stores yet."));
    else if (st.age_ms > STALE_MS) out.push(h("p", { class: "alert bad", "data-alert": "stale" },
      `Stale observation: the stores were last observed ${fmtMs(st.age_ms)} ago.`));
    for (const s of st.stores) {
      const prim = ((s.state && s.state.members) || []).filter(m => m.role === "primary");
      if (prim.length > 1) out.push(h("p", { class: "alert bad", "data-alert": "split-brain" },
        `Split brain in ${s.store}: ${prim.length} primaries (${prim.map(m => m.name + " in " + m.region).join(", ")}).`));
      if (s.state && prim.length === 0) out.push(h("p", { class: "alert bad", "data-alert": "no-primary" },
        `${s.store} has no primary.`));
      if (s.error) out.push(h("p", { class: "alert bad", "data-alert": "unobserved" }, `${s.store} could not be observed: ${s.error}`));
    }
    const ex = await api("GET", "/v1/executions");
    const pending = ex.filter(e => e.status === "pending_approval");
    document.getElementById("nav-approvals").textContent = pending.length ? `Approvals (${pending.length})` : "Approvals";
    if (pending.length) out.push(h("p", { class: "alert warn", "data-alert": "pending-approval" },
      `${pending.length} execution(s) wait for a second person's approval: `, h("a", { href: "#/approvals" }, "Approvals")));
    for (const e of ex) {
      if (e.status === "running") out.push(h("p", { class: "alert warn", "data-alert": "running" },
        "Execution running: ", h("a", { href: "#/executions/" + e.id }, e.id)));
      else if (e.resumable) out.push(h("p", { class: "alert bad", "data-alert": "unfinished" },
        "Unfinished execution (resume or abort it): ", h("a", { href: "#/executions/" + e.id }, e.id)));
    }
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) out.push(h("p", { class: "alert bad" }, "Cannot read the server: " + problemText(e)));
  }
  // Replace the banners only when they change: a link in one keeps the
  // keyboard focus across the observer's rounds.
  const box = document.getElementById("alerts");
  const key = out.map(n => n.outerHTML).join("");
  if (box.dataset.key !== key) { box.dataset.key = key; box.replaceChildren(...out); }
}

// ---- Topology: regions as columns, stores as rows
function lagCell(m, store) {
  if (m.role === "primary") return h("span", {}, "lag —");
  const lag = m.lag;
  const bound = [store && store.max_lag_bytes != null ? store.max_lag_bytes + " B" : null,
                 store && store.max_lag_ms != null ? store.max_lag_ms + " ms" : null].filter(Boolean).join(" / ") || "no bound";
  if (!lag || (lag.bytes == null && lag.millis == null)) return h("span", { class: "lag-unknown" }, "lag unknown (bound " + bound + ")");
  const parts = [lag.bytes != null ? lag.bytes + " B" : null, lag.millis != null ? lag.millis + " ms" : null].filter(Boolean).join(" / ");
  const over = (store && store.max_lag_bytes != null && lag.bytes != null && lag.bytes > store.max_lag_bytes) ||
               (store && store.max_lag_ms != null && lag.millis != null && lag.millis > store.max_lag_ms);
  return h("span", { class: over ? "lag-over" : "" }, `lag ${parts} (bound ${bound})${over ? " — over the bound" : ""}`);
}

function renderTopology(topo, st) {
  const regions = (topo.regions || []).map(r => r.name);
  const byStore = Object.fromEntries(st.stores.map(s => [s.store, s]));
  for (const s of st.stores) for (const m of (s.state && s.state.members) || []) if (!regions.includes(m.region)) regions.push(m.region);
  const head = h("tr", {}, h("th", { scope: "col" }, "Store"), regions.map(r => h("th", { scope: "col" }, r)));
  const rows = topo.stores.map(store => {
    const s = byStore[store.name] || {};
    const members = (s.state && s.state.members) || [];
    const term = s.state && s.state.term != null ? "store term " + s.state.term : "store term unknown";
    return h("tr", { "data-store": store.name },
      h("th", { scope: "row" }, store.name, h("div", { class: "mut" }, store.kind + " · " + term),
        s.error ? h("div", { class: "error" }, s.error) : h("div", { class: "mut" }, s.summary || "")),
      regions.map(r => h("td", {}, members.filter(m => m.region === r).map(m =>
        h("div", { class: "member role-" + m.role, "data-member": m.name, "data-role": m.role },
          h("div", {}, h("strong", {}, m.name), " ", h("span", { class: "role" }, m.role)),
          h("div", { class: "mut" }, m.reachable ? "reachable" : "unreachable", m.fenced ? " · fenced" : "",
            m.following ? " · follows " + m.following : ""),
          h("div", { class: "mut" }, lagCell(m, store)))))));
  });
  setView("Topology " + topo.name,
    h("p", { class: "mut", id: "observed" }, `Observed ${fmtTime(st.observed_at_ms)} (${fmtMs(st.age_ms)} ago)${st.persisted ? ", from the persisted file" : ""}; live from the server's observer.`),
    h("div", { class: "scroll" }, h("table", { id: "topology" }, h("caption", { class: "mut" }, "Regions as columns, stores as rows"), h("thead", {}, head), h("tbody", {}, rows))));
}

// ---- Plans: target + mode, preview, start
async function renderPlans() {
  const gen = state.gen;
  const topo = await api("GET", "/v1/topology");
  current(gen);
  const region = h("select", { id: "plan-to" }, (topo.regions || []).map(r => h("option", { value: r.name }, r.name)));
  const mode = h("select", { id: "plan-mode" }, h("option", { value: "planned" }, "planned (loses nothing)"),
    h("option", { value: "forced" }, "forced (the current primary region is gone)"));
  // --candidate: MEMBER or STORE=MEMBER, several separated by spaces.
  const candidate = h("input", { id: "plan-candidate", type: "text", size: "18", placeholder: "best member",
    title: "Member to promote: MEMBER or STORE=MEMBER, several separated by spaces (as --candidate)" });
  const out = h("div", { id: "plan-out" });
  const start = h("button", { type: "button", id: "plan-start", class: "primary", disabled: true }, "Start…");
  const body = () => {
    const c = candidate.value.trim().split(/[\s,]+/).filter(Boolean);
    return c.length ? { to: region.value, mode: mode.value, candidate: c } : { to: region.value, mode: mode.value };
  };
  const preview = async () => {
    start.disabled = true; state.lastPreview = null;
    // Busy while any preview is in flight (a change of region and a click
    // on Preview may overlap): the answer shown is then the last one.
    out.dataset.busy = String((state.previews = (state.previews || 0) + 1));
    try {
      const v = await api("POST", "/v1/plans", body());
      if (!v.plan) { out.replaceChildren(h("p", { id: "plan-nothing" }, v.detail)); return; }
      state.lastPreview = v;
      out.replaceChildren(h("h3", {}, "Preview: " + v.plan.name), h("pre", { id: "plan-text" }, v.text),
        v.preview ? h("pre", { id: "plan-preview-text" }, v.preview) : null);
      start.disabled = false;
    } catch (e) { out.replaceChildren(h("p", { class: "error" }, problemText(e))); }
    finally { if (--state.previews === 0) delete out.dataset.busy; }
  };
  start.addEventListener("click", () => confirmStart(body(), topo));
  region.addEventListener("change", preview); mode.addEventListener("change", preview);
  setView("Plans",
    h("form", { id: "plan-form", onsubmit: e => { e.preventDefault(); preview(); } },
      h("p", { class: "buttons" }, h("label", { for: "plan-to" }, "Target region "), region,
        h("label", { for: "plan-mode" }, " Mode "), mode,
        h("label", { for: "plan-candidate" }, " Candidate "), candidate,
        h("button", { type: "submit", id: "plan-preview" }, "Preview"), start)),
    h("p", { class: "mut" }, "Starting needs an operator token; the server refuses anything else."), out);
}

function confirmStart(body, topo) {
  const pv = state.lastPreview;
  if (!pv) return;
  const stores = [...new Set(pv.plan.stages.flatMap(s => [...s.steps.map(x => x.store), ...s.checkpoint.map(c => c.store)]))];
  const dlg = document.getElementById("confirm");
  const typed = document.getElementById("confirm-typed");
  const forced = body.mode === "forced";
  document.getElementById("confirm-h").textContent = `Start a ${body.mode} failover to ${body.to}?`;
  document.getElementById("confirm-body").replaceChildren(
    h("p", {}, "These stores will be moved:"), h("ul", { id: "confirm-stores" }, stores.map(s => h("li", {}, s))),
    h("p", { id: "confirm-error", class: "error", role: "status" }));
  document.getElementById("confirm-typed-wrap").hidden = !forced;
  typed.value = "";
  const ok = document.getElementById("confirm-ok");
  const cancel = document.getElementById("confirm-cancel");
  const onOk = async e => {
    e.preventDefault();
    if (forced && typed.value.trim().split(/[\s,]+/).sort().join(" ") !== [...stores].sort().join(" ")) {
      document.getElementById("confirm-error").textContent = "Type every store name to confirm a forced failover: " + stores.join(" ");
      return;
    }
    try {
      const r = await api("POST", "/v1/executions", body);
      close();
      if (r && r.id) location.hash = "#/executions/" + r.id;
      else if (r && String(r.type).endsWith(":pending-approval")) {
        document.getElementById("plan-out").replaceChildren(h("p", { id: "plan-pending", class: "alert warn", role: "status" },
          r.detail, " ", h("a", { href: "#/approvals" }, "Approvals")));
        refreshAlerts();
      }
      else document.getElementById("plan-out").replaceChildren(h("p", {}, (r && r.detail) || "nothing to do"));
    } catch (err) { document.getElementById("confirm-error").textContent = problemText(err); }
  };
  const close = () => { ok.removeEventListener("click", onOk); cancel.removeEventListener("click", close); dlg.close(); };
  ok.addEventListener("click", onOk); cancel.addEventListener("click", close);
  dlg.showModal();
  (forced ? typed : cancel).focus();
}

// ---- Execution: stages, checkpoints lighting up, operations, report
function stageEl(list, n, name) {
  let el = list.querySelector(`[data-stage="${n}"]`);
  if (!el) {
    el = h("li", { class: "stage", "data-stage": n, "data-state": "pending" },
      h("h3", {}, `Stage ${n}`, h("span", { class: "stage-name" }, name ? ": " + name : "")),
      h("ol", { class: "ops" }),
      h("div", { class: "checkpoint", "data-state": "pending", "data-stage": n }, "Checkpoint: not validated yet"));
    const after = [...list.children].find(c => Number(c.dataset.stage) > n);
    list.insertBefore(el, after || null);
  } else if (name) el.querySelector(".stage-name").textContent = ": " + name;
  return el;
}

function onEvent(list, name, d, reportBox) {
  if (name === "execution_started") {
    for (let i = 1; i <= d.stages; i++) stageEl(list, i);
  } else if (name === "stage_started") {
    for (const s of list.querySelectorAll('.stage[data-state="running"]')) s.dataset.state = "done";
    stageEl(list, d.stage, d.name).dataset.state = "running";
  } else if (name === "op_started") {
    const ops = stageEl(list, d.stage).querySelector(".ops");
    ops.append(h("li", { "data-seq": d.seq, "data-outcome": "running" }, `${d.store}: ${d.description} — running`));
  } else if (name === "op_finished") {
    const li = list.querySelector(`.ops li[data-seq="${d.seq}"]`) || stageEl(list, d.stage).querySelector(".ops").appendChild(h("li", { "data-seq": d.seq }));
    li.dataset.outcome = d.error ? "failed" : "ok";
    li.textContent = `${d.store}: ${d.op} — ${d.error ? "failed: " + d.error : "ok"} in ${fmtMs(d.duration_ms)}, ${d.attempts} attempt(s)`;
  } else if (name === "checkpoint_started") {
    const c = stageEl(list, d.stage).querySelector(".checkpoint");
    c.dataset.state = "validating"; c.textContent = "Checkpoint: validating…";
  } else if (name === "checkpoint_finished") {
    const st = stageEl(list, d.stage);
    const c = st.querySelector(".checkpoint");
    c.dataset.state = d.passed ? "passed" : "failed";
    // The order checkpoints lit up in, for people reading the page later and for the browser test.
    c.dataset.litOrder = String(++state.lit);
    c.replaceChildren(`Checkpoint ${d.passed ? "validated" : "FAILED"} in ${fmtMs(d.duration_ms)}`,
      h("ul", {}, (d.observed || []).map(o => h("li", { "data-outcome": o.mismatch ? "failed" : "ok" },
        `${o.store}: expected ${o.expected}${o.primary ? ", primary " + o.primary : ""}${o.term != null ? ", store term " + o.term : ""}${o.mismatch ? " — " + o.mismatch : " ✓"}`))));
    st.dataset.state = d.passed ? "done" : "failed";
  } else if (name === "report") {
    renderReport(reportBox, d.report);
  }
}

function renderReport(box, r) {
  if (!r) return;
  box.replaceChildren(h("h3", {}, "Report"),
    h("p", { id: "report-status" }, "Status ", h("span", { class: "status status-" + r.status }, r.status),
      ` · total ${fmtMs(r.total_ms)} · overhead ${(r.overhead_us / 1000).toFixed(1)} ms · ${r.processes} process(es)`),
    h("div", { class: "scroll" }, h("table", { id: "report-stores" },
      h("thead", {}, h("tr", {}, ["Store", "RTO", "Primary", "Term", "Data loss"].map(c => h("th", { scope: "col" }, c)))),
      h("tbody", {}, (r.stores || []).map(s => h("tr", {}, h("td", {}, s.store), h("td", {}, fmtMs(s.rto_ms)),
        h("td", {}, s.primary || "none"), h("td", {}, s.term ?? "unknown"), h("td", {}, s.data_loss)))))),
    h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Stage", "Wall", "Operations", "Checkpoint", "Passed"].map(c => h("th", { scope: "col" }, c)))),
      h("tbody", {}, (r.stages || []).map(s => h("tr", {}, h("td", {}, `${s.stage}. ${s.name}`), h("td", {}, fmtMs(Math.round(s.stage_wall_us / 1000))),
        h("td", {}, fmtMs(s.ops_duration_ms)), h("td", {}, fmtMs(s.checkpoint_duration_ms)), h("td", {}, s.passed ? "yes" : "no")))))));
}

// Read Server-Sent Events from `path`, calling onEvent(name, data) for each;
// resolves when the server ends the stream (or stopLive aborts it).
async function sse(path, onEvent) {
  const ctl = new AbortController();
  state.stream = ctl;
  const headers = { "Accept": "text/event-stream" };
  if (token()) headers["Authorization"] = "Bearer " + token();
  // fetch, not EventSource: EventSource cannot send the Authorization header.
  let r;
  try { r = await fetch(path, { headers, signal: ctl.signal }); } catch (e) { if (e.name === "AbortError") return; throw e; }
  if (!r.ok) {
    if (r.status === 401) showLogin();
    throw new ApiError(r.status, await r.json().catch(() => ({})));
  }
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const chunk = buf.slice(0, i); buf = buf.slice(i + 2);
        let name = "message", data = "";
        for (const line of chunk.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        if (data) { let d; try { d = JSON.parse(data); } catch (_) { continue; /* keep-alive or lagged text */ } onEvent(name, d); }
      }
    }
  } catch (e) { if (e.name !== "AbortError") throw e; }
}

async function streamEvents(id, list, reportBox, onEnd) {
  await sse(`/v1/executions/${encodeURIComponent(id)}/events`, (name, d) => onEvent(list, name, d, reportBox));
  onEnd();
}

async function renderExecution(id) {
  const gen = state.gen;
  const ex = await api("GET", "/v1/executions/" + encodeURIComponent(id));
  current(gen);
  const list = h("ol", { id: "stages", class: "stages" });
  const reportBox = h("div", { id: "report" });
  const statusEl = h("span", { id: "exec-status", class: "status status-" + ex.status }, ex.status);
  const actions = h("p", { class: "buttons", id: "exec-actions" });
  const msg = h("p", { id: "exec-msg", role: "status" });
  const act = (what) => async () => {
    if (!confirm(`${what} execution ${id}?`)) return;
    try { await api("POST", `/v1/executions/${encodeURIComponent(id)}/${what}`, {}); route(); }
    catch (e) { msg.textContent = problemText(e); msg.className = "error"; }
  };
  const showActions = (v) => {
    actions.replaceChildren();
    if (v.status === "pending_approval") actions.append(h("a", { href: "#/approvals", id: "exec-approvals" }, "Waiting for a second person's approval: Approvals"));
    else if (v.resumable) actions.append(h("button", { type: "button", id: "exec-resume", class: "primary", onclick: act("resume") }, "Resume"),
      h("button", { type: "button", id: "exec-abort", class: "danger", onclick: act("abort") }, "Abort"));
  };
  showActions(ex);
  setView("Execution " + ex.id,
    h("p", {}, "Status ", statusEl, ` · ${ex.kind} · ${ex.plan} · started ${fmtTime(ex.started_at_ms)} by ${ex.started_by || "unknown"}` +
      `${ex.duration_ms != null ? " · took " + fmtMs(ex.duration_ms) : ""} · journal ${ex.journal_status}`),
    actions, msg, list, reportBox);
  // Its timeline from the journal: the same events the live stream sends.
  state.lit = 0;
  for (const ev of ex.timeline || []) onEvent(list, ev.event, ev, reportBox);
  if (ex.status === "running") {
    list.replaceChildren();
    state.lit = 0;
    streamEvents(ex.id, list, reportBox, async () => {
      try {
        const v = await api("GET", "/v1/executions/" + encodeURIComponent(id));
        statusEl.textContent = v.status; statusEl.className = "status status-" + v.status;
        showActions(v);
        if (!reportBox.firstChild) renderReport(reportBox, v.report);
        refreshAlerts();
      } catch (e) { msg.textContent = problemText(e); }
    }).catch(e => { msg.textContent = "Live events: " + problemText(e); });
  } else renderReport(reportBox, ex.report);
}

// ---- History
async function renderHistory() {
  const gen = state.gen;
  const ex = (await api("GET", "/v1/executions")).slice().reverse();
  current(gen);
  setView("History",
    ex.length === 0 ? h("p", { id: "history-empty" }, "No executions yet.") :
    h("div", { class: "scroll" }, h("table", { id: "history" },
      h("thead", {}, h("tr", {}, ["Execution", "Kind", "Plan", "Status", "Started", "Duration", "Started by"].map(c => h("th", { scope: "col" }, c)))),
      h("tbody", {}, ex.map(e => h("tr", { "data-execution": e.id },
        h("td", {}, h("a", { href: "#/executions/" + e.id }, e.id)), h("td", {}, e.kind), h("td", {}, e.plan),
        h("td", {}, h("span", { class: "status status-" + e.status }, e.status), e.resumable && e.status !== "pending_approval" ? " (resumable)" : ""),
        h("td", {}, fmtTime(e.started_at_ms)),
        h("td", { "data-col": "duration" }, e.duration_ms != null ? fmtMs(e.duration_ms) : "—"),
        h("td", { "data-col": "started-by" }, e.started_by || "unknown")))))));
}

// ---- Approvals: executions waiting for a second person
async function renderApprovals() {
  const gen = state.gen;
  const pending = (await api("GET", "/v1/executions")).filter(e => e.status === "pending_approval").reverse();
  current(gen);
  const item = e => {
    const a = e.approval || { request: { requester: {}, reasons: [] }, refused: [] };
    const msg = h("p", { class: "error approval-error", role: "status" });
    const approve = async ev => {
      ev.target.disabled = true;
      try {
        const r = await api("POST", `/v1/executions/${encodeURIComponent(e.id)}/approvals`, {});
        location.hash = "#/executions/" + r.id;
      } catch (err) { msg.textContent = problemText(err); ev.target.disabled = false; }
    };
    return h("li", { class: "approval", "data-approval": e.id },
      h("h3", {}, h("a", { href: "#/executions/" + e.id }, e.id)),
      h("p", {}, `${e.kind} · ${e.plan} · requested by `, h("strong", { class: "requester" }, a.request.requester.name || "unknown"),
        ` at ${fmtTime(a.request.at_ms)} · expires ${fmtTime(a.request.expires_at_ms)}`),
      h("ul", { class: "reasons" }, (a.request.reasons || []).map(r => h("li", {}, r))),
      (a.refused || []).length ? h("p", { class: "mut" }, "Refused so far: " + a.refused.map(r => `${r.approver.name} (${r.refused_because})`).join("; ")) : null,
      h("p", { class: "buttons" }, h("button", { type: "button", class: "primary", "data-approve": e.id, onclick: approve }, "Approve " + e.id)),
      msg);
  };
  setView("Approvals",
    h("p", { class: "mut" }, "Executions the safety policy wants a second person to approve. Approving needs an approver token that is not the requester's; the server then runs the execution."),
    pending.length === 0 ? h("p", { id: "approvals-empty" }, "Nothing waits for approval.") : h("ol", { id: "approvals", class: "approvals" }, pending.map(item)));
}

// ---- routing
async function route() {
  state.gen = (state.gen || 0) + 1;
  stopLive();
  const path = location.hash.replace(/^#/, "") || "/topology";
  for (const a of document.querySelectorAll("nav a")) {
    if (path.startsWith(a.getAttribute("href").slice(1))) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  document.getElementById("signout").hidden = !token();
  document.getElementById("who").textContent = token() ? "token set" : "no token";
  try {
    if (path === "/topology") {
      // Every round of the server's observer arrives as an SSE `state`
      // event; the view and the banners follow it.
      const gen = state.gen;
      const topo = await api("GET", "/v1/topology");
      current(gen);
      setView("Topology " + topo.name, h("p", { class: "mut", id: "observed" }, "Waiting for the server's first observation…"));
      const live = () => sse("/v1/state/events", (name, st) => {
        if (name !== "state") return;
        renderTopology(topo, st);
        refreshAlerts(st);
      });
      live().catch(e => setView("Topology", h("p", { class: "error", id: "view-error" }, problemText(e))));
    } else if (path === "/plans") await renderPlans();
    else if (path === "/approvals") await renderApprovals();
    else if (path === "/history") await renderHistory();
    else if (path.startsWith("/executions/")) await renderExecution(decodeURIComponent(path.slice(12)));
    else setView("Not found", h("p", {}, "No view " + path));
    document.getElementById("login").hidden = true;
  } catch (e) {
    if (e instanceof Stale) return;
    setView("Cannot show this view", h("p", { class: "error", id: "view-error" }, problemText(e)));
  }
  refreshAlerts();
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login-form").addEventListener("submit", e => {
    e.preventDefault();
    const t = document.getElementById("token").value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    document.getElementById("token").value = "";
    route();
  });
  document.getElementById("signout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); route(); });
  window.addEventListener("hashchange", route);
  route();
});
