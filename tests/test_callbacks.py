"""Completion callbacks, news re-crawl and headline snapshots, with a real RQ worker and Redis."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from rq.job import JobStatus
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

import jobs.tasks
import parsers
from config import load_settings
from jobs import recrawl
from jobs.callbacks import sign
from jobs.queues import CALLBACK_QUEUE, MAINTENANCE_QUEUE, QUEUE_NAMES, fetch_job, make_queue
from jobs.ticker import ensure_ticking
from server import create_app
from storage import Storage, make_record
from tests.support.fixture_server import FixtureServer, Reply
from tests.support.job_runs import BurstWorker

BOOK = "https://www.goodreads.com/book/show/7"
NEWS = "https://www.bbc.com/news"
HOOK = "https://hooks.example.com/done"
SECRET = "hook-secret"


@pytest.fixture(scope="module")
def site():
    server = FixtureServer(["www.goodreads.com", "www.bbc.com", "hooks.example.com"]).start()
    yield server
    server.stop()


@pytest.fixture
def env(site, base_env, tmp_path: Path, monkeypatch) -> dict[str, str]:
    values = {
        **base_env, "CALLBACK_SECRET": SECRET, "FETCH_RETRIES": "2",
        "FETCH_CONNECT_TO": site.connect_to("www.goodreads.com", "www.bbc.com", "hooks.example.com"),
        "FETCH_CA_BUNDLE": str(site.write_ca_bundle(tmp_path / "ca.pem")),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(jobs.tasks, "_context", None)
    site.posts.clear()
    site.routes["/book/show/7"] = Reply(body=b"<html><title>Seven</title></html>")
    site.routes["/done"] = Reply(204, b"", {})
    return values


@pytest.fixture
def client(env, redis_client):
    return create_app(env).test_client()


@pytest.fixture(autouse=True)
def fake_parsers(monkeypatch):
    """These tests are about what happens around parsing: parsers that read the <title>."""
    def book(html: str, url: str) -> dict:
        return {"kind": "goodreads_book", "title": html.split("<title>")[1].split("</title>")[0]}

    def news(html: str, url: str) -> dict:
        titles = html.split("<title>")[1].split("</title>")[0].split("|")
        return {"kind": "news_headlines", "site": "bbc.com",
                "headlines": [{"title": t, "url": f"https://www.bbc.com/news/{t}"} for t in titles]}

    monkeypatch.setitem(parsers.PARSERS, "goodreads", book)
    monkeypatch.setitem(parsers.PARSERS, "news", news)


def work(redis_client) -> None:
    queues = [make_queue(name, redis_client) for name in QUEUE_NAMES]
    BurstWorker(queues, connection=redis_client, serializer=JSONSerializer).work(burst=True)


def verify(headers: dict[str, str], body: bytes) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), headers["X-Metaparse-Timestamp"].encode() + b"." + body,
                                    hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Metaparse-Signature"], expected)


# ---- callbacks ----------------------------------------------------------------------------


def test_finished_batch_is_posted_once_and_signed(client, redis_client, site):
    batch_id = client.post("/parse", json={"urls": [BOOK], "callback_url": HOOK}).get_json()["batch_id"]
    work(redis_client)
    [(headers, body)] = site.posts["/done"]
    assert verify(headers, body)
    assert abs(int(headers["X-Metaparse-Timestamp"]) - time.time()) < 60
    payload = json.loads(body)
    assert payload["batch_id"] == batch_id and payload["finished"] is True and payload["counts"] == {"done": 1}
    work(redis_client)  # nothing left to send
    assert len(site.posts["/done"]) == 1


def test_a_batch_of_cached_pages_calls_back_at_once(client, redis_client, site):
    Storage(redis_client).save_record(make_record(BOOK, "goodreads_book", "done", "1", data={"title": "x"}), 3600)
    body = client.post("/parse", json={"urls": [BOOK], "callback_url": HOOK}).get_json()
    assert body["accepted"][0]["status"] == "cached"
    work(redis_client)
    assert json.loads(site.posts["/done"][0][1])["counts"] == {"done": 1}


def test_failed_pages_count_as_finished(client, redis_client, site):
    site.routes["/book/show/7"] = Reply(404, b"gone")
    client.post("/parse", json={"urls": [BOOK], "callback_url": HOOK})
    work(redis_client)
    assert json.loads(site.posts["/done"][0][1])["counts"] == {"failed": 1}


def test_receiver_errors_are_retried_and_4xx_is_final(client, redis_client, site):
    site.routes["/done"] = Reply(503, b"busy", {})
    batch_id = client.post("/parse", json={"urls": [BOOK], "callback_url": HOOK}).get_json()["batch_id"]
    work(redis_client)
    job = fetch_job(redis_client, f"callback-{batch_id}")
    assert job.get_status() == JobStatus.SCHEDULED and job.retries_left == 4
    site.routes["/done"] = Reply(410, b"gone", {})
    make_queue(CALLBACK_QUEUE, redis_client).enqueue_job(job)
    work(redis_client)
    job = fetch_job(redis_client, f"callback-{batch_id}")
    assert job.get_status() == JobStatus.FAILED and job.retries_left == 0
    assert len(site.posts["/done"]) == 2


def test_the_sweep_catches_a_batch_whose_check_was_missed(client, redis_client, site, env):
    batch_id = client.post("/parse", json={"urls": [BOOK], "callback_url": HOOK}).get_json()["batch_id"]
    # As if the page job's own check had raced a sibling: the record is there, no callback yet.
    make_queue("goodreads", redis_client).empty()
    Storage(redis_client).save_record(make_record(BOOK, "goodreads_book", "done", "1", data={"title": "x"}), 3600)
    from jobs.callbacks import sweep

    assert sweep(redis_client) == 1 and sweep(redis_client) == 0
    work(redis_client)
    assert json.loads(site.posts["/done"][0][1])["batch_id"] == batch_id


@pytest.mark.parametrize("callback_url,code", [
    ("http://127.0.0.1:8080/hook", "invalid_callback_url"), ("file:///tmp/x", "invalid_callback_url"),
    ("http://user:pw@hooks.example.com/", "invalid_callback_url"), (42, "invalid_callback_url"),
])
def test_callback_urls_pass_the_ssrf_guard(client, callback_url, code):
    response = client.post("/parse", json={"urls": [BOOK], "callback_url": callback_url})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == code


def test_signature_helper_matches_the_documented_scheme():
    body = b'{"a":1}'
    digest = hmac.new(b"k", b"100." + body, hashlib.sha256).hexdigest()
    assert sign("k", "100", body) == f"sha256={digest}"


# ---- re-crawl, ticker, snapshots --------------------------------------------------------------


def submit_news_page(env: dict[str, str]) -> tuple[float, float]:
    """POST the news front page through an app with env's settings; the times just before and after."""
    before = time.time()
    create_app(env).test_client().post("/parse", json=[NEWS])
    return before, time.time()


@pytest.mark.parametrize("interval", [None, 120], ids=["default", "NEWS_RECRAWL_INTERVAL=120"])
def test_a_submitted_news_page_is_recrawled_every_interval_even_while_fresh(interval, redis_client, env):
    every = interval or 900  # NEWS_RECRAWL_INTERVAL's default
    env = {**env, "NEWS_RECRAWL_INTERVAL": str(interval)} if interval else env
    settings, news_queue = load_settings(env), make_queue("news", redis_client)
    before, after = submit_news_page(env)
    news_queue.empty()
    # Fetched a moment ago and fresh for 15 minutes: the re-crawl must fetch it all the same.
    Storage(redis_client).save_record(make_record(NEWS, "news_headlines", "done", "1", data={"headlines": []}), 3600)
    assert recrawl.run_due(redis_client, settings, before + every - 1) == 0
    assert recrawl.run_due(redis_client, settings, after + every) == 1
    assert news_queue.count == 1
    assert recrawl.run_due(redis_client, settings, after + 2 * every - 1) == 0  # the next one, an interval on
    assert recrawl.run_due(redis_client, settings, after + 2 * every) == 1


@pytest.mark.parametrize("wanted_for", [None, 3600], ids=["default", "NEWS_RECRAWL_FOR=3600"])
def test_a_news_page_nobody_submitted_for_news_recrawl_for_drops_off_the_schedule(wanted_for, redis_client, env):
    lasts = wanted_for or 7 * 86400  # NEWS_RECRAWL_FOR's default
    env = {**env, "NEWS_RECRAWL_FOR": str(wanted_for)} if wanted_for else env
    settings = load_settings(env)
    before, after = submit_news_page(env)
    assert recrawl.run_due(redis_client, settings, before + lasts) == 1  # submitted within NEWS_RECRAWL_FOR
    assert recrawl.run_due(redis_client, settings, after + lasts + settings.news_recrawl_interval) == 0
    assert Storage(redis_client).due_recrawls(after + 10 * lasts) == []  # forgotten


def test_goodreads_pages_are_not_recrawled(client, redis_client, env):
    client.post("/parse", json=[BOOK])
    assert Storage(redis_client).due_recrawls(time.time() + 10**7) == []


def test_one_tick_chain_however_often_it_is_ensured(redis_client):
    for _ in range(3):
        ensure_ticking(redis_client, 5)
    scheduled = ScheduledJobRegistry(MAINTENANCE_QUEUE, connection=redis_client).get_job_ids()
    assert len(scheduled) == 1 and scheduled[0].startswith("tick-")


def test_tick_runs_maintenance_and_schedules_the_next(redis_client, env):
    queue = make_queue(MAINTENANCE_QUEUE, redis_client)
    queue.enqueue("jobs.ticker.tick", job_id="tick-now")
    started = time.time()
    work(redis_client)
    assert fetch_job(redis_client, "tick-now").return_value() == {"recrawled": 0, "callbacks": 0}
    [next_tick] = ScheduledJobRegistry(MAINTENANCE_QUEUE, connection=redis_client).get_job_ids()
    assert int(next_tick.removeprefix("tick-")) > started


def test_info_since_lists_the_new_headlines(client, redis_client, site):
    site.routes["/news"] = Reply(body=b"<html><title>alpha|beta</title></html>")
    client.post("/parse", json=[NEWS])
    work(redis_client)
    between = datetime.now(timezone.utc)
    time.sleep(0.01)
    site.routes["/news"] = Reply(body=b"<html><title>beta|gamma|delta</title></html>")
    client.post("/parse", json={"urls": [NEWS], "refresh": True})
    work(redis_client)
    body = client.get("/info", query_string={"url": NEWS, "since": between.isoformat()}).get_json()
    assert [h["title"] for h in body["new_headlines"]] == ["gamma", "delta"]
    assert [s["headline_count"] for s in body["snapshots"]] == [3, 2]
    everything = client.get("/info", query_string={"url": NEWS, "since": "2000-01-01T00:00:00Z"}).get_json()
    assert len(everything["new_headlines"]) == 3 and everything["compared_with"] is None
    bad = client.get("/info", query_string={"url": NEWS, "since": "yesterday"})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_since"
    assert (datetime.now(timezone.utc) - timedelta(seconds=60)) < datetime.fromisoformat(body["snapshots"][0]["fetched_at"])
