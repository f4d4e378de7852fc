"""Every Redis key name of the service, on one screen: its own keys under `metaparse:`, and
the prefixes of RQ's keys that it reads or writes next to RQ (the job hashes and queues).

The strings are the stored data's names: changing one orphans what Redis holds under the
old name (tests/test_keys.py checks that no other module spells a key of its own).
storage.py re-exports them for the modules that read them from there.
"""
from __future__ import annotations

from rq.job import Job
from rq.queue import Queue

from sources import SOURCES

PREFIX = "metaparse"

# ---- records and their index (storage.py, record_index.py) -----------------------------------


def record_key(canonical_url: str) -> str:
    return f"{PREFIX}:record:{canonical_url}"


def record_key_of(member: bytes) -> bytes:
    """record_key() of an index member as Redis gives it: bytes, so even a member that is not
    UTF-8 (written by hand) names its own key."""
    return record_key("").encode() + member


RECORD_KEY_PATTERN = record_key("*")  # SCAN MATCH: every record key, and no index key below
# The records index (record_index.py): canonical URL -> fetched_at (epoch seconds), newest last.
RECORDS_BY_TIME = f"{PREFIX}:records-by-time"
RECORDS_EXPIRY = f"{PREFIX}:records-expiry"  # zset: canonical URL -> when its record expires (epoch s)
RECORDS_INDEXED = f"{PREFIX}:records-indexed"  # "done" once records saved before the index are in it
RECORDS_INDEX_SCAN = f"{PREFIX}:records-index-scan"  # the SCAN cursor of that migration, while it runs
RECORDS_INDEX_LOCK = f"{PREFIX}:records-index-lock"  # held by the one process migrating
INDEXED_KINDS = frozenset(source.kind for source in SOURCES.values())  # each has an index of its own


def records_by_time_key(kind: str | None = None) -> str:
    """The index of every record (kind None) or of one record kind's (goodreads_book, ...)."""
    return RECORDS_BY_TIME if kind is None else f"{RECORDS_BY_TIME}:{kind}"


RECORD_INDEX_KEYS = (RECORDS_EXPIRY, records_by_time_key(), *sorted(map(records_by_time_key, INDEXED_KINDS)))
SNAPSHOTS = f"{PREFIX}:snapshots:"  # + canonical URL: newest-first list of headline snapshots

# ---- batches, completion callbacks, re-crawls ------------------------------------------------


def batch_key(batch_id: str) -> str:
    return f"{PREFIX}:batch:{batch_id}"


def batch_card_key(batch_id: str) -> str:
    """A batch's card: what GET /batches lists of it (a batch itself holds up to 500 items)."""
    return f"{PREFIX}:batch-card:{batch_id}"


BATCH_INDEX = f"{PREFIX}:batches"  # zset: batch id -> created_at in microseconds (exact in a double)
WATCHERS = f"{PREFIX}:batch-watchers:"  # + canonical URL: batches waiting on it for a callback
CALLBACKS_PENDING = f"{PREFIX}:callbacks-pending"  # zset: batch id -> created at
CALLBACK_CLAIM = f"{PREFIX}:callback-claimed:"  # + batch id: set once its callback is enqueued
RECRAWL_DUE = f"{PREFIX}:recrawl-due"  # zset: news URL -> next re-crawl time
RECRAWL_WANTED = f"{PREFIX}:recrawl-wanted"  # zset: news URL -> last time a client submitted it

# ---- the page job's save guard (storage.Storage.save_once) and the workers' claims -----------


def saved_by_key(job_id: str) -> str:
    """The generation (created_at) of job job_id that saved its record (Storage.save_once)."""
    return f"{PREFIX}:saved-by:{job_id}"


JOB_CLAIMS = f"{PREFIX}:claims"  # zset: job id -> time its claim may be taken back (jobs/worker/claims.py)
JOB_CLAIM = f"{PREFIX}:claim:"  # + job id: the queue key (or frontier lane) the job was popped from


def claim_key(job_id: str) -> str:
    return JOB_CLAIM + job_id


# ---- fetch politeness (jobs/fetch/politeness.py) and the frontier (jobs/frontier.py) ----------


def host_slots_key(host: str) -> str:
    """zset: lease token -> expiry (ms, Redis clock) of the fetches in flight to a lowercase host."""
    return f"{PREFIX}:host-slots:{host}"


def host_next_start_key(host: str) -> str:
    """The earliest time (ms, Redis clock) the next request to a lowercase host may start."""
    return f"{PREFIX}:host-next-start:{host}"


def host_delay_key(host: str) -> str:
    """A host's current delay between request starts (ms), as adapted to how it answers."""
    return f"{PREFIX}:host-delay:{host}"


def robots_key(origin: str) -> str:
    """An origin's (scheme://host:port) cached robots.txt verdict: "kind\\ntext", plain UTF-8."""
    return f"{PREFIX}:robots:{origin}"


# The frontier: page jobs waiting for their host's turn.
FRONTIER_READY = f"{PREFIX}:frontier:ready"  # zset: host -> when (ms, Redis clock) it may be given a turn
FRONTIER_BACKLOG = f"{PREFIX}:frontier:backlog"  # hash: host -> jobs waiting in its lanes
FRONTIER_LANES = f"{PREFIX}:frontier:lanes:"  # + host: list of its lanes (batches), in turn order
FRONTIER_LANE = f"{PREFIX}:frontier:lane:"  # + host + " " + lane: list of job ids, oldest first

# ---- durable acceptance (web/journal.py) -----------------------------------------------------

AOF_MARKER = f"{PREFIX}:aof-marker"  # written just before WAITAOF on its connection: the write the wait covers

# ---- the web side's counters (flask-limiter and limits add their own suffixes) --------------

RATE_LIMITS = f"{PREFIX}:limits"  # web/ratelimit.py: per-client request counters
DASHBOARD_AUTH_FAILURES = f"{PREFIX}:dashboard-auth-failures"  # counters of wrong dashboard passwords

# ---- RQ's keys, named by RQ (its public class attributes), for the reads and Lua scripts that
# go next to its API: a job's hash is RQ_JOB_PREFIX + id (Job.key_for), a queue's list
# RQ_QUEUE_PREFIX + name (Queue.key).

RQ_JOB_PREFIX = Job.redis_job_namespace_prefix
RQ_QUEUE_PREFIX = Queue.redis_queue_namespace_prefix
