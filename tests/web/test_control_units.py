"""The parts under the control routes, on a real Redis: the batch index's pages, the cancel
transaction's refusals and the failed-attempt notes (tests/web/test_control.py runs them end to end)."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry

from config import load_settings
from jobs.attempts import JobState, attempts_json, job_states, note_failure
from jobs import cancel as cancel_module
from jobs.cancel import CANCELED_TTL, cancel_job, cancel_jobs, forget_old_cancels
from jobs.queues import Submitter, job_id_for, make_queue
from jobs.trust import JsonJob
from sources import GOODREADS, route
from storage import BATCH_INDEX, BATCH_TTL, Storage, batch_card_key, claim_key

BOOK = "https://www.goodreads.com/book/show/{}"


def batch(batch_id: str, created_at: datetime, urls: int = 1) -> dict:
    items = [{"url": BOOK.format(n), "canonical_url": BOOK.format(n), "source": "goodreads", "job_id": "x"}
             for n in range(urls)]
    return {"id": batch_id, "created_at": created_at, "items": items, "callback_url": None}


def walk(storage: Storage, limit: int) -> list[list[str]]:
    pages, after = [], None
    while True:
        cards, after = storage.recent_batches(limit, after)
        pages.append([card["batch_id"] for card in cards])
        if after is None:
            return pages


def test_batches_of_one_moment_are_paged_exactly_without_repeats(redis_client):
    storage, now = Storage(redis_client), datetime.now(timezone.utc)
    ids = [f"{n:032x}" for n in range(7)]
    for batch_id in ids[:5]:
        storage.save_batch(batch(batch_id, now))  # five ties: the cursor must cut inside them
    storage.save_batch(batch(ids[5], now + timedelta(seconds=1)))
    storage.save_batch(batch(ids[6], now - timedelta(seconds=1)))
    pages = walk(storage, 2)
    assert pages == [[ids[5], ids[4]], [ids[3], ids[2]], [ids[1], ids[0]], [ids[6]]]
    assert walk(storage, 7) == [[ids[5], ids[4], ids[3], ids[2], ids[1], ids[0], ids[6]]]


def test_a_batch_whose_card_is_gone_is_skipped_and_dropped_and_old_ones_are_pruned(redis_client):
    storage, now = Storage(redis_client), datetime.now(timezone.utc)
    storage.save_batch(batch("a" * 32, now - timedelta(seconds=3), urls=3))
    storage.save_batch(batch("b" * 32, now - timedelta(seconds=2)))
    storage.save_batch(batch("c" * 32, now - timedelta(seconds=1)))
    redis_client.delete(batch_card_key("b" * 32))  # expired, or evicted
    cards, after = storage.recent_batches(2)
    assert [card["batch_id"] for card in cards] == ["c" * 32, "a" * 32] and after is None  # still a full page
    assert redis_client.zscore(BATCH_INDEX, "b" * 32) is None
    assert cards[1]["total"] == 3 and cards[1]["urls"] == 3 and cards[1]["callback"] is False
    redis_client.zadd(BATCH_INDEX, {"d" * 32: 1})  # a member from long ago, its batch expired
    storage.save_batch(batch("e" * 32, now))
    assert redis_client.zscore(BATCH_INDEX, "d" * 32) is None and 0 < redis_client.ttl(batch_card_key("e" * 32)) <= BATCH_TTL


def submitted(redis_client, url: str) -> str:
    settings = load_settings({"REDIS_URL": "redis://unused", "FETCH_RETRIES": "2"})
    [answer] = Submitter(redis_client, settings).submit_many([route(url)], lane="f" * 32)
    return answer.job_id


def test_a_job_a_worker_has_claimed_is_not_canceled(redis_client):
    job_id = submitted(redis_client, BOOK.format(1))
    redis_client.set(claim_key(job_id), "rq:queue:goodreads")  # what the dispatch script writes
    outcome = cancel_job(redis_client, job_id)
    assert outcome is not None and not outcome.canceled and outcome.status == "starting"
    redis_client.delete(claim_key(job_id))
    assert cancel_job(redis_client, job_id).canceled
    assert redis_client.hget(f"rq:job:{job_id}", "status") == b"canceled"
    assert 0 < redis_client.ttl(f"rq:job:{job_id}") <= 86400  # RQ keeps canceled jobs forever: we do not
    assert cancel_job(redis_client, job_id_for(BOOK.format(2))) is None


def test_a_host_busy_wait_moves_the_next_try_but_is_no_attempt(redis_client):
    job = SimpleNamespace(meta={}, retries_left=2, save_meta=lambda: None)
    note_failure(job, {"code": "fetch_transient", "message": "HTTP 503"}, 5)
    note_failure(job, {"code": "host_busy", "message": "busy"}, 9, spends_attempt=False)
    state = JobState(JobStatus.SCHEDULED, job.meta, 3)  # RQ's count not lowered yet (Job.retry's order)
    shown = attempts_json(state)
    assert shown["attempts"] == 1 and shown["last_error"]["code"] == "fetch_transient" and shown["retries_left"] == 1
    assert datetime.fromisoformat(shown["next_try_at"]) > datetime.now(timezone.utc) + timedelta(seconds=8)
    assert attempts_json(JobState(JobStatus.QUEUED, job.meta, 1))["next_try_at"] is None  # due: no longer waiting
    forged = {"attempts": "many", "last_error": ["x"], "next_try_at": "soon", "retries_left": -3}
    assert attempts_json(JobState(JobStatus.SCHEDULED, forged, 2)) == {
        "attempts": 0, "retries_left": 2, "last_error": None, "next_try_at": None}


def test_a_batch_whose_last_page_is_canceled_sends_its_callback(redis_client):
    url, batch_id = BOOK.format(3), "c" * 32
    job_id = submitted(redis_client, url)
    storage = Storage(redis_client)
    storage.save_batch({**batch(batch_id, datetime.now(timezone.utc)), "callback_url": "https://hooks.example.com/x",
                        "items": [{"url": url, "canonical_url": url, "source": "goodreads", "job_id": job_id}]})
    storage.watch_batch(batch_id, [url])
    assert [outcome.canceled for outcome in cancel_jobs(redis_client, [job_id])] == [True]
    assert redis_client.exists(f"rq:job:callback-{batch_id}")  # canceled counts as finished: the callback is queued


def test_a_cancel_racing_another_cancel_answers_canceled_not_an_error(redis_client, monkeypatch):
    """RQ's Job.cancel() reads the job's status again outside our WATCH: a second cancel that
    lands between the two reads makes it raise, which must be looked at again, not a 500."""
    job_id = submitted(redis_client, BOOK.format(3))
    real_refusal, raced = cancel_module._refusal, []

    def refusal_then_a_rival_cancel(raw_status, claimed):
        found = real_refusal(raw_status, claimed)
        if found is None and not raced:
            raced.append(Job.fetch(job_id, connection=redis_client).cancel())  # the other DELETE wins
        return found

    monkeypatch.setattr(cancel_module, "_refusal", refusal_then_a_rival_cancel)
    outcome = cancel_job(redis_client, job_id)
    assert raced and outcome is not None and outcome.canceled and outcome.status == "canceled"


def test_the_tick_drops_canceled_registry_entries_older_than_a_day(redis_client):
    """RQ never cleans its canceled registries: a page's later job (same id) would show there."""
    old, recent = submitted(redis_client, BOOK.format(4)), submitted(redis_client, BOOK.format(5))
    assert cancel_job(redis_client, old).canceled and cancel_job(redis_client, recent).canceled
    registry = CanceledJobRegistry(queue=make_queue(GOODREADS.queue, redis_client))
    redis_client.zadd(registry.key, {old: time.time() - CANCELED_TTL - 60})  # canceled a day and a minute ago
    assert forget_old_cancels(redis_client, time.time()) == 1
    assert registry.get_job_ids() == [recent]


def test_a_job_deleted_while_it_is_looked_at_is_not_canceled(redis_client, monkeypatch):
    """A new submission deletes a job that is not in flight: a cancel that fetched the job just
    before reads, under WATCH, that it is gone (RQ's get_status raises then) and says so."""
    job_id, fetch = submitted(redis_client, BOOK.format(6)), cancel_module.fetch_job

    def fetch_then_delete(connection, wanted):
        job = fetch(connection, wanted)
        redis_client.delete(Job.key_for(wanted))
        return job

    monkeypatch.setattr(cancel_module, "fetch_job", fetch_then_delete)
    outcome = cancel_job(redis_client, job_id)
    assert outcome is not None and not outcome.canceled and outcome.status == "deleted"
    assert not redis_client.exists(Job.key_for(job_id))  # not written again by the cancel


def test_rq_scores_a_canceled_registry_entry_by_when_it_was_canceled(redis_client):
    """forget_old_cancels trims RQ's canceled registry by score: RQ's own, the cancel time."""
    job_id = submitted(redis_client, BOOK.format(7))
    before = time.time()
    assert cancel_job(redis_client, job_id).canceled
    registry = CanceledJobRegistry(queue=make_queue(GOODREADS.queue, redis_client))
    assert int(before) <= redis_client.zscore(registry.key, job_id) <= time.time() + 1


def test_the_job_state_read_is_what_rqs_job_reads(redis_client):
    """attempts reads three fields of RQ's job hash itself (one HMGET in GET /info's pipeline):
    they must be the ones RQ's own Job gives its status, meta and retries_left from."""
    job_id = submitted(redis_client, BOOK.format(8))
    job = JsonJob.fetch(job_id, connection=redis_client)
    note_failure(job, {"code": "fetch_transient", "message": "HTTP 503"}, 5)
    job.retries_left = 1
    job.set_status(JobStatus.SCHEDULED)
    job.save()
    [state] = job_states(redis_client, [job_id])
    rqs = JsonJob.fetch(job_id, connection=redis_client)
    assert (state.status, state.meta, state.retries_left) == (rqs.get_status(), rqs.get_meta(), rqs.retries_left)
    assert state.retries_left == 1 and state.meta["attempts"] == 1 and state.status == JobStatus.SCHEDULED
