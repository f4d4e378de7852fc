"""What `submit --wait` reports: one result per URL given, in the order given, and the counts.

The service answers accepted and rejected URLs in two lists; the URLs as sent put them back
in input order. A URL given twice is listed once and says how often it was given; a second
spelling of a page already listed keeps its own line and names the first spelling.
A page served from storage ("cached") is done, and says so.
"""
from __future__ import annotations

from collections import Counter, defaultdict, deque
from dataclasses import dataclass

from cli.client import Submission
from cli.waiting import Outcome

STATES = ("done", "failed", "rejected", "pending")  # pending: still in flight when --wait gave up


@dataclass
class UrlResult:
    url: str  # as given
    status: str  # one of STATES
    from_cache: bool = False  # done without a fetch: a fresh record was stored
    canonical_url: str | None = None  # None when rejected
    batch_id: str | None = None
    job_id: str | None = None
    error: dict | None = None  # failed: {"code", "message"}
    reason: str | None = None  # rejected: why
    last_seen: str | None = None  # pending: the last state the batch showed, e.g. "started (fetching)"
    times_given: int = 1
    same_page_as: str | None = None  # an earlier URL of this list with the same canonical URL


def url_results(submission: Submission, outcomes: dict[str, Outcome]) -> list[UrlResult]:
    """Every distinct URL given, in input order, with how it ended."""
    results = [result_of(answer, outcomes) for answer in in_input_order(submission)]
    return mark_repeats(results)


def in_input_order(submission: Submission) -> list[dict]:
    """The accepted and rejected answers merged back into the order the URLs were sent.

    Each list keeps the order of its URLs, and every URL sent is in one of them; an answer
    whose URL the server spelled otherwise than sent is kept, at the end."""
    queues: dict[str, deque] = defaultdict(deque)
    for answer in submission.accepted + [{**item, "status": "rejected"} for item in submission.rejected]:
        queues[answer["url"]].append(answer)
    ordered = [queues[url].popleft() for url in submission.sent if queues.get(url)]
    return ordered + [answer for queue in queues.values() for answer in queue]


def result_of(answer: dict, outcomes: dict[str, Outcome]) -> UrlResult:
    if answer["status"] == "rejected":
        return UrlResult(answer["url"], "rejected", reason=answer.get("reason"))
    ids = {"canonical_url": answer["canonical_url"], "batch_id": answer.get("batch_id"), "job_id": answer.get("job_id")}
    if answer["status"] == "cached":
        return UrlResult(answer["url"], "done", from_cache=True, **ids)
    outcome = outcomes.get(answer["canonical_url"], Outcome("pending"))
    return UrlResult(answer["url"], outcome.status, error=outcome.error, last_seen=outcome.last_seen, **ids)


def mark_repeats(results: list[UrlResult]) -> list[UrlResult]:
    """One result per distinct URL (counting how often it was given); a later spelling of a
    page names the first one."""
    given = Counter(result.url for result in results)
    first_spelling: dict[str, str] = {}
    distinct: dict[str, UrlResult] = {}
    for result in results:
        if result.url in distinct:
            continue
        result.times_given = given[result.url]
        if result.canonical_url is not None:
            first = first_spelling.setdefault(result.canonical_url, result.url)
            result.same_page_as = first if first != result.url else None
        distinct[result.url] = result
    return list(distinct.values())


def count(results: list[UrlResult]) -> dict[str, int]:
    """Per state, one per line of the report; pages from storage count as done and, again, as from_cache."""
    counts = {"done": 0, "from_cache": 0, "failed": 0, "rejected": 0, "pending": 0}
    for result in results:
        counts[result.status] += 1
        counts["from_cache"] += int(result.from_cache)
    return counts
