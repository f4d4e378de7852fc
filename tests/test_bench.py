"""The benchmark's harness works (tiny workloads): its numbers are checked here, not its speed."""
from __future__ import annotations

import json

import pytest

from bench import baselines, e2e_bench
from bench.stack import NEWS_HOSTS, PageSet, book_urls, news_urls, running_stack
from sources import route

pytestmark = pytest.mark.e2e
TINY = e2e_bench.Sizes(books=12, fronts=4, seed_books=6, seed_fronts=2, scale_books=6, lone=2, workers=1, scale=(1,))


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
    assert [row["system"] for row in result["burst"]] == ["floor", "seed", "service"]
    assert all(row["failed"] == 0 and row["urls_per_s"] > 0 for row in result["burst"])
    assert result["ratios"]["service_vs_seed"] > 0 and result["scale"][0]["workers"] == 1
    assert result["memory"]["steady_rss_mib"] > 0
    json.dumps(result)  # what bench/results/latest.json will hold
