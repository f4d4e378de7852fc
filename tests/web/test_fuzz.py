"""Fuzzing the HTTP API: whatever a client sends, the service never answers 5xx.

Redis is up in these tests (the session's real redis-server), so even a 503 is a bug here:
503 is for a Redis outage only.

1. Hypothesis property tests through Flask's test client (tests/support/fuzzing.py holds
   the strategies and the answer checks): POST /parse and /parseGoodreadsLinks with any
   JSON value, any bytes under any Content-Type, lists of URL-like strings built from parts;
   GET /info, /getBookInfo, /records, /batches/<id>, /jobs/<id> with any query string
   (percent-encoded bytes, or raw in the bytes gunicorn lets through) and any path segment
   (any bytes, as WSGI gives them). Every answer is < 500; every error is JSON
   {"error": {"code", "message"}} (a refused submission may be the documented submission
   shape); every 2xx JSON answer matches the schema openapi.yaml documents for it.
   Two apps: the default one (Goodreads and news only) and an open one (ALLOW_ANY_SITE,
   CALLBACK_SECRET, API_TOKENS), both without rate limits so the fuzzing reaches the
   code behind them; a third, rate-limited, checks that 429s are JSON too.
2. Schemathesis against the service's own document (GET /openapi.json), as `schemathesis
   run` would, in process: examples, coverage and fuzzing phases of every operation,
   with not_a_server_error and the response conformance checks (schema, status code,
   content type, headers). It prints how many requests it made; at least 10,000.

Knobs (environment): FUZZ_SCHEMATHESIS_EXAMPLES (fuzzing examples per operation, 1500),
FUZZ_SEED (schemathesis seed; random and printed otherwise).
"""
from __future__ import annotations

import os
import random
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis import Redis
from werkzeug.wrappers import Request

from server import create_app
from tests.support import schemathesis_run
from tests.support.fuzz_seed import NEWS, READ_SCHEMAS, SEED_BATCH, SEEDED_JOBS, SEEDED_VALUES, read_schemas, seed
from tests.support.fuzzing import (
    CONTENT_TYPES, JSON_VALUES, PATH_SEGMENTS, QUERY_STRINGS, RAW_BODIES, SUBMISSIONS, TIMEISH, URLS,
    NUMBERISH, WILD_TEXT, check_answer, check_submission, describe, encode_json, percent_encode,
)

TOKEN = "fuzz-token"

FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                  HealthCheck.filter_too_much, HealthCheck.large_base_example])
EXAMPLES_RUN: Counter[str] = Counter()  # hypothesis examples run per test, printed at the end
SEED_ROUTE = "/parseGoodreadsLinks"  # answers the seed's strings: check_submission(seed=True)
ENDPOINTS = st.sampled_from(["/parse", SEED_ROUTE])
APPS = st.sampled_from(["default", "open"])


# ---- the apps under test ---------------------------------------------------------------------


def make_app(redis_url: str, data_dir, **extra: str):
    env = {"REDIS_URL": redis_url, "FETCH_RETRIES": "0", "DATA_DIR": str(data_dir), "RATE_LIMITS": "false"}
    return create_app({**env, **extra})


@pytest.fixture(scope="module", autouse=True)
def print_examples_run():
    yield
    if EXAMPLES_RUN:
        print(f"\nhypothesis: {sum(EXAMPLES_RUN.values())} examples run (explicit ones included)")
        for name, count in EXAMPLES_RUN.items():
            print(f"  {name:66} {count:6}")


@pytest.fixture(scope="module")
def fuzz_redis(redis_url: str):
    client = Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def apps(redis_url: str, fuzz_redis: Redis, tmp_path_factory) -> dict:
    data_dir = tmp_path_factory.mktemp("fuzz-data")
    built = {
        "default": make_app(redis_url, data_dir),
        "open": make_app(redis_url, data_dir, ALLOW_ANY_SITE="true", CALLBACK_SECRET="fuzz-secret", API_TOKENS=TOKEN),
    }
    client = built["default"].test_client()
    seed(fuzz_redis, lambda urls: client.post("/parse", json=urls).status_code)
    return built


@pytest.fixture(scope="module")
def clients(apps: dict) -> dict:
    return {name: app.test_client() for name, app in apps.items()}


def auth(app_name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"} if app_name == "open" else {}


# ---- 1. hypothesis: submissions ---------------------------------------------------------------


@settings(max_examples=1000, **FUZZ)
@given(app_name=APPS, endpoint=ENDPOINTS, body=SUBMISSIONS, ascii_only=st.booleans())
@example(app_name="default", endpoint="/parse", body=["https://www.bbc.com/\ud800"], ascii_only=True)
@example(app_name="open", endpoint="/parse", body=["https://example.com/?q=\ud800"], ascii_only=True)
@example(app_name="open", endpoint="/parseGoodreadsLinks", body=["https://www.goodreads.com/book/show/1\udfff"],
         ascii_only=True)
@example(app_name="open", endpoint="/parse", body={"urls": [NEWS], "callback_url": "https://example.com/\ud800"},
         ascii_only=True)
def test_submitting_url_lists_never_fails(clients, app_name, endpoint, body, ascii_only):
    EXAMPLES_RUN["test_submitting_url_lists_never_fails"] += 1
    raw = encode_json(body, ascii_only)
    response = clients[app_name].post(endpoint, data=raw, content_type="application/json", headers=auth(app_name))
    check_submission(response, describe("POST", endpoint, body), body, seed=endpoint == SEED_ROUTE)


@settings(max_examples=500, **FUZZ)
@given(app_name=APPS, endpoint=ENDPOINTS, body=JSON_VALUES, ascii_only=st.booleans())
def test_submitting_any_json_value_never_fails(clients, app_name, endpoint, body, ascii_only):
    EXAMPLES_RUN["test_submitting_any_json_value_never_fails"] += 1
    raw = encode_json(body, ascii_only)
    response = clients[app_name].post(endpoint, data=raw, content_type="application/json", headers=auth(app_name))
    check_submission(response, describe("POST", endpoint, body), body, seed=endpoint == SEED_ROUTE)


@settings(max_examples=600, **FUZZ)
@given(app_name=APPS, endpoint=ENDPOINTS, raw=RAW_BODIES, content_type=CONTENT_TYPES)
@example(app_name="default", endpoint="/parse", raw=b"[" * 5000, content_type="application/json")
@example(app_name="open", endpoint="/parseGoodreadsLinks", raw=b'{"urls":' * 3000, content_type=None)
def test_submitting_any_bytes_under_any_content_type_never_fails(clients, app_name, endpoint, raw, content_type):
    EXAMPLES_RUN["test_submitting_any_bytes_under_any_content_type_never_fails"] += 1
    headers = auth(app_name)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = clients[app_name].post(endpoint, data=raw, headers=headers)
    what = describe("POST", endpoint, raw[:300]) + f" as {content_type!r}"
    check_submission(response, what, None, seed=endpoint == SEED_ROUTE)
    is_json = content_type is not None and Request({"CONTENT_TYPE": content_type}).is_json
    assert (response.status_code == 415) == (not is_json and response.status_code not in (401, 429)), what


@settings(max_examples=200, **FUZZ)
@given(header=st.one_of(st.none(), st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40),
                        st.builds(lambda scheme, token: f"{scheme} {token}",
                                  st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", ""]),
                                  st.one_of(st.just(TOKEN), st.just(TOKEN + " "), st.just(TOKEN.upper()),
                                            st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF),
                                                    max_size=20)))))
@example(header="Bearer \u00e9")
def test_any_authorization_header_is_answered_401_or_accepted(clients, header):
    EXAMPLES_RUN["test_any_authorization_header_is_answered_401_or_accepted"] += 1
    headers = {} if header is None else {"Authorization": header}
    response = clients["open"].post("/parse", json=[NEWS], headers=headers)
    check_submission(response, describe("POST", "/parse") + f" with Authorization {header!r}", [NEWS])
    assert response.status_code in (202, 401)


# ---- 1. hypothesis: reads ---------------------------------------------------------------------

@settings(max_examples=800, **FUZZ)
@given(app_name=APPS, path=st.sampled_from(sorted(READ_SCHEMAS)), query=QUERY_STRINGS)
@example(app_name="default", path="/records", query="cursor=%C2%B2")
@example(app_name="default", path="/records", query="limit=%C2%B2")
@example(app_name="default", path="/records", query="cursor=18446744073709551616")
@example(app_name="default", path="/records", query="limit=" + "9" * 5000)
def test_reads_with_any_raw_query_string_never_fail(clients, app_name, path, query):
    EXAMPLES_RUN["test_reads_with_any_raw_query_string_never_fail"] += 1
    response = clients[app_name].get(path, environ_overrides={"QUERY_STRING": query})
    check_answer(response, describe("GET", f"{path}?{query}"), schemas=read_schemas(path))


@settings(max_examples=800, **FUZZ)
@given(app_name=APPS, path=st.sampled_from(["/info", "/getBookInfo"]),
       url=st.one_of(URLS, SEEDED_VALUES, st.sampled_from(["https://bbc.com/news#x", "http://www.wsj.com"])),
       since=st.one_of(st.none(), TIMEISH, WILD_TEXT, NUMBERISH))
def test_info_with_any_url_and_since_never_fails(clients, app_name, path, url, since):
    EXAMPLES_RUN["test_info_with_any_url_and_since_never_fails"] += 1
    query = f"url={percent_encode(url)}" + ("" if since is None else f"&since={percent_encode(since)}")
    response = clients[app_name].get(f"{path}?{query}")
    check_answer(response, describe("GET", f"{path}?{query}"), schemas=read_schemas(path))


@settings(max_examples=400, **FUZZ)
@given(path=st.sampled_from(["/records", "/records", "/records.jsonl", "/records.csv"]),
       cursor=st.one_of(st.none(), NUMBERISH, st.integers(-5, 2**70).map(str), WILD_TEXT),
       limit=st.one_of(st.none(), NUMBERISH, st.integers(-5, 2**70).map(str), WILD_TEXT),
       batch=st.one_of(st.none(), st.none(), SEEDED_VALUES, WILD_TEXT),
       kind=st.one_of(st.none(), st.sampled_from(["book", "news", "page"]), WILD_TEXT),
       since=st.one_of(st.none(), TIMEISH, WILD_TEXT))
def test_records_with_any_cursor_limit_batch_kind_and_since_never_fail(clients, path, cursor, limit, batch, kind, since):
    EXAMPLES_RUN["test_records_with_any_cursor_limit_batch_kind_and_since_never_fail"] += 1
    given = (("cursor", cursor), ("limit", limit), ("batch", batch), ("kind", kind), ("since", since))
    query = "&".join(f"{name}={percent_encode(value)}" for name, value in given if value is not None)
    response = clients["default"].get(f"{path}?{query}")
    check_answer(response, describe("GET", f"{path}?{query}"), schemas=read_schemas(path))


@settings(max_examples=600, **FUZZ)
@given(prefix=st.sampled_from(["/batches/", "/jobs/"]), segment=st.one_of(PATH_SEGMENTS, SEEDED_VALUES),
       suffix=st.sampled_from(["", "", "", "/", "/x", "//"]), query=st.one_of(st.just(""), QUERY_STRINGS))
@example(prefix="/jobs/", segment="abc\n", suffix="", query="")
@example(prefix="/jobs/", segment=SEEDED_JOBS[0] + "\n", suffix="", query="")
def test_batch_and_job_ids_of_any_bytes_never_fail(clients, prefix, segment, suffix, query):
    EXAMPLES_RUN["test_batch_and_job_ids_of_any_bytes_never_fail"] += 1
    path = prefix + segment + suffix
    response = clients["default"].get("/", environ_overrides={"PATH_INFO": path, "QUERY_STRING": query})
    check_answer(response, describe("GET", path), schemas=read_schemas(prefix + segment))


@settings(max_examples=300, **FUZZ)
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "FUZZ"]),
       path=st.one_of(st.sampled_from(["/parse", "/parseGoodreadsLinks", "/info", "/getBookInfo", "/records",
                                       "/healthz", "/batches/", "/jobs/", "/metrics", "/openapi.json", "/docs", "/",
                                       "//parse", "/parse/", "/PARSE", "/ui/../openapi.json", "/info/x"]),
                      PATH_SEGMENTS.map(lambda segment: "/" + segment)),
       body=st.one_of(st.just(b""), RAW_BODIES))
def test_any_method_on_any_path_never_fails(clients, method, path, body):
    EXAMPLES_RUN["test_any_method_on_any_path_never_fails"] += 1
    response = clients["default"].open("/", method=method, data=body,
                                       environ_overrides={"PATH_INFO": path, "QUERY_STRING": ""})
    what = describe(method, path, body[:200])
    assert response.status_code < 500, f"{what} answered {response.status_code}: {response.get_data()[:500]!r}"
    if response.status_code >= 400 and method != "HEAD":
        check_answer(response, what)


# ---- 1. rate limits: a 429 is an answer like the others ----------------------------------------


def test_rate_limited_answers_are_json_errors(redis_url, fuzz_redis, tmp_path):
    app = make_app(redis_url, tmp_path, RATE_LIMITS="true", RATE_LIMIT_WRITE="3/minute", RATE_LIMIT_READ="5/minute")
    client = app.test_client()
    statuses = Counter()
    for index in range(8):
        for method, path, body in (("POST", "/parse", [NEWS, "ftp://x"]), ("GET", f"/info?url={NEWS}", None),
                                   ("GET", "/records?cursor=%C2%B2", None)):
            response = client.open(path, method=method, json=body)
            statuses[response.status_code] += 1
            if method == "POST":
                check_submission(response, describe(method, path, body), body)
            else:
                check_answer(response, describe(method, path), schemas=read_schemas(path.split("?")[0]))
    assert statuses[429] > 0, statuses


# ---- 1. what the fuzzing found: each of these was a 5xx, or an answer that was not JSON ------

REGRESSIONS = [
    # GET /records: "²".isdigit() is true but int("²") raises (500)
    ("default", "GET", "/records?cursor=%C2%B2", None, 400),
    ("default", "GET", "/records?limit=%C2%B2", None, 400),
    # GET /records: a cursor past 2**64-1 is a Redis error, answered as "Redis unavailable" (503)
    ("default", "GET", "/records?cursor=18446744073709551616", None, 400),
    ("default", "GET", "/records?cursor=99999999999999999999999", None, 400),
    # GET /records: over 4300 digits, int() raises (500)
    ("default", "GET", "/records?limit=" + "9" * 5000, None, 400),
    # GET /jobs/<id>: "$" matches before a final newline, and RQ refuses the id (500)
    ("default", "GET", "/jobs/abc%0A", None, 404),
    # POST: JSON nested deeper than the recursion limit raises RecursionError, not ValueError (500)
    ("default", "POST", "/parse", b"[" * 5000, 400),
    ("default", "POST", "/parseGoodreadsLinks", b'{"urls":' * 3000, 400),
    # POST: a lone surrogate (\ud800) cannot be encoded for Redis (500)
    ("default", "POST", "/parse", b'["https://www.bbc.com/\\ud800"]', 400),
    ("open", "POST", "/parse", b'["https://example.com/?q=\\ud800"]', 400),
    ("open", "POST", "/parse", b'["https://example.com/\\ud800"]', 400),
    ("open", "POST", "/parseGoodreadsLinks", b'["https://www.goodreads.com/book/show/1\\udfff"]', 400),
    ("open", "POST", "/parse", b'{"urls": ["https://www.bbc.com/news"], "callback_url": "https://example.com/\\ud800"}',
     400),
    # not 5xx, but not JSON either: NaN, Infinity and 1e999 (a float overflow) were echoed in "rejected"
    ("default", "POST", "/parse", b"[NaN]", 400),
    ("default", "POST", "/parse", b'["https://www.bbc.com/news", -Infinity]', 400),
    ("default", "POST", "/parse", b'["https://www.bbc.com/news", 1e999]', 400),
]


@pytest.mark.parametrize("app_name, method, path, body, status", REGRESSIONS)
def test_what_the_fuzzing_found_is_a_4xx(clients, app_name, method, path, body, status):
    response = clients[app_name].open(path, method=method, data=body, headers=auth(app_name),
                                      content_type="application/json" if body else None)
    check_answer(response, describe(method, path, body))
    assert response.status_code == status, response.get_data()


def test_deep_json_is_refused_at_every_depth(clients):
    """Near the recursion limit, json.loads still parsed the body but echoing the deep item
    in "rejected" overflowed the encoder: 500 for depths 978-982 (they move with the stack)."""
    for depth in [*range(1, 80), *range(850, 1050)]:
        for body in (b'{"urls": [' + b"[" * depth + b"]" * depth + b"]}",
                     b'["https://www.bbc.com/news", ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"]"):
            response = clients["default"].post("/parse", data=body, content_type="application/json")
            check_submission(response, describe("POST", "/parse", body[:40]) + f" (depth {depth})", None)


# ---- 2. schemathesis, from the service's own OpenAPI document ----------------------------------

SCHEMATHESIS_EXAMPLES = int(os.environ.get("FUZZ_SCHEMATHESIS_EXAMPLES", "1000"))
SCHEMATHESIS_MIN_TOTAL = 10_000


@pytest.mark.timeout(1800)
def test_schemathesis_finds_no_server_error(redis_url, fuzz_redis, apps, tmp_path):
    """Every documented operation (GET /openapi.json is the document itself, so schemathesis
    skips it; it is fetched to load the schema): examples, coverage and fuzzing phases."""
    app = make_app(redis_url, tmp_path)
    seed_value = int(os.environ.get("FUZZ_SEED") or random.getrandbits(64))
    config = schemathesis_run.fuzz_config(seed_value, SCHEMATHESIS_EXAMPLES)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app, config=config)
    result = schemathesis_run.run(schema)
    print(schemathesis_run.summary(result, f"seed {seed_value} ({SCHEMATHESIS_EXAMPLES} fuzzing examples at most)"))
    schemathesis_run.assert_clean(result)
    if SCHEMATHESIS_EXAMPLES >= 1500:
        assert result.total >= SCHEMATHESIS_MIN_TOTAL, f"only {result.total} requests"
