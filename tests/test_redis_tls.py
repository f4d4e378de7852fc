"""REDIS_URL with a password (redis://:pw@host) and with TLS (rediss://...?ssl_ca_certs=...).

Two real redis-servers: one with --requirepass, one listening on TLS only (certificate
from a trustme CA). Through each, the API (POST /parse, GET /info, /healthz), the
dashboard, the rate limiter and a worker built from jobs.worker's pool connection all
work; a wrong or missing password, or TLS without the CA, is a 503 JSON answer, never a
500, and the dashboard never shows the password.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import trustme
from redis import Redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from rq.worker_pool import run_worker

import jobs.context
from config import load_settings
from jobs.queues import Submitter
from jobs.worker.__main__ import build_pool
from jobs.worker.base import CrashSafeWorker
from jobs.worker.claims import ClaimingQueue
from launch import free_port
from server import create_app
from sources import route
from tests.support import processes
from tests.support.fixture_server import FixtureServer, Reply
from tests.support.redis_server import RedisServer

PASSWORD = "pw-7d1c9e"  # distinctive, so a page showing it is caught
BOOK = "https://www.goodreads.com/book/show/1"
FIXTURE_BOOK = Path(__file__).parent / "fixtures" / "e2e" / "goodreads-book.html"
TITLE = "The Lighthouse Keeper's Almanac"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("redis-tls")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    server_cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server_cert.private_key_pem.write_to_path(str(files["key"]))
    return files


@pytest.fixture(scope="module")
def password_redis() -> Iterator[RedisServer]:
    port = free_port()
    server = RedisServer(appendonly=False, port=port, extra_args=["--requirepass", PASSWORD],
                         url=f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def tls_redis(tls_files) -> Iterator[RedisServer]:
    port = free_port()
    server = RedisServer(appendonly=False, port=port, url=f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={tls_files['ca']}",
                         extra_args=[  # no plain port: TLS only
                             "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(tls_files["cert"]),
                             "--tls-key-file", str(tls_files["key"]), "--tls-ca-cert-file", str(tls_files["ca"]),
                             "--tls-auth-clients", "no",
                         ])
    yield server.start()
    server.stop()


@pytest.fixture(params=["password", "tls"])
def secure(request) -> RedisServer:
    """Each test runs once on the password-protected server and once on the TLS-only one."""
    server = request.getfixturevalue(f"{request.param}_redis")
    Redis.from_url(server.url).flushdb()
    return server


@pytest.fixture
def env(secure, tmp_path) -> dict[str, str]:
    return {"REDIS_URL": secure.url, "FETCH_RETRIES": "0", "DATA_DIR": str(tmp_path / "data")}


@pytest.fixture(scope="module")
def site() -> Iterator[FixtureServer]:
    server = FixtureServer(["www.goodreads.com"]).start()
    server.routes["/book/show/1"] = Reply(body=FIXTURE_BOOK.read_bytes())
    yield server
    server.stop()


def assert_no_secret(text: str) -> None:
    assert PASSWORD not in text and "ssl_ca_certs" not in text


def test_the_api_the_dashboard_and_the_limiter_work(env, secure):
    client = create_app({**env, "RATE_LIMIT_WRITE": "1/minute"}).test_client()
    accepted = client.post("/parse", json=[BOOK])
    assert accepted.status_code == 202 and accepted.get_json()["accepted"][0]["status"] == "queued"
    info = client.get("/info", query_string={"url": BOOK})
    assert info.status_code == 202 and info.get_json()["status"] == "queued"
    health = client.get("/healthz")
    assert health.status_code == 200 and health.get_json()["queues"]["goodreads"] == 1
    page = client.get("/rqstatus/")
    assert page.status_code == 200 and "127.0.0.1" in page.get_data(as_text=True)
    assert_no_secret(page.get_data(as_text=True))
    queues = client.get("/rqstatus/0/data/queues.json").get_json()["queues"]
    assert {"name": "goodreads", "count": 1} in [{"name": q["name"], "count": q["count"]} for q in queues]
    assert client.post("/parse", json=[BOOK]).status_code == 429  # the limiter counts in this Redis
    assert Redis.from_url(secure.url).keys("metaparse:limits:*")


def test_the_real_web_server_talks_to_it(env, secure, tmp_path):
    """Through gunicorn's gevent worker (web/edge.py), which patches ssl after gunicorn's
    master imported it: the web process's TLS connections to Redis still work."""
    web = processes.start_web(processes.service_env(**env), tmp_path / "web.log")
    try:
        accepted = requests.post(f"http://127.0.0.1:{web.port}/parse", json=[BOOK], timeout=10)
        assert accepted.status_code == 202, accepted.text
        info = requests.get(f"http://127.0.0.1:{web.port}/info", params={"url": BOOK}, timeout=10)
        assert info.status_code == 202 and info.json()["status"] == "queued"
    finally:
        web.stop()
    assert "Traceback" not in (tmp_path / "web.log").read_text()


def test_a_worker_built_from_the_pool_connection_runs_the_job(env, secure, site, tmp_path, monkeypatch):
    """jobs.worker's pool rebuilds its connection in each worker process from the pool's
    class and kwargs (rq.worker_pool.run_worker): that very path runs a job here, in-process."""
    worker_env = {**env, "FETCH_CONNECT_TO": site.connect_to("www.goodreads.com"),
                  "FETCH_CA_BUNDLE": str(site.write_ca_bundle(tmp_path / "site-ca.pem"))}
    for name, value in worker_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(jobs.context, "_context", None)  # the job reads its settings from this environment
    for cls, name in ((CrashSafeWorker, "pool_pid"), (ClaimingQueue, "dispatch_policy"), (ClaimingQueue, "inbox_keys")):
        monkeypatch.setattr(cls, name, getattr(cls, name))  # build_pool sets them for the whole process
    settings = load_settings(worker_env)
    pool = build_pool(settings)
    assert pool._pool_kwargs.get("password") == (PASSWORD if secure.url.startswith("redis:") else None)
    client = create_app(worker_env).test_client()
    Submitter(client.application.config["REDIS"], settings).submit(route(BOOK))
    run_worker("secure-redis-test", ["goodreads"], pool._connection_class, pool._pool_class, pool._pool_kwargs,
               worker_class=SimpleWorker, serializer=JSONSerializer, burst=True)
    record = client.get("/info", query_string={"url": BOOK})
    assert record.status_code == 200, record.get_json()
    assert record.get_json()["status"] == "done" and record.get_json()["data"]["title"].startswith(TITLE)


def test_the_dashboard_keeps_the_service_connection(env, secure):
    """rq-dashboard alone opens a new client (a TCP and TLS handshake, an AUTH) per request."""
    app = create_app(env)
    client = app.test_client()
    client.get("/rqstatus/0/data/queues.json")
    received = lambda: Redis.from_url(secure.url).info("stats")["total_connections_received"]  # noqa: E731
    before = received()
    for _ in range(20):
        assert client.get("/rqstatus/0/data/queues.json").status_code == 200
        assert client.get("/rqstatus/0/data/workers.json").status_code == 200
    assert received() - before <= 2  # our probes above; the app's pool reuses its connection


@pytest.fixture
def bad_urls(password_redis, tls_redis) -> dict[str, str]:
    password_port = password_redis.url.rsplit(":", 1)[1].split("/")[0]
    tls_address = tls_redis.url.split("//")[1].split("/")[0]
    return {
        "wrong password": f"redis://:wrong@127.0.0.1:{password_port}/0",
        "no password": f"redis://127.0.0.1:{password_port}/0",
        "TLS without the CA": f"rediss://{tls_address}/0",
        "plain to the TLS port": f"redis://{tls_address}/0",
    }


@pytest.mark.parametrize("case", ["wrong password", "no password", "TLS without the CA", "plain to the TLS port"])
def test_a_bad_password_or_certificate_is_503_json(bad_urls, case, tmp_path):
    client = create_app({"REDIS_URL": bad_urls[case], "DATA_DIR": str(tmp_path)}).test_client()
    for method, path, kwargs in [("post", "/parse", {"json": [BOOK]}), ("get", "/info", {"query_string": {"url": BOOK}}),
                                 ("get", "/healthz", {}), ("get", "/rqstatus/0/data/queues.json", {})]:
        response = getattr(client, method)(path, **kwargs)
        assert response.status_code == 503, (case, path, response.get_data(as_text=True))
        assert response.get_json()["error"]["code"] == "redis_unavailable" and response.headers["Retry-After"]
