"""What a story's card on a news front shows beside its headline: kicker, summary, image, and the
section its URL names.

parsers/news.py finds each story's card (the element around its headline that holds no other
story's link) and hands it here with the title element; read_card walks the card once. Pure and
bounded like news.py: no network, no clock, a fixed number of nodes per card.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from urllib.parse import quote, urlsplit

from lxml import etree

from parsers.base import absolute_url, clean_text, short_key_cache
from parsers.tree import GONE, LEAVE, STRING_CONTAINERS, TEXT, Element, Walk, class_tokens, is_tag

CARD_ELEMENTS = 300  # elements of one card read (real cards hold under 100)
TEXT_SCAN = 80  # steps taken to read one element's text (a node, or leaving an element read through)
MIN_SUMMARY_WORDS = 4  # a summary-classed element with fewer words is a label
MIN_PARAGRAPH_WORDS = 6  # a plain <p> needs more to count as the card's summary
MAX_SUMMARY_CHARS = 1_000  # longer text is a whole article or card, not a standfirst
KICKER_MAX_WORDS = 4
KICKER_MAX_CHARS = 40

# Class / data-testid tokens of a card's parts: a title, the label over it, its summary.
HEADLINE_TOKENS = frozenset({"headline", "headlines", "title", "hed", "heading"})
KICKER_TOKENS = frozenset({
    "kicker", "eyebrow", "flag", "pill", "badge", "live", "pulse", "label", "overline", "supertitle",
})
SUMMARY_TOKENS = frozenset({
    "standfirst", "summary", "dek", "deck", "description", "trail", "blurb", "excerpt", "strapline",
    "subhead", "subheadline", "intro", "synopsis",
})
# Text in a summary that is furniture: comment counts, bylines, timestamps.
FURNITURE_TOKENS = frozenset({"comment", "comments", "count", "byline", "author", "time", "timestamp", "date"})
FURNITURE_TAGS = frozenset({"script", "style", "template", "noscript", "svg", "button", "time", "figcaption"})
# A short all-caps text alone in an element before the title, which pages show as a kicker.
CAPS_KICKER = re.compile(
    r"(?:LIVE|BREAKING|EXCLUSIVE|ANALYSIS|OPINION|WATCH|VIDEO|LISTEN|AUDIO|PODCAST|UPDATED|DEVELOPING|NEW)"
    r"(?: (?:NOW|UPDATES|COVERAGE|NEWS|BLOG|BRIEFING))?"
)
BYLINE_START = re.compile(r"^by\s", re.IGNORECASE)
URL_SAFE = "%/:=&?~#+!$,;'@()*[]"  # what stays as it is when an image URL is escaped
UNSAFE_IN_URL = re.compile(r"[^A-Za-z0-9%/:=&?~#+!$,;'@()*\[\]._-]")
IMAGE_TAGS = frozenset({"img", "source"})
IMAGE_ATTRIBUTES = ("src", "data-src", "data-original", "data-lazy-src", "data-srcset", "srcset")
# Matched against the file name: "grey-placeholder.png", "spacer.gif", "1x1.gif".
PLACEHOLDER_IMAGE = re.compile(
    r"placeholder|blank\.(?:gif|png)|spacer|transparent|1x1|^pixel\.|grey-|gray-|loading\.(?:gif|svg)", re.IGNORECASE
)
# Path segments that name a format or a page type rather than a section.
NOT_SECTIONS = frozenset({
    "article", "articles", "story", "stories", "live", "liveblog", "video", "videos", "av", "gallery",
    "galleries", "picture", "pictures", "photos", "interactive", "ng-interactive", "amp", "audio",
    "news", "index", "www", "en", "en-us", "en-gb",
})
STORY_MARKERS = frozenset({"article", "articles", "story", "stories"})  # what follows is the story's slug
DATE_SEGMENT = re.compile(r"^(?:\d+|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)$", re.IGNORECASE)
NAME_WITH_ID = re.compile(r"^(?P<name>[a-z]+(?:-[a-z]+){0,3})-\d{5,}$", re.IGNORECASE)  # world-us-canada-67723332
SECTION_WORDS = 3  # a segment of more words is a story slug, not a section name


@dataclass
class CardFacts:
    kicker: str | None = None
    summary: str | None = None
    image: str | None = None
    sources: dict[str, str] | None = None  # field -> which element of the card gave it, for explain


@dataclass
class CardWalk:
    """State of one walk over a card, in document order."""

    title: Element
    title_line: frozenset[Element]  # the title element and its ancestors: never a kicker or summary
    before_title: bool = True
    paragraph: tuple[str, Element] | None = None  # the first plain <p> that reads as a summary
    fallback_image: tuple[str, Element] | None = None  # a <source srcset>, when no <img> answers


def read_card(card: Element, title: Element, base: str, is_foreign: Callable[[Element], bool]) -> CardFacts:
    """The kicker shown before the title, the summary and the image of a card, in one walk in
    document order. Subtrees that is_foreign rejects (links to other stories: a lead's
    sub-links) are not read; the title element's own text is the title's, only its images count."""
    facts = CardFacts(sources={})
    walk = CardWalk(title, frozenset([title, *title.iterancestors()]))
    skipped: set[Element] = set()
    in_title: set[Element] = set()
    for element in islice(card.iter(etree.Element), CARD_ELEMENTS):
        parent, tag = element.getparent(), element.tag
        if tag == GONE or parent in skipped or (tag == "a" and is_foreign(element)):
            skipped.add(element)
            continue
        if tag in IMAGE_TAGS:
            _read_image(element, base, facts, walk)
        if element is title or parent in in_title:
            in_title.add(element)
            walk.before_title = False
        elif element not in walk.title_line:
            _read_text(element, facts, walk)
        if not walk.before_title and facts.summary is not None and facts.image is not None:
            break  # nothing left to look for
    _finish(facts, walk)
    return facts


def _read_text(element: Element, facts: CardFacts, walk: CardWalk) -> None:
    tokens = class_tokens(element)
    if walk.before_title and (is_kicker_tokens(tokens) or _is_caps_label(element)):
        kicker = short_text(element)
        if kicker:
            facts.kicker, facts.sources["kicker"] = kicker, f"card: {describe(element)} before the title"
    elif facts.summary is None and (not SUMMARY_TOKENS.isdisjoint(tokens) or element.get("itemprop") == "description"):
        text = summary_text(element, MIN_SUMMARY_WORDS)
        if text:
            facts.summary, facts.sources["summary"] = text, f"card: {describe(element)}"
    elif walk.paragraph is None and element.tag == "p" and not walk.before_title:
        text = summary_text(element, MIN_PARAGRAPH_WORDS)
        if text and not BYLINE_START.match(text):
            walk.paragraph = (text, element)


def _read_image(element: Element, base: str, facts: CardFacts, walk: CardWalk) -> None:
    if facts.image is not None:
        return
    url = image_url(element, base)
    if url is None:
        return
    if element.tag == "img":
        facts.image, facts.sources["image"] = url, f"card: {describe(element)}"
    elif walk.fallback_image is None:
        walk.fallback_image = (url, element)


def _finish(facts: CardFacts, walk: CardWalk) -> None:
    if facts.summary is None and walk.paragraph is not None:
        facts.summary = walk.paragraph[0]
        facts.sources["summary"] = f"card: the first paragraph, {describe(walk.paragraph[1])}"
    if facts.image is None and walk.fallback_image is not None:
        facts.image = walk.fallback_image[0]
        facts.sources["image"] = f"card: {describe(walk.fallback_image[1])}"


def is_kicker_tokens(tokens: frozenset[str]) -> bool:
    """Class / test-id tokens of the label over a title: kicker, eyebrow, flag, live badge..."""
    return not tokens.isdisjoint(KICKER_TOKENS) and tokens.isdisjoint(HEADLINE_TOKENS)


def _is_caps_label(element: Element) -> bool:
    """A leaf element whose text is an all-caps label alone: BBC's "LIVE" beside its icon."""
    text = element.text
    if not text or len(text) > KICKER_MAX_CHARS or len(element):
        return False
    return CAPS_KICKER.fullmatch(text.strip()) is not None


def short_text(element: Element) -> str | None:
    """element's text when it is short enough to be a kicker."""
    text = shown_text(element)
    if not text or len(text) > KICKER_MAX_CHARS or len(text.split()) > KICKER_MAX_WORDS:
        return None
    return text


def summary_text(element: Element, min_words: int) -> str | None:
    text = shown_text(element)
    if not text or len(text.split()) < min_words or len(text) > MAX_SUMMARY_CHARS:
        return None
    return text


def shown_text(element: Element) -> str | None:
    """The text a reader sees in element, without comment counts, bylines and timestamps.

    Takes at most TEXT_SCAN steps (a node, or leaving an element read through)."""
    pieces: list[str] = []
    read_through = [element]
    steps = TEXT_SCAN
    walk = Walk(element)
    for step, node in walk:
        if step == LEAVE and node is not read_through[-1]:
            continue  # furniture passed over
        if steps == 0:
            break
        steps -= 1
        if step == LEAVE:
            read_through.pop()
        elif step == TEXT:
            pieces.append(node)
        elif is_tag(node):
            if _is_furniture(node):
                walk.skip()
            else:
                read_through.append(node)
    return clean_text(" ".join(pieces))


def _is_furniture(element: Element) -> bool:
    if element.tag in FURNITURE_TAGS or element.tag in STRING_CONTAINERS:
        return True
    return not FURNITURE_TOKENS.isdisjoint(class_tokens(element))


def image_url(element: Element, base: str) -> str | None:
    """The image an <img> or <source> shows: src, else a lazy loader's attribute, else srcset's
    first candidate; None for data: URIs and placeholders."""
    for name in IMAGE_ATTRIBUTES:
        value = (element.get(name) or "").strip()
        if name.endswith("srcset"):
            value = value.split(",")[0].strip().split(" ")[0]
        if value and not value.startswith("data:") and not PLACEHOLDER_IMAGE.search(value.rsplit("/", 1)[-1]):
            url = _absolute(value, base)
            if url:
                return quote(url, safe=URL_SAFE) if UNSAFE_IN_URL.search(url) else url  # "./Page_files/a b.jpg"
    return None


def _absolute(value: str, base: str) -> str | None:
    """absolute_url, without urljoin's cost for what is already an absolute http(s) URL."""
    if value.startswith(("https://", "http://")):
        return value
    try:
        return absolute_url(value, base)
    except ValueError:
        return None


def describe(element: Element) -> str:
    """A short name for an element in explain output: <p class="card__summary">."""
    for name in ("data-testid", "class", "itemprop"):
        value = element.get(name)
        if value:
            return f'<{element.tag} {name}="{clean_text(value)[:60]}">'
    return f"<{element.tag}>"


@short_key_cache(maxsize=4096)
def section_of(url: str) -> str | None:
    """The section a story URL names: /us-news/2024/... -> "us-news", /news/world-us-canada-67723332
    -> "world-us-canada"; None when the path names none (/articles/<slug>)."""
    for segment in (s for s in urlsplit(url).path.split("/") if s):
        if segment.lower() in STORY_MARKERS:
            return None
        named = NAME_WITH_ID.match(segment)
        name = (named.group("name") if named else segment).lower()
        if DATE_SEGMENT.match(name) or name in NOT_SECTIONS or "." in name:
            continue
        return name if len(name.split("-")) <= SECTION_WORDS and not any(c.isdigit() for c in name) else None
    return None
