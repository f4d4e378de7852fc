"""What every benchmark runs against: its own Redis, a local HTTPS site, the real service.

The site is a FixtureServer (a trustme test CA) that plays www.goodreads.com and the news
sites: any /book/show/<n> path gets one of the saved modern Goodreads book pages, any path of
a news host that site's saved front page, any path of an extra host (the generic sites of
the polite bench) a small HTML page with a <title>, and /robots.txt a real robots.txt
allowing everything, so a service that reads robots.txt gets rules, not a page. Pages come from the real saved pages beside the
project (tests/pages.py) or, when those are absent, from the project's own fixtures.
The service is gunicorn + `python -m jobs.worker`, started as the Procfile starts them.
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import escape
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from config import PROJECT_ROOT, Settings
from tests.pages import PAGES_DIR
from tests.support.fixture_server import FixtureServer, Reply, send_reply
from tests.support.processes import Service, service_env, start_service
from tests.support.redis_server import RedisServer

FIXTURES = PROJECT_ROOT / "tests" / "fixtures"
GOODREADS_HOST = "www.goodreads.com"
NEWS_HOSTS = ("www.bbc.com", "www.bbc.co.uk", "www.theguardian.com", "www.washingtonpost.com", "www.wsj.com")
SITE_HOSTS = (GOODREADS_HOST, *NEWS_HOSTS)
MODERN_GOODREADS = ".next-2025.html"  # what goodreads.com serves today (Next.js pages)
NEWS_FRONT = "front"  # saved news front pages carry "front" in their file name
FIXTURE_BOOKS = ("next-data.html", "jsonld.html", "several-authors.html", "testid.html")
FIXTURE_FRONTS = {"www.bbc.com": "bbc-next-2023.html", "www.bbc.co.uk": "bbc-gel-2018.html",
                  "www.theguardian.com": "guardian-2017.html", "www.washingtonpost.com": "wapo-2023.html",
                  "www.wsj.com": "wsj-2018.html"}
HTML = {"Content-Type": "text/html; charset=utf-8"}
ROBOTS_TXT = Reply(200, b"User-agent: *\nAllow: /\n", {"Content-Type": "text/plain; charset=utf-8"})
GENERIC_PAGE = ("<!doctype html><html><head><title>Bench page {path} on {host}</title></head>"
                "<body><h1>Bench page</h1><p>A small generic page of {host}.</p></body></html>")
# What the bench measures is the pipeline, not our politeness towards one local host.
FAST_SETTINGS = {
    "FETCH_HOST_DELAY": "0", "FETCH_HOST_CONCURRENCY": "64", "ROBOTS_TXT": "false", "RATE_LIMITS": "false",
    "FETCH_RETRIES": "0", "LOG_LEVEL": "WARNING",
}


@dataclass
class PageSet:
    """The bodies the local site serves: Goodreads book pages and one front page per news host."""

    books: list[bytes]
    fronts: dict[str, bytes]
    origin: str  # "saved pages" or "project fixtures"

    @classmethod
    def load(cls) -> "PageSet":
        manifest = PAGES_DIR / "MANIFEST.json"
        if manifest.is_file():
            return cls.from_manifest(json.loads(manifest.read_text()))
        return cls.from_fixtures()

    @classmethod
    def from_manifest(cls, entries: list[dict]) -> "PageSet":
        books, fronts = [], {}
        for entry in entries:
            host, name = entry["file"].split("/", 1)
            body = (PAGES_DIR / entry["file"]).read_bytes()
            if host == GOODREADS_HOST and name.endswith(MODERN_GOODREADS) and "404" not in name:
                books.append(body)
            elif host in NEWS_HOSTS and NEWS_FRONT in name:
                fronts.setdefault(host, body)
        return cls(books, fronts, "saved pages")

    @classmethod
    def from_fixtures(cls) -> "PageSet":
        books = [(FIXTURES / "goodreads" / name).read_bytes() for name in FIXTURE_BOOKS]
        fronts = {host: (FIXTURES / "news" / name).read_bytes() for host, name in FIXTURE_FRONTS.items()}
        return cls(books, fronts, "project fixtures")


def book_urls(count: int, start: int = 1) -> list[str]:
    return [f"https://{GOODREADS_HOST}/book/show/{n}" for n in range(start, start + count)]


def generic_hosts(count: int) -> tuple[str, ...]:
    """Names of other sites (ALLOW_ANY_SITE), all played by the local site: site-01.bench.test, ..."""
    return tuple(f"site-{n:02d}.bench.test" for n in range(1, count + 1))


def news_urls(count: int, start: int = 1) -> list[str]:
    """Section fronts spread over the news hosts (a front page is a root or a short section path)."""
    return [f"https://{NEWS_HOSTS[n % len(NEWS_HOSTS)]}/news/section-{n}" for n in range(start, start + count)]


class LocalSite:
    """The HTTPS fixture site that plays every benchmarked host."""

    def __init__(self, pages: PageSet, folder: Path, extra_hosts: tuple[str, ...] = ()):
        self.pages = pages
        self.extra_hosts = extra_hosts  # generic sites: their TLS name is in the certificate too
        self.server = FixtureServer([*SITE_HOSTS, *extra_hosts, "127.0.0.1"])
        self.server.fallback = self._serve
        self.server.routes["/robots.txt"] = ROBOTS_TXT
        self.ca_bundle = self.server.write_ca_bundle(folder / "site-ca.pem")

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        host = (handler.headers.get("Host") or "").split(":")[0].lower()
        send_reply(handler, Reply(200, self.body_for(host, handler.path), HTML))

    def body_for(self, host: str, path: str) -> bytes:
        if host in self.extra_hosts:
            return GENERIC_PAGE.format(host=host, path=escape(path.split("?")[0])).encode()
        if host in self.pages.fronts:
            return self.pages.fronts[host]
        digits = "".join(c for c in path.rsplit("/", 1)[-1] if c.isdigit()) or "0"
        return self.pages.books[int(digits) % len(self.pages.books)]

    def fetch_env(self) -> dict[str, str]:
        """What the service needs to reach this site for every benchmarked host."""
        hosts = (*SITE_HOSTS, *self.extra_hosts)
        return {"FETCH_CONNECT_TO": self.server.connect_to(*hosts), "FETCH_CA_BUNDLE": str(self.ca_bundle)}

    def local_url(self, url: str) -> tuple[str, str]:
        """(the URL on this server, the Host header): how the baselines reach it without a resolver."""
        rest = url.split("://", 1)[1]
        host, _, path = rest.partition("/")
        return f"https://127.0.0.1:{self.server.port}/{path}", host


@dataclass
class Stack:
    """Redis + local site for one benchmark run; services are started on demand."""

    folder: Path
    redis: RedisServer
    site: LocalSite
    services: list[Service] = field(default_factory=list)

    def service_env(self, **overrides: str) -> dict[str, str]:
        return service_env(REDIS_URL=self.redis.url, **{**FAST_SETTINGS, **self.site.fetch_env(), **overrides})

    def start_service(self, workers: int, **overrides: str) -> Service:
        """The service as shipped (gunicorn's default processes), with FAST_SETTINGS;
        overrides win over both."""
        logs = Path(tempfile.mkdtemp(prefix="service-", dir=self.folder))
        shipped = {"WEB_WORKERS": str(Settings.web_workers)}
        service = start_service(self.service_env(**{**shipped, **overrides}), logs, workers=workers, name="BENCH")
        self.services.append(service)
        return service

    def stop_service(self, service: Service) -> None:
        service.stop_processes()
        self.services.remove(service)

    def close(self) -> None:
        for service in list(self.services):
            self.stop_service(service)
        self.site.server.stop()
        self.redis.stop()


@contextmanager
def running_stack(pages: PageSet | None = None, extra_hosts: tuple[str, ...] = ()) -> Iterator[Stack]:
    """extra_hosts: generic sites the local site plays too (each a small page with a <title>)."""
    folder = Path(tempfile.mkdtemp(prefix="metaparse-bench-"))
    redis = RedisServer(appendonly=False, data_dir=folder).start()
    site = LocalSite(pages or PageSet.load(), folder, extra_hosts)
    site.server.start()
    stack = Stack(folder, redis, site)
    try:
        yield stack
    finally:
        stack.close()
