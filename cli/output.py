"""What the terminal shows: submissions, summaries and records, as text or pretty JSON."""
from __future__ import annotations

import json
import re
from typing import TextIO

from cli.client import Submission
from cli.results import UrlResult

STATE_WIDTH = 10  # "rejected" and two spaces
WHITESPACE = re.compile(r"\s+")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def print_json(value: object, out: TextIO) -> None:
    out.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def describe_error(error: dict | None) -> str:
    if not error:
        return "no reason given"
    return one_line(f"{error.get('code', 'error')}: {error.get('message', '')}".rstrip(": "))


def one_line(value: object) -> str:
    """Text from fetched pages, safe for a terminal and for line-based tools: line breaks and
    tabs become spaces, and other control characters (an escape sequence could move the
    cursor or retitle the window) are shown as U+FFFD. Anything else, any script, as is."""
    return CONTROL.sub("\ufffd", WHITESPACE.sub(" ", str(value)).strip())


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


def print_results(results: list[UrlResult], counts: dict[str, int], out: TextIO) -> None:
    """After --wait: one line per URL, in input order, then the summary line."""
    for result in results:
        out.write(result_line(result) + "\n")
    out.write(summary_line(counts) + "\n")


def result_line(result: UrlResult) -> str:
    """'<state>  <url>  <detail>; <notes>': the state padded to one column, so lines stay aligned."""
    notes = [detail for detail in (result_detail(result), *repeat_notes(result)) if detail]
    return f"{result.status:<{STATE_WIDTH}}{one_line(result.url)}" + ("  " + "; ".join(notes) if notes else "")


def result_detail(result: UrlResult) -> str:
    if result.status == "failed":
        return describe_error(result.error)
    if result.status == "rejected":
        return one_line(result.reason or "no reason given")
    if result.status == "pending":
        return "still in flight" + (f": {result.last_seen}" if result.last_seen else "")
    return "from cache" if result.from_cache else ""


def repeat_notes(result: UrlResult) -> list[str]:
    notes = [f"given {result.times_given} times"] if result.times_given > 1 else []
    if result.same_page_as:
        notes.append(f"same page as {one_line(result.same_page_as)}")
    return notes


def summary_line(counts: dict[str, int]) -> str:
    """'3 done (2 from cache), 1 failed, 1 rejected', and ', 1 still in flight' after a timeout."""
    cached = f" ({counts['from_cache']} from cache)" if counts["from_cache"] else ""
    line = f"{counts['done']} done{cached}, {counts['failed']} failed, {counts['rejected']} rejected"
    return line + (f", {counts['pending']} still in flight" if counts["pending"] else "")
