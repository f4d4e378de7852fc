"""Running jobs in process: a fixture "Goodreads" site, the worker's environment, a title
parser and an RQ SimpleWorker in burst mode on the real Redis (tests/jobs/test_tasks.py,
tests/test_logs.py, tests/test_metrics.py)."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from redis import Redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer

import jobs.context
import parsers
from config import Settings, load_settings
from errors import ParseError
from jobs.fetch import dispatch_policy
from jobs.queues import PAGE_QUEUE_NAMES, QUEUE_NAMES, Submission, Submitter, make_queue
from jobs.worker.claims import ClaimingQueue
from sources import route
from storage import Storage, make_record
from tests.support.fixture_server import FixtureServer

BOOK_URL = "https://www.goodreads.com/book/show/42"
BOOK_PATH = "/book/show/42"


class BurstWorker(SimpleWorker):
    """A SimpleWorker without its pub/sub channel: nobody sends commands to a burst in this
    process, and stopping the channel's thread costs a second at the end of every burst."""

    def subscribe(self) -> None:
        pass

    def unsubscribe(self) -> None:
        pass


def goodreads_site() -> Iterator[FixtureServer]:
    """For a module fixture (`yield from goodreads_site()`): an HTTPS "www.goodreads.com"."""
    server = FixtureServer(["www.goodreads.com"]).start()
    yield server
    server.stop()


def worker_env(site: FixtureServer, redis_url: str, tmp_path: Path, monkeypatch, retries: int,
               clear_routes: bool = True, clear_hits: bool = False, hosts: tuple[str, ...] = ("www.goodreads.com",),
               settings: dict[str, str] | None = None) -> dict[str, str]:
    """The job's settings, read from the environment like a worker's: set there (monkeypatch
    undoes it) and jobs.context's cached context dropped so the job rebuilds them. The site plays
    `hosts`; `settings` adds other variables. The site's routes (and, with clear_hits, its hit
    counts) are reset for the test."""
    if clear_routes:
        site.routes.clear()
    if clear_hits:
        site.hits.clear()
    env = {
        "REDIS_URL": redis_url, **site.fetch_env(tmp_path, *hosts), "FETCH_RETRIES": str(retries), **(settings or {}),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(jobs.context, "_context", None)  # rebuild settings from this env
    return env


def save_done_record(redis_client: Redis, url: str, kind: str, data: dict, age: timedelta = timedelta(0)) -> dict:
    """A done record of url fetched `age` ago, stored as a job would (kept an hour: the tests
    that call this look at freshness, not at the TTL)."""
    record = make_record(url, kind, "done", parsers.PARSER_VERSION, data=data)
    record["fetched_at"] -= age
    Storage(redis_client).save_record(record, 3600)
    return record


def title_of(html: str) -> str:
    """The text of the page's <title>: what the stand-in parsers below and in tests read."""
    return html.split("<title>")[1].split("</title>")[0]


def parse_title(html: str, url: str) -> dict:
    """A stand-in for the Goodreads parser when the parser is not under test: reads the <title>."""
    if "<title>" not in html:
        raise ParseError("no title")
    return {"kind": "goodreads_book", "title": title_of(html)}


def use_title_parser(monkeypatch) -> None:
    monkeypatch.setitem(parsers.PARSERS, "goodreads", parse_title)


def submit(redis_client, env: dict[str, str], url: str = BOOK_URL) -> Submission:
    return Submitter(redis_client, load_settings(env)).submit(route(url))


def work_burst(redis_client, worker_class: type[SimpleWorker] = SimpleWorker, settings: Settings | None = None) -> None:
    """Run every queued job of every queue in this process, then return; with settings, the
    page jobs are given out by host turns, as the service's workers take them (jobs/frontier.py)."""
    if settings is None:
        queues = [make_queue(name, redis_client) for name in QUEUE_NAMES]
        worker_class(queues, connection=redis_client, serializer=JSONSerializer).work(burst=True)
        return
    ClaimingQueue.dispatch_policy = dispatch_policy(settings)
    ClaimingQueue.inbox_keys = frozenset(make_queue(name, redis_client).key for name in PAGE_QUEUE_NAMES)
    try:
        worker_class(QUEUE_NAMES, connection=redis_client, serializer=JSONSerializer,
                     queue_class=ClaimingQueue).work(burst=True)
    finally:
        ClaimingQueue.dispatch_policy, ClaimingQueue.inbox_keys = None, frozenset()


def run_job(redis_client, env: dict[str, str], url: str = BOOK_URL,
            worker_class: type[SimpleWorker] = SimpleWorker) -> str:
    """Submit url and run the worker until the queues are empty; the job's id."""
    job_id = submit(redis_client, env, url).job_id
    work_burst(redis_client, worker_class)
    return job_id
