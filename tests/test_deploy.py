"""What can be checked of the Docker deployment without a Docker engine, plus Procfile and Makefile."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from config import PROJECT_ROOT, load_settings

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (PROJECT_ROOT / "Dockerfile").read_text()
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, enough to check values."""
    def one(match: re.Match) -> str:
        name, rest = match.group(1), match.group(0)[len(match.group(1)) + 2:-1]
        if name in env:
            return env[name]
        assert not rest.startswith(("?", ":?")), f"{name} is required"
        return rest.lstrip(":-")
    return INTERPOLATION.sub(one, value)


def test_compose_has_redis_web_and_worker():
    assert set(COMPOSE["services"]) == {"redis", "web", "worker"}
    assert "redis-data" in COMPOSE["volumes"]


def test_redis_keeps_an_aof_behind_a_password():
    redis = COMPOSE["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert "--requirepass" in command
    assert "redis-data:/data" in redis["volumes"]
    assert "ports" not in redis, "Redis must not be published outside the compose network"
    assert not redis["image"].endswith(":latest") and ":" in redis["image"]


def test_services_have_healthchecks_and_wait_for_redis():
    for name, service in COMPOSE["services"].items():
        assert service["healthcheck"]["test"], name
        if name != "redis":
            assert service["depends_on"]["redis"]["condition"] == "service_healthy"


def test_web_and_worker_settings_load_with_the_compose_environment():
    env = {"REDIS_PASSWORD": "pw", "RQSTATUS_USER": "op", "RQSTATUS_PASSWORD": "pw2"}
    for name in ("web", "worker"):
        service_env = {k: interpolate(str(v), env) for k, v in COMPOSE["services"][name]["environment"].items()}
        settings = load_settings(service_env)
        assert settings.redis_url == "redis://:pw@redis:6379/0"
        assert settings.rqstatus_user == "op" and settings.listens_beyond_loopback


def test_compose_answers_loopback_names_only():
    """compose publishes the web port on the host's loopback: a DNS-rebinding page must not
    be answered there, so the names are the loopback ones unless ALLOWED_HOSTS says otherwise."""
    env = {"REDIS_PASSWORD": "pw", "RQSTATUS_USER": "op", "RQSTATUS_PASSWORD": "pw2"}
    web = COMPOSE["services"]["web"]
    assert web["ports"] == ["${PUBLISH_PORT:-127.0.0.1:8000}:8000"]
    environment = {k: interpolate(str(v), env) for k, v in web["environment"].items()}
    assert load_settings(environment).allowed_hosts == {"127.0.0.1", "localhost", "::1"}
    env["ALLOWED_HOSTS"] = "metaparse.example.com"
    public = {k: interpolate(str(v), env) for k, v in web["environment"].items()}
    assert load_settings(public).allowed_hosts == {"metaparse.example.com"}


def test_compose_passes_the_web_edge_settings_through():
    """Publishing the port needs no proxy; the edge's bounds are the operator's to set."""
    env = {"REDIS_PASSWORD": "pw", "RQSTATUS_USER": "op", "RQSTATUS_PASSWORD": "pw2"}
    web = COMPOSE["services"]["web"]["environment"]
    shipped = load_settings({k: interpolate(str(v), env) for k, v in web.items()})
    assert (shipped.request_read_timeout, shipped.max_connections_per_address, shipped.trusted_proxies) == (10, 64, 0)
    env.update(REQUEST_READ_TIMEOUT="5", MAX_CONNECTIONS_PER_ADDRESS="256", TRUSTED_PROXIES="1")
    chosen = load_settings({k: interpolate(str(v), env) for k, v in web.items()})
    assert (chosen.request_read_timeout, chosen.max_connections_per_address, chosen.trusted_proxies) == (5, 256, 1)


def test_compose_requires_the_secrets():
    with pytest.raises(AssertionError, match="REDIS_PASSWORD is required"):
        interpolate(COMPOSE["services"]["web"]["environment"]["REDIS_URL"], {})


def test_web_is_published_on_loopback_by_default():
    [mapping] = COMPOSE["services"]["web"]["ports"]
    assert interpolate(mapping, {}) == "127.0.0.1:8000:8000"


def test_worker_runs_the_worker_and_has_time_to_finish_a_job():
    worker = COMPOSE["services"]["worker"]
    assert worker["command"] == ["python", "-m", "jobs.worker"]
    grace = int(worker["stop_grace_period"].rstrip("s"))
    assert grace > load_settings({}).job_timeout


def test_dockerfile_is_pinned_non_root_and_serves_with_gunicorn():
    [base] = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, re.M)
    assert re.match(r"python:\d+\.\d+\.\d+-slim", base), "pin the base image to an exact version"
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in DOCKERFILE
    cmd = re.search(r"^CMD\s+(\[.*\])", DOCKERFILE, re.M).group(1)
    assert "gunicorn" in cmd and "server:create_app()" in cmd
    assert "Pipfile.lock" in DOCKERFILE and "pipenv sync" in DOCKERFILE


def test_dockerignore_keeps_secrets_and_local_state_out():
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    for entry in (".env", ".venv", "var", ".git"):
        assert entry in ignored


def test_procfile_runs_web_first_then_the_worker():
    lines = [line for line in (PROJECT_ROOT / "Procfile").read_text().splitlines() if line.strip()]
    names = [line.split(":", 1)[0] for line in lines]
    assert names == ["web", "worker"]
    web = shlex.split(lines[0].split(":", 1)[1])
    assert web[0] == "gunicorn" and "server:create_app()" in web


def test_ci_runs_exactly_make_test():
    script = (PROJECT_ROOT / ".ci" / "run").read_text()
    commands = [line for line in script.splitlines() if line.strip() and not line.startswith("#")]
    assert commands[-1].strip() == "make test"
