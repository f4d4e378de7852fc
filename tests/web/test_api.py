"""The HTTP API through Flask's test client, on a real Redis."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
from redis.exceptions import (
    AuthenticationError, AuthorizationError, BusyLoadingError, DataError, NoPermissionError, NoScriptError,
    OutOfMemoryError, ReadOnlyError, ResponseError, TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.job import JobStatus

from web import api
from jobs.queues import fetch_job, job_id_for, make_queue
from server import create_app
from storage import Storage, make_record
from tests.support.job_runs import save_done_record

BOOK = "https://www.goodreads.com/book/show/5907"
SPELLINGS = [
    "https://www.goodreads.com/book/show/5907.The_Hobbit",
    "http://m.goodreads.com/book/show/5907-the-hobbit?from_search=true#reviews",
    "https://goodreads.com/book/show/5907",
]


def queue_length(redis_client, name: str = "goodreads") -> int:
    return make_queue(name, redis_client).count


def save_done(redis_client, url: str = BOOK, age: timedelta = timedelta(0)) -> None:
    save_done_record(redis_client, url, "goodreads_book", {"title": "The Hobbit"}, age)


# ---- POST /parse --------------------------------------------------------------------------


def test_accepts_a_bare_list_and_reports_every_rejection(client, redis_client):
    response = client.post("/parse", json=[SPELLINGS[0], "http://127.0.0.1/admin", "https://example.com/", 7])
    assert response.status_code == 202
    body = response.get_json()
    assert body["batch_id"]
    [accepted] = body["accepted"]
    job_id = hashlib.sha256(BOOK.encode()).hexdigest()  # README: the job id is the canonical URL's sha256
    assert accepted == {
        "url": SPELLINGS[0], "canonical_url": BOOK, "source": "goodreads", "queue": "goodreads",
        "job_id": job_id, "status": "queued",
    }
    reasons = {item["url"]: item["reason"] for item in body["rejected"]}
    assert "not public" in reasons["http://127.0.0.1/admin"]
    assert "unsupported site" in reasons["https://example.com/"]
    assert "string" in reasons[7]
    assert make_queue("goodreads", redis_client).job_ids == [job_id]


def test_accepts_an_object_with_refresh(client, redis_client):
    save_done(redis_client)
    body = client.post("/parse", json={"urls": [BOOK], "refresh": True}).get_json()
    assert body["accepted"][0]["status"] == "queued" and queue_length(redis_client) == 1


def test_nothing_accepted_is_a_400_with_the_same_shape(client):
    response = client.post("/parse", json=["ftp://example.com/x", "https://www.goodreads.com/author/show/1"])
    assert response.status_code == 400
    body = response.get_json()
    assert body["accepted"] == [] and body["batch_id"] is None and len(body["rejected"]) == 2


def test_spellings_of_one_page_make_one_job(client, redis_client):
    body = client.post("/parse", json=SPELLINGS).get_json()
    assert {item["job_id"] for item in body["accepted"]} == {job_id_for(BOOK)}
    assert queue_length(redis_client) == 1


def test_a_url_in_flight_is_not_queued_twice(client, redis_client):
    client.post("/parse", json=[BOOK])
    again = client.post("/parse", json=[SPELLINGS[1]]).get_json()
    assert again["accepted"][0]["status"] == "queued" and queue_length(redis_client) == 1


def test_a_fresh_record_is_cached_and_not_fetched(client, redis_client):
    save_done(redis_client)
    body = client.post("/parse", json=[SPELLINGS[2]]).get_json()
    assert body["accepted"][0]["status"] == "cached" and queue_length(redis_client) == 0


def test_a_stale_record_is_fetched_again(client, redis_client):
    save_done(redis_client, age=timedelta(days=8))  # Goodreads records are fresh for 7 days
    body = client.post("/parse", json=[BOOK]).get_json()
    assert body["accepted"][0]["status"] == "queued" and queue_length(redis_client) == 1


def test_a_failed_job_does_not_block_resubmission(client, redis_client):
    client.post("/parse", json=[BOOK])
    job = fetch_job(redis_client, job_id_for(BOOK))
    make_queue("goodreads", redis_client).remove(job)
    job.set_status(JobStatus.FAILED)
    body = client.post("/parse", json=[BOOK]).get_json()
    assert body["accepted"][0]["status"] == "queued" and queue_length(redis_client) == 1


@pytest.mark.parametrize("body,code", [
    ({"urls": "https://www.bbc.com/news"}, "invalid_body"),
    ({"urls": []}, "invalid_body"),
    ({"urls": [BOOK], "refresh": "yes"}, "invalid_body"),
    ({"urls": [BOOK], "colour": "red"}, "invalid_body"),
    ({"urls": [BOOK], "callback_url": "https://example.com/hook"}, "callbacks_unavailable"),
    ("just a string", "invalid_body"),
    (42, "invalid_body"),
    (None, "invalid_body"),
])
def test_malformed_bodies_get_a_json_reason(client, body, code):
    response = client.post("/parse", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == code


def test_broken_json_is_400(client):
    response = client.post("/parse", data="{not json", content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_body"


@pytest.mark.parametrize("path", ["/parse", "/parseGoodreadsLinks"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          None, "application/xml", "text/json"])
def test_a_body_not_sent_as_json_is_415_and_enqueues_nothing(client, redis_client, path, content_type):
    """A cross-site page can POST text/plain, forms and multipart without a CORS preflight."""
    response = client.post(path, data=f'["{BOOK}"]', content_type=content_type)
    assert response.status_code == 415 and response.get_json()["error"]["code"] == "unsupported_media_type"
    assert queue_length(redis_client) == 0


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "application/vnd.api+json", "Application/JSON"])
def test_every_json_content_type_is_read(client, content_type):
    assert client.post("/parse", data=f'["{BOOK}"]', content_type=content_type).status_code == 202


def test_too_many_urls_is_413(redis_client, base_env):
    client = create_app({**base_env, "MAX_URLS_PER_REQUEST": "3"}).test_client()
    response = client.post("/parse", json=[BOOK] * 4)
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "too_many_urls"
    assert queue_length(redis_client) == 0


def test_a_body_over_the_limit_is_413_json(client, redis_client):
    response = client.post("/parse", data="[" + " " * (64 * 1024) + "]", content_type="application/json")
    assert response.status_code == 413 and response.get_json()["error"] == {
        "code": "body_too_large", "message": "the request body is 65,538 bytes; at most 65,536 (MAX_REQUEST_BYTES)"}


def test_json_answers_keep_non_ascii_as_utf_8_and_escape_only_lone_surrogates(client):
    """A lone surrogate can only travel as a JSON escape; echoed raw it could not be encoded (a 500)."""
    sent = b'["https://www.bbc.com/news", "https://b\xc3\xbccher.example/\xc3\xa9", "x\\ud800"]'
    response = client.post("/parse", data=sent, content_type="application/json")
    assert response.status_code == 202
    raw = response.get_data()
    assert "https://bücher.example/é".encode() in raw and b"\\u00fc" not in raw and b'"x\\ud800"' in raw
    assert [item["url"] for item in response.get_json()["rejected"]] == ["https://bücher.example/é", "x\ud800"]


def test_too_many_urls_names_the_setting(redis_client, base_env):
    client = create_app({**base_env, "MAX_URLS_PER_REQUEST": "1000"}).test_client()
    message = client.post("/parse", json=[BOOK] * 1001).get_json()["error"]["message"]
    assert message == "1,001 URLs sent; at most 1,000 per request (MAX_URLS_PER_REQUEST)"


def test_a_wrong_method_names_the_allowed_ones(client):
    response = client.delete("/parse")
    assert response.status_code == 405 and set(response.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    assert response.get_json()["error"]["message"] == "DELETE is not allowed here; allowed: OPTIONS, POST"


def test_seed_submission_queues_only_goodreads_books(client, redis_client):
    """The seed's answer counts distinct books; the rest of the list is left out, not refused."""
    response = client.post("/parseGoodreadsLinks", json=[*SPELLINGS, "https://www.bbc.com/news", 7])
    assert (response.status_code, response.get_data(as_text=True)) == (200, "1 books are scheduled for info parsing.")
    assert queue_length(redis_client) == 1 and queue_length(redis_client, "news") == 0
    assert redis_client.keys("metaparse:batch:*") == []  # no batch id to give a seed client: none is kept


@pytest.mark.parametrize("body", [{"urls": [BOOK]}, {BOOK: True}, [], ["https://www.bbc.com/news"], "just a string",
                                  None])
def test_seed_submission_without_a_book_list_is_the_seeds_400(client, redis_client, body):
    response = client.post("/parseGoodreadsLinks", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert response.get_data(as_text=True) == "Only array of goodreads book links is accepted."
    assert queue_length(redis_client) == 0


def test_seed_submission_keeps_the_services_limits(redis_client, base_env):
    client = create_app({**base_env, "MAX_URLS_PER_REQUEST": "3"}).test_client()
    too_many = client.post("/parseGoodreadsLinks", json=[BOOK] * 4)
    assert too_many.status_code == 413 and "(MAX_URLS_PER_REQUEST)" in too_many.get_json()["error"]["message"]


def test_callback_format_must_be_json_or_slack(redis_client, base_env):
    client = create_app({**base_env, "CALLBACK_SECRET": "s"}).test_client()
    for bad in ("xml", "SLACK", None, ["slack"]):
        response = client.post("/parse", json={"urls": [BOOK], "callback_url": "https://hooks.example.com/x",
                                               "callback_format": bad})
        error = response.get_json()["error"]
        assert response.status_code == 400 and error["code"] == "invalid_callback_format"
        assert error["message"] == '"callback_format" must be one of "json", "slack"'
    body = client.post("/parse", json={"urls": [BOOK], "callback_url": "https://hooks.example.com/x",
                                       "callback_format": "slack"}).get_json()
    assert Storage(redis_client).load_batch(body["batch_id"])["callback_format"] == "slack"
    body = client.post("/parse", json={"urls": [BOOK], "callback_url": "https://hooks.example.com/x"}).get_json()
    assert Storage(redis_client).load_batch(body["batch_id"])["callback_format"] == "json"


def test_any_site_needs_allow_any_site(redis_client, base_env):
    client = create_app({**base_env, "ALLOW_ANY_SITE": "true"}).test_client()
    body = client.post("/parse", json=["https://example.com/post?utm_source=x"]).get_json()
    assert body["accepted"][0]["source"] == "generic"
    assert body["accepted"][0]["canonical_url"] == "https://example.com/post"


def test_a_book_spelled_with_ideographic_dots_is_the_book_not_a_generic_page(redis_client, base_env):
    """With any site allowed, such a spelling was queued as a generic page under the book's
    canonical URL and job id: any client could replace the book's record with a page record."""
    client = create_app({**base_env, "ALLOW_ANY_SITE": "true"}).test_client()
    plain = client.post("/parse", json=["https://www.goodreads.com/book/show/1001"]).get_json()["accepted"][0]
    spelled = client.post("/parse", json=["https://www\u3002goodreads\u3002com/book/show/1001"]).get_json()
    item = spelled["accepted"][0]
    assert (item["source"], item["queue"], item["job_id"]) == ("goodreads", "goodreads", plain["job_id"])
    assert item["status"] == "queued" and queue_length(redis_client, "pages") == 0


def test_api_tokens_guard_writes(redis_client, base_env):
    client = create_app({**base_env, "API_TOKENS": "alpha,beta"}).test_client()
    refused = client.post("/parse", json=[BOOK])
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    assert client.post("/parse", json=[BOOK], headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/parse", json=[BOOK], headers={"Authorization": "Bearer beta"}).status_code == 202
    assert client.get(f"/info?url={BOOK}").status_code == 202  # reads stay open


def test_the_token_is_checked_before_the_body_is_read(redis_client, base_env, monkeypatch):
    """An over-limit body is a 413 once read and a wrong type a 415: both are 401 first."""
    client = create_app({**base_env, "API_TOKENS": "alpha"}).test_client()
    monkeypatch.setattr(api, "request_body", lambda: pytest.fail("the body of an unauthenticated request was read"))
    too_big = b"[" + b" " * (64 * 1024) + b"]"
    for path in ("/parse", "/parseGoodreadsLinks"):
        for data, content_type in ((too_big, "application/json"), (b"not json at all", "text/plain")):
            assert client.post(path, data=data, content_type=content_type).status_code == 401


# ---- Redis errors: 503 only when Redis is away -----------------------------------------------------


@pytest.mark.parametrize("error, status", [
    (RedisConnectionError("refused"), 503), (RedisTimeoutError("timed out"), 503),
    (BusyLoadingError("loading the dataset"), 503), (ReadOnlyError("a replica"), 503),
    (OutOfMemoryError("maxmemory"), 503), (TryAgainError("try again"), 503),
    (ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), 500),
    (NoScriptError("no script"), 500), (NoPermissionError("acl"), 500), (DataError("bad"), 500),
    (AuthenticationError("invalid password"), 503), (AuthorizationError("no permission"), 503),
])
def test_a_redis_error_is_503_only_when_redis_cannot_answer_now(app, monkeypatch, error, status):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr("web.api.lookup", fail)
    response = app.test_client().get("/info", query_string={"url": BOOK})
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == ("redis_unavailable" if status == 503 else "storage_error")
    assert ("Retry-After" in response.headers) == (status == 503)


# ---- GET /info ----------------------------------------------------------------------------


def test_info_unknown_queued_done_for_any_spelling(client, redis_client):
    assert client.get("/info", query_string={"url": BOOK}).status_code == 404
    client.post("/parse", json=[BOOK])
    queued = client.get("/info", query_string={"url": SPELLINGS[1]})
    assert queued.status_code == 202 and queued.get_json()["status"] == "queued"
    save_done(redis_client)
    for spelling in SPELLINGS:
        done = client.get("/info", query_string={"url": spelling})
        assert done.status_code == 200
        record = done.get_json()
        assert record["status"] == "done" and record["url"] == BOOK and record["data"]["title"] == "The Hobbit"
        assert datetime.fromisoformat(record["fetched_at"]).tzinfo == timezone.utc


def test_info_shows_a_failed_record_with_its_error(client, redis_client):
    record = make_record(BOOK, "goodreads_book", "failed", "1", error={"code": "http_status", "message": "HTTP 404"})
    Storage(redis_client).save_record(record, 3600)
    response = client.get("/info", query_string={"url": SPELLINGS[0]})
    assert response.status_code == 200 and response.get_json()["error"]["code"] == "http_status"


def test_info_validators_answer_304_while_the_record_is_unchanged(client, redis_client):
    save_done(redis_client)
    first = client.get("/info", query_string={"url": BOOK})
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-cache"
    fetched_at = datetime.fromisoformat(first.get_json()["fetched_at"])
    assert modified == fetched_at.strftime("%a, %d %b %Y %H:%M:%S GMT")
    for headers in ({"If-None-Match": etag}, {"If-Modified-Since": modified}, {"If-None-Match": f'"x", {etag}'}):
        again = client.get("/info", query_string={"url": SPELLINGS[1]}, headers=headers)
        assert again.status_code == 304 and again.get_data() == b"" and again.headers["ETag"] == etag, headers
    stale = client.get("/info", query_string={"url": BOOK}, headers={"If-None-Match": '"other"'})
    assert stale.status_code == 200 and stale.get_json() == first.get_json()
    client.post("/parse", json={"urls": [BOOK], "refresh": True})  # the body now says refresh: queued
    refreshing = client.get("/info", query_string={"url": BOOK}, headers={"If-None-Match": etag})
    assert refreshing.status_code == 200 and refreshing.headers["ETag"] != etag


def test_info_in_flight_has_no_validators(client):
    client.post("/parse", json=[BOOK])
    queued = client.get("/info", query_string={"url": BOOK}, headers={"If-None-Match": "*"})
    assert queued.status_code == 202 and "ETag" not in queued.headers and "Last-Modified" not in queued.headers


def test_info_reports_a_job_that_died_without_a_record(client, redis_client):
    client.post("/parse", json=[BOOK])
    fetch_job(redis_client, job_id_for(BOOK)).set_status(JobStatus.FAILED)
    body = client.get("/info", query_string={"url": BOOK}).get_json()
    assert body["status"] == "failed" and body["error"]["code"] == "job_failed"


@pytest.mark.parametrize("query,status,code", [
    ({}, 400, "missing_url"), ({"url": "javascript:alert(1)"}, 400, "invalid_url"),
    ({"url": "http://[::1]/"}, 400, "invalid_url"), ({"url": "https://www.bbc.com/news"}, 404, "not_found"),
])
def test_info_errors(client, query, status, code):
    response = client.get("/info", query_string=query)
    assert response.status_code == status and response.get_json()["error"]["code"] == code


# ---- batches, jobs, health, errors ------------------------------------------------------------


def test_batch_counts_statuses(client, redis_client):
    save_done(redis_client)
    body = client.post("/parse", json=[BOOK, "https://www.bbc.com/news", "https://www.wsj.com/"]).get_json()
    batch = client.get(f"/batches/{body['batch_id']}").get_json()
    assert batch["total"] == 3 and batch["counts"] == {"done": 1, "queued": 2}
    assert [item["canonical_url"] for item in batch["items"]] == [BOOK, "https://www.bbc.com/news", "https://www.wsj.com/"]


@pytest.mark.parametrize("path", ["/batches/0123456789abcdef0123456789abcdef", "/batches/../../etc", "/jobs/nope", "/jobs/a%20b"])
def test_unknown_batches_and_jobs_are_404_json(client, path):
    response = client.get(path)
    assert response.status_code == 404 and "error" in response.get_json()


def test_job_view(redis_client, base_env):
    client = create_app({**base_env, "FETCH_RETRIES": "2"}).test_client()
    client.post("/parse", json=[BOOK])
    job = client.get(f"/jobs/{job_id_for(BOOK)}").get_json()
    assert job["status"] == "queued" and job["queue"] == "goodreads" and job["url"] == BOOK
    assert job["retries_left"] == 2 and job["attempts"] == 0 and job["error"] is None
    for moment in ("created_at", "enqueued_at"):
        assert datetime.fromisoformat(job[moment]) > datetime.now(timezone.utc) - timedelta(minutes=1)
    assert job["started_at"] is None and job["ended_at"] is None  # not run yet: tests/test_e2e.py runs one


def test_a_job_that_is_not_the_services_json_is_answered_not_a_500(client, redis_client):
    client.post("/parse", json=[BOOK])
    key = f"rq:job:{job_id_for(BOOK)}"
    redis_client.hset(key, mapping={"data": b"\x80\x05not json", "meta": b'["not", "a dict"]', "status": "started"})
    job = client.get(f"/jobs/{job_id_for(BOOK)}")
    assert job.status_code == 200 and job.get_json()["url"] is None and job.get_json()["step"] is None
    info = client.get("/info", query_string={"url": BOOK})
    assert info.status_code == 202 and info.get_json()["status"] == "started"


def test_healthz(client, redis_client):
    client.post("/parse", json=[BOOK])
    body = client.get("/healthz").get_json()
    assert body["redis"] == "ok" and body["queues"]["goodreads"] == 1 and body["workers"] == 0
    assert body["status"] == "degraded"


def test_redis_down_is_503_json(base_env):
    client = create_app({**base_env, "REDIS_URL": "redis://127.0.0.1:1/0"}).test_client()
    for method, path, kwargs in [("get", "/healthz", {}), ("post", "/parse", {"json": [BOOK]}),
                                 ("get", "/info", {"query_string": {"url": BOOK}})]:
        response = getattr(client, method)(path, **kwargs)
        assert response.status_code == 503, path
        assert response.get_json()["error"]["code"] == "redis_unavailable"
        assert response.headers["Retry-After"]


def test_wrong_method_and_unknown_route_are_json(client):
    wrong = client.get("/parse")
    assert wrong.status_code == 405 and wrong.get_json()["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["Allow"]
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and missing.is_json


def test_raw_non_utf8_query_bytes_are_a_400_json(client):
    response = client.get("/info", environ_overrides={"QUERY_STRING": "url=\x80"})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_encoding"


def test_the_ticker_is_checked_once_per_tick_period(client, redis_client, monkeypatch):
    from web import api

    calls, now = [], [1000.0]
    monkeypatch.setattr(api, "ensure_ticking", lambda connection, every: calls.append(every))
    monkeypatch.setattr(api.time, "time", lambda: now[0])
    for url in (BOOK, SPELLINGS[0], "https://www.goodreads.com/book/show/2"):
        client.post("/parse", json=[url])
    assert calls == [5]  # TICK_SECONDS: the next tick (at 1005) is scheduled already
    client.post("/parse", json=[{"not": "a url"}])
    now[0] = 1005.0
    client.post("/parse", json=[BOOK])
    assert calls == [5, 5]
