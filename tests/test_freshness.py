"""How long records, batches and headline snapshots live (README "Freshness and re-crawls",
RECORD_RETENTION, SNAPSHOTS_KEPT, GET /batches for 7 days), on a real Redis.

The TTL a record gets is read from Redis after the job saved it (run by an RQ worker in this
process). Freshness is decided on a record's age: each record is backdated to a known age, or
its age is computed with a given "now", so no test waits for time to pass.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import parsers
from config import load_settings
from jobs.queues import Submitter, fetch_job, is_fresh, make_queue
from jobs.tasks import record_crash
from server import create_app
from sources import route
from storage import Storage, batch_key, make_record, record_key
from tests.support import job_runs
from tests.support.fixture_server import FixtureServer, Reply
from tests.support.job_runs import BurstWorker, save_done_record, title_of

MINUTE, DAY = 60, 86400
DEFAULT_RETENTION = 30 * DAY  # RECORD_RETENTION's default
# Each kind of record: a page of that kind, its queue, and how long README says it stays fresh.
KINDS = {
    "goodreads_book": ("https://www.goodreads.com/book/show/42", "goodreads", 7 * DAY),
    "news_headlines": ("https://www.bbc.com/news", "news", 15 * MINUTE),
    "page": ("https://pages.example.org/about", "pages", 1 * DAY),
}
HOSTS = ("www.goodreads.com", "www.bbc.com", "pages.example.org")
NEWS = KINDS["news_headlines"][0]


@pytest.fixture(scope="module")
def site():
    server = FixtureServer(list(HOSTS)).start()
    yield server
    server.stop()


@pytest.fixture
def worker_env(site, redis_url, tmp_path: Path, monkeypatch) -> Callable[..., dict[str, str]]:
    """worker_env(**settings): the worker's environment for this site (any site allowed, no
    retries, no spacing between a host's requests: politeness is not under test) plus settings."""
    def make(**settings: str) -> dict[str, str]:
        base = {"ALLOW_ANY_SITE": "true", "FETCH_HOST_DELAY": "0", **settings}
        return job_runs.worker_env(site, redis_url, tmp_path, monkeypatch, retries=0, hosts=HOSTS, settings=base)
    return make


@pytest.fixture
def client(base_env, redis_client):
    return create_app({**base_env, "ALLOW_ANY_SITE": "true"}).test_client()


@pytest.fixture(autouse=True)
def title_parsers(monkeypatch):
    """Lifetimes are under test, not parsing: every source's parser reads the page's <title>."""
    def parse_title(html: str, url: str) -> dict:
        title = title_of(html)
        return {"title": title, "headlines": [{"title": title, "url": f"{url}/{title}"}]}

    for source in ("goodreads", "news", "generic"):
        monkeypatch.setitem(parsers.PARSERS, source, parse_title)


def serve(site: FixtureServer, url: str, reply: Reply) -> None:
    site.routes["/" + url.split("/", 3)[3]] = reply


def run_page_job(redis_client, env: dict[str, str], url: str) -> None:
    """Fetch url now, as a worker does: its job is submitted and run to the end."""
    Submitter(redis_client, load_settings(env)).submit(route(url, allow_any_site=True), refresh=True)
    job_runs.work_burst(redis_client, worker_class=BurstWorker)


def save_done(redis_client, url: str, kind: str, age: timedelta) -> None:
    """A done record fetched `age` ago (kept an hour: its TTL is not under test here)."""
    save_done_record(redis_client, url, kind, {"title": "t", "headlines": []}, age)


def assert_kept_for(redis_client, url: str, seconds: int) -> None:
    ttl = redis_client.ttl(record_key(url))
    assert seconds - 60 <= ttl <= seconds, f"kept {ttl} s, expected {seconds} s"


# ---- how long Redis keeps a record ------------------------------------------------------------


@pytest.mark.parametrize("retention", [None, 3600], ids=["default-retention", "retention-1h"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_saved_record_is_kept_while_fresh_then_record_retention_more(kind, retention, site, worker_env,
                                                                      redis_client):
    url, _, fresh_for = KINDS[kind]
    env = worker_env(RECORD_RETENTION=str(retention)) if retention else worker_env()
    serve(site, url, Reply(body=b"<html><title>Today</title></html>"))
    run_page_job(redis_client, env, url)
    assert Storage(redis_client).load_record(url)["status"] == "done"
    assert_kept_for(redis_client, url, fresh_for + (retention or DEFAULT_RETENTION))


def fail_by_404(site: FixtureServer, redis_client, env: dict[str, str], url: str) -> None:
    serve(site, url, Reply(404, b"gone"))
    run_page_job(redis_client, env, url)


def fail_by_a_dead_worker(site: FixtureServer, redis_client, env: dict[str, str], url: str) -> None:
    """What the worker pool records when the worker running the job died on its last try."""
    submission = Submitter(redis_client, load_settings(env)).submit(route(url, allow_any_site=True))
    record_crash(fetch_job(redis_client, submission.job_id), "killed")


@pytest.mark.parametrize("fail", [fail_by_404, fail_by_a_dead_worker], ids=["site-answers-404", "worker-died"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_record_is_kept_as_long_as_a_done_one(kind, fail, site, worker_env, redis_client):
    url, _, fresh_for = KINDS[kind]
    fail(site, redis_client, worker_env(), url)
    assert Storage(redis_client).load_record(url)["status"] == "failed"
    assert_kept_for(redis_client, url, fresh_for + DEFAULT_RETENTION)


# ---- fresh: answered cached; stale: fetched again ---------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_record_is_fresh_until_its_documented_age(kind):
    url, _, fresh_for = KINDS[kind]
    record = make_record(url, kind, "done", parsers.PARSER_VERSION, data={})
    ttl, fetched_at = route(url, allow_any_site=True).ttl, record["fetched_at"]
    assert is_fresh(record, ttl, now=fetched_at + timedelta(seconds=fresh_for - 1))
    assert not is_fresh(record, ttl, now=fetched_at + timedelta(seconds=fresh_for + 1))


@pytest.mark.parametrize("age_past_fresh,refresh,answer", [
    (-MINUTE, False, "cached"), (MINUTE, False, "queued"), (-MINUTE, True, "queued"),
], ids=["a-minute-before-stale", "a-minute-after", "fresh-with-refresh"])
@pytest.mark.parametrize("kind", KINDS)
def test_post_parse_answers_a_fresh_record_cached_and_fetches_a_stale_one(kind, age_past_fresh, refresh, answer,
                                                                          client, redis_client):
    url, queue, fresh_for = KINDS[kind]
    save_done(redis_client, url, kind, age=timedelta(seconds=fresh_for + age_past_fresh))
    [accepted] = client.post("/parse", json={"urls": [url], "refresh": refresh}).get_json()["accepted"]
    assert accepted["status"] == answer
    assert make_queue(queue, redis_client).count == (1 if answer == "queued" else 0)


# ---- batches and headline snapshots -----------------------------------------------------------


def test_a_batch_is_kept_7_days_for_get_batches(client, redis_client):
    batch_id = client.post("/parse", json=[NEWS]).get_json()["batch_id"]
    assert 7 * DAY - 60 <= redis_client.ttl(batch_key(batch_id)) <= 7 * DAY
    assert client.get(f"/batches/{batch_id}").status_code == 200
    redis_client.delete(batch_key(batch_id))  # what Redis does once those 7 days are over
    assert client.get(f"/batches/{batch_id}").status_code == 404


@pytest.mark.parametrize("kept", [None, 3], ids=["default", "SNAPSHOTS_KEPT=3"])
def test_a_news_fetch_keeps_the_newest_snapshots_kept_headline_lists(kept, site, worker_env, redis_client):
    keep = kept or 20  # SNAPSHOTS_KEPT's default
    storage, earlier = Storage(redis_client), datetime.now(timezone.utc) - timedelta(days=1)
    older = [f"old{n}" for n in range(keep + 5)]
    for n, title in enumerate(older):
        snapshot = {"fetched_at": earlier + timedelta(minutes=n), "headlines": [{"title": title, "url": f"{NEWS}/{n}"}]}
        storage.push_snapshot(NEWS, snapshot, keep=1000, ttl=3600)
    env = worker_env(SNAPSHOTS_KEPT=str(kept)) if kept else worker_env()
    serve(site, NEWS, Reply(body=b"<html><title>latest</title></html>"))
    run_page_job(redis_client, env, NEWS)
    titles = [snapshot["headlines"][0]["title"] for snapshot in storage.load_snapshots(NEWS)]
    assert titles == ["latest"] + older[::-1][:keep - 1]  # newest first
