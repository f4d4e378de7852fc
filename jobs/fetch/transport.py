"""The low-level safe GET: each hop approved once by the guard, sent over a connection pinned
to the approved address, its body capped; redirects followed by hand.

A Transport knows no politeness: follow() takes a *gate*, a context manager entered around
each hop once the guard approved it (jobs.fetch.fetcher hands in politeness's), held until
the hop's body is read. One Transport per worker process keeps its pinned adapters (and
their keep-alive connections) between jobs, and one TLS context (the CA bundle parsed once)
for all of them. Network exceptions come out raw: callers translate them with
jobs.fetch.failures.fetch_errors, under the fetch's deadline.
"""
from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin

import requests
from urllib3 import exceptions as urllib3_errors

from config import Settings
from errors import BodyTooLarge, FetchTimeout, TooManyRedirects
from guard import Target, approve
from jobs.fetch.failures import check_content_type, check_status
from jobs.fetch.pinning import Deadline, PinnedAdapter, tls_context

REDIRECT_STATUSES = {301, 302, 303, 307, 308}
CHUNK_BYTES = 64 * 1024
REDIRECT_DRAIN_BYTES = 64 * 1024  # a redirect body up to this is read, so its connection is kept
MAX_CACHED_ADAPTERS = 64  # one per (host, address): keep-alive connections live in them

Gate = Callable[[Target, Deadline], contextlib.AbstractContextManager[None]]


def no_gate(target: Target, deadline: Deadline) -> contextlib.AbstractContextManager[None]:
    """A hop with nothing to wait for (no politeness)."""
    return contextlib.nullcontext()


@dataclass
class Page:
    url: str  # the final URL, after redirects
    status: int
    content_type: str | None
    body: bytes
    redirects: list[str] = field(default_factory=list)


class Transport:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.verify: str | bool = settings.fetch_ca_bundle or True
        self.headers = {
            "User-Agent": settings.user_agent,
            "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1",
            "Accept-Encoding": "gzip, deflate",
        }
        self._adapters: dict[tuple, PinnedAdapter] = {}
        self._tls: ssl.SSLContext | None = None  # made on first use: a web process never needs it

    def approve(self, url: str) -> Target:
        """The guard's one decision for a hop to url (FETCH_CONNECT_TO pins a host in advance)."""
        return approve(url, self.settings.fetch_connect_to)

    def follow(self, url: str, deadline: Deadline, gate: Gate = no_gate, as_page: bool = True) -> Page:
        """GET url, following redirects, each hop approved and passed through gate.

        as_page: the answer must be a 2xx HTML page (else HttpStatusError, NotHtml...);
        False: any status and content type come back (a robots.txt, judged by its reader).
        """
        seen: list[str] = []
        for _ in range(self.settings.max_redirects + 1):
            if url in seen:
                raise TooManyRedirects(f"redirect loop back to {url}")
            seen.append(url)
            target = self.approve(url)
            with gate(target, deadline):  # held until the hop's body is read
                response = self.send(target)
                location = response.headers.get("Location")
                if response.status_code not in REDIRECT_STATUSES or not location:
                    return self._page(response, target, seen[:-1], deadline, as_page)
                _discard(response)
            url = urljoin(url, location.strip())
        raise TooManyRedirects(f"more than {self.settings.max_redirects} redirects")

    def send(self, target: Target, method: str = "GET", body: bytes | None = None,
             headers: dict[str, str] | None = None) -> requests.Response:
        """One request to the approved target; the response is streamed (the caller reads it)."""
        request = requests.Request(method, target.url, headers={**self.headers, **(headers or {})},
                                   data=body).prepare()
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        return self._adapter(target).send(request, stream=True, timeout=timeout, verify=self.verify)

    def _adapter(self, target: Target) -> PinnedAdapter:
        """The adapter pinned to this host's approved address."""
        key = (target.parts.scheme, target.host, target.port, target.address)
        if key not in self._adapters:
            if len(self._adapters) >= MAX_CACHED_ADAPTERS:
                self._adapters.pop(next(iter(self._adapters))).close()
            self._adapters[key] = PinnedAdapter(target.address, self._tls_context())
        return self._adapters[key]

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = tls_context(self.verify)
        return self._tls

    def _page(self, response: requests.Response, target: Target, redirects: list[str], deadline: Deadline,
              as_page: bool) -> Page:
        with response:
            content_type = response.headers.get("Content-Type")
            if as_page:
                check_status(response)
                check_content_type(content_type)
            body = self._read_body(response, deadline)
        return Page(url=target.url, status=response.status_code, content_type=content_type, body=body,
                    redirects=redirects)

    def _read_body(self, response: requests.Response, deadline: Deadline) -> bytes:
        """At most max_body_bytes of decoded body (a gzip bomb counts by what it inflates to)."""
        limit = self.settings.max_body_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(f"Content-Length {declared} is over the {limit} byte limit")
        chunks, size = [], 0
        while chunk := response.raw.read1(CHUNK_BYTES, decode_content=True):
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"body is over the {limit} byte limit (decoded)")
            if deadline.expired:
                raise FetchTimeout(f"no complete page within {deadline.seconds:g} s")
            chunks.append(chunk)
        if deadline.expired:
            raise FetchTimeout(f"no complete page within {deadline.seconds:g} s")
        return b"".join(chunks)

    def close(self) -> None:
        for adapter in self._adapters.values():
            adapter.close()
        self._adapters.clear()


def _discard(response: requests.Response) -> None:
    """Drop a redirect's body. A short one (declared length) is read, undecoded and under the
    fetch's deadline, so its keep-alive connection goes back to the pool: the next hop is
    often to the same host, and a new connection costs a TLS handshake."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) <= REDIRECT_DRAIN_BYTES:
        with contextlib.suppress(OSError, urllib3_errors.HTTPError):
            response.raw.read(REDIRECT_DRAIN_BYTES + 1, decode_content=False)
    response.close()
