"""The worker processes' share of the host: an address-space cap and a lower CPU priority."""
from __future__ import annotations

import os
import resource

from config import MIB

# Address-space cap per worker process (and work-horse): a backstop under the per-fetch
# body limit, so a parser blow-up on a hostile page fails that job with MemoryError
# instead of the host (an in-process worker then leaves for a fresh one).
ADDRESS_SPACE_LIMIT = 2048 * MIB


def limit_memory(limit: int = ADDRESS_SPACE_LIMIT) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit if hard == resource.RLIM_INFINITY else hard))


def lower_priority(nice: int) -> None:
    """Run the pool (and every worker it forks) at a lower CPU priority than the web API:
    a saturated box then keeps GET /info fast and only the backlog drains a little slower."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, 0, nice)  # raising nice needs no privilege; lowering it would
    if nice > 0 and os.getsid(0) == os.getpid():
        lower_session_priority(nice)


def lower_session_priority(nice: int) -> None:
    """With Linux's autogroup scheduling, each session shares the CPU equally whatever its
    processes' nice: a worker that leads its own session (a container's main process, a
    process started with setsid) sets its session's nice too. Never a shared session's."""
    try:
        with open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(nice))
    except OSError:
        pass  # no autogroup (kernel without it, or disabled): the process nice is enough
