"""A local HTTPS (or HTTP) server that plays any website, with a test CA made by trustme.

Routes map a path to a response (status, headers, body) or to a handler function, so
tests can serve saved pages, redirects, errors, slow or huge bodies from 127.0.0.1.
"""
from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trustme

Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/html; charset=utf-8"})


class FixtureServer:
    """Serves `routes` ({path: Reply | handler}), and `fallback` (when set) for any other path;
    counts requests per path in `hits` and keeps each POST as (headers, body) in `posts[path]`."""

    def __init__(self, hostnames: list[str], ca: trustme.CA | None = None, tls: bool = True):
        self.routes: dict[str, Reply | Handler] = {}
        self.hits: dict[str, int] = {}
        self.posts: dict[str, list[tuple[dict[str, str], bytes]]] = {}
        self.fallback: Reply | Handler | None = None  # serves paths no route names (else 404)
        self.ca = ca or trustme.CA()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert(*hostnames).configure_cert(context)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def write_ca_bundle(self, path: Path) -> Path:
        self.ca.cert_pem.write_to_path(str(path))
        return path

    def connect_to(self, *hosts: str, port: int = 443) -> str:
        """A FETCH_CONNECT_TO value sending these hosts to this server."""
        return ",".join(f"{host}:{port}:127.0.0.1:{self.port}" for host in hosts)

    def fetch_env(self, folder: Path, *hosts: str) -> dict[str, str]:
        """FETCH_CONNECT_TO sending hosts here and FETCH_CA_BUNDLE trusting this server's CA
        (written to folder/ca.pem): what a service needs to fetch from this site."""
        return {"FETCH_CONNECT_TO": self.connect_to(*hosts),
                "FETCH_CA_BUNDLE": str(self.write_ca_bundle(folder / "ca.pem"))}

    def start(self) -> "FixtureServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as separate writes: with Nagle on, the body waits for
            # the client's delayed ACK (~40 ms per reply), which would dwarf what is measured.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.split("?")[0]
                server.hits[path] = server.hits.get(path, 0) + 1
                route = (server.routes.get(path) or server.fallback
                         or Reply(404, b"not found", {"Content-Type": "text/plain"}))
                if callable(route):
                    route(self)
                else:
                    send_reply(self, route)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.posts.setdefault(self.path.split("?")[0], []).append((dict(self.headers), body))
                self.do_GET()

            def log_message(self, *args: object) -> None:
                pass  # keep test output quiet

        return _Handler


def send_reply(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
    handler.send_response(reply.status)
    for name, value in reply.headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(reply.body)))
    handler.end_headers()
    handler.wfile.write(reply.body)
