"""guard: the SSRF guard refuses every local, private, reserved or oddly spelled target."""
from __future__ import annotations

import ipaddress
import socket

import pytest

from errors import BlockedAddress, FetchError
from guard import MAX_URL_LENGTH, approve, check_address, check_host, check_url_shape, resolve_public

# host part of http://HOST/ that must be refused
BLOCKED_HOSTS = {
    "loopback": "127.0.0.1",
    "loopback other": "127.255.0.9",
    "short dotted": "127.1",
    "decimal integer": "2130706433",
    "hex integer": "0x7f000001",
    "octal dotted": "0177.0.0.1",
    "hex dotted": "0x7f.0.0.1",
    "hex short": "0x7f.1",
    "zero": "0",
    "three parts": "1.1.1",
    "public as integer": "134744072",
    "trailing dot loopback": "127.0.0.1.",
    "v6 loopback": "[::1]",
    "v4-mapped dotted": "[::ffff:127.0.0.1]",
    "v4-mapped hex": "[::ffff:7f00:1]",
    "v4-mapped long": "[0:0:0:0:0:ffff:127.0.0.1]",
    "v4-compatible": "[::127.0.0.1]",
    "v4-mapped metadata": "[::ffff:169.254.169.254]",
    "metadata ip": "169.254.169.254",
    "metadata name": "metadata.google.internal",
    "internal name": "db.corp.internal",
    "home.arpa": "router.home.arpa",
    "private 10": "10.0.0.1",
    "private 172.16": "172.16.0.1",
    "private 172.31": "172.31.255.254",
    "private 192.168": "192.168.1.1",
    "cgnat": "100.64.0.1",
    "unspecified": "0.0.0.0",
    "v6 unspecified": "[::]",
    "multicast": "224.0.0.1",
    "broadcast": "255.255.255.255",
    "reserved 240": "240.0.0.1",
    "test-net": "192.0.2.1",
    "benchmark": "198.18.0.1",
    "v6 link-local": "[fe80::1]",
    "v6 link-local zone": "[fe80::1%25eth0]",
    "v6 unique-local": "[fc00::1]",
    "v6 unique-local fd": "[fd12:3456::1]",
    "v6 multicast": "[ff02::1]",
    "v6 documentation": "[2001:db8::1]",
    "nat64 loopback": "[64:ff9b::7f00:1]",
    "nat64 metadata": "[64:ff9b::a9fe:a9fe]",
    "6to4 loopback": "[2002:7f00:1::]",
    "6to4 private": "[2002:c0a8:101::]",
    "localhost": "localhost",
    "localhost upper": "LOCALHOST",
    "localhost dot": "localhost.",
    "localhost port": "localhost:8080",
    "sub.localhost": "foo.localhost",
    "mdns": "printer.local",
    "private with port": "192.168.1.1:80",
    "fullwidth digits": "\uff11\uff12\uff17.0.0.1",  # IDNA maps this to 127.0.0.1
    "fullwidth localhost": "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54",  # -> localhost
}

# whole URLs that must be refused
BLOCKED_URLS = {
    "userinfo user:pass": "http://user:pass@example.com/",
    "userinfo user": "http://user@example.com/",
    "userinfo empty": "http://@example.com/",
    "userinfo to private": "http://example.com@10.0.0.1/",
    "backslash": "http://example.com\\@127.0.0.1/",
    "backslash path": "http://example.com\\foo",
    "space in host": "http://exa mple.com/",
    "space in path": "http://example.com/a b",
    "tab": "http://example.com/\tx",
    "tab in host": "http://exam\tple.com/",
    "newline": "http://example.com/\nx",
    "carriage return": "http://example.com/\r\nHost: x",
    "nul": "http://example.com/\x00",
    "del": "http://example.com/\x7f",
    "file": "file:///etc/passwd",
    "gopher": "gopher://example.com:70/_x",
    "ftp": "ftp://example.com/",
    "javascript": "javascript:alert(1)",
    "data": "data:text/html,<b>x</b>",
    "dict": "dict://example.com:11211/",
    "no scheme": "example.com/page",
    "scheme-relative": "//example.com/",
    "no host": "http:///path",
    "over 2048": "http://example.com/" + "a" * 2100,
    "port too big": "http://example.com:99999/",
    "port 65536": "http://example.com:65536/",
    "port text": "http://example.com:abc/",
    "port negative": "http://example.com:-1/",
    "port zero": "http://example.com:0/",
    "unbalanced bracket": "http://[::1/",
    "bracketed name": "http://[example.com]/",
    "bad v6 literal": "http://[::zz]/",
}

# public targets that must pass
ALLOWED_URLS = [
    "https://example.com/",
    "http://example.com",
    "HTTPS://WWW.Example.COM/Path?q=1#frag",
    "https://www.goodreads.com/book/show/5907",
    "https://example.com./",
    "https://example.com:8443/x",
    "https://xn--bcher-kva.de/",
    "https://localhost.example.com/",  # "localhost" only as a label in a public name
    "https://internal.example.com/",
    "https://example.com/@user",  # an @ in the path is not userinfo
    "https://example.com/?next=a@b",
    "http://8.8.8.8/",
    "https://1.1.1.1/dns-query",
    "http://93.184.216.34:8080/",
    "http://8.8.8.8./",
    "https://[2606:4700:4700::1111]/",
    "https://[2001:4860:4860::8888]:443/",
    "http://[::ffff:8.8.8.8]/",
    "http://[64:ff9b::808:808]/",
    "http://[2002:808:808::]/",
    "https://example.com/" + "a" * (MAX_URL_LENGTH - len("https://example.com/")),
]


@pytest.mark.parametrize("host", BLOCKED_HOSTS.values(), ids=BLOCKED_HOSTS.keys())
def test_blocked_host_spellings(host):
    with pytest.raises(BlockedAddress):
        check_url_shape(f"http://{host}/")


@pytest.mark.parametrize("url", BLOCKED_URLS.values(), ids=BLOCKED_URLS.keys())
def test_blocked_urls(url):
    with pytest.raises(BlockedAddress):
        check_url_shape(url)


@pytest.mark.parametrize("url", ALLOWED_URLS)
def test_public_urls_pass(url):
    parts = check_url_shape(url)
    assert parts.scheme.lower() in ("http", "https")
    assert parts.hostname


def test_length_limit_boundary():
    base = "https://example.com/"
    check_url_shape(base + "a" * (MAX_URL_LENGTH - len(base)))
    with pytest.raises(BlockedAddress, match=str(MAX_URL_LENGTH)):
        check_url_shape(base + "a" * (MAX_URL_LENGTH - len(base) + 1))


@pytest.mark.parametrize("url, words", [
    ("ftp://example.com/", "scheme"),
    ("http://u:p@example.com/", "user name or password"),
    ("http://example.com/ x", "whitespace"),
    ("http://example.com:99999/", "port"),
    ("http://localhost/", "local"),
    ("http://127.1/", "ambiguous"),
    ("http://10.0.0.1/", "not public"),
    ("http:///x", "no host"),
])
def test_refusal_reason_is_specific(url, words):
    with pytest.raises(BlockedAddress, match=words):
        check_url_shape(url)


def test_blocked_address_is_a_permanent_fetch_error():
    assert issubclass(BlockedAddress, FetchError)
    assert BlockedAddress("x").transient is False
    assert BlockedAddress.code == "blocked_address"


# --- check_host / check_address directly ----------------------------------------------------------


@pytest.mark.parametrize("host", ["", ".", "localhost", "LocalHost.", "a.b.localhost", "nas.local",
                                  "Metadata.Google.Internal", "127.0.0.1", "::1", "010.0.0.1", "0x0a.0.0.1"])
def test_check_host_refuses(host):
    with pytest.raises(BlockedAddress):
        check_host(host)


@pytest.mark.parametrize("host", ["example.com", "EXAMPLE.com.", "8.8.8.8", "2606:4700:4700::1111", "local.example",
                                  "0xdeadbeef.example.com", "123.example.com"])
def test_check_host_allows(host):
    check_host(host)


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.20.0.1", "192.168.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "224.0.0.251", "239.255.255.250", "255.255.255.255", "240.0.0.1", "::", "::1", "fe80::1", "fc00::1",
    "ff02::1", "2001:db8::1", "::ffff:10.0.0.1", "64:ff9b::a00:1", "2002:a00:1::",
    ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"),
])
def test_check_address_refuses(address):
    with pytest.raises(BlockedAddress):
        check_address(address)


@pytest.mark.parametrize("address", [
    "8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001:82b::200e", "::ffff:8.8.8.8",
    ipaddress.ip_address("8.8.4.4"), ipaddress.ip_address("2001:4860:4860::8844"),
])
def test_check_address_allows(address):
    assert check_address(address) is None


# --- resolve_public -------------------------------------------------------------------------------


def addrinfo(*addresses: str, port: int = 443) -> list[tuple]:
    """getaddrinfo-shaped answers for addresses."""
    infos = []
    for address in addresses:
        if ":" in address:
            infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
        else:
            infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
    return infos


@pytest.fixture
def dns(monkeypatch):
    """Replace socket.getaddrinfo; set .answer to a list of infos or an exception; .calls records calls."""
    class FakeDns:
        answer: list | Exception = []
        calls: list = []

        def __call__(self, host, port, *args, **kwargs):
            self.calls.append((host, port, args, kwargs))
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer

    fake = FakeDns()
    fake.calls = []
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.mark.parametrize("answer", [
    ["127.0.0.1"],
    ["10.0.0.7"],
    ["169.254.169.254"],
    ["::1"],
    ["fe80::1%eth0"],
    ["::ffff:192.168.0.1"],
    ["93.184.216.34", "10.0.0.1"],  # one private answer among public ones is enough to refuse
    ["10.0.0.1", "93.184.216.34"],
    ["2606:4700:4700::1111", "::1"],
])
def test_resolve_public_refuses_any_private_answer(dns, answer):
    dns.answer = addrinfo(*answer)
    with pytest.raises(BlockedAddress):
        resolve_public("rebind.example", 443)


@pytest.mark.parametrize("answer, expected", [
    (["93.184.216.34"], "93.184.216.34"),
    (["93.184.216.34", "8.8.8.8"], "93.184.216.34"),
    (["2606:4700:4700::1111", "1.1.1.1"], "2606:4700:4700::1111"),
])
def test_resolve_public_returns_first_public_address(dns, answer, expected):
    dns.answer = addrinfo(*answer)
    assert resolve_public("example.com", 443) == expected


def test_resolve_public_asks_dns_once_for_stream_sockets(dns):
    dns.answer = addrinfo("93.184.216.34", port=8080)
    resolve_public("example.com", 8080)
    assert len(dns.calls) == 1
    host, port, args, kwargs = dns.calls[0]
    assert (host, port) == ("example.com", 8080)
    assert kwargs.get("type", args[1] if len(args) > 1 else None) == socket.SOCK_STREAM


@pytest.mark.parametrize("error", [
    socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
    socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
    UnicodeError("label too long"),
])
def test_resolution_error_is_blocked_address(dns, error):
    dns.answer = error
    with pytest.raises(BlockedAddress, match="cannot resolve"):
        resolve_public("nowhere.example", 443)


def test_unencodable_host_is_blocked_without_dns():
    # A 64-character label cannot be IDNA-encoded: getaddrinfo raises UnicodeError before any lookup.
    with pytest.raises(BlockedAddress):
        resolve_public("\u00e9" + "a" * 63 + ".example", 443)


# ---- approve: a fetch hop's one decision ----------------------------------------------------

@pytest.mark.parametrize("url, host, port", [
    ("https://Example.COM/a?b", "example.com", 443),
    ("http://example.com/", "example.com", 80),
    ("https://example.com:8443/", "example.com", 8443),
])
def test_approve_checks_the_shape_and_asks_dns_once(dns, url, host, port):
    dns.answer = addrinfo("93.184.216.34", port=port)
    target = approve(url)
    assert (target.url, target.host, target.port, target.address) == (url, host, port, ("93.184.216.34", port))
    assert target.parts == check_url_shape(url) and [call[:2] for call in dns.calls] == [(host, port)]


@pytest.mark.parametrize("url, answer", [
    ("http://127.0.0.1/", "127.0.0.1"),  # refused by its spelling, before DNS
    ("gopher://example.com/", "93.184.216.34"),
    ("https://rebind.example/", "10.0.0.1"),  # refused by the answer
])
def test_approve_refuses_what_the_guard_refuses(dns, url, answer):
    dns.answer = addrinfo(answer)
    with pytest.raises(BlockedAddress):
        approve(url)


def test_approve_uses_an_address_pinned_in_advance_instead_of_dns(dns):
    """FETCH_CONNECT_TO: the operator's (host, port) -> address, as curl's --connect-to."""
    target = approve("https://www.bbc.com/news", {("www.bbc.com", 443): ("127.0.0.1", 40001)})
    assert target.address == ("127.0.0.1", 40001) and dns.calls == []
    with pytest.raises(BlockedAddress):  # the URL's shape is still checked
        approve("https://user@www.bbc.com/", {("www.bbc.com", 443): ("127.0.0.1", 40001)})
