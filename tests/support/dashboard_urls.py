"""Requests to the /rqstatus dashboard for tests: its rules as concrete paths, Basic auth."""
from __future__ import annotations

import base64
import re

from flask import Flask
from werkzeug.routing import Rule

DEFAULTS = {"instance_number": "0", "queue_name": "goodreads", "registry_name": "failed", "per_page": "8",
            "order": "asc", "page": "1", "job_id": "nojob", "filename": "css/main.css"}


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
