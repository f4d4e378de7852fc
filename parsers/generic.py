"""Metadata of any web page: title, description, site, image, author, dates, language, size.

parse(html, url, explain=False) is pure: no network, no clock, no Redis. Every field falls
through its own list of sources, independently of the others, in this order:

    JSON-LD -> OpenGraph -> Twitter cards -> Dublin Core -> other <meta> -> plain HTML

with three documented exceptions: site_name reads og:site_name before JSON-LD (an Article
names its publisher, not the site), language reads <html lang> first (what browsers and
screen readers use; og:locale is often a template default), and canonical_url reads only
<link rel=canonical> and og:url before falling back to the given url.

Conventions of the output:
- type is in the Open Graph vocabulary, lowercase: "article", "website", "video.other",
  "book", "profile", "product", ... JSON-LD and microdata @types are mapped onto it
  (NewsArticle, ReportageNewsArticle, BlogPosting -> "article"; WebPage -> "website").
  A specific JSON-LD type beats og:type; og:type beats a generic JSON-LD WebPage.
- published keeps the page's own clock, normalised to ISO 8601 without fractions:
  "2024-02-24T11:42:23+00:00" with an offset (Z, UTC, GMT, EST... become offsets),
  "2013-06-06T07:34:00" when the page gives none, "2019-11-21" for a bare date. A bare
  date is upgraded by a later source that gives a time on the same day.
- authors lists every author's name in page order ([] when none), from the first source that
  names a person: JSON-LD author/creator (lists of Persons and Organizations alike), every
  author <meta> (article:author, name=author... each repeated tag counts), HTML bylines
  ("By A, B and C" is three names), and last the page's inline data-layer scripts
  (dataLayer.push({"author": ...}), utag_data, digitalData, __INITIAL_STATE__). An
  organisation (a JSON-LD Organization, or the site's or publisher's own name) is the author
  only when no source names a person. URLs and @handles are not names. author is the same
  names joined with ", " (None when none), as before authors existed.
- language is a BCP 47 tag: "en", "en-GB" (og:locale "en_US" becomes "en-US").
- word_count counts the words of the main text; each CJK character counts as one word,
  since those scripts do not separate words with spaces.
- Text is entity-decoded (once more than the HTML parser does, for double-escaped meta
  content) and whitespace-collapsed; URLs are absolute (against <base href> if any).

explain=True adds the key "explain": for each field with a value (not None, "" or []), the
source that gave it, as "<layer>: <detail>" with layer one of json-ld, meta, html, script,
url ("json-ld: NewsArticle.headline", "meta: og:title", "html: <h1>", "url: the page URL").
Every field reads its candidates as (source, value) pairs, so the winner knows its source.

Raises ParseError only when the input is not an HTML page at all: empty, binary, no tag,
or neither a title nor any text.

The tree is lxml's (parsers/tree.py builds it bounded and says what page text is); the HTML
fallbacks are CSS selectors compiled by cssselect (parsers/css.py).
"""
from __future__ import annotations

import datetime
import html as html_lib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from functools import cached_property
from itertools import islice
from typing import NamedTuple
from urllib.parse import urlsplit

from lxml import etree

from errors import ParseError
from parsers import css
from parsers.base import (
    JSONLD_TYPE,
    ScriptBlock,
    absolute_url,
    clean_text,
    jsonld_in_blocks,
    jsonld_types,
    meta_index,
)
from parsers.tree import BODIES, GONE, Document, Element, build_document, node_text, page_text, remove, text_length

# ---------------------------------------------------------------------------------------
# Where each field is looked for. Meta keys are matched lowercase against name, property
# and http-equiv; "itemprop:x" is a microdata <meta itemprop=x>. Order = priority.
# ---------------------------------------------------------------------------------------
JSONLD_KEYS = {
    "title": ("headline", "name"),
    "description": ("description",),
    "author": ("author", "creator"),
    "published": ("datePublished", "dateCreated", "uploadDate"),
    "image": ("image", "thumbnailUrl", "primaryImageOfPage"),
    "language": ("inLanguage",),
}
META_KEYS = {
    "title": (
        "og:title", "twitter:title", "dc.title", "dcterms.title",
        "parsely-title", "sailthru.title", "title", "itemprop:headline",
    ),
    "description": (
        "og:description", "twitter:description", "dc.description", "dcterms.description",
        "dcterms.abstract", "description", "sailthru.description",
    ),
    "site_name": ("og:site_name",),  # before JSON-LD; the rest come after it
    "site_name_late": ("dc.publisher", "dcterms.publisher", "application-name"),
    "image": (
        "og:image", "og:image:url", "og:image:secure_url", "twitter:image", "twitter:image:src",
        "parsely-image-url", "sailthru.image.full", "sailthru.image", "thumbnail", "itemprop:image",
    ),
    "author": (
        "article:author", "og:article:author", "book:author", "dc.creator", "dcterms.creator", "author",
        "parsely-author", "sailthru.author", "byl", "itemprop:author",
    ),
    "published": (
        "article:published_time", "og:published_time", "og:article:published_time",
        "dcterms.issued", "dc.date.issued", "dcterms.date", "dc.date", "itemprop:datepublished",
        "parsely-pub-date", "sailthru.date", "article.published", "publishdate", "publish-date",
        "publish_date", "pubdate", "date",
    ),
    # "created" is not "published": read only after every HTML date.
    "created": ("dcterms.created", "dc.date.created", "itemprop:datecreated"),
    "canonical": ("og:url",),
    "type": ("og:type",),
    "language": ("og:locale", "content-language", "dc.language", "dcterms.language", "language"),
}
# HTML fallbacks, as CSS selectors. They are tried only on the elements one walk over the tree
# marks (MARKED_*): a few dozen elements of a page, where each selector over the whole page
# would walk all of its elements again.
TITLE_SELECTORS = ("[itemprop=headline]",)  # microdata headline, before <title>
H1_SELECTORS = ("article h1", "main h1", "[role=main] h1", "h1")
PUBLISHED_SELECTORS = (
    "time[itemprop=datePublished]", "[itemprop=datePublished]", "time[pubdate]",
    "article time[datetime]", "main time[datetime]", "time[datetime]",
    ".pubTime", ".pubtime", ".publish-date", ".published", ".post-date", ".entry-date",
    ".article-date", ".date-published",
)
AUTHOR_SELECTORS = (
    "[rel~=author]", "[itemprop=author] [itemprop=name]", "[itemprop=author]",
    ".byline__name", ".author-name", ".byline .author", ".author", ".byline", ".entry-author",
    ".post-author",
)
SELECTORS = TITLE_SELECTORS + H1_SELECTORS + PUBLISHED_SELECTORS + AUTHOR_SELECTORS  # for parsers.warm_up()
# What the walk marks: every element one of the selectors above could match.
MARKED_TAGS = frozenset({"h1", "time"})
MARKED_ATTRS = frozenset({"itemprop", "datetime", "pubdate"})
MARKED_RELS = frozenset({"author"})
REL_TAGS = frozenset({"a", "area", "link"})  # the elements whose rel is a list of link types
MARKED_CLASSES = frozenset({
    "byline__name", "author-name", "byline", "author", "entry-author", "post-author", "pubTime",
    "pubtime", "publish-date", "published", "post-date", "entry-date", "article-date",
    "date-published",
})
# Elements whose text is never the page's main text.
BOILERPLATE_TAGS = frozenset({
    "script", "style", "noscript", "template", "svg", "nav", "header", "footer", "aside",
    "form", "iframe", "button",
})
CONTAINER_TAGS = frozenset({"article", "main"})
NAMED_TAGS = frozenset({"title", "link", "base", "img", "script"})  # read by name, found by the walk
CONTAINER_KINDS = (  # main-text containers, best kind first, with the source explain names
    ("html: [itemprop=articleBody] text", lambda tag: tag.get("itemprop") == "articleBody"),
    ("html: <article> text", lambda tag: tag.tag == "article"),
    ("html: <main> text", lambda tag: tag.tag == "main" or tag.get("role") == "main"),
)
# Without those containers, blocks of <p>s holding under this share of the densest block's
# paragraph text are no candidates for the main text (menus, comments, teasers); among the
# rest, the one holding the most paragraph text wins, so an article beats its dense fact box.
MAIN_TEXT_SHARE = 1 / 3
MAX_MATCHES = 20  # elements read per selector: enough for any real byline, bounded on junk
MAX_MARKED = 2000  # elements kept per kind by the walk: real pages have far fewer
MAX_AUTHORS = 10
# Inline scripts read for a data-layer author: at most this much code in all, and this many
# author/byline keys; each key looks this far back for the variable it belongs to (explain).
MAX_SCRIPT_SCAN_CHARS = 1_000_000
SCRIPT_LOOKBACK = 2000
MAX_TEXT_CHARS = 2000  # longest title/description/... kept; junk pages can have megabytes
MAX_URL_CHARS = 2048
MIN_IMAGE_PIXELS = 100  # declared width/height under this: an icon, avatar or tracking pixel

# ---------------------------------------------------------------------------------------
# schema.org @type -> Open Graph type.
# ---------------------------------------------------------------------------------------
ARTICLE_TYPE = re.compile(r"(?:article|posting|report)$|^(?:review|recipe|howto)$")
SCHEMA_TO_OG = {
    "videoobject": "video.other", "movie": "video.movie", "tvepisode": "video.episode",
    "episode": "video.episode", "book": "book", "profilepage": "profile", "product": "product",
    "musicrecording": "music.song", "musicalbum": "music.album", "musicplaylist": "music.playlist",
    "website": "website",
}
GENERIC_OG_TYPES = {"website"}  # JSON-LD WebPage says little: og:type may say more
OG_TYPE = re.compile(r"^[a-z][a-z0-9_.:-]{0,40}$")

# ---------------------------------------------------------------------------------------
# Text patterns.
# ---------------------------------------------------------------------------------------
HTML_TAG = re.compile(r"<[a-zA-Z!?/]")
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f]")
BINARY_SAMPLE_CHARS = 65536
BINARY_CONTROL_RATIO = 0.02  # real pages have none; decoded binary has ~10%
MARKUP = re.compile(r"</?[a-zA-Z][^<>]{0,300}>")  # tags inside JSON-LD strings, not "x < y > z"
ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});")
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
WORD = re.compile(rf"[{CJK}]|[^\s{CJK}]*[^\W_][^\s{CJK}]*")  # a CJK char, or a token with a letter/digit
TITLE_SEPARATOR = re.compile(r"\s+(?:[-|–—·•»:~/]{1,2})\s+|\s*[|_]\s*")
BYLINE_SEPARATOR = re.compile(r"\s*,\s*(?:and\s+)?|\s*;\s*|\s+(?:and|&)\s+", re.IGNORECASE)
# Data-layer scripts: `"author": "Jane Doe"`, `author = ['A', 'B']`, `"byline": {"name": ...}`.
JS_STRING = r""""(?:[^"\\\n]|\\.){1,200}"|'(?:[^'\\\n]|\\.){1,200}'"""  # one char or escape per step: linear
SCRIPT_AUTHOR = re.compile(
    rf"""(?<![\w$-])(?P<quote>["']?)(?P<key>author|authors|byline)(?P=quote)\s{{0,20}}[:=]\s{{0,20}}"""
    rf"""(?P<value>{JS_STRING}|\[[^\[\]]{{1,2000}}\]|\{{[^{{}}]{{1,2000}}\}})""",
    re.IGNORECASE,
)
# Where a key may start: found by a fast scan (a literal set first), SCRIPT_AUTHOR tried only there;
# a script holding none of SCRIPT_KEY_WORDS (key words as pages write them) is not scanned at all.
SCRIPT_KEY = re.compile(r"[aAbB](?i:uthor|yline)")
SCRIPT_KEY_WORDS = ("uthor", "UTHOR", "yline", "YLINE")
SCRIPT_NAME = re.compile(rf"""(?<![\w$-])["']?name["']?\s{{0,20}}:\s{{0,20}}(?P<value>{JS_STRING})""")
SCRIPT_STRING = re.compile(JS_STRING)
SCRIPT_ASSIGNMENT = re.compile(r"(?<![\w$.])([A-Za-z_$][\w$]{0,100}(?:\.[A-Za-z_$][\w$]{0,100}){0,5})\s{0,5}"
                               r"(?:=(?![=>])|\.push\s{0,5}\()")
AUTHOR_PREFIX = re.compile(r"^(?:by|posted by|written by|\(c\)|©)\s*[:\-]?\s+", re.IGNORECASE)
LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]{1,8})*$", re.IGNORECASE)
NOT_LANGUAGES = {"und", "zxx", "mul"}

# ---------------------------------------------------------------------------------------
# Dates.
# ---------------------------------------------------------------------------------------
ISO_DATE = re.compile(
    r"(?P<y>\d{4})[-/](?P<m>\d{1,2})[-/](?P<d>\d{1,2})"
    r"(?:[T\s]+(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?(?:[.,]\d+)?)?"
    r"(?:\s*(?P<ampm>[AaPp])\.?[Mm]\.?)?"
    r"\s*(?P<tz>Z|[+-]\d{2}(?::?\d{2})?|[A-Z]{2,5})?(?![\w])"
)
COMPACT_DATE = re.compile(r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})(?:T?(?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})?)?$")
CJK_DATE = re.compile(
    r"(?P<y>\d{4})\s*年\s*(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*日"
    r"\s*(?:(?P<H>\d{1,2})[:：](?P<M>\d{2})(?:[:：](?P<S>\d{2}))?)?"
)
MONTHS = {
    name: number
    for number, names in enumerate(
        [("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
         ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
         ("oct", "october"), ("nov", "november"), ("dec", "december")],
        start=1,
    )
    for name in names
}
MONTH = r"(?P<mon>[A-Za-z]{3,9})\.?"
TEXT_DATES = (  # "June 6, 2013" and "21 November 2019": a bare date, the time is too varied
    re.compile(rf"\b{MONTH}\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<y>\d{{4}})\b"),
    re.compile(rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+{MONTH},?\s+(?P<y>\d{{4}})\b"),
)
TIMEZONES = {  # abbreviations with one meaning; "ET"/"IST" are ambiguous and left out
    "Z": "+00:00", "UTC": "+00:00", "GMT": "+00:00", "UT": "+00:00",
    "EST": "-05:00", "EDT": "-04:00", "CST": "-06:00", "CDT": "-05:00", "MST": "-07:00",
    "MDT": "-06:00", "PST": "-08:00", "PDT": "-07:00", "BST": "+01:00", "CET": "+01:00",
    "CEST": "+02:00", "EET": "+02:00", "EEST": "+03:00", "JST": "+09:00", "KST": "+09:00",
    "AEST": "+10:00", "AEDT": "+11:00",
}
YEARS = range(1900, 2201)  # outside this a "date" is a number that happens to fit the pattern

# Elements read by name, over every top-level node of the page.
HTML_ELEMENTS = etree.XPath("//html")
PARAGRAPHS = etree.XPath("//p")
METAS = etree.XPath("//meta")


class Found(NamedTuple):
    """A field's value and the source that gave it ("meta: og:title"); None when no source did."""

    value: object
    source: str | None


NOT_FOUND = Found(None, None)
Sourced = tuple[str, object]  # (source, raw value): what every candidate iterator yields


def parse(html: str, url: str, explain: bool = False) -> dict:
    """The metadata dict of the page at url (see the module docstring for each field)."""
    doc = _document_or_raise(html)
    page = Page(doc, url)
    authors = find_authors(page)
    found = {
        "title": find_title(page),
        "description": _first_found(_description_candidates(page), _text),
        "site_name": page.site_name_found,
        "image": _first_found(_image_candidates(page), page.url_of),
        "author": Found(", ".join(authors.value) or None, authors.source),
        "authors": authors,
        "published": find_published(page),
        "canonical_url": find_canonical(page),
        "type": find_type(page),
        "language": find_language(page),
    }
    # From here on the tree loses its boilerplate: every metadata lookup is done.
    content, content_source = main_content(page)
    found["word_count"] = Found(count_words(page_text(content, " ")), content_source)
    if found["image"].value is None:
        found["image"] = first_content_image(page, content)
    if found["title"].value is None and found["word_count"].value == 0:
        raise ParseError("no title and no text: not an HTML page")
    data = {"kind": "page", **{key: value for key, (value, _) in found.items()}}
    if explain:
        data["explain"] = {key: source for key, (value, source) in found.items() if value not in (None, "", [])}
    return data


def _document_or_raise(html: str) -> Document:
    """The parsed page, or ParseError for input that is not HTML at all."""
    if not isinstance(html, str):
        raise ParseError(f"expected the page as text, got {type(html).__name__}")
    if not html.strip():
        raise ParseError("empty page")
    if not HTML_TAG.search(html):
        raise ParseError("no HTML tag in the page")
    sample = html[:BINARY_SAMPLE_CHARS]
    if len(CONTROL_CHARS.findall(sample)) > BINARY_CONTROL_RATIO * len(sample):
        raise ParseError("binary content, not an HTML page")
    return build_document(html)


@dataclass
class TreeIndex:
    """What one walk over the tree finds, so no later lookup has to walk it again."""

    marked: list[Element] = field(default_factory=list)  # what the HTML fallback selectors may match
    containers: list[Element] = field(default_factory=list)  # article, main, [itemprop=articleBody]
    items: list[Element] = field(default_factory=list)  # microdata items (itemtype=...)
    boilerplate: list[Element] = field(default_factory=list)  # nav, header, script...: never main text
    named: dict[str, list[Element]] = field(default_factory=dict)  # <title>, <link>, <script>...


def index_tree(doc: Document) -> TreeIndex:
    index = TreeIndex()
    for tag in doc.elements():
        name, attrs = tag.tag, tag.attrib
        if name in BOILERPLATE_TAGS:
            index.boilerplate.append(tag)
        if name in CONTAINER_TAGS or attrs.get("itemprop") == "articleBody" or attrs.get("role") == "main":
            _append_capped(index.containers, tag)
        if "itemtype" in attrs:
            _append_capped(index.items, tag)
        if _is_marked(tag):
            _append_capped(index.marked, tag)
        if name in NAMED_TAGS:
            _append_capped(index.named.setdefault(name, []), tag)
    return index


def _is_marked(tag: Element) -> bool:
    if tag.tag in MARKED_TAGS or not MARKED_ATTRS.isdisjoint(tag.attrib):
        return True
    rel = tag.get("rel") if tag.tag in REL_TAGS else None
    classes = tag.get("class")
    return bool(
        (rel is not None and not MARKED_RELS.isdisjoint(rel.split()))
        or (classes is not None and not MARKED_CLASSES.isdisjoint(classes.split()))
    )


def _append_capped(found: list[Element], tag: Element) -> None:
    if len(found) < MAX_MARKED:
        found.append(tag)


@dataclass
class Page:
    """The parsed page with its lookups computed once: meta index, JSON-LD nodes, tree index."""

    doc: Document
    url: str
    meta: dict[str, list[str]] = field(init=False)
    tree: TreeIndex = field(init=False)

    def __post_init__(self) -> None:
        self.meta = meta_index(self.doc.find_all(METAS))
        self.tree = index_tree(self.doc)

    @cached_property
    def base_url(self) -> str:
        """Where relative URLs point: <base href> (itself relative to the page) or the page URL."""
        base = next(iter(self.tree.named.get("base", [])), None)
        return absolute_url(base.get("href") if base is not None else None, self.url) or self.url

    def tags(self, name: str, **attrs: str) -> Iterator[Element]:
        """The indexed <name> elements (see NAMED_TAGS) whose attributes contain attrs' values."""
        for tag in self.tree.named.get(name, []):
            if all(value in (tag.get(key) or "").lower().split() for key, value in attrs.items()):
                yield tag

    @cached_property
    def jsonld_nodes(self) -> list[dict]:
        return list(islice(_jsonld_nodes(self.tree.named.get("script", [])), MAX_MARKED))

    @cached_property
    def jsonld_ids(self) -> dict[str, dict]:
        """Nodes by @id, so {"@id": ...} references (Yoast @graph authors) can be followed."""
        return {
            node["@id"]: node
            for node in self.jsonld_nodes
            if isinstance(node.get("@id"), str) and len(node) > 1
        }

    @cached_property
    def jsonld_main(self) -> list[dict]:
        """The node the page is about, then the other WebPage-like nodes that describe it."""
        ranked = sorted(
            (node for node in self.jsonld_nodes if _content_rank(jsonld_types(node)) is not None),
            key=lambda node: _content_rank(jsonld_types(node)),
        )
        if not ranked:
            return []
        pages = [node for node in ranked[1:] if _content_rank(jsonld_types(node)) == 1]
        return [ranked[0], *pages]

    def jsonld_values(self, key: str) -> Iterator[object]:
        """key's value in each main JSON-LD node, main node first, references followed."""
        for _, value in self.jsonld_sourced(key):
            yield value

    def jsonld_sourced(self, key: str) -> Iterator[Sourced]:
        """jsonld_values with each value's source: "json-ld: NewsArticle.headline"."""
        for node in self.jsonld_main:
            if key in node:
                yield f"json-ld: {_type_name(node)}.{key}", self.resolve(node[key])

    def resolve(self, value: object) -> object:
        if isinstance(value, dict) and isinstance(value.get("@id"), str) and len(value) <= 2:
            return self.jsonld_ids.get(value["@id"], value)
        return value

    def meta_values(self, *keys: str) -> Iterator[str]:
        """The first value of each meta key that the page has, in key order."""
        for _, value in self.meta_sourced(*keys):
            yield value

    def meta_sourced(self, *keys: str) -> Iterator[Sourced]:
        """meta_values with each value's source: "meta: og:title"."""
        for key, values in self.meta_lists(*keys):
            yield key, values[0]

    def meta_lists(self, *keys: str) -> Iterator[tuple[str, list[str]]]:
        """("meta: <key>", every value of the key in page order) for each key the page has."""
        for key in keys:
            values = self.meta.get(key.lower())
            if values:
                yield f"meta: {key}", values

    def url_of(self, raw: object) -> str | None:
        return _url(self, raw)

    def select(self, *selectors: str) -> Iterator[Element]:
        """Marked elements matching each selector in turn, at most MAX_MATCHES per selector."""
        for selector in selectors:
            compiled = css.compile_selector(selector)
            yield from islice((tag for tag in self.tree.marked if compiled.matches(tag)), MAX_MATCHES)

    @cached_property
    def title_tag(self) -> str | None:
        """The <title> text; a <title> inside inline SVG is an icon's label, not the page's."""
        for tag in self.tags("title"):
            if next(tag.iterancestors("svg"), None) is None:
                return _text(page_text(tag, " "))
        return None

    @cached_property
    def headlines(self) -> list[str]:
        """Every spelling of the headline the page gives, to recognise it inside <title>."""
        candidates = [
            *(_ld_text(value) for value in self.jsonld_values("headline")),
            *self.meta_values("og:title", "twitter:title", "dc.title"),
            *(node_text(tag) for tag in self.select(*TITLE_SELECTORS) if tag.tag != "meta"),
            *(node_text(tag) for tag in self.select("h1") if not is_logo(tag)),
        ]
        return _unique(_text(c) for c in candidates if c)

    @cached_property
    def site_name_found(self) -> Found:
        return _first_found(_site_name_candidates(self), _text)

    @property
    def site_name(self) -> str | None:
        return self.site_name_found.value

    @cached_property
    def organisations(self) -> set[str]:
        """Keys (_name_key) of the site's and publishers' names: as an author, an organisation."""
        publishers = (_ld_name(self.resolve(_first_item(value))) for value in self.jsonld_values("publisher"))
        names = [self.site_name, *publishers, *self.meta_values(*META_KEYS["site_name_late"])]
        return {_name_key(name) for name in names if name} - {""}


# ---------------------------------------------------------------------------------------
# Fields. Each *_candidates generator yields (source, raw value) pairs best first; the first
# usable value wins, and its source is what explain=True reports. Generators keep it lazy:
# the HTML fallbacks are only searched when needed.
# ---------------------------------------------------------------------------------------
def _first_found(candidates: Iterable[Sourced], clean: Callable[[object], object]) -> Found:
    """The first candidate that clean() turns into a value, with its source."""
    for source, raw in candidates:
        value = clean(raw)
        if value:
            return Found(value, source)
    return NOT_FOUND


def find_title(page: Page) -> Found:
    return _first_found(_title_candidates(page), _text)


def _title_candidates(page: Page) -> Iterator[Sourced]:
    yield from ((source, _ld_text(value)) for source, value in page.jsonld_sourced("headline"))
    yield from ((source, _ld_text(value)) for source, value in page.jsonld_sourced("name"))
    yield from page.meta_sourced(*META_KEYS["title"])
    yield from _selected_text(page, TITLE_SELECTORS, lambda tag: tag.tag != "meta")
    if page.title_tag:
        yield "html: <title>", strip_title_affixes(page.title_tag, page.site_name, page.headlines)
    yield from (("html: <h1>", node_text(tag)) for tag in page.select(*H1_SELECTORS) if not is_logo(tag))


def _selected_text(page: Page, selectors: Iterable[str], keep: Callable[[Element], bool]) -> Iterator[Sourced]:
    """("html: <selector>", text) of the marked elements each selector matches, in turn."""
    for selector in selectors:
        yield from ((f"html: {selector}", node_text(tag)) for tag in page.select(selector) if keep(tag))


def _description_candidates(page: Page) -> Iterator[Sourced]:
    yield from ((source, _ld_text(value)) for source, value in page.jsonld_sourced("description"))
    yield from page.meta_sourced(*META_KEYS["description"])


def _site_name_candidates(page: Page) -> Iterator[Sourced]:
    yield from page.meta_sourced(*META_KEYS["site_name"])
    for node in page.jsonld_nodes:
        if "website" in jsonld_types(node):
            yield f"json-ld: {_type_name(node)}.name", _ld_text(node.get("name"))
    for source, publisher in page.jsonld_sourced("publisher"):
        yield f"{source}.name", _ld_name(page.resolve(_first_item(publisher)))
    yield from page.meta_sourced(*META_KEYS["site_name_late"])
    if page.title_tag:
        yield "html: <title>", site_from_title(page.title_tag, page.headlines)


def _image_candidates(page: Page) -> Iterator[Sourced]:
    for key in JSONLD_KEYS["image"]:
        yield from ((source, _ld_url(page, value)) for source, value in page.jsonld_sourced(key))
    yield from page.meta_sourced(*META_KEYS["image"])
    yield from (("html: <link rel=image_src>", tag.get("href")) for tag in page.tags("link", rel="image_src"))


# ---------------------------------------------------------------------------------------
# Authors.
# ---------------------------------------------------------------------------------------
class Name(NamedTuple):
    text: str
    organisation: bool  # a JSON-LD Organization, or the site's or publisher's own name


def find_authors(page: Page) -> Found:
    """Every author of the first source that names a person; else of the first that names any."""
    fallback = Found([], None)
    for source, raw_names in _author_candidates(page):
        names = _author_names(page, raw_names)
        if any(not name.organisation for name in names):
            return Found([name.text for name in names], source)
        if names and fallback.source is None:
            fallback = Found([name.text for name in names], source)
    return fallback


def _author_names(page: Page, raw_names: Iterable[tuple[str | None, bool]]) -> list[Name]:
    """The usable names of one source, de-duplicated, at most MAX_AUTHORS."""
    names, seen = [], set()
    for raw, organisation in raw_names:
        text = clean_author(raw)
        key = _name_key(text) if text else ""
        if key and key not in seen and len(names) < MAX_AUTHORS:
            seen.add(key)
            names.append(Name(text, organisation or key in page.organisations))
    return names


def _author_candidates(page: Page) -> Iterator[tuple[str, list[tuple[str | None, bool]]]]:
    """(source, [(name, known organisation)]): one list per source, as a source may name several."""
    for key in JSONLD_KEYS["author"]:
        for source, value in page.jsonld_sourced(key):
            yield source, [_ld_author(page.resolve(item)) for item in _items(value)]
    for source, values in page.meta_lists(*META_KEYS["author"]):
        yield source, [(value, False) for value in values]
    for selector in AUTHOR_SELECTORS:
        tags = [tag for tag in page.select(selector) if tag.tag not in ("meta", "link")]
        yield f"html: {selector}", [(name, False) for tag in tags for name in byline_names(node_text(tag))]
    yield from script_authors(page)


def _ld_author(value: object) -> tuple[str | None, bool]:
    """A JSON-LD author's name, and whether it is an organisation (by its @type)."""
    organisation = isinstance(value, dict) and any("organization" in t for t in jsonld_types(value))
    return _ld_name(value), organisation


def byline_names(text: str | None) -> list[str]:
    """"By A, B and C" -> [A, B, C]; a byline whose parts do not all look like names stays whole
    ("Guardian staff and agencies": "agencies" is no name)."""
    text = AUTHOR_PREFIX.sub("", _text(text) or "")
    parts = [part for part in BYLINE_SEPARATOR.split(text) if part]
    if len(parts) > 1 and all(part[0].isalpha() and not part[0].islower() for part in parts):
        return parts
    return [text] if text else []


def _name_key(name: str) -> str:
    """"the Guardian" and "The Guardian" name the same site."""
    return re.sub(r"\W+", "", re.sub(r"^\s*the\s+", "", name.casefold()))


# ---------------------------------------------------------------------------------------
# Authors from the page's inline data-layer scripts: read, never run. One regex pass over a
# bounded amount of script text; every quantifier in the pattern is bounded too.
# ---------------------------------------------------------------------------------------
def script_authors(page: Page) -> Iterator[tuple[str, list[tuple[str | None, bool]]]]:
    """("script: <variable> <key>", names) for each author/byline key of an inline script."""
    matches = (match for code in _inline_scripts(page) for match in _author_keys(code))
    for match in islice(matches, MAX_MATCHES):
        source = f"script: {_assigned_name(match.string, match.start())}{match.group('key')}"
        yield source, [(name, False) for name in _script_names(match.group("value"))]


def _author_keys(code: str) -> Iterator[re.Match]:
    """SCRIPT_AUTHOR's matches in code, tried only where SCRIPT_KEY finds a key word: a regex run
    at every character of a script costs ten times more (tens of ms on a news page)."""
    if not any(word in code for word in SCRIPT_KEY_WORDS):
        return
    for hit in SCRIPT_KEY.finditer(code):
        start = hit.start()
        quoted = start > 0 and code[start - 1] in "\"'"
        match = SCRIPT_AUTHOR.match(code, start - 1 if quoted else start)
        if match:
            yield match


def _inline_scripts(page: Page) -> Iterator[str]:
    """The code of the page's inline scripts (JSON-LD aside), MAX_SCRIPT_SCAN_CHARS in all."""
    budget = MAX_SCRIPT_SCAN_CHARS
    for script in page.tree.named.get("script", []):
        if budget <= 0:
            return
        if script.get("src") is None and not JSONLD_TYPE.match(script.get("type") or ""):
            code = (script.text or "")[:budget]
            budget -= len(code)
            yield code


def _script_names(value: str) -> list[str]:
    """Names in a script value: a string ("By A and B"), or a list/object's "name"s or strings."""
    if value[0] in "\"'":
        return byline_names(_js_string(value[1:-1], value[0]))
    if "{" in value:  # objects: only their names ("@type": "Person" is no author)
        strings = [match.group("value") for match in SCRIPT_NAME.finditer(value)]
    else:
        strings = [match.group() for match in SCRIPT_STRING.finditer(value)]
    return [name for literal in strings[:MAX_AUTHORS] for name in byline_names(_js_string(literal[1:-1], literal[0]))]


def _js_string(body: str, quote: str) -> str:
    """A JS string literal's text, escapes decoded as JSON decodes them; raw when it will not."""
    if quote == "'":
        body = body.replace("\\'", "'").replace('"', '\\"')
    try:
        return json.loads(f'"{body}"', strict=False)
    except ValueError:
        return body


def _assigned_name(code: str, position: int) -> str:
    """"dataLayer " for `dataLayer.push({... author ...})`: the last variable assigned or pushed
    to before position (within SCRIPT_LOOKBACK characters), with a space; "" when none."""
    names = SCRIPT_ASSIGNMENT.findall(code, max(0, position - SCRIPT_LOOKBACK), position)
    return f"{names[-1]} " if names else ""


def find_published(page: Page) -> Found:
    """The first date found; a bare date gives way to a later timestamp on the same day."""
    bare_date = NOT_FOUND
    for source, raw in _published_candidates(page):
        value = normalize_date(raw)
        if value is None:
            continue
        if "T" not in value:
            bare_date = bare_date if bare_date.value else Found(value, source)
        elif bare_date.value is None or value.startswith(bare_date.value):
            return Found(value, source)
    return bare_date


def _published_candidates(page: Page) -> Iterator[Sourced]:
    for key in JSONLD_KEYS["published"]:
        yield from ((source, _ld_text(value)) for source, value in page.jsonld_sourced(key))
    yield from page.meta_sourced(*META_KEYS["published"])
    for selector in PUBLISHED_SELECTORS:
        for tag in page.select(selector):
            yield f"html: {selector}", tag.get("datetime") or tag.get("content") or node_text(tag)
    yield from page.meta_sourced(*META_KEYS["created"])


def find_canonical(page: Page) -> Found:
    """<link rel=canonical>, then og:url, else the URL the page was fetched from, as it was given
    (a URL the page names is cleaned and bounded; the fetched one is already the service's own)."""
    found = _first_found(_canonical_candidates(page), page.url_of)
    return found if found.value else Found(page.url, "url: the page URL")


def _canonical_candidates(page: Page) -> Iterator[Sourced]:
    yield from (("html: <link rel=canonical>", tag.get("href")) for tag in page.tags("link", rel="canonical"))
    yield from page.meta_sourced(*META_KEYS["canonical"])


def find_type(page: Page) -> Found:
    return _first_found(_type_candidates(page), lambda value: value)


def _type_candidates(page: Page) -> Iterator[Sourced]:
    """A specific JSON-LD type, then og:type, then a generic JSON-LD type, then microdata."""
    main = page.jsonld_main[0] if page.jsonld_main else None
    schema_type = og_type_for_schema(jsonld_types(main)) if main else None
    source = f"json-ld: {_type_name(main)}.@type" if main else ""
    if schema_type not in GENERIC_OG_TYPES:
        yield source, schema_type
    yield from ((source, t.lower()) for source, t in page.meta_sourced(*META_KEYS["type"]) if OG_TYPE.match(t.lower()))
    yield source, schema_type
    yield "html: microdata itemtype", microdata_type(page.tree.items)


def find_language(page: Page) -> Found:
    return _first_found(_language_candidates(page), normalize_language)


def _language_candidates(page: Page) -> Iterator[Sourced]:
    html = next(iter(page.doc.find_all(HTML_ELEMENTS)), None)
    if html is not None:
        yield "html: <html lang>", html.get("lang")
        yield "html: <html xml:lang>", html.get("xml:lang")
    yield from page.meta_sourced(*META_KEYS["language"])
    yield from ((source, _ld_text(value)) for source, value in page.jsonld_sourced("inLanguage"))


# ---------------------------------------------------------------------------------------
# Main text.
# ---------------------------------------------------------------------------------------
def main_content(page: Page) -> tuple[Element | Document, str]:
    """The element holding the main text, boilerplate removed (this changes the tree), and the
    source explain names for it.

    [itemprop=articleBody], then <article>, then <main>: the one with the most paragraph
    text among its kind; failing those, the paragraph block holding the most paragraph text
    (see MAIN_TEXT_SHARE); failing that, <body>.
    """
    for tag in page.tree.boilerplate:
        remove(tag)  # one inside a tag removed before is gone already: removing it changes nothing
    containers = [tag for tag in page.tree.containers if not _removed(tag, page.doc) and node_text(tag)]
    for source, is_kind in CONTAINER_KINDS:
        candidates = [tag for tag in containers if is_kind(tag)]
        if candidates:
            return max(candidates, key=_paragraph_chars), source
    block = _main_paragraph_block(page.doc)
    if block is not None:  # no `or`: a childless lxml element is falsy
        return block, "html: the block with the most paragraph text"
    body = next(iter(page.doc.find_all(BODIES)), None)
    return (body, "html: <body> text") if body is not None else (page.doc, "html: the page's text")


def _removed(tag: Element, doc: Document) -> bool:
    """Removed, or inside a removed element (which took it out of the document)."""
    top = next(reversed(list(tag.iterancestors())), tag)
    return tag.tag == GONE or not any(top is node for node in doc.nodes)


def _paragraph_chars(tag: Element) -> int:
    paragraphs = list(tag.iterdescendants("p"))
    if not paragraphs:
        return text_length(tag)
    return sum(text_length(p) for p in paragraphs)


def _main_paragraph_block(doc: Document) -> Element | None:
    """The parent of <p>s that, among those with MAIN_TEXT_SHARE of the densest one's own
    paragraph text, holds the most paragraph text in all (its own and nested blocks')."""
    blocks = _own_paragraph_chars(doc)
    densest = max((chars for _, chars in blocks), default=0)
    if densest == 0:
        return None
    candidates = [parent for parent, chars in blocks if chars >= MAIN_TEXT_SHARE * densest]
    return max(candidates, key=_paragraph_chars)


def _own_paragraph_chars(doc: Document) -> list[tuple[Element, int]]:
    """(parent, characters of its own <p> children) for every parent of a <p>, in page order."""
    scores: dict[int, list] = {}  # id(parent) -> [parent, chars]; the list keeps the proxy alive
    for paragraph in doc.find_all(PARAGRAPHS):
        parent = paragraph.getparent()
        if parent is not None:
            scores.setdefault(id(parent), [parent, 0])[1] += text_length(paragraph)
    return [(parent, chars) for parent, chars in scores.values()]


def count_words(text: str) -> int:
    return sum(1 for _ in WORD.finditer(text))


def first_content_image(page: Page, content: Element | Document) -> Found:
    """The first <img> of the main text that is not an icon, avatar or tracking pixel."""
    for img in page.tags("img"):
        if _removed(img, page.doc) or _declared_size(img) < MIN_IMAGE_PIXELS or not _inside(img, content):
            continue
        url = _url(page, img.get("src") or img.get("data-src"))
        if url:
            return Found(url, "html: <img> in the main text")
    return NOT_FOUND


def _inside(tag: Element, content: Element | Document) -> bool:
    return isinstance(content, Document) or any(parent is content for parent in tag.iterancestors())


def _declared_size(img: Element) -> int:
    """The smaller of the declared width and height; large when undeclared."""
    sizes = []
    for attr in ("width", "height"):
        match = re.match(r"\s*(\d+)", img.get(attr) or "")
        if match:
            sizes.append(int(match.group(1)))
    return min(sizes, default=MIN_IMAGE_PIXELS)


# ---------------------------------------------------------------------------------------
# Title and site name from <title>.
# ---------------------------------------------------------------------------------------
def strip_title_affixes(title: str, site_name: str | None, headlines: list[str]) -> str:
    """<title> without its " | Section | Site" tail.

    When the title starts with a headline the page gives elsewhere (an <h1>) followed by
    a separator, the headline is the title; else a first or last segment naming the site
    is dropped.
    """
    for headline in headlines:
        if title != headline and title.startswith(headline) and TITLE_SEPARATOR.match(title, len(headline)):
            return headline
    separators = list(TITLE_SEPARATOR.finditer(title))
    if site_name and separators:
        last, first = separators[-1], separators[0]
        if _same_name(title[last.end():], site_name):
            return title[: last.start()]
        if _same_name(title[: first.start()], site_name):
            return title[first.end():]
    return title


def site_from_title(title: str, headlines: list[str]) -> str | None:
    """The last segment of "<headline> | ... | Site" when the page states the headline."""
    for headline in headlines:
        if title != headline and title.startswith(headline) and TITLE_SEPARATOR.match(title, len(headline)):
            rest = title[len(headline):]
            separators = list(TITLE_SEPARATOR.finditer(rest))
            return _text(rest[separators[-1].end():]) if separators else None
    return None


def _same_name(a: str, b: str) -> bool:
    return bool(_name_key(a)) and _name_key(a) == _name_key(b)


# ---------------------------------------------------------------------------------------
# Types.
# ---------------------------------------------------------------------------------------
def og_type_for_schema(types: set[str]) -> str | None:
    """The Open Graph type for a set of lowercase schema.org types, or None if unmapped."""
    if any(ARTICLE_TYPE.search(t) for t in types):
        return "article"
    mapped = [SCHEMA_TO_OG[t] for t in types if t in SCHEMA_TO_OG]
    if mapped:
        return mapped[0]
    return "website" if any(t.endswith("page") for t in types) else None


def _content_rank(types: set[str]) -> int | None:
    """0 for an article, 1 for a web page, 2 for other content; None for people, logos, lists."""
    og_type = og_type_for_schema(types - {"website"})
    if og_type == "article":
        return 0
    if og_type == "website":
        return 1
    return 2 if og_type else None


def microdata_type(items: list[Element]) -> str | None:
    """The type of the page's main microdata item (itemscope itemtype="…/BlogPosting")."""
    found = []
    for tag in items:
        types = {t.rstrip("/").split("/")[-1].lower() for t in (tag.get("itemtype") or "").split()}
        rank = _content_rank(types)
        if rank is not None:
            found.append((rank, og_type_for_schema(types)))
    return min(found, key=lambda pair: pair[0])[1] if found else None


def is_logo(h1: Element) -> bool:
    """An <h1> holding the site's logo: in a page header/nav/footer, or linking home."""
    in_chrome = next(h1.iterancestors("header", "nav", "footer"), None) is not None
    if in_chrome and next(h1.iterancestors("article", "main"), None) is None:
        return True
    for link in islice((a for a in h1.iterdescendants("a") if a.get("href") is not None), 3):
        href = link.get("href") or ""
        if "logo" in (link.get("class") or "") or urlsplit(href).path in ("", "/"):
            return True
    return False


# ---------------------------------------------------------------------------------------
# Values: dates, languages, names, URLs.
# ---------------------------------------------------------------------------------------
def normalize_date(raw: object) -> str | None:
    """ISO 8601 from the ways pages write dates; None when raw holds no valid date."""
    text = _text(raw)
    if not text or len(text) > 200:
        return None
    match = COMPACT_DATE.match(text) or ISO_DATE.search(text) or CJK_DATE.search(text)
    if match:
        return _format_date(match.groupdict())
    rfc = _rfc2822(text)
    if rfc:
        return rfc
    for pattern in TEXT_DATES:
        match = pattern.search(text)
        if match and match.group("mon").lower() in MONTHS:
            return _format_date({**match.groupdict(), "m": MONTHS[match.group("mon").lower()]})
    return None


def _format_date(parts: dict) -> str | None:
    """"2024-02-24", or "2024-02-24T10:31:00" plus the offset, from a pattern's groups."""
    try:
        date = datetime.date(int(parts["y"]), int(parts["m"]), int(parts["d"]))
    except ValueError:
        return None  # 2023-02-29, month 13...
    if date.year not in YEARS:
        return None
    if parts.get("H") is None:
        return date.isoformat()
    hour = int(parts["H"]) % 12 + 12 if (parts.get("ampm") or "").lower() == "p" else int(parts["H"])
    if (parts.get("ampm") or "").lower() == "a" and hour == 12:
        hour = 0
    try:
        time = datetime.time(hour, int(parts["M"]), int(parts.get("S") or 0))
    except ValueError:
        return date.isoformat()  # 25:00: keep the day, drop the impossible time
    return f"{date.isoformat()}T{time.isoformat()}{_offset(parts.get('tz'))}"


def _offset(zone: str | None) -> str:
    """"+05:30" for +0530/+05:30/+05, "+00:00" for Z/UTC/GMT, "" when unknown or absent."""
    if not zone:
        return ""
    if zone in TIMEZONES:
        return TIMEZONES[zone]
    match = re.fullmatch(r"([+-])(\d{2}):?(\d{2})?", zone)
    if not match or int(match.group(2)) > 14 or int(match.group(3) or 0) > 59:
        return ""
    return f"{match.group(1)}{match.group(2)}:{match.group(3) or '00'}"


def _rfc2822(text: str) -> str | None:
    """"Thu, 06 Jun 2013 07:34:00 GMT", as RSS and HTTP write dates."""
    if not re.search(r"\d{1,2}:\d{2}", text):
        return None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment is None or moment.year not in YEARS:
        return None
    return moment.replace(microsecond=0).isoformat()


def normalize_language(raw: object) -> str | None:
    """A BCP 47 tag with conventional case: "en", "en-US", "zh-Hant-TW"; None if not a tag."""
    text = _text(raw)
    if not text:
        return None
    tag = text.split(",")[0].split(";")[0].strip().replace("_", "-")
    if not LANGUAGE_TAG.match(tag) or tag.lower() in NOT_LANGUAGES:
        return None
    first, *rest = tag.split("-")
    return "-".join([first.lower(), *(_subtag_case(part) for part in rest)])


def _subtag_case(part: str) -> str:
    if len(part) == 2:
        return part.upper()  # region: US, GB
    if len(part) == 4 and part.isalpha():
        return part.title()  # script: Hant, Latn
    return part.lower()


def clean_author(raw: str | None) -> str | None:
    """A person's or organisation's name from a byline, or None for URLs, handles and junk."""
    text = _text(raw)
    if not text:
        return None
    text = AUTHOR_PREFIX.sub("", text).strip(" ,;:|-–—")
    if not text or len(text) > 100 or text.startswith("@") or re.match(r"^\w+://|^www\.", text):
        return None
    return text


def _ld_text(value: object) -> str | None:
    """Text from a JSON-LD value: a string, the first usable item of a list, a {"@value"}."""
    value = _first_item(value)
    if isinstance(value, dict):
        value = value.get("@value", value.get("name"))
    if not isinstance(value, str):
        return None
    return MARKUP.sub(" ", decode_entities(value))


def _ld_name(value: object) -> str | None:
    """The name of a JSON-LD Person/Organization (or a bare string naming one)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        return None
    name = _ld_text(value.get("name"))
    if name:
        return name
    parts = [_ld_text(value.get(key)) for key in ("givenName", "familyName")]
    return " ".join(p for p in parts if p) or None


def _ld_url(page: Page, value: object) -> str | None:
    """The URL of a JSON-LD image: a string, an ImageObject's url/contentUrl, or a list's first."""
    value = page.resolve(_first_item(value))
    if isinstance(value, dict):
        value = value.get("url") or value.get("contentUrl")
        value = _first_item(value)
    return value if isinstance(value, str) else None


def _type_name(node: dict) -> str:
    """A JSON-LD node's first @type as the page writes it ("NewsArticle"), to name a source."""
    kinds = node.get("@type")
    first = next((k for k in (kinds if isinstance(kinds, list) else [kinds]) if isinstance(k, str)), "Thing")
    return first.rsplit("/", 1)[-1]


def _first_item(value: object) -> object:
    """The first non-empty item of a list, or value itself when it is not a list."""
    if isinstance(value, list):
        return next((item for item in value if item), None)
    return value


def _items(value: object) -> list:
    return value[:MAX_AUTHORS * 2] if isinstance(value, list) else [value]


def _jsonld_nodes(scripts: list[Element]) -> Iterator[dict]:
    """Every JSON-LD node, plus a node nested as a WebPage's mainEntity."""
    blocks = (ScriptBlock({} if s.get("type") is None else {"type": s.get("type")}, s.text or "") for s in scripts)
    for node in jsonld_in_blocks(blocks):
        yield node
        if isinstance(node.get("mainEntity"), dict):
            yield node["mainEntity"]


def _url(page: Page, raw: object) -> str | None:
    """raw made absolute against the page's base; None for data:, javascript: and junk."""
    if not isinstance(raw, str) or raw.strip().lower().startswith("data:"):
        return None
    # As browsers do: tabs and newlines dropped, spaces escaped. Only &amp; is decoded again
    # (double-escaped CMS output): html.unescape would read "&not=1" in a query as "¬=1".
    href = re.sub(r"[\t\n\r]", "", raw.strip()).replace(" ", "%20").replace("&amp;", "&")
    url = absolute_url(href, page.base_url)
    return url if url and len(url) <= MAX_URL_CHARS else None


def _text(raw: object) -> str | None:
    """Entity-decoded, whitespace-collapsed text, cut to MAX_TEXT_CHARS; None when empty."""
    if not isinstance(raw, str):
        return None
    return clean_text(decode_entities(raw[: MAX_TEXT_CHARS * 2])[:MAX_TEXT_CHARS])


def decode_entities(text: str) -> str:
    """Decode entities written with their semicolon ("&amp;#39;" double-escaped by a CMS).

    Entities without one are left alone: "R&D" or "&copy" in plain text stay as written.
    """
    return ENTITY.sub(lambda match: html_lib.unescape(match.group()), text)


def _unique(values: Iterable[str | None]) -> list[str]:
    """Values without repeats (compared case-insensitively), in first-seen order."""
    seen, unique = set(), []
    for value in values:
        if value and value.casefold() not in seen:
            seen.add(value.casefold())
            unique.append(value)
    return unique
