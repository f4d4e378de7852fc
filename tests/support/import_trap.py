"""A module whose import alone leaves a mark: a worker that imported a job's function before
deciding whether to run it would create the file named by $METAPARSE_IMPORT_TRAP."""
from __future__ import annotations

import os
from pathlib import Path

TRAP_ENV = "METAPARSE_IMPORT_TRAP"

if os.environ.get(TRAP_ENV):
    Path(os.environ[TRAP_ENV]).touch()


def spring(*args: object, **kwargs: object) -> str:
    """A job function (or RQ callback) a worker must never call: it marks the file again."""
    Path(os.environ[TRAP_ENV] + ".called").touch()
    return "called"
