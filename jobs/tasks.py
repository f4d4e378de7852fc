"""The job: fetch one canonical URL, parse it with its source's parser, store the record.

A failure that will be retried (transient, retries left) leaves storage alone; a final
one saves a failed record with the error, so GET /info shows it. Either way the exception
reaches RQ, so the failed registry and /rqstatus see it.
"""
from __future__ import annotations

import logging
import os

from rq import get_current_job
from rq.job import Job

import parsers
from config import Settings, load_settings
from errors import JobError
from jobs.fetch import Fetcher
from sources import SOURCES
from storage import Storage, make_record

log = logging.getLogger(__name__)


class _ProcessContext:
    """Settings and the Fetcher (with its keep-alive connections), one per process."""

    pid: int | None = None
    settings: Settings
    fetcher: Fetcher

    @classmethod
    def get(cls) -> "_ProcessContext":
        if cls.pid != os.getpid():  # a forked child must not share its parent's sockets
            cls.settings = load_settings()
            cls.fetcher = Fetcher(cls.settings)
            cls.pid = os.getpid()
        return cls


def fetch_and_parse(canonical_url: str, source_name: str) -> dict:
    """Run inside an RQ worker; returns a short summary as the job's result."""
    job = get_current_job()
    context = _ProcessContext.get()
    source = SOURCES[source_name]
    storage = Storage(job.connection)
    ttl = source.ttl + context.settings.record_retention
    try:
        data = _fetch_and_parse(context.fetcher, canonical_url, source_name, job)
    except Exception as exc:
        _record_failure(job, storage, canonical_url, source.kind, exc, ttl)
        raise
    _set_step(job, "saving")
    storage.save_record(make_record(canonical_url, source.kind, "done", parsers.PARSER_VERSION, data=data), ttl)
    return {"url": canonical_url, "status": "done"}


def _fetch_and_parse(fetcher: Fetcher, canonical_url: str, source_name: str, job: Job) -> dict:
    _set_step(job, "fetching")
    page = fetcher.fetch(canonical_url)
    _set_step(job, "parsing")
    return parsers.parse(page.body, page.url, page.content_type, source=source_name)


def _record_failure(job: Job, storage: Storage, url: str, kind: str, exc: Exception, ttl: int) -> None:
    """Save a failed record when this failure is final; stop RQ retrying permanent ones."""
    transient = isinstance(exc, JobError) and exc.transient
    if not transient:
        job.retries_left = 0  # RQ reads this when it handles the failure: no retry
    elif job.retries_left:
        log.warning("transient failure of %s, will retry: %s", url, exc)
        return
    error = {"code": getattr(exc, "code", "internal_error"), "message": str(exc) or type(exc).__name__}
    storage.save_record(make_record(url, kind, "failed", parsers.PARSER_VERSION, error=error), ttl)


def _set_step(job: Job, step: str) -> None:
    job.meta["step"] = step
    job.save_meta()
