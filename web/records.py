"""GET /records (one page of records), /records.jsonl and /records.csv (every selected record,
streamed): most recently fetched first, filtered by ?kind=, ?since= and ?batch= alike.

The order and the cursor are record_index.py's; the export formats web/export.py's.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain

from flask import Blueprint, Response, jsonify, request

from web.api import load_batch_or_404, page_size, read_since, redis
from jobs.batches import record_json
from errors import ApiError
from web.export import KINDS, LAYOUTS, csv_chunks, jsonl_chunks
from record_index import Position, RecordIndex, Selection, decode_cursor, encode_cursor

records = Blueprint("records", __name__)
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
EXPORT_PAGE = 100  # records read from Redis at once while an export streams (a news record is ~50 kB)
START_CURSORS = ("", "0")  # "0": what clients of the old SCAN cursor send first
BUILDING_RETRY_AFTER = "1"


@dataclass(frozen=True)
class PageQuery:
    selection: Selection
    after: Position | None
    limit: int


@records.get("/records")
def list_records():
    query = read_page_query()
    found, last = ready_index().page(query.selection, query.after, query.limit)
    return jsonify({"records": [record_json(record) for record in found],
                    "next_cursor": encode_cursor(last) if last else None})


@records.get("/records.jsonl")
def export_jsonl():
    selection = read_selection()
    chunks = jsonl_chunks(started(ready_index().walk(selection, EXPORT_PAGE)))
    return streamed(chunks, "application/x-ndjson", export_name(selection, "jsonl"))


@records.get("/records.csv")
def export_csv():
    selection = read_selection()
    chunks = csv_chunks(selection.kind, started(ready_index().walk(selection, EXPORT_PAGE)))
    return streamed(chunks, "text/csv", export_name(selection, "csv"))


# ---- the query -------------------------------------------------------------------------------


def read_page_query() -> PageQuery:
    limit = page_size(request.args.get("limit"), DEFAULT_LIMIT, MAX_LIMIT)
    cursor = request.args.get("cursor", "")
    after = None if cursor in START_CURSORS else decode_cursor(cursor)
    if cursor not in START_CURSORS and after is None:
        raise ApiError(400, "invalid_query", "cursor must be a next_cursor this service gave (or absent to start)")
    return PageQuery(read_selection(), after, limit)


def read_selection() -> Selection:
    kind = request.args.get("kind")
    if kind is not None and kind not in KINDS:
        raise ApiError(400, "invalid_query", "kind must be book, news or page")
    since = read_since(request.args.get("since"))
    batch_id = request.args.get("batch")
    batch_urls = None if batch_id is None else batch_canonical_urls(batch_id)
    return Selection(KINDS.get(kind or ""), since.timestamp() if since else None, batch_urls)


def batch_canonical_urls(batch_id: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item["canonical_url"] for item in load_batch_or_404(batch_id)["items"]))


# ---- the answer ------------------------------------------------------------------------------


def ready_index() -> RecordIndex:
    """The index, once records saved before it existed are in it (a step of that per call)."""
    index = RecordIndex(redis())
    if not index.build_step():
        raise ApiError(503, "index_building", "the records index is being built (once, after an upgrade); "
                                              "retry in a moment", {"Retry-After": BUILDING_RETRY_AFTER})
    return index


def started(records: Iterator[dict]) -> Iterable[dict]:
    """records with its first page read now, so a Redis failure is a 503 before the 200 starts."""
    first = next(records, None)
    return records if first is None else chain([first], records)


def streamed(chunks: Iterable[str], mimetype: str, filename: str) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"', "X-Content-Type-Options": "nosniff"}
    return Response(chunks, mimetype=mimetype, headers=headers)


def export_name(selection: Selection, extension: str) -> str:
    layout = LAYOUTS.get(selection.kind or "")
    return f"records-{layout.name}.{extension}" if layout else f"records.{extension}"
