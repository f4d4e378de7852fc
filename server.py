"""create_app(config=None): the Flask app with the API, JSON errors and the /rqstatus dashboard.

gunicorn serves `server:create_app()`; `flask --app server parse-file PAGE --url URL [--explain]`
parses a saved page and prints its data as JSON (with --explain, where each field came from).
"""
from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import click
from flask import Flask, current_app, jsonify, request
from flask.json.provider import DefaultJSONProvider
from redis import Redis
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

import metrics
import parsers
from config import Settings, host_name, load_settings
from errors import REDIS_UNAVAILABLE, ApiError, ParseError, body_too_large, error_body
from jsontext import escape_lone_surrogates
from web import cors, ratelimit, scrape
from web.api import api
from web.apidocs import apidocs
from web.control import control
from web.dashboard import mount_dashboard
from web.page import webpage
from web.records import records
from web.seed import seed

log = logging.getLogger(__name__)
REDIS_RETRY_AFTER = "5"
HEALTH_ENDPOINT = "api.healthz"
# A hung Redis (stopped, or a network that drops packets) must turn into a 503 quickly: one
# command waits at most this long, and a request makes at most one such wait (web/ratelimit.py).
REDIS_TIMEOUT = 1.0


def create_app(config: Settings | Mapping[str, str] | None = None) -> Flask:
    settings = config if isinstance(config, Settings) else load_settings(config)
    app = Flask(__name__)
    app.config["SETTINGS"] = settings
    app.config["REDIS"] = connect_redis(settings.redis_url)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json = Utf8JsonProvider(app)  # UTF-8 with non-ASCII as is (jsontext.py)
    app.before_request(refuse_undecodable_query)
    app.register_blueprint(api)
    app.register_blueprint(records)
    app.register_blueprint(seed)
    app.register_blueprint(control)  # cancel, delete, list batches
    app.register_blueprint(apidocs)
    app.register_blueprint(webpage)
    mount_dashboard(app, settings)
    register_error_handlers(app)
    metrics.init_app(app)
    scrape.init_app(app)
    ratelimit.init_app(app, settings)  # per-client limits in Redis; TRUSTED_PROXIES
    cors.init_app(app, settings)  # after the limiter: its headers are there to expose
    app.before_request_funcs[None].insert(0, refuse_unknown_host)  # before every other hook, the gate's too
    app.cli.add_command(parse_file)
    return app


class Utf8JsonProvider(DefaultJSONProvider):
    """Flask's JSON (jsonify) in the service's spelling (jsontext.py): UTF-8, non-ASCII as is,
    lone surrogates escaped; keys in the order the code built them."""

    ensure_ascii = False
    sort_keys = False

    def dumps(self, obj: object, **kwargs: object) -> str:
        return escape_lone_surrogates(super().dumps(obj, **kwargs))


def connect_redis(url: str) -> Redis:
    """Short timeouts: an API call should fail fast with 503, not hang, when Redis is away."""
    return Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT,
                          health_check_interval=30)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, api_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(RedisError, redis_error)
    app.register_error_handler(Exception, internal_error)


def error_response(status: int, code: str, message: str, headers: dict | None = None):
    return jsonify(error_body(code, message)), status, headers or {}


def api_error(exc: ApiError):
    return error_response(exc.status, exc.code, exc.message, exc.headers)


def http_error(exc: HTTPException):
    code = (exc.name or "error").lower().replace(" ", "_")
    headers = dict(exc.get_headers()) if exc.code == 405 else {}
    headers.pop("Content-Type", None)
    if exc.code == 413:
        return api_error(body_too_large(current_app.config["MAX_CONTENT_LENGTH"], request.content_length))
    message = exc.description or exc.name
    if exc.code == 405 and "Allow" in headers:
        allowed = ", ".join(sorted(method.strip() for method in headers["Allow"].split(",")))
        message = f"{request.method} is not allowed here; allowed: {allowed}"
    return error_response(exc.code or 500, code, message, headers)


def redis_error(exc: RedisError):
    if isinstance(exc, REDIS_UNAVAILABLE):
        log.error("redis unavailable: %s", exc)
        return error_response(503, "redis_unavailable", "storage is unavailable; try again shortly",
                              {"Retry-After": REDIS_RETRY_AFTER})
    log.exception("redis command failed")
    return error_response(500, "storage_error", "a storage command failed; it has been logged")


def refuse_unknown_host() -> None:
    """400 for a Host the service does not answer to (ALLOWED_HOSTS). A web page whose name
    is made to resolve to 127.0.0.1 (DNS rebinding) is same-origin with its own name, so the
    browser lets it read the answers: only its Host header gives it away. GET /healthz
    answers any Host: health checks ask by address (compose's asks 127.0.0.1), and it tells
    a page nothing worth the trouble."""
    allowed = current_app.config["SETTINGS"].allowed_hosts
    if allowed and request.endpoint != HEALTH_ENDPOINT and host_header_name(request.host) not in allowed:
        raise ApiError(400, "host_not_allowed", f"this service does not answer to the host {request.host!r}: "
                                                "list its name in ALLOWED_HOSTS")


@functools.lru_cache(maxsize=256)
def host_header_name(host: str) -> str | None:
    """The name in a Host header, without its port, as config.host_name writes ALLOWED_HOSTS;
    None if malformed."""
    try:
        return host_name(urlsplit("//" + host).hostname or "")
    except ValueError:
        return None


def refuse_undecodable_query() -> None:
    """400 for raw non-UTF-8 bytes in the query string (gunicorn refuses them earlier; other
    servers pass them on), checked up front: a UnicodeDecodeError later, from bytes read
    out of Redis say, is the service's fault, not the request's."""
    try:
        request.query_string.decode()
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_encoding", "the query string is not valid UTF-8") from None


def internal_error(exc: Exception):
    log.exception("unhandled error")
    return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")


@click.command("parse-file")
@click.argument("page", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", required=True, help="The URL the page was saved from (picks the parser).")
@click.option("--content-type", default=None, help="The Content-Type header it was served with, if known.")
@click.option("--explain", is_flag=True, help="Add which data source and rule produced each field.")
def parse_file(page: Path, url: str, content_type: str | None, explain: bool) -> None:
    """Parse a saved PAGE as if fetched from URL and print the data as JSON."""
    try:
        data = parsers.parse(page.read_bytes(), url, content_type, explain=explain)
    except ParseError as exc:
        raise click.ClickException(f"not parsed: {exc}") from None
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))
