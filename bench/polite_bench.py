"""Politeness under load: the service with its shipped per-host limits, on a mixed backlog.

The other parts turn politeness off (bench/stack.py FAST_SETTINGS) to measure the pipeline;
this one runs the shipped defaults (FETCH_HOST_DELAY=1, FETCH_HOST_CONCURRENCY=2,
ROBOTS_TXT=true, RATE_LIMITS=true, LOG_LEVEL=INFO, WORKERS=2, FETCH_RETRIES=3) and asks
whether the per-host frontier (jobs/frontier.py) keeps the workers free for other hosts
while one host's backlog drains at its own pace. Workload, in submission order:

  300 Goodreads book URLs (one host), POSTed in chunks of SUBMIT_CHUNK (several batches);
  200 generic pages spread over 50 hosts (site-01.bench.test ..., ALLOW_ANY_SITE=true);
  5 news fronts, one per news host;
  then, every PROBE_EVERY s while the Goodreads backlog drains, 5 fresh news fronts (new
  section paths, never cached): the latency of news under a backlog, POST to stored record.

Figures: makespan (first POST to last record) against the ideal lower bound (the busiest
host's URLs x its delay: 300 x 1 s), target <= 1.1 x ideal + 2 s; news latency p50/p99/max,
target p99 <= 3 s; the share of worker time spent in jobs (sum of RQ's ended_at - started_at
over workers x makespan: low is right, the workers must not sit in a host's delay); jobs
that slept for a host (meta "host_busy" > 0: should be none); failed records; how many
times robots.txt was fetched (once per host is right); the Goodreads job starts' spacing.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import requests
from redis import Redis
from rq.job import Job
from rq.utils import str_to_date

from bench import loadgen, ran_with
from bench.stack import NEWS_HOSTS, Stack, book_urls, generic_hosts
from config import Settings
from jobs.queues import job_id_for
from storage import Storage

BOOKS_START = 30_000_000  # URL numbers no other part uses, so nothing is answered from a cache
FRONTS_START = 1  # front paths take 3 digits at most: a 4-digit segment reads as an article (sources.py)
SOURCE_OF = {"goodreads": "goodreads", "news": "news", "generic": "generic"}  # kind -> the source it must route to
SUBMIT_CHUNK = 100  # URLs per POST /parse
POLL_SECONDS = 0.2  # how often pending records are looked for (latency comes from fetched_at, not this)
STUCK_AFTER = 120.0  # s past the makespan target before the run stops waiting
TARGET_FACTOR, TARGET_SLACK = 1.1, 2.0  # makespan target: <= 1.1 x ideal + 2 s
NEWS_P99_TARGET = 3.0  # s
WRITE_LIMIT_PER_MINUTE = 60  # the shipped RATE_LIMIT_WRITE: the bench's own POSTs must stay under it


@dataclass(frozen=True)
class PoliteSizes:
    books: int = 300
    fronts: int = 5
    generic: int = 200
    generic_hosts: int = 50
    probe_every: float = 15.0  # s between rounds of fresh news fronts


QUICK = PoliteSizes(books=40, generic=40, generic_hosts=10, probe_every=8.0)
SITE_HOSTS = generic_hosts(PoliteSizes().generic_hosts)  # the local site plays these, quick run or not


# ---- pure helpers -----------------------------------------------------------------------------

def generic_urls(count: int, hosts: tuple[str, ...]) -> list[str]:
    """count pages spread round robin over hosts."""
    return [f"https://{hosts[n % len(hosts)]}/page-{n}" for n in range(count)]


def front_urls(count: int, start: int) -> list[str]:
    """Fresh news fronts, one host after another; a path no other part uses, so never cached."""
    return [f"https://{NEWS_HOSTS[n % len(NEWS_HOSTS)]}/bench/polite-{n}" for n in range(start, start + count)]


def ideal_seconds(urls: Iterable[str], delay: float, delays: Mapping[str, float] | None = None) -> float:
    """The lower bound of any polite makespan: the busiest host's URLs x that host's delay."""
    per_host = Counter((urlsplit(url).hostname or "").lower() for url in urls)
    return max((count * (delays or {}).get(host, delay) for host, count in per_host.items()), default=0.0)


def makespan_target(ideal: float) -> float:
    return TARGET_FACTOR * ideal + TARGET_SLACK


def percentile(values: list[float], q: float) -> float | None:
    return loadgen.percentile(sorted(values), q)


def spacing(starts: list[float]) -> dict:
    """Gaps between consecutive starts (s): the smallest and the median."""
    ordered = sorted(starts)
    gaps = [b - a for a, b in zip(ordered, ordered[1:])]
    return {"min_s": round(min(gaps), 3) if gaps else None, "p50_s": round(percentile(gaps, 50), 3) if gaps else None}


def shipped_env() -> dict[str, str]:
    """The shipped politeness, undoing FAST_SETTINGS; other sites allowed for the generic pages."""
    return {**ran_with.SHIPPED, "FETCH_RETRIES": str(Settings.fetch_retries), "ALLOW_ANY_SITE": "true"}


# ---- one run ------------------------------------------------------------------------------------

@dataclass
class Submitted:
    url: str  # canonical, as the service answered
    kind: str  # goodreads, generic or news
    posted_at: float  # unix time just before its POST
    probe_round: int  # 0: the initial submission; 1, 2...: fresh news fronts under the backlog
    done_at: float | None = None  # the record's fetched_at
    status: str | None = None


def check_source(item: dict, kind: str) -> None:
    """A news front taken for an article would go to the generic parser and the pages queue
    (ALLOW_ANY_SITE is on): the run would then measure another workload than it says."""
    if item["source"] != SOURCE_OF[kind]:
        raise RuntimeError(f"{item['canonical_url']} was routed to {item['source']}, not {SOURCE_OF[kind]}")


@dataclass
class PoliteRun:
    """Submits the workload to a running service and watches its records arrive."""

    base: str
    storage: Storage
    http: requests.Session = field(default_factory=requests.Session)
    items: list[Submitted] = field(default_factory=list)
    posts: int = 0
    cached: int = 0  # URLs answered "cached": would mean a stale Redis, and a flattering run

    def post(self, urls: list[str], kind: str, probe_round: int = 0) -> None:
        for start in range(0, len(urls), SUBMIT_CHUNK):
            posted_at = time.time()
            answer = self.http.post(f"{self.base}/parse", json={"urls": urls[start:start + SUBMIT_CHUNK]}, timeout=30)
            answer.raise_for_status()  # a 429 here means the bench's own POSTs were rate limited
            self.posts += 1
            for item in answer.json()["accepted"]:
                check_source(item, kind)
                self.cached += item["status"] == "cached"
                self.items.append(Submitted(item["canonical_url"], kind, posted_at, probe_round))

    def pending(self) -> list[Submitted]:
        return [item for item in self.items if item.done_at is None]

    def collect(self) -> None:
        """Note the records stored since the last look (only pending ones are read)."""
        waiting = self.pending()
        for item, record in zip(waiting, self.storage.load_records([item.url for item in waiting])):
            if record is not None:
                item.done_at, item.status = record["fetched_at"].timestamp(), record["status"]

    def books_left(self) -> int:
        return sum(1 for item in self.pending() if item.kind == "goodreads")


def submit_and_watch(run: PoliteRun, sizes: PoliteSizes, delay: float) -> float:
    """The whole workload; the time of the first POST."""
    started = time.time()
    run.post(book_urls(sizes.books, BOOKS_START), "goodreads")
    run.post(generic_urls(sizes.generic, SITE_HOSTS[:sizes.generic_hosts]), "generic")
    run.post(front_urls(sizes.fronts, FRONTS_START), "news")
    probe_while_draining(run, sizes, delay, started)
    return started


def probe_while_draining(run: PoliteRun, sizes: PoliteSizes, delay: float, started: float) -> None:
    """Fresh news fronts every probe_every s while the Goodreads backlog drains, then wait for all."""
    give_up = started + makespan_target(sizes.books * delay) + STUCK_AFTER
    next_probe, probe_round, next_front = started + sizes.probe_every, 0, FRONTS_START + sizes.fronts
    while run.pending() and time.time() < give_up:
        run.collect()
        # No probe once the backlog is about to drain: it would measure an idle service.
        if time.time() >= next_probe and run.books_left() * delay > sizes.probe_every:
            probe_round += 1
            run.post(front_urls(sizes.fronts, next_front), "news", probe_round)
            next_front += sizes.fronts
            next_probe += sizes.probe_every
        time.sleep(POLL_SECONDS)


# ---- what the RQ job hashes say --------------------------------------------------------------

def job_facts(connection: Redis, urls: list[str]) -> list[dict]:
    """started_at, ended_at (unix) and the host_busy retries of each URL's job, one round trip."""
    with connection.pipeline(transaction=False) as pipe:
        for url in urls:
            pipe.hmget(Job.key_for(job_id_for(url)), "started_at", "ended_at", "meta")
        answers = pipe.execute()
    return [job_fact(started, ended, meta) for started, ended, meta in answers]


def job_fact(started: bytes | None, ended: bytes | None, meta: bytes | None) -> dict:
    return {"started": when(started), "ended": when(ended), "host_busy": host_busy_retries(meta)}


def when(raw: bytes | None) -> float | None:
    return str_to_date(raw).timestamp() if raw else None


def host_busy_retries(meta: bytes | None) -> int:
    """The job's meta (JSON: the service's queues use RQ's JSON serializer) "host_busy" count."""
    try:
        return int(json.loads(meta or b"{}").get("host_busy", 0))
    except (ValueError, AttributeError, TypeError):
        return 0


# ---- the figures -------------------------------------------------------------------------------

def summarize(run: PoliteRun, facts: list[dict], started: float, delay: float, workers: int) -> dict:
    finished = [item for item in run.items if item.done_at is not None]
    makespan = max((item.done_at for item in finished), default=started) - started
    ideal = ideal_seconds([item.url for item in run.items], delay)
    return {"urls": dict(Counter(item.kind for item in run.items)), "posts": run.posts, "cached_answers": run.cached,
            "makespan_s": round(makespan, 2), **makespan_figures(makespan, ideal, len(finished) == len(run.items)),
            "news": news_figures(run.items), "unfinished": len(run.items) - len(finished),
            "failed": sum(1 for item in finished if item.status != "done"),
            **job_figures(run.items, facts, makespan, workers)}


def job_figures(items: list[Submitted], facts: list[dict], makespan: float, workers: int) -> dict:
    """From the RQ job hashes: time in jobs over workers x makespan, jobs that slept, Goodreads spacing."""
    busy = sum(f["ended"] - f["started"] for f in facts if f["started"] and f["ended"])
    goodreads_starts = [f["started"] for f, item in zip(facts, items) if item.kind == "goodreads" and f["started"]]
    news = [(f, item) for f, item in zip(facts, items) if item.kind == "news" and f["started"] and f["ended"]]
    return {"workers_busy_share": round(busy / (workers * makespan), 3) if makespan > 0 else None,
            "jobs_slept_for_host": sum(1 for f in facts if f["host_busy"] > 0),
            "goodreads_start_spacing": spacing(goodreads_starts),
            # where a news front's latency goes: waiting for a worker's dispatch, or the job itself
            "news_wait_p50_s": rounded(percentile([f["started"] - item.posted_at for f, item in news], 50)),
            "news_job_p50_s": rounded(percentile([f["ended"] - f["started"] for f, _ in news], 50))}


def makespan_figures(makespan: float, ideal: float, complete: bool) -> dict:
    target = makespan_target(ideal)
    return {"ideal_s": round(ideal, 2), "ratio": round(makespan / ideal, 3) if ideal else None,
            "target_s": round(target, 2), "makespan_pass": complete and makespan <= target}


def news_figures(items: list[Submitted]) -> dict:
    """Latency (s) of every news front, POST to record; the first round (beside the generic burst) apart."""
    latencies = [item.done_at - item.posted_at for item in items if item.kind == "news" and item.done_at]
    first = [item.done_at - item.posted_at for item in items if item.kind == "news" and item.done_at
             and item.probe_round == 0]
    p99 = percentile(latencies, 99)
    return {"samples": len(latencies), "rounds": 1 + max((i.probe_round for i in items), default=0),
            "p50_s": rounded(percentile(latencies, 50)), "p99_s": rounded(p99),
            "max_s": rounded(max(latencies, default=None)),
            "first_round_max_s": rounded(max(first, default=None)), "target_p99_s": NEWS_P99_TARGET,
            "pass": p99 is not None and p99 <= NEWS_P99_TARGET}


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# ---- the run, and its print-out -----------------------------------------------------------------

def run(stack: Stack, sizes: PoliteSizes | None = None) -> dict:
    """The polite bench on a running stack whose site plays SITE_HOSTS; a dict ready for JSON."""
    sizes = sizes or PoliteSizes()
    connection = Redis.from_url(stack.redis.url)
    # Earlier parts ran with FETCH_HOST_DELAY=0 on this Redis, and a host's adapted delay is
    # remembered for an hour: start from an empty Redis, as a fresh deployment would.
    connection.flushdb()
    env = shipped_env()
    service = stack.start_service(int(env["WORKERS"]), **env)
    robots_before = stack.site.server.hits.get("/robots.txt", 0)
    try:
        polite = PoliteRun(service.base, Storage(connection))
        delay = float(env["FETCH_HOST_DELAY"])
        started = submit_and_watch(polite, sizes, delay)
        facts = job_facts(connection, [item.url for item in polite.items])
        result = summarize(polite, facts, started, delay, int(env["WORKERS"]))
        result["ran_with"] = ran_with.service(service.worker_env, stack.redis)
    finally:
        stack.stop_service(service)
    return {**result, **context(sizes, stack.site.server.hits.get("/robots.txt", 0) - robots_before)}


def context(sizes: PoliteSizes, robots_fetches: int) -> dict:
    hosts = 1 + min(sizes.fronts, len(NEWS_HOSTS)) + min(sizes.generic_hosts, sizes.generic)
    return {"sizes": asdict(sizes), "robots_txt_fetches": robots_fetches, "hosts": hosts}


def print_table(result: dict) -> None:
    urls = result["urls"]
    print(f"workload: {urls.get('goodreads', 0)} Goodreads book URLs (1 host), {urls.get('generic', 0)} generic pages "
          f"over {result['sizes']['generic_hosts']} hosts, {urls.get('news', 0)} news fronts over the news hosts "
          f"({result['news']['rounds']} rounds, every {result['sizes']['probe_every']:.0f} s); {result['hosts']} hosts")
    print("  " + ran_with.describe(result["ran_with"]))
    print(f"  the bench's own POST /parse: {result['posts']} in {result['makespan_s']:.0f} s, under the shipped "
          f"{WRITE_LIMIT_PER_MINUTE}/minute write limit, so rate limits stay on")
    print_makespan(result)
    print_news(result["news"])
    print_workers(result)


def print_makespan(result: dict) -> None:
    verdict = "pass" if result["makespan_pass"] else "MISS"
    print(f"makespan {result['makespan_s']:.1f} s (first POST to last record); ideal {result['ideal_s']:.0f} s "
          f"(busiest host's URLs x its delay); ratio {result['ratio']:.3f}; target <= {TARGET_FACTOR} x ideal + "
          f"{TARGET_SLACK:.0f} s = {result['target_s']:.1f} s: {verdict}"
          + (f" ({result['unfinished']} URLs never got a record)" if result["unfinished"] else ""))


def print_news(news: dict) -> None:
    verdict = "pass" if news["pass"] else "MISS"
    print(f"news latency, POST to record, {news['samples']} fronts: p50 {seconds(news['p50_s'])}, "
          f"p99 {seconds(news['p99_s'])}, max {seconds(news['max_s'])} (first round, beside the generic burst: "
          f"max {seconds(news['first_round_max_s'])}); target p99 <= {news['target_p99_s']:.0f} s: {verdict}")


def print_workers(result: dict) -> None:
    gaps = result["goodreads_start_spacing"]
    share = result["workers_busy_share"] or 0.0
    print(f"workers busy in jobs {share:.1%} of {result['ran_with']['workers']} x makespan; jobs that slept for "
          f"a host (host_busy retries): {result['jobs_slept_for_host']}; failed: {result['failed']}; "
          f"answered from cache: {result['cached_answers']}")
    print(f"robots.txt fetched {result['robots_txt_fetches']} times for {result['hosts']} hosts; Goodreads job "
          f"starts: smallest gap {seconds(gaps['min_s'])}, median {seconds(gaps['p50_s'])}; news fronts, POST to "
          f"job start p50 {seconds(result['news_wait_p50_s'])}, job p50 {seconds(result['news_job_p50_s'])}")


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"
