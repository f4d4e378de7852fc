"""Reading the URLs to submit: from arguments, a file, or standard input."""
from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO

from cli.exits import UsageError

STDIN = "-"


def parse_lines(lines: Iterable[str]) -> list[str]:
    """One URL a line; blank lines and lines starting with # are skipped.

    Only whole-line comments: a '#' inside a line is a URL fragment, not a comment.
    """
    urls = []
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            urls.append(text)
    return urls


def read_file(path: str, stdin: TextIO) -> list[str]:
    if path == STDIN:
        return parse_lines(stdin)
    try:
        with open(path, encoding="utf-8-sig") as handle:  # -sig: files saved by Windows editors start with a BOM
            return parse_lines(handle)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def gather_urls(args: list[str], path: str | None, stdin: TextIO = sys.stdin) -> list[str]:
    """Arguments first, then the file; with neither, standard input when it is piped."""
    urls = parse_lines(args)
    if path is not None:
        urls += read_file(path, stdin)
    elif not urls and not stdin.isatty():
        urls = parse_lines(stdin)
    if not urls:
        raise UsageError("no URLs to submit: pass them as arguments, with --file F, or on standard input")
    return urls
