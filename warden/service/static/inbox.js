// Reviewer inbox: lists the caller's pending approvals and posts decisions.
// The credential stays in sessionStorage and is sent only to this origin.
"use strict";

const TOKEN_KEY = "warden.inbox.token";
const RISK_RANK = { low: 0, medium: 1, high: 2 };

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${token()}`, "Content-Type": "application/json", ...(options.headers || {}) },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(body.detail)
      ? body.detail.map((e) => `${e.loc.join(".")}: ${e.msg}`).join("; ")
      : body.detail || response.statusText;
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

function formatAge(seconds) {
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

function renderAction(approval, action) {
  const node = document.getElementById("action-template").content.firstElementChild.cloneNode(true);
  node.dataset.actionId = action.action_id;
  node.querySelector(".tool").textContent = action.tool;
  node.querySelector(".action-id").textContent = action.action_id;
  const verdict = action.verdict;
  const approvers = action.approved_by.length ? ` Approved so far by ${action.approved_by.join(", ")}.` : "";
  const edited = action.edited_by
    ? ` Edited by ${action.edited_by}; the arguments below replace the proposed ${JSON.stringify(action.proposed_arguments)}.`
    : "";
  node.querySelector(".verdict").textContent =
    `Policy: ${verdict.verdict} [${verdict.rule}] ${verdict.reason} ` +
    `(risk ${action.risk}, scope ${action.scope}${action.irreversible ? ", irreversible" : ""}).${approvers}${edited}`;
  node.querySelector(".rationale").textContent = action.rationale ? `Why: ${action.rationale}` : "";
  const args = node.querySelector(".arguments");
  args.value = JSON.stringify(action.arguments, null, 2);
  args.readOnly = true;
  for (const radio of node.querySelectorAll("input[type=radio]")) {
    radio.name = `decision-${approval.thread_id}-${action.action_id}`;
    if (radio.value === "edit" && !action.editable) radio.disabled = true;
    radio.addEventListener("change", () => {
      args.readOnly = radio.value !== "edit";
    });
  }
  if (!action.waiting || !action.can_decide || approval.expired) {
    node.disabled = true;
  }
  return node;
}

function readDecision(fieldset) {
  const choice = fieldset.querySelector("input[type=radio]:checked").value;
  const text = fieldset.querySelector(".text").value.trim();
  const decision = { decision: choice };
  if (choice === "reject") decision.reason = text;
  if (choice === "respond") decision.message = text;
  if (choice === "edit") decision.arguments = JSON.parse(fieldset.querySelector(".arguments").value);
  return decision;
}

function renderApproval(approval) {
  const node = document.getElementById("approval-template").content.firstElementChild.cloneNode(true);
  node.dataset.threadId = approval.thread_id;
  node.classList.toggle("expired", approval.expired);
  const risk = node.querySelector(".risk");
  risk.textContent = approval.risk;
  risk.classList.add(`risk-${approval.risk}`);
  node.querySelector(".thread").textContent = `${approval.thread_id} (round ${approval.round})`;
  node.querySelector(".age").textContent = formatAge(approval.age_seconds);
  node.querySelector(".expired-badge").hidden = !approval.expired;
  node.querySelector(".customer-message").textContent = approval.message;

  const plan = node.querySelector(".plan");
  for (const step of approval.plan) {
    const item = document.createElement("li");
    item.textContent = `${step.tool}(${JSON.stringify(step.arguments)})${step.why ? ` — ${step.why}` : ""}`;
    plan.append(item);
  }
  const actions = node.querySelector(".actions");
  for (const action of approval.actions) actions.append(renderAction(approval, action));

  const citations = node.querySelector(".citations");
  const cited = new Set([...approval.plan, ...approval.actions].flatMap((item) => item.citations));
  for (const [chunkId, passage] of Object.entries(approval.citations)) {
    const term = document.createElement("dt");
    const mark = cited.has(chunkId) ? " — cited by the plan" : "";
    term.textContent = `${passage.title || chunkId} (${passage.source}) [${chunkId}]${mark}`;
    const text = document.createElement("dd");
    text.textContent = passage.text;
    citations.append(term, text);
  }
  if (!Object.keys(approval.citations).length) node.querySelector(".citations-details").hidden = true;
  if (approval.error) node.querySelector(".error").textContent = `Last decision was rejected: ${approval.error}`;

  const submit = node.querySelector(".submit");
  if (approval.expired) {
    submit.textContent = "Close as expired";
  }
  submit.addEventListener("click", () => submitDecisions(node, approval));
  return node;
}

async function submitDecisions(node, approval) {
  const error = node.querySelector(".error");
  error.textContent = "";
  const decisions = {};
  try {
    for (const fieldset of node.querySelectorAll("fieldset.action:not([disabled])")) {
      decisions[fieldset.dataset.actionId] = readDecision(fieldset);
    }
  } catch (problem) {
    error.textContent = `Edited arguments are not valid JSON: ${problem.message}`;
    return;
  }
  if (approval.expired) {
    // Any decision on an expired request closes it as expired on the server.
    for (const action of approval.actions.filter((a) => a.waiting)) {
      decisions[action.action_id] = { decision: "reject", reason: "expired" };
    }
  }
  node.querySelector(".submit").disabled = true;
  try {
    const outcome = await api(`/v1/approvals/${encodeURIComponent(approval.thread_id)}/decisions`, {
      method: "POST",
      body: JSON.stringify({ decisions }),
    });
    document.getElementById("status").textContent = `${approval.thread_id}: ${outcome.status}`;
  } catch (problem) {
    error.textContent = problem.message;
    document.getElementById("status").textContent = `${approval.thread_id}: ${problem.message}`;
  }
  await refresh();
}

async function refresh() {
  const approvals = await api("/v1/approvals");
  approvals.sort(
    (a, b) => b.age_seconds - a.age_seconds || RISK_RANK[b.risk] - RISK_RANK[a.risk],
  );
  const list = document.getElementById("approvals");
  list.replaceChildren(...approvals.map(renderApproval));
  document.getElementById("empty").hidden = approvals.length > 0;
  document.body.dataset.loaded = String(Date.now());
}

async function start() {
  const me = await api("/v1/me");
  document.getElementById("who").textContent = `${me.subject} (${me.role}, tenant ${me.tenant})`;
  document.getElementById("login").hidden = true;
  document.getElementById("inbox").hidden = false;
  document.getElementById("logout").hidden = false;
  await refresh();
}

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
  try {
    await start();
  } catch (problem) {
    sessionStorage.removeItem(TOKEN_KEY);
    document.getElementById("login-error").textContent = problem.message;
  }
});

document.getElementById("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
});

if (token()) start().catch(() => sessionStorage.removeItem(TOKEN_KEY));
