"""Faults for worker tests: a page fetch that nothing in Python can interrupt.

`python -m tests.support.worker_faults` runs `python -m jobs.worker` with stick_fetches()
applied: a fetch of a URL containing $METAPARSE_STUCK_URL blocks SIGALRM (RQ's death
penalty) and then sleeps in C *holding the GIL* (ctypes.PyDLL does not release it), so
neither the job's timeout nor any Python thread of the process can end it: only a kill
from outside the interpreter (the fork-mode worker's watchdog, the in-process KillTimer).
"""
from __future__ import annotations

import ctypes
import os
import signal

STUCK_URL_ENV = "METAPARSE_STUCK_URL"


def stuck_in_c(seconds: int = 3600) -> None:
    """Block SIGALRM, then sleep in C with the GIL held."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    ctypes.PyDLL(None).sleep(seconds)


def stick_fetches(marker: str | None = None) -> None:
    """Make jobs.fetch.Fetcher.fetch stick (stuck_in_c) for URLs containing marker."""
    import jobs.fetch

    marker = marker or os.environ.get(STUCK_URL_ENV)
    original = jobs.fetch.Fetcher.fetch

    def fetch(self, url: str):  # noqa: ANN001, ANN202
        if marker and marker in url:
            stuck_in_c()
        return original(self, url)

    jobs.fetch.Fetcher.fetch = fetch


if __name__ == "__main__":
    from jobs.worker.__main__ import main

    stick_fetches()
    main()
