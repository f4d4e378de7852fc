"""Prometheus metrics: the hooks that record them and log the job's events (GET /metrics: web/scrape.py).

Every process writes its samples to files in PROMETHEUS_MULTIPROC_DIR (prometheus-client's
multiprocess mode): gunicorn's workers, and the RQ worker processes (or, with
WORKER_EXECUTION=fork, the work-horse forked for each job). /metrics,
served by any gunicorn worker, adds up all the files, so web and workers must share the
folder (same host, same pid namespace). Who sets it:
- launch.py (`make run`) and, when started by hand, gunicorn.conf.py and jobs/worker/__main__.py call
  setup_multiprocess_dir(DATA_DIR): when the variable is unset it becomes DATA_DIR/metrics
  (./var/metrics), and the files of processes that are gone (an earlier run's) are removed;
  launch.py passes the variable to web and workers, so only launch.py cleans then. A folder
  set by the operator is used as is: wiping it between runs is then the operator's job.
- any other process (tests, the flask CLI, a shell) gets a private temporary folder on its
  first metric, removed at exit: it never mixes its samples into the service's.
The variable must be set before prometheus_client is imported; this module imports it only
when the first metric is touched, after the folder is settled.

Workers that share no folder with web (containers: docker-compose.yml) serve their own
samples: with METRICS_PORT set, `python -m jobs.worker` answers GET /metrics on
METRICS_BIND:METRICS_PORT with its container's files (its pool's workers and horses add up
there as they do for gunicorn's), and Prometheus scrapes web and every worker (README,
"Metrics of a deployment"). Web's /metrics then has the requests, submissions and queue
depths; each worker's, the job counters and fetch/parse latencies of its host.

A work-horse (fork mode) lives for one job, and an in-process worker for up to WORKER_MAX_JOBS,
so each of them leaves a file or two behind. They are folded
into one archive file per metric type (counter_archive.db, histogram_archive.db) at each
scrape, and by a job when the folder holds more than COMPACT_AT files; a lock on the
folder keeps a scrape from reading half a fold. Only counters and histograms are used
(queue depth is read from Redis at scrape time), so nothing needs mark_process_dead, but
gunicorn's child_exit calls it anyway, for any "live" gauge added later.

Label values are bounded: routes are Flask's URL rules, queues and sources come from
sources.py, error codes from errors.py; anything else is counted as "other". No URLs.
"""
from __future__ import annotations

import atexit
import contextvars
import fcntl
import functools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request

from errors import BlockedAddress, JobError
from sources import PAGE_QUEUE_NAMES, SOURCES

log = logging.getLogger("jobs.tasks")  # the job's events are logged as the task's
web_log = logging.getLogger("web.api")  # the HTTP side's events are logged as its routes'

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LOCK_NAME = ".lock"
ARCHIVE = "archive"
FOLDED_TYPES = ("counter", "histogram")
COMPACT_AT = 200  # files in the folder before a job folds those of dead processes
OTHER = "other"
UNMATCHED_ROUTE = "unmatched"
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
QUEUES = frozenset(PAGE_QUEUE_NAMES)
SOURCE_NAMES = frozenset(SOURCES)
SUBMISSION_STATUSES = frozenset({"cached", "queued", "started"})
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0)
PARSE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


# ---- the shared folder ------------------------------------------------------------------------


def setup_multiprocess_dir(data_dir: Path | str | None = None,
                           environ: MutableMapping[str, str] | None = None) -> Path:
    """Settle PROMETHEUS_MULTIPROC_DIR in environ (default os.environ) and return the folder.

    Set already: used as is. Unset: DATA_DIR/metrics, cleaned of dead processes' files, or
    without data_dir a private temporary folder removed when this process exits.
    """
    env = os.environ if environ is None else environ
    if env.get(MULTIPROC_ENV):
        path = Path(env[MULTIPROC_ENV])
        path.mkdir(parents=True, exist_ok=True)
        return path
    if data_dir is None:
        path = Path(tempfile.mkdtemp(prefix="metaparse-metrics-"))
        owner = os.getpid()
        atexit.register(lambda: os.getpid() == owner and shutil.rmtree(path, ignore_errors=True))
    else:
        path = Path(data_dir) / "metrics"
        path.mkdir(parents=True, exist_ok=True)
        remove_stale_files(path)
    env[MULTIPROC_ENV] = str(path)
    return path


def multiprocess_dir() -> Path:
    with _instance_lock:  # threads of a process without the variable must agree on one folder
        return setup_multiprocess_dir()


def remove_stale_files(path: Path) -> int:
    """Remove the files of processes that are gone, and the archives: a new run starts at zero."""
    removed = 0
    with _locked(path, fcntl.LOCK_EX):
        for file in [*path.glob("*.db"), *path.glob("*.tmp")]:
            pid = _file_pid(file)
            if not (pid.isdigit() and _alive(int(pid))):
                file.unlink(missing_ok=True)
                removed += 1
    return removed


def compact(path: Path | None = None, blocking: bool = True) -> int:
    """Fold the counter and histogram files of dead processes into the archives; files folded."""
    from prometheus_client.mmap_dict import MmapedDict

    path = path or multiprocess_dir()
    with _locked(path, fcntl.LOCK_EX, blocking) as locked:
        if not locked:
            return 0
        dead: dict[str, list[Path]] = defaultdict(list)
        for file in path.glob("*.db"):
            kind, pid = _file_kind(file), _file_pid(file)
            if kind in FOLDED_TYPES and pid.isdigit() and not _alive(int(pid)):
                dead[kind].append(file)
        for kind, files in dead.items():
            archive = path / f"{kind}_{ARCHIVE}.db"
            totals: dict[str, float] = defaultdict(float)
            for file in ([archive] if archive.exists() else []) + files:
                for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(file)):
                    totals[key] += value
            staged = path / f"{kind}_{ARCHIVE}.db.tmp"
            staged.unlink(missing_ok=True)
            merged = MmapedDict(str(staged))
            try:
                for key, value in totals.items():
                    merged.write_value(key, value, 0.0)
            finally:
                merged.close()
            os.replace(staged, archive)  # readers wait on the lock: they never see a half fold
            for file in files:
                file.unlink(missing_ok=True)
        return sum(len(files) for files in dead.values())


def mark_process_dead(pid: int) -> None:
    """gunicorn's child_exit: drop a dead worker's "live" gauge files (its counters stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(multiprocess_dir()))


@contextmanager
def _locked(path: Path, mode: int, blocking: bool = True) -> Iterator[bool]:
    with open(path / LOCK_NAME, "a") as handle:
        try:
            fcntl.flock(handle, mode if blocking else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _file_kind(file: Path) -> str:
    return file.name.split("_", 1)[0]


def _file_pid(file: Path) -> str:
    return file.name.split(".", 1)[0].rsplit("_", 1)[-1]  # counter_123.db, gauge_livesum_123.db


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. another user's process: alive
    return True


# ---- the metrics, created on first use ----------------------------------------------------


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram, values

        if not getattr(values.ValueClass, "_multiprocess", False):
            # Imported before the folder was set (by a library, a test module): prometheus-client
            # reads the class when each value is made, so switching now covers all of ours.
            values.ValueClass = values.get_value_class()
        self.http_requests = Counter(
            "metaparse_http_requests", "HTTP requests answered, by Flask URL rule and status.",
            ["method", "route", "status"], registry=None)
        self.edge_refusals = Counter(
            "metaparse_http_refused", "Requests and connections the web edge answered itself, before Flask "
            "(web/edge.py), by error code: request_timeout, too_many_connections, malformed_request, ...",
            ["code"], registry=None)
        self.http_latency = Histogram(
            "metaparse_http_request_duration_seconds", "Time to answer an HTTP request, by Flask URL rule.",
            ["method", "route"], buckets=HTTP_BUCKETS, registry=None)
        self.submissions = Counter(
            "metaparse_submissions", "Accepted URLs by the answer given: cached, queued or started (in flight).",
            ["queue", "status"], registry=None)
        self.enqueued = Counter(
            "metaparse_jobs_enqueued", "Jobs put on an RQ queue.", ["queue", "source"], registry=None)
        self.done = Counter(
            "metaparse_jobs_done", "Jobs that saved a done record.", ["queue", "source"], registry=None)
        self.failed = Counter(
            "metaparse_jobs_failed", "Jobs that failed for good (a failed record is saved), by error code.",
            ["queue", "source", "code"], registry=None)
        self.retries = Counter(
            "metaparse_job_retries", "Transient job failures that RQ will retry, by error code.",
            ["queue", "source", "code"], registry=None)
        self.ssrf_refusals = Counter(
            "metaparse_ssrf_refusals", "Fetches refused by the SSRF guard (a hop's URL or address).",
            ["source"], registry=None)
        self.fetch_latency = Histogram(
            "metaparse_fetch_duration_seconds", "Time to fetch a page, redirects included; outcome ok or error.",
            ["source", "outcome"], buckets=FETCH_BUCKETS, registry=None)
        self.parse_latency = Histogram(
            "metaparse_parse_duration_seconds", "Time to parse a fetched page; outcome ok or error.",
            ["source", "outcome"], buckets=PARSE_BUCKETS, registry=None)


_instance: _Metrics | None = None
_instance_lock = threading.RLock()


def _metrics() -> _Metrics:
    global _instance
    if _instance is None:
        with _instance_lock:
            if _instance is None:
                setup_multiprocess_dir()  # before prometheus_client is imported
                _instance = _Metrics()
    return _instance


def _harmless(hook: Callable[..., None]) -> Callable[..., None]:
    """A hook never fails the request or the job it observes: its own error is logged, that's all."""
    @functools.wraps(hook)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            hook(*args, **kwargs)
        except Exception:  # noqa: BLE001
            logging.getLogger(__name__).exception("metrics hook %s failed", hook.__name__)

    return guarded


def _bounded(value: object, allowed: frozenset[str]) -> str:
    return value if isinstance(value, str) and value in allowed else OTHER


@functools.cache
def error_codes() -> frozenset[str]:
    """Every code errors.py can give a job failure, and internal_error for anything else."""
    codes, pending = {"internal_error"}, [JobError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    return frozenset(codes)


# ---- the web: request metrics and /metrics ---------------------------------------------


def init_app(app: Flask) -> None:
    """Count and time every request (GET /metrics itself: web/scrape.py)."""
    app.before_request_funcs.setdefault(None, []).insert(0, _start_timer)  # first, before any gate
    app.after_request(_count_request)


@_harmless
def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _count_request(response: Response) -> Response:
    _count(response.status_code)
    return response


@_harmless
def _count(status: int) -> None:
    metrics = _metrics()
    method = _bounded(request.method, METHODS)
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
    metrics.http_requests.labels(method, route, str(status)).inc()
    started = g.get("metrics_started")
    if started is not None:
        metrics.http_latency.labels(method, route).observe(time.perf_counter() - started)


@_harmless
def edge_refused(code: str) -> None:
    """The web edge answered an error itself (its codes are a fixed set: web/edge.py)."""
    _metrics().edge_refusals.labels(code).inc()


def serve_worker_metrics(port: int, bind: str) -> None:
    """A worker host's own GET /metrics (METRICS_PORT): the samples of this host's folder,
    served by a thread of the calling process (the pool, before it forks its workers)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(FilesCollector(multiprocess_dir()))
    start_http_server(port, addr=bind, registry=registry)


class FilesCollector:
    """prometheus-client's MultiProcessCollector, reading under the folder's shared lock,
    after folding the files of dead processes."""

    def __init__(self, path: Path):
        self.path = path

    def collect(self) -> list:
        from prometheus_client.multiprocess import MultiProcessCollector

        _metrics()  # this process's metric types exist (and its values are multiprocess ones)
        _harmless(compact)(self.path)  # a bad file must not cost the whole scrape
        with _locked(self.path, fcntl.LOCK_SH):
            return list(MultiProcessCollector.merge([str(f) for f in self.path.glob("*.db")], accumulate=True))


# ---- submission (web) -----------------------------------------------------------------------


@_harmless
def job_submitted(item: Mapping[str, Any]) -> None:
    """api.submit_batch, once per accepted URL (its answer: queue, status cached|queued|started)."""
    queue, status = _bounded(item.get("queue"), QUEUES), _bounded(item.get("status"), SUBMISSION_STATUSES)
    _metrics().submissions.labels(queue, status).inc()


@_harmless
def job_enqueued(route: Any, job_id: str) -> None:
    """Submitter._enqueue, after a job was put on its queue."""
    _metrics().enqueued.labels(_bounded(route.queue, QUEUES), _bounded(route.source.name, SOURCE_NAMES)).inc()
    # DEBUG: at INFO, one line per URL was ~17% of a 100-URL POST; the access log has the request.
    web_log.debug("job enqueued", extra={"job_id": job_id, "url": route.canonical_url, "queue": route.queue,
                                        "source": route.source.name})


# ---- the job (work-horse): one run of fetch_and_parse ------------------------------------


@dataclass
class _JobRun:
    queue: str
    source: str
    step: str | None = None
    step_started: float = 0.0


_run: contextvars.ContextVar[_JobRun | None] = contextvars.ContextVar("metaparse_job_run", default=None)


@_harmless
def job_started(job: Any, source: str) -> None:
    """Start of fetch_and_parse. Its log lines carry job_id and url: the worker binds them
    around the job (jobs/joblogs.py JobLogMixin)."""
    _run.set(_JobRun(_bounded(getattr(job, "origin", None), QUEUES), _bounded(source, SOURCE_NAMES)))
    log.info("job started", extra={"queue": job.origin, "source": source, "retries_left": job.retries_left})
    _fold_when_crowded()


@_harmless
def job_step(step: str) -> None:
    """jobs.tasks._set_step: times the phases; parsing -> saving is a parse done."""
    run = _run.get()
    if run is None:
        return
    now = time.perf_counter()
    previous, started = run.step, run.step_started
    run.step, run.step_started = step, now
    if step == "saving" and previous == "parsing":
        log.info("parse done", extra={"ms": _ms(now - started)})
        _metrics().parse_latency.labels(run.source, "ok").observe(now - started)


@_harmless
def fetch_done(page: Any) -> None:
    """After Fetcher.fetch returned the page."""
    run = _run.get()
    if run is None:
        return
    elapsed = time.perf_counter() - run.step_started
    run.step = "fetched"
    log.info("fetch done", extra={"status": page.status, "bytes": len(page.body), "ms": _ms(elapsed),
                                  "final_url": page.url, "redirects": len(page.redirects)})
    _metrics().fetch_latency.labels(run.source, "ok").observe(elapsed)


@_harmless
def job_done() -> None:
    """After the done record was saved: the end of the job's run."""
    run = _run.get()
    if run is None:
        return
    try:
        log.info("record saved", extra={"status": "done"})
        _metrics().done.labels(run.queue, run.source).inc()
    finally:
        _end()


@_harmless
def job_retrying(exc: BaseException) -> None:
    """jobs.tasks._note_failure, when RQ will retry this transient failure (tasks.py logs it)."""
    run = _run.get()
    if run is None:
        return
    try:
        _metrics().retries.labels(run.queue, run.source, _failure(run, exc)).inc()
    finally:
        _end()


@_harmless
def job_failed(exc: BaseException, code: str) -> None:
    """jobs.tasks._note_failure, when the failure is final (before the failed record is saved)."""
    run = _run.get()
    if run is None:
        return
    try:
        log.warning("job failed", extra={"code": code, "error": str(exc) or type(exc).__name__, "step": run.step})
        _failure(run, exc)
        _metrics().failed.labels(run.queue, run.source, _bounded(code, error_codes())).inc()
    finally:
        _end()


def _failure(run: _JobRun, exc: BaseException) -> str:
    """Time the phase that failed, count an SSRF refusal; the bounded error code."""
    elapsed = time.perf_counter() - run.step_started
    if run.step == "fetching":
        _metrics().fetch_latency.labels(run.source, "error").observe(elapsed)
    elif run.step == "parsing":
        _metrics().parse_latency.labels(run.source, "error").observe(elapsed)
    if isinstance(exc, BlockedAddress):
        _metrics().ssrf_refusals.labels(run.source).inc()
    return _bounded(getattr(exc, "code", "internal_error") if isinstance(exc, JobError) else "internal_error",
                    error_codes())


def _end() -> None:
    _run.set(None)


def _fold_when_crowded() -> None:
    try:
        path = multiprocess_dir()
        if sum(1 for _ in os.scandir(path)) > COMPACT_AT:
            compact(path, blocking=False)
    except OSError as exc:
        log.warning("metrics files not folded: %s", exc)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
