"""The page's tree, for every parser: lxml's HTML tree, built bounded, and the reading rules the
parsers share.

- build_document(html): libxml2's HTML parser (through lxml) over the page cut to
  MAX_PARSE_CHARS, built again flattened when it nests past MAX_DEPTH.
- Page text: the text of script, style, template, rt and rp is no page text (code, styles,
  inert template content, ruby annotations); a run of only whitespace reads as one space or
  line break, so indentation weighs nothing (text_length counts it whole inside pre and
  textarea, where whitespace is content).
- Walks: lxml keeps a run of text as an element's .text or .tail; the walks here (on lxml's
  iterwalk) give each run a step of its own, in document order. Every walk that can meet a
  hostile page takes a bound from its caller (descendants, page_strings, ancestor).
- remove(element): out of the page, the text after it kept apart from the text before it.
- class_tokens(element): the words of class and data-testid, the news parsers' vocabulary.

CSS selectors are parsers/css.py's.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from itertools import islice

from lxml import etree

from parsers.base import FLATTEN_ROUNDS, MAX_DEPTH, MAX_PARSE_CHARS, clean_text, flattened_html, limit_html

Element = etree._Element
Node = Element | str  # an element, comment or processing instruction; or a run of text

GONE = "#removed"  # the tag of a removed element's placeholder: a name no HTML parser makes
STRING_CONTAINERS = frozenset({"script", "style", "template", "rt", "rp"})  # their text is no page text
PRESERVE_WHITESPACE = frozenset({"pre", "textarea"})  # whitespace is content there
ASCII_SPACES = " \t\n\f\r"  # HTML's whitespace: a run of only these is one space or line break
TOO_DEEP = etree.XPath(f"boolean({'/*' * (MAX_DEPTH + 1)})")
LINKS = etree.XPath("//a[@href]")
BASE_HREFS = etree.XPath("//base[@href]")
BODIES = etree.XPath("//body")
SCRIPTS = etree.XPath("//script[@type]")  # an untyped script is no JSON-LD
ENTER, TEXT, LEAVE = "enter", "text", "leave"  # the steps of a Walk
WALK_EVENTS = ("start", "end", "comment", "pi")  # what lxml's iterwalk reports to a Walk
NO_TOKENS: frozenset[str] = frozenset()
CAMEL_CASE = re.compile(r"([a-z])([A-Z])")
NON_WORD = re.compile(r"[^a-z0-9]+")
CACHED_CHARS = 1024  # longest class and data-testid values (summed) whose tokens are cached


def _any(axis: str, names: frozenset[str]) -> str:
    """An XPath test: a node on axis has one of names. (One name test per name: libxml2 runs
    them several times faster than one test of a name list, ancestor::*[self::a or self::b].)"""
    return " or ".join(f"{axis}::{name}" for name in sorted(names))


ALL_TEXT = etree.XPath(".//text()", smart_strings=False)
PAGE_TEXT = etree.XPath(f".//text()[not({_any('ancestor', STRING_CONTAINERS)})]", smart_strings=False)
HOLDS_HIDDEN = etree.XPath(f"boolean({_any('descendant', STRING_CONTAINERS)})")
PRESERVED_TEXT = etree.XPath(
    f".//text()[{_any('ancestor', PRESERVE_WHITESPACE)}][not({_any('ancestor', STRING_CONTAINERS)})]",
    smart_strings=False,
)
HOLDS_PRESERVED = etree.XPath(
    f"boolean({_any('ancestor-or-self', PRESERVE_WHITESPACE)} or {_any('descendant', PRESERVE_WHITESPACE)})")


# --- The tree -------------------------------------------------------------------------------------


class Document:
    """A parsed page: its top-level nodes in order. libxml2 opens another <html> for markup
    after </html>, so there can be several top-level elements; XPath over `tree` sees them all."""

    def __init__(self, root: Element | None) -> None:
        self.tree = root.getroottree() if root is not None else None
        self.nodes: list[Element] = top_level_nodes(root) if root is not None else []

    def elements(self) -> Iterator[Element]:
        """Every element in document order (no comment, no removed element)."""
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
    """The page's tree, bounded: cut to MAX_PARSE_CHARS, and flattened (up to FLATTEN_ROUNDS
    times, by base.flattened_html) when it nests past MAX_DEPTH."""
    html = html[:MAX_PARSE_CHARS]
    for _ in range(FLATTEN_ROUNDS):
        root = _lxml_root(html)
        if root is None or not TOO_DEEP(root):
            return Document(root)
        html = flattened_html(html)
    return Document(_lxml_root(html))


def snippet_body(html: str) -> Element | None:
    """The <body> of a snippet of HTML held in a page's data (a description in JSON), built as a
    page is; None when the snippet puts nothing there."""
    return next(iter(build_document(html).find_all(BODIES)), None)


def _lxml_root(html: str) -> Element | None:
    """The first top-level element (None when there is none), the whole text fed at once
    without its byte-order mark.

    The text goes in as UTF-8 bytes, which lxml parses in 60% of the time it takes over a str.
    """
    parser = etree.HTMLParser(  # collect_ids: no table of id attributes, which nothing here reads
        recover=True, huge_tree=False, default_doctype=False, encoding="utf-8", collect_ids=False,
    )
    try:
        parser.feed(_utf8(html.removeprefix("\ufeff")))
        return parser.close()
    except etree.LxmlError:
        return None  # nothing the parser could read (an empty page, a lone comment)


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


def is_tag(node: Node) -> bool:
    """An element: not a run of text, a comment or a processing instruction."""
    return type(node) is not str and isinstance(node.tag, str)


def remove(element: Element) -> None:
    """Take element and its subtree out of the page.

    An lxml element cannot go without the text that follows it (its tail), and joining that
    text to the text before it would glue two words together: an empty placeholder stays
    behind, which every walk here skips and no selector matches.
    """
    element.clear(keep_tail=True)
    element.tag = GONE


def ancestor(tag: Element, predicate: Callable[[Element], bool], levels: int) -> Element | None:
    """The nearest ancestor (at most `levels` up) matching predicate."""
    node = tag.getparent()
    for _ in range(levels):
        if node is None:
            return None
        if predicate(node):
            return node
        node = node.getparent()
    return None


# --- Walks ----------------------------------------------------------------------------------------


class Walk:
    """element's subtree in document order, on lxml's iterwalk, each run of text a step of its own:
    (ENTER, element or comment) below element, (TEXT, run), (LEAVE, element) after an element's
    content, element's own last. skip() right after an ENTER leaves that element's content out
    (its LEAVE still comes). Removed elements are passed over, the text after them kept.

    Unbounded: whoever walks a page from anywhere counts the steps it takes.
    """

    def __init__(self, element: Element) -> None:
        self.root = element
        self._walker = None
        self._skipped = False

    def skip(self) -> None:
        self._skipped = True
        self._walker.skip_subtree()

    def __iter__(self) -> Iterator[tuple[str, Node]]:
        root = self.root
        if root.text:
            yield TEXT, root.text
        if not len(root):  # most titles and labels: no iterwalk to set up
            yield LEAVE, root
            return
        walker = self._walker = etree.iterwalk(root, events=WALK_EVENTS)
        next(walker)  # the element's own start: no step of its own
        for event, node in walker:
            if event == "start":
                if node.tag == GONE:
                    continue  # cleared: nothing inside, and its tail comes with its "end"
                self._skipped = False
                yield ENTER, node
                if not self._skipped and node.text:
                    yield TEXT, node.text
            elif event == "end":
                if node is root:
                    yield LEAVE, node
                    return
                if node.tag != GONE:
                    yield LEAVE, node
                if node.tail:
                    yield TEXT, node.tail
            else:  # a comment or processing instruction: a node, but its text is none of the page's
                yield ENTER, node
                if node.tail:
                    yield TEXT, node.tail


def descendants(element: Element, limit: int) -> Iterator[Node]:
    """element's first `limit` descendants in document order: elements, comments, runs of text."""
    return islice(_nodes(element), max(limit, 0))


def _nodes(element: Element) -> Iterator[Node]:
    """A Walk's steps but the leaving ones, written out on iterwalk: the parsers' most frequent
    walk (a card's links, a link's headings), one generator lighter per step than a Walk."""
    if element.text:
        yield element.text
    if not len(element):
        return
    walker = etree.iterwalk(element, events=WALK_EVENTS)
    next(walker)  # the element's own start
    for event, node in walker:
        if event == "start":
            if node.tag != GONE:
                yield node
                if node.text:
                    yield node.text
        elif event == "end":
            if node is element:
                return
            if node.tail:
                yield node.tail
        else:  # a comment or processing instruction
            yield node
            if node.tail:
                yield node.tail


def page_strings(element: Element, limit: int) -> Iterator[str]:
    """The runs of page text among element's first `limit` descendants."""
    hidden = 1 if in_string_container(element) else 0  # string containers open around the step
    for step, node in Walk(element):
        if step == LEAVE:
            if node is not element and node.tag in STRING_CONTAINERS:
                hidden -= 1
            continue
        if limit <= 0:
            return
        limit -= 1
        if step == TEXT:
            if not hidden:
                yield node
        elif node.tag in STRING_CONTAINERS:
            hidden += 1


def in_string_container(element: Element) -> bool:
    """Inside script, style, template, rt or rp (or one of them), whose text is no page text."""
    return element.tag in STRING_CONTAINERS or next(element.iterancestors(*STRING_CONTAINERS), None) is not None


# --- Page text ------------------------------------------------------------------------------------


def page_text(node: Element | Document, separator: str = "") -> str:
    """The page text of an element (or of the whole page) in document order, its runs joined by
    separator, a run of only whitespace as one line break (when it holds one) or one space.
    Linear in the element's size: one XPath, no Python walk."""
    tops = [top for top in node.nodes if is_tag(top)] if isinstance(node, Document) else [node]
    return separator.join(_one_space(run) for top in tops for run in _page_runs(top))


def node_text(element: Element | None) -> str | None:
    """An element's page text, whitespace collapsed; None for no element or no text."""
    return clean_text(page_text(element, " ")) if element is not None else None


def text_length(element: Element) -> int:
    """How much page text element holds: len(page_text(element)), but a run of only whitespace
    inside <pre> or <textarea> counts whole, as it shows."""
    length = len(page_text(element))
    if HOLDS_PRESERVED(element) and not in_string_container(element):  # rarely: code blocks, forms
        length += sum(len(run) - 1 for run in PRESERVED_TEXT(element) if not run.strip(ASCII_SPACES))
    return length


def _page_runs(element: Element) -> list[str]:
    if in_string_container(element):
        return []
    return (PAGE_TEXT if HOLDS_HIDDEN(element) else ALL_TEXT)(element)  # most elements hold no script


def _one_space(run: str) -> str:
    if run.strip(ASCII_SPACES):
        return run
    return "\n" if "\n" in run else " "


# --- Class words ----------------------------------------------------------------------------------


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
    for value in (" ".join(classes.split()) if classes else None, test_id):  # the class list, single-spaced
        if value:
            tokens.update(NON_WORD.split(CAMEL_CASE.sub(r"\1 \2", value[:500]).lower()))  # kickerText
    tokens.discard("")
    return frozenset(tokens)


_class_tokens = lru_cache(maxsize=4096)(_words)
