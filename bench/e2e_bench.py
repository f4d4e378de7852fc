"""End to end: URLs/s and per-URL latency from submission to stored record, side by side.

Four systems fetch the same URLs from the same local HTTPS site with the same number of
worker processes: the service (POST /parse -> RQ -> record), the seed-style baseline, the
same seed with its job code imported before the workers fork ("seed + preloaded imports":
how much of the service's gain over the seed is preloading alone) and the floor baseline
(bench/baselines.py), one after the other in one run. Each run:
  burst:      all URLs submitted at t0; throughput = URLs / time to the last record, and each
              URL's latency = its record's time - t0 (so p50 includes the queue it waited in);
  unloaded:   one URL at a time, waiting for its record: the latency of a lone URL.
The service also runs with 1, 2 and 4 worker processes (how it scales on this box), and its
worker processes' memory is read from /proc (steady RSS after the run, high-water mark).
Every row carries the settings its system ran with (bench/ran_with.py), printed beside it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

import requests
from redis import Redis
from rq import Queue, Worker

from bench import baselines, loadgen, ran_with
from bench.stack import Stack, book_urls, news_urls
from config import PROJECT_ROOT
from storage import Storage
from tests.support.processes import Service, processes_with_marker

POLL_SECONDS = 0.05
RUN_TIMEOUT = 240  # s: a run that has not finished by then is reported as such
SUBMIT_CHUNK = 250  # URLs per POST /parse (under MAX_URLS_PER_REQUEST and MAX_REQUEST_BYTES)
WORKER_COMMAND_MARK = "jobs.worker"
WARM_UP_URLS = 4  # fetched one by one before a system is measured (imports, connections)
SEED_PRELOADED = "seed + preloaded imports"


@dataclass
class Workload:
    """The URLs of one burst run: Goodreads book pages and news fronts."""

    books: list[str]
    fronts: list[str]

    @property
    def urls(self) -> list[str]:
        return self.books + self.fronts


def kind_of(url: str) -> str:
    return "goodreads" if "goodreads" in url else "news"


def percentile(values: list[float], q: float) -> float:
    """loadgen's nearest-rank percentile, of unsorted values (nan when there are none)."""
    value = loadgen.percentile(sorted(values), q)
    return float("nan") if value is None else value


def summary(name: str, workers: int, urls: int, elapsed: float, latencies: list[float], failed: int) -> dict:
    return {"system": name, "workers": workers, "urls": urls, "seconds": round(elapsed, 3),
            "urls_per_s": round(urls / elapsed, 2) if elapsed else None, "failed": failed,
            "p50_ms": round(percentile(latencies, 50) * 1000, 1), "p99_ms": round(percentile(latencies, 99) * 1000, 1)}


# ---- the systems --------------------------------------------------------------------------------

class System(Protocol):
    """What a run needs of the service and of each baseline."""

    name: str
    workers: int
    stack: Stack

    def submit(self, urls: list[str]) -> object: ...

    def wait(self, urls: list[str], deadline: float) -> tuple[list[float], int]: ...

    def stop(self) -> None: ...

    def ran_with(self) -> dict: ...


class ServiceSystem:
    """The real service: gunicorn + `python -m jobs.worker` against the stack's Redis."""

    name = "service"

    def __init__(self, stack: Stack, workers: int, **env: str):
        self.stack, self.workers = stack, workers
        self.service: Service = stack.start_service(workers, **env)
        self.http = requests.Session()
        self.storage = Storage(Redis.from_url(stack.redis.url))

    def submit(self, urls: list[str]) -> list[str]:
        batches = []
        for start in range(0, len(urls), SUBMIT_CHUNK):
            response = self.http.post(f"{self.service.base}/parse", json={"urls": urls[start:start + SUBMIT_CHUNK]})
            response.raise_for_status()
            batches.append(response.json()["batch_id"])
        return batches

    def wait(self, urls: list[str], deadline: float) -> tuple[list[float], int]:
        """Completion times (unix) and the count of failed records, once every URL has one."""
        while time.time() < deadline:
            records = self.storage.load_records(urls)
            RedisCommands.polls += 1
            if all(records):
                return [r["fetched_at"].timestamp() for r in records], sum(r["status"] != "done" for r in records)
            time.sleep(POLL_SECONDS)
        raise TimeoutError(f"service: not every record stored within {RUN_TIMEOUT} s")

    def worker_memory(self) -> list[dict]:
        return [memory_of(pid) for pid in processes_with_marker(self.service.marker) if is_worker(pid)]

    def stop(self) -> None:
        self.stack.stop_service(self.service)

    def ran_with(self) -> dict:
        return ran_with.service(self.service.worker_env, self.stack.redis)


class SeedSystem:
    """Fork-per-job rq.Worker processes (pickle serializer, RQ's defaults) running seed_job;
    preloaded: run by baselines.PreloadedSeedWorker, which imports the job's code before forking."""

    def __init__(self, stack: Stack, workers: int, preloaded: bool = False):
        self.stack, self.workers = stack, workers
        self.name = SEED_PRELOADED if preloaded else "seed"
        self.redis = Redis.from_url(stack.redis.url)
        # A queue of its own: the other variant's killed workers stay registered on theirs for a while.
        queue_name = baselines.SEED_QUEUE + ("-preloaded" if preloaded else "")
        self.queue = Queue(queue_name, connection=self.redis)
        worker_class = ["--worker-class", "bench.baselines.PreloadedSeedWorker"] if preloaded else []
        command = ["-m", "rq.cli", "worker", "--url", stack.redis.url, "--logging_level", "WARNING", *worker_class]
        self.processes = [spawn([*command, queue_name], stack.folder / f"{queue_name}-{n}.log") for n in range(workers)]
        wait_for(lambda: Worker.count(queue=self.queue) >= workers, 30)

    def submit(self, urls: list[str]) -> None:
        for url in urls:  # one enqueue per URL, as a seed API handler would
            local, host = self.stack.site.local_url(url)
            self.queue.enqueue(baselines.seed_job, url, local, host, str(self.stack.site.ca_bundle), kind_of(url))

    def wait(self, urls: list[str], deadline: float) -> tuple[list[float], int]:
        return wait_for_results(self.redis, "bench:seed:", urls, deadline)

    def stop(self) -> None:
        stop_all(self.processes)

    def ran_with(self) -> dict:
        return ran_with.baseline(self.name, self.workers, self.stack.redis, "WARNING (rq worker --logging_level)")


class FloorSystem:
    """Minimal list-queue worker processes (bench/baselines.py floor_worker)."""

    name = "floor"

    def __init__(self, stack: Stack, workers: int):
        self.stack, self.workers = stack, workers
        self.redis = Redis.from_url(stack.redis.url)
        self.processes = [spawn(["-m", "bench.baselines", stack.redis.url, str(stack.site.ca_bundle)],
                                stack.folder / f"floor-{n}.log") for n in range(workers)]

    def submit(self, urls: list[str]) -> None:
        tasks = [baselines.floor_task(url, *self.stack.site.local_url(url)) for url in urls]
        self.redis.rpush(baselines.FLOOR_QUEUE, *tasks)

    def wait(self, urls: list[str], deadline: float) -> tuple[list[float], int]:
        return wait_for_results(self.redis, "bench:floor:", urls, deadline)

    def stop(self) -> None:
        stop_all(self.processes)

    def ran_with(self) -> dict:
        return ran_with.baseline(self.name, self.workers, self.stack.redis, "none (the loop logs nothing)")


def wait_for_results(redis: Redis, prefix: str, urls: list[str], deadline: float) -> tuple[list[float], int]:
    keys = [prefix + url for url in urls]
    while time.time() < deadline:
        values = redis.mget(keys)
        RedisCommands.polls += 1
        if all(values):
            return [json.loads(v)["at"] for v in values], 0
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"{prefix}: not every result stored within {RUN_TIMEOUT} s")


# ---- processes and memory ---------------------------------------------------------------------

def spawn(args: list[str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "wb")
    return subprocess.Popen([sys.executable, *args], cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop_all(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        os.killpg(process.pid, 9)
    for process in processes:
        process.wait(10)


def wait_for(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("not ready in time")
        time.sleep(0.1)


def is_worker(pid: int) -> bool:
    try:
        return WORKER_COMMAND_MARK in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def memory_of(pid: int) -> dict:
    """RSS now and its high-water mark (VmHWM), in MiB, from /proc/<pid>/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    return {"pid": pid, "rss_mib": fields.get("VmRSS"), "hwm_mib": fields.get("VmHWM")}


# ---- runs -----------------------------------------------------------------------------------------

def burst(system: System, workload: Workload) -> dict:
    commands = RedisCommands(system.stack.redis.url)
    started = time.time()
    system.submit(workload.urls)
    times, failed = system.wait(workload.urls, started + RUN_TIMEOUT)
    elapsed = max(times) - started
    row = summary(system.name, system.workers, len(workload.urls), elapsed, [t - started for t in times], failed)
    row["redis_commands_per_url"] = round(commands.since_start() / len(workload.urls), 1)
    row["ran_with"] = system.ran_with()
    return row


class RedisCommands:
    """Commands Redis processed since this was made, less the bench's own polling (one command
    each) and the idle background (heartbeats, idle workers' polls), measured first for a second."""

    polls = 0  # the systems' wait loops count their polls here
    INFO_CALLS = 1  # each total() is one INFO, counted by the next reading

    def __init__(self, url: str):
        self.redis = Redis.from_url(url)
        before = self.total()
        time.sleep(1)
        RedisCommands.polls = 0
        self.start, self.started_at = self.total(), time.monotonic()
        self.background_per_s = max(0, self.start - before - self.INFO_CALLS)

    def total(self) -> int:
        return int(self.redis.info("stats")["total_commands_processed"])

    def since_start(self) -> int:
        background = self.background_per_s * (time.monotonic() - self.started_at)
        return round(self.total() - self.start - self.INFO_CALLS - RedisCommands.polls - background)


def unloaded(system: System, urls: list[str]) -> dict:
    latencies = []
    for url in urls:
        started = time.time()
        system.submit([url])
        times, _ = system.wait([url], started + RUN_TIMEOUT)
        latencies.append(times[0] - started)
    return {"system": system.name, "urls": len(urls), "p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 99) * 1000, 1), "ran_with": system.ran_with()}


class UrlRanges:
    """Fresh URLs for every run, so no run is answered from an earlier run's records."""

    def __init__(self) -> None:
        self.next_book, self.next_front = 1, 1

    def workload(self, books: int, fronts: int) -> Workload:
        work = Workload(book_urls(books, self.next_book), news_urls(fronts, self.next_front))
        self.next_book += books
        self.next_front += fronts
        return work


@dataclass
class Sizes:
    books: int = 500
    fronts: int = 100
    seed_books: int = 500
    seed_fronts: int = 100
    scale_books: int = 300
    lone: int = 20
    workers: int = 2
    scale: tuple[int, ...] = (1, 2, 4)


def run(stack: Stack, sizes: Sizes | None = None) -> dict:
    """Every end-to-end measurement; a dict ready for JSON."""
    sizes, ranges = sizes or Sizes(), UrlRanges()
    result: dict = {"burst": [], "unloaded": [], "scale": [], "memory": {}}
    # The seed twice in a row, plain then preloaded, so the two see the same neighbours.
    for make in (FloorSystem, SeedSystem, partial(SeedSystem, preloaded=True)):
        measure_baseline(make(stack, sizes.workers), sizes, ranges, result)
    for workers in sorted(set(sizes.scale) | {sizes.workers}):
        measure_service(stack, workers, sizes, ranges, result)
    result["ratios"] = ratios(result["burst"])
    return result


def measure_baseline(system: System, sizes: Sizes, ranges: UrlRanges, result: dict) -> None:
    books, fronts = (sizes.books, sizes.fronts) if system.name == "floor" else (sizes.seed_books, sizes.seed_fronts)
    try:
        unloaded(system, ranges.workload(WARM_UP_URLS, 0).urls)  # every system starts warm
        result["burst"].append(burst(system, ranges.workload(books, fronts)))
        result["unloaded"].append(unloaded(system, ranges.workload(sizes.lone, 0).urls))
    finally:
        system.stop()


def measure_service(stack: Stack, workers: int, sizes: Sizes, ranges: UrlRanges, result: dict) -> None:
    system = ServiceSystem(stack, workers)
    try:
        if workers == sizes.workers:
            unloaded(system, ranges.workload(WARM_UP_URLS, 0).urls)  # the first jobs import and connect
            result["burst"].append(burst(system, ranges.workload(sizes.books, sizes.fronts)))
            result["unloaded"].append(unloaded(system, ranges.workload(sizes.lone, 0).urls))
            result["memory"] = memory_summary(system.worker_memory())
        result["scale"].append(burst(system, ranges.workload(sizes.scale_books, 0)))
    finally:
        system.stop()


def memory_summary(processes: list[dict]) -> dict:
    return {"processes": processes,
            "steady_rss_mib": max((p["rss_mib"] or 0) for p in processes) if processes else None,
            "peak_rss_mib": max((p["hwm_mib"] or 0) for p in processes) if processes else None}


def ratios(rows: list[dict]) -> dict:
    rate = {row["system"]: row["urls_per_s"] for row in rows}
    if not all(rate.get(name) for name in ("service", "seed", "floor")):
        return {}
    found = {"service_vs_seed": round(rate["service"] / rate["seed"], 2),
             "service_vs_floor": round(rate["service"] / rate["floor"], 3)}
    if rate.get(SEED_PRELOADED):
        found["seed_preloaded_vs_seed"] = round(rate[SEED_PRELOADED] / rate["seed"], 2)
        found["service_vs_seed_preloaded"] = round(rate["service"] / rate[SEED_PRELOADED], 2)
    return found


def print_table(result: dict) -> None:
    print(f"{'burst':25} {'workers':>7} {'URLs':>5} {'s':>7} {'URLs/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6}"
          f" {'redis cmds/URL':>14}")
    for row in result["burst"]:
        print(f"{row['system']:25} {row['workers']:>7} {row['urls']:>5} {row['seconds']:>7.2f} {row['urls_per_s']:>8.1f} "
              f"{row['p50_ms']:>8.0f} {row['p99_ms']:>8.0f} {row['failed']:>6} {row['redis_commands_per_url']:>14}")
    print_settings(result["burst"])
    print("\nlone URL (one at a time, the systems above): " + ", ".join(
        f"{r['system']} p50 {r['p50_ms']:.0f} ms p99 {r['p99_ms']:.0f} ms" for r in result["unloaded"]))
    print("service by worker processes (Goodreads only):")
    for row in result["scale"]:
        print(f"  {row['workers']}: {row['urls_per_s']:.1f} URLs/s    {ran_with.describe(row['ran_with'])}")
    print_memory_and_ratios(result)


def print_settings(rows: list[dict]) -> None:
    for row in rows:
        print("  " + ran_with.describe(row["ran_with"]))


def print_memory_and_ratios(result: dict) -> None:
    memory = result["memory"]
    if memory:
        print(f"worker memory (service, settings above; {len(memory['processes'])} `jobs.worker` processes: the pool, "
              f"its workers, RQ's scheduler): steady RSS {memory['steady_rss_mib']} MiB (largest process), "
              f"peak {memory['peak_rss_mib']} MiB")
    r = result.get("ratios") or {}
    if r:
        print(f"service / seed = {r['service_vs_seed']:.2f}x (target >= 6x); "
              f"service / floor = {r['service_vs_floor']:.0%} (target >= 40%)")
    if r.get("seed_preloaded_vs_seed"):
        print(f"preloading alone: seed + preloaded imports / seed = {r['seed_preloaded_vs_seed']:.2f}x; "
              f"service / seed + preloaded imports = {r['service_vs_seed_preloaded']:.2f}x")


QUICK = Sizes(books=100, fronts=20, seed_books=40, seed_fronts=10, scale_books=60, lone=5, scale=(1, 2))
