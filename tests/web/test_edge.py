"""The web tier as the outside world meets it: a real gunicorn with the shipped worker class
(web/edge.py), raw sockets, many loopback source addresses, a real redis-server.

- 500 slow clients for 60 s (header trickle, body trickle, malformed chunked framing) while
  another client's GET /healthz and GET /info are all answered, p99 under 50 ms;
- an incomplete request is answered 408 after REQUEST_READ_TIMEOUT, an idle connection closed;
- one address holds at most MAX_CONNECTIONS_PER_ADDRESS connections;
- what gunicorn refuses before Flask (bad request line, 414, 431, 501, bad chunks) is JSON;
- pipelined requests are all answered, in order;
- a hung Redis (SIGSTOP) turns GET /info and POST /parse into 503 within 1.5 s.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from redis import Redis

from config import PROJECT_ROOT, Settings
from storage import Storage, make_record
from tests.support import processes
from tests.support.exposition import parse_exposition, value
from tests.support.raw_http import (
    parse_response, parse_responses, read_response, read_until_closed, request_bytes, send,
)
from web import edge

pytestmark = pytest.mark.e2e

SOAK_SECONDS = 60
SOAK_CONNECTIONS = 500
PROBE_EVERY = 0.05  # seconds between the measuring client's requests
PROBE_P99_MS = 50.0
BOOK = "https://www.goodreads.com/book/show/1"
INFO = "/info?url=" + quote(BOOK, safe="")
QUICK_TIMEOUT = 2.0  # REQUEST_READ_TIMEOUT of the quick server
QUICK_CAP = 8  # MAX_CONNECTIONS_PER_ADDRESS of the quick server (2 processes: 4 each)


def store_book(redis_url: str) -> None:
    record = make_record(BOOK, "goodreads_book", "done", "1", data={"title": "A Book"})
    Storage(Redis.from_url(redis_url)).save_record(record, 3600)


@pytest.fixture(scope="module")
def shipped_web(module_redis_url, tmp_path_factory):
    """gunicorn as shipped: its processes, connections, timeouts and bounds (no worker needed)."""
    store_book(module_redis_url)
    env = processes.service_env(REDIS_URL=module_redis_url, WEB_WORKERS=str(Settings.web_workers))
    server = processes.start_web(env, tmp_path_factory.mktemp("web") / "web.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def quick_web(module_redis_url, tmp_path_factory):
    """Short read timeout and a small per-address bound, so their tests take seconds."""
    env = processes.service_env(REDIS_URL=module_redis_url, WEB_WORKERS="2", REQUEST_READ_TIMEOUT=str(QUICK_TIMEOUT),
                                MAX_CONNECTIONS_PER_ADDRESS=str(QUICK_CAP))
    server = processes.start_web(env, tmp_path_factory.mktemp("quick") / "web.log")
    yield server
    server.stop()


def connect(port: int, source: str = "127.0.0.2", timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))


def error_code(data: bytes) -> tuple[int, str]:
    answer = parse_response(data)
    assert answer.header("Content-Type") == "application/json", data[:300]
    return answer.status, json.loads(answer.body)["error"]["code"]


# ---- 1. slow clients -------------------------------------------------------------------------


class Probe:
    """Another client, from its own address: GET /healthz and GET /info in turn on a keep-alive
    connection (a new one every 10th request), each request's latency in ms or its error."""

    def __init__(self, port: int):
        self.port = port
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.connection: http.client.HTTPConnection | None = None

    def one(self, index: int) -> None:
        if self.connection is None or index % 10 == 0:
            if self.connection is not None:
                self.connection.close()
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5,
                                                         source_address=("127.0.0.2", 0))
        path = "/healthz" if index % 2 else INFO
        started = time.perf_counter()
        try:
            self.connection.request("GET", path)
            answer = self.connection.getresponse()
            answer.read()
        except (OSError, http.client.HTTPException) as exc:
            self.errors.append(f"{path}: {exc!r}")
            self.connection = None
            return
        self.latencies.append((time.perf_counter() - started) * 1000)
        if answer.status != 200:
            self.errors.append(f"{path}: HTTP {answer.status}")

    def run_while(self, attacker: subprocess.Popen) -> None:
        index = 0
        while attacker.poll() is None:
            self.one(index)
            index += 1
            time.sleep(PROBE_EVERY)

    def p99(self) -> float:
        return statistics.quantiles(self.latencies, n=100)[98]


@contextmanager
def slow_clients(port: int, connections: int, seconds: float) -> Iterator[subprocess.Popen]:
    command = [sys.executable, "-m", "tests.support.slow_clients", str(port), "--connections", str(connections),
               "--seconds", str(seconds)]
    attacker = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        yield attacker
    finally:
        if attacker.poll() is None:
            attacker.kill()
        attacker.wait()


def test_slow_clients_leave_the_service_to_everyone_else(shipped_web):
    probe = Probe(shipped_web.port)
    with slow_clients(shipped_web.port, SOAK_CONNECTIONS, SOAK_SECONDS) as attacker:
        probe.run_while(attacker)
        tally = json.loads(attacker.stdout.read())
    print(f"slow clients: {tally}; probe: {len(probe.latencies)} answered, p50 "
          f"{statistics.median(probe.latencies):.1f} ms, p99 {probe.p99():.1f} ms, max {max(probe.latencies):.1f} ms")
    assert attacker.returncode == 0
    assert tally["most_open"] >= SOAK_CONNECTIONS * 0.95, tally  # the attack really held ~500 at once
    assert tally["longest_held"] < Settings.request_read_timeout + 3, tally  # each cut off by the deadline
    assert tally["endings"].get("408", 0) > SOAK_CONNECTIONS, tally
    refusal_lines = shipped_web.log.read_text().count("REQUEST_READ_TIMEOUT")
    assert 1 <= refusal_lines <= Settings.web_workers * (SOAK_SECONDS / 10 + 2), refusal_lines  # logged, not flooded
    assert not probe.errors, probe.errors[:10]
    assert len(probe.latencies) > SOAK_SECONDS / (PROBE_EVERY + 0.01) * 0.8
    assert probe.p99() < PROBE_P99_MS, f"p99 {probe.p99():.1f} ms, max {max(probe.latencies):.1f} ms"


# ---- 2. the read deadline and the per-address bound ---------------------------------------------

INCOMPLETE = {
    "header": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
    "body": b"POST /parse HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n[\"https://",
    "chunked": b"POST /parse HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n40\r\n[\"ht",
}


@pytest.mark.parametrize("kind", sorted(INCOMPLETE))
def test_an_incomplete_request_is_answered_408_at_the_read_timeout(quick_web, kind):
    with connect(quick_web.port) as sock:
        sock.sendall(INCOMPLETE[kind])
        started = time.monotonic()
        data = read_until_closed(sock)
        waited = time.monotonic() - started
    assert error_code(data) == (408, "request_timeout")
    assert QUICK_TIMEOUT - 0.2 < waited < QUICK_TIMEOUT + 1.5
    assert re.search(r"408 to [0-9.]+: the request was not received", quick_web.log.read_text())  # logged too


def test_a_request_trickled_within_the_timeout_is_served(quick_web):
    with connect(quick_web.port) as sock:
        for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"Connection: close\r\n\r\n"):
            sock.sendall(piece)
            time.sleep(QUICK_TIMEOUT / 5)
        assert parse_response(read_until_closed(sock)).status == 200


def test_an_idle_connection_is_closed_without_an_answer(quick_web):
    with connect(quick_web.port) as sock:
        started = time.monotonic()
        assert read_until_closed(sock) == b""
        assert time.monotonic() - started < QUICK_TIMEOUT + 1.5


def test_one_address_holds_a_bounded_number_of_connections(quick_web):
    opened = [connect(quick_web.port, source="127.0.0.3") for _ in range(QUICK_CAP * 3)]
    try:
        for sock in opened:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # and no more: a held connection stays open
        time.sleep(0.5)  # well within the read timeout: every refusal has arrived
        refused = [sock for sock in opened if answered(sock)]
        for sock in refused:
            answer = read_until_closed(sock)
            assert error_code(answer) == (429, "too_many_connections")
            message = json.loads(parse_response(answer).body)["error"]["message"]
            assert "its share of MAX_CONNECTIONS_PER_ADDRESS" in message
        assert QUICK_CAP / 2 <= len(opened) - len(refused) <= QUICK_CAP, len(refused)
        assert send(quick_web.port, request_bytes("GET", "/healthz")).status == 200  # other addresses are served
    finally:
        for sock in opened:
            sock.close()
    time.sleep(0.3)  # the server notices the closes
    with connect(quick_web.port, source="127.0.0.3") as sock:  # the address's slots came back
        sock.sendall(request_bytes("GET", "/healthz"))
        assert parse_response(read_until_closed(sock)).status == 200


def answered(sock: socket.socket) -> bool:
    """Whether the server has sent something (or closed) on sock, without waiting."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


# ---- 3. errors from below Flask, pipelining ------------------------------------------------------

BELOW_FLASK = {
    "malformed request line": (b"GARBAGE\r\n\r\n", 400, "malformed_request"),
    "over-long URL": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414, "uri_too_long"),
    "header flood": (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(150)) + b"\r\n", 431,
                     "header_fields_too_large"),
    "unsupported transfer coding": (b"POST /parse HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                    b"Transfer-Encoding: br, chunked\r\n\r\n", 501, "unsupported_transfer_coding"),
    "invalid chunk size": (b"POST /parse HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\nZZ\r\n", 400, "malformed_request"),
}


LIMIT_NAMED = {"over-long URL": "> 4094)", "header flood": "more than 100 header fields"}  # what each answer names


@pytest.mark.parametrize("name", sorted(BELOW_FLASK))
def test_errors_gunicorn_answers_are_json(shipped_web, name):
    data, status, code = BELOW_FLASK[name]
    with connect(shipped_web.port) as sock:
        sock.sendall(data)
        answer = read_until_closed(sock)
    assert error_code(answer) == (status, code)
    message = json.loads(parse_response(answer).body)["error"]["message"]
    assert message and LIMIT_NAMED.get(name, message) in message


def test_refusals_are_logged_once_per_code_per_ten_seconds_with_a_count_of_the_rest(monkeypatch):
    """RefusalLog alone, on a clock of our own: an attack's thousands of refusals are one line per
    code per 10 s, and the next line says how many were not written."""
    clock, lines = [1000.0], []
    monkeypatch.setattr(edge, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    refusals = edge.RefusalLog(SimpleNamespace(warning=lambda form, *args: lines.append(form % args)))
    busy = "too_many_connections"
    for elapsed, code in [(0, busy), (0, "uri_too_long"), (1, busy), (9.9, busy), (10.1, busy), (10.2, busy)]:
        clock[0] = 1000.0 + elapsed
        refusals.warning(code, f"{code} at {elapsed}")
    assert lines == [f"{busy} at 0", "uri_too_long at 0",
                     f"{busy} at 10.1 (and 2 more {busy} since the last such line)"]


def refused_count(port: int, code: str) -> float:
    exposed = parse_exposition(send(port, request_bytes("GET", "/metrics")).body.decode())
    return value(exposed, "metaparse_http_refused_total", code=code)


def test_what_the_edge_refuses_is_counted_in_metrics(shipped_web):
    before = refused_count(shipped_web.port, "uri_too_long")
    for _ in range(3):
        with connect(shipped_web.port) as sock:
            sock.sendall(BELOW_FLASK["over-long URL"][0])
            read_until_closed(sock)
    assert refused_count(shipped_web.port, "uri_too_long") == before + 3


def test_pipelined_requests_are_all_answered_in_order(shipped_web):
    body = json.dumps(["not a url"]).encode()
    sent = [request_bytes("GET", "/healthz", keep_alive=True), request_bytes("GET", INFO, keep_alive=True),
            request_bytes("GET", "/no-such-page", keep_alive=True),
            request_bytes("POST", "/parse", {"Content-Type": "application/json"}, body, keep_alive=True),
            request_bytes("GET", INFO)]
    with connect(shipped_web.port) as sock:
        sock.sendall(b"".join(sent))  # one write: the server reads several requests at once
        started = time.monotonic()
        data = read_until_closed(sock)
    assert time.monotonic() - started < 2  # not held until keep-alive ends
    answers = parse_responses(data)
    assert [answer.status for answer in answers] == [200, 200, 404, 400, 200]
    assert [json.loads(answers[i].body)["data"]["title"] for i in (1, 4)] == ["A Book", "A Book"]


# ---- 4. a hung Redis ------------------------------------------------------------------------------


@pytest.fixture
def hung_redis_web(tmp_path):
    """A web server on a Redis of its own, which the test may stop (SIGSTOP)."""
    with processes.web_on_own_redis(tmp_path, WEB_WORKERS="2") as (server, redis):
        yield server, redis


def test_a_hung_redis_is_answered_503_within_a_second_and_a_half(hung_redis_web):
    server, redis = hung_redis_web
    for _ in range(4):  # every gunicorn process has its Redis connections open
        assert send(server.port, request_bytes("GET", INFO)).status == 404
    os.kill(redis.process.pid, signal.SIGSTOP)
    body = json.dumps([BOOK]).encode()
    for method, target, payload in [("GET", INFO, b""), ("POST", "/parse", body)] * 3:
        started = time.monotonic()
        answer = send(server.port, request_bytes(method, target, {"Content-Type": "application/json"}, payload))
        waited = time.monotonic() - started
        assert answer.status == 503, (method, answer.status, answer.body[:200])
        assert json.loads(answer.body)["error"]["code"] == "redis_unavailable"
        assert answer.header("Retry-After")
        assert waited < 1.5, (method, waited)


def test_a_client_that_hangs_up_mid_body_is_not_answered_or_logged_as_an_error(quick_web):
    with connect(quick_web.port) as sock:
        sock.sendall(INCOMPLETE["body"])
        time.sleep(0.2)
    time.sleep(0.5)  # the server reads the end of the stream
    log = quick_web.log.read_text()
    assert "Traceback" not in log and "ERROR" not in log, log[-2000:]
    assert '"POST /parse' not in log  # no handler ran on the half body


def test_idle_connections_do_not_hold_a_stopping_server(module_redis_url, tmp_path):
    """gunicorn stopping (SIGTERM, as honcho and docker stop it) with connections idle before
    their first request and between requests: they are closed at once, not waited for. A
    request being read meanwhile (on a connection that was idle before it) is answered."""
    web = processes.start_web(processes.service_env(REDIS_URL=module_redis_url, WEB_WORKERS="2"), tmp_path / "web.log")
    idle, busy = [connect(web.port) for _ in range(4)], connect(web.port)
    for sock in [*idle[2:], busy]:
        sock.sendall(request_bytes("GET", "/healthz", keep_alive=True))
        assert read_response(sock).status == 200
    in_progress = request_bytes("GET", "/healthz")
    busy.sendall(in_progress[:20])
    time.sleep(1.0)  # the server has read the first bytes (even on a loaded box): the request is being read
    started = time.monotonic()
    os.killpg(web.process.pid, signal.SIGTERM)
    try:
        assert [read_until_closed(sock) for sock in idle] == [b""] * len(idle)  # closed at once, unanswered
        busy.sendall(in_progress[20:])
        assert parse_response(read_until_closed(busy)).status == 200
    finally:
        web.stop()
    assert time.monotonic() - started < 4  # not keepalive (5 s) or REQUEST_READ_TIMEOUT (10 s)
    for sock in [*idle, busy]:
        sock.close()
