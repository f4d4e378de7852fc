"""CI cannot go green by skipping: under CI=true a missing prerequisite stops `make test` with
a message naming it, and a test that skips fails; outside CI, skips stay skips that say why.

Each case runs pytest (or scripts/ensure-browser) as its own process, as `make test` does."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from config import PROJECT_ROOT
from tests.support.redis_server import database_of_test_process

ONE_PLAIN_TEST = "tests/test_prerequisites.py::test_test_processes_side_by_side_each_flush_a_database_of_their_own"
SKIPPING_TESTS = '''
import pytest

def test_skips_inside():
    pytest.skip("no widget on this machine")

@pytest.mark.skipif(True, reason="no gadget either")
def test_skipped_by_mark():
    pass

@pytest.mark.xfail(strict=True, reason="a known bug, not a skip")
def test_expected_to_fail():
    assert False

def test_passes():
    pass
'''


def run_pytest(args: list[str], cwd: Path, ci: bool, **env: str) -> subprocess.CompletedProcess:
    inherited = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith("PYTEST_")}  # xdist's, addopts
    environment = inherited | env | {"PYTHONPATH": str(PROJECT_ROOT)}
    if ci:
        environment["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd,
                          env=environment, capture_output=True, text=True, timeout=120)


def test_under_ci_missing_pages_stop_the_suite_before_any_test_and_say_where(tmp_path):
    absent = tmp_path / "no-pages-here"
    run = run_pytest([ONE_PLAIN_TEST], PROJECT_ROOT, ci=True, METAPARSE_PAGES_DIR=str(absent))
    assert run.returncode == 3, run.stdout + run.stderr
    assert "CI=true and the test suite's prerequisites are missing" in run.stdout + run.stderr
    assert str(absent / "MANIFEST.json") in run.stdout + run.stderr
    assert " passed" not in run.stdout


def test_outside_ci_missing_pages_leave_the_suite_running(tmp_path):
    run = run_pytest([ONE_PLAIN_TEST], PROJECT_ROOT, ci=False, METAPARSE_PAGES_DIR=str(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    assert " passed" in run.stdout


def write_skipping_suite(folder: Path) -> None:
    (folder / "conftest.py").write_text("from tests.support.prerequisites import pytest_runtest_makereport  # noqa\n")
    (folder / "test_skipping.py").write_text(SKIPPING_TESTS)


def test_under_ci_every_skip_fails_and_says_why(tmp_path):
    write_skipping_suite(tmp_path)
    run = run_pytest(["-rA", "test_skipping.py"], tmp_path, ci=True)
    assert run.returncode == 1, run.stdout
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in run.stdout  # a skip mark acts in setup: an error
    assert "nothing may skip" in run.stdout
    assert "no widget on this machine" in run.stdout and "no gadget either" in run.stdout


def test_outside_ci_skips_stay_skips(tmp_path):
    write_skipping_suite(tmp_path)
    run = run_pytest(["test_skipping.py"], tmp_path, ci=False)
    assert run.returncode == 0, run.stdout
    assert "1 passed, 2 skipped, 1 xfailed" in run.stdout


def run_ensure_browser(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess:
    """The script with a PATH that has neither a browser nor apt-get on it."""
    env = {"PATH": str(tmp_path)} | ({"CI": "true"} if ci else {})
    return subprocess.run(["/bin/bash", str(PROJECT_ROOT / "scripts" / "ensure-browser")], env=env,
                          capture_output=True, text=True, timeout=60)


def test_under_ci_a_missing_browser_stops_make_test(tmp_path):
    run = run_ensure_browser(tmp_path, ci=True)
    assert run.returncode == 1
    assert "chromium and chromedriver not found" in run.stderr and "CI=true" in run.stderr


def test_outside_ci_a_missing_browser_only_skips_the_browser_tests(tmp_path):
    run = run_ensure_browser(tmp_path, ci=False)
    assert run.returncode == 0
    assert "browser tests will be skipped" in run.stderr


def test_test_processes_side_by_side_each_flush_a_database_of_their_own():
    assert database_of_test_process("redis://:pw@127.0.0.1:6380/3", "master") == "redis://:pw@127.0.0.1:6380/3"
    assert database_of_test_process("redis://127.0.0.1:6380/3", "gw0") == "redis://127.0.0.1:6380/3"
    assert database_of_test_process("redis://127.0.0.1:6380/3", "gw1") == "redis://127.0.0.1:6380/4"
    assert database_of_test_process("rediss://h:6380", "gw2") == "rediss://h:6380/2"
    assert database_of_test_process("unix:///run/redis.sock?db=1", "gw1") == "unix:///run/redis.sock?db=2"
    assert database_of_test_process("redis://127.0.0.1:6380?db=3", "gw1") == "redis://127.0.0.1:6380?db=4"
