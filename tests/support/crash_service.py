"""The whole service as real processes, for fault-injection tests: its own redis-server (AOF,
everysec), a fixture "Goodreads" over HTTPS, gunicorn and `python -m jobs.worker`.

Every /book/show/<n> path serves the saved fixture page after `delay_for(path)` seconds, so
a job can be caught mid-fetch. Saves of records are counted from Redis keyspace
notifications (`set` on metaparse:record:*), which Redis emits for each SET it executes:
an independent count of how many times a record was written, whatever the code does.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests
from redis import Redis
from redis.exceptions import RedisError

from launch import free_port
from storage import PREFIX, record_key, safe_loads
from tests.support import processes
from tests.support.fixture_server import FixtureServer, Reply, send_reply
from tests.support.redis_server import RedisServer

FIXTURE_BOOK = Path(__file__).resolve().parent.parent / "fixtures" / "e2e" / "goodreads-book.html"
BOOK_PATH = re.compile(r"^/book/show/\d+$")
BOOK_URL = "https://www.goodreads.com/book/show/{}"


def book_url(number: int) -> str:
    return BOOK_URL.format(number)


# ---- processes by /proc ----------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    state: str


def proc_of(pid: int) -> Proc:
    """The process's /proc/PID/stat: "pid (name) state ppid pgid ..." (the name may hold spaces
    and parentheses); OSError when it is gone."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return Proc(pid, int(fields[1]), int(fields[2]), fields[0])


def process_table() -> dict[int, Proc]:
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            table[int(entry.name)] = proc_of(int(entry.name))
        except OSError:
            continue
    return table


def children(pid: int, table: dict[int, Proc] | None = None) -> list[Proc]:
    table = process_table() if table is None else table
    return [proc for proc in table.values() if proc.ppid == pid and proc.state != "Z"]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def worker_tree(pool_pid: int) -> tuple[list[int], list[int]]:
    """(worker mains, work-horses) under a pool: a horse is a worker's child leading its own
    process group (RQ calls setpgrp in it); the scheduler is a child that does not."""
    table = process_table()
    mains = [proc.pid for proc in children(pool_pid, table)]
    horses = [proc.pid for main in mains for proc in children(main, table) if proc.pgid == proc.pid]
    return mains, horses


def horse_of(worker_pid: int) -> int | None:
    table = process_table()
    horses = [proc.pid for proc in children(worker_pid, table) if proc.pgid == proc.pid]
    return horses[0] if horses else None


def kill(pid: int, sig: int = signal.SIGKILL) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def worker_processes(marker: str) -> list[int]:
    """Live processes of this service's worker side (pool, workers, horses, schedulers)."""
    found = []
    for pid in processes.processes_with_marker(marker):
        try:
            if b"jobs.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


# ---- counting saves ----------------------------------------------------------------------------


class SaveCounter:
    """Counts SETs of record keys as Redis reports them (keyspace notifications)."""

    def __init__(self, redis_url: str):
        self.client = Redis.from_url(redis_url)
        self.client.config_set("notify-keyspace-events", "K$")
        self.counts: Counter[str] = Counter()
        self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.psubscribe(f"__keyspace@0__:{PREFIX}:record:*")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        prefix = len(f"__keyspace@0__:{PREFIX}:record:")
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.2)
            if message and message["data"] == b"set":
                self.counts[message["channel"].decode()[prefix:]] += 1

    def stop(self) -> Counter[str]:
        time.sleep(0.5)  # let the last notifications arrive
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()
        return self.counts


# ---- the service -------------------------------------------------------------------------------


@dataclass
class CrashService:
    """Start with start(); stop() stops everything and asserts nothing of the worker side is left."""

    tmp: Path
    workers: int = 2
    web_workers: int = 2
    env_overrides: dict[str, str] = field(default_factory=dict)
    delay_for: Callable[[str], float] = lambda path: 0.0
    redis_binary: str | None = None  # launch.find_redis_server()'s when None
    redis_env: dict[str, str] | None = None  # added to redis-server's environment
    redis_args: list[str] = field(default_factory=list)  # last on its command line: they override

    def start(self) -> "CrashService":
        self.marker = f"METAPARSE_CRASH_{uuid.uuid4().hex}"
        (self.tmp / "redis").mkdir(exist_ok=True)
        self.redis = RedisServer(appendonly=True, data_dir=self.tmp / "redis", binary=self.redis_binary,
                                 env=self.redis_env, extra_args=self.redis_args).start()
        self.site = FixtureServer(["www.goodreads.com"]).start()
        self.site.fallback = self._book
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = processes.service_env(**{
            "REDIS_URL": self.redis.url, "PORT": str(self.port), "WORKERS": str(self.workers),
            "WEB_WORKERS": str(self.web_workers), "DATA_DIR": str(self.tmp / "data"), "LOG_FORMAT": "text",
            "FETCH_CONNECT_TO": self.site.connect_to("www.goodreads.com"),
            "FETCH_CA_BUNDLE": str(self.site.write_ca_bundle(self.tmp / "ca.pem")),
            "ROBOTS_TXT": "false", "FETCH_HOST_DELAY": "0", "FETCH_HOST_CONCURRENCY": "64",
            self.marker: "1", **self.env_overrides,
        })
        self.web_log, self.pool_logs = self.tmp / "web.log", []
        self.web = processes.start(processes.WEB_COMMAND, self.env, self.web_log)
        self.pool = self.start_pool()
        processes.wait_for_http(f"{self.base}/healthz", self.web, self.web_log)
        self.wait_for_workers(self.workers)
        return self

    def start_pool(self) -> subprocess.Popen:
        log_path = self.tmp / f"worker-{len(self.pool_logs)}.log"
        self.pool_logs.append(log_path)
        self.pool = processes.start(processes.WORKER_COMMAND, self.env, log_path)
        return self.pool

    def _book(self, handler) -> None:
        path = handler.path.split("?")[0]
        if not BOOK_PATH.match(path):
            send_reply(handler, Reply(404, b"not found", {"Content-Type": "text/plain"}))
            return
        time.sleep(self.delay_for(path))
        try:
            send_reply(handler, Reply(body=FIXTURE_BOOK.read_bytes()))
        except OSError:
            pass  # the work-horse was killed while we slept

    def client(self) -> Redis:
        return Redis.from_url(self.redis.url, socket_timeout=5, socket_connect_timeout=2)

    def wait_for_workers(self, count: int, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if len(worker_tree(self.pool.pid)[0]) >= count:
                try:
                    if requests.get(f"{self.base}/healthz", timeout=5).json().get("workers", 0) >= count:
                        return
                except (requests.RequestException, ValueError):
                    pass
            assert self.pool.poll() is None, self.log_tail()
            time.sleep(0.2)
        raise AssertionError(f"{count} workers not registered in {seconds} s\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}"
                         for path in [self.web_log, *self.pool_logs] if path.exists())

    def submit(self, urls: list[str], timeout: float = 30) -> requests.Response:
        return requests.post(f"{self.base}/parse", json={"urls": urls}, timeout=timeout)

    def records(self, urls: list[str]) -> dict[str, dict | None]:
        """canonical URL -> its record (None when there is none), straight from Redis."""
        client = self.client()
        try:
            raws = client.mget([record_key(url) for url in urls]) if urls else []
        finally:
            client.close()
        return {url: (safe_loads(raw) if raw else None) for url, raw in zip(urls, raws)}

    def wait_for_records(self, urls: list[str], seconds: float, poll: float = 0.25) -> dict[str, dict | None]:
        deadline = time.monotonic() + seconds
        while True:
            try:
                found = self.records(urls)
            except RedisError:
                found = {}
            if found and all(found.values()):
                return found
            if time.monotonic() >= deadline:
                return found or {url: None for url in urls}
            time.sleep(poll)

    def job_worker_pid(self, job_id: str, seconds: float = 15) -> int:
        """The pid of the RQ worker running job_id."""
        from rq import Worker

        deadline = time.monotonic() + seconds
        client = self.client()
        try:
            while time.monotonic() < deadline:
                for worker in Worker.all(connection=client):
                    if worker.get_current_job_id() == job_id and worker.pid:
                        return worker.pid
                time.sleep(0.1)
        finally:
            client.close()
        raise AssertionError(f"no worker is running job {job_id}")

    def wait_for_hit(self, path: str, hits: int = 1, seconds: float = 30) -> float:
        deadline = time.monotonic() + seconds
        while self.site.hits.get(path, 0) < hits:
            assert time.monotonic() < deadline, f"{path} not fetched {hits} times in {seconds} s\n{self.log_tail()}"
            time.sleep(0.05)
        return time.monotonic()

    def stop(self) -> None:
        for process in (self.web, self.pool):
            if process.poll() is None:
                processes.stop(process)
        left = processes.wait_until_gone(self.marker, 20)
        for pid in left:
            kill(pid)
        self.site.stop()
        self.redis.stop()
        assert left == [], f"processes left behind: {left}"


# ---- losing what Redis had not fsynced ---------------------------------------------------------


def current_aof_file(data_dir: Path) -> Path:
    """The incremental AOF file Redis appends to now (Redis 7's multi-part AOF, its manifest:
    lines of key value pairs, "file appendonly.aof.1.incr.aof seq 1 type i" and more on 7.4+)."""
    manifest = (data_dir / "appendonlydir" / "appendonly.aof.manifest").read_text().splitlines()
    lines = [dict(zip(fields[::2], fields[1::2])) for fields in (line.split() for line in manifest)]
    incr = [line["file"] for line in lines if line.get("type") == "i"]
    return data_dir / "appendonlydir" / incr[-1]


class FsyncedAof:
    """Cuts Redis's current AOF file back to what its last fsync covered, as logged by the
    LD_PRELOAD shim of tests/support/fsynclog: exactly what a power loss keeps of it.

    (A kill -9 of redis-server alone loses nothing once Redis has write()n its AOF buffer,
    which it does before replying: the page cache survives the process. A power loss or a
    kernel crash does not keep it, and a slow disk makes Redis postpone that write() by up
    to 2 s while it still replies. Truncating the file reproduces that loss. Cutting by
    time instead, "the last second", could drop writes WAITAOF had rightly confirmed as
    fsynced: a loss no real crash produces.)"""

    def __init__(self, data_dir: Path, log: Path):
        self.data_dir = data_dir
        self.log = log

    def fsynced_size(self, path: Path) -> int:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        sizes = [int(size) for logged, _, size in (line.rpartition(" ") for line in lines)
                 if Path(logged) == path.resolve()]
        return max(sizes, default=0)

    def cut_to_fsynced(self) -> int:
        """Truncate the current AOF file to its last fsynced size; how many bytes were dropped.
        Call it while redis-server is down."""
        path = current_aof_file(self.data_dir)
        size, keep = path.stat().st_size, self.fsynced_size(path)
        with open(path, "r+b") as handle:
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
        return size - keep
