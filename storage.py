"""Records, batches and what else the service keeps in Redis, read and written safely.

Every key name is in keys.py (re-exported here for the modules that import it from storage).

A record is saved with its entries in the records index (sorted sets by fetch time, and
by expiry time) in one transaction; record_index.py reads and tends that index.

Records and batches are pickled (fast, keeps datetimes) and loaded with an unpickler that
refuses every global except the datetime types, so a value tampered with in Redis can
never run code. What it loads must then be plain data of the right shape before anyone
reads it (decode_value): JSON types and datetimes only, at most MAX_STORED_BYTES of
pickle, MAX_VALUES values and MAX_TEXT characters counted at every reference (a pickle
can refer to one list many times: 297 bytes can unfold into megabytes of JSON), nested at
most MAX_DEPTH deep, and the fields the service reads of the type it reads them as
(record_problem, batch_problem, snapshot_problem). Anything else is logged and treated as
missing, never answered and never a 500.
"""
from __future__ import annotations

import io
import logging
import math
import pickle
import time
from collections.abc import Callable, Collection
from datetime import date, datetime, timedelta, timezone

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import ResponseError, WatchError

# Key names live in keys.py; those other modules read from here are re-exported.
from keys import (  # noqa: F401
    AOF_MARKER, BATCH_INDEX, CALLBACKS_PENDING, CALLBACK_CLAIM, DASHBOARD_AUTH_FAILURES, FRONTIER_BACKLOG,
    FRONTIER_LANE, FRONTIER_LANES, FRONTIER_READY, INDEXED_KINDS, JOB_CLAIM, JOB_CLAIMS, PREFIX, RECORDS_BY_TIME,
    RECORDS_EXPIRY, RECORDS_INDEXED, RECORDS_INDEX_LOCK, RECORDS_INDEX_SCAN, RECORD_INDEX_KEYS, RECORD_KEY_PATTERN,
    RECRAWL_DUE, RECRAWL_WANTED, SNAPSHOTS, WATCHERS, batch_card_key, batch_key, claim_key, host_delay_key,
    host_next_start_key, host_slots_key, record_key, record_key_of, records_by_time_key, robots_key, saved_by_key,
)
from sources import NEWS

log = logging.getLogger(__name__)

# Protocol 5 (Python's default is 4): for records of plain data both write the same bytes
# after the header, and dumps (~8 us) and safe_loads (~7 us) of a Goodreads record (~1.7 kB)
# take the same time; 5 only adds out-of-band buffers, which we never use. Either reads both.
PICKLE_PROTOCOL = 5
BATCH_TTL = 7 * 86400
# The only classes a stored value may name; everything else is plain dict/list/str/number.
ALLOWED_GLOBALS = {
    ("datetime", "datetime"): datetime,
    ("datetime", "date"): date,
    ("datetime", "timedelta"): timedelta,
    ("datetime", "timezone"): timezone,
}
RECORD_KEYS = ("url", "kind", "status", "fetched_at", "parser_version", "data", "error")
RECORD_STATUSES = frozenset({"done", "failed"})
# The bodies a batch's completion callback may take (jobs/callbacks.py builds each one).
CALLBACK_FORMATS = frozenset({"json", "slack"})
# Bounds of a stored value, far above what the service writes (a news front's record is ~50 kB
# and ~2,000 values) and far below what would hurt a web process to answer.
MAX_STORED_BYTES = 8 * 1024 * 1024
MAX_VALUES = 200_000  # containers and scalars, each reference counted
MAX_TEXT = 32 * 1024 * 1024  # characters in strings and keys, each reference counted
MAX_DEPTH = 32
MAX_INTEGER = 2**63  # JSON readers lose larger integers; Python refuses to print > 4,300 digits
CONTAINERS = frozenset({dict, list, tuple})
LEAVES = frozenset({bool, type(None), datetime})
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
Shape = Callable[[object], "str | None"]  # why a value is not of a stored kind's shape, or None


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> type:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None


def dumps(value: object) -> bytes:
    return pickle.dumps(value, protocol=PICKLE_PROTOCOL)


def safe_loads(raw: bytes) -> object:
    """Unpickle plain data only; raises pickle.UnpicklingError on any other global."""
    return _SafeUnpickler(io.BytesIO(raw)).load()


def decode_value(key: str, raw: bytes | ResponseError | None, shape: Shape) -> dict | None:
    """The value stored at key, unpickled safely, when it is plain data of the given shape
    (record_problem, batch_problem, snapshot_problem); None (logged) otherwise. raw may be
    the error of the read (a pipeline's, unraised): a key of another Redis type is a value
    of the wrong shape too; any other error is raised."""
    if raw is None:
        return None
    if isinstance(raw, ResponseError):
        if not str(raw).startswith("WRONGTYPE"):
            raise raw
        log.error("refused stored value at %s: a Redis value of another type", key)
        return None
    if len(raw) > MAX_STORED_BYTES:
        log.error("refused stored value at %s: %d bytes, over %d", key, len(raw), MAX_STORED_BYTES)
        return None
    try:
        value = safe_loads(raw)
    except Exception as exc:  # any malformed or hostile bytes: refuse, never execute
        log.error("refused stored value at %s: %s", key, exc)
        return None
    problem = plain_data_problem(value) or shape(value)
    if problem is not None:
        log.error("refused stored value at %s: %s", key, problem)
        return None
    return value


# ---- what a stored value may be --------------------------------------------------------------


def plain_data_problem(value: object) -> str | None:
    """None when value is plain data within the bounds above, else what is wrong with it.

    One pass over every reference (not every distinct object), so a value that refers to
    one list a million times is refused before anything unfolds it. Children are checked
    where they are met, which keeps a news record's ~2,000 values to ~100 us."""
    values = text = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH}"
        if type(node) not in CONTAINERS:
            problem = _leaf_problem(node)
            if problem:
                return problem
            continue
        values += len(node) + 1
        if values > MAX_VALUES:  # before the children are walked: one list may hold millions
            return f"more than {MAX_VALUES} values (shared or cyclic references count each time)"
        children, problem, key_text = _children(node)
        if problem:
            return problem
        text += key_text
        for child in children:
            kind = type(child)
            if kind is str:
                text += len(child)
                if not (child.isascii() or _is_unicode(child)):
                    return "text with lone surrogates"
            elif kind in CONTAINERS:
                stack.append((child, depth + 1))
            elif problem := _leaf_problem(child):
                return problem
        if text > MAX_TEXT:
            return f"more than {MAX_TEXT} characters of text"
    return None


def _children(node: dict | list | tuple) -> tuple[Collection, str | None, int]:
    """(the node's children, a problem with its keys or None, the characters of its keys)."""
    if type(node) is not dict:
        return node, None, 0
    key_text = 0
    for key in node:
        if type(key) is not str:
            return (), f"a {type(key).__name__} key", 0
        if not (key.isascii() or _is_unicode(key)):
            return (), "a key with lone surrogates", 0
        key_text += len(key)
    return node.values(), None, key_text


def _leaf_problem(leaf: object) -> str | None:
    kind = type(leaf)
    if kind in LEAVES:
        return None
    if kind is str:
        return None if leaf.isascii() or _is_unicode(leaf) else "text with lone surrogates"
    if kind is int:
        return None if -MAX_INTEGER < leaf < MAX_INTEGER else "an integer out of range"
    if kind is float:
        return None if math.isfinite(leaf) else "a number that is not finite"
    return f"a {kind.__name__}"


def _is_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def record_problem(value: object) -> str | None:
    """The fields of a record the service reads, of the types it reads them as: a done record
    has its data (a news front's with its headlines), a failed one its error."""
    if type(value) is not dict:
        return f"a {type(value).__name__}, not a dict (a record)"
    wrong = _wrong_fields(value, {"url": str, "kind": str, "status": str, "fetched_at": datetime})
    if wrong:
        return wrong
    status, data, error = value["status"], value.get("data"), value.get("error")
    if status not in RECORD_STATUSES:
        return f"record status {status!r}"
    if type(data if status == "done" else error) is not dict or not (error is None or type(error) is dict):
        return "a done record has its data, a failed one its error (objects)"
    if status == "done" and (value["kind"] == NEWS.kind or "headlines" in data):
        return _headlines_problem(data.get("headlines"))
    return None


def _headlines_problem(headlines: object) -> str | None:
    if type(headlines) is not list or not all(type(item) is dict and type(item.get("url")) is str
                                              for item in headlines):
        return "headlines are a list of objects with a url"
    return None


def batch_problem(value: object) -> str | None:
    if type(value) is not dict:
        return f"a {type(value).__name__}, not a dict (a batch)"
    wrong = _wrong_fields(value, {"id": str, "created_at": datetime, "items": list})
    if wrong:
        return wrong
    if not (value.get("callback_url") is None or type(value["callback_url"]) is str):
        return "batch callback_url is a string or null"
    callback_format = value.get("callback_format", "json")  # absent: a batch saved before it existed
    if type(callback_format) is not str or callback_format not in CALLBACK_FORMATS:
        return f"batch callback_format is one of {sorted(CALLBACK_FORMATS)}"
    item_fields = {"url": object, "canonical_url": str, "source": str, "job_id": str}
    problems = (_wrong_fields(item, item_fields) if type(item) is dict else "a batch item is a dict"
                for item in value["items"])
    return next((problem for problem in problems if problem), None)


def batch_card_problem(value: object) -> str | None:
    if type(value) is not dict:
        return f"a {type(value).__name__}, not a dict (a batch card)"
    return _wrong_fields(value, {"batch_id": str, "created_at": datetime, "total": int, "urls": int,
                                 "callback": bool})


def snapshot_problem(value: object) -> str | None:
    if type(value) is not dict:
        return f"a {type(value).__name__}, not a dict (a snapshot)"
    return _wrong_fields(value, {"fetched_at": datetime, "headlines": list}) or _headlines_problem(value["headlines"])


def _wrong_fields(value: dict, fields: dict[str, type]) -> str | None:
    for name, kind in fields.items():
        if name not in value:
            return f"no {name!r}"
        if kind is not object and type(value[name]) is not kind:
            return f"{name!r} is a {type(value[name]).__name__}, not a {kind.__name__}"
        if kind is datetime and value[name].utcoffset() is None:
            return f"{name!r} has no time zone"  # comparing it with an aware time would raise
    return None


BatchPosition = tuple[int, str]  # (created_at in microseconds, batch id): where a listing stopped


SAVE_GUARD_SECONDS = 86400  # a save-once guard outlives every run of its job: as long as RQ keeps the job


def _queue_snapshot(pipe: Pipeline, canonical_url: str, snapshot: dict, keep: int, ttl: int) -> None:
    key = SNAPSHOTS + canonical_url
    pipe.lpush(key, dumps(snapshot))
    pipe.ltrim(key, 0, keep - 1)
    pipe.expire(key, ttl)


def micros(moment: datetime) -> int:
    """A time as whole microseconds since the epoch: an index score that survives text exactly."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def _queue_record(pipe: Pipeline, record: dict, ttl: int) -> None:
    """The record and its places in the records index (record_index.py), in one transaction."""
    pipe.set(record_key(record["url"]), dumps(record), ex=ttl)
    queue_index_entries(pipe, record["url"], record["kind"], record["fetched_at"].timestamp(), time.time() + ttl)


def queue_index_entries(pipe: Pipeline, member: str | bytes, kind: str, fetched: float, expires: float,
                        only_newer: bool = False) -> None:
    """A record's places in the records index: by fetch time (all records, and its kind's)
    and by expiry. only_newer (ZADD GT): an entry already there with a later time keeps it."""
    kind_keys = [records_by_time_key(kind)] if kind in INDEXED_KINDS else []
    for key in (records_by_time_key(), *kind_keys):
        pipe.zadd(key, {member: fetched}, gt=only_newer)
    pipe.zadd(RECORDS_EXPIRY, {member: expires}, gt=only_newer)


def make_record(url: str, kind: str, status: str, parser_version: str, data: dict | None = None,
                error: dict | None = None) -> dict:
    """A record as the design card defines it; fetched_at is now, in UTC."""
    return {"url": url, "kind": kind, "status": status, "fetched_at": datetime.now(timezone.utc),
            "parser_version": parser_version, "data": data, "error": error}


class Storage:
    def __init__(self, redis: Redis):
        self.redis = redis

    def save_record(self, record: dict, ttl: int) -> None:
        """Saved with its index entries, in one transaction."""
        with self.redis.pipeline() as pipe:
            _queue_record(pipe, record, ttl)
            pipe.execute()

    # ---- saved once per job generation (the page job: jobs/tasks.py) ------------------------

    def saved_by(self, job_id: str) -> bytes | None:
        """The generation of job job_id whose run saved its record (save_once); None: none did."""
        return self.redis.get(saved_by_key(job_id))

    def save_once(self, record: dict, ttl: int, job_id: str, generation: bytes,
                  snapshot: dict | None = None, keep: int = 0) -> list[str] | None:
        """Save the record (with a news page's snapshot, the newest `keep` kept) and a guard
        naming the job's generation, in one transaction that also reads the batches watching
        the URL: their ids. None, and nothing written, when this generation saved already."""
        key, url = saved_by_key(job_id), record["url"]
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                if pipe.get(key) == generation:
                    pipe.unwatch()
                    return None
                pipe.multi()
                _queue_record(pipe, record, ttl)
                if snapshot is not None:
                    _queue_snapshot(pipe, url, snapshot, keep, ttl)
                pipe.set(key, generation, ex=SAVE_GUARD_SECONDS)
                pipe.smembers(WATCHERS + url)
                watching = pipe.execute()[-1]
            except WatchError:
                return None  # another run of this generation saved it this instant
        return [member.decode() for member in watching]

    def load_record(self, canonical_url: str) -> dict | None:
        return self._load(record_key(canonical_url), record_problem)

    def load_records(self, canonical_urls: list[str]) -> list[dict | None]:
        """Many records in one round trip."""
        if not canonical_urls:
            return []
        keys = [record_key(url) for url in canonical_urls]
        return [decode_value(key, raw, record_problem) for key, raw in zip(keys, self.redis.mget(keys))]

    def save_batch(self, batch: dict) -> None:
        """The batch, its card and its place in the index (newest last), in one round trip;
        index members older than BATCH_TTL go, as their batches have expired."""
        created, batch_id = micros(batch["created_at"]), batch["id"]
        card = {"batch_id": batch_id, "created_at": batch["created_at"], "total": len(batch["items"]),
                "urls": len({item["canonical_url"] for item in batch["items"]}),
                "callback": batch.get("callback_url") is not None}
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(batch_key(batch_id), dumps(batch), ex=BATCH_TTL)
            pipe.set(batch_card_key(batch_id), dumps(card), ex=BATCH_TTL)
            pipe.zadd(BATCH_INDEX, {batch_id: created})
            pipe.zremrangebyscore(BATCH_INDEX, "-inf", f"({micros(datetime.now(timezone.utc)) - BATCH_TTL * 10**6}")
            pipe.execute()

    def load_batch(self, batch_id: str) -> dict | None:
        return self._load(batch_key(batch_id), batch_problem)

    def recent_batches(self, limit: int, after: BatchPosition | None = None) -> tuple[list[dict], BatchPosition | None]:
        """Up to `limit` batch cards, newest first, after the position `after` (None: from the
        newest); and the position to continue from, None when no card is left. A member whose
        card has gone (expired, or refused by decode_value) is skipped and dropped."""
        cards: list[dict] = []
        while True:
            wanted = limit + 1 - len(cards)  # one more than the page: is there a next page?
            entries = self._index_after(after, wanted)
            raws = self.redis.mget([batch_card_key(batch_id) for batch_id, _ in entries]) if entries else []
            for (batch_id, created), raw in zip(entries, raws):
                card = decode_value(batch_card_key(batch_id), raw, batch_card_problem)
                if card is None:
                    self.redis.zrem(BATCH_INDEX, batch_id)
                elif len(cards) == limit:
                    return cards, (micros(cards[-1]["created_at"]), cards[-1]["batch_id"])
                else:
                    cards.append(card)
            if len(entries) < wanted:
                return cards, None
            after = (entries[-1][1], entries[-1][0])

    def _index_after(self, after: BatchPosition | None, count: int) -> list[tuple[str, int]]:
        """(batch id, created) of the next `count` index members after `after`, newest first.
        Members of one score come in descending id order (Redis orders ties by member), so
        the ties of the position's own score are read whole and cut at its id: exact pages
        whatever the ties, in one round trip."""
        if after is None:
            entries = self.redis.zrevrangebyscore(BATCH_INDEX, "+inf", "-inf", start=0, num=count, withscores=True)
            return [(member.decode(), int(score)) for member, score in entries]
        created, last_id = after
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(BATCH_INDEX, created, created)
            pipe.zrevrangebyscore(BATCH_INDEX, f"({created}", "-inf", start=0, num=count, withscores=True)
            ties, older = pipe.execute()
        same = [(member.decode(), created) for member in sorted(ties, reverse=True) if member.decode() < last_id]
        return (same + [(member.decode(), int(score)) for member, score in older])[:count]

    def delete_record(self, canonical_url: str) -> bool:
        """Delete a page's record, its places in the records index, its headline snapshots and
        its place on the re-crawl schedule, in one transaction; False when there was no record."""
        with self.redis.pipeline() as pipe:
            pipe.delete(record_key(canonical_url))
            for key in RECORD_INDEX_KEYS:
                pipe.zrem(key, canonical_url)
            pipe.delete(SNAPSHOTS + canonical_url)
            pipe.zrem(RECRAWL_DUE, canonical_url)
            pipe.zrem(RECRAWL_WANTED, canonical_url)
            deleted, *_ = pipe.execute()
        return bool(deleted)

    # ---- completion callbacks --------------------------------------------------------------

    def watch_batch(self, batch_id: str, canonical_urls: list[str]) -> None:
        """Remember that batch_id wants a callback when all its URLs are finished."""
        with self.redis.pipeline() as pipe:
            for url in set(canonical_urls):
                pipe.sadd(WATCHERS + url, batch_id)
                pipe.expire(WATCHERS + url, BATCH_TTL)
            pipe.zadd(CALLBACKS_PENDING, {batch_id: datetime.now(timezone.utc).timestamp()})
            pipe.execute()

    def batches_watching(self, canonical_url: str) -> list[str]:
        return [member.decode() for member in self.redis.smembers(WATCHERS + canonical_url)]

    def pending_callbacks(self, limit: int = 500) -> list[str]:
        return [member.decode() for member in self.redis.zrange(CALLBACKS_PENDING, 0, limit - 1)]

    def claim_callback(self, batch_id: str) -> bool:
        """True exactly once per batch, for whoever enqueues its callback."""
        claimed = self.redis.set(CALLBACK_CLAIM + batch_id, 1, nx=True, ex=BATCH_TTL)
        self.redis.zrem(CALLBACKS_PENDING, batch_id)
        return bool(claimed)

    def drop_pending_callback(self, batch_id: str) -> None:
        self.redis.zrem(CALLBACKS_PENDING, batch_id)

    # ---- news re-crawl ---------------------------------------------------------------------

    def want_recrawl(self, canonical_url: str, due_at: float, now: float) -> None:
        """A client asked for this news page: re-crawl it on schedule (first due at due_at)."""
        with self.redis.pipeline() as pipe:
            pipe.zadd(RECRAWL_DUE, {canonical_url: due_at}, nx=True)
            pipe.zadd(RECRAWL_WANTED, {canonical_url: now})
            pipe.execute()

    def due_recrawls(self, now: float, limit: int = 100) -> list[tuple[str, float]]:
        """(URL, last time a client wanted it) for pages whose re-crawl is due."""
        urls = [url.decode() for url in self.redis.zrangebyscore(RECRAWL_DUE, "-inf", now, start=0, num=limit)]
        wanted = self.redis.zmscore(RECRAWL_WANTED, urls) if urls else []
        return [(url, score or 0.0) for url, score in zip(urls, wanted)]

    def schedule_recrawl(self, canonical_url: str, due_at: float) -> None:
        self.redis.zadd(RECRAWL_DUE, {canonical_url: due_at})

    def forget_recrawl(self, canonical_url: str) -> None:
        with self.redis.pipeline() as pipe:
            pipe.zrem(RECRAWL_DUE, canonical_url)
            pipe.zrem(RECRAWL_WANTED, canonical_url)
            pipe.execute()

    # ---- headline snapshots ----------------------------------------------------------------

    def push_snapshot(self, canonical_url: str, snapshot: dict, keep: int, ttl: int) -> None:
        with self.redis.pipeline() as pipe:
            _queue_snapshot(pipe, canonical_url, snapshot, keep, ttl)
            pipe.execute()

    def load_snapshots(self, canonical_url: str) -> list[dict]:
        """Newest first."""
        key = SNAPSHOTS + canonical_url
        try:
            raws = self.redis.lrange(key, 0, -1)
        except ResponseError as exc:  # not a list: refused (and logged) by decode_value
            raws = [exc]
        decoded = (decode_value(key, raw, snapshot_problem) for raw in raws)
        return [snapshot for snapshot in decoded if snapshot is not None]

    def _load(self, key: str, shape: Shape) -> dict | None:
        try:
            raw = self.redis.get(key)
        except ResponseError as exc:  # decode_value refuses WRONGTYPE and raises the rest
            raw = exc
        return decode_value(key, raw, shape)
