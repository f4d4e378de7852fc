"""The records in a stable order, page by page: GET /records and the exports read them here.

Every save puts the record's canonical URL in sorted sets scored by its fetched_at
(storage.save_record: one of every record, one per kind) and in one scored by when its
record expires. The order is most recently fetched first; records fetched at the very same
time follow each other by URL, descending (Redis' own order for equal scores), so the
order is strict and a position in it, (score, URL), says exactly where a page ended. The
cursor a client gets is that position, base64-encoded: it stays valid while records come
and go, so a walk gives every record that stays put exactly once, a record re-fetched
meanwhile moves to the front (behind the walk: it is not given twice), and nothing can
make a walk go back, hence loop.

Records expire (their TTL) but index entries do not: an entry whose record is gone is
dropped when a page meets it, and the ticker drops those whose expiry time has passed
(prune_expired). Either way an entry goes only while its record key is still missing
(WATCH), so a record saved again in between keeps its entry.

Records saved before the index existed are indexed once (build_step): SCAN over record
keys, a bounded step at a time under a lock, resumable from its saved cursor; pages are
answered once it has finished.
"""
from __future__ import annotations

import base64
import binascii
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import WatchError

from keys import (
    RECORD_INDEX_KEYS, RECORD_KEY_PATTERN, RECORDS_EXPIRY, RECORDS_INDEX_LOCK, RECORDS_INDEX_SCAN, RECORDS_INDEXED,
    record_key_of, records_by_time_key,
)
from storage import decode_value, queue_index_entries, record_problem

CURSOR_VERSION = b"1"
BUILD_STEP_KEYS = 500  # record keys indexed per build step (a news record is ~50 kB)
BUILD_LOCK_SECONDS = 60  # a step takes well under this; a dead builder's lock frees itself
PRUNE_AT_ONCE = 500  # expired entries dropped per prune_expired call


@dataclass(frozen=True, order=True)
class Position:
    """A place in the order: the (score, member) of the last record a page gave."""

    score: float
    member: bytes


@dataclass(frozen=True)
class Selection:
    """Which records: of one kind (a record `kind`), fetched at or after `since` (epoch
    seconds), among one batch's canonical URLs; None: any."""

    kind: str | None = None
    since: float | None = None
    batch_urls: tuple[str, ...] | None = None

    def accepts(self, record: dict) -> bool:
        return self.kind is None or record["kind"] == self.kind


# ---- the cursor ------------------------------------------------------------------------------


def encode_cursor(position: Position) -> str:
    raw = CURSOR_VERSION + b" " + repr(position.score).encode() + b" " + position.member
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(text: str) -> Position | None:
    """The position a cursor names; None when it is not one encode_cursor wrote."""
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))
        version, score, member = raw.split(b" ", 2)
        number = float(score)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return None
    if version != CURSOR_VERSION or not math.isfinite(number):
        return None
    return Position(number, member)


# ---- reading ---------------------------------------------------------------------------------


class RecordIndex:
    def __init__(self, redis: Redis):
        self.redis = redis

    def page(self, selection: Selection, after: Position | None, limit: int) -> tuple[list[dict], Position | None]:
        """Up to `limit` records after `after`, and the position to continue from (None: no more).
        One record beyond the page is looked for, so the last page says it is the last."""
        found: list[tuple[Position, dict]] = []
        for positions in self._candidates(selection, after, limit + 1):
            found += self._records_at(positions, selection)
            if len(found) > limit:
                break
        more = len(found) > limit
        found = found[:limit]
        return [record for _, record in found], (found[-1][0] if more and found else None)

    def walk(self, selection: Selection, page_size: int) -> Iterator[dict]:
        """Every selected record, read a page at a time (bounded memory, for the exports)."""
        for positions in self._candidates(selection, None, page_size):  # lazily: one chunk at a time
            yield from (record for _, record in self._records_at(positions, selection))

    def _candidates(self, selection: Selection, after: Position | None, count: int) -> Iterator[list[Position]]:
        """The index entries after `after`, in order, `count` or so at a time."""
        if selection.batch_urls is not None:
            yield from self._batch_candidates(selection, after, count)
            return
        key, floor = records_by_time_key(selection.kind), _floor(selection.since)
        while positions := self._entries_after(key, after, floor, count):
            yield positions
            after = positions[-1]

    def _entries_after(self, key: str, after: Position | None, floor: str, count: int) -> list[Position]:
        """The entries after `after` at its own score (all of them: equal scores are rare),
        then up to `count` below it; in one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            if after is not None:
                pipe.zrange(key, repr(after.score), repr(after.score), desc=True, byscore=True, withscores=True)
            top = "+inf" if after is None else f"({after.score!r}"
            pipe.zrange(key, top, floor, desc=True, byscore=True, offset=0, num=count, withscores=True)
            *ties, below = pipe.execute()
        positions = [Position(score, member) for member, score in (ties[0] if ties else [])]
        positions = [p for p in positions if p < after and p.score >= float(floor)] if after else []
        return positions + [Position(score, member) for member, score in below]

    def _batch_candidates(self, selection: Selection, after: Position | None, count: int) -> Iterator[list[Position]]:
        """A batch's URLs that have an index entry, in the index's order (a batch is at most
        MAX_URLS_PER_REQUEST URLs: sorted here in one go)."""
        urls = list(dict.fromkeys(selection.batch_urls or ()))
        scores = self.redis.zmscore(records_by_time_key(), urls) if urls else []
        floor = float(_floor(selection.since))
        positions = sorted((Position(score, url.encode()) for url, score in zip(urls, scores)
                            if score is not None and score >= floor), reverse=True)
        positions = [p for p in positions if after is None or p < after]
        for start in range(0, len(positions), count):
            yield positions[start:start + count]

    def _records_at(self, positions: list[Position], selection: Selection) -> list[tuple[Position, dict]]:
        """The selected records at these entries; entries whose record has gone are dropped."""
        keys = [record_key_of(p.member) for p in positions]
        found, gone = [], []
        for position, key, raw in zip(positions, keys, self.redis.mget(keys)):
            if raw is None:
                gone.append(position.member)
                continue
            record = decode_value(key.decode(errors="replace"), raw, record_problem)  # logged when refused
            if record is not None and selection.accepts(record):
                found.append((position, record))
        if gone:
            self.drop_missing(gone)
        return found

    # ---- upkeep ------------------------------------------------------------------------------

    def drop_missing(self, members: list[bytes]) -> int:
        """Drop the index entries of these members whose record key is missing, unless a
        record is saved meanwhile (WATCH); how many were dropped (0 when one was saved)."""
        keys = [record_key_of(member) for member in members]
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(*keys)
                with self.redis.pipeline(transaction=False) as reads:  # after WATCH, so no change slips by
                    for key in keys:
                        reads.exists(key)
                    exists = reads.execute()
                gone = [member for member, there in zip(members, exists) if not there]
                if not gone:
                    return 0  # leaving the pipeline's block resets it, which ends the WATCH
                pipe.multi()
                for key in RECORD_INDEX_KEYS:
                    pipe.zrem(key, *gone)
                pipe.execute()
            except WatchError:
                return 0
        return len(gone)

    def prune_expired(self, now: float, most: int = PRUNE_AT_ONCE) -> int:
        """Drop entries whose record has expired by now (the ticker calls this)."""
        due = self.redis.zrangebyscore(RECORDS_EXPIRY, "-inf", now, start=0, num=most)
        return self.drop_missing(due) if due else 0

    def is_built(self) -> bool:
        return bool(self.redis.exists(RECORDS_INDEXED))

    def build_step(self, keys_at_most: int = BUILD_STEP_KEYS) -> bool:
        """Index records saved before the index existed, a bounded step at a time; True once
        every one is in. Another process building holds the lock: False, try again later."""
        if self.is_built():
            return True
        token = uuid.uuid4().hex
        if not self.redis.set(RECORDS_INDEX_LOCK, token, nx=True, ex=BUILD_LOCK_SECONDS):
            return False
        try:
            return self._build_from(_scan_cursor(self.redis.get(RECORDS_INDEX_SCAN)), keys_at_most)
        finally:
            if self.redis.get(RECORDS_INDEX_LOCK) == token.encode():
                self.redis.delete(RECORDS_INDEX_LOCK)

    def _build_from(self, cursor: int, keys_at_most: int) -> bool:
        done = 0
        while done < keys_at_most:
            cursor, keys = self.redis.scan(cursor, match=RECORD_KEY_PATTERN, count=min(200, keys_at_most))
            self._index_keys(keys)
            done += len(keys)
            if cursor == 0:
                self.redis.set(RECORDS_INDEXED, "done")
                self.redis.delete(RECORDS_INDEX_SCAN)
                return True
        self.redis.set(RECORDS_INDEX_SCAN, cursor)
        return False

    def _index_keys(self, keys: list[bytes]) -> None:
        """Index these record keys' records as they stand: ZADD GT, so a record saved since
        (a newer fetched_at) keeps its place."""
        if not keys:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.mget(keys)
            for key in keys:
                pipe.pttl(key)
            raws, *ttls = pipe.execute()
        prefix = len(record_key_of(b""))
        with self.redis.pipeline(transaction=False) as pipe:
            for key, raw, ttl in zip(keys, raws, ttls):
                record = decode_value(key.decode(errors="replace"), raw, record_problem) if raw else None
                if record is not None and ttl != -2:
                    _queue_entry(pipe, key[prefix:], record, ttl)
            pipe.execute()


def _queue_entry(pipe: Pipeline, member: bytes, record: dict, ttl_ms: int) -> None:
    expires = math.inf if ttl_ms < 0 else time.time() + ttl_ms / 1000  # -1: no TTL (set by hand)
    queue_index_entries(pipe, member, record["kind"], record["fetched_at"].timestamp(), expires, only_newer=True)


def _scan_cursor(raw: bytes | None) -> int:
    """The saved SCAN cursor; 0 (start over, harmless: ZADD GT) when none or not a number."""
    number = int(raw) if raw and raw.isdigit() and len(raw) <= 20 else 0
    return number if number < 2**64 else 0  # SCAN cursors are unsigned 64-bit


def _floor(since: float | None) -> str:
    return "-inf" if since is None else repr(since)
