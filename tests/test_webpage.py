"""The web page at GET / in a real headless Chromium, against real processes.

gunicorn + an RQ worker + Redis serve the page and the API; a fixture HTTPS site plays
Goodreads, BBC News and the cover-image host. Chromium resolves no other name
(--host-resolver-rules), so neither the service nor the browser ever touches the real web.
Skipped, saying why, when Debian's chromium / chromium-driver are not installed
(scripts/ensure-browser installs them).
"""
from __future__ import annotations

import html
import os
import shutil
import signal
import struct
import time
import zlib
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from sources import Unsupported, route
from tests.support import processes
from tests.support.fixture_server import FixtureServer, Handler, Reply, send_reply
from tests.support.prerequisites import BROWSER_REASON, CHROMEDRIVER, CHROMIUM, have_browser

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not have_browser(), reason=BROWSER_REASON),
]

FIXTURE_BOOK = Path(__file__).parent / "fixtures" / "e2e" / "goodreads-book.html"
COVER_HOST, COVER_PATH = "images.example.org", "/books/1/lighthouse.jpg"  # the fixture book's cover_url
HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_HEADLINE = f"Museum opens {HOSTILE} exhibit on web safety"
NEWS_STORIES = 13  # more than the 10 the page lists, so it shows "3 more headlines"
BOOK_URL = "https://www.goodreads.com/book/show/1-the-lighthouse"
MISSING_BOOK_URL = "https://www.goodreads.com/book/show/404"
NEWS_URL = "https://www.bbc.com/news"
INVALID_URL = "ftp://www.goodreads.com/book/show/1"
WAIT_SECONDS = 60
NEWS_ANSWER_SECONDS = 2.5  # the news page answers this slowly: the page, polling every second, shows "fetching"
SHOT_COPY = Path("/tmp/webpage.png")
NARROW_SHOT_COPY = Path("/tmp/webpage-narrow.png")


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


@pytest.fixture(scope="module")
def site():
    server = FixtureServer(["www.goodreads.com", "www.bbc.com", COVER_HOST]).start()
    server.routes["/book/show/1"] = Reply(body=FIXTURE_BOOK.read_bytes())
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
        REDIS_URL=module_redis_url, FETCH_RETRIES="0", **site.fetch_env(logs, "www.goodreads.com", "www.bbc.com"),
        DATA_DIR=str(logs / "data"),  # our own: ./var may hold other runs' state (a journal of URLs)
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


def screenshot(driver, path: Path, width: int) -> Path:
    """The whole page at this width: the window is grown to the document's height first."""
    driver.set_window_size(width, 800)
    chrome = 800 - driver.execute_script("return window.innerHeight")  # the window's own frame
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, height + chrome)
    assert driver.save_screenshot(str(path))
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
    assert "3 of 3 finished" in text(browser, "#summary")

    # The hostile headline stayed text: no <img src=x>, no dialog, nothing blocked or thrown.
    assert browser.find_elements(By.CSS_SELECTOR, 'img[src="x"]') == []
    assert len(browser.find_elements(By.CSS_SELECTOR, "#results img")) == 1  # the cover only
    assert_no_alert_dialog(browser)
    assert_no_script_errors(browser)

    assert_fits_a_narrow_screen(browser, tmp_path)
    shot = screenshot(browser, tmp_path / "webpage.png", 1280)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    shutil.copyfile(shot, SHOT_COPY)


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
    assert len(links) == 10
    first = links[0]
    assert first.text == HOSTILE_HEADLINE  # the markup shows as literal text
    assert first.get_attribute("href") == "https://www.bbc.com/news/articles/c0000001x"
    assert "noopener" in first.get_attribute("rel").split() and first.get_attribute("target") == "_blank"
    assert text(row, ".more") == f"{NEWS_STORIES - 10} more headlines"


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
    assert overflow <= 0, f"the page is {overflow}px wider than a 375px screen"
    shutil.copyfile(shot, NARROW_SHOT_COPY)


# ---- hostile API answers and API errors, with fetch() stubbed in the page ---------------------------

# Replaces window.fetch with answers from window.__replies ("METHOD /path" -> reply; for /info,
# a map of ?url= -> reply) and records each request in window.__requests.
STUB_FETCH = """
window.__requests = [];
window.__replies = {};
window.fetch = async (input, init = {}) => {
  const url = new URL(String(input), location.href);
  const method = (init.method || 'GET').toUpperCase();
  const key = method + ' ' + url.pathname;
  window.__requests.push({key, auth: (init.headers || {}).Authorization || null, body: init.body || null});
  let reply = window.__replies[key];
  if (reply && url.pathname === '/info') reply = reply[url.searchParams.get('url')];
  if (!reply) reply = {status: 599, body: 'no stub for ' + key, type: 'text/plain'};
  const body = typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body);
  return new Response(body, {status: reply.status, headers: {'Content-Type': reply.type || 'application/json'}});
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


def done_record(data: dict) -> dict:
    return {"status": 200, "body": {"url": "u", "kind": data["kind"], "status": "done",
                                    "fetched_at": "2025-01-01T00:00:00+00:00", "data": data, "error": None}}


HOSTILE_REPLIES = {
    "POST /parse": {"status": 202, "body": {
        "batch_id": BATCH_ID,
        "accepted": [accepted("b", "https://www.goodreads.com/book/show/7", "goodreads"),
                     accepted("n", "https://www.bbc.com/news", "news"),
                     accepted(HOSTILE, "javascript:alert(6)", "generic")],
        "rejected": [{"url": HOSTILE, "reason": HOSTILE}],
    }},
    f"GET /batches/{BATCH_ID}": {"status": 200, "body": {"items": [
        {"status": "done", "step": None, "error": None}] * 3}},
    "GET /info": {
        "https://www.goodreads.com/book/show/7": done_record({
            "kind": "goodreads_book", "title": HOSTILE, "authors": [HOSTILE], "rating": 3.5,
            "ratings_count": 2, "cover_url": "javascript:alert(2)", "url": "javascript:alert(3)"}),
        "https://www.bbc.com/news": done_record({"kind": "news_headlines", "site": HOSTILE, "headlines": [
            {"title": HOSTILE, "url": "javascript:alert(4)"},
            {"title": "data link", "url": "data:text/html,<script>alert(5)</script>"},
            {"title": "the only real link", "url": "https://www.bbc.com/news/articles/c1"}]}),
        "javascript:alert(6)": done_record({
            "kind": "page", "title": HOSTILE, "description": HOSTILE, "image": "x", "canonical_url": "vbscript:x"}),
    },
}


def test_hostile_api_answers_stay_text_and_never_become_links(service, browser):
    browser.get(f"{service.base}/")
    browser.execute_script(STUB_FETCH)
    stub(browser, HOSTILE_REPLIES)
    submit(browser)
    wait_until(browser, f"{ALL_ROWS_SETTLED}(3)")

    results = browser.find_element(By.ID, "results")
    assert results.text.count(HOSTILE) >= 7  # reason, url, titles, authors, site, headline, description
    hrefs = [a.get_attribute("href") for a in results.find_elements(By.CSS_SELECTOR, "a")]
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
    stub(driver, {"POST /parse": HOSTILE_REPLIES["POST /parse"], f"GET /batches/{BATCH_ID}": HOSTILE_REPLIES[f"GET /batches/{BATCH_ID}"],
                  "GET /info": HOSTILE_REPLIES["GET /info"]})
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


def test_the_page_is_served_with_a_strict_content_security_policy(service):
    response = requests.get(f"{service.base}/", timeout=5)
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert "<script src=\"/ui/app.js\" defer></script>" in response.text
    assert requests.get(f"{service.base}/ui/app.js", timeout=5).status_code == 200
