"""Helpers every parser shares: structured data (with or without a tree), meta tags, text,
URLs, caches, and the bounds that keep untrusted pages cheap (parsers/tree.py builds the tree).

Pure functions only: no network, no Redis, no clock.
"""
from __future__ import annotations

import html as html_lib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache, wraps
from typing import NamedTuple
from urllib.parse import urljoin, urlsplit

from lxml import etree

WHITESPACE = re.compile(r"\s+")


def clean_text(text: str | None) -> str | None:
    """Collapse runs of whitespace; None for empty text."""
    if text is None:
        return None
    text = WHITESPACE.sub(" ", text).strip()
    return text or None


def load_json(text: str | None) -> object | None:
    """json.loads that answers None for broken or empty JSON instead of raising."""
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


JSONLD_TYPE = re.compile(r"^\s*application/ld\+json", re.I)


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


def first_of_types(objects: Iterable[dict], types: Iterable[str]) -> dict | None:
    """The first JSON-LD object with one of types; later blocks are not even parsed (lazy)."""
    wanted = {t.lower() for t in types}
    return next((obj for obj in objects if jsonld_types(obj) & wanted), None)


# ---------------------------------------------------------------------------------------
# <script> blocks without a tree: structured data read at a few percent of a tree's cost.
# ---------------------------------------------------------------------------------------

class ScriptBlock(NamedTuple):
    attrs: dict[str, str]  # lower-cased names, entity-decoded values, first of duplicates kept
    text: str  # as the tree would hold it: raw, CR LF as LF, NUL as U+FFFD


SPACE = r"\t\n\f\r "  # HTML whitespace, for regex character classes
TEXT_ELEMENTS = ("script", "style", "title", "textarea", "xmp", "iframe", "noembed", "noframes", "plaintext")
# The lookahead on first letters spares trying the nine names at every tag of the page.
TEXT_ELEMENT = rf"(?=[sStTxXiInNpP])(?i:{'|'.join(TEXT_ELEMENTS)})(?=[{SPACE}/>])"
# The attributes of a tag up to its ">", as the HTML5 tokenizer splits them: a quoted value
# may hold ">" or "<script", and a quote left open runs to the end of the page.
ATTRIBUTES = (rf"(?:[{SPACE}/]++|[^{SPACE}/>][^{SPACE}/>=]*+"
              rf"""(?:[{SPACE}]*+=[{SPACE}]*+(?:"[^"]*+"?|'[^']*+'?|[^{SPACE}>]*+))?)*+>?""")
# Everything up to the next element whose content is text (script, style, title, ...), in one
# match run by the regex engine: text, tags (whose attribute values are not markup), end tags,
# comments (<!-->, <!---> and an unterminated one included), bogus comments and doctypes.
NO_TEXT_ELEMENT = re.compile(
    rf"""(?:[^<]++
    |<(?!{TEXT_ELEMENT})[A-Za-z][^{SPACE}/>]*+{ATTRIBUTES}
    |</[A-Za-z][^{SPACE}/>]*+{ATTRIBUTES}
    |<!--(?:>|->|.*?(?:--!?>|\Z))
    |<[!?][^>]*+>?
    |</[^A-Za-z>][^>]*+>?
    |<(?!{TEXT_ELEMENT})
    )*+""",
    re.S | re.X,
)
START_TAG = re.compile(rf"<(?P<name>{TEXT_ELEMENT})")
ATTRIBUTE = re.compile(
    rf"[{SPACE}/]*+(?:(?P<close>>)|(?P<name>[^{SPACE}/>][^{SPACE}/>=]*+)"
    rf"""(?:[{SPACE}]*+=[{SPACE}]*+(?:"(?P<dq>[^"]*+)"?|'(?P<sq>[^']*+)'?|(?P<uq>[^{SPACE}>]*+)))?)"""
)
TEXT_END = {name: re.compile(rf"</{name}[{SPACE}/>]", re.I) for name in TEXT_ELEMENTS}
# Script data: "<!--" escapes it, and inside the escape a "<script" opens a section where
# "</script>" does not end the element (the HTML5 "double escaped" states); "-->" ends both.
SCRIPT_TOKEN = re.compile(rf"<(?:!--|(?P<slash>/?)(?i:script)[{SPACE}/>])|-->")
SCRIPT_END = re.compile(rf"</(?i:script)[{SPACE}/>]")
END_TAG_REST = re.compile(ATTRIBUTES)


def script_blocks(html: str) -> list[ScriptBlock]:
    """Every <script> element of the page in order, as the tree builder (libxml2 2.14, an HTML5
    tokenizer) finds them: not inside comments, attribute values, <style>, <title>, <textarea>...

    Known gaps, tree-construction rules rather than tokenizer ones: a tag the tree builder
    ignores (a <title> inside <select>, anything after <frameset>), foreign content (<svg>,
    <math>), and a script nested past MAX_DEPTH, which the tree would flatten away.
    """
    blocks: list[ScriptBlock] = []
    pos = NO_TEXT_ELEMENT.match(html).end()
    while pos < len(html):
        tag = START_TAG.match(html, pos)
        pos = _skip_text_element(html, tag.group("name").lower(), tag.end(), blocks)
        pos = NO_TEXT_ELEMENT.match(html, pos).end()
    return blocks


def _skip_text_element(html: str, name: str, pos: int, blocks: list[ScriptBlock]) -> int:
    """Where scanning resumes after the element whose name ends at pos; a script is kept in blocks."""
    tag = _start_tag(html, pos)
    if tag is None:
        return len(html)  # a start tag cut off by the end of the page is no element
    attrs, start, self_closing = tag
    if self_closing:  # libxml2 ends even <script/> and <title/> there, unlike HTML5
        end, resume = start, start
    elif name == "script":
        end, resume = _script_end(html, start)
    else:
        end, resume = _text_end(html, name, start)
    if name == "script":
        blocks.append(ScriptBlock(attrs, _as_tree_text(html[start:end])))
    return resume


def _text_end(html: str, name: str, pos: int) -> tuple[int, int]:
    """(where the text of a <style>, <title>... starting at pos ends, where scanning resumes)."""
    end_tag = TEXT_END[name].search(html, pos) if name != "plaintext" else None
    if end_tag is None:
        return len(html), len(html)  # <plaintext> and an unclosed element run to the end
    return end_tag.start(), _end_tag_end(html, end_tag.end() - 1)


def _start_tag(html: str, pos: int) -> tuple[dict[str, str], int, bool] | None:
    """(attributes, where the content starts, self-closing) of the start tag whose name ends
    at pos; None when the page ends inside the tag."""
    attrs: dict[str, str] = {}
    seen: set[str] = set()  # a repeated attribute is dropped (the first one counts)
    while (part := ATTRIBUTE.match(html, pos)) is not None:
        if part.group("close"):
            return attrs, part.end(), html.startswith("/>", part.end() - 2) and part.end() - 2 >= pos
        name, pos = part.group("name").lower(), part.end()
        if name not in seen:
            seen.add(name)
            value = next((v for v in part.group("dq", "sq", "uq") if v is not None), "")
            attrs[name] = _as_tree_text(html_lib.unescape(value))
    return None


def _end_tag_end(html: str, pos: int) -> int:
    """Just after the ">" of the end tag whose name ends at pos (end tags may carry attributes)."""
    return END_TAG_REST.match(html, pos).end()


def _script_end(html: str, pos: int) -> tuple[int, int]:
    """(where the text of a script starting at pos ends, where scanning resumes after it)."""
    end_tag = SCRIPT_END.search(html, pos)
    if end_tag is not None and html.find("<!--", pos, end_tag.start()) < 0:
        return end_tag.start(), _end_tag_end(html, end_tag.end() - 1)  # no escape: the common case
    return _escaped_script_end(html, pos)


def _escaped_script_end(html: str, pos: int) -> tuple[int, int]:
    """_script_end through the script data states, for a script that holds "<!--"."""
    escaped = double_escaped = False
    while (token := SCRIPT_TOKEN.search(html, pos)) is not None:
        if token.group() == "<!--":
            escaped = True
            pos = token.start() + 2  # its own dashes can close it: "<!-->"
            continue
        if token.group() == "-->":
            escaped = double_escaped = False
        elif token.group("slash"):
            if not double_escaped:
                return token.start(), _end_tag_end(html, token.end() - 1)
            double_escaped = False
        elif escaped:
            double_escaped = True
        pos = token.end()
    return len(html), len(html)  # an unterminated script runs to the end of the page


def _as_tree_text(text: str) -> str:
    """Text as the tree holds it: HTML5 input preprocessing (CR LF as LF, NUL as U+FFFD)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text


def jsonld_in_blocks(blocks: Iterable[ScriptBlock]) -> Iterator[dict]:
    """The JSON-LD objects of script_blocks(html), read without a tree."""
    for block in blocks:
        if JSONLD_TYPE.match(block.attrs.get("type", "")):
            yield from _flatten_jsonld(load_json(block.text))


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

# The largest real page saved for the tests (a Washington Post front) is 2.0 million
# characters. A page is parsed up to this length; its metadata sits in <head> anyway.
MAX_PARSE_CHARS = 2_500_000
# The parsers climb from elements to their ancestors (is this text inside a <script>? which
# card holds this heading?), so their time grows with depth x width: 20,000 nested <div>s
# followed by 20,000 <br>s are 200 kB. Real pages nest under 30.
MAX_DEPTH = 64
SURROGATES = re.compile("[\ud800-\udfff]")
VOID_ELEMENTS = frozenset(
    "area base br col embed hr img input keygen link meta param source track wbr".split()
)
RAW_TEXT_ELEMENTS = frozenset({"script", "style"})  # their text is written back unescaped
SAFE_NAME = re.compile(r"^[^\s\"'<>/=]+$")


# A flattened page can come out of the tree builder deeper than it went in (misnested
# formatting tags are reopened); it is flattened once more, then built whatever its depth.
FLATTEN_ROUNDS = 2


def flattened_html(html: str) -> str:
    """html written back without the tags nested past MAX_DEPTH (their text kept), for a page
    already known to nest too deep (tree.build_document sees it on the tree it built)."""
    return _lxml_events(limit_html(html), _Flattener(MAX_DEPTH))


def limit_html(html: str) -> str:
    """html cut to MAX_PARSE_CHARS, lone surrogates replaced.

    Enough for code that reads the text without building a tree (script_blocks); whoever
    builds a tree goes through tree.build_document, which bounds the nesting too.
    """
    html = html[:MAX_PARSE_CHARS]
    if _has_surrogates(html):
        html = SURROGATES.sub("\ufffd", html)  # lxml cannot take them; they can only be junk
    return html


def _has_surrogates(text: str) -> bool:
    # UTF-8 encoding fails exactly on surrogates, and runs ten times faster than a regex
    # search for them (0.8 ms against 7 ms on a 1 MB page).
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _lxml_events(html: str, target: object) -> object:
    """Run lxml's HTML parser over html with a parser target (no tree built); the target's result."""
    parser = etree.HTMLParser(target=target, recover=True)
    try:
        parser.feed(html)
        return parser.close()
    except (etree.LxmlError, ValueError):
        return target.close()  # lxml gave up part-way: what the target saw so far


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


def meta_index(metas: Iterable[etree._Element]) -> dict[str, list[str]]:
    """Every non-empty value of the page's <meta> elements by lowercased key, in page order.

    Keys are the name, property or http-equiv attribute, and "itemprop:<name>" for microdata
    (kept apart so an itemprop="description" deep in a widget never passes for the page's).
    Values come from content=, or value= which some sites use instead; they are stripped but
    not collapsed (a URL split over two lines must stay recognisable as one).
    """
    index: dict[str, list[str]] = {}
    for tag in metas:
        value = (tag.get("content") or tag.get("value") or "").strip()
        if not value:
            continue
        keys = {(tag.get(attr) or "").strip().lower() for attr in ("property", "name", "http-equiv")}
        itemprop = (tag.get("itemprop") or "").strip().lower()
        if itemprop:
            keys.add("itemprop:" + itemprop)
        for key in keys - {""}:
            index.setdefault(key, []).append(value)
    return index


# ---------------------------------------------------------------------------------------
# Caches for lookups the parsers repeat across a page and across pages.
# ---------------------------------------------------------------------------------------

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
