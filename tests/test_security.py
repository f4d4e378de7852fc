"""Security at the edge, tried as an attacker would: through a real gunicorn (raw sockets for
odd request lines), a real `python -m jobs.worker` and a real redis-server, with the shipped
defaults. Each section names the hole it closes (README, Access and security):

- the dashboard's Basic auth holds for every spelling of its paths that the router still
  sends to it (slash runs, %2F, dot segments, percent-encoded letters, absolute-form
  targets), with every method;
- no dashboard route unpickles: a job hash whose fields are pickles that would create a
  marker file is listed, viewed, requeued and deleted through the dashboard; the marker
  never appears;
- workers run only the service's own job functions;
- one access-log line per request; records that are not plain data are never answered;
  Redis errors are classified; bodies are JSON only and never over the limit however
  framed; a DNS-rebinding page is refused by its Host header.
"""
from __future__ import annotations

import base64
import json
import pickle
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from redis import Redis
from rq import Callback, Queue, Worker
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import (
    CanceledJobRegistry, DeferredJobRegistry, FailedJobRegistry, FinishedJobRegistry, ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.results import Result
from rq.serializers import JSONSerializer, PickleSerializer
from rq.webhook import Webhook

from web.dashboard import REGISTRIES
from jobs.queues import job_id_for, make_queue
from jobs.trust import JOB_FUNCTION, TICK_FUNCTION, JsonJob
from server import create_app
from storage import make_record, record_key
from tests.support import import_trap, processes
from tests.support.dashboard_urls import (
    REACH_THE_DASHBOARD, SPELLINGS, basic_auth, changes_state, concrete, dashboard_rules,
)
from tests.support.forged import Trap, shared_lists
from tests.support.raw_http import RawResponse, chunked, request, send

pytestmark = pytest.mark.e2e

CREDENTIALS = {"RQSTATUS_USER": "operator", "RQSTATUS_PASSWORD": "s3cret"}
OPERATOR = basic_auth("operator", "s3cret")
XHR = {"X-Requested-With": "XMLHttpRequest"}  # the dashboard's own POSTs send it (CSRF check)
FORGED_QUEUE = "goodreads"


# ---- the live web server, and the dashboard's rules ------------------------------------------


@pytest.fixture(scope="module")
def web(module_redis_url, tmp_path_factory):
    """gunicorn with dashboard credentials and the shipped defaults otherwise; no worker, so
    forged jobs stay where they are put."""
    logs = tmp_path_factory.mktemp("web")
    server = processes.start_web(processes.service_env(REDIS_URL=module_redis_url, **CREDENTIALS), logs / "web.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def app(module_redis_url):
    """The same app in this process: its URL map is the router gunicorn's processes use."""
    return create_app({"REDIS_URL": module_redis_url, **CREDENTIALS})


# ---- 1. every spelling of a dashboard path needs the operator's credentials ---------------------

DENIED = (400, 401, 404)  # refused by gunicorn, the gate, or no rule at all: never the dashboard's answer


def dashboard_requests(app) -> list[tuple[str, str, dict]]:
    """(method, path, headers) for every dashboard rule: reads with GET, HEAD and OPTIONS,
    actions with POST (and the CSRF header, so only the gate can refuse them), and the
    prefix itself without its trailing slash."""
    found = [("GET", "/rqstatus", {}), ("OPTIONS", "/rqstatus/", {})]
    for rule in dashboard_rules(app):
        path = concrete(rule)
        if changes_state(rule):
            found.append(("POST", path, XHR))
        else:
            found += [(method, path, {}) for method in ("GET", "HEAD", "OPTIONS")]
    return found


def test_no_spelling_of_a_dashboard_path_passes_without_credentials(web, app):
    reached, answers = set(), {}
    for method, path, headers in dashboard_requests(app):
        for name, spell in SPELLINGS.items():
            target = spell(path)
            denied = request(web.port, method, target, headers)
            answers[(method, target)] = denied.status
            assert denied.status in DENIED, (name, method, target, denied.status, denied.body[:200])
            if denied.status == 401:
                assert denied.header("WWW-Authenticate") == 'Basic realm="rqstatus"'
                assert method == "HEAD" or json.loads(denied.body)["error"]["code"] == "unauthorized"
            if method == "GET" and request(web.port, method, target, OPERATOR).status == 200:
                reached.add(name)
    assert REACH_THE_DASHBOARD <= reached, f"no longer reach the dashboard: {REACH_THE_DASHBOARD - reached}"
    assert len(answers) > 300


def test_a_forged_action_spelled_otherwise_changes_nothing(web, module_redis_url):
    """The issue's exploit: empty the failed registry and requeue everything without credentials."""
    connection = Redis.from_url(module_redis_url)
    job = make_queue(FORGED_QUEUE, connection).enqueue("jobs.tasks.fetch_and_parse", "https://x.test/", "goodreads")
    FailedJobRegistry(FORGED_QUEUE, connection=connection, serializer=JSONSerializer).add(job, ttl=600)
    for target in ("//rqstatus/queue/goodreads/failed/empty", "/%2Frqstatus/requeue/goodreads",
                   "http://127.0.0.1//rqstatus/job/" + job.id + "/delete"):
        assert request(web.port, "POST", target, XHR).status == 401, target
    assert job.id in FailedJobRegistry(FORGED_QUEUE, connection=connection).get_job_ids(cleanup=False)
    assert connection.exists(job.key)


def test_other_routes_are_not_behind_the_dashboards_gate(web):
    for target in ("/healthz", "//healthz", "/openapi.json", "/"):
        assert request(web.port, "GET", target).status == 200, target


# ---- 2. no dashboard route unpickles ------------------------------------------------------------


def forge_pickled_job(connection: Redis, marker: Path) -> str:
    """A job written by someone else than the service: pickled data, meta, legacy result and a
    result in the results stream, in every registry and on the queue, and the current job of
    a registered worker."""
    pickling = Queue(FORGED_QUEUE, connection=connection, serializer=PickleSerializer)
    job = pickling.create_job("os.getpid", args=(Trap(marker),), job_id="forged-pickle", status=JobStatus.FAILED)
    job.meta = {"trap": Trap(marker)}
    job.save()
    connection.hset(job.key, "result", pickle.dumps(Trap(marker)))
    Result.create(job, Result.Type.SUCCESSFUL, ttl=600, return_value=Trap(marker))
    connection.rpush(pickling.key, job.id)
    connection.sadd(Queue.redis_queues_keys, pickling.key)
    for registry in (CanceledJobRegistry, DeferredJobRegistry, FailedJobRegistry, FinishedJobRegistry,
                     ScheduledJobRegistry, StartedJobRegistry):
        connection.zadd(registry(FORGED_QUEUE, connection=connection).key, {job.id: time.time() + 600})
    worker = Worker([pickling], connection=connection, name="forged-worker", serializer=PickleSerializer)
    worker.register_birth()
    with connection.pipeline() as pipe:
        Execution.create(job, ttl=600, pipeline=pipe, worker_name=worker.name)
        pipe.execute()
    return job.id


def test_no_dashboard_route_loads_a_pickled_job(web, app, module_redis_url, tmp_path):
    connection = Redis.from_url(module_redis_url)
    connection.flushdb()
    marker = tmp_path / "unpickled"
    pickle.loads(pickle.dumps(Trap(marker)))  # the trap works: loading it makes the marker...
    assert marker.exists()
    marker.unlink()  # ...which must not appear again
    job_id = forge_pickled_job(connection, marker)
    seen = []
    for rule in sorted(dashboard_rules(app), key=changes_state):  # reads first, then the actions
        for registry in sorted(REGISTRIES) if "registry_name" in rule.arguments else ["failed"]:
            path = concrete(rule, job_id=job_id, registry_name=registry)
            answer = request(web.port, "POST" if changes_state(rule) else "GET", path, {**OPERATOR, **XHR})
            seen.append((path, answer.status))
            assert answer.status < 500, (path, answer.status, answer.body[:300])
            assert not marker.exists(), f"{path} unpickled the forged job"
    listing = request(web.port, "GET", f"/rqstatus/0/data/jobs/{FORGED_QUEUE}/failed/8/asc/1.json", OPERATOR)
    assert len(seen) > 20 and not marker.exists()
    assert listing.status == 200


def test_a_job_that_is_not_json_is_shown_as_unreadable(web, module_redis_url, tmp_path):
    connection = Redis.from_url(module_redis_url)
    connection.flushdb()
    job_id = forge_pickled_job(connection, tmp_path / "unpickled")
    info = json.loads(request(web.port, "GET", f"/rqstatus/0/data/job/{job_id}.json", OPERATOR).body)
    assert info["description"].startswith("(unreadable") and info["metadata"] == "{}"
    assert info["result"] is None
    workers = json.loads(request(web.port, "GET", "/rqstatus/0/data/workers.json", OPERATOR).body)["workers"]
    forged = next(worker for worker in workers if worker["name"] == "forged-worker")
    assert forged["current_job"]["call_string"].startswith("(unreadable")
    listing = json.loads(request(web.port, "GET", f"/rqstatus/0/data/jobs/{FORGED_QUEUE}/failed/8/asc/1.json",
                                 OPERATOR).body)
    assert [job["description"] for job in listing["jobs"]] == [info["description"]]
    assert not (tmp_path / "unpickled").exists()


# ---- 3. workers run the service's own job functions, nothing else --------------------------------


class HookCatcher:
    """A plain-HTTP server on loopback that counts the requests it gets (webhooks)."""

    def __init__(self):
        self.hits: list[str] = []
        catcher = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                catcher.hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def hooks():
    catcher = HookCatcher()
    yield catcher
    catcher.close()


def enqueue_foreign_jobs(connection: Redis, marker: Path, hook_url: str) -> dict[str, str]:
    """Jobs a service worker must refuse, by what makes each foreign; name -> job id."""
    queue = make_queue("goodreads", connection)
    page = ("jobs.tasks.fetch_and_parse", "https://www.goodreads.com/book/show/1", "goodreads")
    jobs = {
        "any importable function": queue.enqueue("os.getpid"),
        "a function whose module import leaves a mark": queue.enqueue(f"{import_trap.__name__}.spring"),
        "a failure callback": queue.enqueue(*page, job_id="cb", on_failure=Callback(f"{import_trap.__name__}.spring")),
        "a success callback": queue.enqueue(*page, job_id="cb2", on_success=Callback(f"{import_trap.__name__}.spring")),
        "webhooks": queue.enqueue(*page, job_id="hooked", webhooks=[Webhook(hook_url, "failed", method="POST"),
                                                                       Webhook(hook_url, "finished")]),
    }
    ids = {name: job.id for name, job in jobs.items()}
    instance = queue.enqueue("jobs.tasks.fetch_and_parse", "https://www.goodreads.com/book/show/2", "goodreads")
    connection.hset(instance.key, "data", json.dumps([JOB_FUNCTION, {"a": "dict"}, ["u", "goodreads"], {}]))
    ids["a method of an object"] = instance.id
    ids["pickled data"] = forge_pickled_job(connection, marker)
    return ids


@pytest.mark.parametrize("execution", ["inprocess", "fork"])
def test_workers_refuse_every_job_the_service_did_not_write(module_redis_url, tmp_path, hooks, execution):
    connection = Redis.from_url(module_redis_url)
    connection.flushdb()
    trap, unpickled = tmp_path / "imported", tmp_path / "unpickled"
    env = processes.service_env(REDIS_URL=module_redis_url, WORKER_EXECUTION=execution, FETCH_RETRIES="0")
    service = processes.start_service(env, tmp_path, worker_env={import_trap.TRAP_ENV: str(trap)})
    try:
        ids = enqueue_foreign_jobs(connection, unpickled, hooks.url)
        tick = make_queue("maintenance", connection).enqueue(TICK_FUNCTION, job_id="tick-now")  # a service job
        for name, job_id in ids.items():
            job = wait_for_end(connection, job_id)
            assert job.get_status() == JobStatus.FAILED, name
            assert re.search(r"(ForeignJob|NotJsonJob): refused job", job.latest_result().exc_string), name
        assert wait_for_end(connection, tick.id).get_status() == JobStatus.FINISHED  # not everything is refused
        log = service.worker_log.read_text()
    finally:
        service.stop()
    assert not trap.exists() and not Path(f"{trap}.called").exists() and not unpickled.exists()
    assert hooks.hits == []
    assert "'os.getpid' is not one of the service's job functions" in log
    assert log.count('"message": "refused job ') >= len(ids)


def wait_for_end(connection: Redis, job_id: str, seconds: float = 30) -> JsonJob:
    """The job once a worker has ended it with a result of its own. Status alone cannot say so:
    the forged job starts out failed, with a result that is not readable as JSON."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = JsonJob.fetch(job_id, connection=connection)
        if job.get_status() in (JobStatus.FAILED, JobStatus.FINISHED) and job.latest_result() is not None:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} has no readable result after {seconds} s (status {job.get_status()})")


# ---- 9. one request, one access-log line ----------------------------------------------------------


def test_a_forged_line_in_a_basic_auth_user_name_stays_on_its_request_line(web):
    forged = '127.0.0.1 - admin [01/Jan/2026] "GET /forged HTTP/1.1" 200 0 "-" "-"'  # no colon: it ends a user name
    user = f"evil\n{forged}\r\n\x1b[2J\u2028"
    token = base64.b64encode(f"{user}:pw".encode()).decode()
    before = web.log.read_text().count("\n")
    answer = request(web.port, "GET", "/healthz?probe=forged-user", {"Authorization": f"Basic {token}",
                                                                    "User-Agent": 'agent "quoted" \\ slash'})
    assert answer.status == 200
    new_lines = web.log.read_text().splitlines()[before:]
    mine = [line for line in new_lines if "probe=forged-user" in line]
    assert len(mine) == 1, new_lines
    assert not any(line.startswith(forged[:20]) for line in new_lines)
    assert "evil\\n127.0.0.1 - admin" in mine[0] and "\\r\\n\\x1b[2J\\u2028" in mine[0]
    assert 'agent \\"quoted\\" \\\\ slash' in mine[0]  # gunicorn escapes quotes, we backslashes


# ---- 5. records read back from Redis are plain data of the right shape ----------------------------

BOOK = "https://www.goodreads.com/book/show/1001"


@pytest.mark.parametrize("data", [{"x": shared_lists(25)}, {"x": {"a", "set"}}, {"x": float("nan")}, {1: "int key"}],
                         ids=["shared lists (2**25 when unfolded)", "a set", "NaN", "an integer key"])
def test_a_record_that_is_not_plain_data_is_never_answered(web, module_redis_url, data):
    connection = Redis.from_url(module_redis_url)
    connection.flushdb()
    record = make_record(BOOK, "goodreads_book", "done", "1", data=data)
    raw = pickle.dumps(record, protocol=5)
    assert len(raw) < 1000
    connection.set(record_key(BOOK), raw)
    started = time.monotonic()
    answer = request(web.port, "GET", "/info?url=" + BOOK)
    assert time.monotonic() - started < 2
    assert answer.status == 404 and json.loads(answer.body)["error"]["code"] == "not_found"
    listing = request(web.port, "GET", "/records")
    assert listing.status == 200 and json.loads(listing.body)["records"] == []
    assert "refused stored value at metaparse:record:" + BOOK in web.log.read_text()


# ---- 10. a Redis error is 503 only when Redis is away; bytes from Redis are not the request ---------


def test_a_redis_command_error_is_a_logged_500_not_storage_unavailable(web, module_redis_url):
    connection = Redis.from_url(module_redis_url)
    connection.flushdb()
    connection.set(Job.key_for(job_id_for(BOOK)), b"a string where RQ keeps a hash")
    answer = request(web.port, "GET", "/info?url=" + BOOK)
    assert answer.status == 500 and json.loads(answer.body)["error"]["code"] == "storage_error"
    assert answer.header("Retry-After") is None
    assert "WRONGTYPE" in web.log.read_text()


def test_undecodable_bytes_from_redis_are_not_blamed_on_the_request(web, module_redis_url):
    connection = Redis.from_url(module_redis_url)
    connection.flushdb()
    connection.hset(Job.key_for(job_id_for(BOOK)), "status", b"\xff\xfe")
    answer = request(web.port, "GET", "/info?url=" + BOOK)
    assert answer.status == 500 and json.loads(answer.body)["error"]["code"] == "internal_error"


def test_a_query_string_that_is_not_utf8_is_still_400(web):
    """gunicorn refuses raw bytes over 0x7f in a request line itself; percent-encoded, they reach the app."""
    answer = request(web.port, "GET", "/info?url=%ff%fe")
    assert answer.status == 400


# ---- 8 and 11. request bodies: JSON only, never over the limit however framed ------------------------

LIMIT = 64 * 1024  # MAX_REQUEST_BYTES as shipped


def padded_body(size: int) -> bytes:
    """A JSON list of one book URL, padded with spaces to exactly size bytes: valid JSON at any cut."""
    start = json.dumps([BOOK]).encode()
    return start + b" " * (size - len(start))


def post_chunked(port: int, body: bytes, content_type: str = "application/json") -> RawResponse:
    head = (f"POST /parse HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    return send(port, head + chunked(body))


def book_queued(connection: Redis) -> bool:
    return connection.exists(Job.key_for(job_id_for(BOOK))) == 1


@pytest.mark.parametrize("size", [LIMIT + 1, LIMIT + 10_000, 4 * LIMIT])
def test_a_chunked_body_over_the_limit_is_413_and_enqueues_nothing(web, module_redis_url, size):
    connection = Redis.from_url(module_redis_url)
    connection.flushdb()
    answer = post_chunked(web.port, padded_body(size))
    assert answer.status == 413, answer.body
    assert json.loads(answer.body)["error"] == {
        "code": "body_too_large", "message": f"the request body is over {LIMIT:,} bytes, the most (MAX_REQUEST_BYTES)"}
    assert not book_queued(connection)


def test_a_body_of_exactly_the_limit_is_accepted_chunked_or_not(web, module_redis_url):
    connection = Redis.from_url(module_redis_url)
    for framing in ("chunked", "content-length"):
        connection.flushdb()
        if framing == "chunked":
            answer = post_chunked(web.port, padded_body(LIMIT))
        else:
            answer = request(web.port, "POST", "/parse", {"Content-Type": "application/json"}, padded_body(LIMIT))
        assert answer.status == 202, (framing, answer.body)
        assert book_queued(connection)
    over = request(web.port, "POST", "/parse", {"Content-Type": "application/json"}, padded_body(LIMIT + 1))
    assert over.status == 413 and json.loads(over.body)["error"]["code"] == "body_too_large"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          "text/plain;charset=UTF-8"])
def test_a_body_a_cross_site_page_could_send_is_415(web, module_redis_url, content_type):
    """What an HTML form or a fetch() without a CORS preflight can send, with a JSON list in it."""
    connection = Redis.from_url(module_redis_url)
    connection.flushdb()
    for path in ("/parse", "/parseGoodreadsLinks"):
        answer = request(web.port, "POST", path, {"Content-Type": content_type}, json.dumps([BOOK]).encode())
        assert answer.status == 415 and json.loads(answer.body)["error"]["code"] == "unsupported_media_type"
    assert post_chunked(web.port, json.dumps([BOOK]).encode(), content_type).status == 415
    assert not book_queued(connection)


# ---- DNS rebinding: a loopback service answers loopback names only ----------------------------------


def test_a_page_rebound_to_loopback_is_refused_by_its_host_header(web):
    """A page at evil.example whose DNS answer turns into 127.0.0.1 is same-origin with itself:
    the browser would let it read the answers. Its Host header says evil.example."""
    for method, path in (("GET", "/info?url=" + BOOK), ("GET", "/"), ("GET", "/records"), ("GET", "/rqstatus/"),
                         ("GET", "/metrics"), ("GET", "/jobs/x")):
        answer = request(web.port, method, path, {"Host": f"evil.example:{web.port}"})
        assert answer.status == 400, (path, answer.status)
        assert json.loads(answer.body)["error"]["code"] in ("host_not_allowed", "unauthorized"), path
    posted = request(web.port, "POST", "/parse", {"Content-Type": "application/json", "Host": "evil.example"},
                     json.dumps([BOOK]).encode())
    assert posted.status == 400 and json.loads(posted.body)["error"]["code"] == "host_not_allowed"
    for host in (f"127.0.0.1:{web.port}", f"localhost:{web.port}", f"[::1]:{web.port}", "LOCALHOST", "127.0.0.1"):
        assert request(web.port, "GET", "/openapi.json", {"Host": host}).status == 200, host


def test_allowed_hosts_names_the_hosts_answered(module_redis_url):
    client = create_app({"REDIS_URL": module_redis_url, "ALLOWED_HOSTS": "metaparse.example, [::1]"}).test_client()
    for host in ("Metaparse.Example:443", "[::1]:8000"):
        assert client.get("/openapi.json", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "localhost:8000", "127.0.0.1", "metaparse.example.evil.example"):
        refused = client.get("/openapi.json", headers={"Host": host})
        assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "host_not_allowed", host
        assert client.get("/healthz", headers={"Host": host}).status_code == 200, host  # probes ask by address
