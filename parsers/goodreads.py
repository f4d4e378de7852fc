"""Goodreads book page -> the `goodreads_book` data dict.

Goodreads has served book pages in several layouts since 2018, often several at once:

  JSON-LD   <script type="application/ld+json"> Book object (2022+ pages)
  Apollo    the Next.js <script id="__NEXT_DATA__"> cache, props.pageProps.apolloState (2022+)
  testid    the 2022+ server-rendered markup (h1[data-testid=bookTitle], ContributorLink, ...)
  legacy    the pre-2022 markup (h1#bookTitle, #bookAuthors, #details, #bookDataBox, itemprop=...)
  og        <meta property="og:..."> tags, trusted only when og:type is books.book

Every field is read from the best source that holds it and falls through, independently of
the other fields, to the next one (a field's sources, best first):

  title             Apollo title, testid h1, legacy h1, JSON-LD name*, og:title*  (*series suffix cut)
  authors           Apollo contributor edges, testid contributor links, legacy #bookAuthors,
                    JSON-LD author[] (last: it says nothing about roles, so it cannot drop translators)
  rating, counts    JSON-LD aggregateRating, Apollo Work.stats, testid statistics, legacy itemprop/text
  description       Apollo description (HTML), testid description, legacy #description (never the
                    og/meta description: a cut-off teaser, or the site's slogan when the book has none)
  librarian_note    the leading note of the description above, whichever source gave it
  isbn, isbn13      JSON-LD isbn, Apollo details, "Book details" <dl>, legacy #bookDataBox, itemprop, meta
  asin              Apollo details, "Book details" <dl>, legacy #bookDataBox
  pages, format     JSON-LD, Apollo details, testid pagesFormat, "Book details" <dl>, legacy itemprop
  language          JSON-LD inLanguage, Apollo details, "Book details" <dl>, legacy itemprop/#bookDataBox
  publisher         JSON-LD, Apollo details, "Book details" <dl>, legacy "Published ... by X" row
  published         JSON-LD, Apollo Book details, "Book details" <dl>, testid "Published ...", legacy row
  first_published   Apollo Work details, testid "First published ...", legacy "(first published ...)"
  genres            Apollo bookGenres, testid genresList, legacy genre box
  series            Apollo bookSeries, testid h3 series link, legacy series link/#bookDataBox,
                    the "(Series, #n)" suffix of the full title
  cover_url         JSON-LD image, Apollo imageUrl, testid cover, legacy #coverImage, og:image
  book_id           Apollo legacyId, canonical link, og:url, al:ios:url, then the requested URL

Fast path: structured data first, the tree only where a field needs it. The JSON-LD and
__NEXT_DATA__ <script>s are found by parsers.base.script_blocks, a scanner that follows the
HTML tokenizer (comments, attribute values, <title>/<style>/... text, "</script" end tags) and
finds the same scripts as the tree, at a few percent of its cost. The page's tree (lxml's,
through tree.build_document, so bounded in size and depth) is built on the first markup lookup
only; its CSS selectors are compiled by cssselect (parsers/css.py).
Markup sources are skipped for a field the Apollo state has the last word on: when the Book
and its Work are in the state, a field whose key the Book (or Work) holds, even as null or [],
is answered from the state, since Next.js rendered the markup from that same state
(Page.state_answers). On the 2025 Next.js pages every field is held, so no tree is built;
legacy pages, pages without the state, and soft 404s (refused from their markup) build it.

Conventions:
- Dates are "YYYY-MM-DD" when the day is known, "YYYY-MM" or "YYYY" when the page only gives
  a month or a year ("first published November 1968" -> "1968-11"). Apollo dates are epoch
  milliseconds at midnight Pacific time (07:00 or 08:00 UTC), so their UTC calendar date is
  the date the page shows.
- first_published is None when the page states no first publication (it then shows only
  "Published <date>", the date of this edition, which goes to `published`).
- isbn is an ISBN-10 the page states; it is never derived from isbn13 or from a numeric ASIN.
- description is plain text: <br> becomes "\\n", paragraphs are separated by "\\n\\n".
- librarian_note: the note Goodreads' librarians put before some descriptions, about the
  edition record ("Alternate cover edition of ASIN B004XISI4A", "Also published as: ..."):
  the description's leading lines that open with a note phrasing (parsers/description.py), or a
  leading <b>/<i> that does, taken off the description (None when it was all note). Read
  from the description's text, so the same in every layout; the phrasings later in a
  blurb are the blurb's own.
- series is the book's primary series: {"name": str, "position": str or None}.

Explain mode: parse(html, url, explain=True) adds "explain": {field: source} for every field
with a value (kind aside), naming the source that gave it, "<layer>: <where>" with the layers
json-ld, apollo, data-testid, legacy-markup, meta and url ("json-ld: Book.aggregateRating.ratingValue",
"legacy-markup: h1#bookTitle", "url: /book/show/<id>"); url and librarian_note name the source
they derive from. It is one mechanism: every field's sources are (name, function) pairs read by
Page.first, which keeps the name of the one that answered when explain is on. Without explain
the names are constant strings passed along (*_SOURCE tables below), and the key set is as ever.

Refusals: ParseError for a soft 404 or sign-in page without book data, and for any page
where no source gives a title. Any other input gives the full key set (None or [] when
missing): each source is read under a guard, so a malformed part only loses that source.
"""
from __future__ import annotations

import html as html_entities
import re
from collections.abc import Callable, Iterable
from functools import cache, cached_property
from datetime import date, datetime, timedelta, timezone
from urllib.parse import urlsplit

from lxml import etree

from errors import ParseError
from parsers import css
from parsers.base import (
    ScriptBlock,
    absolute_url,
    clean_text,
    first_of_types,
    jsonld_in_blocks,
    limit_html,
    load_json,
    script_blocks,
    to_float,
    to_int,
)
from parsers.description import element_text, html_text, split_librarian_note, tidy_lines
from parsers.tree import (
    ENTER,
    STRING_CONTAINERS,
    TEXT,
    Document,
    Element,
    Walk,
    build_document,
    is_tag,
    node_text,
    text_length,
)
from sources import goodreads_book_url

KIND = "goodreads_book"

# --- JSON-LD: the Book object and where each field sits in it ----------------------------
JSONLD_BOOK_TYPES = ("Book",)
JSONLD_PATHS: dict[str, tuple[str, ...]] = {
    "title": ("name",),
    "authors": ("author",),
    "rating": ("aggregateRating", "ratingValue"),
    "ratings_count": ("aggregateRating", "ratingCount"),
    "reviews_count": ("aggregateRating", "reviewCount"),
    "isbn": ("isbn",),
    "pages": ("numberOfPages",),
    "format": ("bookFormat",),
    "language": ("inLanguage",),
    "publisher": ("publisher",),
    "published": ("datePublished",),
    "cover_url": ("image",),
}

# --- Next.js Apollo cache: where it lives and the key names read from it ----------------
NEXT_DATA_ID = "__NEXT_DATA__"  # <script id="__NEXT_DATA__">
APOLLO_PATHS = (("props", "pageProps", "apolloState"), ("props", "apolloState"))
APOLLO_REF = "__ref"
APOLLO_BOOK_PREFIX = "Book:"
APOLLO_ROOT_QUERY = "ROOT_QUERY"
APOLLO_BOOK_QUERY = "getBookByLegacyId("
APOLLO_MAX_REF_HOPS = 4  # refs may point at refs; a bound keeps a cyclic cache harmless
BOOK_LEGACY_ID, BOOK_TITLE = "legacyId", "title"
BOOK_WORK = "work"
BOOK_DESCRIPTION = "description"  # also stored under argument keys: description({"stripped":true})
STRIPPED_ARGUMENT = '"stripped":true'
BOOK_PATHS: dict[str, tuple[str, ...]] = {
    "title": (BOOK_TITLE,),
    "title_complete": ("titleComplete",),
    "cover_url": ("imageUrl",),
    "isbn": ("details", "isbn"),
    "isbn13": ("details", "isbn13"),
    "asin": ("details", "asin"),
    "pages": ("details", "numPages"),
    "format": ("details", "format"),
    "language": ("details", "language"),  # {"name": ...}
    "publisher": ("details", "publisher"),
    "published": ("details", "publicationTime"),
}
BOOK_GENRES, GENRE_NAME_PATH = "bookGenres", ("genre", "name")
BOOK_SERIES, SERIES_POSITION, SERIES_TITLE_PATH = "bookSeries", "userPosition", ("series", "title")
PRIMARY_EDGE, SECONDARY_EDGES = "primaryContributorEdge", "secondaryContributorEdges"
EDGE_ROLE, EDGE_NAME_PATH = "role", ("node", "name")
WORK_PATHS: dict[str, tuple[str, ...]] = {
    "rating": ("stats", "averageRating"),
    "ratings_count": ("stats", "ratingsCount"),
    "reviews_count": ("stats", "textReviewsCount"),
    "first_published": ("details", "publicationTime"),
}
# The Book key that holds each field not in BOOK_PATHS (see Page.state_answers).
BOOK_FIELD_KEYS = {"book_id": BOOK_LEGACY_ID, "authors": PRIMARY_EDGE, "series": BOOK_SERIES,
                   "genres": BOOK_GENRES, "description": BOOK_DESCRIPTION}

# --- 2022+ data-testid markup ----------------------------------------------------------
TESTID = {
    "title": "h1[data-testid=bookTitle]",
    "contributor_lists": (".BookPageMetadataSection__contributor", ".ContributorLinksList"),
    "contributor_link": "a.ContributorLink",
    "contributor_name": "[data-testid=name], .ContributorLink__name",
    "contributor_role": "[data-testid=role], .ContributorLink__role",
    "rating": "div.RatingStatistics__rating",
    "ratings_count": "[data-testid=ratingsCount]",
    "reviews_count": "[data-testid=reviewsCount]",
    "description": ("[data-testid=description] .Formatted", "[data-testid=description]"),
    "genres": "[data-testid=genresList] a[href*='/genres/']",
    "pages_format": "[data-testid=pagesFormat]",
    "publication": "[data-testid=publicationInfo]",
    "series": (".BookPageTitleSection h3 a[href*='/series/']", "h3.Text__italic a[href*='/series/']"),
    "cover": (".BookCover img", ".BookPage__bookCover img"),
    "error": ("[data-testid=errorText]", ".ErrorPage__title"),
}
# The "Book details & editions" list (<dt>label</dt><dd>value</dd>) when it is server-rendered.
EDITION_DETAIL_LABELS = (".EditionDetails dt", ".DescListItem dt")
EDITION_LABELS = {"format": "format", "published": "published", "isbn": "isbn", "asin": "asin",
                  "language": "language"}

# --- legacy (pre-2022) markup ------------------------------------------------------------
LEGACY = {
    "title": "h1#bookTitle",
    "series": ("h1#bookTitle a[href*='/series/']", "#bookSeries a[href*='/series/']"),
    "author_areas": ("#bookAuthors", "[itemprop=author]"),
    "author_link": "a.authorName",
    "aggregate": ("[itemprop=aggregateRating]", "#bookMeta"),
    "rating": ("[itemprop=aggregateRating] [itemprop=ratingValue]",
               "#bookMeta [itemprop=ratingValue]"),
    "ratings_count": ("[itemprop=aggregateRating] [itemprop=ratingCount]",
                      "#bookMeta [itemprop=ratingCount]"),
    "reviews_count": ("[itemprop=aggregateRating] [itemprop=reviewCount]",
                      "#bookMeta [itemprop=reviewCount]"),
    "description": "#description",
    "details_rows": "#details .row",
    "data_rows": "#bookDataBox .clearFloats",
    "data_row_title": ".infoBoxRowTitle",
    "data_row_item": ".infoBoxRowItem",
    "pages": "[itemprop=numberOfPages]",
    "format": "[itemprop=bookFormat]",
    "language": "[itemprop=inLanguage]",
    "isbn": "[itemprop=isbn]",
    "genre_rows": ".elementList .left",
    "genre_link": "a[href*='/genres/']",
    "cover": ("img#coverImage",),
}
# <a class="authorName">Fen Hollis</a> <span class="authorName greyText smallText role">(Translator)</span>
LEGACY_AUTHOR_LINK_CLASS, LEGACY_ROLE_CLASS = "authorName", "role"
# #bookDataBox row titles, lower-cased.
DATA_ROW_LABELS = {"isbn": ("isbn", "isbn13"), "asin": ("asin",), "language": ("edition language",),
                   "series": ("series",)}

# --- meta tags ---------------------------------------------------------------------------
GOODREADS_ROOT = "https://www.goodreads.com/"  # base for relative URLs when the page URL is unusable
OG_TYPE, OG_BOOK_TYPE = "og:type", "books.book"
CANONICAL_LINK = "canonical"
META_ISBN, META_PAGES = "books:isbn", "books:page_count"
ID_META_KEYS = ("og:url", "al:ios:url", "al:android:url")

# --- explain mode: each source's name, "<layer>: <where in the page>" -----------------------
# Layers: json-ld, apollo, data-testid, legacy-markup, meta, url. Each source is a (name,
# function) pair; the names are built here once, so a parse without explain only passes a
# string along and never formats one.
JSONLD_SOURCE = {field: "json-ld: Book." + ".".join(path) for field, path in JSONLD_PATHS.items()}
BOOK_SOURCE = {field: "apollo: Book." + ".".join(path) for field, path in BOOK_PATHS.items()}
WORK_SOURCE = {field: "apollo: Work." + ".".join(path) for field, path in WORK_PATHS.items()}
APOLLO_SOURCE = {field: f"apollo: Book.{key}" for field, key in BOOK_FIELD_KEYS.items()}
APOLLO_SOURCE["authors"] += f", {SECONDARY_EDGES}"


def _selector_sources(layer: str, selectors: dict[str, str | tuple[str, ...]]) -> dict[str, str]:
    """"<layer>: <its selectors>" for each entry of a selector table."""
    return {key: f"{layer}: " + (css if isinstance(css, str) else ", ".join(css)) for key, css in selectors.items()}


TESTID_SOURCE = _selector_sources("data-testid", TESTID)
LEGACY_SOURCE = _selector_sources("legacy-markup", LEGACY)
EDITION_SOURCE = {field: f"data-testid: Book details <dt>{label}</dt>" for field, label in EDITION_LABELS.items()}
DATA_ROW_SOURCE = {field: f"legacy-markup: #bookDataBox {labels[0]} row" for field, labels in DATA_ROW_LABELS.items()}
LEGACY_ROW_SOURCE = {"publication": "legacy-markup: #details Published row",
                     "count_text": LEGACY_SOURCE["aggregate"] + " text"}
META_SOURCE = {key: f"meta: {key}" for key in (*ID_META_KEYS, "og:title", "og:image", META_ISBN, META_PAGES)}
META_SOURCE[CANONICAL_LINK] = f"meta: link rel={CANONICAL_LINK}"
URL_SOURCE = "url: /book/show/<id>"
SERIES_SUFFIX, SUFFIX_CUT = " (its series suffix)", " (series suffix cut)"
TITLE_CUT_SOURCE = {"json-ld": JSONLD_SOURCE["title"] + SUFFIX_CUT, "meta": META_SOURCE["og:title"] + SUFFIX_CUT}
SERIES_SUFFIX_SOURCE = {"apollo": BOOK_SOURCE["title_complete"] + SERIES_SUFFIX,
                        "json-ld": JSONLD_SOURCE["title"] + SERIES_SUFFIX,
                        "meta": META_SOURCE["og:title"] + SERIES_SUFFIX}
URL_DERIVED, NOTE_DERIVED = " (url built from book_id)", " (its leading librarian's note)"

# --- page-wide lookups ------------------------------------------------------------------
# Attributes the element index keys on. A page-wide selector's first compound (text before
# the first space, so it must not contain one) must name one of them: #id, .class,
# [data-testid=x] or [itemprop=x]; other selectors fall back to a whole-tree select.
INDEXED_ATTRIBUTES = ("id", "class", "data-testid", "itemprop")
INDEXED_TAGS = ("meta", "link", "title")  # looked up by tag name
META_KEY_ATTRIBUTES = ("property", "name", "itemprop")  # as parsers.base.meta_index reads them
ANCHOR_KEY = re.compile(
    r"#(?P<id>[\w-]+)|\.(?P<class>[\w-]+)|\[(?P<attr>data-testid|itemprop)=['\"]?(?P<value>[\w-]+)['\"]?\]")

# --- refusal markers ---------------------------------------------------------------------
ERROR_TITLE = re.compile(r"page not found|^\s*(?:sign in|sign up|log in)\b|\b404\b", re.I)

# --- text rules ----------------------------------------------------------------------------
BOOK_ID_IN_URL = re.compile(r"/book/show/([0-9]{1,18})(?![0-9])")  # ASCII digits, int()-safe length
BOOK_ID_DIGITS = re.compile(r"[0-9]{1,18}")
# " (A Song of Ice and Fire, #5)" / " (Earthsea Cycle #1)" at the end of a full title.
TITLE_SERIES_SUFFIX = re.compile(r"^(?P<title>.*?\S)\s*\((?P<series>[^()]*#[^()]*)\)\s*$")
# "A Song of Ice and Fire #5", "(Earthsea Cycle #1)", "Series, #1-3"
SERIES_TEXT = re.compile(r"^\(?\s*(?P<name>.*?)\s*,?\s*#\s*(?P<position>[^()]*?)\s*\)?$")
COUNT_TEXT = {"ratings_count": re.compile(r"(\d[\d,]*)\s+ratings?\b", re.I),
              "reviews_count": re.compile(r"(\d[\d,]*)\s+reviews?\b", re.I)}
# "1,125 pages, Kindle Edition" / "279 pages" / "Unknown Binding"
PAGES_AND_FORMAT = re.compile(r"^(?:(?P<pages>\d[\d,.]*)\s*pages?\b)?[\s,]*(?P<format>.*?)$", re.I | re.S)
PUBLICATION_LINE = re.compile(
    r"^\s*(?P<label>first\s+published|published|expected\s+publication)\s*:?\s*(?P<rest>.*)$", re.I | re.S)
FIRST_PUBLISHED_NOTE = re.compile(r"\(\s*first\s+published\s*:?\s*(?P<date>[^)]*?)\s*\)", re.I)
DATE_AND_PUBLISHER = re.compile(r"^(?P<date>.*?)\s*(?:\bby\s+(?P<publisher>.+))?$", re.I | re.S)
ISBN13_TEXT = re.compile(r"(?<![0-9X])97[89][0-9]{10}(?![0-9X])")
ISBN10_TEXT = re.compile(r"(?<![0-9X])[0-9]{9}[0-9X](?![0-9X])")
ASIN_TEXT = re.compile(r"(?<![A-Z0-9])[A-Z0-9]{10}(?![A-Z0-9])")
NO_COVER = re.compile(r"nophoto|no-cover", re.I)
AUTHOR_ROLES = {"", "author", "goodreads author", "writer", "co-author", "coauthor"}
ROLE_SEPARATORS = re.compile(r"[,/&]")

MONTHS = {name: number for number, name in enumerate(
    ("january", "february", "march", "april", "may", "june", "july", "august",
     "september", "october", "november", "december"), start=1)}
MONTHS.update({name[:3]: number for name, number in list(MONTHS.items())})
MONTHS["sept"] = 9
DATE_MONTH_FIRST = re.compile(
    r"\b(?P<month>[a-z]{3,9})\.?\s+(?:(?P<day>\d{1,2})(?:st|nd|rd|th)?\s*,?\s+)?(?P<year>\d{4})\b", re.I)
DATE_DAY_FIRST = re.compile(
    r"\b(?P<day>\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<month>[a-z]{3,9})\.?,?\s+(?P<year>\d{4})\b", re.I)
DATE_NUMERIC = re.compile(r"\b(?P<year>\d{4})(?:-(?P<month>\d{1,2})(?:-(?P<day>\d{1,2}))?)?\b")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# ============================================================================================
# Entry point
# ============================================================================================

def parse(html: str, url: str, explain: bool = False) -> dict:
    """The goodreads_book dict of a book page; ParseError when the page is not a book page.

    explain=True adds "explain": {field: the source that gave its value} (see _explanation).
    """
    return parse_limited(limit_html(html) if isinstance(html, str) else html, url, explain)


def parse_limited(html: str, url: str, explain: bool = False) -> dict:
    """parse for text already cut to size and rid of lone surrogates by limit_html, as
    parsers.parse hands it over (the check costs 0.5 ms on a 1 MB page: once is enough)."""
    page = _load_page(html, url, explain)
    _refuse_non_book(page)
    series = _safe(_series, page)
    title = _safe(_title, page, series)
    if not title:
        _refuse_unreadable(page)
        raise ParseError("no book title on the page (not a Goodreads book page)")
    book_id = _safe(_book_id, page)
    published, publisher = _safe(_published_and_publisher, page) or (None, None)
    isbn, isbn13 = _safe(_isbns, page) or (None, None)
    pages, book_format = _safe(_pages_and_format, page) or (None, None)
    description, librarian_note = _safe(_description_and_note, page) or (None, None)
    data = {
        "kind": KIND,
        "book_id": book_id,
        "title": title,
        "authors": _safe(_authors, page) or [],
        "rating": _safe(_rating, page),
        "ratings_count": _safe(_count, page, "ratings_count"),
        "reviews_count": _safe(_count, page, "reviews_count"),
        "description": description,
        "librarian_note": librarian_note,
        "isbn": isbn,
        "isbn13": isbn13,
        "asin": _safe(_asin, page),
        "pages": pages,
        "format": book_format,
        "language": _safe(_language, page),
        "publisher": publisher,
        "published": published,
        "first_published": _safe(_first_published, page),
        "genres": _safe(_genres, page) or [],
        "series": series,
        "cover_url": _safe(_cover_url, page),
        "url": _safe(goodreads_book_url, book_id) if book_id else None,
    }
    _refuse_unreadable(page)
    if page.explain is not None:
        data["explain"] = _explanation(page.explain, data)
    return data


def _explanation(sources: dict[str, str], data: dict) -> dict[str, str]:
    """{field: the name of the source that gave its value} for every field with a value but
    kind. Page.first recorded the fields it answered; url and librarian_note derive from one."""
    sources = dict(sources)
    if "book_id" in sources:
        sources["url"] = sources["book_id"] + URL_DERIVED
    if "description" in sources:
        sources["librarian_note"] = sources["description"] + NOTE_DERIVED
    return {field: sources[field] for field, value in data.items() if field in sources and _has_value(value)}


def _has_value(value: object) -> bool:
    """What Page.first takes for an answer: anything but None, "" and []."""
    return value is not None and value != "" and value != []


def _refuse_unreadable(page: Page) -> None:
    """A page whose tree was needed but could not be built is refused, whatever else it gave."""
    if page.tree_error is not None:
        raise ParseError(f"unreadable page: {type(page.tree_error).__name__}")


class Page:
    """One page, with the structured data found in it; its tree is built only when read.

    The JSON-LD and __NEXT_DATA__ scripts are found by script_blocks, without a tree. doc,
    index, og_is_book, edition_rows and data_rows build the tree on first use: on a Next.js
    page whose Apollo state answers every field, nobody uses them.
    """

    def __init__(self, html: str, url: str, explain: bool = False):
        self.html = html
        self.explain: dict[str, str] | None = {} if explain else None  # field -> source, when asked
        self.url = url if isinstance(url, str) else ""
        self.url_id = _book_id_in(_url_path(self.url))
        self.tree_error: Exception | None = None
        scripts: list[ScriptBlock] = _safe(script_blocks, html) or []
        self.jsonld: dict = _safe(first_of_types, jsonld_in_blocks(scripts), JSONLD_BOOK_TYPES) or {}
        self.state: dict = _safe(_apollo_state, scripts) or {}
        self.book: dict = _safe(_pick_book, self.state, self.url_id) or {}
        self.work: dict = _safe(_resolve, self.state, self.book.get(BOOK_WORK)) or {}

    @cached_property
    def doc(self) -> Document:
        try:
            return build_document(self.html)
        except MemoryError:
            raise  # not the page's fault: the worker must see it (it fails the job and recycles)
        except Exception as exc:  # the tree builder gave up: parse() refuses the page
            self.tree_error = exc
            return Document(None)

    @cached_property
    def index(self) -> ElementIndex:
        return ElementIndex(self.doc)

    @cached_property
    def og_is_book(self) -> bool:
        return (_safe(self.meta, OG_TYPE) or "").lower() == OG_BOOK_TYPE

    @cached_property
    def edition_rows(self) -> dict[str, Element]:
        return _safe(_edition_rows, self) or {}

    @cached_property
    def data_rows(self) -> dict[str, Element]:
        return _safe(_legacy_data_rows, self) or {}

    @property
    def tree_built(self) -> bool:
        return "doc" in self.__dict__

    def state_answers(self, field: str) -> bool:
        """True when the Apollo state has the last word on field, so its markup is not read.

        Next.js renders the page's markup from this state: once the Book and its Work are
        there, a field whose key the Book (or Work) holds, even as null or [], shows nothing
        in the markup that the state lacks. Legacy pages have no state: always False.
        """
        if not (self.book and self.work):
            return False
        if field in WORK_PATHS:
            return _holds(self.state, self.work, WORK_PATHS[field])
        if field in BOOK_PATHS:
            return _holds(self.state, self.book, BOOK_PATHS[field])
        key = BOOK_FIELD_KEYS[field]
        return any(k == key or k.startswith(key + "(") for k in self.book)  # description({...})

    def first(self, field: str, *sources: tuple[str, Callable[[], object]]) -> object:
        """The first non-empty value among the (name, source) pairs, each tried under a guard,
        in order; with explain on, the name of the source that gave it is kept for field."""
        for name, source in sources:
            value = _safe(source)
            if _has_value(value):
                if self.explain is not None:
                    self.explain[field] = name
                return value
        return None

    def markup(self, field: str) -> Callable[[Callable[[], object]], Callable[[], object]]:
        """A wrapper for field's markup sources: they answer None when the state answers field."""
        return _skipped if self.state_answers(field) else _kept

    def jsonld_value(self, field: str) -> object:
        return _dig({}, self.jsonld, JSONLD_PATHS[field])

    def book_value(self, field: str) -> object:
        return _dig(self.state, self.book, BOOK_PATHS[field])

    def work_value(self, field: str) -> object:
        return _dig(self.state, self.work, WORK_PATHS[field])

    def select_text(self, selectors: str | Iterable[str]) -> str | None:
        return node_text(self.select(selectors))

    def select(self, selectors: str | Iterable[str]) -> Element | None:
        """The first node matching the first selector that matches anything."""
        for selector in [selectors] if isinstance(selectors, str) else selectors:
            nodes = self.index.select(selector)
            if nodes:
                return nodes[0]
        return None

    def select_all(self, selector: str) -> list[Element]:
        return self.index.select(selector)

    def meta(self, key: str) -> str | None:
        """A <meta> value by key, as parsers.base.meta_index reads them, over the indexed <meta> tags."""
        for attribute in META_KEY_ATTRIBUTES:
            for tag in self.index.tags.get("meta", []):
                if str(tag.get(attribute) or "").lower() == key.lower() and clean_text(tag.get("content")):
                    return clean_text(tag.get("content"))
        return None

    def og(self, key: str) -> str | None:
        # og: tags describe the site on error and sign-in pages; only a books.book page's are the book's.
        return self.meta(key) if self.og_is_book else None


def _kept(source: Callable[[], object]) -> Callable[[], object]:
    return source


def _skipped(source: Callable[[], object]) -> Callable[[], object]:
    return _nothing


def _nothing() -> None:
    return None


def _holds(state: dict, value: object, path: tuple[str, ...]) -> bool:
    """True when the object at path[:-1] has the key path[-1], whatever its value."""
    parent = _dig(state, value, path[:-1]) if len(path) > 1 else _resolve(state, value)
    return isinstance(parent, dict) and path[-1] in parent


class ElementIndex:
    """Elements by id, class, data-testid, itemprop and a few tag names, gathered in one walk.

    A page needs about forty selects, and each over the whole page walks every element again
    (a millisecond on a legacy page, XPath or not; far more on a big page of junk). Through
    the index, a select only looks inside the elements its first compound names.
    """

    def __init__(self, doc: Document):
        self.doc = doc
        self.elements: dict[tuple[str, str], list[Element]] = {}
        self.tags: dict[str, list[Element]] = {}
        for element in doc.elements():
            if element.tag in INDEXED_TAGS:
                self.tags.setdefault(element.tag, []).append(element)
            for attribute in INDEXED_ATTRIBUTES:
                value = element.get(attribute)
                for token in (value.split() if attribute == "class" else [value]) if value else ():
                    self.elements.setdefault((attribute, token), []).append(element)

    def select(self, selector: str) -> list[Element]:
        """css.select(doc, selector), for a selector of descendant compounds."""
        compound, _, rest = selector.strip().partition(" ")
        key = _anchor_key(compound)
        if key is None:
            return css.select(self.doc, selector)
        found: list[Element] = []
        for anchor in self.elements.get(key, []):
            if css.matches(anchor, compound):
                found.extend(css.select_in(anchor, rest) if rest.strip() else [anchor])
        return list(dict.fromkeys(found))  # nested anchors find a node twice


def selectors() -> list[str]:
    """Every CSS selector this parser compiles, for parsers.warm_up(): each selector of the
    tables above, and the first compound and the rest of each one the index answers."""
    tables = [*TESTID.values(), *LEGACY.values(), EDITION_DETAIL_LABELS]
    whole = [css_text for entry in tables for css_text in ([entry] if isinstance(entry, str) else entry)]
    indexed = [css_text for css_text in whole if "," not in css_text]  # a list is selected whole, in a scope
    parts = [part for css_text in indexed for part in css_text.strip().partition(" ")[::2] if part.strip()]
    return list(dict.fromkeys([*whole, *parts]))


def _anchor_key(compound: str) -> tuple[str, str] | None:
    match = ANCHOR_KEY.search(compound)
    if match is None:
        return None
    for attribute in ("id", "class"):
        if match.group(attribute):
            return attribute, match.group(attribute)
    return match.group("attr"), match.group("value")


def _load_page(html: object, url: object, explain: bool = False) -> Page:
    if isinstance(html, bytes):
        html = limit_html(html.decode("utf-8", errors="replace"))
    if not isinstance(html, str) or not html or html.isspace():
        raise ParseError("empty page")
    return Page(html, url if isinstance(url, str) else "", explain)


def _refuse_non_book(page: Page) -> None:
    """Soft 404s and sign-in walls come with HTTP 200; refuse them unless book data is present."""
    has_book = bool(page.jsonld or page.book) or page.select([TESTID["title"], LEGACY["title"]]) is not None
    if has_book:
        return
    title = node_text(next(iter(page.index.tags.get("title", [])), None)) or ""
    if page.select(TESTID["error"]) is not None or ERROR_TITLE.search(title):
        raise ParseError(f"not a book page: {title or 'error page'}")


# ============================================================================================
# Guards and structured-data access
# ============================================================================================

def _safe(function: Callable, *args: object, default: object = None) -> object:
    """function(*args), or default when it fails.

    The contract is "the full key set or ParseError, for any input": a malformed part of a
    page (odd JSON types, a truncated tree) must only lose the source it broke, never the page.
    """
    try:
        return function(*args)
    except MemoryError:
        raise  # a resource failure, not a malformed part: the worker recycles itself on it
    except Exception:
        return default


def _resolve(state: dict, value: object) -> object:
    """Follow Apollo {"__ref": "Type:id"} links to the cached object."""
    for _ in range(APOLLO_MAX_REF_HOPS):
        if not (isinstance(value, dict) and isinstance(value.get(APOLLO_REF), str)):
            return value
        value = state.get(value[APOLLO_REF])
    return None


def _dig(state: dict, value: object, path: Iterable[str]) -> object:
    """The value at path through nested dicts, resolving Apollo refs on the way."""
    for key in path:
        value = _resolve(state, value)
        value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return None
    return _resolve(state, value)


def _apollo_state(scripts: list[ScriptBlock]) -> dict | None:
    script = next((block for block in scripts if block.attrs.get("id") == NEXT_DATA_ID), None)
    data = load_json(script.text) if script is not None else None
    for path in APOLLO_PATHS:
        state = _dig({}, data, path)
        if isinstance(state, dict):
            return state
    return None


def _pick_book(state: dict, url_id: str | None) -> dict | None:
    """The page's Book: the one whose legacyId is the URL's id, else the one the root query names."""
    books = [v for k, v in state.items() if k.startswith(APOLLO_BOOK_PREFIX) and isinstance(v, dict)]
    by_id = [b for b in books if url_id and str(b.get(BOOK_LEGACY_ID)) == url_id]
    if by_id:
        return by_id[0]
    root = state.get(APOLLO_ROOT_QUERY)
    for key, value in (root.items() if isinstance(root, dict) else ()):
        book = _resolve(state, value) if key.startswith(APOLLO_BOOK_QUERY) else None
        if isinstance(book, dict):
            return book
    return next((b for b in books if b.get(BOOK_TITLE)), None)


def _edition_rows(page: Page) -> dict[str, Element]:
    """The server-rendered "Book details" list: {label: <dd>}."""
    rows: dict[str, Element] = {}
    for label in [dt for selector in EDITION_DETAIL_LABELS for dt in page.select_all(selector)]:
        value = next(label.itersiblings("dd"), None)
        key = (node_text(label) or "").lower()
        if value is not None and key and key not in rows:
            rows[key] = value
    return rows


def _legacy_data_rows(page: Page) -> dict[str, Element]:
    """The legacy #bookDataBox: {row title: row item}."""
    rows: dict[str, Element] = {}
    for row in page.select_all(LEGACY["data_rows"]):
        title, item = _select_one(row, LEGACY["data_row_title"]), _select_one(row, LEGACY["data_row_item"])
        key = (node_text(title) or "").lower()
        if item is not None and key and key not in rows:
            rows[key] = item
    return rows


def _row_text(rows: dict[str, Element], labels: Iterable[str]) -> str | None:
    return next((node_text(rows[label]) for label in labels if label in rows), None)


def _select_one(scope: Element, selector: str) -> Element | None:
    return next(iter(css.select_in(scope, selector)), None)


# ============================================================================================
# Fields
# ============================================================================================

def _book_id(page: Page) -> str | None:
    markup = page.markup("book_id")
    return page.first(
        "book_id",
        (APOLLO_SOURCE["book_id"], lambda: _digits(page.book.get(BOOK_LEGACY_ID))),
        (META_SOURCE[CANONICAL_LINK], markup(lambda: _book_id_in(_canonical_href(page)))),
        *[(META_SOURCE[key], markup(lambda key=key: _book_id_in(page.meta(key)))) for key in ID_META_KEYS],
        (URL_SOURCE, lambda: page.url_id),
    )


def _canonical_href(page: Page) -> str | None:
    links = page.index.tags.get("link", [])
    canonical = next((link for link in links if CANONICAL_LINK in (link.get("rel") or "").split()), None)
    return canonical.get("href") if canonical is not None else None


def _title(page: Page, series: dict | None) -> str | None:
    markup = page.markup("title")
    return page.first(
        "title",
        (BOOK_SOURCE["title"], lambda: clean_text(page.book_value("title"))),
        (TESTID_SOURCE["title"], markup(lambda: page.select_text(TESTID["title"]))),
        (LEGACY_SOURCE["title"], markup(lambda: _legacy_title(page))),
        (TITLE_CUT_SOURCE["json-ld"], lambda: _strip_series(_plain(page.jsonld_value("title")), series)),
        (TITLE_CUT_SOURCE["meta"], markup(lambda: _strip_series(page.og("og:title"), series))),
    )


def _legacy_title(page: Page) -> str | None:
    """h1#bookTitle without the nested series link of the 2018 layout."""
    heading = page.select(LEGACY["title"])
    if heading is None:
        return None
    return _strip_series(clean_text(" ".join(_text_outside_series_links(heading))), None)


def _text_outside_series_links(heading: Element) -> list[str]:
    """The heading's page text, without what a link to a series shows."""
    runs = []
    walk = Walk(heading)
    for step, node in walk:
        if step == TEXT:
            runs.append(node)
        elif step == ENTER and is_tag(node) and (node.tag in STRING_CONTAINERS or _is_series_link(node)):
            walk.skip()
    return runs


def _is_series_link(element: Element) -> bool:
    return element.tag == "a" and "/series/" in (element.get("href") or "")


def _strip_series(title: str | None, series: dict | None) -> str | None:
    """"A Dance with Dragons (A Song of Ice and Fire, #5)" -> "A Dance with Dragons"."""
    if not title:
        return None
    match = TITLE_SERIES_SUFFIX.match(title)
    if match:
        return match.group("title")
    suffix = f"({series['name']})" if series else None
    if suffix and title.endswith(suffix) and len(title) > len(suffix):
        return title[: -len(suffix)].strip() or title
    return title


def _series(page: Page) -> dict | None:
    markup = page.markup("series")
    return page.first(
        "series",
        (APOLLO_SOURCE["series"], lambda: _apollo_series(page)),
        (TESTID_SOURCE["series"], markup(lambda: _series_from_text(page.select_text(TESTID["series"])))),
        (LEGACY_SOURCE["series"], markup(lambda: _series_from_text(page.select_text(LEGACY["series"])))),
        (DATA_ROW_SOURCE["series"], markup(lambda: _series_from_text(_legacy_data_series(page)))),
        (SERIES_SUFFIX_SOURCE["apollo"], lambda: _series_from_suffix(clean_text(page.book_value("title_complete")))),
        (SERIES_SUFFIX_SOURCE["json-ld"], lambda: _series_from_suffix(_plain(page.jsonld_value("title")))),
        (SERIES_SUFFIX_SOURCE["meta"], markup(lambda: _series_from_suffix(page.og("og:title")))),
    )


def _apollo_series(page: Page) -> dict | None:
    """The first (primary) entry of bookSeries."""
    for entry in page.book.get(BOOK_SERIES) or []:
        name = clean_text(_dig(page.state, entry, SERIES_TITLE_PATH))
        if name:
            position = clean_text(str(_dig(page.state, entry, (SERIES_POSITION,)) or ""))
            return {"name": name, "position": position}
    return None


def _legacy_data_series(page: Page) -> str | None:
    item = next((page.data_rows[k] for k in DATA_ROW_LABELS["series"] if k in page.data_rows), None)
    link = next(item.iterdescendants("a"), None) if item is not None else None
    return node_text(link if link is not None else item)


def _series_from_text(text: str | None) -> dict | None:
    """"A Song of Ice and Fire #5" / "(Earthsea Cycle #1)" / "Discworld" -> {"name", "position"}."""
    text = clean_text(text)
    if not text:
        return None
    match = SERIES_TEXT.match(text)
    if match and match.group("name"):
        return {"name": match.group("name"), "position": match.group("position") or None}
    name = clean_text(text.strip("()"))
    return {"name": name, "position": None} if name else None


def _series_from_suffix(title: str | None) -> dict | None:
    match = TITLE_SERIES_SUFFIX.match(title or "")
    return _series_from_text(match.group("series")) if match else None


def _authors(page: Page) -> list[str]:
    markup = page.markup("authors")
    return page.first(
        "authors",
        (APOLLO_SOURCE["authors"], lambda: _apollo_authors(page)),
        (TESTID_SOURCE["contributor_lists"], markup(lambda: _testid_authors(page))),
        (LEGACY_SOURCE["author_areas"], markup(lambda: _legacy_authors(page))),
        (JSONLD_SOURCE["authors"], lambda: _names(page.jsonld_value("authors"))),
    ) or []


def _apollo_authors(page: Page) -> list[str]:
    edges = [page.book.get(PRIMARY_EDGE)] + list(page.book.get(SECONDARY_EDGES) or [])
    names = []
    for edge in edges:
        role = _dig(page.state, edge, (EDGE_ROLE,))
        name = clean_text(_dig(page.state, edge, EDGE_NAME_PATH))
        if name and _is_author_role(role):
            names.append(name)
    return _unique(names)


def _testid_authors(page: Page) -> list[str]:
    area = page.select(TESTID["contributor_lists"])
    names = []
    for link in css.select_in(area, TESTID["contributor_link"]) if area is not None else []:
        name = node_text(_select_one(link, TESTID["contributor_name"]))
        if name and _is_author_role(node_text(_select_one(link, TESTID["contributor_role"]))):
            names.append(name)
    return _unique(names)


def _legacy_authors(page: Page) -> list[str]:
    for selector in LEGACY["author_areas"]:
        links = [a for area in page.select_all(selector) for a in css.select_in(area, LEGACY["author_link"])]
        names = [node_text(a) for a in links if _is_author_role(_legacy_role(a))]
        if names:
            return _unique([n for n in names if n])
    return []


def _legacy_role(link: Element) -> str | None:
    """The "(Translator)" span that follows an author link, before the next author link."""
    for sibling in link.itersiblings(etree.Element):
        classes = (sibling.get("class") or "").split()
        if sibling.tag == "a" and LEGACY_AUTHOR_LINK_CLASS in classes:
            return None
        if LEGACY_ROLE_CLASS in classes:
            return node_text(sibling)
    return None


def _is_author_role(role: object) -> bool:
    """No role, "Author", "(Goodreads Author)", "Author, Illustrator" count; "Translator" does not."""
    text = (clean_text(str(role)) if role is not None else "") or ""
    parts = [p.strip(" ()\u00a0").lower() for p in ROLE_SEPARATORS.split(text.strip("()"))]
    return any(part in AUTHOR_ROLES for part in parts)


def _names(value: object) -> list[str]:
    """Names from a JSON-LD author value: a string, a Person, or a list of either."""
    items = value if isinstance(value, list) else [value]
    return _unique([_plain(i.get("name") if isinstance(i, dict) else i) for i in items])


def _rating(page: Page) -> float | None:
    markup = page.markup("rating")
    value = page.first(
        "rating",
        (JSONLD_SOURCE["rating"], lambda: page.jsonld_value("rating")),
        (WORK_SOURCE["rating"], lambda: page.work_value("rating")),
        (TESTID_SOURCE["rating"], markup(lambda: page.select_text(TESTID["rating"]))),
        (LEGACY_SOURCE["rating"], markup(lambda: _itemprop_value(page, LEGACY["rating"]))),
    )
    rating = to_float(value)
    return rating if rating is not None and 0 <= rating <= 5 else None


def _count(page: Page, field: str) -> int | None:
    """ratings_count or reviews_count."""
    markup = page.markup(field)
    value = page.first(
        field,
        (JSONLD_SOURCE[field], lambda: page.jsonld_value(field)),
        (WORK_SOURCE[field], lambda: page.work_value(field)),
        (TESTID_SOURCE[field], markup(lambda: page.select_text(TESTID[field]))),
        (LEGACY_SOURCE[field], markup(lambda: _itemprop_value(page, LEGACY[field]))),
        (LEGACY_ROW_SOURCE["count_text"], markup(lambda: _legacy_count_text(page, COUNT_TEXT[field]))),
    )
    return to_int(value)


def _itemprop_value(page: Page, selectors: Iterable[str]) -> str | None:
    """A microdata value of the aggregate-rating block: <meta content> or the element's text."""
    node = page.select(selectors)
    return (clean_text(node.get("content")) or node_text(node)) if node is not None else None


def _legacy_count_text(page: Page, pattern: re.Pattern) -> str | None:
    """"178,681 Ratings" in the legacy rating block's visible text."""
    match = pattern.search(page.select_text(LEGACY["aggregate"]) or "")
    return match.group(1) if match else None


def _description(page: Page) -> str | None:
    markup = page.markup("description")
    return page.first(
        "description",
        (APOLLO_SOURCE["description"], lambda: _apollo_description(page)),
        (TESTID_SOURCE["description"], markup(lambda: element_text(page.select(TESTID["description"])))),
        (LEGACY_SOURCE["description"], markup(lambda: _legacy_description(page))),
    )


def _description_and_note(page: Page) -> tuple[str | None, str | None]:
    return split_librarian_note(_description(page))


def _apollo_description(page: Page) -> str | None:
    """Book.description is HTML; its description({"stripped":true}) twin is plain text."""
    keys = [k for k in page.book if k == BOOK_DESCRIPTION or k.startswith(BOOK_DESCRIPTION + "(")]
    for key in sorted(keys, key=lambda k: STRIPPED_ARGUMENT in k.replace(" ", "")):
        value = page.book.get(key)
        if isinstance(value, str) and value.strip():
            return tidy_lines(value) if STRIPPED_ARGUMENT in key.replace(" ", "") else html_text(value)
    return None


def _legacy_description(page: Page) -> str | None:
    """#description holds a truncated span and a hidden full one: the longer is the description."""
    box = page.select(LEGACY["description"])
    if box is None:
        return None
    spans = list(box.iterdescendants("span")) or [box]
    return element_text(max(spans, key=text_length))


def _isbns(page: Page) -> tuple[str | None, str | None]:
    """(ISBN-10, ISBN-13) the page states; ASINs and "null" placeholders are not ISBNs."""
    structured = [
        (JSONLD_SOURCE["isbn"], lambda: page.jsonld_value("isbn")),
        (BOOK_SOURCE["isbn"], lambda: page.book_value("isbn")),
        (BOOK_SOURCE["isbn13"], lambda: page.book_value("isbn13")),
    ]
    markup = [
        (EDITION_SOURCE["isbn"], lambda: _row_text(page.edition_rows, (EDITION_LABELS["isbn"],))),
        (DATA_ROW_SOURCE["isbn"], lambda: _row_text(page.data_rows, DATA_ROW_LABELS["isbn"])),
        (LEGACY_SOURCE["isbn"], lambda: page.select_text(LEGACY["isbn"])),
        (META_SOURCE[META_ISBN], lambda: page.meta(META_ISBN)),
    ]
    found = {}
    for field, pattern in (("isbn", ISBN10_TEXT), ("isbn13", ISBN13_TEXT)):
        texts = structured + [(name, page.markup(field)(text)) for name, text in markup]
        found[field] = page.first(field, *[(name, lambda t=t: _find(pattern, t())) for name, t in texts])
    return found["isbn"], found["isbn13"]


def _find(pattern: re.Pattern, value: object) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    match = pattern.search(str(value).replace("-", "").upper())
    return match.group() if match else None


def _asin(page: Page) -> str | None:
    markup = page.markup("asin")
    value = page.first(
        "asin",
        (BOOK_SOURCE["asin"], lambda: page.book_value("asin")),
        (EDITION_SOURCE["asin"], markup(lambda: _row_text(page.edition_rows, (EDITION_LABELS["asin"],)))),
        (DATA_ROW_SOURCE["asin"], markup(lambda: _row_text(page.data_rows, DATA_ROW_LABELS["asin"]))),
    )
    return _find(ASIN_TEXT, value)


def _pages_and_format(page: Page) -> tuple[int | None, str | None]:
    # Each markup line gives both fields; read (and cached) only when a field gets that far.
    testid = cache(lambda: _split_pages_format(page.select_text(TESTID["pages_format"])))
    edition = cache(lambda: _split_pages_format(_row_text(page.edition_rows, (EDITION_LABELS["format"],))))
    markup = page.markup("pages")
    pages = page.first(
        "pages",
        (JSONLD_SOURCE["pages"], lambda: _positive(to_int(page.jsonld_value("pages")))),
        (BOOK_SOURCE["pages"], lambda: _positive(to_int(page.book_value("pages")))),
        (TESTID_SOURCE["pages_format"], markup(lambda: testid()[0])),
        (EDITION_SOURCE["format"], markup(lambda: edition()[0])),
        (LEGACY_SOURCE["pages"], markup(lambda: _positive(to_int(page.select_text(LEGACY["pages"]))))),
        (META_SOURCE[META_PAGES], markup(lambda: _positive(to_int(page.meta(META_PAGES))))),
    )
    markup = page.markup("format")
    book_format = page.first(
        "format",
        (JSONLD_SOURCE["format"], lambda: _schema_name(page.jsonld_value("format"))),
        (BOOK_SOURCE["format"], lambda: clean_text(page.book_value("format"))),
        (TESTID_SOURCE["pages_format"], markup(lambda: testid()[1])),
        (EDITION_SOURCE["format"], markup(lambda: edition()[1])),
        (LEGACY_SOURCE["format"], markup(lambda: page.select_text(LEGACY["format"]))),
    )
    return pages, book_format


def _split_pages_format(text: str | None) -> tuple[int | None, str | None]:
    """"1125 pages, Kindle Edition" -> (1125, "Kindle Edition"); "Unknown Binding" -> (None, ...)."""
    match = PAGES_AND_FORMAT.match(clean_text(text) or "")
    if not match:
        return None, None
    return _positive(to_int(match.group("pages"))), clean_text(match.group("format"))


def _language(page: Page) -> str | None:
    markup = page.markup("language")
    return page.first(
        "language",
        (JSONLD_SOURCE["language"], lambda: _schema_name(page.jsonld_value("language"))),
        (BOOK_SOURCE["language"], lambda: _schema_name(page.book_value("language"))),
        (EDITION_SOURCE["language"], markup(lambda: _row_text(page.edition_rows, (EDITION_LABELS["language"],)))),
        (LEGACY_SOURCE["language"], markup(lambda: page.select_text(LEGACY["language"]))),
        (DATA_ROW_SOURCE["language"], markup(lambda: _row_text(page.data_rows, DATA_ROW_LABELS["language"]))),
    )


def _published_and_publisher(page: Page) -> tuple[str | None, str | None]:
    # Each markup row gives both fields; read (and cached) only when a field gets that far.
    edition = cache(lambda: _split_date_publisher(_row_text(page.edition_rows, (EDITION_LABELS["published"],))))
    legacy = cache(lambda: _legacy_publication(page))
    markup = page.markup("published")
    published = page.first(
        "published",
        (JSONLD_SOURCE["published"], lambda: _parse_date(page.jsonld_value("published"))),
        (BOOK_SOURCE["published"], lambda: _date_from_ms(page.book_value("published"))),
        (EDITION_SOURCE["published"], markup(lambda: _parse_date(edition()[0]))),
        (TESTID_SOURCE["publication"], markup(lambda: _testid_publication(page, first=False))),
        (LEGACY_ROW_SOURCE["publication"], markup(lambda: _parse_date(legacy()[0]))),
    )
    markup = page.markup("publisher")
    publisher = page.first(
        "publisher",
        (JSONLD_SOURCE["publisher"], lambda: _schema_name(page.jsonld_value("publisher"))),
        (BOOK_SOURCE["publisher"], lambda: clean_text(page.book_value("publisher"))),
        (EDITION_SOURCE["published"], markup(lambda: edition()[1])),
        (LEGACY_ROW_SOURCE["publication"], markup(lambda: legacy()[1])),
    )
    return published, publisher


def _first_published(page: Page) -> str | None:
    markup = page.markup("first_published")
    return page.first(
        "first_published",
        (WORK_SOURCE["first_published"], lambda: _date_from_ms(page.work_value("first_published"))),
        (TESTID_SOURCE["publication"], markup(lambda: _testid_publication(page, first=True))),
        (LEGACY_ROW_SOURCE["publication"], markup(lambda: _parse_date(_legacy_publication(page)[2]))),
    )


def _testid_publication(page: Page, first: bool) -> str | None:
    """"First published July 12, 2011" is the work's date; "Published ..." is this edition's."""
    match = PUBLICATION_LINE.match(page.select_text(TESTID["publication"]) or "")
    if not match or match.group("label").lower().startswith("first") != first:
        return None
    return _parse_date(_split_date_publisher(match.group("rest"))[0])


def _legacy_publication(page: Page) -> tuple[str | None, str | None, str | None]:
    """(date, publisher, first-published date) of the #details row
    "Published <date> by <publisher> (first published <date>)"."""
    for row in page.select_all(LEGACY["details_rows"]):
        text = node_text(row) or ""
        note = FIRST_PUBLISHED_NOTE.search(text)
        match = PUBLICATION_LINE.match(FIRST_PUBLISHED_NOTE.sub("", text))
        if match:
            date_text, publisher = _split_date_publisher(match.group("rest"))
            return date_text, publisher, note.group("date") if note else None
    return None, None, None


def _split_date_publisher(text: str | None) -> tuple[str | None, str | None]:
    """"July 12, 2011 by Random House Worlds" -> ("July 12, 2011", "Random House Worlds")."""
    match = DATE_AND_PUBLISHER.match(clean_text(text) or "")
    if not match:
        return None, None
    return clean_text(match.group("date")), clean_text(match.group("publisher"))


def _genres(page: Page) -> list[str]:
    markup = page.markup("genres")
    return page.first(
        "genres",
        (APOLLO_SOURCE["genres"], lambda: _apollo_genres(page)),
        (TESTID_SOURCE["genres"], markup(lambda: _unique([node_text(a) for a in page.select_all(TESTID["genres"])]))),
        (LEGACY_SOURCE["genre_rows"], markup(lambda: _legacy_genres(page))),
    ) or []


def _apollo_genres(page: Page) -> list[str]:
    entries = page.book.get(BOOK_GENRES) or []
    return _unique([_plain(_dig(page.state, entry, GENRE_NAME_PATH)) for entry in entries])


def _legacy_genres(page: Page) -> list[str]:
    """One genre per row; "Fantasy > Magic" rows link both, and the last link is the row's genre."""
    names = []
    for row in page.select_all(LEGACY["genre_rows"]):
        links = css.select_in(row, LEGACY["genre_link"])
        if links:
            names.append(node_text(links[-1]))
    return _unique(names)


def _cover_url(page: Page) -> str | None:
    image = page.jsonld_value("cover_url")
    markup = page.markup("cover_url")
    return page.first(
        "cover_url",
        (JSONLD_SOURCE["cover_url"], lambda: _cover(page, image.get("url") if isinstance(image, dict) else image)),
        (BOOK_SOURCE["cover_url"], lambda: _cover(page, page.book_value("cover_url"))),
        (TESTID_SOURCE["cover"], markup(lambda: _cover(page, page.select(TESTID["cover"]).get("src")))),
        (LEGACY_SOURCE["cover"], markup(lambda: _cover(page, page.select(LEGACY["cover"]).get("src")))),
        (META_SOURCE["og:image"], markup(lambda: _cover(page, page.og("og:image")))),
    )


def _cover(page: Page, src: object) -> str | None:
    src = src[0] if isinstance(src, list) and src else src
    if not isinstance(src, str) or NO_COVER.search(src):
        return None  # Goodreads' "no cover" placeholder is not the book's cover
    return absolute_url(src, page.url or GOODREADS_ROOT)


# ============================================================================================
# Small value helpers
# ============================================================================================

def _url_path(url: str) -> str:
    try:
        return urlsplit(url).path
    except ValueError:
        return ""


def _book_id_in(text: object) -> str | None:
    match = BOOK_ID_IN_URL.search(text) if isinstance(text, str) else None
    return match.group(1) if match else None


def _digits(value: object) -> str | None:
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    return text if BOOK_ID_DIGITS.fullmatch(text) else None


def _positive(value: int | None) -> int | None:
    return value if value is not None and value > 0 else None


def _schema_name(value: object) -> str | None:
    """A plain string, a {"name": ...} object, or a schema.org URL ("https://schema.org/Paperback")."""
    if isinstance(value, dict):
        value = value.get("name")
    if not isinstance(value, str):
        return None
    return _plain(value.rsplit("/", 1)[-1] if "schema.org/" in value else value)


def _plain(value: object) -> str | None:
    """A structured-data string, entity-decoded ("Hitchhiker&#39;s" -> "Hitchhiker's") and trimmed."""
    return clean_text(html_entities.unescape(value)) if isinstance(value, str) else None


def _unique(values: Iterable[str | None]) -> list[str]:
    """Non-empty values in order, first occurrence kept."""
    seen: dict[str, None] = {}
    for value in values:
        if isinstance(value, str) and value:
            seen.setdefault(value, None)
    return list(seen)


def _date_from_ms(value: object) -> str | None:
    """Epoch milliseconds -> "YYYY-MM-DD" (UTC calendar date; see the module docstring)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return (EPOCH + timedelta(milliseconds=float(value))).date().isoformat()
    except (ValueError, OverflowError):
        return None


def _parse_date(text: object) -> str | None:
    """"September 28th 2004" -> "2004-09-28"; "November 1968" -> "1968-11"; "2011" -> "2011"."""
    if not isinstance(text, str) or not text.strip():
        return None
    # Day-first goes first: month-first would read "1 January 2001" as just "January 2001".
    for pattern in (DATE_DAY_FIRST, DATE_MONTH_FIRST):
        for match in pattern.finditer(text):
            month = MONTHS.get(match.group("month").lower())
            if month:
                return _format_date(int(match.group("year")), month, match.group("day"))
    match = DATE_NUMERIC.search(text)
    if match:
        return _format_date(int(match.group("year")), to_int(match.group("month")), match.group("day"))
    return None


def _format_date(year: int, month: int | None, day: str | None) -> str | None:
    """The most precise of YYYY-MM-DD, YYYY-MM and YYYY that is a real date."""
    if not 1 <= year <= 9999:
        return None
    if not month or not 1 <= month <= 12:
        return f"{year:04d}"
    try:
        return date(year, month, int(day)).isoformat() if day else f"{year:04d}-{month:02d}"
    except ValueError:
        return f"{year:04d}-{month:02d}"
