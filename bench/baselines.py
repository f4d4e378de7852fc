"""The two in-run baselines the service is measured against, end to end.

seed:  what a first hand-rolled RQ scraper looks like: a fork-per-job rq.Worker, a new HTTPS
       connection per job (requests.get), BeautifulSoup with html.parser, a few selectors.
       `rq worker` never imports the job's module itself, so every forked horse imports it
       (requests, bs4) and compiles its CSS selectors anew.
seed + preloaded imports: the same, run by PreloadedSeedWorker, which imports this module
       and compiles the selectors once in the worker before it forks, as the service's pool
       does (jobs/worker/__main__.py preload_job_code): how much of the service's gain over the
       seed is preloading alone.
floor: the least a worker can do per URL: pop from a Redis list, fetch over one reused
       keep-alive connection, regex-extract the page's JSON blocks, json.loads, store.

Neither is safe (no SSRF guard, no caps, no retries, no crash recovery): they bound what
the service's safety and accuracy cost. Both reach the local site at 127.0.0.1 with the
site's Host header, since they have no pinned resolver.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time

import requests
from bs4 import BeautifulSoup
from redis import Redis
from rq import Worker, get_current_job

SEED_QUEUE = "seed"
SEED_DONE = "bench:seed:done"  # counter of finished seed jobs
FLOOR_QUEUE = "bench:floor:queue"  # list of JSON tasks
FLOOR_DONE = "bench:floor:done"
RESULT_TTL = 3600
JSON_BLOCKS = re.compile(
    r'<script[^>]*(?:application/ld\+json|id="__NEXT_DATA__")[^>]*>(.*?)</script>', re.S | re.I
)
HEADLINE = re.compile(r"<h[23][^>]*>(.*?)</h[23]>", re.S | re.I)
TAGS = re.compile(r"<[^>]+>")


# ---- seed -----------------------------------------------------------------------------------

def seed_job(url: str, local_url: str, host: str, ca_bundle: str, kind: str) -> None:
    """An RQ job (run in a forked horse): fetch, parse with html.parser, store the JSON."""
    response = requests.get(local_url, headers={"Host": host}, verify=ca_bundle, timeout=30)  # no reuse
    soup = BeautifulSoup(response.text, "html.parser")
    data = seed_book(soup) if kind == "goodreads" else seed_headlines(soup)
    connection = get_current_job().connection
    with connection.pipeline() as pipe:
        pipe.set(f"bench:seed:{url}", json.dumps({"data": data, "at": time.time()}), ex=RESULT_TTL)
        pipe.incr(SEED_DONE)
        pipe.execute()


def seed_book(soup: BeautifulSoup) -> dict:
    """The fields a seed scraper reads with selectors (plus the JSON-LD block)."""
    jsonld_tag = soup.find("script", type="application/ld+json")
    jsonld = json.loads(jsonld_tag.string) if jsonld_tag and jsonld_tag.string else {}
    title = soup.find("h1")
    description = soup.select_one('[data-testid="description"]')
    return {
        "title": title.get_text(" ", strip=True) if title else None,
        "authors": [a.get_text(strip=True) for a in soup.select(".ContributorLink__name")],
        "rating": (jsonld.get("aggregateRating") or {}).get("ratingValue") if isinstance(jsonld, dict) else None,
        "description": description.get_text(" ", strip=True) if description else None,
        "genres": [a.get_text(strip=True) for a in soup.select('[data-testid="genresList"] a')],
    }


def seed_headlines(soup: BeautifulSoup) -> dict:
    return {"headlines": [h.get_text(" ", strip=True) for h in soup.select("h2, h3") if h.get_text(strip=True)]}


class PreloadedSeedWorker(Worker):
    """rq.Worker (fork per job) whose horses inherit the seed job's imports and compiled selectors.

    Naming this class to `rq worker --worker-class` imports this module (and requests, bs4)
    in the worker process; __init__ then runs the job's parsing once on a tiny page, so
    soupsieve's selector cache and html.parser's lazy parts are warm before any fork.
    """

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)
        warm_up_seed()


def warm_up_seed() -> None:
    soup = BeautifulSoup('<h1>t</h1><h2>h</h2><div data-testid="genresList"><a>g</a></div>', "html.parser")
    seed_book(soup)
    seed_headlines(soup)


# ---- floor ----------------------------------------------------------------------------------

def floor_task(url: str, local_url: str, host: str) -> str:
    return json.dumps({"url": url, "local": local_url, "host": host})


def floor_extract(html: str) -> list:
    """The page's JSON blocks (JSON-LD, __NEXT_DATA__), or its <h2>/<h3> texts when it has none."""
    blocks = []
    for block in JSON_BLOCKS.findall(html):
        try:
            blocks.append(json.loads(block))
        except ValueError:
            pass
    return blocks or [TAGS.sub("", h).strip() for h in HEADLINE.findall(html)]


def floor_worker(redis_url: str, ca_bundle: str) -> None:
    """Pop, fetch (one keep-alive session), extract, store: until the process is killed."""
    connection = Redis.from_url(redis_url)
    session = requests.Session()
    while True:
        popped = connection.blpop([FLOOR_QUEUE], timeout=1)
        if popped is None:
            continue
        task = json.loads(popped[1])
        response = session.get(task["local"], headers={"Host": task["host"]}, verify=ca_bundle, timeout=30)
        data = floor_extract(response.text)
        with connection.pipeline(transaction=False) as pipe:
            pipe.set(f"bench:floor:{task['url']}", json.dumps({"n": len(data), "at": time.time()}), ex=RESULT_TTL)
            pipe.incr(FLOOR_DONE)
            pipe.execute()


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description="the floor baseline's worker loop")
    options.add_argument("redis_url")
    options.add_argument("ca_bundle")
    args = options.parse_args(argv)
    try:
        floor_worker(args.redis_url, args.ca_bundle)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
