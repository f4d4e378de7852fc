"""Retry visibility and the control routes, end to end: gunicorn + `python -m jobs.worker` + real Redis.

One service for the module, with retries on, an API token and any site allowed. The
"Goodreads" and "slow.example.com" sites are a fixture HTTPS server. slow.example.com is
given a host delay of 10 minutes (FETCH_HOST_DELAYS): once the `paced` fixture's page has
been fetched, every other page of that host waits in the frontier for the module's whole
run, so tests can cancel jobs that are certainly queued. The CLI's control commands run as
subprocesses against the same service.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from redis import Redis
from rq.registry import ScheduledJobRegistry

from config import PROJECT_ROOT
from jobs.queues import job_id_for
from storage import RECORD_INDEX_KEYS, RECRAWL_DUE, SNAPSHOTS, Storage
from tests.support import processes
from tests.support.fixture_server import FixtureServer, Reply, send_reply

pytestmark = pytest.mark.e2e
FIXTURE_BOOK = (Path(__file__).parents[1] / "fixtures" / "e2e" / "goodreads-book.html").read_bytes()
TOKEN = f"control-{uuid.uuid4().hex}"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SLOW_HOST = "slow.example.com"
# Hosts of their own for the pages that answer 503: a Retry-After slows its host down for every page of it
FLAKY_PAGE, BUSY_PAGE = "https://flaky.example.com/flaky", "https://busy.example.com/busy"
HOSTS = ["www.goodreads.com", SLOW_HOST, "flaky.example.com", "busy.example.com"]
RETRY_AFTER = 4  # seconds the flaky page asks for: the retry wait the test looks into
POLL_SECONDS = 60


def book(book_id: int) -> str:
    return f"https://www.goodreads.com/book/show/{book_id}"


def slow_page(name: str) -> str:
    return f"https://{SLOW_HOST}/{name}"


class Flaky:
    """503 (with Retry-After) the first time, the book after."""

    def __init__(self):
        self.calls = 0

    def __call__(self, handler) -> None:
        self.calls += 1
        if self.calls == 1:
            send_reply(handler, Reply(503, b"busy", {"Content-Type": "text/html", "Retry-After": str(RETRY_AFTER)}))
        else:
            send_reply(handler, Reply(body=FIXTURE_BOOK))


def slow_book(handler) -> None:
    time.sleep(3)  # long enough to be seen started
    send_reply(handler, Reply(body=FIXTURE_BOOK))


@pytest.fixture(scope="module")
def site():
    server = FixtureServer(HOSTS).start()
    for book_id in (1, 5, 6):
        server.routes[f"/book/show/{book_id}"] = Reply(body=FIXTURE_BOOK)
    server.routes["/flaky"] = Flaky()
    server.routes["/busy"] = Reply(503, b"busy", {"Content-Type": "text/html", "Retry-After": "120"})
    server.routes["/book/show/4"] = slow_book
    server.fallback = Reply(body=b"<html><head><title>A slow host's page</title></head><body>text</body></html>")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(site, module_redis_url, tmp_path_factory):
    logs = tmp_path_factory.mktemp("control")
    env = processes.service_env(
        REDIS_URL=module_redis_url, FETCH_RETRIES="2", API_TOKENS=TOKEN, ALLOW_ANY_SITE="true",
        FETCH_HOST_DELAYS=f"{SLOW_HOST}=600", DATA_DIR=str(logs / "data"),
        **site.fetch_env(logs, *HOSTS),
    )
    service = processes.start_service(env, logs, name="CONTROL")
    yield service
    service.stop()


@pytest.fixture(scope="module")
def redis(module_redis_url) -> Redis:
    return Redis.from_url(module_redis_url)


@pytest.fixture(scope="module")
def paced(service):
    """slow.example.com fetched once: its next turn is 10 minutes away, its other pages wait."""
    submit(service, [slow_page("pacer")])
    assert wait_for_record(service, slow_page("pacer"))["status"] == "done"
    return service


def submit(service, urls: list[str]) -> dict:
    response = requests.post(f"{service.base}/parse", json=urls, headers=AUTH, timeout=10)
    assert response.status_code == 202, response.text
    return response.json()


def info(service, url: str) -> requests.Response:
    return requests.get(f"{service.base}/info", params={"url": url}, timeout=10)


def job(service, url: str) -> dict:
    return requests.get(f"{service.base}/jobs/{job_id_for(url)}", timeout=10).json()


def cancel(service, url: str, headers: dict | None = None) -> requests.Response:
    return requests.delete(f"{service.base}/jobs/{job_id_for(url)}", headers=AUTH if headers is None else headers,
                           timeout=10)


def wait_until(check, what: str, seconds: float = POLL_SECONDS):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s: {what}")


def wait_for_record(service, url: str) -> dict:
    return wait_until(lambda: (r := info(service, url)).status_code == 200 and r.json(), f"a record of {url}")


def wait_in_lane(service, url: str) -> dict:
    """The 202 of a page once a worker has moved its job, and every job queued with it, from the
    page queue into its host's lane (where waiting.backlog counts them)."""
    def drained() -> dict | None:
        health = requests.get(f"{service.base}/healthz", timeout=10).json()
        answer = info(service, url)
        return health["queues"]["pages"] == 0 and answer.status_code == 202 and answer.json()["waiting"]["backlog"] \
            and answer.json()
    return wait_until(drained, f"{url} waiting for its host")


# ---- retry visibility ---------------------------------------------------------------------------


def test_a_retry_shows_its_attempts_error_and_next_try_then_done(service):
    url = FLAKY_PAGE
    batch_id = submit(service, [url])["batch_id"]
    waiting = wait_until(lambda: (r := info(service, url)).status_code == 202 and r.json()["next_try_at"]
                         and r.json(), "the retry's wait shown by GET /info")
    assert waiting["status"] == "queued" and waiting["attempts"] == 1 and waiting["retries_left"] == 1
    assert waiting["last_error"]["code"] == "fetch_transient" and "HTTP 503" in waiting["last_error"]["message"]
    due = datetime.fromisoformat(waiting["next_try_at"])
    assert datetime.now(timezone.utc) - timedelta(seconds=2) < due < datetime.now(timezone.utc) + timedelta(seconds=30)
    scheduled = job(service, url)
    assert scheduled["status"] == "scheduled" and scheduled["attempts"] == 1 and scheduled["retries_left"] == 1
    assert scheduled["last_error"] == waiting["last_error"] and scheduled["next_try_at"] == waiting["next_try_at"]
    [item] = requests.get(f"{service.base}/batches/{batch_id}", timeout=10).json()["items"]
    assert item["attempts"] == 1 and item["last_error"]["code"] == "fetch_transient"
    assert wait_for_record(service, url)["status"] == "done"
    done = wait_until(lambda: (found := job(service, url))["status"] == "finished" and found, "RQ's finish")
    assert done["attempts"] == 2 and done["next_try_at"] is None and done["last_error"]["code"] == "fetch_transient"


# ---- DELETE /jobs/<id> --------------------------------------------------------------------------


def test_a_queued_job_is_canceled_leaves_its_lane_and_its_url_can_be_submitted_again(paced):
    first, second = slow_page(f"a-{uuid.uuid4().hex}"), slow_page(f"b-{uuid.uuid4().hex}")
    submit(paced, [first, second])
    wait_in_lane(paced, first)
    backlog = wait_in_lane(paced, second)["waiting"]["backlog"]
    assert cancel(paced, first, headers={}).status_code == 401  # the token, as POST /parse
    response = cancel(paced, first)
    assert response.status_code == 200 and response.json() == {"job_id": job_id_for(first), "status": "canceled"}
    assert info(paced, second).json()["waiting"]["backlog"] == backlog - 1  # out of its host's lane
    assert info(paced, first).status_code == 200 and info(paced, first).json()["status"] == "canceled"
    assert job(paced, first)["status"] == "canceled"
    assert cancel(paced, first).status_code == 200  # again: still canceled
    again = submit(paced, [first])["accepted"][0]
    assert again["status"] == "queued"
    assert info(paced, first).status_code == 202 and job(paced, first)["status"] == "queued"


def test_a_job_waiting_to_retry_is_canceled(service, redis):
    url = BUSY_PAGE
    submit(service, [url])
    wait_until(lambda: job(service, url)["status"] == "scheduled", "the job scheduled for its retry")
    assert cancel(service, url).status_code == 200
    assert job(service, url)["status"] == "canceled"
    assert job_id_for(url) not in ScheduledJobRegistry("pages", connection=redis).get_job_ids()
    assert info(service, url).json() == {"url": url, "status": "canceled", "job_id": job_id_for(url)}


def test_started_finished_and_unknown_jobs_are_refused(service):
    url = book(4)
    submit(service, [url])
    wait_until(lambda: job(service, url)["status"] == "started", "the slow job started")
    started = cancel(service, url)
    assert started.status_code == 409 and started.json()["error"]["code"] == "not_cancelable"
    assert "started" in started.json()["error"]["message"]
    wait_for_record(service, url)
    wait_until(lambda: job(service, url)["status"] == "finished", "the slow job finished")
    finished = cancel(service, url)
    assert finished.status_code == 409 and "finished" in finished.json()["error"]["message"]
    assert cancel(service, book(999)).status_code == 404


# ---- POST /batches/<id>/cancel ------------------------------------------------------------------


def test_a_batch_is_canceled_but_never_by_a_cross_site_form(paced):
    done = book(1)
    submit(paced, [done])
    wait_for_record(paced, done)
    waiting = [slow_page(f"c-{uuid.uuid4().hex}"), slow_page(f"d-{uuid.uuid4().hex}")]
    batch_id = submit(paced, [*waiting, done, waiting[0] + "#again"])["batch_id"]
    url = f"{paced.base}/batches/{batch_id}/cancel"
    for content_type in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"):
        form = requests.post(url, data="{}", headers={**AUTH, "Content-Type": content_type}, timeout=10)
        assert form.status_code == 415 and form.json()["error"]["code"] == "unsupported_media_type"
    assert requests.post(url, json={"all": True}, headers=AUTH, timeout=10).status_code == 400
    assert requests.post(url, json={}, timeout=10).status_code == 401
    assert all(info(paced, page).status_code == 202 for page in waiting)  # nothing canceled so far
    answer = requests.post(url, json={}, headers=AUTH, timeout=10).json()
    assert [(item["canonical_url"], item["status"]) for item in answer["canceled"]] == [(p, "canceled") for p in waiting]
    assert [(item["canonical_url"], item["status"]) for item in answer["not_canceled"]] == [(done, "finished")]
    summary = requests.get(f"{paced.base}/batches/{batch_id}", timeout=10).json()
    assert summary["counts"] == {"canceled": 3, "done": 1} and summary["finished"] is True


# ---- DELETE /records ----------------------------------------------------------------------------


def test_a_record_is_deleted_with_its_snapshots_and_recrawls(service, redis):
    url = book(5)
    submit(service, [url])
    wait_for_record(service, url)
    storage = Storage(redis)
    storage.push_snapshot(url, {"fetched_at": datetime.now(timezone.utc), "headlines": []}, 5, 3600)
    storage.want_recrawl(url, time.time() + 600, time.time())
    spelled = "https://m.goodreads.com/book/show/5-a-slug?utm_source=x"
    delete = requests.delete(f"{service.base}/records", params={"url": spelled}, headers=AUTH, timeout=10)
    assert delete.status_code == 200, delete.text
    assert delete.json() == {"url": url, "deleted": True, "refresh": None, "job_id": job_id_for(url)}
    assert info(service, url).status_code == 404
    assert not redis.exists(SNAPSHOTS + url) and redis.zscore(RECRAWL_DUE, url) is None
    assert all(redis.zscore(key, url) is None for key in RECORD_INDEX_KEYS)  # GET /records lists it no more
    again = requests.delete(f"{service.base}/records", params={"url": url}, headers=AUTH, timeout=10)
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"
    assert requests.delete(f"{service.base}/records", params={"url": url}, timeout=10).status_code == 401
    assert submit(service, [url])["accepted"][0]["status"] == "queued"  # not cached any more: fetched again
    assert wait_for_record(service, url)["status"] == "done"


# ---- GET /batches -------------------------------------------------------------------------------


def test_recent_batches_come_newest_first_in_exact_pages(service):
    mine = [submit(service, [book(6)])["batch_id"] for _ in range(5)]
    listed, pages, cursor = [], [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = requests.get(f"{service.base}/batches", params=params, timeout=10).json()
        pages.append(len(page["batches"]))
        listed += page["batches"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ids = [card["batch_id"] for card in listed]
    assert len(ids) == len(set(ids)) and all(size == 2 for size in pages[:-1]) and 1 <= pages[-1] <= 2
    moments = [datetime.fromisoformat(card["created_at"]) for card in listed]
    assert moments == sorted(moments, reverse=True)
    assert [batch_id for batch_id in ids if batch_id in mine] == mine[::-1]
    card = listed[ids.index(mine[0])]
    assert card["total"] == 1 and card["urls"] == 1 and card["callback"] is False


# ---- the CLI ------------------------------------------------------------------------------------


def cli(service, *args: str) -> subprocess.CompletedProcess:
    env = {**processes.service_env(), "METAPARSE_URL": service.base, "METAPARSE_TOKEN": TOKEN}
    return subprocess.run([sys.executable, "-m", "cli", *args], env=env, cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=60)


def test_the_cli_cancels_deletes_and_lists(paced):
    queued, unknown = slow_page(f"e-{uuid.uuid4().hex}"), "f" * 64
    submit(paced, [queued])
    canceled = cli(paced, "cancel", job_id_for(queued), unknown)
    assert canceled.returncode == 4 and "Traceback" not in canceled.stderr  # one was not found
    assert canceled.stdout.splitlines() == [f"canceled  {job_id_for(queued)}  ",
                                            f"kept      {unknown}  not_found: no job '{unknown}' (finished jobs are kept for a day)"]
    refused = cli(paced, "cancel", job_id_for(slow_page("pacer")), "--json")
    assert refused.returncode == 1 and json.loads(refused.stdout)[0]["error"]["code"] == "not_cancelable"
    batch_id = submit(paced, [slow_page(f"g-{uuid.uuid4().hex}")])["batch_id"]
    by_batch = cli(paced, "cancel", "--batch", batch_id)
    assert by_batch.returncode == 0 and by_batch.stdout.splitlines()[-1] == "1 canceled, 0 kept"
    shown = cli(paced, "get", queued)
    assert shown.returncode == 1 and shown.stdout.splitlines() == [
        f"canceled: {queued}", f"  its job {job_id_for(queued)} was canceled before it ran: submit the URL again to fetch it"]
    assert cli(paced, "cancel", "--batch", uuid.uuid4().hex).returncode == 4
    assert cli(paced, "cancel").returncode == 2  # neither job ids nor --batch
    pacer_batch = submit(paced, [slow_page("pacer")])["batch_id"]  # its one page started or ended: kept
    started_or_done = cli(paced, "cancel", "--batch", pacer_batch)
    assert started_or_done.returncode == 1 and started_or_done.stdout.splitlines()[-1] == "0 canceled, 1 kept"
    deleted = cli(paced, "delete", slow_page("pacer"), slow_page("never"))
    assert deleted.returncode == 4 and deleted.stdout.splitlines()[0] == f"deleted   {slow_page('pacer')}"
    listed = cli(paced, "batches", "--limit", "1", "--json")
    assert listed.returncode == 0 and [card["batch_id"] for card in json.loads(listed.stdout)] == [pacer_batch]
