"""The benchmark's harness works (tiny workloads): its numbers are checked here, not its speed."""
from __future__ import annotations

import json

import pytest
import requests

from bench import baselines, e2e_bench, polite_bench, ran_with
from bench.stack import FAST_SETTINGS, NEWS_HOSTS, PageSet, book_urls, generic_hosts, news_urls, running_stack
from sources import route
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e
TINY = e2e_bench.Sizes(books=12, fronts=4, seed_books=6, seed_fronts=2, scale_books=6, lone=2, workers=1, scale=(1,))
TINY_POLITE = polite_bench.PoliteSizes(books=4, fronts=5, generic=4, generic_hosts=2, probe_every=1.5)


def test_bench_urls_are_accepted_by_the_service_and_spread_over_the_news_hosts():
    urls = book_urls(3) + news_urls(10)
    assert [route(url, allow_any_site=False).canonical_url for url in urls] == urls
    assert {url.split("/")[2] for url in news_urls(10)} == set(NEWS_HOSTS)


def test_fixture_pages_stand_in_when_the_saved_pages_are_absent():
    pages = PageSet.from_fixtures()
    assert pages.books and set(pages.fronts) == set(NEWS_HOSTS)


def test_floor_extracts_json_blocks_or_headlines():
    page = '<script type="application/ld+json">{"@type": "Book"}</script><h2>not needed</h2>'
    assert baselines.floor_extract(page) == [{"@type": "Book"}]
    assert baselines.floor_extract("<h2 class=x><a>Rain <b>today</b></a></h2>") == ["Rain today"]


def test_percentile_is_nearest_rank():
    assert e2e_bench.percentile([5, 1, 4, 2, 3], 50) == 3
    assert e2e_bench.percentile(list(range(1, 101)), 99) == 99


def test_end_to_end_bench_measures_every_system_on_real_processes():
    with running_stack(PageSet.from_fixtures()) as stack:
        result = e2e_bench.run(stack, TINY)
    assert [row["system"] for row in result["burst"]] == ["floor", "seed", e2e_bench.SEED_PRELOADED, "service"]
    assert all(row["failed"] == 0 and row["urls_per_s"] > 0 for row in result["burst"])
    assert result["ratios"]["service_vs_seed"] > 0 and result["scale"][0]["workers"] == 1
    assert result["memory"]["steady_rss_mib"] > 0
    assert result["ratios"]["seed_preloaded_vs_seed"] > 0
    assert result["burst"][2]["ran_with"]["host_delay_s"] == "none"
    assert result["burst"][3]["ran_with"]["host_delay_s"] == FAST_SETTINGS["FETCH_HOST_DELAY"]
    json.dumps(result)  # what bench/results/latest.json will hold


def test_ideal_bound_is_the_busiest_hosts_urls_times_its_delay():
    urls = book_urls(300) + news_urls(5) + polite_bench.generic_urls(200, generic_hosts(50))
    assert polite_bench.ideal_seconds(urls, 1.0) == 300
    assert polite_bench.ideal_seconds(urls, 0.5) == 150
    assert polite_bench.ideal_seconds(urls, 1.0, {"www.goodreads.com": 0.01}) == 4  # then 4 pages a generic host
    assert polite_bench.ideal_seconds([], 1.0) == 0
    assert polite_bench.makespan_target(300) == pytest.approx(332)


def test_polite_workload_routes_as_it_says_and_spreads_over_hosts():
    generic = polite_bench.generic_urls(200, generic_hosts(50))
    assert {route(url, allow_any_site=True).source.name for url in generic} == {"generic"}
    assert len({url.split("/")[2] for url in generic}) == 50
    fronts = polite_bench.front_urls(5, 995)  # the largest numbers a front path may carry
    assert {route(url, allow_any_site=True).source.name for url in fronts} == {"news"}
    assert {url.split("/")[2] for url in fronts} == set(NEWS_HOSTS)


def test_job_hash_helpers_read_host_busy_and_spacing():
    assert polite_bench.host_busy_retries(b'{"lane": "x", "host_busy": 2}') == 2
    assert polite_bench.host_busy_retries(None) == polite_bench.host_busy_retries(b"not json") == 0
    assert polite_bench.spacing([3.0, 1.0, 2.5]) == {"min_s": 0.5, "p50_s": 0.5}
    assert polite_bench.spacing([1.0]) == {"min_s": None, "p50_s": None}


def test_ran_with_reads_the_shipped_defaults_where_the_env_is_silent(tmp_path):
    redis = RedisServer(appendonly=True, data_dir=tmp_path)  # not started: only its setting is read
    shipped = ran_with.service({"WORKERS": "3"}, redis)
    assert (shipped["host_delay_s"], shipped["robots_txt"], shipped["workers"]) == ("1.0", "true", 3)
    fast = ran_with.service(FAST_SETTINGS, redis)
    assert (fast["host_delay_s"], fast["rate_limits"], fast["log_level"]) == ("0", "false", "WARNING")
    line = ran_with.describe(fast)
    for part in ("FETCH_HOST_DELAY=0", "FETCH_HOST_CONCURRENCY=64", "robots.txt false", "rate limits false",
                 "log level WARNING", "Redis appendonly yes", "2 worker processes"):
        assert part in line
    assert "no service" in ran_with.describe(ran_with.NO_SERVICE)


def test_local_site_serves_robots_txt_and_a_titled_page_for_extra_hosts():
    with running_stack(PageSet.from_fixtures(), extra_hosts=generic_hosts(2)) as stack:
        def get(path: str, host: str) -> str:
            local, _ = stack.site.local_url(f"https://{host}{path}")
            return requests.get(local, headers={"Host": host}, verify=str(stack.site.ca_bundle), timeout=10).text

        assert get("/robots.txt", "www.goodreads.com") == "User-agent: *\nAllow: /\n"
        assert "<title>" in get("/page-1", "site-02.bench.test")
        assert "site-02.bench.test" in stack.site.fetch_env()["FETCH_CONNECT_TO"]


def test_polite_bench_runs_the_shipped_politeness_end_to_end():
    with running_stack(PageSet.from_fixtures(), extra_hosts=polite_bench.SITE_HOSTS) as stack:
        result = polite_bench.run(stack, TINY_POLITE)
    assert result["ran_with"]["host_delay_s"] == "1.0" and result["ran_with"]["robots_txt"] == "true"
    assert result["urls"] == {"goodreads": 4, "generic": 4, "news": result["news"]["samples"]}
    assert result["unfinished"] == result["failed"] == result["jobs_slept_for_host"] == 0
    assert result["ideal_s"] == 4 and result["makespan_s"] >= 3  # four Goodreads starts, one a second
    assert result["robots_txt_fetches"] == result["hosts"] == 8
    json.dumps(result)
