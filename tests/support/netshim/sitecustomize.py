"""Test-only network shim for worker processes (loaded via PYTHONPATH as `sitecustomize`).

Nothing happens unless METAPARSE_NETSHIM holds a JSON config; then, in this process and
every process forked from it (RQ workers, work-horses):

* socket.getaddrinfo answers chosen addresses for chosen host names, to simulate DNS
  answers that change between the SSRF guard's check and the connection:
    {"hosts": {"name": {"mode": "check_vs_connect", "check": "93.184.216.34", "other": "127.0.0.1"}}}
      the guard's own look-up (guard.resolve_public) gets `check`, any other look-up of the
      name (e.g. a library resolving again at connect time) gets `other`;
    {"mode": "sequence", "answers": ["93.184.216.34", "127.0.0.1"]}
      the n-th look-up in a process gets answers[n] (the last one from then on);
    {"mode": "static", "answer": "127.0.0.1"}
      always that address.
* socket.socket.connect / connect_ex go through a test network map, so a "public" address
  lands on a local fixture server and a forbidden one on a sentinel that counts connections:
    {"connect": {"93.184.216.34:443": "127.0.0.1:40001", "127.0.0.1:443": "127.0.0.1:40002"}}
  Nothing leaves the machine: a public address not in the map is refused here.
* every look-up of a configured name, every connect, every fork and every os._exit (with
  the process's VmHWM, its peak RSS, and its RLIMIT_AS) is appended as one JSON line to config["log"].
"""
from __future__ import annotations

import ipaddress
import json
import os
import resource
import socket
import sys
import threading
import time

_CONFIG = json.loads(os.environ.get("METAPARSE_NETSHIM") or "null")


def _log(event: str, **fields: object) -> None:
    line = json.dumps({"event": event, "pid": os.getpid(), "ppid": os.getppid(), "t": time.time(), **fields})
    fd = os.open(_CONFIG["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())  # one write per line: lines of processes do not mix
    finally:
        os.close(fd)


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _install() -> None:
    hosts = {name.lower(): rule for name, rule in _CONFIG.get("hosts", {}).items()}
    connect_map = _CONFIG.get("connect", {})
    counters: dict[tuple[int, str], int] = {}
    lock = threading.Lock()
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_exit = os._exit

    def answer_for(name: str, rule: dict) -> tuple[str, str]:
        mode = rule["mode"]
        if mode == "static":
            return rule["answer"], "static"
        if mode == "sequence":
            with lock:
                key = (os.getpid(), name)  # per process: a forked horse starts its own count
                n = counters.get(key, 0)
                counters[key] = n + 1
            answers = rule["answers"]
            return answers[min(n, len(answers) - 1)], f"lookup #{n + 1}"
        caller = sys._getframe(2)  # answer_for <- getaddrinfo <- the caller
        is_check = caller.f_code.co_name == "resolve_public" and caller.f_globals.get("__name__") == "guard"
        return (rule["check"], "guard check") if is_check else (rule["other"], f"other caller {caller.f_code.co_name}")

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002 (socket's names)
        name = host.decode() if isinstance(host, bytes) else host
        rule = hosts.get((name or "").lower().rstrip("."))
        if rule is None:
            return real_getaddrinfo(host, port, family, type, proto, flags)
        address, why = answer_for(name.lower().rstrip("."), rule)
        _log("lookup", host=name, port=port, answer=address, why=why)
        return real_getaddrinfo(address, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    def mapped(address: object) -> tuple[object, str | None]:
        if not (isinstance(address, tuple) and len(address) >= 2 and isinstance(address[0], str)):
            return address, None
        key = f"{address[0]}:{address[1]}"
        target = connect_map.get(key)
        if target is not None:
            host, _, port = target.rpartition(":")
            return (host, int(port)), target
        try:
            ip = ipaddress.ip_address(address[0].split("%")[0])
        except ValueError:
            return address, None
        if ip.is_global:  # the test network has no way out
            raise ConnectionRefusedError(f"netshim: {key} is outside the test network")
        return address, None

    def connect(self, address):  # type: ignore[no-untyped-def]
        target, via = mapped(address)
        _log("connect", target=list(address) if isinstance(address, tuple) else str(address), via=via)
        return real_connect(self, target)

    def connect_ex(self, address):  # type: ignore[no-untyped-def]
        target, via = mapped(address)
        _log("connect", target=list(address) if isinstance(address, tuple) else str(address), via=via)
        return real_connect_ex(self, target)

    def exit_(code):  # type: ignore[no-untyped-def]
        try:
            _log("exit", code=code, vmhwm_kib=_status_kib("VmHWM"), vmrss_kib=_status_kib("VmRSS"),
                 rlimit_as=list(resource.getrlimit(resource.RLIMIT_AS)))
        finally:
            real_exit(code)

    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    os._exit = exit_
    os.register_at_fork(after_in_child=lambda: _log("fork"))


if _CONFIG:
    _install()
