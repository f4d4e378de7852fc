"""Every setting, read from the environment (and an optional .env) in one place.

load_settings() validates everything up front; a bad value raises ConfigError with one
line that names the variable, and the entry points print that line and exit.

Secrets may come from files (Docker/compose secrets, Kubernetes): RQSTATUS_PASSWORD_FILE,
API_TOKENS_FILE and CALLBACK_SECRET_FILE name a file holding the value instead of the
variable itself; REDIS_PASSWORD_FILE holds the Redis password, which is put into REDIS_URL
here, percent-encoded, so any character (@ : / # %) works.
"""
from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from dotenv import dotenv_values
from limits import parse_many

from errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent
MIB = 1024 * 1024
# curl --connect-to syntax: HOST:PORT:CONNECT_ADDR:CONNECT_PORT ([v6] addresses in brackets).
CONNECT_TO_ITEM = re.compile(r"^(?P<host>[^:\s]+):(?P<port>\d+):(?P<addr>\[[0-9a-fA-F:.]+\]|[^:\s]+):(?P<cport>\d+)$")
REDIS_SCHEMES = ("redis", "rediss", "unix")
# `make run` starts an embedded Redis and sets REDIS_URL; anything else started by hand uses this.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})  # the Host names a loopback service answers
HOST_NAME = re.compile(r"^[a-z0-9._-]{1,253}$")  # a DNS name or an IPv4 address


@dataclass(frozen=True)
class Settings:
    redis_url: str
    port: int = 8000
    bind: str = "127.0.0.1"
    workers: int = 2
    worker_nice: int = 10  # the API's latency first: workers yield the CPU to web (README, Performance)
    web_workers: int = 2  # gunicorn processes, one per core: chosen by bench/api_bench.py (README, Performance)
    web_connections: int = 1000  # connections each gunicorn process serves at once (gevent greenlets)
    request_read_timeout: float = 10.0  # a request's line, headers and body must arrive within this; else 408
    max_connections_per_address: int = 64  # open connections one client address may hold; 0: no bound
    allowed_hosts: frozenset[str] = LOOPBACK_NAMES  # Host header names answered; empty: any
    rqstatus_user: str | None = None
    rqstatus_password: str | None = None
    api_tokens: frozenset[str] = frozenset()
    allow_any_site: bool = False
    fetch_connect_to: Mapping[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    fetch_ca_bundle: str | None = None
    max_body_bytes: int = 5 * MIB
    fetch_deadline: float = 20.0
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    max_redirects: int = 5
    fetch_host_concurrency: int = 2  # fetches in flight to one host, across all workers
    fetch_host_delay: float = 1.0  # seconds between request starts to one host; 0: no spacing
    fetch_host_delays: Mapping[str, float] = field(default_factory=dict)  # per-host FETCH_HOST_DELAY
    fetch_host_delay_max: float = 60.0  # cap of a host's delay, however Crawl-delay or slow answers raise it
    robots_txt: bool = True
    robots_cache_seconds: int = 3600
    max_urls_per_request: int = 500
    max_request_bytes: int = 64 * 1024
    job_timeout: int = 60
    fetch_retries: int = 3
    record_retention: int = 30 * 86400
    user_agent: str = "metaparse/1.0 (+metadata parser service)"
    log_level: str = "INFO"
    log_format: str = "auto"  # json (one object per line), text (for people), auto: text on a terminal
    callback_secret: str | None = None
    news_recrawl_interval: int = 900
    news_recrawl_for: int = 7 * 86400
    snapshots_kept: int = 20
    tick_seconds: int = 5
    data_dir: Path = PROJECT_ROOT / "var"
    rate_limits: bool = True  # per-client limits in Redis (web/ratelimit.py)
    rate_limit_write: str = "60/minute"  # POST /parse and /parseGoodreadsLinks, per client
    rate_limit_read: str = "600/minute"  # GET endpoints, per client
    trusted_proxies: int = 0  # reverse proxies in front that set X-Forwarded-For/-Proto
    cors_origins: frozenset[str] = frozenset()  # web origins whose pages may call the API (web/cors.py); none: off
    worker_execution: str = "inprocess"  # inprocess: a worker runs its jobs itself; fork: a work-horse per job
    worker_max_jobs: int = 1000  # an in-process worker is replaced after this many jobs; 0: never
    worker_max_rss_mib: int = 150  # ...or once its resident memory is above this, between jobs; 0: never
    metrics_port: int = 0  # a worker serves its own /metrics on this port (compose); 0: none (web's has all)
    metrics_bind: str = "127.0.0.1"  # ...on this address

    @property
    def listens_beyond_loopback(self) -> bool:
        return not is_loopback(self.bind)


def is_loopback(bind: str) -> bool:
    """localhost, or a loopback address of either family (127.0.0.0/8, ::1, ::ffff:127.x)."""
    if bind == "localhost":
        return True
    try:
        address = ipaddress.ip_address(bind.strip("[]"))
    except ValueError:
        return False  # a host name: whatever it resolves to, treat it as reachable from beyond
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from environ (default: os.environ over ./.env); ConfigError on a bad value."""
    env = _environment() if environ is None else environ
    reader = _Reader(env)
    bind = reader.text("BIND", "127.0.0.1")
    settings = Settings(
        redis_url=reader.redis_url("REDIS_URL", DEFAULT_REDIS_URL),
        port=reader.integer("PORT", 8000, 1, 65535),
        bind=bind,
        # Loopback only answers loopback names (a DNS-rebinding page cannot reach it); beyond
        # it the names people use are not known here: any, unless ALLOWED_HOSTS lists them.
        allowed_hosts=reader.host_names("ALLOWED_HOSTS", LOOPBACK_NAMES if is_loopback(bind) else frozenset()),
        workers=reader.integer("WORKERS", 2, 1, 64),
        worker_nice=reader.integer("WORKER_NICE", 10, 0, 19),
        web_workers=reader.integer("WEB_WORKERS", 2, 1, 64),
        web_connections=reader.integer("WEB_CONNECTIONS", 1000, 10, 100_000),
        request_read_timeout=reader.number("REQUEST_READ_TIMEOUT", 10.0, 0.5, 300),
        max_connections_per_address=reader.integer("MAX_CONNECTIONS_PER_ADDRESS", 64, 0, 100_000),
        rqstatus_user=reader.optional("RQSTATUS_USER"),
        rqstatus_password=reader.secret("RQSTATUS_PASSWORD"),
        api_tokens=frozenset(t.strip() for t in (reader.secret("API_TOKENS") or "").split(",") if t.strip()),
        allow_any_site=reader.boolean("ALLOW_ANY_SITE", False),
        fetch_connect_to=reader.connect_to("FETCH_CONNECT_TO"),
        fetch_ca_bundle=reader.existing_file("FETCH_CA_BUNDLE"),
        max_body_bytes=reader.integer("MAX_BODY_BYTES", 5 * MIB, 1024, 512 * MIB),
        fetch_deadline=reader.number("FETCH_DEADLINE", 20.0, 0.1, 600),
        connect_timeout=reader.number("FETCH_CONNECT_TIMEOUT", 5.0, 0.1, 120),
        read_timeout=reader.number("FETCH_READ_TIMEOUT", 10.0, 0.1, 600),
        max_redirects=reader.integer("FETCH_MAX_REDIRECTS", 5, 0, 30),
        fetch_host_concurrency=reader.integer("FETCH_HOST_CONCURRENCY", 2, 1, 64),
        fetch_host_delay=reader.number("FETCH_HOST_DELAY", 1.0, 0, 60),
        fetch_host_delays=reader.host_delays("FETCH_HOST_DELAYS"),
        fetch_host_delay_max=reader.number("FETCH_HOST_DELAY_MAX", 60.0, 0, 3600),
        robots_txt=reader.boolean("ROBOTS_TXT", True),
        robots_cache_seconds=reader.integer("ROBOTS_CACHE_SECONDS", 3600, 1, 86400),  # RFC 9309: a day at most
        max_urls_per_request=reader.integer("MAX_URLS_PER_REQUEST", 500, 1, 100_000),
        max_request_bytes=reader.integer("MAX_REQUEST_BYTES", 64 * 1024, 1024, 64 * MIB),
        job_timeout=reader.integer("JOB_TIMEOUT", 60, 5, 3600),
        fetch_retries=reader.integer("FETCH_RETRIES", 3, 0, 20),
        record_retention=reader.integer("RECORD_RETENTION", 30 * 86400, 60, 10 * 365 * 86400),
        user_agent=reader.text("USER_AGENT", Settings.user_agent),
        log_level=reader.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        log_format=reader.choice("LOG_FORMAT", "AUTO", ("AUTO", "JSON", "TEXT")).lower(),
        callback_secret=reader.secret("CALLBACK_SECRET"),
        news_recrawl_interval=reader.integer("NEWS_RECRAWL_INTERVAL", 900, 60, 7 * 86400),
        news_recrawl_for=reader.integer("NEWS_RECRAWL_FOR", 7 * 86400, 0, 365 * 86400),
        snapshots_kept=reader.integer("SNAPSHOTS_KEPT", 20, 1, 1000),
        tick_seconds=reader.integer("TICK_SECONDS", 5, 1, 300),
        data_dir=Path(reader.text("DATA_DIR", str(PROJECT_ROOT / "var"))).resolve(),
        rate_limits=reader.boolean("RATE_LIMITS", True),
        rate_limit_write=reader.rate_limit("RATE_LIMIT_WRITE", Settings.rate_limit_write),
        rate_limit_read=reader.rate_limit("RATE_LIMIT_READ", Settings.rate_limit_read),
        trusted_proxies=reader.integer("TRUSTED_PROXIES", 0, 0, 10),
        cors_origins=reader.origins("CORS_ORIGINS"),
        worker_execution=reader.choice("WORKER_EXECUTION", "INPROCESS", ("INPROCESS", "FORK")).lower(),
        worker_max_jobs=reader.integer("WORKER_MAX_JOBS", 1000, 0, 10_000_000),
        worker_max_rss_mib=reader.integer("WORKER_MAX_RSS_MIB", 150, 0, 1024 * 1024),
        metrics_port=reader.integer("METRICS_PORT", 0, 0, 65535),
        metrics_bind=reader.text("METRICS_BIND", "127.0.0.1"),
    )
    _check_consistency(settings)
    return settings


def load_settings_or_exit(environ: Mapping[str, str] | None = None) -> Settings:
    """load_settings for a process's entry point: a bad setting ends the process with one
    clear line (the process manager shows it), not a traceback."""
    try:
        return load_settings(environ)
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")


def _environment() -> dict[str, str]:
    dotenv = {k: v for k, v in dotenv_values(PROJECT_ROOT / ".env").items() if v is not None}
    return {**dotenv, **os.environ}


def _check_consistency(settings: Settings) -> None:
    if bool(settings.rqstatus_user) != bool(settings.rqstatus_password):
        raise ConfigError("RQSTATUS_USER and RQSTATUS_PASSWORD must be set together")
    if settings.listens_beyond_loopback and not settings.rqstatus_user:
        raise ConfigError(f"BIND={settings.bind} exposes /rqstatus: set RQSTATUS_USER and RQSTATUS_PASSWORD")
    if settings.fetch_deadline < settings.connect_timeout:
        raise ConfigError("FETCH_DEADLINE must be at least FETCH_CONNECT_TIMEOUT")
    if settings.job_timeout <= settings.fetch_deadline:
        raise ConfigError("JOB_TIMEOUT must be longer than FETCH_DEADLINE so a fetch can fail cleanly first")


def with_password(url: str, password: str) -> str:
    """url with password in its user part, percent-encoded (redis-py decodes it): a password
    holding @ : / # % would otherwise end the user part, the host or the path early."""
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def host_name(item: str) -> str | None:
    """A host name as ALLOWED_HOSTS keeps it and a Host header's name is compared with it:
    lower case, no brackets, an IPv6 address in its short form; None when item is not a
    host name (a port included: the name in a Host header never carries one)."""
    bare = item.lower()
    if bare.startswith("[") and bare.endswith("]"):
        bare = bare[1:-1]
    if ":" in bare:  # only an IPv6 address may hold one
        try:
            return str(ipaddress.IPv6Address(bare))
        except ValueError:
            return None
    return bare if HOST_NAME.match(bare) else None


def web_origin(item: str) -> str | None:
    """item as a browser serialises an origin (RFC 6454), or None when it is not one."""
    try:
        parts = urlsplit(item)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in ("http", "https") or not host or parts.username is not None or parts.password is not None \
            or parts.path not in ("", "/") or parts.query or parts.fragment or host_name(host) is None:
        return None
    host = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


class _Reader:
    """Typed reads of environment variables; each error names the variable and the rule."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def optional(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        return int(self._bounded(name, default, low, high, int))

    def number(self, name: str, default: float, low: float, high: float) -> float:
        return float(self._bounded(name, default, low, high, float))

    def _bounded(self, name: str, default: float, low: float, high: float, kind: type) -> float:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = kind(raw)
        except ValueError:
            noun = "whole number" if kind is int else "number"
            raise ConfigError(f"{name}={raw!r} is not a {noun}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}={raw} is out of range ({low} to {high})")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = (self.optional(name) or str(default)).lower()
        if raw not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")
        return raw in ("1", "true", "yes", "on")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default).upper()
        if value not in choices:
            raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
        return value

    def redis_url(self, name: str, default: str) -> str:
        """name's URL, with the password of REDIS_PASSWORD_FILE put in when that is set."""
        url = self.text(name, default)
        if urlsplit(url).scheme not in REDIS_SCHEMES:
            raise ConfigError(f"{name} must start with redis://, rediss:// or unix://")
        password = self.file_text("REDIS_PASSWORD_FILE")
        if password is None:
            return url
        if urlsplit(url).password is not None:
            raise ConfigError(f"{name} has a password and REDIS_PASSWORD_FILE is set: give it in one place")
        return with_password(url, password)

    def secret(self, name: str) -> str | None:
        """name's value, or the contents of the file that name_FILE names; not both."""
        value, from_file = self.optional(name), self.file_text(f"{name}_FILE")
        if value is not None and from_file is not None:
            raise ConfigError(f"{name} and {name}_FILE are both set: give the secret in one place")
        return value if from_file is None else from_file

    def file_text(self, name: str) -> str | None:
        """The contents of the file name names, without its trailing line breaks (editors add one;
        the shell's $(cat file), which gives Redis its password in compose, drops them all too);
        None for an empty file, as for an unset variable (compose needs a file for every secret)."""
        path = self.optional(name)
        if path is None:
            return None
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{name}={path} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
        return text.rstrip("\r\n") or None  # an empty file: as if unset

    def existing_file(self, name: str) -> str | None:
        path = self.optional(name)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{name}={path} does not exist")
        return path

    def rate_limit(self, name: str, default: str) -> str:
        """A flask-limiter limit such as "60/minute" or "10/second;500/hour"."""
        value = self.text(name, default)
        try:
            items = parse_many(value)
        except ValueError:
            items = []
        if not items or any(item.amount < 1 for item in items):
            raise ConfigError(f"{name}={value!r} is not a rate limit (e.g. 60/minute or 10/second;500/hour)")
        return value

    def host_names(self, name: str, default: frozenset[str]) -> frozenset[str]:
        """Comma-separated host names, without ports (any case, IPv6 in brackets or not); "*": any (empty)."""
        value = self.optional(name)
        if value is None:
            return default
        items = [item.strip() for item in value.split(",") if item.strip()]
        if "*" in items:
            return frozenset()
        names = {host_name(item) for item in items}
        if not names or None in names:
            raise ConfigError(f"{name}={value!r} must list host names without ports "
                              "(e.g. metaparse.example.com,127.0.0.1,::1) or be *")
        return frozenset(names)

    def origins(self, name: str) -> frozenset[str]:
        """Comma-separated web origins, scheme://host[:port], as a browser's Origin header
        spells them (lower case, no default port, no path). Never "*": each origin is named."""
        origins = set()
        for item in filter(None, (i.strip() for i in self.text(name, "").split(","))):
            origin = web_origin(item)
            if origin is None:
                raise ConfigError(f"{name} item {item!r} is not an origin such as https://app.example.com "
                                  "(scheme and host, an optional port, no path; * is not allowed: list each origin)")
            origins.add(origin)
        return frozenset(origins)

    def host_delays(self, name: str) -> dict[str, float]:
        """HOST=SECONDS items, comma-separated: e.g. www.goodreads.com=2,example.org=0.5."""
        delays = {}
        for item in filter(None, (i.strip() for i in self.text(name, "").split(","))):
            host, _, seconds = item.partition("=")
            try:
                delay = float(seconds)
            except ValueError:
                delay = -1.0
            if host_name(host.strip()) is None or not 0 <= delay <= 3600:
                raise ConfigError(f"{name} item {item!r} is not HOST=SECONDS (0 to 3600)")
            delays[host_name(host.strip())] = delay
        return delays

    def connect_to(self, name: str) -> dict[tuple[str, int], tuple[str, int]]:
        mapping = {}
        for item in filter(None, (i.strip() for i in self.text(name, "").split(","))):
            match = CONNECT_TO_ITEM.match(item)
            if match is None:
                raise ConfigError(f"{name} item {item!r} is not HOST:PORT:ADDRESS:PORT")
            port, connect_port = int(match["port"]), int(match["cport"])
            if not (0 < port < 65536 and 0 < connect_port < 65536):
                raise ConfigError(f"{name} item {item!r} has a port outside 1-65535")
            mapping[(match["host"].lower(), port)] = (match["addr"].strip("[]"), connect_port)
        return mapping
