"""Connections pinned to an address chosen in advance, and a watchdog for a fetch's deadline.

PinnedAdapter is a requests transport whose sockets always go to one (ip, port) that the
SSRF guard approved, while TLS (SNI, certificate) and the Host header keep the URL's own
name: so DNS is asked once, by the guard, and a changed answer cannot move the connection.

Deadline shuts down every socket a fetch uses once its wall-clock budget is spent: socket
timeouts alone cannot stop a server that drips one byte per second forever.
"""
from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_active = threading.local()


class Deadline:
    """A wall-clock budget for one fetch; on expiry it shuts down the sockets it watches."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expires_at = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "Deadline":
        _active.deadline = self
        self._timer.start()
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._timer.cancel()
        _active.deadline = None

    def remaining(self) -> float:
        return max(0.0, self.expires_at - time.monotonic())

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: nothing left to stop


def _watch(sock: socket.socket | None) -> None:
    deadline = getattr(_active, "deadline", None)
    if deadline is not None:
        deadline.watch(sock)


class _PinnedMixin:
    """Connect to pinned_address instead of the URL's host; register sockets with the deadline."""

    pinned_address: tuple[str, int]

    def _new_conn(self) -> socket.socket:
        # urllib3 dials (_dns_host, port); TLS and the Host header use `host`, derived from
        # _dns_host only while it is not swapped, so swap both for the dial alone.
        url_target = (self._dns_host, self.port)
        self._dns_host, self.port = self.pinned_address
        try:
            sock = super()._new_conn()
        finally:
            self._dns_host, self.port = url_target
        _watch(sock)
        return sock

    def request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        _watch(self.sock)  # a reused keep-alive socket joins this fetch's deadline too
        return super().request(*args, **kwargs)


def _pinned_pools(address: tuple[str, int]) -> dict[str, type]:
    http_conn = type("PinnedHTTPConnection", (_PinnedMixin, HTTPConnection), {"pinned_address": address})
    https_conn = type("PinnedHTTPSConnection", (_PinnedMixin, HTTPSConnection), {"pinned_address": address})
    return {
        "http": type("PinnedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
        "https": type("PinnedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
    }


class PinnedAdapter(HTTPAdapter):
    """A requests adapter whose every connection goes to one approved (ip, port)."""

    def __init__(self, address: tuple[str, int]):
        self.address = address
        super().__init__(pool_connections=1, pool_maxsize=2, max_retries=0)

    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pinned_pools(self.address)
