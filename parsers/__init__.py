"""parse(html, url) -> data dict: picks the parser for the URL's source.

Every parser is a pure function of (html, url): no network, no Redis, no clock.
Raises ParseError when the page is not what the URL promises.
"""
from __future__ import annotations

from collections.abc import Callable

from errors import ParseError
from parsers import css, generic, goodreads, news
from parsers.base import limit_html
from parsers.encoding import decode_html
from sources import source_for_url

# Bump when a parser's output changes, so stored records show which parser made them.
PARSER_VERSION = "2"  # 2: headline items with kicker, summary, image...; librarian_note; authors

PARSERS: dict[str, Callable[..., dict]] = {  # (html, url), and explain=True where asked
    "goodreads": goodreads.parse_limited,  # parse() below has done goodreads.parse's limit_html
    "news": news.parse,
    "generic": generic.parse,
}


def parse(html: str | bytes, url: str, content_type: str | None = None, source: str | None = None,
          explain: bool = False) -> dict:
    """The data dict of the page at url; bytes are decoded first (header, BOM, <meta>, detector).

    source names the parser (a job knows it from submission, even after a redirect);
    by default it is picked from the URL. explain adds an "explain" key: for each field, the
    data source and rule that produced it (JSON-LD, Apollo state, data-testid, legacy markup,
    meta, site rule, generic...), to diagnose a wrong field on a new page in one run.
    """
    if isinstance(html, bytes):
        html = decode_html(html, content_type)
    # Size cap and no lone surrogates here; a parser that needs a tree builds it bounded
    # (tree.build_document), flattening nesting past 64 levels.
    html = limit_html(html)
    parser = PARSERS[source or source_for_url(url).name]
    return parser(html, url, explain=True) if explain else parser(html, url)  # (html, url) is the contract


def warm_up() -> None:
    """Compile now what the parsers would compile on first use, so a pool does it once and every
    process it forks inherits it: each CSS selector of the parsers (news site rules, generic
    fallbacks, Goodreads' markup tables), translated by cssselect and compiled by lxml.
    """
    for selector in (*news.rule_selectors(), *generic.SELECTORS, *goodreads.selectors()):
        css.compile_selector(selector)


__all__ = ["PARSER_VERSION", "ParseError", "parse", "warm_up"]
