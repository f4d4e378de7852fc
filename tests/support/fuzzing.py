"""Hypothesis strategies and answer checks for tests/test_fuzz.py.

Strategies make what a hostile or careless client could send: any JSON value, any bytes
under any Content-Type, URL-like strings assembled from parts (schemes, user info, every
spelling of an IP address, ports, paths, queries), unicode with lone surrogates and
control characters, huge strings, query strings and path segments of any bytes (raw
query strings only of the bytes gunicorn lets through: RFC 9112 allows no other in a
request target, and gunicorn answers 400 itself to any other).

check_answer() states what every answer must be: never 5xx; an error is JSON
{"error": {"code", "message"}} (or, for a refused submission, the submission shape);
a 2xx JSON answer matches the schema openapi.yaml documents for its status. The one
exception: the seed's routes answer the seed's own strings (text/html) where the seed did
(DESIGN.md, "Seed-compatible aliases"), exactly those strings, with those statuses.
"""
from __future__ import annotations

import json
import re
from urllib.parse import quote, quote_from_bytes

from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from web.apidocs import load_document
from sources import GOODREADS_HOSTS, NEWS_HOSTS

# ---- text ---------------------------------------------------------------------------------

CONTROL = st.characters(max_codepoint=0x1F) | st.sampled_from("\x7f\x80\x85\x9f\u00a0\u2028\u2029\ufeff\u200b")
SURROGATE = st.characters(categories=["Cs"])  # lone surrogates: JSON can carry them as \udXXX
URL_PUNCTUATION = st.sampled_from(list("/\\?#@:%[].;=&+-_~!$'()*, \t\uff0e"))
WILD_CHAR = st.one_of(st.characters(), SURROGATE, CONTROL, URL_PUNCTUATION)
WILD_PIECE = st.one_of(WILD_CHAR, WILD_CHAR, st.sampled_from(["%00", "%2F", "%25", "%zz", "%e9", "..", "://", "@"]))


def wild_text(min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[str]:
    """Any unicode, lone surrogates and control characters included, with URL punctuation."""
    return st.lists(WILD_PIECE, min_size=min_size, max_size=max_size).map("".join)


WILD_TEXT = wild_text()
HUGE_TEXT = st.builds(lambda piece, count, prefix: prefix + piece * count,
                      st.sampled_from(["a", "/", "%41", "\u00e9", "\ud800", " ", "9", "\u202e"]),
                      st.integers(1_000, 70_000),
                      st.sampled_from(["", "https://www.bbc.com/", "https://www.goodreads.com/book/show/1"]))

# ---- JSON values --------------------------------------------------------------------------

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False), WILD_TEXT,
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(WILD_TEXT, children, max_size=6),
    max_leaves=25,
)

# ---- URL-like strings, from parts ----------------------------------------------------------
# Each part is mostly well-formed and sometimes wild, so that about one URL in five has a
# shape the guard accepts and the fuzzing reaches canonicalisation, storage and the queues.


def mostly(usual: st.SearchStrategy, odd: st.SearchStrategy, weight: int = 4) -> st.SearchStrategy:
    return st.one_of(*([usual] * weight), odd)


SCHEMES = mostly(
    st.sampled_from(["https", "http", "https", "http", "HTTPS", "hTtP"]),
    st.one_of(st.sampled_from(["ftp", "file", "javascript", "data", "ws", "gopher", ""]), wild_text(max_size=6)),
)
SEPARATORS = mostly(st.just("://"), st.sampled_from([":", ":/", ":///", "//", ":\\\\", ":/\\", "://\u200b", ": //"]))
USERINFO = mostly(st.just(""), st.sampled_from(["user@", "user:pass@", "@", ":@", "%40@", "a@b@", "www.goodreads.com@",
                                               "www.bbc.com:443@", "u\u00e9@"]))
USUAL_HOSTS = st.sampled_from(sorted(GOODREADS_HOSTS) + sorted(NEWS_HOSTS) + [
    "WWW.GOODREADS.COM", "www.goodreads.com.", "WWW.BBC.CO.UK", "example.com", "EXAMPLE.com.", "b\u00fccher.de",
    "xn--bcher-kva.de", "e\u0301.com", "sub.example.org", "8.8.8.8", "[2606:4700:4700::1111]"])
ODD_HOSTS = st.sampled_from([
    "www.bbc.com..", "localhost", "LOCALHOST.", "api.localhost", "printer.local", "db.internal", "nas.home.arpa",
    "metadata.google.internal", "xn--nxasmq6b.com", "xn--", "xn--a.com", "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",
    "exa_mple.com", "-a-.com", "a" * 64 + ".com", "a" * 300, ".", "..", "a..b", ".com", "%41.com", "ex%ample.com",
    "www.goodreads.com\u3002", "www\uff0ebbc\uff0ecom", "\u2460\u2461\u2462.0.0.1", "",
])
IPV4 = st.ip_addresses(v=4).map(str)
IPV4_DECIMAL = st.integers(0, 2**32 + 10).map(str)
IPV4_OCTAL = st.ip_addresses(v=4).map(lambda ip: ".".join(f"0{int(part):o}" for part in str(ip).split(".")))
IPV4_HEX = st.one_of(
    st.ip_addresses(v=4).map(lambda ip: f"0x{int(ip):x}"),
    st.ip_addresses(v=4).map(lambda ip: ".".join(f"0x{int(part):x}" for part in str(ip).split("."))),
    st.sampled_from(["0x7f.1", "0x7f.0.1", "127.1", "127.0.1", "0", "0x", "0.0.0.0", "1.2.3.4.5", "256.1.1.1"]),
)
IPV4_FULLWIDTH = st.ip_addresses(v=4).map(lambda ip: str(ip).translate({ord(d): 0xFF10 + int(d) for d in "0123456789"}))
IPV6 = st.one_of(
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}%25eth0]"),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip.exploded}]"),
    st.ip_addresses(v=4).map(lambda ip: f"[::ffff:{ip}]"),
    st.ip_addresses(v=4).map(lambda ip: f"[64:ff9b::{ip}]"),
    st.sampled_from(["[::1]", "[::]", "[::ffff:127.0.0.1]", "[2002:7f00:1::]", "[fe80::1%25lo]", "[2606:4700::1111]",
                     "[", "]", "[::1", "::1]", "[v1.fuzz]", "[::1]]", "[[::1]]", "[127.0.0.1]", "[2606:4700::1%25]"]),
)
HOSTS = mostly(USUAL_HOSTS, st.one_of(ODD_HOSTS, IPV4, IPV4_DECIMAL, IPV4_OCTAL, IPV4_HEX, IPV4_FULLWIDTH, IPV6,
                                      wild_text(max_size=20)), weight=2)
PORTS = mostly(
    st.sampled_from(["", "", "", ":443", ":80", ":8080"]),
    st.one_of(st.integers(-5, 70_000).map(lambda port: f":{port}"),
              st.sampled_from([":", ":0", ":00443", ":65535", ":65536", ":99999999999999999999999", ":-1", ":+80",
                               ": 80", ":\uff18\uff10", ":0x50", ":80:80", ":\u0661"])),
)
SLUG = st.text(alphabet=st.sampled_from("abcXYZ019-._/%~ \u00e9"), max_size=15)
SEGMENT = st.one_of(
    wild_text(max_size=12),
    st.binary(max_size=8).map(lambda raw: quote_from_bytes(raw, safe="")),
    st.sampled_from(["news", "world", "uk", "sport", "article", "2024", "story.html", "a-b-c-d-e", "..", ".", "",
                     "%2e%2e", "International", "\u00e9t\u00e9"]),
)
PATHS = st.one_of(
    st.sampled_from(["", "/", "//", "/news", "/news/", "/NEWS/World", "/international", "/news/world/asia",
                     "/world/2024/jan/01/a-b-c-d-e", "/book/show/", "/book/show/abc", "/author/show/1"]),
    st.builds(lambda lang, number, sep, slug: f"{lang}/book/show/{number}{sep}{slug}",
              st.sampled_from(["", "/en", "/de", "/xx1"]),
              st.one_of(st.integers(0, 10**12), st.integers(0, 10**400), st.just("\u0661\u0662"), st.just("\uff13")),
              st.sampled_from(["", "-", ".", "_", "/", "?", "#", "%2F"]), SLUG),
    st.lists(SEGMENT, max_size=5).map(lambda parts: "/" + "/".join(parts)),
)
QUERY_KEYS = st.one_of(st.sampled_from(["utm_source", "UTM_Medium", "fbclid", "gclid", "q", "from_search", "ref", ""]),
                       wild_text(max_size=5))
QUERIES = mostly(
    st.just(""),
    st.one_of(st.lists(st.tuples(QUERY_KEYS, wild_text(max_size=8)), max_size=4)
              .map(lambda pairs: "?" + "&".join(f"{key}={value}" for key, value in pairs)),
              wild_text(max_size=10).map(lambda text: "?" + text)),
    weight=1,
)
FRAGMENTS = mostly(st.just(""), wild_text(max_size=10).map(lambda text: "#" + text), weight=2)
PADDING = mostly(st.just(""), st.sampled_from([" ", "\t", "\n", "\u00a0", "\u3000", "\x00", "\ufeff"]))

URL_LIKE = st.builds(
    lambda lead, scheme, sep, user, host, port, path, query, fragment, trail:
        f"{lead}{scheme}{sep}{user}{host}{port}{path}{query}{fragment}{trail}",
    PADDING, SCHEMES, SEPARATORS, USERINFO, HOSTS, PORTS, PATHS, QUERIES, FRAGMENTS, PADDING,
)
KNOWN_GOOD = st.sampled_from([
    "https://www.goodreads.com/book/show/5907.The_Hobbit",
    "http://m.goodreads.com/book/show/5907-the-hobbit?from_search=true#reviews",
    "https://www.bbc.com/news", "https://bbc.co.uk/", "https://amp.theguardian.com/international",
    "https://www.wsj.com/", "https://example.com/blog/ten-rules-for-sourdough?utm_source=x",
])
URLS = st.one_of(URL_LIKE, URL_LIKE, URL_LIKE, URL_LIKE, KNOWN_GOOD, WILD_TEXT, HUGE_TEXT)
URL_ITEMS = st.one_of(URLS, URLS, URLS, JSON_VALUES)
URL_LISTS = st.lists(URL_ITEMS, max_size=8)

SUBMISSIONS = st.one_of(
    URL_LISTS,
    st.fixed_dictionaries(
        {"urls": URL_LISTS},
        optional={"refresh": st.one_of(st.booleans(), JSON_VALUES),
                  "callback_url": st.one_of(st.none(), URLS, JSON_VALUES)},
    ),
    st.dictionaries(st.one_of(st.sampled_from(["urls", "refresh", "callback_url"]), WILD_TEXT), JSON_VALUES, max_size=4),
)


def encode_json(value: object, ascii_only: bool) -> bytes:
    """JSON bytes as a client would send them; lone surrogates become \\udXXX escapes
    (ascii_only) or raw, invalid UTF-8 (surrogatepass)."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def encode_as(text: str, encoding: str) -> bytes:
    try:
        return text.encode(encoding, "surrogatepass")
    except UnicodeEncodeError:  # latin-1 cannot hold it all
        return text.encode(encoding, "replace")


# ---- raw bodies and content types ------------------------------------------------------------

ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1"])
RAW_BODIES = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda value, encoding: encode_as(json.dumps(value, ensure_ascii=False), encoding), SUBMISSIONS, ENCODINGS),
    st.builds(lambda value, cut: json.dumps(value).encode()[:cut], SUBMISSIONS, st.integers(0, 200)),  # truncated
    st.builds(lambda opener, depth: opener * depth, st.sampled_from([b"[", b'{"urls":', b'{"a":[', b"[{}, ["]),
              st.integers(1, 40_000)),  # deep nesting
    st.sampled_from([b"", b"null", b"[]", b"{}", b"[null]", b'{"urls": []}', b"NaN", b"[NaN]", b"[Infinity]",
                     b"[1e999]", b'["\\ud800"]', b'"\\u0000"', b"\xef\xbb\xbf[]", b"\xff\xfe[\x00]\x00",
                     b'{"urls": ["https://www.bbc.com/news"], "urls": 7}', b"[" + b"9" * 5000 + b"]"]),
)
CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from(["application/json", "application/json; charset=utf-8", "application/json; charset=utf-16",
                     "application/json; charset=bogus", "text/plain", "text/html", "application/xml",
                     "application/x-www-form-urlencoded", "multipart/form-data", "multipart/form-data; boundary=x",
                     "multipart/mixed; boundary=\"\"", "application/octet-stream", "*/*", "", ";", "application/",
                     "application/json;;;=", "application/merge-patch+json", "APPLICATION/JSON"]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40),
)

# ---- query strings and path segments (raw bytes, as a server reads them) -------------------

NUMBERISH = st.sampled_from(["0", "1", "100", "1000", "1001", "-1", "+1", " 1", "1 ", "1e3", "0x10", "1.0", "",
                             "\u00b2", "\u0661\u0660", "\uff11", "\u2460", "0" * 30 + "1", "9" * 25, "9" * 5000,
                             "18446744073709551615", "18446744073709551616", "NaN", "\x00"])
TIMEISH = st.one_of(
    st.datetimes().map(lambda moment: moment.isoformat()),
    st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
    st.dates().map(str),
    st.sampled_from(["2026-01-31T12:00:00Z", "2026-01-31T12:00:00+01:00", "2026-01-31T12:00:00 01:00", "2026-13-01",
                     "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "now", "", "T", "2026-W05-6",
                     "20260131T120000Z", "2026-01-31T24:00:00", "2026-01-31T12:00:00.1234567890Z"]),
)
QUERY_VALUES = st.one_of(URLS, WILD_TEXT, NUMBERISH, TIMEISH, HUGE_TEXT)
QUERY_NAMES = st.one_of(st.sampled_from(["url", "since", "cursor", "limit", "batch"]), WILD_TEXT)


def percent_encode(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


QUERY_STRINGS = st.one_of(
    # name=value pairs, percent-encoded (lone surrogates become invalid UTF-8), names may repeat
    st.lists(st.tuples(QUERY_NAMES, QUERY_VALUES), max_size=5)
    .map(lambda pairs: "&".join(f"{percent_encode(name)}={percent_encode(value)}" for name, value in pairs)),
    # raw, as gunicorn passes it on: any of the bytes RFC 9112 allows in a request target
    # (it answers 400 itself to any other byte, so the app never sees one)
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=100),
    # broken percent escapes and separators
    st.text(alphabet=st.sampled_from("%&=;+?#/aA0fFzZ"), max_size=40),
)
# PATH_INFO is already %-decoded in WSGI: a segment is any bytes but "/", seen as latin-1 text.
PATH_SEGMENTS = st.one_of(
    st.binary(min_size=1, max_size=80).filter(lambda raw: b"/" not in raw).map(lambda raw: raw.decode("latin-1")),
    wild_text(min_size=1, max_size=40)
    .map(lambda text: text.encode("utf-8", "surrogatepass").decode("latin-1").replace("/", "%2F")),
    st.sampled_from(["a" * 32, "A" * 32, "0" * 32 + "\n", "0" * 64 + "\n", "a" * 129, "tick-1", "x\n", "..", ".",
                     "%2e%2e", "rq:job:x", "*", "\x00"]),
)

# ---- checking answers -----------------------------------------------------------------------

DOCUMENT = load_document()
_BASE_URI = "urn:metaparse:openapi:fuzz"
_REGISTRY = Registry().with_resource(_BASE_URI, DRAFT202012.create_resource(DOCUMENT))
_VALIDATORS: dict[str, Draft202012Validator] = {}
HEX = re.compile(r"[0-9a-f]+\Z")


def schema_errors(schema: str, instance: object) -> list[str]:
    """Errors of instance against a schema of openapi.yaml: a name under #/components/schemas,
    or a JSON pointer ("#/components/responses/...")."""
    if schema not in _VALIDATORS:
        pointer = schema if schema.startswith("#") else f"#/components/schemas/{schema}"
        _VALIDATORS[schema] = Draft202012Validator({"$ref": _BASE_URI + pointer}, registry=_REGISTRY)
    return [f"{error.message} at /{'/'.join(map(str, error.absolute_path))}"
            for error in _VALIDATORS[schema].iter_errors(instance)][:5]


RECORD_FOUND = "#/components/responses/RecordFound/content/application~1json/schema"


# The seed's strings by status, spelled out (not imported): a changed string must fail here.
SEED_STRINGS = {
    200: {"No meta info found for this book."},
    400: {"Only array of goodreads book links is accepted.",
          "'url' query parameter is required. It must be a valid goodreads book URL."},
}
SEED_SCHEDULED = re.compile(r"[1-9][0-9]* books are scheduled for info parsing\.\Z")


def seed_text(response) -> str | None:
    """The body when it is one of the seed's strings, as text/html with its status; else None."""
    if response.mimetype != "text/html":
        return None
    text = response.get_data(as_text=True)
    status = response.status_code
    if text in SEED_STRINGS.get(status, ()) or (status == 200 and SEED_SCHEDULED.match(text)):
        return text
    return None


def _reject_constant(name: str) -> None:
    raise AssertionError(f"the answer is not strict JSON: it contains {name}")


def strict_json(response) -> object:
    assert response.mimetype == "application/json", f"not JSON: {response.content_type}"
    return json.loads(response.get_data(as_text=True), parse_constant=_reject_constant)


def describe(method: str, path: str, sent: object = None) -> str:
    text = f"{method} {path!r}"
    if sent is not None:
        text += f" with {sent!r}"[:600]
    return text


def check_error(body: object, what: str) -> None:
    assert isinstance(body, dict) and set(body) == {"error"}, f"{what}: not an error object: {body!r}"[:800]
    detail = body["error"]
    assert isinstance(detail, dict) and set(detail) == {"code", "message"}, f"{what}: {body!r}"[:800]
    assert isinstance(detail["code"], str) and detail["code"], what
    assert isinstance(detail["message"], str) and detail["message"], what


def check_answer(response, what: str, *, schemas: dict[int, str] | None = None) -> object:
    """The invariants of every answer. `schemas` maps a 2xx status to its documented schema."""
    status = response.status_code
    assert status < 500, f"{what} answered {status}: {response.get_data()[:800]!r}"
    text = seed_text(response)
    if text is not None:
        return text
    if status >= 400:
        body = strict_json(response)
        if status == 400 and isinstance(body, dict) and "rejected" in body:
            problems = schema_errors("BatchRejected", body)  # every URL refused: the submission shape
            assert not problems, f"{what}: 400 not the documented BatchRejected: {problems} {body!r}"[:1500]
        else:
            check_error(body, what)
        if status in (429, 503):
            assert response.headers.get("Retry-After", "").isdigit(), f"{what}: {status} without Retry-After"
        if status == 401:
            assert response.headers.get("WWW-Authenticate") == "Bearer", what
        return body
    if schemas and status in schemas:
        body = strict_json(response)
        problems = schema_errors(schemas[status], body)
        assert not problems, f"{what}: {status} not the documented {schemas[status]}: {problems} {body!r}"[:1500]
        return body
    return None


def check_submission(response, what: str, sent: object, *, seed: bool = False) -> None:
    """POST /parse (and, seed=True, /parseGoodreadsLinks): the invariants, and 202/400 agree
    with what was sent. The seed's route answers 200 or 400 with the seed's strings only."""
    body = check_answer(response, what, schemas={202: "BatchAccepted"})
    status = response.status_code
    if seed or isinstance(body, str):
        assert seed, f"{what}: the seed's answer from another route: {body!r}"
        assert status in (200, 400, 401, 413, 415, 429), f"{what}: unexpected {status}"
        assert status not in (200, 400) or isinstance(body, str), f"{what}: not the seed's answer: {body!r}"[:800]
        return
    if status == 202:
        assert HEX.match(body["batch_id"]) and len(body["batch_id"]) == 32, what
        urls = sent["urls"] if isinstance(sent, dict) else sent
        if isinstance(urls, list):  # every item is answered, accepted or rejected, in order
            answered = [item["url"] for item in body["accepted"]] + [item["url"] for item in body["rejected"]]
            assert len(answered) == len(urls), f"{what}: {len(urls)} sent, {len(answered)} answered"
        for item in body["accepted"]:
            assert len(item["job_id"]) == 64 and HEX.match(item["job_id"]), what
    assert status in (202, 400, 401, 413, 415, 429), f"{what}: unexpected {status}"
