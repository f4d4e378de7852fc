"""rq-dashboard mounted at /rqstatus inside the service's own Flask app, hardened.

Each measure closes one way in:
- Auth: when RQSTATUS_USER/RQSTATUS_PASSWORD are set, every request that Flask routes to
  the dashboard (its rules and static files), and every request under /rqstatus that
  matches no rule (routing redirects, 404s), needs HTTP Basic auth. The gate is the first
  before_request hook and decides on what was routed, not on how the path was spelled:
  `//rqstatus/`, `/%2Frqstatus/` and `GET http://host//rqstatus/` all reach the dashboard's
  rules, so a check of the raw path would let them through. config.py refuses to listen
  beyond loopback without credentials. Wrong credentials are counted per client address in
  Redis: past AUTH_FAILURES the address gets 429 (whatever it sends) until the window has
  passed, so the password cannot be guessed at the speed of the network.
- No state change by GET or HEAD: a dashboard rule that accepts POST changes state
  (requeue, requeue all, delete, empty, compact) and answers 405 to a safe method
  (requeue_all also accepts GET upstream). Every other rule only reads. Emptying the
  started registry answers 409: its jobs are running, under leases (jobs/worker/timings.py).
- CSRF: browsers send cached Basic credentials along with any site's request, so a POST
  under /rqstatus needs `X-Requested-With: XMLHttpRequest`, which jQuery adds to the
  dashboard's own same-origin $.post calls, and must not be marked cross-site by
  Sec-Fetch-Site. An HTML form cannot set that header, and a script of another site
  cannot without a CORS preflight, which this app never grants. Else 403.
- Page text: descriptions, exception text (a ParseError quotes the fetched page's title),
  results and meta come from the web. rq-dashboard's job view, worker list and queue list
  put JSON fields into innerHTML unescaped (`<%= %>` underscore templates), so the JSON
  those views read is HTML-escaped here (ESCAPED_JSON_VIEWS). The job list escapes its own
  fields (jQuery .text().html()) and is left alone, else it would show `&lt;`.
- URL values: rq-dashboard puts the queue name of a jobs page raw into an inline script
  (scripts/jobs.js is not autoescaped), so names, registries and job ids in dashboard URLs
  must be plain (NAME) or the answer is 404: a crafted link cannot inject script.
- Content-Security-Policy on every /rqstatus response: scripts only from the dashboard's
  files and its inline script (by hash), no inline event handlers, so an injected
  `onerror=` runs nothing should escaping ever slip. 'unsafe-eval' because underscore's
  _.template compiles with new Function; style attributes are allowed (layout only).
- Redis: the dashboard uses the service's own client (REDIS_URL with its password and
  TLS, short timeouts) instead of the one rq-dashboard builds on every request, without
  timeouts; there is one instance, 0. The REDIS_URL it displays has no password or query.
- Reads: a job hash in Redis is data, never code. rq-dashboard builds some of its jobs,
  queues, registries and workers without a serializer (RQ's default is pickle: a forged
  `meta`, `data` or result would run code in the web process), so its rq names are bound
  to JSON-only classes (jobs/trust.py): every read uses JSON whatever the call site says,
  and a job whose fields are not JSON is shown as unreadable (its description says so), not loaded.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import time
from urllib.parse import urlsplit, urlunsplit

import rq_dashboard
from flask import Flask, Response, abort, current_app, jsonify, request
from limits import parse as parse_limit
from limits.storage import RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from markupsafe import escape
from redis import Redis
from rq import registry as rq_registries
from rq.exceptions import NoSuchJobError
from rq.serializers import JSONSerializer
from rq_dashboard import web as dashboard_web

from config import Settings
from errors import ApiError
from jobs.trust import JsonJob, JsonQueue, JsonWorker, json_registry, requeue_json_job
from storage import DASHBOARD_AUTH_FAILURES

URL_PREFIX = "/rqstatus"
BLUEPRINT = "rq_dashboard"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")  # queue names, job ids, orders
REGISTRIES = frozenset({"queued", "failed", "deferred", "started", "finished", "scheduled", "canceled"})
NUMBERS = frozenset({"page", "per_page"})  # rq-dashboard int()s these: a word would be a 500
# JSON views whose templates insert fields unescaped -> keys whose template escapes them itself.
ESCAPED_JSON_VIEWS = {
    f"{BLUEPRINT}.job_info": frozenset(),  # job.html: every field, into innerHTML
    f"{BLUEPRINT}.list_workers": frozenset({"description"}),  # workers.html escapes only this one
    f"{BLUEPRINT}.list_queues": frozenset(),  # queues.html: names and links
}
INLINE_SCRIPT = re.compile(r"<script(?P<attrs>[^>]*)>(?P<body>.*?)</script\s*>", re.S | re.I)
SCRIPT_TYPE = re.compile(r"""\btype\s*=\s*["']?(?P<type>[^"'\s>]+)""", re.I)
JS_TYPES = frozenset({"", "text/javascript", "application/javascript", "module"})
CSP = ("default-src 'none'; script-src 'self' 'unsafe-eval' {hashes}; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}
SLASH_RUNS = re.compile(r"/{2,}")  # Werkzeug's router merges them (merge_slashes)
AUTH_FAILURES = parse_limit("10/minute")  # wrong dashboard credentials per client address
REGISTRY_CLASSES = ("CanceledJobRegistry", "DeferredJobRegistry", "FailedJobRegistry", "FinishedJobRegistry",
                    "ScheduledJobRegistry", "StartedJobRegistry")


def mount_dashboard(app: Flask, settings: Settings) -> None:
    if settings.rqstatus_user:  # first: before any other hook sees a dashboard request
        gate = OperatorGate(settings.rqstatus_user, settings.rqstatus_password, app.config["REDIS"])
        app.before_request_funcs.setdefault(None, []).insert(0, gate)
    app.config.from_object(rq_dashboard.default_settings)
    app.config["RQ_DASHBOARD_REDIS_URL"] = settings.redis_url
    read_jobs_as_json()
    # rq-dashboard's own set-up (it builds a client we then replace); before the blueprint is used.
    dashboard_web.setup_rq_connection(app)
    app.config["RQ_DASHBOARD_REDIS_URL"] = (displayed_redis_url(settings.redis_url),)  # shown in its navbar
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=URL_PREFIX)
    use_service_redis(app)
    app.before_request(refuse_state_changing_get)
    app.before_request(refuse_cross_site_post)
    app.before_request(refuse_odd_url_values)
    app.before_request(refuse_emptying_started_jobs)
    app.after_request(secure_response)
    app.register_error_handler(NoSuchJobError, no_such_job)  # the job view fetches it unguarded: not a 500


def routed_to_dashboard() -> bool:
    """Whether Flask sends this request to the dashboard: by the rule it matched, whatever the
    spelling of the path; a request that matched no rule (a 404, a routing redirect) when its
    path, with slash runs merged as the router merges them, is under URL_PREFIX."""
    if request.url_rule is not None:
        return request.blueprint == BLUEPRINT
    return under_dashboard(SLASH_RUNS.sub("/", request.path))


def under_dashboard(path: str) -> bool:
    return path == URL_PREFIX or path.startswith(URL_PREFIX + "/")


# ---- reads: JSON only -------------------------------------------------------------------


def read_jobs_as_json() -> None:
    """Bind rq-dashboard's rq names to JSON-only classes (jobs/trust.py): some of its views
    build jobs, workers and registries without a serializer, which in RQ means pickle."""
    dashboard_web.config.serializer = JSONSerializer
    dashboard_web.Job = JsonJob
    dashboard_web.Queue = JsonQueue
    dashboard_web.Worker = JsonWorker
    dashboard_web.requeue_job = requeue_json_job
    for name in REGISTRY_CLASSES:
        setattr(dashboard_web, name, json_registry(getattr(rq_registries, name)))


# ---- Redis ------------------------------------------------------------------------------


def displayed_redis_url(url: str) -> str:
    """REDIS_URL without user, password or query (which may hold a password or file paths)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def use_service_redis(app: Flask) -> None:
    """Swap rq-dashboard's per-request connection hook for one that hands it our client."""
    app.redis_conn = app.config["REDIS"]
    hooks = app.before_request_funcs.get(BLUEPRINT, [])
    hooks[:] = [service_redis if hook is dashboard_web.push_rq_connection else hook for hook in hooks]


def service_redis() -> None:
    if (request.view_args or {}).get("instance_number", 0) != 0:
        abort(404)  # rq-dashboard can list several Redis instances; this service has one
    current_app.redis_conn = current_app.config["REDIS"]


# ---- requests ---------------------------------------------------------------------------


def refuse_state_changing_get() -> None:
    """GET/HEAD on a rule that also takes POST (a state-changing one) answers 405."""
    rule = request.url_rule
    if request.blueprint == BLUEPRINT and request.method in ("GET", "HEAD") and rule is not None \
            and rule.methods - SAFE_METHODS:
        raise ApiError(405, "method_not_allowed", "this action changes state: use POST", {"Allow": "POST"})


def refuse_cross_site_post() -> None:
    if request.method in SAFE_METHODS or not routed_to_dashboard():
        return
    if request.headers.get("X-Requested-With") != "XMLHttpRequest":
        raise ApiError(403, "csrf_refused", "dashboard actions are taken from the dashboard's own page "
                                            "(send X-Requested-With: XMLHttpRequest)")
    if request.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
        raise ApiError(403, "csrf_refused", "dashboard actions are not accepted from another site")


def refuse_emptying_started_jobs() -> None:
    """The started registry holds running jobs and their leases (jobs/worker/timings.py): deleting
    them would not stop them, and RQ 3 cannot remove an entry whose job is gone (a 500)."""
    if request.endpoint == f"{BLUEPRINT}.empty_queue" and (request.view_args or {}).get("registry_name") == "started":
        raise ApiError(409, "jobs_running", "started jobs are running: they end by finishing, failing or "
                                            "timing out, and cannot be emptied from the dashboard")


def refuse_odd_url_values() -> None:
    """404 for a dashboard URL whose names are not plain: they reach an inline script raw."""
    if request.blueprint != BLUEPRINT or request.endpoint == f"{BLUEPRINT}.static":
        return
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and not plain_url_value(name, value):
            abort(404)


def plain_url_value(name: str, value: str) -> bool:
    if name in NUMBERS:
        return value.isascii() and value.isdigit()
    if name == "registry_name":
        return value in REGISTRIES
    return bool(NAME.match(value))


def no_such_job(exc: NoSuchJobError) -> tuple[Response, int]:
    return jsonify({"error": {"code": "not_found", "message": "no such job (finished jobs are kept for a day)"}}), 404


# ---- responses --------------------------------------------------------------------------


def secure_response(response: Response) -> Response:
    if not routed_to_dashboard():
        return response
    if request.endpoint in ESCAPED_JSON_VIEWS and response.is_json and response.status_code == 200:
        keep_raw = ESCAPED_JSON_VIEWS[request.endpoint]
        response.set_data(json.dumps(html_escaped(response.get_json(), keep_raw)))
    response.headers.update(SECURITY_HEADERS)
    response.headers["Content-Security-Policy"] = CSP.format(hashes=" ".join(inline_script_hashes(response)))
    return response


def html_escaped(value: object, keep_raw: frozenset[str], key: str | None = None) -> object:
    """Every string in value HTML-escaped, but those under a key in keep_raw."""
    if isinstance(value, str):
        return value if key in keep_raw else str(escape(value))
    if isinstance(value, list):
        return [html_escaped(item, keep_raw, key) for item in value]
    if isinstance(value, dict):
        return {k: html_escaped(v, keep_raw, k) for k, v in value.items()}
    return value


def inline_script_hashes(response: Response) -> list[str]:
    """CSP hash sources of the page's own inline scripts (not of <script type=text/template>)."""
    if response.mimetype != "text/html" or response.direct_passthrough or response.is_streamed:
        return []
    hashes = []
    for match in INLINE_SCRIPT.finditer(response.get_data(as_text=True)):
        attrs = match["attrs"]
        script_type = SCRIPT_TYPE.search(attrs)
        if "src=" in attrs.lower() or (script_type["type"].lower() if script_type else "") not in JS_TYPES:
            continue
        digest = hashlib.sha256(match["body"].encode()).digest()
        hashes.append(f"'sha256-{base64.b64encode(digest).decode()}'")
    return hashes


# ---- Basic auth -------------------------------------------------------------------------


class OperatorGate:
    """before_request hook: a request routed to the dashboard needs the operator's Basic
    credentials, and an address that sent wrong ones AUTH_FAILURES times waits (429)."""

    def __init__(self, user: str, password: str, redis: Redis):
        self.user = user.encode()
        self.password = password.encode()
        storage = RedisStorage("redis://", connection_pool=redis.connection_pool, key_prefix=DASHBOARD_AUTH_FAILURES)
        self.failures = SlidingWindowCounterRateLimiter(storage)

    def __call__(self) -> None:
        if not routed_to_dashboard():
            return
        client = request.remote_addr or "unknown"
        if not self.failures.test(AUTH_FAILURES, client):
            wait = max(1, math.ceil(self.failures.get_window_stats(AUTH_FAILURES, client).reset_time - time.time()))
            raise ApiError(429, "too_many_failed_logins", f"{AUTH_FAILURES} wrong dashboard credentials from this "
                                                          f"address: retry in {wait} s", {"Retry-After": str(wait)})
        if not self.authorized():
            if request.authorization is not None:  # a guess; a first visit sends none
                self.failures.hit(AUTH_FAILURES, client)
            raise ApiError(401, "unauthorized", "the dashboard needs the operator's credentials (HTTP Basic auth)",
                           {"WWW-Authenticate": 'Basic realm="rqstatus"'})

    def authorized(self) -> bool:
        auth = request.authorization
        if auth is None or auth.type != "basic":
            return False
        user_ok = hmac.compare_digest((auth.username or "").encode(), self.user)
        password_ok = hmac.compare_digest((auth.password or "").encode(), self.password)
        return user_ok and password_ok
