"""The frontier (jobs/frontier.py) against the real Redis: who gets the next job, and when.

Jobs are submitted as the API submits them (Submitter, one lane per batch) and taken as the
service's workers take them (ClaimingQueue's dispatch); each turn is ended as a job's fetch
ends it (FINISH_TURN). No worker processes here: tests/jobs/fetch/test_politeness.py and
tests/jobs/worker/test_crash.py run the same dispatch through real workers.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from redis import Redis

from config import Settings, load_settings
from jobs import frontier
from jobs.fetch.robots import origin_of
from jobs.queues import PAGE_QUEUE_NAMES, QUEUE_NAMES, Submitter, job_id_for
from jobs.worker.claims import ClaimingQueue, sweep_claims
from sources import route
from storage import (
    FRONTIER_BACKLOG, FRONTIER_READY, JOB_CLAIM, JOB_CLAIMS, host_delay_key, host_next_start_key, host_slots_key,
    robots_key,
)
from tests.support import processes
from tests.support.exposition import parse_exposition, value
from tests.support.fixture_server import FixtureServer, Reply, send_reply

BOOKS = "https://www.goodreads.com/book/show/"
FRONTS = ["https://www.bbc.com/news", "https://www.theguardian.com/uk", "https://www.wsj.com/"]
QUEUE_KEYS = [f"rq:queue:{name}" for name in QUEUE_NAMES]


@pytest.fixture
def submitter(redis_client: Redis, redis_url: str) -> Submitter:
    return Submitter(redis_client, load_settings({"REDIS_URL": redis_url}))


def submit(submitter: Submitter, urls: list[str], lane: str) -> None:
    answers = submitter.submit_many([route(url) for url in urls], lane=lane)
    assert all(answer.status == "queued" for answer in answers)


def policy(delay_ms: int = 0, concurrency: int = 64, robots: bool = False) -> frontier.DispatchPolicy:
    return frontier.DispatchPolicy(default_delay_ms=delay_ms, concurrency=concurrency, lease_ms=30_000,
                                   robots_txt=robots)


class Workers:
    """Takes jobs as the service's workers do, one dispatch at a time; ends turns on request."""

    def __init__(self, redis: Redis, rules: frontier.DispatchPolicy):
        self.redis, self.rules = redis, rules
        self.finish = redis.register_script(frontier.FINISH_TURN)

    def take(self) -> tuple[str | None, float]:
        """(the URL of the job given out, 0) or (None, seconds until a host's turn)."""
        queue_key, found = frontier.dispatch(self.redis, self.rules, JOB_CLAIMS, JOB_CLAIM, time.time() + 30,
                                             QUEUE_KEYS[:2], QUEUE_KEYS[2:])
        if queue_key is None:
            return None, found
        return self.redis.hget(f"rq:job:{found}", "description").decode(), 0.0

    def take_all(self, end_turns: bool = True) -> list[str]:
        """Every job there is now, in the order given out (each turn ended at once when asked)."""
        taken = []
        while (url := self.take()[0]) is not None:
            taken.append(url)
            if end_turns:
                self.end_turn(url)
        return taken

    def skip_delay(self, host: str = "www.goodreads.com") -> None:
        """As if host's delay had passed: its next start is now."""
        self.redis.delete(host_next_start_key(host))
        self.redis.zadd(FRONTIER_READY, {host: 0}, xx=True)

    def end_turn(self, url: str, outcome: str = "ok", latency_ms: int = 10, floor_ms: int | None = None,
                 cap_ms: int = 60_000) -> int:
        """FINISH_TURN as a job's fetch ends it; the floor is the policy's delay unless given,
        the cap FETCH_HOST_DELAY_MAX's default unless given."""
        host = url.split("/")[2]
        floor_ms = self.rules.default_delay_ms if floor_ms is None else floor_ms
        args = [host, job_id_for(url), outcome, latency_ms, floor_ms, cap_ms, self.rules.concurrency,
                self.rules.default_delay_ms, latency_ms, 0]
        return int(self.finish(args=args))


@pytest.fixture
def workers(redis_client: Redis) -> Iterator[Workers]:
    yield Workers(redis_client, policy())


def test_a_host_whose_turn_has_come_is_served_before_a_backlogged_host_s_next_turn(redis_client, submitter):
    submit(submitter, [f"{BOOKS}{n}" for n in range(1, 301)], lane="backlog")
    workers = Workers(redis_client, policy(delay_ms=1000, concurrency=2))
    assert workers.take()[0] == f"{BOOKS}1"
    submit(submitter, FRONTS, lane="fronts")
    taken = [workers.take()[0] for _ in range(4)]
    assert sorted(taken[:3]) == sorted(FRONTS)  # each news host is free: no wait behind Goodreads
    assert taken[3] is None  # Goodreads' next turn is a second away: nobody takes it early
    assert 0.9 < workers.take()[1] <= 1.0


def test_plain_queues_come_first_and_are_never_held_per_host(redis_client, submitter, workers):
    submit(submitter, [f"{BOOKS}1"], lane="a")
    redis_client.rpush("rq:queue:callbacks", "callback-job")
    redis_client.rpush("rq:queue:maintenance", "tick-job")
    given = [frontier.dispatch(redis_client, workers.rules, JOB_CLAIMS, JOB_CLAIM, time.time() + 30, QUEUE_KEYS[:2],
                               QUEUE_KEYS[2:]) for _ in range(2)]
    assert given == [("rq:queue:maintenance", "tick-job"), ("rq:queue:callbacks", "callback-job")]  # README's order
    assert workers.take()[0] == f"{BOOKS}1"


def test_batches_for_one_host_take_turns_and_each_keeps_its_order(redis_client, submitter, workers):
    submit(submitter, [f"{BOOKS}{n}" for n in range(1, 11)], lane="big")
    submit(submitter, [f"{BOOKS}{n}" for n in range(101, 104)], lane="small")
    taken = workers.take_all()
    assert taken[:7] == [f"{BOOKS}1", f"{BOOKS}101", f"{BOOKS}2", f"{BOOKS}102", f"{BOOKS}3", f"{BOOKS}103",
                         f"{BOOKS}4"]
    assert taken[7:] == [f"{BOOKS}{n}" for n in range(5, 11)]
    assert redis_client.hlen(FRONTIER_BACKLOG) == 0


def test_a_small_batch_after_a_huge_one_is_not_held_behind_it(redis_client, submitter):
    submit(submitter, [f"{BOOKS}{n}" for n in range(1, 2001)], lane="huge")
    submit(submitter, [f"{BOOKS}{n}" for n in range(5001, 5006)], lane="late")
    workers = Workers(redis_client, policy(delay_ms=60_000))
    assert workers.take()[0] == f"{BOOKS}1"
    for _ in range(4):  # idle workers' polls meanwhile move the rest into lanes, 500 at a time
        assert workers.take()[0] is None
    assert redis_client.llen("rq:queue:goodreads") == 0
    taken = []
    for _ in range(10):
        workers.skip_delay()
        taken.append(workers.take()[0])
        workers.end_turn(taken[-1])
    assert taken[1::2] == [f"{BOOKS}{n}" for n in range(5001, 5006)]  # every other turn
    assert taken[::2] == [f"{BOOKS}{n}" for n in range(2, 7)]


def test_turns_on_one_host_are_a_delay_apart(redis_client, submitter):
    submit(submitter, [f"{BOOKS}{n}" for n in range(1, 5)], lane="a")
    workers = Workers(redis_client, policy(delay_ms=200))
    starts = []
    while len(starts) < 4:
        url, wait = workers.take()
        if url is None:
            time.sleep(max(0.001, wait))
            continue
        starts.append(time.monotonic())
        workers.end_turn(url)
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    assert all(0.195 <= gap < 0.3 for gap in gaps), gaps


def test_a_host_with_every_slot_taken_waits_until_a_turn_ends(redis_client, submitter):
    submit(submitter, [f"{BOOKS}1", f"{BOOKS}2"], lane="a")
    workers = Workers(redis_client, policy(concurrency=1))
    assert workers.take()[0] == f"{BOOKS}1"
    url, wait = workers.take()
    assert url is None and wait > 20  # until the lease would end: nobody polls the host meanwhile
    workers.end_turn(f"{BOOKS}1")
    assert workers.take()[0] == f"{BOOKS}2"


def test_a_turn_given_back_frees_its_slot_at_once(redis_client, submitter):
    submit(submitter, [f"{BOOKS}1", f"{BOOKS}2"], lane="a")
    workers = Workers(redis_client, policy(concurrency=1))
    assert workers.take()[0] == f"{BOOKS}1"  # e.g. refused by the worker before its function ran
    assert workers.take()[0] is None
    assert frontier.give_back(redis_client, job_id_for(f"{BOOKS}1"))
    assert workers.take()[0] == f"{BOOKS}2"  # not 30 s later, when the lease would have ended
    assert not frontier.give_back(redis_client, job_id_for(f"{BOOKS}1"))  # nothing held any more


def test_a_job_without_a_page_url_is_given_out_at_once(redis_client, submitter, workers):
    submit(submitter, [f"{BOOKS}1"], lane="a")
    redis_client.hset("rq:job:foreign", mapping={"description": "os.getpid()", "origin": "goodreads"})
    redis_client.rpush("rq:queue:goodreads", "foreign")
    assert frontier.dispatch(redis_client, workers.rules, JOB_CLAIMS, JOB_CLAIM, time.time() + 30, QUEUE_KEYS[:2],
                             QUEUE_KEYS[2:]) == ("rq:queue:goodreads", "foreign")  # for the worker to refuse
    assert workers.take()[0] == f"{BOOKS}1"
    assert redis_client.zcard(host_slots_key("")) == 0  # no host turn was taken for it


def test_robots_txt_not_yet_known_gives_one_turn_at_a_time(redis_client, submitter):
    submit(submitter, [f"{BOOKS}{n}" for n in range(1, 5)], lane="a")
    workers = Workers(redis_client, policy(concurrency=2, robots=True))
    assert workers.take()[0] == f"{BOOKS}1"
    assert workers.take()[0] is None  # the first job fetches robots.txt; the second would too
    redis_client.set(robots_key("https://www.goodreads.com:443"), "allow\nno rules")  # the first job stores it...
    workers.end_turn(f"{BOOKS}1")  # ...and its turn ends
    assert [workers.take()[0], workers.take()[0]] == [f"{BOOKS}2", f"{BOOKS}3"]  # both slots used now


def test_a_claim_taken_back_puts_its_job_at_the_head_of_its_lane(redis_client, submitter, workers):
    submit(submitter, [f"{BOOKS}1", f"{BOOKS}2"], lane="a")
    assert workers.take()[0] == f"{BOOKS}1"  # its worker dies before the job starts
    workers.end_turn(f"{BOOKS}1")  # (its slot lease would end by itself)
    assert sweep_claims(redis_client, at=time.time() + 60) == 1
    assert workers.take_all() == [f"{BOOKS}1", f"{BOOKS}2"]


def test_a_deleted_job_is_dropped_without_taking_a_turn(redis_client, submitter):
    submit(submitter, [f"{BOOKS}1", f"{BOOKS}2"], lane="a")
    workers = Workers(redis_client, policy(delay_ms=5000))
    assert workers.take()[0] == f"{BOOKS}1"
    redis_client.delete(f"rq:job:{job_id_for(f'{BOOKS}2')}")  # e.g. deleted from the dashboard
    workers.skip_delay()
    assert workers.take() == (None, -1.0)  # nothing left to wait for
    assert redis_client.zcard(host_slots_key("www.goodreads.com")) == 1  # book 1's turn only
    assert redis_client.hlen(FRONTIER_BACKLOG) == 0


def test_a_slow_down_answer_doubles_the_delay_and_quick_answers_bring_it_back(redis_client, submitter):
    submit(submitter, [f"{BOOKS}{n}" for n in range(1, 8)], lane="a")
    workers = Workers(redis_client, policy(delay_ms=1000, concurrency=2))
    url = workers.take()[0]
    assert workers.end_turn(url, "slow", floor_ms=1000) == 2000
    workers.skip_delay()
    url = workers.take()[0]
    assert workers.end_turn(url, "slow", floor_ms=1000) == 4000
    delays = []
    for _ in range(4):
        workers.skip_delay()
        delays.append(workers.end_turn(workers.take()[0], "ok", latency_ms=20, floor_ms=1000))
    assert delays == [2005, 1007, 1000, 1000]  # halfway to latency/concurrency each time, never under the floor
    assert int(redis_client.get(host_delay_key("www.goodreads.com"))) == 1000


def test_slow_answers_raise_the_delay_towards_latency_over_concurrency(redis_client, submitter):
    submit(submitter, [f"{BOOKS}{n}" for n in range(1, 4)], lane="a")
    workers = Workers(redis_client, policy(delay_ms=1000, concurrency=2))
    delays = []
    for _ in range(3):
        workers.skip_delay()
        delays.append(workers.end_turn(workers.take()[0], "ok", latency_ms=8000, floor_ms=1000))
    assert delays == [2500, 3250, 3625]


def test_the_adapted_delay_never_passes_fetch_host_delay_max(redis_client, submitter):
    submit(submitter, [f"{BOOKS}{n}" for n in range(1, 4)], lane="a")
    workers = Workers(redis_client, policy(delay_ms=1000, concurrency=1))
    delays = []
    for outcome, latency_ms in (("slow", 10), ("slow", 10), ("ok", 60_000)):
        workers.skip_delay()
        delays.append(workers.end_turn(workers.take()[0], outcome, latency_ms=latency_ms, cap_ms=3000))
    assert delays == [2000, 3000, 3000]  # doubled, doubled again, then halfway to a minute's latency: capped


def test_with_spacing_off_for_a_host_slow_answers_do_not_space_it(redis_client, submitter):
    """FETCH_HOST_DELAY=0 (and no Crawl-delay): no delay to adapt; RQ's retries back off instead."""
    submit(submitter, [f"{BOOKS}1", f"{BOOKS}2"], lane="a")
    workers = Workers(redis_client, policy(delay_ms=0))
    assert workers.end_turn(workers.take()[0], "slow", floor_ms=0) == 0
    assert workers.take()[0] == f"{BOOKS}2"


def test_the_next_turn_is_a_delay_after_the_turn_began_even_when_the_delay_grew(redis_client, submitter):
    submit(submitter, [f"{BOOKS}1", f"{BOOKS}2"], lane="a")
    workers = Workers(redis_client, policy(delay_ms=100))
    workers.end_turn(workers.take()[0], "ok", latency_ms=0, floor_ms=3000)  # e.g. robots.txt said Crawl-delay: 3
    url, wait = workers.take()
    assert url is None and 2.8 < wait <= 3.0


def test_what_a_queued_page_waits_for_is_shown_by_jobs_info_batches_and_metrics(client, redis_client):
    """The API in process (the e2e test below reads the same answers from the real service)."""
    books = [f"{BOOKS}{n}" for n in range(1, 11)]
    batch_id = client.post("/parse", json=books).get_json()["batch_id"]
    workers = Workers(redis_client, policy(delay_ms=1000))  # the app's FETCH_HOST_DELAY
    assert workers.take()[0] == books[0]  # the first turn is taken: the other nine wait, a second apart
    now = datetime.now(timezone.utc)
    waiting = client.get(f"/jobs/{job_id_for(books[9])}").get_json()["waiting"]
    assert (waiting["host"], waiting["backlog"], waiting["batches"], waiting["delay_seconds"]) == \
        ("www.goodreads.com", 9, 1, 1.0)
    assert 0 < (datetime.fromisoformat(waiting["next_slot_at"]) - now).total_seconds() <= 1.0
    info = client.get("/info", query_string={"url": books[9]})
    assert info.status_code == 202
    assert info.get_json()["waiting"]["detail"].startswith("waiting for www.goodreads.com, next slot at ")
    eta = client.get(f"/batches/{batch_id}").get_json()["eta"]
    assert 8 < (datetime.fromisoformat(eta) - now).total_seconds() <= 9.0  # the 9th waiting page: 8 delays later
    exposition = parse_exposition(client.get("/metrics").get_data(as_text=True))
    assert value(exposition, "metaparse_host_backlog", host="www.goodreads.com") == 9
    assert value(exposition, "metaparse_host_delay_seconds", host="www.goodreads.com") == 1.0


def test_page_queue_names_are_the_inboxes(redis_client):
    assert set(PAGE_QUEUE_NAMES) == {"goodreads", "news", "pages"}
    assert ClaimingQueue.dispatch_policy is None  # only the worker pool turns the frontier on


@pytest.mark.parametrize("url", ["https://www.bbc.com/news", "http://www.bbc.com/", "https://WWW.BBC.com:8443/x",
                                 "http://[2001:db8::1]/", "https://user@www.bbc.com/"])
def test_the_scripts_read_host_and_origin_as_politeness_does(redis_client, url):
    """The Lua scripts' DEFAULT_PORTS are written from guard.DEFAULT_PORTS: a turn's robots.txt
    origin is the one politeness caches the verdict under."""
    host, origin = redis_client.register_script(frontier._lua("return {host_and_origin(ARGV[1])}"))(args=[url])
    parts = urlsplit(url)
    assert (host.decode(), origin.decode()) == (frontier.host_of(parts), origin_of(parts))


# ---- through the real service, with the shipped politeness -----------------------------------

NEWS_FRONTS = {"www.bbc.com": "bbc-next-2023.html", "www.bbc.co.uk": "bbc-gel-2018.html",
               "www.theguardian.com": "guardian-2017.html", "www.washingtonpost.com": "wapo-2023.html",
               "www.wsj.com": "wsj-2018.html"}
FIXTURES = Path(__file__).parents[1] / "fixtures"


class PoliteSite:
    """A local HTTPS Goodreads and five news sites that note when each request started, by host."""

    def __init__(self):
        self.server = FixtureServer(["www.goodreads.com", *NEWS_FRONTS])
        self.server.fallback = self._serve
        self.starts: dict[str, list[tuple[float, str]]] = {}
        self.book = (FIXTURES / "e2e" / "goodreads-book.html").read_bytes()
        self.fronts = {host: (FIXTURES / "news" / name).read_bytes() for host, name in NEWS_FRONTS.items()}

    def _serve(self, handler) -> None:
        host, path = handler.headers["Host"].split(":")[0], handler.path
        self.starts.setdefault(host, []).append((time.monotonic(), path))
        if path == "/robots.txt":
            send_reply(handler, Reply(body=b"User-agent: *\nAllow: /\n", headers={"Content-Type": "text/plain"}))
        else:
            send_reply(handler, Reply(body=self.fronts.get(host, self.book)))


@pytest.fixture
def polite_service(redis_client, redis_url, tmp_path_factory) -> Iterator[tuple[processes.Service, PoliteSite]]:
    """gunicorn + `python -m jobs.worker` with the shipped politeness, workers and rate limits. It
    lives for one test: left running, its workers would take the jobs of the unit tests here."""
    site = PoliteSite()
    site.server.start()
    logs = tmp_path_factory.mktemp("polite")
    env = processes.service_env(REDIS_URL=redis_url, FETCH_RETRIES="0",  # redis_client: flushed first
                                **site.server.fetch_env(logs, "www.goodreads.com", *NEWS_FRONTS))
    service = processes.start_service(env, logs, workers=Settings.workers, name="POLITE")
    try:
        yield service, site
    finally:
        service.stop()
        site.server.stop()


@pytest.mark.e2e
def test_news_fronts_behind_a_goodreads_backlog_are_done_in_seconds_and_nobody_sleeps(polite_service, redis_url):
    service, site = polite_service
    books = [f"{BOOKS}{n}" for n in range(1, 301)]
    backlog = requests.post(f"{service.base}/parse", json={"urls": books}, timeout=30)
    assert backlog.status_code == 202
    time.sleep(1)
    posted = time.monotonic()
    news = requests.post(f"{service.base}/parse", json={"urls": [f"https://{host}/" for host in NEWS_FRONTS]},
                         timeout=30)
    summary = processes.wait_for_batch(service.base, news.json()["batch_id"], 10, poll=0.05)
    latency = time.monotonic() - posted
    assert summary["counts"] == {"done": 5}
    check_the_backlog_is_visible(service.base, backlog.json()["batch_id"], books[249])
    time.sleep(max(0.0, 6 - (time.monotonic() - posted)))
    goodreads = [start for start, path in site.starts["www.goodreads.com"] if path != "/robots.txt"]
    gaps = [later - earlier for earlier, later in zip(goodreads, goodreads[1:])]
    runs = job_run_seconds(Redis.from_url(redis_url), [job_id_for(url) for url in books])
    print(f"\n[frontier] news done in {latency:.2f} s; goodreads fetched {len(goodreads)} in "
          f"{goodreads[-1] - goodreads[0]:.1f} s, gaps {min(gaps):.3f}-{max(gaps):.3f} s; "
          f"job runs max {max(runs):.3f} s")
    assert latency < 3.0  # was 300 s: news waited for the whole Goodreads backlog
    assert [path for _, path in site.starts["www.goodreads.com"]].count("/robots.txt") == 1
    # One request a second, on time; robots.txt and the first page share the first turn, so
    # the second page comes a delay later than the first turn's two requests allow.
    assert 6 <= len(goodreads) <= 9 and 0.95 <= min(gaps) and max(gaps[1:]) < 1.5 and gaps[0] < 2.1
    assert max(runs) < 0.5  # no job waits for its host's turn inside a worker (was ~1-5 s each)
    assert not any(b"host_busy" in (meta or b"") for meta in job_metas(redis_url, books))


def job_run_seconds(redis: Redis, job_ids: list[str]) -> list[float]:
    """ended_at - started_at of every finished job among job_ids."""
    with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(f"rq:job:{job_id}", "started_at", "ended_at", "status")
        rows = pipe.execute()
    return [(datetime.fromisoformat(ended.decode()) - datetime.fromisoformat(started.decode())).total_seconds()
            for started, ended, status in rows if status == b"finished"]


def job_metas(redis_url: str, urls: list[str]) -> list[bytes | None]:
    redis = Redis.from_url(redis_url)
    return [redis.hget(f"rq:job:{job_id_for(url)}", "meta") for url in urls]


def check_the_backlog_is_visible(base: str, batch_id: str, url: str) -> None:
    """GET /jobs, /info, /batches and /metrics say what a queued page waits for, and until when."""
    now = datetime.now(timezone.utc)
    job = requests.get(f"{base}/jobs/{job_id_for(url)}", timeout=5).json()
    waiting = job["waiting"]
    assert job["status"] == "queued" and waiting["host"] == "www.goodreads.com" and waiting["delay_seconds"] == 1.0
    assert 250 < waiting["backlog"] < 300 and waiting["batches"] == 1
    assert -0.5 < (datetime.fromisoformat(waiting["next_slot_at"]) - now).total_seconds() <= 1.1
    info = requests.get(f"{base}/info", params={"url": url}, timeout=5)
    assert info.status_code == 202
    assert info.json()["waiting"]["detail"].startswith("waiting for www.goodreads.com, next slot at ")
    batch = requests.get(f"{base}/batches/{batch_id}", timeout=5).json()
    eta_in = (datetime.fromisoformat(batch["eta"]) - now).total_seconds()
    assert 250 < eta_in < 300 and [host["host"] for host in batch["waiting_on"]] == ["www.goodreads.com"]
    exposition = parse_exposition(requests.get(f"{base}/metrics", timeout=5).text)
    assert 250 < value(exposition, "metaparse_host_backlog", host="www.goodreads.com") < 300
    assert value(exposition, "metaparse_host_delay_seconds", host="www.goodreads.com") == 1.0
    assert value(exposition, "metaparse_frontier_hosts") == 1
    assert 250 < requests.get(f"{base}/healthz", timeout=5).json()["waiting_for_hosts"] < 300
