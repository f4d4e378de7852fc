"""parsers.parse is pure (README "Parsers"): no network, no clock; the same page gives the same data.

Checked two ways: by running every hand-made fixture with the network refused and comparing two
runs, and by reading the parsers' source for clock and network calls (a clock read at day
precision would not show between two runs a millisecond apart).
"""
from __future__ import annotations

import ast
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import parsers
from errors import ParseError

PARSERS_DIR = Path(parsers.__file__).resolve().parent
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
URLS = {
    "goodreads": "https://www.goodreads.com/book/show/1000001-the-glass-orchard",
    "news": "https://www.bbc.com/news",
    "generic": "https://example.org/2024/05/01/a-page",
}
PAGES = sorted(path for path in FIXTURES.glob("*/*.html") if path.parent.name in URLS)
# Modules a parser has no business importing: the network's, and the clock's ("time").
FORBIDDEN_MODULES = {"socket", "ssl", "http", "urllib.request", "requests", "httpx", "aiohttp", "redis", "time"}
CLOCK_CALLS = {"now", "utcnow", "today"}  # datetime.now(), date.today(), ...


@pytest.fixture
def network_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every reach for the network from the test's own thread, recorded (a parser that swallows
    the error still shows here); other threads of the process (an earlier test's servers) go on."""
    calls: list[str] = []
    test_thread = threading.get_ident()

    def refuse(name: str, original: Callable[..., object]) -> Callable[..., object]:
        def refused(*args: object, **kwargs: object) -> object:
            if threading.get_ident() != test_thread:
                return original(*args, **kwargs)
            calls.append(name)
            raise OSError(f"offline: {name}")
        return refused

    for name in ("connect", "connect_ex", "sendto", "sendall"):
        monkeypatch.setattr(socket.socket, name, refuse(name, getattr(socket.socket, name)))
    for name in ("getaddrinfo", "create_connection", "gethostbyname"):
        monkeypatch.setattr(socket, name, refuse(name, getattr(socket, name)))
    return calls


def data_or_refusal(path: Path) -> dict | str:
    try:
        return parsers.parse(path.read_bytes(), URLS[path.parent.name])
    except ParseError as error:
        return f"ParseError: {error}"


@pytest.mark.parametrize("path", PAGES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_each_fixture_parses_offline_to_the_same_data_twice(path: Path, network_calls: list[str]) -> None:
    assert data_or_refusal(path) == data_or_refusal(path)
    assert network_calls == []


def imported_and_called(source: str) -> tuple[set[str], set[str]]:
    """(modules imported, names of functions called as attributes or plain names) in source."""
    modules, calls = set(), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add(node.module or "")
        elif isinstance(node, ast.Call):
            function = node.func
            calls.add(function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", ""))
    return modules, calls


@pytest.mark.parametrize("path", sorted(PARSERS_DIR.glob("*.py")), ids=lambda path: path.name)
def test_parser_modules_read_no_clock_and_open_no_connection(path: Path) -> None:
    modules, calls = imported_and_called(path.read_text())
    assert not {m for m in modules if m in FORBIDDEN_MODULES or m.split(".")[0] in FORBIDDEN_MODULES}
    assert not calls & CLOCK_CALLS
