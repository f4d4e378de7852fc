"""The parsers on the real saved pages, against what each raw page says when read by another route.

MANIFEST.json's hand-checked facts and tests/golden/ pin each page's leading values. These tests
cover the rest of every page: every genre, the whole description, both dates and the cover of each
Goodreads book; every headline of each news front; the word count of each article. The expected
values never come from the parsers' code: they are read from the saved bytes with a regex, with
the json module (the page's own JSON-LD and __NEXT_DATA__), or with a plain lxml xpath.

Skipped, with the reason, when the saved pages are absent (tests/pages.py).
"""
from __future__ import annotations

import html
import json
import re
from datetime import datetime, timezone
from functools import cache
from urllib.parse import urljoin, urlsplit

import lxml.html
import pytest

import parsers
from parsers import goodreads
from tests.pages import manifest, read_page

# ---------------------------------------------------------------------------------------
# Shared readers
# ---------------------------------------------------------------------------------------


def entries(kind: str, layout: str = "") -> list[dict]:
    """The saved pages of one kind (and layout prefix); skips the test when they are absent."""
    return [e for e in manifest() if e["kind"] == kind and e["layout"].startswith(layout)]


@cache
def parsed(file: str, url: str) -> dict:
    return parsers.parse(read_page(file), url)  # pure: one parse per page serves every test


def lxml_document(file: str) -> lxml.html.HtmlElement:
    """A fresh lxml tree of the page (callers change it); the pages read here are UTF-8 bytes."""
    return lxml.html.document_fromstring(read_page(file).decode("utf-8"))


def squeeze(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------
# Goodreads: genres, cover, dates and description of every book page
# ---------------------------------------------------------------------------------------

NEXT_DATA = re.compile(r'<script id="__NEXT_DATA__" type="application/json">(.*?)</script>', re.S)
JSONLD = re.compile(r'<script type="application/ld\+json">(.*?)</script>', re.S)
OG_IMAGE = re.compile(  # both attribute orders occur
    r"""<meta (?:property=["']og:image["'] content=["']([^"']+)["']"""
    r"""|content=["']([^"']+)["'] property=["']og:image["'])"""
)
VISIBLE_GENRES = re.compile(
    r'<a href="https://www\.goodreads\.com/genres/[^"]+"[^>]*><span class="Button__labelItem">([^<]+)</span>'
)
COVER_IMAGE = re.compile(r'<img id="coverImage" [^>]*src="([^"]+)"')
VISIBLE_PUBLICATION = re.compile(r'data-testid="publicationInfo">(First published|Published) ([^<]*)<')
LEGACY_PUBLISHED = re.compile(r'<div class="row">\s*Published\s+(.*?)\s+by\s')
LEGACY_FIRST_PUBLISHED = re.compile(r'<nobr class="greyText">\s*\(first published\s+([^)]*?)\s*\)')
ORDINAL = re.compile(r"(\d)(?:st|nd|rd|th)\b")
# The date a page shows, and how precise it is: strptime formats, tried in turn.
SHOWN_DATE_FORMATS = (("%B %d, %Y", "%Y-%m-%d"), ("%B %d %Y", "%Y-%m-%d"), ("%B %Y", "%Y-%m"), ("%Y", "%Y"))


def books(layout: str) -> list[dict]:
    """The book pages of a layout family ("goodreads-next", "goodreads-legacy"), soft 404 aside."""
    found = [e for e in entries("goodreads_book", layout) if "soft-404" not in e["layout"]]
    assert found, f"no saved {layout} book page in the manifest"
    return found


def shown_date(text: str) -> str:
    """"September 28th 2004" -> "2004-09-28", "November 1968" -> "1968-11", by strptime."""
    text = squeeze(ORDINAL.sub(r"\1", text))
    for shown, iso in SHOWN_DATE_FORMATS:
        try:
            return datetime.strptime(text, shown).strftime(iso)
        except ValueError:
            continue
    raise AssertionError(f"the test cannot read the date {text!r}")


def raw_text(entry: dict) -> str:
    return read_page(entry["file"]).decode("utf-8")


def apollo_book_and_work(entry: dict) -> tuple[dict, dict]:
    """The page's own Apollo records of this edition and of its work, read with the json module."""
    state = json.loads(NEXT_DATA.search(raw_text(entry)).group(1))["props"]["pageProps"]["apolloState"]
    book_id = re.search(r"/book/show/(\d+)", entry["url"]).group(1)
    book = next(v for k, v in state.items() if k.startswith("Book:") and str(v.get("legacyId")) == book_id)
    return book, state[book["work"]["__ref"]]


def apollo_date(record: dict) -> str | None:
    """A record's publicationTime (epoch ms at a Pacific midnight) as its UTC calendar date."""
    milliseconds = record["details"]["publicationTime"]
    if milliseconds is None:
        return None
    return datetime.fromtimestamp(milliseconds / 1000, timezone.utc).date().isoformat()


def jsonld_book(entry: dict) -> dict:
    blocks = (json.loads(block) for block in JSONLD.findall(raw_text(entry)))
    return next(block for block in blocks if block.get("@type") == "Book")


def og_image(entry: dict) -> str:
    return html.unescape(next(filter(None, OG_IMAGE.search(raw_text(entry)).groups())))


def test_next_pages_list_the_visible_genres_first_then_the_rest_of_their_apollo_genres() -> None:
    """The page shows the first genres as buttons (the rest behind "...more"); the parser gives all."""
    for entry in books("goodreads-next"):
        visible = [html.unescape(name) for name in VISIBLE_GENRES.findall(raw_text(entry))]
        everything = [g["genre"]["name"] for g in apollo_book_and_work(entry)[0]["bookGenres"]]
        genres = parsed(entry["file"], entry["url"])["genres"]
        assert visible and genres[: len(visible)] == visible, entry["file"]
        assert genres == everything, entry["file"]


def legacy_genre_rows(entry: dict) -> list[str]:
    """Each genre row's genre: the last /genres/ link of the row ("Fantasy > Magic" is Magic)."""
    rows = lxml_document(entry["file"]).xpath('//div[contains(@class, "elementList")]/div[@class="left"]')
    links = [row.xpath('./a[starts-with(@href, "/genres/")]') for row in rows]
    names = [row_links[-1].text_content().strip() for row_links in links if row_links]
    return list(dict.fromkeys(names))  # a genre shelved under two parents is one genre


def test_legacy_pages_list_every_genre_row() -> None:
    for entry in books("goodreads-legacy"):
        expected = legacy_genre_rows(entry)
        assert len(expected) >= 5, entry["file"]
        assert parsed(entry["file"], entry["url"])["genres"] == expected, entry["file"]


def test_next_pages_cover_is_the_jsonld_image_and_the_og_image() -> None:
    for entry in books("goodreads-next"):
        cover = parsed(entry["file"], entry["url"])["cover_url"]
        assert cover == jsonld_book(entry)["image"] == og_image(entry), entry["file"]


def test_legacy_pages_cover_is_the_cover_image_of_the_same_book_as_og_image() -> None:
    """og:image is a 1200x630 crop of the same picture: same book path, other size suffix."""
    for entry in books("goodreads-legacy"):
        cover = parsed(entry["file"], entry["url"])["cover_url"]
        assert cover == html.unescape(COVER_IMAGE.search(raw_text(entry)).group(1)), entry["file"]
        same_picture = re.search(r"/books/(\d+)\w/(\d+)", og_image(entry)).groups()
        assert re.search(r"/books/(\d+)\w/(\d+)", cover).groups() == same_picture, entry["file"]


def test_next_pages_dates_are_the_shown_line_and_the_apollo_times() -> None:
    """"First published <date>" is first_published, "Published <date>" this edition's date; both
    are also the Apollo publicationTime of the work and of the edition (null: no date)."""
    for entry in books("goodreads-next"):
        data = parsed(entry["file"], entry["url"])
        label, shown = VISIBLE_PUBLICATION.search(raw_text(entry)).groups()
        assert data["first_published" if label.startswith("First") else "published"] == shown_date(shown), entry["file"]
        book, work = apollo_book_and_work(entry)
        assert (data["published"], data["first_published"]) == (apollo_date(book), apollo_date(work)), entry["file"]


def test_legacy_pages_dates_are_the_published_row_with_its_precision() -> None:
    """"Published September 28th 2004 by ... (first published November 1968)": a day and a month."""
    precisions = set()
    for entry in books("goodreads-legacy"):
        data, page = parsed(entry["file"], entry["url"]), raw_text(entry)
        assert data["published"] == shown_date(LEGACY_PUBLISHED.search(page).group(1)), entry["file"]
        assert data["first_published"] == shown_date(LEGACY_FIRST_PUBLISHED.search(page).group(1)), entry["file"]
        precisions |= {len(data["published"]), len(data["first_published"])}
    assert precisions == {len("YYYY-MM-DD"), len("YYYY-MM")}  # both kinds really occur


def text_lines(element: lxml.html.HtmlElement) -> list[str]:
    """The element's visible text, one entry per non-blank line (<br> ends a line)."""
    for br in element.iter("br"):
        br.tail = "\n" + (br.tail or "")
    return [squeeze(line) for line in element.text_content().split("\n") if line.strip()]


def shown_description(entry: dict) -> list[str]:
    doc = lxml_document(entry["file"])
    if "next" in entry["layout"]:
        return text_lines(doc.xpath('//*[@data-testid="description"]//span[@class="Formatted"]')[0])
    spans = doc.xpath('//div[@id="description"]/span')  # a truncated one and the full hidden one
    return text_lines(max(spans, key=lambda span: len(span.text_content())))


def test_descriptions_are_the_shown_description_line_by_line() -> None:
    """What the page shows as the description is librarian_note's lines (a librarian's note
    before the blurb, when there is one), then the description's."""
    paragraphs = 0
    for entry in books("goodreads"):
        data = parsed(entry["file"], entry["url"])
        shown = shown_description(entry)
        lines = [squeeze(line) for field in ("librarian_note", "description")
                 for line in (data[field] or "").split("\n") if line.strip()]
        assert lines == shown, entry["file"]
        for field in ("librarian_note", "description"):
            assert data[field] is None or data[field] == data[field].strip(), entry["file"]
        paragraphs += len(shown) > 1
    assert paragraphs >= 3  # pages whose description has line breaks the parser must keep


EXPLAIN_SOURCE = re.compile(r"^(json-ld|apollo|data-testid|legacy-markup|meta|url)(?:: \S.*)?$")
# "json-ld: Book.aggregateRating.ratingValue", "apollo: Book.details.isbn": a plain path, no derivation.
EXPLAIN_PATH = re.compile(r"^(json-ld|apollo): (Book|Work)\.([\w.]+)$")
SAVED_LAYERS = {"goodreads-next": {"json-ld", "apollo"}, "goodreads-legacy": {"legacy-markup", "meta"}}
# Stored in another form: epoch ms (compared as dates above), HTML (compared line by line above).
CONVERTED_FIELDS = {"published", "first_published", "description"}


def explained(entry: dict) -> tuple[dict, dict[str, str]]:
    data = goodreads.parse(raw_text(entry), entry["url"], explain=True)
    return data, data.pop("explain")


def test_explain_names_a_source_for_every_field_with_a_value_on_every_saved_book() -> None:
    """On the saved pages explain changes nothing else, covers exactly the fields with a value,
    and names the layers the page has: JSON-LD and Apollo (Next.js), legacy markup and meta."""
    for entry in books("goodreads"):
        data, explain = explained(entry)
        assert data == parsed(entry["file"], entry["url"]), entry["file"]
        assert set(explain) == {f for f, v in data.items() if f != "kind" and v not in (None, "", [])}, entry["file"]
        layers = {EXPLAIN_SOURCE.match(source).group(1) for source in explain.values()}
        family = next(prefix for prefix in SAVED_LAYERS if entry["layout"].startswith(prefix))
        assert layers == SAVED_LAYERS[family], entry["file"]


def record_at(record: object, path: str) -> object:
    for key in path.split("."):
        record = record.get(key) if isinstance(record, dict) else None
    return record


def test_explain_paths_hold_the_values_in_the_pages_own_json() -> None:
    """Each "json-ld: Book.<path>" / "apollo: Book|Work.<path>" names where the value is, in the
    JSON-LD and Apollo records read with the json module (scalar values as they are stored)."""
    checked = 0
    for entry in books("goodreads-next"):
        data, explain = explained(entry)
        book, work = apollo_book_and_work(entry)
        records = {("json-ld", "Book"): jsonld_book(entry), ("apollo", "Book"): book, ("apollo", "Work"): work}
        for field, source in explain.items():
            match = EXPLAIN_PATH.match(source)
            raw = record_at(records[match.group(1), match.group(2)], match.group(3)) if match else None
            if isinstance(raw, (str, int, float)) and field not in CONVERTED_FIELDS:
                stored = html.unescape(raw).strip() if isinstance(raw, str) else raw
                # A rating 5 is 5.0; a legacyId 42399429 is the book_id "42399429".
                assert stored == data[field] or str(stored) == data[field], (entry["file"], field, source)
                checked += 1
    assert checked >= 40


# ---------------------------------------------------------------------------------------
# News fronts: every headline, not only the leading ones
# ---------------------------------------------------------------------------------------

# Elements inside a link that are not its title: kickers, "Live" pulses, media/duration badges.
NOT_TITLE_CLASS = re.compile(r"kicker|indicator|duration|pulse|badge|eyebrow", re.I)
PAGE_CHROME = "ancestor::nav or ancestor::footer or ancestor::*[@role='navigation' or @role='contentinfo']"
# An article-looking path: a date, a long number or a slug of 4+ words.
STORY_PATH = re.compile(r"/(?:19|20)\d\d/|\d{6,}|[a-z0-9]+(?:-[a-z0-9]+){3,}")
STORY_MIN_WORDS = 5
STORY_RECALL = 0.8  # share of the front's story-looking links the headlines must include


def fronts() -> list[dict]:
    found = entries("news_headlines")
    assert len(found) >= 5, "the manifest lists five saved news fronts"
    return found


def shown_title_texts(link: lxml.html.HtmlElement) -> set[str]:
    """Each text a link shows as a title: its own, or one element's inside it, without its kicker."""
    link = lxml.html.fromstring(lxml.html.tostring(link))  # a copy: the badges are dropped below
    for element in link.xpath(".//*[@class]"):
        if NOT_TITLE_CLASS.search(element.get("class")):
            element.drop_tree()
    return {squeeze(element.text_content()) for element in link.iter() if isinstance(element.tag, str)}


@cache
def front_links(file: str, url: str) -> list[tuple[str, frozenset[str], bool]]:
    """(absolute URL, title texts, inside navigation/footer) of each link, in document order."""
    doc = lxml_document(file)
    links = (link for link in doc.iter("a") if link.get("href"))
    return [(urljoin(url, link.get("href").strip()), frozenset(shown_title_texts(link)), bool(link.xpath(PAGE_CHROME)))
            for link in links]


def link_positions(entry: dict, headline: dict) -> list[int]:
    """Positions of the links that go to the headline's URL and show its title, outside the chrome."""
    links = front_links(entry["file"], entry["url"])
    return [i for i, (url, texts, chrome) in enumerate(links)
            if url == (headline["url_as_linked"] or headline["url"]) and shows_title(texts, headline) and not chrome]


def shows_title(texts: frozenset[str], headline: dict) -> bool:
    """The link shows the title alone, or its kicker then the title ("Live briefing: Missile ...")."""
    if headline["title"] in texts:
        return True
    kicker = headline["kicker"]
    return bool(kicker) and any(t.startswith(kicker) and t.endswith(" " + headline["title"]) for t in texts)


def test_every_headline_is_a_link_of_the_page_showing_that_title() -> None:
    """URL as an href of the page, title as that link's visible text (or a heading's inside it),
    kicker and badges apart, and not a link of the page's navigation or footer."""
    for entry in fronts():
        for headline in parsed(entry["file"], entry["url"])["headlines"]:
            assert link_positions(entry, headline), (entry["file"], headline)


def test_headlines_follow_page_order() -> None:
    """The headlines are a subsequence of the page's links: each one's link comes after the one
    before. (A story also linked earlier, as a related link of another card, keeps its own card.)"""
    for entry in fronts():
        previous = -1
        for headline in parsed(entry["file"], entry["url"])["headlines"]:
            later = [i for i in link_positions(entry, headline) if i > previous]
            assert later, (entry["file"], headline, "out of page order")
            previous = later[0]


def without_query(url: str) -> str:
    return url.split("?")[0].split("#")[0]


def test_headlines_are_unique_by_url_even_without_tracking_queries() -> None:
    for entry in fronts():
        urls = [h["url"] for h in parsed(entry["file"], entry["url"])["headlines"]]
        assert len(set(urls)) == len(urls), entry["file"]
        assert len({without_query(url) for url in urls}) == len(urls), entry["file"]


def story_links(entry: dict) -> set[str]:
    """The front's own article-looking links with a sentence for text (query dropped)."""
    site = urlsplit(entry["url"]).hostname.removeprefix("www.")
    stories = set()
    for url, texts, _ in front_links(entry["file"], entry["url"]):
        parts = urlsplit(url)
        words = max((len(text.split()) for text in texts), default=0)
        if (parts.hostname or "").endswith(site) and STORY_PATH.search(parts.path) and words >= STORY_MIN_WORDS:
            stories.add(without_query(url))
    return stories


def test_headlines_include_most_of_the_story_links_of_each_front() -> None:
    """At least 80% of each front's story-looking links (today 85% on wsj.com, 93-98% elsewhere:
    the rest are related links under a lead card, sign-up promos and terms pages)."""
    for entry in fronts():
        stories = story_links(entry)
        found = {without_query(h["url"]) for h in parsed(entry["file"], entry["url"])["headlines"]}
        assert len(stories) >= 40, entry["file"]
        assert len(stories & found) >= STORY_RECALL * len(stories), (entry["file"], sorted(stories - found))


# ---------------------------------------------------------------------------------------
# Any page: word_count against the article body's own words
# ---------------------------------------------------------------------------------------

# Each article's body container, found by reading the page (not the parser's rules).
ARTICLE_BODIES = {
    "www.theguardian.com/article-valencia-fire.2024-02-24.html":
        "//div[contains(@class, 'article-body-commercial-selector')]",
    "www.washingtonpost.com/article-tornadoes.2024-04-26.html":
        "//div[contains(concat(' ', @class, ' '), ' article-body ')]",
    "www.foxnews.com/article-china-police-stations.2023-04-28.html": "//div[@class='article-body']",
    "www.bbc.com/article-obr-explainer.2024-08-01.html": "//article/div[@data-component='headline-block' "
        "or @data-component='subheadline-block' or @data-component='text-block']",
    "online.wsj.com/article-suu-kyi.2013-06.html": "//div[contains(@class, 'artSnippetTop')]",  # the paywalled snippet
    "www.foxnews.com/article-trump-businesses.2016-11-30.html": "//div[@class='article-text']",
    "wptavern.com/blog-stack-overflow-jobs-reactjs.2017-03.html": "//div[contains(@class, 'entry-content')]",
    "v8.dev/blog-emscripten-standalone-wasm.plain-meta.html": "//*[@itemprop='articleBody']",
    "tech.qq.com/a-20161014-006270.gb2312-declared-utf8-bytes.html": "//div[@id='Cnt-Main-Article-QQ']//p",
    "www.dailymail.co.uk/article-texas-banker.iso-8859-1-declared-utf8-bytes.html": "//div[@id='js-article-text']",
}
# The parser may count a headline, standfirst or caption beyond the body (today it is 0-7% above
# it); counting the page's menus, comments or related stories, or missing paragraphs, is more.
WORD_COUNT_TOLERANCE = 0.15
CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def body_words(file: str) -> int:
    """Words of the body container(s): one per CJK character, else runs with a letter or digit."""
    text = " ".join(visible_text(container) for container in lxml_document(file).xpath(ARTICLE_BODIES[file]))
    spaced = CJK_CHAR.sub(" ", text)
    return len(CJK_CHAR.findall(text)) + sum(1 for word in spaced.split() if any(ch.isalnum() for ch in word))


def visible_text(element: lxml.html.HtmlElement) -> str:
    for hidden in element.xpath(".//script | .//style | .//noscript"):
        hidden.drop_tree()
    return element.text_content()


@pytest.mark.parametrize("file", [pytest.param(file, id=file.removesuffix(".html")) for file in ARTICLE_BODIES])
def test_word_count_is_the_article_body_within_15_percent(file: str) -> None:
    entry = next(e for e in entries("page") if e["file"] == file)
    expected = body_words(file)
    assert expected >= 100  # the xpath found the body
    word_count = parsed(file, entry["url"])["word_count"]
    assert abs(word_count - expected) <= WORD_COUNT_TOLERANCE * expected, (word_count, expected)


def test_every_saved_article_has_a_body_to_count() -> None:
    """The table above covers every saved article page (the directory page aside)."""
    articles = {e["file"] for e in entries("page") if not e["layout"].startswith("windows-1256-directory")}
    assert articles == set(ARTICLE_BODIES)
