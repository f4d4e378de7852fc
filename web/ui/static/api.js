// The JSON API as the page uses it: one fetch wrapper, and errors a person can read.

const REQUEST_TIMEOUT_MS = 15000; // no answer by then: say so rather than spin

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status; // 0 when the service could not be reached
    this.code = code;
    this.retryAfter = retryAfter; // seconds the service asked us to wait (Retry-After), or null
  }

  get retryable() {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }

  get rateLimited() {
    return this.status === 429;
  }

  /** Not reachable, or answering that it cannot serve now (its storage away, a proxy's 502/504). */
  get unavailable() {
    return this.status === 0 || this.status === 502 || this.status === 503 || this.status === 504;
  }
}

/** {status, ok, body, retryAfter}: body is the parsed JSON, or null when the answer is not JSON. */
export async function api(path, options = {}) {
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
  return { status: response.status, ok: response.ok, body, retryAfter: retryAfterSeconds(response.headers.get("Retry-After")) };
}

/** GET path and return its JSON body; any answer but 2xx JSON throws its ApiError. */
export async function getJson(path) {
  const result = await api(path);
  if (!result.ok || result.body === null || typeof result.body !== "object") throw errorOf(result);
  return result.body;
}

/** Retry-After as whole seconds (it may be a number of seconds or an HTTP date); null when absent. */
function retryAfterSeconds(value) {
  if (!value) return null;
  const seconds = /^\d+$/.test(value.trim()) ? Number(value) : (Date.parse(value) - Date.now()) / 1000;
  return Number.isFinite(seconds) ? Math.max(1, Math.ceil(seconds)) : null;
}

/** The ApiError an unwanted answer stands for, using the service's {"error": {code, message}}. */
export function errorOf(result) {
  const error = result.body && result.body.error;
  if (error && typeof error === "object") {
    return new ApiError(result.status, String(error.code), String(error.message), result.retryAfter);
  }
  return new ApiError(result.status, `http_${result.status}`, `unexpected answer from the service (HTTP ${result.status})`,
    result.retryAfter);
}

export function describe(error) {
  if (!(error instanceof ApiError)) return `error: ${error && error.message ? error.message : error}`;
  const detail = error.status ? `${error.code}: ${error.message} (HTTP ${error.status})` : `${error.code}: ${error.message}`;
  return error.unavailable ? `The service is unavailable; try again shortly. ${detail}` : detail;
}
