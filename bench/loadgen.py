"""A load generator in plain Python: fixed rate (open loop) or fixed concurrency (closed loop).

Why not wrk: a newcomer's machine has Python, not wrk. Why not one thread: one Python
process cannot send 1,000 requests a second with honest latencies on 2 cores, so the work
is spread over a few processes (multiprocessing, spawned once and reused), each running a
few threads, each thread one keep-alive HTTP/1.1 connection on a raw socket with request
bytes built before they are due (no http.client, no header objects).

Open loop (`Plan(rate=...)`): request i is due at start + i / rate, whatever happened to
the requests before it. Its latency is measured from that *due* time, not from when it was
finally sent, so a stalled server shows up as queueing delay on every request it held up
(no coordinated omission). A process's threads take the next due slot when free; `late`
says how long after its due time each request actually left (the generator's or the
connections' lag). Closed loop (`Plan(rate=None, concurrency=C)`): C connections each send
the next request as soon as the last one answered; latency is then the service time.

The generator's own cost is reported: the CPU seconds its processes used per second of
run (`gen_cpu`, in cores), and `calibrate()` runs the same plan against `CannedServer`, a
one-thread server that answers every request with fixed bytes, which gives the floor of
what this generator can measure on this machine.

Targets: `HttpTarget` (fixed requests cycled, or `FreshUrls` bodies built per request) and
`RedisTarget` (redis-py GET of one key: the raw Redis baseline).
"""
from __future__ import annotations

import itertools
import json
import math
import multiprocessing
import re
import resource
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

DRAIN_SECONDS = 2.0  # after the plan ends, late requests may still go out this long
CONNECT_LEAD = 0.3  # seconds between handing a plan to the processes and its start
SOCKET_TIMEOUT = 10.0
HEADER_END = b"\r\n\r\n"
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
CONNECTION_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)


# ---- what to send ---------------------------------------------------------------------------


def http_request(method: str, path: str, host: str, body: bytes = b"", content_type: str = "application/json") -> bytes:
    """The bytes of one keep-alive HTTP/1.1 request."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: metaparse-loadgen\r\nAccept: */*\r\n"
    if body or method == "POST":
        head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


@dataclass(frozen=True)
class FreshUrls:
    """POST bodies of `count` URLs never sent before: request i gets URLs start + i*count ...;
    `template` is formatted with the number."""

    template: str
    count: int
    start: int

    def body(self, index: int) -> bytes:
        first = self.start + index * self.count
        return json.dumps([self.template.format(n) for n in range(first, first + self.count)]).encode()


@dataclass(frozen=True)
class HttpTarget:
    """host:port, and either fixed `requests` (request i is requests[i % len]) or POST `fresh` bodies."""

    host: str
    port: int
    requests: tuple[bytes, ...] = ()
    fresh: FreshUrls | None = None
    path: str = "/parse"
    ok: tuple[int, ...] = (200, 202)

    def request(self, index: int) -> bytes:
        if self.fresh is not None:
            return http_request("POST", self.path, f"{self.host}:{self.port}", self.fresh.body(index))
        return self.requests[index % len(self.requests)]


@dataclass(frozen=True)
class RedisTarget:
    """redis-py GET of one key per request (ok when the key exists)."""

    url: str
    key: str


@dataclass(frozen=True)
class Plan:
    """rate: requests per second in all (None: closed loop); concurrency: connections in all."""

    duration: float
    rate: float | None = None
    concurrency: int = 8
    warmup: float = 0.2  # sent but not counted: connections and caches settle

    def threads(self, processes: int, index: int) -> int:
        """This process's share of the connections."""
        return self.concurrency // processes + (1 if index < self.concurrency % processes else 0)


# ---- clients: one per thread, one connection each ------------------------------------------------


class HttpClient:
    """One keep-alive connection; call(i) sends request i and reads the whole answer."""

    def __init__(self, target: HttpTarget):
        self.target = target
        self.sock: socket.socket | None = None
        self.buffer = b""

    def connect(self) -> None:
        self.sock = socket.create_connection((self.target.host, self.target.port), timeout=SOCKET_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def call(self, payload: bytes) -> bool:
        try:
            if self.sock is None:
                self.connect()
            self.sock.sendall(payload)
            status = self._read_response()
        except OSError:
            self.close()
            return False
        return status in self.target.ok

    def _read_response(self) -> int:
        while (end := self.buffer.find(HEADER_END)) < 0:
            self._receive()
        head = self.buffer[:end]
        length = CONTENT_LENGTH.search(head)
        if length is None:
            raise OSError("an answer without Content-Length")  # Flask and gunicorn always send it here
        total = end + len(HEADER_END) + int(length.group(1))
        while len(self.buffer) < total:
            self._receive()
        self.buffer = self.buffer[total:]
        if CONNECTION_CLOSE.search(head):
            self.close()
        return int(head[9:12])

    def _receive(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise OSError("connection closed by the server")
        self.buffer += chunk


class RedisClient:
    def __init__(self, target: RedisTarget):
        from redis import Redis  # only the processes that drive Redis import it

        self.client = Redis.from_url(target.url, socket_timeout=SOCKET_TIMEOUT)
        self.key = target.key

    def connect(self) -> None:
        self.client.ping()

    def close(self) -> None:
        self.client.close()

    def call(self, payload: object) -> bool:
        try:
            return self.client.get(self.key) is not None
        except Exception:  # noqa: BLE001 (any client error is an error of the run)
            return False


def make_client(target: HttpTarget | RedisTarget) -> HttpClient | RedisClient:
    return HttpClient(target) if isinstance(target, HttpTarget) else RedisClient(target)


def payload_for(target: HttpTarget | RedisTarget, index: int) -> object:
    return target.request(index) if isinstance(target, HttpTarget) else None


# ---- one process's share of a run ---------------------------------------------------------------


@dataclass
class Samples:
    """What one thread saw: latency and lateness (seconds) of each counted request."""

    latencies: list[float] = field(default_factory=list)
    late: list[float] = field(default_factory=list)
    done_at: list[float] = field(default_factory=list)
    errors: int = 0
    unsent: int = 0


@dataclass(frozen=True)
class Slice:
    """This process's part of a plan: it owns indexes index, index + processes, ..."""

    index: int
    processes: int
    start_at: float  # time.monotonic() (CLOCK_MONOTONIC: the same clock in every process)


def run_slice(target: HttpTarget | RedisTarget, plan: Plan, part: Slice) -> dict:
    """Run this process's threads; their samples and this process's CPU seconds."""
    clients = [make_client(target) for _ in range(plan.threads(part.processes, part.index))]
    for client in clients:
        client.connect()  # before the start: connecting is not part of the measurement
    slots = itertools.count()
    samples = [Samples() for _ in clients]
    loop = _open_loop if plan.rate else _closed_loop
    threads = [threading.Thread(target=loop, args=(client, target, plan, part, slots, sample))
               for client, sample in zip(clients, samples)]
    before = _cpu_seconds()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu = _cpu_seconds() - before
    for client in clients:
        client.close()
    return {"samples": [asdict(s) for s in samples], "cpu": cpu}


def _open_loop(client, target, plan: Plan, part: Slice, slots, sample: Samples) -> None:
    counted_from = part.start_at + plan.warmup
    end = counted_from + plan.duration
    for slot in slots:
        index = slot * part.processes + part.index  # global request number
        due = part.start_at + index / plan.rate
        if due >= end:
            return
        payload = payload_for(target, index)  # built before it is due
        now = time.monotonic()
        if now > end + DRAIN_SECONDS:
            sample.unsent += 1  # hopelessly behind: not sent, and said so
            continue
        if due > now:
            time.sleep(due - now)
        sent = time.monotonic()
        ok = client.call(payload)
        _record(sample, ok, due >= counted_from, time.monotonic(), due, sent)


def _closed_loop(client, target, plan: Plan, part: Slice, slots, sample: Samples) -> None:
    counted_from = part.start_at + plan.warmup
    end = counted_from + plan.duration
    _sleep_until(part.start_at)
    for slot in slots:
        payload = payload_for(target, slot * part.processes + part.index)
        sent = time.monotonic()
        if sent >= end:
            return
        ok = client.call(payload)
        _record(sample, ok, sent >= counted_from, time.monotonic(), sent, sent)


def _record(sample: Samples, ok: bool, counted: bool, done: float, due: float, sent: float) -> None:
    if not counted:
        return
    if not ok:
        sample.errors += 1
    sample.latencies.append(done - due)
    sample.late.append(sent - due)
    sample.done_at.append(done)


def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_main(connection) -> None:
    """A generator process: run each (target, plan, slice) it is sent, until it gets None."""
    while True:
        job = connection.recv()
        if job is None:
            return
        try:
            connection.send(run_slice(*job))
        except Exception as exc:  # noqa: BLE001 (reported to the parent, which raises it)
            connection.send({"error": f"{type(exc).__name__}: {exc}"})


# ---- the parent: processes, runs, summaries --------------------------------------------------


class LoadGenerator:
    """`processes` generator processes, spawned once; run() hands each its slice of a plan."""

    def __init__(self, processes: int = 2):
        context = multiprocessing.get_context("spawn")  # no fork of a parent with threads
        self.pipes, self.processes = [], []
        for _ in range(processes):
            parent, child = context.Pipe()
            process = context.Process(target=_process_main, args=(child,), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    def __enter__(self) -> "LoadGenerator":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for pipe, process in zip(self.pipes, self.processes):
            try:
                pipe.send(None)
            except OSError:
                pass
            process.join(5)
            if process.is_alive():
                process.terminate()

    def run(self, target: HttpTarget | RedisTarget, plan: Plan) -> dict:
        """Run the plan; its summary (see summarize())."""
        pipes = self.pipes[:plan.concurrency]  # each process used owns slots, so each needs a connection
        start_at = time.monotonic() + CONNECT_LEAD
        for index, pipe in enumerate(pipes):
            pipe.send((target, plan, Slice(index, len(pipes), start_at)))
        parts = [pipe.recv() for pipe in pipes]
        failed = [part["error"] for part in parts if "error" in part]
        if failed:
            raise RuntimeError(f"load generator process failed: {failed[0]}")
        return summarize(plan, parts, start_at + plan.warmup)


def summarize(plan: Plan, parts: Sequence[dict], counted_from: float) -> dict:
    """rps achieved, latency percentiles in ms, errors, and the generator's own cost."""
    samples = [s for part in parts for s in part["samples"]]
    latencies = sorted(x for s in samples for x in s["latencies"])
    late = sorted(x for s in samples for x in s["late"])
    done = [x for s in samples for x in s["done_at"]]
    span = max(plan.duration, max(done, default=counted_from) - counted_from)
    cpu = sum(part["cpu"] for part in parts)
    return {
        "mode": "rate" if plan.rate else "concurrency", "rate": plan.rate, "concurrency": plan.concurrency,
        "requests": len(latencies), "rps": round(len(latencies) / span, 1),
        **{f"p{p}": ms(percentile(latencies, p)) for p in (50, 90, 99)}, "max": ms(latencies[-1] if latencies else None),
        "errors": sum(s["errors"] for s in samples), "unsent": sum(s["unsent"] for s in samples),
        "late_p99": ms(percentile(late, 99)), "gen_cpu": round(cpu / (plan.warmup + span), 2),
    }


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence: the smallest value with at least p%
    of the values at or below it (p99 of 100 values is the 99th, never an interpolation)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


# ---- the floor: a server that does nothing ------------------------------------------------------


CANNED_BODY = b'{"ok":true}'
CANNED_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                   + str(len(CANNED_BODY)).encode() + b"\r\n\r\n" + CANNED_BODY)


class CannedServer:
    """A one-thread HTTP/1.1 server in its own process answering every request with the same
    bytes after `delay` seconds (requests on one connection are answered in order)."""

    def __init__(self, delay: float = 0.0):
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self.process = context.Process(target=_canned_main, args=(child, delay), daemon=True)
        self.process.start()
        self.port: int = parent.recv()

    def __enter__(self) -> "CannedServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(5)

    def target(self, path: str = "/") -> HttpTarget:
        return HttpTarget("127.0.0.1", self.port, (http_request("GET", path, f"127.0.0.1:{self.port}"),))


def _canned_main(connection, delay: float) -> None:
    import asyncio

    async def serve() -> None:
        server = await asyncio.start_server(lambda r, w: _answer(r, w, delay), "127.0.0.1", 0)
        connection.send(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(serve())


async def _answer(reader, writer, delay: float) -> None:
    import asyncio

    try:
        while True:
            head = await reader.readuntil(HEADER_END)
            length = CONTENT_LENGTH.search(b"\r\n" + head)
            if length:
                await reader.readexactly(int(length.group(1)))
            if delay:
                await asyncio.sleep(delay)
            writer.write(CANNED_RESPONSE)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def calibrate(generator: LoadGenerator, plan: Plan) -> dict:
    """The plan against CannedServer: the latency and CPU floor of the generator itself."""
    with CannedServer() as server:
        return generator.run(server.target(), plan)

