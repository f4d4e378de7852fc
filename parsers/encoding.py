"""Bytes to text: charset from the BOM, the HTTP header, then <meta>, then a detector.

A declared charset is only trusted when the bytes decode cleanly with it: pages that
declare one charset and are written in another are common (a UTF-8 page labelled
ISO-8859-1, a GB2312 label on UTF-8 bytes), and the detector settles those.
"""
from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes

BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([\w.:-]+)", re.IGNORECASE)
META_SCAN_BYTES = 4096  # browsers look for <meta charset> in the first 1024 bytes; be generous
# Labels that browsers treat as windows-1252, whose extra characters (curly quotes) latin-1 lacks.
WINDOWS_1252_ALIASES = {"iso-8859-1", "latin-1", "latin1", "ascii", "us-ascii", "iso8859-1", "l1"}


def decode_html(body: bytes, content_type: str | None = None) -> str:
    """The text of an HTML page, decoded with the best-supported charset."""
    for bom, charset in BOMS:
        if body.startswith(bom):
            return body[len(bom):].decode(charset, errors="replace")
    for declared in (header_charset(content_type), meta_charset(body)):
        text = _strict_decode(body, declared)
        if text is not None:
            return text
    return detect_and_decode(body)


def header_charset(content_type: str | None) -> str | None:
    match = HEADER_CHARSET.search(content_type or "")
    return match.group(1) if match else None


def meta_charset(body: bytes) -> str | None:
    match = META_CHARSET.search(body[:META_SCAN_BYTES])
    return match.group(1).decode("ascii", "ignore") if match else None


def _strict_decode(body: bytes, charset: str | None) -> str | None:
    """body decoded with charset, or None when the label is unknown or the bytes do not fit it."""
    if not charset:
        return None
    charset = "windows-1252" if charset.lower() in WINDOWS_1252_ALIASES else charset
    try:
        codec = codecs.lookup(charset).name
    except LookupError:
        return None
    if codec == "cp1252" and _decodes_as_utf8(body):
        return body.decode("utf-8")  # UTF-8 bytes mislabelled as Latin-1: UTF-8 is far likelier
    try:
        return body.decode(codec)
    except UnicodeDecodeError:
        return None


def _decodes_as_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return any(byte >= 0x80 for byte in body)


def detect_and_decode(body: bytes) -> str:
    if _decodes_as_utf8(body) or body.isascii():
        return body.decode("utf-8")
    best = from_bytes(body).best()
    if best is None:
        return body.decode("utf-8", errors="replace")
    return str(best)
