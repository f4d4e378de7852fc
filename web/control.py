"""The control routes: cancel jobs and batches, delete records, list recent batches.

Writes need the API token (api.require_token) and count against RATE_LIMIT_WRITE, as
POST /parse does (web/ratelimit.py counts DELETE as a write). No page of an origin outside
CORS_ORIGINS can send one: a DELETE is not a "simple" request, so a browser asks a CORS
preflight first, which web/cors.py grants to the listed origins only; POST
/batches/<id>/cancel must carry the JSON body `{}` with a JSON Content-Type, which a form
cannot send (415 otherwise, as api.json_body says).
"""
from __future__ import annotations

import re

from flask import Blueprint, jsonify, request

from web.api import JOB_ID, canonical_of, json_body, load_batch_or_404, page_size, redis, require_token, storage
from errors import ApiError
from jobs.cancel import Outcome, cancel_job, cancel_jobs
from jobs.queues import IN_FLIGHT, job_id_for, job_statuses, public_status
from storage import BatchPosition

control = Blueprint("control", __name__)
MAX_BATCHES_PAGE = 100
DEFAULT_BATCHES_PAGE = 20
BATCH_CURSOR = re.compile(r"^([0-9]{1,17})-([0-9a-f]{32})\Z")  # created (microseconds), batch id


@control.delete("/jobs/<job_id>")
def cancel_one_job(job_id: str):
    require_token()
    outcome = cancel_job(redis(), job_id) if JOB_ID.match(job_id) else None
    if outcome is None:
        raise ApiError(404, "not_found", f"no job {job_id!r} (finished jobs are kept for a day)")
    if not outcome.canceled:
        raise ApiError(409, "not_cancelable", refusal(outcome))
    return jsonify({"job_id": outcome.job_id, "status": "canceled"})


def refusal(outcome: Outcome) -> str:
    """Why a job was not canceled, in words a person can act on."""
    reasons = {
        "started": "it has started; a running job is not stopped: wait for its record",
        "starting": "a worker has just taken it and is starting it",
        "not_a_page_job": "only page jobs can be canceled",
        "deleted": "it was replaced by a new submission meanwhile",
    }
    why = reasons.get(outcome.status, f"it has ended ({outcome.status}); only queued or scheduled jobs can be")
    return f"job {outcome.job_id} was not canceled: {why}"


@control.post("/batches/<batch_id>/cancel")
def cancel_batch(batch_id: str):
    """Cancel every job of the batch that has not started. Jobs are one per page and shared:
    a page another batch also waits on is canceled for that batch too (it shows `canceled`
    there, and may be submitted again)."""
    require_token()
    if json_body() != {}:
        raise ApiError(400, "invalid_body", "send the JSON body {} (with Content-Type: application/json)")
    batch = load_batch_or_404(batch_id)
    items = distinct_items(batch["items"])
    canceled, kept = [], []
    for item, outcome in zip(items, cancel_jobs(redis(), [item["job_id"] for item in items])):
        status = outcome.status if outcome is not None else "no_job"  # served from storage, or expired
        (canceled if outcome is not None and outcome.canceled else kept).append({**item, "status": status})
    return jsonify({"batch_id": batch["id"], "canceled": canceled, "not_canceled": kept})


def distinct_items(items: list[dict]) -> list[dict]:
    """One item per page (two spellings of a page share a job): its canonical URL and job id."""
    pages = {item["canonical_url"]: item["job_id"] for item in items}
    return [{"canonical_url": url, "job_id": job_id} for url, job_id in pages.items()]


@control.delete("/records")
def delete_record():
    """Delete a page's record (any spelling of its URL), its snapshots and its re-crawls."""
    require_token()
    canonical = canonical_of(request.args.get("url"))
    if not storage().delete_record(canonical):
        raise ApiError(404, "not_found", f"no record of {canonical}")
    status = job_statuses(redis(), [job_id_for(canonical)])[0]
    refresh = public_status(status) if status in IN_FLIGHT else None  # it will save a new record
    return jsonify({"url": canonical, "deleted": True, "refresh": refresh, "job_id": job_id_for(canonical)})


@control.get("/batches")
def list_batches():
    """Recent batches, newest first, `limit` a page; pass `next_cursor` back as `cursor`."""
    limit = page_size(request.args.get("limit"), DEFAULT_BATCHES_PAGE, MAX_BATCHES_PAGE)
    cards, position = storage().recent_batches(limit, read_cursor(request.args.get("cursor")))
    return jsonify({"batches": [card_json(card) for card in cards], "next_cursor": cursor_text(position)})


def read_cursor(text: str | None) -> BatchPosition | None:
    if text is None:
        return None
    match = BATCH_CURSOR.match(text)
    if match is None:
        raise ApiError(400, "invalid_query", "cursor must be a next_cursor from an earlier GET /batches")
    return int(match.group(1)), match.group(2)


def cursor_text(position: BatchPosition | None) -> str | None:
    return None if position is None else f"{position[0]}-{position[1]}"


def card_json(card: dict) -> dict:
    return {**card, "created_at": card["created_at"].isoformat()}
