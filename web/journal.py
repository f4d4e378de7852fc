"""Durable acceptance: a URL answered 202 survives a Redis crash that loses its last writes.

Redis runs with `appendfsync everysec`: killed with its machine (power loss, a kernel
crash), it may come back without up to a second or two of writes it had acknowledged.
So before POST /parse answers 202 the submission's writes are made durable, in one of two
ways; which one is decided per web process and Redis, and GET /healthz says it
("durability"):

"waitaof": Redis 7.2+ with its AOF on and `appendfsync always` (with everysec each wait
would last until the next fsync, up to a second: the journal is 90x faster there, see
ServerFacts.offers_waitaof). One round trip on one
connection (wait_for_aof): EXISTS of every key the answers promise, a SET of AOF_MARKER,
`WAITAOF 1 0 WAITAOF_TIMEOUT_MS`. WAITAOF waits only for the writes of its own
connection, and the submission wrote through other connections of the pool: hence the
marker, written after those writes were acknowledged. The AOF is one sequence, so once the
marker is fsynced so is everything written before it, and EXISTS (before the marker) saw
the promised keys there: a Redis that restarted and lost them in between is noticed.
Nothing is journaled. When any of it fails (an error, a key gone, no fsync within the
timeout) the request takes the journal path below instead: a 202 is never given for a
URL that is neither in an fsynced AOF nor in the journal, and the journal needs no Redis.

"journal": an older Redis, the AOF off or not fsynced at every write, or a failed WAITAOF:
1. The API submits each URL to Redis (jobs.queues.Submitter).
2. record_accepted() appends the batch's canonical URLs and sources to this process's
   journal file under DATA_DIR/journal, one write + fsync per request. Failing that, the
   request fails (500): no 202 without it.
3. Still before the 202, it checks that every URL has a record or a job in Redis now,
   and submits again any that has neither (Redis restarted between 1 and 3). One EXISTS
   of the key each answer promised (the record of a "cached" URL, the job of the others)
   settles the usual case; only when one is missing are the URLs looked at one by one.
4. A reconciler thread per web process polls Redis every POLL_SECONDS. When Redis's
   run_id changes (a restart, or a fail-over), after a step 3 that could not reach Redis,
   and once when it starts (a journal an earlier run of the web left: the web restarted
   with Redis), it reads every journal entry kept (for this Redis) and submits again each
   URL with neither a record nor a job. Submission is idempotent (one job id per canonical
   URL, enqueued with unique=True), so doing it twice is harmless.

Why nothing is lost in the journal path: a write W of step 1 can only be lost in a Redis
crash C that follows W. If step 3 saw W, the entry E was durable before C, and the
reconciler, which knew the run_id from before step 3 (the first request of a process reads
it itself), sees the run_id change after C and reads E. If step 3 did not see W (C already
happened), step 3 submitted again, or asked for a scan.

The durability is read (ServerFacts: INFO server and persistence, CONFIG GET appendfsync)
at a process's first request and again at each poll of the reconciler, so a restarted or
replaced Redis, or an AOF switched on or off, changes it within POLL_SECONDS. A server
that answers WAITAOF with an error (one that claims 7.2 without it, an ACL that forbids
it) is not asked again until a poll reads other facts (a restart, a config change).

Rotation: entries are written to one segment file per process per SEGMENT_SECONDS; a
segment is deleted once it and the last completed scan are both more than KEEP_SECONDS
old while Redis kept its run_id: by then Redis has long fsynced the submissions it holds.
Files of processes that died are read, and deleted, by the others.

Limits: the journal is local to a web host (DATA_DIR is not shared). A lost `refresh` of
a URL that still has a record is not redone, nor is the batch (GET /batches/<id>) written
in the lost second: the guarantee is that every URL answered 202 ends with a record.
Duplicate work after a crash is possible (at least once).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry
from rq.job import Job

from config import Settings
from jobs.queues import Submitter, job_id_for
from sources import Unsupported, route
from storage import AOF_MARKER, record_key

log = logging.getLogger(__name__)

SEGMENT_SECONDS = 60
KEEP_SECONDS = 120
POLL_SECONDS = 1.0
SUFFIX = ".journal"

WAITAOF, JOURNAL = "waitaof", "journal"  # the durabilities GET /healthz reports
WAITAOF_SINCE = (7, 2)
# everysec fsyncs about once a second (a slow disk: Redis postpones up to 2 s); past this
# the request is journaled instead.
WAITAOF_TIMEOUT_MS = 2000


@dataclass(frozen=True)
class ServerFacts:
    """What the durability is decided from, as the connected Redis reports it."""

    run_id: str
    version: str
    aof_enabled: bool
    appendfsync: str | None  # None: CONFIG GET refused (managed Redis); WAITAOF's timeout covers "no" then

    def offers_waitaof(self) -> bool:
        """WAITAOF exists (7.2+), has an AOF to wait for, and Redis fsyncs it at every write.
        With `appendfsync everysec` each WAITAOF waits for the next once-a-second fsync: POST
        /parse took 1,008 ms (p50) against 11 ms with the journal, for the same guarantee. With
        `no` it never returns in time; unknown (CONFIG GET refused) may be either."""
        return version_tuple(self.version) >= WAITAOF_SINCE and self.aof_enabled and self.appendfsync == "always"

    def describe(self) -> str:
        aof = f"AOF on, appendfsync {self.appendfsync or 'unknown'}" if self.aof_enabled else "AOF off"
        return f"Redis {self.version}, {aof}"


def version_tuple(version: str) -> tuple[int, ...]:
    """"7.2.5" -> (7, 2); a valkey or other fork reports its Redis-compatible version here."""
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


def server_facts(client: Redis) -> ServerFacts:
    """One round trip. INFO takes one section per call before Redis 7 (6.2 is supported)."""
    with client.pipeline(transaction=False) as pipe:
        pipe.info("server")
        pipe.info("persistence")
        pipe.config_get("appendfsync")
        server, persistence, fsync = pipe.execute(raise_on_error=False)
    for reply in (server, persistence):
        if isinstance(reply, Exception):
            raise reply
    appendfsync = None if isinstance(fsync, Exception) else fsync.get("appendfsync")
    return ServerFacts(str(server["run_id"]), str(server["redis_version"]),
                       bool(persistence.get("aof_enabled")), appendfsync)


def redis_tag(redis_url: str) -> str:
    """Names a Redis in the journal without writing its URL (and password) to disk."""
    return hashlib.sha256(redis_url.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Entry:
    at: float
    url: str  # canonical
    source: str
    redis: str  # redis_tag() of the Redis it was submitted to


class Journal:
    """Append-only segment files, one per process and SEGMENT_SECONDS, in one directory."""

    def __init__(self, directory: Path, redis: str = "", owner: str | None = None):
        self.directory = directory
        self.redis = redis  # the tag written with, and read back, entries
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}"
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._segment: int | None = None

    def append(self, entries: Iterable[tuple[str, str]], at: float | None = None) -> None:
        """Write the entries and fsync them: on return they survive a crash of anything."""
        at = time.time() if at is None else at
        lines = (json.dumps({"t": at, "u": url, "s": source, "r": self.redis}, separators=(",", ":")) + "\n"
                 for url, source in entries)
        data = "".join(lines).encode()
        if not data:
            return
        with self._lock:
            fd = self._segment_fd(int(at // SEGMENT_SECONDS))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)

    def _segment_fd(self, segment: int) -> int:
        if self._segment != segment or self._fd is None:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{segment}-{self.owner}{SUFFIX}"
            created = not path.exists()
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._segment = segment
            if created:  # the new file's name must survive a crash too
                directory = os.open(self.directory, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
        return self._fd

    def segments(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.directory.glob(f"*{SUFFIX}"):
            start, _, _ = path.name.partition("-")
            if start.isdigit():
                found.append((int(start), path))
        return sorted(found)

    def entries(self) -> list[Entry]:
        """Every entry kept for this journal's Redis, oldest first; a torn last line (a writer
        killed mid-write) is skipped."""
        found = []
        for _, path in self.segments():
            try:
                lines = path.read_bytes().splitlines()
            except FileNotFoundError:
                continue  # rotated away meanwhile
            for line in lines:
                try:
                    item = json.loads(line)
                    entry = Entry(float(item["t"]), item["u"], item["s"], item.get("r", ""))
                except (ValueError, KeyError, TypeError):
                    continue
                if entry.redis == self.redis:
                    found.append(entry)
        return found

    def rotate(self, last_scan: float, now: float | None = None) -> int:
        """Delete the segments that ended, like the last scan, more than KEEP_SECONDS ago."""
        now = time.time() if now is None else now
        removed = 0
        for segment, path in self.segments():
            if max((segment + 1) * SEGMENT_SECONDS, last_scan) + KEEP_SECONDS < now:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def resubmit_missing(connection: Redis, settings: Settings, entries: Iterable[tuple[str, str]]) -> int:
    """Submit again every URL that has neither a record nor a job; how many were."""
    pending = dict(entries)  # canonical URL -> source
    if not pending:
        return 0
    with connection.pipeline(transaction=False) as pipe:
        for url in pending:
            pipe.exists(record_key(url), Job.key_for(job_id_for(url)))  # how many of the two: 0 is missing
        found = pipe.execute()
    missing = [url for url, count in zip(pending, found) if not count]
    submitter = Submitter(connection, settings)
    for url in missing:
        try:
            routed = route(url, allow_any_site=True)
        except Unsupported as exc:
            log.error("journal: cannot route %s again: %s", url, exc.reason)
            continue
        if routed.source.name != pending[url]:
            log.error("journal: %s routes to %s now, not %s; not submitted", url, routed.source.name, pending[url])
            continue
        submitter.submit(routed)
    return len(missing)


@dataclass
class Reconciler:
    """The thread that watches this process's Redis (one per process): keeps its facts and so
    the durability current, and re-submits journal entries after Redis restarts."""

    journal: Journal
    settings: Settings
    run_id: str | None = None  # of the Redis the entries so far are in (None: not known yet)
    scan_requested: bool = False
    stable_since: float | None = None  # when run_id was learnt, or the last scan completed
    scans: int = 0
    resubmitted: int = 0
    facts: ServerFacts | None = None  # of the Redis connected now (None: not read yet)
    waitaof_refused: ServerFacts | None = None  # the facts under which WAITAOF answered an error
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _aof_client: Redis | None = field(default=None, repr=False)

    @property
    def durability(self) -> str:
        facts = self.facts
        if facts is None or facts == self.waitaof_refused or not facts.offers_waitaof():
            return JOURNAL
        return WAITAOF

    def learn(self, connection: Redis) -> None:
        """Before a request relies on them: the durability, and the run_id (so that a restart
        after it is seen)."""
        if self.facts is None or self.run_id is None:
            facts = server_facts(connection)
            self.note(facts)
            self._adopt(facts.run_id)

    def note(self, facts: ServerFacts) -> None:
        first, before = self.facts is None, self.durability
        self.facts = facts
        if facts != self.waitaof_refused:
            self.waitaof_refused = None  # a restart, a new config: WAITAOF may be there now
        if first or self.durability != before:
            log.info("journal: durability %s (%s)", self.durability, facts.describe())

    def refuse_waitaof(self, error: Exception) -> None:
        """WAITAOF answered an error: journal until a poll reads other facts (a restart, a new config)."""
        self.waitaof_refused = self.facts
        log.warning("journal: WAITAOF refused (%s): journaling accepted URLs while %s", error,
                    self.facts.describe() if self.facts else "this Redis runs")

    def aof_client(self) -> Redis:
        """The connection WAITAOF waits on: the app's times a command out after a second, and
        everysec fsyncs about once a second. No retry: a failure goes to the journal at once."""
        if self._aof_client is None:
            self._aof_client = Redis.from_url(
                self.settings.redis_url, socket_timeout=WAITAOF_TIMEOUT_MS / 1000 + 1, socket_connect_timeout=1,
                retry=Retry(NoBackoff(), 0))
        return self._aof_client

    def _adopt(self, run_id: str) -> bool:
        with self._lock:
            if self.run_id is not None:
                return False
            self.run_id, self.stable_since = run_id, time.time()
            return True

    def ensure_running(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="journal-reconciler", daemon=True)
            self._thread.start()

    def request_scan(self) -> None:
        self.scan_requested = True

    def _run(self) -> None:
        client = Redis.from_url(self.settings.redis_url, socket_timeout=5, socket_connect_timeout=3)
        while True:
            try:
                self.step(client)
            except RedisError as exc:
                log.debug("journal: Redis unreachable: %s", exc)
            except Exception:  # keep reconciling whatever happens
                log.exception("journal: reconcile step failed")
            time.sleep(POLL_SECONDS)

    def step(self, client: Redis) -> None:
        facts = server_facts(client)
        self.note(facts)
        run_id = facts.run_id
        if self._adopt(run_id) and not self.scan_requested:
            return
        if run_id != self.run_id or self.scan_requested:
            if self.run_id is not None and run_id != self.run_id:
                log.warning("journal: Redis restarted (run_id %s -> %s): checking journaled URLs", self.run_id, run_id)
            self.scan_requested = False
            try:
                entries = self.journal.entries()
                count = resubmit_missing(client, self.settings, ((e.url, e.source) for e in entries))
            except BaseException:
                self.scan_requested = True
                raise
            self.run_id, self.stable_since = run_id, time.time()
            self.scans += 1
            self.resubmitted += count
            if count:
                log.warning("journal: re-submitted %d of %d journaled URLs", count, len(entries))
        elif self.stable_since is not None:
            self.journal.rotate(self.stable_since)


_reconcilers: dict[tuple[int, Path, str], Reconciler] = {}
_reconcilers_lock = threading.Lock()


def reconciler_for(settings: Settings) -> Reconciler:
    """This process's journal and reconciler for these settings (a forked child gets its own).
    Its first step scans: what an earlier run of the web journaled is replayed once, whatever
    the durability now (in "waitaof" nothing new is journaled, but an old journal may be there)."""
    key = (os.getpid(), settings.data_dir, settings.redis_url)
    with _reconcilers_lock:
        reconciler = _reconcilers.get(key)
        if reconciler is None:
            for other in [k for k in _reconcilers if k[0] != key[0]]:
                del _reconcilers[other]  # the parent's, in a forked child: its thread is not here
            journal = Journal(settings.data_dir / "journal", redis_tag(settings.redis_url))
            reconciler = _reconcilers[key] = Reconciler(journal, settings, scan_requested=True)
    reconciler.ensure_running()
    return reconciler


def durability(connection: Redis, settings: Settings) -> dict:
    """GET /healthz's part: how this process makes a 202 durable, and the Redis it decided by."""
    reconciler = reconciler_for(settings)
    reconciler.learn(connection)
    return {"durability": reconciler.durability, "redis_version": reconciler.facts.version}


def record_accepted(connection: Redis, settings: Settings, items: Iterable[dict]) -> None:
    """The API's hook, after submitting and before answering 202 (see the module docstring).

    items are the API's answers (canonical_url, source, status, job_id)."""
    items = list(items)
    if not items:
        return
    reconciler = reconciler_for(settings)
    if durability_now(reconciler, connection) == WAITAOF and fsynced_in_aof(reconciler, items):
        return
    journal_accepted(connection, settings, reconciler, items)


def durability_now(reconciler: Reconciler, connection: Redis) -> str:
    try:
        reconciler.learn(connection)
    except RedisError as exc:  # cannot tell: the journal path needs no Redis to make the URLs durable
        log.warning("journal: cannot read Redis's durability (%s): journaling", exc)
        return JOURNAL
    return reconciler.durability


def fsynced_in_aof(reconciler: Reconciler, items: list[dict]) -> bool:
    """True once Redis's own AOF holds every promised key, fsynced. False sends the request to
    the journal: whatever goes wrong here, the 202 must not go out for a URL that is neither
    in an fsynced AOF nor in the journal."""
    keys = promised_keys(items)
    try:
        found, wrote, waited = wait_for_aof(reconciler.aof_client(), keys)
    except RedisError as exc:  # Redis went away (or was restarted) under the wait
        found = wrote = waited = exc
    if isinstance(waited, ResponseError):  # WAITAOF itself refused: not asked again for these facts
        reconciler.refuse_waitaof(waited)
        return False
    failure = aof_failure(found, wrote, waited, len(keys))
    if failure:
        log.warning("journal: %s: journaling %d accepted URLs", failure, len(items))
    return failure is None


def aof_failure(found: object, wrote: object, waited: object, promised: int) -> str | None:
    """Why a wait_for_aof round did not make the promised keys durable; None when it did."""
    for reply in (found, wrote, waited):
        if isinstance(reply, Exception):  # Redis away; EXISTS or the marker refused (OOM, a read-only replica)
            return f"WAITAOF round failed ({reply})"
    if found != promised:
        return f"{promised - found} of {promised} promised keys gone before WAITAOF (Redis restarted?)"
    if waited[0] < 1:
        return f"Redis's AOF not fsynced within {WAITAOF_TIMEOUT_MS} ms"
    return None


def wait_for_aof(client: Redis, keys: set[str]) -> list:
    """EXISTS keys, SET AOF_MARKER, WAITAOF 1 0: on one connection, in this order (why: the
    module docstring); the three replies, an error as an exception object."""
    with client.pipeline(transaction=False) as pipe:  # not MULTI: WAITAOF does not block inside one
        pipe.exists(*keys)
        pipe.set(AOF_MARKER, 1)
        pipe.waitaof(1, 0, WAITAOF_TIMEOUT_MS)
        return pipe.execute(raise_on_error=False)


def journal_accepted(connection: Redis, settings: Settings, reconciler: Reconciler, items: list[dict]) -> None:
    """Steps 2 and 3 of the module docstring."""
    entries = [(item["canonical_url"], item["source"]) for item in items]
    reconciler.journal.append(entries)
    try:
        reconciler.learn(connection)
        missing = 0 if all_still_there(connection, items) else resubmit_missing(connection, settings, entries)
    except RedisError as exc:
        log.warning("journal: could not check %d accepted URLs (%s); the reconciler will", len(entries), exc)
        reconciler.request_scan()
        return
    if missing:
        log.warning("journal: %d accepted URLs were missing from Redis (restarted meanwhile): submitted again", missing)


def promised_keys(items: list[dict]) -> set[str]:
    """The key each answer promised: the record of a "cached" URL, the job of the others."""
    return {record_key(item["canonical_url"]) if item["status"] == "cached" else Job.key_for(item["job_id"])
            for item in items}


def all_still_there(connection: Redis, items: list[dict]) -> bool:
    """Step 3's quick form, one command: does every URL still have what its answer promised?
    Else resubmit_missing() looks URL by URL."""
    keys = promised_keys(items)
    return connection.exists(*keys) == len(keys)
