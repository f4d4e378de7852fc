"""The web page at GET / in a real headless Chromium, against real processes.

gunicorn + an RQ worker + Redis serve the page and the API; a fixture HTTPS site plays
Goodreads, BBC News and the cover-image host. Chromium resolves no other name
(--host-resolver-rules), so neither the service nor the browser ever touches the real web.
Skipped, saying why, when Debian's chromium / chromium-driver are not installed
(scripts/ensure-browser installs them).
"""
from __future__ import annotations

import html
import json
import os
import re
import signal
import struct
import time
import zlib
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from sources import Unsupported, route
from tests.pages import read_page, require_pages
from tests.support import processes
from tests.support.fixture_server import FixtureServer, Handler, Reply, send_reply
from tests.support.prerequisites import BROWSER_REASON, CHROMEDRIVER, CHROMIUM, have_browser

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not have_browser(), reason=BROWSER_REASON),
]

FIXTURE_BOOK = Path(__file__).parents[1] / "fixtures" / "e2e" / "goodreads-book.html"
COVER_HOST, COVER_PATH = "images.example.org", "/books/1/lighthouse.jpg"  # the fixture book's cover_url
HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_HEADLINE = f"Museum opens {HOSTILE} exhibit on web safety"
NEWS_STORIES = 13  # more than the 10 the page lists at first, so it offers "Show all 13 headlines"
BOOK_URL = "https://www.goodreads.com/book/show/1-the-lighthouse"
MISSING_BOOK_URL = "https://www.goodreads.com/book/show/404"
NEWS_URL = "https://www.bbc.com/news"
INVALID_URL = "ftp://www.goodreads.com/book/show/1"
WAIT_SECONDS = 60
NEWS_ANSWER_SECONDS = 2.5  # the news page answers this slowly: the page, polling every second, shows "fetching"
GUARDIAN_HOST = "www.theguardian.com"  # a generic page (ALLOW_ANY_SITE) in the all-fields test
BOOK_PATH = re.compile(r"^/book/show/\d+$")  # any book id: the fixture book (the 500-line batch)
BOOK_ANSWER_SECONDS = 0.03  # so the 500-line batch's 100 books take some seconds: rows finish poll by poll


# ---- the fixture site ------------------------------------------------------------------------


def news_front_page() -> bytes:
    """A BBC-style front page (2023 markup); the first story's title is an HTML injection attempt."""
    titles = [HOSTILE_HEADLINE] + [f"Local story number {n} makes the front page today" for n in range(1, NEWS_STORIES)]
    cards = "".join(
        f'<div data-testid="card"><a data-testid="internal-link" href="/news/articles/c{n:07d}x">'
        f'<h2 data-testid="card-headline">{html.escape(title)}</h2></a></div>'
        for n, title in enumerate(titles, start=1)
    )
    page = f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Home - BBC News</title></head><body><main>{cards}</main></body></html>'
    return page.encode()


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A one-colour PNG, made here so the cover image needs no binary fixture."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def answered_after(seconds: float, reply: Reply) -> Handler:
    """A route that answers only after `seconds`: a job fetching it stays in its fetching step meanwhile."""
    def answer(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        send_reply(handler, reply)
    return answer


def any_book_id(handler: BaseHTTPRequestHandler) -> None:
    """/book/show/<any id> is the fixture book; other paths (robots.txt) are not found."""
    if BOOK_PATH.match(handler.path.split("?")[0]):
        time.sleep(BOOK_ANSWER_SECONDS)
        send_reply(handler, Reply(body=FIXTURE_BOOK.read_bytes()))
    else:
        send_reply(handler, Reply(404, b"not found", {"Content-Type": "text/plain"}))


@pytest.fixture(scope="module")
def site():
    server = FixtureServer(["www.goodreads.com", "www.bbc.com", GUARDIAN_HOST, COVER_HOST]).start()
    server.routes["/book/show/1"] = Reply(body=FIXTURE_BOOK.read_bytes())
    server.fallback = any_book_id
    server.routes["/book/show/404"] = Reply(404, b"<html>not here</html>")
    server.routes["/news"] = answered_after(NEWS_ANSWER_SECONDS, Reply(body=news_front_page()))
    server.routes[COVER_PATH] = Reply(body=png(60, 90, (40, 90, 140)), headers={"Content-Type": "image/png"})
    yield server
    server.stop()


# ---- the service -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(site, module_redis_url, tmp_path_factory):
    """gunicorn + `python -m jobs.worker`, as the Procfile runs them (see tests/test_e2e.py)."""
    logs = tmp_path_factory.mktemp("webpage")
    env = processes.service_env(
        REDIS_URL=module_redis_url, FETCH_RETRIES="0",
        **site.fetch_env(logs, "www.goodreads.com", "www.bbc.com", GUARDIAN_HOST),
        DATA_DIR=str(logs / "data"),  # our own: ./var may hold other runs' state (a journal of URLs)
        FETCH_HOST_DELAY="0",  # the 500-line batch's 100 books from one host, without a second between each
        ALLOW_ANY_SITE="true",  # so the page shows a generic page's fields too
    )
    service = processes.start_service(env, logs, name="WEBPAGE")  # its marker finds leftover processes
    try:
        yield service
    finally:
        service.stop_processes()
    service.assert_none_left()


# ---- the browser -------------------------------------------------------------------------------


@pytest.fixture
def browser(site, tmp_path_factory):
    """Headless Debian Chromium with a fresh profile; only 127.0.0.1 and the cover host resolve."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--window-size=1280,1000", "--lang=en-US", f"--user-data-dir={profile}",
        # Every name but the cover host fails to resolve: the page cannot reach the real web.
        f"--host-resolver-rules=MAP {COVER_HOST} 127.0.0.1:{site.port}, MAP * ~NOTFOUND, "
        "EXCLUDE 127.0.0.1, EXCLUDE localhost",
        # The cover host is the fixture server, whose certificate comes from the test CA.
        "--ignore-certificate-errors",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager must not download anything.
    service = ChromeService(executable_path=str(CHROMEDRIVER), log_output=str(profile.parent / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(driver, script: str, *args, seconds: float = WAIT_SECONDS, explain=lambda: ""):
    """Wait until the JavaScript expression (which may use arguments[i]) is truthy; returns its value.

    On timeout, fails showing what the page says and what explain() returns (the service's logs).
    """
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.2).until(lambda d: d.execute_script(f"return {script}", *args))
    except TimeoutException:
        page = driver.find_element(By.TAG_NAME, "main").text
        raise AssertionError(f"not true within {seconds} s: {script}\n--- page\n{page}\n{explain()}") from None


ALL_ROWS_SETTLED = "(n => { const rows = [...document.querySelectorAll('#rows .row')]; " \
                   "return rows.length === n && rows.every(r => r.dataset.settled === 'true'); })"

# Records every label each row's badge shows, to prove the rows update live.
RECORD_BADGES = """
window.__badges = [];
new MutationObserver(() => {
  document.querySelectorAll('#rows .row').forEach((row, i) => {
    const seen = (window.__badges[i] = window.__badges[i] || []);
    const label = row.querySelector('.badge').textContent;
    if (seen[seen.length - 1] !== label) seen.push(label);
  });
}).observe(document.getElementById('rows'), {subtree: true, childList: true, characterData: true, attributes: true});
"""


def text(element, selector: str) -> str:
    return element.find_element(By.CSS_SELECTOR, selector).text


def assert_no_alert_dialog(driver) -> None:
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 (reading it is what raises)


def assert_no_script_errors(driver) -> None:
    """Nothing was blocked by the Content-Security-Policy, and no script threw."""
    messages = [entry["message"] for entry in driver.get_log("browser")]
    assert not [m for m in messages if "Content Security Policy" in m or "Uncaught" in m], messages


def screenshot(driver, path: Path, width: int, most_height: int = 20_000) -> Path:
    """The whole page at this width, down to most_height: the window is grown to the document's height first."""
    driver.set_window_size(width, 800)
    chrome = 800 - driver.execute_script("return window.innerHeight")  # the window's own frame
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(height, most_height) + chrome)
    assert driver.save_screenshot(str(path))
    print(f"screenshot: {path}")  # pytest -s shows where to look
    return path


# ---- the tests -------------------------------------------------------------------------------------


def test_the_page_submits_urls_and_shows_each_result_live(service, browser, tmp_path):
    browser.get(f"{service.base}/")
    assert_accessible_form(browser)
    browser.execute_script(RECORD_BADGES)
    # refresh: fetch even what an earlier test stored, so every row starts queued and goes live
    browser.find_element(By.ID, "refresh").click()
    browser.find_element(By.ID, "urls").send_keys("\n".join([BOOK_URL, MISSING_BOOK_URL, NEWS_URL, INVALID_URL]))
    browser.find_element(By.ID, "submit").click()
    wait_until(browser, f"{ALL_ROWS_SETTLED}(3)", explain=service.log_tails)

    book, missing, news = browser.find_elements(By.CSS_SELECTOR, "#rows .row")
    assert_book_row(browser, book)
    assert_failed_row(missing)
    assert_news_row(browser, news)
    assert_rejected(browser)
    badges = browser.execute_script("return window.__badges")
    assert badges[2][0] == "queued" and badges[2][-1] == "done", badges  # the news row went live...
    assert "fetching" in badges[2], badges  # ...showing the step while its slow page was fetched
    assert browser.find_element(By.ID, "alert").is_displayed() is False  # no API error happened
    assert browser.find_element(By.ID, "health").is_displayed() is False  # a worker is running
    assert "3 of 3 finished" in text(browser, "#summary")
    assert re.search(r"#batch=[0-9a-f]{32}$", browser.current_url), browser.current_url
    assert_no_stray_values(browser)

    # The hostile headline stayed text: no <img src=x>, no dialog, nothing blocked or thrown.
    assert browser.find_elements(By.CSS_SELECTOR, 'img[src="x"]') == []
    assert len(browser.find_elements(By.CSS_SELECTOR, "#results img")) == 1  # the cover only
    assert_no_alert_dialog(browser)
    assert_no_script_errors(browser)

    assert_fits_a_narrow_screen(browser, tmp_path)
    shot = screenshot(browser, tmp_path / "webpage.png", 1280)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def assert_no_stray_values(driver) -> None:
    """No text node says null, undefined or [object Object]: a missing field is left out, not printed."""
    stray = driver.execute_script("""
        const walker = document.createTreeWalker(document.getElementById('results'), NodeFilter.SHOW_TEXT);
        const found = [];
        while (walker.nextNode()) {
          const text = walker.currentNode.data;
          if (/^(null|undefined|NaN|\\[object Object\\])$/.test(text.trim())) found.push(text);
        }
        return found;""")
    assert stray == []


def assert_accessible_form(driver) -> None:
    for control in ("urls", "refresh", "token"):
        assert driver.find_elements(By.CSS_SELECTOR, f'label[for="{control}"]'), f"#{control} has no label"
    assert driver.find_element(By.ID, "results").get_attribute("aria-live") == "polite"
    assert driver.find_element(By.ID, "alert").get_attribute("role") == "alert"
    assert not driver.find_element(By.ID, "token-field").is_displayed()  # no API_TOKENS here


def assert_book_row(driver, row) -> None:
    assert row.get_attribute("data-status") == "done" and text(row, ".badge").lower() == "done"
    assert text(row, ".title") == "The Lighthouse Keeper's Almanac"
    assert "Imaginary Author" in text(row, ".authors")
    assert "4.12" in text(row, ".rating") and "1,534 ratings" in text(row, ".rating")
    cover = row.find_element(By.CSS_SELECTOR, "img.cover")
    assert cover.get_attribute("src") == f"https://{COVER_HOST}{COVER_PATH}"
    assert cover.get_attribute("alt") == "Cover of The Lighthouse Keeper's Almanac"
    # Loaded from the fixture site: the Content-Security-Policy lets covers through.
    assert wait_until(driver, "arguments[0].complete && arguments[0].naturalWidth", cover, seconds=10) == 60


def assert_failed_row(row) -> None:
    assert row.get_attribute("data-status") == "failed" and text(row, ".badge").lower() == "failed"
    assert text(row, ".error code") == "http_status"
    assert "404" in text(row, ".error")


def assert_news_row(driver, row) -> None:
    assert row.get_attribute("data-status") == "done"
    assert text(row, ".title") == "bbc.com"
    links = row.find_elements(By.CSS_SELECTOR, ".headlines li a")
    assert len(links) == NEWS_STORIES
    assert [link.is_displayed() for link in links] == [True] * 10 + [False] * (NEWS_STORIES - 10)
    first = links[0]
    assert first.text == HOSTILE_HEADLINE  # the markup shows as literal text
    assert first.get_attribute("href") == "https://www.bbc.com/news/articles/c0000001x"
    assert "noopener" in first.get_attribute("rel").split() and first.get_attribute("target") == "_blank"
    assert text(row, "button.expand") == f"Show all {NEWS_STORIES} headlines"


def assert_rejected(driver) -> None:
    with pytest.raises(Unsupported) as refused:
        route(INVALID_URL)
    items = driver.find_elements(By.CSS_SELECTOR, "#rejected-list li")
    assert len(items) == 1
    assert text(items[0], ".url") == INVALID_URL
    assert text(items[0], ".reason") == refused.value.reason


def assert_fits_a_narrow_screen(driver, tmp_path: Path) -> None:
    """At phone width nothing scrolls sideways (long URLs and headlines wrap)."""
    shot = screenshot(driver, tmp_path / "webpage-narrow.png", 375)
    overflow = driver.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a 375px screen (see {shot})"


# ---- one batch, many lines: duplicates, the request budget, the address -----------------------------


class AccessLog:
    """The requests the browser made since this object was made, from gunicorn's access log."""

    LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) .*HeadlessChrome')

    def __init__(self, path: Path):
        self.path = path
        self.start = path.stat().st_size

    def requests(self) -> list[tuple[str, str, int]]:
        with self.path.open("rb") as log:
            log.seek(self.start)
            lines = log.read().decode(errors="replace").splitlines()
        return [(m["method"], m["path"], int(m["status"])) for m in map(self.LINE.search, lines) if m]

    def count(self, method: str, prefix: str, status: int | None = None) -> int:
        return sum(1 for m, path, code in self.requests()
                   if m == method and path.startswith(prefix) and status in (None, code))


BIG_BATCH_BOOKS = 100
BIG_BATCH_FIRST_ID = 50_000  # ids no other test submits, so every book is fetched fresh


def book_spellings(book_id: int) -> list[str]:
    """Five spellings of one Goodreads book: one canonical URL, so one row."""
    return [f"https://www.goodreads.com/book/show/{book_id}",
            f"https://www.goodreads.com/book/show/{book_id}-the-lighthouse",
            f"https://www.goodreads.com/book/show/{book_id}.The_Lighthouse",
            f"https://m.goodreads.com/book/show/{book_id}",
            f"https://goodreads.com/book/show/{book_id}"]


def paste(driver, lines: list[str]) -> None:
    """Fill the box at once (typing 500 lines key by key would take most of a minute) and submit."""
    driver.execute_script("document.getElementById('urls').value = arguments[0]", "\n".join(lines))
    driver.find_element(By.ID, "submit").click()


def test_a_500_line_batch_shows_one_row_per_page_and_stays_within_the_read_limit(service, browser, tmp_path):
    """500 lines naming 100 books, 5 spellings each: 100 rows, every one finished, and the page's
    reads are one batch poll a second plus a few record fetches, never a request per row."""
    lines = [url for n in range(BIG_BATCH_BOOKS) for url in book_spellings(BIG_BATCH_FIRST_ID + n)]
    assert len(lines) == 500  # MAX_URLS_PER_REQUEST's default: the most one submission may hold
    browser.get(f"{service.base}/")
    log = AccessLog(service.web_log)
    started = time.monotonic()
    paste(browser, lines)
    wait_until(browser, f"{ALL_ROWS_SETTLED}({BIG_BATCH_BOOKS})", seconds=90, explain=service.log_tails)
    elapsed = time.monotonic() - started

    rows = browser.execute_script("""return [...document.querySelectorAll('#rows .row')].map(r =>
        [r.dataset.status, r.querySelector('.lines').textContent, r.querySelector('.title').textContent])""")
    assert rows == [["done", "submitted 5 times", "The Lighthouse Keeper's Almanac"]] * BIG_BATCH_BOOKS
    n = BIG_BATCH_BOOKS
    assert text(browser, "#summary") == f"{n} of {n} finished · {n} done · 500 lines submitted, duplicates shown once"

    polls, fetches = log.count("GET", "/batches/"), log.count("GET", "/records?batch=")
    limited = [r for r in log.requests() if r[2] == 429]
    print(f"500 lines, {BIG_BATCH_BOOKS} pages: all shown in {elapsed:.1f} s with {polls} batch polls, "
          f"{fetches} record fetches, {log.count('GET', '/healthz')} health checks, {len(limited)} answers 429")
    assert limited == [] and browser.find_element(By.ID, "alert").is_displayed() is False
    assert log.count("GET", "/info") == 0  # no request per row
    assert polls <= elapsed + 2  # one a second (the first a second after the POST)
    assert fetches <= elapsed / 5 + 2  # at most one per 5 s while running, and one at the end
    assert_no_script_errors(browser)
    screenshot(browser, tmp_path / "webpage-500-lines.png", 1280, most_height=1600)


def test_a_reload_or_a_shared_link_shows_the_same_batch(service, browser):
    browser.get(f"{service.base}/")
    paste(browser, [BOOK_URL, "https://m.goodreads.com/book/show/1", MISSING_BOOK_URL, INVALID_URL])
    wait_until(browser, f"{ALL_ROWS_SETTLED}(2)", explain=service.log_tails)
    address = browser.current_url
    batch_id = re.search(r"#batch=([0-9a-f]{32})$", address)[1]
    shown = text(browser, "#rows")
    assert "submitted 2 times" in shown and "also as https://m.goodreads.com/book/show/1" in shown

    log = AccessLog(service.web_log)
    browser.refresh()
    wait_until(browser, f"{ALL_ROWS_SETTLED}(2)")
    assert text(browser, "#rows") == shown
    assert text(browser, "#batch-id") == batch_id
    # A finished batch costs two reads to show again: its states, then its records.
    assert (log.count("GET", "/batches/"), log.count("GET", "/records?batch=")) == (1, 1)

    browser.back()  # to the address before the batch: an empty page
    wait_until(browser, "!document.querySelector('#rows .row') && document.getElementById('batch-bar').hidden")
    browser.forward()
    wait_until(browser, f"{ALL_ROWS_SETTLED}(2)")
    assert text(browser, "#rows") == shown

    browser.switch_to.new_window("window")  # a link shared with someone: a new page, same address
    browser.get(address)
    wait_until(browser, f"{ALL_ROWS_SETTLED}(2)")
    assert text(browser, "#rows") == shown
    assert_exports(browser, service, batch_id)


def assert_exports(driver, service, batch_id: str) -> None:
    """Download links to the streamed exports; Copy JSON puts the batch's records on the clipboard."""
    for kind in ("jsonl", "csv"):
        link = driver.find_element(By.ID, f"download-{kind}")
        assert link.get_attribute("href") == f"{service.base}/records.{kind}?batch={batch_id}"
        assert link.get_attribute("download") is not None
    driver.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": service.base, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    driver.execute_cdp_cmd("Emulation.setFocusEmulationEnabled", {"enabled": True})  # the clipboard wants focus
    records = requests.get(f"{service.base}/records", params={"batch": batch_id}, timeout=10).json()["records"]
    assert len(records) == 2
    by_url = {record["url"]: record for record in records}  # GET /records: newest first; Copy JSON: row order
    assert {record["url"]: record for record in copy_json(driver)} == by_url
    # A browser without the async clipboard (or refusing it): the older copy command on a selection.
    driver.execute_script("navigator.clipboard.writeText = () => Promise.reject(new Error('refused'))")
    assert {record["url"]: record for record in copy_json(driver)} == by_url


def copy_json(driver) -> object:
    """Click Copy JSON on an emptied clipboard; what it copied, parsed."""
    done = "const done = arguments[arguments.length - 1];"
    read = done + "navigator.clipboard.readText().then(done, (e) => done('refused: ' + e))"
    emptied = driver.execute_async_script(done + "Clipboard.prototype.writeText.call(navigator.clipboard, 'empty')"
                                          ".then(() => done('emptied'), (e) => done('refused: ' + e))")
    assert emptied == "emptied" and driver.execute_async_script(read) == "empty"
    driver.execute_script("document.getElementById('copy-status').textContent = ''")
    driver.find_element(By.ID, "copy-json").click()
    wait_until(driver, "document.getElementById('copy-status').textContent", seconds=10)
    assert text(driver, "#copy-status") == "Copied 2 records as JSON."
    return json.loads(driver.execute_async_script(read))


# ---- every field of every kind, from real saved pages ---------------------------------------------

REAL_PAGES = {  # URL the test submits -> the saved page the fixture site answers it with
    "https://www.goodreads.com/book/show/10664113": "www.goodreads.com/a-dance-with-dragons-10664113.kindle.next-2025.html",
    "https://www.goodreads.com/book/show/13642": "www.goodreads.com/a-wizard-of-earthsea-13642.legacy-2018.html",
    "https://www.bbc.com/news/world": "www.bbc.com/news-front.2023-12-15.html",
    f"https://{GUARDIAN_HOST}/world/2024/feb/24/death-toll-in-valencia-fire-rises-to-10-as-remains-of-last-missing-person-found":
        "www.theguardian.com/article-valencia-fire.2024-02-24.html",
}

# What each element with data-field shows: its text, and the URL of a link or image.
SHOWN_FIELDS = """
return Object.fromEntries([...arguments[0].querySelectorAll('[data-field]')].map(e =>
  [e.dataset.field, {text: e.textContent, url: e.getAttribute('href') || e.getAttribute('src')}]));
"""
# Each headline as shown: what the record's item says must be there.
SHOWN_HEADLINES = """
return [...arguments[0].querySelectorAll('.headlines > li')].map(li => ({
  title: li.querySelector('a, .headline-text > span:not(.kicker):not(.section):not(.sublink-mark)').textContent,
  url: li.querySelector('a') && li.querySelector('a').getAttribute('href'),
  kicker: li.querySelector('.kicker') && li.querySelector('.kicker').textContent,
  summary: li.querySelector('.headline-summary') && li.querySelector('.headline-summary').textContent,
  section: li.querySelector('.section') && li.querySelector('.section').textContent,
  image: li.querySelector('img') && li.querySelector('img').getAttribute('src'),
  sublink: li.classList.contains('sublink') && li.querySelector('.sublink-mark').textContent === 'related link',
  shown: li.offsetParent !== null,
}));
"""


def test_every_field_of_books_news_and_pages_is_shown(service, site, browser, tmp_path):
    """Two real Goodreads pages (between them every book field, librarian_note included), a real
    BBC front page (kickers, summaries, images, sections, sub-links) and a real article."""
    require_pages()
    for url, page in REAL_PAGES.items():
        site.routes[urlsplit(url).path] = Reply(body=read_page(page))
    browser.get(f"{service.base}/")
    paste(browser, list(REAL_PAGES))
    wait_until(browser, f"{ALL_ROWS_SETTLED}({len(REAL_PAGES)})", explain=service.log_tails)
    batch_id = re.search(r"#batch=([0-9a-f]{32})$", browser.current_url)[1]
    records = requests.get(f"{service.base}/records", params={"batch": batch_id}, timeout=10).json()["records"]
    assert [r["status"] for r in records] == ["done"] * len(REAL_PAGES), records
    items = requests.get(f"{service.base}/batches/{batch_id}", timeout=10).json()["items"]
    order = [item["canonical_url"] for item in items]
    records.sort(key=lambda record: order.index(record["url"]))  # GET /records: newest first; rows: as submitted

    rows = browser.find_elements(By.CSS_SELECTOR, "#rows .row")
    books = [r["data"] for r in records if r["kind"] == "goodreads_book"]
    assert set().union(*({k for k, v in data.items() if v not in (None, [])} for data in books)) == set(books[0])
    for row, record in zip(rows, records):
        assert_every_field_shown(browser, row, record["data"])
    news_row, news = next((row, r["data"]) for row, r in zip(rows, records) if r["kind"] == "news_headlines")
    assert_every_headline_shown(browser, news_row, news["headlines"])
    assert_no_stray_values(browser)
    assert_no_script_errors(browser)
    assert_fits_a_narrow_screen(browser, tmp_path)  # long descriptions, URLs and fact lists wrap
    screenshot(browser, tmp_path / "webpage-every-field.png", 1280)


def assert_every_field_shown(driver, row, data: dict) -> None:
    shown = driver.execute_script(SHOWN_FIELDS, row)
    expected = {key for key, value in data.items() if value not in (None, "", []) and key != "kind"}
    if data["kind"] == "page" and data.get("authors"):
        expected.discard("author")  # the same names as authors, joined: listed once
    assert set(shown) == expected, data["kind"]
    for key in expected:
        assert_value_shown(key, data[key], shown[key])


def assert_value_shown(key: str, value, shown: dict) -> None:
    if key in ("url", "cover_url", "image"):
        assert shown["url"] == value, key
    elif isinstance(value, dict):  # series
        assert all(str(part) in shown["text"] for part in value.values()), (key, shown)
    elif isinstance(value, list):
        assert all((item if isinstance(item, str) else item["title"]) in shown["text"] for item in value), key
    elif isinstance(value, float):
        assert f"{value:.2f}" in shown["text"], key
    elif isinstance(value, int):
        assert f"{value:,}" in shown["text"], key
    else:
        assert value in shown["text"], (key, value, shown)


def assert_every_headline_shown(driver, row, headlines: list[dict]) -> None:
    """The first 10 until "Show all N headlines" is clicked, then all, each with what its card had."""
    assert len(headlines) > 40 and any(h["sublink"] for h in headlines)
    assert all(any(h[key] for h in headlines) for key in ("kicker", "summary", "image", "section"))
    before = driver.execute_script(SHOWN_HEADLINES, row)
    assert [h["shown"] for h in before] == [True] * 10 + [False] * (len(headlines) - 10)
    button = row.find_element(By.CSS_SELECTOR, "button.expand")
    assert button.text == f"Show all {len(headlines)} headlines"
    button.click()
    after = driver.execute_script(SHOWN_HEADLINES, row)
    assert button.get_attribute("aria-expanded") == "true"
    for shown, item in zip(after, headlines, strict=True):
        expected = {"title": item["title"], "url": item["url"], "kicker": item["kicker"], "summary": item["summary"],
                    "section": item["section"], "image": item["image"], "sublink": item["sublink"], "shown": True}
        assert shown == expected


# ---- what the service itself says: no worker, too many requests ------------------------------------


def test_a_warning_says_when_no_worker_is_running(browser, tmp_path):
    """gunicorn without `python -m jobs.worker`: /healthz counts 0 workers and the page says what that means."""
    with processes.web_on_own_redis(tmp_path) as (web, _):
        browser.get(f"{web.base}/")
        wait_until(browser, "!document.getElementById('health').hidden", seconds=10)
        warning = text(browser, "#health")
        assert warning.startswith("No worker is running.") and "stay queued" in warning
        submit(browser, BOOK_URL)
        wait_until(browser, "document.querySelectorAll('#rows .row[data-status=\"queued\"]').length === 1", seconds=10)
        assert browser.find_element(By.ID, "health").is_displayed()
        screenshot(browser, tmp_path / "webpage-no-worker.png", 1280)


def test_a_canceled_page_settles_with_a_note_and_polling_stops(browser, tmp_path):
    """gunicorn without workers, so the page stays queued; POST /batches/<id>/cancel then makes the
    batch finished with the page `canceled`: the row says so and the page stops asking, also after a reload."""
    with processes.web_on_own_redis(tmp_path) as (web, _):
        browser.get(f"{web.base}/")
        submit(browser, BOOK_URL)
        wait_until(browser, "document.querySelectorAll('#rows .row[data-status=\"queued\"]').length === 1", seconds=10)
        batch_id = re.search(r"#batch=([0-9a-f]{32})$", browser.current_url)[1]
        canceled = requests.post(f"{web.base}/batches/{batch_id}/cancel", json={}, timeout=10)
        assert canceled.status_code == 200, canceled.text
        wait_until(browser, f"{ALL_ROWS_SETTLED}(1)", seconds=10)
        assert_canceled_row_and_no_more_polls(browser, web.log)

        log = AccessLog(web.log)
        browser.refresh()  # the #batch= link of a canceled batch: one read, then quiet
        wait_until(browser, f"{ALL_ROWS_SETTLED}(1)", seconds=10)
        assert_canceled_row_and_no_more_polls(browser, web.log)
        assert (log.count("GET", "/batches/"), log.count("GET", "/records")) == (1, 0)
        assert_no_script_errors(browser)


def assert_canceled_row_and_no_more_polls(driver, web_log: Path) -> None:
    row = driver.find_element(By.CSS_SELECTOR, "#rows .row")
    assert row.get_attribute("data-status") == "canceled" and text(row, ".badge") == "CANCELED"
    assert text(row, ".details .note") == "Canceled before it ran; submit it again."
    assert text(driver, "#summary") == "1 of 1 finished · 1 canceled"
    log = AccessLog(web_log)
    time.sleep(2.5)  # polling every second would have asked twice by now
    assert log.count("GET", "/batches/") == 0, log.requests()


RATE_LIMITED = re.compile(r"retry in (\d+) s \(HTTP 429\)\. Asking again in (\d+) s, as its Retry-After says\.")


def test_a_429_is_shown_with_its_retry_after_and_waited_out(browser, tmp_path):
    """A read limit of 3 a minute: the page load and two polls use it up; the third poll's 429 is
    said on screen, and the page asks nothing more until the Retry-After it named has passed."""
    with processes.web_on_own_redis(tmp_path, RATE_LIMIT_READ="3/minute") as (web, _):
        log = AccessLog(web.log)
        browser.get(f"{web.base}/")
        submit(browser, BOOK_URL)
        wait_until(browser, "document.getElementById('alert').textContent.includes('rate_limited')", seconds=15)
        message = text(browser, "#alert")
        assert message.startswith("The service is limiting this page's requests: rate_limited: too many requests"), message
        said, waiting = map(int, RATE_LIMITED.search(message).groups())
        assert said == waiting > 1, message  # the service's Retry-After, and the page waits that long
        time.sleep(min(waiting - 1, 2))
        assert log.count("GET", "/batches/", 429) == 1, log.requests()  # no second ask before Retry-After
        assert text(browser, "#rows .badge") == "QUEUED"  # the row is kept meanwhile
        screenshot(browser, tmp_path / "webpage-429.png", 1280)


# ---- hostile API answers and API errors, with fetch() stubbed in the page ---------------------------

# Replaces window.fetch with answers from window.__replies ("METHOD /path" -> reply) and
# records each request in window.__requests.
STUB_FETCH = """
window.__requests = [];
window.__replies = {};
window.fetch = async (input, init = {}) => {
  const url = new URL(String(input), location.href);
  const method = (init.method || 'GET').toUpperCase();
  const key = method + ' ' + url.pathname;
  window.__requests.push({key, auth: (init.headers || {}).Authorization || null, body: init.body || null});
  let reply = window.__replies[key];
  if (!reply) reply = {status: 599, body: 'no stub for ' + key, type: 'text/plain'};
  const body = typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body);
  const headers = {'Content-Type': reply.type || 'application/json', ...(reply.headers || {})};
  return new Response(body, {status: reply.status, headers});
};
"""
BATCH_ID = "0" * 32


def stub(driver, replies: dict) -> None:
    driver.execute_script("window.__replies = arguments[0]", replies)


def submit(driver, urls: str = "https://www.goodreads.com/book/show/1") -> None:
    box = driver.find_element(By.ID, "urls")
    box.clear()
    box.send_keys(urls)
    driver.find_element(By.ID, "submit").click()


def accepted(url: str, canonical: str, source: str) -> dict:
    return {"url": url, "canonical_url": canonical, "source": source, "queue": source, "job_id": "j", "status": "queued"}


def done_record(url: str, data: dict) -> dict:
    return {"url": url, "kind": data["kind"], "status": "done", "fetched_at": "2025-01-01T00:00:00+00:00",
            "parser_version": "2", "data": data, "error": None}


HOSTILE_ACCEPTED = [accepted("b", "https://www.goodreads.com/book/show/7", "goodreads"),
                    accepted("n", "https://www.bbc.com/news", "news"),
                    accepted(HOSTILE, "javascript:alert(6)", "generic")]
HOSTILE_REPLIES = {
    "POST /parse": {"status": 202, "body": {
        "batch_id": BATCH_ID, "accepted": HOSTILE_ACCEPTED, "rejected": [{"url": HOSTILE, "reason": HOSTILE}],
    }},
    f"GET /batches/{BATCH_ID}": {"status": 200, "body": {"finished": True, "items": [
        {**item, "status": "done", "step": None, "refreshing": False, "error": None} for item in HOSTILE_ACCEPTED]}},
    "GET /records": {"status": 200, "body": {"next_cursor": None, "records": [
        done_record("https://www.goodreads.com/book/show/7", {
            "kind": "goodreads_book", "title": HOSTILE, "authors": [HOSTILE], "rating": 3.5,
            "ratings_count": 2, "cover_url": "javascript:alert(2)", "url": "javascript:alert(3)"}),
        done_record("https://www.bbc.com/news", {"kind": "news_headlines", "site": HOSTILE, "headlines": [
            {"title": HOSTILE, "url": "javascript:alert(4)", "kicker": HOSTILE, "summary": HOSTILE, "image": "javascript:x"},
            {"title": "data link", "url": "data:text/html,<script>alert(5)</script>"},
            {"title": "the only real link", "url": "https://www.bbc.com/news/articles/c1"}]}),
        done_record("javascript:alert(6)", {
            "kind": "page", "title": HOSTILE, "description": HOSTILE, "image": "x", "canonical_url": "vbscript:x",
            HOSTILE: HOSTILE}),
    ]}},
}


def test_hostile_api_answers_stay_text_and_never_become_links(service, browser):
    browser.get(f"{service.base}/")
    browser.execute_script(STUB_FETCH)
    stub(browser, HOSTILE_REPLIES)
    submit(browser)
    wait_until(browser, f"{ALL_ROWS_SETTLED}(3)")

    results = browser.find_element(By.ID, "results")
    # reason, url, titles, authors, site, headline with kicker and summary, description, an unknown field
    assert results.text.count(HOSTILE) >= 11
    hrefs = [a.get_attribute("href") for a in results.find_elements(By.CSS_SELECTOR, "#rows a")]
    assert hrefs == ["https://www.goodreads.com/book/show/7", "https://www.bbc.com/news",
                     "https://www.bbc.com/news/articles/c1"]
    assert results.find_elements(By.CSS_SELECTOR, "img") == []  # javascript: and relative images refused
    assert_no_alert_dialog(browser)


def test_api_errors_are_shown_in_the_alert(service, browser):
    browser.get(f"{service.base}/")
    browser.execute_script(STUB_FETCH)
    alert = browser.find_element(By.ID, "alert")

    stub(browser, {"POST /parse": {"status": 503, "body": {"error": {
        "code": "redis_unavailable", "message": "storage is unavailable; try again shortly"}}}})
    submit(browser)
    wait_until(browser, "!document.getElementById('alert').hidden")
    assert alert.text == ("The service is unavailable; try again shortly. "
                          "redis_unavailable: storage is unavailable; try again shortly (HTTP 503)")

    stub(browser, {"POST /parse": {"status": 502, "type": "text/html", "body": f"<html>Bad gateway {HOSTILE}</html>"}})
    submit(browser)
    wait_until(browser, "document.getElementById('alert').textContent.includes('http_502')")
    assert browser.find_elements(By.CSS_SELECTOR, "img") == []

    stub(browser, {"POST /parse": {"status": 400, "body": {"batch_id": None, "accepted": [],
                                                          "rejected": [{"url": "x", "reason": "each URL must be..."}]}}})
    submit(browser)
    wait_until(browser, "document.getElementById('alert').textContent.includes('None of the URLs')")
    assert text(browser, "#rejected-list .reason") == "each URL must be..."

    assert_token_is_asked_for_and_sent(browser)

    stub(browser, {"POST /parse": HOSTILE_REPLIES["POST /parse"], f"GET /batches/{BATCH_ID}": {
        "status": 404, "body": {"error": {"code": "not_found", "message": "no batch"}}}})
    submit(browser)
    wait_until(browser, "document.getElementById('alert').textContent.includes('not_found')")
    assert alert.text == "Could not read the batch: not_found: no batch (HTTP 404)"
    assert_no_alert_dialog(browser)


def assert_token_is_asked_for_and_sent(driver) -> None:
    """A 401 reveals the token field; the token then goes out as a Bearer header and is kept per tab."""
    stub(driver, {"POST /parse": {"status": 401, "body": {"error": {
        "code": "unauthorized", "message": "send Authorization: Bearer <token>"}}}})
    submit(driver)
    wait_until(driver, "document.getElementById('alert').textContent.includes('unauthorized')")
    assert driver.find_element(By.ID, "token-field").is_displayed()
    driver.find_element(By.ID, "token").send_keys("s3cret")
    stub(driver, HOSTILE_REPLIES)
    driver.find_element(By.ID, "submit").click()
    wait_until(driver, f"{ALL_ROWS_SETTLED}(3)")
    posts = driver.execute_script("return window.__requests.filter(r => r.key === 'POST /parse')")
    assert posts[-1]["auth"] == "Bearer s3cret"
    assert driver.execute_script("return sessionStorage.getItem('metaparse.token')") == "s3cret"


def test_a_hung_storage_is_reported_as_unavailable_not_waited_on(browser, tmp_path):
    """Redis stopped (SIGSTOP) under a real server: the page says so within seconds."""
    with processes.web_on_own_redis(tmp_path) as (web, redis):
        browser.get(f"http://127.0.0.1:{web.port}/")
        os.kill(redis.process.pid, signal.SIGSTOP)
        started = time.monotonic()
        submit(browser)
        wait_until(browser, "document.getElementById('alert').textContent.includes('The service is unavailable')",
                   seconds=10)
        assert time.monotonic() - started < 3
        assert "redis_unavailable" in browser.find_element(By.ID, "alert").text


def test_a_malformed_batch_address_is_said_in_the_alert_not_thrown(service, browser):
    """`%E0%A4%A` is no valid %-escape: decodeURIComponent throws URIError; the page says the
    address names no batch, as for any other id that is not one, and asks the API nothing."""
    log = AccessLog(service.web_log)
    browser.get(f"{service.base}/#batch=%E0%A4%A")
    wait_until(browser, "!document.getElementById('alert').hidden", seconds=10)
    assert text(browser, "#alert") == 'The address names no batch: "%E0%A4%A" is not a batch id (32 hex digits).'
    assert browser.find_elements(By.CSS_SELECTOR, "#rows .row") == []
    assert log.count("GET", "/batches/") == 0
    assert_no_script_errors(browser)


def test_the_page_is_served_with_a_strict_content_security_policy(service):
    response = requests.get(f"{service.base}/", timeout=5)
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert '<script type="module" src="/ui/app.js"></script>' in response.text
    assert requests.get(f"{service.base}/ui/app.js", timeout=5).status_code == 200
