"""The job function run by a real RQ worker (in-process SimpleWorker) on a real Redis."""
from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path

import pytest
from rq import SimpleWorker
from rq.job import JobStatus
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

import parsers
from config import load_settings
from errors import ParseError
from jobs.queues import QUEUE_NAMES, Submitter, backoff_seconds, fetch_job, job_id_for, make_queue
import jobs.tasks
from sources import route
from storage import Storage
from tests.support.fixture_server import FixtureServer, Reply

BOOK_URL = "https://www.goodreads.com/book/show/42"


@pytest.fixture(scope="module")
def server():
    fixture = FixtureServer(["www.goodreads.com"]).start()
    yield fixture
    fixture.stop()


@pytest.fixture
def worker_env(server, redis_url, tmp_path: Path, monkeypatch) -> dict[str, str]:
    env = {
        "REDIS_URL": redis_url,
        "FETCH_CONNECT_TO": server.connect_to("www.goodreads.com"),
        "FETCH_CA_BUNDLE": str(server.write_ca_bundle(tmp_path / "ca.pem")),
        "FETCH_RETRIES": "2",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    server.hits.clear()
    monkeypatch.setattr(jobs.tasks, "_context", None)  # rebuild settings from this env
    return env


@pytest.fixture
def fake_book_parser(monkeypatch):
    """The job is under test here, not the parser: a parser that reads the <title>."""
    def parse_title(html: str, url: str) -> dict:
        if "<title>" not in html:
            raise ParseError("no title")
        return {"kind": "goodreads_book", "title": html.split("<title>")[1].split("</title>")[0]}

    monkeypatch.setitem(parsers.PARSERS, "goodreads", parse_title)


def run_worker(redis_client) -> None:
    queues = [make_queue(name, redis_client) for name in QUEUE_NAMES]
    SimpleWorker(queues, connection=redis_client, serializer=JSONSerializer).work(burst=True)


def submit(redis_client, worker_env, url: str = BOOK_URL):
    return Submitter(redis_client, load_settings(worker_env)).submit(route(url))


def test_job_fetches_parses_and_saves_a_done_record(server, worker_env, redis_client, fake_book_parser):
    server.routes["/book/show/42"] = Reply(body=b"<html><title>The Answer</title></html>")
    submission = submit(redis_client, worker_env)
    run_worker(redis_client)
    record = Storage(redis_client).load_record(BOOK_URL)
    assert record["status"] == "done" and record["data"]["title"] == "The Answer"
    assert record["url"] == BOOK_URL and record["kind"] == "goodreads_book" and record["error"] is None
    job = fetch_job(redis_client, submission.job_id)
    assert job.get_status() == JobStatus.FINISHED and job.meta["step"] == "saving"
    assert 0 < redis_client.ttl(f"metaparse:record:{BOOK_URL}")


def test_permanent_failure_saves_failed_record_and_skips_retries(server, worker_env, redis_client, fake_book_parser):
    server.routes["/book/show/42"] = Reply(404, b"gone", {"Content-Type": "text/html"})
    submission = submit(redis_client, worker_env)
    run_worker(redis_client)
    record = Storage(redis_client).load_record(BOOK_URL)
    assert record["status"] == "failed" and record["error"]["code"] == "http_status"
    assert "404" in record["error"]["message"]
    job = fetch_job(redis_client, submission.job_id)
    assert job.get_status() == JobStatus.FAILED
    assert job.id in make_queue("goodreads", redis_client).failed_job_registry.get_job_ids()
    assert server.hits["/book/show/42"] == 1  # not retried


def test_parse_error_is_permanent(server, worker_env, redis_client, fake_book_parser):
    server.routes["/book/show/42"] = Reply(body=b"<html>no title here</html>")
    submit(redis_client, worker_env)
    run_worker(redis_client)
    assert Storage(redis_client).load_record(BOOK_URL)["error"]["code"] == "parse_error"


def test_transient_failure_is_retried_and_only_the_last_one_is_recorded(server, worker_env, redis_client, fake_book_parser):
    server.routes["/book/show/42"] = Reply(503, b"busy", {"Content-Type": "text/html"})
    submission = submit(redis_client, worker_env)
    run_worker(redis_client)
    job = fetch_job(redis_client, submission.job_id)
    assert job.get_status() == JobStatus.SCHEDULED and job.retries_left == 1
    assert Storage(redis_client).load_record(BOOK_URL) is None  # a retry is coming: no failed record yet
    job.retries_left = 0  # as if the retries were spent: the next failure is final
    job.save()
    make_queue("goodreads", redis_client).enqueue_job(job)
    run_worker(redis_client)
    assert Storage(redis_client).load_record(BOOK_URL)["error"]["code"] == "fetch_transient"
    assert server.hits["/book/show/42"] == 2


def test_transient_retry_waits_with_backoff_and_honours_retry_after(server, worker_env, redis_client, fake_book_parser):
    server.routes["/book/show/42"] = Reply(429, b"slow down", {"Content-Type": "text/html", "Retry-After": "120"})
    submission = submit(redis_client, worker_env)
    run_worker(redis_client)
    job = fetch_job(redis_client, submission.job_id)
    assert job.get_status() == JobStatus.SCHEDULED
    scheduled_at = ScheduledJobRegistry("goodreads", connection=redis_client).get_scheduled_time(job)
    wait = (scheduled_at - datetime.now(timezone.utc)).total_seconds()
    assert 110 <= wait <= 121  # Retry-After beats the short first backoff


@pytest.mark.parametrize("failures,low,high", [(1, 2, 8), (2, 5, 15), (3, 10, 30), (12, 300, 900)])
def test_backoff_grows_exponentially_with_jitter(failures, low, high):
    delays = {backoff_seconds(failures, rng=random.Random(seed)) for seed in range(50)}
    assert all(low <= d <= high for d in delays) and len(delays) > 1
