"""What a worker process builds once and every job it runs shares: the settings, and the
Fetcher with its keep-alive connections (to sites, and its politeness's to Redis).

Built on first use in each process: a forked child (a work-horse, a fresh pool worker)
builds its own, so no socket is shared across a fork.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from config import Settings, load_settings
from jobs.fetch import Fetcher, Politeness


@dataclass
class ProcessContext:
    """Settings and the Fetcher (with its keep-alive connections) of one process."""

    pid: int
    settings: Settings
    fetcher: Fetcher


_context: ProcessContext | None = None


def process_context() -> ProcessContext:
    global _context
    if _context is None or _context.pid != os.getpid():  # a forked child must not share sockets
        settings = load_settings()
        _context = ProcessContext(os.getpid(), settings, make_fetcher(settings))
    return _context


def make_fetcher(settings: Settings) -> Fetcher:
    """The process's Fetcher: politeness shares per-host limits and robots.txt with every worker through Redis."""
    return Fetcher(settings, Politeness.connect(settings))
