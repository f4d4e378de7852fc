"""explain: each parser's field sources, through parsers.parse and the parse-file command."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import parsers
from config import PROJECT_ROOT

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# One fixture per parser, with the URL it is parsed under and a field whose source is known.
PAGES = [
    ("goodreads/jsonld.html", "https://www.goodreads.com/book/show/1000001-the-glass-orchard", "title", "json-ld"),
    ("news/guardian-2017.html", "https://www.theguardian.com/international", "headlines", "site-rule"),
    ("generic/jsonld-graph.html", "https://harbour.example/news/2024/03/storm-explained", "title", "json-ld"),
]


@pytest.mark.parametrize("name, url, field, layer", PAGES)
def test_explain_through_the_router_adds_one_key_and_changes_nothing(name: str, url: str, field: str,
                                                                      layer: str) -> None:
    body = (FIXTURES / name).read_bytes()
    explained = parsers.parse(body, url, "text/html; charset=utf-8", explain=True)
    explain = explained.pop("explain")
    assert explained == parsers.parse(body, url, "text/html; charset=utf-8")
    assert explain[field].startswith(layer)


def test_parse_file_explain_in_a_real_process() -> None:
    name, url, field, layer = PAGES[1]
    command = [str(PROJECT_ROOT / ".venv" / "bin" / "flask"), "--app", "server", "parse-file", str(FIXTURES / name),
               "--url", url]
    plain = json.loads(subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout)
    explained = json.loads(subprocess.run([*command, "--explain"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                                          check=True).stdout)
    assert "explain" not in plain
    assert explained.pop("explain")[field].startswith(layer)
    assert explained == plain
