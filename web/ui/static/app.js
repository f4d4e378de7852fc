// The metaparse page: POST the pasted URLs to /parse, then follow the batch (batch.js) with
// its id in the address (#batch=<id>), so a reload or a shared link shows the same batch.
//
// SECURITY: everything from the API is inserted as text (dom.js); see the note there.
import { clearAlert, showAlert } from "./alerts.js";
import { api, describe, errorOf } from "./api.js";
import { BatchWatch } from "./batch.js";
import { $, el } from "./dom.js";
import { hideExports, initExports, showExports } from "./exports.js";
import { checkHealth } from "./health.js";
import { Rows } from "./rows.js";

const TOKEN_KEY = "metaparse.token";
const BATCH_ADDRESS = /^#batch=(.*)$/;
const BATCH_ID = /^[0-9a-f]{32}$/; // what POST /parse hands out
const POLL_MS = 1000; // after POST /parse: its answer holds every row's state already

let generation = 0; // bumped per batch shown, so the loop of an older one stops
let shownBatch = null;

// ---- the token (only needed when the service sets API_TOKENS) -----------------------------

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return ""; // storage disabled: the field still works for this page view
  }
}

function authHeaders() {
  const token = $("token").value.trim();
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: nothing to remember
  }
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function revealTokenField() {
  $("token-field").hidden = false;
  $("token").focus();
}

// ---- submitting ------------------------------------------------------------------------------

async function onSubmit(event) {
  event.preventDefault();
  const urls = $("urls").value.split(/\r?\n/).map((line) => line.trim()).filter(Boolean);
  clearAlert();
  if (urls.length === 0) {
    showAlert("Paste at least one URL.");
    $("urls").focus();
    return;
  }
  const run = ++generation;
  resetResults();
  setBusy(true);
  checkHealth();
  try {
    const result = await api("/parse", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify({ urls, refresh: $("refresh").checked }),
    });
    if (run === generation) startBatch(result);
  } catch (error) {
    showAlert(describe(error));
  } finally {
    setBusy(false);
  }
}

function setBusy(busy) {
  const button = $("submit");
  button.disabled = busy;
  button.textContent = busy ? "Submitting…" : "Submit";
}

function resetResults() {
  shownBatch = null;
  hideExports();
  $("rows").replaceChildren();
  $("rejected-list").replaceChildren();
  $("rejected").hidden = true;
  $("summary").textContent = "";
}

/** Render the answer of POST /parse and follow its batch. */
function startBatch(result) {
  const body = result.body || {};
  // 400 with accepted/rejected still lists the reasons; any other error is {"error": ...}.
  if (!Array.isArray(body.accepted) || !Array.isArray(body.rejected)) {
    if (result.status === 401) revealTokenField();
    throw errorOf(result);
  }
  renderRejected(body.rejected);
  if (body.accepted.length === 0) {
    showAlert(`None of the URLs was accepted (HTTP ${result.status}); the reasons are listed below.`);
    return;
  }
  if (!BATCH_ID.test(String(body.batch_id))) throw errorOf({ status: result.status, body: null });
  history.pushState(null, "", `#batch=${body.batch_id}`); // pushState: Back returns to the batch before
  showBatch(body.batch_id, body.accepted);
}

/** The rejected lines, each distinct line and reason once, with how many times it was sent. */
function renderRejected(rejected) {
  if (rejected.length === 0) return;
  const counts = new Map();
  for (const item of rejected) {
    const key = JSON.stringify([String(item.url), String(item.reason)]);
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  const items = [...counts].map(([key, n]) => {
    const [url, reason] = JSON.parse(key);
    return el("li", {}, el("span", { class: "url" }, url), n > 1 ? el("span", { class: "lines" }, `submitted ${n} times`) : null,
      el("span", { class: "reason" }, reason));
  });
  $("rejected-list").replaceChildren(...items);
  $("rejected").hidden = false;
}

// ---- showing a batch: just submitted, or named by the address -----------------------------

/** Show the batch and follow it until every row is settled; accepted: POST /parse's items. */
function showBatch(batchId, accepted = null) {
  const run = ++generation;
  shownBatch = batchId;
  const rows = new Rows($("rows"), $("summary"));
  if (accepted) rows.build(accepted);
  showExports(batchId, () => rows.records());
  const watch = new BatchWatch(batchId, rows, () => run === generation);
  watch.run(accepted ? POLL_MS : 0);
}

/** The address's %-escapes decoded; as typed when they are malformed (%E0%A4%A), which throws. */
function decodedOrRaw(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text; // not 32 hex digits either way: followAddress says the address names no batch
  }
}

/** Show what the address names (#batch=<id>, or nothing), when it differs from what is shown. */
function followAddress() {
  const match = BATCH_ADDRESS.exec(location.hash);
  const batchId = match ? decodedOrRaw(match[1]) : null;
  if (batchId === shownBatch) return;
  ++generation; // whatever the address names now, the batch shown before is no longer followed
  clearAlert();
  resetResults();
  if (batchId === null) return; // Back to the page before any batch: an empty page again
  if (!BATCH_ID.test(batchId)) {
    showAlert(`The address names no batch: "${batchId}" is not a batch id (32 hex digits).`);
    return;
  }
  checkHealth();
  showBatch(batchId);
}

// ---- start -----------------------------------------------------------------------------------------

function init() {
  const token = storedToken();
  $("token").value = token;
  if (token) $("token-field").hidden = false;
  $("submit-form").addEventListener("submit", onSubmit);
  $("urls").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("submit-form").requestSubmit();
  });
  initExports();
  window.addEventListener("hashchange", followAddress); // Back/Forward, or a batch link pasted in
  if (BATCH_ADDRESS.test(location.hash)) followAddress();
  else checkHealth();
}

init();
