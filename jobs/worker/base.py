"""CrashSafeWorker: an RQ Worker that runs each job under a lease, starts only what it
claimed, and runs the service's own job functions only (its job class is a ServiceJob:
jobs/trust.py). It forks a work-horse per job (WORKER_EXECUTION=fork) and is the base of
InProcessWorker (inprocess.py).

In fork mode the worker watches its horse: a watchdog thread kills the horse's process
group at T0 + timeout + HARD_KILL_GRACE (timings.py), and the horse dies with its worker
(PR_SET_PDEATHSIG=SIGKILL, set in the horse right after fork, and the parent checked, to
close the race), so a SIGKILLed worker leaves no orphan horse that nobody watches. A worker
whose horse was killed fails or retries the job at once; with no retries left it calls the
job's crash handler (crashes.py), as does the cleaner that finds a job abandoned.

Also: a worker dies with its pool (PDEATHSIG=SIGTERM: warm shutdown), the scheduler
process with its worker (scheduler.py), heartbeat and maintenance failures while Redis is
away are logged instead of ending the worker, and reconnect back-off is capped at
MAX_RECONNECT_WAIT seconds. Maintenance runs every MAINTENANCE_INTERVAL seconds on every
worker, idle ones included (a dequeue waits no longer than that); concurrent cleaners are
harmless: every retry interval is positive, so a retry is a ZADD of the same member into
the scheduled registry, never a second push on a queue. Per-job Redis round trips:
heartbeats are pipelined and throttled (HEARTBEAT_GAP).
"""
from __future__ import annotations

import errno
import os
import signal
import threading
import time

from redis.client import Pipeline
from redis.exceptions import RedisError, WatchError
from rq import Queue, Worker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.utils import now
from rq.worker import WorkerStatus

from jobs import frontier
from jobs.trust import ServiceJob
from jobs.worker.claims import ClaimLost, drop_claim, sweep_claims, watch_claim
from jobs.worker.crashes import CrashHandlers
from jobs.worker.killtimer import die_with_parent
from jobs.worker.scheduler import CrashSafeScheduler
from jobs.worker.timings import TIMINGS, Timings, job_timeout

HEARTBEAT_GAP = 1.0  # s: a worker's heartbeat is skipped when the last one is more recent
MAX_RECONNECT_WAIT = 2  # s, cap of the worker's back-off while Redis is away


class CrashSafeWorker(Worker):
    """An RQ Worker with the lease, watchdog, claims and death rules of this package, that runs
    only the service's own job functions (its job class is a ServiceJob: jobs/trust.py)."""

    timings: Timings = TIMINGS
    crash_handlers: CrashHandlers = CrashHandlers()  # what a job's last run dying leaves (set by the pool)
    pool_pid: int | None = None  # set in the pool process before it forks its workers
    max_connection_wait_time = MAX_RECONNECT_WAIT
    job_class = ServiceJob

    def __init__(self, *args, **kwargs):
        job_class = kwargs.get("job_class") or self.job_class
        if not (isinstance(job_class, type) and issubclass(job_class, ServiceJob)):
            raise TypeError(f"a service worker runs ServiceJobs only (jobs/trust.py), not {job_class!r}")
        kwargs["job_class"] = job_class
        kwargs.setdefault("worker_ttl", self.timings.worker_ttl)
        kwargs.setdefault("maintenance_interval", self.timings.maintenance_interval)
        kwargs.setdefault("job_monitoring_interval", self.timings.heartbeat_interval)
        super().__init__(*args, **kwargs)
        if self.crash_handlers.on_abandoned not in self._exc_handlers:
            self.push_exc_handler(self.crash_handlers.on_abandoned)

    @property
    def dequeue_timeout(self) -> int:
        """Idle workers come back from waiting often enough to run maintenance on time."""
        return max(1, int(self.timings.maintenance_interval))

    # -- process lifetimes --

    def work(self, *args, **kwargs):
        if self.pool_pid is not None:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the pool's handler, inherited by fork
            if not die_with_parent(signal.SIGTERM, self.pool_pid):
                return False  # the pool died before this worker started
        return super().work(*args, **kwargs)

    def main_work_horse(self, job: Job, queue: Queue):
        if not die_with_parent(signal.SIGKILL, self.pid):
            os._exit(1)  # the worker died between fork and here: nobody would watch this horse
        super().main_work_horse(job, queue)

    def _start_scheduler(self, burst: bool = False, logging_level: str | None = "INFO",
                         date_format: str = DEFAULT_LOGGING_DATE_FORMAT, log_format: str = DEFAULT_LOGGING_FORMAT):
        """RQ's _start_scheduler, with the CrashSafeScheduler."""
        self.scheduler = CrashSafeScheduler(
            self.queues, connection=self.connection, serializer=self.serializer,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format, log_format=log_format,
        )
        self.scheduler.parent_pid = os.getpid()
        self.scheduler.acquire_locks()
        if self.scheduler.acquired_locks:
            if burst:
                try:
                    self.scheduler.register_birth()
                    self.scheduler.enqueue_scheduled_jobs()
                finally:
                    self.scheduler.release_locks()
                    self.scheduler.register_death()
            else:
                self.scheduler.start()

    # -- the lease --

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        timeout = job_timeout(job)
        if timeout <= 0:
            return super().get_heartbeat_ttl(job, working_time)
        return self.timings.lease_seconds(timeout, working_time)

    def prepare_execution(self, job: Job) -> Execution:
        """Claim -> started execution (STARTED, in the started registry), in one transaction."""
        with self.connection.pipeline() as pipe:
            try:
                watch_claim(pipe, job.id)
                pipe.multi()
                drop_claim(pipe, job.id)
                execution = Execution.create(job, self.get_heartbeat_ttl(job), pipeline=pipe, worker_name=self.name)
                job.set_status(JobStatus.STARTED, pipeline=pipe)
                self.set_state(WorkerStatus.BUSY, pipeline=pipe)
                pipe.execute()
            except WatchError:
                raise ClaimLost(job.id) from None
        self.executions[execution.id] = execution
        return execution

    def start_execution(self, job: Job) -> Execution | None:
        """prepare_execution, or None when the claim was taken back (the job is queued again)."""
        try:
            return self.prepare_execution(job)
        except ClaimLost:
            self.log.warning("Worker %s: job %s was taken back from this worker before it started", self.name, job.id)
            self.set_state(WorkerStatus.IDLE)
            return None

    def execute_job(self, job: Job, queue: Queue):
        started = time.monotonic()  # T0: before the lease is written, so the lease ends later
        execution = self.start_execution(job)
        if execution is None:
            return
        self.fork_work_horse(job, queue)
        watchdog = self._start_watchdog(job, started)
        try:
            self.monitor_work_horse(job, queue, execution)
        finally:
            if watchdog is not None:
                watchdog.cancel()
        self.set_state(WorkerStatus.IDLE)

    def _start_watchdog(self, job: Job, started: float) -> threading.Timer | None:
        timeout = job_timeout(job)
        if timeout <= 0:
            return None
        delay = max(0.0, started + self.timings.hard_kill_after(timeout) - time.monotonic())
        watchdog = threading.Timer(delay, self._kill_overdue_horse, args=(self.horse_pid, job.id))
        watchdog.daemon = True
        watchdog.start()
        return watchdog

    def _kill_overdue_horse(self, horse_pid: int, job_id: str) -> None:
        if horse_pid and self.horse_pid == horse_pid:
            self.log.error("Worker %s: job %s outlived its timeout: killing its horse %s", self.name, job_id, horse_pid)
            try:
                os.killpg(horse_pid, signal.SIGKILL)
            except OSError as exc:
                if exc.errno != errno.ESRCH:
                    raise

    def handle_exception(self, job: Job, *exc_info):
        """A failed job may still hold its host's turn (refused before its function ran, or
        failed before its fetch): free it now, not when its lease ends. A no-op otherwise."""
        try:
            frontier.give_back(self.connection, job.id)
        except RedisError as exc:
            self.log.warning("Worker %s: the host turn of job %s is left to its lease (%s)", self.name, job.id, exc)
        super().handle_exception(job, *exc_info)

    def handle_work_horse_killed(self, job, retpid, ret_val, rusage):
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        if not job.should_retry:  # handle_job_failure, next, fails it for good
            reason = f"the work-horse died ({describe_exit(ret_val)}) and no retries are left"
            self.crash_handlers.last_run_died(job, reason)

    # -- round trips --

    _last_beat: float = 0.0  # time.monotonic() of the last heartbeat sent

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None):
        """RQ's heartbeat is three commands, each a round trip, sent three times a job: here
        one pipeline, and none when the last beat is under HEARTBEAT_GAP s old. The worker's
        key then still has the TTL of that beat (a job's lease or worker_ttl + 60 s, both
        far longer than the next beat takes: after the job, or within dequeue_timeout)."""
        if pipeline is not None:
            self._last_beat = time.monotonic()
            return super().heartbeat(timeout, pipeline)
        if timeout is None and time.monotonic() - self._last_beat < HEARTBEAT_GAP:
            return
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(timeout, pipe)
            pipe.execute()
        self._last_beat = time.monotonic()

    def unsubscribe(self):
        """RQ's, with the listener thread told to stop first: the reply to UNSUBSCRIBE wakes it,
        and when that came before the stop it went back to a 60 s wait, which the leaving
        worker then waited on for a second (its join's timeout)."""
        if self.pubsub_thread:
            self.pubsub_thread.stop()
        super().unsubscribe()

    # -- Redis away: keep the worker --

    def maintain_heartbeats(self, job: Job, execution: Execution):
        try:
            super().maintain_heartbeats(job, execution)
        except RedisError as exc:  # the lease does not depend on heartbeats
            self.log.warning("Worker %s: heartbeat failed (%s); the horse keeps its lease", self.name, exc)

    def run_maintenance_tasks(self):
        try:
            super().run_maintenance_tasks()
            sweep_claims(self.connection)
        except RedisError as exc:
            self.log.warning("Worker %s: maintenance failed (%s); next pass in %s s",
                             self.name, exc, self.maintenance_interval)
            self.last_cleaned_at = now()



def describe_exit(ret_val: int | None) -> str:
    if ret_val is not None and os.WIFSIGNALED(ret_val):
        return f"signal {os.WTERMSIG(ret_val)}"
    return f"status {ret_val}"
