"""The service's error vocabulary: one home for every failure a caller can see.

Two families:
- ApiError: what the HTTP API answers (a stable code, an HTTP status, a reason).
- JobError: why one job failed. `transient` decides whether RQ retries it.
ParseError (a JobError) is raised by parsers when a page is not what its URL promises.
"""
from __future__ import annotations

from redis.exceptions import ClusterDownError, OutOfMemoryError, ReadOnlyError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Redis errors that mean "storage is not there for us now" (down, hung, loading, failing over,
# full, or refusing our password, which redis-py files under ConnectionError: being fixed or
# rotated): the API answers 503 with Retry-After. Any other Redis error (WRONGTYPE, a script
# error, a command an ACL denies) is a fault: 500, logged with its traceback.
REDIS_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OutOfMemoryError, TryAgainError,
                     ClusterDownError)


def error_body(code: str, message: str) -> dict:
    """The JSON body of every error the service answers, from Flask or from below it (web/edge.py)."""
    return {"error": {"code": code, "message": message}}


class ApiError(Exception):
    """An HTTP error answered as {"error": {"code", "message"}}."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def to_dict(self) -> dict:
        return error_body(self.code, self.message)


def body_too_large(limit: int, size: int | None = None) -> ApiError:
    """413 for a request body over MAX_REQUEST_BYTES, however it was framed; size when it is
    known (a Content-Length), else the body was only read to one byte past the limit."""
    if size is None:
        return ApiError(413, "body_too_large",
                        f"the request body is over {limit:,} bytes, the most (MAX_REQUEST_BYTES)")
    return ApiError(413, "body_too_large", f"the request body is {size:,} bytes; at most {limit:,} (MAX_REQUEST_BYTES)")


class JobError(Exception):
    """A job failure with a short machine-readable code; permanent unless a subclass says otherwise."""

    code = "job_failed"
    transient = False


class ParseError(JobError):
    """The page is not what the URL promises (soft 404, login wall, wrong layout)."""

    code = "parse_error"


class ForeignJob(JobError):
    """A job in Redis the service never enqueues: a function that is not one of its own, a
    method, RQ callbacks or webhooks (jobs/trust.py). Refused before anything is imported."""

    code = "foreign_job"


class FetchError(JobError):
    """The page could not be fetched; permanent (4xx, refused, too big) unless marked transient."""

    code = "fetch_failed"


class TransientFetchError(FetchError):
    """Worth another try later: network errors, timeouts, 429 and 5xx answers."""

    code = "fetch_transient"
    transient = True

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status  # the HTTP status that said "later", when one did


class FetchTimeout(TransientFetchError):
    code = "fetch_timeout"


class HttpStatusError(FetchError):
    code = "http_status"

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class BlockedAddress(FetchError):
    """The SSRF guard refused the target: loopback, private, reserved or an odd spelling."""

    code = "blocked_address"


class BodyTooLarge(FetchError):
    code = "body_too_large"


class NotHtml(FetchError):
    code = "not_html"


class TooManyRedirects(FetchError):
    code = "too_many_redirects"


class RobotsDisallowed(FetchError):
    """The site's robots.txt forbids this page to our User-Agent (or forbids all crawling)."""

    code = "robots_disallowed"


class HostBusy(TransientFetchError):
    """Our own per-host limits (concurrency, spacing) are full: try the job again later."""

    code = "host_busy"


class ConfigError(Exception):
    """A bad setting: start-up stops with this one line."""
