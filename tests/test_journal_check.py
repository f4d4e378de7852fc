"""journal.record_accepted's check before the 202: one EXISTS when every answer's key is
there, and URL by URL (submitting again what Redis lost) when one is not."""
from __future__ import annotations

import os

import pytest
from rq.job import Job

import journal
import parsers
from config import load_settings
from jobs.queues import Submitter, job_id_for, make_queue
from sources import route
from storage import Storage, make_record, record_key

CACHED = "https://www.goodreads.com/book/show/1"
QUEUED = "https://www.goodreads.com/book/show/2"


@pytest.fixture
def settings(redis_url, tmp_path):
    return load_settings({"REDIS_URL": redis_url, "DATA_DIR": str(tmp_path)})


@pytest.fixture
def answers(redis_client, settings) -> list[dict]:
    """What POST /parse answered for a cached page and a queued one."""
    record = make_record(CACHED, "goodreads_book", "done", parsers.PARSER_VERSION, data={"title": "A book"})
    Storage(redis_client).save_record(record, 3600)
    submissions = Submitter(redis_client, settings).submit_many([route(CACHED), route(QUEUED)])
    assert [s.status for s in submissions] == ["cached", "queued"]
    return [{"canonical_url": s.route.canonical_url, "source": "goodreads", "status": s.status, "job_id": s.job_id}
            for s in submissions]


def test_every_promised_key_is_there(redis_client, settings, answers):
    assert journal.all_still_there(redis_client, answers)
    journal.record_accepted(redis_client, settings, answers)
    assert make_queue("goodreads", redis_client).get_job_ids() == [job_id_for(QUEUED)]  # nothing submitted again
    assert len(journal.reconciler_for(settings).journal.entries()) == 2  # and both journaled


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
    settings = app.config["SETTINGS"]
    assert [entry.url for entry in journal.reconciler_for(settings).journal.entries()] == [QUEUED]
    assert any(path.endswith(journal.SUFFIX) for path in synced), synced  # the segment itself, not only its folder
