"""Job ids and submission: one job per canonical URL, never two at once.

submit() answers, for each routed URL, whether it was served from storage ("cached"),
is already in flight ("queued"/"started"), or was enqueued now ("queued").
submit_many() gives the same answers for a whole request in a few round trips: POST /parse
of 100 new URLs took ~400 round trips one URL at a time (bench/api_bench.py).
submit() enqueues with RQ's Queue.enqueue_call (unique); submit_many() makes RQ's jobs and
writes them in its own transaction, in a third of the commands of Queue.enqueue_many
(why: Submitter._enqueue_all).
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timezone

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import WatchError
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.utils import now

import metrics
from config import Settings
from jobs.trust import JOB_FUNCTION, JsonJob, JsonQueue
from sources import (  # noqa: F401 (queue names re-exported: their home is sources.py)
    CALLBACK_QUEUE, MAINTENANCE_QUEUE, PAGE_QUEUE_NAMES, QUEUE_NAMES, Route,
)
from storage import Storage

IN_FLIGHT = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
# Seconds before the 1st, 2nd, 3rd retry when a job dies without saying why (its work-horse
# was killed); a transient fetch error sets its own delay with backoff_seconds().
RETRY_INTERVALS = [2, 10, 60]
BACKOFF_BASE_SECONDS = 5
BACKOFF_CAP_SECONDS = 600
MAX_RETRY_AFTER_SECONDS = 3600
RESULT_TTL = 86400
FAILURE_TTL = 7 * 86400
WATCH_ATTEMPTS = 2  # submit_many tries optimistically this often before going URL by URL
NEW_JOB, STALE_JOB = "new", "stale"  # submit_many's answers while it works: never returned


def job_id_for(canonical_url: str) -> str:
    """RQ job ids allow only [A-Za-z0-9_-]: a hex digest of the canonical URL."""
    return hashlib.sha256(canonical_url.encode()).hexdigest()


def make_queue(name: str, connection: Redis) -> Queue:
    return JsonQueue(name, connection=connection)


def fetch_job(connection: Redis, job_id: str) -> Job | None:
    try:
        return JsonJob.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return None


def job_statuses(connection: Redis, job_ids: list[str]) -> list[JobStatus | None]:
    """Each job's status in one round trip, None when there is no such job. Only the status
    field: Job.fetch reads and decodes the whole hash (GET /info paid that on every call)."""
    with connection.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(Job.key_for(job_id), "status")
        raw = pipe.execute()
    return [JobStatus(value.decode()) if value else None for value in raw]


def public_status(job_status: JobStatus | str) -> str:
    """What clients see: queued (waiting or waiting to retry) or started."""
    return "started" if job_status == JobStatus.STARTED else "queued"


def backoff_seconds(failures: int, retry_after: float | None = None, rng: random.Random | None = None) -> int:
    """Exponential backoff with full jitter around it (x0.5 to x1.5), never sooner than
    the server's Retry-After (capped at an hour)."""
    delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(failures - 1, 0))
    delay *= (rng or random).uniform(0.5, 1.5)
    if retry_after:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return max(1, round(delay))


def is_fresh(record: dict | None, ttl: int, now: datetime | None = None) -> bool:
    if record is None or record.get("status") != "done":
        return False
    age = (now or datetime.now(timezone.utc)) - record["fetched_at"]
    return age.total_seconds() < ttl


@dataclass
class Submission:
    route: Route
    job_id: str
    status: str  # cached | queued | started


class Submitter:
    def __init__(self, connection: Redis, settings: Settings):
        self.connection = connection
        self.settings = settings
        self.storage = Storage(connection)

    def submit(self, route: Route, refresh: bool = False, lane: str = "") -> Submission:
        job_id = job_id_for(route.canonical_url)
        if not refresh and is_fresh(self.storage.load_record(route.canonical_url), route.ttl):
            return Submission(route, job_id, "cached")
        job = fetch_job(self.connection, job_id)
        if job is not None:
            status = job.get_status(refresh=False)
            if status in IN_FLIGHT:
                return Submission(route, job_id, public_status(status))
            job.delete()  # a finished or failed run must not block a new one
        return Submission(route, job_id, self._enqueue(route, job_id, lane))

    def submit_many(self, routes: list[Route], refresh: bool = False, lane: str = "") -> list[Submission]:
        """submit() for every route (one answer per distinct canonical URL, in order), in
        four round trips whatever their number: WATCH the job keys, read the records, read
        the job statuses, then one MULTI/EXEC enqueues every new job. The WATCH keeps "never
        two jobs at once": if another submitter creates one of these jobs meanwhile, EXEC
        fails and the request is looked at again (at last URL by URL, as submit() does).
        lane: the batch the new jobs belong to; a host's batches take turns on it."""
        routes = list({route.canonical_url: route for route in routes}.values())
        if not routes:
            return []
        for _ in range(WATCH_ATTEMPTS):
            try:
                answers = self._submit_watched(routes, refresh, lane)
                break
            except WatchError:
                continue
        else:
            return [self.submit(route, refresh, lane) for route in routes]
        # A finished or failed job must be deleted before a new run: rare, and done as
        # submit() does it, outside the transaction (deleting a watched key would abort it).
        return [self.submit(a.route, refresh, lane) if a.status == STALE_JOB else a for a in answers]

    def _submit_watched(self, routes: list[Route], refresh: bool, lane: str) -> list[Submission]:
        job_ids = [job_id_for(route.canonical_url) for route in routes]
        with self.connection.pipeline() as transaction:
            transaction.watch(*[Job.key_for(job_id) for job_id in job_ids])
            answers = self._answers(routes, job_ids, refresh)
            new = [answer for answer in answers if answer.status == NEW_JOB]
            if new:
                transaction.multi()
                self._enqueue_all(transaction, new, lane)
                transaction.execute()  # WatchError when one of these jobs changed meanwhile
        for answer in new:
            metrics.job_enqueued(answer.route, answer.job_id)
            answer.status = "queued"
        return answers

    def _answers(self, routes: list[Route], job_ids: list[str], refresh: bool) -> list[Submission]:
        """What submit() would answer for each route, or NEW_JOB (to enqueue) or STALE_JOB."""
        records = [None] * len(routes) if refresh else self.storage.load_records([r.canonical_url for r in routes])
        statuses = job_statuses(self.connection, job_ids)
        answers = []
        for route, job_id, record, status in zip(routes, job_ids, records, statuses):
            if not refresh and is_fresh(record, route.ttl):
                answer = "cached"
            elif status is None:
                answer = NEW_JOB
            else:
                answer = public_status(status) if status in IN_FLIGHT else STALE_JOB
            answers.append(Submission(route, job_id, answer))
        return answers

    def _enqueue_all(self, pipe: Pipeline, submissions: list[Submission], lane: str) -> None:
        """Enqueue every new job on pipe (a MULTI): RQ's own jobs (Queue.create_job, Job.save),
        then one RPUSH of their ids per queue.

        Not Queue.enqueue_many, which writes each job's status twice and pushes each id alone:
        three commands a job where this takes one. With it, POST /parse of 100 new URLs took
        +43-53% web CPU and answered 15-16% fewer requests a second (make bench, measured
        side by side). tests/jobs/test_submit_many.py checks that what this writes
        is, field for field, what RQ's own enqueue writes for the same jobs."""
        queues: dict[str, Queue] = {}
        waiting: dict[str, list[str]] = {}
        for submission in submissions:
            name = submission.route.queue
            if name not in queues:
                queues[name] = make_queue(name, self.connection)
            self._new_job(queues[name], submission, lane).save(pipeline=pipe)
            waiting.setdefault(name, []).append(submission.job_id)
        for name, job_ids in waiting.items():
            pipe.sadd(Queue.redis_queues_keys, queues[name].key)
            pipe.rpush(queues[name].key, *job_ids)

    def _new_job(self, queue: Queue, submission: Submission, lane: str) -> Job:
        """The job Queue.enqueue would make: queued, and enqueued now."""
        job = queue.create_job(**self._job_options(submission.route, submission.job_id, lane), status=JobStatus.QUEUED)
        job.enqueued_at = now()
        return job

    def _enqueue(self, route: Route, job_id: str, lane: str) -> str:
        try:  # unique: RQ checks and writes the job in one Lua call
            make_queue(route.queue, self.connection).enqueue_call(**self._job_options(route, job_id, lane), unique=True)
            metrics.job_enqueued(route, job_id)
        except DuplicateJobError:
            pass  # another request enqueued it a moment ago: it is in flight either way
        return "queued"

    def _job_options(self, route: Route, job_id: str, lane: str) -> dict:
        """A page job as RQ's Queue.enqueue_call and Queue.create_job take it."""
        return {"func": JOB_FUNCTION, "args": (route.canonical_url, route.source.name), "job_id": job_id,
                "description": route.canonical_url, "timeout": self.settings.job_timeout,
                "result_ttl": RESULT_TTL, "failure_ttl": FAILURE_TTL, "retry": self._retry(), "meta": {"lane": lane}}

    def _retry(self) -> Retry | None:
        retries = self.settings.fetch_retries
        return Retry(max=retries, interval=RETRY_INTERVALS[:retries]) if retries else None
