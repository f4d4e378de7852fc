"""lxml's own tree, read the way bs4 reads the tree it builds from the same parser.

bs4's "lxml" builder drives lxml's HTML parser and copies what it reports into a tree of its
own. The parsers here keep lxml's tree instead (the same elements, attributes and text) and
read it as bs4 presents its copy: runs of text are nodes of their own (an element's text,
then each child followed by its tail), class-like attributes are whitespace-split lists,
text inside script, style, template, rt and rp is not page text, and a CSS selector, parsed
by soupsieve, matches what soupsieve would match (a small matcher here walks soupsieve's
compiled selector over lxml's elements). Why: building and walking lxml's tree costs 4-5x less than bs4's on
real pages, for the same output (tests compare both trees node by node, on random markup
and on the fixtures, and select() with soupsieve's select()).

Two things bs4's tree holds that lxml's does not: top-level text (the newline after
</html>), which only a heading's card search climbing past <html> on a tiny page would
count; and a node for a <!DOCTYPE> misplaced inside the page, where lxml reads the text on
either side as one run. Neither shows on real pages.

Every walk takes its bound from the caller (see descendants, page_strings, ancestor), so a
hostile page ends in bounded time whatever the parser's policy is.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache, wraps

import soupsieve
from bs4.builder import HTMLTreeBuilder
from lxml import etree

from parsers.base import FLATTEN_ROUNDS, MAX_DEPTH, MAX_PARSE_CHARS, bounded_html, limit_html


# --- Caches ------------------------------------------------------------------------------------


CACHED_CHARS = 1024  # longest arguments (summed) whose results are cached


def short_key_cache(maxsize: int, max_chars: int = CACHED_CHARS) -> Callable[[Callable], Callable]:
    """lru_cache for calls on short strings (class lists, hrefs); calls on longer ones, which
    only hostile markup makes, run uncached, so a worker's caches stay a few megabytes."""
    def decorate(function: Callable) -> Callable:
        cached = lru_cache(maxsize=maxsize)(function)

        @wraps(function)
        def call(*args: str | None) -> object:
            size = 0
            for arg in args:
                if arg:
                    size += len(arg)
            return function(*args) if size > max_chars else cached(*args)
        call.cache_clear, call.cache_info = cached.cache_clear, cached.cache_info
        return call
    return decorate


# --- The tree -------------------------------------------------------------------------------------
# The bounded walks count the nodes bs4's walks counted, so a bound set on bs4's tree holds here.

Element = etree._Element
Node = Element | str  # an element, comment or processing instruction; or a run of text

GONE = "#removed"  # the tag of a removed element's placeholder: a name no HTML parser makes
STRING_CONTAINERS = frozenset(HTMLTreeBuilder.DEFAULT_STRING_CONTAINERS)  # script, style, template, rt, rp
LIST_ATTRIBUTES = HTMLTreeBuilder.DEFAULT_CDATA_LIST_ATTRIBUTES  # class, rel...: lists in bs4
TOO_DEEP = etree.XPath(f"boolean({'/*' * (MAX_DEPTH + 1)})")
LINKS = etree.XPath("//a[@href]")
BASE_HREFS = etree.XPath("//base[@href]")
SCRIPTS = etree.XPath("//script[@type]")  # an untyped script is no JSON-LD
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
NO_TOKENS: frozenset[str] = frozenset()
CAMEL_CASE = re.compile(r"([a-z])([A-Z])")
NON_WORD = re.compile(r"[^a-z0-9]+")


class Document:
    """A parsed page: its top-level nodes in order. Markup after </html> opens another <html>
    (in bs4's tree as well), so there can be several."""

    def __init__(self, root: Element | None) -> None:
        self.tree = root.getroottree() if root is not None else None
        self.nodes: list[Element] = top_level_nodes(root) if root is not None else []

    def elements(self) -> Iterator[Element]:
        """Every element in document order, like bs4's find_all(True)."""
        for node in self.nodes:
            if isinstance(node.tag, str):
                for element in node.iter(etree.Element):
                    if element.tag != GONE:
                        yield element

    def find_all(self, path: etree.XPath) -> list[Element]:
        """What an absolute XPath finds over every top-level node, in document order."""
        return path(self.tree) if self.tree is not None else []

    def links(self) -> list[Element]:
        return self.find_all(LINKS)


def build_document(html: str) -> Document:
    """The page's tree, bounded as base.make_bounded_soup bounds bs4's: cut to MAX_PARSE_CHARS,
    and flattened (up to FLATTEN_ROUNDS times) when it nests past MAX_DEPTH."""
    html = html[:MAX_PARSE_CHARS]
    for _ in range(FLATTEN_ROUNDS):
        root = _lxml_root(html)
        if root is None or not TOO_DEEP(root):
            return Document(root)
        html = bounded_html(html)
    return Document(_lxml_root(html))


def _lxml_root(html: str) -> Element | None:
    """The first top-level element (None when there is none) from the parser and options bs4's
    lxml builder uses, fed the whole text at once as bs4 does; bs4 drops a byte-order mark first.

    The text goes in as UTF-8 bytes, which lxml parses in 60% of the time it takes over a str,
    into the same tree (tests compare what the parsers read of it with bs4's tree).
    """
    parser = etree.HTMLParser(  # collect_ids: no table of id attributes, which nothing here reads
        recover=True, huge_tree=False, default_doctype=False, encoding="utf-8", collect_ids=False,
    )
    try:
        parser.feed(_utf8(html.removeprefix("\ufeff")))
        return parser.close()
    except etree.LxmlError:
        return None  # nothing the parser could read: no story either


def _utf8(text: str) -> bytes:
    """text as UTF-8; lone surrogates (which only junk has) replaced first, as limit_html does."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return limit_html(text).encode("utf-8")


def top_level_nodes(root: Element) -> list[Element]:
    first = root
    while (before := first.getprevious()) is not None:
        first = before
    return [first, *first.itersiblings()]


class DocumentNode:
    """The node above the top-level nodes (bs4's BeautifulSoup object), where a heading's card
    search can climb on a small page: its children are the doctype and the top-level nodes."""

    def __init__(self, top: Element) -> None:
        self.top = top  # any top-level node

    def contents(self) -> Iterator[Node]:
        if self.top.getroottree().docinfo.doctype:
            yield etree.Comment("doctype")  # one node to bs4 too, and neither a tag nor text
        yield from top_level_nodes(self.top)


def contents(element: Element | DocumentNode) -> Iterator[Node]:
    """element's children as bs4 lists them: its text, then each child followed by its tail."""
    if isinstance(element, DocumentNode):
        yield from element.contents()
        return
    if element.text:
        yield element.text
    for child in element:
        if child.tag != GONE:
            yield child
        if child.tail:
            yield child.tail  # apart from the text before a removed element, as in bs4


def descendants(element: Element | DocumentNode, limit: int) -> Iterator[Node]:
    """element's first `limit` descendants in document order: elements, comments, runs of text."""
    stack = [contents(element)]
    while stack and limit > 0:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
            continue
        limit -= 1
        yield node
        if is_tag(node):
            stack.append(contents(node))


def page_strings(element: Element, limit: int) -> Iterator[str]:
    """The runs of page text among element's first `limit` descendants (bs4's NavigableStrings:
    script, style, template and ruby text are strings of other classes there)."""
    stack = [(contents(element), in_string_container(element))]
    while stack and limit > 0:
        children, hidden = stack[-1]
        node = next(children, None)
        if node is None:
            stack.pop()
            continue
        limit -= 1
        if type(node) is str:
            if not hidden:
                yield node
        elif is_tag(node):
            stack.append((contents(node), hidden or node.tag in STRING_CONTAINERS))


def in_string_container(element: Element) -> bool:
    """Inside script, style, template, rt or rp, whose text bs4 does not count as page text."""
    return element.tag in STRING_CONTAINERS or next(element.iterancestors(*STRING_CONTAINERS), None) is not None


def is_tag(node: Node) -> bool:
    """An element: not a run of text, a comment or a processing instruction."""
    return type(node) is not str and isinstance(node.tag, str)


def remove(element: Element) -> None:
    """Take element and its subtree out of the page, as bs4's decompose() does.

    An lxml element cannot go without the text that follows it (its tail), so an empty
    placeholder stays behind: every walk here skips it, and no selector matches it.
    """
    element.clear(keep_tail=True)
    element.tag = GONE


def attribute(element: Element, name: str) -> str | None:
    """An attribute as bs4 holds it: class and other list attributes joined by single spaces."""
    value = element.get(name)
    if value is not None and is_list_attribute(element.tag, name):
        return " ".join(value.split())  # str.split() and bs4's \S+ agree on what is whitespace
    return value


def is_list_attribute(tag: str, name: str) -> bool:
    return name in LIST_ATTRIBUTES["*"] or name in LIST_ATTRIBUTES.get(tag, ())


def class_tokens(element: Element) -> frozenset[str]:
    """Lower-case words of the class and data-testid attributes: "gs-c-promo-heading__title kickerText"
    -> {gs, c, promo, heading, title, kicker, text}."""
    classes, test_id = element.get("class"), element.get("data-testid")
    if not (classes or test_id):
        return NO_TOKENS
    # Cached (a front repeats a few hundred class strings over thousands of elements), but not
    # the huge ones of hostile pages; checked here, as this runs for every element.
    if len(classes or "") + len(test_id or "") > CACHED_CHARS:
        return _words(classes, test_id)
    return _class_tokens(classes, test_id)


def _words(classes: str | None, test_id: str | None) -> frozenset[str]:
    tokens: set[str] = set()
    for value in (" ".join(classes.split()) if classes else None, test_id):  # bs4's class list, rejoined
        if value:
            tokens.update(NON_WORD.split(CAMEL_CASE.sub(r"\1 \2", value[:500]).lower()))  # kickerText
    tokens.discard("")
    return frozenset(tokens)


_class_tokens = lru_cache(maxsize=4096)(_words)


def ancestor(tag: Element, predicate: Callable[[Element], bool], levels: int) -> Element | None:
    """The nearest ancestor (at most `levels` up) matching predicate: bounded, unlike find_parent."""
    node = tag.getparent()
    for _ in range(levels):
        if node is None:
            return None
        if predicate(node):
            return node
        node = node.getparent()
    return None


# --- CSS selectors on the tree ----------------------------------------------------------------------
# soupsieve parses a selector; the matcher below walks its compiled form over lxml's elements,
# testing each part the way soupsieve tests bs4's tree (tests compare their verdicts). One walk over the elements picks the candidates: what the selectors' last
# compounds anchor on (a tag name, a class, an attribute), cheaper than XPath attribute tests.
# Supported: tag names, #id, .class, [attribute] tests and the descendant combinator; anything
# else is refused when the selector is compiled.

# Attributes the lxml tree fills with their own name when written bare (<script defer>); bs4
# holds "" there, so a selector may test their presence but not their value.
FILLED_ATTRIBUTES = {
    "checked", "compact", "declare", "defer", "disabled", "ismap", "multiple", "nohref", "noresize",
    "noshade", "nowrap", "readonly", "selected",
}


@dataclass(frozen=True)
class Selector:
    selectors: tuple  # soupsieve's compiled selectors, one per comma-separated part
    tags: frozenset[str]  # an element may match when it has one of these tag names,
    attributes: dict[str, re.Pattern | None]  # or one of these attributes whose value the pattern finds
    everything: bool  # or in any case: a last compound with nothing to anchor on

    def admits(self, element: Element) -> bool:
        """A cheap necessary condition for a match."""
        if self.everything or element.tag in self.tags:
            return True
        for name, pattern in self.attributes.items():
            value = element.get(name)
            if value is not None and (pattern is None or pattern.search(value)):
                return True
        return False

    def match(self, element: Element, cache: dict | None = None) -> bool:
        """soupsieve's match(); cache keeps ancestor verdicts across the elements of one walk."""
        cache = {} if cache is None else cache
        return element.tag != GONE and any(_matches(element, selector, cache) for selector in self.selectors)


@lru_cache(maxsize=64)
def compile_selector(css: str) -> Selector:
    selectors = tuple(soupsieve.compile(css).selectors)
    for selector in selectors:
        _check_supported(selector)
    anchors = [_anchor(selector) for selector in selectors]
    attributes: dict[str, list[str | None]] = {}
    for name, literal in (a for a in anchors if a is not None and a[0] != "tag"):
        attributes.setdefault(name, []).append(literal)
    tags = frozenset(literal for name, literal in filter(None, anchors) if name == "tag")
    return Selector(selectors, tags, {n: _any_of(ls) for n, ls in attributes.items()}, None in anchors)


def select(doc: Document, css: str) -> list[Element]:
    """The elements css matches, in document order, as soupsieve's select() on bs4's tree."""
    compiled = compile_selector(css)
    cache: dict = {}
    found = (e for e in doc.elements() if compiled.admits(e) and compiled.match(e, cache))
    return [e for e in found if next(e.iterancestors("template"), None) is None]  # soupsieve never enters one


def _check_supported(selector: object) -> None:
    unsupported = (
        selector.nth or selector.selectors or selector.contains or selector.lang or selector.flags
        or (selector.tag is not None and selector.tag.prefix)
        or any(a.prefix or (a.pattern and a.attribute.lower() in FILLED_ATTRIBUTES) for a in selector.attributes)
        or (selector.relation and (len(selector.relation) != 1 or selector.relation[0].rel_type != " "))
    )
    if unsupported:
        raise ValueError(f"selector not supported on the lxml tree: {selector}")
    for outer in selector.relation:
        _check_supported(outer)


def _anchor(selector: object) -> tuple[str, str | None] | None:
    """("tag", name) or (attribute, text its raw value must contain, or None): what every element
    the selector matches has. Classes anchor best, then attribute texts, tag names, attributes."""
    tests = [("class", c) for c in selector.classes]
    tests += [(a.attribute.translate(ASCII_LOWER), _pattern_literal(a)) for a in selector.attributes if not a.inverse]
    tests += [("id", i) for i in selector.ids]
    if selector.tag is not None and selector.tag.name != "*":
        tests.append(("tag", selector.tag.name.translate(ASCII_LOWER)))
    ranked = sorted(tests, key=lambda test: (test[1] is None, test[0] == "tag", test[0] == "id"))
    return ranked[0] if ranked else None


def _pattern_literal(test: object) -> str | None:
    """The text an =, ^=, $= or *= test's value contains, when the raw value must contain it too
    (case-sensitive, no whitespace: bs4 rejoins class lists); None for other tests."""
    if test.pattern is None or test.ignore_case:
        return None
    core = test.pattern.pattern.removeprefix("^").removesuffix(r"\Z")
    literal = re.sub(r"\\(.)", r"\1", core, flags=re.DOTALL)
    exact = literal and re.escape(literal) == core
    return literal if exact and not any(c.isspace() for c in literal) else None


def _any_of(literals: list[str | None]) -> re.Pattern | None:
    return None if None in literals else re.compile("|".join(map(re.escape, literals)))


def _matches(element: Element, selector: object, cache: dict) -> bool:
    """soupsieve's verdict on one compiled selector for an element (see _check_supported)."""
    tag = selector.tag
    if tag is not None and tag.name != "*" and not _same_name(_ascii_lower(tag.name), element.tag):
        return False
    if any(element.get("id", "") != i for i in selector.ids):
        return False
    if selector.classes:
        value = element.get("class") or ""
        if any(c not in value for c in selector.classes):  # not even a substring: the cheap no
            return False
        if any(c not in value.split() for c in selector.classes):
            return False
    if not all(_attribute_matches(element, a) for a in selector.attributes):
        return False
    return not selector.relation or _ancestor_matches(element, selector.relation, cache)


@short_key_cache(maxsize=256, max_chars=64)
def _ascii_lower(name: str) -> str:
    """soupsieve's case folding of names: ASCII letters only."""
    return name.translate(ASCII_LOWER)


def _same_name(lowered: str, tag: str) -> bool:
    # The parser lower-cases tag names already: the plain comparison nearly always decides.
    return tag == lowered or tag.translate(ASCII_LOWER) == lowered


def _attribute_matches(element: Element, test: object) -> bool:
    value = attribute(element, _ascii_lower(test.attribute))
    if value is None:
        return bool(test.inverse)
    if test.pattern is None:
        return True
    if test.ignore_case:
        value = value.translate(ASCII_LOWER)
    return test.pattern.search(value) is not None


def _ancestor_matches(element: Element, relation: object, cache: dict) -> bool:
    """An ancestor below the nearest <template> (where soupsieve stops) matches the relation.

    As soupsieve does, each element climbed through remembers the verdict for its own ancestors.
    """
    climbed = []
    found = False
    parent = element.getparent()
    while parent is not None and parent.tag != "template":
        key = (id(relation), parent)  # the element itself in the key keeps its proxy (and id) alive
        if key in cache:
            found = cache[key]
            break
        climbed.append(key)
        if any(_matches(parent, selector, cache) for selector in relation):
            found = True
            break
        parent = parent.getparent()
    for key in climbed:
        cache[key] = found
    return found
