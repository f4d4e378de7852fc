"""One table of bad inputs to POST /parse (and GET /info): refused with a reason, nothing enqueued.

Flask's test client against a real Redis (conftest's redis_client flushes it per test).
Each bad input is answered 4xx with a JSON body: either an error {"code", "message"} or a
`rejected` entry with a reason for every URL sent. When nothing valid was sent, NOTHING
reaches RQ: every queue and registry is empty and no job key exists. A mixed request
enqueues its valid URLs (once per canonical URL) and rejects each invalid one with a reason.
"""
from __future__ import annotations

import json
import shutil

import pytest
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from jobs.queues import QUEUE_NAMES, job_id_for, make_queue
from server import create_app

BOOK = "https://www.goodreads.com/book/show/5907"
NEWS = "https://www.bbc.com/news"
MAX_REQUEST_BYTES = 64 * 1024
MAX_URLS = 500

# (id, url, words the reason must contain)
BAD_URLS = [
    # SSRF: loopback, private, link-local, CGNAT, unspecified, in every spelling
    ("loopback", "http://127.0.0.1/", "not public"),
    ("loopback-port-redis", "http://127.0.0.1:6379/", "not public"),
    ("loopback-short-127.1", "http://127.1/", "ambiguous numeric host"),
    ("loopback-decimal", "http://2130706433/", "ambiguous numeric host"),
    ("loopback-hex", "http://0x7f000001/", "ambiguous numeric host"),
    ("loopback-hex-dotted", "http://0x7f.0.0.1/", "ambiguous numeric host"),
    ("loopback-octal", "http://0177.0.0.1/", "ambiguous numeric host"),
    ("loopback-trailing-dot", "http://127.0.0.1./", "not public"),
    ("loopback-fullwidth-digits", "http://\uff11\uff12\uff17.0.0.1/", "not public"),
    ("ipv6-loopback", "http://[::1]/", "not public"),
    ("ipv6-unspecified", "http://[::]/", "not public"),
    ("ipv4-mapped-loopback", "http://[::ffff:127.0.0.1]/", "not public"),
    ("ipv4-mapped-hex-metadata", "http://[::ffff:a9fe:a9fe]/", "not public"),
    ("nat64-metadata", "http://[64:ff9b::a9fe:a9fe]/", "not public"),
    ("6to4-loopback", "http://[2002:7f00:1::]/", "not public"),
    ("ipv6-link-local-zone", "http://[fe80::1%25eth0]/", "not public"),
    ("metadata-169.254.169.254", "http://169.254.169.254/latest/meta-data/", "not public"),
    ("private-10/8", "http://10.0.0.1/", "not public"),
    ("private-172.16/12", "http://172.16.0.1/", "not public"),
    ("private-172.31/12", "http://172.31.255.254/", "not public"),
    ("private-192.168/16", "http://192.168.1.1/", "not public"),
    ("cgnat-100.64/10", "http://100.64.0.1/", "not public"),
    ("unspecified-0.0.0.0", "http://0.0.0.0/", "not public"),
    ("zero", "http://0/", "ambiguous numeric host"),
    ("localhost", "http://localhost/", "local or internal"),
    ("localhost-upper-dot", "http://LOCALHOST./", "local or internal"),
    ("localhost-port", "http://localhost:8000/admin", "local or internal"),
    ("sub.localhost", "http://foo.localhost/", "local or internal"),
    ("metadata.google.internal", "http://metadata.google.internal/computeMetadata/v1/", "local or internal"),
    ("metadata.google.internal-dot", "http://metadata.google.internal./", "local or internal"),
    # user info: the host is not what it seems
    ("userinfo", "https://user:pw@www.goodreads.com/book/show/1", "user name or password"),
    ("userinfo-host-trick", "https://www.goodreads.com@127.0.0.1/book/show/1", "user name or password"),
    ("userinfo-empty", "https://@www.goodreads.com/book/show/1", "user name or password"),
    # backslashes and whitespace: parsers disagree on them
    ("backslash-host-trick", "https://www.goodreads.com\\@127.0.0.1/", "backslash"),
    ("backslash-slashes", "https:\\\\www.goodreads.com/book/show/1", "backslash"),
    ("leading-space-ssrf", " http://127.0.0.1/", "not public"),
    ("inner-space-path", "https://www.goodreads.com/book/show/1 2", "whitespace"),
    ("inner-space-host", "https://www.good reads.com/book/show/1", "whitespace"),
    ("inner-tab", "https://www.goodreads.com/book/show/1\t2", "whitespace"),
    ("inner-newline", "https://www.goodreads.com/\nbook/show/1", "whitespace"),
    ("header-injection", "https://www.goodreads.com/book/show/1\r\nHost: 127.0.0.1", "whitespace"),
    ("nul-byte", "https://www.goodreads.com/book/show/1\x00", "control characters"),
    # schemes
    ("file", "file:///etc/passwd", "scheme 'file'"),
    ("gopher", "gopher://127.0.0.1:6379/_FLUSHALL", "scheme 'gopher'"),
    ("ftp", "ftp://www.goodreads.com/book/show/1", "scheme 'ftp'"),
    ("data", "data:text/html,<h1>hi</h1>", "scheme 'data'"),
    ("javascript", "javascript:alert(1)", "scheme 'javascript'"),
    ("dict", "dict://127.0.0.1:11211/stats", "scheme 'dict'"),
    ("scheme-relative", "//www.goodreads.com/book/show/1", "scheme"),
    ("no-scheme", "www.goodreads.com/book/show/1", "scheme"),
    # lengths, ports, malformed
    ("over-2048-chars", "https://www.goodreads.com/book/show/1?q=" + "a" * 2048, "longer than 2048"),
    ("over-2048-chars-host", "https://" + "a" * 2050 + ".com/", "longer than 2048"),
    ("port-0", "https://www.goodreads.com:0/book/show/1", "invalid port"),
    ("port-99999", "https://www.goodreads.com:99999/book/show/1", "invalid port"),
    ("broken-ipv6-literal", "http://[::1/", "malformed URL"),
    ("empty", "", "non-empty string"),
    ("only-whitespace", " \t\n", "non-empty string"),
]
BAD_URL_IDS = [row[0] for row in BAD_URLS]
VALID = ["https://www.goodreads.com/book/show/1", "https://www.goodreads.com/book/show/2"]  # for bodies that hide them


def padded_json(value: object, size: int) -> bytes:
    """value as JSON, padded with spaces to exactly size bytes (still valid JSON)."""
    text = json.dumps(value).encode()
    assert len(text) <= size
    return text[:-1] + b" " * (size - len(text)) + text[-1:]


# (id, keyword arguments for client.post, status, error code; None: `rejected` entries instead)
BAD_BODIES = [
    *[pytest.param({"json": [url]}, 400, None, id=f"url:{name}") for name, url, _ in BAD_URLS],
    pytest.param({"json": {"urls": [url for _, url, _ in BAD_URLS]}}, 400, None, id="every-bad-url-at-once"),
    pytest.param({"json": [f"https://www.goodreads.com/book/show/{i}" for i in range(MAX_URLS + 1)]},
                 413, "too_many_urls", id="more-urls-than-the-limit"),
    pytest.param({"data": padded_json(VALID, MAX_REQUEST_BYTES + 1), "content_type": "application/json"},
                 413, "body_too_large", id="body-64KiB-plus-1"),
    pytest.param({"data": b"[" + b" " * (10 * MAX_REQUEST_BYTES) + b"]", "content_type": "application/json"},
                 413, "body_too_large", id="body-640KiB"),
    # wrong JSON types
    pytest.param({"json": 42}, 400, "invalid_body", id="json-number"),
    pytest.param({"json": 4.2}, 400, "invalid_body", id="json-float"),
    pytest.param({"json": True}, 400, "invalid_body", id="json-true"),
    pytest.param({"data": "null", "content_type": "application/json"}, 400, "invalid_body", id="json-null"),
    pytest.param({"json": "https://www.goodreads.com/book/show/1"}, 400, "invalid_body", id="json-string"),
    pytest.param({"json": {}}, 400, "invalid_body", id="json-empty-object"),
    pytest.param({"json": []}, 400, "invalid_body", id="json-empty-list"),
    pytest.param({"json": {"url": VALID[0]}}, 400, "invalid_body", id="object-without-urls"),
    pytest.param({"json": {"urls": VALID[0]}}, 400, "invalid_body", id="urls-as-a-string"),
    pytest.param({"json": {"urls": 42}}, 400, "invalid_body", id="urls-as-a-number"),
    pytest.param({"json": {"urls": None}}, 400, "invalid_body", id="urls-null"),
    pytest.param({"json": {"urls": {"0": VALID[0]}}}, 400, "invalid_body", id="urls-as-an-object"),
    pytest.param({"json": {"urls": VALID, "refresh": "true"}}, 400, "invalid_body", id="refresh-as-a-string"),
    pytest.param({"json": {"urls": VALID, "refresh": 1}}, 400, "invalid_body", id="refresh-as-a-number"),
    pytest.param({"json": {"urls": VALID, "refresh": None}}, 400, "invalid_body", id="refresh-null"),
    pytest.param({"json": {"urls": VALID, "callback_url": 5}}, 400, "invalid_callback_url", id="callback-url-number"),
    pytest.param({"json": {"urls": VALID, "callback_url": "https://example.com/hook"}}, 400, "callbacks_unavailable",
                 id="callback-url-without-secret"),
    pytest.param({"json": {"urls": VALID, "priority": "high"}}, 400, "invalid_body", id="unknown-field"),
    pytest.param({"json": [[VALID[0]]]}, 400, None, id="nested-list"),
    pytest.param({"json": {"urls": [[VALID[0], VALID[1]]]}}, 400, None, id="nested-list-in-object"),
    pytest.param({"json": [{"url": VALID[0]}]}, 400, None, id="object-in-list"),
    pytest.param({"json": [42, None, True, 1.5]}, 400, None, id="non-strings-in-list"),
    # bytes that are not JSON, or not UTF-8
    pytest.param({"data": b'["https://www.goodreads.com/book/show/1\xff"]', "content_type": "application/json"},
                 400, "invalid_body", id="invalid-utf8-in-string"),
    pytest.param({"data": b"\xc3\x28\xa0\xa1\xe2\x28\xa1", "content_type": "application/json"},
                 400, "invalid_body", id="invalid-utf8-bytes"),
    pytest.param({"data": b'["https://www.goodreads.com/book/show/1"', "content_type": "application/json"},
                 400, "invalid_body", id="truncated-json"),
    pytest.param({"data": b"", "content_type": "application/json"}, 400, "invalid_body", id="empty-body"),
    pytest.param({"data": "hello, please parse goodreads book 1", "content_type": "text/plain"},
                 415, "unsupported_media_type", id="text-plain-prose"),
    pytest.param({"data": '["https://www.goodreads.com/book/show/1"]', "content_type": "text/plain"},
                 415, "unsupported_media_type", id="text-plain-json"),
    pytest.param({"data": "urls=https://www.goodreads.com/book/show/1",
                  "content_type": "application/x-www-form-urlencoded"},
                 415, "unsupported_media_type", id="form-urlencoded"),
    pytest.param({"data": {"urls": VALID[0]}, "content_type": "multipart/form-data"},
                 415, "unsupported_media_type", id="multipart-form"),
    pytest.param({"data": "<urls><url>https://www.goodreads.com/book/show/1</url></urls>",
                  "content_type": "application/xml"},
                 415, "unsupported_media_type", id="xml"),
]


@pytest.fixture
def app(base_env, redis_client, tmp_path):
    """conftest's app, with its journal in a temporary DATA_DIR and no per-client rate limits
    (the table sends many requests; rate limiting is not what it tests).

    Accepted URLs are journaled (DATA_DIR/journal, see web/journal.py) and this process's
    reconciler thread may submit journaled URLs again later: the journal goes with the
    test, so nothing of this test can reappear in the next test's (flushed) Redis."""
    yield create_app({**base_env, "DATA_DIR": str(tmp_path), "RATE_LIMITS": "false"})
    shutil.rmtree(tmp_path / "journal", ignore_errors=True)


def registries(redis_client, name: str) -> list:
    queue = make_queue(name, redis_client)
    return [registry(queue=queue) for registry in (ScheduledJobRegistry, DeferredJobRegistry, StartedJobRegistry,
                                                   FinishedJobRegistry, FailedJobRegistry)]


def rq_state(redis_client) -> dict:
    """Everything RQ holds: queue lengths, registry sizes and job keys."""
    return {
        "queues": {name: make_queue(name, redis_client).count for name in QUEUE_NAMES},
        "registries": {f"{name}:{type(registry).__name__}": registry.count
                       for name in QUEUE_NAMES for registry in registries(redis_client, name)},
        "job_keys": sorted(key.decode() for key in redis_client.scan_iter("rq:job:*")),
    }


def assert_nothing_enqueued(redis_client) -> None:
    state = rq_state(redis_client)
    assert not any(state["queues"].values()), state["queues"]
    assert not any(state["registries"].values()), state["registries"]
    assert state["job_keys"] == [], state["job_keys"]
    assert sorted(key.decode() for key in redis_client.scan_iter("rq:*")
                  if not key.startswith((b"rq:workers", b"rq:worker:"))) == []


# ---- the table --------------------------------------------------------------------------------------


@pytest.mark.parametrize("request_kwargs,status,code", BAD_BODIES)
def test_bad_input_is_refused_with_a_reason_and_nothing_is_enqueued(client, redis_client, request_kwargs, status, code):
    response = client.post("/parse", **request_kwargs)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.is_json, response.content_type
    body = response.get_json()
    if code is not None:
        assert body["error"]["code"] == code and body["error"]["message"], body
    else:
        assert body["accepted"] == [] and body["batch_id"] is None, body
        sent = request_kwargs["json"]
        sent = sent["urls"] if isinstance(sent, dict) else sent
        assert [item["url"] for item in body["rejected"]] == sent
        assert all(isinstance(item["reason"], str) and item["reason"] for item in body["rejected"]), body
    assert_nothing_enqueued(redis_client)


@pytest.mark.parametrize("name,url,reason", BAD_URLS, ids=BAD_URL_IDS)
def test_each_bad_url_is_rejected_for_its_own_reason(client, redis_client, name, url, reason):
    body = client.post("/parse", json={"urls": [url]}).get_json()
    [rejected] = body["rejected"]
    assert reason in rejected["reason"], rejected
    assert_nothing_enqueued(redis_client)


@pytest.mark.parametrize("name,url,reason", [row for row in BAD_URLS if row[1].strip()], ids=[
    row[0] for row in BAD_URLS if row[1].strip()])
def test_info_with_a_bad_url_is_400_json(client, redis_client, name, url, reason):
    response = client.get("/info", query_string={"url": url})
    assert response.status_code == 400 and response.is_json, response.get_data(as_text=True)[:300]
    error = response.get_json()["error"]
    assert error["code"] == "invalid_url" and reason in error["message"], error
    assert_nothing_enqueued(redis_client)


@pytest.mark.parametrize("query", [{}, {"url": ""}, {"url": " \t\n"}])
def test_info_without_a_url_is_400_json(client, query):
    response = client.get("/info", query_string=query)
    assert response.status_code == 400 and response.get_json()["error"]["code"] in ("missing_url", "invalid_url")


# ---- boundaries and mixed requests ---------------------------------------------------------------------


def test_surrounding_whitespace_is_trimmed_not_refused(client, redis_client):
    """By design (sources.route, tests/test_sources.py), whitespace AROUND a URL is trimmed,
    as browsers do: the canonical URL has none, so one job is enqueued under it. Inner
    whitespace is refused (the table above)."""
    spellings = [f" {BOOK}", f"\t{BOOK}\n", f"{BOOK}  "]
    body = client.post("/parse", json=spellings).get_json()
    assert [item["canonical_url"] for item in body["accepted"]] == [BOOK] * 3 and body["rejected"] == []
    assert make_queue("goodreads", redis_client).get_job_ids() == [job_id_for(BOOK)]


def test_a_body_of_exactly_the_limit_and_exactly_the_url_limit_is_accepted(client, redis_client):
    response = client.post("/parse", data=padded_json([BOOK], MAX_REQUEST_BYTES), content_type="application/json")
    assert response.status_code == 202, response.get_json()
    urls = [f"https://www.goodreads.com/book/show/{i}" for i in range(1, MAX_URLS + 1)]
    response = client.post("/parse", json=urls)
    assert response.status_code == 202 and len(response.get_json()["accepted"]) == MAX_URLS
    assert make_queue("goodreads", redis_client).count == 1 + MAX_URLS  # BOOK (5907), then books 1..500


def test_a_mixed_request_enqueues_the_valid_and_rejects_each_invalid(client, redis_client):
    book_1 = "https://www.goodreads.com/book/show/1"
    valid = [BOOK, "http://m.goodreads.com/book/show/5907-the-hobbit?utm_source=x", NEWS, book_1]
    bad = [url for _, url, _ in BAD_URLS] + [[BOOK], {"url": BOOK}, 42, None, True]
    sent = [valid[0], *bad[:20], valid[1], *bad[20:40], valid[2], *bad[40:], valid[3]]
    response = client.post("/parse", json={"urls": sent})
    assert response.status_code == 202
    body = response.get_json()
    # every valid URL accepted, in order, two spellings of one book sharing one job
    assert [item["url"] for item in body["accepted"]] == valid
    assert [item["canonical_url"] for item in body["accepted"]] == [BOOK, BOOK, NEWS, book_1]
    assert {item["status"] for item in body["accepted"]} == {"queued"}
    # every invalid one rejected, in order, each with a reason
    assert [item["url"] for item in body["rejected"]] == bad
    assert all(isinstance(item["reason"], str) and item["reason"] for item in body["rejected"])
    # exactly the valid pages are queued: nothing lost, nothing extra
    goodreads, news = make_queue("goodreads", redis_client), make_queue("news", redis_client)
    assert sorted(goodreads.get_job_ids()) == sorted([job_id_for(BOOK), job_id_for(book_1)])
    assert news.get_job_ids() == [job_id_for(NEWS)]
    fetch_jobs = [key for key in rq_state(redis_client)["job_keys"] if not key.startswith("rq:job:tick-")]
    assert sorted(fetch_jobs) == sorted(f"rq:job:{job_id_for(url)}" for url in (BOOK, NEWS, book_1))
    for url in valid:
        assert client.get("/info", query_string={"url": url}).status_code == 202  # queued, for any spelling
    assert client.get(f"/batches/{body['batch_id']}").get_json()["total"] == len(valid)
