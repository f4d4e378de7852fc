"""The seed's two routes, answering exactly as the tutorial the service grew from did, so a
client written for it keeps working: POST /parseGoodreadsLinks and GET /getBookInfo.

Their answers are the seed's: plain strings (Flask's default text/html, what a view
returning a str gives) and a four-field book object. That is the one exception to "every
error is JSON" (DESIGN.md). What the seed never had keeps the service's own rules and
answers JSON: API_TOKENS (401), the rate limits (429), MAX_REQUEST_BYTES and
MAX_URLS_PER_REQUEST (413), a body not sent as JSON (415), Redis away (503).

A book whose fetch failed, or that is still queued, has no meta info yet: the seed had
neither state, and its client knows only "No meta info found for this book.".
"""
from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request

from web import journal
from web.api import check_url_count, json_body, keep_ticking, redis, require_token, settings, storage, submit_routes
from sources import GOODREADS, Route, Unsupported, route

seed = Blueprint("seed", __name__)

SCHEDULED = "{count} books are scheduled for info parsing."
NOT_BOOK_LINKS = "Only array of goodreads book links is accepted."
NO_META_INFO = "No meta info found for this book."
BAD_BOOK_URL = "'url' query parameter is required. It must be a valid goodreads book URL."


@seed.post("/parseGoodreadsLinks")
def parse_goodreads_links():
    """Queue the distinct Goodreads books of a JSON list; other items are left out."""
    require_token()  # before the body is read
    urls = json_body()
    if not isinstance(urls, list):
        return NOT_BOOK_LINKS, 400
    check_url_count(urls)
    routes = [book for book in map(book_route, urls) if book is not None]
    if not routes:
        return NOT_BOOK_LINKS, 400
    done = submit_routes(routes, False, uuid.uuid4().hex)  # a lane of its own, as a /parse batch has
    journal.record_accepted(redis(), settings(), done.values())
    keep_ticking()
    return SCHEDULED.format(count=len(done)), 200  # distinct books: two spellings of one count once


@seed.get("/getBookInfo")
def get_book_info():
    book = book_route(request.args.get("url"))
    if book is None:
        return BAD_BOOK_URL, 400
    record = storage().load_record(book.canonical_url)
    if record is None or record["status"] != "done":
        return NO_META_INFO, 200
    return jsonify(book_info(record["data"]))


def book_route(url: object) -> Route | None:
    """The route of a Goodreads book URL (any spelling); None for anything else."""
    try:
        found = route(url)
    except Unsupported:
        return None
    return found if found.source == GOODREADS else None


def book_info(data: dict) -> dict:
    """The seed's fields of a book's data; "" and 0 where the page had none."""
    authors = data.get("authors")
    rating = data.get("rating")
    return {
        "title": _text(data.get("title")),
        "author": _text(authors[0]) if isinstance(authors, list) and authors else "",
        "rating": float(rating) if isinstance(rating, (int, float)) and not isinstance(rating, bool) else 0.0,
        "description": _text(data.get("description")),
    }


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
