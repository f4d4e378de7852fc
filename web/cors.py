"""Cross-origin requests from the web pages an operator names in CORS_ORIGINS; off by default.

Without CORS_ORIGINS no answer carries an Access-Control-* header: a browser lets no page
of another origin read an answer, nor send a request that needs a preflight (a JSON body,
an Authorization header). That is what keeps other sites from submitting URLs in a
visitor's name (api.json_body: only JSON bodies are read).

With it, for an origin it lists (exactly, as a browser spells its Origin header):
- a preflight (OPTIONS with Origin and Access-Control-Request-Method) to a route the API
  serves is answered 204 with the methods and request headers the API reads, for MAX_AGE;
- every answer carries Access-Control-Allow-Origin: <that origin>, never "*", and exposes
  the headers a client acts on (Retry-After, RateLimit-*, ETag, Last-Modified);
- never Access-Control-Allow-Credentials: cross-origin requests carry no cookies or HTTP
  auth, and the API needs none (a page sends its token in Authorization itself).
/rqstatus (the operator's dashboard, behind Basic auth) gets none of this from any origin.
While CORS is on every answer varies on Origin, so no cache gives one origin's answer to another.
"""
from __future__ import annotations

from flask import Flask, Response, current_app, request

from config import Settings
from web.dashboard import routed_to_dashboard

ALLOWED_METHODS = "GET, HEAD, POST, DELETE"  # DELETE: the control routes (cancel a job, delete a record)
ALLOWED_HEADERS = "Authorization, Content-Type, If-None-Match, If-Modified-Since"
EXPOSED_HEADERS = ("Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy, "
                   "ETag, Last-Modified")
MAX_AGE = "600"  # seconds a browser may reuse a preflight's answer


def init_app(app: Flask, settings: Settings) -> None:
    if not settings.cors_origins:
        return
    app.before_request(answer_preflight)
    app.after_request(add_cors_headers)


def listed_origin() -> str | None:
    """The request's Origin when CORS_ORIGINS lists it and the request is not for the dashboard."""
    origin = request.headers.get("Origin")
    if origin is None or origin not in current_app.config["SETTINGS"].cors_origins or routed_to_dashboard():
        return None
    return origin


def answer_preflight() -> Response | None:
    """204 to a listed origin's preflight for a route the app serves; anything else goes on
    (Flask's own OPTIONS answer, without CORS headers: the browser then refuses the request)."""
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return None
    if request.url_rule is None or listed_origin() is None:
        return None
    response = current_app.response_class(status=204)
    response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
    response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
    response.headers["Access-Control-Max-Age"] = MAX_AGE
    return response  # add_cors_headers adds the origin


def add_cors_headers(response: Response) -> Response:
    response.vary.add("Origin")
    origin = listed_origin()
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return response
