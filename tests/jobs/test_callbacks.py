"""Completion callbacks, news re-crawl and headline snapshots, with a real RQ worker and Redis."""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

import jobs.context
import jobs.ticker
import parsers
from config import load_settings
from jobs import recrawl
from jobs.callbacks import BODIES, sign, sweep
from jobs.queues import CALLBACK_QUEUE, MAINTENANCE_QUEUE, QUEUE_NAMES, fetch_job, job_id_for, make_queue
from jobs.tasks import generation, record_crash
from jobs.ticker import ensure_ticking
from server import create_app
from storage import CALLBACK_FORMATS, Storage, make_record
from tests.support.fixture_server import FixtureServer, Reply
from tests.support.job_runs import BurstWorker, title_of

BOOK = "https://www.goodreads.com/book/show/7"
NEWS = "https://www.bbc.com/news"
HOOK = "https://hooks.example.com/done"
SECRET = "hook-secret"
DELIVERY_SCHEDULE = [5, 30, 120, 600, 1800]  # README: retried "with backoff (5 s to 30 min)"


@pytest.fixture(scope="module")
def site():
    server = FixtureServer(["www.goodreads.com", "www.bbc.com", "hooks.example.com"]).start()
    yield server
    server.stop()


@pytest.fixture
def env(site, base_env, tmp_path: Path, monkeypatch) -> dict[str, str]:
    values = {
        **base_env, "CALLBACK_SECRET": SECRET, "FETCH_RETRIES": "2", "FETCH_HOST_DELAY": "0",
        "FETCH_CONNECT_TO": site.connect_to("www.goodreads.com", "www.bbc.com", "hooks.example.com"),
        "FETCH_CA_BUNDLE": str(site.write_ca_bundle(tmp_path / "ca.pem")),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(jobs.context, "_context", None)
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
        return {"kind": "goodreads_book", "title": title_of(html)}

    def news(html: str, url: str) -> dict:
        titles = title_of(html).split("|")
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
    assert payload == client.get(f"/batches/{batch_id}").get_json()  # the batch as GET /batches answers it
    work(redis_client)  # nothing left to send
    assert len(site.posts["/done"]) == 1


def test_a_slack_callback_posts_one_line_of_text_signed(client, redis_client, site):
    """What a Slack incoming webhook or response_url takes: {"text": ...} as application/json."""
    site.routes["/book/show/8"] = Reply(404, b"gone")
    body = {"urls": [BOOK, "https://www.goodreads.com/book/show/8"], "callback_url": HOOK, "callback_format": "slack"}
    batch_id = client.post("/parse", json=body).get_json()["batch_id"]
    work(redis_client)
    [(headers, posted)] = site.posts["/done"]
    assert headers["Content-Type"] == "application/json" and verify(headers, posted)
    assert json.loads(posted) == {"text": f"metaparse batch {batch_id} finished: 1 done, 1 failed (2 pages)"}


def test_a_batch_saved_before_callback_format_existed_calls_back_with_the_batch(client, redis_client, site):
    Storage(redis_client).save_record(make_record(BOOK, "goodreads_book", "done", "1", data={"title": "x"}), 3600)
    old_batch = {"id": "01d0" * 8, "created_at": datetime.now(timezone.utc), "callback_url": HOOK,
                 "items": [{"url": BOOK, "canonical_url": BOOK, "source": "goodreads", "job_id": "j"}]}
    Storage(redis_client).save_batch(old_batch)
    Storage(redis_client).watch_batch(old_batch["id"], [BOOK])
    assert sweep(redis_client) == 1
    work(redis_client)
    payload = json.loads(site.posts["/done"][0][1])
    assert payload["batch_id"] == old_batch["id"] and payload["counts"] == {"done": 1}


def test_every_callback_format_storage_accepts_has_a_body():
    assert set(BODIES) == CALLBACK_FORMATS


def test_a_batch_of_cached_pages_calls_back_at_once(client, redis_client, site):
    Storage(redis_client).save_record(make_record(BOOK, "goodreads_book", "done", "1", data={"title": "x"}), 3600)
    body = client.post("/parse", json={"urls": [BOOK], "callback_url": HOOK}).get_json()
    assert body["accepted"][0]["status"] == "cached"
    work(redis_client)
    assert json.loads(site.posts["/done"][0][1])["counts"] == {"done": 1}


def test_a_rerun_after_a_save_then_crash_still_calls_the_batch_back(client, redis_client, site):
    """The first run saved the record and died before RQ heard of it: the re-run neither
    fetches nor saves, and still tells the batch its page is done (notify once, every path)."""
    site.hits.clear()
    client.post("/parse", json={"urls": [BOOK], "callback_url": HOOK})
    job = fetch_job(redis_client, job_id_for(BOOK))
    saved = make_record(BOOK, "goodreads_book", "done", "1", data={"title": "first run"})
    assert Storage(redis_client).save_once(saved, 3600, job.id, generation(job)) is not None
    work(redis_client)
    [(_, body)] = site.posts["/done"]
    assert json.loads(body)["counts"] == {"done": 1} and "/book/show/7" not in site.hits


def test_a_page_whose_last_run_died_calls_its_batch_back_as_failed(client, redis_client, site):
    """The crash handler (record_crash: the worker's, when no retries are left) saves a failed
    record and tells the batches waiting on the page."""
    client.post("/parse", json={"urls": [BOOK], "callback_url": HOOK})
    job = fetch_job(redis_client, job_id_for(BOOK))
    make_queue("goodreads", redis_client).remove(job)  # the job had started; its worker died
    job.set_status(JobStatus.STARTED)
    record_crash(job, "the worker running this page died and no retries are left")
    work(redis_client)
    [(_, body)] = site.posts["/done"]
    payload = json.loads(body)
    assert payload["counts"] == {"failed": 1}
    assert payload["items"][0]["error"]["code"] == "worker_crashed"


def test_no_callback_until_every_url_of_the_batch_is_finished(client, redis_client, site):
    Storage(redis_client).save_record(make_record(BOOK, "goodreads_book", "done", "1", data={"title": "x"}), 3600)
    batch_id = client.post("/parse", json={"urls": [BOOK, NEWS], "callback_url": HOOK}).get_json()["batch_id"]
    # The news page is still queued: no callback yet.
    assert sweep(redis_client) == 0 and fetch_job(redis_client, f"callback-{batch_id}") is None
    site.routes["/news"] = Reply(body=b"<html><title>alpha</title></html>")
    work(redis_client)
    [(_, body)] = site.posts["/done"]
    assert json.loads(body)["counts"] == {"done": 2}


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


def submit_finished_batch(client, redis_client, callback_url: str = HOOK) -> str:
    """A batch whose only page is stored already, so its callback is due at once; its id."""
    Storage(redis_client).save_record(make_record(BOOK, "goodreads_book", "done", "1", data={"title": "x"}), 3600)
    return client.post("/parse", json={"urls": [BOOK], "callback_url": callback_url}).get_json()["batch_id"]


def attempt_delivery(redis_client, batch_id: str) -> tuple[Job, float | None]:
    """Run the batch's callback job now (a scheduled retry is moved up): the job, and the seconds
    from this attempt to the retry RQ scheduled (None when it scheduled none)."""
    job = fetch_job(redis_client, f"callback-{batch_id}")
    scheduled = ScheduledJobRegistry(CALLBACK_QUEUE, connection=redis_client)
    if job.get_status() == JobStatus.SCHEDULED:
        scheduled.remove(job)
        make_queue(CALLBACK_QUEUE, redis_client).enqueue_job(job)
    attempted_at = datetime.now(timezone.utc)
    work(redis_client)
    job = fetch_job(redis_client, job.id)
    if job.get_status() != JobStatus.SCHEDULED:
        return job, None
    return job, (scheduled.get_scheduled_time(job) - attempted_at).total_seconds()


def test_an_undelivered_callback_is_retried_on_the_documented_backoff_then_given_up(client, redis_client, site):
    site.routes["/done"] = Reply(503, b"busy", {})
    batch_id = submit_finished_batch(client, redis_client)
    for interval in DELIVERY_SCHEDULE:
        job, waits = attempt_delivery(redis_client, batch_id)
        # RQ schedules in whole seconds: the retry may be due up to 1 s before attempt + interval.
        assert waits is not None and interval - 1 <= waits <= interval + 5, (interval, waits)
    job, waits = attempt_delivery(redis_client, batch_id)
    assert job.get_status() == JobStatus.FAILED and waits is None
    assert len(site.posts["/done"]) == len(DELIVERY_SCHEDULE) + 1


@pytest.mark.parametrize("status", [429, 500, 501, 502, 503, 504, 507, 599])
def test_a_receiver_answering_429_or_5xx_is_tried_again(status, client, redis_client, site):
    site.routes["/done"] = Reply(status, b"later", {})
    job, waits = attempt_delivery(redis_client, submit_finished_batch(client, redis_client))
    assert job.get_status() == JobStatus.SCHEDULED and job.retries_left == len(DELIVERY_SCHEDULE) - 1
    assert waits is not None and DELIVERY_SCHEDULE[0] - 1 <= waits <= DELIVERY_SCHEDULE[0] + 5


@pytest.mark.parametrize("retry_after,waits_for", [("100", 100), ("7200", 1800)])
def test_a_receivers_retry_after_is_honoured_up_to_the_schedules_last_step(retry_after, waits_for, client,
                                                                          redis_client, site):
    site.routes["/done"] = Reply(429, b"slow down", {"Retry-After": retry_after})
    _, waits = attempt_delivery(redis_client, submit_finished_batch(client, redis_client))
    assert waits is not None and waits_for - 1 <= waits <= waits_for + 5


def test_an_unreachable_receiver_is_tried_again(client, redis_client, monkeypatch):
    with socket.socket() as unused:  # bound, never listening: refused, and no other process takes the port
        unused.bind(("127.0.0.1", 0))
        monkeypatch.setenv("FETCH_CONNECT_TO", f"hooks.example.com:443:127.0.0.1:{unused.getsockname()[1]}")
        job, waits = attempt_delivery(redis_client, submit_finished_batch(client, redis_client))
    assert job.get_status() == JobStatus.SCHEDULED and job.retries_left == len(DELIVERY_SCHEDULE) - 1
    assert waits is not None and DELIVERY_SCHEDULE[0] - 1 <= waits <= DELIVERY_SCHEDULE[0] + 5


@pytest.mark.parametrize("status", [302, 400, 401, 404, 408, 410, 422])
def test_any_other_answer_from_the_receiver_is_final(status, client, redis_client, site):
    site.routes["/done"] = Reply(status, b"no", {"Location": "https://hooks.example.com/elsewhere"})
    job, waits = attempt_delivery(redis_client, submit_finished_batch(client, redis_client))
    assert job.get_status() == JobStatus.FAILED and waits is None
    assert len(site.posts["/done"]) == 1 and "/elsewhere" not in site.posts  # a redirect is not followed


def test_a_callback_url_whose_name_resolves_to_a_private_address_is_never_posted(client, redis_client, monkeypatch):
    real_getaddrinfo = socket.getaddrinfo

    def rebound(host, *args, **kwargs):  # the receiver's name answers with a loopback address
        return real_getaddrinfo("127.0.0.1" if host == "rebound.example.com" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    batch_id = submit_finished_batch(client, redis_client, "https://rebound.example.com/hook")
    job, waits = attempt_delivery(redis_client, batch_id)
    assert job.get_status() == JobStatus.FAILED and waits is None
    assert "BlockedAddress" in job.latest_result().exc_string


def test_the_sweep_catches_a_batch_whose_check_was_missed(client, redis_client, site, env):
    batch_id = client.post("/parse", json={"urls": [BOOK], "callback_url": HOOK}).get_json()["batch_id"]
    # As if the page job's own check had raced a sibling: the record is there, no callback yet.
    make_queue("goodreads", redis_client).empty()
    Storage(redis_client).save_record(make_record(BOOK, "goodreads_book", "done", "1", data={"title": "x"}), 3600)
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


@pytest.mark.parametrize("every", [None, 20], ids=["default", "TICK_SECONDS=20"])
def test_a_tick_recrawls_sweeps_callbacks_and_schedules_the_next_tick(every, client, redis_client, monkeypatch):
    period = every or 5  # TICK_SECONDS's default
    if every:
        monkeypatch.setenv("TICK_SECONDS", str(every))
    client.post("/parse", json=[NEWS])
    Storage(redis_client).schedule_recrawl(NEWS, time.time())  # its re-crawl is due
    # A finished batch whose callback check was missed: the tick's sweep finds it.
    client.post("/parse", json={"urls": [BOOK], "callback_url": HOOK})
    make_queue("goodreads", redis_client).empty()
    Storage(redis_client).save_record(make_record(BOOK, "goodreads_book", "done", "1", data={"title": "x"}), 3600)
    tick_time = (int(time.time()) // 100 + 10) * 100 + 2.5  # the tick's clock: 2.5 s past a round time
    monkeypatch.setattr(jobs.ticker, "time", SimpleNamespace(time=lambda: tick_time))
    make_queue(MAINTENANCE_QUEUE, redis_client).enqueue("jobs.ticker.tick", job_id="tick-now")
    work(redis_client)
    assert fetch_job(redis_client, "tick-now").return_value() == {"recrawled": 1, "callbacks": 1}
    next_tick = (int(tick_time) // period + 1) * period  # the next whole multiple of TICK_SECONDS
    assert f"tick-{next_tick}" in ScheduledJobRegistry(MAINTENANCE_QUEUE, connection=redis_client).get_job_ids()


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
