"""The state of a URL and of a batch: stored record first, else the RQ job, else unknown.

Shared by the API (GET /info, /batches) and by completion callbacks, which need the
same answer the API would give.
"""
from __future__ import annotations

from datetime import datetime

from redis import Redis
from rq.job import Job, JobStatus

from jobs.queues import IN_FLIGHT, fetch_job, job_id_for, job_statuses, public_status
from storage import Storage, decode_value, record_key, record_problem

TERMINAL = {"done", "failed", "expired"}


def url_state(connection: Redis, canonical: str, record: dict | None) -> dict | None:
    """The record (with any refresh in flight), else the job's state, else None."""
    return state_of(connection, canonical, record, job_statuses(connection, [job_id_for(canonical)])[0])


def lookup(connection: Redis, canonical: str) -> tuple[dict | None, dict | None]:
    """(the stored record, url_state()) in one round trip: what GET /info needs."""
    key = record_key(canonical)
    with connection.pipeline(transaction=False) as pipe:
        pipe.get(key)
        pipe.hget(Job.key_for(job_id_for(canonical)), "status")
        raw, status = pipe.execute(raise_on_error=False)  # a record key of another type: refused below
    if isinstance(status, Exception):
        raise status
    record = decode_value(key, raw, record_problem)  # the same safe loading as Storage.load_record
    return record, state_of(connection, canonical, record, JobStatus(status.decode()) if status else None)


def state_of(connection: Redis, canonical: str, record: dict | None, job_status: JobStatus | None) -> dict | None:
    """url_state() when the job's status is known already (None: no job). The whole job is
    read only when the answer needs more than its status: a step, or why it failed."""
    if record is not None:
        body = record_json(record)
        if job_status in IN_FLIGHT:
            body["refresh"] = public_status(job_status)
        return body
    job = fetch_job(connection, job_id_for(canonical)) if job_status in (JobStatus.STARTED, JobStatus.FAILED) else None
    if job_status in IN_FLIGHT:
        step = job.meta.get("step") if job is not None else None
        return {"url": canonical, "status": public_status(job_status), "step": step, "job_id": job_id_for(canonical)}
    if job is not None:  # failed: the job died without saving a record (worker killed)
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
    urls = [item["canonical_url"] for item in items]
    records = Storage(connection).load_records(urls)
    statuses = job_statuses(connection, [job_id_for(url) for url in urls])  # one round trip for all
    answer = []
    for item, record, status in zip(items, records, statuses):
        state = state_of(connection, item["canonical_url"], record, status) or {"status": "expired"}
        answer.append({**item, "status": state["status"], "step": state.get("step"),
                       "refreshing": "refresh" in state, "error": state.get("error")})
    return answer


def is_finished(items: list[dict]) -> bool:
    """Every item has its final answer: done or failed, and no refresh still in flight."""
    return all(item["status"] in TERMINAL and not item["refreshing"] for item in items)
