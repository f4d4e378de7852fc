"""Prometheus metrics: GET /metrics through the Flask client, after requests and after real job
runs (an in-process SimpleWorker on the real Redis, fetching from a local HTTPS fixture site),
plus the multiprocess side: files of dead processes folded, and gunicorn's workers adding up.

Every process of a test session shares one metrics folder (the session's private one), so
counters are compared before and after; gauges are absolute.
"""
from __future__ import annotations

import ast
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict, mmap_key

import metrics
import parsers
from config import PROJECT_ROOT
from jobs.queues import make_queue
from launch import free_port
from server import create_app
from sources import QUEUE_NAMES
from storage import Storage, make_record
from tests.support import job_runs, processes
from tests.support.exposition import Samples, parse_exposition, value
from tests.support.fixture_server import Reply
from tests.support.job_runs import BOOK_PATH, BOOK_URL, run_job, work_burst

GOODREADS = {"queue": "goodreads", "source": "goodreads"}


@pytest.fixture
def app(base_env, redis_client, tmp_path):
    """The app with a DATA_DIR of its own: no journal of other tests' URLs re-submitted meanwhile."""
    return create_app({**base_env, "DATA_DIR": str(tmp_path / "var")})


# ---- reading the exposition -----------------------------------------------------------------


def scrape(client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return parse_exposition(response.get_data(as_text=True))


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


# ---- requests ---------------------------------------------------------------------------------


def test_requests_are_counted_by_url_rule_and_status_and_timed(client):
    before = scrape(client)
    assert client.get("/info", query_string={"url": BOOK_URL}).status_code == 404
    assert client.get("/jobs/nosuchjob").status_code == 404
    assert client.get("/jobs/another").status_code == 404
    assert client.get("/healthz").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    assert client.post("/healthz").status_code == 405
    text = client.get("/metrics").get_data(as_text=True)
    after = parse_exposition(text)

    requests_total = "metaparse_http_requests_total"
    assert grew(before, after, requests_total, method="GET", route="/info", status="404") == 1
    assert grew(before, after, requests_total, method="GET", route="/jobs/<job_id>", status="404") == 2
    assert grew(before, after, requests_total, method="GET", route="/healthz", status="200") == 1
    assert grew(before, after, requests_total, method="GET", route="unmatched", status="404") == 1
    assert grew(before, after, requests_total, method="POST", route="unmatched", status="405") == 1
    assert grew(before, after, requests_total, method="GET", route="/metrics", status="200") == 1  # the first scrape
    latency = "metaparse_http_request_duration_seconds"
    assert grew(before, after, f"{latency}_count", method="GET", route="/jobs/<job_id>") == 2
    assert grew(before, after, f"{latency}_bucket", method="GET", route="/jobs/<job_id>", le="+Inf") == 2
    assert grew(before, after, f"{latency}_sum", method="GET", route="/jobs/<job_id>") > 0
    # Bounded labels: URL rules, never the raw path or the query.
    assert "goodreads.com" not in text and "nosuchjob" not in text and "/no/such/page" not in text


def test_submissions_enqueues_and_queue_depth(client, redis_client):
    before = scrape(client)
    first = client.post("/parse", json=[BOOK_URL]).get_json()["accepted"][0]
    again = client.post("/parse", json=["https://m.goodreads.com/book/show/42-another-spelling"]).get_json()["accepted"][0]
    fresh = "https://www.goodreads.com/book/show/7"
    Storage(redis_client).save_record(make_record(fresh, "goodreads_book", "done", parsers.PARSER_VERSION, data={}), 3600)
    cached = client.post("/parse", json=[fresh]).get_json()["accepted"][0]
    assert (first["status"], again["status"], cached["status"]) == ("queued", "queued", "cached")
    after = scrape(client)

    assert grew(before, after, "metaparse_submissions_total", queue="goodreads", status="queued") == 2
    assert grew(before, after, "metaparse_submissions_total", queue="goodreads", status="cached") == 1
    assert grew(before, after, "metaparse_jobs_enqueued_total", **GOODREADS) == 1  # in flight: not queued twice
    # The gauge is read from Redis at scrape time, for every queue.
    assert value(after, "metaparse_queue_depth", queue="goodreads") == 1
    assert {name for name in QUEUE_NAMES} <= {dict(labels)["queue"] for (name, labels) in after
                                              if name == "metaparse_queue_depth"}
    make_queue("goodreads", redis_client).empty()
    assert value(scrape(client), "metaparse_queue_depth", queue="goodreads") == 0


def test_queue_names_come_from_the_ground_floor_not_from_jobs():
    """Queue names live in sources.py: metrics and logs, below jobs/, never import jobs.queues
    for them (that made the circle jobs.queues -> metrics -> jobs.queues), in a function or not."""
    for module in ("metrics.py", "logs.py"):
        nodes = list(ast.walk(ast.parse((PROJECT_ROOT / module).read_text())))
        imported = {node.module for node in nodes if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in nodes if isinstance(node, ast.Import) for alias in node.names}
        assert "jobs.queues" not in imported, module


def test_queue_depth_is_left_out_while_redis_is_away(base_env, tmp_path):
    app = create_app({**base_env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "DATA_DIR": str(tmp_path)})
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert "metaparse_queue_depth" not in response.get_data(as_text=True)


# ---- job runs -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site():
    yield from job_runs.goodreads_site()


@pytest.fixture
def worker_env(site, redis_url, redis_client, tmp_path: Path, monkeypatch) -> dict[str, str]:
    """The job's settings (read from the environment, like a worker's): two retries."""
    return job_runs.worker_env(site, redis_url, tmp_path, monkeypatch, retries=2, clear_hits=True)


@pytest.fixture
def title_parser(monkeypatch):
    """The metrics are under test, not the parser: a parser that reads the <title>."""
    job_runs.use_title_parser(monkeypatch)


def test_a_done_job_counts_done_and_times_fetch_and_parse(client, site, worker_env, redis_client, title_parser):
    site.routes[BOOK_PATH] = Reply(body=b"<html><title>The Answer</title></html>")
    before = scrape(client)
    run_job(redis_client, worker_env)
    after = scrape(client)
    assert Storage(redis_client).load_record(BOOK_URL)["status"] == "done"
    assert grew(before, after, "metaparse_jobs_enqueued_total", **GOODREADS) == 1
    assert grew(before, after, "metaparse_jobs_done_total", **GOODREADS) == 1
    assert grew(before, after, "metaparse_fetch_duration_seconds_count", source="goodreads", outcome="ok") == 1
    assert grew(before, after, "metaparse_fetch_duration_seconds_sum", source="goodreads", outcome="ok") > 0
    assert grew(before, after, "metaparse_parse_duration_seconds_count", source="goodreads", outcome="ok") == 1
    assert grew(before, after, "metaparse_parse_duration_seconds_bucket", source="goodreads", outcome="ok",
                le="+Inf") == 1
    assert value(after, "metaparse_queue_depth", queue="goodreads") == 0
    for failure in ("metaparse_jobs_failed_total", "metaparse_job_retries_total"):
        assert not any(name == failure and grew(before, after, name, **dict(labels)) for name, labels in after)


def test_a_404_is_a_failure_with_its_code(client, site, worker_env, redis_client, title_parser):
    site.routes[BOOK_PATH] = Reply(404, b"gone")
    before = scrape(client)
    run_job(redis_client, worker_env)
    after = scrape(client)
    assert grew(before, after, "metaparse_jobs_failed_total", code="http_status", **GOODREADS) == 1
    assert grew(before, after, "metaparse_jobs_done_total", **GOODREADS) == 0
    assert grew(before, after, "metaparse_fetch_duration_seconds_count", source="goodreads", outcome="error") == 1
    assert grew(before, after, "metaparse_ssrf_refusals_total", source="goodreads") == 0


def test_a_parse_error_is_timed_as_a_failed_parse(client, site, worker_env, redis_client, title_parser):
    site.routes[BOOK_PATH] = Reply(body=b"<html>no title here</html>")
    before = scrape(client)
    run_job(redis_client, worker_env)
    after = scrape(client)
    assert grew(before, after, "metaparse_jobs_failed_total", code="parse_error", **GOODREADS) == 1
    assert grew(before, after, "metaparse_fetch_duration_seconds_count", source="goodreads", outcome="ok") == 1
    assert grew(before, after, "metaparse_parse_duration_seconds_count", source="goodreads", outcome="error") == 1


def test_a_redirect_to_loopback_is_an_ssrf_refusal(client, site, worker_env, redis_client, title_parser):
    site.routes[BOOK_PATH] = Reply(302, b"", {"Location": f"https://127.0.0.1:{site.port}/admin"})
    before = scrape(client)
    run_job(redis_client, worker_env)
    after = scrape(client)
    assert site.hits[BOOK_PATH] == 1 and "/admin" not in site.hits  # the redirect was not followed
    assert grew(before, after, "metaparse_ssrf_refusals_total", source="goodreads") == 1
    assert grew(before, after, "metaparse_jobs_failed_total", code="blocked_address", **GOODREADS) == 1


def test_a_503_with_retries_left_is_a_retry_not_a_failure(client, site, worker_env, redis_client, title_parser):
    site.routes[BOOK_PATH] = Reply(503, b"busy")
    before = scrape(client)
    run_job(redis_client, worker_env)
    after = scrape(client)
    assert Storage(redis_client).load_record(BOOK_URL) is None  # a retry is coming
    assert grew(before, after, "metaparse_job_retries_total", code="fetch_transient", **GOODREADS) == 1
    assert grew(before, after, "metaparse_jobs_failed_total", code="fetch_transient", **GOODREADS) == 0
    assert grew(before, after, "metaparse_fetch_duration_seconds_count", source="goodreads", outcome="error") == 1


def test_broken_metrics_fail_neither_a_request_nor_a_job(client, site, worker_env, redis_client, title_parser,
                                                         monkeypatch, caplog):
    def broken():
        raise OSError("disk full")

    monkeypatch.setattr(metrics, "_metrics", broken)
    site.routes[BOOK_PATH] = Reply(body=b"<html><title>The Answer</title></html>")
    assert client.post("/parse", json=[BOOK_URL]).status_code == 202
    work_burst(redis_client)
    assert Storage(redis_client).load_record(BOOK_URL)["status"] == "done"
    failed_hooks = {record.args[0] for record in caplog.records if record.name == "metrics"}
    assert {"_count", "job_submitted", "job_enqueued", "fetch_done", "job_step", "job_done"} <= failed_hooks


def test_error_codes_come_from_errors_py():
    codes = metrics.error_codes()
    assert {"http_status", "blocked_address", "fetch_transient", "fetch_timeout", "parse_error",
            "internal_error"} <= codes
    assert metrics._bounded("something new", codes) == "other"


# ---- the multiprocess folder -------------------------------------------------------------------


def counter_file(path: Path, pid: int | str, route_rule: str, count: float) -> Path:
    """A counter file as a process with this pid would leave it."""
    file = path / f"counter_{pid}.db"
    data = MmapedDict(str(file))
    key = mmap_key("metaparse_http_requests", "metaparse_http_requests_total", ["method", "route", "status"],
                   ["GET", route_rule, "200"], "HTTP requests answered, by Flask URL rule and status.")
    data.write_value(key, count, 0.0)
    data.close()
    return file


def test_an_unset_folder_defaults_to_data_dir_and_is_cleaned_of_dead_processes(tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir()
    stale = counter_file(folder, 999_999_999, "/stale", 5)  # above any pid_max: never alive
    archive = counter_file(folder, "archive", "/stale", 7)
    live = counter_file(folder, os.getpid(), "/live", 1)
    environ: dict[str, str] = {}
    assert metrics.setup_multiprocess_dir(tmp_path, environ) == folder
    assert environ == {metrics.MULTIPROC_ENV: str(folder)}
    assert not stale.exists() and not archive.exists() and live.exists()
    # Set already (by an operator, or by launch.py for its children): used as is, not cleaned.
    stale = counter_file(folder, 999_999_999, "/stale", 5)
    assert metrics.setup_multiprocess_dir(tmp_path / "elsewhere", environ) == folder
    assert stale.exists()


def test_files_of_dead_processes_are_folded_and_still_counted(client):
    """A work-horse leaves its files behind when it exits: a scrape folds them into the archive."""
    folder = metrics.multiprocess_dir()
    script = "import metrics; metrics.job_submitted({'queue': 'pages', 'status': 'started'})"
    env = {**os.environ, metrics.MULTIPROC_ENV: str(folder)}
    sample = ("metaparse_submissions_total", {"queue": "pages", "status": "started"})
    before = scrape(client)
    pids = []
    for _ in range(2):
        child = subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env)
        assert child.wait(60) == 0
        pids.append(child.pid)
        assert (folder / f"counter_{child.pid}.db").exists()
        after = scrape(client)  # folds the dead child's file
        assert not (folder / f"counter_{child.pid}.db").exists()
        assert (folder / "counter_archive.db").exists()
    assert grew(before, after, sample[0], **sample[1]) == 2


# ---- gunicorn: two workers, one set of counters -----------------------------------------------


def per_process_counts(folder: Path, route_rule: str) -> dict[int, float]:
    """metaparse_http_requests_total for route_rule in each live process's own file."""
    counts: dict[int, float] = {}
    for file in folder.glob("counter_*.db"):
        pid = file.stem.split("_")[1]
        if not pid.isdigit():
            continue
        for key, count, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(file)):
            _metric, name, labels, _help = json.loads(key)
            if name == "metaparse_http_requests_total" and labels["route"] == route_rule:
                counts[int(pid)] = counts.get(int(pid), 0) + count
    return counts


def wait_gone(pid: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} still there")


@pytest.mark.e2e
def test_gunicorn_workers_add_up_and_a_dead_workers_counts_stay(redis_url, tmp_path):
    data_dir = tmp_path / "var"
    folder = data_dir / "metrics"
    folder.mkdir(parents=True)
    stale = counter_file(folder, 999_999_999, "/jobs/<job_id>", 1000)  # an earlier run's
    port = free_port()
    marker = f"METAPARSE_METRICS_{uuid.uuid4().hex}"
    env = processes.service_env(REDIS_URL=redis_url, PORT=str(port), WEB_WORKERS="2",
                                DATA_DIR=str(data_dir), **{marker: "1"})
    env.pop(metrics.MULTIPROC_ENV, None)  # gunicorn.conf.py picks DATA_DIR/metrics
    log_path = tmp_path / "web.log"
    web = processes.start(processes.WEB_COMMAND, env, log_path)
    base = f"http://127.0.0.1:{port}"
    route_rule = "/jobs/<job_id>"

    def one_request(_: int) -> int:
        return requests.get(f"{base}/jobs/nosuchjob", headers={"Connection": "close"}, timeout=10).status_code

    try:
        processes.wait_for_http(f"{base}/healthz", web, log_path)
        assert not stale.exists(), "the earlier run's files are removed at start"
        sent, deadline = 0, time.monotonic() + 60
        with ThreadPoolExecutor(8) as pool:
            while len(per_process_counts(folder, route_rule)) < 2:  # until both workers served some
                assert time.monotonic() < deadline, "one worker served every request"
                assert set(pool.map(one_request, range(16))) == {404}
                sent += 16
        counts = per_process_counts(folder, route_rule)
        exposed = parse_exposition(requests.get(f"{base}/metrics", timeout=10).text)
        assert value(exposed, "metaparse_http_requests_total", method="GET", route=route_rule, status="404") == sent
        assert sum(counts.values()) == sent

        victim = next(iter(counts))  # a worker exits (gunicorn starts another): its counts stay
        os.kill(victim, signal.SIGTERM)
        wait_gone(victim)
        processes.wait_for_http(f"{base}/healthz", web, log_path)
        exposed = parse_exposition(requests.get(f"{base}/metrics", timeout=10).text)
        assert value(exposed, "metaparse_http_requests_total", method="GET", route=route_rule, status="404") == sent
        assert not (folder / f"counter_{victim}.db").exists()  # folded into the archive
        assert (folder / "counter_archive.db").exists()
    finally:
        processes.stop(web)
    assert processes.wait_until_gone(marker) == []


@pytest.mark.e2e
def test_a_worker_serves_its_job_metrics_on_its_own_port(site, redis_url, redis_client, tmp_path):
    """As in docker compose: the worker shares no folder with web (its own DATA_DIR), so with
    METRICS_PORT it serves its job counters and latencies itself, from every process of its pool."""
    site.routes.clear()
    site.routes[BOOK_PATH] = Reply(body=(PROJECT_ROOT / "tests" / "fixtures" / "e2e" / "goodreads-book.html").read_bytes())
    port, marker = free_port(), f"METAPARSE_METRICS_{uuid.uuid4().hex}"
    env = processes.service_env(REDIS_URL=redis_url, WORKERS="2", FETCH_RETRIES="0", METRICS_PORT=str(port),
                                DATA_DIR=str(tmp_path / "worker-host"), **site.fetch_env(tmp_path, "www.goodreads.com"),
                                **{marker: "1"})
    env.pop(metrics.MULTIPROC_ENV, None)  # the worker picks its own DATA_DIR/metrics, as in a container
    log_path = tmp_path / "worker.log"
    worker = processes.start(processes.WORKER_COMMAND, env, log_path)
    try:
        before = parse_exposition(processes.wait_for_http(f"http://127.0.0.1:{port}/metrics", worker, log_path).text)
        assert value(before, "metaparse_jobs_done_total", **GOODREADS) == 0
        job_runs.submit(redis_client, env)
        deadline = time.monotonic() + 60
        while Storage(redis_client).load_record(BOOK_URL) is None:
            assert worker.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        after = parse_exposition(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
    finally:
        processes.stop(worker)
    assert processes.wait_until_gone(marker) == []
    assert value(after, "metaparse_jobs_done_total", **GOODREADS) == 1
    assert value(after, "metaparse_fetch_duration_seconds_count", source="goodreads", outcome="ok") == 1
    assert value(after, "metaparse_parse_duration_seconds_count", source="goodreads", outcome="ok") == 1
    assert value(after, "metaparse_http_requests_total", method="GET", route="/metrics", status="200") == 0, \
        "web's samples are not the worker's"


def test_a_taken_metrics_port_stops_the_worker_with_one_line(redis_url, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = processes.service_env(REDIS_URL=redis_url, METRICS_PORT=str(port), DATA_DIR=str(tmp_path / "var"))
        worker = processes.start(processes.WORKER_COMMAND, env, tmp_path / "worker.log")
        try:
            assert worker.wait(30) != 0
        finally:
            processes.stop(worker)
    assert (tmp_path / "worker.log").read_text().strip() == \
        f"cannot serve metrics on 127.0.0.1:{port}: Address already in use"
