"""gunicorn settings, derived from config.py so every setting has one home."""
import socket
import sys
import warnings

from gevent.monkey import MonkeyPatchWarning
from gunicorn.glogging import Logger

import logs
import metrics
from config import load_settings_or_exit

_settings = load_settings_or_exit()
logs.configure_logging(_settings.log_level, _settings.log_format)  # the app's own lines (workers inherit it)
metrics.setup_multiprocess_dir(_settings.data_dir)  # before the workers fork, so they share it

_host = f"[{_settings.bind}]" if ":" in _settings.bind else _settings.bind
bind = f"{_host}:{_settings.port}"
workers = _settings.web_workers
worker_connections = _settings.web_connections
# gevent's worker with deadlines, per-address bounds and JSON errors: why, in web/edge.py.
worker_class = "web.edge.EdgeWorker"
# gunicorn's master imports ssl (gunicorn.sock) before a worker can patch it, so gevent warns
# in every worker. The web process makes TLS connections only to Redis (rediss://), through
# redis-py, which the worker imports after the patch (tests/test_redis_tls.py).
warnings.filterwarnings("ignore", message="Monkey-patching ssl after ssl has already been imported",
                        category=MonkeyPatchWarning)
# Each worker listens on its own SO_REUSEPORT socket and the kernel spreads new connections
# over them. On one shared socket a busy worker tends to win every accept: keep-alive
# clients then all sit on one process, held to one core by its GIL (bench/api_bench.py
# measured 0.88 / 0.02 cores on the two workers; with reuse_port 0.47 / 0.52).
reuse_port = True
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()
# gunicorn 25+ opens a control socket for gunicornc at one path per user ($HOME/.gunicorn):
# unused here, and every gunicorn of the user (two `make run`s, tests) would take it in turn.
control_socket_disable = True


class EscapingLogger(Logger):
    """gunicorn's logger, with every value of an access line escaped (logs.escaped): the
    Basic-auth user name is base64 on the wire, so it can hold a newline and forge a line."""

    def info(self, msg, *args, **kwargs) -> None:
        # With reuse_port the master opens no socket (each worker opens its own), so gunicorn's
        # "Listening at: %s (%s)" names none: name the address the workers listen on.
        if msg.startswith("Listening at:") and args and not args[0]:
            args = (f"http://{bind}", *args[1:])
        super().info(msg, *args, **kwargs)

    def atoms(self, resp, req, environ, request_time) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        return {name: logs.escaped(value, backslashes=True) if isinstance(value, str) else value
                for name, value in atoms.items()}


logger_class = EscapingLogger


def on_starting(server):  # gunicorn hook, in the master, before it listens
    # With reuse_port a second server on our port would bind too and silently take a share of
    # the connections (a stale `make run`, say). A plain bind first makes a taken port an error.
    family = socket.AF_INET6 if ":" in _settings.bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are fine
        try:
            probe.bind((_settings.bind, _settings.port))
        except OSError as exc:
            sys.exit(f"cannot listen on {bind}: {exc.strerror} (is another server running there?)")


def child_exit(server, worker):  # gunicorn hook, in the master
    metrics.mark_process_dead(worker.pid)
