"""Safe fetching: every hop re-validated, connections pinned, size and time bounded.

One Fetcher per worker process keeps its pinned adapters (and their keep-alive
connections) between jobs, and one TLS context (the CA bundle parsed once) for all of
them. fetch(url) follows redirects by hand so that each hop passes
the SSRF guard again, reads at most max_body_bytes of decoded body (a gzip bomb counts
by what it inflates to) and gives up when the fetch's wall-clock deadline is spent.
"""
from __future__ import annotations

import contextlib
import email.utils
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urljoin

import requests
from urllib3 import exceptions as urllib3_errors

from config import Settings
from errors import (
    BodyTooLarge,
    FetchError,
    FetchTimeout,
    HttpStatusError,
    NotHtml,
    TooManyRedirects,
    TransientFetchError,
)
from guard import check_url_shape, resolve_public
from jobs.pinning import Deadline, PinnedAdapter, tls_context

if TYPE_CHECKING:  # politeness needs Redis; a Fetcher without it works alone
    from jobs.politeness import Politeness

REDIRECT_STATUSES = {301, 302, 303, 307, 308}
TRANSIENT_STATUSES = {408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524}
HTML_TYPES = ("text/html", "application/xhtml+xml")
CHUNK_BYTES = 64 * 1024
REDIRECT_DRAIN_BYTES = 64 * 1024  # a redirect body up to this is read, so its connection is kept
MAX_CACHED_ADAPTERS = 64  # one per (host, address): keep-alive connections live in them
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass
class Page:
    url: str  # the final URL, after redirects
    status: int
    content_type: str | None
    body: bytes
    redirects: list[str] = field(default_factory=list)


class Fetcher:
    def __init__(self, settings: Settings, politeness: Politeness | None = None):
        self.settings = settings
        self.politeness = politeness  # per-host limits and robots.txt for fetch(); never for post()
        self.verify: str | bool = settings.fetch_ca_bundle or True
        self.headers = {
            "User-Agent": settings.user_agent,
            "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1",
            "Accept-Encoding": "gzip, deflate",
        }
        self._adapters: dict[tuple, PinnedAdapter] = {}
        self._tls: ssl.SSLContext | None = None  # made on first use: a web process never needs it

    def fetch(self, url: str) -> Page:
        """The page at url, or a FetchError that says why not."""
        with Deadline(self.settings.fetch_deadline) as deadline:
            try:
                return self._follow(url, deadline)
            except FetchError:
                raise
            except (requests.RequestException, OSError) as exc:
                raise self._network_error(exc, deadline) from None

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST body to url under the same guard and deadline; redirects are not followed.

        Returns the 2xx status; raises TransientFetchError (network, 429, 5xx) or FetchError.
        """
        with Deadline(self.settings.fetch_deadline) as deadline:
            try:
                with self._send(url, "POST", body, headers) as response:
                    check_status(response, receiver_asks_again)
                    return response.status_code
            except FetchError:
                raise
            except (requests.RequestException, OSError) as exc:
                raise self._network_error(exc, deadline) from None

    def fetch_robots(self, url: str, deadline: Deadline) -> Page:
        """A robots.txt within the caller's deadline, by the same guard, pinning and body cap;
        any status and content type come back for jobs.politeness to judge."""
        try:
            return self._follow(url, deadline, robots_file=True)
        except FetchError:
            raise
        except (requests.RequestException, OSError) as exc:
            raise self._network_error(exc, deadline) from None

    def check_target(self, url: str) -> None:
        """BlockedAddress unless the guard lets url be fetched now (its host is resolved)."""
        self._adapter(check_url_shape(url))

    def _follow(self, url: str, deadline: Deadline, robots_file: bool = False) -> Page:
        seen: list[str] = []
        for _ in range(self.settings.max_redirects + 1):
            if url in seen:
                raise TooManyRedirects(f"redirect loop back to {url}")
            seen.append(url)
            with self._polite(url, deadline, robots_file):  # held until the hop's body is read
                response = self._send(url)
                location = response.headers.get("Location")
                if response.status_code not in REDIRECT_STATUSES or not location:
                    return self._page(response, url, seen[:-1], deadline, checked=not robots_file)
                _discard(response)
            url = urljoin(url, location.strip())
        raise TooManyRedirects(f"more than {self.settings.max_redirects} redirects")

    def _send(self, url: str, method: str = "GET", body: bytes | None = None,
              headers: dict[str, str] | None = None) -> requests.Response:
        parts = check_url_shape(url)
        adapter = self._adapter(parts)
        request = requests.Request(method, url, headers={**self.headers, **(headers or {})}, data=body).prepare()
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        return adapter.send(request, stream=True, timeout=timeout, verify=self.verify)

    def _adapter(self, parts: SplitResult) -> PinnedAdapter:
        """The adapter pinned to this host's approved address (DNS asked once per fetch)."""
        host = (parts.hostname or "").lower()
        port = parts.port or DEFAULT_PORTS[parts.scheme]
        address = self.settings.fetch_connect_to.get((host, port)) or (resolve_public(host, port), port)
        key = (parts.scheme, host, port, address)
        if key not in self._adapters:
            if len(self._adapters) >= MAX_CACHED_ADAPTERS:
                self._adapters.pop(next(iter(self._adapters))).close()
            self._adapters[key] = PinnedAdapter(address, self._tls_context())
        return self._adapters[key]

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = tls_context(self.verify)
        return self._tls

    def _polite(self, url: str, deadline: Deadline, robots_file: bool) -> contextlib.AbstractContextManager[None]:
        if self.politeness is None:
            return contextlib.nullcontext()
        return self.politeness.hop(self, url, deadline, robots_file)

    def _page(self, response: requests.Response, url: str, redirects: list[str], deadline: Deadline,
              checked: bool = True) -> Page:
        with response:
            content_type = response.headers.get("Content-Type")
            if checked:  # a robots.txt is judged by jobs.politeness, whatever its status and type
                check_status(response)
                check_content_type(content_type)
            body = self._read_body(response, deadline)
        return Page(url=url, status=response.status_code, content_type=content_type, body=body, redirects=redirects)

    def _read_body(self, response: requests.Response, deadline: Deadline) -> bytes:
        limit = self.settings.max_body_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(f"Content-Length {declared} is over the {limit} byte limit")
        chunks, size = [], 0
        try:
            while chunk := response.raw.read1(CHUNK_BYTES, decode_content=True):
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(f"body is over the {limit} byte limit (decoded)")
                if deadline.expired:
                    raise FetchTimeout(f"no complete page within {deadline.seconds:g} s")
                chunks.append(chunk)
        except urllib3_errors.HTTPError as exc:  # raw reads raise urllib3's own: reset, truncated, undecodable
            raise self._network_error(exc, deadline) from None
        if deadline.expired:
            raise FetchTimeout(f"no complete page within {deadline.seconds:g} s")
        return b"".join(chunks)

    def _network_error(self, exc: Exception, deadline: Deadline) -> FetchError:
        if deadline.expired:
            return FetchTimeout(f"no complete page within {deadline.seconds:g} s")
        if isinstance(exc, urllib3_errors.DecodeError):  # corrupt gzip, too many Content-Encodings
            return FetchError(f"undecodable body: {_first_line(exc)}")
        if isinstance(exc, (requests.exceptions.SSLError, urllib3_errors.SSLError)):
            return FetchError(f"TLS error: {_first_line(exc)}")
        if isinstance(exc, (requests.exceptions.Timeout, urllib3_errors.TimeoutError)):
            return FetchTimeout(f"timed out: {_first_line(exc)}")
        return TransientFetchError(f"network error: {_first_line(exc)}")

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


def check_status(response: requests.Response,
                 transient: Callable[[int], bool] = TRANSIENT_STATUSES.__contains__) -> None:
    """Return for 2xx; a redirect reaching here was not followed, so it fails like a 4xx. A
    status transient(status) calls for a later try (a page's own set by default)."""
    status = response.status_code
    if 200 <= status < 300:
        return
    if transient(status):
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise TransientFetchError(f"HTTP {status} from {response.url}", retry_after=retry_after, status=status)
    raise HttpStatusError(status, f"HTTP {status} from {response.url}")


def receiver_asks_again(status: int) -> bool:
    """A receiver of POSTs asks for a later try with 429 or any 5xx (README: completion
    callbacks); any other answer, a redirect included, is final."""
    return status == 429 or 500 <= status < 600


def check_content_type(content_type: str | None) -> None:
    """Only HTML is parsed; a missing Content-Type is given the benefit of the doubt."""
    media_type = (content_type or "text/html").split(";")[0].strip().lower()
    if media_type not in HTML_TYPES:
        raise NotHtml(f"content type {media_type!r} is not HTML")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    parsed = email.utils.parsedate_tz(value)
    return max(0.0, email.utils.mktime_tz(parsed) - time.time()) if parsed else None


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
