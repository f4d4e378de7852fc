// The alert box: every API error ends up here, visible.
import { $, el } from "./dom.js";

// One message per owner. Errors stay until the next submission; the "retry" and "rate"
// messages (the service is unreachable, failing or limiting us) clear once it answers again.
const alerts = new Map();
let alertCount = 0;

export function showAlert(message, owner = `error-${++alertCount}`) {
  alerts.set(owner, message);
  render();
}

/** Clear one owner's message, or every message when no owner is given. */
export function clearAlert(owner) {
  if (owner === undefined) alerts.clear();
  else if (!alerts.delete(owner)) return;
  render();
}

function render() {
  const box = $("alert");
  box.replaceChildren(...[...alerts].map(([owner, message]) => el("p", { "data-owner": owner }, message)));
  box.hidden = alerts.size === 0;
}
