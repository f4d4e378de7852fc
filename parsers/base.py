"""Helpers every parser shares: building the tree, structured data, meta tags, text, URLs.

Pure functions only: no network, no Redis, no clock.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

from bs4 import BeautifulSoup, Tag

# lxml builds the tree faster than html.parser on large pages (measured in bench/).
TREE_BUILDER = "lxml"
WHITESPACE = re.compile(r"\s+")


def make_soup(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, TREE_BUILDER)


def clean_text(text: str | None) -> str | None:
    """Collapse runs of whitespace; None for empty text."""
    if text is None:
        return None
    text = WHITESPACE.sub(" ", text).strip()
    return text or None


def node_text(node: Tag | None) -> str | None:
    return clean_text(node.get_text(" ")) if node is not None else None


def load_json(text: str | None) -> object | None:
    """json.loads that answers None for broken or empty JSON instead of raising."""
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def jsonld_objects(soup: BeautifulSoup) -> Iterator[dict]:
    """Every JSON-LD object on the page, flattening lists and @graph containers."""
    for script in soup.find_all("script", type=re.compile(r"^\s*application/ld\+json", re.I)):
        yield from _flatten_jsonld(load_json(script.string or script.get_text()))


def _flatten_jsonld(value: object) -> Iterator[dict]:
    if isinstance(value, list):
        for item in value:
            yield from _flatten_jsonld(item)
    elif isinstance(value, dict):
        yield value
        if isinstance(value.get("@graph"), list):
            yield from _flatten_jsonld(value["@graph"])


def jsonld_types(obj: dict) -> set[str]:
    kinds = obj.get("@type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return {k.split("/")[-1].lower() for k in kinds if isinstance(k, str)}


def first_jsonld(soup: BeautifulSoup, *types: str) -> dict | None:
    wanted = {t.lower() for t in types}
    return next((obj for obj in jsonld_objects(soup) if jsonld_types(obj) & wanted), None)


def meta_content(soup: BeautifulSoup, *keys: str) -> str | None:
    """The first non-empty <meta> content whose property, name or itemprop is one of keys."""
    for key in keys:
        for attr in ("property", "name", "itemprop"):
            tag = soup.find("meta", attrs={attr: re.compile(rf"^{re.escape(key)}$", re.I)})
            value = clean_text(tag.get("content")) if tag is not None else None
            if value:
                return value
    return None


def absolute_url(href: str | None, base: str) -> str | None:
    """href made absolute against base; None for empty, javascript: or mailto: links."""
    href = (href or "").strip()
    if not href or href.startswith("#"):
        return None
    url = urljoin(base, href)
    return url if urlsplit(url).scheme in ("http", "https") else None


def to_int(value: object) -> int | None:
    """An int from 1,234 / "1 234 ratings" / 12.0; None when there is no number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    digits = re.sub(r"[^\d]", "", str(value).split(".")[0])
    return int(digits) if digits else None


def to_float(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    match = re.search(r"\d+(?:[.,]\d+)?", str(value))
    return float(match.group().replace(",", ".")) if match else None
