"""Export formats: JSON Lines (records as they are) and CSV (one flat row per record).

CSV cells hold text from the fetched pages, which a spreadsheet would run as a formula when
it begins with =, +, -, @, a tab or a carriage return (`=HYPERLINK(...)` in a book title,
say). Such a cell gets a leading apostrophe, as OWASP's CSV injection advice says, so a
spreadsheet shows it as text; numbers are written as numbers."""
from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import TextIO

BASE_COLUMNS = ["url", "kind", "status", "fetched_at", "error"]
LIST_SEPARATOR = "; "
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
DATA_PREFIX = "data."  # only for a data field whose name a base column already uses (e.g. url)


def unique_by_url(records: Iterable[dict]) -> list[dict]:
    """The cursor walk may yield a record twice (Redis SCAN); keep the first of each url."""
    seen: dict[str, dict] = {}
    for record in records:
        seen.setdefault(record["url"], record)
    return list(seen.values())


def write_jsonl(records: list[dict], out: TextIO) -> None:
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_csv(records: list[dict], out: TextIO) -> None:
    columns = csv_columns(records)
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    for record in records:
        writer.writerow(csv_row(record))


def csv_columns(records: list[dict]) -> list[str]:
    """The base columns, then every data field in the order first seen (kinds differ in fields)."""
    columns = dict.fromkeys(BASE_COLUMNS)
    for record in records:
        columns.update(dict.fromkeys(data_columns(record.get("data") or {})))
    return list(columns)


def data_columns(data: dict) -> list[str]:
    return [DATA_PREFIX + key if key in BASE_COLUMNS else key for key in data]


def csv_row(record: dict) -> dict[str, str]:
    error = record.get("error")
    row = {
        "url": record.get("url"), "kind": record.get("kind"), "status": record.get("status"),
        "fetched_at": record.get("fetched_at"),
        "error": f"{error.get('code')}: {error.get('message')}" if isinstance(error, dict) else error,
    }
    data = record.get("data") or {}
    row.update(zip(data_columns(data), data.values()))
    return {column: cell(value) for column, value in row.items()}


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
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, (list, tuple)):
        return LIST_SEPARATOR.join(flatten(item) for item in value)
    return str(value)
