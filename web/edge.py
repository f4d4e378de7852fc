"""The web tier's gunicorn worker: gevent's, plus what a public address needs before Flask.

Why gevent (bench/api_bench.py and tests/web/test_edge.py measured it): every connection is a
greenlet, so a client that trickles its request holds a few kilobytes, not one of a
handful of threads (500 such clients left gthread's 8 threads 3 answers a minute for
everyone else), and 2 gevent processes answered GET /info with a lower p99 and 0.2-0.3 ms
less CPU a request than gthread's 4 x 2 (README, Performance). On top of gevent's worker,
EdgeWorker adds:

- a request-read deadline: the request line, headers and body must arrive within
  REQUEST_READ_TIMEOUT seconds of the request's first byte, or the client gets 408 and the
  connection closes; an idle connection closes silently (REQUEST_READ_TIMEOUT before its
  first request, gunicorn's keepalive between requests);
- bodies read in full (up to MAX_REQUEST_BYTES) before the application runs, so no
  request handler ever waits on a slow client;
- a bound on the connections one client address holds open (MAX_CONNECTIONS_PER_ADDRESS,
  shared out between the web processes); over it, 429 and close;
- every error gunicorn answers itself (a malformed request line, 414, 431, 501, ...) in
  the API's JSON shape, and 501 for the transfer codings gunicorn would pass on undecoded;
- pipelined requests answered in order: the requests already read are served before the
  socket is waited on again;
- a stopping worker closes its idle connections at once instead of waiting for them.
"""
from __future__ import annotations

import errno
import io
import math
import socket
import time
from collections import Counter

import gevent
from gevent.socket import wait_read
from gunicorn import http, util
from gunicorn.glogging import Logger
from gunicorn.http import errors as http_errors
from gunicorn.http.body import Body, ChunkedReader
from gunicorn.http.message import Request
from gunicorn.http.parser import RequestParser
from gunicorn.workers.ggevent import GeventWorker

import jsontext
import logs
import metrics
from config import load_settings
from errors import error_body

SHUTDOWN_POLL = 0.2  # seconds between looks at whether the worker is stopping
Address = tuple | str  # (host, port, ...) of a TCP peer or listener; a path for a unix socket
QUIET_SOCKET_ERRORS = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN)
REASONS = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout", 414: "URI Too Long", 417: "Expectation Failed",
           429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
           501: "Not Implemented"}
# gunicorn's parse errors, most specific first: (class, status, code). A response header the
# application wrote wrong is caught first: that one is the service's fault, not the client's.
CLIENT_ERRORS = (
    (http_errors.InvalidResponseHeader, 500, "internal_error"),
    (http_errors.InvalidResponseHeaderName, 500, "internal_error"),
    (http_errors.LimitRequestLine, 414, "uri_too_long"),
    (http_errors.LimitRequestHeaders, 431, "header_fields_too_large"),
    (http_errors.UnsupportedTransferCoding, 501, "unsupported_transfer_coding"),
    (http_errors.ExpectationFailed, 417, "expectation_failed"),
    (http_errors.ForbiddenProxyRequest, 403, "forbidden"),
    (http_errors.ParseException, 400, "malformed_request"),
)


class RequestReadTimeout(Exception):
    """The request was not all there by its deadline (raised by gevent.Timeout, which makes
    one only when the deadline passes: nothing is built per request)."""


class AddressSlots:
    """How many connections each client address holds in this process, bounded by limit
    (0: unbounded). gevent runs one greenlet at a time, so a plain Counter is safe."""

    def __init__(self, limit: int):
        self.limit = limit
        self.held: Counter[str] = Counter()

    def take(self, address: str) -> bool:
        if self.limit and self.held[address] >= self.limit:
            return False
        self.held[address] += 1
        return True

    def give_back(self, address: str) -> None:
        self.held[address] -= 1
        if self.held[address] <= 0:
            del self.held[address]


class RefusalLog:
    """One warning line per error code per INTERVAL seconds, counting the refusals it did not
    write: an attacker's thousands of slow connections must not flood the log (/metrics
    counts every one, metaparse_http_refused_total)."""

    INTERVAL = 10.0

    def __init__(self, log: Logger):
        self.log = log
        self.quiet_until: dict[str, float] = {}
        self.unwritten: Counter[str] = Counter()

    def warning(self, code: str, message: str) -> None:
        now = time.monotonic()
        if now < self.quiet_until.get(code, 0.0):
            self.unwritten[code] += 1
            return
        self.quiet_until[code] = now + self.INTERVAL
        more = self.unwritten.pop(code, 0)
        self.log.warning("%s%s", message, f" (and {more} more {code} since the last such line)" if more else "")


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 answer with the API's JSON error body; the connection closes after it."""
    body = jsontext.dumps(error_body(code, message)).encode()  # UTF-8, as the app's JSON
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Connection: close",
             *(f"{name}: {value}" for name, value in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def client_error(exc: BaseException) -> tuple[int, str]:
    for kind, status, code in CLIENT_ERRORS:
        if isinstance(exc, kind):
            return status, code
    return 500, "internal_error"


def refuse_codings_left_encoded(req: Request) -> None:
    """501 for any transfer coding but chunked. gunicorn refuses unknown ones itself, but lets
    gzip, deflate and compress (before chunked) through without decoding them: the application
    would read the compressed bytes as the body, or take a body sent plain under that label."""
    for name, value in req.headers:
        if name == "TRANSFER-ENCODING" and any(coding.strip(" \t").lower() != "chunked" for coding in value.split(",")):
            raise http_errors.UnsupportedTransferCoding(value)


class EdgeWorker(GeventWorker):
    """gunicorn's gevent worker with deadlines, per-address bounds and JSON errors."""

    def init_process(self) -> None:
        settings = load_settings()  # gunicorn.conf.py has validated them already
        self.read_timeout = settings.request_read_timeout
        self.max_body = settings.max_request_bytes
        # Behind proxies every connection comes from a proxy: the bound would hit all clients at once.
        share = 0 if settings.trusted_proxies else math.ceil(settings.max_connections_per_address / self.cfg.workers)
        self.slots = AddressSlots(share)
        self.refusals = RefusalLog(self.log)
        self.idle: set[gevent.Greenlet] = set()  # serving greenlets waiting for a request
        super().init_process()

    def handle(self, listener: socket.socket, client: socket.socket, addr: Address) -> None:
        address = addr[0] if isinstance(addr, tuple) else ""
        if not self.slots.take(address):
            self.refuse(client, address)
            return
        try:
            client.setblocking(1)
            self.serve(listener.getsockname(), client, addr)
        except OSError as exc:
            if exc.errno not in QUIET_SOCKET_ERRORS:
                self.log.exception("socket error serving a connection")
        finally:
            self.slots.give_back(address)
            util.close(client)

    def refuse(self, client: socket.socket, address: str) -> None:
        metrics.edge_refused("too_many_connections")
        self.refusals.warning("too_many_connections", f"connection refused: {logs.escaped(address)} holds "
                              f"{self.slots.limit} connections already (MAX_CONNECTIONS_PER_ADDRESS)")
        try:
            client.sendall(error_response(429, "too_many_connections", self.too_many_connections(),
                                          {"Retry-After": "1"}))
        except OSError:
            pass
        util.close(client)

    def header_limit(self, exc: BaseException) -> str:
        """431's reason with the limit it hit (gunicorn says only "limit request headers fields")."""
        if "size" in str(exc):
            return f"a header field is over {self.cfg.limit_request_field_size:,} bytes, the most one may be"
        return f"more than {self.cfg.limit_request_fields} header fields, the most a request may have"

    def too_many_connections(self) -> str:
        return (f"this address holds {self.slots.limit} open connections to this server process already, its share "
                "of MAX_CONNECTIONS_PER_ADDRESS; close some and retry")

    def serve(self, listener_name: Address, client: socket.socket, addr: Address) -> None:
        """Requests of one connection, one after the other, until it closes or must."""
        parser = http.get_parser(self.cfg, client, addr)
        idle_limit = self.read_timeout  # before the first request; keepalive between the next ones
        req = None
        try:
            while self.request_arrives(client, parser, idle_limit):
                req = None
                req = self.read_request(parser, client)
                self.handle_request(listener_name, req, client, addr)
                if not self.cfg.keepalive:
                    return
                idle_limit = self.cfg.keepalive
        except (http_errors.NoMoreData, StopIteration):
            return
        except OSError:
            raise  # the client went away mid-answer: handle() says so, quietly for a reset or a broken pipe
        except Exception as exc:  # a malformed or late request: answered, then closed
            self.handle_error(req, client, addr, exc)

    def request_arrives(self, client: socket.socket, parser: RequestParser, idle_limit: float) -> bool:
        """True once bytes of a request are there (already read ones count: pipelining);
        False when the connection stays idle for idle_limit seconds. Meanwhile the
        connection is idle: a stopping worker closes it (close_idle_at_shutdown)."""
        if parser.unreader.buf.getbuffer().nbytes:
            return True
        waiting = gevent.getcurrent()
        self.idle.add(waiting)
        try:
            wait_read(client.fileno(), timeout=idle_limit)
        except TimeoutError:
            return False
        finally:
            self.idle.discard(waiting)
        return True

    def run(self) -> None:
        gevent.spawn(self.close_idle_at_shutdown)
        super().run()

    def close_idle_at_shutdown(self) -> None:
        """gevent's worker, stopping, waits for every connection to end (up to
        graceful_timeout): an idle one would hold it REQUEST_READ_TIMEOUT or keepalive
        seconds for nothing. Requests being read or answered are left to finish."""
        while self.alive:
            gevent.sleep(SHUTDOWN_POLL)
        for waiting in list(self.idle):
            waiting.kill(block=False)

    def read_request(self, parser: RequestParser, client: socket.socket) -> Request:
        """The next request, its body read in full, by the read deadline."""
        with gevent.Timeout(self.read_timeout, RequestReadTimeout):
            req = next(parser)
            refuse_codings_left_encoded(req)
            self.read_body(req, client)
        return req

    def read_body(self, req: Request, client: socket.socket) -> None:
        """Up to MAX_REQUEST_BYTES + 1 of the body into memory. A body declared larger is not
        read at all (the application answers 413 from Content-Length); one that turns out
        larger is cut there. Either way the rest was never read: the connection closes."""
        reader = req.body.reader
        chunked = isinstance(reader, ChunkedReader)
        length = None if chunked else reader.length
        if length == 0:
            return
        if length is not None and length > self.max_body:
            req.force_close()
            return
        if getattr(req, "_expected_100_continue", False):  # the client waits for a go-ahead first
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            req._expected_100_continue = False  # so gunicorn does not send a second one
        data = req.body.read(self.max_body + 1)
        if length is not None and len(data) < length:
            raise http_errors.NoMoreData(data)  # the client hung up mid-body: nothing to answer
        if len(data) > self.max_body:
            req.force_close()
        req.body = Body(io.BytesIO(data))

    def handle_error(self, req: Request | None, client: socket.socket, addr: Address, exc: BaseException) -> None:
        if isinstance(exc, RequestReadTimeout):
            status, code = 408, "request_timeout"
        else:
            status, code = client_error(exc)
        metrics.edge_refused(code)
        if status == 500:
            self.log.exception("error handling a request")
            message = "an unexpected error occurred; it has been logged"
        elif status == 408:
            message = f"the request was not received within {self.read_timeout:g} s (REQUEST_READ_TIMEOUT)"
        elif status == 431:
            message = self.header_limit(exc)
        else:
            message = logs.escaped(str(exc)) or REASONS[status]
        if status != 500:
            self.refusals.warning(code, f"{status} to {logs.escaped(str(addr[0] if addr else ''))}: {message}")
        try:
            client.sendall(error_response(status, code, message))
        except OSError:
            self.log.debug("could not send the error answer")
