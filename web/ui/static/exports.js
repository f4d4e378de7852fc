// The batch bar: its id and address, Copy JSON (the records the page holds) and the downloads.
import { $, el, plural } from "./dom.js";

let heldRecords = () => [];

/** Show the bar for this batch; records() returns the records shown so far, in row order. */
export function showExports(batchId, records) {
  const query = `batch=${encodeURIComponent(batchId)}`;
  $("download-jsonl").href = `/records.jsonl?${query}`; // streamed by the service, every record of the batch
  $("download-csv").href = `/records.csv?${query}`;
  $("batch-id").textContent = batchId;
  $("batch-link").href = `#${query}`;
  $("copy-status").textContent = "";
  heldRecords = records;
  $("batch-bar").hidden = false;
}

export function hideExports() {
  heldRecords = () => [];
  $("batch-bar").hidden = true;
}

export function initExports() {
  $("copy-json").addEventListener("click", copyJson);
}

async function copyJson() {
  const records = heldRecords();
  const copied = await copyText(JSON.stringify(records, null, 2));
  $("copy-status").textContent = copied
    ? `Copied ${plural(records.length, "record")} as JSON.`
    : "The browser did not let the page use the clipboard; use Download JSONL instead.";
}

/** The async clipboard where the browser allows it, else the older copy command on a selection. */
async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return copyBySelection(text); // no clipboard API (not a secure context), or permission refused
  }
}

function copyBySelection(text) {
  const area = el("textarea", { class: "offscreen", readonly: true, "aria-hidden": "true" });
  area.value = text;
  document.body.appendChild(area);
  area.select();
  let copied = false;
  try {
    copied = document.execCommand("copy");
  } catch {
    copied = false;
  }
  area.remove();
  return copied;
}
