"""Shared fixtures: a real redis-server for the session, a clean database per test, the app;
and the CI=true rules for missing prerequisites (tests/support/prerequisites.py)."""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from redis import Redis

from server import create_app
from tests.support.prerequisites import pytest_runtest_makereport, pytest_sessionstart  # noqa: F401 (hooks)
from tests.support.redis_server import RedisServer, database_of_test_process, xdist_process_name


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL when set (its databases are flushed per test: point it at scratch ones, one per
    test process), else our own server."""
    if os.environ.get("REDIS_URL"):
        yield database_of_test_process(os.environ["REDIS_URL"], xdist_process_name())
        return
    server = RedisServer(appendonly=False).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def module_redis_url(redis_url: str) -> str:
    """redis_url, flushed when a module's services start: jobs and records another
    module left behind must not reach this module's workers."""
    Redis.from_url(redis_url).flushdb()
    return redis_url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def base_env(redis_url: str, tmp_path_factory) -> dict[str, str]:
    """The environment a test service runs with (its own DATA_DIR); tests add to it."""
    return {"REDIS_URL": redis_url, "FETCH_RETRIES": "0", "DATA_DIR": str(tmp_path_factory.mktemp("data"))}


@pytest.fixture
def app(base_env: dict[str, str], redis_client: Redis):
    return create_app(base_env)


@pytest.fixture
def client(app):
    return app.test_client()
