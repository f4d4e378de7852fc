"""News front pages -> {"kind": "news_headlines", "site", "headlines": [item, ...]}.

A headline item is one story on the page, in page order, each URL once: its title as shown
(without kicker, video length or comment count), its canonical URL (tracking parameters
dropped; url_as_linked keeps the href when it differs), its kicker, the summary and image of
its card (parsers/news_cards.py reads them), the section its URL names, its position, and
whether it is a sub-link: a related link under a lead story's headline, listed after it.

Three extractors, tried in turn:
1. SITE_RULES: per-site CSS selectors for the layouts we know (several years per site);
2. JSON-LD: ItemList / NewsArticle lists that some fronts embed;
3. a generic extractor for unknown markup: links to article-like URLs of the same site whose
   text reads like a headline, preferring the text of a heading element in or around the link,
   with a lead's related links marked as sub-links by structure.
The site rules win when they find enough stories; otherwise (markup changed, unknown site)
the extractor that finds the most stories wins.

The tree is lxml's (parsers/tree.py builds it bounded); the site rules' CSS selectors are
compiled by cssselect (parsers/css.py).

Pure: no network, no clock. Raises ParseError when the page yields no headline at all, and
never anything else: every tree walk below is bounded so hostile input ends in bounded time.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import count, islice
from urllib.parse import urlsplit, urlunsplit

from errors import ParseError
from parsers import css
from parsers.base import ScriptBlock, absolute_url, clean_text, jsonld_in_blocks, jsonld_types, short_key_cache
from parsers.news_cards import HEADLINE_TOKENS, CardFacts, is_kicker_tokens, read_card, section_of
from parsers.tree import (
    BASE_HREFS,
    LEAVE,
    SCRIPTS,
    STRING_CONTAINERS,
    TEXT,
    Document,
    Element,
    Node,
    Walk,
    ancestor,
    build_document,
    class_tokens,
    descendants,
    in_string_container,
    is_tag,
    page_strings,
    remove,
)
from sources import NEWS_HOSTS

KIND = "news_headlines"


# --- Per-site rules: data, not code --------------------------------------------------------


@dataclass(frozen=True)
class SiteRule:
    """Where one site's layouts (all known years together) put its story headlines."""

    headlines: str  # CSS: each match is one story headline: a link, or an element in or beside one
    title: str = ""  # CSS inside a match: the element holding the bare title, when there is one
    sublinks: str = ""  # CSS: each match is, or holds, the related links under a story's headline


BBC = SiteRule(
    headlines=", ".join([
        ".gs-c-promo-heading__title",  # GEL 2016-2023: a.gs-c-promo-heading > h3.gs-c-promo-heading__title
        "[data-testid=card-headline]",  # Next.js 2023-: <a data-testid=internal-link> ... h2[card-headline]
    ]),
    sublinks="[data-testid=card-related-headline]",  # in the card's div[data-testid=card-relatedUrls]
)
GUARDIAN = SiteRule(
    headlines=", ".join([
        "a.fc-item__link",  # frontend 2014-2019: kicker span + span.js-headline-text
        'a[data-link-name*="card"][aria-label]',  # dotcom-rendering 2019-: empty overlay <a> per card,
        ".card-headline",  # beside h3.card-headline (a kicker <div> + span.show-underline)
    ]),
    title=".js-headline-text, .show-underline",
    sublinks="a.fc-sublink__link, .card-sublink-headline",  # ul.fc-sublinks; DCR's h3 in a <li>
)
WASHINGTON_POST = SiteRule(
    headlines=", ".join([
        'a[data-pb-local-content-field="web_headline"]',  # PageBuilder 2018-
        '[data-feature-id="homepage/story"] .headline a',
    ]),
    sublinks='[class*="related-links"]',  # "MORE COVERAGE": ul.font-size-related-links under the blurb
)
WSJ = SiteRule(
    headlines=", ".join([
        ".wsj-headline a",  # React 2016-2019: h3.wsj-headline > a.wsj-headline-link
        "a.wsj-headline-link",
        "a .wsj-headline",  # "Trending" items: a.pop-item-link > h3.wsj-headline
        '[class*="WSJTheme--headline"]',  # 2019-2022: h3.WSJTheme--headline-… > a > span
        '[data-testid="flexcard-headline"]',  # 2023-: emotion classes named after components
        '[class*="HeadlineTextBlock"]',
    ]),
    title='[class*="headlineText"], [class*="HeadlineTextBlock"]',
    sublinks='.wsj-bullet-item, [class*="WSJTheme--bullet-item"]',  # li in ul.wsj-bullets under the summary
)
FOX_NEWS = SiteRule(
    # article.article > .info > header.info-header > (.meta .eyebrow) + h2/h3.title > a
    headlines="article .info-header .title a, article .title a",
    sublinks="article .related-item",  # li in ul.related in the card's content
)
SITE_RULES: dict[str, SiteRule] = {
    "bbc.com": BBC,
    "bbc.co.uk": BBC,
    "theguardian.com": GUARDIAN,
    "washingtonpost.com": WASHINGTON_POST,
    "wsj.com": WSJ,
    "foxnews.com": FOX_NEWS,
}
# Domains one site links to as its own (the generic extractor keeps only same-site stories).
SITE_FAMILIES = ({"bbc.com", "bbc.co.uk"},)


def rule_selectors() -> list[str]:
    """Every CSS selector of the site rules, for parsers.warm_up() to compile ahead of use."""
    return [css for rule in SITE_RULES.values() for css in selectors_of(rule) if css]


def selectors_of(rule: SiteRule) -> tuple[str, ...]:
    """What site_headlines compiles for a rule: headlines and sub-links together, the title,
    and the sub-links apart."""
    both = f"{rule.headlines}, {rule.sublinks}" if rule.sublinks else rule.headlines
    return both, rule.title, rule.sublinks


# --- Tuning ----------------------------------------------------------------------------------

ENOUGH_HEADLINES = 10  # a site rule finding fewer may mean the markup changed: compare with the others
SITE_SHARE = 0.5  # ... and still wins when it finds at least this share of what they find
MAX_HEADLINES = 500
MAX_ELEMENTS = 5_000  # candidate elements examined per extractor (real fronts have < 2,000)
MAX_CHROME = 100  # <header>/<footer> elements examined as possible page chrome
MAX_CARD_HEADINGS = 1_000  # headings examined for an overlay-card link (real fronts: < 300)
MAX_TITLE_CHARS = 300  # longer "titles" are summaries or whole cards
MIN_TITLE_CHARS = 10
SITE_MIN_WORDS = 2  # site selectors are precise: only reject fragments
HEADING_MIN_WORDS = 3  # generic, text from a heading element
LINK_MIN_WORDS = 4  # generic, bare link text: nav items and labels are shorter
CHROME_LINKS = 10  # a <header>/<footer> with this many links is page chrome, not a card's
PAGE_TAGS = {"html", "body", "main"}  # never page chrome, whatever their classes or roles say
PAGE_LINKS_FLOOR = 20  # on a page with this many links, chrome holding most of them is the page
CHROME_SCAN = 5_000  # descendants of a <header>/<footer> looked at to count its links
CARD_LINKS = 3  # a sponsored card holds a few links (image, title, "more"); a list holds more
CLIMB = 8  # ancestor levels searched for a headline's link or heading
CARD_CLIMB = 6  # ancestor levels searched for an overlay-link card's link
CARD_SCAN = 200  # descendants scanned per card level, or for a heading inside a link
TITLE_DEPTH = 12  # ancestor levels of a title element recorded, to tell where its card ends
SUBLINK_CLIMB = 6  # levels between a sub-link and the element it shares with its lead story
SUBLINK_ITEM_CLIMB = 3  # levels from a sub-link's title up to its list item
TITLE_SCAN = 200  # steps taken to build one title (a node, or leaving an element read through)
MAX_SUBLINKS = 20  # links read from one match of a rule's sub-link selector
KICKER_SCAN = 20  # nodes read for a kicker element's text

# --- Vocabulary --------------------------------------------------------------------------------

HEADING_TAGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
# Class / data-testid tokens of elements glued to a title that are not the title.
NOISE_TOKENS = {
    "kicker", "eyebrow", "label", "badge", "pill", "flag", "tag", "live", "pulse", "duration",
    "runtime", "timestamp", "time", "date", "byline", "author", "comment", "comments", "count",
    "indicator", "icon", "vh", "offscreen", "sr", "visually", "screen", "screenreader", "prefix",
    "standfirst", "summary", "dek", "description", "trail", "meta",
}
AD_TOKENS = {
    "ad", "ads", "advert", "adverts", "advertisement", "advertising", "adslot", "adunit", "dfp",
    "gpt", "sponsor", "sponsored", "outbrain", "taboola", "promoted", "paid", "paidpost", "commercial",
}
# Class / data-testid tokens on the way from a related link up to its lead story's card.
SUBLINK_TOKENS = {"related", "sublink", "sublinks"}
# ARIA roles of page-level regions: navigation, search, the site header and the site footer.
CHROME_ROLES = {"navigation", "search", "banner", "contentinfo"}
SKIP_TEXT_TAGS = {"script", "style", "template", "noscript", "svg", "button", "select", "figcaption", "time"}
INLINE_TAGS = {"i", "em", "b", "strong", "cite", "q", "mark", "abbr", "a", "sup", "sub"}

# Labels glued in front of a title: "Live:", "Analysis |", "LIVE " ...
LABEL_PREFIX = re.compile(
    r"^(?:live(?:\s+(?:updates?|briefing|blog|coverage|now))?|analysis|opinion|perspective|commentary"
    r"|editorial|breaking(?:\s+news)?|developing(?:\s+story)?|just\s+in|updated?)\s*(?::|\||–|—|-|/|•)\s*",
    re.IGNORECASE,
)
CAPS_LABEL_PREFIX = re.compile(
    r"^(?:LIVE(?: UPDATES| BRIEFING| COVERAGE| BLOG| NOW)?|WATCH LIVE|BREAKING(?: NEWS)?|ANALYSIS"
    r"|OPINION|PERSPECTIVE|DEVELOPING|EXCLUSIVE|WATCH|VIDEO|AUDIO|PODCAST|GALLERY)\s+(?=\S)"
)
DURATION = re.compile(
    r"^(?:(?:video|watch|play|audio|listen)\s*)?\(?\d{1,2}:\d{2}(?::\d{2})?\)?(?:\s*[-–—|•:])?\s*"
    r"|\s*[-–—|•]?\s*\(?\d{1,2}:\d{2}(?::\d{2})?\)?$",
    re.IGNORECASE,
)
# An advertiser's label: alone on an element it marks its card as an ad; glued in front of a
# title ("Sponsored: ..."), the title. "Promoted Leeds eye new signings" is neither.
SPONSOR_LABEL = re.compile(
    r"(?:sponsored|paid content|paid post|promoted|partner content)(?: by .*)?(?:\s*[:|–—-].*)?$"
    r"|(?:paid for|brought to you|presented) by .*|in partnership with .*",
    re.IGNORECASE,
)
COMMENT_COUNT = re.compile(r"\s+\d[\d,.]*k?\s+comments?$", re.IGNORECASE)
EDGE_PUNCTUATION = " \t|•·–—-:/"
# Whole texts that are navigation, promotion or furniture rather than a story.
NON_STORY_TEXTS = (
    r"(?:read|see|view|show|load|watch|listen|get)?\s*(?:more|all|the latest|full (?:story|coverage))(?:\s+\S+){0,3}",
    r"(?:continue reading|find out more|skip to|back to top)\b.*",
    r"(?:sign ?up|sign in|log ?in|subscribe|register|join now|download the)\b.*",  # calls to action
    r".{0,60}\W(?:sign ?up|subscribe)(?: now| today| here)?\W*",  # "The Recap sports email - sign up"
    r"advertisement",
    r"(?:terms|conditions) of .*|privacy(?: policy| notice| settings)?|cookies?(?: policy| settings)?",
    r"contact us|about us|newsletters?(?: (?:&|and) alerts)?|most (?:read|popular|viewed|watched)",
    r"\d+\s+\w+\s+ago",  # a timestamp: "5 minutes ago"
)
NON_STORY_TEXT = re.compile("|".join(f"(?:{p})" for p in NON_STORY_TEXTS), re.IGNORECASE)
BYLINE = re.compile(r"^By [A-Z][\w.'’-]*(?: [A-Z][\w.'’-]*){0,3}(?:,? and [A-Z].*)?$")
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")

# URLs: what an article looks like, and what is never a story.
DATE_IN_PATH = re.compile(
    r"/(?:19|20)\d{2}/(?:\d{1,2}|[a-z]{3})/\d{1,2}(?:/|$)|/(?:19|20)\d{2}/\d{2}/|(?:^|[/_-])(?:19|20)\d{6}(?:[/_-]|$)",
    re.IGNORECASE,
)
ID_IN_SEGMENT = re.compile(r"\d{5,}")
ID_IN_QUERY = re.compile(r"(?:^|&)(?:id|p|story|storyid|article|articleid|aid|sid)=\d+", re.IGNORECASE)
ARTICLE_FILE = re.compile(r"\.(?:s?html?|php|aspx?|cms)$", re.IGNORECASE)
INDEX_FILE = re.compile(r"^(?:index|default|home|main)\.\w+$", re.IGNORECASE)
STORY_SEGMENTS = {"article", "articles", "story", "stories"}
SLUG_WORDS = 4  # a path segment of this many hyphenated words is an article slug
NON_STORY_SEGMENTS = {
    "author", "authors", "people", "person", "profile", "profiles", "contributor", "contributors",
    "topic", "topics", "tag", "tags", "category", "categories", "search", "login", "signin",
    "sign-in", "logout", "register", "signup", "sign-up", "account", "accounts", "subscribe",
    "subscription", "subscriptions", "newsletter", "newsletters", "membership", "offers", "shop",
    "store", "about", "about-us", "contact", "contact-us", "help", "faq", "terms", "terms-of-service",
    "terms-of-use", "privacy", "privacy-policy", "cookies", "cookie-policy", "careers", "jobs",
    "advertising", "advertise", "sitemap", "rss", "sponsored", "advertiser-content", "brand-studio",
    "partner-content", "paid-content", "paidpost", "apps", "app", "download", "downloads",
}
NON_STORY_HOST_PREFIXES = (
    "help.", "helpcenter.", "support.", "subscribe.", "subscription.", "account.", "accounts.",
    "login.", "shop.", "store.", "jobs.", "careers.", "classifieds.", "ads.", "ad.",
    "email.", "newsletter.", "newsletters.", "link.", "apps.", "app.",
)
# Hosts of app stores, newsletter archives and social networks: a front's promo tiles for its
# own apps, newsletters and channels link there, and no story does.
NON_STORY_DOMAINS = frozenset({
    "apple.com", "play.google.com", "mailchi.mp", "eepurl.com",  # campaign-archive, list-manage: MAIL_HOST
    "facebook.com", "twitter.com", "x.com", "instagram.com", "tiktok.com", "whatsapp.com", "t.me",
    "youtube.com", "linkedin.com", "pinterest.com", "threads.net", "snapchat.com", "flipboard.com",
})
# Newsletter issues as mail services show them on the web: cfo.cmail20.com/t/ViewEmail/...,
# us12.campaign-archive.com, createsend1.com; a front's newsletter promos link there.
MAIL_HOST = re.compile(
    r"(?:cmail|createsend|campaign-?archive|list-manage|mailchimp|mcusercontent|exacttarget|sendgrid)\d*\.",
    re.IGNORECASE,
)
NEWSLETTER_ISSUE = re.compile(r"/t/viewemail/|/webversion(?:/|$)|/view-in-browser(?:/|$)", re.IGNORECASE)
TRACKING_PARAM = re.compile(
    r"^(?:utm_\w+|mod|itid|ito|src_origin|cmpid|cmp|intcmp|ns_\w+|at_\w+|ocid|fbclid|gclid|dclid|msclkid"
    r"|mc_cid|mc_eid|igshid|smid|smtyp|xtor|s_cid|ref|reflink|ftag|traffic_source|wt\.mc_id)$",
    re.IGNORECASE,
)
SECOND_LEVEL_LABELS = {"co", "com", "org", "net", "ac", "gov", "edu", "ne", "or", "go"}


# --- Entry point -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    url: str  # the page URL as given
    base: str  # what relative links resolve against: <base href>, else the page URL
    site: str  # the registered site name, e.g. "bbc.co.uk"
    domains: frozenset[str]  # registrable domains that count as this site


# How well a candidate's title was read: a later link to the same story with a better title
# (the headline link after the image link) gives the story its title.
TITLE_FROM_LABEL = 1  # aria-label or title attribute of a link without text
TITLE_FROM_LINK = 2  # a link's own text, or a JSON-LD name
TITLE_FROM_HEADING = 3  # a heading or headline element, or a site rule's title element


@dataclass
class Candidate:
    """One link (or heading) to a story: where it was found and what it says."""

    url: str
    title: str | None
    element: Element | None  # where the title was read, its card found from (None: JSON-LD only)
    rank: int = TITLE_FROM_LINK
    kicker: str | None = None
    sublink: bool = False  # a related link under another story's headline
    source: str = ""  # the rule that read it, for explain
    shown_at: tuple[Element, ...] = ()  # its title elements outside sub-links: where cards end


def parse(html: str, url: str, explain: bool = False) -> dict:
    """The stories on a news front page, in page order; ParseError when there are none.

    explain adds an "explain" key: which extractor and rule produced the headlines and each
    item's fields, to diagnose a wrong item on a new page in one run.
    """
    if isinstance(html, bytes):
        html = html.decode("utf-8", errors="replace")
    if not isinstance(html, str) or not isinstance(url, str):
        raise ParseError("a news page is parsed from text and a URL string")
    try:
        front = read_front(html, url, site_name(url))
        cards = [read_story_card(story, front) for story in front.stories]
        items = [card_item(story, facts, position) for position, story, facts in zip(count(1), front.stories, cards)]
    except (ValueError, RecursionError) as exc:
        # A malformed URL or a pathological document: refuse the page rather than crash the job.
        raise ParseError(f"unreadable news page: {exc.__class__.__name__}") from None
    if not items:
        raise ParseError("no headlines found on the news page")
    data = {"kind": KIND, "site": front.page.site, "headlines": items}
    if explain:
        data["explain"] = front.explain(list(map(item_sources, items, front.stories, cards)))
    return data


@dataclass
class Front:
    """What the extractors made of one page: its stories, and how they were found."""

    page: Page
    stories: list[Candidate] = field(default_factory=list)
    extractor: str = "none"
    found: dict[str, int] = field(default_factory=dict)  # main stories each extractor found
    chrome: str = "navigation, page header/footer and ad slots removed first"

    @cached_property
    def all_keys(self) -> frozenset[str]:
        return frozenset(url_key(story.url) for story in self.stories)

    @cached_property
    def titles_under(self) -> dict[Element, set[str]]:
        """element -> the stories whose title it holds outside a sub-link (within TITLE_DEPTH levels)."""
        holders: dict[Element, set[str]] = {}
        for story in self.stories:
            key = url_key(story.url)
            for element in story.shown_at:
                for node in islice(element.iterancestors(), TITLE_DEPTH):
                    holders.setdefault(node, set()).add(key)
        return holders

    def explain(self, items: list[dict[str, str]]) -> dict:
        return {"site": "url: the page's host", "headlines": self.extractor, "found": self.found,
                "chrome": self.chrome, "items": items}


def read_front(html: str, url: str, site: str) -> Front:
    """The page's stories from its stripped tree; from the whole tree when stripping left none
    (a page whose <body> wears an ad class must not lose every story with it)."""
    doc = build_document(html)  # cut and flattened when huge or absurdly deep
    page = Page(url, base_url(doc, url), site, same_site_domains(site))
    links = len(doc.links())  # the same in the rebuilt tree: nothing was stripped from it yet
    front = extract_front(doc, page, links, strip=True)
    if not front.stories and links:
        front = extract_front(build_document(html), page, links, strip=False)
        front.chrome = "nothing removed: with page chrome removed no story was left"
    return front


def extract_front(doc: Document, page: Page, links: int, strip: bool) -> Front:
    """Site rules when they find enough stories, else the extractor that finds the most; links
    is the number of links of the unstripped page."""
    if not links:  # no link, no story in the markup (and junk ends fast)
        stories = jsonld_headlines(doc, page)
        return Front(page, stories, BY_JSONLD, {"json-ld": main_count(stories)})
    if strip:
        strip_chrome(doc, links)
    site = site_headlines(doc, page)
    front = Front(page, site, f"site-rule: the selectors for {registrable_domain(page.site)}",
                  {"site-rule": main_count(site)})
    if main_count(site) >= ENOUGH_HEADLINES:
        return front  # the JSON-LD and generic extractors are not even run
    jsonld, generic = jsonld_headlines(doc, page), generic_headlines(doc, page)
    front.found.update({"json-ld": main_count(jsonld), "generic": main_count(generic)})
    others = max((jsonld, generic), key=main_count)
    # On a small page of a known layout the site rules still hold, and the guesses add
    # sub-links they skip; markup that changed leaves the rules only a stray few.
    if site and main_count(site) >= SITE_SHARE * main_count(others):
        return front
    if main_count(others) > main_count(site):
        front.stories = others
        front.extractor = BY_JSONLD if others is jsonld else BY_GENERIC
    return front


BY_JSONLD = "json-ld: stories listed in the page's JSON-LD"
BY_GENERIC = "generic: same-site article links whose text reads as a headline"


def main_count(stories: list[Candidate]) -> int:
    """Stories that are not sub-links: what the extractors are compared on."""
    return sum(1 for story in stories if not story.sublink)


def site_name(url: str) -> str:
    """The registered site for the URL's host ("www.bbc.co.uk" -> "bbc.co.uk")."""
    host = (urlsplit(url.strip()).hostname or "").rstrip(".")
    if not host:
        raise ParseError("the page URL has no host")
    return NEWS_HOSTS.get(host, host).removeprefix("www.")


def base_url(doc: Document, url: str) -> str:
    base = next(iter(doc.find_all(BASE_HREFS)), None)
    return (resolve(base.get("href"), url) or url) if base is not None else url


def registrable_domain(host: str) -> str:
    """example.co.uk / www.example.com -> the part a publisher registers (no public-suffix list)."""
    labels = host.lower().rstrip(".").split(".")
    if len(labels) >= 3 and labels[-2] in SECOND_LEVEL_LABELS and len(labels[-1]) == 2:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def same_site_domains(site: str) -> frozenset[str]:
    domain = registrable_domain(site)
    family = next((f for f in SITE_FAMILIES if domain in f), {domain})
    return frozenset(family)


def strip_chrome(doc: Document, links: int) -> None:
    """Remove navigation, page header/footer and ad slots: their links are never the stories.
    Never the page itself: <html>, <body>, <main> or what holds most of its `links` stay,
    whatever their classes say (a <body> whose class names an "advert" layout)."""
    for tag in _chrome(doc):
        if not _holds_the_page(tag, links):
            remove(tag)


def _chrome(doc: Document) -> list[Element]:
    chrome: list[Element] = []
    landmarks_left = MAX_CHROME
    for tag in doc.elements():
        if tag.tag == "nav" or tag.get("role") in CHROME_ROLES:
            chrome.append(tag)
        elif _is_ad(tag):
            chrome.append(_ad_region(tag))
        elif tag.tag in ("header", "footer"):
            landmarks_left -= 1
            if landmarks_left >= 0 and _is_page_chrome(tag):
                chrome.append(tag)
    return chrome


def _holds_the_page(tag: Element, page_links: int) -> bool:
    if tag.tag in PAGE_TAGS:
        return True
    most = page_links // 2 + 1
    return page_links >= PAGE_LINKS_FLOOR and sum(1 for _ in islice(tag.iter("a"), most)) >= most


def _is_page_chrome(tag: Element) -> bool:
    # A card's own <header>/<footer> holds a couple of links; the page's holds dozens.
    links = (node for node in descendants(tag, CHROME_SCAN) if _is_link(node))
    return sum(1 for _ in islice(links, CHROME_LINKS)) >= CHROME_LINKS


def _is_ad(tag: Element) -> bool:
    return not AD_TOKENS.isdisjoint(class_tokens(tag))


def _ad_region(tag: Element) -> Element:
    """What an ad element takes with it: a "Sponsored" label marks its whole card (a parent with
    few links) as an ad; anything else (ad slots, "Advertisement" captions) only itself."""
    parent = tag.getparent()
    if parent is None or first_link(tag) is not None:
        return tag
    label = clean_text(" ".join(page_strings(tag, CARD_SCAN))) or ""
    if not SPONSOR_LABEL.match(label):
        return tag
    links = sum(1 for node in descendants(parent, CARD_SCAN) if _is_link(node))
    return parent if links <= CARD_LINKS else tag


# --- Items: what each story's card shows -------------------------------------------------------


def card_item(story: Candidate, facts: CardFacts, position: int) -> dict:
    """The headline item of one story, with what its card shows."""
    url = canonical_url(story.url)
    return {
        "title": story.title,
        "url": url,
        "url_as_linked": story.url if story.url != url else None,
        "kicker": story.kicker or facts.kicker,
        "summary": facts.summary if facts.summary != story.title else None,
        "image": facts.image,
        "section": section_of(url),
        "position": position,
        "sublink": story.sublink,
    }


def item_sources(item: dict, story: Candidate, facts: CardFacts) -> dict[str, str]:
    """For explain: the rule behind each field of an item that has a value."""
    dropped = ", tracking query dropped" if item["url_as_linked"] else ""
    sources = {"title": story.source, "url": f"the story link's href{dropped}",
               "url_as_linked": "the story link's href, as written", **(facts.sources or {}),
               "section": "url: the path's section segment"}
    if story.kicker:
        sources["kicker"] = "the title element: a kicker element, a line before the title or a label"
    return {name: sources[name] for name in item if name in sources and item[name] is not None}


def read_story_card(story: Candidate, front: Front) -> CardFacts:
    if story.element is None:
        return CardFacts(sources={})
    own = url_key(story.url)
    card = sublink_card(story.element) if story.sublink else story_card(story.element, own, front)
    return read_card(card, story.element, front.page.base, lambda e: _links_elsewhere(e, own, front))


def story_card(element: Element, own: str, front: Front) -> Element:
    """The largest element around a story's headline (at most CARD_CLIMB levels up) that holds
    no other story's title (sub-links aside): the card its summary, image and kicker are read from."""
    card = element
    for _ in range(CARD_CLIMB):
        parent = card.getparent()
        if parent is None or not front.titles_under.get(parent, set()) <= {own}:
            break
        card = parent
    return card


def sublink_card(element: Element) -> Element:
    """A sub-link's own list item, else its link: the lead's card around it is the lead's."""
    if element.tag == "li":
        return element
    item = ancestor(element, lambda e: e.tag == "li", SUBLINK_ITEM_CLIMB)
    if item is not None:  # no `or` below: a childless lxml element is falsy
        return item
    link = link_for(element)
    return link if link is not None else element


def _links_elsewhere(element: Element, own: str, front: Front) -> bool:
    """A link to another story of the page (a lead's sub-link inside its card)."""
    if element.tag != "a":
        return False
    key = _story_key(element, front)
    return key is not None and key != own and key in front.all_keys


def _story_key(link: Element, front: Front) -> str | None:
    url = resolve(link.get("href"), front.page.base)
    return url_key(url) if url is not None else None


def mark_sublinks(stories: list[Candidate]) -> list[Candidate]:
    """Mark the related links under a story's headline, in its card, as that story's sub-links."""
    lead: Candidate | None = None
    for story in stories:
        if lead is not None and is_sublink_of(story, lead):
            story.sublink = True
            story.shown_at = tuple(e for e in story.shown_at if e is not story.element)
        else:
            lead = story
    return stories


def is_sublink_of(story: Candidate, lead: Candidate) -> bool:
    """story sits in lead's card, under its headline: marked related or a sub-link on the way up
    from story to the element they share, or a list item under a lead headed by a heading (with
    no other heading in what they share, which would make it a list of stories)."""
    if story.element is None or lead.element is None:
        return False
    common, path = _climb_to_common(story.element, lead.element)
    if common is None:
        return False
    if any(is_related_element(node) for node in path):
        return True
    return (lead.rank == TITLE_FROM_HEADING and story.rank < TITLE_FROM_HEADING
            and any(node.tag == "li" for node in path) and _headings_in(common) == 1)


def _climb_to_common(element: Element, other: Element) -> tuple[Element | None, list[Element]]:
    """(the nearest ancestor element shares with other, at most SUBLINK_CLIMB levels up; the
    elements from element up to it, excluded)."""
    others = {other, *islice(other.iterancestors(), SUBLINK_CLIMB + CLIMB)}
    path = [element]
    for node in islice(element.iterancestors(), SUBLINK_CLIMB):
        if node in others:
            return node, path
        path.append(node)
    return None, path


def is_related_element(element: Element) -> bool:
    tokens = class_tokens(element)
    return not tokens.isdisjoint(SUBLINK_TOKENS) or "sublink" in (element.get("data-link-name") or "")


def _headings_in(element: Element) -> int:
    """Heading elements in element, counted up to 2."""
    headings = (t for t in descendants(element, CARD_SCAN) if is_tag(t) and t.tag in HEADING_TAGS)
    return sum(1 for _ in islice(headings, 2))


# --- Extractor 1: site rules ---------------------------------------------------------------------


def site_headlines(doc: Document, page: Page) -> list[Candidate]:
    rule = SITE_RULES.get(registrable_domain(page.site))
    if rule is None:
        return []
    found = _site_matches(doc, rule)
    return merge(filter(None, (_site_candidate(element, rule, page, sublink) for element, sublink in found)))


def _site_matches(doc: Document, rule: SiteRule) -> list[tuple[Element, bool]]:
    """(element, is a sub-link) for each match of the rule, in page order: one walk over the
    page for headlines and sub-links together; an element both select is a sub-link."""
    both, _, sublink_css = selectors_of(rule)
    sublinks = css.compile_selector(sublink_css) if sublink_css else None
    found: list[tuple[Element, bool]] = []
    for match in islice(css.select(doc, both), MAX_ELEMENTS):
        if sublinks is not None and sublinks.matches(match):
            found.extend((link, True) for link in _sublinks_in(match))
        else:
            found.append((match, False))
    return found


def _sublinks_in(match: Element) -> list[Element]:
    """The sub-links a rule's match holds: the links inside it (a list of related links), else
    the match itself (a related headline, inside its link)."""
    links = [link for link in islice(match.iter("a"), MAX_SUBLINKS) if _is_link(link)]
    return links or [match]


def _site_candidate(match: Element, rule: SiteRule, page: Page, sublink: bool) -> Candidate | None:
    link = link_for(match)
    url = story_url(link, page) if link is not None else None
    if url is None:
        return None
    title_element = _first_match(match, rule.title) if rule.title else match
    title, kicker = headline_text(title_element)
    if title_element is not match:
        kicker = kicker or headline_text(match)[1]  # a kicker beside the title element, in the match
    source = f"site-rule: {'sub-link' if sublink else 'headline'} of {registrable_domain(page.site)}"
    if not title and match is link:
        title, rank = _label_of(match), TITLE_FROM_LABEL
    else:
        rank = TITLE_FROM_HEADING
    return Candidate(url, headline_or_none(title, SITE_MIN_WORDS), title_element, rank, kicker, sublink, source)


def _first_match(element: Element, selector: str) -> Element:
    """The first descendant matching selector among CARD_SCAN nodes, else element itself."""
    compiled = css.compile_selector(selector)
    found = (t for t in descendants(element, CARD_SCAN) if is_tag(t) and compiled.matches(t))
    return next(found, element)


# --- Extractor 2: JSON-LD lists -------------------------------------------------------------------


def jsonld_headlines(doc: Document, page: Page) -> list[Candidate]:
    """Stories listed in JSON-LD (ItemList, NewsArticle...); untitled items take a page link's
    title, and every item the link's element, where its card is read."""
    listed = [(url, name) for url, name in jsonld_stories(doc, page) if is_same_site(url, page)]
    if not listed:
        return []
    links = link_titles(doc, page)
    return merge(_jsonld_candidate(url, name, links.get(url_key(url))) for url, name in listed)


def _jsonld_candidate(url: str, name: str | None, link: Candidate | None) -> Candidate:
    title = headline_or_none(name, HEADING_MIN_WORDS)
    if title is None and link is not None:
        return replace(link, url=url, source=f"json-ld: url, title from the page's link ({link.source})")
    element = link.element if link is not None else None
    return Candidate(url, title, element, TITLE_FROM_LINK, None, False, "json-ld: name")


def jsonld_stories(doc: Document, page: Page) -> Iterator[tuple[str, str | None]]:
    for obj in jsonld_in_blocks(tree_script_blocks(doc)):
        if "itemlist" in jsonld_types(obj):
            yield from _list_items(obj, page, depth=0)
        elif jsonld_types(obj) & {"newsarticle", "article", "reportagenewsarticle", "analysisnewsarticle"}:
            story = _jsonld_story(obj, page)
            if story is not None and url_key(story[0]) != url_key(page.url):  # not the page itself
                yield story


def tree_script_blocks(doc: Document) -> Iterator[ScriptBlock]:
    """Each <script> with its type and text, as base.jsonld_in_blocks reads them."""
    for script in doc.find_all(SCRIPTS):
        kind = script.get("type")
        yield ScriptBlock({} if kind is None else {"type": kind}, script.text or "")


def _list_items(obj: dict, page: Page, depth: int) -> Iterator[tuple[str, str | None]]:
    items = obj.get("itemListElement")
    if depth > 4 or not isinstance(items, list):  # nested lists of lists: bounded
        return
    for item in items[:MAX_HEADLINES]:
        inner = item.get("item") if isinstance(item, dict) else None
        if isinstance(inner, dict) and isinstance(inner.get("itemListElement"), list):
            yield from _list_items(inner, page, depth + 1)
        elif isinstance(item, dict):
            story = _list_item_story(item, inner, page)
            if story is not None:
                yield story


def _list_item_story(item: dict, inner: object, page: Page) -> tuple[str, str | None] | None:
    """A ListItem's story: its "item" object, else its own url (or an "item" that is a URL)."""
    story = _jsonld_story(inner, page) if isinstance(inner, dict) else None
    href = inner if isinstance(inner, str) else item.get("url")
    return story or _jsonld_story({"url": href, "name": item.get("name")}, page)


def _jsonld_story(obj: dict, page: Page) -> tuple[str, str | None] | None:
    url = resolve(obj.get("url") or obj.get("@id"), page.base)
    if url is None:
        return None
    name = obj.get("headline") or obj.get("name")
    return url, clean_text(name) if isinstance(name, str) else None


def link_titles(doc: Document, page: Page) -> dict[str, Candidate]:
    """url key -> the first link to it anywhere on the page whose text reads as a headline."""
    titles: dict[str, Candidate] = {}
    for link in islice(doc.links(), MAX_ELEMENTS):
        url = resolve(link.get("href"), page.base)
        if url is not None and url_key(url) not in titles:
            candidate = link_title(link, url)
            if candidate.title:
                titles[url_key(url)] = candidate
    return titles


# --- Extractor 3: generic ---------------------------------------------------------------------------


def generic_headlines(doc: Document, page: Page) -> list[Candidate]:
    """Links to same-site article URLs whose text reads like a headline, in page order;
    and headings beside a card's bare link (overlay cards), which cost more: fewer of those.
    Related links under a story's headline come out marked as its sub-links."""
    candidates = []
    headings_left = MAX_CARD_HEADINGS
    for element in islice(filter(_is_generic_element, doc.elements()), MAX_ELEMENTS):
        if _is_link(element):
            candidates.append(_generic_link(element, page))
        elif headings_left > 0:
            headings_left -= 1
            candidates.append(_generic_heading(element, page))
    return mark_sublinks(merge(filter(None, candidates)))


def _is_generic_element(tag: Element) -> bool:
    return _is_link(tag) or is_headline_element(tag)


def _generic_link(link: Element, page: Page) -> Candidate | None:
    url = story_url(link, page)
    if url is None or not is_article_url(url, page):
        return None
    return link_title(link, url)


def link_title(link: Element, url: str) -> Candidate:
    """A link's headline: its heading's text, else its own text (stricter outside a heading)."""
    inside = title_inside(link)
    if inside:
        heading, title, kicker = inside
        return Candidate(url, title, heading, TITLE_FROM_HEADING, kicker, False, "generic: heading inside the link")
    title, kicker = headline_text(link)
    in_heading = _inside_heading(link)
    rank, source = (TITLE_FROM_HEADING, "generic: link inside a heading") if in_heading else \
        (TITLE_FROM_LINK, "generic: link text")
    if not title:
        title, rank, source = _label_of(link), TITLE_FROM_LABEL, "generic: the link's aria-label or title"
    title = headline_or_none(title, HEADING_MIN_WORDS if in_heading else LINK_MIN_WORDS)
    return Candidate(url, title, link, rank, kicker, False, source)


def _generic_heading(heading: Element, page: Page) -> Candidate | None:
    """A heading that is neither in nor around a link: the title of an overlay-link card."""
    if first_link(heading) is not None or ancestor(heading, _is_link, CLIMB) is not None:
        return None
    link = card_link(heading)
    if link is None:
        return None
    url = story_url(link, page)
    if url is None or not is_article_url(url, page):
        return None
    title, kicker = headline_text(heading)
    title = headline_or_none(title, HEADING_MIN_WORDS)
    return Candidate(url, title, heading, TITLE_FROM_HEADING, kicker, False, "generic: heading beside the card's link")


def _inside_heading(link: Element) -> bool:
    return ancestor(link, is_headline_element, levels=3) is not None


def _label_of(link: Element) -> str | None:
    """aria-label / title of a link with no text (overlay links, icon links)."""
    label = clean_text(link.get("aria-label") or link.get("title"))
    return re.sub(r"\s*\(opens in (?:a )?new (?:tab|window)\)$", "", label) if label else None


# --- Links and URLs -----------------------------------------------------------------------------------


def link_for(element: Element) -> Element | None:
    """The link a headline element belongs to: itself, an ancestor, a descendant, or its card's."""
    if _is_link(element):
        return element
    for find in (_ancestor_link, first_link, card_link):  # no `or`: a childless lxml element is falsy
        link = find(element)
        if link is not None:
            return link
    return None


def _ancestor_link(element: Element) -> Element | None:
    return ancestor(element, _is_link, CLIMB)


def first_link(element: Element) -> Element | None:
    """The first link inside element, looking at a bounded number of descendants."""
    return next((t for t in descendants(element, CARD_SCAN) if _is_link(t)), None)


def _is_link(node: Node) -> bool:
    return type(node) is not str and node.tag == "a" and node.get("href") is not None


def card_link(heading: Element) -> Element | None:
    """The link of a card whose heading sits beside it, not inside it (overlay-link cards).

    Climbs to the first container holding any link and decides there, never higher (a section
    heading must not borrow a story from the next section). Only bare links count (an empty
    overlay, an image, "Read more"): a link with a headline of its own is another story. The
    nearest bare link before the heading opens the card (overlays come first); bare links after
    it count only when they all point to one URL.
    """
    node: Element | None = heading
    for _ in range(CARD_CLIMB):
        node = node.getparent()
        if node is None:
            return None
        around = _links_around(node, heading)
        if around is None:
            return None  # the heading lies beyond what we scan: too big to be a card
        before, after = around
        if before or after:
            return _bare_card_link(before, after)
    return None


def _bare_card_link(before: list[Element], after: list[Element]) -> Element | None:
    before = [a for a in before if _is_bare(a)]
    after = [a for a in after if _is_bare(a)]
    if before:
        return before[-1]
    return after[0] if after and len({a.get("href") for a in after}) == 1 else None


def _is_bare(link: Element) -> bool:
    return not headline_or_none(title_text(link), SITE_MIN_WORDS)


def _links_around(container: Element, heading: Element) -> tuple[list[Element], list[Element]] | None:
    """Links of container before and after heading; None when heading is not reached."""
    before: list[Element] = []
    after: list[Element] = []
    seen_heading = False
    for node in descendants(container, CARD_SCAN):
        if node is heading:
            seen_heading = True
        elif _is_link(node):
            (after if seen_heading else before).append(node)
    return (before, after) if seen_heading else None


def story_url(link: Element, page: Page) -> str | None:
    """The link's absolute URL, unless it points at account, newsletter or similar pages."""
    href = link.get("href")
    return _story_url(href, page.base) if isinstance(href, str) else None


@short_key_cache(maxsize=4096)
def _story_url(href: str, base: str) -> str | None:
    # Cached, as resolve and url_key are: a front links many stories more than once.
    url = resolve(href, base)
    if url is None:
        return None
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host or host.startswith(NON_STORY_HOST_PREFIXES) or _is_non_story_domain(host):
        return None
    if MAIL_HOST.match(registrable_domain(host)) or NEWSLETTER_ISSUE.search(parts.path):
        return None  # a newsletter issue in a mail service's web view
    segments = {s.lower() for s in parts.path.split("/") if s}
    return None if segments & NON_STORY_SEGMENTS else url


def _is_non_story_domain(host: str) -> bool:
    return registrable_domain(host) in NON_STORY_DOMAINS or host.removeprefix("www.") in NON_STORY_DOMAINS


def resolve(href: object, base: str) -> str | None:
    """absolute_url that also survives hrefs urljoin refuses ("http://[oops")."""
    return _resolve(href, base) if isinstance(href, str) else None


@short_key_cache(maxsize=4096)
def _resolve(href: str, base: str) -> str | None:
    try:
        return absolute_url(href, base)
    except ValueError:
        return None


def is_same_site(url: str, page: Page) -> bool:
    return registrable_domain(urlsplit(url).hostname or "") in page.domains


def is_article_url(url: str, page: Page) -> bool:
    """Same site, not the page itself, and a path that names one story (date, id, slug...)."""
    if not is_same_site(url, page) or url_key(url) == url_key(page.url):
        return False
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if DATE_IN_PATH.search(parts.path) or ID_IN_QUERY.search(parts.query):
        return True
    return any(_is_article_segment(s, i, segments) for i, s in enumerate(segments))


def _is_article_segment(segment: str, index: int, segments: list[str]) -> bool:
    if ID_IN_SEGMENT.search(segment) or (segment.lower() in STORY_SEGMENTS and index + 1 < len(segments)):
        return True
    if ARTICLE_FILE.search(segment) and not INDEX_FILE.match(segment):
        return True
    words = [w for w in re.split(r"[-_]+", segment) if re.search(r"[^\W\d]", w)]
    return len(words) >= SLUG_WORDS


@short_key_cache(maxsize=4096)
def canonical_url(url: str) -> str:
    """The story's URL without tracking parameters (utm_*, mod, cmpid, ito...) or fragment."""
    parts = urlsplit(url)
    kept = [p for p in parts.query.split("&") if p and not TRACKING_PARAM.match(p.split("=")[0])]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(kept), ""))


@short_key_cache(maxsize=4096)
def url_key(url: str) -> str:
    """What makes two links the same story: host without www, path, non-tracking query."""
    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.")
    query = sorted(p for p in parts.query.split("&") if p and not TRACKING_PARAM.match(p.split("=")[0]))
    return f"{host}{parts.path.rstrip('/') or '/'}?{'&'.join(query)}"


# --- Titles -------------------------------------------------------------------------------------------


def is_headline_element(tag: Element) -> bool:
    if tag.tag in HEADING_TAGS or tag.get("itemprop") == "headline":
        return True
    return not HEADLINE_TOKENS.isdisjoint(class_tokens(tag))


def title_inside(link: Element) -> tuple[Element, str, str | None] | None:
    """(element, title, kicker) of the first heading / headline-classed element inside a link
    whose text reads as a headline.

    The first is not always it: a "section-title" label can come before the card's <h3>.
    """
    for heading in (t for t in descendants(link, CARD_SCAN) if is_tag(t) and is_headline_element(t)):
        title, kicker = headline_text(heading)
        if headline_or_none(title, HEADING_MIN_WORDS):
            return heading, title, kicker
    return None


def title_text(element: Element) -> str | None:
    """The element's title text: noise elements and a leading kicker dropped, labels stripped."""
    return headline_text(element)[0]


def headline_text(element: Element) -> tuple[str | None, str | None]:
    """(title, kicker) of a headline element. The kicker is what the page shows before the
    title: a kicker-classed element, a short line before a <br> or a short separate element,
    and a label glued to the title ("Analysis:", "LIVE"); never dropped, never in the title."""
    parts, kickers = _title_parts(element)
    parts, line_kicker = _drop_kicker(parts)
    text = clean_text(" ".join(text for _, text in parts))
    title, label = split_labels(text) if text else (None, None)
    return title, join_kickers([*kickers, line_kicker, label])


def join_kickers(texts: Iterable[str | None]) -> str | None:
    """One kicker from its pieces, in page order: "Live", "Analysis" -> "Live Analysis"."""
    pieces = [clean_text(t.strip(EDGE_PUNCTUATION)) for t in texts if t]
    return clean_text(" ".join(p for p in dict.fromkeys(pieces) if p)) or None


Part = tuple[Element | None, str]


def _title_parts(element: Element) -> tuple[list[Part], list[str]]:
    """(child, its text) per child of element that shows text (bare strings have child None),
    and the texts of kicker-classed elements met before any of them."""
    parts: list[tuple[Element | None, list[str]]] = []
    kickers: list[str] = []
    for top, text, is_kicker in _visible_strings(element):
        if is_kicker:
            kickers.append(text)
        elif parts and top is not None and parts[-1][0] is top:
            parts[-1][1].append(text)
        else:
            parts.append((top, [text]))
    return [(top, clean_text(" ".join(texts)) or "") for top, texts in parts], kickers


def _drop_kicker(parts: list[Part]) -> tuple[list[Part], str | None]:
    """(parts, kicker) without a leading kicker: a short line before a <br>, or a short separate
    element ("Live", "'Witch hunt'") before the title. Kickers with a telling class are already
    apart; this catches the unlabelled ones. Inline formatting (<em>Dune</em> tops box office)
    stays.
    """
    lines = [i for i, (tag, _) in enumerate(parts) if tag is not None and tag.tag == "br"]
    if lines and _is_kicker(parts[: lines[0]], parts[lines[0] + 1:]):
        return parts[lines[0] + 1:], _text_of(parts[: lines[0]])
    first = parts[0][0] if parts else None
    if first is None or first.tag in INLINE_TAGS or first.tag == "br" or is_headline_element(first):
        return parts, None
    return (parts[1:], _text_of(parts[:1])) if _is_kicker(parts[:1], parts[1:]) else (parts, None)


def _text_of(parts: list[Part]) -> str:
    return " ".join(text for _, text in parts)


def _is_kicker(head: list[Part], rest: list[Part]) -> bool:
    head_text = _text_of(head)
    rest_words = sum(word_count(text) for _, text in rest)
    return 0 < word_count(head_text) <= 4 and len(head_text) <= 40 and rest_words >= 3


def _visible_strings(element: Element) -> Iterator[tuple[Element | None, str, bool]]:
    """(top-level child of element, string, is a kicker) for each string a reader sees, noise
    skipped; a kicker-classed element before any title text comes whole, flagged.

    Takes at most TITLE_SCAN steps (a node, or leaving an element read through): a title is a
    few elements, and hostile nesting stays cheap.
    """
    hidden = in_string_container(element)
    if not len(element):  # a bare title, as most title elements are: its text, no walk to set up
        if not hidden and element.text and element.text.strip():
            yield None, element.text, False
        return
    frames = [(element, None, hidden)]  # (element read through, its top-level child, hidden)
    shown = False
    steps = TITLE_SCAN
    walk = Walk(element)
    for step, node in walk:
        if step == LEAVE and node is not frames[-1][0]:
            continue  # an element passed over: its content was never read
        if steps == 0:
            return
        steps -= 1
        _, top, hidden = frames[-1]
        if step == LEAVE:
            frames.pop()
        elif step == TEXT:
            if not hidden and node.strip():
                shown = True
                yield top, node, False
        elif not is_tag(node):
            continue  # a comment
        elif node.tag == "br" and top is None:
            walk.skip()
            yield node, "", False  # a line break between kicker and title
        elif not is_noise(node):
            frames.append((node, node if top is None else top, hidden or node.tag in STRING_CONTAINERS))
        else:
            walk.skip()
            if not (shown or hidden) and is_kicker_element(node):
                kicker = clean_text(" ".join(page_strings(node, KICKER_SCAN)))
                if kicker:
                    yield node, kicker, True


def is_kicker_element(tag: Element) -> bool:
    """An element the page marks as the label over a title: kicker, eyebrow, flag, live badge."""
    return is_kicker_tokens(class_tokens(tag))


def is_noise(tag: Element) -> bool:
    """Kickers, badges, bylines, timestamps, screen-reader labels: never part of a title."""
    if tag.tag in SKIP_TEXT_TAGS:
        return True
    tokens = class_tokens(tag)
    return not tokens.isdisjoint(NOISE_TOKENS) and tokens.isdisjoint(HEADLINE_TOKENS)


def strip_labels(text: str) -> str | None:
    """The title without "Live:", "Analysis:", "LIVE ", "Video 2:34", trailing comment counts."""
    return split_labels(text)[0]


def split_labels(text: str) -> tuple[str | None, str | None]:
    """(title, the labels it started with): "LIVE Analysis: X" -> ("X", "LIVE Analysis").
    Video lengths and comment counts are dropped: they are furniture, not what a story is."""
    labels: list[str] = []
    for _ in range(3):  # labels can stack: "LIVE Analysis: ..."
        stripped = text
        for label in (LABEL_PREFIX, CAPS_LABEL_PREFIX):
            found = label.match(stripped)
            if found:
                labels.append(found.group())
                stripped = stripped[found.end():]
        stripped = DURATION.sub("", stripped)
        stripped = COMMENT_COUNT.sub("", stripped).strip(EDGE_PUNCTUATION)
        if stripped == text:
            break
        text = stripped
    return text or None, join_kickers(labels)


def headline_or_none(text: str | None, min_words: int) -> str | None:
    return text if text and looks_like_headline(text, min_words) else None


def looks_like_headline(text: str, min_words: int) -> bool:
    if not MIN_TITLE_CHARS <= len(text) <= MAX_TITLE_CHARS:
        return False
    words = word_count(text)
    if words < min_words or NON_STORY_TEXT.fullmatch(text) or BYLINE.match(text) or SPONSOR_LABEL.match(text):
        return False
    return words > 6 or not _all_caps(text)  # "MORE ON THE PANDEMIC" is a section label


def _all_caps(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and all(c.isupper() for c in letters)


def word_count(text: str) -> int:
    words = sum(1 for w in text.split() if any(c.isalnum() for c in w))
    return max(words, len(CJK.findall(text)) // 2)  # CJK titles have no spaces


def merge(candidates: Iterable[Candidate]) -> list[Candidate]:
    """One story per URL at its first position, titled by its best-read title (the headline
    link's, not the image link's or the comment count's; the first of equals); a sub-link when it
    first appears as one (under a lead story, before its own card further down)."""
    stories: dict[str, Candidate] = {}
    for candidate in candidates:
        key = url_key(candidate.url)
        shown = (candidate.element,) if candidate.element is not None and not candidate.sublink else ()
        story = stories.get(key)
        if story is None:
            stories[key] = replace(candidate, shown_at=shown)
            continue
        story.shown_at += shown
        if candidate.title and (story.title is None or candidate.rank > story.rank):
            story.title, story.rank, story.kicker = candidate.title, candidate.rank, candidate.kicker
            story.element, story.source = candidate.element, candidate.source
    return list(islice((story for story in stories.values() if story.title), MAX_HEADLINES))


__all__ = ["SITE_RULES", "parse"]
