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

FINAL = {"done", "failed", "expired"}  # batch item states that end a fetch (expired: record gone)
FIRST_INTERVAL, MAX_INTERVAL = 0.25, 2.0  # seconds between polls: quick for small batches, then gentler


@dataclass
class Outcome:
    status: str  # done | failed | pending (still in flight when the wait ended)
    error: dict | None = None
    last_seen: str | None = None  # pending: what the batch said last, e.g. "started (fetching)"


class Waiter:
    """Polls until every accepted URL has an Outcome, or the timeout passes; `advance(n)` drives a progress bar."""

    def __init__(self, client: ServiceClient, submission: Submission, advance: Callable[[int], object],
                 timeout: float | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.client, self.submission, self.advance = client, submission, advance
        self.deadline = None if timeout is None else clock() + timeout
        self.clock, self.sleep = clock, sleep
        self.outcomes: dict[str, Outcome] = {}  # canonical URL -> how its fetch ended
        self.last_seen: dict[str, str] = {}  # canonical URL -> its latest in-flight state, for a timeout
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
        for canonical_url in self.waiting:  # only when the time ran out
            self.outcomes[canonical_url] = Outcome("pending", last_seen=self.last_seen.get(canonical_url))
        return self.outcomes

    def time_left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - self.clock()

    def poll_once(self) -> None:
        for batch_id in self.open_batches():
            for item in self.client.batch(batch_id)["items"]:
                if item["canonical_url"] not in self.waiting:
                    continue
                self.last_seen[item["canonical_url"]] = in_flight_state(item)
                if item["status"] in FINAL:
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
        elif status == 200:
            self.last_seen[item["canonical_url"]] = f"refreshing ({record['refresh']})"

    def settle(self, canonical_url: str, outcome: Outcome) -> None:
        self.outcomes[canonical_url] = outcome
        self.advance(self.waiting.pop(canonical_url))


def in_flight_state(item: dict) -> str:
    """A batch item's state as a person reads it: "queued", "started (fetching)", or
    "refreshing" for a stored record whose new fetch is in flight."""
    if item.get("refreshing"):
        return "refreshing"
    return item["status"] + (f" ({item['step']})" if item.get("step") else "")
