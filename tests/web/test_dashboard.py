"""rq-dashboard at /rqstatus: reachable, reads JSON-serialised jobs, guarded on every rule."""
from __future__ import annotations

import pytest

from server import create_app
from tests.support.dashboard_urls import basic_auth

BOOK = "https://www.goodreads.com/book/show/5907"
CREDENTIALS = {"RQSTATUS_USER": "operator", "RQSTATUS_PASSWORD": "s3cret"}


def dashboard_paths(app) -> list[str]:
    """One concrete URL per dashboard rule, static files included."""
    paths = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("rq_dashboard."):
            continue
        values = {arg: {"instance_number": "0", "filename": "css/main.css", "page": "1"}.get(arg, "x") for arg in rule.arguments}
        path = rule.rule
        for arg, value in values.items():
            path = path.replace(f"<int:{arg}>", value).replace(f"<path:{arg}>", value).replace(f"<{arg}>", value)
        paths.append(path)
    return paths


def test_dashboard_lists_json_serialised_jobs(client):
    client.post("/parse", json=[BOOK])
    assert client.get("/rqstatus/").status_code == 200
    queues = client.get("/rqstatus/0/data/queues.json").get_json()
    assert {"name": "goodreads", "count": 1} in [{"name": q["name"], "count": q["count"]} for q in queues["queues"]]
    listing = client.get("/rqstatus/0/data/jobs/goodreads/queued/8/asc/1.json").get_json()
    assert listing["jobs"][0]["description"] == BOOK


def test_every_dashboard_rule_needs_basic_auth_when_configured(redis_client, base_env):
    app = create_app({**base_env, **CREDENTIALS})
    client = app.test_client()
    paths = dashboard_paths(app) + ["/rqstatus", "/rqstatus/no-such-page", "/rqstatus/0/view/queues"]
    assert any(path.startswith("/rqstatus/static/") for path in paths)
    for n, path in enumerate(paths):
        address = {"REMOTE_ADDR": f"192.0.2.{n}"}  # an address each: wrong guesses are limited per address
        for headers in ({}, basic_auth("operator", "wrong"), basic_auth("intruder", "s3cret")):
            response = client.get(path, headers=headers, environ_overrides=address)
            assert response.status_code == 401, path
            assert response.headers["WWW-Authenticate"].startswith("Basic")
    operator = basic_auth("operator", "s3cret")
    assert client.get("/rqstatus/", headers=operator).status_code == 200
    assert client.get("/rqstatus/static/css/main.css", headers=operator).status_code in (200, 404)


def test_wrong_credentials_are_limited_per_address(redis_client, base_env):
    """10 wrong guesses a minute from one address; then 429, even for the right password (else
    a guess could tell a right one by its answer), until the window has passed."""
    client = create_app({**base_env, **CREDENTIALS}).test_client()
    guesser, operator = {"REMOTE_ADDR": "192.0.2.66"}, {"REMOTE_ADDR": "192.0.2.7"}
    for _ in range(20):  # no credentials at all: a first visit, not a guess
        assert client.get("/rqstatus/", environ_overrides=guesser).status_code == 401
    for n in range(10):
        guess = client.get("/rqstatus/", headers=basic_auth("operator", f"guess{n}"), environ_overrides=guesser)
        assert guess.status_code == 401
    locked = client.get("/rqstatus/", headers=basic_auth("operator", "s3cret"), environ_overrides=guesser)
    assert locked.status_code == 429 and locked.get_json()["error"]["code"] == "too_many_failed_logins"
    # Locked for the rest of the minute (the guesses took well under one), not a shorter window.
    assert 45 <= int(locked.headers["Retry-After"]) <= 60
    right = basic_auth("operator", "s3cret")
    assert client.get("/rqstatus/", headers=right, environ_overrides=operator).status_code == 200
    assert client.get("/healthz", environ_overrides=guesser).status_code == 200  # only the dashboard


def test_api_stays_outside_dashboard_auth(redis_client, base_env):
    client = create_app({**base_env, **CREDENTIALS}).test_client()
    assert client.get("/healthz").status_code == 200


def test_state_changing_get_is_refused(client):
    response = client.get("/rqstatus/requeue/goodreads")
    assert response.status_code == 405


def test_listening_beyond_loopback_requires_credentials(base_env):
    from errors import ConfigError

    with pytest.raises(ConfigError, match="RQSTATUS_USER"):
        create_app({**base_env, "BIND": "0.0.0.0"})
    assert create_app({**base_env, "BIND": "0.0.0.0", **CREDENTIALS})
