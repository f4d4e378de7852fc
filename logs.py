"""Structured logs: one JSON object per line on stderr, for the web and the worker processes.

configure_logging(level, fmt) is the one place logging is set up; gunicorn.conf.py and
jobs/worker/__main__.py call it at start-up (gunicorn's workers and RQ's pool workers and
work-horses are forked, so they inherit it). Each line is
`{"ts", "level", "logger", "message", "pid", ...fields}`: fields are a call's `extra=`,
the fields bound with bind()/bound() in the current context, and `exc` (the traceback)
when an exception is logged. LOG_FORMAT=text gives one human line per record instead;
LOG_FORMAT=auto (the default) gives text when stderr is a terminal, JSON otherwise.

Routine upkeep is logged at DEBUG, so an idle service at LOG_LEVEL=INFO prints nothing:
RQ's INFO lines about the ticker's jobs (dequeued, "Job OK", result discarded) and about the
workers' maintenance passes (cleaning registries) are lowered to DEBUG by RoutineFilter. A
routine job's warnings and errors keep their level, and so do RQ's lines about page jobs.

Jobs: while a job runs, every line carries its `job_id` and `url`: jobs/joblogs.py's
JobLogWorker / JobLogSimpleWorker (the pool runs the former) bind them around RQ's execute_job, so the
job's own lines, every library line logged meanwhile, and RQ's own lines about the job (in
the worker and in its forked work-horse: "Job OK", the result TTL, the traceback of a
failure, a killed horse) carry them. RQ's "dequeued" line, logged before the job is known
to be ours, does not.
gunicorn's own lines (access log, worker boots) keep gunicorn's format, with every value a
request controls escaped (gunicorn.conf.py uses escaped()): a newline in a Basic-auth user
name would otherwise start a forged line. Text lines escape control characters too; JSON
lines are escaped by JSON itself.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import IO, Any

from rq.exceptions import StopRequested


FORMATS = ("json", "text", "auto")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# LogRecord's own attributes: anything else on a record came from `extra=` or a bound field.
_RECORD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_CORE_KEYS = ("ts", "level", "logger", "message", "pid")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # RQ colours queue names and "Job OK" when stdout is a terminal
_OWN_HANDLER = "_metaparse_handler"
CONTINUATION = "    "  # the margin of a text record's second and later lines
# RQ gives these loggers handlers of its own (and stops their propagation) when it finds none above.
_RQ_LOGGERS = ("rq.worker", "rq.job", "rq.worker_pool", "rq.scheduler")
ROUTINE = "_routine"  # a bound field (never printed: it starts with _) marking routine upkeep
# RQ's line for a job taken off a queue, logged before the job is ours to bind fields to:
# its third argument is the job's description (the function and its arguments).
_RQ_DEQUEUE_LINE = "Worker %s: %s: %s (%s)"
_routine_functions: set[str] = set()  # job functions whose dequeue lines are upkeep (jobs/joblogs.py names them)

_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("metaparse_log_fields", default=None)


# ---- fields bound to the current context ----------------------------------------------------


def bind(**fields: Any) -> contextvars.Token:
    """Add fields to every line logged from this context until unbind(token)."""
    return _fields.set({**(_fields.get() or {}), **fields})


def unbind(token: contextvars.Token | None) -> None:
    """Restore the fields to what they were before the bind() that returned token."""
    if token is None:
        return
    try:
        _fields.reset(token)
    except (ValueError, RuntimeError):  # made in another context, or reset already
        _fields.set(None)


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def bound_fields() -> dict[str, Any]:
    return dict(_fields.get() or {})


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (a call's own `extra=` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_fields.get() or {}).items():
            if name not in record.__dict__:
                setattr(record, name, value)
        return True


class RoutineFilter(logging.Filter):
    """Lowers RQ's INFO lines about routine upkeep to DEBUG, then drops them below `level`
    (the logger let them through at INFO, before they were lowered)."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.name.startswith("rq.") and is_routine(record):
            record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
            return record.levelno >= self.level
        return True


def is_routine(record: logging.LogRecord) -> bool:
    """Logged inside routine() (a maintenance pass, a tick job), or RQ's dequeue line of a tick."""
    if getattr(record, ROUTINE, False):
        return True
    args = record.args if isinstance(record.args, tuple) else ()
    return (record.msg == _RQ_DEQUEUE_LINE and len(args) == 4
            and _ANSI.sub("", str(args[2])).partition("(")[0] in _routine_functions)


def treat_as_routine(function_path: str) -> None:
    """RQ's dequeue line of this job function is routine upkeep (it is logged before the job's
    own lines can be marked by routine())."""
    _routine_functions.add(function_path)


def routine() -> contextlib.AbstractContextManager[None]:
    """Marks the lines logged in this context as routine upkeep (see RoutineFilter)."""
    return bound(**{ROUTINE: True})


# ---- formatters ---------------------------------------------------------------------------


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items()
            if k not in _RECORD_ATTRIBUTES and k not in _CORE_KEYS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _ANSI.sub("", record.getMessage()),
            "pid": record.process,
            **record_fields(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """A human line: the classic format plus ` key=value` for each field. Only a record's
    first line starts at the margin: its other lines (a traceback, a message with line breaks)
    are indented and control characters escaped, so no text can pass for a record of its own."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's naming)
        fields = "".join(f" {k}={v}" for k, v in record_fields(record).items())
        return _ANSI.sub("", super().formatMessage(record)) + fields

    def format(self, record: logging.LogRecord) -> str:
        first, *rest = super().format(record).splitlines() or [""]
        return "\n".join([escaped(first), *(CONTINUATION + escaped(line) for line in rest)])


def escaped(text: str, backslashes: bool = False) -> str:
    """text on one line: non-printable characters (a newline, ESC, U+2028...) written as
    Python escapes; with backslashes, a backslash doubled too, so that the escapes read back
    unambiguously (gunicorn's access log escapes double quotes itself)."""
    if text.isprintable() and not (backslashes and "\\" in text):
        return text
    return "".join(_escape_char(char, backslashes) for char in text)


def _escape_char(char: str, backslashes: bool) -> str:
    if char == "\\":
        return "\\\\" if backslashes else char
    return char if char.isprintable() else char.encode("unicode_escape").decode("ascii")


# ---- set-up -------------------------------------------------------------------------------


def configure_logging(level: str | int = "INFO", fmt: str = "json", stream: IO[str] | None = None) -> logging.Handler:
    """Send every logger's records to stream (default: stderr), one JSON object (or text line) each;
    fmt "auto": text lines when the stream is a terminal, JSON otherwise.

    Idempotent: a second call replaces the handler of the first. Handlers others put on the
    root logger (pytest's, for example) are left alone.
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _OWN_HANDLER, False):
            root.removeHandler(handler)
    handler = _StreamHandler(stream)
    setattr(handler, _OWN_HANDLER, True)
    handler.setFormatter(TextFormatter() if resolved_format(fmt, handler.stream) == "text" else JsonFormatter())
    root.setLevel(level.upper() if isinstance(level, str) else level)
    handler.addFilter(ContextFilter())  # first: RoutineFilter reads the bound fields it copies
    handler.addFilter(RoutineFilter(root.level))
    root.addHandler(handler)
    _route_rq_loggers_to_root()
    return handler


def resolved_format(fmt: str, stream: IO[str]) -> str:
    """json or text; "auto" is text for a person at a terminal, JSON for a file, pipe or collector."""
    if fmt != "auto":
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


class _StreamHandler(logging.StreamHandler):
    """Without a stream, writes to whatever sys.stderr is at the time (as logging.lastResort does)."""

    def __init__(self, stream: IO[str] | None = None):
        super().__init__(stream)
        self._follow_stderr = stream is None

    @property
    def stream(self) -> IO[str]:  # type: ignore[override]
        return sys.stderr if getattr(self, "_follow_stderr", False) else self._stream

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        self._stream = value

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's naming)
        """logging prints and swallows an error raised while a line is written. An idle RQ
        worker's stop signal raises StopRequested from its handler, wherever the worker is,
        often while writing a line: swallowed, the stop was lost and the worker ran on until
        killed. It goes on to the worker."""
        if isinstance(sys.exc_info()[1], StopRequested):
            raise
        super().handleError(record)


def _route_rq_loggers_to_root() -> None:
    """Undo RQ's own set-up if it ran first (RQ skips it when the root logger has a handler)."""
    from rq.logutils import ColorizingStreamHandler

    for name in _RQ_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, ColorizingStreamHandler):
                logger.removeHandler(handler)
        logger.propagate = True
