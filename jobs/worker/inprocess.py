"""InProcessWorker (WORKER_EXECUTION=inprocess, the default): the worker runs each job
itself, as rq.SimpleWorker does, so no fork per job, and the job's fetcher (TLS and
keep-alive connections) and Redis connections live on across jobs; the executing process is
the worker. The guarantees of a work-horse are kept:

* the lease (timings.py), and a Watchdog (watchdog.py) that kills this very process when
  its job is overdue; the pool starts a fresh worker and the job comes back through its lease;
* memory: RLIMIT_AS (jobs/worker/limits.py) bounds the worker itself; a MemoryError fails its
  job cleanly, then the worker leaves after its bookkeeping (its heap may be fragmented),
  and so it does between jobs once its RSS is above WORKER_MAX_RSS_MIB or it has run
  WORKER_MAX_JOBS jobs (with up to 10 % jitter); CrashSafePool starts the replacement at once;
* signals: a stop signal during a job is only noted by the handler (no Redis call inside the
  job's code); the worker leaves after the job (warm shutdown). A second one (cold shutdown)
  raises ColdShutdown in the job, which skips RQ's failure bookkeeping: the job is left to
  its lease, as a killed horse's would be. RQ's kill-horse and stop-job commands are
  refused: a job running in the worker cannot be stopped alone.
"""
from __future__ import annotations

import os
import random
import signal
import time
from datetime import timedelta
from types import FrameType

from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import StopRequested
from rq.job import Job
from rq.utils import now
from rq.worker import WorkerStatus

from config import MIB
from jobs.worker.base import CrashSafeWorker
from jobs.worker.killtimer import KillTimer
from jobs.worker.timings import job_timeout
from jobs.worker.watchdog import Watchdog


class ColdShutdown(SystemExit):
    """A second stop signal while a job runs in the worker itself: leave now, the job to its lease."""


class InProcessWorker(CrashSafeWorker):
    """Runs each job in the worker process itself, as rq.SimpleWorker does, with the
    guarantees of a work-horse kept (module docstring): the lease, a watchdog that kills
    this process when the job is overdue, and a fresh process once this one is worn (jobs
    run, memory, a MemoryError)."""

    max_jobs: int = 0  # jobs before the worker exits and the pool starts a fresh one; 0: no limit
    max_rss_bytes: int = 0  # resident memory, checked between jobs, above which it does; 0: no limit

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Up to 10 % more, so that workers started together do not all leave together.
        self.job_limit = self.max_jobs + random.randint(0, self.max_jobs // 10) if self.max_jobs else 0
        self.jobs_run = 0
        self.worn_by: str | None = None  # why this worker must not take another job
        self._in_job = False
        self._watchdog: Watchdog | None = None

    def execute_job(self, job: Job, queue: Queue):
        execution = None
        self._in_job = True
        watchdog = self._arm_watchdog(job, time.monotonic())  # T0: before the lease is written
        try:
            execution = self.start_execution(job)
            if execution is not None:
                self.perform_job(job, queue, execution)
        finally:
            watchdog.disarm()
            self._in_job = False
        self._state = WorkerStatus.IDLE  # written to Redis by the dequeue that follows at once
        if execution is not None:
            self._after_job()

    def _arm_watchdog(self, job: Job, started: float) -> Watchdog:
        if self._watchdog is None:  # made in the worker process: threads and timers do not survive fork
            self._watchdog = Watchdog(self.name, KillTimer.create())
        timeout = job_timeout(job)
        if timeout > 0:
            self._watchdog.arm(started + self.timings.hard_kill_after(timeout), job.id)
        return self._watchdog

    def _after_job(self) -> None:
        """Between jobs: leave when worn; the pool starts a fresh worker at once."""
        self.jobs_run += 1
        reason = self.worn_by or self.worn_out()
        if reason and not self._stop_requested:
            self.log.info("Worker %s: %s: exiting for a fresh worker", self.name, reason)
            self._stop_requested = True
        if self._shutdown_requested_date is not None:
            self._note_shutdown_request()

    def worn_out(self) -> str | None:
        if self.job_limit and self.jobs_run >= self.job_limit:
            return f"{self.jobs_run} jobs run (WORKER_MAX_JOBS)"
        if self.max_rss_bytes and (rss := resident_bytes()) > self.max_rss_bytes:
            return f"resident memory of {rss / MIB:.0f} MiB is above WORKER_MAX_RSS_MIB ({self.max_rss_bytes // MIB})"
        return None

    def handle_exception(self, job: Job, *exc_info):
        if isinstance(exc_info[1], ColdShutdown):
            raise exc_info[1]  # no failure bookkeeping: the job is left to its lease, like a killed horse's
        if isinstance(exc_info[1], MemoryError):
            self.worn_by = "a job ran out of memory (MemoryError), the heap may be fragmented"
        super().handle_exception(job, *exc_info)

    # -- no horse --

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL):
        """RQ's would signal process group getpgid(0): the pool's. Jobs here cannot be stopped."""
        self._stopped_job_id = None
        self.log.warning("Worker %s: jobs run in-process here (WORKER_EXECUTION=inprocess): nothing to kill",
                         self.name)

    # -- signals while a job runs in this very process --

    def _shutdown(self):
        """Warm shutdown. The handler interrupts the job's own code: it only takes note (no
        Redis call, no wait there); the work loop stops after the job, teardown stops the scheduler."""
        if not self._in_job:
            raise StopRequested()
        self._stop_requested = True
        self.log.info("Worker %s: stopping after the current job", self.name)

    def _note_shutdown_request(self) -> None:
        try:
            self.set_shutdown_requested_date()
        except RedisError as exc:
            self.log.warning("Worker %s: shutdown request not noted in Redis (%s)", self.name, exc)

    def request_force_stop(self, signum: int, frame: FrameType | None):
        """Cold shutdown: as a forking worker's, the job is abandoned to its lease (ColdShutdown
        skips RQ's failure bookkeeping), and the worker leaves through its teardown."""
        if not self._in_job:
            return super().request_force_stop(signum, frame)
        if now() - self._shutdown_requested_date < timedelta(seconds=1):
            return  # the pool's SIGINT and the supervisor's SIGTERM: one request
        self.log.warning("Worker %s: cold shut down; job left to its lease", self.name)
        raise ColdShutdown()


def resident_bytes() -> int:
    """This process's resident set size, from /proc/self/statm (0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0
