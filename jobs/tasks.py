"""The job: fetch one canonical URL, parse it with its source's parser, store the record.

A failure that will be retried (transient, retries left) leaves storage alone; a final
one saves a failed record with the error, so GET /info shows it. Either way the exception
reaches RQ, so the failed registry and /rqstatus see it. A finished URL then lets any
batch waiting on it send its completion callback.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

from rq import get_current_job
from rq.job import Job

import metrics
import parsers
import snapshots
from config import Settings, load_settings
from errors import HostBusy, JobError
from jobs import callbacks, crashsafe, frontier
from jobs.attempts import error_of, note_failure
from jobs.fetch import Fetcher, Politeness
from jobs.queues import backoff_seconds
from sources import NEWS, SOURCES
from storage import Storage, make_record

log = logging.getLogger(__name__)
MAX_HOST_BUSY_RETRIES = 50  # a host busy for this many tries in a row fails the job
RetryDelay = Callable[[int, float | None], int]  # (failures so far, Retry-After) -> seconds to the next try


@dataclass
class ProcessContext:
    """Settings and the Fetcher (with its keep-alive connections) of one process."""

    pid: int
    settings: Settings
    fetcher: Fetcher


_context: ProcessContext | None = None


def process_context() -> ProcessContext:
    global _context
    if _context is None or _context.pid != os.getpid():  # a forked child must not share sockets
        settings = load_settings()
        # Politeness shares per-host limits and robots.txt with every worker through Redis.
        _context = ProcessContext(os.getpid(), settings, Fetcher(settings, Politeness.connect(settings)))
    return _context


def fetch_and_parse(canonical_url: str, source_name: str) -> dict:
    """Run inside an RQ worker; returns a short summary as the job's result."""
    job = get_current_job()
    metrics.job_started(job, canonical_url, source_name)
    context = process_context()
    source = SOURCES[source_name]
    storage = Storage(job.connection)
    ttl = source.ttl + context.settings.record_retention
    if (saved := crashsafe.rerun_after_save(job, canonical_url)) is not None:
        frontier.give_back(job.connection, job.id)  # its host's turn, unused: free it now
        return saved  # an earlier run saved the record, then died before RQ knew
    try:
        data = _fetch_and_parse(context.fetcher, canonical_url, source_name, job)
    except Exception as exc:
        if _record_failure(job, storage, canonical_url, source.kind, exc, ttl):
            callbacks.url_finished(job.connection, canonical_url)
        raise
    metrics.job_step("saving")  # its Redis write goes with what follows the save (_after_save)
    record = make_record(canonical_url, source.kind, "done", parsers.PARSER_VERSION, data=data)
    crashsafe.save_once(job, storage, record, ttl)  # with a guard against a re-run saving twice
    metrics.job_done()
    snapshot = snapshots.take(record) if source is NEWS else None
    _after_save(job, storage, record, snapshot, context.settings.snapshots_kept, ttl)
    return {"url": canonical_url, "status": "done"}


def _after_save(job: Job, storage: Storage, record: dict, snapshot: dict | None, keep: int, ttl: int) -> None:
    """One round trip once the record is saved: the job's step "saving" (shown by /jobs until
    RQ marks the job finished), a news page's snapshot (when given; the newest `keep` are
    kept) and the batches waiting on the URL, whose callbacks may now be due."""
    job.meta["step"] = "saving"
    with job.connection.pipeline() as pipe:
        pipe.hset(job.key, "meta", job.serializer.dumps(job.meta))  # what job.save_meta() writes
        watching = storage.after_save(pipe, record["url"], snapshot, keep, ttl)
    callbacks.url_finished(job.connection, record["url"], watching)


def _fetch_and_parse(fetcher: Fetcher, canonical_url: str, source_name: str, job: Job) -> dict:
    _set_step(job, "fetching")
    with fetcher.politeness.turn(canonical_url, job.id) if fetcher.politeness else nullcontext():
        page = fetcher.fetch(canonical_url)  # within the host's turn the frontier gave this job
    metrics.fetch_done(page)
    _set_step(job, "parsing")
    return parsers.parse(page.body, page.url, page.content_type, source=source_name)


def _record_failure(job: Job, storage: Storage, url: str, kind: str, exc: Exception, ttl: int) -> bool:
    """Note the failed attempt in the job's meta (GET /jobs, /info show it), then save a failed
    record when this failure is final (and say so); RQ retries the others."""
    host_busy_before = job.meta.get("host_busy", 0)
    retrying = will_retry(job, exc, process_context().settings.fetch_retries)
    error = error_of(exc)
    note_failure(job, error, job.get_retry_interval() if retrying else None,
                 spends_attempt=job.meta.get("host_busy", 0) == host_busy_before)
    if retrying:
        log.warning("transient failure of %s, retry in %s s: %s", url, job.retry_intervals[0], exc)
        metrics.job_retrying(exc)
        return False
    metrics.job_failed(exc, error["code"])
    crashsafe.save_once(job, storage, make_record(url, kind, "failed", parsers.PARSER_VERSION, error=error), ttl)
    return True


def will_retry(job: Job, exc: Exception, max_retries: int, delay: RetryDelay = backoff_seconds) -> bool:
    """Whether RQ will retry after exc, and when (delay(failures so far, the answer's Retry-After)):
    RQ reads retries_left and retry_intervals from this very job object when it handles the
    failure, and saves the job's meta with them when it schedules the retry."""
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


def _set_step(job: Job, step: str) -> None:
    metrics.job_step(step)
    job.meta["step"] = step
    job.save_meta()
