"""The web page at GET /: paste URLs, submit them to POST /parse, watch each one finish.

Plain HTML, CSS and vanilla JS modules from web/ui/ (no build step, nothing from a CDN;
web/ui/static/app.js is the entry). The page only calls the public JSON API, so it has no
powers a curl user lacks; the batch it shows lives in its address (/#batch=<id>), which
never reaches the server. Everything a fetched page or the API says is inserted as text
by web/ui/static/dom.js; the Content-Security-Policy below is a second line of defence
should that ever slip.
"""
from __future__ import annotations

from flask import Blueprint, current_app, render_template

webpage = Blueprint(
    "webpage", __name__,
    template_folder="ui/templates",
    static_folder="ui/static",
    static_url_path="/ui",  # not /static: keeps clear of the app's own static route
)

# Scripts and styles only from our own files, so injected markup could run nothing;
# images from any http(s) site, because covers and page images live on other hosts.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "img-src http: https:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@webpage.get("/")
def index():
    settings = current_app.config["SETTINGS"]
    # The token field is shown only when POST endpoints need one (API_TOKENS is set).
    html = render_template("webpage/index.html", token_required=bool(settings.api_tokens),
                           allow_any_site=settings.allow_any_site)
    return html, 200, SECURITY_HEADERS
