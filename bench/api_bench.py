"""API benchmark: GET /info and POST /parse under load, beside a raw Redis GET, workers idle and busy.

run(stack) starts the real service (gunicorn as configured + 2 RQ workers) on the bench
stack, stores records for 100 Goodreads book pages, then measures with bench/loadgen.py:

  info@rate    GET /info?url=<a stored page, in various spellings> at a fixed 1,000 rps
  info@conc    the same at a fixed concurrency of 8 (the most it serves)
  redis@rate   redis-py GET of one stored record's key at the same rate: Redis alone
  redis@conc   the same at concurrency 8
  parse10      POST /parse of 10 new URLs per request (dedupe and enqueue work is real)
  parse100     POST /parse of 100 new URLs per request
  parse100k    POST /parse of 100 URLs already stored (all answered "cached")

each twice: workers idle, then saturated (busy on a backlog of BACKLOG Goodreads pages
submitted just before; the queue depth and busy-worker count before and after each run
show they stayed busy). During the idle POST runs the worker processes are paused
(SIGSTOP, then SIGCONT) and the queues emptied afterwards: new URLs posted at ~50 requests
a second would otherwise keep them busy for minutes and the run would not be idle.
A calibration row runs the generator against a server that does nothing (its floor).
Each row also gives the CPU (in cores) used meanwhile by gunicorn, the RQ workers, Redis
and the generator itself. The 2 cores are shared by all of them (and by anyone else on
the machine): compare rows of one run, not runs of different days.

Run: .venv/bin/python -m bench.api_bench (about a minute); the result is also written to
bench/results/api.json.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit

import psutil
import requests
from redis import Redis
from rq import Worker

from bench import ran_with
from bench.loadgen import FreshUrls, HttpTarget, LoadGenerator, Plan, RedisTarget, calibrate, http_request
from bench.stack import Stack, book_urls, running_stack
from config import PROJECT_ROOT, Settings
from jobs.queues import QUEUE_NAMES, make_queue
from storage import record_key
from tests.support.processes import Service

STORED = 100  # book pages stored before measuring
BACKLOG = 3000  # book pages the workers are busy on in the saturated phase
SUBMIT_CHUNK = 500  # URLs per POST when filling (MAX_URLS_PER_REQUEST)
RATE = 1000.0  # GET /info target rate
RATE_SECONDS, CONC_SECONDS = 2.5, 1.5
GENERATOR_PROCESSES = 2
RATE_CONNECTIONS = 16  # open loop: the most requests in flight at once
CONCURRENCY = 8
POST_CONCURRENCY = 2
FRESH_TEMPLATE = "https://www.goodreads.com/book/show/{}"
FRESH_BASE = {"idle": 10_000_000, "saturated": 20_000_000}  # URL numbers no other run uses
BACKLOG_START = 5_000_000
FILL_TIMEOUT = 90.0
RESULTS = PROJECT_ROOT / "bench" / "results" / "api.json"


# ---- the service and what it holds ----------------------------------------------------------


def spellings(url: str) -> list[str]:
    """Ways a client may spell a stored Goodreads book URL; /info answers each with its record."""
    number = url.rsplit("/", 1)[1]
    return [url, f"http://goodreads.com/book/show/{number}", f"https://m.goodreads.com/book/show/{number}-a-title",
            f"https://www.goodreads.com/en/book/show/{number}.A_Title?utm_source=feed#reviews"]


def submit(base: str, urls: list[str]) -> list[str]:
    """POST the URLs in chunks; the batch ids."""
    batches = []
    for start in range(0, len(urls), SUBMIT_CHUNK):
        answer = requests.post(f"{base}/parse", json=urls[start:start + SUBMIT_CHUNK], timeout=30)
        answer.raise_for_status()
        batches.append(answer.json()["batch_id"])
    return batches


def wait_finished(base: str, batch_ids: list[str], timeout: float = FILL_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    for batch_id in batch_ids:
        while not requests.get(f"{base}/batches/{batch_id}", timeout=30).json()["finished"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"batch {batch_id} not finished in {timeout} s")
            time.sleep(0.2)


def queue_depth(connection: Redis) -> int:
    return sum(make_queue(name, connection).count for name in QUEUE_NAMES)


def busy_workers(connection: Redis) -> int:
    return sum(1 for worker in Worker.all(connection=connection) if worker.get_state() == "busy")


def empty_queues(connection: Redis) -> None:
    for name in QUEUE_NAMES:
        make_queue(name, connection).empty()


@contextmanager
def workers_paused(service: Service) -> Iterator[None]:
    """The RQ worker processes stopped (SIGSTOP) meanwhile: idle for sure, whatever is enqueued."""
    os.killpg(service.worker.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(service.worker.pid, signal.SIGCONT)


# ---- CPU used meanwhile, per part of the stack ----------------------------------------------


def process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(tree: list[psutil.Process]) -> float:
    """CPU seconds of the processes and of their children already reaped: a work-horse that
    ended meanwhile is counted in its worker's children times, one still running in its own."""
    total = 0.0
    for process in tree:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


class CpuMeter:
    """Cores used meanwhile by gunicorn, the RQ workers, Redis, this process (the local site)
    and, from the machine's total, by everything else (other users of the box)."""

    def __init__(self, service: Service, stack: Stack):
        self.groups = {"web": lambda: process_tree(service.web.pid), "workers": lambda: process_tree(service.worker.pid),
                       "redis": lambda: [psutil.Process(stack.redis.process.pid)], "site": lambda: [psutil.Process()]}

    def snapshot(self) -> dict[str, float]:
        found = {name: cpu_seconds(find()) for name, find in self.groups.items()}  # trees anew: horses come and go
        times = psutil.cpu_times()
        found["busy"] = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        return found

    @contextmanager
    def measuring(self, into: dict) -> Iterator[None]:
        """into gets <group>_cpu for each group, and others_cpu once into holds gen_cpu."""
        before, started = self.snapshot(), time.monotonic()
        yield
        after, wall = self.snapshot(), time.monotonic() - started
        cores = {name: (after[name] - before[name]) / wall for name in after}
        for name in self.groups:
            into[f"{name}_cpu"] = round(cores[name], 2)
        ours = sum(cores[name] for name in self.groups) + into.get("gen_cpu", 0.0)
        into["others_cpu"] = round(max(0.0, cores["busy"] - ours), 2)


# ---- the runs -------------------------------------------------------------------------------


def info_target(host: str, port: int, stored: list[str]) -> HttpTarget:
    requests_ = tuple(http_request("GET", f"/info?url={quote(spelling, safe='')}", f"{host}:{port}")
                      for url in stored for spelling in spellings(url))
    return HttpTarget(host, port, requests_)


def post_target(host: str, port: int, phase: str, label: str, count: int, stored: list[str]) -> HttpTarget:
    if label == "parse100k":  # already stored: every URL is answered "cached"
        body = json.dumps(stored[:count]).encode()
        return HttpTarget(host, port, (http_request("POST", "/parse", f"{host}:{port}", body),))
    start = FRESH_BASE[phase] + (0 if count == 10 else 5_000_000)
    return HttpTarget(host, port, fresh=FreshUrls(FRESH_TEMPLATE, count, start))


def get_runs(host: str, port: int, redis_url: str, stored: list[str]) -> list[tuple[str, object, Plan]]:
    info, raw = info_target(host, port, stored), RedisTarget(redis_url, record_key(stored[0]))
    at_rate, at_concurrency = Plan(RATE_SECONDS, RATE, RATE_CONNECTIONS), Plan(CONC_SECONDS, None, CONCURRENCY)
    return [("info@rate", info, at_rate), ("info@conc", info, at_concurrency),
            ("redis@rate", raw, at_rate), ("redis@conc", raw, at_concurrency)]


def post_runs(host: str, port: int, phase: str, stored: list[str]) -> list[tuple[str, object, Plan]]:
    plan = Plan(CONC_SECONDS, None, POST_CONCURRENCY)
    return [(label, post_target(host, port, phase, label, count, stored), plan)
            for label, count in (("parse10", 10), ("parse100", 100), ("parse100k", 100))]


class Bench:
    """One service under measurement: runs a list of plans and notes the context of each."""

    def __init__(self, stack: Stack, service: Service, generator: LoadGenerator):
        self.stack, self.service, self.generator = stack, service, generator
        self.redis = Redis.from_url(stack.redis.url)
        self.cpu = CpuMeter(service, stack)
        address = urlsplit(service.base)
        self.host, self.port = address.hostname, address.port

    def measure(self, runs: list[tuple[str, object, Plan]]) -> dict:
        rows = {}
        for label, target, plan in runs:
            row = {"queue_before": queue_depth(self.redis), "busy_before": busy_workers(self.redis)}
            with self.cpu.measuring(row):
                row.update(self.generator.run(target, plan))
            row.update(queue_after=queue_depth(self.redis), busy_after=busy_workers(self.redis))
            rows[label] = row
        return rows

    def idle(self, stored: list[str]) -> dict:
        rows = self.measure(get_runs(self.host, self.port, self.stack.redis.url, stored))
        with workers_paused(self.service):
            rows.update(self.measure(post_runs(self.host, self.port, "idle", stored)))
            empty_queues(self.redis)
        return rows

    def saturated(self, stored: list[str]) -> dict:
        submit(self.service.base, book_urls(BACKLOG, BACKLOG_START))
        time.sleep(1.0)  # the workers pick the backlog up
        rows = self.measure(get_runs(self.host, self.port, self.stack.redis.url, stored)
                            + post_runs(self.host, self.port, "saturated", stored))
        empty_queues(self.redis)
        return rows


def service_settings(service: Service) -> dict:
    env = service.env
    return {"web_workers": int(env.get("WEB_WORKERS", Settings.web_workers)),
            "web_connections": int(env.get("WEB_CONNECTIONS", Settings.web_connections)),
            "gunicorn_cmd_args": env.get("GUNICORN_CMD_ARGS", ""), "rate_limits": env.get("RATE_LIMITS"),
            "log_level": env.get("LOG_LEVEL"), "rq_workers": int(env["WORKERS"])}


def run(stack: Stack, **env: str) -> dict:
    """The whole API bench on a running stack; env overrides the service's settings
    (e.g. WEB_WORKERS, WEB_CONNECTIONS, WORKER_NICE, RATE_LIMITS, GUNICORN_CMD_ARGS)."""
    service = stack.start_service(2, **env)
    started = time.monotonic()
    try:
        stored = book_urls(STORED)
        wait_finished(service.base, submit(service.base, stored))
        with LoadGenerator(GENERATOR_PROCESSES) as generator:
            bench = Bench(stack, service, generator)
            nice = os.getpriority(os.PRIO_PROCESS, service.worker.pid)  # WORKER_NICE, as the service set it
            result = {"settings": {**service_settings(service), "workers_nice": nice}, "cpus": os.cpu_count(),
                      "ran_with": ran_with.service(service.worker_env, stack.redis),
                      "calibration": calibrate(generator, Plan(RATE_SECONDS, RATE, RATE_CONNECTIONS)),
                      "idle": bench.idle(stored), "saturated": bench.saturated(stored)}
    finally:
        stack.stop_service(service)
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


# ---- the table ----------------------------------------------------------------------------------

# unsent: requests a rate run fell too far behind to send (their latency is not in the percentiles,
# so a row with unsent > 0 was overloaded whatever its p99 says).
COLUMNS = (("rps", 8), ("p50", 7), ("p90", 7), ("p99", 7), ("max", 8), ("errors", 6), ("unsent", 6), ("gen_cpu", 7),
           ("web_cpu", 7), ("workers_cpu", 11), ("redis_cpu", 9), ("site_cpu", 8), ("others_cpu", 10))


def print_table(result: dict) -> None:
    settings = result["settings"]
    print(f"API bench ({result['cpus']} CPUs; gunicorn {settings['web_workers']} processes "
          f"{settings['gunicorn_cmd_args'] or 'web.edge.EdgeWorker (gevent)'}; rate limits {settings['rate_limits']}; "
          f"{settings['rq_workers']} RQ workers, nice {settings['workers_nice']}); latencies in ms, CPU in cores")
    print("  " + ran_with.describe(result["ran_with"]))
    print(f"{'phase':10} {'run':11} {'load':>9} " + " ".join(f"{name:>{width}}" for name, width in COLUMNS)
          + "  queue before→after, busy workers")
    print_row("floor", "calibrate", result["calibration"])
    for phase in ("idle", "saturated"):
        for label, row in result[phase].items():
            print_row(phase, label, row)
    print(f"({result['seconds']} s)")


def print_row(phase: str, label: str, row: dict) -> None:
    load = f"{row['rate']:.0f}/s" if row["mode"] == "rate" else f"c={row['concurrency']}"
    cells = " ".join(f"{cell(row.get(name)):>{width}}" for name, width in COLUMNS)
    context = (f"  {row['queue_before']}→{row['queue_after']}, {row['busy_before']}→{row['busy_after']}"
               if "queue_before" in row else "")
    print(f"{phase:10} {label:11} {load:>9} {cells}{context}")


def cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) and value >= 100 else str(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(RESULTS), help=f"where to write the result (default {RESULTS})")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a service setting for this run, e.g. WEB_WORKERS=4 (repeatable)")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    with running_stack() as stack:
        result = run(stack, **env)
    print_table(result)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)  # bench/results/ is not in the repository
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
