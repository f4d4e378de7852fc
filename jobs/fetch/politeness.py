"""Fetch politeness shared by every worker process: a job's turn on its host, adaptive
per-host delays, robots.txt, and slots and spacing for the hops outside a turn.

Page jobs reach a worker through the frontier (jobs/frontier.py) only when their host may
be fetched: the job then holds a *turn* on that host (Politeness.turn, around its fetch).
The Fetcher enters Politeness.hop() around every hop of a fetch, once the guard approved
the hop (redirects go to other hosts, so each hop is judged on its own host). A hop, in order:

1. robots.txt (when ROBOTS_TXT is on, for a page's hop): the URL is checked against its
   origin's rules (jobs/fetch/robots.py), cached in Redis for ROBOTS_CACHE_SECONDS. When
   they are not cached, the file is read by the RobotsReader the hop was handed: a GET on
   the low-level safe path whose own hops enter hop() with no reader (RFC 9309 always
   allows robots.txt), so a robots.txt never asks for another one.
2. On the host of the job's turn: nothing to wait for. The first request is the turn's
   own start; each further one (the page after its robots.txt, a same-host redirect)
   moves the host's next start one delay on (BORROW_START), so the host still sees one
   request per delay on average. When the turn ends (the fetch returned or failed),
   FINISH_TURN frees its slot and adapts the host's delay: at least delay_floor() (the
   host's setting or its robots.txt Crawl-delay, capped), doubled on 429/503 or a timeout,
   else halfway towards the turn's latency / FETCH_HOST_CONCURRENCY (AutoThrottle).
3. On any other host (a redirect elsewhere; a job run outside the frontier): a
   concurrency slot, at most FETCH_HOST_CONCURRENCY hops to one hostname at a time, across
   all processes and machines (a lease token in a Redis sorted set scored by its expiry,
   taken by a Lua script that first drops expired leases, so a killed worker's slot frees
   itself after FETCH_DEADLINE + a margin), then spacing: a Lua script reserves the next
   start, FETCH_HOST_DELAY (or the host's adapted delay) after the last, and a short wait
   is slept. Waiting is bounded (MAX_WAIT_SECONDS, and half of what is left of the fetch's
   deadline): a host that stays busy raises HostBusy, a transient error, so RQ retries the
   job later with backoff instead of a worker blocking on one host.

Callbacks (Fetcher.post) never come here: they go to the submitter's own receiver, which
asked for them, so neither robots.txt nor the per-host limits apply to them.
"""
from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

from config import Settings
from errors import FetchTimeout, HostBusy, TransientFetchError
from guard import Target, check_url_shape
from jobs import frontier
from jobs.fetch.pinning import Deadline
from jobs.fetch.robots import (
    Cached,
    Robots,
    RobotsReader,
    RobotsVerdict,
    cached_verdict,
    origin_of,
    read_cached_verdict,
)
from storage import host_delay_key, host_next_start_key, host_slots_key, robots_key

log = logging.getLogger("jobs.politeness")  # the logger name its lines have always carried

MAX_WAIT_SECONDS = 5.0  # longest a hop waits for a slot and its turn before HostBusy
LEASE_MARGIN_SECONDS = 5.0  # a lease outlives the fetch deadline by this much
POLL_SECONDS = 0.05  # how often a waiting hop asks for a free slot again
SLOW_DOWN_STATUSES = {429, 503}  # answers that double the host's delay (with a fetch timeout)

# take_slot(lease set, token, limit, lease ms): 1 when the slot is taken.
_TAKE_SLOT = """
local function take_slot(key, token, limit, lease_ms)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= limit then
    return 0
  end
  redis.call('ZADD', key, now + lease_ms, token)
  redis.call('PEXPIRE', key, lease_ms)
  return 1
end
"""
# KEYS[1]: a host's lease set. ARGV: token, limit, lease ms. 1 when the slot is taken.
ACQUIRE_SLOT = _TAKE_SLOT + "return take_slot(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))\n"
# KEYS[1]: a host's lease set, KEYS[2]: a value to read first (a robots.txt verdict). ARGV as
# above. {value, its TTL, 1 when a slot was taken}; no value: {nil, 0, 0} and no slot taken.
READ_THEN_ACQUIRE_SLOT = _TAKE_SLOT + """
local value = redis.call('GET', KEYS[2])
if not value then
  return {false, 0, 0}
end
return {value, redis.call('TTL', KEYS[2]), take_slot(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))}
"""

# KEYS[1]: a host's earliest next start (ms, Redis clock), KEYS[2]: its adapted delay (ms).
# ARGV: delay ms when none adapted, max wait ms.
# Returns {reserved, wait ms}: the start is reserved only when the wait is acceptable.
RESERVE_START = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local start = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local wait = start - now
if wait > tonumber(ARGV[2]) then
  return {0, wait}
end
local delay = tonumber(redis.call('GET', KEYS[2]) or ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', start + delay), 'PX', string.format('%d', wait + delay))
return {1, wait}
"""


class HostSlots:
    """A Redis-backed counting semaphore per hostname, with leases that expire."""

    def __init__(self, redis: Redis, limit: int, lease_seconds: float):
        self.redis = redis
        self.limit = limit
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self._acquire = redis.register_script(ACQUIRE_SLOT)
        self._read_then_acquire = redis.register_script(READ_THEN_ACQUIRE_SLOT)

    def try_acquire(self, host: str) -> str | None:
        """A lease token when a slot was free, else None; never waits."""
        token = uuid.uuid4().hex
        taken = self._acquire(keys=[host_slots_key(host)], args=[token, self.limit, self.lease_ms])
        return token if taken else None

    def try_acquire_after_reading(self, host: str, key: str) -> tuple[bytes | None, int, str | None]:
        """In one round trip: the value at key and its TTL, and, only when the value exists,
        a lease token if a slot was free (else None). Never waits."""
        token = uuid.uuid4().hex
        value, ttl, taken = self._read_then_acquire(
            keys=[host_slots_key(host), key], args=[token, self.limit, self.lease_ms])
        return value, int(ttl), (token if taken else None)

    def acquire(self, host: str, wait_seconds: float) -> str:
        """A lease token, polling up to wait_seconds; HostBusy when none frees up."""
        give_up = time.monotonic() + wait_seconds
        while (token := self.try_acquire(host)) is None:
            left = give_up - time.monotonic()
            if left <= 0:
                raise HostBusy(f"{host} already has {self.limit} fetches in flight")
            time.sleep(min(left, POLL_SECONDS * random.uniform(0.5, 1.5)))  # jitter: no lockstep
        return token

    def release(self, host: str, token: str) -> None:
        # One ZREM is atomic on its own; an expired (already dropped) token is a no-op.
        self.redis.zrem(host_slots_key(host), token)

    def in_use(self, host: str) -> int:
        return int(self.redis.zcard(host_slots_key(host)))


class StartSpacer:
    """At least the host's delay (delay_seconds, or as adapted by the frontier) between request
    starts to one hostname, across processes."""

    def __init__(self, redis: Redis, delay_seconds: float):
        self.delay_ms = int(delay_seconds * 1000)
        self._reserve = redis.register_script(RESERVE_START)
        self._borrow = redis.register_script(frontier.BORROW_START)

    def wait_turn(self, host: str, max_wait_seconds: float) -> float:
        """Sleep until this host's next start is ours; HostBusy if that is too far off."""
        if self.delay_ms <= 0:
            return 0.0
        max_wait_ms = int(max_wait_seconds * 1000)
        reserved, wait_ms = self._reserve(keys=[host_next_start_key(host), host_delay_key(host)],
                                          args=[self.delay_ms, max_wait_ms])
        if not reserved:
            raise HostBusy(f"{host}: the next request may start in {wait_ms / 1000:.1f} s",
                           retry_after=wait_ms / 1000)
        time.sleep(wait_ms / 1000)
        return wait_ms / 1000

    def borrow(self, host: str) -> None:
        """A request within a turn that started already: no wait, the host's next turn moves
        one delay on (its adapted delay, which a per-host setting may make non-zero)."""
        self._borrow(args=[host, self.delay_ms])


@dataclass
class Turn:
    """A job's turn on its host, given by the frontier: requests to that host need no slot or wait."""

    host: str
    token: str  # the slot's lease token: the job id
    began: float  # time.monotonic() when the job took its turn
    requests: int = 0
    crawl_delay: float | None = None  # the host's robots.txt Crawl-delay, when it has one
    robots: Cached | None = None  # the verdict read with the turn, until used


_turn: ContextVar[Turn | None] = ContextVar("turn", default=None)


def dispatch_policy(settings: Settings) -> frontier.DispatchPolicy:
    """How the workers' dispatch hands out turns (jobs/frontier.py), from the settings."""
    return frontier.DispatchPolicy(
        default_delay_ms=int(settings.fetch_host_delay * 1000), concurrency=settings.fetch_host_concurrency,
        lease_ms=int((settings.fetch_deadline + LEASE_MARGIN_SECONDS) * 1000), robots_txt=settings.robots_txt)


def slows_down(exc: BaseException) -> bool:
    """An answer that asks a crawler to slow down: 429 or 503, or no answer in time."""
    return isinstance(exc, FetchTimeout) or getattr(exc, "status", None) in SLOW_DOWN_STATUSES


class Politeness:
    """What the Fetcher enters around each hop; one per worker process, Redis shared by all."""

    def __init__(self, redis: Redis, settings: Settings):
        self.settings = settings
        self.redis = redis
        self.slots = HostSlots(redis, settings.fetch_host_concurrency, settings.fetch_deadline + LEASE_MARGIN_SECONDS)
        self.spacer = StartSpacer(redis, settings.fetch_host_delay)
        self.robots = Robots(redis, settings) if settings.robots_txt else None
        self._finish = redis.register_script(frontier.FINISH_TURN)

    @contextmanager
    def turn(self, url: str, token: str) -> Iterator[Turn | None]:
        """The turn the frontier gave the job `token` on url's host, for the requests made
        inside; ended (slot freed, delay adapted) on the way out. None (and every request
        waits for its slot and start as usual) when the job was not given one."""
        parts = check_url_shape(url)
        host = frontier.host_of(parts)
        with _redis_errors_are_transient():
            held, robots = self._turn_and_robots(host, token, origin_of(parts))
        if not held:
            yield None
            return
        turn = Turn(host, token, time.monotonic(), robots=robots)
        reset = _turn.set(turn)
        try:
            yield turn
        except BaseException as exc:
            self._end_turn(turn, exc)
            raise
        else:
            self._end_turn(turn, None)
        finally:
            _turn.reset(reset)

    def _turn_and_robots(self, host: str, token: str,
                         origin: str) -> tuple[bool, Cached | None]:
        """In one round trip: does the job hold a turn on host, and the origin's cached robots.txt verdict."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zscore(host_slots_key(host), token)
            if self.robots is not None:
                read_cached_verdict(pipe, origin)
            score, *cached = pipe.execute()
        return score is not None, (cached_verdict(*cached) if cached else None)

    def _end_turn(self, turn: Turn, failure: BaseException | None) -> None:
        """FINISH_TURN: the slot back, the host's delay adapted to this turn's answers."""
        outcome = "ok" if failure is None else "slow" if slows_down(failure) else "error"
        elapsed = time.monotonic() - turn.began
        retry_after = getattr(failure, "retry_after", None) or 0
        settings = self.settings
        args = [turn.host, turn.token, outcome, int(elapsed * 1000 / max(1, turn.requests)),
                int(self.delay_floor(turn.host, turn.crawl_delay) * 1000), int(settings.fetch_host_delay_max * 1000),
                settings.fetch_host_concurrency, int(settings.fetch_host_delay * 1000), int(elapsed * 1000),
                int(min(retry_after, settings.fetch_host_delay_max) * 1000)]
        try:
            self._finish(args=args)
        except RedisError as exc:  # the lease expires by itself; the fetch's outcome matters more
            log.warning("could not end the turn on %s: %s", turn.host, exc)

    def delay_floor(self, host: str, crawl_delay: float | None = None) -> float:
        """The least delay for host: its setting (FETCH_HOST_DELAYS, else FETCH_HOST_DELAY) or
        its robots.txt Crawl-delay, whichever is longer, capped at FETCH_HOST_DELAY_MAX."""
        configured = self.settings.fetch_host_delays.get(host, self.settings.fetch_host_delay)
        return min(max(configured, crawl_delay or 0.0), self.settings.fetch_host_delay_max)

    @classmethod
    def connect(cls, settings: Settings) -> "Politeness":
        """From settings.redis_url; the client connects on first use, so this is cheap."""
        return cls(Redis.from_url(settings.redis_url), settings)

    @contextmanager
    def hop(self, target: Target, deadline: Deadline, read_robots: RobotsReader | None = None) -> Iterator[None]:
        """Hold a slot for the target's host with its start spaced, after robots.txt allowed its URL.

        read_robots: how to read an origin's robots.txt that is not cached; None for a hop that
        fetches a robots.txt itself, which RFC 9309 always allows (and which so never asks
        for another robots.txt).
        """
        host = frontier.host_of(target.parts)
        rules = read_robots if self.robots is not None else None
        turn = _turn.get()
        if turn is not None and turn.host == host:
            self._within_turn(turn, target, deadline, rules)
            yield
            return
        with _redis_errors_are_transient():
            token = self._robots_then_slot(target, host, deadline, rules) if rules is not None else None
            token = self._take_turn(host, deadline, token)
        try:
            yield
        finally:
            self._release(host, token)

    def _within_turn(self, turn: Turn, target: Target, deadline: Deadline, rules: RobotsReader | None) -> None:
        """A request on the host of the job's turn: robots.txt first (fetched in the same turn
        when not cached); no slot, no wait, but a second request pushes the next turn back."""
        with _redis_errors_are_transient():
            if rules is not None:
                cached, turn.robots = turn.robots, None  # read with the turn, for the job's own URL
                turn.crawl_delay = self.robots.check(target, deadline, rules, cached)
            if turn.requests:
                self.spacer.borrow(turn.host)
        turn.requests += 1

    def _robots_then_slot(self, target: Target, host: str, deadline: Deadline, rules: RobotsReader) -> str | None:
        """Raise unless robots.txt allows the target's URL; a slot on host when one came with the verdict.

        Usually one round trip: the cached verdict and a free slot. A missing (or unreadable)
        verdict holds no slot while robots.txt is fetched: that fetch needs a slot of its own.
        """
        raw, ttl, token = self.slots.try_acquire_after_reading(host, robots_key(origin_of(target.parts)))
        verdict = RobotsVerdict.load(raw) if raw is not None else None
        if verdict is None and token is not None:
            self._release(host, token)
            token = None
        try:
            self.robots.check(target, deadline, rules, cached=(verdict, max(ttl, 1)))
        except BaseException:
            if token is not None:
                self._release(host, token)  # refused by the rules: the slot was never used
            raise
        return token

    def _take_turn(self, host: str, deadline: Deadline, token: str | None = None) -> str:
        """A slot on host (unless token holds one), then our reserved start; the slot goes
        back if the start is too far."""
        give_up = time.monotonic() + self._wait_budget(deadline)
        if token is None:
            token = self.slots.acquire(host, give_up - time.monotonic())
        try:
            self.spacer.wait_turn(host, max(0.0, give_up - time.monotonic()))
        except BaseException:
            self._release(host, token)
            raise
        return token

    def _release(self, host: str, token: str) -> None:
        try:
            self.slots.release(host, token)
        except RedisError as exc:  # the lease expires by itself; the fetch's outcome matters more
            log.warning("could not release the fetch slot on %s: %s", host, exc)

    @staticmethod
    def _wait_budget(deadline: Deadline) -> float:
        # Half the deadline left at most, so a hop that waited still has time to fetch.
        return min(MAX_WAIT_SECONDS, deadline.remaining() / 2)


@contextmanager
def _redis_errors_are_transient() -> Iterator[None]:
    """Redis briefly away must not fail a job for good: RQ retries it later."""
    try:
        yield
    except RedisError as exc:
        raise TransientFetchError(f"per-host fetch limits unavailable (Redis): {exc}") from None
