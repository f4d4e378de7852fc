"""Per-client rate limits (flask-limiter), counted in the service's own Redis.

The counters live in Redis, so every gunicorn worker (and every web host on the same
Redis) shares them. They use the app's Redis connection pool: the same REDIS_URL,
password, TLS settings and short timeouts as the rest of the API.

Who is "a client":
- a request carrying one of API_TOKENS as `Authorization: Bearer <token>` is counted by
  that token (hashed, so no token is written to Redis);
- anything else by its address. A token that is not in API_TOKENS counts as the address:
  otherwise a caller could get a fresh bucket per invented token.

The address is request.remote_addr, the TCP peer. Behind a reverse proxy that is the
proxy, for every client: set TRUSTED_PROXIES=n (the number of proxies in front, each of
which appends to X-Forwarded-For) and werkzeug's ProxyFix reads the client's address
from there. Never set it without such proxies: clients could then choose their address.

Two buckets per client, each shared by the endpoints it covers:
- RATE_LIMIT_WRITE (default 60/minute): POST and DELETE (/parse, /parseGoodreadsLinks,
  /batches/<id>/cancel, DELETE /jobs/<id> and /records);
- RATE_LIMIT_READ (default 600/minute): GET and HEAD.
Not limited: /healthz and /metrics (probes and scrapers), /rqstatus (the operator, behind
its own auth), static files, and unknown routes (cheap 404s). RATE_LIMITS=false turns
limiting off.

Every counted answer says where its client stands, in the headers of the IETF draft
draft-ietf-httpapi-ratelimit-headers-07 (the separate fields, not draft 08's combined
RateLimit field):
    RateLimit-Limit: 60            requests the bucket's tightest limit allows per window
    RateLimit-Remaining: 59        requests left in it now
    RateLimit-Reset: 1             seconds until the window lets another request through
    RateLimit-Policy: 60;w=60      every limit of the bucket, quota;w=window in seconds
They cost one more Redis read per request (the window's state after counting). Uncounted
answers (exempt endpoints, limits skipped while Redis is away) carry none.

Over a limit: 429 {"error": {"code": "rate_limited", "message": ...}} naming the limit and
its setting, e.g. "at most 60 per 1 minute (RATE_LIMIT_WRITE)", with Retry-After in seconds.

Redis away: fail open. A Redis error while counting skips the limits for
BREAKER_SECONDS (logged once), so requests are neither turned into 500s nor slowed by a
second wait for Redis each: an endpoint that needs Redis (API_BLUEPRINTS: api, records, control, seed) answers its
503 at once, from the limiter's own error, and one that does not (/docs, the web page)
keeps working. Not flask-limiter's in-memory fallback: per-process counts would let N
workers allow N times the limit anyway, and they outlive Redis's return by up to half a
minute.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time

from flask import Flask, Response, current_app, jsonify, request
from flask_limiter import ApplicationLimit, Limiter
from flask_limiter.errors import RateLimitExceeded
from limits.errors import StorageError
from redis.exceptions import RedisError
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Settings
from web.dashboard import routed_to_dashboard
from errors import REDIS_UNAVAILABLE, error_body
from keys import RATE_LIMITS

log = logging.getLogger(__name__)

BREAKER_SECONDS = 5.0  # how long limits are skipped after a Redis error
STRATEGY = "sliding-window-counter"  # no double burst at a fixed window's edge; two counters per key
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
READ_METHODS = ("GET", "HEAD")
EXEMPT_ENDPOINTS = frozenset({"api.healthz", "metrics"})
API_BLUEPRINTS = frozenset({"api", "records", "seed", "control"})  # every endpoint of these reads or writes Redis


def init_app(app: Flask, settings: Settings) -> Limiter | None:
    """Trust the configured proxies, then count requests per client (unless RATE_LIMITS=false)."""
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)
    if not settings.rate_limits:
        return None
    limiter = FailOpenLimiter(
        client_key,
        application_limits=[
            ApplicationLimit(settings.rate_limit_write, scope="write", methods=WRITE_METHODS),
            ApplicationLimit(settings.rate_limit_read, scope="read", methods=READ_METHODS),
        ],
        strategy=STRATEGY,
        storage_uri="redis://",  # a placeholder: the client below is the one used
        storage_options={"connection_pool": app.config["REDIS"].connection_pool, "key_prefix": RATE_LIMITS},
        swallow_errors=False,  # FailOpenLimiter decides what a Redis error means
    )
    limiter.request_filter(is_exempt)
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, lambda exc: rate_limited(limiter, exc))
    app.after_request(lambda response: add_ratelimit_headers(limiter, response))
    return limiter


class FailOpenLimiter(Limiter):
    """A Limiter that lets requests through, for BREAKER_SECONDS, once its Redis fails."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skip_until = 0.0  # time.monotonic() before which limits are not counted

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        if time.monotonic() < self.skip_until:
            return
        try:
            super()._check_request_limit(callable_name, in_middleware)
        except (RedisError, StorageError, OSError) as exc:
            self.skip_until = time.monotonic() + BREAKER_SECONDS
            log.warning("rate limits skipped for %s s: Redis unavailable (%s)", BREAKER_SECONDS, exc)
            if request.blueprint in API_BLUEPRINTS and redis_unavailable(exc):
                raise  # the API needs Redis anyway: its 503 now, not after a second wait


def redis_unavailable(exc: BaseException) -> bool:
    """exc is, or wraps (limits' StorageError), Redis being away or hung."""
    return isinstance(exc, REDIS_UNAVAILABLE) or isinstance(exc.__cause__, REDIS_UNAVAILABLE)


def client_key() -> str:
    """The bucket owner: a known API token (hashed), else the client's address."""
    token = known_token()
    if token is not None:
        return "token:" + hashlib.sha256(token).hexdigest()[:32]
    return "addr:" + (request.remote_addr or "unknown")


def known_token() -> bytes | None:
    """The request's Bearer token when it is one of API_TOKENS, as bytes."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    presented = token.strip().encode()  # bytes: compare_digest refuses non-ASCII str
    if scheme.lower() != "bearer" or not presented:
        return None
    tokens = current_app.config["SETTINGS"].api_tokens
    return presented if any(hmac.compare_digest(presented, t.encode()) for t in tokens) else None


def is_exempt() -> bool:
    """By the endpoint Flask routed to, not by the path's spelling."""
    return request.endpoint in EXEMPT_ENDPOINTS or routed_to_dashboard()


def rate_limited(limiter: Limiter, exc: RateLimitExceeded):
    wait = retry_after_seconds(limiter, exc)
    setting = "RATE_LIMIT_WRITE" if request.method in WRITE_METHODS else "RATE_LIMIT_READ"
    message = f"too many requests: this client may make at most {exc.limit.limit} ({setting}); retry in {wait} s"
    return jsonify(error_body("rate_limited", message)), 429, {"Retry-After": str(wait)}


def add_ratelimit_headers(limiter: Limiter, response: Response) -> Response:
    """RateLimit-Limit, -Remaining, -Reset and -Policy on an answer whose request was counted."""
    try:
        tightest = tightest_window(limiter)
    except (RedisError, StorageError, OSError):
        return response  # Redis went away since it counted: the answer matters more than its headers
    if tightest is None:
        return response
    amount, reset_at, remaining = tightest
    response.headers["RateLimit-Limit"] = str(amount)
    response.headers["RateLimit-Remaining"] = str(max(0, remaining))
    response.headers["RateLimit-Reset"] = str(max(0, math.ceil(reset_at - time.time())))
    response.headers["RateLimit-Policy"] = ", ".join(
        f"{each.limit.amount};w={each.limit.get_expiry()}" for each in limiter.current_limits)
    return response


def tightest_window(limiter: Limiter) -> tuple[int, float, int] | None:
    """(amount, reset time, remaining) of the counted limit with the fewest requests left (the
    later reset on a tie): with "10/second;500/hour" the hour binds once 495 are spent, though
    Flask-Limiter's current_limit is the one with the shortest window. None: nothing counted."""
    windows = [(each.limit.amount, *each.window) for each in limiter.current_limits]
    return min(windows, key=lambda window: (window[2], -window[1]), default=None)


def retry_after_seconds(limiter: Limiter, exc: RateLimitExceeded) -> int:
    """Seconds until the breached limit lets a request through again: 1 to the window's length."""
    window = exc.limit.limit.get_expiry()
    try:
        reset_at = limiter.current_limit.window.reset_time if limiter.current_limit else None
    except (RedisError, StorageError, OSError):
        reset_at = None  # Redis went away since it counted: the window's length is an upper bound
    if reset_at is None:
        return window
    return min(window, max(1, math.ceil(reset_at - time.time())))
