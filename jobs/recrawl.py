"""Re-crawl news front pages on a schedule, so GET /info is always recent.

A client's submission of a news page puts it on the schedule (every NEWS_RECRAWL_INTERVAL
seconds); the ticker re-submits due pages with refresh; a page no client has asked for in
NEWS_RECRAWL_FOR seconds drops off the schedule.
"""
from __future__ import annotations

import logging
import time

from redis import Redis

from config import Settings
from jobs.queues import Submitter
from sources import NEWS, Route, Unsupported, route
from storage import Storage

log = logging.getLogger(__name__)


def client_wants(storage: Storage, routed: Route, settings: Settings) -> None:
    """Called for each news page a client submits."""
    if routed.source is NEWS:
        now = time.time()
        storage.want_recrawl(routed.canonical_url, now + settings.news_recrawl_interval, now)


def run_due(connection: Redis, settings: Settings, now: float | None = None) -> int:
    """Re-submit every due news page; returns how many were re-submitted."""
    now = time.time() if now is None else now
    storage = Storage(connection)
    submitter = Submitter(connection, settings)
    count = 0
    for url, wanted_at in storage.due_recrawls(now):
        if now - wanted_at > settings.news_recrawl_for or not _resubmit(submitter, url):
            storage.forget_recrawl(url)
            continue
        storage.schedule_recrawl(url, now + settings.news_recrawl_interval)
        count += 1
    return count


def _resubmit(submitter: Submitter, url: str) -> bool:
    try:
        submitter.submit(route(url), refresh=True)
    except Unsupported as exc:  # the routing rules changed since it was scheduled
        log.warning("dropping %s from the re-crawl schedule: %s", url, exc.reason)
        return False
    return True
