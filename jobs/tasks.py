"""The page job: fetch one canonical URL, parse it with its source's parser, save its record
once, and tell the batches waiting on it.

    already saved? -> fetch -> parse -> save once -> notify once

- already saved?  A run killed after saving, before RQ heard of it, is run again (its lease,
  then RQ's retry): the re-run finds the guard its save wrote (Storage.save_once, naming
  the job's generation: its created_at), neither fetches nor saves, and frees its host's
  turn unused.
- fetch, parse    within the host's turn the frontier gave the job (jobs/frontier.py); each
  step is noted in the job's meta (GET /jobs shows it) and timed (metrics.py).
- save once       a done record; or, when a failure is final (permanent, or no retries
  left), a failed record with the error. A failure RQ will retry (transient, retries left)
  saves nothing, its attempt noted in the job's meta (jobs/attempts.py). Either way the
  exception reaches RQ, so the failed registry and /rqstatus see it.
- notify once     whatever saved the record (this run or an earlier one), the batches
  waiting on the URL are checked, and their completion callbacks sent when due.

record_crash is the page job's crash handler (jobs/worker/crashes.py; wired in
jobs/worker/__main__.py): a run that died with no retries left ends with a `failed` record
(code worker_crashed), so a page never ends without a record.
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass

from rq import get_current_job
from rq.job import Job

import metrics
import parsers
import snapshots
from jobs import callbacks, frontier
from jobs.attempts import error_of, note_failure
from jobs.context import process_context
from jobs.fetch import Fetcher, Page
from jobs.retries import will_retry
from sources import NEWS, SOURCES, Source
from storage import Storage, make_record

log = logging.getLogger(__name__)
WORKER_CRASHED = "worker_crashed"  # a failed record's error code when the job's last run died


def fetch_and_parse(canonical_url: str, source_name: str) -> dict:
    """Run inside an RQ worker; returns a short summary as the job's result."""
    job = get_current_job()
    metrics.job_started(job, source_name)
    page = PageRun(job, canonical_url, SOURCES[source_name])
    try:
        if page.already_saved():
            page.skip_rerun()
        else:
            page.save_done(page.fetch_and_parse())
    finally:
        page.notify_once_saved()
    return {"url": canonical_url, "status": "done"}


def record_crash(job: Job, reason: str) -> None:
    """The page job's crash handler: its last run died with no retries left. Save a failed
    record (unless a run of this generation saved one), and tell the batches waiting."""
    page = PageRun(job, job.args[0], SOURCES[job.args[1]])
    error = {"code": WORKER_CRASHED, "message": reason}
    if page.save_once(make_record(page.url, page.source.kind, "failed", parsers.PARSER_VERSION, error=error)):
        log.warning("%s: final crash of job %s recorded as failed: %s", page.url, job.id, reason)
        page.notify_once_saved()


def generation(job: Job) -> bytes:
    """Which enqueue of the job id this is: a later submission of the URL is a new generation."""
    return job.created_at.isoformat().encode() if job.created_at else b"?"


@dataclass
class PageRun:
    """One run of the page job: its URL and source, and whether a record of its job's
    generation is saved (by this run or an earlier one): then the batches waiting are told."""

    job: Job
    url: str
    source: Source
    saved: bool = False
    watching: list[str] | None = None  # the batches waiting on the URL, read with the save

    def already_saved(self) -> bool:
        """Did an earlier run of this job (this generation of it) save the record, then die?"""
        return Storage(self.job.connection).saved_by(self.job.id) == generation(self.job)

    def skip_rerun(self) -> None:
        log.warning("%s: record already saved by an earlier run of job %s; not fetching again", self.url, self.job.id)
        frontier.give_back(self.job.connection, self.job.id)  # its host's turn, unused: free it now
        self.saved = True

    def fetch_and_parse(self) -> dict:
        """The page's data; a failure is recorded (save_failure) on its way to RQ."""
        try:
            return _fetch_and_parse(process_context().fetcher, self.url, self.source.name, self.job)
        except Exception as exc:
            self.save_failure(exc)
            raise

    def save_done(self, data: dict) -> None:
        _set_step(self.job, "saving")
        record = make_record(self.url, self.source.kind, "done", parsers.PARSER_VERSION, data=data)
        self.save_once(record, snapshots.take(record) if self.source is NEWS else None)
        metrics.job_done()

    def save_failure(self, exc: Exception) -> None:
        """A failed record when this failure is final; RQ retries the others."""
        error = _note_failure(self.job, self.url, exc)
        if error is not None:
            self.save_once(make_record(self.url, self.source.kind, "failed", parsers.PARSER_VERSION, error=error))

    def save_once(self, record: dict, snapshot: dict | None = None) -> bool:
        """Save the record (a news page's with its snapshot) unless this job generation saved one; True when written."""
        settings = process_context().settings
        self.watching = Storage(self.job.connection).save_once(
            record, self.source.ttl + settings.record_retention, self.job.id, generation(self.job),
            snapshot, settings.snapshots_kept)
        self.saved = True
        return self.watching is not None

    def notify_once_saved(self) -> None:
        """The one place the batches waiting on the URL hear of it: once a record is saved."""
        if self.saved:
            callbacks.url_finished(self.job.connection, self.url, self.watching)


def _fetch_and_parse(fetcher: Fetcher, canonical_url: str, source_name: str, job: Job) -> dict:
    _set_step(job, "fetching")
    page = _fetch(fetcher, canonical_url, job.id)
    metrics.fetch_done(page)
    _set_step(job, "parsing")
    return parsers.parse(page.body, page.url, page.content_type, source=source_name)


def _fetch(fetcher: Fetcher, canonical_url: str, job_id: str) -> Page:
    """The page, fetched within the host's turn the frontier gave this job."""
    with fetcher.politeness.turn(canonical_url, job_id) if fetcher.politeness else nullcontext():
        return fetcher.fetch(canonical_url)


def _note_failure(job: Job, url: str, exc: Exception) -> dict | None:
    """Note the failed attempt in the job's meta (GET /jobs, /info show it); its error when
    this failure is final, None when RQ will retry."""
    host_busy_before = job.meta.get("host_busy", 0)
    retrying = will_retry(job, exc, process_context().settings.fetch_retries)
    error = error_of(exc)
    note_failure(job, error, job.get_retry_interval() if retrying else None,
                 spends_attempt=job.meta.get("host_busy", 0) == host_busy_before)
    if retrying:
        log.warning("transient failure of %s, retry in %s s: %s", url, job.retry_intervals[0], exc)
        metrics.job_retrying(exc)
        return None
    metrics.job_failed(exc, error["code"])
    return error


def _set_step(job: Job, step: str) -> None:
    metrics.job_step(step)
    job.meta["step"] = step
    job.save_meta()
