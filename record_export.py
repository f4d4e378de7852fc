"""Exports of records as text, written as they are read: JSON Lines and CSV.

JSON Lines: one record a line, as GET /info answers it.

CSV: one kind of record per file, since books, headlines and pages have different columns
(GET /records.csv needs ?kind=). Each kind's columns are fixed, whatever records the file
holds: the record's URL (`front_url` for news), `status`, `fetched_at` and `error`
("code: message" when it failed), then the kind's own fields. A book is one row; a news
front is one row per headline (in page order, `position` says where); a generic page is
one row. A failed record, or a front without headlines, is one row with only the
record's columns filled, so every record appears. Lists are joined with "; ".

Cells hold text from the fetched pages, which a spreadsheet would run as a formula when it
begins with =, +, -, @, a tab or a carriage return (`=HYPERLINK(...)` in a book title, say).
Such a cell gets a leading apostrophe, as OWASP's CSV injection advice says, so a
spreadsheet shows it as text; numbers are written as numbers (-3 stays -3).
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from batches import record_json
from sources import GENERIC, GOODREADS, NEWS

LIST_SEPARATOR = "; "
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHUNK_CHARS = 64 * 1024  # text handed to the server at once: a few records, not one line each
RECORD_COLUMNS = ("status", "fetched_at", "error")
BOOK_COLUMNS = (
    "book_id", "title", "authors", "rating", "ratings_count", "reviews_count", "description", "librarian_note",
    "isbn", "isbn13", "asin", "pages", "format", "language", "publisher", "published", "first_published",
    "genres", "series", "series_position", "cover_url",
)
HEADLINE_COLUMNS = (
    "site", "position", "title", "url", "kicker", "summary", "section", "sublink", "image", "url_as_linked",
)
PAGE_COLUMNS = (
    "title", "description", "site_name", "author", "authors", "published", "type", "language", "word_count",
    "image", "canonical_url",
)


@dataclass(frozen=True)
class Layout:
    """One kind's CSV: what its URL column is called, its own columns, and its rows' fields
    from a done record's data."""

    url_column: str
    columns: tuple[str, ...]
    rows: Callable[[dict], list[dict]]

    @property
    def header(self) -> tuple[str, ...]:
        return (self.url_column, *RECORD_COLUMNS, *self.columns)


def book_rows(data: dict) -> list[dict]:
    series = data.get("series") if isinstance(data.get("series"), dict) else {}
    return [{**data, "series": series.get("name"), "series_position": series.get("position")}]


def headline_rows(data: dict) -> list[dict]:
    """A row per headline, each with the front's site; one row of the site alone when none."""
    site = {"site": data.get("site")}
    return [{**item, **site} for item in data.get("headlines") or []] or [site]


def page_rows(data: dict) -> list[dict]:
    return [data]


LAYOUTS = {
    GOODREADS.kind: Layout("url", BOOK_COLUMNS, book_rows),
    NEWS.kind: Layout("front_url", HEADLINE_COLUMNS, headline_rows),
    GENERIC.kind: Layout("url", PAGE_COLUMNS, page_rows),
}


# ---- CSV -------------------------------------------------------------------------------------


def csv_chunks(kind: str, records: Iterable[dict]) -> Iterator[str]:
    """The CSV of these records (all of `kind`, a key of LAYOUTS), header first, in chunks."""
    layout = LAYOUTS[kind]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(layout.header)
    for record in records:
        writer.writerows(csv_rows(layout, record))
        if buffer.tell() >= CHUNK_CHARS:
            yield _drain(buffer)
    yield _drain(buffer)


def csv_rows(layout: Layout, record: dict) -> Iterator[list[str]]:
    first = [record.get("url"), record.get("status"), record.get("fetched_at"), error_text(record.get("error"))]
    data = record.get("data") if record.get("status") == "done" else None
    for fields in layout.rows(data) if isinstance(data, dict) else [{}]:
        yield [cell(value) for value in first] + [cell(fields.get(column)) for column in layout.columns]


def error_text(error: object) -> str | None:
    if isinstance(error, dict):
        return f"{error.get('code')}: {error.get('message')}"
    return None if error is None else str(error)


def cell(value: object) -> str:
    """flatten(value), neutralised unless it is a number (-3 is a number, not a formula)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    text = flatten(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def flatten(value: object) -> str:
    """A cell: lists joined with '; ', dicts (and dicts inside lists) as JSON, None empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"  # JSON's spelling, as in the JSON Lines export
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, (list, tuple)):
        return LIST_SEPARATOR.join(flatten(item) for item in value)
    return str(value)


# ---- JSON Lines ------------------------------------------------------------------------------


def jsonl_chunks(records: Iterable[dict]) -> Iterator[str]:
    """A record a line, as GET /info answers it, in chunks."""
    buffer = io.StringIO()
    for record in records:
        buffer.write(json.dumps(record_json(record), ensure_ascii=False) + "\n")
        if buffer.tell() >= CHUNK_CHARS:
            yield _drain(buffer)
    yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
