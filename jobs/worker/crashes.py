"""A job whose last run died: the runtime sees it, the job's own side says what it leaves behind.

A run may die where the job's own code cannot react: its work-horse killed (fork mode), or
its worker killed (in-process, the worker is the executing process) and its lease then found
expired by another worker's maintenance (StartedJobRegistry.cleanup calls the worker's
exception handlers with AbandonedJobError before it retries or fails the job). When RQ will
not run the job again (no retries left), the worker calls the crash handler given for the
job's function. The runtime knows no job: the entry point (jobs/worker/__main__.py) says
which handler goes with which job function; the page job's saves a `failed` record, so a
page never ends without one. A function without a handler just fails in RQ's registry.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType

from rq.exceptions import AbandonedJobError
from rq.job import Job

log = logging.getLogger(__name__)

CrashHandler = Callable[[Job, str], None]  # (the job, why its last run died)
ABANDONED = "the worker running this page died and no retries are left"  # the text records have always shown


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, as RQ may hash its handlers
class CrashHandlers:
    """The crash handler of each job function, by the dotted name RQ stores in a job."""

    by_function: Mapping[str, CrashHandler] = field(default_factory=lambda: MappingProxyType({}))

    def last_run_died(self, job: Job, reason: str) -> None:
        """Call the job function's handler, if it has one; its failure is logged, never raised
        (the worker's own bookkeeping of the job comes next)."""
        try:
            handler = self.by_function.get(job.func_name)
        except Exception as exc:  # an undecodable job: no function to look up
            log.warning("job %s: no crash handler, its function cannot be read (%r)", job.id, exc)
            return
        if handler is None:
            return
        try:
            handler(job, reason)
        except Exception:
            log.exception("the crash handler of job %s failed", job.id)

    def on_abandoned(self, job: Job, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                     traceback: TracebackType | None) -> bool:
        """RQ exception handler: StartedJobRegistry.cleanup calls it for an abandoned job just
        before it retries the job, or fails it when no retries are left: the last run died."""
        if exc_type is AbandonedJobError and not job.should_retry:
            self.last_run_died(job, ABANDONED)
        return True  # let the other handlers run
