"""Real service processes for end-to-end tests: start, wait for HTTP, stop, find leftovers."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from config import PROJECT_ROOT

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
