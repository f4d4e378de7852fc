"""Exit codes: one home, so commands, main() and the --help epilog agree."""
from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    SOME_FAILED = 1  # a URL failed or was rejected; `get` found a failed record
    USAGE = 2  # argparse's own code for a bad command line
    IN_FLIGHT = 3  # still queued/started, or --wait ran out of time
    NOT_FOUND = 4
    SERVER = 5  # unreachable, or the service answered with an error
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


EPILOG = """\
exit codes:
  0    everything succeeded
  1    some URLs failed or were rejected (get: the record is a failed one;
       cancel: a job had started or ended)
  2    usage error: bad options, no URLs, an unreadable --file or unwritable --output
  3    still in flight (get answered 202) or --wait timed out
  4    not found (get: never submitted; export --batch, cancel: no such batch or job;
       delete: no record)
  5    cannot reach the server, or it answered with an error (its message is printed)
  130  interrupted (Ctrl-C)
"""


class UsageError(Exception):
    """A problem the caller fixes on the command line; reported like argparse's errors (exit 2)."""
