"""What can be checked of the Docker deployment without a Docker engine, plus Procfile and Makefile."""
from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path, PurePosixPath

import pytest
import yaml
from redis import Redis

from config import PROJECT_ROOT, Settings, load_settings
from jobs.worker.timings import TIMINGS
from tests.support.redis_server import RedisServer

COMPOSE_TEXT = (PROJECT_ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
DOCKERFILE = (PROJECT_ROOT / "Dockerfile").read_text()
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")
SECRETS_IN_CONTAINER = "/run/secrets/"
IMAGE_WORKDIR = PurePosixPath(re.search(r"^WORKDIR\s+(\S+)", DOCKERFILE, re.M).group(1))
# The characters that end a URL's user part, host or path early: each must survive as a password.
URL_HOSTILE_PASSWORD = "p@ss:w/o#rd%20 \"'"


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, enough to check values."""
    def one(match: re.Match) -> str:
        name, rest = match.group(1), match.group(0)[len(match.group(1)) + 2:-1]
        if name in env:
            return env[name]
        assert not rest.startswith(("?", ":?")), f"{name} is required"
        return rest.lstrip(":-")
    return INTERPOLATION.sub(one, value)


REQUIRED = {"RQSTATUS_USER": "op"}


def secret_files(folder: Path, **values: str) -> dict[str, str]:
    """The compose secrets as files in folder (defaults for the required ones); {name: path}."""
    values = {"redis_password": "pw", "rqstatus_password": "pw2", "api_tokens": "", "callback_secret": "", **values}
    for name, value in values.items():
        (folder / name).write_text(value + "\n")
    return {name: str(folder / name) for name in values}


def service_environment(name: str, folder: Path, env: dict[str, str] | None = None, **secrets: str) -> dict[str, str]:
    """A service's environment as compose would give it: interpolated with env, and the paths
    of its secrets (/run/secrets/NAME, only those it is given) mapped to files in folder."""
    files = secret_files(folder, **secrets)
    service = COMPOSE["services"][name]
    environment = {k: interpolate(str(v), {**REQUIRED, **(env or {})}) for k, v in service["environment"].items()}
    for variable, value in environment.items():
        if value.startswith(SECRETS_IN_CONTAINER):
            secret = value.removeprefix(SECRETS_IN_CONTAINER)
            assert secret in service["secrets"], f"{name} reads {secret} but is not given it"
            environment[variable] = files[secret]
    return environment


def service_settings(name: str, folder: Path, env: dict[str, str] | None = None, **secrets: str) -> Settings:
    return load_settings(service_environment(name, folder, env, **secrets))


def test_compose_has_redis_web_and_worker():
    assert set(COMPOSE["services"]) == {"redis", "web", "worker"}
    assert {"redis-data", "web-journal"} <= set(COMPOSE["volumes"])


def test_redis_keeps_an_aof_behind_a_password_read_from_its_secret():
    redis = COMPOSE["services"]["redis"]
    shell, flag, script = redis["command"]
    assert (shell, flag) == ("sh", "-c")
    command = shlex.split(script.replace("$$", "$"))  # compose's escape of a literal $
    assert command[:3] == ["exec", "docker-entrypoint.sh", "redis-server"]  # run as the redis user, not root
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    # the shell reads the secret file when Redis starts
    assert command[command.index("--requirepass") + 1] == "$(cat /run/secrets/redis_password)"
    assert "redis_password" in redis["secrets"] and "environment" not in redis
    assert "redis_password" in " ".join(redis["healthcheck"]["test"])
    assert "redis-data:/data" in redis["volumes"]
    assert "ports" not in redis, "Redis must not be published outside the compose network"
    assert not redis["image"].endswith(":latest") and ":" in redis["image"]


def test_services_have_healthchecks_and_wait_for_redis():
    for name, service in COMPOSE["services"].items():
        assert service["healthcheck"]["test"], name
        if name != "redis":
            assert service["depends_on"]["redis"]["condition"] == "service_healthy"


def test_web_and_worker_settings_load_with_the_compose_environment(tmp_path):
    for name in ("web", "worker"):
        settings = service_settings(name, tmp_path, redis_password=URL_HOSTILE_PASSWORD, callback_secret="hmac")
        assert Redis.from_url(settings.redis_url).connection_pool.connection_kwargs["password"] == URL_HOSTILE_PASSWORD
        assert settings.redis_url.endswith("@redis:6379/0") and settings.callback_secret == "hmac"
    web = service_settings("web", tmp_path, api_tokens="t1,t2")
    assert web.rqstatus_user == "op" and web.rqstatus_password == "pw2" and web.listens_beyond_loopback
    assert web.api_tokens == {"t1", "t2"}


def test_workers_get_only_the_settings_they_use(tmp_path):
    """No dashboard credentials, no API tokens, nothing of the web's edge in a worker container."""
    worker = COMPOSE["services"]["worker"]
    assert set(worker["secrets"]) == {"redis_password", "callback_secret"}
    names = set(worker["environment"])
    assert not names & {"RQSTATUS_USER", "RQSTATUS_PASSWORD", "RQSTATUS_PASSWORD_FILE", "API_TOKENS",
                        "API_TOKENS_FILE", "ALLOWED_HOSTS", "BIND", "PORT", "TRUSTED_PROXIES"}, names
    settings = service_settings("worker", tmp_path, api_tokens="t1")
    assert settings.rqstatus_password is None and settings.api_tokens == frozenset()
    assert not settings.listens_beyond_loopback  # so no dashboard credentials are needed


def test_secrets_are_files_never_values_in_the_compose_file():
    """Every secret a service reads is a /run/secrets file of compose's secrets section."""
    for name in ("web", "worker"):
        environment = COMPOSE["services"][name]["environment"]
        assert not {"REDIS_PASSWORD", "RQSTATUS_PASSWORD", "API_TOKENS", "CALLBACK_SECRET"} & set(environment)
        assert "@" not in environment["REDIS_URL"], "the password comes from REDIS_PASSWORD_FILE"
        for secret in COMPOSE["services"][name]["secrets"]:
            assert secret in COMPOSE["secrets"] and COMPOSE["secrets"][secret]["file"].startswith("${SECRETS_DIR")


def test_a_password_with_url_characters_reaches_a_real_redis(tmp_path):
    """REDIS_PASSWORD_FILE is put into REDIS_URL percent-encoded: @ : / # % and spaces all work
    against a redis-server started as compose starts it (--requirepass with the file's text)."""
    server = RedisServer(appendonly=False, extra_args=["--requirepass", URL_HOSTILE_PASSWORD])
    (tmp_path / "redis_password").write_text(URL_HOSTILE_PASSWORD + "\n")
    env = {"REDIS_URL": f"redis://127.0.0.1:{server.port}/0", "REDIS_PASSWORD_FILE": str(tmp_path / "redis_password")}
    server._url = load_settings(env).redis_url  # how the server is reached once started
    server.start()
    try:
        client = Redis.from_url(load_settings(env).redis_url)
        assert client.ping() and client.acl_whoami() == "default"
    finally:
        server.stop()


def test_compose_answers_loopback_names_only(tmp_path):
    """compose publishes the web port on the host's loopback: a DNS-rebinding page must not
    be answered there, so the names are the loopback ones unless ALLOWED_HOSTS says otherwise,
    and `web`, the service's name on the compose network (Prometheus scrapes it by that name;
    a rebinding page's name is a public one, never a single label)."""
    web = COMPOSE["services"]["web"]
    assert web["ports"] == ["${PUBLISH_PORT:-127.0.0.1:8000}:8000"]
    assert service_settings("web", tmp_path).allowed_hosts == {"127.0.0.1", "localhost", "::1", "web"}
    assert '"web:8000"' in (PROJECT_ROOT / "README.md").read_text(), "README's scrape config names it so"
    public = service_settings("web", tmp_path, {"ALLOWED_HOSTS": "metaparse.example.com"})
    assert public.allowed_hosts == {"metaparse.example.com"}


def test_compose_passes_the_web_edge_settings_through(tmp_path):
    """Publishing the port needs no proxy; the edge's bounds are the operator's to set."""
    shipped = service_settings("web", tmp_path)
    assert (shipped.request_read_timeout, shipped.max_connections_per_address, shipped.trusted_proxies) == (10, 64, 0)
    chosen = service_settings("web", tmp_path, {"REQUEST_READ_TIMEOUT": "5", "MAX_CONNECTIONS_PER_ADDRESS": "256",
                                                "TRUSTED_PROXIES": "1"})
    assert (chosen.request_read_timeout, chosen.max_connections_per_address, chosen.trusted_proxies) == (5, 256, 1)


def test_compose_requires_the_dashboard_user():
    with pytest.raises(AssertionError, match="RQSTATUS_USER is required"):
        interpolate(COMPOSE["services"]["web"]["environment"]["RQSTATUS_USER"], {})


def test_env_example_lists_every_variable_compose_reads():
    read = set(INTERPOLATION.findall(COMPOSE_TEXT))
    example = (PROJECT_ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z_]+)=", example, re.M))
    assert read == listed, f"not in .env.example: {read - listed}; not read by compose: {listed - read}"
    for name in listed:  # each with a comment of its own or of the group just above it
        above = example.split(f"\n{name}=")[0].rstrip().splitlines()
        assert any(line.startswith("#") for line in above[-3:]), f"{name} has no comment"


def test_every_service_rotates_its_logs():
    for name, service in COMPOSE["services"].items():
        logging = service["logging"]
        assert logging["driver"] == "json-file", name
        assert {"max-size", "max-file"} <= set(logging["options"]), name


def test_the_web_journal_is_on_a_volume_the_image_prepares(tmp_path):
    """web/journal.py writes DATA_DIR/journal: in the container that folder is a named volume, so
    URLs answered 202 survive a new web container; the image creates it for its user."""
    data_dir = service_settings("web", tmp_path).data_dir
    journal = IMAGE_WORKDIR / data_dir.relative_to(PROJECT_ROOT) / "journal"
    mounts = dict(volume.split(":", 1) for volume in COMPOSE["services"]["web"]["volumes"])
    assert mounts["web-journal"] == str(journal)
    assert f"mkdir -p {journal}" in DOCKERFILE and "chown -R metaparse /app/var" in DOCKERFILE


def test_workers_serve_their_metrics_on_the_compose_network_only(tmp_path):
    worker = COMPOSE["services"]["worker"]
    settings = service_settings("worker", tmp_path)
    assert settings.metrics_port and settings.metrics_bind == "0.0.0.0"
    assert worker["expose"] == [str(settings.metrics_port)] and "ports" not in worker
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert f'names: ["worker"]' in readme and f"port: {settings.metrics_port}" in readme, "README's scrape config"


def test_web_is_published_on_loopback_by_default():
    [mapping] = COMPOSE["services"]["web"]["ports"]
    assert interpolate(mapping, {}) == "127.0.0.1:8000:8000"


def seconds(duration: str) -> int:
    """A compose duration in whole seconds (the forms used here: 90s, 1m30s)."""
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert match and duration, duration
    return int(match[1] or 0) * 60 + int(match[2] or 0)


def gunicorn_setting(name: str) -> object:
    """A constant of gunicorn.conf.py, read from its source (importing it configures logging)."""
    tree = ast.parse((PROJECT_ROOT / "gunicorn.conf.py").read_text())
    [value] = [node.value for node in tree.body if isinstance(node, ast.Assign)
               and any(isinstance(target, ast.Name) and target.id == name for target in node.targets)]
    return ast.literal_eval(value)


def test_worker_runs_the_worker_and_has_time_to_finish_a_job(tmp_path):
    """docker stop waits stop_grace_period, then SIGKILLs: longer than a running job can last
    (its timeout, then the watchdog's kill), with the compose file's JOB_TIMEOUT."""
    worker = COMPOSE["services"]["worker"]
    assert worker["command"] == ["python", "-m", "jobs.worker"]
    grace = seconds(interpolate(worker["stop_grace_period"], {}))
    assert grace > TIMINGS.longest_horse_life(service_settings("worker", tmp_path).job_timeout)


def test_web_has_time_for_gunicorns_graceful_stop():
    grace = seconds(interpolate(COMPOSE["services"]["web"]["stop_grace_period"], {}))
    assert grace > gunicorn_setting("graceful_timeout")


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
    for entry in (".env", ".venv", "var", ".git", "secrets"):
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
