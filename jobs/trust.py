"""Redis is a trust boundary: what the service reads from an RQ job hash, and what it runs.

Anyone who can write to Redis can write a job hash. RQ's defaults would then run code in
our processes: its default serializer is pickle (reading a forged `meta`, `data` or result
runs whatever the pickle names), and a worker imports and calls whatever function a job
names, then its callbacks, and POSTs to its webhooks. So:

- JsonJob reads and writes JSON whatever serializer its caller passes (rq-dashboard builds
  some of its jobs without one), and reads a job whose fields are not JSON, or not of the
  shape RQ writes, as *unreadable* (`unreadable` set, description saying so, meta and
  results empty) instead of failing or loading it. It never imports an RQ callback or sends
  a webhook a job names (RQ's registry cleaning would, in any process that reads jobs).
  JsonQueue, JsonWorker and json_registry() hand out JsonJobs only.
- ServiceJob, the workers' job class, runs only the service's own job functions
  (JOB_FUNCTIONS): anything else, an object method, an RQ callback or a webhook is refused
  with ForeignJob before the function is imported, and the job fails with that reason.

Keeping Redis private (a password, a private network, no other writers) is still the
operator's part: whoever writes to it can delete or rewrite records and queues.
"""
from __future__ import annotations

import logging
from typing import Any, NoReturn

from redis import Redis
from rq import Queue, Worker
from rq.exceptions import DeserializationError
from rq.job import Job
from rq.registry import BaseRegistry
from rq.serializers import JSONSerializer

from errors import ForeignJob

log = logging.getLogger(__name__)

# The service's job functions, by the dotted name RQ stores in a job: the only ones a worker runs.
JOB_FUNCTION = "jobs.tasks.fetch_and_parse"  # one page: fetch, parse, save
TICK_FUNCTION = "jobs.ticker.tick"  # maintenance: re-crawls and callback sweeps
DELIVERY_FUNCTION = "jobs.callbacks.deliver"  # a batch's completion callback
JOB_FUNCTIONS = frozenset({JOB_FUNCTION, TICK_FUNCTION, DELIVERY_FUNCTION})
UNREADABLE = "(unreadable: the fields of this job are not JSON, so the service did not write it)"


class NotJsonJob(ForeignJob, DeserializationError):
    """A foreign job whose fields are not JSON; a DeserializationError too, which RQ's failure
    bookkeeping expects from a job it cannot read (it then logs the job without its arguments)."""


class JsonJob(Job):
    """An RQ job read and written as JSON, whatever serializer its caller names."""

    unreadable: bool = False

    def __init__(self, id: str | None = None, connection: Redis | None = None, serializer: Any = None):
        # Set after RQ's __init__, not passed to it: RQ would check JSONSerializer against its
        # runtime Protocol for every job: ~8 us each, ~7% of the CPU of a 100-URL POST /parse.
        super().__init__(id, connection)
        self.serializer = JSONSerializer

    def restore(self, raw_data: dict) -> Any:
        restored = super().restore(raw_data)
        if self._unreadable_meta is not None or type(self.meta) is not dict or not self._data_is_readable():
            self.mark_unreadable()
        return restored

    def _data_is_readable(self) -> bool:
        """The data is JSON of RQ's shape: a function name, then arguments as a list and a dict."""
        try:
            self._deserialize_data()
        except DeserializationError:
            return False
        return type(self._func_name) is str and type(self._args) is list and type(self._kwargs) is dict

    def mark_unreadable(self) -> None:
        self.unreadable = True
        self.meta = {}
        self.description = UNREADABLE

    def get_meta(self, refresh: bool = True) -> dict:
        if self.unreadable:
            return {}
        try:
            return super().get_meta(refresh)
        except ValueError:  # json and UTF-8 decoding errors
            self.mark_unreadable()
            return {}

    def get_call_string(self) -> str | None:
        return UNREADABLE if self.unreadable else super().get_call_string()

    # Results live apart from the hash (a stream per job): a forged one is read as no result.

    def latest_result(self, timeout: int = 0) -> Any:
        try:
            return super().latest_result(timeout)
        except Exception:  # noqa: BLE001 (base64, zlib, UTF-8 or JSON: any of them means unreadable)
            log.warning("job %s: its latest result is not readable as JSON; shown as none", self.id)
            return None

    def results(self) -> list:
        try:
            return super().results()
        except Exception:  # noqa: BLE001 (as in latest_result)
            log.warning("job %s: its results are not readable as JSON; shown as none", self.id)
            return []

    # The service's jobs have no RQ callbacks and no webhooks: one a job names is neither
    # imported nor sent (a ServiceJob refuses to run such a job at all).

    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None

    def send_webhooks(self, *args: Any, **kwargs: Any) -> None:
        if self.webhooks:
            log.warning("job %s: its webhooks are not sent (the service's jobs have none)", self.id)


class ServiceJob(JsonJob):
    """The workers' job class: runs the service's own job functions and nothing else."""

    allowed_functions: frozenset[str] = JOB_FUNCTIONS

    @property
    def func(self) -> Any:
        reason = self.refusal()
        if reason is not None:
            self.refuse(reason)
        return super().func

    @property
    def func_name(self) -> str:
        """RQ reads it before the function (for the process title): a job that is not JSON is
        refused there (restore() marked it unreadable when it read the job's data)."""
        if self.unreadable:
            self.refuse("its fields are not the JSON this service writes", NotJsonJob)
        return super().func_name

    def refuse(self, reason: str, error: type[ForeignJob] = ForeignJob) -> NoReturn:
        log.error("refused job %s: %s", self.id, reason, extra={"job_id": self.id})
        raise error(f"refused job {self.id}: {reason}")

    def refusal(self) -> str | None:
        """Why this job must not run (checked before its function is imported), or None."""
        if self.func_name not in self.allowed_functions:
            return (f"{self.func_name!r} is not one of the service's job functions "
                    f"({', '.join(sorted(self.allowed_functions))})")
        if self.instance is not None:
            return "it names a method of an object, not a job function"
        if self._success_callback_name or self._failure_callback_name or self._stopped_callback_name:
            return "it names RQ callbacks, which the service's jobs never have"
        if self.webhooks:
            return "it carries webhooks, which the service's jobs never have"
        return None


class JsonQueue(Queue):
    """A queue whose jobs are JsonJobs, read and written as JSON."""

    job_class = JsonJob

    def __init__(self, name: str = "default", connection: Redis | None = None, *args: Any,
                 serializer: Any = None, job_class: Any = None, **kwargs: Any):
        super().__init__(name, connection, *args, serializer=JSONSerializer, job_class=JsonJob, **kwargs)

    def compact(self) -> None:
        """RQ's, which fails on an empty queue (a RENAME of a missing key): nothing to compact then."""
        if self.connection.exists(self.key):
            super().compact()


class JsonWorker(Worker):
    """A worker as read back from Redis (Worker.all): its current job is a JsonJob."""

    job_class = JsonJob
    queue_class = JsonQueue

    def __init__(self, *args: Any, serializer: Any = None, job_class: Any = None, queue_class: Any = None,
                 **kwargs: Any):
        super().__init__(*args, serializer=JSONSerializer, job_class=JsonJob, queue_class=JsonQueue, **kwargs)


def json_registry(registry: type[BaseRegistry]) -> type[BaseRegistry]:
    """registry, handing out JsonJobs read as JSON whatever its caller passes."""

    def __init__(self, name: str = "default", connection: Redis | None = None, job_class: Any = None,
                 queue: Queue | None = None, serializer: Any = None, death_penalty_class: Any = None) -> None:
        if queue is not None:  # RQ would take the queue's serializer
            name, connection = queue.name, queue.connection
        registry.__init__(self, name, connection, JsonJob, None, JSONSerializer, death_penalty_class)

    return type(f"Json{registry.__name__}", (registry,), {"__init__": __init__, "job_class": JsonJob})


def fetch_json_job(job_id: str, connection: Redis) -> JsonJob:
    """Job.fetch as JSON (raises NoSuchJobError)."""
    return JsonJob.fetch(job_id, connection=connection)


def requeue_json_job(job_id: str, connection: Redis, serializer: Any = None) -> JsonJob:
    """rq.requeue_job, reading the job as JSON."""
    return fetch_json_job(job_id, connection).requeue()
