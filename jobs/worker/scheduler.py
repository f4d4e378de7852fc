"""RQ's scheduler (delayed retries need it), run by the workers: one process per worker that
holds the scheduler locks, stopped (locks released) when its worker dies, and at once when asked."""
from __future__ import annotations

import signal
import time

from rq.scheduler import RQScheduler

from jobs.worker.killtimer import die_with_parent

SCHEDULER_NAP = 0.05  # s: the scheduler's sleep looks for a stop request this often

class CrashSafeScheduler(RQScheduler):
    """RQ's scheduler process, stopped (locks released) when its worker dies, and at once
    when asked: RQ's loop sleeps its whole interval first, and a leaving worker waits for
    its scheduler (an in-process worker leaves routinely, when worn)."""

    parent_pid: int | None = None

    def work(self):
        """RQ's loop (reacquire locks, heartbeat, enqueue due jobs, sleep), its sleep cut short by a stop."""
        if self.parent_pid is not None and not die_with_parent(signal.SIGTERM, self.parent_pid):
            return  # its worker is gone already
        self._install_signal_handlers()
        self.register_birth()
        while not self._stop_requested:
            if self.should_reacquire_locks:
                self.acquire_locks()
            self.heartbeat()
            self.enqueue_scheduled_jobs()
            self._nap(self.interval)
        self.stop()

    def _nap(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while not self._stop_requested and (left := until - time.monotonic()) > 0:
            time.sleep(min(left, SCHEDULER_NAP))
