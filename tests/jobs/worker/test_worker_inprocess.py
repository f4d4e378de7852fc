"""In-process execution (WORKER_EXECUTION=inprocess, jobs/worker/inprocess.py InProcessWorker): the
guarantees of a work-horse, kept without forking one per job.

Each worker here runs in a forked child process (a real RQ work loop in burst mode, on the
real Redis): its watchdog may SIGKILL it, and its signal handlers, timers and rlimits must
not touch pytest's process. The end-to-end runs through `python -m jobs.worker` are in
tests/jobs/worker/test_crash.py (kills, timeouts, soak) and tests/jobs/worker/test_worker_pool.py (hostile pages,
recycling).
"""
from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
from redis import Redis
from rq import Worker
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

import jobs.context
from config import MIB, load_settings
from errors import ConfigError
from jobs import joblogs
from jobs.queues import JOB_FUNCTION, QUEUE_NAMES, job_id_for, make_queue
from jobs.trust import JOB_FUNCTIONS, ServiceJob
from jobs.worker.__main__ import CRASH_HANDLERS
from jobs.worker.base import CrashSafeWorker
from jobs.worker.claims import ClaimingQueue
from jobs.worker.inprocess import InProcessWorker
from jobs.worker.killtimer import KillTimer
from jobs.worker.pool import crash_safe, pool_worker_class
from jobs.worker.timings import TIMINGS, job_timeout
from jobs.worker.watchdog import WATCHDOG_LEAD, WATCHDOG_POLL
from storage import Storage
from tests.support.worker_faults import stick_fetches

FORK = multiprocessing.get_context("fork")
STUCK_URL = "https://www.goodreads.com/book/show/777001"


# ---- jobs the child workers run (RQ imports them by name: they are already imported there) ----


def sleep_job(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def allocate_job(mib: int) -> int:
    return len(bytearray(mib * MIB))


def quick_job() -> int:
    return os.getpid()


class ThisModulesJobs(ServiceJob):
    """The workers here also run this module's jobs (a service worker runs the service's only)."""

    allowed_functions = JOB_FUNCTIONS | {f"{__name__}.{job.__name__}" for job in (sleep_job, allocate_job, quick_job)}


# ---- a worker in a child process ----------------------------------------------------------------


def work_in_child(redis_url: str, setup: Callable[[], None] = lambda: None, **attributes) -> None:
    """The child: an InProcessWorker (with JobLogWorker's mixin) in burst mode, its queues made
    as rq.worker_pool.run_worker makes them (no serializer given)."""
    setup()
    connection = Redis.from_url(redis_url)
    queues = [ClaimingQueue(name, connection=connection) for name in QUEUE_NAMES]
    worker_class = crash_safe(joblogs.JobLogWorker, "inprocess", **attributes)
    worker_class(queues, connection=connection, serializer=JSONSerializer, queue_class=ClaimingQueue,
                 job_class=ThisModulesJobs).work(burst=True, logging_level="WARNING")


def start_worker(redis_url: str, setup: Callable[[], None] = lambda: None, **attributes):
    child = FORK.Process(target=work_in_child, args=(redis_url, setup), kwargs=attributes, daemon=True)
    child.start()
    return child


def enqueue(redis_client: Redis, function: str, *args, timeout: int = 30, job_id: str | None = None) -> Job:
    return make_queue("goodreads", redis_client).enqueue(function, *args, job_timeout=timeout, job_id=job_id,
                                                        result_ttl=600)


def status(redis_client: Redis, job: Job) -> str:
    return Job.fetch(job.id, connection=redis_client).get_status(refresh=True)


def wait_for_status(redis_client: Redis, job: Job, wanted: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while status(redis_client, job) != wanted:
        assert time.monotonic() < deadline, f"job {job.id} is {status(redis_client, job)}, not {wanted}"
        time.sleep(0.02)


@pytest.fixture
def job_env(redis_url, tmp_path, monkeypatch) -> dict[str, str]:
    """Settings for fetch_and_parse and its crash handler (record_crash), in this process and (inherited) the child."""
    env = {"REDIS_URL": redis_url, "FETCH_RETRIES": "0", "ROBOTS_TXT": "false", "DATA_DIR": str(tmp_path)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(jobs.context, "_context", None)
    return env


# ---- the watchdog kills the worker itself, before the lease can be seen abandoned --------------


def cleaners_registry(redis_client: Redis) -> StartedJobRegistry:
    """The started registry as a worker's maintenance (rq.registry.clean_registries) sees it:
    made from one of the worker's queues."""
    queue = ClaimingQueue("goodreads", connection=redis_client)
    return StartedJobRegistry(queue.name, connection=redis_client, job_class=queue.job_class,
                              serializer=queue.serializer)


def stick_in_python() -> None:
    """A fetch stuck where SIGALRM cannot reach (blocked) but Python threads still run."""
    def stuck(self, url: str):  # noqa: ANN001, ANN202
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(3600)

    import jobs.fetch

    jobs.fetch.Fetcher.fetch = stuck
    KillTimer.create = classmethod(lambda cls: None)  # the thread alone


def stick_in_c() -> None:
    stick_fetches(STUCK_URL)  # SIGALRM blocked and the GIL held: the watchdog thread starves


@pytest.mark.parametrize("stuck, killer", [(stick_in_python, "watchdog thread"), (stick_in_c, "kernel timer")])
def test_a_stuck_job_kills_its_worker_before_its_lease_ends_and_is_recorded(
        redis_url, redis_client, job_env, stuck, killer):
    """The executing process is the worker: at T0 + timeout + HARD_KILL_GRACE it SIGKILLs
    itself (the thread WATCHDOG_LEAD s early, the kernel timer at the deadline, even when
    the job holds the GIL). Its lease still runs: another worker's maintenance then finds
    the job abandoned, and with no retries left saves the `worker_crashed` record."""
    timeout = 1
    job = enqueue(redis_client, JOB_FUNCTION, STUCK_URL, "goodreads", timeout=timeout, job_id=job_id_for(STUCK_URL))
    child = start_worker(redis_url, stuck)
    wait_for_status(redis_client, job, JobStatus.STARTED)
    registry = cleaners_registry(redis_client)
    [(member, score)] = redis_client.zrange(registry.key, 0, -1, withscores=True)
    execution_key = f"rq:execution:{member.decode()}"
    started = float(redis_client.hget(execution_key, "created_at"))  # a little after T0
    child.join(timeout + TIMINGS.hard_kill_grace + 5)
    died = time.time()
    print(f"\n[inprocess] {killer}: worker killed {died - started:.2f} s after the job started"
          f" (timeout {timeout} s), lease ends {score - started:.1f} s after")
    assert child.exitcode == -signal.SIGKILL
    lead = WATCHDOG_LEAD + WATCHDOG_POLL if killer == "watchdog thread" else 0
    assert timeout < died - started <= TIMINGS.hard_kill_after(timeout) - lead + 0.6
    # INVARIANT: gone before the lease could be seen abandoned (and the lease is untouched).
    assert died < score - 1 and score - started >= TIMINGS.earliest_abandonment(timeout) - 1
    assert registry.get_expired_job_ids(time.time()) == []
    registry.cleanup(time.time(), exception_handlers=[CRASH_HANDLERS.on_abandoned])  # a maintenance pass now: nothing
    assert status(redis_client, job) == JobStatus.STARTED
    registry.cleanup(score + 1, exception_handlers=[CRASH_HANDLERS.on_abandoned])  # the first one after the lease
    assert status(redis_client, job) == JobStatus.FAILED
    record = Storage(redis_client).load_record(STUCK_URL)
    assert record["status"] == "failed" and record["error"]["code"] == "worker_crashed"


def test_the_kill_timer_fires_at_its_deadline_and_not_once_disarmed():
    def arm_then(disarm: bool, deadlines: Connection) -> None:
        timer = KillTimer.create()
        deadline = time.monotonic() + 0.3
        deadlines.send(deadline)  # CLOCK_MONOTONIC is the system's: the parent reads the same clock
        timer.arm(deadline)
        if disarm:
            timer.disarm()
        time.sleep(1)

    for disarm, code in ((True, 0), (False, -signal.SIGKILL)):
        receiver, sender = FORK.Pipe(duplex=False)
        child = FORK.Process(target=arm_then, args=(disarm, sender))
        child.start()
        deadline = receiver.recv()
        child.join(5)
        assert child.exitcode == code
        if not disarm:  # at its deadline: never before; seen dead 2-55 ms after it here, at a load of 7-8
            assert 0 <= time.monotonic() - deadline < 0.25


# ---- clean failures: timeout, MemoryError; leaving when worn ------------------------------------


def test_a_timeout_fails_the_job_cleanly_and_the_worker_goes_on(redis_url, redis_client):
    slow = enqueue(redis_client, f"{__name__}.sleep_job", 5, timeout=1)
    after = enqueue(redis_client, f"{__name__}.quick_job")
    child = start_worker(redis_url)
    child.join(10)
    assert child.exitcode == 0  # burst mode: out of jobs, not killed
    assert status(redis_client, slow) == JobStatus.FAILED
    assert "JobTimeoutException" in Job.fetch(slow.id, connection=redis_client).latest_result().exc_string
    assert status(redis_client, after) == JobStatus.FINISHED


def limit_address_space() -> None:
    vm_kib = int(next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                      if line.startswith("VmSize:")))
    limit = vm_kib * 1024 + 256 * MIB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_a_memory_error_fails_its_job_and_the_worker_leaves_after_it(redis_url, redis_client):
    """RLIMIT_AS bounds the worker itself: the job fails cleanly, then the worker (its heap
    perhaps fragmented) takes no other job; the pool would start a fresh one."""
    greedy = enqueue(redis_client, f"{__name__}.allocate_job", 1024)
    waiting = enqueue(redis_client, f"{__name__}.quick_job")
    child = start_worker(redis_url, limit_address_space)
    child.join(20)
    assert child.exitcode == 0
    assert status(redis_client, greedy) == JobStatus.FAILED
    assert "MemoryError" in Job.fetch(greedy.id, connection=redis_client).latest_result().exc_string
    assert status(redis_client, waiting) == JobStatus.QUEUED
    assert redis_client.scard("rq:workers") == 0  # left through its teardown (death registered)


@pytest.mark.parametrize("limits, runs", [({"max_jobs": 3}, 3), ({"max_rss_bytes": 1}, 1),
                                          ({"max_jobs": 0, "max_rss_bytes": 0}, 5)])
def test_the_worker_leaves_between_jobs_once_worn(redis_url, redis_client, limits, runs):
    queued = [enqueue(redis_client, f"{__name__}.quick_job") for _ in range(5)]
    child = start_worker(redis_url, **limits)
    child.join(20)
    assert child.exitcode == 0
    expected = [JobStatus.FINISHED] * runs + [JobStatus.QUEUED] * (5 - runs)
    assert [status(redis_client, job) for job in queued] == expected


def test_max_jobs_is_jittered_up_to_ten_percent(redis_client):
    worker_class = crash_safe(joblogs.JobLogWorker, "inprocess", max_jobs=1000)
    limits = {worker_class(["goodreads"], connection=redis_client).job_limit for _ in range(30)}
    assert min(limits) >= 1000 and max(limits) <= 1100 and len(limits) > 1


# ---- stop signals while a job runs in the worker itself ---------------------------------------------


def test_sigterm_lets_the_job_finish_then_the_worker_leaves(redis_url, redis_client):
    job = enqueue(redis_client, f"{__name__}.sleep_job", 1.5)
    waiting = enqueue(redis_client, f"{__name__}.quick_job")
    child = start_worker(redis_url)
    wait_for_status(redis_client, job, JobStatus.STARTED)
    time.sleep(0.3)
    os.kill(child.pid, signal.SIGTERM)
    child.join(10)
    assert child.exitcode == 0
    assert status(redis_client, job) == JobStatus.FINISHED
    assert status(redis_client, waiting) == JobStatus.QUEUED


def test_a_second_signal_leaves_at_once_and_the_job_to_its_lease(redis_url, redis_client):
    """Cold shutdown: like a forking worker killing its horse, no failure is recorded (the
    job would otherwise be failed without a record); the lease brings it back."""
    job = enqueue(redis_client, f"{__name__}.sleep_job", 30)
    child = start_worker(redis_url)
    wait_for_status(redis_client, job, JobStatus.STARTED)
    os.kill(child.pid, signal.SIGTERM)
    time.sleep(1.2)  # RQ ignores a second signal within a second (the pool's and the supervisor's)
    signalled = time.monotonic()
    os.kill(child.pid, signal.SIGINT)
    child.join(10)
    assert time.monotonic() - signalled < 3 and child.exitcode == 0
    assert status(redis_client, job) == JobStatus.STARTED
    registry = StartedJobRegistry("goodreads", connection=redis_client, serializer=JSONSerializer)
    assert job.id in registry.get_job_ids(cleanup=False)
    assert redis_client.scard("rq:workers") == 0


def test_kill_horse_never_signals_the_process_group(redis_client, monkeypatch):
    """RQ's Worker.kill_horse with no horse would kill getpgid(0): the whole pool."""
    def forbidden(*args):  # noqa: ANN002, ANN202
        raise AssertionError("killpg called")

    monkeypatch.setattr(os, "killpg", forbidden)
    worker = crash_safe(joblogs.JobLogWorker, "inprocess")(["goodreads"], connection=redis_client)
    worker._stopped_job_id = "x"
    worker.kill_horse()
    assert worker._stopped_job_id is None


# ---- settings and classes ----------------------------------------------------------------------------


def test_execution_settings():
    defaults = load_settings({})
    assert (defaults.worker_execution, defaults.worker_max_jobs, defaults.worker_max_rss_mib) == \
        ("inprocess", 1000, 150)
    fork = load_settings({"WORKER_EXECUTION": "fork", "WORKER_MAX_JOBS": "0", "WORKER_MAX_RSS_MIB": "0"})
    assert (fork.worker_execution, fork.worker_max_jobs, fork.worker_max_rss_mib) == ("fork", 0, 0)
    assert load_settings({"WORKER_EXECUTION": " InProcess "}).worker_execution == "inprocess"
    for env in ({"WORKER_EXECUTION": "thread"}, {"WORKER_MAX_JOBS": "-1"}, {"WORKER_MAX_RSS_MIB": "lots"}):
        with pytest.raises(ConfigError) as info:
            load_settings(env)
        assert next(iter(env)) in str(info.value) and "\n" not in str(info.value)


def test_the_pool_runs_the_worker_class_of_the_setting():
    inprocess = pool_worker_class(load_settings({"WORKER_MAX_JOBS": "7", "WORKER_MAX_RSS_MIB": "99"}),
                                            joblogs.JobLogWorker)
    assert issubclass(inprocess, InProcessWorker) and issubclass(inprocess, joblogs.JobLogWorker)
    assert (inprocess.max_jobs, inprocess.max_rss_bytes) == (7, 99 * MIB)
    assert inprocess.execute_job.__qualname__ == "JobLogMixin.execute_job"  # the log fields are bound first
    fork = pool_worker_class(load_settings({"WORKER_EXECUTION": "fork"}), joblogs.JobLogWorker)
    assert issubclass(fork, CrashSafeWorker) and not issubclass(fork, InProcessWorker)
    assert crash_safe(Worker, "inprocess").__mro__[1] is InProcessWorker  # rq.Worker itself
    assert job_timeout(Job.create(quick_job, connection=Redis(), timeout=7)) == 7
