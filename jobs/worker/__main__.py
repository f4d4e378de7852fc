"""The worker process: `python -m jobs.worker` runs an RQ worker pool with its scheduler.

`python -m jobs.worker --check` is the container health check: exit 0 when a worker of
this host is registered (RQ drops workers whose heartbeat stops).

With METRICS_PORT set, it serves its host's job metrics on METRICS_BIND:METRICS_PORT
(metrics.py): in containers, web's /metrics cannot read the workers' samples.

The pool keeps WORKERS RQ workers alive (it replaces any that exit). WORKER_EXECUTION
says how a worker runs a job: `inprocess` (default) runs it itself, and leaves for a fresh
process when worn (WORKER_MAX_JOBS, WORKER_MAX_RSS_MIB, a MemoryError) or killed by its
watchdog; `fork` forks a work-horse per job, so a runaway page costs one horse, never the
worker, at a price: ~11 ms more CPU for a trivial job, ~45 ms for a page fetch (each horse
sets up its own fetcher, TLS and connections). Either way a job is run once at a time
(the runtime: this package) and a page saved once (jobs/tasks.py). The pool's workers also
run RQ's scheduler, which delayed retries need.

This module is the one place where the runtime meets the service's jobs: which crash
handler goes with which job function, the frontier's dispatch of the page queues, and the
job code loaded once in the pool.
"""
from __future__ import annotations

import logging
import socket
import sys
from types import MappingProxyType

from redis import Redis
from rq.worker_pool import WorkerPool

import logs
import metrics
import parsers
from config import Settings, load_settings_or_exit
from jobs import joblogs, tasks
from jobs.fetch import dispatch_policy
from jobs.queues import PAGE_QUEUE_NAMES, QUEUE_NAMES
from jobs.ticker import TICK_TIMEOUT, ensure_ticking
from jobs.trust import JOB_FUNCTION, JsonWorker
from jobs.worker.crashes import CrashHandlers
from jobs.worker.limits import limit_memory, lower_priority
from jobs.worker.pool import worker_pool
from jobs.worker.timings import DEFAULT_JOB_TIMEOUT

log = logging.getLogger(__name__)

# What a job's last run dying leaves behind, by job function: a page, a failed record.
# The ticker and the callback delivery need none (the next tick, RQ's failed registry).
CRASH_HANDLERS = CrashHandlers(MappingProxyType({JOB_FUNCTION: tasks.record_crash}))


def service_job_timeouts(settings: Settings) -> tuple[float, ...]:
    """Every timeout the service enqueues jobs with: pages, ticks, callbacks (RQ's default)."""
    return settings.job_timeout, TICK_TIMEOUT, DEFAULT_JOB_TIMEOUT


def preload_job_code() -> None:
    """What a job imports or initialises lazily is paid again by every process that runs
    one (~0.5 s of CPU here: the job modules, imported above, and the CSS selector engine's
    own set-up): each work-horse in fork mode, each fresh worker in-process (they are
    replaced when worn). Done once in the pool, every worker and horse inherits it. This
    also keeps the kill-and-retry cycles of crash recovery cheap."""
    try:
        parsers.warm_up()  # every parser's CSS selectors, compiled once before the pool forks
    except Exception:  # only an optimisation
        log.debug("could not warm the parsers up", exc_info=True)


def build_pool(settings: Settings) -> WorkerPool:
    preload_job_code()
    return worker_pool(settings, QUEUE_NAMES,
                       worker_class=joblogs.JobLogWorker,  # every line about a job carries job_id and url
                       dispatch=(dispatch_policy(settings), PAGE_QUEUE_NAMES),  # per-host turns
                       crash_handlers=CRASH_HANDLERS)


def worker_alive_here(settings: Settings) -> bool:
    """Health check: does a live RQ worker of this host (container) have a fresh heartbeat?"""
    connection = Redis.from_url(settings.redis_url, socket_timeout=5)
    return any(worker.hostname == socket.gethostname() for worker in JsonWorker.all(connection=connection))


def serve_metrics(settings: Settings) -> None:
    try:
        metrics.serve_worker_metrics(settings.metrics_port, settings.metrics_bind)
    except OSError as exc:
        sys.exit(f"cannot serve metrics on {settings.metrics_bind}:{settings.metrics_port}: {exc.strerror or exc}")


def main() -> None:
    settings = load_settings_or_exit()
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if worker_alive_here(settings) else "no live worker on this host")
    logs.configure_logging(settings.log_level, settings.log_format)
    metrics.setup_multiprocess_dir(settings.data_dir)  # before any metric, so work-horses share it
    if settings.metrics_port:
        serve_metrics(settings)
    limit_memory()
    lower_priority(settings.worker_nice)
    ensure_ticking(Redis.from_url(settings.redis_url), settings.tick_seconds)
    build_pool(settings).start(logging_level=settings.log_level)


if __name__ == "__main__":
    main()
