"""parsers.news: every rule on hand-written fixtures, the generic extractor alone, hostile input,
and (when ../shared/pages is present) the generic extractor on the real saved fronts.

The fixtures in tests/fixtures/news/ reproduce each site's layout STRUCTURE with invented stories,
so a clone without the real pages still tests everything; the real pages are checked by
tests/golden/news-*.json (site rules) and by test_generic_extractor_on_real_fronts below.
"""
from __future__ import annotations

import random
import re
import time
from pathlib import Path
from urllib.parse import urljoin

import lxml.html
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parsers
from errors import ParseError
from parsers import news, news_cards, tree
from parsers.encoding import decode_html
from tests.pages import manifest, read_page
from tests.parsers.contract import assert_contract_keys, assert_headline_item

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "news"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def run(extractor, html: str, url: str) -> list[dict]:
    """One extractor on a page, prepared the way parse() prepares it, its stories as items."""
    doc = tree.build_document(html)
    site = news.site_name(url)
    page = news.Page(url, news.base_url(doc, url), site, news.same_site_domains(site))
    news.strip_chrome(doc, len(doc.links()))
    return [{"title": c.title, "url": news.canonical_url(c.url), "kicker": c.kicker, "sublink": c.sublink}
            for c in extractor(doc, page)]


def pairs(headlines: list[dict]) -> list[tuple[str, str]]:
    """(title, url) of the main stories: sub-links left out."""
    return [(h["title"], h["url"]) for h in headlines if not h["sublink"]]


def linked_pairs(headlines: list[dict]) -> list[tuple[str, str]]:
    """(title, URL as the page links it) of the main stories: what the manifest samples record."""
    return [(h["title"], h["url_as_linked"] or h["url"]) for h in headlines if not h["sublink"]]


def sublinks(headlines: list[dict]) -> list[tuple[str, str]]:
    return [(h["title"], h["url"]) for h in headlines if h["sublink"]]


def leads_of_sublinks(headlines: list[dict]) -> set[str]:
    """The title of the main story each sub-link follows in page order."""
    leads, lead = set(), None
    for headline in headlines:
        if not headline["sublink"]:
            lead = headline["title"]
        else:
            leads.add(lead)
    return leads


# Each fixture's URL, site and headlines: its main story cards, in page order.
EXPECTED = {
    "bbc-gel-2018.html": ("http://www.bbc.co.uk/news", "bbc.co.uk", [
        ("Harbour bridge reopens after week of repairs", "http://www.bbc.co.uk/news/world-europe-41000001"),
        ("Ministers split over rural bus subsidy plan", "http://www.bbc.co.uk/news/uk-politics-41000002"),
        ("Lifeboat crew rescue stranded kayakers at dusk", "http://www.bbc.co.uk/news/uk-41000003"),
        ("Live music festival returns to the seafront", "http://www.bbc.co.uk/sport/live/cricket/41000004"),
        ("Bakery chain to open forty new stores", "http://www.bbc.co.uk/news/business-41000005"),
        ("Rare orchid found growing on motorway verge", "http://www.bbc.co.uk/news/science-environment-41000006"),
    ]),
    "bbc-next-2023.html": ("https://www.bbc.com/news", "bbc.com", [
        ("Flood waters begin to recede across northern valleys", "https://www.bbc.com/news/live/world-asia-70000001"),
        ("Court clears way for new highway toll", "https://www.bbc.com/news/world-us-canada-70000003"),
        ("Watch: Puffins return to island colony", "https://www.bbc.com/news/uk-70000004"),
        ("Ten quiet beaches for a winter escape",
         "https://www.bbc.com/travel/article/20231215-ten-quiet-beaches-for-winter"),
    ]),
    "guardian-2017.html": ("https://www.theguardian.com/international", "theguardian.com", [
        ("Council votes to ban cars from the old town",
         "https://www.theguardian.com/world/2017/may/18/city-council-votes-to-ban-cars-from-old-town"),
        ("Budget vote goes to the wire as rebels hold out",
         "https://www.theguardian.com/politics/live/2017/may/18/budget-vote-live-updates"),
        ("Libraries are worth every penny we spend on them",
         "https://www.theguardian.com/commentisfree/2017/may/18/libraries-are-worth-every-penny"),
        ("How bees find their way home",
         "https://www.theguardian.com/science/video/2017/may/17/how-bees-find-their-way-home-video"),
        ("Savers switch to fixed-rate bonds in record numbers",
         "https://www.theguardian.com/money/2017/may/17/savers-switch-to-fixed-rate-bonds"),
    ]),
    "guardian-dcr.html": ("https://www.theguardian.com/us", "theguardian.com", [
        ("River town votes to rebuild its levee after spring floods",
         "https://www.theguardian.com/us-news/2024/mar/04/river-town-votes-to-rebuild-levee"),
        ("City parks deserve better than this", "https://www.theguardian.com/commentisfree/2024/mar/04/city-parks-deserve-better"),
        ("A night train across the Alps, in four minutes",
         "https://www.theguardian.com/world/video/2024/mar/03/night-train-across-the-alps-video"),
    ]),
    "wapo-2023.html": ("https://www.washingtonpost.com/", "washingtonpost.com", [
        ("Mountain glaciers are melting faster than forecast, study finds",
         "https://www.washingtonpost.com/climate-environment/2023/03/08/glacier-melt-speeds-up/"),
        ("Senate passes rail safety bill after months of delay",
         "https://www.washingtonpost.com/politics/2023/03/08/senate-passes-rail-safety-bill/"),
        ("Our cities need more trees, not more parking",
         "https://www.washingtonpost.com/opinions/2023/03/08/cities-need-more-trees/"),
        ("Metro adds late-night trains on weekends",
         "https://www.washingtonpost.com/dc-md-va/2023/03/08/metro-adds-late-night-trains/"),
    ]),
    "wsj-2018.html": ("https://www.wsj.com/", "wsj.com", [
        ("Shipping Rates Jump as Ports Clog", "https://www.wsj.com/articles/shipping-rates-jump-as-ports-clog-1526570001"),
        ("Chip Maker Plans New Plant in Arizona", "https://www.wsj.com/articles/chip-maker-plans-new-plant-1526570004"),
        ("How a Chip Is Made, Step by Step",
         "https://www.wsj.com/video/how-a-chip-is-made/ABCDEF12-3456-7890-ABCD-EF1234567890.html"),
        ("Bond Yields Slip as Investors Seek Safety", "https://www.wsj.com/articles/bond-yields-slip-1526570005"),
        ("The Quiet Boom in Bicycle Repair",
         "https://www.wsj.com/articles/the-quiet-boom-in-bicycle-repair-1526470006"),
    ]),
    "wsj-2020.html": ("https://www.wsj.com/", "wsj.com", [
        ("Factory Orders Rise for a Third Straight Month",
         "https://www.wsj.com/articles/factory-orders-rise-for-third-month-11600000001"),
        ("City Parks Get a Makeover", "https://www.wsj.com/articles/city-parks-get-a-makeover-11600000004"),
        ("How Cargo Ships Are Built",
         "https://www.wsj.com/video/series/in-depth/how-cargo-ships-are-built/0A1B2C3D-4E5F-6789-ABCD-EF0123456789"),
    ]),
    "foxnews.html": ("https://www.foxnews.com/", "foxnews.com", [
        ("Wildfire forces evacuations in three mountain towns",
         "https://www.foxnews.com/us/wildfire-forces-evacuations-mountain-towns"),
        ("House passes budget deal in late-night vote",
         "https://www.foxnews.com/politics/house-passes-budget-deal-late-night-vote"),
        ("Rescue dog reunites with family after two years", "https://www.foxnews.com/video/6340000002"),
        ("Small towns deserve faster internet", "https://www.foxnews.com/opinion/small-towns-deserve-faster-internet"),
    ]),
    "generic-front.html": ("https://www.example-news.org/", "example-news.org", [
        ("Bridge collapse closes river crossing",
         "https://www.example-news.org/2024/05/01/bridge-collapse-closes-river-crossing"),
        ("Election results show a tight race in the capital",
         "https://www.example-news.org/2024/05/01/election-results-show-tight-race"),
        ("Heatwave warning issued for the weekend",
         "https://www.example-news.org/2024/05/01/heatwave-warning-issued-for-weekend"),
        ("Port strike enters its second week",
         "https://www.example-news.org/world/2024/05/01/port-strike-enters-second-week"),
        ("Museum returns stolen mask to its owners",
         "https://www.example-news.org/culture/museum-returns-stolen-mask-to-owners"),
        ("Budget committee delays vote on school funding",
         "https://www.example-news.org/news/politics/article12345678.html"),
        ("Storm chasers film rare twin tornadoes",
         "https://www.example-news.org/video/2024/05/01/storm-chasers-film-rare-twin-tornadoes"),
        ("Why the four-day week works", "https://www.example-news.org/opinion/2024/05/01/why-the-four-day-week-works"),
        ("Valley Rovers win the cup final on penalties",
         "https://www.example-news.org/sport/2024/05/01/valley-rovers-win-the-cup-final"),
    ]),
}
# Related links under a lead card: listed right after it, in page order, marked as sub-links.
SUBLINKS = {
    "bbc-next-2023.html": [  # h4[data-testid=card-related-headline]
        ("How the storm grew so fast", "https://www.bbc.com/news/world-asia-70000002"),
    ],
    "guardian-2017.html": [  # a.fc-sublink__link, in the card's vertical and horizontal footers
        ("The old town streets, mapped",
         "https://www.theguardian.com/world/ng-interactive/2017/may/18/the-old-town-streets-mapped"),
    ],
    "guardian-dcr.html": [  # h3.card-sublink-headline
        ("Levee vote: reaction from the riverside", "https://www.theguardian.com/us-news/live/2024/mar/04/levee-vote-latest"),
        ("Who pays for flood defences?", "https://www.theguardian.com/us-news/2024/mar/04/who-pays-for-flood-defences"),
    ],
    "wapo-2023.html": [  # "MORE COVERAGE" <li> links in a homepage/story card
        ("Rescue teams reach remote valley", "https://www.washingtonpost.com/climate-environment/2023/03/08/glacier-live-updates/"),
        ("What glacier loss means for water supplies",
         "https://www.washingtonpost.com/climate-environment/2023/03/09/what-glacier-loss-means/"),
    ],
    "wsj-2018.html": [  # li.wsj-bullet-item
        ("Retailers Brace for Late Deliveries",
         "https://www.wsj.com/articles/retailers-brace-for-late-deliveries-1526560002"),
        ("Why Ports Clog Every Spring", "https://www.wsj.com/articles/why-ports-clog-1526560003"),
    ],
    "wsj-2020.html": [  # li.WSJTheme--bullet-item
        ("What the Factory Data Says About Hiring", "https://www.wsj.com/articles/what-factory-data-says-11600000002"),
        ("Stocks Rise After the Report", "https://www.wsj.com/livecoverage/markets-today-11600000003"),
    ],
    "foxnews.html": [  # article .related-item
        ("Firefighters battle strong winds through the night", "https://www.foxnews.com/us/firefighters-battle-winds-overnight"),
        ("WATCH: Drone footage shows fire line near homes", "https://www.foxnews.com/video/6340000001"),
    ],
}
# The story whose card holds the sub-links, and the sub-links' kickers in page order.
SUBLINK_LEADS = {
    "bbc-next-2023.html": ("Flood waters begin to recede across northern valleys", [None]),
    "guardian-2017.html": ("Council votes to ban cars from the old town", ["Explainer"]),
    "guardian-dcr.html": ("River town votes to rebuild its levee after spring floods", ["Live", None]),
    "wapo-2023.html": ("Mountain glaciers are melting faster than forecast, study finds", ["Live briefing", "Analysis"]),
    "wsj-2018.html": ("Shipping Rates Jump as Ports Clog", [None, "Analysis"]),
    "wsj-2020.html": ("Factory Orders Rise for a Third Straight Month", ["Analysis", "Live Updates"]),
    "foxnews.html": ("Wildfire forces evacuations in three mountain towns", [None, None]),
}
# Stories the generic extractor also reads from lists the site rule skips (after the cards).
GENERIC_EXTRAS = {
    "guardian-dcr.html": [  # plain "most viewed" <h4>
        ("Why phone batteries now last longer than ever",
         "https://www.theguardian.com/technology/2024/mar/04/phone-batteries-last-longer"),
    ],
}
NO_SITE_RULE = {"generic-front.html"}


# --- Whole pages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_front(name: str) -> None:
    url, site, expected = EXPECTED[name]
    data = news.parse(fixture(name), url)
    assert_contract_keys(data)
    assert data["kind"] == "news_headlines"
    assert data["site"] == site
    assert pairs(data["headlines"]) == expected
    assert sublinks(data["headlines"]) == SUBLINKS.get(name, [])
    assert_sublinks_follow_their_lead(name, data["headlines"])
    assert [h["position"] for h in data["headlines"]] == list(range(1, len(data["headlines"]) + 1))


def assert_sublinks_follow_their_lead(name: str, headlines: list[dict]) -> None:
    lead, kickers = SUBLINK_LEADS.get(name, (None, []))
    assert leads_of_sublinks(headlines) == ({lead} if lead else set())
    assert [h["kicker"] for h in headlines if h["sublink"]] == kickers


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_generic_extractor_alone_on_fixture(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the site rules gone (markup changed beyond them), the same main stories come out, in
    order, with nothing else but the lists the rule skips, and the lead card's related links
    marked as its sub-links by structure alone."""
    monkeypatch.setattr(news, "SITE_RULES", {})
    url, _, expected = EXPECTED[name]
    headlines = news.parse(fixture(name), url)["headlines"]
    assert pairs(headlines) == expected + GENERIC_EXTRAS.get(name, [])
    assert sublinks(headlines) == SUBLINKS.get(name, [])
    assert_sublinks_follow_their_lead(name, headlines)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_site_rule_alone_on_fixture(name: str) -> None:
    url, _, expected = EXPECTED[name]
    found = run(news.site_headlines, fixture(name), url)
    if name in NO_SITE_RULE:
        assert found == []
    else:
        assert pairs(found) == expected
        assert sublinks(found) == SUBLINKS.get(name, [])


def test_parse_through_the_router() -> None:
    url, _, expected = EXPECTED["bbc-next-2023.html"]
    data = parsers.parse(fixture("bbc-next-2023.html").encode(), url, "text/html; charset=utf-8")
    assert pairs(data["headlines"]) == expected


def test_site_rules_win_when_they_find_enough() -> None:
    """A page with ENOUGH_HEADLINES site-rule stories is not second-guessed by the generic pass."""
    cards = "".join(
        f'<div class="gs-c-promo"><a class="gs-c-promo-heading" href="/news/uk-5000000{i}">'
        f'<h3 class="gs-c-promo-heading__title">Story number {i} about the weather</h3></a></div>'
        for i in range(news.ENOUGH_HEADLINES)
    )
    extra = '<p><a href="/news/uk-59999999">A plain link the generic pass would also take</a></p>'
    data = news.parse(f"<html><body>{cards}{extra}</body></html>", "https://www.bbc.co.uk/news")
    assert len(data["headlines"]) == news.ENOUGH_HEADLINES


def test_falls_back_to_generic_when_site_markup_changed() -> None:
    """A BBC URL over markup none of the BBC selectors know: the generic extractor answers."""
    html = fixture("generic-front.html")
    data = news.parse(html, "https://www.bbc.com/news")
    assert data["site"] == "bbc.com"
    assert ("Port strike enters its second week", "https://www.bbc.com/world/2024/05/01/port-strike-enters-second-week") \
        in pairs(data["headlines"])


# --- Rules, one by one ------------------------------------------------------------------------------


def page(*cards: str, head: str = "") -> str:
    return f"<html><head>{head}</head><body><main>{''.join(cards)}</main></body></html>"


def story(path: str, title: str) -> str:
    return f'<article><h2><a href="{path}">{title}</a></h2></article>'


def test_duplicate_url_keeps_first_position_and_first_good_title() -> None:
    html = page(
        '<a href="/2024/01/02/first-story-of-the-day"><img src="x.jpg" alt=""></a>',
        story("/2024/01/02/second-story-of-the-day", "Second story of the day is here"),
        story("/2024/01/02/first-story-of-the-day?utm_source=hp", "First story of the day is here"),
        story("/2024/01/02/first-story-of-the-day#comments", "A different title for the first story"),
    )
    headlines = news.parse(html, "https://news.example.com/")["headlines"]
    assert pairs(headlines) == [
        ("First story of the day is here", "https://news.example.com/2024/01/02/first-story-of-the-day"),
        ("Second story of the day is here", "https://news.example.com/2024/01/02/second-story-of-the-day"),
    ]


def test_relative_links_resolve_against_base_href() -> None:
    html = page(story("2024/01/02/council-approves-new-library", "Council approves a new library"),
                head='<base href="https://cdn.example.com/frontpage/">')
    headlines = news.parse(html, "https://www.example.com/")["headlines"]
    assert pairs(headlines) == [("Council approves a new library",
                                 "https://cdn.example.com/frontpage/2024/01/02/council-approves-new-library")]


def test_navigation_footer_and_ads_are_skipped() -> None:
    nav = '<nav>' + story("/2024/01/02/nav-story-that-is-really-a-menu", "A story link inside the navigation") + '</nav>'
    footer = "<footer>" + "".join(f'<a href="/x{i}">Link {i}</a>' for i in range(10)) + \
        story("/2024/01/02/footer-story-link-here", "A story link inside the page footer") + "</footer>"
    ad = '<div class="ad-slot">' + story("/2024/01/02/buy-our-sponsored-product", "Buy our sponsored product today") + "</div>"
    html = page(nav, story("/2024/01/02/the-real-story-here", "The real story is this one"), ad, footer)
    assert pairs(news.parse(html, "https://example.com/")["headlines"]) == [
        ("The real story is this one", "https://example.com/2024/01/02/the-real-story-here")]


def test_a_sponsored_label_takes_its_card_but_an_ad_caption_only_itself() -> None:
    sponsored = ('<div class="card"><span class="card__sponsor-label">Sponsored</span>'
                 + story("/2024/01/02/an-advertisers-story-here", "An advertiser's story dressed as news") + "</div>")
    listing = ('<div class="stories">' + story("/2024/01/02/first-listed-story", "First story in the list")
               + '<div class="ad-slot"><span>Advertisement</span></div>'
               + story("/2024/01/02/second-listed-story", "Second story in the list") + "</div>")
    titles = [h["title"] for h in news.parse(page(sponsored, listing), "https://example.com/")["headlines"]]
    assert titles == ["First story in the list", "Second story in the list"]


def test_a_cards_own_footer_and_header_are_kept() -> None:
    card = ('<div class="card"><header><h3><a href="/2024/01/02/lead-story-with-header">Lead story with its own header</a>'
            '</h3></header><footer><a href="/2024/01/02/related-story-in-card-footer">Related story in the card footer</a>'
            "</footer></div>")
    assert len(news.parse(page(card), "https://example.com/")["headlines"]) == 2


def eight_stories() -> list[str]:
    return [story(f"/2024/01/0{i}/small-front-story-number-{i}", f"Small front story number {i} of eight")
            for i in range(1, 9)]


@pytest.mark.parametrize("body_class", ["advert-layout", "page has-adverts", "sponsored-theme"])
def test_a_body_whose_class_names_ads_keeps_its_stories(body_class: str) -> None:
    """The whole page wears an ad-like class: it is the page, not an ad slot."""
    html = f'<html><body class="{body_class}"><main>{"".join(eight_stories())}</main></body></html>'
    data = news.parse(html, "https://example.com/", explain=True)
    assert len(data["headlines"]) == 8
    assert data["explain"]["chrome"] == news.Front.chrome  # found with chrome stripped, not by the fallback


@pytest.mark.parametrize("tag", ["main", "div"])
def test_an_ad_classed_wrapper_holding_most_links_is_kept(tag: str) -> None:
    links = "".join(f'<a href="/section-{i}">Section {i}</a>' for i in range(12))
    html = f'<html><body><{tag} class="ad-wrapper">{links}{"".join(eight_stories())}</{tag}></body></html>'
    data = news.parse(html, "https://example.com/", explain=True)
    assert len(data["headlines"]) == 8
    assert data["explain"]["chrome"] == news.Front.chrome


def test_when_stripping_leaves_no_story_the_whole_page_is_read() -> None:
    """Every story sits in a <header> busy enough to pass for the page's own header: rather than
    "no headlines", the stories of the unstripped page (whatever stripping took them for)."""
    html = f'<html><body><header>{"".join(eight_stories())}<a href="/a">A</a><a href="/b">B</a></header></body></html>'
    data = news.parse(html, "https://example.com/", explain=True)
    assert len(data["headlines"]) == 8
    assert data["explain"]["chrome"].startswith("nothing removed")


def test_promos_bylines_and_sections_are_not_stories() -> None:
    html = page(
        '<a href="/newsletters/daily-brief-for-readers">Sign up for our daily brief newsletter</a>',
        '<a href="/author/jane-doe-reporter-for-us">By Jane Doe</a>',
        '<h2><a href="/sport/">Sport</a></h2>',
        '<a href="/2024/01/02/a-story-to-read-now">Read more</a>',
        story("/2024/01/02/one-real-story-here", "One real story on the page"),
    )
    assert pairs(news.parse(html, "https://example.com/")["headlines"]) == [
        ("One real story on the page", "https://example.com/2024/01/02/one-real-story-here")]


def test_other_sites_are_not_stories_for_the_generic_extractor() -> None:
    html = page(story("https://elsewhere.example.org/2024/01/02/someone-elses-story", "Someone else's story elsewhere"),
                story("/2024/01/02/our-own-story-here", "Our own story is right here"))
    assert [h["title"] for h in news.parse(html, "https://example.com/")["headlines"]] == ["Our own story is right here"]


def test_bbc_sibling_domain_counts_as_same_site() -> None:
    html = page(story("https://www.bbc.co.uk/news/articles/c51z888jj5do", "Golden gun goes on display for the first time"))
    assert news.parse(html, "https://www.bbc.com/news")["headlines"][0]["url"].startswith("https://www.bbc.co.uk/")


def test_a_kicker_without_a_class_is_kept_apart_from_the_title() -> None:
    html = page('<h3><a href="/2024/01/02/river-rises">'
                '<div>Flooding</div><span>River rises above the old flood mark</span></a></h3>',
                '<a href="/2024/01/02/sprint-factory-story">'
                'CLASSROOM PANIC<br>Young runners chase a place on the team</a>')
    assert [(h["kicker"], h["title"]) for h in news.parse(html, "https://example.com/")["headlines"]] == [
        ("Flooding", "River rises above the old flood mark"), ("CLASSROOM PANIC", "Young runners chase a place on the team")]


@pytest.mark.parametrize("shown, kicker, title", [
    ("Perspective: Cities should plant more trees", "Perspective", "Cities should plant more trees"),
    ("Analysis | Markets fall for a third day", "Analysis", "Markets fall for a third day"),
    ("LIVE Analysis: Polls close in the capital", "LIVE Analysis", "Polls close in the capital"),
    ("Live briefing: Missile attacks hit cities", "Live briefing", "Missile attacks hit cities"),
    # Labels the page writes as part of the title stay in it: the title as shown.
    ("The Fix: Why the senate race tightened", None, "The Fix: Why the senate race tightened"),
    ("Listen: The week in politics, in twenty minutes", None, "Listen: The week in politics, in twenty minutes"),
    # A video length or a comment count is furniture, not a label.
    ("Video 2:34 Puffins return to the island", None, "Puffins return to the island"),
])
def test_a_label_at_the_start_is_never_dropped(shown: str, kicker: str | None, title: str) -> None:
    """What the page shows before the title is either in the title or in kicker, never lost."""
    headline = news.parse(page(story("/2024/01/02/a-story-with-a-label", shown)), "https://example.com/")["headlines"][0]
    assert (headline["kicker"], headline["title"]) == (kicker, title)


def test_screen_reader_labels_and_timestamps_inside_a_headline_are_not_its_title() -> None:
    link = ('<h2><a href="/2024/01/02/bridge-reopens">Harbour bridge reopens after repairs'
            '<span class="visually-hidden"> (opens in a new window)</span><time>2 hours ago</time></a></h2>')
    headline = news.parse(page(link), "https://example.com/")["headlines"][0]
    assert (headline["kicker"], headline["title"]) == (None, "Harbour bridge reopens after repairs")


@pytest.mark.parametrize("empty, read", [(news.TITLE_SCAN // 2 - 1, True), (news.TITLE_SCAN // 2, False)])
def test_a_title_is_read_from_its_first_steps_entering_and_leaving_an_element_each_one(empty: int, read: bool) -> None:
    heading = lxml.html.fragment_fromstring("<h3>" + "<i></i>" * empty + "Harbour bridge reopens after repairs</h3>")
    assert news.headline_text(heading)[0] == ("Harbour bridge reopens after repairs" if read else None)


def test_kicker_elements_inside_and_before_the_title_element() -> None:
    card = ('<article class="card"><span class="card__eyebrow">Climate</span>'
            '<h2><a href="/2024/01/02/glaciers-melt-faster"><span class="kicker">Exclusive</span> '
            'Glaciers melt faster than forecast</a></h2></article>'
            '<article class="card"><span class="pill">LIVE</span>'
            '<h2><a href="/2024/01/02/polls-close-tonight">Polls close across the country tonight</a></h2></article>')
    headlines = news.parse(page(card), "https://example.com/")["headlines"]
    assert [(h["kicker"], h["title"]) for h in headlines] == [
        ("Exclusive", "Glaciers melt faster than forecast"), ("LIVE", "Polls close across the country tonight")]


def test_the_title_comes_from_the_headline_link_not_the_image_or_comment_link() -> None:
    """Three links to one story: an image (alt text), the headline, a comment count."""
    card = ('<article><a href="/2024/01/02/bridge-reopens" title="Photo: the bridge at dawn seen from the river">'
            '<img src="/img/bridge.jpg" alt=""></a>'
            '<p><a href="/2024/01/02/bridge-reopens">Read the latest on the bridge and the city</a></p>'
            '<h2><a href="/2024/01/02/bridge-reopens">Harbour bridge reopens after repairs</a></h2>'
            '<a class="comments" href="/2024/01/02/bridge-reopens#comments">1,204 comments on this story so far</a>'
            '</article>')
    headline = news.parse(page(card), "https://example.com/")["headlines"][0]
    assert headline["title"] == "Harbour bridge reopens after repairs"
    assert headline["position"] == 1


# Each fixture's lead story card as a reader sees it: kicker, summary, image, section.
CARD_FACTS = {
    "bbc-next-2023.html": ("LIVE", "Thousands of residents wait to return home after the storm.",
                           "https://www.bbc.com/a.jpg", "world-asia"),
    "guardian-2017.html": ("'A quieter city'", "Residents welcome the decision but shopkeepers fear lost trade.",
                           "https://www.theguardian.com/old-town.jpg", "world"),
    "wapo-2023.html": (None, "Scientists measured ice loss at 200 sites.", "https://www.washingtonpost.com/glacier.jpg",
                       "climate-environment"),
    "wsj-2018.html": (None, "Carriers add surcharges on Asia routes.", None, None),
    "generic-front.html": ("BREAKING", None, None, None),
}


@pytest.mark.parametrize("name", sorted(CARD_FACTS))
def test_the_lead_card_s_kicker_summary_image_and_section(name: str) -> None:
    url, _, _ = EXPECTED[name]
    lead = news.parse(fixture(name), url)["headlines"][0]
    assert (lead["kicker"], lead["summary"], lead["image"], lead["section"]) == CARD_FACTS[name]


def card_page(*cards: str) -> str:
    return page(*(f'<article class="card">{card}</article>' for card in cards))


def test_summary_image_and_kicker_are_read_from_the_story_s_own_card_only() -> None:
    first = ('<picture><source srcset="/img/a-640.jpg 640w, /img/a-1280.jpg 1280w"><img src="data:image/gif;base64,R0l"'
             ' data-src="/img/a-640.jpg" alt=""></picture>'
             '<h2><a href="/2024/01/02/first-card-story">First card story has a summary</a></h2>'
             '<p class="card__dek">A summary of the first story, in one sentence.</p>'
             '<p class="byline">By Jane Doe</p>')
    second = '<h2><a href="/2024/01/02/second-card-story">Second card story has nothing else</a></h2>'
    third = ('<img src="/static/grey-placeholder.png"><img src="/img/c.jpg">'
             '<h3><a href="/2024/01/02/third-card-story">Third card story shows a plain paragraph</a></h3>'
             '<p>By Sam Writer</p><p>A plain paragraph under the headline says what happened today.</p>')
    headlines = news.parse(card_page(first, second, third), "https://example.com/")["headlines"]
    facts = [(h["summary"], h["image"]) for h in headlines]
    assert facts == [
        ("A summary of the first story, in one sentence.", "https://example.com/img/a-640.jpg"),
        (None, None),
        ("A plain paragraph under the headline says what happened today.", "https://example.com/img/c.jpg"),
    ]


def test_a_summary_s_comment_count_and_byline_are_not_part_of_it() -> None:
    card = ('<h2><a href="/2024/01/02/port-story">Ports clog as shipping rates jump</a></h2>'
            '<div class="summary">Carriers add surcharges on routes. <span class="comment-count">312</span>'
            ' <span class="byline">By Jo Reporter</span></div>')
    assert news.parse(card_page(card), "https://example.com/")["headlines"][0]["summary"] == \
        "Carriers add surcharges on routes."


def test_a_sub_link_takes_nothing_from_its_lead_s_card() -> None:
    """The lead's summary and image sit beside its sub-links, outside its title: they are the
    lead's, not the sub-links'."""
    card = ('<div class="card"><h3><a href="/2024/01/02/kroger-pushes-online">Grocer makes bold push online</a></h3>'
            '<div class="card-body"><img src="/img/grocer.jpg"><p class="summary">The chain struck a deal with a robot grocer.</p>'
            '<ul class="related-links"><li><a href="/2024/01/02/grocers-risky-bet">Analysis: The grocer\'s big, risky bet</a>'
            '</li></ul></div></div>')
    lead, sub = news.parse(page(card), "https://example.com/")["headlines"]
    assert (lead["summary"], lead["image"]) == ("The chain struck a deal with a robot grocer.",
                                                "https://example.com/img/grocer.jpg")
    assert (sub["sublink"], sub["kicker"], sub["summary"], sub["image"]) == (True, "Analysis", None, None)


@pytest.mark.parametrize("href, url, linked", [
    ("/2024/01/02/a-story?utm_source=hp&utm_medium=web", "https://example.com/2024/01/02/a-story", True),
    ("/2024/01/02/a-story?mod=trending_now_1", "https://example.com/2024/01/02/a-story", True),
    ("/2024/01/02/a-story?cmpid=org&ocid=x&ns_mchannel=rss&ito=792", "https://example.com/2024/01/02/a-story", True),
    ("/2024/01/02/a-story?id=7&utm_campaign=x#comments", "https://example.com/2024/01/02/a-story?id=7", True),
    ("/2024/01/02/a-story?page=2", "https://example.com/2024/01/02/a-story?page=2", False),
])
def test_urls_are_canonical_and_the_linked_one_is_kept(href: str, url: str, linked: bool) -> None:
    headline = news.parse(page(story(href, "A story with a tracking query")), "https://example.com/")["headlines"][0]
    assert headline["url"] == url
    assert headline["url_as_linked"] == (urljoin("https://example.com/", href) if linked else None)


@pytest.mark.parametrize("href", [
    "https://apps.apple.com/us/app/the-example-news/id123456789",
    "https://play.google.com/store/apps/details?id=com.example.news",
    "https://us12.campaign-archive.com/?u=abc&id=2024-01-02-morning-brief",
    "https://mailchi.mp/example/morning-brief-january-second-edition",
    "http://cfo.cmail20.com/t/ViewEmail/d/D9CE3223F6DA531C/B817427E91247E1F",
    "https://example.createsend1.com/t/ViewEmail/r/27B5C1A7/C67FD2F38AC4859C",
    "https://news.example-mailer.net/t/ViewEmail/d/0A1B2C3D4E5F/6A7B8C9D",
    "https://www.youtube.com/@ExampleNewsChannel/videos/2024/01/02/daily-show",
    "https://www.facebook.com/examplenews/posts/2024/01/02/1234567890",
    "https://newsletters.example.com/2024/01/02/morning-brief-edition",
    "https://example.com/apps/download-the-example-news-app-today",
])
def test_promo_tiles_for_apps_newsletters_and_channels_are_not_stories(href: str) -> None:
    """Not even where a site rule's selector matches them (a promo in a story slot)."""
    promo = f'<h3 class="gs-c-promo-heading__title"><a href="{href}">Get the news on our app and channels</a></h3>'
    real = ('<h3 class="gs-c-promo-heading__title"><a href="https://www.bbc.com/news/uk-60000001">'
            "A real story in the next slot</a></h3>")
    headlines = news.parse(page(promo, real), "https://www.bbc.com/news")["headlines"]
    assert [h["title"] for h in headlines] == ["A real story in the next slot"]


def test_a_news_site_on_a_mail_portal_keeps_its_stories() -> None:
    """mail.ru and mail.com are portals with news of their own, not a mail service's web view."""
    html = page(story("/2024/01/02/harbour-bridge-reopens-after-repairs", "Harbour bridge reopens after repairs"))
    for front in ("https://news.mail.ru/", "https://www.mail.com/news/"):
        assert [h["title"] for h in news.parse(html, front)["headlines"]] == ["Harbour bridge reopens after repairs"]


@pytest.mark.parametrize("url, section", [
    ("https://www.theguardian.com/us-news/2024/mar/04/levee-vote", "us-news"),
    ("https://www.bbc.com/news/world-us-canada-67723332", "world-us-canada"),
    ("https://www.bbc.com/news/live/world-middle-east-67709805", "world-middle-east"),
    ("https://www.washingtonpost.com/national-security/2023/03/08/us-weapons/", "national-security"),
    ("https://www.foxnews.com/us/wildfire-forces-evacuations-mountain-towns", "us"),
    ("https://www.bbc.com/culture/article/20231215-the-one-thing", "culture"),
    ("https://www.wsj.com/articles/bond-yields-slip-1526570005", None),
    ("https://www.foxnews.com/video/6340000002", None),
    ("https://example.com/2024/01/02/a-story-about-the-harbour-bridge", None),
    ("https://example.com/2024/jan/02/world/harbour-bridge-reopens-after-repairs", "world"),
])
def test_section_is_the_path_s_section_segment(url: str, section: str | None) -> None:
    assert news_cards.section_of(url) == section


def test_explain_names_the_extractor_and_each_item_s_sources() -> None:
    url = EXPECTED["guardian-2017.html"][0]
    data = news.parse(fixture("guardian-2017.html"), url, explain=True)
    explain = data.pop("explain")
    assert data == news.parse(fixture("guardian-2017.html"), url)  # explain adds one key, changes nothing
    assert explain["headlines"].startswith("site-rule:") and explain["found"]["site-rule"] == 5
    lead, sub = explain["items"][:2]
    assert lead["title"] == "site-rule: headline of theguardian.com"
    assert lead["summary"].startswith("card: <div class=\"fc-item__standfirst")
    assert lead["image"].startswith("card: <img") and lead["section"].startswith("url:")
    assert sub["title"] == "site-rule: sub-link of theguardian.com"
    assert set(lead) == {key for key, value in data["headlines"][0].items()
                         if value is not None and key not in ("position", "sublink")}


def test_explain_on_unknown_markup_names_the_generic_extractor(monkeypatch: pytest.MonkeyPatch) -> None:
    url = EXPECTED["generic-front.html"][0]
    explain = news.parse(fixture("generic-front.html"), url, explain=True)["explain"]
    assert explain["headlines"].startswith("generic:") and explain["found"]["site-rule"] == 0
    assert {item["title"] for item in explain["items"]} <= {
        "generic: heading inside the link", "generic: link inside a heading", "generic: link text",
        "generic: heading beside the card's link", "generic: the link's aria-label or title"}


def test_inline_formatting_at_the_start_is_part_of_the_title() -> None:
    html = page(story("/2024/01/02/dune-tops-box-office", "<em>Dune</em> tops the box office again this week"))
    assert news.parse(html, "https://example.com/")["headlines"][0]["title"] == "Dune tops the box office again this week"


def test_headings_beside_an_overlay_link_take_its_url() -> None:
    card = ('<div class="card"><a class="overlay" href="/2024/01/02/overlay-card-story"></a>'
            '<div><div><h3 class="card-title">Overlay card story gets its URL</h3></div></div></div>')
    assert pairs(news.parse(page(card), "https://example.com/")["headlines"]) == [
        ("Overlay card story gets its URL", "https://example.com/2024/01/02/overlay-card-story")]


def test_section_heading_does_not_steal_a_storys_url() -> None:
    section = ('<section><h2>The latest from the campaign trail</h2>'
               '<a href="/2024/01/02/candidate-visits-the-coast">Candidate visits the coast to meet fishermen</a></section>')
    assert [h["title"] for h in news.parse(page(section), "https://example.com/")["headlines"]] == [
        "Candidate visits the coast to meet fishermen"]


def test_section_heading_does_not_borrow_a_bare_link_from_elsewhere() -> None:
    """A rail's "Trending" heading sits in a container whose links all have titles: it stays out,
    even though an image-only story link lies higher up the page."""
    html = page('<div class="lead"><a href="/2024/01/02/photo-story-of-the-day"><img src="p.jpg"></a></div>',
                '<div class="rail"><header><h2>Trending in politics today</h2></header><ul>'
                '<li><h3><a href="/2024/01/02/trending-story-one">Trending story number one is here</a></h3></li></ul></div>')
    assert [h["title"] for h in news.parse(html, "https://example.com/")["headlines"]] == [
        "Trending story number one is here"]


def test_an_unparseable_href_does_not_spoil_the_page() -> None:
    html = page('<a href="http://[broken/2024/01/02/x">A link whose address cannot be parsed</a>',
                story("/2024/01/02/a-good-story-here", "A good story is still found"))
    assert [h["title"] for h in news.parse(html, "https://example.com/")["headlines"]] == ["A good story is still found"]


def test_bytes_are_decoded_and_other_types_refused() -> None:
    url, _, expected = EXPECTED["wsj-2018.html"]
    assert pairs(news.parse(fixture("wsj-2018.html").encode(), url)["headlines"]) == expected
    for html, link in ((None, url), (42, url), ("<html></html>", None)):
        with pytest.raises(ParseError):
            news.parse(html, link)  # type: ignore[arg-type]


def test_jsonld_item_list_is_used_when_the_dom_has_no_titles() -> None:
    jsonld = ('<script type="application/ld+json">{"@context": "https://schema.org", "@type": "ItemList", '
              '"itemListElement": [{"@type": "ListItem", "position": 1, "url": "/2024/01/02/first-listed-story", '
              '"name": "First listed story of the day"}, {"@type": "ListItem", "position": 2, '
              '"item": {"@type": "NewsArticle", "url": "https://example.com/2024/01/02/second-listed-story", '
              '"headline": "Second listed story of the day"}}]}</script>')
    images = '<a href="/2024/01/02/first-listed-story"><img src="a.jpg"></a>'
    assert pairs(news.parse(page(images, head=jsonld), "https://example.com/")["headlines"]) == [
        ("First listed story of the day", "https://example.com/2024/01/02/first-listed-story"),
        ("Second listed story of the day", "https://example.com/2024/01/02/second-listed-story"),
    ]


def test_jsonld_urls_without_names_take_titles_from_page_links() -> None:
    jsonld = ('<script type="application/ld+json">{"@type": "ItemList", "itemListElement": ['
              '{"@type": "ListItem", "url": "https://example.com/world/short-one"}, '
              '{"@type": "ListItem", "url": "https://example.com/world/short-two"}]}</script>')
    links = '<p><a href="/world/short-one">Ministers meet on trade</a> <a href="/world/short-two">Talks end early today</a></p>'
    assert [h["title"] for h in news.parse(page(links, head=jsonld), "https://example.com/")["headlines"]] == [
        "Ministers meet on trade", "Talks end early today"]


@pytest.mark.parametrize("text, expected", [
    ("LIVE Israel says it killed three hostages", "Israel says it killed three hostages"),
    ("Live: Storm makes landfall on the coast", "Storm makes landfall on the coast"),
    ("Live briefing: Missile attacks hit cities", "Missile attacks hit cities"),
    ("Live updates | Markets fall for a third day", "Markets fall for a third day"),
    ("Analysis: Nord Stream raises questions", "Nord Stream raises questions"),
    ("Opinion | Why the four-day week works", "Why the four-day week works"),
    ("Video 2:34 Puffins return to the island", "Puffins return to the island"),
    ("2:34 Puffins return to the island", "Puffins return to the island"),
    ("Puffins return to the island 2:34", "Puffins return to the island"),
    ("Council votes on budget 1,204 comments", "Council votes on budget"),
    ("LIVE Analysis: Two labels in a row", "Two labels in a row"),
    # A title that merely starts with these words keeps them.
    ("Live in-play clips: Ireland v Afghanistan", "Live in-play clips: Ireland v Afghanistan"),
    ("Watch: Bear dodges skiers on slopes", "Watch: Bear dodges skiers on slopes"),
    ("Exclusive: Retailer relaunches its art section", "Exclusive: Retailer relaunches its art section"),
    ("Opinionated robots are coming to the office", "Opinionated robots are coming to the office"),
])
def test_strip_labels(text: str, expected: str) -> None:
    assert news.strip_labels(text) == expected


@pytest.mark.parametrize("text", [
    "More", "Read more", "See all results", "More news", "Sign up for our morning newsletter",
    "The Recap sports email - sign up", "Subscribe now for $1 a week", "By Jane Doe", "By Jane Doe and John Roe",
    "MORE ON THE CORONAVIRUS PANDEMIC", "Terms of Service", "Privacy policy", "5 minutes ago", "Most read",
    "Skip to main content", "Advertisement", "Find out more about our app", "Sponsored: Why banking is changing",
    "Paid content: Discover the finest hotels",
])
def test_not_headlines(text: str) -> None:
    assert not news.looks_like_headline(text, news.HEADING_MIN_WORDS)


@pytest.mark.parametrize("text", [
    "Markets edgy on trade war fears", "Privacy Policies Flooding Your Inbox? How to Cut Through the Gibberish",
    "More Than a Third of Real Estate Deals Fall Through in the U.K.", "By the numbers: how the vote was won",
    "What The Crown got wrong", "东京奥运会推迟至明年举行", "Promoted Leeds eye new signings",
])
def test_headlines(text: str) -> None:
    assert news.looks_like_headline(text, news.HEADING_MIN_WORDS)


SITE = news.Page("https://www.example.com/", "https://www.example.com/", "example.com", frozenset({"example.com"}))


@pytest.mark.parametrize("url", [
    "https://www.example.com/world/2024/05/01/story",
    "https://www.example.com/world/2017/may/18/story",
    "https://www.example.com/news/world-europe-43512791",
    "https://www.example.com/articles/c51z888jj5do",
    "https://www.example.com/news/politics/article12345678.html",
    "https://www.example.com/politics/house-china-committee-demands-answers",
    "https://www.example.com/story.php?id=12345",
    "https://blogs.example.com/economics/2018/05/17/a-post/",
])
def test_article_urls(url: str) -> None:
    assert news.is_article_url(url, SITE)


@pytest.mark.parametrize("url", [
    "https://www.example.com/", "https://www.example.com/world/", "https://www.example.com/news/war-in-ukraine",
    "https://www.example.com/index.html", "https://www.example.org/2024/05/01/story-elsewhere",
    "https://www.example.com/articles/", "https://www.example.com/?utm_source=x",
])
def test_not_article_urls(url: str) -> None:
    assert not news.is_article_url(url, SITE)


@pytest.mark.parametrize("url", [
    "https://www.example.com/author/jane-doe-writes-here", "https://www.example.com/newsletters/2024/05/01/x",
    "https://help.example.com/hc/en-us/articles/360002940991-Contact", "javascript:void(0)", "#top",
])
def test_story_url_refuses_non_story_links(url: str) -> None:
    link = lxml.html.fragment_fromstring(f'<a href="{url}">x</a>')
    assert news.story_url(link, SITE) is None


def test_url_key_ignores_tracking_scheme_www_and_slash() -> None:
    assert news.url_key("http://www.example.com/a/b/?mod=hp&utm_source=x#c") == news.url_key("https://example.com/a/b")
    assert news.url_key("https://example.com/story?id=1") != news.url_key("https://example.com/story?id=2")


@pytest.mark.parametrize("url, site", [
    ("https://www.bbc.co.uk/news", "bbc.co.uk"), ("https://bbc.com/news", "bbc.com"),
    ("https://amp.theguardian.com/uk", "theguardian.com"), ("https://www.washingtonpost.com/", "washingtonpost.com"),
    ("https://www.foxnews.com/", "foxnews.com"), ("https://wsj.com/", "wsj.com"),
    ("https://www.example-news.org/", "example-news.org"), ("https://WWW.Example.COM./", "example.com"),
])
def test_site_name(url: str, site: str) -> None:
    assert news.site_name(url) == site


# --- Refusals and hostile input -------------------------------------------------------------------


@pytest.mark.parametrize("html", [
    "", "<html></html>", "<html><body><p>Nothing to see</p></body></html>",
    page('<nav><a href="/news">News</a><a href="/sport">Sport</a></nav>'),
    "\x00\x01\x02 binary junk \xff\xfe",
])
def test_no_headlines_is_a_parse_error(html: str) -> None:
    with pytest.raises(ParseError):
        news.parse(html, "https://www.bbc.com/news")


@pytest.mark.parametrize("url", ["", "not a url", "http://[::1", "https://"])
def test_bad_url_is_a_parse_error(url: str) -> None:
    with pytest.raises(ParseError):
        news.parse(fixture("bbc-next-2023.html"), url)


def parse_or_refuse(html: str, url: str) -> dict | None:
    """The contract for any input: the full key set, or ParseError (returned as None)."""
    try:
        data = news.parse(html, url)
    except ParseError:
        return None
    assert_contract_keys(data)
    for position, headline in enumerate(data["headlines"], 1):
        assert_headline_item(headline, position)
    assert len({news.url_key(h["url"]) for h in data["headlines"]}) == len(data["headlines"])
    return data


FIXTURE_NAMES = sorted(EXPECTED)


@settings(max_examples=60, deadline=5000, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(FIXTURE_NAMES), cut=st.floats(min_value=0, max_value=1))
def test_truncated_fixtures(name: str, cut: float) -> None:
    html = fixture(name)
    parse_or_refuse(html[: int(len(html) * cut)], EXPECTED[name][0])


@settings(max_examples=60, deadline=5000, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(FIXTURE_NAMES), seed=st.integers(min_value=0, max_value=2**32), rate=st.floats(0.05, 0.9))
def test_fixtures_with_tags_removed(name: str, seed: int, rate: float) -> None:
    """Drop a random share of the tags (open or close), as broken CMS output and bad saves do."""
    rng = random.Random(seed)
    html = re.sub(r"<[^<>]*>", lambda m: "" if rng.random() < rate else m.group(0), fixture(name))
    parse_or_refuse(html, EXPECTED[name][0])


@settings(max_examples=40, deadline=5000, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(FIXTURE_NAMES), junk=st.text(max_size=200), at=st.floats(0, 1))
def test_fixtures_with_junk_spliced_in(name: str, junk: str, at: float) -> None:
    html = fixture(name)
    i = int(len(html) * at)
    parse_or_refuse(html[:i] + junk + html[i:], EXPECTED[name][0])


@given(html=st.text(max_size=500), url=st.sampled_from(["https://www.bbc.com/news", "https://example.com/", "x"]))
@settings(max_examples=100, deadline=5000, database=None)
def test_arbitrary_text(html: str, url: str) -> None:
    parse_or_refuse(html, url)


def timed(html: str, url: str = "https://example.com/") -> float:
    """CPU seconds the parse took: what a pathology costs, whatever else the box runs."""
    start = time.process_time()
    parse_or_refuse(html, url)
    return time.process_time() - start


STORY_LINK = '<a href="/2024/01/02/deeply-nested-story">A deeply nested story headline</a>'


@pytest.mark.parametrize("opening, closing", [
    ("<div>", "</div>"), ("<a href='/2024/01/02/nested-link-story'>", "</a>"), ("<h3 class='headline'>", "</h3>"),
    ("<span class='kicker'>", "</span>"), ("<header>", "</header>"), ("<table><tr><td>", "</td></tr></table>"),
])
def test_ten_thousand_deep_nesting_is_bounded(opening: str, closing: str) -> None:
    html = "<html><body>" + opening * 10_000 + STORY_LINK + closing * 10_000 + "</body></html>"
    assert timed(html) < 20
    assert timed(html[: len(html) // 2]) < 20  # never closed


def test_many_deep_headings_each_with_a_card_link_are_bounded() -> None:
    card = "<div>" * 50 + '<a href="/2024/01/02/card-story-here"></a><h3>A card story heading text</h3>' + "</div>" * 50
    assert timed("<html><body>" + card * 400 + "</body></html>") < 20


def test_five_mib_of_junk_is_bounded() -> None:
    rng = random.Random(7)
    pieces = ["<div class='story'>", "</div>", "<a href='/2024/01/02/junk-story-%d'>", "Some words here ", "<h2>",
              "</h2>", "</a>", "<p>", "&amp;", "<!-- x -->", "<script>var x = 1;</script>", "\x00", "<"]
    chunks, size = [], 0
    while size < 5 * 1024 * 1024:
        piece = rng.choice(pieces)
        piece = piece % rng.randrange(10**6) if "%d" in piece else piece
        chunks.append(piece)
        size += len(piece)
    assert timed("".join(chunks)) < 60


def test_caches_keep_no_huge_strings() -> None:
    """Class lists and URLs are cached across pages, but never the huge ones of hostile pages."""
    caches = (tree._class_tokens, news._resolve, news._story_url, news.url_key)
    huge = "x" * 100_000
    second = f'<div class="card">{story("/2024/01/02/second-story", "Second story title words")}</div>'
    sizes = []
    with_huge = page(story(f"/2024/01/02/{huge}", "A huge story title here"), f'<div class="{huge}">{second}</div>')
    for html in (page(second), with_huge):
        for cache in caches:
            cache.cache_clear()
        news.parse(html, "https://example.com/")
        sizes.append([cache.cache_info().currsize for cache in caches])
    assert sizes[0] == sizes[1] and all(sizes[0])


def test_huge_flat_page_is_capped() -> None:
    links = "".join(f'<p><a href="/2024/01/02/story-number-{i}">Story number {i} on a huge page</a></p>' for i in range(20_000))
    start = time.process_time()
    data = news.parse(f"<html><body>{links}</body></html>", "https://example.com/")
    assert time.process_time() - start < 60
    assert len(data["headlines"]) == news.MAX_HEADLINES


# --- Real saved fronts (skipped without ../shared/pages) ---------------------------------------------


def real_fronts() -> list[dict]:
    return [entry for entry in manifest() if entry["kind"] == "news_headlines"]


def test_generic_extractor_on_real_fronts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The generic extractor alone finds every sample headline of each real front, in page order."""
    monkeypatch.setattr(news, "SITE_RULES", {})
    for entry in real_fronts():
        data = news.parse(decode_html(read_page(entry["file"])), entry["url"])
        found = linked_pairs(data["headlines"])
        samples = [(s["headline"], urljoin(entry["url"], s["href"])) for s in entry["facts"]["sample_headlines"]]
        positions = [found.index(sample) for sample in samples]  # ValueError names the missing one
        assert positions == sorted(positions), entry["file"]
        assert len(found) >= 40, entry["file"]


def test_site_rules_on_real_fronts_find_the_manifest_samples_first() -> None:
    """The manifest samples are each front's first headlines, exactly: its leading main story
    cards, with no related link of a lead card in between."""
    for entry in real_fronts():
        data = news.parse(decode_html(read_page(entry["file"])), entry["url"])
        found = linked_pairs(data["headlines"])
        samples = [(s["headline"], urljoin(entry["url"], s["href"])) for s in entry["facts"]["sample_headlines"]]
        assert found[: len(samples)] == samples, entry["file"]
