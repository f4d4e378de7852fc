"""Fetch politeness against the real Redis and a local HTTPS site: per-host concurrency
across threads and processes, leases that outlive a killed worker, spacing of request
starts, robots.txt (RFC 9309 answers, caching, the SSRF guard) and a job run by RQ."""
from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from redis import Redis
from rq import SimpleWorker
from rq.job import JobStatus
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

import guard
import jobs.context
from config import Settings, load_settings
from launch import free_port
from errors import BlockedAddress, FetchTimeout, HostBusy, HttpStatusError, RobotsDisallowed, TransientFetchError
from jobs.attempts import JobState, attempts_json
from jobs.fetch import Fetcher, Politeness
from jobs.fetch.politeness import LEASE_MARGIN_SECONDS, HostSlots, StartSpacer
from jobs.fetch.robots import user_agent_token
from jobs.queues import QUEUE_NAMES, Submitter, fetch_job, make_queue
from sources import route
from storage import Storage, host_delay_key, host_next_start_key, host_slots_key, robots_key
from tests.support.fixture_server import FixtureServer, Reply, send_reply

HOSTS = ["www.goodreads.com", "www.bbc.com", "hooks.example.com"]
TEXT = {"Content-Type": "text/plain"}
GOODREADS = "https://www.goodreads.com"
GOODREADS_ORIGIN = "https://www.goodreads.com:443"
ROBOTS = Reply(body=b"User-agent: metaparse\nDisallow: /private\n\nUser-agent: *\nDisallow: /\n", headers=TEXT)


class Probe:
    """A slow route that records, server-side, when each request started, which User-Agent
    it carried and the most requests it ever had in progress at once."""

    def __init__(self, pause: float = 0.0, reply: Reply | None = None):
        self.pause = pause
        self.reply = reply or Reply(body=b"<html><title>ok</title></html>")
        self.starts: list[float] = []
        self.agents: list[str] = []
        self.active = self.peak = 0
        self._lock = threading.Lock()

    def __call__(self, handler) -> None:
        with self._lock:
            self.starts.append(time.monotonic())
            self.agents.append(handler.headers.get("User-Agent", ""))
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(self.pause)
        with self._lock:  # before the reply: the client may start its next request right after it
            self.active -= 1
        send_reply(handler, self.reply)


def hang_up(handler) -> None:
    """Close the connection without a word: a network error for the client."""
    handler.close_connection = True
    handler.connection.shutdown(socket.SHUT_RDWR)


def by_host(replies: dict[str, Reply]) -> Callable:
    """A route answering per Host header: one server plays several sites."""
    def handle(handler) -> None:
        send_reply(handler, replies.get(handler.headers["Host"].split(":")[0], Reply(404, b"", TEXT)))
    return handle


@pytest.fixture(scope="module")
def server() -> Iterator[FixtureServer]:
    fixture = FixtureServer(HOSTS).start()
    yield fixture
    fixture.stop()


@pytest.fixture(scope="module")
def ca_bundle(server: FixtureServer, tmp_path_factory) -> str:
    return str(server.write_ca_bundle(tmp_path_factory.mktemp("ca") / "ca.pem"))


@pytest.fixture
def site(server: FixtureServer) -> FixtureServer:
    server.routes.clear()
    server.hits.clear()
    return server


def make_settings(server: FixtureServer, ca_bundle: str, redis_url: str, **env: str) -> Settings:
    """Quick settings for these tests: no spacing unless asked, robots.txt on."""
    return load_settings({
        "REDIS_URL": redis_url, "FETCH_CONNECT_TO": server.connect_to(*HOSTS), "FETCH_CA_BUNDLE": ca_bundle,
        "FETCH_DEADLINE": "10", "FETCH_CONNECT_TIMEOUT": "2", "FETCH_READ_TIMEOUT": "5",
        "FETCH_HOST_DELAY": "0", **env,
    })


@pytest.fixture
def polite(site, ca_bundle, redis_url, redis_client) -> Iterator[Callable[..., Fetcher]]:
    """polite(SETTING=value, ...): a Fetcher with politeness on a freshly flushed Redis."""
    made: list[Fetcher] = []

    def build(**env: str) -> Fetcher:
        settings = make_settings(site, ca_bundle, redis_url, **env)
        made.append(Fetcher(settings, Politeness.connect(settings)))
        return made[-1]

    yield build
    for fetcher in made:
        fetcher.close()


def fetch_until_done(fetcher: Fetcher, url: str, seconds: float = 30) -> None:
    """What RQ does with HostBusy (retry later), only sooner."""
    give_up = time.monotonic() + seconds
    while True:
        try:
            fetcher.fetch(url)
            return
        except HostBusy:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.05)


def hammer(settings: Settings, urls: list[str]) -> None:
    """A worker process: its own Fetcher, Politeness and Redis connection."""
    fetcher = Fetcher(settings, Politeness.connect(settings))
    for url in urls:
        fetch_until_done(fetcher, url)


# ---- settings -------------------------------------------------------------------------------

def test_settings_defaults_and_overrides(redis_url):
    defaults = load_settings({"REDIS_URL": redis_url})
    assert (defaults.fetch_host_concurrency, defaults.fetch_host_delay) == (2, 1.0)
    assert (defaults.robots_txt, defaults.robots_cache_seconds) == (True, 3600)
    custom = load_settings({"REDIS_URL": redis_url, "FETCH_HOST_CONCURRENCY": "5", "FETCH_HOST_DELAY": "0.25",
                            "ROBOTS_TXT": "false", "ROBOTS_CACHE_SECONDS": "60"})
    assert (custom.fetch_host_concurrency, custom.fetch_host_delay) == (5, 0.25)
    assert (custom.robots_txt, custom.robots_cache_seconds) == (False, 60)


def test_user_agent_token_is_the_product_name():
    assert user_agent_token("metaparse/1.0 (+metadata parser service)") == "metaparse"
    assert user_agent_token("MyBot") == "MyBot"


# ---- concurrency ---------------------------------------------------------------------------

def test_concurrency_never_exceeds_the_limit_across_processes(polite, site, ca_bundle, redis_url):
    probe = site.routes["/slow"] = Probe(pause=0.3)
    settings = make_settings(site, ca_bundle, redis_url, FETCH_HOST_CONCURRENCY="2", ROBOTS_TXT="false")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=hammer, args=(settings, [f"{GOODREADS}/slow?p={n}&i={i}" for i in range(2)]))
               for n in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0] * 6
    assert len(probe.starts) == 12 and probe.peak == 2


def test_concurrency_never_exceeds_the_limit_across_threads(polite, site):
    probe = site.routes["/slow"] = Probe(pause=0.2)
    politeness = polite(FETCH_HOST_CONCURRENCY="3", ROBOTS_TXT="false").politeness
    fetchers = [Fetcher(politeness.settings, politeness) for _ in range(8)]  # one per thread, as per process
    threads = [threading.Thread(target=fetch_until_done, args=(fetcher, f"{GOODREADS}/slow?t={n}"))
               for n, fetcher in enumerate(fetchers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(probe.starts) == 8 and probe.peak == 3


def test_busy_host_raises_transient_host_busy_and_other_hosts_are_free(polite, site):
    site.routes["/page"] = Reply(body=b"<html>ok</html>")
    fetcher = polite(FETCH_DEADLINE="2", FETCH_CONNECT_TIMEOUT="1", FETCH_READ_TIMEOUT="1", ROBOTS_TXT="false")
    slots = fetcher.politeness.slots
    held = [slots.try_acquire("www.goodreads.com") for _ in range(2)]
    assert None not in held and slots.try_acquire("www.goodreads.com") is None
    started = time.monotonic()
    with pytest.raises(HostBusy) as caught:
        fetcher.fetch("https://WWW.GoodReads.com/page")  # keyed by the lowercase host name
    assert caught.value.transient and caught.value.code == "host_busy"
    assert 0.9 <= time.monotonic() - started < 2  # waited half the deadline, not a whole worker's life
    assert "/page" not in site.hits
    assert fetcher.fetch("https://www.bbc.com/page").status == 200
    slots.release("www.goodreads.com", held[0])
    assert fetcher.fetch(f"{GOODREADS}/page").status == 200
    assert slots.in_use("www.goodreads.com") == 1  # the fetch gave its slot back


def test_each_redirect_hop_takes_a_slot_on_its_own_host(polite, site):
    site.routes["/moved"] = Reply(301, headers={"Location": "https://www.bbc.com/page"})
    site.routes["/page"] = Reply(body=b"<html>ok</html>")
    fetcher = polite(FETCH_DEADLINE="2", FETCH_CONNECT_TIMEOUT="1", FETCH_READ_TIMEOUT="1", ROBOTS_TXT="false")
    for _ in range(2):
        fetcher.politeness.slots.try_acquire("www.bbc.com")
    with pytest.raises(HostBusy, match="www.bbc.com"):
        fetcher.fetch(f"{GOODREADS}/moved")
    assert site.hits["/moved"] == 1 and "/page" not in site.hits
    assert fetcher.politeness.slots.in_use("www.goodreads.com") == 0


def test_lease_length_is_the_fetch_deadline_plus_a_margin(polite, redis_client):
    fetcher = polite(FETCH_DEADLINE="7")
    assert fetcher.politeness.slots.lease_ms == (7 + LEASE_MARGIN_SECONDS) * 1000
    fetcher.politeness.slots.try_acquire("www.goodreads.com")
    assert 0 < redis_client.pttl(host_slots_key("www.goodreads.com")) <= (7 + LEASE_MARGIN_SECONDS) * 1000


def _take_slot_and_die(redis_url: str) -> None:
    assert HostSlots(Redis.from_url(redis_url), 1, 0.6).try_acquire("www.goodreads.com")
    os.kill(os.getpid(), signal.SIGKILL)  # no finally, no release: a work-horse killed mid-fetch


def test_lease_of_a_killed_worker_expires(redis_client, redis_url):
    crash = multiprocessing.get_context("fork").Process(target=_take_slot_and_die, args=(redis_url,))
    crash.start()
    crash.join(10)
    assert crash.exitcode == -signal.SIGKILL
    slots = HostSlots(redis_client, 1, 0.6)
    assert slots.try_acquire("www.goodreads.com") is None  # the dead worker still holds it...
    time.sleep(0.7)
    assert slots.try_acquire("www.goodreads.com") is not None  # ...until its lease runs out


def test_redis_away_is_transient_not_a_permanent_failure(site, ca_bundle, redis_url):
    settings = make_settings(site, ca_bundle, redis_url)
    nowhere = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    site.routes["/page"] = Reply(body=b"<html>ok</html>")
    with pytest.raises(TransientFetchError, match="Redis"):
        Fetcher(settings, Politeness(nowhere, settings)).fetch(f"{GOODREADS}/page")
    assert site.hits == {}


# ---- spacing -------------------------------------------------------------------------------

def test_request_starts_to_one_host_are_spaced(polite, site):
    probe = site.routes["/spaced"] = Probe()
    politeness = polite(FETCH_HOST_DELAY="0.3", FETCH_HOST_CONCURRENCY="4", ROBOTS_TXT="false").politeness
    fetchers = [Fetcher(politeness.settings, politeness) for _ in range(4)]
    threads = [threading.Thread(target=fetcher.fetch, args=(f"{GOODREADS}/spaced?n={n}",))
               for n, fetcher in enumerate(fetchers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    starts = sorted(probe.starts)
    assert len(starts) == 4
    assert min(later - earlier for earlier, later in zip(starts, starts[1:])) >= 0.25


def test_spacing_is_per_host(polite, site):
    probe = site.routes["/spaced"] = Probe()
    fetcher = polite(FETCH_HOST_DELAY="2", ROBOTS_TXT="false")
    started = time.monotonic()
    fetcher.fetch(f"{GOODREADS}/spaced")
    fetcher.fetch("https://www.bbc.com/spaced")
    assert time.monotonic() - started < 1 and len(probe.starts) == 2


def test_a_long_wait_for_a_turn_is_host_busy_with_retry_after(redis_client):
    spacer = StartSpacer(redis_client, 10)
    assert spacer.wait_turn("www.goodreads.com", 1) == 0
    with pytest.raises(HostBusy) as caught:
        spacer.wait_turn("www.goodreads.com", 1)
    assert 9 <= caught.value.retry_after <= 10
    assert spacer.wait_turn("www.bbc.com", 1) == 0


# ---- a turn given by the frontier (jobs/frontier.py) ----------------------------------------

def give_turn(redis_client: Redis, token: str = "job-1", host: str = "www.goodreads.com", delay: float = 0) -> str:
    """What the workers' dispatch does for a job: a lease on one of its host's slots, and the
    host's next start a delay on."""
    now_ms = int(time.time() * 1000)
    redis_client.zadd(host_slots_key(host), {token: now_ms + 30_000})
    redis_client.set(host_next_start_key(host), now_ms + int(delay * 1000))
    return token


def host_delay(redis_client: Redis) -> int:
    return int(redis_client.get(host_delay_key("www.goodreads.com")))


def test_within_its_turn_a_job_fetches_robots_txt_and_its_page_without_waiting(polite, site, redis_client):
    site.routes["/robots.txt"] = Reply(body=b"User-agent: *\nAllow: /\n", headers=TEXT)
    site.routes["/page"] = Reply(body=b"<html>ok</html>")
    fetcher = polite(FETCH_HOST_DELAY="5")
    started = time.monotonic()
    with fetcher.politeness.turn(f"{GOODREADS}/page", give_turn(redis_client, delay=5)) as turn:
        fetcher.fetch(f"{GOODREADS}/page")
    assert time.monotonic() - started < 1  # not 5 s: robots.txt and the page are one turn
    assert turn.requests == 2 and site.hits == {"/robots.txt": 1, "/page": 1}
    assert redis_client.zcard(host_slots_key("www.goodreads.com")) == 0  # the slot went back
    next_start = int(redis_client.get(host_next_start_key("www.goodreads.com"))) / 1000
    seconds, micros = redis_client.time()
    assert 9 < next_start - (seconds + micros / 1e6) <= 10  # the second request pushed the next turn a delay on


def test_without_a_turn_a_fetch_takes_a_slot_and_its_start_as_before(polite, site, redis_client):
    site.routes["/page"] = Reply(body=b"<html>ok</html>")
    fetcher = polite(FETCH_HOST_DELAY="0.5", ROBOTS_TXT="false")
    fetcher.fetch(f"{GOODREADS}/page")
    started = time.monotonic()
    with fetcher.politeness.turn(f"{GOODREADS}/page", "a-job-never-given-a-turn") as turn:
        fetcher.fetch(f"{GOODREADS}/page")
    assert turn is None and 0.4 < time.monotonic() - started < 1.5


def test_a_crawl_delay_in_robots_txt_becomes_the_host_s_delay(polite, site, redis_client):
    site.routes["/robots.txt"] = Reply(body=b"User-agent: *\nCrawl-delay: 3\n", headers=TEXT)
    site.routes["/page"] = Reply(body=b"<html>ok</html>")
    fetcher = polite(FETCH_HOST_DELAY="1")
    with fetcher.politeness.turn(f"{GOODREADS}/page", give_turn(redis_client)):
        fetcher.fetch(f"{GOODREADS}/page")
    assert host_delay(redis_client) == 3000


def test_a_host_s_own_delay_setting_wins_over_the_default_and_is_capped(polite, site, redis_client):
    site.routes["/page"] = Reply(body=b"<html>ok</html>")
    fetcher = polite(FETCH_HOST_DELAY="1", FETCH_HOST_DELAYS="www.goodreads.com=2.5,www.bbc.com=0", ROBOTS_TXT="false")
    with fetcher.politeness.turn(f"{GOODREADS}/page", give_turn(redis_client)):
        fetcher.fetch(f"{GOODREADS}/page")
    assert host_delay(redis_client) == 2500
    capped = polite(FETCH_HOST_DELAYS="www.goodreads.com=30", FETCH_HOST_DELAY_MAX="10", ROBOTS_TXT="false")
    assert capped.politeness.delay_floor("www.goodreads.com", crawl_delay=120) == 10
    assert capped.politeness.delay_floor("www.bbc.com") == 0


@pytest.mark.parametrize("status", [429, 503])
def test_a_slow_down_answer_doubles_the_host_s_delay(polite, site, redis_client, status):
    site.routes["/page"] = Reply(status, b"later", {"Content-Type": "text/html", "Retry-After": "1"})
    fetcher = polite(FETCH_HOST_DELAY="1", ROBOTS_TXT="false")
    for expected in (2000, 4000):
        with pytest.raises(TransientFetchError):
            with fetcher.politeness.turn(f"{GOODREADS}/page", give_turn(redis_client)):
                fetcher.fetch(f"{GOODREADS}/page")
        assert host_delay(redis_client) == expected
    site.routes["/page"] = Reply(body=b"<html>ok</html>")
    with fetcher.politeness.turn(f"{GOODREADS}/page", give_turn(redis_client)):
        fetcher.fetch(f"{GOODREADS}/page")
    assert 2000 <= host_delay(redis_client) < 2100  # recovering: halfway back towards the floor


def test_a_fetch_timeout_doubles_the_host_s_delay_up_to_its_cap(polite, site, redis_client):
    site.routes["/page"] = Probe(pause=1.5)  # no answer within the fetch's deadline
    fetcher = polite(FETCH_HOST_DELAY="1", FETCH_HOST_DELAY_MAX="1.5", FETCH_DEADLINE="1", FETCH_CONNECT_TIMEOUT="1",
                     ROBOTS_TXT="false")
    with pytest.raises(FetchTimeout):
        with fetcher.politeness.turn(f"{GOODREADS}/page", give_turn(redis_client)):
            fetcher.fetch(f"{GOODREADS}/page")
    assert host_delay(redis_client) == 1500  # doubled to 2 s, capped at FETCH_HOST_DELAY_MAX


def test_a_page_not_found_leaves_the_host_s_delay_alone(polite, site, redis_client):
    fetcher = polite(FETCH_HOST_DELAY="1", ROBOTS_TXT="false")
    with pytest.raises(HttpStatusError):
        with fetcher.politeness.turn(f"{GOODREADS}/missing", give_turn(redis_client)):
            fetcher.fetch(f"{GOODREADS}/missing")
    assert host_delay(redis_client) == 1000


# ---- robots.txt ----------------------------------------------------------------------------

def test_robots_disallowed_page_is_refused_and_allowed_pages_are_fetched(polite, site, redis_client):
    robots = site.routes["/robots.txt"] = Probe(reply=ROBOTS)
    pages = site.routes["/public/page"] = Probe()
    fetcher = polite()
    with pytest.raises(RobotsDisallowed) as caught:
        fetcher.fetch(f"{GOODREADS}/private/page")
    assert not caught.value.transient and caught.value.code == "robots_disallowed"
    for n in range(5):
        assert fetcher.fetch(f"{GOODREADS}/public/page?n={n}").status == 200
    assert "/private/page" not in site.hits and site.hits["/public/page"] == 5
    assert site.hits["/robots.txt"] == 1  # fetched once, then read from Redis
    assert 0 < redis_client.ttl(robots_key(GOODREADS_ORIGIN)) <= 3600
    assert set(robots.agents + pages.agents) == {fetcher.settings.user_agent}


def test_robots_cache_is_shared_by_workers_and_kept_per_origin(polite, site):
    site.routes["/robots.txt"] = ROBOTS
    site.routes["/public/page"] = Reply(body=b"<html>ok</html>")
    polite().fetch(f"{GOODREADS}/public/page")
    polite().fetch(f"{GOODREADS}/public/page")  # another process: Redis has the rules
    assert site.hits["/robots.txt"] == 1
    polite().fetch("https://www.bbc.com/public/page")  # another origin: its own robots.txt
    assert site.hits["/robots.txt"] == 2


def test_a_cached_value_we_did_not_write_is_fetched_again(polite, site, redis_client):
    redis_client.set(robots_key(GOODREADS_ORIGIN), b"anything\nUser-agent: *\nDisallow:\n")
    site.routes["/robots.txt"] = ROBOTS
    with pytest.raises(RobotsDisallowed):
        polite().fetch(f"{GOODREADS}/private/page")
    assert site.hits["/robots.txt"] == 1


def test_an_unreadable_cached_value_holds_no_slot_while_robots_txt_is_fetched(polite, site, redis_client):
    redis_client.set(robots_key(GOODREADS_ORIGIN), b"anything")
    site.routes["/robots.txt"] = ROBOTS
    site.routes["/public/page"] = Reply(body=b"<html>ok</html>")
    assert polite(FETCH_HOST_CONCURRENCY="1").fetch(f"{GOODREADS}/public/page").status == 200
    assert site.hits["/robots.txt"] == 1 and redis_client.zcard(host_slots_key("www.goodreads.com")) == 0


def test_a_hop_with_robots_txt_cached_is_two_redis_round_trips(polite, site, redis_client):
    """The cached verdict comes with the slot (one script), then the slot's release."""
    site.routes["/robots.txt"] = ROBOTS
    site.routes["/public/page"] = Reply(body=b"<html>ok</html>")
    fetcher = polite()
    fetcher.fetch(f"{GOODREADS}/public/page")  # robots.txt fetched and cached, scripts loaded
    redis_client.config_resetstat()
    fetcher.fetch(f"{GOODREADS}/public/page")
    calls = {name.removeprefix("cmdstat_"): stat["calls"] for name, stat in redis_client.info("commandstats").items()}
    # commandstats also counts what the script calls (get, ttl, zadd...): the client sent two.
    assert calls.get("evalsha") == 1 and calls.get("zrem") == 1 and calls.get("get") == 1
    assert "multi" not in calls and "exec" not in calls


def test_a_page_refused_by_cached_rules_gives_its_slot_back(polite, site, redis_client):
    site.routes["/robots.txt"] = ROBOTS
    fetcher = polite(FETCH_HOST_CONCURRENCY="1")
    for _ in range(3):  # the first reads robots.txt, the others find it cached
        with pytest.raises(RobotsDisallowed):
            fetcher.fetch(f"{GOODREADS}/private/page")
    assert redis_client.zcard(host_slots_key("www.goodreads.com")) == 0 and site.hits == {"/robots.txt": 1}


def test_rules_for_other_agents_do_not_apply(polite, site):
    site.routes["/robots.txt"] = Reply(body=b"User-agent: otherbot\nDisallow: /\n", headers=TEXT)
    site.routes["/page"] = Reply(body=b"<html>ok</html>")
    assert polite().fetch(f"{GOODREADS}/page").status == 200


@pytest.mark.parametrize("status", [404, 410])
def test_missing_robots_txt_allows_everything(polite, site, status):
    site.routes["/robots.txt"] = Reply(status, b"gone", TEXT)
    site.routes["/private/page"] = Reply(body=b"<html>ok</html>")
    fetcher = polite()
    assert fetcher.fetch(f"{GOODREADS}/private/page").status == 200
    assert fetcher.fetch(f"{GOODREADS}/private/page").status == 200
    assert site.hits["/robots.txt"] == 1  # "no rules" is cached too


@pytest.mark.parametrize("status", [401, 403])
def test_forbidden_robots_txt_disallows_everything(polite, site, status):
    site.routes["/robots.txt"] = Reply(status, b"no", TEXT)
    site.routes["/page"] = Reply(body=b"<html>ok</html>")
    with pytest.raises(RobotsDisallowed, match=str(status)):
        polite().fetch(f"{GOODREADS}/page")
    assert "/page" not in site.hits


@pytest.mark.parametrize("status", [429, 503])
def test_unreachable_robots_txt_is_transient_and_cached_briefly(polite, site, redis_client, status):
    site.routes["/robots.txt"] = Reply(status, b"down", TEXT)
    site.routes["/page"] = Reply(body=b"<html>ok</html>")
    fetcher = polite()
    for _ in range(2):
        with pytest.raises(TransientFetchError) as caught:
            fetcher.fetch(f"{GOODREADS}/page")
        assert caught.value.transient and not isinstance(caught.value, RobotsDisallowed)
        assert 0 < caught.value.retry_after <= 30  # RQ retries once the short cache is gone
    assert site.hits["/robots.txt"] == 1 and "/page" not in site.hits
    assert 0 < redis_client.ttl(robots_key(GOODREADS_ORIGIN)) <= 30


def test_robots_txt_network_error_is_transient(polite, site):
    site.routes["/robots.txt"] = hang_up
    site.routes["/page"] = Reply(body=b"<html>ok</html>")
    with pytest.raises(TransientFetchError, match="robots.txt unreachable"):
        polite().fetch(f"{GOODREADS}/page")
    assert "/page" not in site.hits


def test_robots_txt_redirect_is_followed_on_the_safe_path(polite, site):
    site.routes["/robots.txt"] = Reply(301, headers={"Location": "https://www.bbc.com/rules.txt"})
    site.routes["/rules.txt"] = ROBOTS
    site.routes["/private/page"] = Reply(body=b"<html>ok</html>")
    with pytest.raises(RobotsDisallowed):
        polite().fetch(f"{GOODREADS}/private/page")
    assert site.hits["/rules.txt"] == 1


def test_robots_txt_redirect_to_a_private_address_fails_the_page_as_blocked(polite, site):
    # The guard refuses the redirect: the page is not fetched, and the cause is named.
    site.routes["/robots.txt"] = Reply(302, headers={"Location": f"https://127.0.0.1:{site.port}/internal.txt"})
    site.routes["/page"] = Reply(body=b"<html>ok</html>")
    with pytest.raises(BlockedAddress, match="127.0.0.1") as caught:
        polite().fetch(f"{GOODREADS}/page")
    assert not caught.value.transient
    assert "/internal.txt" not in site.hits and "/page" not in site.hits


def test_a_refused_page_host_stays_blocked_address(polite, site):
    with pytest.raises(BlockedAddress):
        polite().fetch(f"https://127.0.0.1:{site.port}/page")
    assert site.hits == {}


def test_each_redirect_hop_is_checked_against_its_own_robots_txt(polite, site):
    site.routes["/robots.txt"] = by_host({"www.bbc.com": Reply(body=b"User-agent: *\nDisallow: /news\n", headers=TEXT)})
    site.routes["/moved"] = Reply(301, headers={"Location": "https://www.bbc.com/news"})
    site.routes["/news"] = Reply(body=b"<html>ok</html>")
    with pytest.raises(RobotsDisallowed, match="www.bbc.com"):
        polite().fetch(f"{GOODREADS}/moved")
    assert site.hits["/robots.txt"] == 2 and "/news" not in site.hits


def test_robots_txt_with_a_byte_order_mark_is_read(polite, site):
    site.routes["/robots.txt"] = Reply(body=b"\xef\xbb\xbfUser-agent: *\nDisallow: /private\n", headers=TEXT)
    with pytest.raises(RobotsDisallowed):
        polite().fetch(f"{GOODREADS}/private/page")


def test_robots_txt_off_skips_it(polite, site):
    site.routes["/robots.txt"] = ROBOTS
    site.routes["/private/page"] = Reply(body=b"<html>ok</html>")
    assert polite(ROBOTS_TXT="false").fetch(f"{GOODREADS}/private/page").status == 200
    assert "/robots.txt" not in site.hits


def test_callbacks_skip_robots_txt_and_host_limits(polite, site):
    site.routes["/robots.txt"] = Reply(403, b"no", TEXT)
    site.routes["/hook"] = Reply(204, b"", {})
    fetcher = polite(FETCH_HOST_CONCURRENCY="1")
    fetcher.politeness.slots.try_acquire("hooks.example.com")  # the host is "full"
    assert fetcher.post("https://hooks.example.com/hook", b"{}", {"Content-Type": "application/json"}) == 204
    assert "/robots.txt" not in site.hits


def test_robots_fetch_shares_the_page_fetch_deadline(polite, site):
    def stall(handler) -> None:
        time.sleep(3)
    site.routes["/robots.txt"] = stall
    fetcher = polite(FETCH_DEADLINE="1", FETCH_CONNECT_TIMEOUT="1", FETCH_READ_TIMEOUT="5")
    started = time.monotonic()
    with pytest.raises(TransientFetchError):
        fetcher.fetch(f"{GOODREADS}/page")
    assert time.monotonic() - started < 2


# ---- one guard decision per hop, no re-entrant fetch -----------------------------------------

def test_each_hop_asks_the_guard_once_and_nothing_else_resolves_a_name(polite, site, monkeypatch):
    """guard.approve is the hop's one decision: the resolver is asked once per request the site
    sees (pages, redirects and robots.txt alike), and no other look-up of a site's name happens."""
    resolved: list[str] = []
    monkeypatch.setattr(guard, "resolve_public", lambda host, port: resolved.append(host) or "127.0.0.1")
    monkeypatch.setattr(guard, "DEFAULT_PORTS", {"https": site.port, "http": 80})  # the approved port is the site's
    looked_up: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *args, **kwargs: looked_up.append(host)
                        or real_getaddrinfo(host, *args, **kwargs))
    site.routes["/robots.txt"] = Reply(body=b"User-agent: *\nAllow: /\n", headers=TEXT)
    site.routes["/moved"] = Reply(301, headers={"Location": "https://www.bbc.com/page"})
    site.routes["/page"] = Reply(body=b"<html>ok</html>")
    fetcher = polite(FETCH_CONNECT_TO="")  # names resolved by the guard, not set in advance
    fetcher.fetch(f"{GOODREADS}/moved")  # each host's robots.txt, then its page: four requests
    fetcher.fetch(f"{GOODREADS}/moved")  # robots.txt cached: two
    assert resolved == ["www.goodreads.com"] * 2 + ["www.bbc.com"] * 2 + ["www.goodreads.com", "www.bbc.com"]
    assert sum(site.hits.values()) == len(resolved)
    assert not set(looked_up) & {"www.goodreads.com", "www.bbc.com"}  # the connections dialled the approved address


def test_reading_robots_txt_never_re_enters_the_fetch(polite, site, monkeypatch):
    """robots.txt is read on the Transport, not by Fetcher.fetch again, and each of its hops
    passes politeness with no robots.txt reader: reading rules cannot ask for rules."""
    depth, deepest, hops = [0], [0], []
    real_fetch, real_hop = Fetcher.fetch, Politeness.hop

    def fetch(self, url):  # noqa: ANN001, ANN202
        depth[0] += 1
        deepest[0] = max(deepest[0], depth[0])
        try:
            return real_fetch(self, url)
        finally:
            depth[0] -= 1

    def hop(self, target, deadline, read_robots=None):  # noqa: ANN001, ANN202
        hops.append((target.url, read_robots is not None))
        return real_hop(self, target, deadline, read_robots)

    monkeypatch.setattr(Fetcher, "fetch", fetch)
    monkeypatch.setattr(Politeness, "hop", hop)
    moved = Reply(301, headers={"Location": "https://www.bbc.com/rules.txt"})
    site.routes["/robots.txt"] = by_host({"www.goodreads.com": moved})
    site.routes["/rules.txt"] = Reply(body=b"User-agent: *\nAllow: /\n", headers=TEXT)
    site.routes["/page"] = Reply(body=b"<html>ok</html>")
    assert polite().fetch(f"{GOODREADS}/page").status == 200
    assert deepest == [1]
    assert hops == [(f"{GOODREADS}/page", True),  # a page's hop: robots.txt is read for it...
                    (f"{GOODREADS}/robots.txt", False), ("https://www.bbc.com/rules.txt", False)]  # ...with none
    assert site.hits == {"/robots.txt": 1, "/rules.txt": 1, "/page": 1}  # bbc's own robots.txt was never asked for


# ---- a job run by RQ ----------------------------------------------------------------------

BOOK_URL = f"{GOODREADS}/book/show/42"


@pytest.fixture
def worker_env(site, ca_bundle, redis_url, redis_client, monkeypatch) -> dict[str, str]:
    env = {"REDIS_URL": redis_url, "FETCH_CONNECT_TO": site.connect_to(*HOSTS), "FETCH_CA_BUNDLE": ca_bundle,
           "FETCH_RETRIES": "2", "FETCH_HOST_DELAY": "0", "FETCH_DEADLINE": "2", "FETCH_CONNECT_TIMEOUT": "1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(jobs.context, "_context", None)  # rebuild settings (and politeness) from this env
    return env


def run_job(redis_client, worker_env) -> str:
    job_id = Submitter(redis_client, load_settings(worker_env)).submit(route(BOOK_URL)).job_id
    queues = [make_queue(name, redis_client) for name in QUEUE_NAMES]
    SimpleWorker(queues, connection=redis_client, serializer=JSONSerializer).work(burst=True)
    return job_id


def test_job_for_a_disallowed_page_fails_at_once_as_robots_disallowed(site, worker_env, redis_client):
    site.routes["/robots.txt"] = Reply(body=b"User-agent: metaparse\nDisallow: /book/\n", headers=TEXT)
    job_id = run_job(redis_client, worker_env)
    record = Storage(redis_client).load_record(BOOK_URL)
    assert record["status"] == "failed" and record["error"]["code"] == "robots_disallowed"
    job = fetch_job(redis_client, job_id)
    assert job.get_status() == JobStatus.FAILED and job.retries_left == 0
    assert ScheduledJobRegistry("goodreads", connection=redis_client).get_job_ids() == []
    assert "/book/show/42" not in site.hits and site.hits["/robots.txt"] == 1


def test_job_for_a_busy_host_is_retried_later(site, worker_env, redis_client):
    site.routes["/book/show/42"] = Reply(body=b"<html><title>x</title></html>")
    slots = HostSlots(redis_client, 2, 60)
    assert slots.try_acquire("www.goodreads.com") and slots.try_acquire("www.goodreads.com")
    job_id = run_job(redis_client, worker_env)
    job = fetch_job(redis_client, job_id)
    assert job.get_status() == JobStatus.SCHEDULED and job.retries_left == 2  # host_busy spends no retry
    shown = attempts_json(JobState(JobStatus.SCHEDULED, job.meta, job.retries_left))  # what GET /jobs, /info show
    assert shown["attempts"] == 0 and shown["last_error"] is None and shown["next_try_at"] is not None  # no attempt
    assert Storage(redis_client).load_record(BOOK_URL) is None
    assert site.hits == {}


def test_host_busy_does_not_spend_the_jobs_retries():
    from types import SimpleNamespace

    from jobs.retries import will_retry

    class FakeJob(SimpleNamespace):
        def save_meta(self) -> None:
            pass

    job = FakeJob(retries_left=None, retry_intervals=None, meta={})
    assert will_retry(job, HostBusy("busy"), max_retries=0) and job.retries_left == 1
    job = FakeJob(retries_left=2, retry_intervals=None, meta={"host_busy": 50})
    assert will_retry(job, HostBusy("busy"), max_retries=3) and job.retries_left == 2  # the cap: now it counts
