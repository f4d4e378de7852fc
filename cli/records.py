"""`get` as text: each answer of GET /info as a few readable lines.

A done record by its kind (book, news front page, generic page; another kind as its
fields), a failed record with its error, a page whose job was canceled, and a page still
in flight with what the service says about it: its step, its host's schedule, attempts and
the last error (each shown only when the answer carries it, as older services' answers do
not). Page text goes through
one_line(): one value per line, nothing a terminal would run.
"""
from __future__ import annotations

import json

from cli.output import describe_error, one_line

MAX_DESCRIPTION = 200  # characters of a page's description; `get --json` has all of it
HEADLINE_INDENT, SUBLINK_INDENT = "  ", "     "  # a sub-link's number starts under its lead's title


def answer_text(status: int, body: dict) -> str:
    """The lines for one GET /info answer: 202 in flight, else a done or failed record."""
    if status == 202:
        lines = in_flight_lines(body)
    elif body.get("status") == "failed":
        lines = failed_lines(body)
    elif body.get("status") == "canceled":
        lines = canceled_lines(body)
    else:
        lines = done_lines(body)
    return "\n".join(lines) + "\n"


# ---- in flight and failed -------------------------------------------------------------------


def in_flight_lines(body: dict) -> list[str]:
    step = f" ({one_line(body['step'])})" if body.get("step") else ""
    first = f"{body.get('status', 'queued')}{step}: {one_line(body.get('url', ''))} is not parsed yet"
    return [first, *("  " + line for line in progress_lines(body))]


def progress_lines(body: dict) -> list[str]:
    """What the service tells of a fetch to come: its host's schedule, attempts, the last error."""
    lines = [one_line(body["waiting"]["detail"])] if (body.get("waiting") or {}).get("detail") else []
    if body.get("attempts") is not None:
        retries = body.get("retries_left")
        lines.append(f"attempts: {body['attempts']}" + (f", retries left: {retries}" if retries is not None else ""))
    if body.get("last_error"):
        lines.append(f"last error: {describe_error(body['last_error'])}")
    if body.get("next_try_at"):
        lines.append(f"next try at: {one_line(body['next_try_at'])}")
    return lines


def failed_lines(record: dict) -> list[str]:
    lines = [f"failed: {one_line(record.get('url', ''))}", f"  {describe_error(record.get('error'))}"]
    if record.get("fetched_at"):
        lines.append(f"  fetched {record['fetched_at']}")
    return lines + refresh_lines(record)


def canceled_lines(body: dict) -> list[str]:
    job = one_line(body.get("job_id", ""))
    return [f"canceled: {one_line(body.get('url', ''))}",
            f"  its job {job} was canceled before it ran: submit the URL again to fetch it"]


def refresh_lines(record: dict) -> list[str]:
    """A stored record whose new fetch is in flight says so, with that fetch's progress."""
    if not record.get("refresh"):
        return []
    return [f"a newer fetch is {one_line(record['refresh'])}", *("  " + line for line in progress_lines(record))]


# ---- done, by kind --------------------------------------------------------------------------


def done_lines(record: dict) -> list[str]:
    data = record.get("data") or {}
    describe = KINDS.get(data.get("kind") or record.get("kind"), field_lines)
    lines = [line for line in describe(data) if line]
    lines.append(f"{one_line(record.get('url', ''))}  (fetched {record.get('fetched_at')})")
    return lines + refresh_lines(record)


def book_lines(data: dict) -> list[str]:
    details = [f"ISBN-13 {data['isbn13']}" if data.get("isbn13") else "",
               f"{data['pages']} pages" if data.get("pages") else "", data.get("format") or ""]
    return [
        one_line(data.get("title") or "(untitled)"),
        f"by {one_line(', '.join(data['authors']))}" if data.get("authors") else "",
        series_line(data.get("series")),
        rating_line(data.get("rating"), data.get("ratings_count")),
        one_line(" · ".join(str(part) for part in details if part)),
        f"published {one_line(data['published'])}" if data.get("published") else "",
        f"genres: {one_line(', '.join(data['genres']))}" if data.get("genres") else "",
    ]


def series_line(series: dict | None) -> str:
    if not series or not series.get("name"):
        return ""
    position = series.get("position")
    return f"series: {one_line(series['name'])}" + (f" #{one_line(position)}" if position else "")


def rating_line(rating: float | None, ratings: int | None) -> str:
    if not rating:
        return ""
    return f"rated {rating}" + (f" by {ratings:,} readers" if isinstance(ratings, int) else "")


def headline_lines(data: dict) -> list[str]:
    """'site: N headlines', then one line each: position, [kicker], title, url; sub-links indented."""
    headlines = data.get("headlines") or []
    sublinks = sum(1 for headline in headlines if headline.get("sublink"))
    header = f"{one_line(data.get('site') or 'news')}: {len(headlines)} headlines"
    header += f" ({sublinks} sub-link{'' if sublinks == 1 else 's'})" if sublinks else ""
    return [header, *(headline_line(headline, number) for number, headline in enumerate(headlines, 1))]


def headline_line(headline: dict, number: int) -> str:
    indent = SUBLINK_INDENT if headline.get("sublink") else HEADLINE_INDENT
    position = str(headline.get("position") or number).rjust(3)
    kicker = f"[{one_line(headline['kicker'])}] " if headline.get("kicker") else ""
    title = one_line(headline.get("title") or "(untitled)")
    return f"{indent}{position}. {kicker}{title}  {one_line(headline.get('url'))}"


def page_lines(data: dict) -> list[str]:
    description = one_line(data.get("description") or "")
    if len(description) > MAX_DESCRIPTION:
        description = description[:MAX_DESCRIPTION - 1] + "…"
    byline = " · ".join(one_line(data[key]) for key in ("site_name", "author", "published") if data.get(key))
    facts = [f"{data['word_count']} words" if data.get("word_count") else "",
             one_line(data.get("type") or ""), one_line(data.get("language") or "")]
    facts_line = " · ".join(fact for fact in facts if fact)
    return [one_line(data.get("title") or "(untitled)"), byline, description, facts_line]


def field_lines(data: dict) -> list[str]:
    """A kind this client does not know yet: each field that has a value, as 'name: value'."""
    return [f"{one_line(key)}: {one_line(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))}"
            for key, value in data.items() if value not in (None, "", [], {})]


KINDS = {"goodreads_book": book_lines, "news_headlines": headline_lines, "page": page_lines}
