"""The worker's clocks: a job's lease, the kill of an overdue job, and the invariant between them.

The lease. RQ treats a job as abandoned once its StartedJobRegistry entry's score (a unix
time) has passed, and StartedJobRegistry.cleanup (run by clean_registries in every
worker's maintenance) then retries it (or fails it when no retries are left). The worker
sets the score, in get_heartbeat_ttl, to a lease measured from the start of the execution:

    lease expires at  T0 + timeout + LEASE_GRACE - 1     (or later; never earlier)

T0 is when the worker began preparing the execution, timeout the job's own timeout, and -1
is RQ's truncation of the registry score to whole seconds. Heartbeats (fork mode) rewrite
the score with the same expression (remaining time + grace), so they never shorten it; an
in-process job sends none: its lease covers its whole life from T0.

The executing process's life is bounded, whichever comes first, by RQ's death penalty
(SIGALRM after `timeout`, raising in the job: a clean failure) and by a kill at
T0 + timeout + HARD_KILL_GRACE, whatever the job is doing (base.py kills a horse,
watchdog.py an in-process worker), and by its parent's death (killtimer.die_with_parent).

INVARIANT (no job runs twice at once). For every execution, its executing process has
exited (or, in fork mode, the horse's end been recorded) before any worker can see the
execution as abandoned:

    HARD_KILL_GRACE + KILL_SLACK  <  LEASE_GRACE - 1

where KILL_SLACK bounds the time between the kill deadline and the process being gone
(timer wake-up on a loaded host, SIGKILL delivery; in fork mode also RQ's failure
bookkeeping in the worker) and the difference between the worker's and the cleaner's
clocks. Then the execution ends by T0 + timeout + HARD_KILL_GRACE + KILL_SLACK, before the
lease expires, whether its worker is alive (watchdog), dead (PDEATHSIG; in-process the job
died with it) or blocked on Redis (the watchdogs are a thread and a kernel timer, the lease
does not depend on heartbeats). timings_hold() checks it; tests/jobs/worker/test_crash.py asserts it
for every timeout the service enqueues with, and kills stuck jobs in both modes to see the
executing process gone before its lease could be seen abandoned.

Abandoned-job detection delay: a job whose executing process dies at time t is retried by
the first maintenance pass after its lease ends, at most
T0 + timeout + LEASE_GRACE + MAINTENANCE_INTERVAL; then RQ's retry interval and the
scheduler's one-second poll (recovery_bound()).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from rq import Queue
from rq.job import Job

HARD_KILL_GRACE = 3  # s after a job's timeout before its executing process (horse, or worker) is SIGKILLed
LEASE_GRACE = 15  # s after a job's timeout before its execution counts as abandoned
KILL_SLACK = 10  # s allowed for a kill to land and be recorded, and for clock differences
MAINTENANCE_INTERVAL = 5  # s between maintenance passes (registry cleaning, claim sweep)
JOB_HEARTBEAT_INTERVAL = 10  # s between a busy worker's heartbeats
WORKER_TTL = 60  # s an idle worker's key outlives its last heartbeat (+60 s, RQ's margin)
CLAIM_SECONDS = 30  # s before a popped but unstarted job goes back to its queue
SCHEDULER_POLL_SECONDS = 1  # RQScheduler's interval
DEFAULT_JOB_TIMEOUT = Queue.DEFAULT_TIMEOUT  # what RQ applies to a job enqueued without one


@dataclass(frozen=True)
class Timings:
    """The worker's clocks; see the module docstring for how they relate."""

    hard_kill_grace: float = HARD_KILL_GRACE
    lease_grace: int = LEASE_GRACE
    kill_slack: float = KILL_SLACK
    maintenance_interval: int = MAINTENANCE_INTERVAL
    heartbeat_interval: int = JOB_HEARTBEAT_INTERVAL
    worker_ttl: int = WORKER_TTL
    claim_seconds: int = CLAIM_SECONDS

    def lease_seconds(self, timeout: float, working: float = 0.0) -> int:
        """TTL of a started execution `working` seconds in: the rest of its timeout, plus grace."""
        return max(0, math.ceil(timeout - working)) + self.lease_grace

    def earliest_abandonment(self, timeout: float) -> float:
        """Seconds after T0 before the execution can be seen as abandoned (-1: RQ truncates)."""
        return timeout + self.lease_grace - 1

    def hard_kill_after(self, timeout: float) -> float:
        """Seconds after T0 when a job still running is SIGKILLed: its horse, or in-process its worker."""
        return timeout + self.hard_kill_grace

    def longest_horse_life(self, timeout: float) -> float:
        """Seconds after T0 by which the executing process (horse, or in-process worker) is
        gone, and a horse's end recorded, at the latest."""
        return self.hard_kill_after(timeout) + self.kill_slack

    def holds_for(self, timeout: float) -> bool:
        """The invariant: the executing process is gone before its execution can be seen as abandoned."""
        return self.longest_horse_life(timeout) < self.earliest_abandonment(timeout)

    def recovery_bound(self, timeout: float, retry_interval: float) -> float:
        """Seconds after T0 by which a job whose worker died is queued again, at the latest."""
        return (timeout + self.lease_grace + self.maintenance_interval + retry_interval
                + SCHEDULER_POLL_SECONDS)


TIMINGS = Timings()


def timings_hold(timeouts: Iterable[float], timings: Timings = TIMINGS) -> bool:
    """The invariant for every timeout jobs are enqueued with (the entry point knows them)."""
    return all(timings.holds_for(timeout) for timeout in timeouts)


def job_timeout(job: Job) -> float:
    """The timeout RQ's death penalty applies to this job (-1: none)."""
    return job.timeout or DEFAULT_JOB_TIMEOUT
