"""HTTP details through a real gunicorn (web/edge.py's worker): CORS for the origins in
CORS_ORIGINS, the RateLimit-* headers, ETag / Last-Modified and 304 on GET /info, JSON in
UTF-8, and 4xx messages that name the limit they enforce.

The service trusts one proxy (TRUSTED_PROXIES=1) so that each test is its own client by
X-Forwarded-For: every test starts with full rate-limit buckets, in any order.
"""
from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
import requests
from redis import Redis

from server import create_app
from tests.support import processes
from tests.support.job_runs import save_done_record

pytestmark = pytest.mark.e2e
APP = "https://app.example.com"  # listed in CORS_ORIGINS
OTHER = "https://elsewhere.example.com"  # not listed
BOOK = "https://www.goodreads.com/book/show/5907"
CLIENTS = (f"192.0.2.{n}" for n in itertools.count(1))


@pytest.fixture(scope="module")
def web(module_redis_url, tmp_path_factory):
    env = processes.service_env(REDIS_URL=module_redis_url, CORS_ORIGINS=f"{APP},http://localhost:3000",
                                TRUSTED_PROXIES="1", RATE_LIMIT_WRITE="100/second;3/minute")
    started = processes.start_web(env, tmp_path_factory.mktemp("http") / "web.log")
    yield started
    started.stop()


@pytest.fixture
def http(web):
    """requests to the live server as a client of its own (a fresh X-Forwarded-For address)."""
    session = requests.Session()
    session.headers["X-Forwarded-For"] = next(CLIENTS)
    session.base = web.base
    yield session
    session.close()


def get(http, path: str, **kwargs) -> requests.Response:
    return http.get(http.base + path, timeout=5, **kwargs)


def post(http, path: str, **kwargs) -> requests.Response:
    return http.post(http.base + path, timeout=5, **kwargs)


@pytest.fixture
def book(module_redis_url) -> dict:
    connection = Redis.from_url(module_redis_url)
    record = save_done_record(connection, BOOK, "goodreads_book", {"title": "Bücher über Bücher"}, timedelta(hours=1))
    connection.close()
    return record


# ---- CORS -------------------------------------------------------------------------------------


def test_a_listed_origins_preflight_is_granted(http):
    asked = {"Origin": APP, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization,content-type"}
    resp = http.options(http.base + "/parse", headers=asked, timeout=5)
    assert resp.status_code == 204 and resp.headers["Access-Control-Allow-Origin"] == APP
    assert {"POST", "GET", "DELETE"} <= set(resp.headers["Access-Control-Allow-Methods"].split(", "))
    assert {"Authorization", "Content-Type"} <= set(resp.headers["Access-Control-Allow-Headers"].split(", "))
    assert "Access-Control-Allow-Credentials" not in resp.headers and "Origin" in resp.headers["Vary"]


def test_an_unlisted_origins_preflight_gets_no_grant(http):
    for origin in (OTHER, "null", APP + ":8443", APP.replace("https", "http")):
        resp = http.options(http.base + "/parse", headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
                            timeout=5)
        assert not any(name.startswith("Access-Control-") for name in resp.headers), origin


def test_a_listed_origin_may_read_answers_and_their_headers_errors_too(http, book):
    ok = get(http, "/info", params={"url": BOOK}, headers={"Origin": APP})
    assert ok.headers["Access-Control-Allow-Origin"] == APP and "Origin" in ok.headers["Vary"]
    exposed = set(ok.headers["Access-Control-Expose-Headers"].split(", "))
    assert {"ETag", "Last-Modified", "Retry-After", "RateLimit-Remaining", "RateLimit-Reset"} <= exposed
    refused = post(http, "/parse", data='["x"]', headers={"Origin": APP, "Content-Type": "text/plain"})
    assert refused.status_code == 415 and refused.headers["Access-Control-Allow-Origin"] == APP  # the rule stays
    other = get(http, "/info", params={"url": BOOK}, headers={"Origin": OTHER})
    assert "Access-Control-Allow-Origin" not in other.headers and "Origin" in other.headers["Vary"]


def test_the_dashboard_is_never_shared_cross_origin(http):
    resp = get(http, "/rqstatus/", headers={"Origin": APP})
    preflight = http.options(http.base + "/rqstatus/", timeout=5,
                             headers={"Origin": APP, "Access-Control-Request-Method": "GET"})
    for answer in (resp, preflight):
        assert not any(name.startswith("Access-Control-") for name in answer.headers)


def test_without_cors_origins_no_answer_carries_cors_headers(base_env, redis_client):
    client = create_app(base_env).test_client()
    preflight = client.options("/parse", headers={"Origin": APP, "Access-Control-Request-Method": "POST"})
    answer = client.get("/healthz", headers={"Origin": APP})
    for resp in (preflight, answer):
        assert not any(name.startswith("Access-Control-") for name in resp.headers.keys())
        assert "Vary" not in resp.headers


# ---- RateLimit headers ------------------------------------------------------------------------


def test_counted_answers_say_where_the_client_stands(http, book):
    first, second = (get(http, "/info", params={"url": BOOK}) for _ in range(2))
    assert first.headers["RateLimit-Limit"] == "600" and first.headers["RateLimit-Policy"] == "600;w=60"
    assert int(first.headers["RateLimit-Remaining"]) == 599 and int(second.headers["RateLimit-Remaining"]) == 598
    assert 0 <= int(first.headers["RateLimit-Reset"]) <= 60
    assert not any(name.startswith("RateLimit") for name in get(http, "/healthz").headers)  # not limited


def test_a_429_names_the_limit_and_its_setting(http):
    answers = [post(http, "/parse", json=[BOOK]) for _ in range(4)]
    assert [resp.status_code for resp in answers] == [202, 202, 202, 429]
    # Two limits: the headers describe the one with the fewest requests left (the minute's), not
    # Flask-Limiter's current_limit (the shortest window's: 99, 98, ... left of 100 a second).
    assert [resp.headers["RateLimit-Remaining"] for resp in answers] == ["2", "1", "0", "0"]
    assert {resp.headers["RateLimit-Limit"] for resp in answers} == {"3"}
    assert answers[0].headers["RateLimit-Policy"] == "100;w=1, 3;w=60"
    over = answers[-1]
    message = over.json()["error"]["message"]
    assert "at most 3 per 1 minute (RATE_LIMIT_WRITE)" in message
    assert f"retry in {over.headers['Retry-After']} s" in message
    assert 1 <= int(over.headers["RateLimit-Reset"]) <= 60


# ---- ETag / Last-Modified ---------------------------------------------------------------------


def test_info_answers_304_to_a_client_whose_copy_is_current(http, book):
    first = get(http, "/info", params={"url": BOOK})
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-cache"
    for validators in ({"If-None-Match": etag}, {"If-Modified-Since": modified}):
        again = get(http, "/info", params={"url": BOOK + ".The_Hobbit"}, headers=validators)
        assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
    changed = get(http, "/info", params={"url": BOOK}, headers={"If-None-Match": '"not-this-one"'})
    assert changed.status_code == 200 and changed.json() == first.json()


# ---- UTF-8 and messages -----------------------------------------------------------------------


def test_json_keeps_non_ascii_text_as_utf_8(http, book):
    record = get(http, "/info", params={"url": BOOK})
    assert "Bücher über Bücher".encode() in record.content and b"\\u00fc" not in record.content
    error = post(http, "/parse", json={"urls": [BOOK], "größe": 1})
    assert error.status_code == 400 and "größe".encode() in error.content
    assert error.json()["error"]["message"].startswith("unknown fields: größe (known: urls, refresh,")
    assert get(http, "/healthz").json()["redis"] == "ok"


def test_a_413_says_how_big_the_body_was_and_the_limit(http):
    resp = post(http, "/parse", data=b"[" + b" " * 70_000 + b"]", headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert resp.json()["error"]["message"] == "the request body is 70,002 bytes; at most 65,536 (MAX_REQUEST_BYTES)"
