"""Goodreads book-page parser: every rule and fall-through, on hand-made fixtures.

tests/fixtures/goodreads/ holds small pages written for these tests (invented books):
  jsonld.html, next-data.html, testid.html, legacy.html  one source each, with different values
  several-authors.html    two authors, a translator and an illustrator, in three sources
  broken-next-data.html   __NEXT_DATA__ cut off mid-JSON, good markup
  soft-404.html, signin.html   pages that must be refused
  note-apollo.html, note-apollo-stripped.html, note-testid.html, note-legacy.html
                          a librarian's note before the description, one layout each
  note-mention.html       a description that only mentions the words such notes use
Pages layered from the four single-source fixtures show each field's fall-through order, so
a clone without the real saved pages still tests everything. The real pages are covered by
tests/golden/goodreads-*.json and tests/parsers/test_real_pages.py (skipped when they are absent).
"""
from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parsers
from errors import ParseError
from parsers import description, goodreads
from tests.parsers.contract import assert_contract_keys

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "goodreads"
URL = "https://www.goodreads.com/book/show/1000001-the-glass-orchard"
LAYERS = ("jsonld", "next-data", "testid", "legacy")
NOTE_FIXTURES = ("note-apollo", "note-apollo-stripped", "note-testid", "note-legacy", "note-mention")
BOOK_FIXTURES = (*LAYERS, "several-authors", "broken-next-data", *NOTE_FIXTURES)
REFUSED_FIXTURES = ("soft-404", "signin")

# What each single-source fixture holds (read off the fixture files).
LAYER_VALUES: dict[str, dict[str, object]] = {
    "jsonld": {
        "title": "The Lantern Road", "authors": ["Ada Marsh"], "rating": 4.01,
        "ratings_count": 1001, "reviews_count": 101, "isbn13": "9781111111113", "pages": 301,
        "format": "Hardcover", "language": "English",
        "series": {"name": "Lantern Cycle", "position": "2"},
        "cover_url": "https://images.example.org/books/1000001-lantern.jpg",
    },
    "next-data": {
        "title": "The Glass Orchard", "authors": ["Bea Lindqvist"], "rating": 4.02,
        "ratings_count": 1002, "reviews_count": 102,
        "description": "A quiet debut.\n\nSecond paragraph, wrapped in the source.\nSame paragraph, new line.",
        "isbn": "1111111112", "isbn13": "9782222222226", "asin": "B0FIXTURE2", "pages": 302,
        "format": "Paperback", "language": "French", "publisher": "Quill & Vane",
        "published": "2019-05-14", "first_published": "1998-02-03", "genres": ["Fantasy", "Mystery"],
        "series": {"name": "Orchard Trilogy", "position": "1"},
        "cover_url": "https://images.example.org/books/1000001-glass.jpg",
    },
    "testid": {
        "title": "The Salt Archive", "authors": ["Cal Okafor"], "rating": 4.03,
        "ratings_count": 1003, "reviews_count": 103,
        "description": "Salt keeps what the sea forgets.\n\nA second paragraph.",
        "isbn": "3333333333", "isbn13": "9783333333339", "asin": "B0TESTID03", "pages": 303,
        "format": "Mass Market Paperback", "language": "German", "publisher": "Saltmarsh Press",
        "published": "2020-03-04", "first_published": "2001-01-05", "genres": ["Science Fiction", "Horror"],
        "series": {"name": "Salt Saga", "position": "3"},
        "cover_url": "https://images.example.org/books/1000001-salt.jpg",
    },
    "legacy": {
        "title": "The Tin Cartographer", "authors": ["Eli Varga", "Gus Pell"], "rating": 4.04,
        "ratings_count": 1004, "reviews_count": 104,
        "description": "Maps drawn in tin last longer than the coasts they show.\n\nA cartographer learns why.",
        "isbn": "0444444444", "isbn13": "9784444444442", "pages": 304, "format": "Paperback",
        "language": "Spanish", "publisher": "Tinworks Press", "published": "2005-08-02",
        "first_published": "1987", "genres": ["Fiction", "Magic", "Fantasy"],
        "series": {"name": "Tin Maps", "position": "4"},
        "cover_url": "https://images.example.org/books/1000001-tin.jpg",
    },
}

# Each field's sources, best first (the module docstring's table, by fixture).
STATS_ORDER = ("jsonld", "next-data", "testid", "legacy")
APOLLO_FIRST = ("next-data", "testid", "legacy", "jsonld")
FIELD_ORDER: dict[str, tuple[str, ...]] = {
    "title": APOLLO_FIRST, "authors": APOLLO_FIRST, "series": APOLLO_FIRST,
    "description": APOLLO_FIRST, "asin": APOLLO_FIRST, "publisher": APOLLO_FIRST,
    "published": APOLLO_FIRST, "first_published": APOLLO_FIRST, "genres": APOLLO_FIRST,
    "rating": STATS_ORDER, "ratings_count": STATS_ORDER, "reviews_count": STATS_ORDER,
    "isbn": STATS_ORDER, "isbn13": STATS_ORDER, "pages": STATS_ORDER, "format": STATS_ORDER,
    "language": STATS_ORDER, "cover_url": STATS_ORDER,
}
LIST_FIELDS = {"authors", "genres"}


def fixture(name: str) -> str:
    return (FIXTURES / f"{name}.html").read_text(encoding="utf-8")


def parse(html: str, url: str = URL) -> dict:
    data = goodreads.parse(html, url)
    assert_contract_keys(data)
    return data


def layered(*names: str) -> str:
    """One page holding the <head> and <body> contents of several fixtures, in order."""
    heads, bodies = [], []
    for name in names:
        text = fixture(name)
        heads.append(re.search(r"<head>(.*)</head>", text, re.S).group(1))
        bodies.append(re.search(r"<body>(.*)</body>", text, re.S).group(1))
    return f"<!DOCTYPE html><html><head>{''.join(heads)}</head><body>{''.join(bodies)}</body></html>"


def edit(html: str, old: str, new: str = "") -> str:
    """html with old (which must be there) replaced: fixture variants stay honest."""
    assert old in html, old
    return html.replace(old, new)


# ---------------------------------------------------------------------------------------
# Contract and fall-through
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", BOOK_FIXTURES)
def test_every_book_fixture_gives_the_contract_keys(name: str) -> None:
    data = parse(fixture(name))
    assert data["kind"] == "goodreads_book"
    assert data["url"] == f"https://www.goodreads.com/book/show/{data['book_id']}"


@pytest.mark.parametrize("layer", LAYERS)
def test_each_single_source_fixture_gives_its_own_values(layer: str) -> None:
    data = parse(fixture(layer))
    for field, value in LAYER_VALUES[layer].items():
        assert data[field] == value, field
    for field in FIELD_ORDER.keys() - LAYER_VALUES[layer].keys():
        assert data[field] == ([] if field in LIST_FIELDS else None), field


@pytest.mark.parametrize("field", sorted(FIELD_ORDER))
def test_field_falls_through_its_sources_in_order(field: str) -> None:
    """With the best k sources of a field removed, the field comes from the next one."""
    providers = [layer for layer in FIELD_ORDER[field] if field in LAYER_VALUES[layer]]
    for dropped in range(len(providers) + 1):
        layers = [layer for layer in LAYERS if layer not in providers[:dropped]]
        if not layers:
            break
        data = parse(layered(*layers))
        expected = LAYER_VALUES[providers[dropped]][field] if dropped < len(providers) else None
        expected = [] if expected is None and field in LIST_FIELDS else expected
        assert data[field] == expected, (field, layers)


def test_all_layers_together_take_each_field_from_its_best_source() -> None:
    data = parse(layered(*LAYERS))
    for field, order in FIELD_ORDER.items():
        best = next(layer for layer in order if field in LAYER_VALUES[layer])
        assert data[field] == LAYER_VALUES[best][field], field


def test_generic_dispatch_decodes_bytes_and_routes_goodreads_urls() -> None:
    data = parsers.parse(fixture("testid").encode("utf-8"), URL, "text/html; charset=utf-8")
    assert data["title"] == "The Salt Archive"


# ---------------------------------------------------------------------------------------
# JSON-LD
# ---------------------------------------------------------------------------------------

def test_jsonld_name_loses_its_series_suffix_which_becomes_the_series() -> None:
    data = parse(fixture("jsonld"))
    assert data["title"] == "The Lantern Road"
    assert data["series"] == {"name": "Lantern Cycle", "position": "2"}


def test_jsonld_isbn_goes_to_isbn13_or_isbn_by_its_length() -> None:
    ten = edit(fixture("jsonld"), '"isbn":"9781111111113"', '"isbn":"111111111X"')
    assert (parse(ten)["isbn"], parse(ten)["isbn13"]) == ("111111111X", None)


def test_jsonld_authors_are_names_of_person_objects_or_strings() -> None:
    html = edit(fixture("jsonld"),
                '[{"@type":"Person","name":"Ada Marsh","url":"https://www.goodreads.com/author/show/11.Ada_Marsh"}]',
                '["Ada Marsh", {"@type":"Person","name":"Ben Ode"}]')
    assert parse(html)["authors"] == ["Ada Marsh", "Ben Ode"]


def test_jsonld_text_is_entity_decoded() -> None:
    html = edit(fixture("jsonld"), '"name":"The Lantern Road (Lantern', '"name":"The Lantern&#39;s Road &amp; More (Lantern')
    assert parse(html)["title"] == "The Lantern's Road & More"


def test_jsonld_string_numbers_and_integer_rating_are_read() -> None:
    data = parse(fixture("several-authors"))
    assert (data["rating"], data["ratings_count"], data["reviews_count"]) == (3.88, 2345, 210)
    five = edit(fixture("jsonld"), '"ratingValue":4.01', '"ratingValue":5')
    assert parse(five)["rating"] == 5.0


# ---------------------------------------------------------------------------------------
# Next.js Apollo cache
# ---------------------------------------------------------------------------------------

def test_apollo_book_is_the_one_whose_legacy_id_is_in_the_url() -> None:
    """The fixture's first Book is another one (2000002): the URL's id picks 1000001."""
    assert parse(fixture("next-data"))["title"] == "The Glass Orchard"
    other = parse(fixture("next-data"), "https://www.goodreads.com/book/show/2000002")
    assert (other["title"], other["book_id"], other["pages"]) == ("A Different Book", "2000002", 9)


def test_apollo_book_falls_back_to_the_root_query_when_the_url_has_no_id() -> None:
    data = parse(fixture("next-data"), "https://www.goodreads.com/")
    assert (data["title"], data["book_id"]) == ("The Glass Orchard", "1000001")


def test_apollo_contributors_keep_authors_only_in_edge_order() -> None:
    assert parse(fixture("next-data"))["authors"] == ["Bea Lindqvist"]  # Tomas Rye translated it


def test_apollo_series_is_the_first_book_series_entry() -> None:
    assert parse(fixture("next-data"))["series"] == {"name": "Orchard Trilogy", "position": "1"}
    omnibus = edit(fixture("next-data"), '{"__typename":"BookSeries","userPosition":"1",'
                   '"series":{"__ref":"Series:kca://series/amzn1.gr.series.v1.ORCHARD"}},')
    assert parse(omnibus)["series"] == {"name": "Orchard Omnibus", "position": "1-3"}


def test_apollo_series_falls_back_to_the_title_complete_suffix() -> None:
    html = edit(fixture("next-data"), '"bookSeries":[', '"bookSeriesGone":[')
    assert parse(html)["series"] == {"name": "Orchard Trilogy", "position": "1"}


def test_apollo_description_html_becomes_text_with_paragraphs() -> None:
    assert parse(fixture("next-data"))["description"] == LAYER_VALUES["next-data"]["description"]


def test_apollo_stripped_description_is_used_when_the_html_one_is_missing() -> None:
    html = re.sub(r'"description":"[^"]*",', "", fixture("next-data"))
    assert parse(html)["description"] == LAYER_VALUES["next-data"]["description"]


def test_apollo_timestamps_are_pacific_midnights_read_as_their_utc_date() -> None:
    data = parse(fixture("next-data"))
    assert (data["published"], data["first_published"]) == ("2019-05-14", "1998-02-03")


def test_apollo_empty_strings_and_nulls_are_missing_values() -> None:
    html = edit(fixture("next-data"), '"publisher":"Quill & Vane "', '"publisher":""')
    html = edit(html, '"numPages":302', '"numPages":null')
    data = parse(html)
    assert (data["publisher"], data["pages"]) == (None, None)


def test_apollo_state_with_wrong_types_loses_only_the_broken_parts() -> None:
    html = edit(fixture("next-data"), '"bookGenres":[', '"bookGenres":7,"x":[')
    html = edit(html, '"details":{"__typename":"BookDetails"', '"details":[],"y":{"__typename":"BookDetails"')
    data = parse(html)
    assert data["genres"] == [] and data["pages"] is None
    assert data["title"] == "The Glass Orchard" and data["authors"] == ["Bea Lindqvist"]


def test_broken_next_data_json_falls_through_to_the_markup() -> None:
    data = parse(fixture("broken-next-data"))
    assert (data["title"], data["authors"], data["rating"]) == ("The Ninth Lock", ["Ines Barra"], 3.5)
    assert (data["ratings_count"], data["reviews_count"], data["format"]) == (12, 1, "Kindle Edition")
    assert data["published"] == "2011-07" and data["first_published"] is None  # "Published July 2011"


# ---------------------------------------------------------------------------------------
# data-testid markup (2022+)
# ---------------------------------------------------------------------------------------

def test_testid_series_link_with_react_comment_splits_into_name_and_position() -> None:
    assert parse(fixture("testid"))["series"] == {"name": "Salt Saga", "position": "3"}


def test_testid_contributors_drop_roles_other_than_author_and_ignore_reviewers() -> None:
    assert parse(fixture("testid"))["authors"] == ["Cal Okafor"]  # not Dee Lune (Illustrator), not "A Reviewer"


def test_testid_buttons_are_not_genres_or_description() -> None:
    data = parse(fixture("testid"))
    assert data["genres"] == ["Science Fiction", "Horror"]
    assert "Show more" not in data["description"]


def test_testid_first_published_line_is_the_work_date() -> None:
    data = parse(edit(fixture("testid"), '<div class="DescListItem"><dt>Published</dt>'
                      '<dd><div class="TruncatedContent__text">March 4, 2020 by Saltmarsh Press</div></dd></div>'))
    assert (data["published"], data["first_published"], data["publisher"]) == (None, "2001-01-05", None)


@pytest.mark.parametrize("line, published", [
    ("Published October 18, 2018", "2018-10-18"),
    ("Expected publication March 4, 2026", "2026-03-04"),
    ("Published 2011", "2011"),
])
def test_testid_published_line_is_this_editions_date(line: str, published: str) -> None:
    html = edit(fixture("testid"), "First published January 5, 2001", line)
    html = edit(html, "March 4, 2020 by Saltmarsh Press", "by Saltmarsh Press")
    data = parse(html)
    assert (data["published"], data["first_published"], data["publisher"]) == (published, None, "Saltmarsh Press")


@pytest.mark.parametrize("text, pages, book_format", [
    ("303 pages, Mass Market Paperback", 303, "Mass Market Paperback"),
    ("1,125 pages, Kindle Edition", 1125, "Kindle Edition"),
    ("Unknown Binding", None, "Unknown Binding"),
    ("1 page, Paperback", 1, "Paperback"),
    ("279 pages", 279, None),
])
def test_testid_pages_format_line_splits_into_pages_and_format(text: str, pages: int | None,
                                                                book_format: str | None) -> None:
    html = re.sub(r'<div class="EditionDetails">.*?</dl></div>', "", fixture("testid"), flags=re.S)
    html = edit(html, ">303 pages, Mass Market Paperback</p>", f">{text}</p>")
    data = parse(html)
    assert (data["pages"], data["format"]) == (pages, book_format)


def test_testid_edition_details_list_gives_isbns_asin_language_and_publisher() -> None:
    data = parse(fixture("testid"))
    assert (data["isbn"], data["isbn13"], data["asin"]) == ("3333333333", "9783333333339", "B0TESTID03")
    assert (data["language"], data["publisher"], data["published"]) == ("German", "Saltmarsh Press", "2020-03-04")


# ---------------------------------------------------------------------------------------
# Legacy markup (pre-2022)
# ---------------------------------------------------------------------------------------

def test_legacy_title_leaves_out_the_nested_series_link() -> None:
    data = parse(fixture("legacy"))
    assert data["title"] == "The Tin Cartographer"
    assert data["series"] == {"name": "Tin Maps", "position": "4"}


def test_legacy_title_is_the_heading_s_page_text_without_its_series_link_whatever_it_says() -> None:
    html = edit(fixture("legacy"), "(Tin Maps #4)", "Tin Maps, book four")  # no "(Series #n)" suffix to cut
    html = edit(html, "The Tin Cartographer", "The Tin <!-- draft --> Cartographer<script>var t = 1;</script>")
    assert parse(html)["title"] == "The Tin Cartographer"


def test_legacy_series_in_its_own_heading_2021_style() -> None:
    html = edit(fixture("legacy"), '<a class="greyText" href="/series/77-tin-maps">\n          (Tin Maps #4)\n</a>')
    series_heading = '<h2 id="bookSeries"><a class="greyText" href="/series/79-tin">(Tin Atlas #0.5)</a></h2>'
    html = edit(html, '<div id="bookAuthors"', series_heading + '<div id="bookAuthors"')
    data = parse(html)
    assert (data["title"], data["series"]) == ("The Tin Cartographer", {"name": "Tin Atlas", "position": "0.5"})


def test_legacy_series_falls_back_to_the_data_box_row() -> None:
    html = edit(fixture("legacy"), '<a class="greyText" href="/series/77-tin-maps">\n          (Tin Maps #4)\n</a>')
    assert parse(html)["series"] == {"name": "Tin Maps", "position": "4"}


def test_legacy_authors_keep_goodreads_authors_and_drop_translators() -> None:
    assert parse(fixture("legacy"))["authors"] == ["Eli Varga", "Gus Pell"]


def test_legacy_counts_come_from_microdata_not_from_the_rating_details_script() -> None:
    data = parse(fixture("legacy"))
    assert (data["rating"], data["ratings_count"], data["reviews_count"]) == (4.04, 1004, 104)


def test_legacy_counts_fall_back_to_the_visible_text_2018_style() -> None:
    html = edit(fixture("legacy"), '<meta itemprop="reviewCount" content="104" />')
    html = edit(html, '<meta itemprop="ratingCount" content="1004" />')
    data = parse(html)
    assert (data["ratings_count"], data["reviews_count"]) == (1004, 104)


def test_legacy_description_is_the_longer_hidden_span() -> None:
    assert parse(fixture("legacy"))["description"] == LAYER_VALUES["legacy"]["description"]


def test_legacy_published_row_gives_edition_date_publisher_and_partial_first_date() -> None:
    data = parse(fixture("legacy"))
    assert (data["published"], data["publisher"], data["first_published"]) == ("2005-08-02", "Tinworks Press", "1987")


def test_legacy_genre_rows_give_the_last_genre_of_each_row_once() -> None:
    assert parse(fixture("legacy"))["genres"] == ["Fiction", "Magic", "Fantasy"]


def test_legacy_kindle_edition_asin_is_not_an_isbn() -> None:
    """2021 Kindle pages: the ASIN row carries itemprop=isbn, and books:isbn says "null"."""
    asin_row = ('<div class="clearFloats"><div class="infoBoxRowTitle">ASIN</div>'
                "<div class=\"infoBoxRowItem\" itemprop='isbn'>B00KINDLE4</div></div>")
    html = re.sub(r'<div class="clearFloats"><div class="infoBoxRowTitle">ISBN</div>.*?</div></div>',
                  asin_row, fixture("legacy"), flags=re.S)
    html = edit(html, 'content="9784444444442"', 'content="null"')
    data = parse(html)
    assert (data["isbn"], data["isbn13"], data["asin"]) == (None, None, "B00KINDLE4")


def test_legacy_id_comes_from_the_canonical_link_not_the_work_og_url() -> None:
    assert parse(fixture("legacy"), "https://www.goodreads.com/")["book_id"] == "1000001"
    no_canonical = re.sub(r'<link rel="canonical"[^>]*>', "", fixture("legacy"))
    assert parse(no_canonical, "https://www.goodreads.com/")["book_id"] is None


def test_og_tags_of_a_book_page_are_the_last_resort() -> None:
    html = re.sub(r'<h1 id="bookTitle".*?</h1>', "", fixture("legacy"), flags=re.S)
    html = re.sub(r'<img id="coverImage"[^>]*>', "", html)
    html = edit(html, '<div class="clearFloats"><div class="infoBoxRowTitle">Series</div>')
    data = parse(html)
    assert data["title"] == "The Tin Cartographer"  # og:title, series suffix cut
    assert data["series"] == {"name": "Tin Maps", "position": "4"}
    assert data["cover_url"] == "https://images.example.org/books/1000001-tin-og.jpg"


# ---------------------------------------------------------------------------------------
# Several contributors
# ---------------------------------------------------------------------------------------

def test_several_authors_from_apollo_in_edge_order_without_translator_or_illustrator() -> None:
    assert parse(fixture("several-authors"))["authors"] == ["Petra Vos", "Jun Arai"]


def test_several_authors_from_markup_when_apollo_is_gone() -> None:
    html = re.sub(r'<script id="__NEXT_DATA__".*?</script>', "", fixture("several-authors"), flags=re.S)
    assert parse(html)["authors"] == ["Petra Vos", "Jun Arai"]


def test_jsonld_authors_are_the_last_resort_because_they_carry_no_roles() -> None:
    html = re.sub(r'<script id="__NEXT_DATA__".*?</script>', "", fixture("several-authors"), flags=re.S)
    html = re.sub(r'<div class="BookPageMetadataSection__contributor">.*?</div></h3></div>', "", html, flags=re.S)
    assert parse(html)["authors"] == ["Petra Vos", "Jun Arai", "Lea Moreau", "Sam Odum"]


# ---------------------------------------------------------------------------------------
# Book id and URL
# ---------------------------------------------------------------------------------------

def test_book_id_from_the_page_wins_over_the_url() -> None:
    data = parse(fixture("several-authors"), URL)  # the page's Book is 1000007
    assert (data["book_id"], data["url"]) == ("1000007", "https://www.goodreads.com/book/show/1000007")


def test_book_id_from_an_og_url_of_a_book() -> None:
    og_url = '<meta property="og:url" content="https://www.goodreads.com/book/show/555-x"/>'
    html = edit(fixture("jsonld"), "</head>", og_url + "</head>")
    assert parse(html, "https://www.goodreads.com/")["book_id"] == "555"


@pytest.mark.parametrize("url, book_id", [
    ("https://www.goodreads.com/book/show/54984.La_catedral_del_mar", "54984"),
    ("https://www.goodreads.com/book/show/8239301", "8239301"),
    ("https://www.goodreads.com/es/book/show/42-x?from_search=true", "42"),
    ("https://www.goodreads.com/", None),
    ("not a url", None),
])
def test_book_id_falls_back_to_the_url(url: str, book_id: str | None) -> None:
    data = parse(fixture("jsonld"), url)
    assert data["book_id"] == book_id
    assert data["url"] == (f"https://www.goodreads.com/book/show/{book_id}" if book_id else None)


# ---------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", REFUSED_FIXTURES)
def test_error_and_sign_in_pages_are_refused(name: str) -> None:
    with pytest.raises(ParseError):
        goodreads.parse(fixture(name), URL)


@pytest.mark.parametrize("html", [
    "", "   ", "<html><body><p>Hello</p></body></html>", "not html at all", "{}",
    '<script type="application/ld+json">{"@type":"Person","name":"Ada"}</script>',
    '<meta property="og:type" content="website"><meta property="og:title" content="Goodreads">',
])
def test_pages_without_any_book_title_are_refused(html: str) -> None:
    with pytest.raises(ParseError):
        goodreads.parse(html, URL)


def test_error_markers_do_not_refuse_a_page_that_has_book_data() -> None:
    html = edit(fixture("testid"), "The Salt Archive by Cal Okafor | Goodreads", "Page not found")
    assert parse(html)["title"] == "The Salt Archive"


# ---------------------------------------------------------------------------------------
# Value rules
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("July 12, 2011", "2011-07-12"),
    ("September 28th 2004", "2004-09-28"),
    ("April 8th 1949", "1949-04-08"),
    ("Sept. 3rd 2013", "2013-09-03"),
    ("1 January 2001", "2001-01-01"),
    ("November 1968", "1968-11"),
    ("July 2011", "2011-07"),
    ("2011", "2011"),
    ("2018-10-18", "2018-10-18"),
    ("February 30, 2001", "2001-02"),  # no such day: only the month is sure
    ("Published by Nobody", None),
    ("", None),
])
def test_dates_are_as_precise_as_the_page(text: str, expected: str | None) -> None:
    assert goodreads._parse_date(text) == expected


@pytest.mark.parametrize("value, expected", [
    (1539846000000, "2018-10-18"),  # 07:00 UTC = midnight PDT
    (1141200000000, "2006-03-01"),  # 08:00 UTC = midnight PST
    (-144694800000, "1965-06-01"),
    ("1557817200000", "2019-05-14"),
    (10 ** 30, None), (float("nan"), None), (True, None), ("soon", None), (None, None),
])
def test_epoch_milliseconds_become_a_date(value: object, expected: str | None) -> None:
    assert goodreads._date_from_ms(value) == expected


@pytest.mark.parametrize("text, series", [
    ("A Song of Ice and Fire #5", {"name": "A Song of Ice and Fire", "position": "5"}),
    ("(Earthsea Cycle #1)", {"name": "Earthsea Cycle", "position": "1"}),
    ("A Song of Ice and Fire, #1-3", {"name": "A Song of Ice and Fire", "position": "1-3"}),
    ("Discworld", {"name": "Discworld", "position": None}),
    ("", None),
])
def test_series_text_splits_into_name_and_position(text: str, series: dict | None) -> None:
    assert goodreads._series_from_text(text) == series


@pytest.mark.parametrize("title, series, expected", [
    ("A Dance with Dragons (A Song of Ice and Fire, #5)", None, "A Dance with Dragons"),
    ("A Wizard of Earthsea (Earthsea Cycle #1)", None, "A Wizard of Earthsea"),
    ("Mort (Discworld)", {"name": "Discworld", "position": None}, "Mort"),
    ("Hamlet (Folger Shakespeare Library)", None, "Hamlet (Folger Shakespeare Library)"),
    ("1984", None, "1984"),
])
def test_series_suffix_is_cut_from_titles(title: str, series: dict | None, expected: str) -> None:
    assert goodreads._strip_series(title, series) == expected


@pytest.mark.parametrize("role, is_author", [
    (None, True), ("", True), ("Author", True), ("(Goodreads Author)", True), ("\u00a0(Author, Illustrator)", True),
    ("Translator", False), ("(Illustrator)", False), ("Editor", False), ("Narrator", False), ("Foreword", False),
])
def test_author_roles(role: str | None, is_author: bool) -> None:
    assert goodreads._is_author_role(role) is is_author


@pytest.mark.parametrize("html, text", [
    ("One.<br />Two.", "One.\nTwo."),
    ("One.<br><br>Two.", "One.\n\nTwo."),
    ("<p>One,\n   still one.</p><p>Two.</p>", "One, still one.\n\nTwo."),
    ("<i>Tom &amp; Jerry</i> <!-- note --> ran<script>x()</script>.", "Tom & Jerry ran."),
    ("<br><br><br><br>Padded<br><br><br>", "Padded"),
    ("", None),
])
def test_description_html_becomes_plain_text(html: str, text: str | None) -> None:
    assert description.html_text(html) == text


def test_placeholder_covers_are_not_covers() -> None:
    html = edit(fixture("jsonld"), "https://images.example.org/books/1000001-lantern.jpg",
                "https://s.gr-assets.com/assets/nophoto/book/111x148.png")
    assert parse(html)["cover_url"] is None


# ---------------------------------------------------------------------------------------
# Librarian's note
# ---------------------------------------------------------------------------------------

CLOCK_BLURB = "The harbour clock has stopped.\n\nA keeper goes looking for the hour."


def test_librarian_note_leading_the_apollo_html_description_is_taken_off_it() -> None:
    data = parse(fixture("note-apollo"))
    assert data["librarian_note"] == "Alternate cover edition of ISBN 9780000000000"
    assert data["description"] == CLOCK_BLURB


def test_librarian_note_of_the_stripped_description_is_its_label_line_and_the_line_after() -> None:
    data = parse(fixture("note-apollo-stripped"))
    assert data["librarian_note"] == "Also published as:\nThe Harbour Clock"
    assert data["description"] == "The harbour clock has stopped.\nA keeper goes looking for the hour."


def test_librarian_note_in_a_leading_bold_ends_where_the_bold_ends() -> None:
    """data-testid markup, the note running on into the blurb on one line."""
    data = parse(fixture("note-testid"))
    assert data["librarian_note"] == "This is an alternate cover edition for ASIN B0NOTE0003."
    assert data["description"] == "Salt keeps what the sea forgets.\n\nA second paragraph."


def test_librarian_note_line_of_the_legacy_description() -> None:
    data = parse(fixture("note-legacy"))
    assert data["librarian_note"] == "Previously published as The Tin Cartographer"
    assert data["description"] == LAYER_VALUES["legacy"]["description"]


def test_a_description_that_only_mentions_note_words_stays_whole() -> None:
    data = parse(fixture("note-mention"))
    assert data["librarian_note"] is None
    assert data["description"] == ("Nobody in Wrenfield reads the last page.\n\nFirst a radio serial, the story was "
                                   "also published as a pamphlet in 1950. Note: the map is wrong.\n\n"
                                   "Also published as The Wren Letters.")


def test_a_description_that_is_only_a_note_becomes_none() -> None:
    html = edit(fixture("note-apollo"), "<br /><br />The harbour clock has stopped.<br /><br />A keeper goes looking "
                "for the hour.")
    html = edit(html, "\\r\\n\\r\\nThe harbour clock has stopped.\\r\\n\\r\\nA keeper goes looking for the hour.")
    data = parse(html)
    assert (data["description"], data["librarian_note"]) == (None, "Alternate cover edition of ISBN 9780000000000")


def test_every_fixture_without_a_note_says_none() -> None:
    for name in (*LAYERS, "several-authors", "broken-next-data", "next-2025"):
        assert parse(fixture(name))["librarian_note"] is None, name


@pytest.mark.parametrize("note", [
    "Alternate cover edition of ASIN B00XXXXXXX",
    "alternative cover edition for isbn 9780000000000.",
    "This is an alternate cover edition for ISBN 9780000000000",
    "ACE for ISBN 9780000000000",
    "ACE: 9780000000000",
    "(See alternate cover edition here.)",
    "Librarian's note: an alternate cover edition can be found here.",
    "Librarian\u2019s Note - duplicate record",
    "Note: this is the Kindle edition.",
    "Previously published as The Quiet Orchard",
    "Also published as: The Quiet Orchard",
    "Kindle edition of ASIN B00XXXXXXX",
    "Edition of 1923, with the original plates",
])
def test_librarian_note_phrasings_open_a_note_line(note: str) -> None:
    assert description.split_librarian_note(f"{note}\n\nThe blurb.") == ("The blurb.", note)


def test_note_paragraphs_one_after_another_are_one_note() -> None:
    text = "Alternate cover edition of ISBN 9780000000000\n\nSee alternate cover edition here.\n\nThe blurb."
    note = "Alternate cover edition of ISBN 9780000000000\n\nSee alternate cover edition here."
    assert description.split_librarian_note(text) == ("The blurb.", note)


@pytest.mark.parametrize("text", [
    "Ace of Spades is a thriller about two students.",  # the word, not the librarians' ACE
    "Notes from a drowned city.",
    "The first edition of this book sold out in a week.",
    "A thriller, also published as a radio play.",
    "Alsop published as a poet.",
    "Note: " + "a long first paragraph that is the blurb itself, " * 8,  # longer than any note
    "Published as a serial in 1890, then as a book.",
])
def test_text_that_does_not_open_with_a_note_phrasing_is_all_description(text: str) -> None:
    assert description.split_librarian_note(f"{text}\nMore.") == (f"{text}\nMore.", None)


# ---------------------------------------------------------------------------------------
# Explain mode: which source gave each field
# ---------------------------------------------------------------------------------------

EXPLAIN_LAYERS = ("json-ld", "apollo", "data-testid", "legacy-markup", "meta", "url")
EXPLAIN_VALUE = re.compile(r"^(?P<layer>" + "|".join(EXPLAIN_LAYERS) + r")(?:: \S.*)?$")
LAYER_OF_FIXTURE = {"jsonld": "json-ld", "next-data": "apollo", "testid": "data-testid", "legacy": "legacy-markup"}


def explained(html: str, url: str = URL) -> tuple[dict, dict[str, str]]:
    """(data, its explain dict); the data is exactly what a parse without explain gives."""
    data = goodreads.parse(html, url, explain=True)
    explain = data.pop("explain")
    assert data == parse(html, url)
    return data, explain


def layer(source: str) -> str:
    match = EXPLAIN_VALUE.match(source)
    assert match, source
    return match.group("layer")


@pytest.mark.parametrize("name", (*BOOK_FIXTURES, "next-2025"))
def test_explain_names_a_source_for_exactly_the_fields_that_have_a_value(name: str) -> None:
    data, explain = explained(fixture(name))
    filled = {field for field, value in data.items() if field != "kind" and value not in (None, "", [])}
    assert set(explain) == filled
    assert all(layer(source) for source in explain.values())


@pytest.mark.parametrize("field", sorted(FIELD_ORDER))
def test_explain_names_the_layer_each_field_fell_through_to(field: str) -> None:
    """The fall-through above, once more: the layer explain names is the fixture that gave the value."""
    providers = [name for name in FIELD_ORDER[field] if field in LAYER_VALUES[name]]
    for dropped in range(len(providers)):
        data, explain = explained(layered(*[name for name in LAYERS if name not in providers[:dropped]]))
        assert data[field] == LAYER_VALUES[providers[dropped]][field], field
        assert layer(explain[field]) == LAYER_OF_FIXTURE[providers[dropped]], (field, explain[field])


def test_explain_on_a_jsonld_and_apollo_page_names_each_path() -> None:
    _, explain = explained(fixture("next-2025"), "https://www.goodreads.com/book/show/1000009")
    assert explain["rating"] == "json-ld: Book.aggregateRating.ratingValue"
    assert explain["pages"] == "json-ld: Book.numberOfPages"
    assert explain["title"] == "apollo: Book.title"
    assert explain["asin"] == "apollo: Book.details.asin"
    assert explain["first_published"] == "apollo: Work.details.publicationTime"
    assert explain["book_id"] == "apollo: Book.legacyId"
    assert explain["url"] == "apollo: Book.legacyId (url built from book_id)"


def test_explain_on_markup_pages_names_the_markup() -> None:
    _, testid = explained(fixture("testid"))
    assert testid["title"] == "data-testid: h1[data-testid=bookTitle]"
    assert testid["isbn13"] == "data-testid: Book details <dt>isbn</dt>"
    _, legacy = explained(fixture("legacy"))
    assert legacy["title"] == "legacy-markup: h1#bookTitle"
    assert legacy["published"] == "legacy-markup: #details Published row"


def test_explain_meta_and_url_layers() -> None:
    html = re.sub(r'<h1 id="bookTitle".*?</h1>', "", fixture("legacy"), flags=re.S)
    _, explain = explained(re.sub(r'<img id="coverImage"[^>]*>', "", html), "https://www.goodreads.com/")
    assert explain["title"] == "meta: og:title (series suffix cut)"
    assert explain["cover_url"] == "meta: og:image"
    assert explain["book_id"] == "meta: link rel=canonical"
    _, explain = explained(fixture("jsonld"))
    assert explain["book_id"] == "url: /book/show/<id>"
    assert explain["url"] == "url: /book/show/<id> (url built from book_id)"
    assert explain["series"] == "json-ld: Book.name (its series suffix)"


@pytest.mark.parametrize("name, source", [
    ("note-apollo", "apollo: Book.description"),
    ("note-apollo-stripped", "apollo: Book.description"),
    ("note-testid", "data-testid: [data-testid=description] .Formatted, [data-testid=description]"),
    ("note-legacy", "legacy-markup: #description"),
])
def test_explain_derives_the_librarian_note_from_the_description_source(name: str, source: str) -> None:
    _, explain = explained(fixture(name))
    assert (explain["description"], explain["librarian_note"]) == (source, source + " (its leading librarian's note)")


def test_explain_keeps_the_note_source_when_the_description_was_all_note() -> None:
    html = re.sub(r'"description[^"]*":"[^"]*"', '"description":"<i>Alternate cover edition of ASIN B0000000X1</i>"',
                  fixture("note-apollo"))
    data, explain = explained(html)
    assert data["description"] is None and "description" not in explain
    assert explain["librarian_note"] == "apollo: Book.description (its leading librarian's note)"


def test_explain_off_adds_nothing_on_either_entry() -> None:
    assert "explain" not in goodreads.parse(fixture("next-2025"), URL)
    assert "explain" not in goodreads.parse_limited(fixture("next-2025"), URL)
    assert "explain" in goodreads.parse_limited(fixture("next-2025"), URL, explain=True)


# ---------------------------------------------------------------------------------------
# Robustness: mutilated fixtures give the full key set or ParseError, quickly
# ---------------------------------------------------------------------------------------

ALL_FIXTURES = {name: fixture(name) for name in (*BOOK_FIXTURES, *REFUSED_FIXTURES)}
TAG = re.compile(r"<[^>]*>")
SCRIPT_BODY = re.compile(r"(<script[^>]*>)(.*?)(</script>)", re.S)
JSON_NOISE = st.sampled_from(list('{}[]":,\\0-e.n ') + ["null", "true", '{"__ref":"ROOT_QUERY"}', "\u2028", "\x00"])
MAX_SECONDS = 5
ROBUSTNESS = settings(max_examples=60, deadline=timedelta(seconds=MAX_SECONDS), database=None,
                      suppress_health_check=[HealthCheck.too_slow])


def assert_keys_or_refusal(html: str, url: str = URL) -> None:
    start = time.process_time()  # CPU time: what a pathology costs, whatever else the box runs
    try:
        data = goodreads.parse(html, url)
    except ParseError:
        return
    finally:
        assert time.process_time() - start < MAX_SECONDS
    assert_contract_keys(data)
    assert isinstance(data["title"], str) and data["title"]
    assert all(isinstance(v, str) and v for v in data["authors"] + data["genres"])
    assert data["series"] is None or isinstance(data["series"].get("name"), str)
    assert data["rating"] is None or isinstance(data["rating"], float)
    for field in ("ratings_count", "reviews_count", "pages"):
        assert data[field] is None or type(data[field]) is int
    json.dumps(data)  # storable as is


@st.composite
def truncated(draw: st.DrawFn) -> str:
    text = ALL_FIXTURES[draw(st.sampled_from(sorted(ALL_FIXTURES)))]
    return text[: draw(st.integers(0, len(text)))]


@st.composite
def tags_removed(draw: st.DrawFn) -> str:
    text = ALL_FIXTURES[draw(st.sampled_from(sorted(ALL_FIXTURES)))]
    spans = [m.span() for m in TAG.finditer(text)]
    doomed = draw(st.sets(st.integers(0, len(spans) - 1), max_size=len(spans)))
    for index in sorted(doomed, reverse=True):
        start, end = spans[index]
        text = text[:start] + text[end:]
    return text


@st.composite
def json_corrupted(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(["jsonld", "next-data", "several-authors", "soft-404"]))
    text = ALL_FIXTURES[name]
    scripts = list(SCRIPT_BODY.finditer(text))
    match = scripts[draw(st.integers(0, len(scripts) - 1))]
    body = match.group(2)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(body)))
        cut = draw(st.integers(0, 3))
        body = body[:at] + draw(JSON_NOISE) + body[at + cut:]
    return text[: match.start(2)] + body + text[match.end(2):]


@st.composite
def junk_inserted(draw: st.DrawFn) -> str:
    text = ALL_FIXTURES[draw(st.sampled_from(sorted(ALL_FIXTURES)))]
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(max_size=40)) + text[at:]
    return text


@ROBUSTNESS
@given(truncated())
def test_truncated_fixtures(html: str) -> None:
    assert_keys_or_refusal(html)


@ROBUSTNESS
@given(tags_removed())
def test_fixtures_with_random_tags_removed(html: str) -> None:
    assert_keys_or_refusal(html)


@ROBUSTNESS
@given(json_corrupted())
def test_fixtures_with_corrupted_json(html: str) -> None:
    assert_keys_or_refusal(html)


@ROBUSTNESS
@given(junk_inserted(), st.sampled_from([URL, "https://www.goodreads.com/book/show/2000002", "", "http://[::1"]))
def test_fixtures_with_junk_inserted_and_odd_urls(html: str, url: str) -> None:
    assert_keys_or_refusal(html, url)


@ROBUSTNESS
@given(st.text(st.characters(exclude_categories=()), max_size=3000))  # lone surrogates too
def test_arbitrary_text(html: str) -> None:
    assert_keys_or_refusal(html)


def test_lone_surrogates_are_replaced_not_fatal() -> None:
    assert parse('<h1 data-testid="bookTitle">Broken \ud800 text</h1>')["title"] == "Broken \ufffd text"


@pytest.mark.parametrize("html", [
    "<div>" * 20000 + '<h1 data-testid="bookTitle">Deep</h1>',
    '<h1 data-testid="bookTitle">Wide</h1>' + '<b class="elementList">x</b>' * 20000,
    '<h1 data-testid="bookTitle">Json</h1><script id="__NEXT_DATA__">' + "[" * 100000 + "</script>",
    "<" * 200000,
])
def test_huge_junk_pages(html: str) -> None:
    assert_keys_or_refusal(html)
