"""snapshots.new_since: which headlines are new since a time, across the change of headline shape."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import snapshots

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=timezone.utc)


def item(title: str, url: str, linked: str | None = None) -> dict:
    return {"title": title, "url": url, "url_as_linked": linked}


def test_only_stories_missing_from_the_earlier_snapshot_are_new() -> None:
    history = [{"fetched_at": NOW - timedelta(hours=1), "headlines": [item("Kept", "https://news.example/kept")]}]
    current = [item("Kept", "https://news.example/kept"), item("Fresh", "https://news.example/fresh")]
    found = snapshots.new_since(current, history, NOW - timedelta(minutes=30))
    assert [h["title"] for h in found["new_headlines"]] == ["Fresh"]


def test_a_snapshot_from_before_url_as_linked_still_knows_its_stories() -> None:
    """Parser version 1 stored the URL as linked, tracking query and all; version 2 stores it
    without and keeps the linked one apart: the same story is not new for that."""
    old_shape = {"title": "Kept", "url": "https://news.example/kept?utm_source=home"}
    history = [{"fetched_at": NOW - timedelta(hours=1), "headlines": [old_shape]}]
    current = [item("Kept", "https://news.example/kept", "https://news.example/kept?utm_source=home"),
               item("Fresh", "https://news.example/fresh")]
    found = snapshots.new_since(current, history, NOW - timedelta(minutes=30))
    assert [h["title"] for h in found["new_headlines"]] == ["Fresh"]
