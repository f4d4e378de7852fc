// The warning shown while GET /healthz counts no live worker: submitted pages would stay queued.
import { api } from "./api.js";
import { $ } from "./dom.js";

let checkedAt = -Infinity;

/** Ask /healthz (not rate limited) and show or hide the no-worker warning. */
export async function checkHealth() {
  checkedAt = Date.now();
  let result;
  try {
    result = await api("/healthz");
  } catch {
    return; // unreachable: the batch's own requests say so in the alert
  }
  const workers = result.body && typeof result.body.workers === "number" ? result.body.workers : null;
  if (workers !== null) $("health").hidden = workers > 0; // no count (Redis away, say): the alert says it
}

/** checkHealth(), unless it ran less than `ms` ago. */
export function checkHealthEvery(ms) {
  if (Date.now() - checkedAt >= ms) checkHealth();
}
