// Following one batch: GET /batches/<id> for every row's state, GET /records?batch=<id> for
// the records of the rows that finished. Never a request per row.
//
// Request budget, whatever the batch's size (500 URLs is the most one POST may send): one
// batch poll a second, and a records fetch only when rows finished since the last one, at
// most every 5 s, then every 7.5, 11, 17, 25 and 30 s while the batch runs (and once more
// when it ends). A batch running T seconds costs at most T + 1 polls and T / 5 + 2 record
// fetches: under 75 of RATE_LIMIT_READ's default 600 a minute, plus a GET /healthz every
// 15 s, which is not rate limited. A 429 is waited out for its Retry-After, said on screen.
import { clearAlert, showAlert } from "./alerts.js";
import { ApiError, describe, getJson } from "./api.js";
import { sleep } from "./dom.js";
import { checkHealthEvery } from "./health.js";

const POLL_MS = 1000;
const SLOW_POLL_MS = 5000; // after a failed request: give a struggling service room
const RECORDS_EVERY_MS = 5000; // the first spacing of record fetches while the batch runs...
const RECORDS_GROWTH = 1.5; // ...growing by this factor each time (the answer grows too)...
const RECORDS_EVERY_MAX_MS = 30000; // ...up to this
const HEALTH_EVERY_MS = 15000;
const RECORDS_PAGE = 1000; // the most GET /records gives at once: more than a batch holds (500 URLs)

export class BatchWatch {
  constructor(id, rows, isCurrent) {
    this.id = id;
    this.rows = rows;
    this.isCurrent = isCurrent; // false once another batch owns the page
    this.recordsAt = -Infinity;
    this.recordsEvery = RECORDS_EVERY_MS;
  }

  /** Poll until every row is settled; firstDelay: the rows' states are fresh already. */
  async run(firstDelay = 0) {
    let delay = firstDelay;
    for (;;) {
      await sleep(delay);
      if (!this.isCurrent()) return;
      try {
        const finished = await this.poll();
        clearAlert("retry"); // the service answers again
        clearAlert("rate");
        if (finished) return;
        delay = POLL_MS;
      } catch (error) {
        if (!this.isCurrent()) return;
        delay = this.failed(error);
        if (delay === null) return;
      }
    }
  }

  /** One round: the batch's states, then its records if rows are waiting for theirs. True when all is shown. */
  async poll() {
    checkHealthEvery(HEALTH_EVERY_MS);
    const batch = await getJson(`/batches/${encodeURIComponent(this.id)}`);
    if (!this.isCurrent()) return true;
    this.rows.update(Array.isArray(batch.items) ? batch.items : []);
    const due = batch.finished || Date.now() - this.recordsAt >= this.recordsEvery;
    if (this.rows.waitingForRecords() && due) await this.loadRecords();
    return Boolean(batch.finished) && this.rows.allSettled();
  }

  /** The batch's records: GET /records?batch= pages them, and a page of RECORDS_PAGE holds a whole batch. */
  async loadRecords() {
    const records = [];
    let cursor = null;
    do {
      const query = `batch=${encodeURIComponent(this.id)}&limit=${RECORDS_PAGE}`
        + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "");
      const answer = await getJson(`/records?${query}`);
      if (!this.isCurrent()) return;
      if (Array.isArray(answer.records)) records.push(...answer.records);
      cursor = typeof answer.next_cursor === "string" ? answer.next_cursor : null;
    } while (cursor);
    this.recordsAt = Date.now();
    this.recordsEvery = Math.min(this.recordsEvery * RECORDS_GROWTH, RECORDS_EVERY_MAX_MS);
    this.rows.applyRecords(records);
  }

  /** Say what went wrong; the delay before asking again, or null to stop (the batch is gone, say). */
  failed(error) {
    if (error instanceof ApiError && error.rateLimited) {
      const wait = error.retryAfter || SLOW_POLL_MS / 1000;
      showAlert(`The service is limiting this page's requests: ${describe(error)}. `
        + `Asking again in ${wait} s, as its Retry-After says.`, "rate");
      return wait * 1000;
    }
    const retry = error instanceof ApiError && error.retryable;
    showAlert(`Could not read the batch: ${describe(error)}${retry ? " (retrying)" : ""}`, retry ? "retry" : undefined);
    return retry ? SLOW_POLL_MS : null;
  }
}
