"""HTTP/1.1 spoken byte by byte over a socket: request lines, paths and framing exactly as
sent, which an HTTP client library would normalise (merge slashes, re-encode, add headers)."""
from __future__ import annotations

import socket
from dataclasses import dataclass, field


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    version: str = "HTTP/1.1"

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def closes(self) -> bool:
        """Whether the server said it closes the connection after this answer."""
        return self.version == "HTTP/1.0" or (self.header("Connection") or "").lower() == "close"


def request_bytes(method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"",
                  keep_alive: bool = False) -> bytes:
    """A whole request: the request line as given, Host (127.0.0.1 unless headers name one),
    Connection: close unless keep_alive, the headers, Content-Length for a body."""
    headers = {"Host": "127.0.0.1", **(headers or {})}
    lines = [f"{method} {target} HTTP/1.1"] + ([] if keep_alive else ["Connection: close"])
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def send(port: int, data: bytes, timeout: float = 10) -> RawResponse:
    """Send data on a new connection and read one response until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = read_until_closed(sock)
    return parse_response(received)


def request(port: int, method: str, target: str, headers: dict[str, str] | None = None,
            body: bytes = b"") -> RawResponse:
    return send(port, request_bytes(method, target, headers, body))


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> RawResponse:
    """One response (framed by Content-Length) from a connection kept alive after it."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _content_length(data):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed in the middle of a response: {data[:200]!r}")
        data += chunk
    return parse_response(data)


def _content_length(data: bytes) -> int:
    return int(parse_response(data.partition(b"\r\n\r\n")[0] + b"\r\n\r\n").header("Content-Length") or 0)


def parse_responses(data: bytes) -> list[RawResponse]:
    """Several responses sent one after the other (each framed by Content-Length)."""
    found = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(parse_response(head + b"\r\n\r\n").header("Content-Length") or 0)
        found.append(parse_response(head + b"\r\n\r\n" + rest[:length]))
        data = rest[length:]
    return found


def parse_response(data: bytes) -> RawResponse:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/"):
        raise ValueError(f"not an HTTP response: {data[:200]!r}")
    version, status = lines[0].split()[0], int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = dechunk(body)
    return RawResponse(status, headers, body, version)


class RawConnection:
    """One connection kept open across requests: send bytes, read one answer at a time by its
    framing, then see whether the server keeps the connection usable or closes it."""

    def __init__(self, port: int, timeout: float = 10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> RawResponse:
        """The next answer to a request other than HEAD: its head, then the body its Content-Length
        or chunked framing says; raises EOFError if the server closed first."""
        head = self._read_through(b"\r\n\r\n")
        answer = parse_response(head)
        if answer.status in (204, 304) or answer.status < 200:
            return answer
        if (answer.header("Transfer-Encoding") or "").lower() == "chunked":
            answer.body = dechunk(self._read_through(b"0\r\n\r\n"))
        elif answer.header("Content-Length") is not None:
            answer.body = self._read_exactly(int(answer.header("Content-Length")))
        else:
            answer.body = self.rest()
        return answer

    def rest(self) -> bytes:
        """Whatever the server sends until it closes the connection."""
        data, self.buffer = self.buffer + read_until_closed(self.sock), b""
        return data

    def _read_through(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._receive()
        end = self.buffer.index(marker) + len(marker)
        data, self.buffer = self.buffer[:end], self.buffer[end:]
        return data

    def _read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._receive()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _receive(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"the server closed the connection; received {self.buffer[:300]!r}")
        self.buffer += chunk


def dechunk(body: bytes) -> bytes:
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2:]
    return b"".join(out)


def chunked(body: bytes, piece: int = 8192) -> bytes:
    """body in Transfer-Encoding: chunked framing, `piece` bytes a chunk."""
    parts = [b"%x\r\n%s\r\n" % (len(body[i:i + piece]), body[i:i + piece]) for i in range(0, len(body), piece)]
    return b"".join(parts) + b"0\r\n\r\n"
