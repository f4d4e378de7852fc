"""Parse benchmark: ms per page for every parser and page, beside the cost of the tree alone.

For each page it times, side by side in one run (median of `repeat` runs each):
  decode     parsers.encoding.decode_html(body): bytes to text, not part of "parse"
  parse      parsers.parse(text, url), the real thing (the parser picked by the URL)
  lxml-tree  BeautifulSoup(text, "lxml") alone
  html-tree  BeautifulSoup(text, "html.parser") alone
  raw-lxml   lxml.html.fromstring(text), no BeautifulSoup
  floor      regex-extract JSON-LD and __NEXT_DATA__ and json.loads them (the least any parser can do)
and, from one more parse each, whether the Goodreads parser built the page's tree at all (its
fast path answers Next.js pages from their structured data alone; the news and generic parsers
always read a tree, shown "-") and the parse's peak Python memory (tracemalloc). Pages: the real saved pages in ../shared/pages (or $METAPARSE_PAGES_DIR) when
present, else the project's own fixtures.

The summary gives totals per parser and the modern-Goodreads figure: parse / floor summed over
the Next.js book pages (manifest layout goodreads-next-*, the soft 404 left out), the target of
the fast path (<= 3x), with the worst single page beside it.

Run: `make bench` (or .venv/bin/python -m bench.parse_bench [--repeat N]); bench/run.py calls
run() and print_table().
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import lxml.html
from bs4 import BeautifulSoup

import parsers
from bench import ran_with
from config import PROJECT_ROOT
from errors import ParseError
from parsers import goodreads
from parsers.encoding import decode_html
from sources import source_for_url
from tests.pages import PAGES_DIR

TREE_MARKS = {True: "yes", False: "no", None: "-"}
RESULTS = PROJECT_ROOT / "bench" / "results" / "parse.json"
SCRIPT_JSON = re.compile(
    r'<script[^>]*(?:application/ld\+json|id="__NEXT_DATA__")[^>]*>(.*?)</script>', re.S | re.I
)
FIXTURE_URLS = {
    "goodreads": "https://www.goodreads.com/book/show/1",
    "news": "https://www.bbc.com/news",
    "generic": "https://example.org/article",
}
TIMED = ("decode", "parse", "lxml_tree", "html_tree", "raw_lxml", "floor")
MODERN_GOODREADS = re.compile(r"^goodreads-next-\d{4}$")  # manifest layouts; "...-soft-404" is not a book


def pages() -> list[tuple[str, str, str | None, bytes]]:
    """(label, url, layout, body) for every page to measure; the fixtures have no layout."""
    manifest = PAGES_DIR / "MANIFEST.json"
    if manifest.is_file():
        return [(e["file"], e["url"], e.get("layout"), (PAGES_DIR / e["file"]).read_bytes())
                for e in json.loads(manifest.read_text())]
    fixtures = sorted((PROJECT_ROOT / "tests" / "fixtures").glob("*/*.html"))
    return [(str(p.relative_to(PROJECT_ROOT)), fixture_url(p), None, p.read_bytes()) for p in fixtures]


def fixture_url(path: Path) -> str:
    folder = path.parent.name
    return FIXTURE_URLS.get(folder, FIXTURE_URLS["generic"] if folder != "e2e" else FIXTURE_URLS["goodreads"])


def floor(text: str) -> None:
    for block in SCRIPT_JSON.findall(text):
        try:
            json.loads(block)
        except ValueError:
            pass


def median_ms(action: Callable[[], object], repeat: int) -> float:
    """Median of `repeat` runs, in milliseconds (median: robust to a noisy shared core)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def safe_parse(text: str, url: str) -> None:
    try:
        parsers.parse(text, url)
    except ParseError:
        pass  # a soft-404 page costs time all the same


def peak_kib(text: str, url: str) -> float:
    tracemalloc.start()
    safe_parse(text, url)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 1024


def goodreads_builds_tree(text: str, url: str) -> bool | None:
    """For a Goodreads page, True when its parse built the page's tree (goodreads.Page.doc);
    None for the other parsers, which always read one."""
    if source_for_url(url).name != "goodreads":
        return None
    with mock.patch.object(goodreads, "build_document", wraps=goodreads.build_document) as build:
        safe_parse(text, url)
    return build.called


def measure(label: str, url: str, layout: str | None, body: bytes, repeat: int) -> dict:
    text = decode_html(body)
    row: dict = {"page": label, "parser": source_for_url(url).name, "layout": layout, "kib": round(len(body) / 1024)}
    row["decode"] = median_ms(lambda: decode_html(body), repeat)
    row["parse"] = median_ms(lambda: safe_parse(text, url), repeat)
    row["lxml_tree"] = median_ms(lambda: BeautifulSoup(text, "lxml"), repeat)
    row["html_tree"] = median_ms(lambda: BeautifulSoup(text, "html.parser"), repeat)
    row["raw_lxml"] = median_ms(lambda: lxml.html.fromstring(text), repeat)
    row["floor"] = median_ms(lambda: floor(text), repeat)
    row["ratio"] = round(row["parse"] / max(row["floor"], 0.01), 2)
    row["tree"] = goodreads_builds_tree(text, url)
    row["peak_kib"] = round(peak_kib(text, url))
    return {key: round(value, 3) if isinstance(value, float) else value for key, value in row.items()}


def totals(rows: list[dict]) -> dict:
    """Summed times of rows, their parse / floor and parse / lxml-tree ratios, and trees built."""
    total: dict = {key: round(sum(r[key] for r in rows), 2) for key in TIMED}
    total["pages"] = len(rows)
    total["trees_built"] = sum(r["tree"] is not False for r in rows)
    total["parse_per_floor"] = round(total["parse"] / max(total["floor"], 0.01), 2)
    total["parse_per_lxml_tree"] = round(total["parse"] / max(total["lxml_tree"], 0.01), 2)
    return total


def modern_goodreads(rows: list[dict]) -> dict:
    """The fast path's target figure: parse / floor over the modern Goodreads book pages."""
    modern = [r for r in rows if r["parser"] == "goodreads" and MODERN_GOODREADS.match(r["layout"] or "")]
    if not modern:
        return {"pages": 0}
    summary = totals(modern)
    summary["worst_page_ratio"] = max(r["ratio"] for r in modern)
    summary["target"] = 3.0
    return summary


def run(repeat: int = 5) -> dict:
    """Every page measured: {"repeat", "pages": [row, ...], "by_parser": {name: totals},
    "total": totals, "modern_goodreads": totals + worst page ratio}, all JSON-serialisable."""
    rows = [measure(label, url, layout, body, repeat) for label, url, layout, body in pages()]
    by_parser = {name: totals([r for r in rows if r["parser"] == name]) for name in dict.fromkeys(r["parser"] for r in rows)}
    return {"repeat": repeat, "pages": rows, "by_parser": by_parser, "total": totals(rows),
            "modern_goodreads": modern_goodreads(rows), "ran_with": ran_with.NO_SERVICE}


def print_table(result: dict) -> None:
    print(f"{'page':50} {'parser':9} {'KiB':>5} {'parse':>7} {'lxml':>7} {'html.p':>7} {'floor':>6} "
          f"{'÷floor':>7} {'tree':>5} {'decode':>6} {'peakKiB':>8}")
    for r in result["pages"]:
        print(f"{r['page'][-50:]:50} {r['parser']:9} {r['kib']:>5} {r['parse']:>7.1f} {r['lxml_tree']:>7.1f} "
              f"{r['html_tree']:>7.1f} {r['floor']:>6.2f} {r['ratio']:>7.1f} {TREE_MARKS[r['tree']]:>5} "
              f"{r['decode']:>6.1f} {r['peak_kib']:>8}")
    print()
    for name, total in [*result["by_parser"].items(), ("all", result["total"])]:
        print_totals(name, total)
    print_target(result["modern_goodreads"])
    print(ran_with.describe(result.get("ran_with", ran_with.NO_SERVICE)))


def print_totals(name: str, t: dict) -> None:
    print(f"{name:9} {t['pages']:>2} pages, ms: parse {t['parse']:.0f}, lxml tree {t['lxml_tree']:.0f}, "
          f"html.parser tree {t['html_tree']:.0f}, floor {t['floor']:.1f}, decode {t['decode']:.0f}; "
          f"parse/floor {t['parse_per_floor']:.1f}x, parse/lxml tree {t['parse_per_lxml_tree']:.2f}x, "
          f"trees built {t['trees_built']}/{t['pages']}")


def print_target(modern: dict) -> None:
    if not modern["pages"]:
        print("modern Goodreads pages: none among the pages measured")
        return
    verdict = "met" if modern["parse_per_floor"] <= modern["target"] else "NOT met"
    print(f"modern Goodreads ({modern['pages']} pages): parse {modern['parse']:.1f} ms vs floor "
          f"{modern['floor']:.1f} ms = {modern['parse_per_floor']:.2f}x the floor (target <= "
          f"{modern['target']:.0f}x: {verdict}); worst page {modern['worst_page_ratio']:.1f}x; "
          f"trees built {modern['trees_built']}/{modern['pages']}")


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--repeat", type=int, default=5)
    args = options.parse_args(argv)
    result = run(args.repeat)
    print_table(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    print(f"\nwritten to {RESULTS.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
