"""robots.txt per origin (RFC 9309): read through a reader handed in, cached in Redis,
parsed by protego, and judged for one URL.

The rules apply to an origin (scheme, host, port) and the User-Agent's product token
("metaparse"). Robots never fetches anything itself: check() is given a RobotsReader (the
Fetcher's, which GETs the file by the low-level safe path: guard, pinned connections, body
cap, the page fetch's own deadline), so this module depends on nothing that depends on it.
By status: 2xx rules apply; 401/403 disallow all; other 4xx (404, 410) and too many
redirects allow all; 429, 5xx and network errors make the site "unreachable" for now: a
transient error, cached only UNREACHABLE_CACHE_SECONDS. A robots.txt redirect that the
guard refuses (127.0.0.1, a private name...) fails the page with BlockedAddress, like a
refusal of the page's own host: the cause is named, and nothing is cached.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult

from protego import Protego
from redis import Redis
from redis.client import Pipeline

from config import Settings
from errors import BlockedAddress, FetchError, HostBusy, RobotsDisallowed, TooManyRedirects, TransientFetchError
from guard import DEFAULT_PORTS, Target
from jobs import frontier
from jobs.fetch.pinning import Deadline
from jobs.fetch.transport import Page
from storage import robots_key

UNREACHABLE_CACHE_SECONDS = 30  # an unreachable (or refused) robots.txt is asked again this soon
UNREACHABLE_STATUSES = {429}  # with 5xx: RFC 9309 "unreachable", so disallow for now
PARSED_CACHE_SIZE = 64  # parsed robots.txt kept per process, by origin
VERDICT_KINDS = ("rules", "allow", "disallow", "unreachable", "refused")

# (robots.txt URL, the page fetch's deadline) -> the answer, any status; raises FetchError.
RobotsReader = Callable[[str, Deadline], Page]


@dataclass(frozen=True)
class RobotsVerdict:
    """What one origin's robots.txt says, as cached: the rules text, or a blanket answer."""

    kind: str  # one of VERDICT_KINDS
    text: str = ""  # robots.txt for "rules"; why, for the others

    def dump(self) -> str:
        return f"{self.kind}\n{self.text}"

    @classmethod
    def load(cls, raw: bytes) -> "RobotsVerdict | None":
        """None for a value we did not write (so it is fetched again, never read as "allow")."""
        kind, _, text = raw.decode("utf-8", "replace").partition("\n")
        return cls(kind, text) if kind in VERDICT_KINDS else None


Cached = tuple[RobotsVerdict | None, int]  # a verdict as read from Redis (None: not cached) and its TTL


class Robots:
    """robots.txt per origin: read by a RobotsReader, cached in Redis, parsed by protego."""

    def __init__(self, redis: Redis, settings: Settings):
        self.redis = redis
        self.cache_seconds = settings.robots_cache_seconds
        self.agent = user_agent_token(settings.user_agent)
        self._parsed: dict[str, tuple[str, Protego]] = {}

    def check(self, target: Target, deadline: Deadline, read: RobotsReader,
              cached: Cached | None = None) -> float | None:
        """Return the rules' Crawl-delay (None: none) when target's URL may be fetched;
        RobotsDisallowed, or transient while unreachable.

        cached: the origin's verdict and TTL as just read from Redis (None: read them here);
        read: how to GET the origin's robots.txt when no verdict is cached.
        """
        origin = origin_of(target.parts)
        verdict, ttl = cached or self._cached(origin)
        if verdict is None:
            verdict = self._download(read, f"{target.parts.scheme}://{target.parts.netloc}/robots.txt", deadline)
            ttl = self._store(origin, verdict)
        self._judge(verdict, origin, target.url, ttl)
        return self._rules(origin, verdict.text).crawl_delay(self.agent) if verdict.kind == "rules" else None

    def _cached(self, origin: str) -> Cached:
        with self.redis.pipeline() as pipe:
            return cached_verdict(*read_cached_verdict(pipe, origin).execute())

    def _store(self, origin: str, verdict: RobotsVerdict) -> int:
        short = verdict.kind in ("unreachable", "refused")  # ask again soon: it may be fixed
        ttl = min(UNREACHABLE_CACHE_SECONDS, self.cache_seconds) if short else self.cache_seconds
        self.redis.set(robots_key(origin), verdict.dump(), ex=ttl)
        return ttl

    @staticmethod
    def _download(read: RobotsReader, robots_url: str, deadline: Deadline) -> RobotsVerdict:
        try:
            return verdict_for(read(robots_url, deadline))
        except HostBusy:
            raise  # our own limits, not the site's state: nothing to cache
        except TooManyRedirects:
            return RobotsVerdict("allow", "robots.txt redirects too often (RFC 9309: unavailable)")
        except TransientFetchError as exc:
            return RobotsVerdict("unreachable", f"robots.txt unreachable: {exc}")
        except BlockedAddress:
            raise  # the origin, a redirect, or a second DNS answer led to a refused address: name it as such
        except FetchError as exc:  # TLS failure, over the body cap: the rules cannot be read
            return RobotsVerdict("refused", f"robots.txt unreadable: {exc}")

    def _judge(self, verdict: RobotsVerdict, origin: str, url: str, ttl: int) -> None:
        if verdict.kind == "unreachable":
            raise TransientFetchError(f"{verdict.text} ({origin}); retrying later", retry_after=ttl)
        if verdict.kind in ("disallow", "refused"):
            raise RobotsDisallowed(f"{verdict.text} ({origin}): {url} not fetched")
        if verdict.kind == "rules" and not self._rules(origin, verdict.text).can_fetch(url, self.agent):
            raise RobotsDisallowed(f"robots.txt of {origin} disallows {url} for {self.agent}")

    def _rules(self, origin: str, text: str) -> Protego:
        """Parsed rules, reused while the cached text is unchanged (parsing is the slow part)."""
        known = self._parsed.get(origin)
        if known is None or known[0] != text:
            if len(self._parsed) >= PARSED_CACHE_SIZE:
                self._parsed.pop(next(iter(self._parsed)))
            known = self._parsed[origin] = (text, Protego.parse(text))
        return known[1]


def read_cached_verdict(pipe: Pipeline, origin: str) -> Pipeline:
    """Queue on pipe the reads of an origin's cached robots.txt verdict: the verdict, its TTL."""
    return pipe.get(robots_key(origin)).ttl(robots_key(origin))


def cached_verdict(raw: bytes | None, ttl: int) -> Cached:
    """What read_cached_verdict read: the verdict (None when not cached) and seconds it stays."""
    return (RobotsVerdict.load(raw) if raw is not None else None), max(int(ttl), 1)


def verdict_for(page: Page) -> RobotsVerdict:
    """RFC 9309 section 2.3.1 by status: rules, allow all, disallow all, or unreachable."""
    status = page.status
    if 200 <= status < 300:
        return RobotsVerdict("rules", page.body.decode("utf-8-sig", "replace"))  # -sig: drop a BOM
    if status in (401, 403):
        return RobotsVerdict("disallow", f"robots.txt answered HTTP {status}: all crawling disallowed")
    if status >= 500 or status in UNREACHABLE_STATUSES:
        return RobotsVerdict("unreachable", f"robots.txt answered HTTP {status}")
    return RobotsVerdict("allow", f"robots.txt answered HTTP {status}: no rules")


def origin_of(parts: SplitResult) -> str:
    """scheme://host:port, the unit robots.txt applies to (RFC 9309 section 2.3)."""
    scheme = parts.scheme.lower()
    host = frontier.host_of(parts)
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{parts.port or DEFAULT_PORTS[scheme]}"


def user_agent_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched against: "metaparse/1.0 (...)" -> "metaparse"."""
    return (user_agent.split("/")[0].split() or ["*"])[0]
