"""The state of a URL and of a batch: stored record first, else the RQ job, else unknown.

Shared by the API (GET /info, /batches) and by completion callbacks, which need the
same answer the API would give.
"""
from __future__ import annotations

from datetime import datetime

from redis import Redis
from rq.job import Job, JobStatus

from jobs.queues import IN_FLIGHT, fetch_job, job_id_for, public_status
from storage import Storage

TERMINAL = {"done", "failed", "expired"}


def url_state(connection: Redis, canonical: str, record: dict | None) -> dict | None:
    """The record (with any refresh in flight), else the job's state, else None."""
    job = fetch_job(connection, job_id_for(canonical))
    job_status = job.get_status(refresh=False) if job is not None else None
    if record is not None:
        body = record_json(record)
        if job_status in IN_FLIGHT:
            body["refresh"] = public_status(job_status)
        return body
    if job_status in IN_FLIGHT:
        step = job.meta.get("step") if job_status == JobStatus.STARTED else None
        return {"url": canonical, "status": public_status(job_status), "step": step, "job_id": job.id}
    if job_status == JobStatus.FAILED:  # the job died without saving a record (worker killed)
        return {"url": canonical, "status": "failed", "job_id": job.id, "error": job_error(job)}
    return None


def record_json(record: dict) -> dict:
    fetched_at = record.get("fetched_at")
    return {**record, "fetched_at": fetched_at.isoformat() if isinstance(fetched_at, datetime) else fetched_at}


def job_error(job: Job) -> dict:
    result = job.latest_result()
    text = (result.exc_string or "").strip() if result is not None else ""
    return {"code": "job_failed", "message": text.splitlines()[-1] if text else "the job failed"}


def batch_summary(connection: Redis, batch: dict) -> dict:
    """What GET /batches/<id> answers: counts per status and every item's state."""
    items = batch_items(connection, batch["items"])
    counts: dict[str, int] = {}
    for item in items:
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    return {"batch_id": batch["id"], "created_at": batch["created_at"].isoformat(), "total": len(items),
            "counts": counts, "finished": is_finished(items), "items": items}


def batch_items(connection: Redis, items: list[dict]) -> list[dict]:
    records = Storage(connection).load_records([item["canonical_url"] for item in items])
    answer = []
    for item, record in zip(items, records):
        state = url_state(connection, item["canonical_url"], record) or {"status": "expired"}
        answer.append({**item, "status": state["status"], "step": state.get("step"),
                       "refreshing": "refresh" in state, "error": state.get("error")})
    return answer


def is_finished(items: list[dict]) -> bool:
    """Every item has its final answer: done or failed, and no refresh still in flight."""
    return all(item["status"] in TERMINAL and not item["refreshing"] for item in items)
