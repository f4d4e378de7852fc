"""The seed's routes through the real service (gunicorn + `python -m jobs.worker`), driven as
a client written for the seed drives them: `requests.post(url, json=[...])`, then
`resp.json()["title"]`. Every expected answer is the seed's own request/response text
(DESIGN.md, "Seed-compatible aliases"), spelled out here rather than imported.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.support import processes
from tests.support.processes import wait_for_record
from tests.support.fixture_server import FixtureServer, Reply

pytestmark = pytest.mark.e2e
FIXTURE_BOOK = (Path(__file__).parents[1] / "fixtures" / "e2e" / "goodreads-book.html").read_bytes()
# The same page with a title and an author that are not ASCII.
UNICODE_BOOK = FIXTURE_BOOK.replace(b"The Lighthouse Keeper's Almanac", "Der Leuchtturmwärter – Almanach".encode()) \
    .replace(b"Imaginary Author", "Émile Zoë".encode())
SCHEDULED = "{} books are scheduled for info parsing."
NOT_BOOK_LINKS = "Only array of goodreads book links is accepted."
NO_META_INFO = "No meta info found for this book."
BAD_BOOK_URL = "'url' query parameter is required. It must be a valid goodreads book URL."
SEED_TEXT = "text/html; charset=utf-8"  # what a Flask view returning a str answers with


@pytest.fixture(scope="module")
def site():
    server = FixtureServer(["www.goodreads.com"]).start()
    server.routes["/book/show/1"] = Reply(body=FIXTURE_BOOK)
    server.routes["/book/show/2"] = Reply(body=UNICODE_BOOK)
    server.routes["/book/show/404"] = Reply(404, b"<html>not here</html>")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def base(site, module_redis_url, tmp_path_factory):
    logs = tmp_path_factory.mktemp("seed")
    env = processes.service_env(REDIS_URL=module_redis_url, FETCH_RETRIES="0", FETCH_HOST_DELAY="0",
                                **site.fetch_env(logs, "www.goodreads.com"))
    service = processes.start_service(env, logs, name="SEED")
    yield service.base
    service.stop()




def test_a_seed_client_schedules_books_and_reads_their_info(base):
    links = ["https://www.goodreads.com/book/show/1-the-lighthouse", "https://m.goodreads.com/book/show/1?utm_source=x",
             "https://www.goodreads.com/book/show/404", "https://www.bbc.com/news", "not a link"]
    before = requests.get(f"{base}/getBookInfo", params={"url": links[0]}, timeout=5)
    assert (before.status_code, before.headers["Content-Type"], before.text) == (200, SEED_TEXT, NO_META_INFO)
    resp = requests.post(f"{base}/parseGoodreadsLinks", json=links, timeout=5)
    # Two books: two spellings of book 1 count once; the news page and the non-link are left out.
    assert (resp.status_code, resp.headers["Content-Type"], resp.text) == (200, SEED_TEXT, SCHEDULED.format(2))
    record = wait_for_record(base, links[1])
    resp = requests.get(f"{base}/getBookInfo", params={"url": links[1]}, timeout=5)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    assert resp.json() == {"title": "The Lighthouse Keeper's Almanac", "author": "Imaginary Author", "rating": 4.12,
                           "description": record["data"]["description"]}
    assert resp.json()["description"].startswith("A keeper counts ships.")


def test_a_book_whose_fetch_failed_has_no_meta_info(base):
    url = "https://www.goodreads.com/book/show/404"
    requests.post(f"{base}/parseGoodreadsLinks", json=[url], timeout=5).raise_for_status()
    assert wait_for_record(base, url)["status"] == "failed"
    resp = requests.get(f"{base}/getBookInfo", params={"url": url}, timeout=5)
    assert (resp.status_code, resp.headers["Content-Type"], resp.text) == (200, SEED_TEXT, NO_META_INFO)


def test_book_info_keeps_non_ascii_text_as_utf_8(base):
    url = "https://www.goodreads.com/book/show/2"
    assert requests.post(f"{base}/parseGoodreadsLinks", json=[url], timeout=5).text == SCHEDULED.format(1)
    wait_for_record(base, url)
    resp = requests.get(f"{base}/getBookInfo", params={"url": url}, timeout=5)
    assert resp.json()["title"] == "Der Leuchtturmwärter – Almanach" and resp.json()["author"] == "Émile Zoë"
    assert "Leuchtturmwärter – Almanach".encode() in resp.content and b"\\u" not in resp.content


@pytest.mark.parametrize("body", [[], ["https://www.bbc.com/news", 7],
                                  {"urls": ["https://www.goodreads.com/book/show/1"]},
                                  "https://www.goodreads.com/book/show/1"])
def test_anything_but_a_list_with_a_book_is_the_seeds_400(base, body):
    resp = requests.post(f"{base}/parseGoodreadsLinks", json=body, timeout=5)
    assert (resp.status_code, resp.headers["Content-Type"], resp.text) == (400, SEED_TEXT, NOT_BOOK_LINKS)


@pytest.mark.parametrize("params", [{}, {"url": ""}, {"url": "https://www.bbc.com/news"},
                                    {"url": "https://www.goodreads.com/author/show/1"}, {"url": "javascript:alert(1)"}])
def test_book_info_without_a_book_url_is_the_seeds_400(base, params):
    resp = requests.get(f"{base}/getBookInfo", params=params, timeout=5)
    assert (resp.status_code, resp.headers["Content-Type"], resp.text) == (400, SEED_TEXT, BAD_BOOK_URL)


def test_what_the_seed_never_had_keeps_the_services_json_errors(base):
    too_big = requests.post(f"{base}/parseGoodreadsLinks", data=b"[" + b" " * 70_000 + b"]",
                            headers={"Content-Type": "application/json"}, timeout=5)
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "body_too_large"
    as_form = requests.post(f"{base}/parseGoodreadsLinks", data={"links": "https://www.goodreads.com/book/show/1"},
                            timeout=5)
    assert as_form.status_code == 415 and as_form.json()["error"]["code"] == "unsupported_media_type"
