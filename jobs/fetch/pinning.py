"""Connections pinned to an address chosen in advance, and a watchdog for a fetch's deadline.

PinnedAdapter is a requests transport whose sockets always go to one (ip, port) that the
SSRF guard approved, while TLS (SNI, certificate) and the Host header keep the URL's own
name: so DNS is asked once, by the guard, and a changed answer cannot move the connection.

Deadline shuts down every socket a fetch uses once its wall-clock budget is spent: socket
timeouts alone cannot stop a server that drips one byte per second forever. One watchdog
thread per process does that for every Deadline (a Timer thread per fetch cost ~0.1 ms of
CPU to start and stop, more than the rest of the bookkeeping).

tls_context() is the client TLS context a Transport shares between its connections: the CA
bundle is parsed once, not at every new connection (urllib3 does that when given a path:
~25 ms of CPU for certifi's bundle).
"""
from __future__ import annotations

import math
import os
import socket
import ssl
import threading
import time
from types import TracebackType

from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.ssl_ import create_urllib3_context

_active = threading.local()


class Deadline:
    """A wall-clock budget for one fetch; on expiry it shuts down the sockets it watches."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expires_at = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def __enter__(self) -> "Deadline":
        _active.deadline = self
        _watchdog.add(self)
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        _watchdog.remove(self)
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


class _Watchdog:
    """The process's one thread that expires Deadlines when they are due.

    It sleeps until the earliest live deadline. A deadline that ends in time is only dropped
    from the set (no wake-up): the thread, waking at its time, finds nothing due and sleeps
    on. So in steady work it wakes about once per deadline length, not once per fetch.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._live: set[Deadline] = set()
        self._wake_at = math.inf
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline) -> None:
        with self._changed:
            self._live.add(deadline)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fetch-deadlines", daemon=True)
                self._thread.start()
            elif deadline.expires_at < self._wake_at:
                self._changed.notify()

    def remove(self, deadline: Deadline) -> None:
        with self._changed:
            self._live.discard(deadline)

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for deadline in [d for d in self._live if d.expires_at <= now]:
                    self._live.discard(deadline)
                    deadline._expire()  # quick: it only shuts sockets down
                self._wake_at = min((d.expires_at for d in self._live), default=math.inf)
                self._changed.wait(None if self._wake_at == math.inf else self._wake_at - now)


_watchdog = _Watchdog()


def _new_watchdog_after_fork() -> None:
    """A forked child has no watchdog thread (and may have inherited its lock held)."""
    global _watchdog
    _watchdog = _Watchdog()


os.register_at_fork(after_in_child=_new_watchdog_after_fork)


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


def tls_context(verify: str | bool) -> ssl.SSLContext:
    """A client context trusting what requests' verify= names (True: certifi's bundle), with
    urllib3's defaults (TLS 1.2+, its ciphers, hostname checked)."""
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    where = DEFAULT_CA_BUNDLE_PATH if verify is True else str(verify)
    if os.path.isdir(where):
        context.load_verify_locations(capath=where)
    else:
        context.load_verify_locations(cafile=where)
    return context


class PinnedAdapter(HTTPAdapter):
    """A requests adapter whose every connection goes to one approved (ip, port).

    tls: the context its HTTPS connections use (see tls_context); None: urllib3 builds one
    per connection from verify=, as plain requests does.
    """

    def __init__(self, address: tuple[str, int], tls: ssl.SSLContext | None = None):
        self.address = address
        self.tls = tls
        super().__init__(pool_connections=1, pool_maxsize=2, max_retries=0)

    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        if self.tls is not None:
            kwargs["ssl_context"] = self.tls  # PoolManager drops it for http:// pools
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pinned_pools(self.address)

    def cert_verify(self, conn, url: str, verify, cert) -> None:  # type: ignore[no-untyped-def]
        super().cert_verify(conn, url, verify, cert)
        if self.tls is not None and verify and url.lower().startswith("https"):
            # The CAs are in self.tls already: a path here would be parsed again per connection.
            conn.ca_certs = conn.ca_cert_dir = None
