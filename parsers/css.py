"""CSS selectors on the parsers' lxml tree: translated to XPath by cssselect, compiled once and cached.

select(doc, css)         the elements css matches in the page, in document order
select_in(scope, css)    the elements css matches among scope's descendants (as querySelectorAll)
matches(element, css)    whether element matches css

Semantics are cssselect's (HTMLTranslator: tag and attribute names lower-cased, class lists split
on whitespace as CSS defines it). Content inside <template> is inert markup, never the page's:
select and select_in leave it out; matches() tests the element as it is. select_in and matches
read a selector as a test on one element (each combinator a condition on its ancestors): they
know the descendant (" ") and child (">") combinators, and a selector with another is refused
when compiled. A cheap anchor test (a class, an attribute, the tag) turns most elements away
before any XPath runs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from cssselect import HTMLTranslator, parse
from cssselect.parser import Attrib, Class, CombinedSelector, Element as ElementSelector, Hash
from cssselect.xpath import ExpressionError, XPathExpr
from lxml import etree

from parsers.tree import Document, Element, is_tag

OUTSIDE_TEMPLATES = "[not(ancestor::template)]"


class _MatchTranslator(HTMLTranslator):
    """Selectors as a test on one element ("self::..."): each combinator becomes a condition on
    the element's ancestors, where the default translation walks down from the context node."""

    def selector_to_xpath(self, selector: object, prefix: str = "self::",
                          translate_pseudo_elements: bool = False) -> str:
        if selector.pseudo_element:
            raise ExpressionError("matches() cannot test a pseudo-element")
        return prefix + _step(self.xpath(selector.parsed_tree))

    def xpath_descendant_combinator(self, left: XPathExpr, right: XPathExpr) -> XPathExpr:
        return right.add_condition(f"ancestor::{_step(left)}")

    def xpath_child_combinator(self, left: XPathExpr, right: XPathExpr) -> XPathExpr:
        return right.add_condition(f"parent::{_step(left)}")

    def xpath_direct_adjacent_combinator(self, left: XPathExpr, right: XPathExpr) -> XPathExpr:
        raise ExpressionError("matches() knows the descendant and child combinators only")

    xpath_indirect_adjacent_combinator = xpath_direct_adjacent_combinator

    def xpath_relative(self, *args: object) -> XPathExpr:
        """:has(): its inner combinators would read as the ones above, the wrong way round."""
        raise ExpressionError("matches() cannot test :has()")

    xpath_relation_descendant_combinator = xpath_relative
    xpath_relation_child_combinator = xpath_relative
    xpath_relation_direct_adjacent_combinator = xpath_relative
    xpath_relation_indirect_adjacent_combinator = xpath_relative


def _step(expr: XPathExpr) -> str:
    """An expression usable as one location step: no path of its own (pseudo-classes that
    constrain siblings, such as :first-child, need one)."""
    if expr.path:
        raise ExpressionError(f"matches() cannot test {expr} on one element")
    return str(expr)


TRANSLATOR = HTMLTranslator()
MATCH_TRANSLATOR = _MatchTranslator()


@dataclass(frozen=True)
class Selector:
    css: str
    in_page: etree.XPath  # the matching elements of a top-level element's tree (it included)
    in_scope: etree.XPath  # the descendants of an element that match (their ancestors above it count too)
    test: etree.XPath  # boolean: the context element matches
    admits: Anchors  # a cheap necessary condition for test, tried first

    def matches(self, element: Element) -> bool:
        return self.admits(element) and self.test(element)


@lru_cache(maxsize=256)
def compile_selector(css: str) -> Selector:
    """css compiled (cached: the parsers use a few dozen selectors, over and over).

    Raises cssselect's SelectorError for a selector it cannot parse, ExpressionError for one
    it cannot translate (or that matches() cannot test).
    """
    parsed = parse(css)
    tests = [MATCH_TRANSLATOR.selector_to_xpath(selector) for selector in parsed]  # "self::...", one a part
    return Selector(
        css=css,
        in_page=etree.XPath(f"({TRANSLATOR.css_to_xpath(css)}){OUTSIDE_TEMPLATES}"),
        in_scope=etree.XPath(f"descendant::*[{' or '.join(tests)}]{OUTSIDE_TEMPLATES}"),
        test=etree.XPath(f"boolean({' | '.join(tests)})"),
        admits=_anchors(parsed),
    )


def select(doc: Document, css: str) -> list[Element]:
    """The elements css matches in the page, in document order (none inside a <template>)."""
    # From each top-level element rather than "//" from the document: 10% less time in libxml2.
    in_page = compile_selector(css).in_page
    return [element for top in doc.nodes if is_tag(top) for element in in_page(top)]


def select_in(scope: Element, css: str) -> list[Element]:
    """The descendants of scope that css matches, in document order (none inside a <template>).
    As the DOM's scope.querySelectorAll(css): ".a .b" finds a .b below scope inside an .a that
    may be scope itself or above it."""
    return compile_selector(css).in_scope(scope)


def matches(element: Element, css: str) -> bool:
    """Whether element matches css (in a loop over elements, compile_selector(css).matches)."""
    return compile_selector(css).matches(element)


# --- Anchors: a necessary condition for a match, checked without XPath ------------------------
# Each comma-separated part anchors on one thing every element it matches has, the most telling
# first: a class name (within the raw class attribute), an attribute value's literal text, the
# id, the tag name, an attribute's presence. One dictionary of patterns answers for all parts.

VALUE_OPERATORS = frozenset({"=", "~=", "|=", "^=", "$=", "*="})  # the raw value holds the literal


@dataclass(frozen=True)
class Anchors:
    tags: frozenset[str]
    attributes: dict[str, re.Pattern | None]  # name -> a pattern the raw value must match; None: present
    everything: bool  # a part with nothing to anchor on ("*")

    def __call__(self, element: Element) -> bool:
        if self.everything or element.tag in self.tags:
            return True
        for name, pattern in self.attributes.items():
            value = element.get(name)
            if value is not None and (pattern is None or pattern.search(value)):
                return True
        return False


def _anchors(parsed: list) -> Anchors:
    anchors = [_anchor(selector.parsed_tree) for selector in parsed]
    literals: dict[str, list[str | None]] = {}
    for name, literal in (anchor for anchor in anchors if anchor is not None and anchor[0] != "tag"):
        literals.setdefault(name, []).append(literal)
    tags = frozenset(literal for name, literal in filter(None, anchors) if name == "tag")
    patterns = {name: _any_of(found) for name, found in literals.items()}
    return Anchors(tags, patterns, None in anchors)


def _anchor(tree: object) -> tuple[str, str | None] | None:
    """("tag", name) or (attribute, literal text of its value, or None): what the last compound
    of a parsed selector demands; None when it demands nothing of the kind."""
    while isinstance(tree, CombinedSelector):
        tree = tree.subselector
    tests: list[tuple[int, str, str | None]] = []  # (rank, attribute or "tag", literal)
    while tree is not None:
        if isinstance(tree, Class):
            tests.append((0, "class", tree.class_name))
        elif isinstance(tree, Attrib) and tree.namespace is None and tree.operator != "!=":
            literal = tree.value.value if tree.operator in VALUE_OPERATORS and tree.value is not None else ""
            tests.append((1 if literal else 4, tree.attrib.lower(), literal or None))
        elif isinstance(tree, Hash):
            tests.append((2, "id", tree.id))
        elif isinstance(tree, ElementSelector) and tree.element not in (None, "*"):
            tests.append((3, "tag", tree.element.lower()))
        tree = getattr(tree, "selector", None)
    return min(tests)[1:] if tests else None


def _any_of(literals: list[str | None]) -> re.Pattern | None:
    return None if None in literals else re.compile("|".join(map(re.escape, literals)))
