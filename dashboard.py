"""rq-dashboard mounted at /rqstatus inside the service's own Flask app.

Every dashboard rule (its static files included) sits behind HTTP Basic auth when
RQSTATUS_USER/RQSTATUS_PASSWORD are set, and config.py refuses to listen beyond
loopback without them. The dashboard reads jobs with the same JSON serializer as the
queues, and its one state-changing GET rule answers 405.
"""
from __future__ import annotations

import hmac

import rq_dashboard
from flask import Flask, Response, request
from rq.serializers import JSONSerializer
from rq_dashboard import web as dashboard_web

from config import Settings

URL_PREFIX = "/rqstatus"
BLUEPRINT = "rq_dashboard"
# Endpoints rq-dashboard serves over GET although they change state.
STATE_CHANGING_GET = {"rq_dashboard.requeue_all"}


def mount_dashboard(app: Flask, settings: Settings) -> None:
    app.config.from_object(rq_dashboard.default_settings)
    app.config["RQ_DASHBOARD_REDIS_URL"] = settings.redis_url
    dashboard_web.config.serializer = JSONSerializer
    # rq-dashboard opens its Redis connection here; it must run before the blueprint is used.
    dashboard_web.setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=URL_PREFIX)
    app.before_request(lambda: guard_dashboard(settings))


def guard_dashboard(settings: Settings) -> Response | None:
    if request.blueprint != BLUEPRINT:
        return None
    if settings.rqstatus_user and not _authorized(settings):
        return Response("authentication required\n", 401, {"WWW-Authenticate": 'Basic realm="rqstatus"'},
                        mimetype="text/plain")
    if request.method == "GET" and request.endpoint in STATE_CHANGING_GET:
        return Response("use POST\n", 405, {"Allow": "POST"}, mimetype="text/plain")
    return None


def _authorized(settings: Settings) -> bool:
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    user_ok = hmac.compare_digest((auth.username or "").encode(), settings.rqstatus_user.encode())
    password_ok = hmac.compare_digest((auth.password or "").encode(), settings.rqstatus_password.encode())
    return user_ok and password_ok
