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
sets up its own fetcher, TLS and connections). Either way a job is run once at a time and saved
once (jobs/crashsafe.py). The pool's workers also run RQ's scheduler, which delayed
retries need.
"""
from __future__ import annotations

import os
import resource
import socket
import sys

from redis import Redis
from rq.worker_pool import WorkerPool

import logs
import metrics
from config import Settings, load_settings
from errors import ConfigError
from jobs import crashsafe
from jobs.fetch import dispatch_policy
from jobs.queues import PAGE_QUEUE_NAMES, QUEUE_NAMES
from jobs.ticker import ensure_ticking
from jobs.trust import JsonWorker

MIB = 1024 * 1024
# Address-space cap per worker process (and work-horse): a backstop under the per-fetch
# body limit, so a parser blow-up on a hostile page fails that job with MemoryError
# instead of the host (an in-process worker then leaves for a fresh one).
ADDRESS_SPACE_LIMIT = 2048 * MIB


def limit_memory(limit: int = ADDRESS_SPACE_LIMIT) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit if hard == resource.RLIM_INFINITY else hard))


def lower_priority(nice: int) -> None:
    """Run the pool (and every worker it forks) at a lower CPU priority than the web API:
    a saturated box then keeps GET /info fast and only the backlog drains a little slower."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, 0, nice)  # raising nice needs no privilege; lowering it would
    if nice > 0 and os.getsid(0) == os.getpid():
        lower_session_priority(nice)


def lower_session_priority(nice: int) -> None:
    """With Linux's autogroup scheduling, each session shares the CPU equally whatever its
    processes' nice: a worker that leads its own session (a container's main process, a
    process started with setsid) sets its session's nice too. Never a shared session's."""
    try:
        with open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(nice))
    except OSError:
        pass  # no autogroup (kernel without it, or disabled): the process nice is enough


def build_pool(settings: Settings) -> WorkerPool:
    # Crash safety (claimed dequeues, job leases, watchdogs, no orphans): jobs/crashsafe.py
    return crashsafe.worker_pool(settings, QUEUE_NAMES,
                                 worker_class=logs.JobLogWorker,  # RQ's own lines about a job carry job_id and url
                                 dispatch=(dispatch_policy(settings), PAGE_QUEUE_NAMES))  # per-host turns


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
    try:
        settings = load_settings()
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")
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
