"""Submitter.submit_many: submit()'s answers for a whole request, in round trips that do not
grow with the number of URLs, and still never two jobs for one page."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from redis.connection import AbstractConnection
from rq import Retry
from rq.job import Job, JobStatus

import jobs.queues
from config import load_settings
from jobs.queues import Submitter, fetch_job, job_id_for, make_queue
from jobs.trust import JOB_FUNCTION
from sources import route
from tests.support.job_runs import save_done_record

BOOKS = [f"https://www.goodreads.com/book/show/{n}" for n in range(1, 201)]


@pytest.fixture
def submitter(redis_client, redis_url) -> Submitter:
    return Submitter(redis_client, load_settings({"REDIS_URL": redis_url, "FETCH_RETRIES": "2"}))


def routes(urls: list[str]) -> list:
    return [route(url) for url in urls]


def save_done(redis_client, url: str, age: timedelta = timedelta(0)) -> None:
    save_done_record(redis_client, url, "goodreads_book", {"title": "A book"}, age)


def queued_ids(redis_client) -> list[str]:
    return make_queue("goodreads", redis_client).get_job_ids()


def test_every_state_gets_the_answer_submit_gives(submitter, redis_client):
    fresh, stale, queued, started, failed, new = BOOKS[:6]
    save_done(redis_client, fresh)
    save_done(redis_client, stale, age=timedelta(days=8))
    for url in (queued, started, failed):
        submitter.submit(route(url))
    fetch_job(redis_client, job_id_for(started)).set_status(JobStatus.STARTED)
    make_queue("goodreads", redis_client).remove(job_id_for(failed))
    fetch_job(redis_client, job_id_for(failed)).set_status(JobStatus.FAILED)

    answers = submitter.submit_many(routes([fresh, stale, queued, started, failed, new]))

    assert [(a.route.canonical_url, a.status) for a in answers] == [
        (fresh, "cached"), (stale, "queued"), (queued, "queued"), (started, "started"), (failed, "queued"),
        (new, "queued")]
    assert sorted(queued_ids(redis_client)) == sorted(job_id_for(u) for u in (queued, started, stale, failed, new))


def test_refresh_fetches_a_fresh_page_again(submitter, redis_client):
    save_done(redis_client, BOOKS[0])
    [answer] = submitter.submit_many(routes(BOOKS[:1]), refresh=True)
    assert answer.status == "queued" and queued_ids(redis_client) == [job_id_for(BOOKS[0])]


def test_spellings_of_one_page_make_one_answer_and_one_job(submitter, redis_client):
    spellings = [BOOKS[0], BOOKS[0] + "-the-title", BOOKS[1], "http://goodreads.com/book/show/1"]
    answers = submitter.submit_many(routes(spellings))
    assert [a.route.canonical_url for a in answers] == BOOKS[:2]
    assert queued_ids(redis_client) == [job_id_for(BOOKS[0]), job_id_for(BOOKS[1])]


def test_jobs_are_the_ones_submit_makes(submitter, redis_client):
    """submit() (Queue.enqueue_call, unique) and submit_many() (RQ's jobs, written in its own
    transaction) make the same job: every field but the per-job ones."""
    one, many = submitter.submit(route(BOOKS[0])), submitter.submit_many(routes(BOOKS[1:2]))[0]
    alone, batched = (redis_client.hgetall(Job.key_for(a.job_id)) for a in (one, many))
    per_job = {b"created_at", b"enqueued_at", b"data", b"description"}
    assert {k: v for k, v in alone.items() if k not in per_job} == {k: v for k, v in batched.items() if k not in per_job}
    assert set(alone) == set(batched) and redis_client.ttl(Job.key_for(many.job_id)) == -1
    job = fetch_job(redis_client, many.job_id)
    assert job.args == [BOOKS[1], "goodreads"] and job.description == BOOKS[1] and job.origin == "goodreads"
    assert job.get_status() == JobStatus.QUEUED and job.retries_left == 2 and job.enqueued_at is not None
    assert queued_ids(redis_client) == [one.job_id, many.job_id]
    assert redis_client.smembers("rq:queues") == {b"rq:queue:goodreads"}


def test_jobs_are_what_rqs_own_enqueue_writes(submitter, redis_client):
    """submit_many writes RQ's jobs in its own transaction (a third of Queue.enqueue_many's
    commands): the job hashes, queues and queue set it leaves must be what RQ's own enqueue
    leaves for the same calls, but for the times. The worker, the frontier, the dashboard and
    /jobs read them; an RQ whose enqueue writes anything else fails here."""
    lane, submitted = "l" * 32, routes([BOOKS[0], "https://www.bbc.com/news", BOOKS[1]])
    submitter.submit_many(submitted, lane=lane)
    ours = redis_state(redis_client, submitted)
    redis_client.flushdb()
    for page in submitted:
        make_queue(page.queue, redis_client).enqueue(
            JOB_FUNCTION, page.canonical_url, page.source.name, job_id=job_id_for(page.canonical_url),
            description=page.canonical_url, job_timeout=submitter.settings.job_timeout, result_ttl=86400,
            failure_ttl=7 * 86400, retry=Retry(max=2, interval=[2, 10]), meta={"lane": lane})
    assert ours == redis_state(redis_client, submitted)
    assert ours[1] == [[job_id_for(BOOKS[0]).encode(), job_id_for(BOOKS[1]).encode()],
                       [job_id_for(submitted[1].canonical_url).encode()]]  # in submission order


def redis_state(redis_client, submitted: list) -> tuple:
    """The jobs' hashes (their times there, of any value) and TTLs; the two queues; the queue set."""
    keys = [Job.key_for(job_id_for(page.canonical_url)) for page in submitted]
    jobs = [{k: b"a time" if k in {b"created_at", b"enqueued_at"} else v for k, v in redis_client.hgetall(key).items()}
            for key in keys]
    queues = [redis_client.lrange(f"rq:queue:{name}", 0, -1) for name in ("goodreads", "news")]
    return jobs, queues, redis_client.smembers("rq:queues"), [redis_client.ttl(key) for key in keys]


def test_round_trips_do_not_grow_with_the_urls(submitter, monkeypatch):
    sent, this_thread = [], threading.get_ident()  # not other tests' journal reconciler threads
    original = AbstractConnection.send_packed_command

    def counted(self, *args, **kwargs):
        sent.append(threading.get_ident() == this_thread)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)

    def round_trips(urls: list[str]) -> int:
        sent.clear()
        assert {a.status for a in submitter.submit_many(routes(urls))} == {"queued"}
        return sum(sent)

    round_trips(BOOKS[:1])  # connects, and RQ asks the server's version once per connection
    assert round_trips(BOOKS[1:11]) == round_trips(BOOKS[11:111]) == 4  # WATCH, records, jobs, MULTI/EXEC


def test_a_job_created_meanwhile_is_not_enqueued_twice(submitter, redis_client, monkeypatch):
    """Another request enqueues one of the pages between our reads and our MULTI/EXEC."""
    rival = Submitter(redis_client, submitter.settings)
    original, calls = Submitter._answers, []

    def answers_then_race(self, *args, **kwargs):
        found = original(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            rival.submit(route(BOOKS[1]))
        return found

    monkeypatch.setattr(Submitter, "_answers", answers_then_race)
    answers = submitter.submit_many(routes(BOOKS[:3]))
    assert len(calls) == 2, "the transaction did not notice the rival's job"
    assert [a.status for a in answers] == ["queued"] * 3
    assert sorted(queued_ids(redis_client)) == sorted(job_id_for(url) for url in BOOKS[:3])


def test_submit_never_queues_a_page_twice_when_a_rival_enqueues_it_after_the_look(submitter, redis_client,
                                                                                  monkeypatch):
    """submit() looks for the page's job, then enqueues with unique=True: a job another request
    created in between makes RQ refuse the second one, and the page is queued once."""
    rival, look, raced = Submitter(redis_client, submitter.settings), jobs.queues.fetch_job, []

    def look_then_race(connection, job_id):
        found = look(connection, job_id)
        if not raced:  # the rival's own look comes here too
            raced.append(job_id)
            rival.submit(route(BOOKS[0]))
        return found

    monkeypatch.setattr(jobs.queues, "fetch_job", look_then_race)
    assert submitter.submit(route(BOOKS[0])).status == "queued"
    assert raced and queued_ids(redis_client) == [job_id_for(BOOKS[0])]


def test_always_raced_falls_back_to_one_by_one(submitter, redis_client, monkeypatch):
    original = Submitter._answers

    def answers_then_touch(self, routes_, job_ids, refresh):
        found = original(self, routes_, job_ids, refresh)
        redis_client.hset(Job.key_for(job_ids[0]), "touched", 1)  # every attempt is spoilt
        redis_client.delete(Job.key_for(job_ids[0]))
        return found

    monkeypatch.setattr(Submitter, "_answers", answers_then_touch)
    answers = submitter.submit_many(routes(BOOKS[:2]))
    assert [a.status for a in answers] == ["queued", "queued"]
    assert sorted(queued_ids(redis_client)) == sorted(job_id_for(url) for url in BOOKS[:2])


def test_nothing_to_submit(submitter):
    assert submitter.submit_many([]) == []
