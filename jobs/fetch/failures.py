"""Which project error a failed hop is: the one translation of what requests, urllib3, socket
and ssl raise, and the checks of an answer's status and content type.

Every path that touches the network (a page's hops, a robots.txt's, a callback's POST)
runs inside fetch_errors(deadline), so one exception means one error code wherever it
happened: a job's record, its retries and the host's adapted delay all read that code.
"""
from __future__ import annotations

import email.utils
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import requests
from urllib3 import exceptions as urllib3_errors

from errors import FetchError, FetchTimeout, HttpStatusError, NotHtml, TransientFetchError
from jobs.fetch.pinning import Deadline

TRANSIENT_STATUSES = {408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524}
HTML_TYPES = ("text/html", "application/xhtml+xml")
# What the network layers raise: requests' own (themselves OSErrors), urllib3's from raw
# body reads (not OSErrors), and socket and ssl errors (OSErrors) that slip past both.
NETWORK_ERRORS = (requests.RequestException, urllib3_errors.HTTPError, OSError)
TLS_ERRORS = (requests.exceptions.SSLError, urllib3_errors.SSLError, ssl.SSLError)
TIMEOUTS = (requests.exceptions.Timeout, urllib3_errors.TimeoutError, TimeoutError)


@contextmanager
def fetch_errors(deadline: Deadline) -> Iterator[None]:
    """Let the project's errors through; raise any network exception as the FetchError it means."""
    try:
        yield
    except NETWORK_ERRORS as exc:
        raise as_fetch_error(exc, deadline) from None


def as_fetch_error(exc: BaseException, deadline: Deadline) -> FetchError:
    """The FetchError a network exception means; once the deadline is spent, whatever the
    exception (the watchdog shut the socket down), a timeout."""
    if deadline.expired:
        return FetchTimeout(f"no complete page within {deadline.seconds:g} s")
    if isinstance(exc, urllib3_errors.DecodeError):  # corrupt gzip, too many Content-Encodings
        return FetchError(f"undecodable body: {_first_line(exc)}")
    if isinstance(exc, TLS_ERRORS):
        return FetchError(f"TLS error: {_first_line(exc)}")
    if isinstance(exc, TIMEOUTS):
        return FetchTimeout(f"timed out: {_first_line(exc)}")
    return TransientFetchError(f"network error: {_first_line(exc)}")


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


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
