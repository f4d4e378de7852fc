"""Completion callbacks: when every URL of a batch is finished, POST the batch to its callback_url.

The body is the batch's callback_format (storage.CALLBACK_FORMATS):
- "json" (the default, and every batch saved before the choice existed): what
  GET /batches/<id> answers;
- "slack": {"text": "<one line>"}, what a Slack incoming webhook or response_url takes.
Either is JSON (UTF-8, non-ASCII kept as is) and signed so the receiver can check it came
from this service and is fresh:
    X-Metaparse-Timestamp: <unix seconds>
    X-Metaparse-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with CALLBACK_SECRET>
Delivery goes through the same SSRF guard as page fetches, and RQ retries it with backoff.

A batch is checked when one of its URLs finishes (at once) and by the ticker (so a check
that raced a sibling job still fires); claim_callback makes sure only one check enqueues.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import time

from redis import Redis
from rq import Retry, get_current_job

from jobs.batches import TERMINAL, batch_summary
from config import Settings
from jobs.context import process_context
from jobs.queues import CALLBACK_QUEUE, make_queue
from jobs.retries import will_retry
from jobs.trust import DELIVERY_FUNCTION
import jsontext
from storage import Storage

log = logging.getLogger(__name__)
DELIVERY_RETRY_INTERVALS = [5, 30, 120, 600, 1800]
SIGNATURE_HEADER = "X-Metaparse-Signature"
TIMESTAMP_HEADER = "X-Metaparse-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def check_batch(connection: Redis, batch_id: str, just_finished: str | None = None) -> bool:
    """Enqueue the batch's callback if all its URLs are finished; True when this call did.

    just_finished: a URL whose job is saving its record right now (still "started" in RQ).
    """
    storage = Storage(connection)
    batch = storage.load_batch(batch_id)
    if batch is None or not batch.get("callback_url"):
        storage.drop_pending_callback(batch_id)
        return False
    summary = batch_summary(connection, batch)
    items = [{**item, "refreshing": item["refreshing"] and item["canonical_url"] != just_finished}
             for item in summary["items"]]
    if not all(item["status"] in TERMINAL and not item["refreshing"] for item in items):
        return False
    if not storage.claim_callback(batch_id):
        return False
    make_queue(CALLBACK_QUEUE, connection).enqueue(
        DELIVERY_FUNCTION, batch_id, job_id=f"callback-{batch_id}", description=f"callback for batch {batch_id}",
        retry=Retry(max=len(DELIVERY_RETRY_INTERVALS), interval=DELIVERY_RETRY_INTERVALS), failure_ttl=7 * 86400,
    )
    return True


def url_finished(connection: Redis, canonical_url: str, watching: list[str] | None = None) -> None:
    """Called by a page job once its record is saved: check every batch waiting on it.

    watching: those batches' ids when the caller read them already (after the save).
    """
    if watching is None:
        watching = Storage(connection).batches_watching(canonical_url)
    for batch_id in watching:
        check_batch(connection, batch_id, just_finished=canonical_url)


def sweep(connection: Redis) -> int:
    """The ticker's pass over batches still waiting; returns how many callbacks it enqueued."""
    return sum(check_batch(connection, batch_id) for batch_id in Storage(connection).pending_callbacks())


def deliver(batch_id: str) -> dict:
    """RQ job: POST the finished batch to its callback_url, signed."""
    job = get_current_job()
    context = process_context()
    batch = Storage(job.connection).load_batch(batch_id)
    if batch is None:
        return {"batch_id": batch_id, "delivered": False, "reason": "batch expired"}
    body = callback_body(batch, batch_summary(job.connection, batch))
    headers = signed_headers(context.settings, body)
    try:
        status = context.fetcher.post(batch["callback_url"], body, headers)
    except Exception as exc:
        retrying = will_retry(job, exc, len(DELIVERY_RETRY_INTERVALS), delivery_delay)
        log.warning("callback for batch %s failed (%s): %s", batch_id, "will retry" if retrying else "final", exc)
        raise
    log.info("callback for batch %s delivered to %s: HTTP %s", batch_id, batch["callback_url"], status)
    return {"batch_id": batch_id, "delivered": True, "status": status}


def callback_body(batch: dict, summary: dict) -> bytes:
    """The bytes POSTed for a finished batch, in the batch's callback_format."""
    payload = BODIES[batch.get("callback_format", "json")](summary)
    return jsontext.dumps(payload, separators=(",", ":")).encode()


def slack_message(summary: dict) -> dict:
    """One line a person reads in a Slack channel: the batch, and how its pages ended."""
    counts = summary["counts"]
    ended = [f"{counts.get(status, 0)} {status}" for status in ("done", "failed")]
    ended += [f"{counts[status]} {status}" for status in ("expired", "canceled") if counts.get(status)]
    total = summary["total"]
    pages = "1 page" if total == 1 else f"{total} pages"
    return {"text": f"metaparse batch {summary['batch_id']} finished: {', '.join(ended)} ({pages})"}


# One body builder per format a batch may name (storage.CALLBACK_FORMATS; a test checks both agree).
BODIES = {"json": lambda summary: summary, "slack": slack_message}


def delivery_delay(failures: int, retry_after: float | None = None) -> int:
    """Seconds before the next POST after `failures` failed ones: DELIVERY_RETRY_INTERVALS, or
    the receiver's Retry-After when that is later, up to the schedule's last step."""
    scheduled = DELIVERY_RETRY_INTERVALS[min(max(failures, 1), len(DELIVERY_RETRY_INTERVALS)) - 1]
    return max(scheduled, min(round(retry_after or 0), DELIVERY_RETRY_INTERVALS[-1]))


def signed_headers(settings: Settings, body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(settings.callback_secret or "", timestamp, body),
    }
