"""Slow clients, as an attacker runs them: many connections that each send a request too
slowly to ever finish, reopened as soon as the server lets one go.

Three kinds, dealt out in turn over the connections:
- header: a request line, then one byte of a header every 2-5 s (slowloris);
- body: POST /parse with Content-Length 60,000, then one byte of the body a second;
- chunked: POST /parse with chunked framing that is malformed and slow (a chunk that never
  ends, then a trickle of bytes that are no chunk size).

Run as a process of its own, so the client measuring the service meanwhile is not slowed
by this one's work: `python -m tests.support.slow_clients PORT --connections 500 --seconds 60
--addresses 20`. Connections come from 127.0.0.10 onwards (`--addresses` of them, dealt out
in turn), so the service's per-address bound is not what stops them. It prints one JSON
line: connections opened, how each ended (408, another status, closed without an answer),
the most open at once and the longest a connection was held.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field

KINDS = ("header", "body", "chunked")
FIRST_ADDRESS = 10  # 127.0.0.10: the other loopback addresses are left to the measuring client
BODY_LENGTH = 60_000


@dataclass
class Tally:
    opened: int = 0
    open_now: int = 0
    most_open: int = 0
    longest_held: float = 0.0
    endings: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"opened": self.opened, "most_open": self.most_open, "longest_held": round(self.longest_held, 1),
                "endings": dict(self.endings)}


def request_head(kind: str) -> bytes:
    if kind == "header":
        return b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    framing = f"Content-Length: {BODY_LENGTH}" if kind == "body" else "Transfer-Encoding: chunked"
    head = f"POST /parse HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    return head.encode() + (random.choice(CHUNKED_STARTS) if kind == "chunked" else b"[")


# A chunk that promises 64 bytes and gets them one by one; a chunk-size line that never ends.
CHUNKED_STARTS = (b"40\r\n[\"ht", b"f")


def next_drip(kind: str) -> tuple[bytes, float]:
    """The next byte a connection of this kind sends, and how long it waits before."""
    if kind == "header":
        return b"X", random.uniform(2.0, 5.0)
    if kind == "body":
        return b" ", 1.0
    return b"f", random.uniform(1.0, 3.0)


async def hold_one(port: int, address: str, kind: str, tally: Tally, until: float) -> None:
    """One connection, trickling until the server ends it or the run is over."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
    opened = time.monotonic()
    tally.opened += 1
    tally.open_now += 1
    tally.most_open = max(tally.most_open, tally.open_now)
    answer = asyncio.ensure_future(reader.read(64))
    try:
        writer.write(request_head(kind))
        while time.monotonic() < until:
            data, wait = next_drip(kind)
            done, _ = await asyncio.wait({answer}, timeout=min(wait, max(0.0, until - time.monotonic())))
            if done:
                tally.endings[ending(answer)] += 1
                return
            writer.write(data)
        tally.endings["still open at the end"] += 1
    finally:
        tally.longest_held = max(tally.longest_held, time.monotonic() - opened)
        tally.open_now -= 1
        answer.cancel()
        writer.close()


def ending(answer: asyncio.Future) -> str:
    """How the server ended a connection: its status, or that it closed or reset it."""
    if answer.exception() is not None:
        return "reset"
    data = answer.result()
    if not data:
        return "closed"
    return data.split(b" ", 2)[1].decode(errors="replace") if data.startswith(b"HTTP/") else "garbage"


async def keep_holding(port: int, address: str, kind: str, tally: Tally, until: float) -> None:
    """Reconnect at once whenever the server lets the connection go."""
    while time.monotonic() < until:
        try:
            await hold_one(port, address, kind, tally, until)
        except OSError as exc:
            tally.endings[f"connect failed: {exc.__class__.__name__}"] += 1
            await asyncio.sleep(0.2)


async def attack(port: int, connections: int, seconds: float, addresses: int) -> Tally:
    tally, until = Tally(), time.monotonic() + seconds
    kinds, hosts = itertools.cycle(KINDS), itertools.cycle(range(FIRST_ADDRESS, FIRST_ADDRESS + addresses))
    holders = []
    for _ in range(connections):
        holders.append(asyncio.ensure_future(keep_holding(port, f"127.0.0.{next(hosts)}", next(kinds), tally, until)))
        await asyncio.sleep(0.002)  # a ramp of one second, not one burst
    await asyncio.gather(*holders)
    return tally


def main(argv: list[str] | None = None) -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("port", type=int)
    options.add_argument("--connections", type=int, default=500)
    options.add_argument("--seconds", type=float, default=60.0)
    options.add_argument("--addresses", type=int, default=20)
    args = options.parse_args(argv)
    tally = asyncio.run(attack(args.port, args.connections, args.seconds, args.addresses))
    print(json.dumps(tally.as_dict()), flush=True)


if __name__ == "__main__":
    main()
