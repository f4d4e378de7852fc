"""What the terminal shows: submissions, summaries and records, as text or pretty JSON."""
from __future__ import annotations

import json
from typing import TextIO

from cli.client import Submission

MAX_HEADLINES = 10  # a front page has dozens; `get --json` shows them all
MAX_DESCRIPTION = 200


def print_json(value: object, out: TextIO) -> None:
    out.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def describe_error(error: dict | None) -> str:
    if not error:
        return "no reason given"
    return f"{error.get('code', 'error')}: {error.get('message', '')}".rstrip(": ")


# ---- submit ---------------------------------------------------------------------------------


def print_submission(submission: Submission, out: TextIO, quiet: bool) -> None:
    """Without --wait: each accepted URL (unless --quiet) and each rejected one with its reason."""
    if not quiet:
        for batch_id in submission.batch_ids:
            out.write(f"batch {batch_id}\n")
        for item in submission.accepted:
            out.write(f"accepted  {item['url']}  ({item['status']})\n")
    print_rejected(submission.rejected, out)
    out.write(f"{len(submission.accepted)} accepted, {len(submission.rejected)} rejected\n")


def print_rejected(rejected: list[dict], out: TextIO) -> None:
    for item in rejected:
        out.write(f"rejected  {item['url']}  {item['reason']}\n")


def print_summary(items: list[dict], rejected: list[dict], counts: dict[str, int], out: TextIO) -> None:
    """After --wait: the counts, then every URL that did not end well, with its reason."""
    for item in items:
        if item["status"] == "failed":
            out.write(f"failed    {item['url']}  {describe_error(item['error'])}\n")
        elif item["status"] == "pending":
            out.write(f"pending   {item['url']}  still in flight\n")
        elif item["status"] == "canceled":
            out.write(f"canceled  {item['url']}  its job was canceled before it ran\n")
    print_rejected(rejected, out)
    out.write(", ".join(f"{name} {number}" for name, number in counts.items()) + "\n")


# ---- get ------------------------------------------------------------------------------------


def record_summary(record: dict) -> str | None:
    """A few lines for a done record of a known kind; None means: show the JSON instead."""
    data = record.get("data") or {}
    describe = SUMMARIES.get(data.get("kind") or record.get("kind"))
    if record.get("status") != "done" or describe is None:
        return None
    lines = [line for line in describe(data) if line]
    lines.append(f"{record['url']}  (fetched {record.get('fetched_at')})")
    if record.get("refresh"):
        lines.append(f"a newer fetch is {record['refresh']}")
    return "\n".join(lines) + "\n"


def book_lines(data: dict) -> list[str]:
    rating = data.get("rating")
    ratings = data.get("ratings_count")
    details = [f"ISBN-13 {data['isbn13']}" if data.get("isbn13") else "",
               f"{data['pages']} pages" if data.get("pages") else "", data.get("format") or ""]
    return [
        data.get("title") or "(untitled)",
        f"by {', '.join(data['authors'])}" if data.get("authors") else "",
        f"rated {rating}" + (f" by {ratings:,} readers" if isinstance(ratings, int) else "") if rating else "",
        " · ".join(part for part in details if part),
        f"published {data['published']}" if data.get("published") else "",
    ]


def headline_lines(data: dict) -> list[str]:
    headlines = data.get("headlines") or []
    lines = [f"{data.get('site') or 'news'}: {len(headlines)} headlines"]
    lines += [f"  - {h.get('title')}  {h.get('url')}" for h in headlines[:MAX_HEADLINES]]
    if len(headlines) > MAX_HEADLINES:
        lines.append(f"  … and {len(headlines) - MAX_HEADLINES} more (--json shows all)")
    return lines


def page_lines(data: dict) -> list[str]:
    description = data.get("description") or ""
    if len(description) > MAX_DESCRIPTION:
        description = description[:MAX_DESCRIPTION - 1] + "…"
    byline = " · ".join(str(data[key]) for key in ("site_name", "author", "published") if data.get(key))
    words = data.get("word_count")
    return [data.get("title") or "(untitled)", byline, description, f"{words} words" if words else ""]


SUMMARIES = {"goodreads_book": book_lines, "news_headlines": headline_lines, "page": page_lines}


def print_in_flight(body: dict, out: TextIO) -> None:
    step = f" ({body['step']})" if body.get("step") else ""
    out.write(f"{body.get('status', 'queued')}{step}: {body.get('url', '')} is not parsed yet\n")
