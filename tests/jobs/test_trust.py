"""jobs/trust.py on a real Redis: JSON-only job reads, and the job functions a worker runs.
(The same through real gunicorn and worker processes: tests/test_security.py.)"""
from __future__ import annotations

import json
import time

import pytest
from rq import Callback, Queue, Worker
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer, PickleSerializer

from errors import ForeignJob
from jobs.worker.pool import crash_safe
from jobs.queues import make_queue
from jobs.trust import JOB_FUNCTION, JOB_FUNCTIONS, UNREADABLE, JsonJob, NotJsonJob, ServiceJob
from tests.support import import_trap
from tests.support.forged import Trap


def pickled_job(redis_client, marker) -> Job:
    job = Queue("goodreads", connection=redis_client, serializer=PickleSerializer).enqueue("os.getpid", Trap(marker))
    job.meta = {"trap": Trap(marker)}
    job.save_meta()
    return job


def test_a_json_job_never_unpickles_and_reads_a_pickled_job_as_unreadable(redis_client, tmp_path):
    marker = tmp_path / "unpickled"
    job = pickled_job(redis_client, marker)
    read = JsonJob.fetch(job.id, connection=redis_client, serializer=PickleSerializer)  # JSON all the same
    assert read.unreadable and read.description == UNREADABLE and read.get_meta() == {}
    assert read.get_call_string() == UNREADABLE and read.latest_result() is None
    assert not marker.exists()


def test_a_json_job_reads_the_service_own_jobs(redis_client):
    job = make_queue("goodreads", redis_client).enqueue(JOB_FUNCTION, "https://x.test/1", "goodreads")
    read = JsonJob.fetch(job.id, connection=redis_client)
    assert not read.unreadable and read.func_name == JOB_FUNCTION and read.args[1] == "goodreads"


@pytest.mark.parametrize("forge, reason", [
    (lambda q: q.enqueue("os.getpid"), "'os.getpid' is not one of the service's job functions"),
    (lambda q: q.enqueue(JOB_FUNCTION, "u", "goodreads", on_failure=Callback("os.getpid")), "RQ callbacks"),
    (lambda q: q.enqueue(JOB_FUNCTION, "u", "goodreads", on_stopped=Callback("os.getpid")), "RQ callbacks"),
])
def test_a_service_job_refuses_what_the_service_never_enqueues(redis_client, forge, reason):
    job = ServiceJob.fetch(forge(make_queue("goodreads", redis_client)).id, connection=redis_client)
    with pytest.raises(ForeignJob, match=reason):
        job.func  # noqa: B018 (the property is what a worker calls)
    assert job.success_callback is None and job.failure_callback is None and job.stopped_callback is None


def test_a_service_job_refuses_an_object_method_and_unreadable_data(redis_client, tmp_path):
    queue = make_queue("goodreads", redis_client)
    method = queue.enqueue(JOB_FUNCTION, "u", "goodreads")
    redis_client.hset(method.key, "data", json.dumps([JOB_FUNCTION, {"an": "object"}, ["u", "goodreads"], {}]))
    with pytest.raises(ForeignJob, match="method of an object"):
        ServiceJob.fetch(method.id, connection=redis_client).func  # noqa: B018
    unreadable = ServiceJob.fetch(pickled_job(redis_client, tmp_path / "x").id, connection=redis_client)
    with pytest.raises(NotJsonJob):
        unreadable.func_name  # noqa: B018 (RQ reads it first, for the process title)
    assert not (tmp_path / "x").exists()


def test_the_allow_list_is_the_service_job_functions_and_each_one_exists():
    from rq.utils import import_attribute

    assert JOB_FUNCTIONS == {"jobs.tasks.fetch_and_parse", "jobs.ticker.tick", "jobs.callbacks.deliver"}
    assert all(callable(import_attribute(name)) for name in JOB_FUNCTIONS)


def test_a_service_worker_runs_service_jobs_only(redis_client):
    worker_class = crash_safe(Worker, "inprocess")
    assert worker_class(["goodreads"], connection=redis_client).job_class is ServiceJob
    with pytest.raises(TypeError, match="ServiceJobs only"):
        worker_class(["goodreads"], connection=redis_client, job_class=Job)


def test_cleaning_a_registry_never_imports_a_callback_a_job_names(redis_client, tmp_path, monkeypatch):
    """StartedJobRegistry.cleanup runs an abandoned job's failure callback, in whatever process
    cleans (a worker, or the web reading a registry with cleanup on): a job's named callback
    is never imported or called."""
    monkeypatch.setenv(import_trap.TRAP_ENV, str(tmp_path / "trap"))
    spring = f"{import_trap.__name__}.spring"
    job = make_queue("goodreads", redis_client).enqueue(JOB_FUNCTION, "u", "goodreads", on_failure=Callback(spring))
    job.set_status(JobStatus.STARTED)
    with redis_client.pipeline() as pipe:
        Execution.create(job, ttl=1, pipeline=pipe)
        pipe.execute()
    for job_class in (JsonJob, ServiceJob):
        registry = StartedJobRegistry("goodreads", connection=redis_client, job_class=job_class,
                                      serializer=JSONSerializer)
        registry.cleanup(timestamp=time.time() + 60)
    assert not (tmp_path / "trap.called").exists()


@pytest.mark.parametrize("data", [json.dumps([5, None, [], {}]), json.dumps([JOB_FUNCTION, None, "u", {}]),
                                  json.dumps([JOB_FUNCTION, None, [], []]), json.dumps({"a": 1})])
def test_json_of_another_shape_is_unreadable_and_refused(redis_client, data):
    job = make_queue("goodreads", redis_client).enqueue(JOB_FUNCTION, "u", "goodreads")
    redis_client.hset(job.key, "data", data)
    assert JsonJob.fetch(job.id, connection=redis_client).unreadable
    with pytest.raises(NotJsonJob):
        ServiceJob.fetch(job.id, connection=redis_client).func  # noqa: B018


def test_meta_that_is_not_an_object_is_unreadable(redis_client):
    job = make_queue("goodreads", redis_client).enqueue(JOB_FUNCTION, "u", "goodreads")
    redis_client.hset(job.key, "meta", json.dumps(["not", "a", "dict"]))
    read = JsonJob.fetch(job.id, connection=redis_client)
    assert read.unreadable and read.meta == {} and read.get_meta() == {}
