"""Cancel page jobs that have not started: queued, waiting to retry (scheduled) or deferred.

One WATCH/MULTI transaction per job: the job's status and its claim (jobs/worker/claims.py) are
read under WATCH, then RQ's Job.cancel() (status `canceled`, out of its queue or registry,
into the canceled registry) and frontier.FORGET (out of its host's lane) are written
together. A worker that claims the job meanwhile changes the claim key, so the transaction
fails and is looked at again: the job is then being started, and is left alone. A started
job is never stopped (a job running in the worker cannot be stopped alone: jobs/worker/inprocess.py).

One race is RQ's own: its scheduler reads the jobs due for a retry, then queues them without
a lock, so a retry that falls due in the same few milliseconds as its cancel can still run.

A canceled job is kept for CANCELED_TTL (RQ keeps canceled jobs forever), so GET /jobs and
/info say `canceled` for a day; submitting the URL again replaces it (jobs/queues.Submitter
deletes any job that is not in flight). RQ never cleans its canceled registries either: the
ticker drops their entries older than CANCELED_TTL (forget_old_cancels), or the dashboard
would list a page's later job, which has the same id, as canceled.
"""
from __future__ import annotations

from dataclasses import dataclass

from redis import Redis
from redis.exceptions import WatchError
from rq.exceptions import InvalidJobOperation
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry

from jobs import callbacks, frontier
from jobs.queues import RESULT_TTL, fetch_job, make_queue
from sources import PAGE_QUEUE_NAMES
from storage import Storage, claim_key

CANCELABLE = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED})
CANCELED_TTL = RESULT_TTL  # a day, as finished jobs
STARTING = "starting"  # a worker has claimed the job and is about to start it
DELETED = "deleted"  # the job went away while it was looked at (a new submission replaced it)


@dataclass(frozen=True)
class Outcome:
    """What a cancel did: `canceled`, or why not (`status` then says the job's state)."""

    job_id: str
    status: str  # canceled | started | starting | finished | failed | stopped | ...
    canceled: bool
    url: str | None = None  # the page's canonical URL


def cancel_job(connection: Redis, job_id: str) -> Outcome | None:
    """Cancel one page job unless it has started or ended; None when there is no such job.
    Canceling a job canceled already is answered as canceled (DELETE is idempotent)."""
    return cancel_jobs(connection, [job_id])[0]


def cancel_jobs(connection: Redis, job_ids: list[str]) -> list[Outcome | None]:
    """cancel_job() for each; then each batch waiting on a canceled page for its completion
    callback is checked once (it may be finished now), not once per page."""
    outcomes = [_cancel(connection, job_id) for job_id in job_ids]
    urls = [outcome.url for outcome in outcomes if outcome is not None and outcome.canceled and outcome.url]
    watching = Storage(connection)
    for batch_id in sorted({batch_id for url in urls for batch_id in watching.batches_watching(url)}):
        callbacks.check_batch(connection, batch_id)
    return outcomes


def _cancel(connection: Redis, job_id: str) -> Outcome | None:
    job = fetch_job(connection, job_id)
    if job is None:
        return None
    if job.origin not in PAGE_QUEUE_NAMES:
        return Outcome(job_id, "not_a_page_job", False)
    url = job.description if isinstance(job.description, str) else None
    status = _cancel_watched(connection, job)
    return Outcome(job_id, _name(status), status == JobStatus.CANCELED, url)


def _cancel_watched(connection: Redis, job: Job) -> JobStatus | str:
    """JobStatus.CANCELED once canceled (now or before), else the status that refused it."""
    with connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(job.key, claim_key(job.id))  # read after WATCH: a change from now on fails EXEC
                refusal = _refusal(_status_now(job), pipe.exists(claim_key(job.id)))
                if refusal is not None:
                    return refusal
                pipe.multi()
                job.cancel(pipeline=pipe)  # RQ: status, queue or registry, canceled registry
                job.cleanup(ttl=CANCELED_TTL, pipeline=pipe)  # RQ: the job expires then
                frontier.forget(connection, pipe, job.id)
                pipe.execute()
                return JobStatus.CANCELED
            except WatchError:
                continue  # claimed, rescheduled or ended meanwhile: look again
            except InvalidJobOperation:
                # Job.cancel() reads the status again on its own connection: another cancel
                # (or a new submission deleting the job) came between our read and its own.
                pipe.reset()
                continue  # look again under WATCH: canceled or deleted now


def _status_now(job: Job) -> JobStatus | None:
    """The job's status as Redis holds it now (RQ's Job.get_status); None once it is gone."""
    try:
        return job.get_status()
    except InvalidJobOperation:  # RQ's answer for a job hash without a status: deleted
        return None


def _refusal(status: JobStatus | None, claimed: int) -> JobStatus | str | None:
    """None when the job may be canceled now; else what it is (CANCELED: already done)."""
    if status is None:
        return DELETED
    if status not in CANCELABLE:
        return status
    return STARTING if claimed else None


def _name(status: JobStatus | str) -> str:
    return str(status.value if isinstance(status, JobStatus) else status)


def forget_old_cancels(connection: Redis, now: float) -> int:
    """Drop canceled-registry entries older than CANCELED_TTL from every page queue; how many.
    A ZREMRANGEBYSCORE on RQ's registry key: RQ offers no clean-up of its canceled registries
    (CanceledJobRegistry.get_expired_job_ids raises NotImplementedError), and an entry's
    score is when it was canceled (BaseRegistry.add with ttl 0: now)."""
    dropped = 0
    for name in PAGE_QUEUE_NAMES:
        registry = CanceledJobRegistry(queue=make_queue(name, connection))
        dropped += connection.zremrangebyscore(registry.key, 0, now - CANCELED_TTL)
    return dropped
