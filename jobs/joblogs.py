"""RQ workers whose own log lines carry the job: job_id, and the page job's url (logs.py
formats and filters the lines; this module knows which job is which).

The ticker's job is routine upkeep: its lines, and RQ's line dequeuing it, go to DEBUG.
"""
from __future__ import annotations

import contextlib
from typing import Any

import rq

import logs
from jobs.trust import JOB_FUNCTION, TICK_FUNCTION

logs.treat_as_routine(TICK_FUNCTION)


def job_fields(job: rq.job.Job) -> dict[str, Any]:
    """job_id, and url for a fetch job (its first argument is the canonical URL)."""
    fields: dict[str, Any] = {"job_id": job.id}
    try:
        function, args = job.func_name, job.args
    except Exception:  # noqa: BLE001 (an undecodable job still gets its id)
        return fields
    if function == JOB_FUNCTION and args and isinstance(args[0], str):
        fields["url"] = args[0]
    return fields


class JobLogMixin:
    """Binds the job's fields around execute_job: in a forking worker the work-horse inherits them."""

    def execute_job(self, job: rq.job.Job, queue: rq.Queue) -> Any:
        with logs.bound(**job_fields(job)), (logs.routine() if is_routine_job(job) else contextlib.nullcontext()):
            return super().execute_job(job, queue)  # type: ignore[misc]

    def run_maintenance_tasks(self) -> None:
        """Every few seconds, idle or not: its lines are routine."""
        with logs.routine():
            super().run_maintenance_tasks()  # type: ignore[misc]


def is_routine_job(job: rq.job.Job) -> bool:
    try:
        return job.func_name == TICK_FUNCTION
    except Exception:  # noqa: BLE001 (an undecodable job is not routine: its lines stay)
        return False


class JobLogWorker(JobLogMixin, rq.Worker):
    """rq.Worker (a work-horse forked per job) whose log lines about a job carry job_id and url."""


class JobLogSimpleWorker(JobLogMixin, rq.SimpleWorker):
    """rq.SimpleWorker (jobs run in-process: tests) whose log lines about a job carry job_id and url."""
