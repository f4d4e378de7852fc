"""The Goodreads fast path: Next.js pages answered from their structured data, no tree built.

Every test compares against the full path, where each field reads all of its sources in
order (Page.state_answers forced to False), and watches whether the page's tree is built
(goodreads.build_document called). Real saved pages are used when present.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest

import parsers
from errors import ParseError
from parsers import goodreads
from tests.pages import manifest, read_page
from tests.parsers.contract import assert_contract_keys

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "goodreads"
URL = "https://www.goodreads.com/book/show/1000009-the-copper-meridian"
NEXT_DATA = re.compile(r'<script id="__NEXT_DATA__".*?</script>', re.S)
JSONLD = re.compile(r'<script type="application/ld\+json">.*?</script>', re.S)


def fixture(name: str = "next-2025") -> str:
    return (FIXTURES / f"{name}.html").read_text(encoding="utf-8")


def edit(html: str, old: str, new: str = "") -> str:
    assert old in html, old
    return html.replace(old, new)


@contextmanager
def tree_builds() -> Iterator[mock.MagicMock]:
    """Counts the builds of a page's tree during the block."""
    with mock.patch.object(goodreads, "build_document", wraps=goodreads.build_document) as build:
        yield build


def parse(html: str, url: str = URL) -> tuple[dict, bool]:
    """(data, whether the page's tree was built)."""
    with tree_builds() as build:
        data = goodreads.parse(html, url)
    assert_contract_keys(data)
    return data, build.called


def parse_full(html: str, url: str = URL) -> dict:
    """The full path: no field trusts the Apollo state to have the last word."""
    with mock.patch.object(goodreads.Page, "state_answers", return_value=False):
        return goodreads.parse(html, url)


# ---------------------------------------------------------------------------------------
# The committed modern fixture
# ---------------------------------------------------------------------------------------

def test_modern_fixture_is_parsed_without_its_tree_and_as_the_full_path_parses_it() -> None:
    data, built = parse(fixture())
    assert not built
    assert data == parse_full(fixture())
    assert (data["title"], data["authors"], data["asin"]) == ("The Copper Meridian", ["Rosa Tamm"], "B0COPPER09")
    assert data["series"] == {"name": "Meridian Quartet", "position": "2"}


def test_the_full_path_builds_the_tree_so_the_spy_can_see_it() -> None:
    with tree_builds() as build:
        parse_full(fixture())  # isbn and isbn13 are null in the state: the markup is read
    assert build.called


def test_the_modern_fixture_markup_alone_gives_the_same_record() -> None:
    """The fixture is honest: its markup says what its structured data says."""
    markup_only = JSONLD.sub("", NEXT_DATA.sub("", fixture()))
    data, built = parse(markup_only)
    assert built and data == parse(fixture())[0]


def test_key_held_as_null_is_answered_by_the_state_not_the_markup() -> None:
    """The rule itself: Book.details holds "asin": null, so the ASIN row is not read."""
    data, built = parse(edit(fixture(), '"asin":"B0COPPER09"', '"asin":null'))
    assert (data["asin"], built) == (None, False)


def test_field_whose_key_the_book_lacks_still_comes_from_the_markup() -> None:
    data, built = parse(edit(fixture(), '"asin":"B0COPPER09",'))
    assert (data["asin"], built) == ("B0COPPER09", True)


@pytest.mark.parametrize("old, new, field, value", [
    ('"bookGenres":[', '"bookGenresGone":[', "genres", ["Fantasy", "Adventure"]),
    ('"description":"A surveyor', '"blurb":"A surveyor', "description",
     "A surveyor walks the copper line.\n\nNobody asked her why."),  # the stripped twin still answers
    ('"publisher":"Lamplight Editions",', "", "publisher", "Lamplight Editions"),
    ('"stats":{', '"statsGone":{', "ratings_count", 5120),  # JSON-LD answers first anyway
])
def test_missing_keys_fall_through_like_the_full_path(old: str, new: str, field: str, value: object) -> None:
    html = edit(fixture(), old, new)
    data, _ = parse(html)
    assert data[field] == value
    assert data == parse_full(html)


def test_without_the_work_the_rule_is_off_and_the_markup_counts() -> None:
    html = edit(JSONLD.sub("", fixture()), '"work":{"__ref":"Work:kca://work/amzn1.gr.work.v1.COPPERWORK"}', '"x":1')
    data, built = parse(html)
    assert built
    assert (data["rating"], data["ratings_count"], data["first_published"]) == (4.21, 5120, "2019-09-09")
    assert (data["isbn"], data["asin"]) == (None, "B0COPPER09")  # Book fields: markup read too


def test_legacy_and_markup_only_pages_build_the_tree() -> None:
    for name in ("legacy", "testid", "jsonld"):
        assert parse(fixture(name), "https://www.goodreads.com/book/show/1000001")[1], name


def test_refused_pages_build_the_tree_to_look_for_error_markers() -> None:
    with tree_builds() as build, pytest.raises(ParseError):
        goodreads.parse(fixture("soft-404"), URL)
    assert build.called


def test_a_tree_that_cannot_be_built_refuses_the_page_that_needs_it() -> None:
    with mock.patch.object(goodreads, "build_document", side_effect=ValueError("boom")):
        with pytest.raises(ParseError, match="unreadable page"):
            goodreads.parse(fixture("testid"), URL)
        assert goodreads.parse(fixture(), URL)["title"] == "The Copper Meridian"  # never needed it


def test_parsers_parse_hands_goodreads_limited_text_and_gets_the_same_record() -> None:
    assert parsers.PARSERS["goodreads"] is goodreads.parse_limited
    assert parsers.parse(fixture().encode("utf-8"), URL) == goodreads.parse(fixture(), URL)


def test_lone_surrogates_in_structured_data_are_replaced_on_both_entries() -> None:
    html = edit(fixture(), '"title":"The Copper Meridian"', '"title":"The Copper \ud800Meridian"')
    assert goodreads.parse(html, URL)["title"] == "The Copper \ufffdMeridian"
    assert parsers.parse(html, URL)["title"] == "The Copper \ufffdMeridian"


# ---------------------------------------------------------------------------------------
# Real saved pages (skipped without them)
# ---------------------------------------------------------------------------------------

def goodreads_pages() -> list[dict]:
    return [entry for entry in manifest() if entry.get("kind") == "goodreads_book"]


def test_real_modern_pages_are_parsed_without_their_tree_as_the_full_path_parses_them() -> None:
    modern = [e for e in goodreads_pages() if re.fullmatch(r"goodreads-next-\d{4}", e["layout"])]
    assert len(modern) >= 5
    for entry in modern:
        html = read_page(entry["file"]).decode("utf-8")
        data, built = parse(html, entry["url"])
        assert not built, entry["file"]
        assert data == parse_full(html, entry["url"]), entry["file"]


def test_real_legacy_and_soft_404_pages_build_the_tree() -> None:
    others = [e for e in goodreads_pages() if not re.fullmatch(r"goodreads-next-\d{4}", e["layout"])]
    assert len(others) >= 3
    for entry in others:
        with tree_builds() as build:
            try:
                goodreads.parse(read_page(entry["file"]).decode("utf-8"), entry["url"])
            except ParseError:
                pass
        assert build.called, entry["file"]


@pytest.mark.parametrize("failure", [MemoryError, ValueError])
def test_running_out_of_memory_reaches_the_worker_while_a_broken_tree_refuses_the_page(failure: type) -> None:
    """A MemoryError is the process's trouble, not the page's: the in-process worker must see
    it (it fails the job and recycles itself); any other tree failure is a ParseError."""
    with mock.patch.object(goodreads, "build_document", side_effect=failure("tree")):
        with pytest.raises(MemoryError if failure is MemoryError else ParseError):
            parsers.parse(fixture("legacy"), "https://www.goodreads.com/book/show/1")
