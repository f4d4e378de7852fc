"""parsers.encoding.decode_html: BOM, HTTP header, <meta>, then the detector.

Every page here is a byte string built in the test from text written in the test.
"""
from __future__ import annotations

import codecs

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.encoding import _utf8_text, decode_html, header_charset, meta_charset
from tests.pages import read_page

CURLY = "“Café society” – a résumé of Paris’s naïve years, £5 each"
ARABIC = "الصحف و الجرائد باللغة العربية هي أهم مصادر الأخبار في العالم العربي"
CHINESE = "人工智能迈上新台阶：新电脑已可利用记忆自学"
CYRILLIC = "Съешь же ещё этих мягких французских булок, да выпей чаю"


def page(text: str, head: str = "") -> str:
    return f"<html><head>{head}<title>{text}</title></head><body><p>{text}</p></body></html>"


def meta_tag(charset: str) -> str:
    return f'<meta http-equiv="Content-Type" content="text/html; charset={charset}">'


# ---------------------------------------------------------------------------------------
# Byte-order marks.
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bom, codec",
    [
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
    ],
)
def test_bom_beats_every_label(bom: bytes, codec: str) -> None:
    body = bom + page(CURLY).encode(codec)
    assert decode_html(body, "text/html; charset=windows-1252") == page(CURLY)


# ---------------------------------------------------------------------------------------
# Declared charsets, trusted when the bytes fit.
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("label", ["windows-1252", "cp1252", "ISO-8859-1", "latin1", "us-ascii"])
def test_windows_1252_page_gives_curly_quotes_and_accents(label: str) -> None:
    """Browsers read Latin-1 and ASCII labels as windows-1252: 0x93 is “, not a C1 control."""
    body = page(CURLY).encode("cp1252")
    assert decode_html(body, f"text/html; charset={label}") == page(CURLY)
    assert decode_html(body.replace(b"<head>", f"<head>{meta_tag(label)}".encode())) == page(CURLY, meta_tag(label))


def test_windows_1252_page_without_any_label_is_detected() -> None:
    body = page(CURLY + " " + CURLY).encode("cp1252")
    assert decode_html(body) == page(CURLY + " " + CURLY)


def test_windows_1256_arabic_page_declared_in_meta() -> None:
    html = page(ARABIC, meta_tag("windows-1256"))
    assert decode_html(html.encode("cp1256"), "text/html") == html


def test_windows_1256_arabic_page_without_a_label_is_detected() -> None:
    html = "<html><head><title>Arabic newspapers online</title></head><body>" + "<p>News in English.</p>" * 20
    html += f"<p>{ARABIC}</p></body></html>"
    assert decode_html(html.encode("cp1256")) == html


def test_header_charset_beats_meta_when_both_fit() -> None:
    html = page(CYRILLIC, meta_tag("koi8-r"))
    assert decode_html(html.encode("cp1251"), "text/html; charset=windows-1251") == html


def test_meta_is_used_when_the_header_does_not_fit() -> None:
    html = page(CHINESE, '<meta charset="gbk">')
    assert decode_html(html.encode("gbk"), "text/html; charset=utf-8") == html


def test_gb2312_label_reads_gbk_characters() -> None:
    """镕 is in GBK, not GB2312; browsers decode a GB2312 label with GBK/GB18030."""
    html = page("朱镕基 " + CHINESE, '<meta charset="gb2312">')
    assert decode_html(html.encode("gbk")) == html


def test_xml_declaration_names_the_charset() -> None:
    html = '<?xml version="1.0" encoding="ISO-8859-7"?>' + page("Καλημέρα κόσμε, καλή χρονιά")
    assert decode_html(html.encode("iso-8859-7")) == html


@pytest.mark.parametrize("label", ["x-unknown-charset", "", "utf-16", "utf-32be"])
def test_unknown_or_impossible_labels_are_ignored(label: str) -> None:
    """UTF-16 named on ASCII-compatible bytes is a mistake browsers ignore too."""
    html = page(CURLY)
    assert decode_html(html.encode("utf-8"), f"text/html; charset={label}") == html
    assert decode_html(page("plain ascii").encode("ascii"), f"text/html; charset={label}") == page("plain ascii")


def test_utf16_without_bom_is_read_when_the_header_says_so() -> None:
    html = page("plain ascii in sixteen bits")
    assert decode_html(html.encode("utf-16-le"), "text/html; charset=utf-16le") == html


# ---------------------------------------------------------------------------------------
# UTF-8 bytes under a wrong label.
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "header, meta",
    [
        ("text/html; charset=ISO-8859-1", ""),
        ("text/html; charset=iso-8859-1", meta_tag("iso-8859-1")),
        (None, meta_tag("gb2312")),
        ("text/html; charset=gb2312", ""),
        ("text/html; charset=windows-1251", ""),
        ("text/html; charset=shift_jis", meta_tag("shift_jis")),
    ],
)
def test_utf8_bytes_mislabelled_decode_as_utf8(header: str | None, meta: str) -> None:
    for text in (CURLY, CHINESE, ARABIC):
        html = page(text, meta)
        assert decode_html(html.encode("utf-8"), header) == html


def test_utf8_cut_in_the_middle_of_a_character_stays_utf8() -> None:
    body = page(CHINESE).encode("utf-8")[:-len("</p></body></html>") - 1]  # cuts 台阶's last byte
    text = decode_html(body, "text/html; charset=iso-8859-1")
    assert text.startswith("<html><head><title>人工智能")
    assert text.endswith("\ufffd")


# ---------------------------------------------------------------------------------------
# Plain cases and helpers.
# ---------------------------------------------------------------------------------------
def test_ascii_and_empty_bodies() -> None:
    assert decode_html(b"") == ""
    assert decode_html(b"<p>hello</p>", "text/html; charset=utf-8") == "<p>hello</p>"


@pytest.mark.parametrize(
    "content_type, expected",
    [
        ("text/html; charset=UTF-8", "UTF-8"),
        ('text/html; charset="windows-1256"', "windows-1256"),
        ("text/html;charset = 'gb2312'", "gb2312"),
        ("text/html", None),
        (None, None),
    ],
)
def test_header_charset(content_type: str | None, expected: str | None) -> None:
    assert header_charset(content_type) == expected


def test_meta_charset_looks_near_the_top_only() -> None:
    assert meta_charset(b'<html><meta charset="koi8-r">') == "koi8-r"
    assert meta_charset(b"<html>" + b" " * 5000 + b'<meta charset="koi8-r">') is None


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=3000),
    content_type=st.sampled_from([None, "text/html", "text/html; charset=utf-8", "text/html; charset=utf-16",
                                  "text/html; charset=windows-1256", "text/html; charset=nonsense"]),
)
def test_any_bytes_decode_to_text(body: bytes, content_type: str | None) -> None:
    assert isinstance(decode_html(body, content_type), str)


# ---------------------------------------------------------------------------------------
# The real pages whose labels lie (skipped when the saved pages are absent).
# ---------------------------------------------------------------------------------------
def test_real_latin1_label_on_utf8_bytes() -> None:
    body = read_page("www.dailymail.co.uk/article-texas-banker.iso-8859-1-declared-utf8-bytes.html")
    text = decode_html(body, "text/html; charset=iso-8859-1")
    assert "a plush \ufffd300,000" in text  # U+FFFD was in the saved UTF-8 bytes already
    assert "ï¿½" not in text  # what reading those bytes as Latin-1 would give


def test_real_gb2312_label_on_utf8_bytes() -> None:
    body = read_page("tech.qq.com/a-20161014-006270.gb2312-declared-utf8-bytes.html")
    assert "<title>DeepMind新电脑已可利用记忆自学 人工智能迈上新台阶_科技_腾讯网</title>" in decode_html(body, "text/html; charset=gb2312")


def test_real_windows_1256_page() -> None:
    body = read_page("arabic-media.com/arabicnews.windows-1256.html")
    assert "الصحف و الجرائد باللغة العربية" in decode_html(body, None)


def test_real_windows_1256_page_with_its_label_removed_is_detected() -> None:
    """Mostly English with some Arabic: unrestricted, the detector calls it mac_iceland."""
    body = read_page("arabic-media.com/arabicnews.windows-1256.html").replace(b"charset=windows-1256", b"")
    assert "الصحف و الجرائد باللغة العربية" in decode_html(body, "text/html")


# The UTF-8 page is decoded in one pass (_utf8_text) where it used to be checked, then decoded.
def old_utf8_rule(body: bytes) -> str | None:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(body, final=False)
    except UnicodeDecodeError:
        return None
    return body.decode("utf-8", errors="replace")


@pytest.mark.parametrize("body", [
    b"", b"abc", "€".encode(), "a€".encode()[:-1], "a€".encode()[:-2], "a😀".encode()[:-1],
    b"\xe2\x82A", b"\xff", b"\xed\xa0\x80", b"\xc0\xaf", "é".encode() + b"\xff" + "€".encode()[:-1],
])
def test_one_pass_utf8_decoding_follows_the_old_rule(body: bytes) -> None:
    assert _utf8_text(body) == old_utf8_rule(body)


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(max_size=50).map(lambda t: t.encode("utf-8", "surrogatepass")), st.integers(0, 50), st.binary(max_size=3))
def test_one_pass_utf8_decoding_follows_the_old_rule_on_cut_and_spliced_text(body: bytes, cut: int, junk: bytes) -> None:
    for variant in (body[:cut], body[:cut] + junk, junk + body):
        assert _utf8_text(variant) == old_utf8_rule(variant)
