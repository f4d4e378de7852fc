"""The HTTP API: submit URLs, read records, batches, jobs and health. JSON in, JSON out.

Listing and exporting records (GET /records, /records.jsonl, /records.csv): web/records.py."""
from __future__ import annotations

import hmac
import json
import math
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from flask import Blueprint, Response, current_app, jsonify, request
from redis import Redis
from rq import Worker
from rq.job import JobStatus

import snapshots
from config import Settings
from errors import ApiError, BlockedAddress, body_too_large
from guard import check_url_shape
from jobs import callbacks, frontier, recrawl
from jobs.attempts import JobState, attempts_json
from jobs.ticker import ensure_ticking
from jobs.batches import batch_summary, job_error, lookup, waiting_for_host
from jobs.queues import PAGE_QUEUE_NAMES, QUEUE_NAMES, Submitter, fetch_job, make_queue
from jobs.trust import JsonJob
from web import journal
import metrics
from sources import NEWS, Route, Unsupported, route
from storage import CALLBACK_FORMATS, Storage

api = Blueprint("api", __name__)
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")  # \Z: "$" would also match before a final newline
BATCH_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_JSON_DEPTH = 64  # a submission nests 3 deep; see json_body()
NEXT_TICK = "metaparse.next_tick"  # app.extensions: when keep_ticking() next calls ensure_ticking()


def settings() -> Settings:
    return current_app.config["SETTINGS"]


def redis() -> Redis:
    return current_app.config["REDIS"]


def storage() -> Storage:
    return Storage(redis())


# ---- submission ---------------------------------------------------------------------------


@dataclass
class Submission:
    urls: list
    refresh: bool = False
    callback_url: str | None = None
    callback_format: str = "json"  # the body the callback POSTs: jobs/callbacks.py


@api.post("/parse")
def parse_urls():
    require_token()  # before the body is read
    return submit_batch(read_submission(json_body()))


def json_body() -> object:
    """The body as JSON; None when it is not JSON (RFC 8259) or is nested deeper than
    MAX_JSON_DEPTH. 415 unless the Content-Type is JSON: a cross-site "simple" request (a
    form, or fetch() with text/plain) cannot send one without a CORS preflight, which this
    service grants only to the origins its operator lists in CORS_ORIGINS (none by default,
    web/cors.py), so no other web page a user visits can submit URLs in their name.

    Stricter than json.loads: NaN, Infinity and numbers past a float (1e999) are not JSON,
    and echoed in "rejected" they would make the answer invalid JSON. Nested deeper than
    the recursion limit, json.loads raises RecursionError; a little less deep, it parses but
    echoing the item in "rejected" overflows the encoder (a 500): hence the depth limit."""
    require_json_content_type()
    try:
        body = json.loads(request_body(), parse_constant=_not_json, parse_float=_finite_float)
    except (ValueError, RecursionError):
        return None
    return body if _depth(body) <= MAX_JSON_DEPTH else None


def require_json_content_type() -> None:
    if not request.is_json:  # application/json or application/<something>+json
        sent = request.mimetype or "none"
        raise ApiError(415, "unsupported_media_type",
                       f"the body must be JSON sent with Content-Type: application/json (sent: {sent})")


def request_body() -> bytes:
    """The body, or 413 when it is over MAX_REQUEST_BYTES. A chunked body has no length to
    check first, and Werkzeug stops reading it at the limit without saying so: the rest
    would be cut off and the front of it accepted. So one byte past the limit is read."""
    limit = settings().max_request_bytes
    if request.content_length is not None or "wsgi.input_terminated" not in request.environ:
        return request.get_data()  # a Content-Length over the limit is a 413 already (MAX_CONTENT_LENGTH)
    body = request.environ["wsgi.input"].read(limit + 1)
    if len(body) > limit:
        raise body_too_large(limit)  # its whole size is unknown: it was not read past the limit
    return body


def _depth(value: object) -> int:
    """How deep lists and objects nest in value (a scalar is 1); without recursion."""
    depth, level = 0, [value]
    while level:
        depth += 1
        level = [child for node in level if isinstance(node, (list, dict))
                 for child in (node.values() if isinstance(node, dict) else node)]
    return depth


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is too large for a number")
    return number


SUBMISSION_FIELDS = ("urls", "refresh", "callback_url", "callback_format")


def read_submission(body: object) -> Submission:
    """A bare JSON list of URLs, or {"urls": [...], "refresh": bool, "callback_url": str | null,
    "callback_format": "json" | "slack"}."""
    if isinstance(body, list):
        body = {"urls": body}
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", 'send JSON: a list of URLs or {"urls": [...]}')
    unknown = set(body) - set(SUBMISSION_FIELDS)
    if unknown:
        raise ApiError(400, "invalid_body", f"unknown fields: {', '.join(sorted(unknown))} "
                                            f"(known: {', '.join(SUBMISSION_FIELDS)})")
    urls, refresh = body.get("urls"), body.get("refresh", False)
    if not isinstance(urls, list) or not urls:
        raise ApiError(400, "invalid_body", '"urls" must be a non-empty list of strings')
    if not isinstance(refresh, bool):
        raise ApiError(400, "invalid_body", '"refresh" must be true or false')
    check_url_count(urls)
    return Submission(urls, refresh, read_callback_url(body.get("callback_url")),
                      read_callback_format(body.get("callback_format", "json")))


def check_url_count(urls: list) -> None:
    limit = settings().max_urls_per_request
    if len(urls) > limit:
        raise ApiError(413, "too_many_urls",
                       f"{len(urls):,} URLs sent; at most {limit:,} per request (MAX_URLS_PER_REQUEST)")


def read_callback_format(value: object) -> str:
    """The callback's body: "json" (the batch, as GET /batches answers it) or "slack"
    ({"text": ...}); only read when there is a callback_url, but checked always."""
    if not isinstance(value, str) or value not in CALLBACK_FORMATS:  # a list is not hashable
        allowed = ", ".join(f'"{name}"' for name in sorted(CALLBACK_FORMATS))
        raise ApiError(400, "invalid_callback_format", f'"callback_format" must be one of {allowed}')
    return value


def read_callback_url(url: object) -> str | None:
    """A callback URL must pass the same SSRF guard as pages, and needs CALLBACK_SECRET to sign."""
    if url is None:
        return None
    if not isinstance(url, str):
        raise ApiError(400, "invalid_callback_url", '"callback_url" must be a string or null')
    if not settings().callback_secret:
        raise ApiError(400, "callbacks_unavailable", "this server has no CALLBACK_SECRET; poll /batches/<id> instead")
    try:
        check_url_shape(url)
    except BlockedAddress as exc:
        raise ApiError(400, "invalid_callback_url", f"callback_url refused: {exc}") from None
    return url


def require_token() -> None:
    """Write endpoints need a Bearer token when API_TOKENS is set."""
    tokens = settings().api_tokens
    if not tokens:
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    # bytes: compare_digest raises TypeError (a 500) on str with non-ASCII characters
    if scheme.lower() != "bearer" or not any(hmac.compare_digest(token.strip().encode(), t.encode()) for t in tokens):
        raise ApiError(401, "unauthorized",
                       "writes need one of this server's API_TOKENS: send Authorization: Bearer <token>",
                       {"WWW-Authenticate": "Bearer"})


def submit_batch(submission: Submission):
    rejected, routed = [], []
    for url in submission.urls:
        try:
            routed.append((url, route(url, allow_any_site=settings().allow_any_site)))
        except Unsupported as exc:
            rejected.append({"url": url, "reason": exc.reason})
    batch_id = uuid.uuid4().hex  # also the lane its new jobs take turns in on each host
    done = submit_routes([r for _, r in routed], submission.refresh, batch_id)  # two spellings enqueue once
    accepted = [{"url": url, **done[r.canonical_url]} for url, r in routed]
    journal.record_accepted(redis(), settings(), done.values())  # durable before the 202: web/journal.py
    if accepted:
        save_batch(batch_id, accepted, submission)
        keep_ticking()
    else:
        batch_id = None  # a request refused whole writes nothing to RQ, not even the ticker
    status = 202 if accepted else 400
    return jsonify({"batch_id": batch_id, "accepted": accepted, "rejected": rejected}), status


def submit_routes(routes: list[Route], refresh: bool, lane: str) -> dict[str, dict]:
    """Submit every distinct page in a few round trips (Submitter.submit_many); canonical URL -> answer."""
    done = {}
    for answer in Submitter(redis(), settings()).submit_many(routes, refresh, lane):
        done[answer.route.canonical_url] = item = accepted_item(answer)
        metrics.job_submitted(item)
        recrawl.client_wants(storage(), answer.route, settings())
    return done


def keep_ticking() -> None:
    """ensure_ticking(), at most once per tick period of this app: until the tick it scheduled
    is due, another call would only find that tick scheduled (a Lua script in Redis per POST)."""
    every, now = settings().tick_seconds, time.time()
    if now < current_app.extensions.get(NEXT_TICK, 0.0):
        return
    ensure_ticking(redis(), every)
    current_app.extensions[NEXT_TICK] = (int(now) // every + 1) * every  # the tick it scheduled, or an earlier one


def accepted_item(submission) -> dict:
    return {
        "canonical_url": submission.route.canonical_url,
        "source": submission.route.source.name,
        "queue": submission.route.queue,
        "job_id": submission.job_id,
        "status": submission.status,
    }


def save_batch(batch_id: str, accepted: list[dict], submission: Submission) -> None:
    items = [{key: item[key] for key in ("url", "canonical_url", "source", "job_id")} for item in accepted]
    callback_url = submission.callback_url
    batch = {"id": batch_id, "created_at": datetime.now(timezone.utc), "items": items, "callback_url": callback_url,
             "callback_format": submission.callback_format}
    storage().save_batch(batch)
    if callback_url:
        storage().watch_batch(batch_id, [item["canonical_url"] for item in items])
        callbacks.check_batch(redis(), batch_id)  # every URL may already be cached


# ---- reading ------------------------------------------------------------------------------


@api.get("/info")
def info():
    return record_response(request.args.get("url"), read_since(request.args.get("since")))


def page_size(text: str | None, default: int, most: int) -> int:
    """?limit= of a paged listing: 1 to most in ASCII digits ("²".isdigit() is true too), else a 400."""
    if text is None:
        return default
    digits = text.isascii() and text.isdigit() and len(text.lstrip("0")) <= len(str(most))
    if not digits or not 1 <= int(text) <= most:  # the length first: int() refuses over 4300 digits
        raise ApiError(400, "invalid_query", f"limit must be 1 to {most}")
    return int(text)


def read_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        since = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "invalid_since", "since must be an ISO 8601 time, e.g. 2026-01-31T12:00:00Z") from None
    return since if since.tzinfo else since.replace(tzinfo=timezone.utc)


def canonical_of(url: str | None) -> str:
    """The canonical URL of ?url= (any spelling, any site), else a 400 that says why."""
    if not url:
        raise ApiError(400, "missing_url", "the url query parameter is required: ?url=<the page's URL>")
    try:
        return route(url, allow_any_site=True).canonical_url
    except Unsupported as exc:
        raise ApiError(400, "invalid_url", exc.reason) from None


def record_response(url: str | None, since: datetime | None = None):
    canonical = canonical_of(url)
    record, state = lookup(redis(), canonical, settings().fetch_host_delay)
    if state is None:
        raise ApiError(404, "not_found", f"{canonical} has never been submitted; POST it to /parse")
    if since is not None and record is not None and record["kind"] == NEWS.kind and record["status"] == "done":
        state.update(snapshots.new_since(record["data"]["headlines"], storage().load_snapshots(canonical), since))
    if state["status"] in ("queued", "started"):
        return jsonify(state), 202  # nothing to revalidate yet
    return conditional(jsonify(state), record)


def conditional(response: Response, record: dict | None) -> Response:
    """A 200 with validators, or 304 when the client's copy is current: ETag, a hash of the
    whole body (a refresh starting or a new ?since= answer changes it), and Last-Modified,
    when the record was fetched (If-None-Match wins when both are sent, RFC 9110). no-cache:
    a cache must ask again each time instead of guessing freshness from Last-Modified."""
    response.add_etag()
    if record is not None:
        response.last_modified = record["fetched_at"]
    response.cache_control.no_cache = True
    return response.make_conditional(request)


@api.get("/batches/<batch_id>")
def batch(batch_id: str):
    return jsonify(batch_summary(redis(), load_batch_or_404(batch_id), settings().fetch_host_delay))


def load_batch_or_404(batch_id: str) -> dict:
    found = storage().load_batch(batch_id) if BATCH_ID.match(batch_id) else None
    if found is None:
        raise ApiError(404, "not_found", f"no batch {batch_id!r} (batches are kept for 7 days)")
    return found


@api.get("/jobs/<job_id>")
def job_view(job_id: str):
    job = fetch_job(redis(), job_id) if JOB_ID.match(job_id) else None
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id!r} (finished jobs are kept for a day)")
    status = job.get_status(refresh=False)
    tried = attempts_json(JobState(status, job.meta, job.retries_left))
    return jsonify({
        "job_id": job.id, "status": str(status.value if hasattr(status, "value") else status),
        "queue": job.origin, "url": job_url(job), "step": job.meta.get("step"),
        "created_at": iso(job.created_at), "enqueued_at": iso(job.enqueued_at),
        "started_at": iso(job.started_at), "ended_at": iso(job.ended_at),
        # RQ's results count a killed run the job could not note (jobs/attempts.py)
        **tried, "attempts": max(tried["attempts"], len(job.results())),
        "error": job_error(job) if status == JobStatus.FAILED else None,
        "waiting": job_waiting(job, status),
    })


def job_waiting(job: JsonJob, status: JobStatus) -> dict | None:
    """A queued page job's host schedule (GET /jobs/<id>); None for any other job."""
    url = job_url(job)
    if status != JobStatus.QUEUED or url is None or job.origin not in PAGE_QUEUE_NAMES:
        return None
    return waiting_for_host(redis(), url, settings().fetch_host_delay)


def job_url(job: JsonJob) -> str | None:
    """A page job's URL (its first argument); None for other jobs and unreadable ones."""
    if job.unreadable or not job.args or not isinstance(job.args[0], str):
        return None
    return job.args[0]


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@api.get("/healthz")
def healthz():
    connection = redis()
    connection.ping()
    depths = {name: make_queue(name, connection).count for name in QUEUE_NAMES}
    waiting_for_hosts = frontier.backlog_summary(connection, 0)[0]
    workers = Worker.count(connection=connection)
    status = "ok" if workers else "degraded"
    return jsonify({"status": status, "redis": "ok", "queues": depths, "waiting_for_hosts": waiting_for_hosts,
                    "workers": workers, **journal.durability(connection, settings())})  # waitaof or journal
