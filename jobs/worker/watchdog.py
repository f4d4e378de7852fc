"""The in-process worker's watchdog: SIGKILLs this very process once the job it runs is overdue.

In-process, the executing process is the worker itself: a job still running at
T0 + timeout + HARD_KILL_GRACE (timings.py) takes its worker down with it. The pool starts
a fresh worker, and the job comes back through its lease.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time

from jobs.worker.killtimer import KillTimer

log = logging.getLogger(__name__)

WATCHDOG_POLL = 0.25  # s between the watchdog thread's looks at the clock
WATCHDOG_LEAD = 0.5  # s before the kernel timer's deadline that the watchdog thread kills (saying why)


class Watchdog:
    """A daemon thread looks at the clock every WATCHDOG_POLL s and, from WATCHDOG_LEAD s
    before the deadline, logs which job outlived its time and SIGKILLs this process; the
    KillTimer fires at the deadline whatever the thread could do (a job holding the GIL in C
    code starves the thread: tests/jobs/worker/test_worker_inprocess.py shows it). Arming and disarming
    cost an assignment and a syscall: nothing is started or woken per job."""

    def __init__(self, worker_name: str, timer: KillTimer | None):
        self.worker_name = worker_name
        self.timer = timer
        self._armed: tuple[float, str] | None = None  # (deadline, job id)
        threading.Thread(target=self._watch, name="watchdog", daemon=True).start()

    def arm(self, deadline: float, job_id: str) -> None:
        if self.timer is not None:
            self.timer.arm(deadline)
        self._armed = (deadline, job_id)

    def disarm(self) -> None:
        self._armed = None
        if self.timer is not None:
            self.timer.disarm()

    def _watch(self) -> None:
        while True:
            time.sleep(WATCHDOG_POLL)
            armed = self._armed
            if armed is not None and time.monotonic() >= armed[0] - WATCHDOG_LEAD:
                log.error("Worker %s: job %s outlived its timeout: killing this worker (SIGKILL); the job's lease"
                          " brings it back", self.worker_name, armed[1], extra={"job_id": armed[1]})
                os.kill(os.getpid(), signal.SIGKILL)
