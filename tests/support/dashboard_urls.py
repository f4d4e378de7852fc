"""Requests to the /rqstatus dashboard for tests: its rules as concrete paths, the spellings of a
path that may still route to it (tests/test_security.py, tests/web/test_live_fuzz.py), Basic auth."""
from __future__ import annotations

import base64
import re

from flask import Flask
from werkzeug.routing import Rule

DEFAULTS = {"instance_number": "0", "queue_name": "goodreads", "registry_name": "failed", "per_page": "8",
            "order": "asc", "page": "1", "job_id": "nojob", "filename": "css/main.css"}

# How a path P (starting with /rqstatus) can be spelled so that it may still reach the dashboard.
# Each is sent as the raw request target; gunicorn and Werkzeug decide what it routes to.
SPELLINGS = {
    "as is": lambda p: p,
    "two leading slashes": lambda p: "/" + p,
    "three leading slashes": lambda p: "//" + p,
    "%2F after the first slash": lambda p: "/%2F" + p[1:],
    "%2f after the first slash": lambda p: "/%2f" + p[1:],
    "%2F%2F before the path": lambda p: "%2F%2F" + p[1:],
    "slash runs inside": lambda p: p.replace("/", "//"),
    "%2F for every slash but the first": lambda p: "/" + p[1:].replace("/", "%2F"),
    "a dot segment first": lambda p: "/." + p,
    "a dot-dot segment first": lambda p: "/x/.." + p,
    "%2e%2e segment first": lambda p: "/x/%2e%2e" + p,
    "a dot segment inside": lambda p: p.replace("/rqstatus/", "/rqstatus/./", 1),
    "percent-encoded letters": lambda p: p.replace("/rqstatus", "/%72%71status", 1),
    "upper case": lambda p: p.replace("/rqstatus", "/RQSTATUS", 1),
    "a query string": lambda p: p + "?x=1",
    "a semicolon parameter": lambda p: p.replace("/rqstatus", "/rqstatus;x=1", 1),
    "absolute form": lambda p: "http://127.0.0.1" + p,
    "absolute form, two slashes": lambda p: "http://127.0.0.1/" + p,
    "absolute form, other host": lambda p: "http://elsewhere.example//" + p[1:],
}
# The spellings that reached the dashboard before the gate decided on routing (issue: all of these
# answered 200 without credentials); the test checks they still reach it, so it cannot pass vacuously.
REACH_THE_DASHBOARD = {"two leading slashes", "three leading slashes", "%2F after the first slash",
                       "%2f after the first slash", "absolute form, two slashes", "percent-encoded letters"}


def dashboard_rules(app: Flask) -> list[Rule]:
    return [rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("rq_dashboard.")]


def concrete(rule: Rule, **values: str) -> str:
    """The rule's path with every argument filled in (values, else a plain default)."""
    path = rule.rule
    for arg in rule.arguments:
        path = re.sub(rf"<(?:[a-z]+:)?{arg}>", values.get(arg, DEFAULTS.get(arg, "x")), path)
    return path


def changes_state(rule: Rule) -> bool:
    return bool(rule.methods - {"GET", "HEAD", "OPTIONS"})


def basic_auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}
