"""Queue names, job ids and submission: one job per canonical URL, never two at once.

submit() answers, for each routed URL, whether it was served from storage ("cached"),
is already in flight ("queued"/"started"), or was enqueued now ("queued").
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timezone

from redis import Redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

import metrics
from config import Settings
from sources import SOURCES, Route
from storage import Storage

MAINTENANCE_QUEUE = "maintenance"  # the ticker: re-crawls and callback sweeps, each a few ms
CALLBACK_QUEUE = "callbacks"
# Workers listen in this order: the quick ticker, callbacks, then book pages (users wait on
# them), news and any page.
QUEUE_NAMES = [MAINTENANCE_QUEUE, CALLBACK_QUEUE] + [source.queue for source in SOURCES.values()]
JOB_FUNCTION = "jobs.tasks.fetch_and_parse"
IN_FLIGHT = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
# Seconds before the 1st, 2nd, 3rd retry when a job dies without saying why (its work-horse
# was killed); a transient fetch error sets its own delay with backoff_seconds().
RETRY_INTERVALS = [2, 10, 60]
BACKOFF_BASE_SECONDS = 5
BACKOFF_CAP_SECONDS = 600
MAX_RETRY_AFTER_SECONDS = 3600
RESULT_TTL = 86400
FAILURE_TTL = 7 * 86400


def job_id_for(canonical_url: str) -> str:
    """RQ job ids allow only [A-Za-z0-9_-]: a hex digest of the canonical URL."""
    return hashlib.sha256(canonical_url.encode()).hexdigest()


def make_queue(name: str, connection: Redis) -> Queue:
    return Queue(name, connection=connection, serializer=JSONSerializer)


def fetch_job(connection: Redis, job_id: str) -> Job | None:
    try:
        return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        return None


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

    def submit(self, route: Route, refresh: bool = False) -> Submission:
        job_id = job_id_for(route.canonical_url)
        if not refresh and is_fresh(self.storage.load_record(route.canonical_url), route.ttl):
            return Submission(route, job_id, "cached")
        job = fetch_job(self.connection, job_id)
        if job is not None:
            status = job.get_status(refresh=False)
            if status in IN_FLIGHT:
                return Submission(route, job_id, public_status(status))
            job.delete()  # a finished or failed run must not block a new one
        return Submission(route, job_id, self._enqueue(route, job_id))

    def _enqueue(self, route: Route, job_id: str) -> str:
        queue = make_queue(route.queue, self.connection)
        try:
            queue.enqueue(
                JOB_FUNCTION, route.canonical_url, route.source.name,
                job_id=job_id, unique=True, description=route.canonical_url,
                job_timeout=self.settings.job_timeout, result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
                retry=self._retry(),
            )
            metrics.job_enqueued(route, job_id)
        except DuplicateJobError:
            pass  # another request enqueued it a moment ago: it is in flight either way
        return "queued"

    def _retry(self) -> Retry | None:
        retries = self.settings.fetch_retries
        return Retry(max=retries, interval=RETRY_INTERVALS[:retries]) if retries else None
