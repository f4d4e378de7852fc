"""A page job's failed attempts: noted by the job, shown by GET /jobs, /info and /batches.

RQ 3 keeps no trace of a failure it retries: Worker.handle_job_failure writes a Result (and
the failed registry entry) only for the final failure, and Job.retry() only lowers
`retries_left` and schedules the job. A job waiting to retry looked like a fresh one. So
the job function notes each failed attempt in the job's meta before it re-raises (one HSET,
on the failure path only): how many attempts failed, the last one's error (the code and
message a failed record would carry) and when the next try is due.

Readers take the job hash's `status`, `meta` and `retries_left` in one HMGET, which GET
/info pipelines with the record it reads anyway: no round trip is added. The meta is
untrusted (Redis is a trust boundary): fields of the wrong type read as absent.

Why an HMGET of RQ's hash and not RQ's Job.fetch_many: fetch_many reads the whole hash in a
round trip of its own and restores every field (the call data decompressed and decoded).
GET /info of a page that has a job took 29-46% more CPU with it (measured in process,
side by side: ~0.8-1.0 ms -> ~1.2-1.4 ms), and GET /batches reads up to 500 jobs at once.
Job.key_for names the hash; the three fields are the ones RQ's Job.restore reads its
status, meta and retries_left from (tests/web/test_control_units.py compares with RQ's Job).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from redis import Redis
from redis.client import Pipeline
from rq.job import Job, JobStatus

ATTEMPTS = "attempts"  # meta: attempts that failed (host-busy waits excluded: the site was not asked)
LAST_ERROR = "last_error"  # meta: {"code", "message"} of the latest failed attempt
NEXT_TRY_AT = "next_try_at"  # meta: ISO time RQ's retry is due, as the job computed it; None when final
RETRIES_LEFT = "retries_left"  # meta: RQ's retries_left once it has handled this failure
JOB_FIELDS = ("status", "meta", "retries_left")


@dataclass(frozen=True)
class JobState:
    """What readers need of a job hash: its status, its meta, RQ's retries left."""

    status: JobStatus
    meta: dict = field(default_factory=dict)
    retries_left: int | None = None


def error_of(exc: BaseException) -> dict:
    """The {"code", "message"} of a failure: the record's `error`, and the meta's last_error."""
    return {"code": getattr(exc, "code", "internal_error"), "message": str(exc) or type(exc).__name__}


def note_failure(job: Job, error: dict, next_try_in: float | None, spends_attempt: bool = True) -> None:
    """Record a failed attempt in job.meta and save it. next_try_in: seconds to the retry RQ
    will schedule, None when there is none. A wait for our own host limits (spends_attempt
    False) moves the next try only: the site was not asked, no attempt was made."""
    if spends_attempt:
        job.meta[ATTEMPTS] = failed_attempts(job.meta) + 1
        job.meta[LAST_ERROR] = error
    due = None if next_try_in is None else datetime.now(timezone.utc) + timedelta(seconds=next_try_in)
    job.meta[NEXT_TRY_AT] = due.isoformat() if due else None
    job.meta[RETRIES_LEFT] = (job.retries_left or 0) - 1 if due else job.retries_left
    job.save_meta()


def retries_left(state: JobState) -> int | None:
    """RQ's retries_left, or the job's own count when lower: Job.retry() writes the status
    `scheduled` at once but the lowered count with the rest of its bookkeeping, a moment
    later. A crashed run's retry (no note) lowers RQ's count below the note's: the lower wins."""
    noted = state.meta.get(RETRIES_LEFT)
    if state.retries_left is None or type(noted) is not int or noted < 0:
        return state.retries_left
    return min(state.retries_left, noted)


def failed_attempts(meta: dict) -> int:
    count = meta.get(ATTEMPTS)
    return count if type(count) is int and count >= 0 else 0


def last_error(meta: dict) -> dict | None:
    error = meta.get(LAST_ERROR)
    if type(error) is dict and type(error.get("code")) is str and type(error.get("message")) is str:
        return {"code": error["code"], "message": error["message"]}
    return None


def next_try_at(meta: dict, status: JobStatus | None) -> str | None:
    """When the retry is due, while RQ holds the job scheduled; None otherwise (the time is
    history once the scheduler has queued the job again)."""
    due = meta.get(NEXT_TRY_AT)
    if status != JobStatus.SCHEDULED or type(due) is not str:
        return None
    try:
        return datetime.fromisoformat(due).isoformat()
    except ValueError:
        return None


def attempts_json(state: JobState | None) -> dict:
    """attempts (failed ones, plus the successful one once finished), retries_left,
    last_error and next_try_at: the fields GET /jobs, /info (202) and /batches items show."""
    if state is None:
        return {"attempts": 0, "retries_left": None, "last_error": None, "next_try_at": None}
    done = 1 if state.status == JobStatus.FINISHED else 0
    return {"attempts": failed_attempts(state.meta) + done, "retries_left": retries_left(state),
            "last_error": last_error(state.meta), "next_try_at": next_try_at(state.meta, state.status)}


# ---- reading job hashes ------------------------------------------------------------------------


def read_job(pipe: Pipeline, job_id: str) -> None:
    """Queue on pipe the HMGET that state_from() turns into a JobState."""
    pipe.hmget(Job.key_for(job_id), *JOB_FIELDS)


def state_from(reply: list) -> JobState | None:
    """The JobState of read_job()'s reply; None when there is no such job."""
    status, meta, retries_left = reply
    if not status:
        return None
    return JobState(JobStatus(status.decode()), meta_from(meta), retries_from(retries_left))


def job_states(connection: Redis, job_ids: list[str]) -> list[JobState | None]:
    """Each job's JobState in one round trip, None where there is no such job."""
    with connection.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            read_job(pipe, job_id)
        return [state_from(reply) for reply in pipe.execute()]


def meta_from(raw: bytes | None) -> dict:
    """A job's meta as the service writes it (JSON: jobs/trust.py); {} when it is anything else."""
    try:
        meta = json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return meta if type(meta) is dict else {}


def retries_from(raw: bytes | None) -> int | None:
    text = raw.decode(errors="replace") if raw else ""
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else None
