"""The `metaparse` command line.

Unit tests need no server: URL reading, CSV flattening, chunk halving against a fake
session, waiting with a fake client and clock, the parser and exit codes. The e2e tests
run the CLI as a subprocess (`.venv/bin/metaparse` and `python -m cli`) against real
gunicorn + worker processes, whose "www.goodreads.com" is a local HTTPS fixture server.
"""
from __future__ import annotations

import csv
import io
import json
import secrets
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from cli import output
from cli.client import ServiceClient, ServiceError, Submission, Unreachable
from cli.commands import summary_exit_code
from cli.exits import ExitCode, UsageError
from cli.main import build_parser, main
from cli.urls import gather_urls, parse_lines
from cli.waiting import Outcome, Waiter, count, final_items
from config import PROJECT_ROOT
from launch import free_port
from tests.support import processes
from tests.support.fixture_server import FixtureServer, Reply, send_reply

FIXTURE_BOOK = Path(__file__).parent / "fixtures" / "e2e" / "goodreads-book.html"
BOOK_TITLE = "The Lighthouse Keeper's Almanac"
TOKEN = f"cli-{uuid.uuid4().hex}"  # per run: see assert_service_is_ours
SERVER_LIMIT = 3  # MAX_URLS_PER_REQUEST of the test service: more URLs must be sent in chunks
SLOW_SECONDS = 5


def book(book_id: int | str) -> str:
    return f"https://www.goodreads.com/book/show/{book_id}"


# Book ids of this run: sessions running side by side never share a record even if they
# end up sharing a Redis (free_port() can race). Offsets 404 and 410 fail, 777 is slow.
RUN_BASE = 1_000_000 + secrets.randbelow(9_000) * 1_000
FAILS_404, FAILS_410, SLOW = 404, 410, 777


def run_book(offset: int, suffix: str = "") -> str:
    return book(f"{RUN_BASE + offset}{suffix}")


def run_path(offset: int) -> str:
    return f"/book/show/{RUN_BASE + offset}"


# =============================================================================================
# Unit tests: no server
# =============================================================================================

# ---- reading URLs ---------------------------------------------------------------------------


class FakeStdin(io.StringIO):
    def __init__(self, text: str, tty: bool = False):
        super().__init__(text)
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_lines_skip_blanks_and_comments_but_keep_fragments():
    text = "\n# a comment\n  https://a.example/x  \n\n   # indented comment\nhttps://b.example/y#part\n"
    assert parse_lines(text.splitlines()) == ["https://a.example/x", "https://b.example/y#part"]


def test_urls_from_arguments_then_a_file(tmp_path):
    listing = tmp_path / "urls.txt"
    listing.write_text("\ufeff# saved with a BOM\nhttps://c.example/\n\nhttps://d.example/\n", encoding="utf-8")
    urls = gather_urls(["https://a.example/", "https://b.example/"], str(listing), FakeStdin(""))
    assert urls == ["https://a.example/", "https://b.example/", "https://c.example/", "https://d.example/"]


def test_urls_from_stdin_with_dash_or_when_piped():
    assert gather_urls([], "-", FakeStdin("# list\nhttps://a.example/\n\n")) == ["https://a.example/"]
    assert gather_urls([], None, FakeStdin("https://b.example/\n")) == ["https://b.example/"]


def test_a_terminal_is_not_read_and_no_urls_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no URLs"):
        gather_urls([], None, FakeStdin("https://never.read/\n", tty=True))
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(UsageError, match="no URLs"):
        gather_urls([], str(tmp_path / "empty.txt"), FakeStdin(""))
    with pytest.raises(UsageError, match="cannot read"):
        gather_urls([], str(tmp_path / "missing.txt"), FakeStdin(""))


BOOK_RECORD = {
    "url": book(1), "kind": "goodreads_book", "status": "done", "fetched_at": "2026-01-01T00:00:00+00:00",
    "parser_version": "1", "error": None,
    "data": {"kind": "goodreads_book", "title": "T", "authors": ["A", "B"], "rating": 4.1,
             "series": {"name": "S", "number": 1}, "url": book(1)},
}
FAILED_RECORD = {
    "url": book(404), "kind": "goodreads_book", "status": "failed", "fetched_at": "2026-01-01T00:00:00+00:00",
    "data": None, "error": {"code": "http_status", "message": "404 Not Found"},
}


# ---- the HTTP client, against a fake session ------------------------------------------------


class FakeResponse:
    def __init__(self, status: int, body: object, reason: str = ""):
        self.status_code, self.body, self.reason, self.url = status, body, reason, "http://fake/"

    def json(self) -> object:
        if isinstance(self.body, str):
            raise ValueError("not JSON")
        return self.body


class FakeParseSession:
    """POST /parse as the service answers it, with a per-request limit; records each chunk's size."""

    def __init__(self, limit: int, too_large: bool = False):
        self.limit, self.too_large = limit, too_large
        self.sizes: list[int] = []
        self.headers: dict[str, str] = {}

    def request(self, method: str, url: str, json: dict, **kwargs) -> FakeResponse:
        urls = json["urls"]
        self.sizes.append(len(urls))
        if self.too_large or len(urls) > self.limit:
            code = "body_too_large" if self.too_large else "too_many_urls"
            return FakeResponse(413, {"error": {"code": code, "message": f"{len(urls)} URLs sent"}})
        accepted = [{"url": u, "canonical_url": u, "status": "queued"} for u in urls if "bad" not in u]
        rejected = [{"url": u, "reason": "unsupported"} for u in urls if "bad" in u]
        body = {"batch_id": uuid.uuid4().hex if accepted else None, "accepted": accepted, "rejected": rejected}
        return FakeResponse(202 if accepted else 400, body)


def test_a_413_halves_the_chunk_until_the_server_takes_it():
    session = FakeParseSession(limit=3)
    urls = [f"https://u.example/{n}" for n in range(20)]
    result = ServiceClient("http://fake", session=session).submit(urls)
    assert [item["url"] for item in result.accepted] == urls  # every URL once, in order
    assert session.sizes[:4] == [20, 10, 5, 2]  # 500 covers all 20; halved until under the limit
    assert all(size <= 3 for size in session.sizes[4:]) and len(result.batch_ids) == len(session.sizes) - 3
    assert {item["batch_id"] for item in result.accepted} == set(result.batch_ids)


def test_a_chunk_with_nothing_accepted_is_an_answer_not_an_error():
    session = FakeParseSession(limit=2)
    result = ServiceClient("http://fake", session=session).submit(["https://bad/1", "https://bad/2", "https://ok/3"])
    assert [item["url"] for item in result.rejected] == ["https://bad/1", "https://bad/2"]
    assert [item["url"] for item in result.accepted] == ["https://ok/3"] and len(result.batch_ids) == 1


def test_a_413_at_one_url_is_reported():
    with pytest.raises(ServiceError) as caught:
        ServiceClient("http://fake", session=FakeParseSession(limit=10, too_large=True)).submit(["https://u/1"] * 4)
    assert caught.value.status == 413 and caught.value.code == "body_too_large"


def test_error_answers_carry_the_servers_message():
    class Session(FakeParseSession):
        def request(self, method, url, **kwargs):
            return self.answer

    session = Session(limit=1)
    client = ServiceClient("http://fake/", session=session)
    session.answer = FakeResponse(503, {"error": {"code": "redis_unavailable", "message": "storage is unavailable"}})
    with pytest.raises(ServiceError, match=r"storage is unavailable \(redis_unavailable, HTTP 503\)"):
        client.batch("x")
    session.answer = FakeResponse(502, "<html>bad gateway</html>", "Bad Gateway")
    with pytest.raises(ServiceError, match="the server answered 502 Bad Gateway"):
        client.batch("x")
    session.answer = FakeResponse(200, "<html>a web page</html>", "OK")
    with pytest.raises(ServiceError, match="did not answer JSON"):
        client.batch("x")


def test_a_closed_port_is_unreachable_in_plain_words():
    with pytest.raises(Unreachable, match="cannot reach the server at http://127.0.0.1:.*: connection refused"):
        ServiceClient(f"http://127.0.0.1:{free_port()}").batch("x")


def test_token_goes_in_the_authorization_header():
    assert ServiceClient("http://x", token="t0k").session.headers["Authorization"] == "Bearer t0k"
    assert "Authorization" not in ServiceClient("http://x").session.headers


# ---- waiting, with a fake client and clock --------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeWaitClient:
    """Batches whose items change per poll; /info answers from `records`."""

    def __init__(self, polls: list[list[dict]], records: dict[str, tuple[int, dict]]):
        self.polls, self.records, self.batch_calls = polls, records, 0

    def batch(self, batch_id: str) -> dict:
        self.batch_calls += 1
        return {"items": self.polls[min(self.batch_calls, len(self.polls)) - 1]}

    def info(self, url: str) -> tuple[int, dict]:
        return self.records[url]


def accepted(url: str, status: str = "queued") -> dict:
    return {"url": url, "canonical_url": url, "status": status, "batch_id": "b1"}


def item(url: str, status: str, **extra) -> dict:
    return {"url": url, "canonical_url": url, "status": status, "error": None, **extra}


def test_waiting_counts_cached_at_once_and_confirms_finished_urls():
    submission = Submission(["b1"], [accepted("a", "cached"), accepted("b"), accepted("b"), accepted("c")], [])
    polls = [[item("a", "done"), item("b", "queued"), item("c", "started")],
             [item("a", "done"), item("b", "done"), item("c", "failed")]]
    records = {"b": (200, {"status": "done"}), "c": (200, {"status": "failed", "error": {"code": "http_status"}})}
    advanced: list[int] = []
    clock = FakeClock()
    outcomes = Waiter(FakeWaitClient(polls, records), submission, advanced.append, None, clock, clock.sleep).run()
    assert advanced == [1, 2, 1]  # the cached one, then two spellings of b, then c
    items = final_items(submission, outcomes)
    assert [i["status"] for i in items] == ["cached", "done", "done", "failed"]
    assert count(items, [{"url": "x", "reason": "r"}]) == {"done": 2, "failed": 1, "cached": 1, "rejected": 1}


def test_a_refresh_in_flight_is_not_finished_and_the_timeout_leaves_it_pending():
    submission = Submission(["b1"], [accepted("a")], [])
    client = FakeWaitClient([[item("a", "done")]], {"a": (200, {"status": "done", "refresh": "started"})})
    clock = FakeClock()
    outcomes = Waiter(client, submission, lambda n: None, 5, clock, clock.sleep).run()
    assert outcomes == {} and 5 <= clock.now < 6 and client.batch_calls > 2
    items = final_items(submission, outcomes)
    assert items[0]["status"] == "pending" and summary_exit_code(count(items, [])) == ExitCode.IN_FLIGHT


def test_a_batch_that_flags_refreshing_is_trusted_without_info():
    submission = Submission(["b1"], [accepted("a")], [])
    polls = [[item("a", "done", refreshing=True)], [item("a", "failed", refreshing=False, error={"code": "x"})]]
    clock = FakeClock()
    outcomes = Waiter(FakeWaitClient(polls, {}), submission, lambda n: None, None, clock, clock.sleep).run()
    assert outcomes == {"a": Outcome("failed", {"code": "x"})}


def test_summary_exit_codes():
    assert summary_exit_code({"done": 2, "failed": 0, "cached": 1, "rejected": 0}) == ExitCode.OK
    assert summary_exit_code({"done": 2, "failed": 1, "cached": 0, "rejected": 0}) == ExitCode.SOME_FAILED
    assert summary_exit_code({"done": 2, "failed": 0, "cached": 0, "rejected": 1}) == ExitCode.SOME_FAILED
    assert summary_exit_code({"done": 0, "failed": 1, "cached": 0, "rejected": 0, "pending": 1}) == ExitCode.IN_FLIGHT


# ---- output ---------------------------------------------------------------------------------


def test_human_summaries_of_done_records():
    text = output.record_summary(BOOK_RECORD)
    assert text.splitlines()[0] == "T" and "by A, B" in text and "rated 4.1" in text
    news = {"url": "https://www.bbc.com/", "status": "done", "kind": "news_headlines", "data": {
        "kind": "news_headlines", "site": "www.bbc.com",
        "headlines": [{"title": f"Story {n}", "url": f"https://www.bbc.com/news/{n}"} for n in range(12)]}}
    assert "www.bbc.com: 12 headlines" in output.record_summary(news) and "and 2 more" in output.record_summary(news)
    page = {"url": "https://x.example/", "status": "done", "kind": "page",
            "data": {"kind": "page", "title": "Hello", "site_name": "X", "word_count": 42}}
    assert output.record_summary(page).startswith("Hello\nX\n42 words")
    assert output.record_summary(FAILED_RECORD) is None  # shown as JSON instead


def test_summary_lists_failures_and_rejections_with_reasons():
    out = io.StringIO()
    items = [dict(accepted("a"), status="done", error=None),
             dict(accepted("b"), status="failed", error={"code": "http_status", "message": "404 Not Found"})]
    output.print_summary(items, [{"url": "ftp://x", "reason": "only http"}], count(items, [{}]), out)
    assert out.getvalue().splitlines() == [
        "failed    b  http_status: 404 Not Found", "rejected  ftp://x  only http",
        "done 1, failed 1, cached 0, rejected 1"]


# ---- the command line, in process -----------------------------------------------------------


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    help_text = capsys.readouterr().out
    for code in ("0", "1", "2", "3", "4", "5"):
        assert f"\n  {code} " in help_text


COMMAND_LINES = [["get", "https://a.example/"], ["submit", "https://a.example/"], ["export"]]


@pytest.mark.parametrize("command", COMMAND_LINES, ids=[line[0] for line in COMMAND_LINES])
def test_server_and_token_come_from_the_option_else_the_environment_else_the_default(command, monkeypatch):
    monkeypatch.delenv("METAPARSE_URL", raising=False)
    monkeypatch.delenv("METAPARSE_TOKEN", raising=False)
    assert server_and_token(command) == ("http://127.0.0.1:8000", None)
    monkeypatch.setenv("METAPARSE_URL", "http://env.example:9000")
    monkeypatch.setenv("METAPARSE_TOKEN", "from-env")
    assert server_and_token(command) == ("http://env.example:9000", "from-env")
    options = ["--server", "http://option.example", "--token", "from-option"]
    assert server_and_token(options + command) == ("http://option.example", "from-option")
    assert server_and_token(command + options) == ("http://option.example", "from-option")


def server_and_token(argv: list[str]) -> tuple[str, str | None]:
    args = build_parser().parse_args(argv)  # built anew: the defaults are read from the environment then
    return args.server, args.token


@pytest.mark.parametrize("argv", [
    [], ["get"], ["export", "--format", "xml"], ["--server", "localhost:8000", "get", "https://a/"],
    ["submit", "--timeout", "0", "https://a/"], ["submit", "--timeout", "5", "https://a/"],  # 2nd: no --wait
])
def test_bad_command_lines_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and "usage:" in capsys.readouterr().err


def test_an_unreachable_server_exits_5_with_a_message(capsys):
    code = main(["get", "https://www.goodreads.com/book/show/1", "--server", f"http://127.0.0.1:{free_port()}"])
    err = capsys.readouterr().err
    assert code == ExitCode.SERVER and "cannot reach the server" in err and "Traceback" not in err


# =============================================================================================
# End to end: the CLI as a subprocess against real gunicorn + worker processes
# =============================================================================================


def slow_book(handler) -> None:
    time.sleep(SLOW_SECONDS)  # long enough for a 202 and a --wait timeout, well under the fetch deadline
    send_reply(handler, Reply(body=FIXTURE_BOOK.read_bytes()))


@pytest.fixture(scope="module")
def site():
    server = FixtureServer(["www.goodreads.com"]).start()
    for offset in range(1, 40):
        server.routes[run_path(offset)] = Reply(body=FIXTURE_BOOK.read_bytes())
    server.routes[run_path(FAILS_404)] = Reply(404, b"<html>not here</html>")
    server.routes[run_path(FAILS_410)] = Reply(410, b"<html>gone</html>")
    server.routes[run_path(SLOW)] = slow_book
    yield server
    server.stop()


@dataclass
class Service:
    base: str
    cli_env: dict[str, str]  # what the CLI runs with: server URL and token from the environment


@pytest.fixture(scope="module")
def service(site, module_redis_url, tmp_path_factory):
    """gunicorn + `python -m jobs.worker` as the Procfile runs them, with a token and a low URL limit."""
    logs = tmp_path_factory.mktemp("cli")
    env = processes.service_env(
        REDIS_URL=module_redis_url, FETCH_RETRIES="0",
        API_TOKENS=TOKEN, MAX_URLS_PER_REQUEST=str(SERVER_LIMIT),
        DATA_DIR=str(logs / "data"),  # its own: files under ./var are shared by every service started there
        **site.fetch_env(logs, "www.goodreads.com"),
    )
    service = processes.start_service(env, logs, name="CLI", on_web_ready=assert_service_is_ours)
    yield Service(service.base, cli_env(METAPARSE_URL=service.base, METAPARSE_TOKEN=TOKEN))
    service.stop()


def assert_service_is_ours(base: str) -> None:
    """free_port() can race with another session's service: only ours takes this run's token."""
    def probe(token: str) -> int:  # an empty list: 400 once the token passes, 401 before
        headers = {"Authorization": f"Bearer {token}"}
        return requests.post(f"{base}/parse", json={"urls": []}, headers=headers, timeout=5).status_code

    assert (probe(TOKEN), probe("not-" + TOKEN)) == (400, 401), f"another service answers at {base}"


def cli_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in processes.service_env().items() if not k.startswith("METAPARSE_")}
    return {**env, **overrides}


@pytest.fixture(scope="module")
def metaparse_bin() -> Path:
    script = processes.VENV_BIN / "metaparse"
    if not script.exists():
        pytest.skip("no .venv/bin/metaparse: `make test` installs it (pip install --no-deps --editable .)")
    return script


def run(env: dict[str, str], *args: str, stdin: str | None = None, script: Path | None = None):
    """The CLI as a subprocess: the console script when given, else `python -m cli`."""
    command = [str(script)] if script else [sys.executable, "-m", "cli"]
    return subprocess.run(command + list(args), input=stdin, env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)


def json_out(result: subprocess.CompletedProcess) -> dict:
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


@pytest.mark.e2e
def test_submit_wait_from_arguments_all_done(service, metaparse_bin):
    mobile = "https://m.goodreads.com" + run_path(1) + "-the-lighthouse?utm_source=x"  # the same book as run_book(1)
    urls = [run_book(1), mobile, run_book(2, "-another")]
    result = run(service.cli_env, "submit", *urls, "--wait", "--json", script=metaparse_bin)
    answer = json_out(result)
    assert result.returncode == 0, result.stderr
    assert answer["counts"] == {"done": 3, "failed": 0, "cached": 0, "rejected": 0}
    assert [item["url"] for item in answer["accepted"]] == urls and len(answer["batch_ids"]) == 1
    assert {item["status"] for item in answer["accepted"]} == {"done"}
    assert "3/3" in result.stderr  # the progress bar, on stderr so stdout stays JSON


@pytest.mark.e2e
def test_submit_wait_from_stdin_reports_failures_and_rejections(service):
    listing = (f"# books to parse\n{run_book(3)}\n\n{run_book(FAILS_404)}\nhttps://example.com/page\n   \n"
               f"ftp://www.goodreads.com/book/show/5\n")
    result = run(service.cli_env, "submit", "--file", "-", "--wait", stdin=listing)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "done 1, failed 1, cached 0, rejected 2"
    assert any(line.startswith(f"failed    {run_book(FAILS_404)}  http_status") for line in lines), result.stdout
    rejected = [line for line in lines if line.startswith("rejected")]
    assert len(rejected) == 2 and all(len(line.split(None, 2)) == 3 for line in rejected)  # each with a reason


@pytest.mark.e2e
def test_piped_stdin_without_file_and_chunks_over_the_server_limit(service):
    urls = [run_book(n) for n in range(24, 30)]  # 6 URLs, the server takes 3 a request: 6 -> 413 -> 3 + 3
    result = run(service.cli_env, "submit", "--wait", "--json", "--quiet", stdin="\n".join(urls) + "\n")
    answer = json_out(result)
    assert result.returncode == 0, result.stderr
    assert answer["counts"]["done"] == 6 and len(answer["batch_ids"]) == 2
    assert result.stderr == ""  # --quiet: no progress bar


@pytest.mark.e2e
def test_submit_without_wait_then_again_is_cached_and_a_rejection_exits_1(service):
    first = run(service.cli_env, "submit", run_book(10), "--wait")
    assert first.returncode == 0 and first.stdout.splitlines()[-1] == "done 1, failed 0, cached 0, rejected 0"
    again = run(service.cli_env, "submit", run_book(10))
    assert again.returncode == 0 and f"accepted  {run_book(10)}  (cached)" in again.stdout
    waited = run(service.cli_env, "submit", run_book(10), "--wait")
    assert waited.stdout.splitlines()[-1] == "done 0, failed 0, cached 1, rejected 0"
    refused = run(service.cli_env, "submit", run_book(10), "ftp://www.goodreads.com/book/show/5")
    assert refused.returncode == 1 and refused.stdout.splitlines()[-1] == "1 accepted, 1 rejected"


@pytest.mark.e2e
def test_refresh_waits_for_the_new_fetch_not_the_stored_record(service, site):
    assert run(service.cli_env, "submit", run_book(11), "--wait").returncode == 0
    before = json_out(run(service.cli_env, "get", run_book(11), "--json"))["fetched_at"]
    hits = site.hits[run_path(11)]
    result = run(service.cli_env, "submit", run_book(11), "--refresh", "--wait", "--json")
    assert json_out(result)["counts"]["done"] == 1 and site.hits[run_path(11)] == hits + 1
    assert json_out(run(service.cli_env, "get", run_book(11), "--json"))["fetched_at"] > before


@pytest.mark.e2e
def test_get_done_failed_and_unknown(service, metaparse_bin):
    assert run(service.cli_env, "submit", run_book(12), run_book(FAILS_410), "--wait").returncode == 1
    done = run(service.cli_env, "get", "https://m.goodreads.com" + run_path(12), script=metaparse_bin)
    assert done.returncode == 0 and done.stdout.splitlines()[:2] == [BOOK_TITLE, "by Imaginary Author"]
    record = json_out(run(service.cli_env, "get", run_book(12), "--json"))
    assert record["status"] == "done" and record["data"]["title"] == BOOK_TITLE
    failed = run(service.cli_env, "get", run_book(FAILS_410))
    assert failed.returncode == 1 and json_out(failed)["error"]["code"] == "http_status"
    unknown = run(service.cli_env, "get", run_book(31), script=metaparse_bin)
    assert unknown.returncode == 4 and "not found" in unknown.stderr and unknown.stdout == ""


@pytest.mark.e2e
def test_in_flight_get_exits_3_and_wait_times_out_with_3(service):
    slow = run_book(SLOW)
    assert run(service.cli_env, "submit", slow, "--quiet").returncode == 0
    in_flight = run(service.cli_env, "get", slow)
    assert in_flight.returncode == 3 and "not parsed yet" in in_flight.stdout
    started = time.monotonic()
    waited = run(service.cli_env, "submit", slow, "--wait", "--timeout", "1", "--json")
    assert waited.returncode == 3 and json_out(waited)["counts"]["pending"] == 1
    assert time.monotonic() - started < SLOW_SECONDS
    # Let the slow fetch end here, so no job is mid-flight when the fixture stops the worker.
    finished = run(service.cli_env, "--quiet", "submit", slow, "--wait", "--timeout", "60")
    assert finished.returncode == 0 and finished.stdout.splitlines()[-1].startswith("done 1,")


@pytest.mark.e2e
def test_export_jsonl_and_csv(service, tmp_path):
    urls = [run_book(20), run_book(21), run_book(FAILS_404)]
    batch_id = json_out(run(service.cli_env, "submit", *urls, "--wait", "--json"))["batch_ids"][0]
    jsonl = run(service.cli_env, "export", "--batch", batch_id)
    assert jsonl.returncode == 0, jsonl.stderr
    records = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert sorted(r["url"] for r in records) == sorted(urls)
    assert [r["fetched_at"] for r in records] == sorted((r["fetched_at"] for r in records), reverse=True)
    # To stdout the format is JSON Lines unless --format says otherwise.
    as_csv = run(service.cli_env, "--quiet", "export", "--batch", batch_id, "--format", "csv")
    assert sorted(row["url"] for row in csv.DictReader(io.StringIO(as_csv.stdout))) == sorted(urls)
    csv_path = tmp_path / "all.csv"
    every = run(service.cli_env, "--quiet", "export", "--output", str(csv_path))
    assert every.returncode == 0 and every.stdout == "" and every.stderr == ""
    rows = list(csv.DictReader(csv_path.open(newline="", encoding="utf-8")))
    by_url = {row["url"]: row for row in rows}
    assert len(by_url) == len(rows) and set(urls) <= set(by_url)
    assert by_url[urls[0]]["title"] == BOOK_TITLE and by_url[urls[0]]["authors"] == "Imaginary Author"
    assert by_url[urls[2]]["status"] == "failed" and by_url[urls[2]]["error"].startswith("http_status")
    assert list(rows[0])[:4] == ["url", "kind", "status", "fetched_at"]
    assert list(tmp_path.iterdir()) == [csv_path]  # renamed into place: no partial file left
    books = run(service.cli_env, "--quiet", "export", "--batch", batch_id, "--format", "csv", "--kind", "book")
    assert "headline_url" not in books.stdout.splitlines()[0] and books.stdout.count(BOOK_TITLE) == 2


@pytest.mark.e2e
def test_export_filters_by_kind_and_since_and_a_bad_since_is_a_usage_error(service, tmp_path):
    assert run(service.cli_env, "submit", run_book(22), "--wait").returncode == 0
    fetched = json_out(run(service.cli_env, "get", run_book(22), "--json"))["fetched_at"]
    recent = run(service.cli_env, "export", "--since", fetched, "--kind", "book", "--format", "jsonl")
    assert recent.returncode == 0 and run_book(22) in recent.stdout and "exported" in recent.stderr
    assert run(service.cli_env, "export", "--kind", "news").stdout == ""  # this service has no news records
    target = tmp_path / "out.jsonl"
    refused = run(service.cli_env, "export", "--since", "yesterday", "--output", str(target))
    assert refused.returncode == 2 and "since must be an ISO 8601 time" in refused.stderr
    assert not target.exists() and list(tmp_path.iterdir()) == []  # no partial file either


@pytest.mark.e2e
def test_export_of_an_unknown_batch_exits_4(service):
    result = run(service.cli_env, "export", "--batch", uuid.uuid4().hex, "--format", "csv")
    assert result.returncode == 4 and "no batch" in result.stderr and result.stdout == ""


@pytest.mark.e2e
def test_server_and_token_from_options_and_a_missing_token(service):
    no_token = cli_env(METAPARSE_URL=f"http://127.0.0.1:{free_port()}")  # nothing there: --server must win
    refused = run(no_token, "--server", service.base, "submit", run_book(13))
    assert refused.returncode == 5 and "send Authorization: Bearer" in refused.stderr
    assert "--token" in refused.stderr and "Traceback" not in refused.stderr
    accepted = run(no_token, "submit", run_book(13), "--server", service.base, "--token", TOKEN, "--quiet")
    assert accepted.returncode == 0, accepted.stderr


def test_unreachable_server_as_a_subprocess():
    env = cli_env(METAPARSE_URL=f"http://127.0.0.1:{free_port()}")
    result = run(env, "submit", run_book(1), "--wait")
    assert result.returncode == 5 and "cannot reach the server" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
