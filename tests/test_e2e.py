"""End to end through real processes: gunicorn, an RQ worker pool, real Redis, a local HTTPS site.

The "Goodreads" site is a fixture HTTPS server on 127.0.0.1 with a test CA; the service
reaches it through FETCH_CONNECT_TO, so TLS and Host still say www.goodreads.com.
"""
from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from config import PROJECT_ROOT
from sources import route
from tests.pages import PAGES_DIR, SKIP_REASON, manifest
from tests.support import processes
from tests.support.processes import wait_for_record
from tests.support.fixture_server import FixtureServer, Reply

pytestmark = pytest.mark.e2e
FIXTURE_BOOK = Path(__file__).parent / "fixtures" / "e2e" / "goodreads-book.html"
POLL_SECONDS = 60


@pytest.fixture(scope="module")
def site():
    server = FixtureServer(["www.goodreads.com", "www.bbc.com", "hooks.example.com"]).start()
    server.routes["/book/show/1"] = Reply(body=FIXTURE_BOOK.read_bytes())
    server.routes["/book/show/404"] = Reply(404, b"<html>not here</html>")
    server.routes["/book/show/4040"] = Reply(404, b"<html>not here either</html>")  # no other test submits it
    server.routes["/hook"] = Reply(204, b"", {})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(site, module_redis_url, tmp_path_factory):
    """gunicorn + `python -m jobs.worker`, as the Procfile runs them."""
    logs = tmp_path_factory.mktemp("e2e")
    env = processes.service_env(
        REDIS_URL=module_redis_url, FETCH_RETRIES="0", CALLBACK_SECRET="e2e-secret",
        **site.fetch_env(logs, "www.goodreads.com", "www.bbc.com", "hooks.example.com"),
    )
    service = processes.start_service(env, logs, name="E2E")
    yield service
    service.stop()


def wait_for_post(site: FixtureServer, path: str) -> list:
    """What the fixture site received at path, once something has arrived (within POLL_SECONDS)."""
    deadline = time.monotonic() + POLL_SECONDS
    while not site.posts.get(path) and time.monotonic() < deadline:
        time.sleep(0.2)
    return site.posts[path]


def test_a_fixture_book_goes_from_post_to_record(service):
    response = requests.post(f"{service.base}/parse", json=["https://www.goodreads.com/book/show/1-the-lighthouse"], timeout=5)
    assert response.status_code == 202
    record = wait_for_record(service.base, "https://m.goodreads.com/book/show/1?utm_source=e2e")
    assert record["status"] == "done", record
    data = record["data"]
    assert data["kind"] == "goodreads_book" and data["book_id"] == "1"
    assert data["title"] == "The Lighthouse Keeper's Almanac"
    assert data["authors"] == ["Imaginary Author"]
    assert data["rating"] == 4.12 and data["ratings_count"] == 1534 and data["isbn13"] == "9780000000002"
    assert data["url"] == "https://www.goodreads.com/book/show/1"


def test_a_real_saved_goodreads_page_end_to_end(service, site):
    if not (PAGES_DIR / "MANIFEST.json").is_file():
        pytest.skip(SKIP_REASON)
    entry = next(e for e in manifest() if e["layout"] == "goodreads-next-2025" and e["facts"].get("isbn13"))
    book_path = urlsplit(route(entry["url"]).canonical_url).path  # the service fetches the canonical URL
    site.routes[book_path] = Reply(body=(PAGES_DIR / entry["file"]).read_bytes())
    requests.post(f"{service.base}/parse", json=[entry["url"]], timeout=5).raise_for_status()
    record = wait_for_record(service.base, entry["url"])
    assert record["status"] == "done", record
    facts, data = entry["facts"], record["data"]
    assert data["title"] == facts["title"]
    assert facts["author"] in data["authors"]
    assert data["isbn13"] == facts["isbn13"]
    assert data["rating"] == float(facts["rating"]) and data["ratings_count"] == facts["ratings_count"]


def test_a_failed_fetch_is_a_failed_record_and_visible_everywhere(service):
    # A page of its own: a failed record another test left would answer before this job ran.
    batch = requests.post(f"{service.base}/parse", json=["https://www.goodreads.com/book/show/4040"], timeout=5).json()
    record = wait_for_record(service.base, "https://www.goodreads.com/book/show/4040")
    assert record["status"] == "failed" and record["error"]["code"] == "http_status"
    job = requests.get(f"{service.base}/jobs/{batch['accepted'][0]['job_id']}", timeout=5).json()
    assert job["status"] == "failed" and "404" in job["error"]["message"]
    assert job["attempts"] == 1 and job["retries_left"] in (0, None) and job["step"] == "fetching"
    moments = [datetime.fromisoformat(job[name]) for name in ("created_at", "enqueued_at", "started_at", "ended_at")]
    assert moments == sorted(moments) and moments[2] < moments[3]  # started, then ended after the fetch
    counts = requests.get(f"{service.base}/batches/{batch['batch_id']}", timeout=5).json()["counts"]
    assert counts == {"failed": 1}


def test_completion_callback_reaches_the_receiver(service, site):
    body = {"urls": ["https://www.goodreads.com/book/show/1", "https://www.goodreads.com/book/show/404"],
            "callback_url": "https://hooks.example.com/hook"}
    batch_id = requests.post(f"{service.base}/parse", json=body, timeout=5).json()["batch_id"]
    [(headers, payload)] = wait_for_post(site, "/hook")
    assert headers["X-Metaparse-Signature"].startswith("sha256=")
    summary = json.loads(payload)
    assert summary["batch_id"] == batch_id and summary["finished"] and sum(summary["counts"].values()) == 2


def test_a_slack_callback_reaches_the_receiver_as_one_line_of_text(service, site):
    site.routes["/slack"] = Reply(200, b"ok", {"Content-Type": "text/plain"})  # what Slack answers
    body = {"urls": ["https://www.goodreads.com/book/show/1"], "callback_url": "https://hooks.example.com/slack",
            "callback_format": "slack"}
    batch_id = requests.post(f"{service.base}/parse", json=body, timeout=5).json()["batch_id"]
    [(headers, payload)] = wait_for_post(site, "/slack")
    assert headers["Content-Type"] == "application/json"
    assert json.loads(payload) == {"text": f"metaparse batch {batch_id} finished: 1 done, 0 failed (1 page)"}


def test_worker_health_check_sees_the_live_worker(service):
    check = subprocess.run([str(processes.VENV_BIN / "python"), "-m", "jobs.worker", "--check"],
                           env=service.env, cwd=PROJECT_ROOT, capture_output=True, timeout=30)
    assert check.returncode == 0, check.stderr


def test_dashboard_and_health_are_served(service):
    assert requests.get(f"{service.base}/rqstatus/", timeout=5).status_code == 200
    health = requests.get(f"{service.base}/healthz", timeout=5).json()
    assert health["status"] == "ok" and health["workers"] >= 1
