"""Exports of records as text, written as they are read: JSON Lines and CSV.

JSON Lines: one record a line, as GET /info answers it.

CSV: books, headlines and pages have different columns, so each kind has its own fixed
set, and a file's header never depends on which records it holds. Every row starts with
the record's `url`, `kind` (book, news or page), `status`, `fetched_at` and `error`
("code: message" when it failed). With a kind (GET /records.csv?kind=news) the file has
that kind's columns only; without one, every kind's, each row filling its own kind's
(columns two kinds share, such as title, hold the same thing for both). A book is one
row; a news front is one row per headline (in page order, `position` says where; the
headline's own link is `headline_url`); a generic page is one row. A failed record, or a
front without headlines, is one row with only the record's columns filled, so every
record appears. Lists are joined with "; ".

Cells hold text from the fetched pages, which a spreadsheet would run as a formula when it
begins with =, +, -, @, a tab or a carriage return (`=HYPERLINK(...)` in a book title, say).
Such a cell gets a leading apostrophe, as OWASP's CSV injection advice says, so a
spreadsheet shows it as text; numbers are written as numbers (-3 stays -3).
"""
from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from jobs.batches import record_json
import jsontext
from sources import GENERIC, GOODREADS, NEWS

LIST_SEPARATOR = "; "
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHUNK_CHARS = 64 * 1024  # text handed to the server at once: a few records, not one line each
RECORD_COLUMNS = ("url", "kind", "status", "fetched_at", "error")
BOOK_COLUMNS = (
    "book_id", "title", "authors", "rating", "ratings_count", "reviews_count", "description", "librarian_note",
    "isbn", "isbn13", "asin", "pages", "format", "language", "publisher", "published", "first_published",
    "genres", "series", "series_position", "cover_url",
)
HEADLINE_COLUMNS = (
    "site", "position", "title", "headline_url", "kicker", "summary", "section", "sublink", "image", "url_as_linked",
)
PAGE_COLUMNS = (
    "title", "description", "site_name", "author", "authors", "published", "type", "language", "word_count",
    "image", "canonical_url",
)


@dataclass(frozen=True)
class Layout:
    """One kind's CSV: its name in ?kind=, its own columns, and its rows' fields from a done
    record's data."""

    name: str
    columns: tuple[str, ...]
    rows: Callable[[dict], list[dict]]


def book_rows(data: dict) -> list[dict]:
    series = data.get("series") if isinstance(data.get("series"), dict) else {}
    return [{**data, "series": series.get("name"), "series_position": series.get("position")}]


def headline_rows(data: dict) -> list[dict]:
    """A row per headline, each with the front's site; one row of the site alone when none."""
    site = {"site": data.get("site")}
    return [{**item, "headline_url": item.get("url"), **site} for item in data.get("headlines") or []] or [site]


def page_rows(data: dict) -> list[dict]:
    return [data]


LAYOUTS = {  # by the records' `kind`
    GOODREADS.kind: Layout("book", BOOK_COLUMNS, book_rows),
    NEWS.kind: Layout("news", HEADLINE_COLUMNS, headline_rows),
    GENERIC.kind: Layout("page", PAGE_COLUMNS, page_rows),
}
KINDS = {layout.name: kind for kind, layout in LAYOUTS.items()}  # ?kind= -> the records' `kind`
EVERY_KIND_COLUMNS = tuple(dict.fromkeys(column for layout in LAYOUTS.values() for column in layout.columns))


# ---- CSV -------------------------------------------------------------------------------------


def csv_chunks(kind: str | None, records: Iterable[dict]) -> Iterator[str]:
    """The CSV of these records, header first, in chunks: one kind's columns (`kind`, a key
    of LAYOUTS, and only records of it), or every kind's (None)."""
    columns = LAYOUTS[kind].columns if kind else EVERY_KIND_COLUMNS
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(RECORD_COLUMNS + columns)
    for record in records:
        writer.writerows(csv_rows(columns, record))
        if buffer.tell() >= CHUNK_CHARS:
            yield _drain(buffer)
    yield _drain(buffer)


def csv_rows(columns: tuple[str, ...], record: dict) -> Iterator[list[str]]:
    layout = LAYOUTS.get(record.get("kind"))
    first = [record.get("url"), layout.name if layout else record.get("kind"), record.get("status"),
             record.get("fetched_at"), error_text(record.get("error"))]
    data = record.get("data") if record.get("status") == "done" else None
    for fields in layout.rows(data) if layout and isinstance(data, dict) else [{}]:
        yield [cell(value) for value in first] + [cell(fields.get(column)) for column in columns]


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
        return jsontext.dumps(value, sort_keys=True)
    if isinstance(value, (list, tuple)):
        return LIST_SEPARATOR.join(flatten(item) for item in value)
    return str(value)


# ---- JSON Lines ------------------------------------------------------------------------------


def jsonl_chunks(records: Iterable[dict]) -> Iterator[str]:
    """A record a line, as GET /info answers it, in chunks."""
    buffer = io.StringIO()
    for record in records:
        buffer.write(jsontext.dumps(record_json(record)) + "\n")
        if buffer.tell() >= CHUNK_CHARS:
            yield _drain(buffer)
    yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
