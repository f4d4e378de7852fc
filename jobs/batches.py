"""The state of a URL and of a batch: stored record first, else the RQ job, else unknown.

Shared by the API (GET /info, /batches) and by completion callbacks, which need the
same answer the API would give.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime
from urllib.parse import urlsplit

from redis import Redis
from rq.job import Job, JobStatus

from config import Settings
from jobs import frontier
from jobs.attempts import JobState, attempts_json, job_states, read_job, state_from
from jobs.queues import IN_FLIGHT, fetch_job, job_id_for, public_status
from keys import record_key
from storage import Storage, decode_value, record_problem

TERMINAL = {"done", "failed", "expired", "canceled"}


def url_state(connection: Redis, canonical: str, record: dict | None) -> dict | None:
    """The record (with any refresh in flight), else the job's state, else None."""
    return state_of(connection, canonical, record, job_states(connection, [job_id_for(canonical)])[0])


def lookup(connection: Redis, canonical: str,
           default_delay: float = Settings.fetch_host_delay) -> tuple[dict | None, dict | None]:
    """(the stored record, url_state()) in one round trip: what GET /info needs. A queued
    page's state says what it waits for (its host's schedule, read in the same round trip)."""
    key, host = record_key(canonical), frontier.host_of(urlsplit(canonical))
    with connection.pipeline(transaction=False) as pipe:
        pipe.get(key)
        read_job(pipe, job_id_for(canonical))  # status, meta (attempts), retries_left: one HMGET
        frontier.read_schedule(pipe, host)
        raw, job, *schedule = pipe.execute(raise_on_error=False)  # a record key of another type: refused below
    for reply in (job, *schedule):
        if isinstance(reply, Exception):
            raise reply
    record = decode_value(key, raw, record_problem)  # the same safe loading as Storage.load_record
    state = state_of(connection, canonical, record, state_from(job))
    if state is not None and "queued" in (state["status"], state.get("refresh")):
        state["waiting"] = schedule_json(frontier.schedule_from(host, schedule, default_delay))
    return record, state


def state_of(connection: Redis, canonical: str, record: dict | None, job_state: JobState | None) -> dict | None:
    """url_state() when the job's state is known already (None: no job). The whole job is
    read only when the answer needs more than its hash's status and meta: why it failed."""
    job_status = job_state.status if job_state is not None else None
    if record is not None:
        body = record_json(record)
        if job_status in IN_FLIGHT:  # a re-fetch: its progress beside the record, as for a first fetch
            body.update(refresh=public_status(job_status), **attempts_json(job_state))
        return body
    if job_status in IN_FLIGHT:
        step = job_state.meta.get("step") if job_status == JobStatus.STARTED else None
        return {"url": canonical, "status": public_status(job_status), "step": step if type(step) is str else None,
                "job_id": job_id_for(canonical), **attempts_json(job_state)}
    if job_status == JobStatus.CANCELED:  # DELETE /jobs/<id> before any record was saved
        return {"url": canonical, "status": "canceled", "job_id": job_id_for(canonical)}
    job = fetch_job(connection, job_id_for(canonical)) if job_status == JobStatus.FAILED else None
    if job is not None:  # failed: the job died without saving a record (worker killed)
        return {"url": canonical, "status": "failed", "job_id": job.id, "error": job_error(job)}
    return None


def waiting_for_host(connection: Redis, canonical: str, default_delay: float) -> dict:
    """Where a queued page job stands: its host's schedule and a sentence that says it."""
    host = frontier.host_of(urlsplit(canonical))
    return schedule_json(frontier.host_schedules(connection, [host], default_delay)[host])


def schedule_json(schedule: frontier.HostSchedule) -> dict:
    return {**schedule.as_json(), "detail": describe(schedule)}


def describe(schedule: frontier.HostSchedule) -> str:
    if schedule.next_slot_at is None:
        return f"waiting for a free worker (then {schedule.host}'s turn)"
    return (f"waiting for {schedule.host}, next slot at {schedule.next_slot_at.isoformat(timespec='seconds')}"
            f" ({schedule.backlog} waiting for it, one every {schedule.delay:g} s)")


def batch_eta(connection: Redis, items: list[dict], default_delay: float) -> tuple[str | None, list[dict]]:
    """When the batch's last queued page should start, by its hosts' schedules, and those schedules."""
    waiting = Counter(frontier.host_of(urlsplit(item["canonical_url"])) for item in items if item["status"] == "queued")
    schedules = frontier.host_schedules(connection, list(waiting), default_delay)
    ends = [end for host, jobs in waiting.items() if (end := schedules[host].clear_at(jobs)) is not None]
    return (max(ends).isoformat() if ends else None), [schedule_json(schedule) for schedule in schedules.values()]


def record_json(record: dict) -> dict:
    fetched_at = record.get("fetched_at")
    return {**record, "fetched_at": fetched_at.isoformat() if isinstance(fetched_at, datetime) else fetched_at}


def job_error(job: Job) -> dict:
    result = job.latest_result()
    text = (result.exc_string or "").strip() if result is not None else ""
    return {"code": "job_failed", "message": text.splitlines()[-1] if text else "the job failed"}


def batch_summary(connection: Redis, batch: dict, default_delay: float = Settings.fetch_host_delay) -> dict:
    """What GET /batches/<id> answers: counts per status, when its queued pages should have
    started by their hosts' schedules (eta; None when none waits) and every item's state."""
    items = batch_items(connection, batch["items"])
    counts: dict[str, int] = {}
    for item in items:
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    eta, hosts = batch_eta(connection, items, default_delay)
    return {"batch_id": batch["id"], "created_at": batch["created_at"].isoformat(), "total": len(items),
            "counts": counts, "finished": is_finished(items), "eta": eta, "waiting_on": hosts, "items": items}


def batch_items(connection: Redis, items: list[dict]) -> list[dict]:
    urls = [item["canonical_url"] for item in items]
    records = Storage(connection).load_records(urls)
    jobs = job_states(connection, [job_id_for(url) for url in urls])  # one round trip for all
    answer = []
    for item, record, job in zip(items, records, jobs):
        state = state_of(connection, item["canonical_url"], record, job) or {"status": "expired"}
        answer.append({**item, "status": state["status"], "step": state.get("step"),
                       "refreshing": "refresh" in state, "error": state.get("error"), **attempts_json(job)})
    return answer


def is_finished(items: list[dict]) -> bool:
    """Every item has its final answer: done or failed, and no refresh still in flight."""
    return all(item["status"] in TERMINAL and not item["refreshing"] for item in items)
