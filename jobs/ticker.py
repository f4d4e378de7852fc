"""The ticker: a short job every TICK_SECONDS that re-crawls due news pages, sweeps callbacks,
keeps the records index (record_index.py) built and free of expired records, and drops old
entries of RQ's canceled registries (jobs/cancel.py).

Each tick schedules the next one through RQ's scheduler (which the worker pool runs).
Tick job ids are the tick's own time, enqueued with unique=True, so however many places
call ensure_ticking (worker start, each API submission) there is one chain, never two.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from redis import Redis
from rq import get_current_job
from rq.exceptions import DuplicateJobError

from jobs import callbacks, recrawl
from jobs.cancel import forget_old_cancels
from jobs.context import process_context
from jobs.queues import MAINTENANCE_QUEUE, make_queue
from jobs.trust import TICK_FUNCTION
from record_index import RecordIndex

log = logging.getLogger(__name__)
TICK_TIMEOUT = 30


def ensure_ticking(connection: Redis, every: int) -> None:
    """Schedule the next aligned tick unless it is already scheduled."""
    at = (int(time.time()) // every + 1) * every
    try:
        make_queue(MAINTENANCE_QUEUE, connection).enqueue_at(
            datetime.fromtimestamp(at, tz=timezone.utc), TICK_FUNCTION,
            job_id=f"tick-{at}", unique=True, result_ttl=0, failure_ttl=3600, job_timeout=TICK_TIMEOUT,
        )
    except DuplicateJobError:
        pass  # this tick is already scheduled: the chain is alive


def tick() -> dict:
    """RQ job: one round of maintenance, then the next tick."""
    job = get_current_job()
    settings = process_context().settings
    try:
        recrawled = recrawl.run_due(job.connection, settings)
        called_back = callbacks.sweep(job.connection)
        upkeep_records_index(job.connection)
        forget_old_cancels(job.connection, time.time())
    finally:
        ensure_ticking(job.connection, settings.tick_seconds)
    return {"recrawled": recrawled, "callbacks": called_back}


def upkeep_records_index(connection: Redis) -> int:
    """A step of indexing records saved before the index, then drop expired records' entries."""
    index = RecordIndex(connection)
    index.build_step()
    pruned = index.prune_expired(time.time())
    if pruned:
        log.info("records index: %d entries of expired records dropped", pruned)
    return pruned
