"""The job function run by a real RQ worker (in-process SimpleWorker) on a real Redis."""
from __future__ import annotations

import random
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
import redis.connection
from rq.job import JobStatus
from rq.registry import ScheduledJobRegistry

import jobs.tasks
import parsers
from config import load_settings
from jobs.queues import backoff_seconds, fetch_job, job_id_for, make_queue
from storage import Storage, make_record, robots_key
from tests.support import job_runs
from tests.support.fixture_server import Reply
from tests.support.job_runs import BOOK_URL, submit, work_burst


@pytest.fixture(scope="module")
def server():
    yield from job_runs.goodreads_site()


@pytest.fixture
def worker_env(server, redis_url, tmp_path: Path, monkeypatch) -> dict[str, str]:
    return job_runs.worker_env(server, redis_url, tmp_path, monkeypatch, retries=2, clear_routes=False, clear_hits=True)


@pytest.fixture
def fake_book_parser(monkeypatch):
    """The job is under test here, not the parser: a parser that reads the <title>."""
    job_runs.use_title_parser(monkeypatch)


def test_job_fetches_parses_and_saves_a_done_record(server, worker_env, redis_client, fake_book_parser):
    server.routes["/book/show/42"] = Reply(body=b"<html><title>The Answer</title></html>")
    submission = submit(redis_client, worker_env)
    work_burst(redis_client)
    record = Storage(redis_client).load_record(BOOK_URL)
    assert record["status"] == "done" and record["data"]["title"] == "The Answer"
    assert record["url"] == BOOK_URL and record["kind"] == "goodreads_book" and record["error"] is None
    job = fetch_job(redis_client, submission.job_id)
    assert job.get_status() == JobStatus.FINISHED and job.meta["step"] == "saving"
    assert 0 < redis_client.ttl(f"metaparse:record:{BOOK_URL}")


def test_a_done_job_costs_nine_redis_round_trips_at_most(server, worker_env, redis_client, fake_book_parser,
                                                       monkeypatch):
    """The per-job budget of issue #6, with the job given its host's turn by the frontier as
    the service's workers do, robots.txt cached and the process warm: the re-run check, steps
    "fetching" and "parsing", the turn with robots.txt, the turn's end, save_once (3), then
    step "saving" with the batches watching the URL. Fewer is welcome."""
    settings = load_settings(worker_env)
    redis_client.set(robots_key("https://www.goodreads.com:443"), "allow\nno rules", ex=60)
    server.routes["/book/show/42"] = server.routes["/book/show/43"] = Reply(body=b"<html><title>T</title></html>")
    submit(redis_client, worker_env)
    work_burst(redis_client, settings=settings)  # warms the process: Lua scripts loaded, keep-alive connection open
    trips, inside = [], []
    send = redis.connection.AbstractConnection.send_packed_command
    job_function = jobs.tasks.fetch_and_parse

    def counted_send(self, command, check_health=True):
        # the (first) command's name, sent by the job's own thread (not a leftover of another test)
        trips.extend(command[0].split(b"\r\n")[2] for thread in inside if thread == threading.get_ident())
        return send(self, command, check_health)

    def counted_job(*args):
        inside.append(threading.get_ident())
        try:
            return job_function(*args)
        finally:
            inside.clear()

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted_send)
    monkeypatch.setattr(jobs.tasks, "fetch_and_parse", counted_job)
    submit(redis_client, worker_env, "https://www.goodreads.com/book/show/43")
    work_burst(redis_client, settings=settings)
    assert Storage(redis_client).load_record("https://www.goodreads.com/book/show/43")["status"] == "done"
    assert 0 < len(trips) <= 9, trips  # without its turn, the job takes a slot and a start: 12


def test_permanent_failure_saves_failed_record_and_skips_retries(server, worker_env, redis_client, fake_book_parser):
    server.routes["/book/show/42"] = Reply(404, b"gone", {"Content-Type": "text/html"})
    submission = submit(redis_client, worker_env)
    work_burst(redis_client)
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
    work_burst(redis_client)
    assert Storage(redis_client).load_record(BOOK_URL)["error"]["code"] == "parse_error"


def test_a_rerun_after_a_save_then_crash_neither_fetches_nor_saves_again(server, worker_env, redis_client,
                                                                        fake_book_parser):
    server.routes["/book/show/42"] = Reply(body=b"<html><title>A second run</title></html>")
    submission = submit(redis_client, worker_env)
    saved = make_record(BOOK_URL, "goodreads_book", "done", parsers.PARSER_VERSION, data={"title": "The first run"})
    job = fetch_job(redis_client, submission.job_id)
    # The first run saved, then died:
    assert Storage(redis_client).save_once(saved, 3600, job.id, jobs.tasks.generation(job)) == []
    work_burst(redis_client)
    assert Storage(redis_client).load_record(BOOK_URL)["data"]["title"] == "The first run"
    assert "/book/show/42" not in server.hits
    assert fetch_job(redis_client, submission.job_id).get_status() == JobStatus.FINISHED


def test_transient_failure_is_retried_and_only_the_last_one_is_recorded(server, worker_env, redis_client, fake_book_parser):
    server.routes["/book/show/42"] = Reply(503, b"busy", {"Content-Type": "text/html"})
    submission = submit(redis_client, worker_env)
    work_burst(redis_client)
    job = fetch_job(redis_client, submission.job_id)
    assert job.get_status() == JobStatus.SCHEDULED and job.retries_left == 1
    assert Storage(redis_client).load_record(BOOK_URL) is None  # a retry is coming: no failed record yet
    job.retries_left = 0  # as if the retries were spent: the next failure is final
    job.save()
    make_queue("goodreads", redis_client).enqueue_job(job)
    work_burst(redis_client)
    assert Storage(redis_client).load_record(BOOK_URL)["error"]["code"] == "fetch_transient"
    assert server.hits["/book/show/42"] == 2


def test_transient_retry_waits_with_backoff_and_honours_retry_after(server, worker_env, redis_client, fake_book_parser):
    server.routes["/book/show/42"] = Reply(429, b"slow down", {"Content-Type": "text/html", "Retry-After": "120"})
    submission = submit(redis_client, worker_env)
    work_burst(redis_client)
    job = fetch_job(redis_client, submission.job_id)
    assert job.get_status() == JobStatus.SCHEDULED
    scheduled_at = ScheduledJobRegistry("goodreads", connection=redis_client).get_scheduled_time(job)
    wait = (scheduled_at - datetime.now(timezone.utc)).total_seconds()
    assert 110 <= wait <= 121  # Retry-After beats the short first backoff


@pytest.mark.parametrize("failures,low,high", [(1, 2, 8), (2, 5, 15), (3, 10, 30), (12, 300, 900)])
def test_backoff_grows_exponentially_with_jitter(failures, low, high):
    delays = {backoff_seconds(failures, rng=random.Random(seed)) for seed in range(50)}
    assert all(low <= d <= high for d in delays) and len(delays) > 1
