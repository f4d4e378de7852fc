"""parsers.base.script_blocks: the <script> elements of a page without building its tree.

The oracle is the tree itself: lxml's (libxml2 2.14, an HTML5 tokenizer), which the news and
generic parsers read scripts from. Each case states what the HTML5 rules give, and checks the
tree agrees.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lxml import etree

from parsers.base import jsonld_in_blocks, script_blocks
from parsers.encoding import decode_html
from parsers.news import tree_script_blocks
from parsers.tree import build_document
from tests.pages import manifest, read_page

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
KEYS = ("type", "id")
SCRIPTS = etree.XPath("//script")


def scanned(html: str) -> list[tuple[dict, str]]:
    return [({k: v for k, v in block.attrs.items() if k in KEYS}, block.text) for block in script_blocks(html)]


def from_tree(html: str) -> list[tuple[dict, str]]:
    return [({k: tag.get(k) for k in KEYS if tag.get(k) is not None}, tag.text or "")
            for tag in build_document(html).find_all(SCRIPTS)]


A, B = {"type": "a"}, {"type": "b"}
CASES = [
    # attributes: any order, quoting and case; entities decoded; the first of duplicates kept
    ('<script type="a" id="x">1</script>', [({"type": "a", "id": "x"}, "1")]),
    ("<script ID=x TYPE='a'>1</script>", [({"type": "a", "id": "x"}, "1")]),
    ("<SCRIPT\ntype=a\tid=x>1</SCRIPT>", [({"type": "a", "id": "x"}, "1")]),
    ("<script type='a'id=x>1</script>", [({"type": "a", "id": "x"}, "1")]),
    ('<script/type="a">1</script>', [(A, "1")]),
    ('<script type="a" type="b">1</script>', [(A, "1")]),
    ('<script type="application/ld&#43;json">1</script>', [({"type": "application/ld+json"}, "1")]),
    ('<script data-x=">" type="a">1</script>', [(A, "1")]),
    # the end tag: any case, whitespace or "/" after the name, not a longer name
    ('<script type="a">1</SCRIPT >2', [(A, "1")]),
    ('<script type="a">1</script\n>2', [(A, "1")]),
    ('<script type="a">1</script/>2', [(A, "1")]),
    ('<script type="a">1</scripty>2</script>', [(A, "1</scripty>2")]),
    ('<script type="a">{"html": "<b>x</b>"}</script>', [(A, '{"html": "<b>x</b>"}')]),
    # comments: scripts inside are not scripts; "<!-->", "<!--->" and "--!>" end a comment
    ('<!-- <script type="a">1</script> --><script type="b">2</script>', [(B, "2")]),
    ('<!--> <script type="a">1</script>', [(A, "1")]),
    ('<!---> <script type="a">1</script>', [(A, "1")]),
    ('<!-- x --!> <script type="a">1</script>', [(A, "1")]),
    ('<!-- never closed <script type="a">1</script>', []),
    ('<!DOCTYPE html <script type="a">1</script>>', []),
    # elements whose content is text, and attribute values, hide a "<script"
    ('<title><script type="a">1</script></title><script type="b">2</script>', [(B, "2")]),
    ('<textarea><script type="a">1</script></textarea>', []),
    ('<style>p{}</style><script type="a">1</script>', [(A, "1")]),
    ('<style><script type="a">1</script></style>', []),
    ('<div title="<script type=a>">x</div><script type="b">2</script>', [(B, "2")]),
    ('<div a="x><script type="a">1</script>', []),  # the value runs to the next quote: type="
    ('<script<textarea>x</textarea><script type="b">2</script>', [(B, "2")]),  # one tag "script<textarea"
    ('<noscript><script type="a">1</script></noscript>', [(A, "1")]),  # scripting off: a plain element
    # unterminated, cut-off and self-closed scripts
    ('<script type="a">{"cut": ', [(A, '{"cut": ')]),
    ('<p>x</p><script type="a', []),
    ('<script type="a"/>1</script>', [(A, "")]),  # libxml2 honours "/>" even on a script
    # "<!--" inside a script: "<script>" then opens a section where "</script>" does not end it
    ('<script type="a"><!--<script>x</script>-->y</script>', [(A, "<!--<script>x</script>-->y")]),
    ('<script type="a"><!-- x --></script>', [(A, "<!-- x -->")]),
    ('<script type="a"><!--></script>', [(A, "<!-->")]),
    # text as the tree stores it
    ('<script type="a">1\r\n2\r3\x004</script>', [(A, "1\n2\n3\ufffd4")]),
    ('<script type="a">\n\t\t</script>', [(A, "\n\t\t")]),
]


@pytest.mark.parametrize("html, expected", CASES, ids=[repr(case[0][:40]) for case in CASES])
def test_script_blocks_are_those_of_the_tree(html: str, expected: list) -> None:
    assert scanned(html) == expected
    assert from_tree(html) == expected  # the oracle agrees with what the case states


FRAGMENTS = [
    '<script type="application/ld+json">', '<script id="__NEXT_DATA__" type=application/json>',
    "<SCRIPT type='x'>", "<script>", "<script", "</script>", "</SCRIPT >", "</script", "</scripty>",
    '<script src="a"/>', "<!--", "-->", "--!>", "->", "-", "<!", "<?", ">", "<!-->", "<!--->",
    "<style>", "</style>", "<title>", "</title>", "<title/>", "<textarea>", "</textarea>", "<xmp>",
    "</xmp>", "<iframe>", "</iframe>", "<noembed>", "</noembed>", "<plaintext>", "<noscript>",
    "</noscript>", "<div>", "</div>", '<div title="', '">', "<a href='", "<p>", "<b>", "</b>",
    "<table>", "<td>", "<template>", "</template>", "<head>", "<body>", "</body>", "</html>",
    "<!DOCTYPE html>", "<br/>", "</", "</ ", "</>", '"', "'", "=", " ", "/", "\r\n", "\r", "\x00",
    "x", '{"a":1}', "&amp;", "type=", "id=", 'TYPE="application/ld+json"', "<scr", "ipt>",
]


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join))
def test_script_blocks_match_the_tree_on_tag_soup(html: str) -> None:
    assert scanned(html) == from_tree(html)


def fixture_pages() -> list[str]:
    return [decode_html(path.read_bytes()) for path in sorted(FIXTURES.glob("*/*.html"))]


def saved_pages() -> list[str]:
    """The real saved pages, or skip (with the reason) when they are absent."""
    return [decode_html(read_page(entry["file"])) for entry in manifest()]


# The fixtures are always checked; the real pages in tests of their own, reported as skipped
# when absent rather than silently left out.
PAGE_SETS = pytest.mark.parametrize("pages", [fixture_pages, saved_pages], ids=["fixtures", "saved"])


@PAGE_SETS
def test_script_blocks_match_the_tree(pages: Callable[[], list[str]]) -> None:
    for html in pages():
        assert scanned(html) == from_tree(html)


@PAGE_SETS
def test_jsonld_objects_are_those_the_tree_gives(pages: Callable[[], list[str]]) -> None:
    for html in pages():
        from_tree_scripts = list(jsonld_in_blocks(tree_script_blocks(build_document(html))))
        assert list(jsonld_in_blocks(script_blocks(html))) == from_tree_scripts


@pytest.mark.parametrize("html", [
    "<" * 200_000, "<script>" * 50_000, "<!--" * 100_000, '<div a="' * 100_000, "<script><!--<script>" * 30_000,
    "<title>" + "</titl" * 100_000, "<a " + "b=c " * 200_000,
])
def test_script_blocks_take_linear_time_on_junk(html: str) -> None:
    started = time.process_time()
    script_blocks(html)
    assert time.process_time() - started < 2.0
