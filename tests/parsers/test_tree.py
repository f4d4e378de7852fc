"""parsers.tree: the reading rules every parser shares, on lxml's tree.

Page text leaves out script, style, template and ruby text and counts a run of only whitespace
as one space or line break (whole inside pre and textarea, when measured); the walks give each
run of text a step of its own, in document order, skip removed elements and stop at their bound.
The expected values come from small reference readers written here over lxml's own API
(element.text, children, tails), not from the module's code.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from parsers import tree

PIECES = [
    "<div class='a b'>", "</div>", "<p>", "</p>", "<span>", "</span>", "<a href='/x'>", "</a>", "<b>", "</b>",
    "<template>", "</template>", "<ruby>", "<rt>", "</rt>", "<rp>", "</rp>", "<pre>", "</pre>", "<textarea>",
    "</textarea>", "<script>var a = '<b>';</script>", "<style>.x{}</style>", "<!-- c -->", "<?php x ?>", "<br>",
    "words ", "more", " ", "\n  \n", "\t", "\u00a0", "&amp;", "</html>", "<h3>", "</h3>", "<table><tr><td>",
]
HTML = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)
HIDDEN = {"script", "style", "template", "rt", "rp"}


def elements(html: str) -> list[etree._Element]:
    return list(tree.build_document(html).elements())


def reference_nodes(element: etree._Element, hidden: bool = False) -> Iterator[tuple[object, bool]]:
    """(node, inside script/style/template/rt/rp) for every node below element in document
    order, by recursion: elements, comments, runs of text."""
    hidden = hidden or element.tag in HIDDEN
    if element.text and isinstance(element.tag, str):
        yield element.text, hidden
    for child in element:
        yield child, hidden
        if isinstance(child.tag, str):
            yield from reference_nodes(child, hidden)
        if child.tail:
            yield child.tail, hidden


def reference_runs(element: etree._Element, limit: int = 10**6) -> list[str]:
    """The page text runs among element's first `limit` descendant nodes."""
    inside = any(e.tag in HIDDEN for e in element.iterancestors())
    nodes = list(reference_nodes(element, inside))[:limit]
    return [node for node, hidden in nodes if type(node) is str and not hidden]


def reference_page_text(element: etree._Element, separator: str) -> str:
    runs = reference_runs(element)
    return separator.join(run if run.strip(" \t\n\f\r") else "\n" if "\n" in run else " " for run in runs)


@settings(max_examples=200, deadline=None, database=None)
@given(html=HTML)
def test_page_text_is_the_text_outside_script_style_template_and_ruby_text(html: str) -> None:
    for element in elements(html):
        for separator in ("", " "):
            assert tree.page_text(element, separator) == reference_page_text(element, separator)


@settings(max_examples=200, deadline=None, database=None)
@given(html=HTML)
def test_descendants_are_every_node_in_document_order_up_to_the_bound(html: str) -> None:
    for element in elements(html):
        everything = [node for node, _ in reference_nodes(element)]
        assert list(tree.descendants(element, 10**6)) == everything
        assert list(tree.descendants(element, 3)) == everything[:3]
        assert list(tree.descendants(element, 0)) == []


@settings(max_examples=200, deadline=None, database=None)
@given(html=HTML)
def test_page_strings_are_the_page_text_runs_among_the_first_nodes(html: str) -> None:
    for element in elements(html):
        assert list(tree.page_strings(element, 10**6)) == reference_runs(element)
        assert list(tree.page_strings(element, 5)) == reference_runs(element, 5)


def test_whitespace_runs_weigh_one_character_but_count_whole_in_pre_and_textarea() -> None:
    doc = tree.build_document("<div><p>a</p>\n      <p>b</p>   <pre>x\n    <b>y</b></pre><textarea>  </textarea></div>")
    div = doc.find_all(etree.XPath("//div"))[0]
    assert tree.page_text(div) == "a\nb x\n    y "
    assert tree.text_length(div) == len("a\nb x\n    y  ")  # the textarea's two spaces count whole
    assert tree.node_text(div) == "a b x y"


def test_removed_elements_leave_their_tail_apart_from_the_text_before() -> None:
    doc = tree.build_document("<p>one<nav>menu <a href='/'>home</a></nav>two <b>three</b></p>")
    paragraph = doc.find_all(etree.XPath("//p"))[0]
    tree.remove(doc.find_all(etree.XPath("//nav"))[0])
    assert tree.page_text(paragraph, " ") == "one two  three"
    assert [e.tag for e in doc.elements()] == ["html", "body", "p", "b"]
    assert list(tree.descendants(paragraph, 10)) == ["one", "two ", paragraph[1], "three"]
    assert list(tree.page_strings(paragraph, 10)) == ["one", "two ", "three"]


def test_a_walk_skips_what_it_is_told_to_and_still_leaves_it() -> None:
    doc = tree.build_document("<div>a<span>b<i>c</i></span>d<!--x-->e</div>")
    div = doc.find_all(etree.XPath("//div"))[0]
    walk, steps = tree.Walk(div), []
    for step, node in walk:
        steps.append((step, node if type(node) is str else node.tag if tree.is_tag(node) else "comment"))
        if step == tree.ENTER and tree.is_tag(node) and node.tag == "span":
            walk.skip()
    assert steps == [("text", "a"), ("enter", "span"), ("leave", "span"), ("text", "d"), ("enter", "comment"),
                     ("text", "e"), ("leave", "div")]


def test_a_walk_leaves_the_element_last_even_when_it_has_no_children() -> None:
    for html, tag in (("<p>only text</p>", "p"), ("<p>a<b>b</b></p>", "p")):
        element = tree.build_document(html).find_all(etree.XPath(f"//{tag}"))[0]
        assert list(tree.Walk(element))[-1] == (tree.LEAVE, element)
        assert list(tree.Walk(element))[0] == (tree.TEXT, element.text)


def test_a_huge_flat_element_is_walked_within_the_bound() -> None:
    doc = tree.build_document("<div>" + "<b>x</b>y" * 200_000 + "</div>")
    div = doc.find_all(etree.XPath("//div"))[0]
    assert sum(1 for _ in tree.descendants(div, 1000)) == 1000
    assert sum(1 for _ in tree.page_strings(div, 1000)) == 666  # two runs of text to each <b>


@pytest.mark.parametrize("html, tokens", [
    ('<h3 class="gs-c-promo-heading__title kickerText">', {"gs", "c", "promo", "heading", "title", "kicker", "text"}),
    ('<div data-testid="card-headline">', {"card", "headline"}),
    ("<div class=' a\tB '>", {"a", "b"}),
    ("<div>", set()),
])
def test_class_tokens_are_the_words_of_class_and_data_testid(html: str, tokens: set[str]) -> None:
    element = tree.build_document(html).find_all(etree.XPath("//div | //h3"))[0]
    assert tree.class_tokens(element) == tokens


def test_markup_after_the_end_of_html_is_still_in_the_document() -> None:
    doc = tree.build_document("<html><body><p>a</p></body></html><!-- c --><p>b</p>")
    assert [node.tag for node in doc.nodes if tree.is_tag(node)] == ["html", "html"]
    assert tree.page_text(doc, " ") == "a b"
    assert [p.text for p in doc.find_all(etree.XPath("//p"))] == ["a", "b"]


def test_a_snippet_s_body_is_built_as_a_page_is() -> None:
    assert tree.node_text(tree.snippet_body("<p>Hello <b>there</b></p>")) == "Hello there"
    assert tree.snippet_body("<title>no body</title>") is None
