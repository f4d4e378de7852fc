"""bench/loadgen.py: percentile math, response reading, slots held at a rate, and latency
counted from the due time (no coordinated omission), against tiny local servers."""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from redis import Redis

from bench.loadgen import (
    CannedServer, FreshUrls, HttpClient, HttpTarget, LoadGenerator, Plan, RedisTarget, http_request, percentile,
    summarize,
)


@pytest.fixture(scope="module")
def generator():
    with LoadGenerator(2) as gen:
        yield gen


@pytest.fixture(scope="module")
def canned():
    with CannedServer() as server:
        yield server


@pytest.mark.parametrize("p,expected", [(0, 1), (1, 1), (50, 50), (90, 90), (99, 99), (99.9, 100), (100, 100)])
def test_nearest_rank_percentiles_of_one_to_a_hundred(p, expected):
    assert percentile(list(range(1, 101)), p) == expected


def test_percentiles_of_few_values_are_values_never_interpolations():
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and percentile([1.0, 2.0, 3.0, 4.0], 51) == 3.0
    assert percentile([], 50) is None


def test_summary_counts_every_thread_and_reports_milliseconds():
    sample = {"latencies": [0.001, 0.003], "late": [0.0, 0.002], "done_at": [10.5, 11.0], "errors": 1, "unsent": 2}
    other = {"latencies": [0.002], "late": [0.0], "done_at": [10.8], "errors": 0, "unsent": 0}
    parts = [{"samples": [sample], "cpu": 0.2}, {"samples": [other], "cpu": 0.1}]
    summary = summarize(Plan(duration=1.0, rate=3, warmup=0.0), parts, counted_from=10.0)
    assert summary["requests"] == 3 and summary["p50"] == 2.0 and summary["max"] == 3.0
    assert summary["errors"] == 1 and summary["unsent"] == 2 and summary["late_p99"] == 2.0
    assert summary["rps"] == 3.0 and summary["gen_cpu"] == 0.3  # over max(duration, last answer - start)


def test_fresh_bodies_never_repeat_a_url():
    fresh = FreshUrls("https://www.goodreads.com/book/show/{}", 10, start=1000)
    urls = [url for index in range(50) for url in json.loads(fresh.body(index))]
    assert len(urls) == len(set(urls)) == 500 and urls[0].endswith("/1000")


def test_http_requests_are_keep_alive_http_1_1():
    raw = http_request("POST", "/parse", "127.0.0.1:8000", b"[]")
    assert raw.startswith(b"POST /parse HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n") and raw.endswith(b"\r\n\r\n[]")
    assert b"Content-Length: 2\r\n" in raw and b"Connection: close" not in raw


def serve_once(answers: list[list[bytes]]) -> int:
    """A server for one client: for each request it reads, it sends that answer's chunks
    apart from each other (a response split anywhere), then closes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        connection, _ = listener.accept()
        for chunks in answers:
            connection.recv(65536)
            for chunk in chunks:
                connection.sendall(chunk)
                time.sleep(0.02)
        connection.close()
        listener.close()

    threading.Thread(target=answer, daemon=True).start()
    return listener.getsockname()[1]


def test_the_client_reads_answers_split_anywhere_and_keeps_the_connection():
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    second = b"HTTP/1.1 404 NOT FOUND\r\ncontent-length: 2\r\n\r\n{}"
    port = serve_once([[first[:10], first[10:40], first[40:] + second[:20]], [second[20:]]])
    client = HttpClient(HttpTarget("127.0.0.1", port, ok=(200,)))
    assert client.call(b"GET / HTTP/1.1\r\n\r\n") is True
    assert client.call(b"GET / HTTP/1.1\r\n\r\n") is False  # a 404 is an error of the run
    assert client.sock is not None and client.buffer == b""


def test_a_closed_connection_is_an_error_then_reconnected():
    port = serve_once([[b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"]])
    client = HttpClient(HttpTarget("127.0.0.1", port))
    assert client.call(b"GET / HTTP/1.1\r\n\r\n") is True and client.sock is None  # closed as told
    assert client.call(b"GET / HTTP/1.1\r\n\r\n") is False  # nobody listens any more


def test_a_fixed_rate_sends_exactly_the_due_requests(generator, canned):
    summary = generator.run(canned.target(), Plan(duration=1.0, rate=300, concurrency=4, warmup=0.1))
    assert summary["requests"] == 300 and summary["errors"] == 0 and summary["unsent"] == 0
    assert summary["p50"] <= summary["p90"] <= summary["p99"] <= summary["max"]


def test_latency_counts_from_the_due_time_not_the_send():
    """A server that needs 50 ms per request, one connection, 100 due a second: the open loop
    sees the queue build up (no coordinated omission), the closed loop sees 50 ms."""
    with LoadGenerator(1) as generator, CannedServer(delay=0.05) as slow:
        open_loop = generator.run(slow.target(), Plan(duration=1.0, rate=100, concurrency=1, warmup=0.0))
        closed_loop = generator.run(slow.target(), Plan(duration=0.5, concurrency=1, warmup=0.0))
    assert open_loop["p99"] > 10 * 50 and open_loop["late_p99"] > 10 * 50 and open_loop["unsent"] > 0
    assert 50 <= closed_loop["p50"] < 10 * 50 and closed_loop["late_p99"] == 0


def test_the_redis_baseline_gets_one_key(generator, redis_client, redis_url):
    redis_client.set("bench:key", b"x" * 100)
    found = generator.run(RedisTarget(redis_url, "bench:key"), Plan(duration=0.3, rate=100, concurrency=2))
    missing = generator.run(RedisTarget(redis_url, "bench:missing"), Plan(duration=0.3, concurrency=2))
    assert found["requests"] == 30 and found["errors"] == 0
    assert missing["requests"] > 0 and missing["errors"] == missing["requests"]
    assert isinstance(Redis.from_url(redis_url).get("bench:key"), bytes)
