"""Hostile pages through REAL worker processes: each fails one job cleanly, fast and small.

A local HTTPS "site" (FixtureServer, test CA) plays www.goodreads.com, www.bbc.com and a
few other names; the service (gunicorn + `python -m jobs.worker`) reaches it through
FETCH_CONNECT_TO. Each case is one page under a Goodreads book URL (or a bbc.com front
page): a 1 GiB body, compression bombs, a 1 byte/s drip, redirect chains and loops,
redirects to loopback / metadata / numeric spellings, DNS answers that change between the
SSRF check and the connection, 5 MiB of nested tags, non-HTML. One batch holds every case
plus a good book, and the worker pool must:

* end every job with a record whose error code names the cause, within
  FETCH_DEADLINE + 2 s of the job being picked up (job started_at -> record fetched_at);
* never connect to the SENTINEL: a TCP listener on 127.0.0.1 that counts connections.
  Forbidden redirects point at its port, and the worker's test network (netshim) routes
  the other forbidden addresses (169.254.169.254:80, 10.0.0.1, 127.0.0.1:443...) there too;
* keep every worker process and work-horse under PEAK_RSS_LIMIT (VmHWM, polled from /proc
  and reported by each work-horse as it exits), with the RLIMIT_AS backstop set;
* stay alive: same worker processes before and after, and the good book is parsed.

The batch runs once per WORKER_EXECUTION mode: jobs in the worker processes themselves
(inprocess), and a work-horse forked per job (fork), whose horse-only checks are skipped
in the other mode.

DNS rebinding is simulated in the worker processes only, by tests/support/netshim
(sitecustomize on PYTHONPATH): for REBIND_HOST the guard's look-up answers a public
address and any other look-up 127.0.0.1; for FLIP_HOST the first look-up answers the
public address and every later one 127.0.0.1. The "public" address exists only in the
test network: the shim connects it to the fixture site, and refuses any other public one.
"""
from __future__ import annotations

import json
import os
import resource
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import requests
from redis import Redis
from rq import Worker

from config import PROJECT_ROOT
from jobs.queues import fetch_job
from jobs.worker.limits import ADDRESS_SPACE_LIMIT
from sources import route
from tests.support import processes
from tests.support.fixture_server import FixtureServer, Reply
from tests.support.hostile import (
    GIB,
    HTML,
    MIB,
    DeflateBomb,
    Handler,
    MemorySampler,
    Sentinel,
    address_space_limit,
    bomb,
    children,
    double_gzip_bomb,
    drip,
    huge_body,
    process_tree,
    redirect,
    static,
)

pytestmark = pytest.mark.e2e

DEADLINE = 3.0  # FETCH_DEADLINE of the workers
SLACK = 2.0  # a job must end within DEADLINE + SLACK of being picked up
PEAK_RSS_LIMIT_MIB = 640
WORKERS = 2
POLL_SECONDS = 120  # the whole batch must be done by then
PUBLIC = "93.184.216.34"  # "public" only inside the workers' test network (netshim)
REBIND_HOST = "rebind.hostile-fixture.net"  # guard's look-up: PUBLIC, any other: 127.0.0.1
FLIP_HOST = "flip.hostile-fixture.net"  # 1st look-up: PUBLIC, later ones: 127.0.0.1
LOOPBACK_HOST = "loopback.hostile-fixture.net"  # always 127.0.0.1
SITE_HOSTS = ["www.goodreads.com", "www.bbc.com", "www.theguardian.com", REBIND_HOST, FLIP_HOST, LOOPBACK_HOST]
NETSHIM = Path(__file__).parent / "support" / "netshim"
FIXTURE_BOOK = Path(__file__).parent / "fixtures" / "e2e" / "goodreads-book.html"
NEWS_PAGE = Path(__file__).parent / "fixtures" / "news" / "bbc-gel-2018.html"
BOOK_TITLE = "The Lighthouse Keeper's Almanac"
MODES = ["inprocess", "fork"]  # WORKER_EXECUTION


@dataclass(frozen=True)
class Ctx:
    """What handlers need to know at setup time."""

    sentinel: int  # the sentinel's port
    book: str  # the case's own book path, e.g. /book/show/9001


@dataclass(frozen=True)
class Case:
    name: str
    expect: tuple[str, ...]  # acceptable outcomes: error codes, or "done"
    serve: Callable[[Ctx], dict[str, Handler]]  # path -> handler, on the fixture site
    url: str | None = None  # what is submitted; default: the case's own Goodreads book


def own(handler_for: Callable[[Ctx], Handler]) -> Callable[[Ctx], dict[str, Handler]]:
    """Serve one handler at the case's own book path."""
    return lambda ctx: {ctx.book: handler_for(ctx)}


def redirect_to(location: str, status: int = 302) -> Callable[[Ctx], dict[str, Handler]]:
    return own(lambda ctx: redirect(location.format(s=ctx.sentinel), status))


GZIP_10G = DeflateBomb.of_zeros(10 * 1024)  # 10 GiB of zeros in ~10 MiB, streamed
GZIP_4G = DeflateBomb.of_zeros(4 * 1024)  # compressed size under MAX_BODY_BYTES: Content-Length passes
DEFLATE_10G = DeflateBomb.of_zeros(10 * 1024, wbits=15)
GZIP_GZIP_10G = double_gzip_bomb(GZIP_10G)  # ~24 KiB on the wire
NESTED = b"<html><body>" + b"<div>" * ((5 * MIB - 100) // 5) + b"</body></html>"  # just under 5 MiB


def chain(ctx: Ctx, hops: int = 10) -> dict[str, Handler]:
    paths = [ctx.book] + [f"{ctx.book}/hop{i}" for i in range(1, hops + 1)]
    return {path: redirect(f"https://www.goodreads.com{nxt}") for path, nxt in zip(paths, paths[1:])}


def loop(ctx: Ctx) -> dict[str, Handler]:
    return {ctx.book: redirect(f"{ctx.book}/b"), f"{ctx.book}/b": redirect(ctx.book, 301)}


def good_hop_then_loopback(ctx: Ctx) -> dict[str, Handler]:
    return {ctx.book: redirect(f"{ctx.book}/next", 307),
            f"{ctx.book}/next": redirect(f"http://127.0.0.1:{ctx.sentinel}/", 308)}


def reset_mid_body(request) -> None:  # noqa: ANN001 (a BaseHTTPRequestHandler)
    request.send_response(200)
    request.send_header("Content-Type", HTML)
    request.send_header("Content-Length", "100000")
    request.end_headers()
    request.wfile.write(b"<html>" + b"x" * 1000)
    request.wfile.flush()
    request.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
    request.close_connection = True


CASES = [
    # huge bodies: never held, refused at the cap (5 MiB) or by Content-Length
    Case("body-1gib-content-length", ("body_too_large",), own(lambda ctx: huge_body(GIB, "length"))),
    Case("body-1gib-no-length", ("body_too_large",), own(lambda ctx: huge_body(GIB, "close"))),
    Case("body-1gib-chunked", ("body_too_large",), own(lambda ctx: huge_body(GIB, "chunked"))),
    Case("body-1gib-news-page", ("body_too_large",), lambda ctx: {"/hostile/big": huge_body(GIB, "close")},
         url="https://www.bbc.com/hostile/big"),
    # compression bombs: counted after decompression
    Case("gzip-bomb-10gib-streamed", ("body_too_large",), own(lambda ctx: bomb(GZIP_10G))),
    Case("gzip-bomb-4gib-small-content-length", ("body_too_large",), own(lambda ctx: bomb(GZIP_4G, with_length=True))),
    Case("gzip-gzip-bomb-10gib", ("body_too_large",), own(lambda ctx: static(
        GZIP_GZIP_10G, {"Content-Type": HTML, "Content-Encoding": "gzip, gzip"}))),
    Case("deflate-bomb-10gib", ("body_too_large",), own(lambda ctx: bomb(DEFLATE_10G, "deflate"))),
    # slow servers: the wall-clock deadline, not socket timeouts (FETCH_READ_TIMEOUT is 10 s)
    Case("drip-body-1-byte-per-s", ("fetch_timeout",), own(lambda ctx: drip("body"))),
    Case("drip-body-with-content-length", ("fetch_timeout",), own(lambda ctx: drip("body", with_length=True))),
    Case("drip-status-line-and-headers", ("fetch_timeout",), own(lambda ctx: drip("headers"))),
    # redirects: counted, loops caught, every hop re-checked
    Case("redirect-chain-10-hops", ("too_many_redirects",), chain),
    Case("redirect-loop", ("too_many_redirects",), loop),
    Case("redirect-to-itself", ("too_many_redirects",), own(lambda ctx: redirect(ctx.book))),
    Case("redirect-127.0.0.1", ("blocked_address",), redirect_to("http://127.0.0.1:{s}/")),
    Case("redirect-ipv4-mapped-ipv6", ("blocked_address",), redirect_to("http://[::ffff:127.0.0.1]:{s}/")),
    Case("redirect-ipv4-mapped-hex", ("blocked_address",), redirect_to("http://[::ffff:7f00:1]:{s}/")),
    Case("redirect-nat64-loopback", ("blocked_address",), redirect_to("http://[64:ff9b::7f00:1]:{s}/")),
    Case("redirect-decimal-2130706433", ("blocked_address",), redirect_to("http://2130706433:{s}/")),
    Case("redirect-hex-0x7f000001", ("blocked_address",), redirect_to("http://0x7f000001:{s}/")),
    Case("redirect-octal-0177.0.0.1", ("blocked_address",), redirect_to("http://0177.0.0.1:{s}/")),
    Case("redirect-short-127.1", ("blocked_address",), redirect_to("http://127.1:{s}/")),
    Case("redirect-ipv6-loopback", ("blocked_address",), redirect_to("https://[::1]:{s}/")),
    Case("redirect-0.0.0.0", ("blocked_address",), redirect_to("http://0.0.0.0:{s}/")),
    Case("redirect-10.0.0.1", ("blocked_address",), redirect_to("http://10.0.0.1:{s}/")),
    Case("redirect-metadata-169.254.169.254", ("blocked_address",),
         redirect_to("http://169.254.169.254/latest/meta-data/iam/security-credentials/")),
    Case("redirect-localhost", ("blocked_address",), redirect_to("http://localhost:{s}/")),
    Case("redirect-name-resolving-to-loopback", ("blocked_address",), redirect_to(f"https://{LOOPBACK_HOST}:{{s}}/")),
    Case("redirect-scheme-relative-loopback", ("blocked_address",), redirect_to("//127.0.0.1:{s}/", 301)),
    Case("redirect-userinfo-trick", ("blocked_address",), redirect_to("https://www.goodreads.com@127.0.0.1:{s}/", 303)),
    Case("redirect-backslash-trick", ("blocked_address",), redirect_to("http://127.0.0.1:{s}\\@www.goodreads.com/")),
    Case("redirect-gopher", ("blocked_address",), redirect_to("gopher://127.0.0.1:{s}/_FLUSHALL")),
    Case("redirect-file", ("blocked_address",), redirect_to("file:///etc/passwd")),
    Case("redirect-after-a-good-hop", ("blocked_address",), good_hop_then_loopback),
    # DNS answers that change between check and connect
    Case("dns-rebind-after-check", ("done",), lambda ctx: {
        ctx.book: redirect(f"https://{REBIND_HOST}:{ctx.sentinel}/rebound"),
        "/rebound": static(FIXTURE_BOOK.read_bytes(), {"Content-Type": HTML})}),
    Case("dns-rebind-news-front-page", ("done", "parse_error"),
         lambda ctx: {"/uk": static(NEWS_PAGE.read_bytes(), {"Content-Type": HTML})},
         url="https://www.theguardian.com/uk"),
    # The first look-up (the guard's approval of the redirect's hop) is public, the next (the
    # approval of its origin's robots.txt hop) is 127.0.0.1: refused before connecting, as blocked_address.
    Case("dns-flips-to-loopback-after-first-answer", ("blocked_address",), lambda ctx: {
        ctx.book: redirect(f"https://{FLIP_HOST}:{ctx.sentinel}/flip"),
        "/flip": static(FIXTURE_BOOK.read_bytes(), {"Content-Type": HTML})}),
    # parser food and non-HTML
    Case("nested-divs-5mib", ("parse_error", "done"), own(lambda ctx: static(NESTED, {"Content-Type": HTML}))),
    Case("nested-divs-5mib-news-page", ("parse_error", "done"),
         lambda ctx: {"/hostile/nested": static(NESTED, {"Content-Type": HTML})},
         url="https://www.bbc.com/hostile/nested"),
    Case("non-html-1gib-octet-stream", ("not_html",),
         own(lambda ctx: huge_body(GIB, "length", "application/octet-stream"))),
    Case("non-html-png", ("not_html",),
         own(lambda ctx: static(b"\x89PNG\r\n\x1a\n" + bytes(1000), {"Content-Type": "image/png"}))),
    Case("non-html-news-page-json", ("not_html",),
         lambda ctx: {"/hostile/json": static(b"{}", {"Content-Type": "application/json"})},
         url="https://www.bbc.com/hostile/json"),
    # broken transfers
    Case("corrupt-gzip", ("fetch_failed",), own(lambda ctx: static(
        b"\x1f\x8b\x08\x00garbage, not deflate" * 10, {"Content-Type": HTML, "Content-Encoding": "gzip"}))),
    Case("seven-content-encodings", ("fetch_failed",), own(lambda ctx: static(
        b"<html></html>", {"Content-Type": HTML, "Content-Encoding": ", ".join(["gzip"] * 7)}))),
    Case("connection-reset-mid-body", ("fetch_transient",), own(lambda ctx: reset_mid_body)),
    # the control: a good page in the same batch is parsed
    Case("control-good-book", ("done",), own(lambda ctx: static(FIXTURE_BOOK.read_bytes(), {"Content-Type": HTML}))),
]
BOOK_IDS = {case.name: 90001 + i for i, case in enumerate(CASES)}


def submitted_url(case: Case) -> str:
    return case.url or f"https://www.goodreads.com/book/show/{BOOK_IDS[case.name]}"


@dataclass
class Outcome:
    case: Case
    record: dict
    job: dict
    seconds: float  # job started_at -> record fetched_at
    horse_pid: int | None = None
    horse_peak_kib: int | None = None


@dataclass
class Run:
    outcomes: dict[str, Outcome]
    sampler: MemorySampler
    netlog: list[dict]
    sentinel: Sentinel
    site: FixtureServer
    worker_pids_before: set[int]
    worker_pids_after: set[int]
    limits: dict[int, tuple[str, str]]
    base: str
    mode: str = "fork"

    def exits(self) -> dict[int, dict]:
        return {line["pid"]: line for line in self.netlog if line["event"] == "exit"}

    def peak_kib(self) -> int:
        from_exits = max((line.get("vmhwm_kib") or 0 for line in self.exits().values()), default=0)
        return max(self.sampler.max_hwm_kib, from_exits)


def netshim_config(log: Path, site: FixtureServer, sentinel: Sentinel) -> dict:
    fixture, trap = f"127.0.0.1:{site.port}", f"127.0.0.1:{sentinel.port}"
    forbidden_hosts = ("127.0.0.1", "::1", "::ffff:127.0.0.1", "169.254.169.254", "10.0.0.1")
    forbidden = [f"{host}:{port}" for host in forbidden_hosts for port in (80, 443)]
    forbidden += [f"{host}:{sentinel.port}" for host in ("::1", "::ffff:127.0.0.1", "10.0.0.1")]
    return {
        "log": str(log),
        "hosts": {
            REBIND_HOST: {"mode": "check_vs_connect", "check": PUBLIC, "other": "127.0.0.1"},
            "www.theguardian.com": {"mode": "check_vs_connect", "check": PUBLIC, "other": "127.0.0.1"},
            FLIP_HOST: {"mode": "sequence", "answers": [PUBLIC, "127.0.0.1"]},
            LOOPBACK_HOST: {"mode": "static", "answer": "127.0.0.1"},
        },
        # the public address is the fixture site; every forbidden address is the sentinel
        "connect": {f"{PUBLIC}:443": fixture, f"{PUBLIC}:{sentinel.port}": fixture, **{key: trap for key in forbidden}},
    }


def worker_pids(root: int) -> set[int]:
    """The pool's RQ worker processes: its direct children (schedulers and horses are theirs)."""
    return set(children(root))


def iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture(scope="module", params=MODES)
def run(request, redis_url, tmp_path_factory) -> Run:
    tmp = tmp_path_factory.mktemp("hostile")
    Redis.from_url(redis_url).flushdb()  # no robots.txt verdicts, workers or jobs of other tests
    sentinel = Sentinel().start()
    site = FixtureServer(SITE_HOSTS).start()
    for case in CASES:
        for path, handler in case.serve(Ctx(sentinel.port, f"/book/show/{BOOK_IDS[case.name]}")).items():
            site.routes[path] = handler
    site.routes["/robots.txt"] = Reply(404, b"", {"Content-Type": "text/plain"})
    netlog = tmp / "netshim.jsonl"
    env = processes.service_env(
        REDIS_URL=redis_url, DATA_DIR=str(tmp / "data"),
        FETCH_RETRIES="0", FETCH_DEADLINE=str(DEADLINE), FETCH_CONNECT_TIMEOUT="2", FETCH_READ_TIMEOUT="10",
        JOB_TIMEOUT="20", FETCH_HOST_DELAY="0", FETCH_HOST_CONCURRENCY="8", RATE_LIMITS="false",
        **site.fetch_env(tmp, "www.goodreads.com", "www.bbc.com"),
    )
    worker_env = {"PYTHONPATH": str(NETSHIM), "METAPARSE_NETSHIM": json.dumps(netshim_config(netlog, site, sentinel)),
                  "WORKER_EXECUTION": request.param}
    try:
        service = processes.start_service(env, tmp, workers=WORKERS, name="HOSTILE", worker_env=worker_env)
    except BaseException:
        site.stop()
        sentinel.stop()
        raise
    worker, base = service.worker, service.base
    try:
        sampler = MemorySampler(worker.pid).start()
        before = worker_pids(worker.pid)
        limits = {pid: address_space_limit(pid) for pid in process_tree(worker.pid)}
        outcomes = run_batch(base, worker, service.worker_log)
        time.sleep(0.3)  # a last few samples after the last horse exited
        sampler.stop()
        after = worker_pids(worker.pid)
        lines = [json.loads(line) for line in netlog.read_text().splitlines()] if netlog.exists() else []
        result = Run(outcomes, sampler, lines, sentinel, site, before, after, limits, base, request.param)
        match_horses(result, redis_url)
        report(result)
        yield result
    finally:
        service.stop_processes()
        site.stop()
        sentinel.stop()
    service.assert_none_left()
    assert sentinel.count == 0, f"the sentinel saw connections: {sentinel.connections}"


def run_batch(base: str, worker: subprocess.Popen, log_path: Path) -> dict[str, Outcome]:
    """Submit every case in one batch; wait for each record; time it from the job's start."""
    urls = [submitted_url(case) for case in CASES]
    response = requests.post(f"{base}/parse", json={"urls": urls}, timeout=10)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["rejected"] == [], body["rejected"]
    job_ids = {item["url"]: item["job_id"] for item in body["accepted"]}
    canonical = {case.name: route(submitted_url(case)).canonical_url for case in CASES}
    records: dict[str, dict] = {}
    deadline = time.monotonic() + POLL_SECONDS
    while len(records) < len(CASES) and time.monotonic() < deadline:
        answer = requests.get(f"{base}/records", params={"batch": body["batch_id"]}, timeout=5)
        assert answer.status_code == 200, answer.text
        by_url = {record["url"]: record for record in answer.json()["records"]}
        records = {name: by_url[url] for name, url in canonical.items() if url in by_url}
        assert worker.poll() is None, "the worker pool died:\n" + log_path.read_text()[-3000:]
        time.sleep(0.25)
    missing = sorted(set(canonical) - set(records))
    assert not missing, f"no record within {POLL_SECONDS} s for {missing}"
    outcomes = {}
    for case in CASES:
        job = requests.get(f"{base}/jobs/{job_ids[submitted_url(case)]}", timeout=5).json()
        record = records[case.name]
        seconds = (iso(record["fetched_at"]) - iso(job["started_at"])).total_seconds()
        outcomes[case.name] = Outcome(case, record, job, seconds)
    return outcomes


def match_horses(result: Run, redis_url: str) -> None:
    """Find each job's work-horse (a fork of the job's worker during the job) and its peak RSS."""
    connection = Redis.from_url(redis_url)
    worker_pid = {w.name: w.pid for w in Worker.all(connection=connection)}
    forks = [line for line in result.netlog if line["event"] == "fork"]
    exits = result.exits()
    for outcome in result.outcomes.values():
        job = fetch_job(connection, outcome.job["job_id"])
        parent = worker_pid.get(job.worker_name) if job is not None else None
        started, ended = iso(outcome.job["started_at"]).timestamp(), iso(outcome.job["ended_at"]).timestamp() + 5
        # RQ forks the horse, then the job is marked started: the horse alive at started_at. Its
        # worker forks the next horse only after this one exits, so started alone tells them
        # apart; the horse exits after writing ended_at, late on a loaded box (hence the 5 s).
        horses = [f["pid"] for f in forks if f["ppid"] == parent and f["pid"] in exits
                  and f["t"] <= started <= exits[f["pid"]]["t"] <= ended]
        if len(horses) == 1:
            outcome.horse_pid = horses[0]
            sampled = result.sampler.peaks.get(horses[0])
            outcome.horse_peak_kib = max((exits.get(horses[0]) or {}).get("vmhwm_kib") or 0,
                                         sampled.hwm_kib if sampled else 0) or None


def report(result: Run) -> None:
    print(f"\n\nhostile pages through real workers (WORKER_EXECUTION={result.mode}, FETCH_DEADLINE={DEADLINE:g} s,"
          f" limit {DEADLINE + SLACK:g} s, MAX_BODY_BYTES=5 MiB, WORKERS={WORKERS})")
    print(f"{'case':<42} {'status':<7} {'code':<19} {'start->record':>13} {'horse peak':>11}")
    for name, outcome in result.outcomes.items():
        error = outcome.record.get("error") or {}
        peak = f"{outcome.horse_peak_kib / 1024:.0f} MiB" if outcome.horse_peak_kib else "?"
        status, code = outcome.record["status"], error.get("code", "-")
        print(f"{name:<42} {status:<7} {code:<19} {outcome.seconds:>12.2f}s {peak:>11}")
    print(f"peak RSS (VmHWM) of any worker process or work-horse: {result.peak_kib() / 1024:.1f} MiB"
          f" (limit {PEAK_RSS_LIMIT_MIB} MiB; {result.sampler.samples} polls of {len(result.sampler.peaks)} processes,"
          f" {len(result.exits())} work-horse exit reports)")
    print(f"sentinel connections: {result.sentinel.count}")
    print(f"this test process's own peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(f"RLIMIT_AS of the worker tree: {sorted(set(result.limits.values()))}\n")


# ---- the cases -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [case.name for case in CASES])
def test_each_hostile_page_fails_its_job_with_a_named_cause_in_time(run, name):
    outcome = run.outcomes[name]
    record, case = outcome.record, outcome.case
    got = record["status"] if record["status"] == "done" else record["error"]["code"]
    assert got in case.expect, f"{name}: {record}"
    assert outcome.seconds <= DEADLINE + SLACK, f"{name} took {outcome.seconds:.2f} s from pick-up to record"
    if record["status"] == "failed":
        assert outcome.job["status"] == "failed" and outcome.job["retries_left"] in (0, None), outcome.job
        assert record["error"]["message"]


def test_hostile_bodies_name_the_limit_they_hit(run):
    for name in ("gzip-bomb-10gib-streamed", "gzip-gzip-bomb-10gib", "deflate-bomb-10gib", "body-1gib-no-length"):
        assert "decoded" in run.outcomes[name].record["error"]["message"], name
    assert "Content-Length" in run.outcomes["body-1gib-content-length"].record["error"]["message"]


def test_the_good_page_in_the_same_batch_is_parsed(run):
    record = run.outcomes["control-good-book"].record
    assert record["status"] == "done" and record["data"]["title"] == BOOK_TITLE


# ---- DNS answers that change between the check and the connection -----------------------------------


def connects(run: Run) -> list[dict]:
    return [line for line in run.netlog if line["event"] == "connect"]


def test_rebinding_connection_goes_to_the_checked_address(run):
    record = run.outcomes["dns-rebind-after-check"].record
    assert record["status"] == "done" and record["data"]["title"] == BOOK_TITLE  # served via the checked address
    for host in (REBIND_HOST, "www.theguardian.com"):  # nothing but the guard ever resolved them
        lookups = [line for line in run.netlog if line["event"] == "lookup" and line["host"] == host]
        assert lookups and all(line["answer"] == PUBLIC and line["why"] == "guard check" for line in lookups), lookups
    to_public = [line for line in connects(run) if line["target"][0] == PUBLIC]
    assert {line["target"][1] for line in to_public} >= {run.sentinel.port, 443}  # rebind host and theguardian


def test_flipped_dns_answer_is_refused_before_any_connection(run):
    lookups = [line for line in run.netlog if line["event"] == "lookup" and line["host"] == FLIP_HOST]
    assert [line["answer"] for line in lookups][:2] == [PUBLIC, "127.0.0.1"], lookups
    message = run.outcomes["dns-flips-to-loopback-after-first-answer"].record["error"]["message"]
    assert "address 127.0.0.1 is not public" in message
    flip_connects = [line for line in connects(run) if line["target"][1] == run.sentinel.port]
    assert all(line["target"][0] == PUBLIC for line in flip_connects), flip_connects


def test_no_connection_to_a_forbidden_address(run):
    forbidden_ports = {run.sentinel.port, 80, 443}
    bad = [line for line in connects(run) if line["target"][0] != PUBLIC
           and (line["target"][1] in forbidden_ports or line["target"][0] == "169.254.169.254")]
    assert bad == [], bad
    assert run.sentinel.count == 0, run.sentinel.connections


def test_the_shim_would_catch_an_unpinned_connection(run, tmp_path):
    """Control for the rebinding cases: in a process with the same shim, the guard's look-up
    answers the public address while a plain connect by name lands on 127.0.0.1 (a control
    sentinel here, not the module's)."""
    control = Sentinel().start()
    try:
        shim = netshim_config(tmp_path / "control.jsonl", run.site, control)
        script = (f"import socket, guard; print(guard.resolve_public({REBIND_HOST!r}, {control.port}));"
                  f"socket.create_connection(({REBIND_HOST!r}, {control.port}), timeout=5).close()")
        env = {**os.environ, "PYTHONPATH": f"{NETSHIM}{os.pathsep}{PROJECT_ROOT}",
               "METAPARSE_NETSHIM": json.dumps(shim)}
        done = subprocess.run([str(processes.VENV_BIN / "python"), "-c", script], env=env, cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == PUBLIC
        deadline = time.monotonic() + 5
        while control.count < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert control.count == 1
    finally:
        control.stop()


# ---- the worker processes -------------------------------------------------------------------------------


def test_peak_rss_of_workers_and_horses_stays_small(run):
    assert run.sampler.samples > 10 and (run.exits() or run.mode == "inprocess"), "memory was not observed"
    assert run.peak_kib() < PEAK_RSS_LIMIT_MIB * 1024, f"peak RSS {run.peak_kib() / 1024:.0f} MiB"


def test_address_space_backstop_is_set_in_every_worker_process(run):
    assert len(run.limits) >= 1 + WORKERS  # the pool and its workers (and their schedulers)
    expected = str(ADDRESS_SPACE_LIMIT)
    for pid, (soft, hard) in run.limits.items():
        assert soft == expected and hard != "unlimited" and int(hard) >= ADDRESS_SPACE_LIMIT, (pid, soft, hard)


def test_every_horse_got_the_backstop_too(run):
    """Horses are forks of the workers: each reports its RLIMIT_AS as it exits, and the
    sampler read /proc/<pid>/limits of every process it saw in the tree."""
    horses = [o.horse_pid for o in run.outcomes.values() if o.horse_pid]
    if run.mode == "inprocess":
        assert horses == [], "in-process execution forked work-horses"  # the workers' own limit is checked above
        return
    assert len(horses) == len(CASES), "a job was not matched to its work-horse"
    exits = run.exits()
    for pid in horses:
        assert exits[pid]["rlimit_as"] == [ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT], exits[pid]
    seen = run.sampler.limits
    assert len(seen) > 1 + WORKERS and all(soft == str(ADDRESS_SPACE_LIMIT) for soft, _ in seen.values()), seen


def test_the_same_workers_survive_the_whole_batch(run):
    assert run.worker_pids_before and run.worker_pids_before == run.worker_pids_after
    health = requests.get(f"{run.base}/healthz", timeout=5).json()
    # the maintenance ticker comes and goes; no fetch job may be left waiting
    waiting = {name: depth for name, depth in health["queues"].items() if name != "maintenance"}
    assert health["workers"] >= WORKERS and sum(waiting.values()) == health["waiting_for_hosts"] == 0, health


def test_the_sentinel_saw_no_connection_during_the_module(run):
    assert run.sentinel.count == 0, run.sentinel.connections
