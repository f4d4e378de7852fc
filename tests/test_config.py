"""config.load_settings: defaults, typed parsing, one-line errors naming the variable, consistency rules."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import config
from config import DEFAULT_REDIS_URL, MIB, Settings, load_settings
from errors import ConfigError

# Every variable load_settings reads; cleared from os.environ when a test reads the real environment.
ALL_VARIABLES = (
    "REDIS_URL", "PORT", "BIND", "WORKERS", "WEB_WORKERS", "WEB_CONNECTIONS", "REQUEST_READ_TIMEOUT",
    "MAX_CONNECTIONS_PER_ADDRESS", "RQSTATUS_USER", "RQSTATUS_PASSWORD", "API_TOKENS", "ALLOW_ANY_SITE", "FETCH_CONNECT_TO", "FETCH_CA_BUNDLE",
    "MAX_BODY_BYTES", "FETCH_DEADLINE", "FETCH_CONNECT_TIMEOUT", "FETCH_READ_TIMEOUT",
    "FETCH_MAX_REDIRECTS", "MAX_URLS_PER_REQUEST", "MAX_REQUEST_BYTES", "JOB_TIMEOUT",
    "FETCH_RETRIES", "RECORD_RETENTION", "USER_AGENT", "LOG_LEVEL",
)


def config_error(env: dict[str, str]) -> str:
    """The message of the ConfigError load_settings raises for env (fails the test if none)."""
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = str(info.value)
    assert message and "\n" not in message, f"not one line: {message!r}"
    return message


# --- defaults -------------------------------------------------------------------------------------


def test_empty_mapping_gives_documented_defaults():
    s = load_settings({})
    assert s == Settings(redis_url=DEFAULT_REDIS_URL)
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert (s.port, s.bind, s.workers, s.web_workers, s.web_connections) == (8000, "127.0.0.1", 2, 2, 1000)
    assert (s.request_read_timeout, s.max_connections_per_address) == (10.0, 64)
    assert s.rqstatus_user is None and s.rqstatus_password is None
    assert s.api_tokens == frozenset()
    assert s.allow_any_site is False
    assert dict(s.fetch_connect_to) == {}
    assert s.fetch_ca_bundle is None
    assert s.max_body_bytes == 5 * MIB
    assert (s.fetch_deadline, s.connect_timeout, s.read_timeout) == (20.0, 5.0, 10.0)
    assert (s.max_redirects, s.max_urls_per_request, s.max_request_bytes) == (5, 500, 64 * 1024)
    assert (s.job_timeout, s.fetch_retries, s.record_retention) == (60, 3, 30 * 86400)
    assert s.user_agent.startswith("metaparse/")
    assert s.log_level == "INFO"
    assert s.listens_beyond_loopback is False


# README's Settings table: each variable, the Settings attribute it sets, and its default as README states it.
README_DEFAULTS = {
    "REDIS_URL": ("redis_url", "redis://127.0.0.1:6379/0"),  # `make run`'s embedded one: tests/test_launch.py
    "PORT": ("port", 8000), "BIND": ("bind", "127.0.0.1"),
    "ALLOWED_HOSTS": ("allowed_hosts", frozenset({"127.0.0.1", "localhost", "::1"})),  # BIND is loopback
    "WORKERS": ("workers", 2), "WORKER_EXECUTION": ("worker_execution", "inprocess"),
    "WORKER_MAX_JOBS": ("worker_max_jobs", 1000), "WORKER_MAX_RSS_MIB": ("worker_max_rss_mib", 150),
    "WEB_WORKERS": ("web_workers", 2), "WEB_CONNECTIONS": ("web_connections", 1000),
    "REQUEST_READ_TIMEOUT": ("request_read_timeout", 10.0),
    "MAX_CONNECTIONS_PER_ADDRESS": ("max_connections_per_address", 64),
    "WORKER_NICE": ("worker_nice", 10),
    "RQSTATUS_USER": ("rqstatus_user", None), "RQSTATUS_PASSWORD": ("rqstatus_password", None),
    "API_TOKENS": ("api_tokens", frozenset()),
    "RATE_LIMITS": ("rate_limits", True),
    "RATE_LIMIT_WRITE": ("rate_limit_write", "60/minute"), "RATE_LIMIT_READ": ("rate_limit_read", "600/minute"),
    "TRUSTED_PROXIES": ("trusted_proxies", 0), "CORS_ORIGINS": ("cors_origins", frozenset()),
    "ALLOW_ANY_SITE": ("allow_any_site", False),
    "FETCH_CONNECT_TO": ("fetch_connect_to", {}), "FETCH_CA_BUNDLE": ("fetch_ca_bundle", None),
    "MAX_BODY_BYTES": ("max_body_bytes", 5 * 1024 * 1024),
    "FETCH_DEADLINE": ("fetch_deadline", 20.0),
    "FETCH_CONNECT_TIMEOUT": ("connect_timeout", 5.0), "FETCH_READ_TIMEOUT": ("read_timeout", 10.0),
    "FETCH_MAX_REDIRECTS": ("max_redirects", 5),
    "FETCH_HOST_CONCURRENCY": ("fetch_host_concurrency", 2),
    "FETCH_HOST_DELAY": ("fetch_host_delay", 1.0), "FETCH_HOST_DELAYS": ("fetch_host_delays", {}),
    "FETCH_HOST_DELAY_MAX": ("fetch_host_delay_max", 60.0),
    "ROBOTS_TXT": ("robots_txt", True), "ROBOTS_CACHE_SECONDS": ("robots_cache_seconds", 3600),
    "FETCH_RETRIES": ("fetch_retries", 3),
    "JOB_TIMEOUT": ("job_timeout", 60),
    "MAX_URLS_PER_REQUEST": ("max_urls_per_request", 500), "MAX_REQUEST_BYTES": ("max_request_bytes", 64 * 1024),
    "RECORD_RETENTION": ("record_retention", 30 * 86400),
    "CALLBACK_SECRET": ("callback_secret", None),
    "NEWS_RECRAWL_INTERVAL": ("news_recrawl_interval", 900), "NEWS_RECRAWL_FOR": ("news_recrawl_for", 7 * 86400),
    "SNAPSHOTS_KEPT": ("snapshots_kept", 20), "TICK_SECONDS": ("tick_seconds", 5),
    "DATA_DIR": ("data_dir", config.PROJECT_ROOT / "var"),
    "LOG_FORMAT": ("log_format", "auto"),
    "METRICS_PORT": ("metrics_port", 0), "METRICS_BIND": ("metrics_bind", "127.0.0.1"),
}
# In the table without a default here: README states none, or it is not read by config.py.
NO_DEFAULT_STATED = {"USER_AGENT", "LOG_LEVEL"}
SECRET_FILES = {"REDIS_PASSWORD_FILE", "RQSTATUS_PASSWORD_FILE", "API_TOKENS_FILE", "CALLBACK_SECRET_FILE"}
# tests/test_metrics.py: DATA_DIR/metrics; the secret files (unset: the variable): below
DEFAULTS_TESTED_ELSEWHERE = {"PROMETHEUS_MULTIPROC_DIR"} | SECRET_FILES


@pytest.mark.parametrize("variable", README_DEFAULTS)
def test_each_default_is_the_one_the_readme_states(variable):
    attribute, expected = README_DEFAULTS[variable]
    value = getattr(load_settings({}), attribute)
    assert value == expected and type(value) is type(expected)


def test_every_variable_of_the_readme_settings_table_has_its_default_checked():
    table = re.search(r"^## Settings\n(?P<body>.*?)^## ", (config.PROJECT_ROOT / "README.md").read_text(), re.S | re.M)
    assert table, "README has no Settings section"
    first_cells = [row.split("|")[1] for row in table["body"].splitlines() if row.startswith("| `")]
    named = {name for cell in first_cells for name in re.findall(r"`([A-Z_]+)`", cell)}
    assert named == set(README_DEFAULTS) | NO_DEFAULT_STATED | DEFAULTS_TESTED_ELSEWHERE


@pytest.mark.parametrize("name", ["PORT", "WORKERS", "REDIS_URL", "LOG_LEVEL", "ALLOW_ANY_SITE", "USER_AGENT"])
@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_value_means_default(name, blank):
    assert load_settings({name: blank}) == load_settings({})


def test_settings_are_frozen():
    s = load_settings({})
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


# --- typed values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("env, attribute, expected", [
    ({"PORT": "8080"}, "port", 8080),
    ({"PORT": " 8080 "}, "port", 8080),
    ({"PORT": "1"}, "port", 1),
    ({"PORT": "65535"}, "port", 65535),
    ({"WORKERS": "64"}, "workers", 64),
    ({"WEB_WORKERS": "3"}, "web_workers", 3),
    ({"WEB_CONNECTIONS": "10"}, "web_connections", 10),
    ({"REQUEST_READ_TIMEOUT": "2.5"}, "request_read_timeout", 2.5),
    ({"MAX_CONNECTIONS_PER_ADDRESS": "0"}, "max_connections_per_address", 0),
    ({"WORKER_NICE": "0"}, "worker_nice", 0),
    ({"FETCH_MAX_REDIRECTS": "0"}, "max_redirects", 0),
    ({"FETCH_RETRIES": "0"}, "fetch_retries", 0),
    ({"MAX_BODY_BYTES": "1024"}, "max_body_bytes", 1024),
    ({"FETCH_DEADLINE": "30.5", "JOB_TIMEOUT": "60"}, "fetch_deadline", 30.5),
    ({"FETCH_READ_TIMEOUT": "2.5"}, "read_timeout", 2.5),
    ({"FETCH_CONNECT_TIMEOUT": "0.1"}, "connect_timeout", 0.1),
    ({"RECORD_RETENTION": "60"}, "record_retention", 60),
    ({"USER_AGENT": "bot/2"}, "user_agent", "bot/2"),
    ({"LOG_LEVEL": "debug"}, "log_level", "DEBUG"),
    ({"LOG_LEVEL": "Warning"}, "log_level", "WARNING"),
    ({"REDIS_URL": "rediss://h:6380/1"}, "redis_url", "rediss://h:6380/1"),
    ({"REDIS_URL": "unix:///tmp/redis.sock"}, "redis_url", "unix:///tmp/redis.sock"),
    ({"BIND": "::1"}, "bind", "::1"),
])
def test_typed_values_parse(env, attribute, expected):
    value = getattr(load_settings(env), attribute)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "On", " on "])
def test_allow_any_site_true(raw):
    assert load_settings({"ALLOW_ANY_SITE": raw}).allow_any_site is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "OFF"])
def test_allow_any_site_false(raw):
    assert load_settings({"ALLOW_ANY_SITE": raw}).allow_any_site is False


@pytest.mark.parametrize("name, raw", [
    ("PORT", "abc"),
    ("PORT", "70000"),
    ("PORT", "0"),
    ("PORT", "-1"),
    ("PORT", "80.5"),
    ("WORKERS", "0"),
    ("WORKERS", "65"),
    ("WEB_WORKERS", "0"),
    ("WEB_CONNECTIONS", "many"),
    ("WEB_CONNECTIONS", "9"),
    ("REQUEST_READ_TIMEOUT", "0"),
    ("REQUEST_READ_TIMEOUT", "soon"),
    ("MAX_CONNECTIONS_PER_ADDRESS", "-1"),
    ("MAX_BODY_BYTES", "1023"),
    ("FETCH_DEADLINE", "abc"),
    ("FETCH_DEADLINE", "0"),
    ("FETCH_DEADLINE", "nan"),
    ("FETCH_DEADLINE", "inf"),
    ("FETCH_CONNECT_TIMEOUT", "-5"),
    ("FETCH_READ_TIMEOUT", "601"),
    ("FETCH_MAX_REDIRECTS", "31"),
    ("MAX_URLS_PER_REQUEST", "0"),
    ("MAX_REQUEST_BYTES", "10"),
    ("JOB_TIMEOUT", "4"),
    ("FETCH_RETRIES", "21"),
    ("RECORD_RETENTION", "59"),
    ("ALLOW_ANY_SITE", "maybe"),
    ("ALLOW_ANY_SITE", "2"),
    ("LOG_LEVEL", "verbose"),
    ("REDIS_URL", "http://x"),
    ("REDIS_URL", "localhost:6379"),
    ("REDIS_URL", "127.0.0.1:6379"),
    ("FETCH_CONNECT_TO", "example.com:443:1.2.3.4"),
    ("FETCH_CONNECT_TO", "example.com:https:1.2.3.4:443"),
    ("FETCH_CONNECT_TO", "example.com:443:::1:443"),
    ("FETCH_CONNECT_TO", "example.com:443:1.2.3.4:443,garbage"),
    ("FETCH_CONNECT_TO", "example.com:443:1.2.3.4:443:5"),
    ("FETCH_CONNECT_TO", "example.com:99999:1.2.3.4:443"),
    ("FETCH_CONNECT_TO", "example.com:443:1.2.3.4:70000"),
    ("FETCH_CA_BUNDLE", "/nonexistent/ca-bundle.pem"),
    ("WORKER_NICE", "20"),
    ("WORKER_EXECUTION", "thread"),
    ("WORKER_MAX_JOBS", "-1"),
    ("WORKER_MAX_RSS_MIB", "lots"),
    ("RATE_LIMITS", "sometimes"),
    ("RATE_LIMIT_WRITE", "sixty/minute"),
    ("RATE_LIMIT_READ", "0/minute"),
    ("TRUSTED_PROXIES", "11"),
    ("FETCH_HOST_CONCURRENCY", "0"),
    ("FETCH_HOST_DELAY", "-1"),
    ("FETCH_HOST_DELAYS", "www.goodreads.com:2"),
    ("FETCH_HOST_DELAYS", "example.org=soon"),
    ("FETCH_HOST_DELAY_MAX", "3601"),
    ("ROBOTS_TXT", "maybe"),
    ("ROBOTS_CACHE_SECONDS", "86401"),
    ("NEWS_RECRAWL_INTERVAL", "59"),
    ("NEWS_RECRAWL_FOR", "-1"),
    ("SNAPSHOTS_KEPT", "0"),
    ("TICK_SECONDS", "301"),
    ("LOG_FORMAT", "xml"),
])
def test_bad_value_refused_naming_variable(name, raw):
    message = config_error({name: raw})
    assert name in message


@pytest.mark.parametrize("raw, expected", [
    ("https://app.example.com", {"https://app.example.com"}),
    (" HTTPS://App.Example.com:443/ , http://localhost:3000", {"https://app.example.com", "http://localhost:3000"}),
    ("http://[::1]:8080,http://127.0.0.1:80", {"http://[::1]:8080", "http://127.0.0.1"}),
])
def test_cors_origins_are_spelled_as_browsers_send_them(raw, expected):
    assert load_settings({"CORS_ORIGINS": raw}).cors_origins == expected


@pytest.mark.parametrize("raw", ["*", "app.example.com", "https://app.example.com/api", "ftp://app.example.com",
                                 "https://user@app.example.com", "https://app.example.com?x=1", "null",
                                 "https://app.example.com:99999"])
def test_cors_origins_refuse_anything_but_origins(raw):
    message = config_error({"CORS_ORIGINS": raw})
    assert message.startswith(f"CORS_ORIGINS item {raw!r} is not an origin") and "list each origin" in message


def test_error_quotes_bad_value():
    assert "abc" in config_error({"PORT": "abc"})
    assert "70000" in config_error({"PORT": "70000"})
    assert "maybe" in config_error({"ALLOW_ANY_SITE": "maybe"})
    assert "garbage" in config_error({"FETCH_CONNECT_TO": "garbage"})


def test_ca_bundle_existing_file_accepted(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert load_settings({"FETCH_CA_BUNDLE": str(bundle)}).fetch_ca_bundle == str(bundle)


def test_ca_bundle_directory_refused(tmp_path):
    assert "FETCH_CA_BUNDLE" in config_error({"FETCH_CA_BUNDLE": str(tmp_path)})


# --- FETCH_CONNECT_TO -----------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("example.com:443:127.0.0.1:8443", {("example.com", 443): ("127.0.0.1", 8443)}),
    ("Example.COM:80:10.0.0.5:8080", {("example.com", 80): ("10.0.0.5", 8080)}),
    ("a.test:443:[::1]:8443", {("a.test", 443): ("::1", 8443)}),
    ("a.test:443:[2001:db8::1]:443", {("a.test", 443): ("2001:db8::1", 443)}),
    ("a.test:443:backend.internal:9000", {("a.test", 443): ("backend.internal", 9000)}),
    (
        "a.test:443:127.0.0.1:1001, b.test:80:[::1]:1002 ,,a.test:80:127.0.0.2:1003",
        {
            ("a.test", 443): ("127.0.0.1", 1001),
            ("b.test", 80): ("::1", 1002),
            ("a.test", 80): ("127.0.0.2", 1003),
        },
    ),
    (" , ", {}),
])
def test_connect_to_parsed(raw, expected):
    assert dict(load_settings({"FETCH_CONNECT_TO": raw}).fetch_connect_to) == expected


# --- API_TOKENS -----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("", frozenset()),
    ("tok1", {"tok1"}),
    ("tok1,tok2", {"tok1", "tok2"}),
    ("tok1,,tok2,", {"tok1", "tok2"}),
    (" , ,", frozenset()),
    ("tok1, tok2 ,tok3", {"tok1", "tok2", "tok3"}),
    ("tok1,tok1", {"tok1"}),
])
def test_api_tokens_split(raw, expected):
    tokens = load_settings({"API_TOKENS": raw}).api_tokens
    assert isinstance(tokens, frozenset)
    assert tokens == frozenset(expected)


# --- consistency rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("env", [
    {"RQSTATUS_USER": "admin"},
    {"RQSTATUS_PASSWORD": "secret"},
    {"RQSTATUS_USER": "admin", "RQSTATUS_PASSWORD": "   "},
])
def test_rqstatus_credentials_must_come_together(env):
    message = config_error(env)
    assert "RQSTATUS_USER" in message and "RQSTATUS_PASSWORD" in message


def test_rqstatus_credentials_accepted_together():
    s = load_settings({"RQSTATUS_USER": "admin", "RQSTATUS_PASSWORD": "secret"})
    assert (s.rqstatus_user, s.rqstatus_password) == ("admin", "secret")


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "192.168.1.10"])
def test_public_bind_needs_rqstatus_credentials(bind):
    message = config_error({"BIND": bind})
    assert "BIND" in message and bind in message and "RQSTATUS_USER" in message


@pytest.mark.parametrize("bind", ["0.0.0.0", "::"])
def test_public_bind_with_credentials_accepted(bind):
    s = load_settings({"BIND": bind, "RQSTATUS_USER": "u", "RQSTATUS_PASSWORD": "p"})
    assert s.bind == bind
    assert s.listens_beyond_loopback is True


@pytest.mark.parametrize("bind", ["127.0.0.1", "localhost", "::1"])
def test_loopback_bind_needs_no_credentials(bind):
    s = load_settings({"BIND": bind})
    assert s.listens_beyond_loopback is False


@pytest.mark.parametrize("env", [
    {"JOB_TIMEOUT": "20"},  # equal to the default FETCH_DEADLINE
    {"JOB_TIMEOUT": "10"},
    {"FETCH_DEADLINE": "60"},  # equal to the default JOB_TIMEOUT
    {"FETCH_DEADLINE": "100", "JOB_TIMEOUT": "99"},
])
def test_job_timeout_must_exceed_fetch_deadline(env):
    message = config_error(env)
    assert "JOB_TIMEOUT" in message and "FETCH_DEADLINE" in message


def test_job_timeout_just_above_fetch_deadline_accepted():
    s = load_settings({"JOB_TIMEOUT": "21", "FETCH_DEADLINE": "20.5"})
    assert (s.job_timeout, s.fetch_deadline) == (21, 20.5)


def test_fetch_deadline_below_connect_timeout_refused():
    message = config_error({"FETCH_DEADLINE": "4", "FETCH_CONNECT_TIMEOUT": "5"})
    assert "FETCH_DEADLINE" in message and "FETCH_CONNECT_TIMEOUT" in message


# --- where values come from -----------------------------------------------------------------------


@pytest.fixture
def project_dotenv(tmp_path, monkeypatch):
    """A .env in a stand-in project root holding PORT=9999, with no config variable in os.environ."""
    monkeypatch.setattr(config, "PROJECT_ROOT", tmp_path)
    for name in ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".env").write_text("PORT=9999\nUSER_AGENT=from-dotenv\n")
    return tmp_path


def test_dotenv_read_without_mapping(project_dotenv):
    # Control for the next test: the .env really is picked up when no mapping is given.
    s = load_settings()
    assert (s.port, s.user_agent) == (9999, "from-dotenv")


def test_os_environ_overrides_dotenv(project_dotenv, monkeypatch):
    monkeypatch.setenv("PORT", "7000")
    s = load_settings()
    assert (s.port, s.user_agent) == (7000, "from-dotenv")


def test_dotenv_not_read_with_explicit_mapping(project_dotenv):
    s = load_settings({})
    assert s.port == 8000
    assert s.user_agent == Settings.user_agent


def test_os_environ_not_read_with_explicit_mapping(monkeypatch):
    monkeypatch.setenv("PORT", "7000")
    monkeypatch.setenv("ALLOW_ANY_SITE", "maybe")
    assert os.environ["PORT"] == "7000"
    s = load_settings({"WORKERS": "3"})
    assert (s.port, s.workers, s.allow_any_site) == (8000, 3, False)


CREDENTIALS = {"RQSTATUS_USER": "u", "RQSTATUS_PASSWORD": "p"}


@pytest.mark.parametrize("env, expected", [
    ({}, {"127.0.0.1", "localhost", "::1"}),  # loopback answers loopback names only
    ({"BIND": "::1"}, {"127.0.0.1", "localhost", "::1"}),
    ({"BIND": "0.0.0.0", **CREDENTIALS}, set()),  # beyond loopback: any, unless listed
    ({"ALLOWED_HOSTS": "*"}, set()),
    ({"ALLOWED_HOSTS": "Metaparse.Example, [::1] ,10.0.0.5"}, {"metaparse.example", "::1", "10.0.0.5"}),
    ({"BIND": "0.0.0.0", "ALLOWED_HOSTS": "metaparse.example", **CREDENTIALS}, {"metaparse.example"}),
])
def test_allowed_hosts(env, expected):
    assert load_settings(env).allowed_hosts == frozenset(expected)


@pytest.mark.parametrize("bind, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
                                            ("::ffff:127.0.0.1", True), ("localhost", True), ("0.0.0.0", False),
                                            ("::", False), ("10.0.0.5", False), ("metaparse.internal", False)])
def test_loopback_is_told_by_address(bind, loopback):
    settings = load_settings({"BIND": bind, **CREDENTIALS})
    assert settings.listens_beyond_loopback is not loopback
    assert bool(settings.allowed_hosts) is loopback


@pytest.mark.parametrize("raw", ["bad host", "a/b", "x.example,,@", ",", "metaparse.example:8443", "[::1]:8000",
                                 "10.0.0.5:80"])
def test_allowed_hosts_refuses_what_is_not_a_host_name(raw):
    with pytest.raises(ConfigError, match="ALLOWED_HOSTS"):
        load_settings({"ALLOWED_HOSTS": raw})


# --- secrets from files (docker compose secrets) ------------------------------------------------


@pytest.mark.parametrize("variable, attribute, text, expected", [
    ("RQSTATUS_PASSWORD", "rqstatus_password", "s3cret pass\n", "s3cret pass"),
    ("API_TOKENS", "api_tokens", "t1, t2\r\n", frozenset({"t1", "t2"})),
    ("CALLBACK_SECRET", "callback_secret", "hmac-key", "hmac-key"),
    ("CALLBACK_SECRET", "callback_secret", "key\n\n", "key"),  # as the shell's $(cat file) reads it for Redis
    ("CALLBACK_SECRET", "callback_secret", "", None),  # compose needs a file for every secret: empty is off
])
def test_a_secret_comes_from_the_file_its_file_variable_names(tmp_path, variable, attribute, text, expected):
    (tmp_path / "secret").write_text(text, newline="")
    env = {"RQSTATUS_USER": "op", "RQSTATUS_PASSWORD": "pw"}  # set together, or not at all
    env.pop(variable, None)
    env[f"{variable}_FILE"] = str(tmp_path / "secret")
    assert getattr(load_settings(env), attribute) == expected


def test_a_secret_and_its_file_together_or_an_unreadable_file_stop_start_up(tmp_path):
    (tmp_path / "secret").write_text("x")
    both = config_error({"CALLBACK_SECRET": "a", "CALLBACK_SECRET_FILE": str(tmp_path / "secret")})
    assert both == "CALLBACK_SECRET and CALLBACK_SECRET_FILE are both set: give the secret in one place"
    missing = config_error({"API_TOKENS_FILE": str(tmp_path / "nothing")})
    assert missing.startswith(f"API_TOKENS_FILE={tmp_path / 'nothing'} cannot be read: ")


@pytest.mark.parametrize("url, expected", [
    ("redis://redis:6379/0", "redis://:p%40ss%3Aw%2Fo%23rd%25@redis:6379/0"),
    ("rediss://app@redis.example:6380/2", "rediss://app:p%40ss%3Aw%2Fo%23rd%25@redis.example:6380/2"),
    ("unix:///run/redis.sock?db=1", "unix://:p%40ss%3Aw%2Fo%23rd%25@/run/redis.sock?db=1"),
])
def test_the_redis_password_file_is_put_into_the_url_percent_encoded(tmp_path, url, expected):
    """tests/test_deploy.py::test_a_password_with_url_characters_reaches_a_real_redis logs in with it."""
    (tmp_path / "redis_password").write_text("p@ss:w/o#rd%\n")
    assert load_settings({"REDIS_URL": url, "REDIS_PASSWORD_FILE": str(tmp_path / "redis_password")}).redis_url == expected


def test_a_redis_password_in_the_url_and_in_a_file_stops_start_up(tmp_path):
    (tmp_path / "redis_password").write_text("pw")
    message = config_error({"REDIS_URL": "redis://:other@redis:6379/0",
                            "REDIS_PASSWORD_FILE": str(tmp_path / "redis_password")})
    assert message == "REDIS_URL has a password and REDIS_PASSWORD_FILE is set: give it in one place"


ENTRY_POINTS = {  # every process the Procfile, the Dockerfile and `make run` start
    "web": ["gunicorn", "--config", "gunicorn.conf.py", "--check-config", "server:create_app()"],
    "worker": ["python", "-m", "jobs.worker"],
    "worker health check": ["python", "-m", "jobs.worker", "--check"],
    "make run": ["python", "launch.py"],
}


@pytest.mark.parametrize("command", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
def test_every_entry_point_says_a_bad_setting_in_one_line_and_exits(command):
    """One home for "load the settings or exit" (config.load_settings_or_exit): each process
    a supervisor starts ends at once with one readable line, not a traceback."""
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PORT": "eighty",
           "REDIS_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run(command, cwd=config.PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "configuration error: PORT='eighty' is not a whole number"
    assert "Traceback" not in done.stderr
