"""Real service processes for end-to-end tests: start, wait for HTTP, stop, find leftovers."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from config import PROJECT_ROOT
from launch import free_port
from tests.support.redis_server import RedisServer

VENV_BIN = Path(sys.executable).parent


def service_env(**overrides: str) -> dict[str, str]:
    """The environment of a test's service processes; each gets its own DATA_DIR unless given,
    so no state (embedded Redis data, the accepted-URL journal) is shared between tests."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["DATA_DIR"] = tempfile.mkdtemp(prefix="metaparse-data-")
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def start(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """A process in its own group (so the whole tree can be signalled), output to log_path."""
    log = open(log_path, "wb")
    return subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for_http(url: str, process: subprocess.Popen, log_path: Path, seconds: float = 60,
                  ok: tuple[int, ...] = (200,)) -> requests.Response:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited ({process.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            response = requests.get(url, timeout=2)
            if response.status_code in ok:
                return response
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready in {seconds} s:\n{log_path.read_text()[-3000:]}")


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, seconds: float = 30) -> int:
    """Signal the process group, wait, and kill whatever is left."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    try:
        return process.wait(seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise AssertionError(f"process {process.args} did not stop within {seconds} s")


def processes_with_marker(marker: str) -> list[int]:
    """Pids whose environment carries marker: leftovers of a test's process tree."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes() and _alive(entry):
                found.append(int(entry.name))
        except OSError:
            continue  # gone already, or not ours
    return found


def _alive(entry: Path) -> bool:
    status = (entry / "status").read_text()
    return "\nState:\tZ" not in status


def wait_until_gone(marker: str, seconds: float = 20) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = processes_with_marker(marker)
        if not left:
            return []
        time.sleep(0.2)
    return processes_with_marker(marker)


# ---- the whole service: gunicorn + `python -m jobs.worker`, as the Procfile runs them ---------

WEB_COMMAND = ["gunicorn", "--config", "gunicorn.conf.py", "server:create_app()"]
WORKER_COMMAND = [str(VENV_BIN / "python"), "-m", "jobs.worker"]


@dataclass
class Web:
    """gunicorn alone, as the Procfile's web line runs it (no worker)."""

    port: int
    process: subprocess.Popen
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop(self.process)


@contextmanager
def web_on_own_redis(folder: Path, **env: str) -> Iterator[tuple[Web, RedisServer]]:
    """gunicorn on a redis-server of its own, which the caller may stop (SIGSTOP: hung) or
    kill; it is resumed and stopped afterwards."""
    redis = RedisServer(appendonly=False, data_dir=folder).start()
    try:
        web = start_web(service_env(REDIS_URL=redis.url, **env), folder / "web.log")
        try:
            yield web, redis
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
            web.stop()
    finally:
        redis.stop()


def start_web(env: dict[str, str], log_path: Path) -> Web:
    """gunicorn with env (from service_env()) on a free port, once /healthz answers (200:
    "degraded" without a worker)."""
    port = free_port()
    process = start(WEB_COMMAND, {"WEB_WORKERS": "1", **env, "PORT": str(port)}, log_path)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process, log_path)
    except BaseException:
        stop(process)
        raise
    return Web(port, process, log_path)


@dataclass
class Service:
    """A running web + worker pair; stop() signals both, waits, and checks nothing is left."""

    base: str  # http://127.0.0.1:PORT
    env: dict[str, str]  # the environment the web process runs with (PORT, WORKERS, marker included)
    worker_env: dict[str, str]  # the worker's: env plus the caller's worker-only additions
    logs: Path  # web.log and worker.log
    web: subprocess.Popen
    worker: subprocess.Popen
    marker: str  # an environment variable only this service's processes carry

    @property
    def web_log(self) -> Path:
        return self.logs / "web.log"

    @property
    def worker_log(self) -> Path:
        return self.logs / "worker.log"

    def log_tails(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}" for path in (self.web_log, self.worker_log))

    def stop_processes(self) -> None:
        for process in (self.web, self.worker):
            stop(process)

    def assert_none_left(self) -> None:
        assert wait_until_gone(self.marker) == [], "processes left behind after SIGTERM"

    def stop(self) -> None:
        self.stop_processes()
        self.assert_none_left()


def start_service(env: dict[str, str], logs_dir: Path, workers: int = 1, name: str = "SERVICE",
                  worker_env: dict[str, str] | None = None,
                  on_web_ready: Callable[[str], None] | None = None) -> Service:
    """Start gunicorn and `python -m jobs.worker` on a free port with env (from service_env()),
    wait for /healthz and for `workers` registered workers; logs go to logs_dir.

    Adds PORT, WORKERS, WEB_WORKERS (1 unless env has it) and a marker variable
    METAPARSE_<name>_<hex> that finds leftover processes; worker_env is added for the worker
    only. on_web_ready(base) runs once /healthz answers, before waiting for workers.
    If the service does not come up, both processes are stopped before the error propagates.
    """
    port, marker = free_port(), f"METAPARSE_{name}_{uuid.uuid4().hex}"
    env = {"WEB_WORKERS": "1", **env, "PORT": str(port), "WORKERS": str(workers), marker: "1"}
    full_worker_env = {**env, **(worker_env or {})}
    web = start(WEB_COMMAND, env, logs_dir / "web.log")
    worker = start(WORKER_COMMAND, full_worker_env, logs_dir / "worker.log")
    service = Service(f"http://127.0.0.1:{port}", env, full_worker_env, logs_dir, web, worker, marker)
    try:
        wait_for_http(f"{service.base}/healthz", web, service.web_log)
        if on_web_ready is not None:
            on_web_ready(service.base)
        wait_for_workers(service.base, worker, service.worker_log, workers)
    except BaseException:
        service.stop_processes()
        raise
    return service


def wait_for_workers(base: str, worker: subprocess.Popen, log_path: Path, count: int = 1,
                     seconds: float = 60) -> None:
    """Until /healthz counts `count` registered workers; fails early if the worker process exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if requests.get(f"{base}/healthz", timeout=5).json()["workers"] >= count:
            return
        assert worker.poll() is None, log_path.read_text()[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"{count} worker(s) not registered in {seconds} s:\n" + log_path.read_text()[-3000:])


def wait_for_record(base: str, url: str, seconds: float = 60, poll: float = 0.2) -> dict:
    """GET /info until it answers 200 (a done or failed record); that record. Anything but a
    202 meanwhile fails at once, with the answer."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        response = requests.get(f"{base}/info", params={"url": url}, timeout=5)
        if response.status_code == 200:
            return response.json()
        assert response.status_code == 202, response.text
        time.sleep(poll)
    raise AssertionError(f"no record for {url} within {seconds} s")


def wait_for_batch(base: str, batch_id: str, seconds: float = 90, poll: float = 0.2) -> dict:
    """GET /batches/<id> until it says finished; its summary then."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        summary = requests.get(f"{base}/batches/{batch_id}", timeout=5).json()
        if summary["finished"]:
            return summary
        time.sleep(poll)
    raise AssertionError(f"batch {batch_id} not finished in {seconds} s: {summary['counts']}")
