"""The data keys each kind promises (DESIGN.md "Contracts"), shared by parser tests."""
from __future__ import annotations

CONTRACT_KEYS = {
    "goodreads_book": {
        "kind", "book_id", "title", "authors", "rating", "ratings_count", "reviews_count",
        "description", "isbn", "isbn13", "asin", "pages", "format", "language", "publisher",
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
