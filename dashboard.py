"""rq-dashboard mounted at /rqstatus inside the service's own Flask app.

Every path under /rqstatus (rules, static files, even routing redirects and 404s) sits
behind HTTP Basic auth when RQSTATUS_USER/RQSTATUS_PASSWORD are set: the check wraps the
WSGI app, before Flask routes anything. config.py refuses to listen beyond loopback
without credentials. The dashboard reads jobs with the same JSON serializer as the
queues, and its one state-changing GET rule answers 405.
"""
from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable

import rq_dashboard
from flask import Flask, Response, request
from rq.serializers import JSONSerializer
from rq_dashboard import web as dashboard_web
from werkzeug.datastructures import Authorization

from config import Settings

URL_PREFIX = "/rqstatus"
# Endpoints rq-dashboard serves over GET although they change state.
STATE_CHANGING_GET = {"rq_dashboard.requeue_all"}


def mount_dashboard(app: Flask, settings: Settings) -> None:
    app.config.from_object(rq_dashboard.default_settings)
    app.config["RQ_DASHBOARD_REDIS_URL"] = settings.redis_url
    dashboard_web.config.serializer = JSONSerializer
    # rq-dashboard opens its Redis connection here; it must run before the blueprint is used.
    dashboard_web.setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=URL_PREFIX)
    app.before_request(refuse_state_changing_get)
    if settings.rqstatus_user:
        app.wsgi_app = BasicAuthGate(app.wsgi_app, settings.rqstatus_user, settings.rqstatus_password)


def refuse_state_changing_get() -> Response | None:
    if request.method == "GET" and request.endpoint in STATE_CHANGING_GET:
        return Response("use POST\n", 405, {"Allow": "POST"}, mimetype="text/plain")
    return None


class BasicAuthGate:
    """WSGI middleware: every request under URL_PREFIX needs the operator's Basic credentials."""

    def __init__(self, wsgi_app: Callable, user: str, password: str):
        self.wsgi_app = wsgi_app
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if (path == URL_PREFIX or path.startswith(URL_PREFIX + "/")) and not self._authorized(environ):
            challenge = Response("authentication required\n", 401,
                                 {"WWW-Authenticate": 'Basic realm="rqstatus"'}, mimetype="text/plain")
            return challenge(environ, start_response)
        return self.wsgi_app(environ, start_response)

    def _authorized(self, environ: dict) -> bool:
        auth = Authorization.from_header(environ.get("HTTP_AUTHORIZATION"))
        if auth is None or auth.type != "basic":
            return False
        user_ok = hmac.compare_digest((auth.username or "").encode(), self.user)
        password_ok = hmac.compare_digest((auth.password or "").encode(), self.password)
        return user_ok and password_ok
