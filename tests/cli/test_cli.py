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

from cli import output, records
from cli.client import ServiceClient, ServiceError, Submission, Unreachable
from cli.commands import summary_exit_code
from cli.exits import ExitCode, UsageError
from cli.main import build_parser, main
from cli.urls import gather_urls, parse_lines
from cli.results import count, url_results
from cli.waiting import Outcome, Waiter
from config import PROJECT_ROOT
from launch import free_port
from tests.support import processes
from tests.support.fixture_server import FixtureServer, Reply, send_reply

FIXTURE_BOOK = Path(__file__).parents[1] / "fixtures" / "e2e" / "goodreads-book.html"
BOOK_TITLE = "The Lighthouse Keeper's Almanac"
TOKEN = f"cli-{uuid.uuid4().hex}"  # per run: see assert_service_is_ours
SERVER_LIMIT = 3  # MAX_URLS_PER_REQUEST of the test service: more URLs must be sent in chunks
SLOW_SECONDS = 5


def book(book_id: int | str) -> str:
    return f"https://www.goodreads.com/book/show/{book_id}"


# Book ids of this run: sessions running side by side never share a record even if they
# end up sharing a Redis (free_port() can race). Offsets 404, 410 and 500 fail, 777 is slow.
RUN_BASE = 1_000_000 + secrets.randbelow(9_000) * 1_000
FAILS_404, FAILS_410, FAILS_500, SLOW = 404, 410, 500, 777
# A news front page and a generic page of this run (the service allows any site).
NEWS_HOST, PAGE_HOST = "www.bbc.com", "pages.example.org"
NEWS_FRONT = f"https://{NEWS_HOST}/news/cli-" + "".join(chr(ord("a") + int(d)) for d in str(RUN_BASE))
PAGE_PATH = f"/cli/{RUN_BASE}/cafe"
FIXTURE_NEWS = Path(__file__).parents[1] / "fixtures" / "news" / "bbc-next-2023.html"  # 5 headlines, 1 sub-link
PAGE_TITLE = "Καφέ «Ποσειδών» — 東京の夜"
GREEK_PAGE = f"""<!doctype html><html lang="el"><head><meta charset="utf-8"><title>x</title>
<meta property="og:title" content="{PAGE_TITLE}"><meta property="og:site_name" content="Τα Νέα">
<meta property="og:type" content="article"><meta name="author" content="Ελένη Παππά">
<meta name="description" content="Μια ιστορία για τον καφέ."></head>
<body><article><p>Ένα δύο τρία τέσσερα πέντε.</p></article></body></html>""".encode()


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
    submission = Submission(["b1"], [accepted("a", "cached"), accepted("b"), accepted("b"), accepted("c")], [],
                            sent=["a", "b", "b", "c"])
    polls = [[item("a", "done"), item("b", "queued"), item("c", "started")],
             [item("a", "done"), item("b", "done"), item("c", "failed")]]
    records = {"b": (200, {"status": "done"}), "c": (200, {"status": "failed", "error": {"code": "http_status"}})}
    advanced: list[int] = []
    clock = FakeClock()
    outcomes = Waiter(FakeWaitClient(polls, records), submission, advanced.append, None, clock, clock.sleep).run()
    assert advanced == [1, 2, 1]  # the cached one, then two spellings of b, then c
    results = url_results(submission, outcomes)
    assert [(r.url, r.status, r.from_cache, r.times_given) for r in results] == [
        ("a", "done", True, 1), ("b", "done", False, 2), ("c", "failed", False, 1)]
    assert count(results) == {"done": 2, "from_cache": 1, "failed": 1, "rejected": 0, "pending": 0}


def test_a_refresh_in_flight_is_not_finished_and_the_timeout_leaves_it_pending():
    submission = Submission(["b1"], [accepted("a")], [], sent=["a"])
    client = FakeWaitClient([[item("a", "done")]], {"a": (200, {"status": "done", "refresh": "started"})})
    clock = FakeClock()
    outcomes = Waiter(client, submission, lambda n: None, 5, clock, clock.sleep).run()
    assert outcomes == {"a": Outcome("pending", last_seen="refreshing (started)")}
    assert 5 <= clock.now < 6 and client.batch_calls > 2
    results = url_results(submission, outcomes)
    assert results[0].status == "pending" and summary_exit_code(count(results)) == ExitCode.IN_FLIGHT


def test_a_timeout_names_the_last_state_the_batch_showed():
    submission = Submission(["b1"], [accepted("a"), accepted("b")], [], sent=["a", "b"])
    polls = [[item("a", "queued"), item("b", "queued")], [item("a", "started", step="fetching"), item("b", "queued")]]
    clock = FakeClock()
    outcomes = Waiter(FakeWaitClient(polls, {}), submission, lambda n: None, 1, clock, clock.sleep).run()
    assert outcomes == {"a": Outcome("pending", last_seen="started (fetching)"),
                        "b": Outcome("pending", last_seen="queued")}


def test_a_batch_that_flags_refreshing_is_trusted_without_info():
    submission = Submission(["b1"], [accepted("a")], [])
    polls = [[item("a", "done", refreshing=True)], [item("a", "failed", refreshing=False, error={"code": "x"})]]
    clock = FakeClock()
    outcomes = Waiter(FakeWaitClient(polls, {}), submission, lambda n: None, None, clock, clock.sleep).run()
    assert outcomes == {"a": Outcome("failed", {"code": "x"})}


def test_summary_exit_codes():
    counts = {"done": 2, "from_cache": 1, "failed": 0, "rejected": 0, "pending": 0}
    assert summary_exit_code(counts) == ExitCode.OK
    assert summary_exit_code({**counts, "failed": 1}) == ExitCode.SOME_FAILED
    assert summary_exit_code({**counts, "rejected": 1}) == ExitCode.SOME_FAILED
    assert summary_exit_code({**counts, "failed": 1, "pending": 1}) == ExitCode.IN_FLIGHT


# ---- each URL's final state, in input order -------------------------------------------------


def spelled(url: str, canonical: str, status: str = "queued", batch_id: str = "b1") -> dict:
    return {"url": url, "canonical_url": canonical, "status": status, "batch_id": batch_id, "job_id": "j-" + canonical}


def test_results_keep_input_order_across_accepted_rejected_and_chunks():
    # Two chunks (b1, b2): each answer lists accepted and rejected apart, each in input order.
    sent = ["ftp://x", "a", "not a url", "a?utm_source=z", "c", "b", "ftp://x"]
    submission = Submission(
        ["b1", "b2"],
        [spelled("a", "A"), spelled("a?utm_source=z", "A"), spelled("c", "C", "cached", "b2"),
         spelled("b", "B", batch_id="b2")],
        [{"url": "ftp://x", "reason": "no ftp"}, {"url": "not a url", "reason": "spaces"},
         {"url": "ftp://x", "reason": "no ftp"}],
        sent=sent)
    outcomes = {"A": Outcome("failed", {"code": "http_status", "message": "500 Internal Server Error"}),
                "B": Outcome("pending", last_seen="queued")}
    results = url_results(submission, outcomes)
    assert [r.url for r in results] == ["ftp://x", "a", "not a url", "a?utm_source=z", "c", "b"]
    assert [r.status for r in results] == ["rejected", "failed", "rejected", "failed", "done", "pending"]
    assert results[0].times_given == 2 and results[0].reason == "no ftp"
    assert results[3].same_page_as == "a" and results[1].same_page_as is None
    assert results[4].from_cache and results[4].batch_id == "b2"
    assert count(results) == {"done": 1, "from_cache": 1, "failed": 2, "rejected": 2, "pending": 1}
    out = io.StringIO()
    output.print_results(results, count(results), out)
    assert out.getvalue().splitlines() == [
        "rejected  ftp://x  no ftp; given 2 times",
        "failed    a  http_status: 500 Internal Server Error",
        "rejected  not a url  spaces",
        "failed    a?utm_source=z  http_status: 500 Internal Server Error; same page as a",
        "done      c  from cache",
        "pending   b  still in flight: queued",
        "1 done (1 from cache), 2 failed, 2 rejected, 1 still in flight",
    ]


def test_an_answer_the_server_spelled_otherwise_is_kept_at_the_end():
    submission = Submission(["b1"], [spelled("A", "A"), spelled("b", "B")], [], sent=["a", "b"])
    assert [r.url for r in url_results(submission, {})] == ["b", "A"]


def test_summary_line_counts_cached_pages_as_done():
    counts = {"done": 3, "from_cache": 2, "failed": 1, "rejected": 1, "pending": 0}
    assert output.summary_line(counts) == "3 done (2 from cache), 1 failed, 1 rejected"
    assert output.summary_line({**counts, "from_cache": 0}) == "3 done, 1 failed, 1 rejected"


# ---- get: each answer as text ---------------------------------------------------------------


NEWS_RECORD = {"url": "https://www.bbc.com/news", "status": "done", "kind": "news_headlines",
               "fetched_at": "2026-01-01T00:00:00+00:00", "data": {
                   "kind": "news_headlines", "site": "bbc.com", "headlines": [
                       {"title": "Lead story", "url": "https://www.bbc.com/news/1", "kicker": "LIVE", "position": 1,
                        "sublink": False},
                       {"title": "Its follow-up", "url": "https://www.bbc.com/news/2", "position": 2, "sublink": True},
                       *({"title": f"Story {n}", "url": f"https://www.bbc.com/news/{n}", "position": n,
                          "sublink": False} for n in range(3, 13))]}}


def test_a_done_book_reads_as_title_author_and_facts():
    text = records.answer_text(200, {**BOOK_RECORD, "data": {**BOOK_RECORD["data"],
                                                            "series": {"name": "S", "position": "2"}}})
    lines = text.splitlines()
    assert lines[:4] == ["T", "by A, B", "series: S #2", "rated 4.1"]
    assert lines[-1] == f"{book(1)}  (fetched 2026-01-01T00:00:00+00:00)"


def test_every_headline_is_listed_with_position_kicker_title_and_url_and_sub_links_indented():
    lines = records.answer_text(200, NEWS_RECORD).splitlines()
    assert lines[0] == "bbc.com: 12 headlines (1 sub-link)"
    assert lines[1] == "    1. [LIVE] Lead story  https://www.bbc.com/news/1"
    assert lines[2] == "       2. Its follow-up  https://www.bbc.com/news/2"
    assert lines[12] == "   12. Story 12  https://www.bbc.com/news/12"  # all of them: no "... and 2 more"
    assert lines[13].startswith("https://www.bbc.com/news  (fetched ")


def test_a_generic_page_reads_as_title_byline_description():
    page = {"url": "https://x.example/", "status": "done", "kind": "page", "fetched_at": "t",
            "data": {"kind": "page", "title": "Hello", "site_name": "X", "author": "Ann", "word_count": 42,
                     "type": "article", "language": "en", "description": "d" * 300}}
    lines = records.answer_text(200, page).splitlines()
    assert lines[:2] == ["Hello", "X · Ann"] and lines[2] == "d" * 199 + "…"
    assert lines[3] == "42 words · article · en"


def test_a_failed_record_reads_as_its_error_not_json():
    assert records.answer_text(200, FAILED_RECORD).splitlines() == [
        f"failed: {book(404)}", "  http_status: 404 Not Found", "  fetched 2026-01-01T00:00:00+00:00"]


def test_in_flight_shows_step_schedule_attempts_and_last_error_when_the_service_gives_them():
    bare = {"url": book(7), "status": "queued", "step": None, "job_id": "j"}
    assert records.answer_text(202, bare) == f"queued: {book(7)} is not parsed yet\n"
    detailed = {**bare, "status": "started", "step": "fetching", "attempts": 2, "retries_left": 1,
                "last_error": {"code": "http_status", "message": "503 Service Unavailable"},
                "next_try_at": "2026-01-01T00:01:00+00:00",
                "waiting": {"host": "www.goodreads.com", "detail": "waiting for www.goodreads.com, next slot at T"}}
    assert records.answer_text(202, detailed).splitlines() == [
        f"started (fetching): {book(7)} is not parsed yet",
        "  waiting for www.goodreads.com, next slot at T",
        "  attempts: 2, retries left: 1",
        "  last error: http_status: 503 Service Unavailable",
        "  next try at: 2026-01-01T00:01:00+00:00"]


def test_page_text_cannot_break_lines_or_send_escape_sequences_and_any_script_is_kept():
    title = "Καφέ «Ποσειδών»\n\x1b]0;owned\x07 東京\t\x9b2J"
    news = {**NEWS_RECORD, "data": {**NEWS_RECORD["data"], "headlines": [
        {"title": title, "url": "https://www.bbc.com/news/1", "position": 1, "sublink": False}]}}
    line = records.answer_text(200, news).splitlines()[1]
    assert line == "    1. Καφέ «Ποσειδών» \ufffd]0;owned\ufffd 東京 \ufffd2J  https://www.bbc.com/news/1"


def test_a_kind_this_client_does_not_know_lists_its_fields():
    record = {"url": "https://x.example/", "status": "done", "kind": "podcast", "fetched_at": "t",
              "data": {"kind": "podcast", "title": "Ep. 1", "hosts": ["Ann"], "empty": None}}
    assert records.answer_text(200, record).splitlines()[:3] == ["kind: podcast", "title: Ep. 1", 'hosts: ["Ann"]']


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
    server = FixtureServer(["www.goodreads.com", NEWS_HOST, PAGE_HOST]).start()
    for offset in range(1, 40):
        server.routes[run_path(offset)] = Reply(body=FIXTURE_BOOK.read_bytes())
    server.routes[run_path(FAILS_404)] = Reply(404, b"<html>not here</html>")
    server.routes[run_path(FAILS_410)] = Reply(410, b"<html>gone</html>")
    server.routes[run_path(FAILS_500)] = Reply(500, b"<html>oops</html>")
    server.routes[NEWS_FRONT.split(NEWS_HOST, 1)[1]] = Reply(body=FIXTURE_NEWS.read_bytes())
    server.routes[PAGE_PATH] = Reply(body=GREEK_PAGE)
    server.routes[run_path(SLOW)] = slow_book
    yield server
    server.stop()


@dataclass
class Service:
    base: str
    cli_env: dict[str, str]  # what the CLI runs with: server URL and token from the environment


@pytest.fixture(scope="module")
def service(site, module_redis_url, tmp_path_factory):
    """gunicorn + `python -m jobs.worker` as the Procfile runs them, with a token, a low URL
    limit, and any site allowed (generic pages)."""
    logs = tmp_path_factory.mktemp("cli")
    env = processes.service_env(
        REDIS_URL=module_redis_url, FETCH_RETRIES="0", ALLOW_ANY_SITE="true",
        API_TOKENS=TOKEN, MAX_URLS_PER_REQUEST=str(SERVER_LIMIT),
        DATA_DIR=str(logs / "data"),  # its own: files under ./var are shared by every service started there
        **site.fetch_env(logs, "www.goodreads.com", NEWS_HOST, PAGE_HOST),
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
    assert answer["counts"] == {"done": 3, "from_cache": 0, "failed": 0, "rejected": 0, "pending": 0}
    assert [item["url"] for item in answer["urls"]] == urls and len(answer["batch_ids"]) == 1
    assert {item["status"] for item in answer["urls"]} == {"done"}
    assert [item["same_page_as"] for item in answer["urls"]] == [None, run_book(1), None]
    assert "3/3" in result.stderr  # the progress bar, on stderr so stdout stays JSON


@pytest.mark.e2e
def test_submit_wait_from_stdin_reports_failures_and_rejections(service):
    listing = (f"# books to parse\n{run_book(3)}\n\n{run_book(FAILS_404)}\nhttp://localhost/page\n   \n"
               f"ftp://www.goodreads.com/book/show/5\n")
    result = run(service.cli_env, "submit", "--file", "-", "--wait", stdin=listing)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "1 done, 1 failed, 2 rejected"
    assert lines[0] == f"done      {run_book(3)}"
    assert lines[1].startswith(f"failed    {run_book(FAILS_404)}  http_status"), result.stdout
    assert lines[2].startswith("rejected  http://localhost/page  host 'localhost'")
    assert lines[3].startswith("rejected  ftp:")


@pytest.mark.e2e
def test_submit_wait_lists_each_url_once_in_input_order_with_its_final_state(service):
    assert run(service.cli_env, "--quiet", "submit", run_book(14), "--wait").returncode == 0  # stored: cached next
    mobile = "https://m.goodreads.com" + run_path(15)
    urls = [run_book(14), run_book(15), run_book(FAILS_404), run_book(FAILS_500), "ftp://www.goodreads.com/book/show/5",
            run_book(15), mobile]  # 15 twice, then another spelling of it; 7 URLs over the 3-a-request limit
    result = run(service.cli_env, "submit", *urls, "--wait")
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        f"done      {run_book(14)}  from cache",
        f"done      {run_book(15)}  given 2 times",
        f"failed    {run_book(FAILS_404)}  http_status: HTTP 404 from {run_book(FAILS_404)}",
        f"failed    {run_book(FAILS_500)}  fetch_transient: HTTP 500 from {run_book(FAILS_500)}",
        "rejected  ftp://www.goodreads.com/book/show/5  scheme 'ftp' is not allowed; use http or https",
        f"done      {mobile}  same page as {run_book(15)}",
        "3 done (1 from cache), 2 failed, 1 rejected",
    ], result.stdout
    answer = json_out(run(service.cli_env, "submit", *urls, "--wait", "--json"))  # every one stored by now
    assert answer["counts"] == {"done": 3, "from_cache": 3, "failed": 2, "rejected": 1, "pending": 0}
    by_url = {item["url"]: item for item in answer["urls"]}
    assert list(by_url) == list(dict.fromkeys(urls)) and by_url[run_book(15)]["times_given"] == 2
    assert by_url[run_book(FAILS_500)]["error"]["code"] == "fetch_transient"
    assert by_url[urls[4]]["reason"].startswith("scheme 'ftp'") and by_url[urls[4]]["canonical_url"] is None


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
    assert first.returncode == 0 and first.stdout.splitlines()[-1] == "1 done, 0 failed, 0 rejected"
    again = run(service.cli_env, "submit", run_book(10))
    assert again.returncode == 0 and f"accepted  {run_book(10)}  (cached)" in again.stdout
    waited = run(service.cli_env, "submit", run_book(10), "--wait")
    assert waited.stdout.splitlines() == [f"done      {run_book(10)}  from cache",
                                          "1 done (1 from cache), 0 failed, 0 rejected"]
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
    assert failed.returncode == 1 and failed.stdout.splitlines()[:2] == [
        f"failed: {run_book(FAILS_410)}", f"  http_status: HTTP 410 from {run_book(FAILS_410)}"], failed.stdout
    assert json_out(run(service.cli_env, "get", run_book(FAILS_410), "--json"))["error"]["code"] == "http_status"
    unknown = run(service.cli_env, "get", run_book(31), script=metaparse_bin)
    assert unknown.returncode == 4 and "not found" in unknown.stderr and unknown.stdout == ""
    unknown_first = run(service.cli_env, "get", run_book(31), run_book(12))  # no blank line before the first block
    assert unknown_first.returncode == 4 and unknown_first.stdout.splitlines()[0] == BOOK_TITLE


@pytest.mark.e2e
def test_get_shows_a_news_front_a_generic_page_a_book_and_a_failure_readably(service):
    page = f"https://{PAGE_HOST}{PAGE_PATH}"
    urls = [NEWS_FRONT, page, run_book(16), run_book(FAILS_404)]
    assert run(service.cli_env, "--quiet", "submit", *urls, "--wait").returncode == 1
    shown = run(service.cli_env, "get", *urls)
    assert shown.returncode == 1 and shown.stderr == "", shown.stderr
    blocks = [block.splitlines() for block in shown.stdout.split("\n\n")]
    news, generic, book_lines, failure = blocks
    assert news[:4] == ["bbc.com: 5 headlines (1 sub-link)",
                        "    1. [LIVE] Flood waters begin to recede across northern valleys  "
                        "https://www.bbc.com/news/live/world-asia-70000001",
                        "       2. How the storm grew so fast  https://www.bbc.com/news/world-asia-70000002",
                        "    3. Court clears way for new highway toll  "
                        "https://www.bbc.com/news/world-us-canada-70000003"]
    assert news[4].startswith("    4. [WATCH] Watch: Puffins") and news[-1].startswith(f"{NEWS_FRONT}  (fetched ")
    assert generic[:4] == [PAGE_TITLE, "Τα Νέα · Ελένη Παππά", "Μια ιστορία για τον καφέ.", "5 words · article · el"]
    assert book_lines[:2] == [BOOK_TITLE, "by Imaginary Author"]
    assert failure == [f"failed: {run_book(FAILS_404)}", f"  http_status: HTTP 404 from {run_book(FAILS_404)}",
                       failure[2]] and failure[2].startswith("  fetched ")
    with_unknown = run(service.cli_env, "get", *urls, run_book(32), "--json")  # never submitted: exit 4 wins
    assert with_unknown.returncode == 4 and "not found" in with_unknown.stderr
    answers = [json.loads(line) for line in with_unknown.stdout.splitlines()]  # one JSON object a line
    assert [answer.get("status") for answer in answers] == ["done", "done", "done", "failed", None]
    assert answers[0]["data"]["headlines"][1]["sublink"] is True and answers[4]["error"]["code"] == "not_found"
    # A terminal that cannot show Greek gets escapes, not a traceback; the rest reads as before.
    ascii_only = run({**service.cli_env, "PYTHONIOENCODING": "ascii"}, "get", page)
    assert ascii_only.returncode == 0 and ascii_only.stdout.startswith("\\u039a\\u03b1\\u03c6"), ascii_only.stderr


@pytest.mark.e2e
def test_in_flight_get_exits_3_and_wait_times_out_with_3(service):
    # The done book first: while the slow fetch runs, the host has no slot for another.
    assert run(service.cli_env, "submit", run_book(4), "--wait", "--quiet").returncode == 0
    slow = run_book(SLOW)
    assert run(service.cli_env, "submit", slow, "--quiet").returncode == 0
    in_flight = run(service.cli_env, "get", run_book(4), slow)  # in flight outranks done
    assert in_flight.returncode == 3, in_flight.stdout
    slow_block = in_flight.stdout.split("\n\n")[1].splitlines()
    assert slow_block[0] in (f"queued: {slow} is not parsed yet", f"started (fetching): {slow} is not parsed yet")
    if slow_block[0].startswith("queued"):  # the service says what it waits for
        assert slow_block[1].startswith("  waiting for "), slow_block
    started = time.monotonic()
    waited = run(service.cli_env, "submit", slow, run_book(4), "--wait", "--timeout", "1")
    assert waited.returncode == 3 and waited.stdout.splitlines() == [
        f"pending   {slow}  still in flight: started (fetching)", f"done      {run_book(4)}  from cache",
        "1 done (1 from cache), 0 failed, 0 rejected, 1 still in flight"], waited.stdout
    assert time.monotonic() - started < SLOW_SECONDS
    # Let the slow fetch end here, so no job is mid-flight when the fixture stops the worker.
    finished = run(service.cli_env, "--quiet", "submit", slow, "--wait", "--timeout", "60")
    assert finished.returncode == 0 and finished.stdout.splitlines()[-1] == "1 done, 0 failed, 0 rejected"


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
    books = [row for row in rows if row["kind"] == "book"]  # a news front is a row per headline
    by_url = {row["url"]: row for row in books}
    assert len(by_url) == len(books) and set(urls) <= set(by_url)
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
    news = [json.loads(line) for line in run(service.cli_env, "export", "--kind", "news").stdout.splitlines()]
    assert all(record["kind"] == "news_headlines" for record in news)  # other tests' fronts, if any; no book
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
