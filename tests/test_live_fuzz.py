"""Fuzzing and spelling sweeps against a live gunicorn (the shipped worker class, web/edge.py)
on a redis-server of its own, with dashboard credentials set. tests/test_fuzz.py fuzzes the
app in process, where path normalisation, chunked bodies, gunicorn's own 400/414/431/501 and
the request-read deadline never happen; here every request crosses a real socket.

1. Schemathesis from GET /openapi.json over HTTP (from_url), with the in-process run's
   checks and phases, a fixed seed and few examples per operation.
2. Hypothesis over HTTP, derandomized: submissions (any JSON or bytes, any Content-Type,
   framed by Content-Length or chunked in pieces of any size) answer exactly what the app
   answers in process to the same bytes, and every accepted URL is in its batch and queued;
   any method on any request target (every dashboard spelling of tests/support/dashboard_urls.py
   too) is never 5xx, every error is JSON, and no dashboard answer passes without credentials.
3. A raw-socket sweep of request lines, targets, header fields and body framings that
   tests/test_edge.py and tests/test_security.py do not send: each is answered with its
   documented status and code (JSON for every error, never an HTML page), and the connection
   is then either closed after an answer that says so, or ready for the next request.
"""
from __future__ import annotations

import http.client
import json
import select
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote

import pytest
import requests
import schemathesis
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis import Redis
from werkzeug.wrappers import Response

from web.dashboard import CSP
from server import create_app
from tests.support import processes, schemathesis_run
from tests.support.dashboard_urls import REACH_THE_DASHBOARD, SPELLINGS, basic_auth
from tests.support.fuzz_seed import BOOK, SEEDED_VALUES, read_schemas, seed
from tests.support.fuzzing import (
    CONTENT_TYPES, PATH_SEGMENTS, QUERY_STRINGS, RAW_BODIES, SUBMISSIONS, check_answer, check_submission, describe,
    encode_json,
)
from tests.support.raw_http import RawConnection, RawResponse

pytestmark = pytest.mark.e2e

CREDENTIALS = {"RQSTATUS_USER": "operator", "RQSTATUS_PASSWORD": "s3cret"}
OPERATOR = basic_auth("operator", "s3cret")
READ_TIMEOUT = 2  # REQUEST_READ_TIMEOUT of the live server: the requests that never end cost this
# No rate limits, so the fuzzing reaches the code behind them (as in tests/test_fuzz.py).
SETTINGS = {**CREDENTIALS, "RATE_LIMITS": "false", "FETCH_RETRIES": "0", "REQUEST_READ_TIMEOUT": str(READ_TIMEOUT)}
# Derandomized: the same examples every run, so the few hundred over HTTP are a fixed sweep.
LIVE_FUZZ = dict(derandomize=True, database=None, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.large_base_example])
DASHBOARD_CSP = CSP.split("{hashes}")[0]  # what only answers routed to the dashboard carry
# What only the dashboard's own pages, JSON views and static files contain: seen without the
# product's own idea of what is routed to it.
DASHBOARD_CONTENT = (b"<title>RQ dashboard</title>", b'{"queues": ', b'{"workers": ',
                     b"/* @override http://localhost:9181")


@dataclass
class Live:
    """The live server, and the same app in this process on the same Redis (the oracle)."""

    web: processes.Web
    in_process: FlaskClient

    @property
    def port(self) -> int:
        return self.web.port


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("live")
    with processes.web_on_own_redis(folder, **SETTINGS) as (web, redis_server):
        connection = Redis.from_url(redis_server.url)
        seed(connection, lambda urls: requests.post(f"{web.base}/parse", json=urls, timeout=10).status_code)
        connection.close()
        app = create_app({**SETTINGS, "REDIS_URL": redis_server.url, "DATA_DIR": str(folder / "app")})
        yield Live(web, app.test_client())


# ---- 1. schemathesis over HTTP ------------------------------------------------------------------

SCHEMATHESIS_SEED = 20261208  # fixed: the same cases every run (tests/test_fuzz.py draws a new seed)
SCHEMATHESIS_EXAMPLES = 30  # fuzzing examples per operation: the coverage phase sends the bulk


def test_schemathesis_over_http_finds_no_server_error(live):
    config = schemathesis_run.fuzz_config(SCHEMATHESIS_SEED, SCHEMATHESIS_EXAMPLES)
    schema = schemathesis.openapi.from_url(f"{live.web.base}/openapi.json", config=config)
    result = schemathesis_run.run(schema)
    print(schemathesis_run.summary(result, f"over HTTP, seed {SCHEMATHESIS_SEED}"))
    schemathesis_run.assert_clean(result)
    assert result.total > 400, result.total  # every phase really ran


# ---- 2. hypothesis over HTTP ----------------------------------------------------------------------


class LiveClient:
    """http.client on a keep-alive connection (reopened when the server closes it): the target
    is sent as given, a body as one piece with Content-Length or in chunks."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def open(self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None,
             piece: int | None = None) -> Response:
        """The answer as a Werkzeug response (what tests/support/fuzzing.py checks); piece: chunked."""
        if self.connection.sock is not None and closed_by_server(self.connection.sock):
            self.connection.close()  # idle past gunicorn's keepalive while hypothesis thought
        try:
            answer = self.exchange(method, target, chunks(body, piece) if piece else body, headers or {}, bool(piece))
            return Response(answer.read(), status=answer.status, headers=answer.getheaders())
        except BaseException:
            self.connection.close()  # mid-request: the next one starts on a new connection
            raise

    def exchange(self, method: str, target: str, body: bytes | Iterator[bytes], headers: dict[str, str],
                 chunked: bool) -> http.client.HTTPResponse:
        """Send the request and take its answer, also when the server answered (and closed) before
        reading it all: a 414 or a malformed line is answered as soon as it is seen."""
        try:
            self.connection.request(method, target, body=body, headers=headers, encode_chunked=chunked)
        except (BrokenPipeError, ConnectionResetError):  # answered before the body was sent: read that
            answer = self.connection.getresponse()
            assert answer.will_close, f"{method} {target[:200]!r}: stopped reading, yet kept the connection open"
            return answer
        return self.connection.getresponse()

    def close(self) -> None:
        self.connection.close()


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed this idle connection (it is readable, and at its end)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""


def chunks(body: bytes, piece: int) -> Iterator[bytes]:
    return (body[i:i + piece] for i in range(0, len(body), piece)) if body else iter([])


@pytest.fixture(scope="module")
def client(live) -> Iterator[LiveClient]:
    opened = LiveClient(live.port)
    yield opened
    opened.close()


def submission_outcome(response: Response) -> tuple:
    """What a submission decided: its status, and the error code or which URLs went where."""
    body = response.get_json(silent=True)
    if body is None:  # the seed's route: its plain string
        return response.status_code, response.get_data()
    if "accepted" not in body:
        return response.status_code, body.get("error", {}).get("code")
    accepted = [(item["url"], item["canonical_url"], item["source"], item["queue"], item["job_id"])
                for item in body["accepted"]]
    return response.status_code, accepted, body["rejected"]


# Bodies are cut at MAX_REQUEST_BYTES: over it the server answers 413 and closes while a client
# may still be sending (a broken pipe here); tests/test_security.py sends those bodies whole.
LIMIT = 64 * 1024
BODIES = RAW_BODIES.map(lambda raw: raw[:LIMIT])
SENT_BODIES = st.one_of(
    st.builds(lambda value, ascii_only: (value, encode_json(value, ascii_only)), SUBMISSIONS, st.booleans())
    .filter(lambda sent: len(sent[1]) <= LIMIT),
    BODIES.map(lambda raw: (None, raw)),
)


# Several pages in one batch, two spellings of one book among them: each must be kept.
MANY = ["https://www.goodreads.com/book/show/5907.The_Hobbit", "https://m.goodreads.com/book/show/5907-the-hobbit",
        "https://www.bbc.com/news", "https://www.goodreads.com/book/show/77", "ftp://refused.example/"]


@settings(max_examples=150, **LIVE_FUZZ)
@given(endpoint=st.sampled_from(["/parse", "/parseGoodreadsLinks"]), sent=SENT_BODIES,
       content_type=st.one_of(st.just("application/json"), CONTENT_TYPES),
       piece=st.one_of(st.none(), st.integers(1, 70_000)))
@example(endpoint="/parse", sent=(MANY, encode_json(MANY, True)), content_type="application/json", piece=None)
@example(endpoint="/parse", sent=(MANY, encode_json(MANY, True)), content_type="application/json", piece=7)
def test_submissions_over_http_answer_as_in_process_and_are_kept(live, client, endpoint, sent, content_type, piece):
    """However the body is framed, the app reads the bytes sent: the same decision as in process."""
    value, raw = sent
    headers = {} if content_type is None else {"Content-Type": content_type}
    answer = client.open("POST", endpoint, raw, headers, piece)
    what = describe("POST", endpoint, raw[:300]) + f" as {content_type!r}" + (f" in chunks of {piece}" if piece else "")
    check_submission(answer, what, value, seed=endpoint == "/parseGoodreadsLinks")
    in_process = live.in_process.post(endpoint, data=raw, headers=headers)
    assert submission_outcome(answer) == submission_outcome(in_process), what
    if answer.status_code == 202:
        assert_kept(client, answer.get_json(), what)


def assert_kept(client: LiveClient, accepted: dict, what: str) -> None:
    """Every accepted URL is in its batch with its job, and a queued one's job exists."""
    batch = client.open("GET", f"/batches/{accepted['batch_id']}")
    assert batch.status_code == 200, what
    stored = [(item["url"], item["job_id"]) for item in batch.get_json()["items"]]
    assert stored == [(item["url"], item["job_id"]) for item in accepted["accepted"]], what
    for item in accepted["accepted"]:
        if item["status"] == "queued":
            assert client.open("GET", f"/jobs/{item['job_id']}").status_code == 200, (what, item)


ROUTES = ["/parse", "/parseGoodreadsLinks", "/info", "/getBookInfo", "/records", "/records.jsonl", "/records.csv",
          "/healthz", "/batches/", "/jobs/",
          "/metrics", "/openapi.json", "/docs", "/", "/rqstatus", "/rqstatus/", "/rqstatus/0/data/queues.json",
          "/rqstatus/0/data/job/x.json", "/rqstatus/static/css/main.css", "/rqstatus/requeue/goodreads",
          "/rqstatus/queue/goodreads/failed/empty", "/rqstatus/no-such-page"]
PATHS = st.one_of(
    st.sampled_from(ROUTES),
    st.builds(lambda route, segment: route + quote(segment.encode("latin-1"), safe="%/;=.~"),
              st.sampled_from(["/batches/", "/jobs/", "/rqstatus/", "/"]), st.one_of(PATH_SEGMENTS, SEEDED_VALUES)),
)
TARGETS = st.builds(lambda path, spelling, query: SPELLINGS[spelling](path) + (f"?{query}" if query else ""),
                    PATHS, st.sampled_from(sorted(SPELLINGS)), st.one_of(st.just(""), QUERY_STRINGS))
METHODS = st.sampled_from(["GET", "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FUZZ"])


def test_the_dashboard_content_looked_for_is_what_it_serves(client):
    """So that finding none of DASHBOARD_CONTENT below means something."""
    served = [client.open("GET", path, headers=OPERATOR).get_data()
              for path in ("/rqstatus/", "/rqstatus/0/data/queues.json", "/rqstatus/0/data/workers.json",
                           "/rqstatus/static/css/main.css")]
    assert all(any(mark in body for body in served) for mark in DASHBOARD_CONTENT), [body[:100] for body in served]


@settings(max_examples=300, **LIVE_FUZZ)
@given(method=METHODS, target=TARGETS, body=st.one_of(st.just(b""), BODIES))
# Spellings that reached the dashboard before its gate decided on the routed rule, always tried.
@example(method="GET", target="//rqstatus/", body=b"")
@example(method="GET", target="http://127.0.0.1//rqstatus/0/data/queues.json", body=b"")
@example(method="GET", target="/%2Frqstatus/static/css/main.css", body=b"")
@example(method="FUZZ", target="/%72%71status/0/data/workers.json", body=b"")
def test_any_request_target_over_http_is_never_a_5xx_an_html_error_or_the_dashboard(client, method, target, body):
    answer = client.open(method, target, body, {"Content-Type": "application/json"} if body else {})
    what = describe(method, target, body[:200])
    assert answer.status_code < 500, f"{what} answered {answer.status_code}: {answer.get_data()[:500]!r}"
    if answer.status_code == 401:  # no API_TOKENS here: only the dashboard's gate answers 401
        assert answer.headers.get("WWW-Authenticate") == 'Basic realm="rqstatus"', what
    elif answer.status_code >= 400 and method != "HEAD":
        check_answer(answer, what)
    dashboard_answer = (answer.headers.get("Content-Security-Policy") or "").startswith(DASHBOARD_CSP)
    assert not dashboard_answer or answer.status_code >= 400, f"{what}: the dashboard answered {answer.status}"
    assert not any(mark in answer.get_data() for mark in DASHBOARD_CONTENT), f"{what}: a dashboard page, no credentials"


FITS_A_LINE = 3000  # bytes of query string: the request line stays under gunicorn's limit (section 3)


@settings(max_examples=150, **LIVE_FUZZ)
@given(path=st.sampled_from(["/info", "/getBookInfo", "/records", "/records.jsonl", "/records.csv", "/batches/",
                             "/jobs/"]),
       segment=st.one_of(st.just(""), SEEDED_VALUES), query=QUERY_STRINGS.map(lambda query: query[:FITS_A_LINE]))
def test_reads_over_http_answer_as_in_process(live, client, path, segment, query):
    """gunicorn hands the app the query string and path as the test client does: same answers.
    (Queries are cut to fit a request line: past LONGEST_LINE gunicorn answers 414 itself.)"""
    target = path + (quote(segment, safe="") if path.endswith("/") else "")
    answer = client.open("GET", f"{target}?{query}")
    check_answer(answer, describe("GET", f"{target}?{query}"), schemas=read_schemas(target))
    in_process = live.in_process.get(target, environ_overrides={"QUERY_STRING": query})
    assert (answer.status_code, answer.get_json(silent=True)) == (in_process.status_code,
                                                                  in_process.get_json(silent=True)), target


# ---- 3. raw spellings of request lines, targets, header fields and framing ----------------------

JSON = "Content-Type: application/json"
A_BOOK = json.dumps([BOOK]).encode()  # accepted (202): an answer that shows the body was read whole


def raw(line: str, *fields: str, body: bytes = b"", host: bool = True) -> bytes:
    """A request exactly as written: its line, Host unless told not to, the fields, a blank line,
    the body. No Connection: close, so the server decides whether the connection stays open."""
    lines = [line, *(["Host: 127.0.0.1"] if host else []), *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked_post(coding: str, framed: bytes, *fields: str) -> bytes:
    return raw("POST /parse HTTP/1.1", JSON, f"Transfer-Encoding: {coding}", *fields, body=framed)


CHUNKED_BOOK = b"%x\r\n%s\r\n0\r\n\r\n" % (len(A_BOOK), A_BOOK)
LONGEST_LINE = 4094  # gunicorn's limit_request_line: README, "Errors from below Flask"
LONGEST_FIELD = 8190  # limit_request_field_size
MOST_FIELDS = 100  # limit_request_fields


def line_of(length: int) -> str:
    """A GET request line of exactly length bytes (without its CRLF)."""
    return "GET /" + "a" * (length - len("GET / HTTP/1.1")) + " HTTP/1.1"


def field_of(length: int) -> str:
    """A header field of exactly length bytes, its CRLF included (as gunicorn counts it)."""
    return "X-Long: " + "a" * (length - len("X-Long: \r\n"))


# name -> (request, status, error code or None for an answer that is not an error)
SWEEP = {
    # request lines: versions
    "HTTP/1.0": (raw("GET /healthz HTTP/1.0"), 200, None),
    "HTTP/1.0 without Host": (raw("GET /openapi.json HTTP/1.0", host=False), 200, None),
    "no version (HTTP/0.9)": (raw("GET /healthz"), 400, "malformed_request"),
    "HTTP/2.0 in an HTTP/1 request line": (raw("GET /healthz HTTP/2.0"), 400, "malformed_request"),
    "HTTP/1.12": (raw("GET /healthz HTTP/1.12"), 400, "malformed_request"),
    "lower-case version": (raw("GET /healthz http/1.1"), 400, "malformed_request"),
    "a garbage version": (raw("GET /healthz FOO/1.1"), 400, "malformed_request"),
    "HTTP/2 prior-knowledge preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "malformed_request"),
    # request lines: methods
    "a lower-case method": (raw("get /healthz HTTP/1.1"), 400, "malformed_request"),
    "a method of 40 letters": (raw("A" * 40 + " /healthz HTTP/1.1"), 400, "malformed_request"),
    "a method with punctuation": (raw("GE(T /healthz HTTP/1.1"), 400, "malformed_request"),
    "an unknown method": (raw("FOO /healthz HTTP/1.1"), 405, "method_not_allowed"),
    "an unknown method with a body": (raw("BREW /parse HTTP/1.1", JSON, f"Content-Length: {len(A_BOOK)}",
                                          body=A_BOOK), 405, "method_not_allowed"),
    "TRACE": (raw("TRACE / HTTP/1.1"), 405, "method_not_allowed"),
    "DELETE on /parse": (raw("DELETE /parse HTTP/1.1"), 405, "method_not_allowed"),
    "CONNECT in authority form": (raw("CONNECT 127.0.0.1:80 HTTP/1.1"), 404, "not_found"),
    "OPTIONS in asterisk form": (raw("OPTIONS * HTTP/1.1"), 404, "not_found"),
    # request lines: shape
    "tabs between the parts": (raw("GET\t/healthz\tHTTP/1.1"), 400, "malformed_request"),
    "two spaces": (raw("GET  /healthz HTTP/1.1"), 400, "malformed_request"),
    "bare LF line ends": (b"GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n", 400, "malformed_request"),
    "a raw NUL in the target": (raw("GET /healthz\x00 HTTP/1.1"), 400, "malformed_request"),
    "a raw byte over 0x7f in the target": (raw("GET /rqstatus/\xff HTTP/1.1"), 400, "malformed_request"),
    "a target without its leading slash": (raw("GET healthz HTTP/1.1"), 400, "malformed_request"),
    "a blank line before the request": (b"\r\n" + raw("GET /healthz HTTP/1.1"), 200, None),
    "a request line of the longest length": (raw(line_of(LONGEST_LINE)), 404, "not_found"),
    "a request line one byte longer": (raw(line_of(LONGEST_LINE + 1)), 414, "uri_too_long"),
    # targets
    "absolute form": (raw("GET http://127.0.0.1/healthz HTTP/1.1"), 200, None),
    "absolute form, https": (raw("GET https://127.0.0.1/healthz HTTP/1.1"), 200, None),
    "absolute form, another scheme": (raw("GET ftp://127.0.0.1/healthz HTTP/1.1"), 200, None),
    "a percent-encoded letter": (raw("GET /%68ealthz HTTP/1.1"), 200, None),
    "a dot segment": (raw("GET /./healthz HTTP/1.1"), 404, "not_found"),
    "a dot-dot segment above the root": (raw("GET /../../etc/passwd HTTP/1.1"), 404, "not_found"),
    "%2e%2e above a static file": (raw("GET /static/..%2f..%2fserver.py HTTP/1.1"), 404, "not_found"),
    "a backslash": (raw("GET /\\healthz HTTP/1.1"), 404, "not_found"),
    "%5C": (raw("GET /%5Chealthz HTTP/1.1"), 404, "not_found"),
    "an overlong UTF-8 slash": (raw("GET /%c0%afhealthz HTTP/1.1"), 404, "not_found"),
    "%252F": (raw("GET /%252Fhealthz HTTP/1.1"), 404, "not_found"),
    "%00": (raw("GET /healthz%00 HTTP/1.1"), 404, "not_found"),
    "%u escapes": (raw("GET /%u0068ealthz HTTP/1.1"), 404, "not_found"),
    "a fragment": (raw("GET /healthz#x HTTP/1.1"), 200, None),
    "a SCRIPT_NAME field the target starts with": (raw("GET /x/healthz HTTP/1.1", "SCRIPT_NAME: /x"), 200, None),
    "a SCRIPT_NAME field the target does not start with": (raw("GET /healthz HTTP/1.1", "SCRIPT_NAME: /x"), 400,
                                                           "malformed_request"),
    # header fields
    "a space in a field name": (raw("GET /healthz HTTP/1.1", "Bad Name: x"), 400, "malformed_request"),
    "parentheses in a field name": (raw("GET /healthz HTTP/1.1", "Bad(Name): x"), 400, "malformed_request"),
    "an empty field name": (raw("GET /healthz HTTP/1.1", ": x"), 400, "malformed_request"),
    "a field without a colon": (raw("GET /healthz HTTP/1.1", "NoColon"), 400, "malformed_request"),
    "a space before the colon": (raw("GET /healthz HTTP/1.1", "X-A : x"), 400, "malformed_request"),
    "an underscore in a field name": (raw("GET /healthz HTTP/1.1", "X_Forwarded_For: 10.0.0.1"), 200, None),
    "obs-fold with a space": (raw("GET /healthz HTTP/1.1", "X-A: a", " b"), 400, "malformed_request"),
    "obs-fold with a tab": (raw("GET /healthz HTTP/1.1", "X-A: a", "\tb"), 400, "malformed_request"),
    "a folded first field": (raw("GET /healthz HTTP/1.1", " X-A: a", host=False), 400, "malformed_request"),
    "a NUL in a value": (raw("GET /healthz HTTP/1.1", "X-A: a\x00b"), 400, "malformed_request"),
    "a CR in a value": (raw("GET /healthz HTTP/1.1", "X-A: a\rb"), 400, "malformed_request"),
    "an LF in a value": (raw("GET /healthz HTTP/1.1", "X-A: a\nb"), 400, "malformed_request"),
    "a NUL in Basic credentials": (raw("GET /rqstatus/ HTTP/1.1", "Authorization: Basic \x00"), 400,
                                   "malformed_request"),
    "bytes over 0x7f in a value": (raw("GET /healthz HTTP/1.1", "X-A: \xff\xfe"), 200, None),
    "two Host fields": (raw("GET /openapi.json HTTP/1.1", "Host: evil.example"), 400, "malformed_request"),
    "two Content-Type fields": (raw("POST /parse HTTP/1.1", JSON, "Content-Type: text/plain",
                                    f"Content-Length: {len(A_BOOK)}", body=A_BOOK), 400, "malformed_request"),
    "a field of the longest length": (raw("GET /healthz HTTP/1.1", field_of(LONGEST_FIELD)), 200, None),
    "a field one byte longer": (raw("GET /healthz HTTP/1.1", field_of(LONGEST_FIELD + 1)), 431,
                                "header_fields_too_large"),
    "the most fields": (raw("GET /healthz HTTP/1.1", *(f"X-{i}: a" for i in range(MOST_FIELDS - 1))), 200, None),
    "one field more": (raw("GET /healthz HTTP/1.1", *(f"X-{i}: a" for i in range(MOST_FIELDS))), 431,
                       "header_fields_too_large"),
    "an expectation other than 100-continue": (raw("POST /parse HTTP/1.1", JSON, "Expect: 200-ok",
                                                   f"Content-Length: {len(A_BOOK)}", body=A_BOOK), 417,
                                               "expectation_failed"),
    # body framing
    "two Content-Length fields that differ": (raw("POST /parse HTTP/1.1", JSON, "Content-Length: 2",
                                                  f"Content-Length: {len(A_BOOK)}", body=A_BOOK), 400,
                                              "malformed_request"),
    "two equal Content-Length fields": (raw("POST /parse HTTP/1.1", JSON, f"Content-Length: {len(A_BOOK)}",
                                            f"Content-Length: {len(A_BOOK)}", body=A_BOOK), 400, "malformed_request"),
    "a list in Content-Length": (raw("POST /parse HTTP/1.1", JSON, f"Content-Length: {len(A_BOOK)}, {len(A_BOOK)}",
                                     body=A_BOOK), 400, "malformed_request"),
    "a negative Content-Length": (raw("POST /parse HTTP/1.1", JSON, "Content-Length: -1", body=A_BOOK), 400,
                                  "malformed_request"),
    "a signed Content-Length": (raw("POST /parse HTTP/1.1", JSON, f"Content-Length: +{len(A_BOOK)}", body=A_BOOK),
                                400, "malformed_request"),
    "a hexadecimal Content-Length": (raw("POST /parse HTTP/1.1", JSON, f"Content-Length: 0x{len(A_BOOK):x}",
                                         body=A_BOOK), 400, "malformed_request"),
    "a Content-Length of 23 digits": (raw("POST /parse HTTP/1.1", JSON, "Content-Length: " + "9" * 23), 413,
                                      "body_too_large"),
    "Content-Length and chunked": (chunked_post("chunked", CHUNKED_BOOK, f"Content-Length: {len(A_BOOK)}"), 400,
                                   "malformed_request"),
    "no length at all": (raw("POST /parse HTTP/1.1", JSON), 400, "invalid_body"),
    "chunked": (chunked_post("chunked", CHUNKED_BOOK), 202, None),
    "Chunked in capitals": (chunked_post("Chunked", CHUNKED_BOOK), 202, None),
    "chunked twice in one field": (chunked_post("chunked, chunked", CHUNKED_BOOK), 400, "malformed_request"),
    "chunked in two fields": (chunked_post("chunked", CHUNKED_BOOK, "Transfer-Encoding: chunked"), 400,
                              "malformed_request"),
    "identity alone": (chunked_post("identity", A_BOOK), 400, "malformed_request"),
    "identity before chunked": (chunked_post("identity, chunked", CHUNKED_BOOK), 501, "unsupported_transfer_coding"),
    "gzip before chunked": (chunked_post("gzip, chunked", CHUNKED_BOOK), 501, "unsupported_transfer_coding"),
    "deflate before chunked": (chunked_post("deflate, chunked", CHUNKED_BOOK), 501, "unsupported_transfer_coding"),
    "compress before chunked": (chunked_post("compress, chunked", CHUNKED_BOOK), 501, "unsupported_transfer_coding"),
    "chunked before gzip": (chunked_post("chunked, gzip", CHUNKED_BOOK), 400, "malformed_request"),
    "an unknown coding": (chunked_post("xchunked", CHUNKED_BOOK), 501, "unsupported_transfer_coding"),
    "chunked in HTTP/1.0": (raw("POST /parse HTTP/1.0", JSON, "Transfer-Encoding: chunked", body=CHUNKED_BOOK), 400,
                            "malformed_request"),
    "a space before Transfer-Encoding's colon": (raw("POST /parse HTTP/1.1", JSON, "Transfer-Encoding : chunked",
                                                     body=CHUNKED_BOOK), 400, "malformed_request"),
    "a chunk extension": (chunked_post("chunked", b"%x;name=value\r\n%s\r\n0\r\n\r\n" % (len(A_BOOK), A_BOOK)), 202,
                          None),
    "trailer fields": (chunked_post("chunked", CHUNKED_BOOK[:-2] + b"X-Trailer: 1\r\n\r\n"), 202, None),
    "a chunk size with leading zeros": (chunked_post("chunked", b"000" + CHUNKED_BOOK), 202, None),
    "a negative chunk size": (chunked_post("chunked", b"-2\r\n[]\r\n0\r\n\r\n"), 400, "malformed_request"),
    "a chunk size in 0x form": (chunked_post("chunked", b"0x2\r\n[]\r\n0\r\n\r\n"), 400, "malformed_request"),
}


def error_code(answer: RawResponse) -> str | None:
    """The error code of a JSON error answer (checked for its shape), None for any other answer."""
    if answer.status < 400:
        return None
    assert answer.header("Content-Type") == "application/json", (answer.status, answer.body[:300])
    body = json.loads(answer.body)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"} and body["error"]["message"], body
    return body["error"]["code"]


def assert_connection_sane(connection: RawConnection, answer: RawResponse) -> None:
    """After an answer that says it closes, nothing more and a closed connection; after any
    other, the connection serves the next request (nothing of the last one was left unread)."""
    if answer.closes:
        assert connection.rest() == b""
        return
    connection.send(raw("GET /healthz HTTP/1.1", "Connection: close"))
    follow_up = connection.response()
    assert follow_up.status == 200, (follow_up.status, follow_up.body[:300])
    assert connection.rest() == b""


@pytest.mark.parametrize("name", list(SWEEP))
def test_each_raw_spelling_is_answered_as_documented(live, name):
    sent, status, code = SWEEP[name]
    with RawConnection(live.port) as connection:
        connection.send(sent)
        answer = connection.response()
        assert (answer.status, error_code(answer)) == (status, code), answer.body[:300]
        assert_connection_sane(connection, answer)


# Requests that can never be complete: each is answered 408 at the read deadline, then closed.
NEVER_COMPLETE = {
    "chunks with bare LF line ends": chunked_post("chunked", b"%x\n%s\n0\n\n" % (len(A_BOOK), A_BOOK)),
    "a chunk size of 20 hex digits": chunked_post("chunked", b"F" * 20 + b"\r\n" + A_BOOK),
    "a TLS ClientHello": bytes.fromhex("16030100a5010000a10303") + bytes(40),
}


def answer_at_deadline(port: int, sent: bytes) -> RawResponse:
    with RawConnection(port, timeout=READ_TIMEOUT + 10) as connection:
        connection.send(sent)
        answer = connection.response()
        assert connection.rest() == b""
    return answer


def test_requests_that_never_complete_are_answered_408_at_the_read_deadline(live):
    with ThreadPoolExecutor(len(NEVER_COMPLETE)) as pool:  # one deadline for all
        answers = dict(zip(NEVER_COMPLETE, pool.map(lambda sent: answer_at_deadline(live.port, sent),
                                                    NEVER_COMPLETE.values())))
    for name, answer in answers.items():
        assert (answer.status, error_code(answer)) == (408, "request_timeout"), name


def test_a_body_sent_after_100_continue_is_read(live):
    with RawConnection(live.port) as connection:
        connection.send(raw("POST /parse HTTP/1.1", JSON, "Expect: 100-continue", f"Content-Length: {len(A_BOOK)}"))
        assert connection.response().status == 100
        connection.send(A_BOOK)
        answer = connection.response()
        assert answer.status == 202, answer.body[:300]
        assert_connection_sane(connection, answer)


# ---- 4. the dashboard: odd methods, HTTP/1.0 and SCRIPT_NAME, in every spelling -----------------

DASHBOARD_PATHS = ["/rqstatus/", "/rqstatus/0/data/queues.json", "/rqstatus/static/css/main.css",
                   "/rqstatus/requeue/goodreads", "/rqstatus/no-such-page"]


def odd_dashboard_requests() -> Iterator[tuple[str, bytes]]:
    """(what, request) for every path and spelling: methods no dashboard rule takes, GET in
    HTTP/1.0 without Host, and GET under a SCRIPT_NAME field."""
    for path in DASHBOARD_PATHS:
        for name, spell in SPELLINGS.items():
            target = spell(path)
            for method in ("PUT", "DELETE", "PATCH", "TRACE", "FUZZ"):
                yield f"{method} {target} ({name})", raw(f"{method} {target} HTTP/1.1", "Connection: close")
            yield f"GET {target} HTTP/1.0", raw(f"GET {target} HTTP/1.0", host=False)
            if target.startswith("/"):
                yield f"GET /x{target} under SCRIPT_NAME /x", raw(f"GET /x{target} HTTP/1.1", "SCRIPT_NAME: /x",
                                                                  "Connection: close")


def test_no_odd_method_version_or_script_name_reaches_the_dashboard(live):
    """An odd method matches no rule, so the gate decides by the path as the router reads it;
    HTTP/1.0 without Host and a SCRIPT_NAME prefix route as usual. Under /rqstatus: 401."""
    statuses = {}
    for what, sent in odd_dashboard_requests():
        with RawConnection(live.port) as connection:
            connection.send(sent)
            answer = connection.response()
            assert connection.rest() == b""
        statuses[what] = answer.status
        assert answer.status in (400, 401, 404), (what, answer.status, answer.body[:200])
        assert error_code(answer) in ("malformed_request", "host_not_allowed", "unauthorized", "not_found"), what
        if answer.status == 401:
            assert answer.header("WWW-Authenticate") == 'Basic realm="rqstatus"', what
    reached = [what for what, status in statuses.items() if status == 401]
    assert len(statuses) > 500 and len(reached) > len(statuses) / 3, (len(statuses), len(reached))
    for name in REACH_THE_DASHBOARD:  # the spellings that route to the dashboard meet the gate whatever the method
        assert statuses[f"FUZZ {SPELLINGS[name]('/rqstatus/')} ({name})"] == 401, name
