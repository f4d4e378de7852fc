"""Helpers every parser shares: building the tree, structured data, meta tags, text, URLs.

Pure functions only: no network, no Redis, no clock.
"""
from __future__ import annotations

import html as html_lib
import json
import re
import warnings
from collections.abc import Iterable, Iterator
from urllib.parse import urljoin, urlsplit

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, Tag, XMLParsedAsHTMLWarning
from lxml import etree

# lxml builds the tree faster than html.parser on large pages (measured in bench/).
TREE_BUILDER = "lxml"
WHITESPACE = re.compile(r"\s+")


def make_soup(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, TREE_BUILDER)


def clean_text(text: str | None) -> str | None:
    """Collapse runs of whitespace; None for empty text."""
    if text is None:
        return None
    text = WHITESPACE.sub(" ", text).strip()
    return text or None


def node_text(node: Tag | None) -> str | None:
    return clean_text(node.get_text(" ")) if node is not None else None


def load_json(text: str | None) -> object | None:
    """json.loads that answers None for broken or empty JSON instead of raising."""
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


JSONLD_TYPE = re.compile(r"^\s*application/ld\+json", re.I)


def jsonld_objects(soup: BeautifulSoup) -> Iterator[dict]:
    """Every JSON-LD object on the page, flattening lists and @graph containers."""
    yield from jsonld_in_scripts(soup.find_all("script", type=JSONLD_TYPE))


def jsonld_in_scripts(scripts: Iterable[Tag]) -> Iterator[dict]:
    """jsonld_objects for <script> tags already found (other scripts are skipped)."""
    for script in scripts:
        if JSONLD_TYPE.match(_attr_text(script, "type") or ""):
            yield from _flatten_jsonld(load_json(script.string or script.get_text()))


def _flatten_jsonld(value: object) -> Iterator[dict]:
    if isinstance(value, list):
        for item in value:
            yield from _flatten_jsonld(item)
    elif isinstance(value, dict):
        yield value
        if isinstance(value.get("@graph"), list):
            yield from _flatten_jsonld(value["@graph"])


def jsonld_types(obj: dict) -> set[str]:
    kinds = obj.get("@type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return {k.split("/")[-1].lower() for k in kinds if isinstance(k, str)}


def first_jsonld(soup: BeautifulSoup, *types: str) -> dict | None:
    wanted = {t.lower() for t in types}
    return next((obj for obj in jsonld_objects(soup) if jsonld_types(obj) & wanted), None)


def meta_content(soup: BeautifulSoup, *keys: str) -> str | None:
    """The first non-empty <meta> content whose property, name or itemprop is one of keys."""
    for key in keys:
        for attr in ("property", "name", "itemprop"):
            tag = soup.find("meta", attrs={attr: re.compile(rf"^{re.escape(key)}$", re.I)})
            value = clean_text(tag.get("content")) if tag is not None else None
            if value:
                return value
    return None


def absolute_url(href: str | None, base: str) -> str | None:
    """href made absolute against base; None for empty, javascript: or mailto: links."""
    href = (href or "").strip()
    if not href or href.startswith("#"):
        return None
    url = urljoin(base, href)
    return url if urlsplit(url).scheme in ("http", "https") else None


def to_int(value: object) -> int | None:
    """An int from 1,234 / "1 234 ratings" / 12.0; None when there is no number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    digits = re.sub(r"[^\d]", "", str(value).split(".")[0])
    return int(digits) if digits else None


def to_float(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    match = re.search(r"\d+(?:[.,]\d+)?", str(value))
    return float(match.group().replace(",", ".")) if match else None


# ---------------------------------------------------------------------------------------
# Untrusted pages: bounded parse time, and no exception from odd text.
# ---------------------------------------------------------------------------------------

# bs4 warns when markup looks like XML or like a file name; parsers read whatever a server
# sent as HTML on purpose, so those warnings are noise in logs and test output.
warnings.filterwarnings("ignore", category=XMLParsedAsHTMLWarning)
warnings.filterwarnings("ignore", category=MarkupResemblesLocatorWarning)

# bs4 builds a tree from wall-to-wall tags (<b>x</b><b>x</b>...) at about 0.5 MB a second;
# the largest real page saved for the tests (a Washington Post front) is 2.0 million
# characters. A page is parsed up to this length; its metadata sits in <head> anyway.
MAX_PARSE_CHARS = 2_500_000
# bs4 walks a node's ancestors for each child it adds, so parse time grows with depth x width:
# 20,000 nested <div>s followed by 20,000 <br>s (200 kB) take 25 s. Real pages nest under 30.
MAX_DEPTH = 64
SURROGATES = re.compile("[\ud800-\udfff]")
VOID_ELEMENTS = frozenset(
    "area base br col embed hr img input keygen link meta param source track wbr".split()
)
RAW_TEXT_ELEMENTS = frozenset({"script", "style"})  # their text is written back unescaped
SAFE_NAME = re.compile(r"^[^\s\"'<>/=]+$")


def make_bounded_soup(html: str) -> BeautifulSoup:
    """make_soup for pages from anywhere: bounded time and size, no error on lone surrogates."""
    return make_soup(bounded_html(html))


def bounded_html(html: str) -> str:
    """html cut to MAX_PARSE_CHARS, lone surrogates replaced, nesting past MAX_DEPTH flattened.

    Ordinary pages come back unchanged; only a page nested deeper than MAX_DEPTH is rewritten
    (its deepest tags dropped, their text kept).
    """
    html = html[:MAX_PARSE_CHARS]
    if SURROGATES.search(html):
        html = SURROGATES.sub("\ufffd", html)  # lxml cannot take them; they can only be junk
    if _lxml_events(html, _DepthProbe()) > MAX_DEPTH:
        html = _lxml_events(html, _Flattener(MAX_DEPTH))
    return html


def _lxml_events(html: str, target: object) -> object:
    """Run lxml's HTML parser (the one bs4 uses) over html with a parser target; its result."""
    parser = etree.HTMLParser(target=target, recover=True)
    try:
        parser.feed(html)
        return parser.close()
    except (etree.LxmlError, ValueError):
        return target.close()  # lxml gave up part-way: what the target saw so far


class _DepthProbe:
    """Parser target that answers the deepest element nesting, without building a tree."""

    def __init__(self) -> None:
        self.depth = self.deepest = 0

    def start(self, tag: str, attrib: dict) -> None:
        self.depth += 1
        self.deepest = max(self.deepest, self.depth)

    def end(self, tag: str) -> None:
        self.depth -= 1

    def close(self) -> int:
        return self.deepest


class _Flattener:
    """Parser target that writes the page back as HTML without the tags nested past max_depth.

    The text of dropped tags is kept, except script and style code, which is no page text.
    Comments, doctype and processing instructions are dropped: no parser reads them.
    """

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.depth = 0
        self.raw_text: str | None = None  # "keep" inside a kept <script>/<style>, "drop" in a dropped one
        self.out: list[str] = []

    def start(self, tag: str, attrib: dict) -> None:
        self.depth += 1
        kept = self.depth <= self.max_depth and bool(SAFE_NAME.match(tag))
        if tag.lower() in RAW_TEXT_ELEMENTS:
            self.raw_text = "keep" if kept else "drop"
        if kept:
            attrs = "".join(
                f' {name}="{html_lib.escape(value)}"' for name, value in attrib.items() if SAFE_NAME.match(name)
            )
            self.out.append(f"<{tag}{attrs}>")

    def end(self, tag: str) -> None:
        if self.depth <= self.max_depth and SAFE_NAME.match(tag) and tag.lower() not in VOID_ELEMENTS:
            self.out.append(f"</{tag}>")
        if tag.lower() in RAW_TEXT_ELEMENTS:
            self.raw_text = None
        self.depth -= 1

    def data(self, text: str) -> None:
        if self.raw_text == "keep":
            self.out.append(text)  # script text is read raw: escaping would change the code
        elif self.raw_text is None:
            self.out.append(html_lib.escape(text, quote=False))

    def close(self) -> str:
        return "".join(self.out)


def meta_index(soup: BeautifulSoup) -> dict[str, list[str]]:
    """Every non-empty <meta> value by lowercased key, in page order.

    Keys are the name, property or http-equiv attribute, and "itemprop:<name>" for microdata
    (kept apart so an itemprop="description" deep in a widget never passes for the page's).
    Values come from content=, or value= which some sites use instead; they are stripped but
    not collapsed (a URL split over two lines must stay recognisable as one).
    """
    index: dict[str, list[str]] = {}
    for tag in soup.find_all("meta"):
        value = (_attr_text(tag, "content") or _attr_text(tag, "value") or "").strip()
        if not value:
            continue
        keys = {(_attr_text(tag, attr) or "").strip().lower() for attr in ("property", "name", "http-equiv")}
        itemprop = (_attr_text(tag, "itemprop") or "").strip().lower()
        if itemprop:
            keys.add("itemprop:" + itemprop)
        for key in keys - {""}:
            index.setdefault(key, []).append(value)
    return index


def _attr_text(tag: Tag, name: str) -> str | None:
    """An attribute as one string (bs4 answers a list for multi-valued attributes like rel)."""
    value = tag.get(name)
    if isinstance(value, list):
        return " ".join(value)
    return value
