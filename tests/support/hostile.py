"""Hostile web pages for end-to-end tests, a sentinel that counts connections, and /proc probes.

Handlers here plug into FixtureServer routes. None of them builds a large body in memory:
huge bodies are streamed from one small buffer, and compression bombs are made of one
deflate block that is repeated (after a full flush, deflating 1 MiB of zeros gives the
same bytes every time), so the test process stays small while the page claims gigabytes.
A handler stops quietly when the client hangs up, which is what a good fetcher does.
"""
from __future__ import annotations

import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

KIB, MIB, GIB = 1024, 1024 * 1024, 1024 * 1024 * 1024
HTML = "text/html; charset=utf-8"
Handler = Callable[[BaseHTTPRequestHandler], None]


def _headers(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str]) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()


def _write_all(handler: BaseHTTPRequestHandler, pieces: Iterator[bytes], chunked: bool = False) -> None:
    """Write pieces until done or the client hangs up; never raises."""
    try:
        for piece in pieces:
            if chunked:
                handler.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            else:
                handler.wfile.write(piece)
        if chunked:
            handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
    except (OSError, ValueError):
        pass  # the fetcher hung up (as it should), or the server is shutting down
    handler.close_connection = True


# ---- huge bodies ------------------------------------------------------------------------------


def _repeat(block: bytes, total: int) -> Iterator[bytes]:
    view = memoryview(block)
    sent = 0
    while sent < total:
        piece = view[: min(len(block), total - sent)]
        sent += len(piece)
        yield piece


def huge_body(total: int = GIB, framing: str = "length", content_type: str = HTML) -> Handler:
    """`total` bytes of "aaaa...", streamed from one 64 KiB buffer.

    framing: "length" (Content-Length: total), "close" (no length: the body ends when the
    connection closes) or "chunked" (Transfer-Encoding: chunked).
    """
    block = b"<p>" + b"a" * (64 * KIB - 3)

    def handler(request: BaseHTTPRequestHandler) -> None:
        headers = {"Content-Type": content_type}
        if framing == "length":
            headers["Content-Length"] = str(total)
        elif framing == "chunked":
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers["Connection"] = "close"
        _headers(request, 200, headers)
        _write_all(request, _repeat(block, total), chunked=framing == "chunked")

    return handler


# ---- compression bombs --------------------------------------------------------------------------


@dataclass(frozen=True)
class DeflateBomb:
    """A valid compressed stream of `mib` MiB of zeros: head + block * (mib - 1) + tail.

    wbits: 31 for gzip, 15 for zlib ("deflate"). After a full flush, deflating 1 MiB of
    zeros gives the same bytes every time, so one ~1 KiB block stands for each MiB.
    """

    head: bytes
    block: bytes
    tail: bytes
    mib: int

    @classmethod
    def of_zeros(cls, mib: int, wbits: int = 31) -> "DeflateBomb":
        zeros = bytes(MIB)
        compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
        head = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
        block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
        again = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
        assert block == again, "deflating zeros after a full flush is expected to repeat"
        final_empty_block = b"\x03\x00"  # BFINAL=1, fixed Huffman, end-of-block
        size = mib * MIB
        if wbits == 31:  # gzip trailer: CRC-32 and length, little-endian
            trailer = crc32_of_zeros(size).to_bytes(4, "little") + (size % 2**32).to_bytes(4, "little")
        else:  # zlib trailer: Adler-32, big-endian
            trailer = ((size % 65521) << 16 | 1).to_bytes(4, "big")
        return cls(head, block, final_empty_block + trailer, mib)

    @property
    def compressed_size(self) -> int:
        return len(self.head) + len(self.block) * (self.mib - 1) + len(self.tail)

    @property
    def decoded_size(self) -> int:
        return self.mib * MIB

    def pieces(self) -> Iterator[bytes]:
        yield self.head
        batch = self.block * 64  # 64 blocks per write: few syscalls, ~64 KiB in hand
        left = self.mib - 1
        while left > 0:
            count = min(64, left)
            yield batch if count == 64 else self.block * count
            left -= count
        yield self.tail


def _gf2_times(matrix: list[int], vector: int) -> int:
    total, i = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, row) for row in matrix]


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """zlib's crc32_combine: the CRC-32 of A+B from crc(A), crc(B) and len(B)."""
    odd = [0xEDB88320] + [1 << n for n in range(31)]  # one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while len2:
        even = _gf2_square(odd)
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
    return crc1 ^ crc2


def crc32_of_zeros(size: int) -> int:
    """CRC-32 of `size` zero bytes without touching them: combine by doubling."""
    crc, chunk_crc, chunk = 0, zlib.crc32(bytes(1)), 1
    done = 0
    while size:
        if size & 1:
            crc = crc32_combine(crc, chunk_crc, chunk) if done else chunk_crc
            done += chunk
        chunk_crc = crc32_combine(chunk_crc, chunk_crc, chunk)
        chunk *= 2
        size >>= 1
    return crc


def bomb(bomb_: DeflateBomb, encoding: str = "gzip", with_length: bool = False) -> Handler:
    """Serve a deflate bomb as Content-Encoding `encoding`; with or without Content-Length."""

    def handler(request: BaseHTTPRequestHandler) -> None:
        headers = {"Content-Type": HTML, "Content-Encoding": encoding}
        if with_length:
            headers["Content-Length"] = str(bomb_.compressed_size)
        else:
            headers["Connection"] = "close"
        _headers(request, 200, headers)
        _write_all(request, bomb_.pieces())

    return handler


def double_gzip_bomb(inner: DeflateBomb) -> bytes:
    """gzip(gzip bomb): served with Content-Encoding "gzip, gzip". The inner stream is made of
    repeated blocks, so the outer layer squeezes it again; the whole thing is a few KiB."""
    outer = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [outer.compress(piece) for piece in inner.pieces()]
    out.append(outer.flush())
    return b"".join(out)


def static(body: bytes, headers: dict[str, str], status: int = 200) -> Handler:
    def handler(request: BaseHTTPRequestHandler) -> None:
        _headers(request, status, {**headers, "Content-Length": str(len(body))})
        _write_all(request, iter([body]))

    return handler


# ---- slow servers -------------------------------------------------------------------------------


def drip(where: str = "body", seconds: float = 60, with_length: bool = False) -> Handler:
    """One byte a second for `seconds`: of the body (where="body") or of the status line and
    headers themselves (where="headers"). Each byte resets a socket read timeout."""

    def handler(request: BaseHTTPRequestHandler) -> None:
        def bytes_slowly(data: bytes) -> Iterator[bytes]:
            for i in range(min(len(data), int(seconds))):
                yield data[i:i + 1]
                request.wfile.flush()
                time.sleep(1)

        if where == "headers":
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n" + b"X-Drip: " + b"d" * 200 + b"\r\n\r\n"
            _write_all(request, bytes_slowly(head))
            return
        headers = {"Content-Type": HTML}
        if with_length:
            headers["Content-Length"] = str(int(seconds) + 100)
        else:
            headers["Connection"] = "close"
        _headers(request, 200, headers)
        request.wfile.flush()
        _write_all(request, bytes_slowly(b"<" * int(seconds)))

    return handler


def redirect(location: str, status: int = 302) -> Handler:
    return static(b"", {"Location": location, "Content-Type": "text/plain"}, status)


# ---- the sentinel ---------------------------------------------------------------------------------


class Sentinel:
    """A plain TCP listener on 127.0.0.1 that accepts, counts and drops connections.

    Forbidden redirect targets point at it: any connection it sees is an SSRF that got through.
    """

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.connections: list[tuple[str, int]] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="sentinel", daemon=True)

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    @property
    def count(self) -> int:
        return len(self.connections)

    def start(self) -> "Sentinel":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)
        self._socket.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, peer = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(peer[:2])
            conn.close()


# ---- /proc probes -----------------------------------------------------------------------------------


def status_kib(pid: int, field_name: str) -> int | None:
    """A `kB` field of /proc/<pid>/status (VmHWM: peak RSS, VmRSS: RSS now), or None when gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def children(pid: int) -> list[int]:
    """Direct children of pid, from /proc/<pid>/task/*/children (a scan of ppids when absent)."""
    found: list[int] = []
    tasks = Path(f"/proc/{pid}/task")
    try:
        files = list(tasks.glob("*/children"))
    except OSError:
        return []
    if files:
        for path in files:
            try:
                found.extend(int(child) for child in path.read_text().split())
            except (OSError, ValueError):
                continue
        return found
    for entry in Path("/proc").iterdir():  # kernels without CONFIG_PROC_CHILDREN
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def process_tree(root: int) -> list[int]:
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children(pid))
    return tree


def address_space_limit(pid: int) -> tuple[str, str]:
    """(soft, hard) "Max address space" from /proc/<pid>/limits, in bytes or "unlimited"."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max address space"):
            soft, hard = line[len("Max address space"):].split()[:2]
            return soft, hard
    raise AssertionError(f"no 'Max address space' line in /proc/{pid}/limits")


@dataclass
class Peak:
    pid: int
    cmdline: str
    hwm_kib: int = 0  # the largest VmHWM seen
    rss_kib: int = 0  # the largest VmRSS seen
    first_seen: float = 0.0


@dataclass
class MemorySampler:
    """Polls VmHWM/VmRSS of a process tree (the worker pool, its workers and work-horses)."""

    root: int
    interval: float = 0.02
    peaks: dict[int, Peak] = field(default_factory=dict)
    limits: dict[int, tuple[str, str]] = field(default_factory=dict)  # RLIMIT_AS of each process seen
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> "MemorySampler":
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        self.samples += 1
        for pid in process_tree(self.root):
            hwm, rss = status_kib(pid, "VmHWM"), status_kib(pid, "VmRSS")
            if hwm is None or rss is None:
                continue  # gone, or a zombie
            peak = self.peaks.get(pid)
            if peak is None:
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    cmdline = "?"
                peak = self.peaks[pid] = Peak(pid, cmdline.strip()[:80], first_seen=time.time())
                try:
                    self.limits[pid] = address_space_limit(pid)
                except (OSError, AssertionError):
                    pass  # gone already
            peak.hwm_kib = max(peak.hwm_kib, hwm)
            peak.rss_kib = max(peak.rss_kib, rss)

    @property
    def max_hwm_kib(self) -> int:
        return max((peak.hwm_kib for peak in self.peaks.values()), default=0)
