// The metaparse page: POST the pasted URLs to /parse, poll GET /batches/<id> until every row
// is finished, then show each record from GET /info.
//
// SECURITY: fetched pages are hostile input, and so is anything the API echoes back. Text is
// only ever inserted through el() below (text nodes and setAttribute), never as markup, and
// only http(s) URLs become links or images (a javascript: link would run on click).
"use strict";

(() => {
  const POLL_MS = 1000;
  const SLOW_POLL_MS = 5000; // after a failed request: give a struggling service room
  const REQUEST_TIMEOUT_MS = 15000; // no answer by then: say so rather than spin
  const HEADLINES_SHOWN = 10;
  const TERMINAL = new Set(["done", "failed", "expired"]);
  const TOKEN_KEY = "metaparse.token";

  const $ = (id) => document.getElementById(id);
  let generation = 0; // bumped per submission, so the loops of an older batch stop

  // ---- DOM helpers: the only way this page creates content -------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      // Event handlers never come from data; refusing them keeps that true by construction.
      if (/^on/i.test(name)) throw new Error(`refusing event handler attribute ${name}`);
      node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) appendChild(node, child);
    return node;
  }

  function appendChild(node, child) {
    if (child === null || child === undefined || child === false) return;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }

  /** The URL, normalised, when it is absolute http(s); else null. */
  function httpUrl(value) {
    if (typeof value !== "string") return null;
    try {
      const url = new URL(value); // no base: relative URLs throw, so they never load from here
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch {
      return null;
    }
  }

  /** A link opening in a new tab, or plain text when href is not http(s). */
  function link(href, text) {
    const url = httpUrl(href);
    if (!url) return el("span", {}, text);
    return el("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, text);
  }

  function image(src, alt, className) {
    const url = httpUrl(src);
    if (!url) return null;
    return el("img", { src: url, alt, class: className, loading: "lazy", referrerpolicy: "no-referrer" });
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const plural = (n, word) => `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;

  // ---- the alert: every API error ends up here, visible ------------------------------------

  // One message per owner. Errors stay until the next submission; the single "retry"
  // message (the service is unreachable or failing) is cleared once it answers again.
  const alerts = new Map();
  let alertCount = 0;

  function showAlert(message, owner = `error-${++alertCount}`) {
    alerts.set(owner, message);
    renderAlerts();
  }

  function clearAlert(owner) {
    if (owner === undefined) alerts.clear();
    else alerts.delete(owner);
    renderAlerts();
  }

  function renderAlerts() {
    const box = $("alert");
    box.replaceChildren(...[...alerts.values()].map((message) => el("p", {}, message)));
    box.hidden = alerts.size === 0;
  }

  // ---- the API -------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status; // 0 when the service could not be reached
      this.code = code;
    }

    get retryable() {
      return this.status === 0 || this.status === 429 || this.status >= 500;
    }

    /** Not reachable, or answering that it cannot serve now (its storage away, a proxy's 502/504). */
    get unavailable() {
      return this.status === 0 || this.status === 502 || this.status === 503 || this.status === 504;
    }
  }

  /** {status, ok, body}: body is the parsed JSON, or null when the answer is not JSON. */
  async function api(path, options = {}) {
    let response, text;
    try {
      response = await fetch(path, {
        ...options,
        headers: { Accept: "application/json", ...options.headers },
        credentials: "same-origin",
        cache: "no-store",
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      text = await response.text();
    } catch (error) {
      if (error.name === "TimeoutError") {
        throw new ApiError(0, "timeout", `no answer within ${REQUEST_TIMEOUT_MS / 1000} s`);
      }
      throw new ApiError(0, "network_error", `the request failed: ${error.message}`);
    }
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON (a proxy's error page, say): errorOf() reports the status instead
    }
    return { status: response.status, ok: response.ok, body };
  }

  /** The ApiError an unwanted answer stands for, using the service's {"error": {code, message}}. */
  function errorOf(result) {
    const error = result.body && result.body.error;
    if (error && typeof error === "object") {
      return new ApiError(result.status, String(error.code), String(error.message));
    }
    return new ApiError(result.status, `http_${result.status}`, `unexpected answer from the service (HTTP ${result.status})`);
  }

  function describe(error) {
    if (!(error instanceof ApiError)) return `error: ${error && error.message ? error.message : error}`;
    const detail = error.status ? `${error.code}: ${error.message} (HTTP ${error.status})` : `${error.code}: ${error.message}`;
    return error.unavailable ? `The service is unavailable; try again shortly. ${detail}` : detail;
  }

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
    if (urls.length === 0) {
      clearAlert();
      showAlert("Paste at least one URL.");
      $("urls").focus();
      return;
    }
    const run = ++generation;
    clearAlert();
    resetResults();
    setBusy(true);
    try {
      const result = await api("/parse", {
        method: "POST",
        headers: { "Content-Type": "application/json", ...authHeaders() },
        body: JSON.stringify({ urls, refresh: $("refresh").checked }),
      });
      startBatch(result, run);
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
    $("rows").replaceChildren();
    $("rejected-list").replaceChildren();
    $("rejected").hidden = true;
    $("summary").textContent = "";
  }

  /** Render the answer of POST /parse and start polling its batch. */
  function startBatch(result, run) {
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
    const rows = body.accepted.map(addRow);
    renderSummary(rows);
    pollBatch(body.batch_id, rows, run);
  }

  function renderRejected(rejected) {
    if (rejected.length === 0) return;
    const items = rejected.map((item) =>
      el("li", {}, el("span", { class: "url" }, String(item.url)), el("span", { class: "reason" }, String(item.reason))));
    $("rejected-list").replaceChildren(...items);
    $("rejected").hidden = false;
  }

  // ---- rows --------------------------------------------------------------------------------------

  function addRow(item) {
    const badge = el("span", { class: "badge" });
    const details = el("div", { class: "details" });
    const head = el("div", { class: "row-head" },
      badge, el("span", { class: "source" }, item.source), el("span", { class: "url" }, link(item.canonical_url, item.url)));
    const node = el("li", { class: "row" }, head, details);
    $("rows").appendChild(node);
    const row = { item, node, badge, details, status: null, step: null, following: false, settled: false };
    setStatus(row, item.status, null);
    return row;
  }

  /** The badge shows the step while a job runs: queued → fetching → parsing → done/failed. */
  function setStatus(row, status, step) {
    row.status = status;
    row.step = step || null;
    const label = status === "started" ? step || "started" : status;
    row.badge.textContent = label;
    row.badge.dataset.status = label;
    row.node.dataset.status = status;
  }

  /** A row is settled when nothing more will change: tests and the summary wait for this. */
  function settle(row) {
    row.settled = true;
    row.node.dataset.settled = "true";
  }

  function renderSummary(rows) {
    const counts = new Map();
    for (const row of rows) counts.set(row.status, (counts.get(row.status) || 0) + 1);
    const settled = rows.filter((row) => row.settled).length;
    const parts = [...counts].map(([status, n]) => `${n} ${status}`);
    $("summary").textContent = `${settled} of ${rows.length} finished · ${parts.join(" · ")}`;
  }

  // ---- polling -------------------------------------------------------------------------------------

  async function pollBatch(batchId, rows, run) {
    while (run === generation) {
      let delay = POLL_MS;
      try {
        const result = await api(`/batches/${encodeURIComponent(batchId)}`);
        if (run !== generation) return; // a newer submission owns the page now
        if (!result.ok) throw errorOf(result);
        clearAlert("retry"); // the service answers again
        applyBatch(result.body, rows, run);
        if (rows.every((row) => TERMINAL.has(row.status))) return;
      } catch (error) {
        if (run !== generation) return;
        const retry = error instanceof ApiError && error.retryable;
        showAlert(`Could not read the batch: ${describe(error)}${retry ? " (retrying)" : ""}`, retry ? "retry" : undefined);
        if (!retry) return;
        delay = SLOW_POLL_MS;
      }
      await sleep(delay);
    }
  }

  function applyBatch(batch, rows, run) {
    const items = Array.isArray(batch && batch.items) ? batch.items : [];
    // The batch lists its items in the order POST /parse accepted them, one per row.
    rows.forEach((row, index) => {
      const item = items[index];
      if (item && !row.following) updateRow(row, item, rows, run);
    });
    renderSummary(rows);
  }

  function updateRow(row, item, rows, run) {
    setStatus(row, item.status, item.step);
    if (item.status === "expired") {
      row.details.replaceChildren(el("p", { class: "note" }, "The record is no longer stored; submit the URL again."));
      settle(row);
    } else if (TERMINAL.has(item.status)) {
      // From here /info is the source of truth: it has the data, and says when a refresh is
      // still in flight (the batch shows the stored record's status meanwhile).
      row.following = true;
      if (item.status === "failed") renderFailure(row, item.error);
      followRecord(row, rows, run);
    }
  }

  /** Poll GET /info for one row until its record is final, rendering each answer. */
  async function followRecord(row, rows, run) {
    while (run === generation) {
      let delay = POLL_MS;
      try {
        const result = await api(`/info?url=${encodeURIComponent(row.item.canonical_url)}`);
        if (run !== generation) return;
        if (result.status !== 200) throw errorOf(result);
        clearAlert("retry");
        renderRecord(row, result.body);
        if (!result.body.refresh) break;
      } catch (error) {
        if (run !== generation) return;
        const retry = error instanceof ApiError && error.retryable;
        showAlert(`Could not load ${row.item.url}: ${describe(error)}${retry ? " (retrying)" : ""}`, retry ? "retry" : undefined);
        if (!retry) {
          row.details.replaceChildren(el("p", { class: "error" }, `Could not load the record: ${describe(error)}`));
          break;
        }
        delay = SLOW_POLL_MS;
      }
      await sleep(delay);
    }
    if (run === generation) {
      settle(row);
      renderSummary(rows);
    }
  }

  // ---- records -------------------------------------------------------------------------------------

  const RENDERERS = {
    goodreads_book: renderBook,
    news_headlines: renderNews,
    page: renderPage,
  };

  function renderRecord(row, record) {
    if (record.refresh) {
      setStatus(row, record.refresh, null); // "queued" or "started": a new copy is coming
    } else {
      setStatus(row, record.status, null);
    }
    if (record.status === "failed") {
      renderFailure(row, record.error);
    } else {
      const data = record.data && typeof record.data === "object" ? record.data : {};
      const render = RENDERERS[data.kind] || renderRaw;
      row.details.replaceChildren(render(data), fetchedNote(record));
    }
    if (record.refresh) row.details.appendChild(el("p", { class: "note" }, "Showing the stored copy while a new one is fetched."));
  }

  function renderFailure(row, error) {
    const code = error && error.code ? String(error.code) : "unknown_error";
    const message = error && error.message ? String(error.message) : "no details were recorded";
    row.details.replaceChildren(el("p", { class: "error" }, el("code", {}, code), " ", message));
  }

  function fetchedNote(record) {
    const when = new Date(record.fetched_at);
    if (Number.isNaN(when.getTime())) return null;
    return el("p", { class: "note" }, "Fetched ", el("time", { datetime: when.toISOString() }, when.toLocaleString()));
  }

  function renderBook(data) {
    const title = data.title ? String(data.title) : "(untitled)";
    const authors = Array.isArray(data.authors) ? data.authors.map(String) : [];
    return el("div", { class: "card" },
      image(data.cover_url, `Cover of ${title}`, "cover"),
      el("div", { class: "card-text" },
        el("h3", { class: "title" }, link(data.url, title)),
        authors.length ? el("p", { class: "authors" }, `by ${authors.join(", ")}`) : null,
        ratingLine(data)));
  }

  function ratingLine(data) {
    if (typeof data.rating !== "number") return null;
    const count = typeof data.ratings_count === "number" ? ` (${plural(data.ratings_count, "rating")})` : "";
    return el("p", { class: "rating" }, el("span", { "aria-hidden": "true" }, "★ "), `Rating ${data.rating.toFixed(2)} / 5${count}`);
  }

  function renderNews(data) {
    const headlines = Array.isArray(data.headlines) ? data.headlines.filter((h) => h && typeof h === "object") : [];
    const shown = headlines.slice(0, HEADLINES_SHOWN);
    const more = headlines.length - shown.length;
    return el("div", { class: "card news" },
      el("div", { class: "card-text" },
        el("h3", { class: "title" }, data.site ? String(data.site) : "News"),
        shown.length
          ? el("ol", { class: "headlines" }, ...shown.map((h) => el("li", {}, link(h.url, h.title ? String(h.title) : "(untitled)"))))
          : el("p", { class: "note" }, "No headlines found."),
        more > 0 ? el("p", { class: "more" }, plural(more, "more headline")) : null));
  }

  function renderPage(data) {
    const title = data.title ? String(data.title) : "(untitled)";
    return el("div", { class: "card" },
      image(data.image, "", "thumb"), // decorative: the title beside it says what it is
      el("div", { class: "card-text" },
        el("h3", { class: "title" }, link(data.canonical_url, title)),
        data.description ? el("p", { class: "description" }, String(data.description)) : null));
  }

  /** Kinds this page does not know yet: the data as JSON text. */
  function renderRaw(data) {
    return el("pre", { class: "raw" }, JSON.stringify(data, null, 2));
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
  }

  init();
})();
