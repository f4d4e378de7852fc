"""Whether RQ retries a failed job, and when: set on the job before RQ handles the failure.

RQ reads retries_left and retry_intervals from the very job object the job function ran
with when it handles the failure, and saves the job's meta with them when it schedules the
retry: the page job and the callback delivery set them here, from the error.
"""
from __future__ import annotations

from collections.abc import Callable

from rq.job import Job

from errors import HostBusy, JobError
from jobs.queues import backoff_seconds

MAX_HOST_BUSY_RETRIES = 50  # a host busy for this many tries in a row fails the job
RetryDelay = Callable[[int, float | None], int]  # (failures so far, Retry-After) -> seconds to the next try


def will_retry(job: Job, exc: Exception, max_retries: int, delay: RetryDelay = backoff_seconds) -> bool:
    """Whether RQ will retry after exc, and when (delay(failures so far, the answer's Retry-After))."""
    if not (isinstance(exc, JobError) and exc.transient):
        job.retries_left = 0  # a permanent error: no retry
    elif isinstance(exc, HostBusy) and job.meta.get("host_busy", 0) < MAX_HOST_BUSY_RETRIES:
        # Our own politeness limits, not the site's failure: do not spend the job's retries.
        job.meta["host_busy"] = job.meta.get("host_busy", 0) + 1
        job.retries_left = (job.retries_left or 0) + 1
    if job.retries_left:
        failures = max_retries - job.retries_left + 1
        job.retry_intervals = [delay(failures, getattr(exc, "retry_after", None))]
    return bool(job.retries_left)
