// The rows of a batch: one per page (canonical URL), however many lines named it.
import { el, link, plural, replaceContent } from "./dom.js";
import { failureView, recordView } from "./records.js";

const FINAL = new Set(["done", "failed"]);
// Final states with no record to wait for: the row settles on the batch's word alone, with a
// note saying why nothing is shown (GET /records has nothing for it, so waiting would never end).
const NO_RECORD = new Map([["expired", recordGone], ["canceled", canceledBeforeRun]]);

export class Rows {
  constructor(list, summary) {
    this.list = list; // the <ol> the rows go in
    this.summary = summary; // the line counting them
    this.byUrl = new Map(); // canonical URL -> row, in the order the batch first names it
    this.lines = 0; // the batch's items (submitted lines), duplicates included
  }

  /** Create the rows, once, from POST /parse's accepted items or the batch's own items. */
  build(items) {
    if (this.lines) return;
    for (const item of items) {
      const row = this.byUrl.get(item.canonical_url) || this.addRow(item);
      row.lines += 1;
      if (!row.spellings.includes(item.url)) row.spellings.push(item.url);
      this.lines += 1;
    }
    for (const row of this.byUrl.values()) renderHead(row);
    this.renderSummary();
  }

  addRow(item) {
    const row = {
      canonical: item.canonical_url, source: item.source, spellings: [], lines: 0,
      badge: el("span", { class: "badge" }), head: el("div", { class: "row-head" }),
      details: el("div", { class: "details" }),
      status: null, step: null, refreshing: false, error: null, record: null, settled: false,
    };
    row.node = el("li", { class: "row" }, row.head, row.details);
    this.list.appendChild(row.node);
    this.byUrl.set(row.canonical, row);
    setStatus(row, item);
    return row;
  }

  /** The batch's current item states (GET /batches/<id>): badges now, settling once records are in. */
  update(items) {
    this.build(items);
    const seen = new Set();
    for (const item of items) {
      const row = this.byUrl.get(item.canonical_url);
      if (!row || seen.has(row)) continue; // duplicates share their page's state
      seen.add(row);
      setStatus(row, item);
      if (NO_RECORD.has(row.status)) settleWithoutRecord(row);
      else if (!isFinal(row) && row.settled) unsettle(row); // a new fetch was asked for since
    }
    this.renderSummary();
  }

  /** Rows whose final state is known but whose record has not been shown yet. */
  waitingForRecords() {
    return [...this.byUrl.values()].filter((row) => isFinal(row) && !row.settled).length;
  }

  /** The batch's records (GET /records?batch=): shown, and every final row settled. */
  applyRecords(records) {
    const byUrl = new Map(records.filter((r) => r && typeof r === "object").map((record) => [record.url, record]));
    for (const row of this.byUrl.values()) {
      const record = byUrl.get(row.canonical);
      if (record) showRecord(row, record);
      if (isFinal(row) && !row.settled) settle(row, record ? null : missingRecord(row));
    }
    this.renderSummary();
  }

  allSettled() {
    return [...this.byUrl.values()].every((row) => row.settled);
  }

  /** The records shown, in row order: what "Copy JSON" copies. */
  records() {
    return [...this.byUrl.values()].map((row) => row.record).filter(Boolean);
  }

  renderSummary() {
    const rows = [...this.byUrl.values()];
    const counts = new Map();
    for (const row of rows) counts.set(row.status, (counts.get(row.status) || 0) + 1);
    const settled = rows.filter((row) => row.settled).length;
    const parts = [`${settled} of ${rows.length} finished`, ...[...counts].map(([status, n]) => `${n} ${status}`)];
    if (this.lines > rows.length) parts.push(`${plural(this.lines, "line")} submitted, duplicates shown once`);
    this.summary.textContent = parts.join(" · ");
  }
}

const isFinal = (row) => FINAL.has(row.status) && !row.refreshing;

function renderHead(row) {
  const [first, ...others] = row.spellings;
  replaceContent(row.head, row.badge, el("span", { class: "source" }, row.source),
    el("span", { class: "url" }, link(row.canonical, first)),
    row.lines > 1 ? el("span", { class: "lines" }, `submitted ${row.lines} times`) : null,
    others.length ? el("span", { class: "spellings" }, `also as ${others.join(", ")}`) : null);
}

/** The badge shows the step while a job runs: queued → fetching → parsing → done/failed. */
function setStatus(row, item) {
  row.status = item.status;
  row.step = item.step || null;
  row.refreshing = Boolean(item.refreshing);
  row.error = item.error || null;
  const label = row.refreshing ? "refreshing" : row.status === "started" ? row.step || "started" : row.status;
  if (row.badge.textContent !== label) {
    row.badge.textContent = label;
    row.badge.dataset.status = label;
  }
  row.node.dataset.status = row.status;
}

function showRecord(row, record) {
  row.record = record;
  const note = row.refreshing ? el("p", { class: "note" }, "Showing the stored copy while a new one is fetched.") : null;
  replaceContent(row.details, recordView(record), note);
}

/** A final row the batch has no record for: a job that died before saving, or a record gone since. */
function missingRecord(row) {
  if (row.status === "failed") return failureView(row.error);
  return recordGone();
}

function recordGone() {
  return el("p", { class: "note" }, "The record is no longer stored; submit the URL again.");
}

function canceledBeforeRun() {
  return el("p", { class: "note" }, "Canceled before it ran; submit it again.");
}

/** Expired or canceled: nothing more comes for it (no record, no job) until it is submitted again. */
function settleWithoutRecord(row) {
  if (!row.settled) settle(row, NO_RECORD.get(row.status)());
}

/** A row is settled when nothing more will change: tests and the summary wait for this. */
function settle(row, details) {
  if (details) replaceContent(row.details, details);
  row.settled = true;
  row.node.dataset.settled = "true";
}

function unsettle(row) {
  row.settled = false;
  delete row.node.dataset.settled;
}
