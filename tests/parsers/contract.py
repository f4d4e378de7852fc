"""The data keys each kind promises (DESIGN.md "Contracts"), shared by parser tests."""
from __future__ import annotations

CONTRACT_KEYS = {
    "goodreads_book": {
        "kind", "book_id", "title", "authors", "rating", "ratings_count", "reviews_count",
        "description", "librarian_note", "isbn", "isbn13", "asin", "pages", "format", "language", "publisher",
        "published", "first_published", "genres", "series", "cover_url", "url",
    },
    "news_headlines": {"kind", "site", "headlines"},
    "page": {
        "kind", "title", "description", "site_name", "image", "author", "authors", "published",
        "canonical_url", "type", "language", "word_count",
    },
}


def assert_contract_keys(data: dict) -> None:
    assert data["kind"] in CONTRACT_KEYS, data.get("kind")
    assert set(data) == CONTRACT_KEYS[data["kind"]]


HEADLINE_ITEM_KEYS = {"title", "url", "url_as_linked", "kicker", "summary", "image", "section", "position", "sublink"}
OPTIONAL_TEXT_KEYS = ("url_as_linked", "kicker", "summary", "image", "section")


def assert_headline_item(item: dict, position: int) -> None:
    """One news headline item: every key present, the page position, a title and absolute URLs."""
    assert set(item) == HEADLINE_ITEM_KEYS
    assert item["title"] and item["url"].startswith("http")
    assert item["position"] == position and isinstance(item["sublink"], bool)
    assert all(item[key] is None or (isinstance(item[key], str) and item[key]) for key in OPTIONAL_TEXT_KEYS)
    assert item["url_as_linked"] != item["url"]
    assert item["image"] is None or item["image"].startswith("http")
