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

log = logging.getLogger(__name__)

PREFIX = "metaparse"
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


def record_key(canonical_url: str) -> str:
    return f"{PREFIX}:record:{canonical_url}"


def batch_key(batch_id: str) -> str:
    return f"{PREFIX}:batch:{batch_id}"


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
        return [self._decode(key, raw, dict) for key, raw in zip(keys, self.redis.mget(keys))]

    def scan_records(self, cursor: int = 0, count: int = 100) -> tuple[int, list[dict]]:
        """One page of all records: (next cursor, records); cursor 0 starts, and ends, the walk.

        Redis SCAN may return a record twice across pages; callers de-duplicate by url.
        """
        cursor, keys = self.redis.scan(cursor=cursor, match=f"{PREFIX}:record:*", count=count)
        raws = self.redis.mget(keys) if keys else []
        records = [self._decode(key.decode(), raw, dict) for key, raw in zip(keys, raws)]
        return int(cursor), [record for record in records if record is not None]

    def save_batch(self, batch: dict) -> None:
        self.redis.set(batch_key(batch["id"]), dumps(batch), ex=BATCH_TTL)

    def load_batch(self, batch_id: str) -> dict | None:
        return self._load(batch_key(batch_id), dict)

    def _load(self, key: str, kind: type) -> object | None:
        return self._decode(key, self.redis.get(key), kind)

    @staticmethod
    def _decode(key: str, raw: bytes | None, kind: type) -> object | None:
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
