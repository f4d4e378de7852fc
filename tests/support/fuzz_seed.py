"""What the fuzz tests (tests/web/test_fuzz.py in process, tests/web/test_live_fuzz.py over HTTP) find
in Redis: something behind every read (jobs queued and failed, records done and failed, news
snapshots, a batch), and the schema each read's 2xx answer must match."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from hypothesis import strategies as st
from redis import Redis
from rq.job import JobStatus

import parsers
import snapshots
from jobs.queues import fetch_job, job_id_for
from storage import Storage, make_record
from tests.support.fuzzing import RECORD_FOUND

BOOK = "https://www.goodreads.com/book/show/5907"  # queued: a job, no record
DIED = "https://www.goodreads.com/book/show/42"  # a job that failed without a record
FAILED = "https://www.goodreads.com/book/show/99999999999"  # a failed record
NEWS = "https://www.bbc.com/news"  # a done record with snapshots
WSJ = "https://www.wsj.com/"  # a done record, its refresh in flight
PAGE = "https://example.com/blog/ten-rules-for-sourdough"  # a done generic page
SEEDED_URLS = [BOOK, DIED, FAILED, NEWS, WSJ, PAGE]
SEED_BATCH = "5eed00000000000000000000000000ba"
SEEDED_JOBS = [job_id_for(url) for url in SEEDED_URLS]
SEEDED_VALUES = st.sampled_from(SEEDED_URLS + [SEED_BATCH] + SEEDED_JOBS)

READ_SCHEMAS = {
    "/info": {200: RECORD_FOUND, 202: "InFlight"},
    "/getBookInfo": {200: "BookInfo"},  # or the seed's string (tests/support/fuzzing.py: seed_text)
    "/records": {200: "RecordsPage"},
    "/records.jsonl": {},  # 200: a stream of JSON Lines, not one JSON body
    "/records.csv": {},
    f"/batches/{SEED_BATCH}": {200: "Batch"},
    f"/jobs/{SEEDED_JOBS[0]}": {200: "Job"},
    f"/jobs/{SEEDED_JOBS[1]}": {200: "Job"},
    "/healthz": {200: "Health"},
}


def read_schemas(path: str) -> dict[int, str]:
    if path.startswith("/batches/"):
        return {200: "Batch"}
    if path.startswith("/jobs/"):
        return {200: "Job"}
    return READ_SCHEMAS.get(path, {})


def seed(connection: Redis, submit: Callable[[list[str]], int]) -> None:
    """Fill Redis; submit(urls) POSTs a JSON list to /parse and returns the status."""
    assert submit([BOOK, DIED, FAILED, NEWS, WSJ]) == 202
    fetch_job(connection, job_id_for(DIED)).set_status(JobStatus.FAILED)
    storage = Storage(connection)
    now = datetime.now(timezone.utc)
    storage.save_record(make_record(FAILED, "goodreads_book", "failed", parsers.PARSER_VERSION,
                                    error={"code": "http_status", "message": f"HTTP 404 from {FAILED}"}), 3600)
    for hours, titles in ((3, ["Old story", "Kept story"]), (0, ["Old story", "Kept story", "New story"])):
        record = make_record(NEWS, "news_headlines", "done", parsers.PARSER_VERSION, data=news_data("bbc.com", titles))
        record["fetched_at"] = now - timedelta(hours=hours)
        storage.save_record(record, 3600)
        storage.push_snapshot(NEWS, snapshots.take(record), 20, 3600)
    storage.save_record(make_record(WSJ, "news_headlines", "done", parsers.PARSER_VERSION,
                                    data=news_data("wsj.com", ["Markets rally"])), 3600)
    storage.save_record(make_record(PAGE, "page", "done", parsers.PARSER_VERSION, data=page_data()), 3600)
    storage.save_batch({"id": SEED_BATCH, "created_at": now, "callback_url": None, "items": [
        {"url": url, "canonical_url": url, "source": source, "job_id": job_id_for(url)}
        for url, source in ((BOOK, "goodreads"), (DIED, "goodreads"), (FAILED, "goodreads"), (NEWS, "news"),
                            (WSJ, "news"), (PAGE, "generic"))]})


def news_data(site: str, titles: list[str]) -> dict:
    return {"kind": "news_headlines", "site": site, "headlines": [
        {"title": title, "url": f"https://www.{site}/news/{index}-{title.lower().replace(' ', '-')}"}
        for index, title in enumerate(titles)]}


def page_data() -> dict:
    return {"kind": "page", "title": "Ten rules for sourdough", "description": None, "site_name": None, "image": None,
            "author": None, "authors": [], "published": None, "canonical_url": PAGE, "type": "article",
            "language": "en", "word_count": 812}
