"""Headline snapshots of news front pages: what was on the page, and what is new since a time.

Each successful news fetch pushes a snapshot (fetched_at, headlines); storage keeps the
newest N. GET /info?url=...&since=T compares the current headlines with the snapshot that
was current at T.
"""
from __future__ import annotations

from datetime import datetime


def take(record: dict) -> dict:
    return {"fetched_at": record["fetched_at"], "headlines": record["data"]["headlines"]}


def new_since(current: list[dict], history: list[dict], since: datetime) -> dict:
    """Headlines of `current` absent from the snapshot current at `since` (all, if none was)."""
    before = next((snap for snap in history if snap["fetched_at"] <= since), None)
    known = set().union(*map(_urls, before["headlines"])) if before else set()
    return {
        "since": since.isoformat(),
        "compared_with": before["fetched_at"].isoformat() if before else None,
        "new_headlines": [headline for headline in current if not _urls(headline) & known],
        "snapshots": [{"fetched_at": snap["fetched_at"].isoformat(), "headline_count": len(snap["headlines"])}
                      for snap in history],
    }


def _urls(headline: dict) -> set[str]:
    """The URLs a headline is known by: a snapshot taken before headlines had url_as_linked
    holds the URL as linked (tracking parameters and all) where a newer one has it apart."""
    return {headline["url"], headline.get("url_as_linked")} - {None}
