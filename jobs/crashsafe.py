"""Crash safety of the RQ workers: no job lost, none run twice at once, each saved once.

`jobs.worker` runs `worker_pool(settings)`: a WorkerPool (CrashSafePool) of crash-safe
workers on ClaimingQueues, with the scheduler below. A job runs in one *executing
process*, chosen by WORKER_EXECUTION:

* `inprocess` (default): the worker runs the job itself (InProcessWorker, like
  rq.SimpleWorker), so no fork per job, and the job's fetcher (TLS and keep-alive
  connections) and Redis connections live on across jobs; the executing process is the
  worker;
* `fork`: the worker forks a work-horse per job and watches it (CrashSafeWorker, RQ's
  Worker); the executing process is the horse.

What each piece closes, in the order a job meets them:

1. Dequeue. RQ pops a job id with BLPOP when a worker listens on several queues; a worker
   killed between that pop and registering the job in the StartedJobRegistry loses the job
   (it is in no list and no registry). ClaimingQueue pops with a Lua script that moves the
   id into a *claim* in the same step (`metaparse:claim:<job id>` and a deadline in
   `metaparse:claims`). The worker turns its claim into a started execution in one
   WATCH/MULTI transaction (prepare_execution); a claim still there after CLAIM_SECONDS is
   taken back, and the job put at the head of its queue, by any worker's maintenance
   (sweep_claims, one Lua script). Page jobs are popped the same way by the frontier's
   dispatch (jobs/frontier.py), which gives a job out only when its host's turn has come;
   their claim names the job's lane in the frontier, and a claim taken back puts the job
   at the head of that lane. Exactly one of the two happens, so a claimed job runs
   once or goes back once, whatever dies when. The same transaction sets the job STARTED: RQ's
   StartedJobRegistry.cleanup ignores (and drops) entries of jobs that are not STARTED, so a
   worker killed before its horse said STARTED would otherwise lose the job too.

2. The lease. RQ treats a job as abandoned once its StartedJobRegistry entry's score (a
   unix time) has passed, and StartedJobRegistry.cleanup (run by clean_registries in every
   worker's maintenance) then retries it (or fails it when no retries are left). We set the
   score, in get_heartbeat_ttl, to a lease measured from the start of the execution:

       lease expires at  T0 + timeout + LEASE_GRACE - 1     (or later; never earlier)

   T0 is when the worker began preparing the execution, timeout the job's own timeout,
   and -1 is RQ's truncation of the registry score to whole seconds. Heartbeats (fork mode)
   rewrite the score with the same expression (remaining time + grace), so they never
   shorten it; an in-process job sends none: its lease covers its whole life from T0.

3. The executing process's life is bounded, whichever comes first, by:
   * RQ's death penalty: SIGALRM in the executing process after `timeout`, raising in the
     job (a clean failure);
   * a kill at T0 + timeout + HARD_KILL_GRACE, whatever the job is doing (stuck in C
     code, or in a Redis call that hangs):
     - fork: a watchdog thread in the worker kills the horse's process group (SIGKILL);
     - inprocess: the worker kills *itself*. A Watchdog thread logs which job outlived
       its time and SIGKILLs the process (WATCHDOG_LEAD s early), and a KillTimer, a
       kernel POSIX timer armed at the deadline, SIGKILLs it even when the job holds the
       GIL in C code (which starves every thread: tests/jobs/worker/test_worker_inprocess.py shows
       it). The pool starts a fresh worker; the job comes back through its lease (4);
   * fork: the horse dies with its worker (PR_SET_PDEATHSIG=SIGKILL, set in the horse
     right after fork, and the parent checked, to close the race), so a SIGKILLed worker
     leaves no orphan horse that nobody watches. In-process there is nothing to orphan.

INVARIANT (no job runs twice at once). For every execution, its executing process has
exited (or, in fork mode, the horse's end been recorded) before any worker can see the
execution as abandoned:

    HARD_KILL_GRACE + KILL_SLACK  <  LEASE_GRACE - 1

where KILL_SLACK bounds the time between the kill deadline and the process being gone
(timer wake-up on a loaded host, SIGKILL delivery; in fork mode also RQ's failure
bookkeeping in the worker) and the difference between the worker's and the cleaner's
clocks. Then the execution ends by T0 + timeout + HARD_KILL_GRACE + KILL_SLACK, before the
lease expires, whether its worker is alive (watchdog), dead (PDEATHSIG; in-process the
job died with it) or blocked on Redis (the watchdogs are a thread and a kernel timer, the
lease does not depend on heartbeats). timings_hold() checks it; tests/jobs/worker/test_crash.py
asserts it for every timeout the service enqueues with, and kills stuck jobs in both
modes to see the executing process gone before its lease could be seen abandoned.

Assumptions: Linux (PDEATHSIG, timer_create); a worker's process not frozen (SIGSTOP)
while its job runs; hosts' clocks within KILL_SLACK of each other; a registry-cleaning
pass (milliseconds) shorter than CLEANING_LOCK_SECONDS; Redis does not lose acknowledged
writes. The last one fails on a Redis crash with `appendfsync everysec` (up to ~1 s of
writes): afterwards a job may run again (at least once, never lost: see journal.py).

4. Abandoned-job detection delay: a job whose executing process dies at time t is retried
   by the first maintenance pass after its lease ends, at most
   T0 + timeout + LEASE_GRACE + MAINTENANCE_INTERVAL; then RQ's retry interval and the
   scheduler's one-second poll (recovery_bound()). Maintenance runs every
   MAINTENANCE_INTERVAL seconds on every worker, idle ones included (a dequeue waits no
   longer than that), and RQ's 15-minute registry-cleaning lock is cut to
   CLEANING_LOCK_SECONDS so a worker killed while cleaning cannot stall cleaning for long.
   Concurrent cleaners are harmless here: every retry interval is positive, so a retry is
   a ZADD of the same member into the scheduled registry, never a second push on a queue.
   A fork-mode worker whose horse was killed fails or retries the job at once instead.

5. Saved once. A job killed after saving its record but before RQ marked it finished is
   retried; save_once() writes the record together with a guard naming the job
   generation (its created_at), so the re-run sees the guard (already_saved) and neither
   fetches nor saves again. A final crash (no retries left) saves a `failed` record with
   code `worker_crashed`, so a job never ends without a record: in fork mode the worker
   that saw its horse killed saves it (handle_work_horse_killed); when the worker itself
   died (any mode) the cleaner that finds the abandoned job does (record_abandoned, an
   exception handler StartedJobRegistry.cleanup calls).

In-process only. Memory: RLIMIT_AS (jobs/worker.py) bounds the worker itself; a
MemoryError fails its job cleanly, then the worker leaves after its bookkeeping (its heap
may be fragmented), and so it does between jobs once its RSS is above WORKER_MAX_RSS_MIB
or it has run WORKER_MAX_JOBS jobs (with up to 10 % jitter); CrashSafePool starts the
replacement at once. Signals: a stop signal during a job is only noted by the handler (no
Redis call inside the job's code); the worker leaves after the job (warm shutdown). A
second one (cold shutdown) raises ColdShutdown in the job, which skips RQ's failure
bookkeeping: the job is left to its lease, as a killed horse's would be. RQ's kill-horse
and stop-job commands are refused: a job running in the worker cannot be stopped alone.

Also: a worker dies with its pool (PDEATHSIG=SIGTERM: warm shutdown), the scheduler
process with its worker (SIGTERM: it releases its locks, so another worker's maintenance
takes over within a few seconds), heartbeat and maintenance failures while Redis is away
are logged instead of ending the worker, and reconnect back-off is capped at
MAX_RECONNECT_WAIT seconds. Per-job Redis round trips: heartbeats are pipelined and
throttled (HEARTBEAT_GAP), and an empty-queue poll starts at DEQUEUE_FIRST_POLL.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType
from multiprocessing import connection as mp_connection

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError, WatchError
from rq import Queue, Worker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import AbandonedJobError, DequeueTimeout, StopRequested
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.logutils import setup_loghandlers
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker import WorkerStatus
from rq.worker_pool import WorkerData, WorkerPool

from config import MIB, Settings
from jobs import frontier
from jobs.trust import JOB_FUNCTION, ServiceJob
from storage import PREFIX, Storage

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1

HARD_KILL_GRACE = 3  # s after a job's timeout before its executing process (horse, or worker) is SIGKILLed
LEASE_GRACE = 15  # s after a job's timeout before its execution counts as abandoned
KILL_SLACK = 10  # s allowed for a kill to land and be recorded, and for clock differences
MAINTENANCE_INTERVAL = 5  # s between maintenance passes (registry cleaning, claim sweep)
JOB_HEARTBEAT_INTERVAL = 10  # s between a busy worker's heartbeats
WORKER_TTL = 60  # s an idle worker's key outlives its last heartbeat (+60 s, RQ's margin)
CLAIM_SECONDS = 30  # s before a popped but unstarted job goes back to its queue
DEQUEUE_POLL_SECONDS = 0.2  # the claiming pop polls (a Lua script cannot block), at most this far apart...
DEQUEUE_FIRST_POLL = 0.01  # ...starting this soon after finding the queues empty, doubling each time
HEARTBEAT_GAP = 1.0  # s: a worker's heartbeat is skipped when the last one is more recent
MAX_RECONNECT_WAIT = 2  # s, cap of the worker's back-off while Redis is away
CLEANING_LOCK_SECONDS = 30  # RQ holds its registry-cleaning lock 899 s
SCHEDULER_POLL_SECONDS = 1  # RQScheduler's interval
SCHEDULER_NAP = 0.05  # s: the scheduler's sleep looks for a stop request this often
SAVE_GUARD_SECONDS = 86400  # as long as a job (and any re-run of it) is kept: RESULT_TTL
DEFAULT_JOB_TIMEOUT = Queue.DEFAULT_TIMEOUT  # what RQ applies to a job enqueued without one
WATCHDOG_POLL = 0.25  # s between the in-process watchdog thread's looks at the clock
WATCHDOG_LEAD = 0.5  # s before the kernel timer's deadline that the watchdog thread kills (saying why)
RESPAWN_PACE = 1.0  # s, least time between two rounds of worker starts by the pool (RQ's own pace)

CLAIMS = f"{PREFIX}:claims"  # zset: job id -> time its claim may be taken back
CLAIM = f"{PREFIX}:claim:"  # + job id: the queue key the job was popped from
SAVED_BY = f"{PREFIX}:saved-by:"  # + job id: the generation (created_at) that saved its record

# KEYS[1] = CLAIMS, KEYS[2:] = queue keys in priority order; ARGV[1] = claim deadline,
# ARGV[2] = CLAIM prefix. Pops the first job found and claims it, in one atomic step.
CLAIMING_POP = """
for i = 2, #KEYS do
  local job_id = redis.call('LPOP', KEYS[i])
  if job_id then
    redis.call('SET', ARGV[2] .. job_id, KEYS[i])
    redis.call('ZADD', KEYS[1], ARGV[1], job_id)
    return {KEYS[i], job_id}
  end
end
return false
"""
@dataclass(frozen=True)
class Timings:
    """The worker's clocks; see the module docstring for how they relate."""

    hard_kill_grace: float = HARD_KILL_GRACE
    lease_grace: int = LEASE_GRACE
    kill_slack: float = KILL_SLACK
    maintenance_interval: int = MAINTENANCE_INTERVAL
    heartbeat_interval: int = JOB_HEARTBEAT_INTERVAL
    worker_ttl: int = WORKER_TTL
    claim_seconds: int = CLAIM_SECONDS

    def lease_seconds(self, timeout: float, working: float = 0.0) -> int:
        """TTL of a started execution `working` seconds in: the rest of its timeout, plus grace."""
        return max(0, math.ceil(timeout - working)) + self.lease_grace

    def earliest_abandonment(self, timeout: float) -> float:
        """Seconds after T0 before the execution can be seen as abandoned (-1: RQ truncates)."""
        return timeout + self.lease_grace - 1

    def hard_kill_after(self, timeout: float) -> float:
        """Seconds after T0 when a job still running is SIGKILLed: its horse, or in-process its worker."""
        return timeout + self.hard_kill_grace

    def longest_horse_life(self, timeout: float) -> float:
        """Seconds after T0 by which the executing process (horse, or in-process worker) is
        gone, and a horse's end recorded, at the latest."""
        return self.hard_kill_after(timeout) + self.kill_slack

    def holds_for(self, timeout: float) -> bool:
        """The invariant: the executing process is gone before its execution can be seen as abandoned."""
        return self.longest_horse_life(timeout) < self.earliest_abandonment(timeout)

    def recovery_bound(self, timeout: float, retry_interval: float) -> float:
        """Seconds after T0 by which a job whose worker died is queued again, at the latest."""
        return (timeout + self.lease_grace + self.maintenance_interval + retry_interval
                + SCHEDULER_POLL_SECONDS)


TIMINGS = Timings()


def timings_hold(settings: Settings, timings: Timings = TIMINGS) -> bool:
    """The invariant for every timeout the service enqueues jobs with."""
    from jobs.ticker import TICK_TIMEOUT

    timeouts = (settings.job_timeout, TICK_TIMEOUT, DEFAULT_JOB_TIMEOUT)  # pages, ticks, callbacks
    return all(timings.holds_for(timeout) for timeout in timeouts)


def job_timeout(job: Job) -> float:
    """The timeout RQ's death penalty applies to this job (-1: none)."""
    return job.timeout or DEFAULT_JOB_TIMEOUT


# ---- processes die with their parent ---------------------------------------------------------

try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover (not Linux)
    _libc = None


def die_with_parent(sig: int, parent_pid: int) -> bool:
    """Have the kernel send sig to this process when its parent dies (Linux).

    False when the parent is already gone (it died before the request took effect).
    """
    if _libc is not None:
        try:
            _libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        except AttributeError:  # pragma: no cover (no prctl)
            pass
    return os.getppid() == parent_pid


# ---- a kernel timer that kills this process -----------------------------------------------------

CLOCK_MONOTONIC = 1  # the clock of time.monotonic() on Linux
SIGEV_SIGNAL = 0
TIMER_ABSTIME = 1


class _SigEvent(ctypes.Structure):  # struct sigevent (Linux): value, signo, notify, a 48-byte union
    _fields_ = [("value", ctypes.c_void_p), ("signo", ctypes.c_int), ("notify", ctypes.c_int),
                ("union", ctypes.c_int * 12)]


class _TimeSpec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("interval", _TimeSpec), ("value", _TimeSpec)]


def _timer_library() -> ctypes.CDLL | None:
    """The C library with timer_create: libc (glibc >= 2.34), else librt; None off Linux."""
    if _libc is not None and hasattr(_libc, "timer_create"):
        return _libc
    name = ctypes.util.find_library("rt")
    try:
        librt = ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:  # pragma: no cover
        return None
    return librt if librt is not None and hasattr(librt, "timer_create") else None


class KillTimer:
    """A POSIX timer (timer_create on CLOCK_MONOTONIC) with which the kernel SIGKILLs this
    process at a deadline. No thread of ours runs it, so a job stuck in C code that holds
    the GIL, which starves every Python thread (the watchdog's too), cannot hold it off.
    Timers are not inherited across fork: each process makes its own."""

    def __init__(self, library: ctypes.CDLL, timer_id: ctypes.c_void_p):
        self._settime = library.timer_settime
        self._id = timer_id

    @classmethod
    def create(cls) -> KillTimer | None:
        library = _timer_library()
        timer_id = ctypes.c_void_p()
        event = _SigEvent(signo=signal.SIGKILL, notify=SIGEV_SIGNAL)
        if library is None or library.timer_create(CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer_id)):
            log.warning("no kernel kill timer here: only the watchdog thread guards in-process jobs")
            return None
        return cls(library, timer_id)

    def arm(self, deadline: float) -> None:
        """SIGKILL this process at `deadline`, a time.monotonic() value."""
        whole = int(deadline)
        self._set(_TimeSpec(whole, max(1, int((deadline - whole) * 1e9))), TIMER_ABSTIME)

    def disarm(self) -> None:
        self._set(_TimeSpec(0, 0), 0)

    def _set(self, value: _TimeSpec, flags: int) -> None:
        spec = _ITimerSpec(_TimeSpec(0, 0), value)
        if self._settime(self._id, flags, ctypes.byref(spec), None):
            log.error("timer_settime failed (errno %s): only the watchdog thread guards this job", ctypes.get_errno())


class Watchdog:
    """An in-process worker's guard: SIGKILLs this very process once the job it runs is
    overdue. A daemon thread looks at the clock every WATCHDOG_POLL s and, from
    WATCHDOG_LEAD s before the deadline, logs which job outlived its time and kills; the
    KillTimer fires at the deadline whatever the thread could do. Arming and disarming cost
    an assignment and a syscall: nothing is started or woken per job."""

    def __init__(self, worker_name: str, timer: KillTimer | None):
        self.worker_name = worker_name
        self.timer = timer
        self._armed: tuple[float, str] | None = None  # (deadline, job id)
        threading.Thread(target=self._watch, name="watchdog", daemon=True).start()

    def arm(self, deadline: float, job_id: str) -> None:
        if self.timer is not None:
            self.timer.arm(deadline)
        self._armed = (deadline, job_id)

    def disarm(self) -> None:
        self._armed = None
        if self.timer is not None:
            self.timer.disarm()

    def _watch(self) -> None:
        while True:
            time.sleep(WATCHDOG_POLL)
            armed = self._armed
            if armed is not None and time.monotonic() >= armed[0] - WATCHDOG_LEAD:
                log.error("Worker %s: job %s outlived its timeout: killing this worker (SIGKILL); the job's lease"
                          " brings it back", self.worker_name, armed[1], extra={"job_id": armed[1]})
                os.kill(os.getpid(), signal.SIGKILL)


def resident_bytes() -> int:
    """This process's resident set size, from /proc/self/statm (0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


# ---- claims: a popped job is never in no list and no registry --------------------------------


def claim_key(job_id: str) -> str:
    return CLAIM + job_id


class ClaimLost(Exception):
    """The claim was taken back (the job is on its queue again): do not run it."""


class ClaimingQueue(Queue):
    """A queue whose dequeue claims the job atomically (see the module docstring).

    JSON unless told otherwise, as every queue of the service: RQ's pool builds each worker's
    queues without a serializer, and their registries' cleaning (the abandoned-job path,
    record_abandoned) must read the job's function and arguments. Its jobs are ServiceJobs."""

    job_class = ServiceJob
    claim_seconds = CLAIM_SECONDS
    poll_seconds = DEQUEUE_POLL_SECONDS
    dispatch_policy: frontier.DispatchPolicy | None = None  # None: no frontier, every queue popped plainly
    inbox_keys: frozenset[str] = frozenset()  # the queues whose jobs wait per host in the frontier

    def __init__(self, name: str = "default", connection: Redis | None = None, *args, serializer=None, **kwargs):
        super().__init__(name, connection, *args, serializer=serializer or JSONSerializer, **kwargs)

    @classmethod
    def lpop(cls, queue_keys: list[str], timeout: int | None, connection: Redis):
        """Never sleeps while a queue has a job; when all are empty, polls soon (a job enqueued
        just after is picked up within ~10 ms under steady load), then every poll_seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = DEQUEUE_FIRST_POLL
        while True:
            queue_key, found = cls._pop_once(queue_keys, connection)
            if queue_key is not None:
                return queue_key, found
            if deadline is None and found < 0:
                return None  # burst mode: nothing waits, not even for a host's turn
            if deadline is not None and time.monotonic() >= deadline:
                raise DequeueTimeout(timeout, queue_keys)
            # Wake for the next host's turn on time; a job enqueued meanwhile waits one poll.
            until_turn = found if found >= 0 else math.inf
            time.sleep(max(0.001, min(pause, cls.poll_seconds, until_turn)))
            pause *= 2

    @classmethod
    def _pop_once(cls, queue_keys: list[str], connection: Redis) -> tuple[str | None, str | float]:
        """(queue key, job id) of a claimed job, else (None, seconds until a host's turn, -1: none)."""
        claim_deadline = time.time() + cls.claim_seconds
        if cls.dispatch_policy is None:
            script = connection.register_script(CLAIMING_POP)
            result = script(keys=[CLAIMS, *queue_keys], args=[claim_deadline, CLAIM], client=connection)
            return (result[0], result[1]) if result else (None, -1.0)
        plain = [key for key in queue_keys if key not in cls.inbox_keys]
        inboxes = [key for key in queue_keys if key in cls.inbox_keys]
        return frontier.dispatch(connection, cls.dispatch_policy, CLAIMS, CLAIM, claim_deadline, plain, inboxes)

    @classmethod
    def lmove(cls, connection: Redis, queue_key: str, timeout: int | None):
        return cls.lpop([queue_key], timeout, connection)

    def acquire_maintenance_lock(self) -> bool:
        return bool(self.connection.set(self.registry_cleaning_key, 1, nx=True, ex=CLEANING_LOCK_SECONDS))


def sweep_claims(connection: Redis, at: float | None = None) -> int:
    """Put back at the head of their queue the jobs claimed but not started in time."""
    take_back = connection.register_script(frontier.TAKE_BACK)
    requeued = 0
    for raw_id in connection.zrangebyscore(CLAIMS, 0, time.time() if at is None else at):
        job_id = raw_id.decode()
        if take_back(keys=[CLAIMS, claim_key(job_id), Job.key_for(job_id)], args=[job_id], client=connection):
            requeued += 1
            log.warning("job %s was claimed but not started within %s s: back on its queue", job_id, CLAIM_SECONDS)
    return requeued


# ---- saved once ----------------------------------------------------------------------------


def _generation(job: Job) -> bytes:
    return job.created_at.isoformat().encode() if job.created_at else b"?"


def already_saved(job: Job) -> bool:
    """Has this job (this enqueue of it) saved its record already, in a run that then died?"""
    return job.connection.get(SAVED_BY + job.id) == _generation(job)


def save_once(job: Job, storage: Storage, record: dict, ttl: int) -> bool:
    """Save the job's record with a guard naming the job's generation, atomically; False
    (and nothing written) when this generation saved one already."""
    key = SAVED_BY + job.id
    with storage.redis.pipeline() as pipe:
        try:
            pipe.watch(key)
            if pipe.get(key) == _generation(job):
                pipe.unwatch()
                return False
            pipe.multi()
            Storage(pipe).save_record(record, ttl)
            pipe.set(key, _generation(job), ex=SAVE_GUARD_SECONDS)
            pipe.execute()
        except WatchError:
            return False  # another run of this generation saved it this instant
    return True


def rerun_after_save(job: Job, canonical_url: str) -> dict | None:
    """For the job function: the result to return at once when a previous run of this job
    saved the record and died before RQ heard of it; None to do the work."""
    if not already_saved(job):
        return None
    from jobs import callbacks

    log.warning("%s: record already saved by an earlier run of job %s; not fetching again", canonical_url, job.id)
    callbacks.url_finished(job.connection, canonical_url)
    return {"url": canonical_url, "status": "done"}


def record_crash(job: Job, reason: str) -> None:
    """A page job ends without its horse saving anything: save a `failed` record (once)."""
    try:
        if job.func_name != JOB_FUNCTION:
            return
        canonical_url, source_name = job.args[0], job.args[1]
    except Exception as exc:  # an undecodable job: nothing to record
        log.warning("job %s: no failed record, its function and arguments cannot be read (%r)", job.id, exc)
        return
    import parsers
    from jobs import callbacks
    from jobs.tasks import process_context
    from sources import SOURCES
    from storage import make_record

    source = SOURCES[source_name]
    ttl = source.ttl + process_context().settings.record_retention
    error = {"code": "worker_crashed", "message": reason}
    record = make_record(canonical_url, source.kind, "failed", parsers.PARSER_VERSION, error=error)
    if save_once(job, Storage(job.connection), record, ttl):
        log.warning("%s: final crash of job %s recorded as failed: %s", canonical_url, job.id, reason)
        callbacks.url_finished(job.connection, canonical_url)


def record_abandoned(job: Job, exc_type, exc_value, traceback) -> bool:
    """RQ exception handler. StartedJobRegistry.cleanup calls it for an abandoned job just
    before it retries the job, or fails it when no retries are left: then record the failure."""
    if exc_type is AbandonedJobError and not job.should_retry:
        try:
            record_crash(job, "the worker running this page died and no retries are left")
        except Exception:
            log.exception("could not record the failure of abandoned job %s", job.id)
    return True  # let the other handlers run


# ---- the worker ----------------------------------------------------------------------------


class CrashSafeScheduler(RQScheduler):
    """RQ's scheduler process, stopped (locks released) when its worker dies, and at once
    when asked: RQ's loop sleeps its whole interval first, and a leaving worker waits for
    its scheduler (an in-process worker leaves routinely, when worn)."""

    parent_pid: int | None = None

    def work(self):
        """RQ's loop (reacquire locks, heartbeat, enqueue due jobs, sleep), its sleep cut short by a stop."""
        if self.parent_pid is not None and not die_with_parent(signal.SIGTERM, self.parent_pid):
            return  # its worker is gone already
        self._install_signal_handlers()
        self.register_birth()
        while not self._stop_requested:
            if self.should_reacquire_locks:
                self.acquire_locks()
            self.heartbeat()
            self.enqueue_scheduled_jobs()
            self._nap(self.interval)
        self.stop()

    def _nap(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while not self._stop_requested and (left := until - time.monotonic()) > 0:
            time.sleep(min(left, SCHEDULER_NAP))


class CrashSafeWorker(Worker):
    """An RQ Worker with the lease, watchdog, claims and death rules of this module, that runs
    only the service's own job functions (its job class is a ServiceJob: jobs/trust.py)."""

    timings: Timings = TIMINGS
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
        if record_abandoned not in self._exc_handlers:
            self.push_exc_handler(record_abandoned)

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
        key = claim_key(job.id)
        with self.connection.pipeline() as pipe:
            try:
                pipe.watch(key)
                if not pipe.exists(key):
                    raise ClaimLost(job.id)
                pipe.multi()
                pipe.delete(key)
                pipe.zrem(CLAIMS, job.id)
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
            record_crash(job, f"the work-horse died ({describe_exit(ret_val)}) and no retries are left")

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


class ColdShutdown(SystemExit):
    """A second stop signal while a job runs in the worker itself: leave now, the job to its lease."""


class InProcessWorker(CrashSafeWorker):
    """Runs each job in the worker process itself, as rq.SimpleWorker does, with the
    guarantees of a work-horse kept (module docstring, 3 and "In-process only"): the lease,
    a watchdog that kills this process when the job is overdue, and a fresh process once
    this one is worn (jobs run, memory, a MemoryError)."""

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


def describe_exit(ret_val: int | None) -> str:
    if ret_val is not None and os.WIFSIGNALED(ret_val):
        return f"signal {os.WTERMSIG(ret_val)}"
    return f"status {ret_val}"


def crash_safe(worker_class: type[Worker], execution: str = "fork", **attributes) -> type[CrashSafeWorker]:
    """worker_class (an rq.Worker subclass, its mixins kept on top) with CrashSafeWorker
    (execution "fork") or InProcessWorker ("inprocess") under it, and these class attributes."""
    base = {"fork": CrashSafeWorker, "inprocess": InProcessWorker}[execution]
    if issubclass(worker_class, base) and not attributes:
        return worker_class
    bases = (base,) if issubclass(base, worker_class) else (worker_class, base)  # rq.Worker itself: no mixin
    return type(f"CrashSafe{worker_class.__name__}", bases, attributes)


def preload_job_code() -> None:
    """What a job imports or initialises lazily is paid again by every process that runs
    one (~0.5 s of CPU here: the job modules, and the CSS selector engine's own set-up):
    each work-horse in fork mode, each fresh worker in-process (they are replaced when
    worn). Done once in the pool, every worker and horse inherits it. This also keeps the
    kill-and-retry cycles of crash recovery cheap."""
    import jobs.tasks  # noqa: F401  (the job function and everything it imports)

    try:
        import parsers

        parsers.warm_up()  # every parser's CSS selectors, and soupsieve's tokenizer with them
    except Exception:  # only an optimisation
        log.debug("could not warm the parsers up", exc_info=True)


def pool_worker_class(settings: Settings, worker_class: type[Worker] = Worker) -> type[CrashSafeWorker]:
    """The crash-safe worker class of settings.worker_execution, with its limits."""
    if settings.worker_execution == "fork":
        return crash_safe(worker_class, "fork")
    return crash_safe(worker_class, "inprocess", max_jobs=settings.worker_max_jobs,
                      max_rss_bytes=settings.worker_max_rss_mib * MIB)


def worker_pool(settings: Settings, queue_names: list[str], worker_class: type[Worker] = Worker,
                dispatch: tuple[frontier.DispatchPolicy, list[str]] | None = None) -> WorkerPool:
    """The service's pool: settings.workers crash-safe workers on ClaimingQueues; with
    dispatch (a policy and the page queues), those queues' jobs wait per host in the frontier."""
    preload_job_code()
    if dispatch is not None:
        ClaimingQueue.dispatch_policy = dispatch[0]
        ClaimingQueue.inbox_keys = frozenset(Queue.redis_queue_namespace_prefix + name for name in dispatch[1])
    CrashSafeWorker.pool_pid = os.getpid()  # the workers are forked from this process
    connection = Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    return CrashSafePool(queue_names, connection=connection, num_workers=settings.workers, serializer=JSONSerializer,
                         worker_class=pool_worker_class(settings, worker_class), queue_class=ClaimingQueue,
                         job_class=ServiceJob)
