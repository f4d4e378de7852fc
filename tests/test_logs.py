"""Structured logs: every line on stderr is one JSON object; a job's lines carry job_id and url.

In process: a job run by an RQ SimpleWorker (the service's JobLogSimpleWorker) and requests
through the Flask client, with stderr captured. As a real process: `python -m jobs.worker`
(the pool, its worker and the forked work-horse) writes nothing but JSON lines.
"""
from __future__ import annotations

import io
import json
import logging
import time
import uuid
from pathlib import Path

import pytest
from rq.exceptions import StopRequested

import logs
from config import load_settings
from errors import ConfigError
from jobs import joblogs
from jobs.queues import MAINTENANCE_QUEUE, Submitter, job_id_for, make_queue
from jobs.trust import TICK_FUNCTION
from sources import route
from server import create_app
from storage import Storage
from tests.support import job_runs, processes
from tests.support.fixture_server import Reply
from tests.support.job_runs import BOOK_PATH, BOOK_URL

BOOK_BODY = b"<html><title>The Answer</title></html>"
FIXTURE_BOOK = Path(__file__).parent / "fixtures" / "e2e" / "goodreads-book.html"
JOB_EVENTS = ["job started", "fetch done", "parse done", "record saved"]


@pytest.fixture
def app(base_env, redis_client, tmp_path):
    """The app with a DATA_DIR of its own: no journal of other tests' URLs re-submitted meanwhile."""
    return create_app({**base_env, "DATA_DIR": str(tmp_path / "var")})


@pytest.fixture
def stderr_lines(capsys):
    """configure_logging() as the entry points call it; returns a reader of stderr's JSON lines."""
    root = logging.getLogger()
    level = root.level
    handler = logs.configure_logging("INFO")

    def read() -> list[dict]:
        text = capsys.readouterr().err
        lines = [line for line in text.splitlines() if line.strip()]
        return [json.loads(line) for line in lines]  # every line must be a JSON object

    yield read
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="module")
def site():
    yield from job_runs.goodreads_site()


@pytest.fixture
def worker_env(site, redis_url, redis_client, tmp_path: Path, monkeypatch) -> dict[str, str]:
    return job_runs.worker_env(site, redis_url, tmp_path, monkeypatch, retries=0)


@pytest.fixture
def title_parser(monkeypatch):
    job_runs.use_title_parser(monkeypatch)


def run_job(redis_client, worker_env) -> str:
    return job_runs.run_job(redis_client, worker_env, worker_class=joblogs.JobLogSimpleWorker)


def check_shape(lines: list[dict]) -> None:
    assert lines
    for line in lines:
        assert {"ts", "level", "logger", "message", "pid"} <= set(line), line
        assert line["ts"].endswith("+00:00") and line["level"] in ("DEBUG", "INFO", "WARNING", "ERROR")


def by_message(lines: list[dict], message: str) -> dict:
    [line] = [line for line in lines if line["message"] == message]
    return line


# ---- a job, in process ----------------------------------------------------------------------


def test_a_jobs_lines_are_json_and_carry_job_id_and_url(stderr_lines, site, worker_env, redis_client, title_parser):
    site.routes[BOOK_PATH] = Reply(body=BOOK_BODY)
    job_id = run_job(redis_client, worker_env)
    lines = stderr_lines()
    check_shape(lines)

    events = [line for line in lines if line["logger"] == "jobs.tasks"]
    assert [line["message"] for line in events] == JOB_EVENTS
    for line in events:
        assert line["job_id"] == job_id and line["url"] == BOOK_URL, line
    started, fetched, parsed, saved = events
    assert started["queue"] == "goodreads" and started["source"] == "goodreads"
    assert fetched["status"] == 200 and fetched["bytes"] == len(BOOK_BODY) and fetched["final_url"] == BOOK_URL
    assert fetched["ms"] >= 0 and parsed["ms"] >= 0 and saved["status"] == "done"
    # RQ's own line about the job carries them too; lines before and after it do not.
    job_ok = next(line for line in lines if line["logger"] == "rq.worker" and "Job OK" in line["message"])
    assert job_ok["job_id"] == job_id and job_ok["url"] == BOOK_URL
    assert "\x1b" not in job_ok["message"]
    quitting = next(line for line in lines if "done, quitting" in line["message"])
    assert "job_id" not in quitting and "url" not in quitting


def test_a_failed_job_logs_its_error_code(stderr_lines, site, worker_env, redis_client, title_parser):
    site.routes[BOOK_PATH] = Reply(404, b"gone")
    job_id = run_job(redis_client, worker_env)
    lines = stderr_lines()
    check_shape(lines)
    failed = by_message(lines, "job failed")
    assert failed["level"] == "WARNING" and failed["code"] == "http_status" and failed["step"] == "fetching"
    assert "404" in failed["error"] and failed["job_id"] == job_id and failed["url"] == BOOK_URL
    assert not any(line["message"] in ("fetch done", "record saved") for line in lines)
    # RQ's traceback of the failure: one JSON line, with the job's fields.
    [traceback] = [line for line in lines if line["logger"] == "rq.worker" and line["level"] == "ERROR"]
    assert "HttpStatusError" in traceback["message"] and traceback["job_id"] == job_id
    assert traceback["url"] == BOOK_URL


# ---- requests, in process --------------------------------------------------------------------


def test_a_submission_logs_the_enqueued_job_at_debug_level(stderr_lines, client):
    logging.getLogger("web.api").setLevel(logging.DEBUG)  # one line per URL: DEBUG, it costs a POST ~17% at INFO
    try:
        assert client.post("/parse", json=["https://m.goodreads.com/book/show/42-the-answer"]).status_code == 202
    finally:
        logging.getLogger("web.api").setLevel(logging.NOTSET)
    lines = stderr_lines()
    check_shape(lines)
    [enqueued] = [line for line in lines if line["message"] == "job enqueued" and line["url"] == BOOK_URL]
    assert enqueued["logger"] == "web.api" and enqueued["level"] == "DEBUG"
    assert enqueued["job_id"] == job_id_for(BOOK_URL) and enqueued["url"] == BOOK_URL
    assert enqueued["queue"] == "goodreads" and enqueued["source"] == "goodreads"


def test_a_request_that_fails_logs_json_with_the_traceback(stderr_lines, client, monkeypatch):
    from web import api

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(api, "fetch_job", broken)
    assert client.get("/jobs/abc").status_code == 500
    lines = stderr_lines()
    check_shape(lines)
    error = by_message(lines, "unhandled error")
    assert error["level"] == "ERROR" and error["logger"] == "server"
    assert error["exc"].startswith("Traceback") and "RuntimeError: boom" in error["exc"]
    assert "job_id" not in error


def test_bound_fields_extra_and_text_format():
    stream, level = io.StringIO(), logging.getLogger().level
    handler = logs.configure_logging("DEBUG", "text", stream=stream)
    try:
        with logs.bound(job_id="j1", url="https://example.com/"):
            logging.getLogger("t").info("hello %s", "you", extra={"ms": 1.5})
        logging.getLogger("t").debug("after")
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(level)
    first, second = stream.getvalue().splitlines()
    assert first.endswith("INFO t: hello you ms=1.5 job_id=j1 url=https://example.com/")
    assert second.endswith("DEBUG t: after")


def test_text_lines_cannot_be_forged():
    """Page text with line breaks or terminal escapes, in a message, a field and an exception:
    only each record's first line starts at the margin, and no control character is written."""
    stream, level = io.StringIO(), logging.getLogger().level
    handler = logs.configure_logging("INFO", "text", stream=stream)
    forged = "2026-01-01 00:00:00,000 ERROR server: forged"
    try:
        logging.getLogger("t").info("title %s", f"A\n{forged}\r\x1b[2J\u2028{forged}", extra={"title": f"x\n{forged}"})
        try:
            raise ValueError(f"not a book page: \n{forged}")
        except ValueError:
            logging.getLogger("t").exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(level)
    lines = stream.getvalue().splitlines()
    at_margin = [line for line in lines if not line.startswith(logs.CONTINUATION)]
    assert len(at_margin) == 2 and at_margin[0].endswith("INFO t: title A") and "ERROR t: failed" in at_margin[1]
    assert not any(char in stream.getvalue() for char in "\x1b\r\u2028")
    assert "\\x1b[2J" in stream.getvalue()  # CR and U+2028 break lines: indented like a newline


@pytest.mark.parametrize("text, escaped", [("plain é", "plain é"), ("a\nb", "a\\nb"), ("\x1b[31m", "\\x1b[31m"),
                                           ("back\\slash", "back\\\\slash"), ('"quoted"', '"quoted"')])
def test_escaped_keeps_a_value_on_one_line(text, escaped):
    assert logs.escaped(text, backslashes=True) == escaped


def test_configure_logging_is_idempotent_and_leaves_other_handlers():
    root = logging.getLogger()
    level = root.level
    others = [h for h in root.handlers if not getattr(h, "_metaparse_handler", False)]
    first = logs.configure_logging("INFO", stream=io.StringIO())
    second = logs.configure_logging("INFO", stream=io.StringIO())
    try:
        assert first not in root.handlers and second in root.handlers
        assert [h for h in root.handlers if h is not second] == others
    finally:
        root.removeHandler(second)
        root.setLevel(level)


def test_log_format_setting():
    assert load_settings({}).log_format == "auto"
    assert load_settings({"LOG_FORMAT": "text"}).log_format == "text"
    assert load_settings({"LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        load_settings({"LOG_FORMAT": "xml"})


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stream, fmt, text", [(Terminal(), "auto", True), (io.StringIO(), "auto", False),
                                               (Terminal(), "json", False), (io.StringIO(), "text", True)])
def test_auto_format_is_text_on_a_terminal_and_json_elsewhere_unless_set(stream, fmt, text):
    """LOG_FORMAT unset (auto): people at a terminal read text, collectors get JSON; set, it wins."""
    level = logging.getLogger().level
    handler = logs.configure_logging("INFO", fmt, stream=stream)
    try:
        logging.getLogger("t").info("hello")
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(level)
    line = stream.getvalue().strip()
    assert line.endswith("INFO t: hello") if text else json.loads(line)["message"] == "hello"


# ---- routine upkeep: DEBUG, so an idle service prints nothing at INFO ---------------------------


def captured(level: str, emit) -> list[dict]:
    """The JSON lines emit() logs through configure_logging(level)."""
    stream, root_level = io.StringIO(), logging.getLogger().level
    handler = logs.configure_logging(level, "json", stream=stream)
    try:
        emit()
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(root_level)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def rq_dequeue_line(queue: str, description: str, job_id: str) -> None:
    """RQ's line for a job taken off a queue (rq/worker/base.py), colours included."""
    logging.getLogger("rq.worker").info("Worker %s: %s: %s (%s)", "w1", f"\x1b[32m{queue}\x1b[39;49;00m",
                                        f"\x1b[34m{description}\x1b[39;49;00m", job_id)


def upkeep_and_events() -> None:
    rq_dequeue_line("maintenance", f"{TICK_FUNCTION}()", "tick-1")
    rq_dequeue_line("goodreads", f"jobs.tasks.fetch_and_parse('{BOOK_URL}')", "j1")
    with logs.routine():
        logging.getLogger("rq.worker").info("Worker %s: cleaning registries for queue: %s", "w1", "news")
        logging.getLogger("rq.worker").warning("Worker %s: maintenance failed", "w1")
        logging.getLogger("jobs.callbacks").info("callback for batch b1 delivered")


def test_rqs_lines_about_upkeep_are_debug_its_warnings_and_real_events_are_not():
    at_info = captured("INFO", upkeep_and_events)
    assert [(line["level"], line["message"]) for line in at_info] == [
        ("INFO", "Worker w1: goodreads: jobs.tasks.fetch_and_parse('https://www.goodreads.com/book/show/42') (j1)"),
        ("WARNING", "Worker w1: maintenance failed"),
        ("INFO", "callback for batch b1 delivered"),
    ]
    at_debug = captured("DEBUG", upkeep_and_events)
    assert [line["level"] for line in at_debug] == ["DEBUG", "INFO", "DEBUG", "WARNING", "INFO"]
    assert "_routine" not in at_debug[2] and "routine" not in at_debug[2]


def test_a_tick_job_run_by_the_services_worker_class_logs_nothing_at_info(worker_env, redis_client):
    """RQ's real lines: the tick's dequeue, "Successfully completed", "Job OK", its result
    discarded, and the worker's maintenance pass; all there at DEBUG, none at INFO."""
    def tick_once() -> None:
        make_queue(MAINTENANCE_QUEUE, redis_client).enqueue(TICK_FUNCTION, job_id=f"tick-{uuid.uuid4().hex}",
                                                            result_ttl=0)
        job_runs.work_burst(redis_client, joblogs.JobLogSimpleWorker)

    def upkeep(lines: list[dict]) -> list[dict]:
        return [line for line in lines if line["logger"].startswith("rq.") and
                ("tick" in line["message"] or "cleaning" in line["message"])]

    at_debug = upkeep(captured("DEBUG", tick_once))
    assert {line["level"] for line in at_debug} == {"DEBUG"}
    messages = " | ".join(line["message"] for line in at_debug)
    for rq_line in ("maintenance: jobs.ticker.tick()", "Successfully completed jobs.ticker.tick()", "Job OK",
                    "result discarded", "cleaning registries"):
        assert rq_line in messages, messages
    assert upkeep(captured("INFO", tick_once)) == []


# ---- the real worker process ---------------------------------------------------------------


@pytest.mark.e2e
def test_the_worker_process_writes_only_json_lines(site, redis_url, redis_client, tmp_path):
    site.routes[BOOK_PATH] = Reply(body=FIXTURE_BOOK.read_bytes())
    marker = f"METAPARSE_LOGS_{uuid.uuid4().hex}"
    env = processes.service_env(
        REDIS_URL=redis_url, WORKERS="1", FETCH_RETRIES="0", DATA_DIR=str(tmp_path / "var"),
        **site.fetch_env(tmp_path, "www.goodreads.com"), **{marker: "1"},
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the worker picks DATA_DIR/metrics
    log_path = tmp_path / "worker.log"
    worker = processes.start(processes.WORKER_COMMAND, env, log_path)
    try:
        job_id = Submitter(redis_client, load_settings(env)).submit(route(BOOK_URL)).job_id
        deadline = time.monotonic() + 60
        while Storage(redis_client).load_record(BOOK_URL) is None:
            assert worker.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(0.5)  # RQ's lines after the job
    finally:
        processes.stop(worker)
    assert processes.wait_until_gone(marker) == []

    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # stdout and stderr: all JSON
    check_shape(lines)
    job_lines = [line for line in lines if line.get("job_id") == job_id]
    assert all(line["url"] == BOOK_URL for line in job_lines)
    events = [line["message"] for line in job_lines if line["logger"] == "jobs.tasks"]
    assert events == JOB_EVENTS, text[-3000:]
    assert any("Job OK" in line["message"] for line in job_lines)  # RQ's, in the work-horse
    pool = next(line for line in lines if line["logger"] == "rq.worker_pool")
    horse = next(line for line in job_lines if line["message"] == "job started")
    assert horse["pid"] != pool["pid"]
    assert (tmp_path / "var" / "metrics" / f"counter_{horse['pid']}.db").exists()  # the work-horse's metrics


def test_a_stop_signal_that_arrives_while_a_line_is_written_reaches_the_worker():
    """RQ's idle worker raises StopRequested from its SIGTERM handler, wherever it is: inside
    logging, the stop was printed as a logging error and lost (the worker ran on until killed)."""
    class Interrupted(logs.JsonFormatter):
        def format(self, record):
            raise StopRequested()

    handler = logs.configure_logging("INFO", "json", stream=io.StringIO())
    handler.setFormatter(Interrupted())
    try:
        with pytest.raises(StopRequested):
            logging.getLogger("rq.worker").info("cleaning registries")
        handler.setFormatter(type("Broken", (logs.JsonFormatter,), {"format": lambda self, record: 1 / 0})())
        logging.getLogger("rq.worker").info("any other error is still only printed")
    finally:
        logging.getLogger().removeHandler(handler)
