"""gunicorn settings, derived from config.py so every setting has one home."""
import sys

from config import load_settings
from errors import ConfigError

try:
    _settings = load_settings()
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")

_host = f"[{_settings.bind}]" if ":" in _settings.bind else _settings.bind
bind = f"{_host}:{_settings.port}"
workers = _settings.web_workers
threads = _settings.web_threads
worker_class = "gthread"  # the API waits on Redis, not the CPU: threads serve it cheaply
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()
