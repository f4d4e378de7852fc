"""Parse benchmark: ms per page for every parser and page, beside the cost of the tree alone.

For each page it times, side by side in one run:
  parse      parsers.parse(text, url), the real thing
  lxml-tree  BeautifulSoup(text, "lxml") alone
  html-tree  BeautifulSoup(text, "html.parser") alone
  raw-lxml   lxml.html.fromstring(text), no BeautifulSoup
  floor      regex-extract JSON-LD and __NEXT_DATA__ and json.loads them (the least any parser can do)
and the peak Python memory of one parse (tracemalloc). Pages: the real saved pages in
../shared/pages (or $METAPARSE_PAGES_DIR) when present, else the project's own fixtures.

Run: `make bench` (or .venv/bin/python -m bench.parse_bench [--repeat N]).
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

import lxml.html
from bs4 import BeautifulSoup

import parsers
from config import PROJECT_ROOT
from errors import ParseError
from parsers.encoding import decode_html
from tests.pages import PAGES_DIR

RESULTS = PROJECT_ROOT / "bench" / "results" / "parse.json"
SCRIPT_JSON = re.compile(
    r'<script[^>]*(?:application/ld\+json|id="__NEXT_DATA__")[^>]*>(.*?)</script>', re.S | re.I
)
FIXTURE_URLS = {
    "goodreads": "https://www.goodreads.com/book/show/1",
    "news": "https://www.bbc.com/news",
    "generic": "https://example.org/article",
}


def pages() -> list[tuple[str, str, bytes]]:
    """(label, url, body) for every page to measure."""
    manifest = PAGES_DIR / "MANIFEST.json"
    if manifest.is_file():
        return [(e["file"], e["url"], (PAGES_DIR / e["file"]).read_bytes()) for e in json.loads(manifest.read_text())]
    fixtures = sorted((PROJECT_ROOT / "tests" / "fixtures").glob("*/*.html"))
    return [(str(p.relative_to(PROJECT_ROOT)), fixture_url(p), p.read_bytes()) for p in fixtures]


def fixture_url(path: Path) -> str:
    folder = path.parent.name
    return FIXTURE_URLS.get(folder, FIXTURE_URLS["generic"] if folder != "e2e" else FIXTURE_URLS["goodreads"])


def floor(text: str) -> None:
    for block in SCRIPT_JSON.findall(text):
        try:
            json.loads(block)
        except ValueError:
            pass


def best_ms(action: Callable[[], object], repeat: int) -> float:
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


def measure(label: str, url: str, body: bytes, repeat: int) -> dict:
    text = decode_html(body)
    row = {"page": label, "kib": round(len(body) / 1024)}
    row["parse"] = best_ms(lambda: safe_parse(text, url), repeat)
    row["lxml_tree"] = best_ms(lambda: BeautifulSoup(text, "lxml"), repeat)
    row["html_tree"] = best_ms(lambda: BeautifulSoup(text, "html.parser"), repeat)
    row["raw_lxml"] = best_ms(lambda: lxml.html.fromstring(text), repeat)
    row["floor"] = best_ms(lambda: floor(text), repeat)
    row["peak_kib"] = round(peak_kib(text, url))
    return row


def print_table(rows: list[dict]) -> None:
    header = f"{'page':58} {'KiB':>5} {'parse':>8} {'lxml':>8} {'html.p':>8} {'raw':>7} {'floor':>7} {'÷floor':>7} {'peakKiB':>8}"
    print(header)
    for r in rows:
        ratio = r["parse"] / max(r["floor"], 0.01)
        print(f"{r['page'][-58:]:58} {r['kib']:>5} {r['parse']:>8.1f} {r['lxml_tree']:>8.1f} {r['html_tree']:>8.1f} "
              f"{r['raw_lxml']:>7.1f} {r['floor']:>7.2f} {ratio:>7.1f} {r['peak_kib']:>8}")
    total = {k: sum(r[k] for r in rows) for k in ("parse", "lxml_tree", "html_tree", "raw_lxml", "floor")}
    print(f"\nall pages, ms: parse {total['parse']:.0f}, lxml tree {total['lxml_tree']:.0f}, "
          f"html.parser tree {total['html_tree']:.0f}, raw lxml {total['raw_lxml']:.0f}, floor {total['floor']:.1f}")
    print(f"html.parser tree / lxml tree = {total['html_tree'] / total['lxml_tree']:.2f}x; "
          f"parse / lxml tree = {total['parse'] / total['lxml_tree']:.2f}x; parse / floor = {total['parse'] / total['floor']:.1f}x")


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--repeat", type=int, default=5)
    args = options.parse_args(argv)
    rows = [measure(label, url, body, args.repeat) for label, url, body in pages()]
    print_table(rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"repeat": args.repeat, "pages": rows}, indent=1))
    print(f"\nwritten to {RESULTS.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
