"""parsers.generic: every source of every field, and each field falling through on its own.

Small pages are written here or in tests/fixtures/generic/ (hand-made, each reproducing one
structure: JSON-LD @graph, OpenGraph only, Twitter only, Dublin Core only, plain HTML,
<base href>, windows-1252 bytes). The real saved pages are checked in tests/golden/page-*.json;
here they only get word-count ranges.
"""
from __future__ import annotations

import datetime
import json
import re
import time
from pathlib import Path

import lxml.html
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import parsers
from errors import ParseError
from parsers import generic
from parsers.base import meta_index
from parsers.encoding import decode_html
from tests.pages import read_page
from tests.parsers.contract import assert_contract_keys

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "generic"
URL = "https://example.com/section/story.html"


def doc(head: str = "", body: str = "<p>Some words of text.</p>", html_attrs: str = "") -> str:
    return f"<!DOCTYPE html><html{html_attrs}><head>{head}</head><body>{body}</body></html>"


def jsonld(value: object) -> str:
    return f'<script type="application/ld+json">{json.dumps(value)}</script>'


def meta(key: str, value: str, attr: str = "property") -> str:
    return f'<meta {attr}="{key}" content="{value}">'


def parse(html: str, url: str = URL) -> dict:
    data = generic.parse(html, url)
    assert_contract_keys(data)
    return data


def parse_fixture(name: str, url: str = URL, content_type: str | None = None) -> dict:
    data = parsers.parse((FIXTURES / name).read_bytes(), url, content_type)
    assert_contract_keys(data)
    return data


# ---------------------------------------------------------------------------------------
# Fixtures: one structure each, whole dict checked.
# ---------------------------------------------------------------------------------------
def test_jsonld_graph_wins_over_opengraph_and_follows_id_references() -> None:
    data = parse_fixture("jsonld-graph.html", "https://harbour.example/news/2024/03/storm-explained?ref=x")
    assert data == {
        "kind": "page",
        "title": "Rain & wind: what the storm means for you",  # Article headline, entity decoded
        "description": "OG description that must win: the Article node has none",
        "site_name": "Harbour Gazette",  # og:site_name comes before JSON-LD WebSite.name
        "image": "https://harbour.example/img/storm.jpg",  # {"@id"} -> ImageObject.url
        "author": "Ana Ferreira, Tomás O'Neill",  # two {"@id"} Persons, one given+family name
        "authors": ["Ana Ferreira", "Tomás O'Neill"],
        "published": "2024-03-02T08:15:00+01:00",
        "canonical_url": "https://harbour.example/news/2024/03/storm-explained",
        "type": "article",  # NewsArticle beats og:type "website"
        "language": "en-GB",
        "word_count": 36,  # <article>: h1 + two paragraphs; header, nav and footer stripped
    }


def test_opengraph_only_page() -> None:
    data = parse_fixture("opengraph-only.html", "https://crumb.example/?p=12")
    assert data == {
        "kind": "page",
        "title": "Ten rules for sourdough",  # og:title, whitespace collapsed
        "description": "Flour, water, salt & patience: the double-escaped ampersand is decoded.",
        "site_name": "Crumb & Crust",
        "image": "https://crumb.example/images/loaf.jpg",  # relative og:image made absolute
        "author": None,  # article:author is a profile URL, not a name
        "authors": [],
        "published": "2023-11-05T18:30:00-05:00",
        "canonical_url": "https://crumb.example/blog/ten-rules-for-sourdough",  # og:url
        "type": "article",  # og:type lowercased
        "language": "en-US",  # og:locale en_US
        "word_count": 15,
    }


def test_twitter_only_page() -> None:
    data = parse_fixture("twitter-only.html", "https://stadtblatt.example/radwege")
    assert data == {
        "kind": "page",
        "title": "Neue Radwege für die Innenstadt",
        "description": "Der Stadtrat hat 14 Kilometer geschützte Radwege beschlossen.",
        "site_name": None,  # twitter:site is a handle, not a name
        "image": "https://stadtblatt.example/bilder/radweg.jpg",
        "author": None,  # twitter:creator is a handle, not a name
        "authors": [],
        "published": None,
        "canonical_url": "https://stadtblatt.example/radwege",
        "type": None,
        "language": "de",
        "word_count": 17,
    }


def test_dublin_core_only_page() -> None:
    data = parse_fixture("dublin-core.html", "https://tides.example/record/17")
    assert data == {
        "kind": "page",
        "title": "Tide tables of the northern estuary, 1890–1910",
        "description": "Digitised tide tables with the harbour master's notes.",
        "site_name": "Library of Tide Tables",  # DC.publisher
        "image": None,
        "author": "Marguerite Oyelaran",
        "authors": ["Marguerite Oyelaran"],
        "published": "2021-06-30T14:05:00+00:00",  # DC.date upgraded by DCTERMS.created, same day
        "canonical_url": "https://tides.example/record/17",
        "type": None,
        "language": "en-GB",
        "word_count": 7,
    }


def test_plain_html_page() -> None:
    data = parse_fixture("plain-html.html", "https://carnet.example/2022/10/erables")
    assert data == {
        "kind": "page",
        "title": "Les érables rouges de l'automne",  # <title> is "<h1> · Site": the h1 part
        "description": None,
        "site_name": "Carnet de Lou",  # the <title> segment after the headline
        "image": "https://carnet.example/photos/erables.jpg",  # 16x16 icon skipped
        "author": "Lou Tremblay",  # rel=author
        "authors": ["Lou Tremblay"],
        "published": "2022-10-14",  # <time datetime>
        "canonical_url": "https://carnet.example/2022/10/erables",
        "type": None,
        "language": "fr-CA",  # <html lang="FR-ca">
        # h1 (5) + byline (6) + paragraphs (12 + 12 + 9); the logo h1, nav, aside, footer and
        # script are not counted
        "word_count": 44,
    }


def test_base_href_resolves_every_relative_url() -> None:
    data = parse_fixture("base-href.html", "https://site.example/dir/page.html")
    assert data["canonical_url"] == "https://site.example/mirror/site/notes/field-notes.html"
    assert data["image"] == "https://site.example/mirror/shared/cover.png"


def test_windows_1252_bytes_give_curly_quotes_and_accents() -> None:
    data = parse_fixture("windows-1252.html", "https://cafe.example/", "text/html")
    assert data["title"] == "“Café society” – a résumé of Paris’s naïve years"
    assert data["description"] == "It’s 1920: the cafés of Montparnasse — and their £5 absinthe."
    assert data["author"] == "Renée Duchâteau"


def test_windows_1252_bytes_labelled_latin1_by_the_server() -> None:
    data = parse_fixture("windows-1252.html", "https://cafe.example/", "text/html; charset=ISO-8859-1")
    assert data["title"] == "“Café society” – a résumé of Paris’s naïve years"


# ---------------------------------------------------------------------------------------
# Each field falls through on its own.
# ---------------------------------------------------------------------------------------
def test_each_field_falls_through_independently() -> None:
    html = doc(
        head=jsonld({"@type": "Article", "headline": "From JSON-LD"})
        + meta("og:description", "From OpenGraph")
        + meta("twitter:image", "https://img.example/t.png", "name")
        + meta("DC.creator", "From Dublin Core", "name")
        + meta("parsely-pub-date", "2024-05-06T07:08:09Z", "name")
        + '<link rel="canonical" href="https://example.com/canonical">',
        html_attrs=' lang="it"',
    )
    data = parse(html)
    assert data["title"] == "From JSON-LD"
    assert data["description"] == "From OpenGraph"
    assert data["image"] == "https://img.example/t.png"
    assert data["author"] == "From Dublin Core"
    assert data["published"] == "2024-05-06T07:08:09+00:00"
    assert data["canonical_url"] == "https://example.com/canonical"
    assert data["language"] == "it"
    assert data["type"] == "article"


@pytest.mark.parametrize(
    "head, expected",
    [
        (jsonld({"@type": "Article", "headline": "A"}) + meta("og:title", "B") + "<title>C</title>", "A"),
        (meta("og:title", "B") + meta("twitter:title", "T", "name") + "<title>C</title>", "B"),
        (meta("twitter:title", "T", "name") + meta("DC.title", "D", "name"), "T"),
        (meta("DC.title", "D", "name") + meta("parsely-title", "P", "name"), "D"),
        (meta("dcterms.title", "D2", "name") + "<title>C</title>", "D2"),
        (meta("sailthru.title", "S", "name") + "<title>C</title>", "S"),
        ("<title>C</title>", "C"),
    ],
)
def test_title_sources_in_order(head: str, expected: str) -> None:
    assert parse(doc(head))["title"] == expected


def test_title_falls_back_to_the_first_content_h1() -> None:
    body = '<header><h1><a href="/">Site Logo</a></h1></header><article><h1>The Story</h1><p>Text.</p></article>'
    assert parse(doc(body=body))["title"] == "The Story"


def test_title_from_microdata_headline_before_title_tag() -> None:
    body = '<article itemscope itemtype="https://schema.org/BlogPosting"><h1 itemprop="headline">Real</h1><p>x</p></article>'
    assert parse(doc("<title>Real - Blog of Someone</title>", body))["title"] == "Real"


def test_jsonld_name_is_a_title_when_there_is_no_headline() -> None:
    html = doc(jsonld({"@type": "WebPage", "name": "Contact us"}) + "<title>Contact us | Acme</title>")
    assert parse(html)["title"] == "Contact us"


@pytest.mark.parametrize(
    "title, site, expected",
    [
        ("Big story | Acme News", "Acme News", "Big story"),
        ("Big story - Acme News", "Acme News", "Big story"),
        ("Big story – the Guardian", "The Guardian", "Big story"),  # "the" and case ignored
        ("Acme News: Big story", "Acme News", "Acme News: Big story"),  # ": " with no space before
        ("Acme News | Big story", "Acme News", "Big story"),  # site first
        ("Big story | World | Acme News", "Acme News", "Big story | World"),
        ("Big story | Elsewhere", "Acme News", "Big story | Elsewhere"),  # no site segment
        ("Left-wing - right-wing", "Acme", "Left-wing - right-wing"),
    ],
)
def test_title_tag_loses_the_site_name_segment(title: str, site: str, expected: str) -> None:
    html = doc(f"<title>{title}</title>" + meta("og:site_name", site))
    assert parse(html)["title"] == expected


def test_title_tag_is_cut_to_the_h1_it_starts_with() -> None:
    html = doc("<title>Storm warning_News_Portal</title>", "<div><h1>Storm warning</h1><p>Text here.</p></div>")
    data = parse(html)
    assert data["title"] == "Storm warning"
    assert data["site_name"] == "Portal"


def test_svg_title_is_not_the_page_title() -> None:
    body = '<svg><title>Search icon</title></svg><h1>Real heading</h1><p>Words.</p>'
    assert parse(doc("", body))["title"] == "Real heading"


def test_text_is_entity_decoded_once_more_and_whitespace_collapsed() -> None:
    html = doc(meta("og:title", "Tom &amp;amp; Jerry&amp;#39;s\n\t  day") + meta("og:description", "R&amp;D &amp;copy stays"))
    data = parse(html)
    assert data["title"] == "Tom & Jerry's day"
    assert data["description"] == "R&D &copy stays"  # no semicolon: not decoded again


def test_jsonld_text_loses_tags_but_keeps_comparisons() -> None:
    head = jsonld({"@type": "Article", "headline": "Why 2 < 3 > 1", "description": "<p>A <b>bold</b> claim</p>"})
    data = parse(doc(head))
    assert data["title"] == "Why 2 < 3 > 1"
    assert data["description"] == "A bold claim"


def test_urls_with_spaces_and_newlines_are_escaped_as_browsers_do() -> None:
    assert parse(doc(meta("og:image", "/images/my photo.jpg")))["image"] == "https://example.com/images/my%20photo.jpg"
    assert parse(doc(meta("og:url", "https://example.com/a\n/b")))["canonical_url"] == "https://example.com/a/b"


def test_description_sources_in_order() -> None:
    assert parse(doc(jsonld({"@type": "Article", "description": "<p>J &amp; L</p>"}) + meta("og:description", "O")))[
        "description"
    ] == "J & L"
    assert parse(doc(meta("dcterms.abstract", "A", "name") + meta("description", "M", "name")))["description"] == "A"
    assert parse(doc(meta("Description", "Capital D", "name")))["description"] == "Capital D"


# ---------------------------------------------------------------------------------------
# JSON-LD shapes.
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "author, expected",
    [
        ("Jane Roe", "Jane Roe"),
        (["Jane Roe", "John Doe"], "Jane Roe, John Doe"),
        ({"@type": "Person", "name": "Jane Roe"}, "Jane Roe"),
        ([{"@type": "Person", "name": "Jane Roe"}, {"@type": "Person", "name": "jane roe"}], "Jane Roe"),
        ({"@type": "Organization", "name": "BBC News"}, "BBC News"),
        ({"@type": "Person", "givenName": "Jane", "familyName": "Roe"}, "Jane Roe"),
        ([{"@type": "Person", "url": "https://x.example/jane"}, "By Jane Roe"], "Jane Roe"),
        (42, None),
    ],
)
def test_jsonld_author_shapes(author: object, expected: str | None) -> None:
    assert parse(doc(jsonld({"@type": "NewsArticle", "headline": "H", "author": author})))["author"] == expected


def test_jsonld_top_level_list_and_broken_blocks() -> None:
    head = (
        '<script type="application/ld+json">{"@type": "NewsArticle", "headline": "broken</script>'
        + jsonld([{"@type": "BreadcrumbList"}, {"@type": "BlogPosting", "headline": "From the list"}])
    )
    data = parse(doc(head))
    assert data["title"] == "From the list"
    assert data["type"] == "article"


def test_jsonld_article_is_chosen_over_video_and_webpage() -> None:
    head = jsonld({"@type": "VideoObject", "name": "Video", "description": "Video text"}) + jsonld(
        {"@type": "WebPage", "name": "Page", "description": "Page text"}
    ) + jsonld({"@type": "ReportageNewsArticle", "headline": "Story"})
    data = parse(doc(head))
    assert data["title"] == "Story"
    assert data["description"] == "Page text"  # WebPage describes the same page; the video does not
    assert data["type"] == "article"


def test_jsonld_main_entity_nested_in_webpage() -> None:
    head = jsonld({"@type": "WebPage", "name": "Page", "mainEntity": {"@type": "Article", "headline": "Nested"}})
    assert parse(doc(head))["title"] == "Nested"


def test_jsonld_publisher_and_website_names_are_site_name_fallbacks() -> None:
    article = {"@type": "Article", "headline": "H", "publisher": {"@type": "Organization", "name": "Publisher Co"}}
    assert parse(doc(jsonld(article)))["site_name"] == "Publisher Co"
    website = {"@type": "WebSite", "name": "The Site"}
    assert parse(doc(jsonld([website, article])))["site_name"] == "The Site"
    assert parse(doc(jsonld(article) + meta("og:site_name", "OG Site")))["site_name"] == "OG Site"


@pytest.mark.parametrize(
    "image, expected",
    [
        ("https://img.example/a.jpg", "https://img.example/a.jpg"),
        (["/a.jpg", "/b.jpg"], "https://example.com/a.jpg"),
        ({"@type": "ImageObject", "url": "https://img.example/o.jpg"}, "https://img.example/o.jpg"),
        ([{"@type": "ImageObject", "contentUrl": "//cdn.example/c.jpg"}], "https://cdn.example/c.jpg"),
        ("data:image/png;base64,AAAA", "https://og.example/fallback.jpg"),
        ("javascript:alert(1)", "https://og.example/fallback.jpg"),
    ],
)
def test_jsonld_image_shapes(image: object, expected: str) -> None:
    head = jsonld({"@type": "Article", "headline": "H", "image": image}) + meta("og:image", "https://og.example/fallback.jpg")
    assert parse(doc(head))["image"] == expected


@pytest.mark.parametrize(
    "schema_type, og_type, expected",
    [
        ("NewsArticle", None, "article"),
        ("ReportageNewsArticle", "website", "article"),
        ("BlogPosting", None, "article"),
        ("LiveBlogPosting", None, "article"),
        ("WebPage", "article", "article"),  # a generic WebPage lets og:type speak
        ("WebPage", None, "website"),
        ("CollectionPage", None, "website"),
        ("VideoObject", None, "video.other"),
        ("Book", None, "book"),
        ("ProfilePage", None, "profile"),
        ("Organization", "website", "website"),  # not the page's subject: ignored
        ("Organization", None, None),
        (None, "Video.Movie", "video.movie"),
        (None, "not a type!", None),
    ],
)
def test_type_convention_is_opengraph(schema_type: str | None, og_type: str | None, expected: str | None) -> None:
    head = (jsonld({"@type": schema_type, "name": "N"}) if schema_type else "") + (meta("og:type", og_type) if og_type else "")
    assert parse(doc(head))["type"] == expected


def test_type_from_microdata_when_no_meta() -> None:
    body = (
        '<ol itemscope itemtype="https://schema.org/BreadcrumbList"><li>Home</li></ol>'
        '<div itemscope itemtype="http://schema.org/NewsArticle"><p>Text of the story.</p></div>'
    )
    assert parse(doc("<title>T</title>", body))["type"] == "article"


# ---------------------------------------------------------------------------------------
# Author.
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "head, body, expected",
    [
        (meta("author", "By Jane Roe", "name"), "", "Jane Roe"),
        (meta("article:author", "https://facebook.com/jane") + meta("author", "Jane Roe", "name"), "", "Jane Roe"),
        (meta("author", "@janeroe", "name"), '<span class="byline">By John Doe</span>', "John Doe"),
        (meta("sailthru.author", "Sail Thru", "name"), "", "Sail Thru"),
        (meta("parsely-author", "Pars Ely", "name"), "", "Pars Ely"),
        ("", '<a rel="author" href="/a">Ann Lee</a> <span class="author">Not Her</span>', "Ann Lee"),
        ("", '<div itemprop="author" itemscope><span itemprop="name">Micro Data</span></div>', "Micro Data"),
        ("", '<p class="byline">By <span class="author">Ann Lee</span> and others</p>', "Ann Lee"),
        ("", '<a rel="author" href="/a">Ann Lee</a><a rel="author" href="/b">Bo Chan</a>', "Ann Lee, Bo Chan"),
        ("", '<a rel="author" href="/a">Ann Lee</a><a rel="author" href="/a2">Ann Lee</a>', "Ann Lee"),
        ("", '<span class="author">https://example.com/ann</span>', None),
        ("", "", None),
    ],
)
def test_author_sources_and_cleaning(head: str, body: str, expected: str | None) -> None:
    assert parse(doc(head + "<title>T</title>", body + "<p>Some text.</p>"))["author"] == expected


# ---------------------------------------------------------------------------------------
# Authors: every name, in page order; a person before an organisation.
# ---------------------------------------------------------------------------------------
def test_an_organisation_in_article_author_is_the_author_when_no_person_is_named() -> None:
    data = parse_fixture("org-author-meta.html")
    assert (data["authors"], data["author"]) == (["Valley Broadcasting News"], "Valley Broadcasting News")


def test_a_person_in_a_byline_wins_over_an_organisation_in_article_author() -> None:
    """og:article:author names the site; the byline names two people: only they are the authors."""
    data = parse_fixture("org-author-meta-with-byline.html")
    assert data["authors"] == ["Priya Natarajan", "Tomás Reilly"]
    assert data["author"] == "Priya Natarajan, Tomás Reilly"


def test_a_jsonld_person_wins_over_a_jsonld_organisation_named_first() -> None:
    head = jsonld({"@type": "NewsArticle", "headline": "H", "author": {"@type": "Organization", "name": "Wire Co"}})
    assert parse(doc(head, '<span class="byline">By Ann Lee</span><p>Text.</p>'))["authors"] == ["Ann Lee"]


def test_several_author_metas_with_content_or_value_are_every_author_in_page_order() -> None:
    data = parse_fixture("several-author-metas.html")
    assert data["authors"] == ["Ines Moreau", "Kwame Asante", "Lena Fischer"]  # "ines moreau" is a repeat
    assert data["author"] == "Ines Moreau, Kwame Asante, Lena Fischer"


def test_jsonld_author_list_of_people_and_organisations_is_every_name_in_order() -> None:
    assert parse_fixture("jsonld-author-list.html")["authors"] == ["Ana Ferreira", "Coastal Wire", "Bo Chan"]


@pytest.mark.parametrize(
    "byline, expected",
    [
        ("By Ann Lee, Bo Chan and Cy Diaz", ["Ann Lee", "Bo Chan", "Cy Diaz"]),
        ("By <a>Ann Lee</a>, <a>Bo Chan</a>, and <a>Cy Diaz</a>", ["Ann Lee", "Bo Chan", "Cy Diaz"]),
        ("Ann Lee &amp; Bo Chan", ["Ann Lee", "Bo Chan"]),
        ("BY ANN LEE AND BO CHAN", ["ANN LEE", "BO CHAN"]),
        ("Guardian staff and agencies", ["Guardian staff and agencies"]),  # "agencies" is no name
        ("By Ann Lee", ["Ann Lee"]),
    ],
)
def test_a_byline_naming_several_people_gives_each_name(byline: str, expected: list[str]) -> None:
    data = parse(doc("<title>T</title>", f'<p class="byline">{byline}</p><p>Text.</p>'))
    assert data["authors"] == expected
    assert data["author"] == ", ".join(expected)


def test_no_author_is_an_empty_list_and_none() -> None:
    data = parse(doc("<title>T</title>"))
    assert (data["authors"], data["author"]) == ([], None)


def test_a_byline_only_in_a_data_layer_script_is_the_author() -> None:
    data = parse_fixture("datalayer-author.html")
    assert (data["authors"], data["author"]) == (["Jane Doe"], "Jane Doe")


@pytest.mark.parametrize(
    "script, expected",
    [
        ('dataLayer.push({"author": "Jane Doe"});', ["Jane Doe"]),
        ("var utag_data = {page_type: 'article', 'author': 'Kate O\\'Brien', site: 'x'};", ["Kate O'Brien"]),
        ('digitalData = {page: {author: "By Ann Lee and Bo Chan"}};', ["Ann Lee", "Bo Chan"]),
        ('window.__INITIAL_STATE__ = {"story": {"byline": {"name": "Cy Diaz", "url": "/cy"}}};', ["Cy Diaz"]),
        ('window.__INITIAL_STATE__ = {"authors": [{"@type": "Person", "name": "Ann Lee"}, {"name": "Bo Chan"}]};',
         ["Ann Lee", "Bo Chan"]),
        ('var meta = {"author": ["Ann Lee", "Bo Chan"]};', ["Ann Lee", "Bo Chan"]),
        ('var meta = {"author": "Jos\\u00e9 Ruiz"};', ["José Ruiz"]),
        ('var meta = {"author": "https://example.com/ann", "byline": "Ann Lee"};', ["Ann Lee"]),  # a URL is no name
        ('var meta = {"authorType": "staff", "author_id": "ann"};', []),
        ('if (author == "Ann Lee") {}', []),
    ],
)
def test_data_layer_scripts_are_read_without_running_them(script: str, expected: list[str]) -> None:
    assert parse(doc(f"<title>T</title><script>{script}</script>"))["authors"] == expected


def test_a_data_layer_author_is_only_read_when_no_better_source_names_one() -> None:
    script = '<script>dataLayer.push({"author": "Layer Name"});</script>'
    assert parse(doc(meta("author", "Meta Name", "name") + script))["authors"] == ["Meta Name"]
    assert parse(doc(script, '<a rel="author" href="/a">Html Name</a><p>Text.</p>'))["authors"] == ["Html Name"]
    src = '<script src="/a.js">{"author": "Not Read"}</script>'  # a script with src= runs that file, not its text
    ld = '<script type="application/ld+json">{"@type": "Thing", "author": "Not Read"}</script>'
    assert parse(doc(src + ld))["authors"] == []


def test_a_data_layer_person_wins_over_an_organisation_in_meta() -> None:
    head = meta("og:site_name", "Valley News") + meta("article:author", "Valley News")
    assert parse(doc(head + '<script>dataLayer.push({"author": "Jane Doe"});</script>'))["authors"] == ["Jane Doe"]


def test_hostile_data_layer_scripts_stay_cheap() -> None:
    """2.4 MB of author keys none of which is a name (each a URL), with assignments between."""
    script = 'x = 1; "author": "https://x.example/p", ' * 60000
    started = time.process_time()
    data = parse(doc(f"<title>T</title><script>{script}</script>"))
    assert data["authors"] == []
    assert time.process_time() - started < 1.0  # 0.2 s here; unbounded, the scan takes seconds


# ---------------------------------------------------------------------------------------
# explain=True: the source of each field's value.
# ---------------------------------------------------------------------------------------
EXPLAIN_LAYERS = ("json-ld", "meta", "html", "script", "url")


def explained(html: str, url: str = URL) -> dict:
    data = generic.parse(html, url, explain=True)
    assert data == {**generic.parse(html, url), "explain": data["explain"]}  # explain adds one key, changes none
    return data


def test_explain_names_the_source_of_every_field_with_a_value() -> None:
    data = explained((FIXTURES / "jsonld-graph.html").read_text(), "https://harbour.example/news/x")
    assert data["explain"] == {
        "title": "json-ld: NewsArticle.headline",
        "description": "meta: og:description",
        "site_name": "meta: og:site_name",
        "image": "json-ld: NewsArticle.image",
        "author": "json-ld: NewsArticle.author",
        "authors": "json-ld: NewsArticle.author",
        "published": "json-ld: NewsArticle.datePublished",
        "canonical_url": "html: <link rel=canonical>",
        "type": "json-ld: NewsArticle.@type",
        "language": "html: <html lang>",
        "word_count": "html: <article> text",
    }


def test_explain_names_meta_html_script_and_url_sources() -> None:
    head = (meta("twitter:image", "/i.jpg", "name") + meta("og:locale", "en_GB") + meta("og:type", "video.other")
            + '<script>dataLayer.push({"author": "Jane Doe"});</script>')
    data = explained(doc(head, "<h1>Heading</h1><p>Some words.</p>"))
    assert data["explain"] == {
        "title": "html: <h1>", "image": "meta: twitter:image", "author": "script: dataLayer author",
        "authors": "script: dataLayer author", "canonical_url": "url: the page URL", "type": "meta: og:type",
        "language": "meta: og:locale", "word_count": "html: the block with the most paragraph text",
    }


def test_explain_leaves_out_fields_without_a_value_and_kind() -> None:
    data = explained(doc("<title>Only a title</title>", ""))
    assert data["explain"] == {
        "title": "html: <title>", "canonical_url": "url: the page URL", "word_count": "html: <body> text",
    }


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.html")))
def test_explain_on_every_fixture_covers_exactly_the_fields_with_values(fixture: str) -> None:
    data = explained(decode_html((FIXTURES / fixture).read_bytes()))
    with_values = {key for key, value in data.items() if value not in (None, "", []) and key not in ("kind", "explain")}
    assert set(data["explain"]) == with_values
    assert all(source.split(":")[0] in EXPLAIN_LAYERS for source in data["explain"].values())


def test_explain_off_adds_no_key() -> None:
    assert "explain" not in generic.parse(doc("<title>T</title>"), URL)


# ---------------------------------------------------------------------------------------
# Dates.
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, expected",
    [
        ("2024-02-24T11:42:23.000Z", "2024-02-24T11:42:23+00:00"),
        ("2024-02-24T10:31:00+00:00", "2024-02-24T10:31:00+00:00"),
        ("2023-04-26T14:20:55-04:00", "2023-04-26T14:20:55-04:00"),
        ("2023-11-05T18:30:00-0500", "2023-11-05T18:30:00-05:00"),
        ("2020-01-02T03:04:05+0530", "2020-01-02T03:04:05+05:30"),
        ("2020-01-02T03:04+01", "2020-01-02T03:04:00+01:00"),
        ("2013-06-05 09:29:25 UTC", "2013-06-05T09:29:25+00:00"),
        ("2016-11-30 09:35:40 EST", "2016-11-30T09:35:40-05:00"),
        ("2013-06-06 07:34:00.0", "2013-06-06T07:34:00"),
        ("2013-06-06T07:34:00 XYZ", "2013-06-06T07:34:00"),  # unknown zone: no offset invented
        ("2013-06-06 07:34 PM", "2013-06-06T19:34:00"),
        ("2013-06-06 12:05 a.m. EST", "2013-06-06T00:05:00-05:00"),
        ("2013-06-06 07:00 Amsterdam", "2013-06-06T07:00:00"),
        ("2019-11-21", "2019-11-21"),
        ("2019/11/21", "2019-11-21"),
        ("20130606073400", "2013-06-06T07:34:00"),
        ("20130606", "2013-06-06"),
        ("2016年10月14日07:17", "2016-10-14T07:17:00"),
        ("2016年10月14日", "2016-10-14"),
        ("Thu, 06 Jun 2013 07:34:00 GMT", "2013-06-06T07:34:00+00:00"),
        ("June 6, 2013", "2013-06-06"),
        ("Updated Nov. 30, 2016 9:31 a.m. ET", "2016-11-30"),
        ("21 November 2019", "2019-11-21"),
        ("3rd March 2021", "2021-03-03"),
        ("2024-02-29", "2024-02-29"),
        ("2023-02-29", None),
        ("2021-13-01", None),
        ("2021-04-31", None),
        ("2021-04-30T25:00:00Z", "2021-04-30"),
        ("comment_date", None),
        ("Smarch 5, 2020", None),
        ("", None),
        (None, None),
        (1700000000, None),
    ],
)
def test_normalize_date(raw: object, expected: str | None) -> None:
    assert generic.normalize_date(raw) == expected


ISO_OUTPUT = re.compile(r"^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2}(?:[+-]\d{2}:\d{2})?)?$")


DATE_LIKE = r"\d{4}[-/]\d{1,2}[-/]\d{1,2}(T\d{1,2}:\d{2}(:\d{2})?)?\s*(Z|[+-]\d{2}:?\d{2}|[A-Z]{3}|[ap]\.m\.)?"


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(max_size=60) | st.from_regex(DATE_LIKE))
def test_normalize_date_answers_iso_or_none(raw: str) -> None:
    value = generic.normalize_date(raw)
    assert value is None or ISO_OUTPUT.match(value), value
    assert value is None or datetime.date.fromisoformat(value[:10])


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(max_size=30))
def test_normalize_language_answers_a_tag_or_none(raw: str) -> None:
    value = generic.normalize_language(raw)
    assert value is None or generic.LANGUAGE_TAG.match(value)


@pytest.mark.parametrize(
    "head, body, expected",
    [
        (jsonld({"@type": "Article", "datePublished": "2024-01-01"}) + meta("article:published_time", "2023-01-01"), "", "2024-01-01"),
        (meta("article:published_time", "2023-05-05T05:05:05Z") + meta("DC.date", "2022-01-01", "name"), "", "2023-05-05T05:05:05+00:00"),
        (meta("DC.date.issued", "2022-02-02", "name") + meta("date", "2021-01-01", "name"), "", "2022-02-02"),
        ('<meta itemprop="datePublished" value="2013-06-06 07:34:00.0">', "", "2013-06-06T07:34:00"),
        (meta("sailthru.date", "2020-02-02 10:00:00", "name"), "", "2020-02-02T10:00:00"),
        ("", '<time itemprop="datePublished" datetime="2018-08-08T08:08:08+02:00">Aug 8</time>', "2018-08-08T08:08:08+02:00"),
        ("", '<time datetime="comment_date">no</time><time datetime="2017-07-07">July 7</time>', "2017-07-07"),
        ("", '<span class="pubTime">2016年10月14日07:17</span>', "2016-10-14T07:17:00"),
        # a bare date gives way to a later timestamp on the same day, not on another day
        (
            meta("DC.date", "2016-11-30", "name"),
            '<time itemprop="datePublished" datetime="2016-11-30T09:31:00.000-05:00">x</time>',
            "2016-11-30T09:31:00-05:00",
        ),
        (meta("DC.date", "2016-11-30", "name"), '<time datetime="2016-12-01T09:31:00Z">x</time>', "2016-11-30"),
        # "created" is read after every HTML date
        (meta("dcterms.created", "2015-05-05T10:00:00Z", "name"), '<time datetime="2015-05-04">x</time>', "2015-05-04"),
        (meta("dcterms.created", "2015-05-05T10:00:00Z", "name"), "", "2015-05-05T10:00:00+00:00"),
        (meta("article:published_time", "not a date") + meta("DC.date", "2011-11-11", "name"), "", "2011-11-11"),
    ],
)
def test_published_sources_in_order(head: str, body: str, expected: str) -> None:
    assert parse(doc(head + "<title>T</title>", body + "<p>Some text.</p>"))["published"] == expected


# ---------------------------------------------------------------------------------------
# Canonical URL, language.
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "head, expected",
    [
        ('<link rel="canonical" href="/a/b?x=1">' + meta("og:url", "https://og.example/"), "https://example.com/a/b?x=1"),
        ('<link data-n-head="ssr" rel="canonical" href="https://c.example/">', "https://c.example/"),
        ('<link rel="canonical" href="javascript:void(0)">' + meta("og:url", "https://og.example/p"), "https://og.example/p"),
        ('<link rel="canonical" href="">', URL),
        ("", URL),
    ],
)
def test_canonical_url(head: str, expected: str) -> None:
    assert parse(doc(head + "<title>T</title>"))["canonical_url"] == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("en", "en"), ("EN", "en"), ("en-gb", "en-GB"), ("en_US", "en-US"), ("zh-hant-tw", "zh-Hant-TW"),
        ("en, fr", "en"), ("pt-BR;q=0.9", "pt-BR"), ("es-419", "es-419"),
        ("{{lang}}", None), ("und", None), ("english", None), ("", None), (None, None),
    ],
)
def test_normalize_language(raw: str | None, expected: str | None) -> None:
    assert generic.normalize_language(raw) == expected


@pytest.mark.parametrize(
    "html_attrs, head, expected",
    [
        (' lang="en-GB"', meta("og:locale", "fr_FR"), "en-GB"),  # <html lang> first
        (' xml:lang="nl"', "", "nl"),
        (' lang="{{ locale }}"', meta("og:locale", "fr_FR"), "fr-FR"),
        ("", '<meta http-equiv="Content-Language" content="es, en">', "es"),
        ("", meta("DC.language", "de-AT", "name"), "de-AT"),
        ("", jsonld({"@type": "Article", "inLanguage": "ja"}), "ja"),
        ("", jsonld({"@type": "Article", "inLanguage": {"@type": "Language", "name": "ko"}}), "ko"),
        ("", "", None),
    ],
)
def test_language_sources_in_order(html_attrs: str, head: str, expected: str | None) -> None:
    assert parse(doc(head + "<title>T</title>", html_attrs=html_attrs))["language"] == expected


# ---------------------------------------------------------------------------------------
# Main text and its first image.
# ---------------------------------------------------------------------------------------
def test_word_count_prefers_article_body_then_largest_article() -> None:
    body = (
        '<article><p>one two three</p></article>'
        '<article><p>one two three four five six</p></article>'
        '<div><p>' + "many words " * 50 + "</p></div>"
    )
    assert parse(doc("<title>T</title>", body))["word_count"] == 6
    body_itemprop = '<article><p>one two three four</p><div itemprop="articleBody"><p>just these two</p></div></article>'
    assert parse(doc("<title>T</title>", body_itemprop))["word_count"] == 3


def test_word_count_uses_the_densest_paragraph_block_without_semantic_markup() -> None:
    body = (
        '<div id="menu"><p>Home</p><p>About</p></div>'
        '<div id="story"><p>alpha beta gamma</p><p>delta epsilon</p></div>'
        '<div id="ad"><p>Buy now</p></div>'
    )
    assert parse(doc("<title>T</title>", body))["word_count"] == 5


def test_word_count_is_the_article_around_a_dense_fact_box_not_the_box() -> None:
    """Without article/main markup, the story's own paragraphs and the denser fact box inside it
    are both counted; the menu and the comments are not (the Daily Mail's layout)."""
    html = (FIXTURES / "fact-box-article.html").read_text()
    story = lxml.html.document_fromstring(html).get_element_by_id("story-text")
    expected = len(story.text_content().split())  # every word of this fixture is plain ASCII
    box = len(lxml.html.document_fromstring(html).find_class("fact-box")[0].text_content().split())
    assert box > expected / 2  # the box alone holds most of the paragraph text
    assert parse_fixture("fact-box-article.html")["word_count"] == expected


def test_word_count_ignores_scripts_navigation_and_forms() -> None:
    body = (
        "<nav>one two</nav><header>three</header><main><p>counted words only here</p>"
        "<script>var not_counted = 1;</script><style>p { color: red }</style>"
        "<form><label>Email address</label></form><aside>side note</aside></main><footer>four</footer>"
    )
    assert parse(doc("<title>T</title>", body))["word_count"] == 4


def test_word_count_counts_each_cjk_character() -> None:
    body = "<article><p>人工智能迈上新台阶 DeepMind 2016</p></article>"
    assert parse(doc("<title>T</title>", body))["word_count"] == 9 + 2  # 9 characters, 2 tokens
    assert generic.count_words("It’s a well-known fact — really.") == 5


def test_first_content_image_skips_icons_and_data_uris() -> None:
    body = (
        '<header><img src="/logo.png"></header><article>'
        '<img src="/pixel.gif" width="1" height="1"><img src="data:image/gif;base64,R0lGOD">'
        '<img data-src="/lazy.jpg" width="640"><p>Story text.</p></article>'
    )
    assert parse(doc("<title>T</title>", body))["image"] == "https://example.com/lazy.jpg"


def test_image_sources_in_order() -> None:
    assert parse(doc(meta("og:image", "/og.jpg") + meta("twitter:image", "/tw.jpg", "name")))["image"] == "https://example.com/og.jpg"
    assert parse(doc('<link rel="image_src" href="/src.jpg">', '<article><img src="/body.jpg"><p>x</p></article>'))[
        "image"
    ] == "https://example.com/src.jpg"
    huge = "https://img.example/" + "a" * 3000
    assert parse(doc(meta("og:image", huge) + meta("twitter:image", "/tw.jpg", "name")))["image"] == "https://example.com/tw.jpg"


# ---------------------------------------------------------------------------------------
# Not a page; odd but valid pages.
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "html",
    [
        "",
        "   \n\t ",
        "just some plain text, no markup at all",
        '{"json": "document"}',
        "<html><head></head><body></body></html>",
        "<html><body><script>only(code)</script><nav>Menu</nav></body></html>",
        "<" + "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f" * 100,
    ],
)
def test_not_a_page_raises_parse_error(html: str) -> None:
    with pytest.raises(ParseError):
        generic.parse(html, URL)


def test_bytes_given_to_the_parser_directly_raise_parse_error() -> None:
    with pytest.raises(ParseError):
        generic.parse(b"<html><title>T</title></html>", URL)  # type: ignore[arg-type]


def test_title_only_page_is_a_page_with_no_words() -> None:
    data = parse("<title>Loading…</title><div id=root></div>")
    assert data["title"] == "Loading…"
    assert data["word_count"] == 0


def test_text_only_page_is_a_page_without_title() -> None:
    data = parse("<p>Plain paragraph in a fragment.</p>")
    assert data["title"] is None
    assert data["word_count"] == 5


def test_huge_fields_are_cut() -> None:
    data = parse(doc(meta("og:title", "word " * 5000)))
    assert len(data["title"]) <= generic.MAX_TEXT_CHARS


def test_meta_index_reads_content_and_value_by_every_key() -> None:
    page = generic.build_document(
        '<meta property="OG:Title" content=" A  b "><meta name="x" value="v"><meta name="e" content="">'
        '<meta itemprop="description" content="micro"><meta http-equiv="Content-Language" content="en">'
    )
    assert meta_index(page.find_all(generic.METAS)) == {
        "og:title": ["A  b"], "x": ["v"], "itemprop:description": ["micro"], "content-language": ["en"],
    }


def test_selectors_only_use_what_the_tree_walk_marks() -> None:
    """Every class, tag and attribute the HTML-fallback selectors need is kept by the walk."""
    selectors = " ".join(generic.TITLE_SELECTORS + generic.H1_SELECTORS + generic.PUBLISHED_SELECTORS + generic.AUTHOR_SELECTORS)
    for class_name in re.findall(r"\.([\w-]+)", selectors):
        assert class_name in generic.MARKED_CLASSES, class_name
    for attr in re.findall(r"\[([\w-]+)", selectors):
        assert attr in generic.MARKED_ATTRS | {"rel", "role"}, attr


# ---------------------------------------------------------------------------------------
# Real pages: word counts near an independent count of their article paragraphs.
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "page, url, low, high",
    [
        # bounds: words of the article's <p> elements counted by hand-written selectors, +-20%
        ("www.theguardian.com/article-valencia-fire.2024-02-24.html", "https://www.theguardian.com/world/2024/feb/24/x", 260, 450),
        ("www.washingtonpost.com/article-tornadoes.2024-04-26.html", "https://www.washingtonpost.com/weather/2024/04/26/x/", 800, 1200),
        ("www.foxnews.com/article-china-police-stations.2023-04-28.html", "https://www.foxnews.com/politics/x-y-z-a-b", 730, 1100),
        ("www.bbc.com/article-obr-explainer.2024-08-01.html", "https://www.bbc.com/news/explainers-63159607", 440, 800),
        ("v8.dev/blog-emscripten-standalone-wasm.plain-meta.html", "https://v8.dev/blog/emscripten-standalone-wasm", 2060, 3100),
        ("wptavern.com/blog-stack-overflow-jobs-reactjs.2017-03.html", "https://wptavern.com/x", 690, 1040),
        ("www.foxnews.com/article-trump-businesses.2016-11-30.html", "http://www.foxnews.com/politics/2016/11/30/x.html", 540, 810),
        ("online.wsj.com/article-suu-kyi.2013-06.html", "http://online.wsj.com/article/SB1.html", 80, 125),
    ],
)
def test_real_page_word_counts(page: str, url: str, low: int, high: int) -> None:
    data = parsers.parse(read_page(page), url)
    assert data["kind"] == "page"
    assert low <= data["word_count"] <= high


@pytest.mark.parametrize("url", ["https://example.com/notes/a page with spaces",
                                 "https://example.com/long/" + "x" * 3000])
def test_without_a_canonical_link_the_given_url_is_the_canonical_url_as_it_is(url: str) -> None:
    """The fallback is the URL the page was fetched under, unchanged: not escaped, not cut."""
    page = "<html><head><title>Field notes from the marsh</title></head><body><p>Text.</p></body></html>"
    data = generic.parse(page, url)
    assert data["canonical_url"] == url
