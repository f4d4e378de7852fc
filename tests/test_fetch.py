"""Safe fetching against a local HTTPS server with a test CA: the happy path and the hostile ones."""
from __future__ import annotations

import dataclasses
import gzip
import multiprocessing
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
import requests
from urllib3 import exceptions as urllib3_errors

import guard
from config import load_settings
from errors import (
    BlockedAddress,
    BodyTooLarge,
    FetchError,
    FetchTimeout,
    HttpStatusError,
    NotHtml,
    TooManyRedirects,
    TransientFetchError,
)
from jobs.fetch import Fetcher, pinning, transport
from jobs.fetch.failures import fetch_errors, parse_retry_after
from tests.support.fixture_server import FixtureServer, Reply, send_reply

HOSTS = ["www.goodreads.com", "www.bbc.com"]
HTML = {"Content-Type": "text/html; charset=utf-8"}


@pytest.fixture(scope="module")
def server():
    fixture = FixtureServer(HOSTS).start()
    yield fixture
    fixture.stop()


@pytest.fixture
def fetcher(server: FixtureServer, tmp_path: Path) -> Fetcher:
    settings = load_settings({
        "FETCH_CONNECT_TO": server.connect_to(*HOSTS),
        "FETCH_CA_BUNDLE": str(server.write_ca_bundle(tmp_path / "ca.pem")),
        "FETCH_DEADLINE": "2", "FETCH_CONNECT_TIMEOUT": "1", "FETCH_READ_TIMEOUT": "1",
        "MAX_BODY_BYTES": str(64 * 1024), "FETCH_MAX_REDIRECTS": "3",
    })
    yield Fetcher(settings)


def test_fetches_page_through_connect_to_with_tls_checked(server, fetcher):
    server.routes["/book/show/1"] = Reply(body=b"<html><title>One</title></html>")
    page = fetcher.fetch("https://www.goodreads.com/book/show/1")
    assert (page.status, page.body, page.url) == (200, b"<html><title>One</title></html>", "https://www.goodreads.com/book/show/1")


def test_untrusted_certificate_is_a_fetch_error(server, tmp_path):
    settings = load_settings({"FETCH_CONNECT_TO": server.connect_to(*HOSTS)})  # default CAs only
    server.routes["/book/show/2"] = Reply(body=b"<html></html>")
    with pytest.raises(FetchError, match="TLS"):
        Fetcher(settings).fetch("https://www.goodreads.com/book/show/2")


def test_follows_redirects_revalidating_each_hop(server, fetcher):
    server.routes["/old"] = Reply(301, headers={"Location": "https://www.bbc.com/news"})
    server.routes["/news"] = Reply(body=b"<html>news</html>")
    page = fetcher.fetch("https://www.goodreads.com/old")
    assert page.url == "https://www.bbc.com/news"
    assert page.redirects == ["https://www.goodreads.com/old"]


@pytest.mark.parametrize("location", [
    "http://127.0.0.1:6379/", "http://[::ffff:127.0.0.1]/", "http://2130706433/",
    "http://169.254.169.254/latest/meta-data/", "file:///etc/passwd", "http://localhost/",
])
def test_redirect_to_private_address_is_refused(server, fetcher, location):
    server.routes["/evil"] = Reply(302, headers={"Location": location})
    with pytest.raises(BlockedAddress):
        fetcher.fetch("https://www.goodreads.com/evil")


def test_redirect_loop_and_chain_are_refused(server, fetcher):
    server.routes["/loop-a"] = Reply(302, headers={"Location": "/loop-b"})
    server.routes["/loop-b"] = Reply(302, headers={"Location": "/loop-a"})
    with pytest.raises(TooManyRedirects, match="loop"):
        fetcher.fetch("https://www.goodreads.com/loop-a")
    for hop in range(6):
        server.routes[f"/chain{hop}"] = Reply(302, headers={"Location": f"/chain{hop + 1}"})
    with pytest.raises(TooManyRedirects, match="more than 3"):
        fetcher.fetch("https://www.goodreads.com/chain0")


def test_body_over_the_limit_is_refused(server, fetcher):
    server.routes["/big"] = Reply(body=b"x" * (65 * 1024))
    with pytest.raises(BodyTooLarge):
        fetcher.fetch("https://www.goodreads.com/big")


def test_gzip_bomb_counts_its_inflated_size(server, fetcher):
    bomb = gzip.compress(b"<html>" + b" " * (50 * 1024 * 1024))
    server.routes["/bomb"] = Reply(body=bomb, headers={**HTML, "Content-Encoding": "gzip"})
    double = gzip.compress(bomb)
    server.routes["/bomb2"] = Reply(body=double, headers={**HTML, "Content-Encoding": "gzip, gzip"})
    for path in ("/bomb", "/bomb2"):
        with pytest.raises(BodyTooLarge):
            fetcher.fetch(f"https://www.goodreads.com{path}")


def test_gzip_page_within_limit_is_decoded(server, fetcher):
    server.routes["/gz"] = Reply(body=gzip.compress(b"<html>small</html>"), headers={**HTML, "Content-Encoding": "gzip"})
    assert fetcher.fetch("https://www.goodreads.com/gz").body == b"<html>small</html>"


def drip(handler) -> None:
    """One byte every 0.2 s, forever by the fetch's standards: socket timeouts never fire."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html")
    handler.end_headers()
    try:
        for _ in range(200):
            handler.wfile.write(b"a")
            handler.wfile.flush()
            time.sleep(0.2)
    except OSError:
        pass  # the fetcher hung up, as it should


def drip_headers(handler) -> None:
    """The status line and headers one byte every 0.2 s. urllib3 reads them whole before the
    fetcher's body loop can look at its deadline: only the watchdog, shutting the socket
    down, stops this one before its ~50 s are over."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Drip: " + b"d" * 200 + b"\r\n\r\n"
    try:
        for byte in head:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(0.2)
    except OSError:
        pass  # the fetcher hung up, as it should
    handler.close_connection = True


@pytest.mark.parametrize("dripping", [drip, drip_headers], ids=["body", "headers"])
def test_dripping_server_hits_the_wall_clock_deadline(server, fetcher, dripping):
    server.routes["/drip"] = dripping
    started = time.monotonic()
    with pytest.raises(FetchTimeout):
        fetcher.fetch("https://www.goodreads.com/drip")
    assert time.monotonic() - started < 2 + 1.5


def test_non_html_is_refused(server, fetcher):
    server.routes["/pdf"] = Reply(body=b"%PDF-1.4", headers={"Content-Type": "application/pdf"})
    with pytest.raises(NotHtml):
        fetcher.fetch("https://www.goodreads.com/pdf")


@pytest.mark.parametrize("status,error,transient", [
    (404, HttpStatusError, False), (403, HttpStatusError, False), (410, HttpStatusError, False),
    (429, TransientFetchError, True), (500, TransientFetchError, True), (503, TransientFetchError, True),
])
def test_status_codes_map_to_transient_or_permanent(server, fetcher, status, error, transient):
    server.routes[f"/status{status}"] = Reply(status, b"no", {"Content-Type": "text/html", "Retry-After": "7"})
    with pytest.raises(error) as caught:
        fetcher.fetch(f"https://www.goodreads.com/status{status}")
    assert caught.value.transient is transient
    if transient:
        assert caught.value.retry_after == 7


def test_connection_refused_is_transient():
    with socket.socket() as unused:  # bound, never listening: refused, and no other process takes the port
        unused.bind(("127.0.0.1", 0))
        fetcher = Fetcher(load_settings({"FETCH_CONNECT_TO": f"www.bbc.com:443:127.0.0.1:{unused.getsockname()[1]}"}))
        with pytest.raises(TransientFetchError):
            fetcher.fetch("https://www.bbc.com/news")


def test_connection_is_pinned_to_the_address_the_guard_approved(server, fetcher, monkeypatch):
    """DNS is asked once (by the guard); the dial goes to that answer, never to a second lookup."""
    fetcher = Fetcher(load_settings({"FETCH_CA_BUNDLE": fetcher.transport.verify}))  # no FETCH_CONNECT_TO: DNS
    approved = []
    monkeypatch.setattr(guard, "resolve_public", lambda host, port: approved.append(host) or "127.0.0.1")
    real_getaddrinfo = socket.getaddrinfo

    def no_name_lookups(host, *args, **kwargs):
        assert host == "127.0.0.1", f"second DNS lookup of {host}"
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_name_lookups)
    server.routes["/pinned"] = Reply(body=b"<html>pinned</html>")
    # The approved address is the fixture server's; the URL's port is 443, the dial goes to the server's.
    monkeypatch.setattr(guard, "DEFAULT_PORTS", {"https": server.port, "http": 80})
    assert fetcher.fetch("https://www.bbc.com/pinned").body == b"<html>pinned</html>"
    assert approved == ["www.bbc.com"]


class Connections:
    """A route that records the client's (address, port) per request: one per TCP connection."""

    def __init__(self, headers: dict[str, str] | None = None):
        self.reply = Reply(body=b"<html>ok</html>", headers={**HTML, **(headers or {})})
        self.peers: list[tuple[str, int]] = []

    def __call__(self, handler) -> None:
        self.peers.append(handler.client_address)
        send_reply(handler, self.reply)


def test_fetches_from_one_fetcher_reuse_one_keep_alive_connection(server, fetcher):
    route = server.routes["/kept"] = Connections()
    server.routes["/hop"] = Reply(302, headers={"Location": "/kept"})
    for _ in range(10):
        fetcher.fetch("https://www.goodreads.com/kept")
    fetcher.fetch("https://www.goodreads.com/hop")  # a redirect to the same host keeps it too
    assert len(route.peers) == 11 and len(set(route.peers)) == 1


def test_new_connections_share_one_tls_context_and_still_check_the_name(server, fetcher, monkeypatch):
    made = []
    monkeypatch.setattr(transport, "tls_context", lambda verify: made.append(verify) or pinning.tls_context(verify))
    route = server.routes["/closing"] = Connections({"Connection": "close"})
    for host in ("www.goodreads.com", "www.bbc.com", "www.goodreads.com"):
        fetcher.fetch(f"https://{host}/closing")
    assert len(set(route.peers)) == 3 and made == [fetcher.transport.verify]  # the CA bundle was read once
    fetcher.transport.settings = dataclasses.replace(  # the same context, for a name the test CA never vouched for
        fetcher.settings, fetch_connect_to={("www.example.com", 443): ("127.0.0.1", server.port)})
    with pytest.raises(FetchError, match="TLS"):
        fetcher.fetch("https://www.example.com/closing")
    assert made == [fetcher.transport.verify]


def test_one_watchdog_thread_serves_every_deadline(server, fetcher):
    server.routes["/quick"] = Reply(body=b"<html>quick</html>")
    for _ in range(20):
        fetcher.fetch("https://www.goodreads.com/quick")
    assert [t.name for t in threading.enumerate()].count("fetch-deadlines") == 1


def _expires_in_child(seconds: float) -> bool:
    with pinning.Deadline(seconds) as deadline:
        time.sleep(seconds + 0.3)
    return deadline.expired


def test_a_forked_child_gets_its_own_watchdog():
    with pinning.Deadline(5):  # the parent's watchdog thread exists (and is busy) at fork time
        with multiprocessing.get_context("fork").Pool(1) as pool:
            assert pool.apply(_expires_in_child, (0.2,)) is True


# ---- one translation of network exceptions (jobs/fetch/failures.py) --------------------------

@pytest.mark.parametrize("exc,error,says", [
    # requests
    (requests.exceptions.ConnectionError("refused"), TransientFetchError, "network error"),
    (requests.exceptions.ChunkedEncodingError("cut short"), TransientFetchError, "network error"),
    (requests.exceptions.ConnectTimeout("no answer"), FetchTimeout, "timed out"),
    (requests.exceptions.ReadTimeout("no answer"), FetchTimeout, "timed out"),
    (requests.exceptions.SSLError("certificate verify failed"), FetchError, "TLS error"),
    # urllib3 (raw body reads)
    (urllib3_errors.ProtocolError("connection reset"), TransientFetchError, "network error"),
    (urllib3_errors.ReadTimeoutError(None, "/", "read timed out"), FetchTimeout, "timed out"),
    (urllib3_errors.SSLError("bad record mac"), FetchError, "TLS error"),
    (urllib3_errors.DecodeError("corrupt gzip"), FetchError, "undecodable body"),
    # socket
    (ConnectionResetError(104, "reset by peer"), TransientFetchError, "network error"),
    (socket.gaierror(-2, "name unknown"), TransientFetchError, "network error"),
    (socket.timeout("timed out"), FetchTimeout, "timed out"),
    # ssl
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), FetchError, "TLS error"),
    (ssl.SSLError(1, "wrong version number"), FetchError, "TLS error"),
], ids=lambda value: type(value).__module__ + "." + type(value).__name__ if isinstance(value, BaseException) else None)
def test_each_network_exception_family_leaves_as_one_project_error(exc, error, says):
    with pinning.Deadline(10) as deadline, pytest.raises(FetchError) as caught, fetch_errors(deadline):
        raise exc
    assert type(caught.value) is error and str(caught.value).startswith(says)
    assert (caught.value.code, caught.value.transient) == (error.code, error.transient)


def test_any_network_exception_after_the_deadline_is_a_timeout():
    with pinning.Deadline(0.05) as deadline:
        time.sleep(0.3)
        with pytest.raises(FetchTimeout, match="no complete page within"), fetch_errors(deadline):
            raise urllib3_errors.ProtocolError("the watchdog shut the socket down")


@pytest.mark.parametrize("exc", [BodyTooLarge("too big"), BlockedAddress("private"), ValueError("a bug")])
def test_project_errors_and_bugs_pass_through_untranslated(exc):
    with pinning.Deadline(10) as deadline, pytest.raises(type(exc)) as caught, fetch_errors(deadline):
        raise exc
    assert caught.value is exc


@pytest.mark.parametrize("value,expected", [("120", 120.0), (None, None), ("soon", None)])
def test_retry_after_parsing(value, expected):
    assert parse_retry_after(value) == expected


def test_retry_after_http_date_is_in_the_future():
    moment = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 50 <= parse_retry_after(moment) <= 61
