"""Bytes to text: charset from the BOM, the HTTP header, then <meta>, then a detector.

A declared charset is only trusted when the bytes decode cleanly with it: pages that
declare one charset and are written in another are common (a UTF-8 page labelled
ISO-8859-1, a GB2312 label on UTF-8 bytes), and the detector settles those.

Order, first answer wins:
1. a byte-order mark (UTF-8, UTF-16, UTF-32): nothing else can produce one;
2. bytes that are valid UTF-8 and not plain ASCII: UTF-8, whatever the label says,
   because legacy-encoded text is practically never valid UTF-8 by accident;
3. the HTTP header's charset, then the document's <meta>/<?xml?> charset, each used
   only when the bytes decode without error (labels mapped as browsers map them);
4. charset-normalizer's guess, else UTF-8 with replacement characters.
"""
from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes

# UTF-32 marks first: the UTF-32-LE mark begins with the UTF-16-LE one.
BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([\w.:-]+)", re.IGNORECASE)
XML_DECLARATION = re.compile(rb"^\s*<\?xml[^>]+encoding\s*=\s*[\"']([\w.:-]+)", re.IGNORECASE)
META_SCAN_BYTES = 4096  # browsers look for <meta charset> in the first 1024 bytes; be generous
DETECT_BYTES = 256 * 1024  # charset-normalizer's guess from a sample stays fast on huge bodies
# Labels browsers decode with a wider charset (WHATWG Encoding Standard): a page labelled
# ISO-8859-1 really uses windows-1252's curly quotes, a GB2312 page uses GBK characters.
LABEL_ALIASES = {
    "iso-8859-1": "windows-1252", "iso8859-1": "windows-1252", "latin-1": "windows-1252",
    "latin1": "windows-1252", "l1": "windows-1252", "ascii": "windows-1252",
    "us-ascii": "windows-1252", "iso-8859-9": "windows-1254", "latin5": "windows-1254",
    "iso-8859-11": "windows-874", "tis-620": "windows-874",
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "gb_2312-80": "gb18030",
    "euc-kr": "cp949", "ks_c_5601-1987": "cp949",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932",
    "big5": "big5hkscs",
}
WIDE_CODECS = ("utf-16", "utf-32")  # labels that only make sense on bytes full of NULs
# The detector only picks among the charsets browsers support (WHATWG): left free, it reads a
# mostly-English windows-1256 page as mac_iceland.
WEB_ENCODINGS = [
    "utf_8", "cp866", "iso8859_2", "iso8859_3", "iso8859_4", "iso8859_5", "iso8859_6",
    "iso8859_7", "iso8859_8", "iso8859_10", "iso8859_13", "iso8859_14", "iso8859_15",
    "iso8859_16", "koi8_r", "koi8_u", "mac_roman", "mac_cyrillic", "cp874", "cp1250",
    "cp1251", "cp1252", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp1258",
    "gb18030", "big5", "euc_jp", "iso2022_jp", "cp932", "cp949",
]


def decode_html(body: bytes, content_type: str | None = None) -> str:
    """The text of an HTML page, decoded with the best-supported charset."""
    for bom, charset in BOMS:
        if body.startswith(bom):
            return body[len(bom):].decode(charset, errors="replace")
    text = _utf8_text(body) if not body.isascii() else None
    if text is not None:
        return text
    for declared in (header_charset(content_type), meta_charset(body)):
        text = _strict_decode(body, declared)
        if text is not None:
            return text
    return detect_and_decode(body)


def header_charset(content_type: str | None) -> str | None:
    match = HEADER_CHARSET.search(content_type or "")
    return match.group(1) if match else None


def meta_charset(body: bytes) -> str | None:
    """The charset a <meta> tag or an XML declaration near the top of the page names."""
    head = body[:META_SCAN_BYTES]
    match = META_CHARSET.search(head) or XML_DECLARATION.search(head)
    return match.group(1).decode("ascii", "ignore") if match else None


def _strict_decode(body: bytes, charset: str | None) -> str | None:
    """body decoded with charset, or None when the label is unknown or the bytes do not fit it."""
    codec = _codec_for(charset)
    if codec is None:
        return None
    if codec.startswith(WIDE_CODECS) and b"\x00" not in body[:512]:
        return None  # a UTF-16 label on ASCII-compatible bytes is a mistake; browsers ignore it too
    try:
        return body.decode(codec)
    except UnicodeDecodeError:
        return None


def _codec_for(charset: str | None) -> str | None:
    """Python's codec name for a declared charset label, or None when it is unknown."""
    if not charset:
        return None
    label = charset.strip().lower()
    try:
        return codecs.lookup(LABEL_ALIASES.get(label, label)).name
    except LookupError:
        return None


def _utf8_text(body: bytes) -> str | None:
    """body decoded as UTF-8 when _is_utf8(body), else None: one decoding pass instead of two."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.end == len(body) and error.reason == "unexpected end of data":
            return body.decode("utf-8", errors="replace")  # only the cut-off last character replaced
        return None


def _is_utf8(body: bytes) -> bool:
    """True when body is valid UTF-8, allowing a multi-byte character cut off at the very end."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(body, final=False)
    except UnicodeDecodeError:
        return False
    return True


def detect_and_decode(body: bytes) -> str:
    """No usable label: ask charset-normalizer, fall back to UTF-8 with replacement characters."""
    if _is_utf8(body):
        return body.decode("utf-8", errors="replace")
    best = from_bytes(body[:DETECT_BYTES], cp_isolation=WEB_ENCODINGS).best()
    codec = _codec_for(best.encoding) if best is not None else None
    return body.decode(codec or "utf-8", errors="replace")
