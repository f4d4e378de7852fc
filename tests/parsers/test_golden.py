"""Every tests/golden/<slug>.json against the real saved page it names.

A golden file is written and checked by hand against the page (never copied from the
parser's output). Its keys:
  page, url, content_type (optional): which saved page, under which URL and header
  raises: "ParseError" when the page must be refused (a soft 404, say)
  expect: {field: exact value} for the fields given
  expect_contains: {field: substring} for long text fields
  headlines: {"first": [...] the exact leading items, every key, sub-links included;
              "include": [...] items anywhere, compared on the keys given;
              "min_count": n, "exclude_titles": [...] never present}
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import parsers
from errors import ParseError
from tests.pages import read_page
from tests.parsers.contract import assert_contract_keys

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden"
GOLDEN_FILES = sorted(GOLDEN_DIR.glob("*.json"))


@pytest.mark.parametrize("golden_path", GOLDEN_FILES, ids=[p.stem for p in GOLDEN_FILES])
def test_golden_page(golden_path: Path) -> None:
    golden = json.loads(golden_path.read_text())
    body = read_page(golden["page"])
    if golden.get("raises"):
        with pytest.raises(ParseError):
            parsers.parse(body, golden["url"], golden.get("content_type"))
        return
    data = parsers.parse(body, golden["url"], golden.get("content_type"))
    assert_contract_keys(data)
    for field, value in golden.get("expect", {}).items():
        assert data[field] == value, field
    for field, fragment in golden.get("expect_contains", {}).items():
        assert fragment in (data[field] or ""), field
    if "headlines" in golden:
        check_headlines(data["headlines"], golden["headlines"])


def check_headlines(headlines: list[dict], expected: dict) -> None:
    first = expected.get("first", [])
    assert headlines[: len(first)] == first
    for item in expected.get("include", []):
        assert any(item == {key: headline[key] for key in item} for headline in headlines), item
    assert len(headlines) >= expected.get("min_count", 1)
    titles = {h["title"] for h in headlines}
    assert not titles & set(expected.get("exclude_titles", []))
    urls = [h["url"] for h in headlines]
    assert len(urls) == len(set(urls)), "headlines must be de-duplicated by URL"
