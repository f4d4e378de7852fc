"""parsers.css: the parsers' CSS selectors, compiled by cssselect into XPath once.

select() is cssselect's own translation, template content left out; matches() is a second
translation (combinators as conditions on ancestors) with a cheap anchor test in front: on
random markup, for the parsers' own selectors and a few more, it must agree with select() on
every element outside a template, and the anchor must never turn away an element that matches.
Every selector the parsers use compiles, and parsers.warm_up() leaves them all compiled.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from cssselect import SelectorError
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

import parsers
from parsers import css, generic, goodreads, news, tree

PIECES = [
    "<div class='a b'>", "<div class=' a\tb '>", "<p class='a\u00a0b x'>", "<span class='y kicker'>", "</div>", "</p>",
    "</span>", "<a href='/2024/01/02/x-y-z-w'>", "<a>", "</a>", "<template>", "</template>", "<ruby>", "<rt>", "</rt>",
    "<b data-x='foobar'>", "<b data-x='u w v'>", "<input type='TeXt'>", "<div id='main'>", "</html>", "\n", "text ",
    "<!-- c -->", "<script>var a = '<b>';</script>", "<table><tr><td class='x'>", "<h3 class='y'>", "</h3>",
    "<a rel=' nofollow  noopener' href='/x'>", "<B CLASS='A a'>", "<article>", "</article>", "<h1 id='bookTitle'>",
    "</h1>", "<time datetime='2020-01-01' pubdate>", "<span itemprop='author'><span itemprop='name'>",
    "<a class='fc-item__link' data-link-name='card-x' aria-label='l' href='/y'>", "<div data-testid='card-headline'>",
]
OWN_SELECTORS = sorted({*news.rule_selectors(), *generic.SELECTORS, *goodreads.selectors()})
MORE_SELECTORS = [
    "div.a.b", "[data-x^=foo]", "[data-x$=bar]", "[data-x~=w]", "[type=text]", ".a .y", "#main", "a[href]", "*",
    '[class*="a b"]', "p .y", "template .a", ".a, .x, [data-x*=oo]", "[data-x!=foo]", "[rel~=nofollow]",
    "div > span", "article h1, h1#bookTitle", ".a > .y, td.x",
]
HTML = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
URLS = ("https://www.goodreads.com/book/show/1", "https://www.theguardian.com/", "https://www.bbc.com/news",
        "https://www.wsj.com/", "https://www.washingtonpost.com/", "https://www.foxnews.com/", "https://example.org/a")


def in_template(element: etree._Element) -> bool:
    return next(element.iterancestors("template"), None) is not None


@settings(max_examples=150, deadline=None, database=None)
@given(html=HTML)
def test_matches_agrees_with_select_and_the_anchor_never_turns_a_match_away(html: str) -> None:
    doc = tree.build_document(html)
    everything = list(doc.elements())
    for selector in [*OWN_SELECTORS, *MORE_SELECTORS]:
        selected = css.select(doc, selector)
        compiled = css.compile_selector(selector)
        assert selected == [e for e in everything if css.matches(e, selector) and not in_template(e)], selector
        assert all(compiled.admits(e) for e in everything if compiled.test(e)), selector


@settings(max_examples=100, deadline=None, database=None)
@given(html=HTML)
def test_select_in_is_select_among_the_scope_s_descendants(html: str) -> None:
    doc = tree.build_document(html)
    for scope in doc.elements():
        for selector in ("a", ".a .y", "[data-x*=oo], h3"):
            inside = set(scope.iterdescendants())
            assert css.select_in(scope, selector) == [e for e in css.select(doc, selector) if e in inside]


def test_select_reads_classes_as_css_defines_them_and_skips_template_content() -> None:
    doc = tree.build_document(
        "<div class=' a\tb '>1</div><div class='a\u00a0b'>2</div><div class='ab'>3</div>"
        "<template><div class='a'>4</div></template><div class='A'>5</div>"
    )
    assert [e.text for e in css.select(doc, ".a")] == ["1"]  # no-break space is no separator; case counts
    assert [e.text for e in css.select(doc, "DIV.b")] == ["1"]  # tag names are not case-sensitive in HTML
    inside_template = doc.find_all(etree.XPath("//template/div"))[0]
    assert css.matches(inside_template, ".a")  # matches() tests the element as it is


def test_a_child_combinator_wants_a_parent_and_a_descendant_one_any_ancestor() -> None:
    doc = tree.build_document("<div id='d'><span id='child'><span id='grandchild'></span></span></div>")
    child, grandchild = doc.find_all(etree.XPath("//span"))
    assert [css.matches(e, "div > span") for e in (child, grandchild)] == [True, False]
    assert [css.matches(e, "div span") for e in (child, grandchild)] == [True, True]
    assert css.select(doc, "div > span") == [child] and css.select(doc, "#d span") == [child, grandchild]
    assert css.select_in(child, "div > span") == [] and css.select_in(child, "div span") == [grandchild]


@pytest.mark.parametrize("selector", ["li + a", "h2 ~ p", "p:has(a)", "a::before"])
def test_selectors_matches_cannot_test_are_refused_when_compiled(selector: str) -> None:
    with pytest.raises(SelectorError):
        css.compile_selector(selector)


def test_every_selector_of_the_parsers_compiles() -> None:
    for selector in OWN_SELECTORS:
        assert css.compile_selector(selector).css == selector


def test_warm_up_leaves_every_selector_of_the_parsers_compiled() -> None:
    """After warm_up() a process's first page compiles no selector: each site rule's, generic
    fallback's and Goodreads table's is in compile_selector's cache, all at once."""
    css.compile_selector.cache_clear()
    parsers.warm_up()
    before = css.compile_selector.cache_info()
    for selector in OWN_SELECTORS:
        css.compile_selector(selector)
    after = css.compile_selector.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (len(OWN_SELECTORS), 0)


def test_parsing_pages_compiles_nothing_warm_up_did_not() -> None:
    """The selectors the parsers really run are all among the ones warm_up() compiles."""
    css.compile_selector.cache_clear()
    parsers.warm_up()
    warmed = css.compile_selector.cache_info().currsize
    for path in sorted(FIXTURES.glob("*/*.html")):
        for url in URLS:
            try:
                parsers.parse(path.read_bytes(), url)
            except parsers.ParseError:
                pass
    assert css.compile_selector.cache_info().currsize == warmed
