"""README's Access and security section names, for each promise, the test that proves it:
every test it names exists (a renamed or deleted test would leave the promise unproven)."""
from __future__ import annotations

import re

from config import PROJECT_ROOT

SECTION = re.compile(r"^### Access and security\n(?P<body>.*?)^## ", re.S | re.M)
TEST_NAME = re.compile(r"\b(test_[a-z0-9_]+)\b")


def defined_tests() -> set[str]:
    names = set()
    for path in (PROJECT_ROOT / "tests").rglob("test_*.py"):
        names.update(re.findall(r"^def (test_[a-z0-9_]+)\(", path.read_text(), re.M))
    return names


def test_every_test_the_security_section_names_exists():
    section = SECTION.search((PROJECT_ROOT / "README.md").read_text())
    assert section, "README has no Access and security section"
    modules = {path.stem for path in (PROJECT_ROOT / "tests").rglob("test_*.py")}
    named = set(TEST_NAME.findall(section["body"])) - modules
    assert len(named) >= 30
    assert named - defined_tests() == set()


def test_every_test_the_promise_table_names_exists():
    """tests/README.md pairs each README promise with its test and the mutation that test catches."""
    table = (PROJECT_ROOT / "tests" / "README.md").read_text()
    named = set(re.findall(r"::(test_[a-z0-9_]+)", table))
    files = set(re.findall(r"\b((?:parsers/)?test_[a-z0-9_]+\.py)\b", table))
    assert len(named) >= 150 and len(files) >= 30
    assert named - defined_tests() == set()
    assert {name for name in files if not list((PROJECT_ROOT / "tests").glob(f"**/{name}"))} == set()
