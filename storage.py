"""The only module that knows Redis key names: records and batches.

Records and batches are pickled (fast, keeps datetimes) and loaded with an unpickler that
refuses every global except the datetime types, so a value tampered with in Redis can
never run code: it is logged and treated as missing.
"""
from __future__ import annotations

import io
import logging
import pickle
from datetime import date, datetime, timedelta, timezone

from redis import Redis
from redis.client import Pipeline

log = logging.getLogger(__name__)

PREFIX = "metaparse"
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


def decode_value(key: str, raw: bytes | None, kind: type) -> object | None:
    """The value stored at key, unpickled safely, when it is a `kind`; None (logged) otherwise."""
    if raw is None:
        return None
    try:
        value = safe_loads(raw)
    except Exception as exc:  # any malformed or hostile bytes: refuse, never execute
        log.error("refused stored value at %s: %s", key, exc)
        return None
    if not isinstance(value, kind):
        log.error("refused stored value at %s: a %s, not a %s", key, type(value).__name__, kind.__name__)
        return None
    return value


def record_key(canonical_url: str) -> str:
    return f"{PREFIX}:record:{canonical_url}"


def batch_key(batch_id: str) -> str:
    return f"{PREFIX}:batch:{batch_id}"


WATCHERS = f"{PREFIX}:batch-watchers:"  # + canonical URL: batches waiting on it for a callback
CALLBACKS_PENDING = f"{PREFIX}:callbacks-pending"  # zset: batch id -> created at
CALLBACK_CLAIM = f"{PREFIX}:callback-claimed:"  # + batch id: set once its callback is enqueued
RECRAWL_DUE = f"{PREFIX}:recrawl-due"  # zset: news URL -> next re-crawl time
RECRAWL_WANTED = f"{PREFIX}:recrawl-wanted"  # zset: news URL -> last time a client submitted it
SNAPSHOTS = f"{PREFIX}:snapshots:"  # + canonical URL: newest-first list of headline snapshots


# ---- fetch politeness (jobs/politeness.py) -------------------------------------------------

def host_slots_key(host: str) -> str:
    """zset: lease token -> expiry (ms, Redis clock) of the fetches in flight to a lowercase host."""
    return f"{PREFIX}:host-slots:{host}"


def host_next_start_key(host: str) -> str:
    """The earliest time (ms, Redis clock) the next request to a lowercase host may start."""
    return f"{PREFIX}:host-next-start:{host}"


def robots_key(origin: str) -> str:
    """An origin's (scheme://host:port) cached robots.txt verdict: "kind\\ntext", plain UTF-8."""
    return f"{PREFIX}:robots:{origin}"


def _queue_snapshot(pipe: Pipeline, canonical_url: str, snapshot: dict, keep: int, ttl: int) -> None:
    key = SNAPSHOTS + canonical_url
    pipe.lpush(key, dumps(snapshot))
    pipe.ltrim(key, 0, keep - 1)
    pipe.expire(key, ttl)


def make_record(url: str, kind: str, status: str, parser_version: str, data: dict | None = None,
                error: dict | None = None) -> dict:
    """A record as the design card defines it; fetched_at is now, in UTC."""
    return {"url": url, "kind": kind, "status": status, "fetched_at": datetime.now(timezone.utc),
            "parser_version": parser_version, "data": data, "error": error}


class Storage:
    def __init__(self, redis: Redis):
        self.redis = redis

    def save_record(self, record: dict, ttl: int) -> None:
        self.redis.set(record_key(record["url"]), dumps(record), ex=ttl)

    def load_record(self, canonical_url: str) -> dict | None:
        return self._load(record_key(canonical_url), dict)

    def load_records(self, canonical_urls: list[str]) -> list[dict | None]:
        """Many records in one round trip."""
        if not canonical_urls:
            return []
        keys = [record_key(url) for url in canonical_urls]
        return [decode_value(key, raw, dict) for key, raw in zip(keys, self.redis.mget(keys))]

    def scan_records(self, cursor: int = 0, count: int = 100) -> tuple[int, list[dict]]:
        """One page of all records: (next cursor, records); cursor 0 starts, and ends, the walk.

        Redis SCAN may return a record twice across pages; callers de-duplicate by url.
        """
        cursor, keys = self.redis.scan(cursor=cursor, match=f"{PREFIX}:record:*", count=count)
        raws = self.redis.mget(keys) if keys else []
        records = [decode_value(key.decode(), raw, dict) for key, raw in zip(keys, raws)]
        return int(cursor), [record for record in records if record is not None]

    def save_batch(self, batch: dict) -> None:
        self.redis.set(batch_key(batch["id"]), dumps(batch), ex=BATCH_TTL)

    def load_batch(self, batch_id: str) -> dict | None:
        return self._load(batch_key(batch_id), dict)

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

    @staticmethod
    def after_save(pipe: Pipeline, canonical_url: str, snapshot: dict | None, keep: int, ttl: int) -> list[str]:
        """Run pipe (what the caller queued), the snapshot's push (when given) and the read of the
        batches watching canonical_url in one round trip; returns those batches' ids."""
        if snapshot is not None:
            _queue_snapshot(pipe, canonical_url, snapshot, keep, ttl)
        pipe.smembers(WATCHERS + canonical_url)
        return [member.decode() for member in pipe.execute()[-1]]

    def load_snapshots(self, canonical_url: str) -> list[dict]:
        """Newest first."""
        key = SNAPSHOTS + canonical_url
        decoded = (decode_value(key, raw, dict) for raw in self.redis.lrange(key, 0, -1))
        return [snapshot for snapshot in decoded if snapshot is not None]

    def _load(self, key: str, kind: type) -> object | None:
        return decode_value(key, self.redis.get(key), kind)
