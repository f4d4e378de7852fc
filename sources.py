"""Which kinds of page the service understands, the one spelling of each URL, and the RQ queues.

route(url) validates a submitted URL, picks its source and returns the canonical URL
(the storage key), the RQ queue and the freshness TTL. Pure: no I/O, no settings.

One canonical URL has one source, whatever the spelling: the source is picked from the
host as DNS will see it (IDNA: `www。goodreads。com` and fullwidth letters are
www.goodreads.com), so no spelling of a book or a front page can be routed as a generic
page onto the book's record.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from w3lib.url import canonicalize_url

from errors import BlockedAddress
from guard import ascii_host, check_url_shape

GOODREADS_HOSTS = {"goodreads.com", "www.goodreads.com", "m.goodreads.com"}
GOODREADS_BOOK_PATH = re.compile(r"^/(?:[a-z]{2}/)?book/show/(\d+)(?:[-._/].*)?$", re.IGNORECASE)

# News sites: every host spelling -> the site's canonical host.
NEWS_HOSTS = {
    "bbc.com": "www.bbc.com",
    "www.bbc.com": "www.bbc.com",
    "bbc.co.uk": "www.bbc.co.uk",
    "www.bbc.co.uk": "www.bbc.co.uk",
    "theguardian.com": "www.theguardian.com",
    "www.theguardian.com": "www.theguardian.com",
    "amp.theguardian.com": "www.theguardian.com",
    "washingtonpost.com": "www.washingtonpost.com",
    "www.washingtonpost.com": "www.washingtonpost.com",
    "foxnews.com": "www.foxnews.com",
    "www.foxnews.com": "www.foxnews.com",
    "wsj.com": "www.wsj.com",
    "www.wsj.com": "www.wsj.com",
}
KNOWN_SITE_HOSTS = frozenset(GOODREADS_HOSTS | set(NEWS_HOSTS))
# A front page is a site root or a short section path; articles carry dates, ids or file names.
MAX_FRONT_SEGMENTS = 2
ARTICLE_SEGMENT = re.compile(
    r"\d{4,}|\.(?:html?|php|aspx?)$|^(?:articles?|story|video|live)$|(?:[^-]+-){4,}", re.IGNORECASE
)

# Query parameters that only track the visitor and never change the page.
TRACKING_PARAMS = re.compile(
    r"^(?:utm_\w+|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|igshid|yclid|_ga|_gl|ref_src|cmpid|ocid)$",
    re.IGNORECASE,
)

MINUTE, HOUR, DAY = 60, 3600, 86400


@dataclass(frozen=True)
class Source:
    name: str
    queue: str
    ttl: int  # seconds a stored record counts as fresh
    kind: str  # the `kind` of the data its parser returns


GOODREADS = Source("goodreads", queue="goodreads", ttl=7 * DAY, kind="goodreads_book")
NEWS = Source("news", queue="news", ttl=15 * MINUTE, kind="news_headlines")
GENERIC = Source("generic", queue="pages", ttl=1 * DAY, kind="page")
SOURCES = {source.name: source for source in (GOODREADS, NEWS, GENERIC)}

# The RQ queues, by name. Workers take the quick ticker and callbacks first; page jobs then
# wait per host and are given out by host turns (jobs/frontier.py).
MAINTENANCE_QUEUE = "maintenance"  # the ticker: re-crawls and callback sweeps, each a few ms
CALLBACK_QUEUE = "callbacks"  # batches' completion callbacks
PAGE_QUEUE_NAMES = [source.queue for source in SOURCES.values()]  # one per source, for its page jobs
QUEUE_NAMES = [MAINTENANCE_QUEUE, CALLBACK_QUEUE] + PAGE_QUEUE_NAMES


@dataclass(frozen=True)
class Route:
    source: Source
    canonical_url: str

    @property
    def queue(self) -> str:
        return self.source.queue

    @property
    def ttl(self) -> int:
        return self.source.ttl


class Unsupported(ValueError):
    """The URL is refused; `reason` says why in words a person can act on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def route(url: object, allow_any_site: bool = False) -> Route:
    """Validate url, pick its source and canonical form, or raise Unsupported."""
    if not isinstance(url, str) or not url.strip():
        raise Unsupported("each URL must be a non-empty string")
    try:
        parts = check_url_shape(url.strip())
    except BlockedAddress as exc:
        raise Unsupported(str(exc)) from None
    host = site_host(parts.hostname)
    if host in GOODREADS_HOSTS:
        return _goodreads_route(parts.path, allow_any_site, url)
    if host in NEWS_HOSTS:
        return _news_route(host, parts.path, allow_any_site, url)
    if allow_any_site:
        return _other_site_route(url.strip())
    raise Unsupported(
        "unsupported site: this service accepts Goodreads book pages and the front pages of "
        "bbc.com, bbc.co.uk, theguardian.com, washingtonpost.com, foxnews.com and wsj.com"
    )


def site_host(hostname: str | None) -> str:
    """The host as DNS and the fetcher see it: IDNA-mapped to ASCII, lower case, no final dot."""
    return ascii_host(hostname or "").lower().rstrip(".")


def _other_site_route(url: str) -> Route:
    canonical = canonical_generic_url(url)
    if site_host(urlsplit(canonical).hostname) in KNOWN_SITE_HOSTS:
        # The canonical form names a known site although url's host did not read as one (w3lib's
        # IDNA and ours disagree on a character): route that form, so it keeps one source.
        return route(canonical, allow_any_site=True)
    return Route(GENERIC, canonical)


def _goodreads_route(path: str, allow_any_site: bool, url: str) -> Route:
    match = GOODREADS_BOOK_PATH.match(path)
    if match:
        return Route(GOODREADS, goodreads_book_url(match.group(1)))
    if allow_any_site:
        return Route(GENERIC, canonical_generic_url(url.strip()))
    raise Unsupported("unsupported Goodreads page: only book pages (/book/show/<id>) are accepted")


def goodreads_book_url(book_id: str | int) -> str:
    return f"https://www.goodreads.com/book/show/{int(book_id)}"


def _news_route(host: str, path: str, allow_any_site: bool, url: str) -> Route:
    segments = [segment for segment in path.split("/") if segment]
    if is_front_path(segments):
        clean_path = "/" + "/".join(segment.lower() for segment in segments)
        return Route(NEWS, f"https://{NEWS_HOSTS[host]}{clean_path}")
    if allow_any_site:
        return Route(GENERIC, canonical_generic_url(url.strip()))
    raise Unsupported("only front pages of news sites are accepted (e.g. https://www.bbc.com/news), not articles")


def is_front_path(segments: list[str]) -> bool:
    return len(segments) <= MAX_FRONT_SEGMENTS and not any(ARTICLE_SEGMENT.search(s) for s in segments)


def canonical_generic_url(url: str) -> str:
    """Lowercase host, no default port, no fragment, no tracking parameters, sorted query."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}[scheme]
    netloc = host if parts.port in (None, default_port) else f"{host}:{parts.port}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not TRACKING_PARAMS.match(k)])
    return canonicalize_url(urlunsplit((scheme, netloc, parts.path or "/", query, "")))


def source_for_url(url: str) -> Source:
    """The source whose parser fits url, for parsing saved pages (any site allowed)."""
    try:
        return route(url, allow_any_site=True).source
    except Unsupported:
        return GENERIC
