"""--wait: follow a submission's batches until every accepted URL is done, failed or cached.

A batch shows a stored record's status even while a new fetch of that URL is in flight
(a --refresh, or a stale record re-queued). Servers that say so in the item's "refreshing"
flag are trusted; otherwise a URL the batch calls done or failed is confirmed with
GET /info, which flags a fetch still in flight with a "refresh" key.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from cli.client import ServiceClient, Submission

FINAL = {"done", "failed", "expired", "canceled"}  # batch item states that end a fetch (expired: record gone)
FIRST_INTERVAL, MAX_INTERVAL = 0.25, 2.0  # seconds between polls: quick for small batches, then gentler


@dataclass
class Outcome:
    status: str  # done | failed | cached | pending
    error: dict | None = None


class Waiter:
    """Polls until every accepted URL has an Outcome, or the timeout passes; `advance(n)` drives a progress bar."""

    def __init__(self, client: ServiceClient, submission: Submission, advance: Callable[[int], object],
                 timeout: float | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.client, self.submission, self.advance = client, submission, advance
        self.deadline = None if timeout is None else clock() + timeout
        self.clock, self.sleep = clock, sleep
        self.outcomes: dict[str, Outcome] = {}  # canonical URL -> how its fetch ended
        # Accepted items per canonical URL still to settle: two spellings of one page are one fetch.
        self.waiting = Counter(item["canonical_url"] for item in submission.accepted if item["status"] != "cached")

    def run(self) -> dict[str, Outcome]:
        self.advance(len(self.submission.accepted) - sum(self.waiting.values()))  # cached: already there
        interval = FIRST_INTERVAL
        while self.waiting:
            self.poll_once()
            if not self.waiting or self.time_left() <= 0:
                break
            self.sleep(min(interval, self.time_left()))
            interval = min(interval * 2, MAX_INTERVAL)
        return self.outcomes

    def time_left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - self.clock()

    def poll_once(self) -> None:
        for batch_id in self.open_batches():
            for item in self.client.batch(batch_id)["items"]:
                if item["canonical_url"] in self.waiting and item["status"] in FINAL:
                    self.confirm(item)

    def open_batches(self) -> list[str]:
        """Batch ids, in submission order, that still hold a URL to settle."""
        ids = [item["batch_id"] for item in self.submission.accepted if item["canonical_url"] in self.waiting]
        return list(dict.fromkeys(ids))

    def confirm(self, item: dict) -> None:
        if item["status"] == "expired":
            self.settle(item["canonical_url"], Outcome("failed", {"code": "expired", "message": "the record expired"}))
            return
        if "refreshing" in item:  # newer servers flag a fetch in flight in the batch item itself
            if not item["refreshing"]:
                self.settle(item["canonical_url"], Outcome(item["status"], item.get("error")))
            return
        status, record = self.client.info(item["canonical_url"])
        if status == 200 and "refresh" not in record:
            self.settle(item["canonical_url"], Outcome(record["status"], record.get("error")))

    def settle(self, canonical_url: str, outcome: Outcome) -> None:
        self.outcomes[canonical_url] = outcome
        self.advance(self.waiting.pop(canonical_url))


def final_items(submission: Submission, outcomes: dict[str, Outcome]) -> list[dict]:
    """Each accepted URL with how it ended: cached at submission, done, failed, or still pending."""
    items = []
    for item in submission.accepted:
        if item["status"] == "cached":
            outcome = Outcome("cached")
        else:
            outcome = outcomes.get(item["canonical_url"], Outcome("pending"))
        items.append({**item, "status": outcome.status, "error": outcome.error})
    return items


def count(items: list[dict], rejected: list[dict]) -> dict[str, int]:
    """Counts for the summary; pending appears only when --wait ran out of time."""
    counts = {"done": 0, "failed": 0, "cached": 0, "rejected": len(rejected)}
    for item in items:
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    return counts
