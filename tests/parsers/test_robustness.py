"""Every parser, any input: a dict with the full contract key set, or ParseError; in bounded time.

Inputs: hypothesis tag soup and random bytes, truncated and mutilated pages (hand-made
fixtures and, when present, the real saved pages), pages without JSON-LD, broken JSON in
JSON-LD and in <script id="__NEXT_DATA__">, elements nested 10,000 deep, 5 MiB of junk.
Each goes through parsers.parse(...) with a Goodreads, a news and a generic URL, so every
parser sees every input. Any exception other than ParseError fails the test.
"""
from __future__ import annotations

import json
import os
import random
import re
import time
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parsers
from errors import ParseError
from parsers import base, tree
from parsers.base import MAX_DEPTH, MAX_PARSE_CHARS, flattened_html, limit_html
from sources import source_for_url
from tests.pages import manifest, read_page
from tests.parsers.contract import assert_contract_keys

GOODREADS_URL = "https://www.goodreads.com/book/show/42399429-how-javascript-works"
NEWS_URL = "https://www.bbc.com/news"
GENERIC_URL = "https://example.com/blog/2024/05/a-post"
URLS = [GOODREADS_URL, NEWS_URL, GENERIC_URL]
URL_IDS = ["goodreads", "news", "generic"]
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURE_URLS = {"goodreads": GOODREADS_URL, "news": NEWS_URL, "generic": GENERIC_URL}
HAND_MADE_PAGES = sorted(p for p in FIXTURES.glob("*/*.html") if p.parent.name in FIXTURE_URLS)

SMALL_INPUT_SECONDS = 3.0  # CPU seconds for a few kilobytes: anything slower is a pathology
# CPU seconds for 5 MiB of junk or 10,000-deep nesting. The densest junk takes 9.4-10.7 s of
# CPU on the 2-core box on a slow day (2026-12-07): the bound is for pathologies (anything
# super-linear is many times over it), not for the box's speed of the day.
BIG_INPUT_SECONDS = 15.0
MiB = 1024 * 1024
HYPOTHESIS = settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# Pieces of real markup, glued at random by hypothesis.
FRAGMENTS = [
    "<html>", "</html>", "<head>", "</head>", "<body>", "</body>", "<title>", "</title>",
    "<h1>", "</h1>", "<div>", "</div>", "<p>", "</p>", "<a href='/book/show/1'>", "</a>",
    "<article>", "<main>", "<nav>", "<span class='author'>", "<time datetime='2020-01-01'>",
    '<meta property="og:title" content="', '<meta name="author" content="', '">', "'>",
    '<link rel="canonical" href="', '<script type="application/ld+json">', "</script>",
    '<script id="__NEXT_DATA__" type="application/json">', "<script>", "<style>", "</style>",
    '{"@type": "Book", "name": "', '{"@type": "NewsArticle", "headline": ', '"author": [',
    '{"props": {"pageProps": {"apolloState": {', "}", "]", '"', ",", ":", "null", "[",
    "<!--", "-->", "<![CDATA[", "]]>", "&amp;", "&#", "&#x", ";", "<br/>", "<img src=",
    "<table><tr><td>", "</td>", "<h2 data-testid='card-headline'>", "<h3 class='gs-c-promo-heading__title'>",
    "\x00", "\ufffd", "\u202e", "\r", "\n", " ", "é", "人", "ع",
]
SOUP = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)), max_size=120).map("".join)


def parse_or_refuse(html: str | bytes, url: str, content_type: str | None = None, seconds: float = SMALL_INPUT_SECONDS) -> dict | None:
    """parsers.parse(...) answered a full contract dict or ParseError, in time; the dict or None.

    Time is this process's CPU time: the bound is on the parser's work, which other test
    runs sharing the machine change little. Little, not nothing: caches and clock speed
    moved one page's 5 MiB parse from 8.4 to 10.9 s, so a run over the bound is timed once
    more and the faster of the two decides, as benchmarks take the best of several runs (a
    parser over the bound is over it both times)."""
    data, elapsed = timed_parse(html, url, content_type)
    if elapsed >= seconds:
        data, elapsed = min(timed_parse(html, url, content_type), (data, elapsed), key=lambda result: result[1])
    assert elapsed < seconds, f"{url}: {elapsed:.1f} s of CPU for {len(html)} chars"
    if data is not None:
        assert_contract_keys(data)
        assert data["kind"] == source_for_url(url).kind
    return data


def timed_parse(html: str | bytes, url: str, content_type: str | None) -> tuple[dict | None, float]:
    """(parsers.parse's answer, None for a ParseError; the CPU seconds it took)."""
    started = time.process_time()
    try:
        data = parsers.parse(html, url, content_type)
    except ParseError:
        data = None
    return data, time.process_time() - started


def real_pages() -> list[tuple[str, str]]:
    """(file, url) of each saved real page, or skip (with tests/pages.py's reason) when they are absent."""
    return [(entry["file"], entry["url"]) for entry in manifest()]


# ---------------------------------------------------------------------------------------
# Generated input.
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", URLS, ids=URL_IDS)
@HYPOTHESIS
@given(html=SOUP)
def test_tag_soup(url: str, html: str) -> None:
    parse_or_refuse(html, url)


@pytest.mark.parametrize("url", URLS, ids=URL_IDS)
@HYPOTHESIS
@given(
    body=st.one_of(st.binary(max_size=2000), SOUP.map(lambda text: text.encode("utf-8", "surrogatepass"))),
    content_type=st.sampled_from([None, "text/html", "text/html; charset=utf-8", "text/html; charset=gb2312",
                                  "text/html; charset=utf-16", "application/octet-stream; charset=bogus"]),
)
def test_random_bytes(url: str, body: bytes, content_type: str | None) -> None:
    parse_or_refuse(body, url, content_type)


@pytest.mark.parametrize("url", URLS, ids=URL_IDS)
@pytest.mark.parametrize(
    "html",
    [
        "", " ", "\x00", "<", ">", "<>", "</>", "<html>", "<!DOCTYPE html>", "<title></title>",
        "<title>\ud800 lone surrogate</title><p>text</p>", "<p>\x00\x00 nul</p>",
        "<?xml version='1.0' encoding='utf-8'?><html><title>x</title></html>",
        "<title>" + "t" * 100_000 + "</title>", "<meta property='og:title' content='" + "x" * 100_000 + "'>",
        "<p>" + "word " * 100_000 + "</p>",
    ],
    ids=lambda html: repr(html[:24]),
)
def test_odd_small_inputs(url: str, html: str) -> None:
    parse_or_refuse(html, url)


# ---------------------------------------------------------------------------------------
# Mutilated pages: hand-made fixtures (always) and real pages (when present).
# ---------------------------------------------------------------------------------------
@pytest.mark.skipif(not HAND_MADE_PAGES, reason="no hand-made fixture pages")
@HYPOTHESIS
@given(data=st.data())
def test_hand_made_pages_cut_and_spliced(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(HAND_MADE_PAGES))
    body = path.read_bytes()
    cut = data.draw(st.integers(0, len(body)))
    junk = data.draw(st.binary(max_size=64) | SOUP.map(str.encode))
    mutated = data.draw(st.sampled_from([body[:cut], body[:cut] + junk + body[cut:], body[cut:], junk + body[:cut]]))
    for url in URLS:
        parse_or_refuse(mutated, url)


@pytest.mark.parametrize("fraction", [0.02, 0.1, 0.5, 0.9])
def test_real_pages_truncated(fraction: float) -> None:
    for file, url in real_pages():
        body = read_page(file)
        parse_or_refuse(body[: int(len(body) * fraction)], url)


JSONLD_SCRIPT = re.compile(rb"<script[^>]*application/ld\+json[^>]*>.*?</script>", re.IGNORECASE | re.DOTALL)
NEXT_DATA = re.compile(rb'(<script[^>]*id="__NEXT_DATA__"[^>]*>)(.*?)(</script>)', re.IGNORECASE | re.DOTALL)


def test_real_pages_without_jsonld() -> None:
    for file, url in real_pages():
        parse_or_refuse(JSONLD_SCRIPT.sub(b"", read_page(file)), url)


BROKEN_JSON = [
    b"",
    b"{{{ not json",
    b'{"@type": "Book", "name": "cut here',
    b"[" * 100_000 + b"]" * 100_000,  # json.loads raises RecursionError on this
    b"[" * 950 + b"]" * 950,  # just inside json.loads' limit: whoever walks it must not recurse
    b'{"a": ' * 50_000 + b"1" + b"}" * 50_000,
    b"null", b"[]", b'"a string"', b"12345",
    b'{"@type": 5, "name": ["x", {"y": null}], "author": {"name": ["A", 1]}, "aggregateRating": "high"}',
    b'{"props": {"pageProps": {"apolloState": {"Book:1": {"title": null, "details": 7}}}}}',
    b'{"props": null}',
    b"\xff\xfe\x00garbage",
]


@pytest.mark.parametrize("broken", BROKEN_JSON, ids=lambda b: repr(b[:20]))
def test_real_pages_with_broken_json(broken: bytes) -> None:
    """Every JSON-LD block and __NEXT_DATA__ payload of each real page replaced by broken JSON."""
    for file, url in real_pages():
        body = read_page(file)
        if not (JSONLD_SCRIPT.search(body) or NEXT_DATA.search(body)):
            continue
        body = JSONLD_SCRIPT.sub(lambda _: b'<script type="application/ld+json">' + broken + b"</script>", body)
        body = NEXT_DATA.sub(lambda match: match.group(1) + broken + match.group(3), body)
        parse_or_refuse(body, url)


@pytest.mark.parametrize("url", URLS, ids=URL_IDS)
@pytest.mark.parametrize("broken", BROKEN_JSON, ids=lambda b: repr(b[:20]))
def test_small_pages_with_broken_json(url: str, broken: bytes) -> None:
    text = broken.decode("utf-8", "replace")
    html = (
        "<html><head><title>A title</title>"
        f'<script type="application/ld+json">{text}</script>'
        f'<script id="__NEXT_DATA__" type="application/json">{text}</script>'
        "</head><body><h1 data-testid='bookTitle'>A title</h1><p>Some words.</p></body></html>"
    )
    parse_or_refuse(html, url)


# ---------------------------------------------------------------------------------------
# Deep nesting and big junk.
# ---------------------------------------------------------------------------------------
DEEP = 10_000
HEAD = "<html><head><title>Deep</title></head><body>"


def deep_pages() -> dict[str, str]:
    return {
        "divs": HEAD + "<div>" * DEEP + "<p>bottom</p>" + "</div>" * DEEP + "<p>after</p>",
        "unclosed": HEAD + "<div><span>" * DEEP + "text",
        # the parsers climb to the ancestors of what they read: depth x width, unless bounded
        "deep-then-wide": HEAD + "<div>" * DEEP + "a<br>" * 20_000,
        "tables": HEAD + "<table><tr><td>" * DEEP + "cell",
        "misnested": HEAD + "<b><i><p>" * DEEP + "x",
        "lists": HEAD + "<ul><li>" * DEEP,
        "in-head": "<html><head>" + "<noscript>" * DEEP + "<title>T</title>",
    }


@pytest.mark.parametrize("url", URLS, ids=URL_IDS)
@pytest.mark.parametrize("shape", list(deep_pages()))
def test_nested_10000_deep(url: str, shape: str) -> None:
    parse_or_refuse(deep_pages()[shape], url, seconds=BIG_INPUT_SECONDS)


def junk_pages() -> dict[str, str | bytes]:
    rng = random.Random(5)
    pieces = [f for f in FRAGMENTS if f not in ("\x00",)]
    return {
        "random-bytes": os.urandom(5 * MiB),
        "random-tags": "".join(rng.choice(pieces) for _ in range(5 * MiB // 6)),
        "dense-tags": "<b>x</b>" * (5 * MiB // 8),
        "angle-brackets": "<" * (5 * MiB),
        "one-long-line": "<title>T</title><p>" + "w" * (5 * MiB),
        "head-then-junk": '<title>T</title><meta property="og:title" content="x">' + "&#x1F600;" * (5 * MiB // 9),
    }


@pytest.mark.parametrize("url", URLS, ids=URL_IDS)
@pytest.mark.parametrize("kind", list(junk_pages()))
def test_5_mib_of_junk(url: str, kind: str) -> None:
    parse_or_refuse(junk_pages()[kind], url, seconds=BIG_INPUT_SECONDS)


# ---------------------------------------------------------------------------------------
# parsers.base.flattened_html, which tree.build_document runs on a page nested too deep.
# ---------------------------------------------------------------------------------------
def test_flattened_html_keeps_the_text_and_scripts_of_deep_nesting() -> None:
    script = '<script type="application/ld+json">{"a": "<b> & c"}</script>'
    deep = "<div>" * 1000 + "deep <i>text</i> &amp; more<script>x<y</script>" + "</div>" * 1000
    html = "<html><head>" + script + "</head><body>" + deep + "<p>after</p>"
    doc = tree.build_document(flattened_html(html))
    assert lxml_levels(doc) <= MAX_DEPTH
    assert [script.text for script in doc.find_all(tree.SCRIPTS)] == ['{"a": "<b> & c"}']
    text = tree.page_text(doc, " ")
    assert "deep text & more" in " ".join(text.split())
    assert "after" in text
    assert "x<y" not in text  # a dropped script's code does not become page text


def test_flattened_html_cuts_huge_pages_and_replaces_lone_surrogates() -> None:
    assert len(flattened_html("<p>" + "x" * (MAX_PARSE_CHARS + 10))) <= MAX_PARSE_CHARS + 100
    assert "\ud800" not in flattened_html("<p>a\ud800b</p>")


def test_build_document_runs_no_extra_lxml_pass_on_a_page_within_the_depth() -> None:
    """The depth check is one XPath on the tree built: only a page nested too deep is read
    again (flattened by base.flattened_html, then built once more)."""
    pages = ["<html><head><title>T</title></head><body>" + "<div>" * 62 + "x"]
    pages += [path.read_text(encoding="utf-8", errors="replace") for path in HAND_MADE_PAGES]
    with mock.patch.object(base, "_lxml_events", wraps=base._lxml_events) as lxml_pass:
        for html in pages:
            tree.build_document(html)
        assert not lxml_pass.called
        tree.build_document(deep_pages()["divs"])
        assert lxml_pass.called


def test_build_document_flattens_only_past_max_depth() -> None:
    with mock.patch.object(base, "_Flattener", wraps=base._Flattener) as flattener:
        tree.build_document("<html><body>" + "<div>" * (MAX_DEPTH - 2) + "x")  # html and body count
        assert not flattener.called
        tree.build_document("<html><body>" + "<div>" * (MAX_DEPTH - 1) + "x")
        assert flattener.called


# README's numbers written out: the tests above take the constants, which could drift from them.
README_MAX_CHARS = 2_500_000
README_MAX_DEPTH = 64


def test_a_page_is_read_up_to_two_and_a_half_million_characters() -> None:
    head = "<html><head><title>T</title></head><body><p>"
    words = "abcd " * ((README_MAX_CHARS - len(head)) // 5 + 1000)  # a thousand words past the cap
    kept = README_MAX_CHARS - len(head)
    assert parsers.parse(head + words, GENERIC_URL)["word_count"] == -(-kept // 5)  # a cut word counts


def nested_page(levels: int) -> str:
    return "<html><body>" + "<div>" * (levels - 2) + "deep text"  # html and body are two levels


def lxml_levels(doc: tree.Document) -> int:
    return max(len(list(element.iterancestors())) + 1 for element in doc.elements())


@pytest.mark.parametrize("levels", [README_MAX_DEPTH + 1, 10 * README_MAX_DEPTH])
def test_the_tree_keeps_64_levels_and_flattens_deeper_nesting_keeping_its_text(levels: int) -> None:
    assert lxml_levels(tree.build_document(nested_page(README_MAX_DEPTH))) == README_MAX_DEPTH
    doc = tree.build_document(nested_page(levels))
    assert lxml_levels(doc) == README_MAX_DEPTH
    assert "deep text" in tree.page_text(doc)


def test_limit_html_cuts_and_replaces_lone_surrogates_and_leaves_clean_text_alone() -> None:
    clean = "<p>caf\u00e9 \U0001F600</p>"
    assert limit_html(clean) is clean
    assert limit_html("<p>a\ud800b\udfffc</p>") == "<p>a\ufffdb\ufffdc</p>"
    assert len(limit_html("x" * (MAX_PARSE_CHARS + 10))) == MAX_PARSE_CHARS


def test_parsers_parse_runs_no_depth_probe_on_a_page_it_reads_without_a_tree() -> None:
    modern = (FIXTURES / "goodreads" / "next-2025.html").read_bytes()
    with mock.patch.object(base, "_lxml_events", wraps=base._lxml_events) as lxml_pass:
        assert parsers.parse(modern, GOODREADS_URL)["title"] == "The Copper Meridian"
    assert not lxml_pass.called


def test_json_ld_parsing_survives_deep_json() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    html = f'<html><head><title>T</title><script type="application/ld+json">{deep}</script></head><body><p>x</p></body></html>'
    assert parse_or_refuse(html, GENERIC_URL)["title"] == "T"


def test_real_pages_parse_as_their_kind() -> None:
    """A sanity check that the mutilations above start from pages the parsers accept."""
    for file, url in real_pages():
        if "soft-404" in file:
            continue
        data = parse_or_refuse(read_page(file), url)
        assert data is not None, file
        assert json.dumps(data)  # plain JSON-serialisable values only
