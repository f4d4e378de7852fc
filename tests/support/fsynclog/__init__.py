"""Builds fsynclog.c (beside this file) into an LD_PRELOAD library for redis-server."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "fsynclog.c"


def have_compiler() -> bool:
    return shutil.which("cc") is not None


def build(directory: Path) -> Path:
    """The shared library, compiled into directory (cc, a few hundred ms)."""
    library = directory / "libfsynclog.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-Wall", "-o", str(library), str(SOURCE), "-ldl"],
                   check=True, capture_output=True)
    return library


def preload_env(library: Path, log: Path) -> dict[str, str]:
    """The environment additions for a redis-server whose fsyncs are logged to log."""
    return {"LD_PRELOAD": str(library), "FSYNC_LOG": str(log)}
