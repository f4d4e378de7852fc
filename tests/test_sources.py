"""sources.route: which pages are accepted, under which source, and the one canonical URL of each."""
from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from guard import check_url_shape
from sources import (
    GENERIC, GOODREADS, NEWS, SOURCES, Route, Unsupported, canonical_generic_url, goodreads_book_url, route,
    source_for_url,
)

HOBBIT = "https://www.goodreads.com/book/show/5907"
NEWS_SITES = ("bbc.com", "bbc.co.uk", "theguardian.com", "washingtonpost.com", "foxnews.com", "wsj.com")


def refusal(url: object, allow_any_site: bool = False) -> str:
    with pytest.raises(Unsupported) as info:
        route(url, allow_any_site=allow_any_site)
    assert info.value.reason == str(info.value) and info.value.reason
    return info.value.reason


# --- Goodreads ------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "https://www.goodreads.com/book/show/5907",
    "https://www.goodreads.com/book/show/5907.The_Hobbit",
    "https://www.goodreads.com/book/show/5907-the-hobbit",
    "https://m.goodreads.com/book/show/5907?x#y",
    "https://goodreads.com/book/show/5907",
    "https://www.goodreads.com/en/book/show/5907",
    "https://www.goodreads.com/en/book/show/5907.The_Hobbit",
    "https://goodreads.com/en/book/show/5907-the-hobbit",
    "http://www.goodreads.com/book/show/5907",
    "https://WWW.GoodReads.COM/Book/Show/5907",
    "https://www.goodreads.com./book/show/5907",
    "https://www.goodreads.com:443/book/show/5907",
    "https://www.goodreads.com/book/show/5907/",
    "https://www.goodreads.com/book/show/5907?from_search=true&utm_source=x",
    "https://www.goodreads.com/book/show/5907.The_Hobbit#other_reviews",
    "https://www.goodreads.com/book/show/005907",
    "  https://www.goodreads.com/book/show/5907  ",
])
def test_goodreads_spellings_are_one_book(url):
    routed = route(url)
    assert routed == Route(GOODREADS, HOBBIT)


@pytest.mark.parametrize("allow_any_site", [False, True])
def test_goodreads_book_wins_over_generic(allow_any_site):
    assert route("https://m.goodreads.com/book/show/5907-the-hobbit", allow_any_site).source is GOODREADS


def test_different_goodreads_ids_are_different_books():
    assert route("https://www.goodreads.com/book/show/59070").canonical_url == "https://www.goodreads.com/book/show/59070"
    assert route("https://www.goodreads.com/book/show/5907").canonical_url != route(
        "https://www.goodreads.com/book/show/59070").canonical_url


def test_goodreads_book_url():
    assert goodreads_book_url("5907") == HOBBIT
    assert goodreads_book_url(5907) == HOBBIT
    assert goodreads_book_url("0005907") == HOBBIT


@pytest.mark.parametrize("url", [
    "https://www.goodreads.com/",
    "https://www.goodreads.com/author/show/656983.J_R_R_Tolkien",
    "https://www.goodreads.com/book/show/",
    "https://www.goodreads.com/book/show/the-hobbit",
    "https://www.goodreads.com/book/show/5907abc",
    "https://www.goodreads.com/books/show/5907",
    "https://www.goodreads.com/review/list/1",
    "https://www.goodreads.com/search?q=hobbit",
    "https://www.goodreads.com/english/book/show/5907",
])
def test_goodreads_non_book_pages(url):
    assert "Goodreads" in refusal(url)
    routed = route(url, allow_any_site=True)
    assert routed.source is GENERIC
    assert routed.canonical_url.startswith("https://www.goodreads.com/")


@pytest.mark.parametrize("url", [
    "https://goodreads.com.evil.example/book/show/5907",
    "https://evilgoodreads.com/book/show/5907",
    "https://api.goodreads.com/book/show/5907",
])
def test_goodreads_lookalike_hosts_are_not_goodreads(url):
    refusal(url)
    assert route(url, allow_any_site=True).source is GENERIC


# --- news sites -----------------------------------------------------------------------------------


@pytest.mark.parametrize("url, canonical", [
    ("https://www.bbc.com/", "https://www.bbc.com/"),
    ("https://www.bbc.com", "https://www.bbc.com/"),
    ("https://www.bbc.com/news", "https://www.bbc.com/news"),
    ("https://bbc.com/news/", "https://www.bbc.com/news"),
    ("http://BBC.com/News/World?edition=uk#top", "https://www.bbc.com/news/world"),
    ("https://www.bbc.com/news/world-us-canada", "https://www.bbc.com/news/world-us-canada"),
    ("https://www.bbc.co.uk/", "https://www.bbc.co.uk/"),
    ("https://bbc.co.uk/news", "https://www.bbc.co.uk/news"),
    ("https://www.bbc.co.uk/sport/football", "https://www.bbc.co.uk/sport/football"),
    ("https://www.theguardian.com/", "https://www.theguardian.com/"),
    ("https://theguardian.com/uk", "https://www.theguardian.com/uk"),
    ("https://amp.theguardian.com/international", "https://www.theguardian.com/international"),
    ("https://www.theguardian.com/us-news", "https://www.theguardian.com/us-news"),
    ("https://www.theguardian.com/world/europe-news", "https://www.theguardian.com/world/europe-news"),
    ("https://www.washingtonpost.com/", "https://www.washingtonpost.com/"),
    ("https://washingtonpost.com/politics/", "https://www.washingtonpost.com/politics"),
    ("https://www.washingtonpost.com/world", "https://www.washingtonpost.com/world"),
    ("https://www.foxnews.com/", "https://www.foxnews.com/"),
    ("https://foxnews.com/politics", "https://www.foxnews.com/politics"),
    ("https://www.foxnews.com/us", "https://www.foxnews.com/us"),
    ("https://www.wsj.com/", "https://www.wsj.com/"),
    ("https://wsj.com/news/markets", "https://www.wsj.com/news/markets"),
    ("https://www.wsj.com/economy?mod=nav_top_section", "https://www.wsj.com/economy"),
    ("https://www.wsj.com.:443/world", "https://www.wsj.com/world"),
])
def test_news_front_pages(url, canonical):
    for allow_any_site in (False, True):
        routed = route(url, allow_any_site=allow_any_site)
        assert routed.source is NEWS
        assert routed.canonical_url == canonical


@pytest.mark.parametrize("url", [
    # BBC: numeric ids, /articles/, /live/, deep paths
    "https://www.bbc.com/news/world-us-canada-68123456",
    "https://www.bbc.co.uk/news/uk-politics-68123456",
    "https://www.bbc.com/news/articles/c4gq5w8xj0eo",
    "https://www.bbc.co.uk/news/live",
    "https://www.bbc.com/sport/football/68123456",
    "https://www.bbc.com/news/world/europe/slug",
    # Guardian: dates, long slugs
    "https://www.theguardian.com/world/2024/jan/01/some-story",
    "https://amp.theguardian.com/world/2024/jan/01/some-story",
    "https://www.theguardian.com/politics/live/2024/mar/05/uk-politics-latest",
    "https://www.theguardian.com/books/the-hobbit-at-ninety-still-a-classic",
    # Washington Post: dates, .html
    "https://www.washingtonpost.com/politics/2024/01/01/slug/",
    "https://www.washingtonpost.com/technology/2024/05/10/ai-chips-nvidia/",
    "https://www.washingtonpost.com/2024",
    "https://www.washingtonpost.com/local/story.html",
    # Fox News: long hyphenated slugs, numeric video ids, /video
    "https://www.foxnews.com/politics/house-republicans-pass-bill-to-fund-government",
    "https://www.foxnews.com/video/6345678901112",
    "https://www.foxnews.com/video",
    "https://www.foxnews.com/us/story.html",
    # WSJ: /articles/, ids, long slugs
    "https://www.wsj.com/articles/fed-holds-rates-steady-11600000000",
    "https://www.wsj.com/articles/some-title",
    "https://www.wsj.com/world/middle-east/israel-hamas-war-b3c4d5e6",
    "https://www.wsj.com/finance/stocks-rally-as-inflation-cools-further",
    "https://www.wsj.com/news/page.htm",
])
def test_news_articles_refused_unless_any_site(url):
    reason = refusal(url)
    assert "front page" in reason
    routed = route(url, allow_any_site=True)
    assert routed.source is GENERIC
    assert routed.canonical_url == canonical_generic_url(url)


@pytest.mark.parametrize("site", NEWS_SITES)
def test_every_news_site_has_front_and_article(site):
    assert route(f"https://{site}/").canonical_url == f"https://www.{site}/"
    assert route(f"https://www.{site}/politics").source is NEWS
    refusal(f"https://www.{site}/politics/2024/01/02/budget-vote")
    refusal(f"https://www.{site}/politics/senate-passes-the-budget-after-long-night")
    refusal(f"https://{site}/politics/article-12345678")


@pytest.mark.parametrize("url", [
    "https://edition.cnn.com/",
    "https://news.bbc.co.uk/",
    "https://bbc.com.evil.example/news",
    "https://notbbc.com/news",
    "https://example.com/",
    "https://www.nytimes.com/",
])
def test_unsupported_sites_name_the_supported_ones(url):
    reason = refusal(url)
    assert "unsupported site" in reason
    assert "Goodreads" in reason
    for site in NEWS_SITES:
        assert site in reason


# --- inputs that are not URLs ---------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, 0, 123, 1.5, b"https://www.bbc.com/", ["https://www.bbc.com/"],
                                   {"url": "https://www.bbc.com/"}, "", "   ", "\n\t"])
@pytest.mark.parametrize("allow_any_site", [False, True])
def test_non_string_or_empty_refused(value, allow_any_site):
    assert "non-empty string" in refusal(value, allow_any_site)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/",
    "http://localhost:8000/admin",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/",
    "http://2130706433/",
    "http://user:pass@www.bbc.com/news",
    "file:///etc/passwd",
    "ftp://www.goodreads.com/book/show/5907",
    "javascript:alert(1)",
    "https://www.bbc.com/news\\..\\x",
    "https://example.com:99999/",
    "www.bbc.com/news",
    "https://example.com/" + "a" * 2100,
    "http://[::1/",
    "http://[example.com]/",
])
@pytest.mark.parametrize("allow_any_site", [False, True])
def test_unsafe_urls_refused_with_guard_reason(url, allow_any_site):
    refusal(url, allow_any_site)


@pytest.mark.parametrize("url", [
    "http://\uff11\uff12\uff17.0.0.1/",  # fullwidth digits
    "http://\u2460\u2461\u2466.0.0.1/",  # circled digits
    "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/",  # fullwidth "localhost"
    "https://bücher.example/",
    "https://Example.COM:443/a?utm_source=x",
])
def test_accepted_canonical_url_passes_the_guard(url):
    """Whatever route accepts, its canonical URL (the URL that gets fetched) must pass the guard too."""
    try:
        routed = route(url, allow_any_site=True)
    except Unsupported:
        return
    check_url_shape(routed.canonical_url)


# --- generic canonicalisation ---------------------------------------------------------------------


@pytest.mark.parametrize("url, canonical", [
    ("https://example.com", "https://example.com/"),
    ("HTTPS://Example.COM/", "https://example.com/"),
    ("https://example.com./a", "https://example.com/a"),
    ("https://example.com/Path/To/Page", "https://example.com/Path/To/Page"),
    ("https://example.com:443/a", "https://example.com/a"),
    ("http://example.com:80/a", "http://example.com/a"),
    ("https://example.com:80/a", "https://example.com:80/a"),
    ("http://example.com:443/a", "http://example.com:443/a"),
    ("http://example.com:8080/a", "http://example.com:8080/a"),
    ("https://example.com/a#section", "https://example.com/a"),
    ("https://example.com/a?b=2&a=1", "https://example.com/a?a=1&b=2"),
    ("https://example.com/a?b=2&a=1#x", "https://example.com/a?a=1&b=2"),
    ("https://example.com/a?a=&b=1", "https://example.com/a?a=&b=1"),
    ("https://example.com/a?utm_source=tw&utm_medium=social&utm_campaign=x", "https://example.com/a"),
    ("https://example.com/a?UTM_Source=tw&id=7", "https://example.com/a?id=7"),
    ("https://example.com/a?id=7&fbclid=abc&gclid=def&msclkid=g", "https://example.com/a?id=7"),
    ("https://example.com/?mc_cid=1&mc_eid=2&igshid=3&yclid=4&dclid=5", "https://example.com/"),
    ("https://example.com/?_ga=1&_gl=2&ref_src=3&cmpid=4&ocid=5&q=x", "https://example.com/?q=x"),
    ("https://example.com/?ref=home&page=2", "https://example.com/?page=2&ref=home"),
    ("https://example.com/?utm=keep", "https://example.com/?utm=keep"),
    ("https://bücher.example/seite", "https://xn--bcher-kva.example/seite"),
    ("https://BÜCHER.example/", "https://xn--bcher-kva.example/"),
    ("https://xn--bcher-kva.example/", "https://xn--bcher-kva.example/"),
    ("https://[2606:4700:4700::1111]:443/x", "https://[2606:4700:4700::1111]/x"),
    ("https://[2606:4700:4700::1111]:8443/x", "https://[2606:4700:4700::1111]:8443/x"),
])
def test_generic_canonical_url(url, canonical):
    routed = route(url, allow_any_site=True)
    assert routed.source is GENERIC
    assert routed.canonical_url == canonical


@pytest.mark.parametrize("url", [
    "https://Example.COM:443/a/b?z=1&utm_source=x&a=2#frag",
    "https://example.com/search?q=a+b&q=c",
    "https://example.com/p?x=%2B&y=a%20b",
    "https://bücher.example/seite?b=1&a=2",
    "https://www.goodreads.com/author/show/1?utm_medium=x",
    "https://www.bbc.com/news/world-12345678?at_medium=RSS",
])
def test_generic_canonical_url_is_stable(url):
    once = route(url, allow_any_site=True).canonical_url
    assert route(once, allow_any_site=True).canonical_url == once


def test_generic_sites_refused_by_default():
    refusal("https://example.com/a")


# --- sources, queues, TTLs ------------------------------------------------------------------------


@pytest.mark.parametrize("url, source, queue, ttl, kind", [
    ("https://www.goodreads.com/book/show/5907", "goodreads", "goodreads", 7 * 86400, "goodreads_book"),
    ("https://www.bbc.com/news", "news", "news", 15 * 60, "news_headlines"),
    ("https://example.com/", "generic", "pages", 86400, "page"),
])
def test_queue_and_ttl_per_source(url, source, queue, ttl, kind):
    routed = route(url, allow_any_site=True)
    assert routed.source is SOURCES[source]
    assert (routed.source.name, routed.queue, routed.ttl, routed.source.kind) == (source, queue, ttl, kind)


def test_sources_registry():
    assert SOURCES == {"goodreads": GOODREADS, "news": NEWS, "generic": GENERIC}
    assert len({s.queue for s in SOURCES.values()}) == 3


@pytest.mark.parametrize("url, source", [
    ("https://www.goodreads.com/book/show/5907-the-hobbit", GOODREADS),
    ("https://bbc.co.uk/news", NEWS),
    ("https://www.bbc.co.uk/news/uk-12345678", GENERIC),
    ("https://example.com/", GENERIC),
    ("http://127.0.0.1/", GENERIC),
    ("not a url", GENERIC),
])
def test_source_for_url(url, source):
    assert source_for_url(url) is source


def test_unsupported_is_a_value_error_with_reason():
    exc = Unsupported("because")
    assert isinstance(exc, ValueError)
    assert exc.reason == "because" == str(exc)


# --- one canonical URL, one source: hosts read as DNS reads them (IDNA) ----------------------------

DOTS = {"ideographic full stop": "\u3002", "fullwidth full stop": "\uff0e", "halfwidth ideographic full stop": "\uff61"}


def host_spellings(host: str) -> dict[str, str]:
    """Spellings of host that IDNA maps back to it."""
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in host)
    spellings = {name: host.replace(".", dot) for name, dot in DOTS.items()}
    return {**spellings, "fullwidth letters": fullwidth, "fullwidth capitals": fullwidth.upper(),
            "mixed dots and a final dot": host.replace(".", "\u3002", 1) + "."}


@pytest.mark.parametrize("allow_any_site", [False, True])
@pytest.mark.parametrize("plain, path", [("www.goodreads.com", "/book/show/1001"), ("m.goodreads.com", "/book/show/1"),
                                         ("www.bbc.com", "/news"), ("theguardian.com", "/uk")])
def test_every_idna_spelling_of_a_known_host_routes_to_its_source(plain, path, allow_any_site):
    expected = route(f"https://{plain}{path}")
    for name, host in host_spellings(plain).items():
        assert route(f"https://{host}{path}", allow_any_site) == expected, name


def test_the_issues_spelling_is_the_book_not_a_generic_page():
    """With any site allowed, this spelling used to get the book's canonical URL as a generic page."""
    routed = route("https://www\u3002goodreads\u3002com/book/show/1001", allow_any_site=True)
    assert routed == Route(GOODREADS, "https://www.goodreads.com/book/show/1001")


HOST_PIECES = st.sampled_from(["www", "m", "goodreads", "bbc", "co", "uk", "theguardian", "com", "example", "wsj",
                               "\uff47oodreads", "ＷＷＷ", "ｃｏｍ", "GoodReads", "xn--bcher-kva", "bücher"])
# U+FE12 (a vertical ideographic full stop): w3lib's IDNA maps it to a dot, Python's does not, so
# only the generic canonical form names the known site (sources._other_site_route).
W3LIB_ONLY_DOT = "\ufe12"
DOT = st.sampled_from([".", "\u3002", "\uff0e", "\uff61", W3LIB_ONLY_DOT])
PATHS = st.sampled_from(["/", "/book/show/1001", "/book/show/1001-x", "/news", "/uk", "/a/b/c", "/book/show/x",
                         "/news/articles/abc-1234", "/?utm_source=x&a=1"])


@st.composite
def urls(draw) -> str:
    pieces = draw(st.lists(HOST_PIECES, min_size=1, max_size=4))
    host = "".join(piece + draw(DOT) for piece in pieces[:-1]) + pieces[-1]
    return f"{draw(st.sampled_from(['http', 'https', 'HTTPS']))}://{host}{draw(PATHS)}"


@given(urls())
@example(f"https://www{W3LIB_ONLY_DOT}goodreads{W3LIB_ONLY_DOT}com/book/show/1001")
@settings(max_examples=500, deadline=None)
def test_a_canonical_url_routes_to_itself_and_the_same_source(url):
    try:
        first = route(url, allow_any_site=True)
    except Unsupported:
        return
    again = route(first.canonical_url, allow_any_site=True)
    assert again == first
