"""Where the real saved pages live: ../shared/pages beside the project, or $METAPARSE_PAGES_DIR.

They are third-party pages read at test time and never copied into the project.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PAGES_DIR = Path(os.environ.get("METAPARSE_PAGES_DIR", PROJECT_ROOT.parent / "shared" / "pages"))
SKIP_REASON = f"real saved pages not found at {PAGES_DIR} (set METAPARSE_PAGES_DIR to their folder)"


def require_pages() -> Path:
    """The pages folder, or skip the calling test with the reason."""
    if not (PAGES_DIR / "MANIFEST.json").is_file():
        pytest.skip(SKIP_REASON)
    return PAGES_DIR


def manifest() -> list[dict]:
    return json.loads((require_pages() / "MANIFEST.json").read_text())


def read_page(relative: str) -> bytes:
    return (require_pages() / relative).read_bytes()
