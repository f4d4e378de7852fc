"""parsers.tree: lxml's tree must read as bs4's tree of the same page does (same nodes, same text,
same class lists, same soupsieve matches): the parsers' bounded walks and the news site rules
depend on it. Checked on random markup and on every news fixture; and parsers.warm_up() leaves
every selector the parsers run on the tree compiled.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from bs4 import Comment, NavigableString, ProcessingInstruction, Tag
from hypothesis import given, settings
from hypothesis import strategies as st

import parsers
from parsers import generic, news, tree
from parsers.base import make_bounded_soup

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "news"
FIXTURE_NAMES = sorted(path.name for path in FIXTURES.glob("*.html"))


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


TREE_PIECES = [
    "<div class='a b'>", "<div class=' a\tb '>", "<p class='a\u00a0b x'>", "<span class='y kicker'>", "</div>", "</p>",
    "</span>", "<a href='/2024/01/02/x-y-z-w'>", "<a>", "</a>", "<template>", "</template>", "<ruby>", "<rt>", "</rt>",
    "<b data-x='foobar'>", "<b data-x='u w v'>", "<input type='TeXt'>", "<div id='main'>", "</html>", "\n", "text ",
    "<!-- c -->", "<?php x ?>", "<script>var a = '<b>';</script>", "<style>.x{}</style>", "<table><tr><td class='x'>",
    "<h3 class='y'>", "</h3>", "<a rel=' nofollow  noopener' href='/x'>", "&amp;", "\ufeff", "<br>", "<B CLASS='A a'>",
]
SELECTORS = [
    "div.a.b", "[data-x^=foo]", "[data-x$=bar]", "[data-x~=w]", "[type=text]", ".a .y", "#main", "a[href]", "*",
    '[class*="a b"]', "p .y", "template .a", ".a, .x, [data-x*=oo]", "[data-x!=foo]", "[rel~=nofollow]",
    *(rule.headlines for rule in news.SITE_RULES.values()), *(rule.title for rule in news.SITE_RULES.values() if rule.title),
]
TREE_HTML = st.lists(st.sampled_from(TREE_PIECES), max_size=40).map("".join)


def bs4_view(html: str) -> tuple[list[tuple], list[str]]:
    """bs4's tree below each top-level tag or comment: its nodes, and its page text (NavigableStrings)."""
    nodes, text = [], []
    soup = make_bounded_soup(html)
    for top in soup.contents if soup.find(True) else []:  # without an element, lxml has no document
        if isinstance(top, Tag):
            for node in [top, *top.descendants]:
                nodes.append(tree_item(node))
                text += [node.strip()] if type(node) is NavigableString else []
        elif isinstance(top, (Comment, ProcessingInstruction)):
            nodes.append(("other",))  # top-level text and the doctype have no node in lxml's tree
    return nodes, text


def lxml_view(html: str) -> tuple[list[tuple], list[str]]:
    """The same from the parser's tree, through the parser's own walks."""
    nodes, text = [], []
    for top in tree.build_document(html).nodes:
        if tree.is_tag(top):
            nodes += [tree_item(node) for node in [top, *tree.descendants(top, limit=10**9)]]
            text += [string.strip() for string in tree.page_strings(top, limit=10**9)]
        else:
            nodes.append(("other",))
    return nodes, text


def tree_item(node: object) -> tuple:
    if isinstance(node, Tag):
        return node.name, {k: bare_attribute(k, " ".join(v) if isinstance(v, list) else v) for k, v in node.attrs.items()}
    if isinstance(node, str):
        return ("other",) if isinstance(node, (Comment, ProcessingInstruction)) else ("text", node.strip())
    if tree.is_tag(node):
        return node.tag, {k: bare_attribute(k, tree.attribute(node, k)) for k in node.keys()}
    return ("other",)  # an lxml comment or processing instruction


def bare_attribute(name: str, value: str) -> str:
    # <script defer>: bs4 holds "", lxml "defer"; no rule reads such a value (compile_selector refuses it).
    return "" if name in tree.FILLED_ATTRIBUTES and value == name else value


@settings(max_examples=150, deadline=None, database=None)
@given(html=TREE_HTML)
def test_the_tree_holds_what_bs4s_holds(html: str) -> None:
    assert lxml_view(html) == bs4_view(html)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_the_tree_of_each_fixture_holds_what_bs4s_holds(name: str) -> None:
    assert lxml_view(fixture(name)) == bs4_view(fixture(name))


def positions(found: list, everything: list) -> list[int]:
    index = {id(element): i for i, element in enumerate(everything)}
    return [index[id(element)] for element in found]


@settings(max_examples=150, deadline=None, database=None)
@given(html=TREE_HTML)
def test_select_matches_what_soupsieve_matches_in_bs4s_tree(html: str) -> None:
    soup, doc = make_bounded_soup(html), tree.build_document(html)
    tags, elements = soup.find_all(True), list(doc.elements())
    for selector in SELECTORS:
        assert positions(tree.select(doc, selector), elements) == positions(soup.select(selector), tags), selector
        compiled = tree.compile_selector(selector)  # match() is asked inside a <template> too
        assert [compiled.match(e) for e in elements] == [tag.css.match(selector) for tag in tags], selector


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_site_rules_select_what_soupsieve_selects_on_each_fixture(name: str) -> None:
    soup, doc = make_bounded_soup(fixture(name)), tree.build_document(fixture(name))
    tags, elements = soup.find_all(True), list(doc.elements())
    for selector in SELECTORS:
        assert positions(tree.select(doc, selector), elements) == positions(soup.select(selector), tags), selector


@pytest.mark.parametrize("selector", ["li:nth-child(2)", "div > a", "h2 + p", "a:not(.x)", "p:has(a)", "svg|rect"])
def test_selectors_the_tree_cannot_answer_like_soupsieve_are_refused(selector: str) -> None:
    with pytest.raises(ValueError):
        tree.compile_selector(selector)


def test_warm_up_leaves_every_selector_run_on_the_tree_compiled() -> None:
    """After warm_up() a process's first page compiles no selector: each site rule's and generic
    fallback's is in compile_selector's cache, all at once (none evicted by another)."""
    rules = news.SITE_RULES.values()
    wanted = {css for rule in rules for css in news.selectors_of(rule) if css}
    wanted |= {*generic.TITLE_SELECTORS, *generic.H1_SELECTORS, *generic.PUBLISHED_SELECTORS, *generic.AUTHOR_SELECTORS}
    tree.compile_selector.cache_clear()
    parsers.warm_up()
    before = tree.compile_selector.cache_info()
    for css in wanted:
        tree.compile_selector(css)
    after = tree.compile_selector.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (len(wanted), 0)
