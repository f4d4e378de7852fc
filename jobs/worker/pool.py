"""The pool: `python -m jobs.worker` runs worker_pool(), a WorkerPool (CrashSafePool) of
crash-safe workers on ClaimingQueues, each running RQ's scheduler too.

A job runs in one *executing process*, chosen by WORKER_EXECUTION: `inprocess` (default)
runs it in the worker itself (InProcessWorker, inprocess.py); `fork` forks a work-horse per
job and watches it (CrashSafeWorker, base.py). The entry point gives the pool what it knows
of the jobs: their crash handlers (crashes.py) and the frontier's dispatch of page queues.
"""
from __future__ import annotations

import os
import time
from multiprocessing import connection as mp_connection

from redis import Redis
from rq import Queue, Worker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.logutils import setup_loghandlers
from rq.serializers import JSONSerializer
from rq.worker_pool import WorkerData, WorkerPool

from config import MIB, Settings
from jobs import frontier
from jobs.trust import ServiceJob
from jobs.worker.base import CrashSafeWorker
from jobs.worker.claims import ClaimingQueue
from jobs.worker.crashes import CrashHandlers
from jobs.worker.inprocess import InProcessWorker

RESPAWN_PACE = 1.0  # s, least time between two rounds of worker starts by the pool (RQ's own pace)


class CrashSafePool(WorkerPool):
    """RQ's WorkerPool, replacing an exited worker at once: in-process workers leave on
    purpose (worn, see InProcessWorker), so a replacement is routine. RQ's loop sleeps a
    second between checks and joins each live worker for 0.1 s; this one waits on the
    workers' exits, still starting workers no more often than every RESPAWN_PACE when they
    crash in a loop (Redis away), and respawns with the pool's logging level (RQ's drops it)."""

    logging_level: str = "INFO"
    _last_start: float = 0.0

    def start(self, burst: bool = False, logging_level: str = "INFO"):
        self._burst, self.logging_level = burst, logging_level
        setup_loghandlers(logging_level, DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT, name="rq.worker_pool")
        self.log.info("Starting worker pool %s with pid %d...", self.name, os.getpid())
        self.status = self.Status.STARTED
        self.start_workers(burst=burst, logging_level=logging_level)
        self._install_signal_handlers()
        while not (self.status == self.Status.STOPPED and self.all_workers_have_stopped()):
            if self.status != self.Status.STOPPED:
                self.check_workers(respawn=not burst)
                if burst and self.number_of_active_workers == 0:
                    break
            self._wait_for_an_exit(1.0)
            time.sleep(max(0.0, self._last_start + RESPAWN_PACE - time.monotonic()))
        self.log.info("All workers stopped, exiting...")

    def _wait_for_an_exit(self, seconds: float) -> None:
        sentinels = [data.process.sentinel for data in self.worker_dict.values()]
        if sentinels:
            mp_connection.wait(sentinels, seconds)
        else:
            time.sleep(seconds)

    def reap_workers(self):
        for data in list(self.worker_dict.values()):
            if not data.process.is_alive():  # reaps it when it has exited; never waits
                self.handle_dead_worker(data)

    def handle_dead_worker(self, worker_data: WorkerData):
        """RQ's says "is dead": say how (an in-process worker killed by its watchdog leaves no line of its own)."""
        code = worker_data.process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        self.log.info("Worker %s with pid %d ended: %s", worker_data.name, worker_data.pid, how)
        self.worker_dict.pop(worker_data.name, None)

    def start_worker(self, count: int | None = None, burst: bool = True, _sleep: float = 0,
                     logging_level: str | None = None):
        self._last_start = time.monotonic()
        super().start_worker(count, burst, _sleep, logging_level or self.logging_level)


def crash_safe(worker_class: type[Worker], execution: str = "fork", **attributes) -> type[CrashSafeWorker]:
    """worker_class (an rq.Worker subclass, its mixins kept on top) with CrashSafeWorker
    (execution "fork") or InProcessWorker ("inprocess") under it, and these class attributes."""
    base = {"fork": CrashSafeWorker, "inprocess": InProcessWorker}[execution]
    if issubclass(worker_class, base) and not attributes:
        return worker_class
    bases = (base,) if issubclass(base, worker_class) else (worker_class, base)  # rq.Worker itself: no mixin
    return type(f"CrashSafe{worker_class.__name__}", bases, attributes)


def pool_worker_class(settings: Settings, worker_class: type[Worker] = Worker,
                      crash_handlers: CrashHandlers = CrashHandlers()) -> type[CrashSafeWorker]:
    """The crash-safe worker class of settings.worker_execution, with its limits and the jobs' crash handlers."""
    if settings.worker_execution == "fork":
        return crash_safe(worker_class, "fork", crash_handlers=crash_handlers)
    return crash_safe(worker_class, "inprocess", max_jobs=settings.worker_max_jobs,
                      max_rss_bytes=settings.worker_max_rss_mib * MIB, crash_handlers=crash_handlers)


def worker_pool(settings: Settings, queue_names: list[str], worker_class: type[Worker] = Worker,
                dispatch: tuple[frontier.DispatchPolicy, list[str]] | None = None,
                crash_handlers: CrashHandlers = CrashHandlers()) -> WorkerPool:
    """The service's pool: settings.workers crash-safe workers on ClaimingQueues; with
    dispatch (a policy and the page queues), those queues' jobs wait per host in the frontier;
    crash_handlers: what each job function's last run dying leaves behind (crashes.py)."""
    if dispatch is not None:
        ClaimingQueue.dispatch_policy = dispatch[0]
        ClaimingQueue.inbox_keys = frozenset(Queue.redis_queue_namespace_prefix + name for name in dispatch[1])
    CrashSafeWorker.pool_pid = os.getpid()  # the workers are forked from this process
    connection = Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    return CrashSafePool(queue_names, connection=connection, num_workers=settings.workers, serializer=JSONSerializer,
                         worker_class=pool_worker_class(settings, worker_class, crash_handlers),
                         queue_class=ClaimingQueue, job_class=ServiceJob)
