"""`metaparse` / `python -m cli`: the command line, and failures turned into exit codes.

No traceback reaches the user: service errors print the server's message, usage errors
print argparse-style, and each maps to one of the exit codes in cli.exits.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
from urllib.parse import urlsplit

from cli.client import ServiceClient, ServiceError
from cli.commands import COMMANDS
from cli.control import CONTROL_COMMANDS, positive_count
from cli.exits import EPILOG, ExitCode, UsageError

DEFAULT_SERVER = "http://127.0.0.1:8000"
PROG = "metaparse"


def main(argv: list[str] | None = None) -> int:
    escape_what_the_terminal_cannot_encode()
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on a bad command line
    client = ServiceClient(args.server, args.token)
    try:
        return {**COMMANDS, **CONTROL_COMMANDS}[args.command](client, args)
    except UsageError as exc:
        args.command_parser.error(str(exc))  # the command's usage line, and exit 2, like argparse
    except ServiceError as exc:
        return report_service_error(exc)
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return quiet_broken_pipe()


def escape_what_the_terminal_cannot_encode() -> None:
    """Titles in any script are printed as they are; a terminal or pipe whose encoding lacks
    a character (LANG=...ISO-8859-1) gets a \\u escape for it, not a UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def report_service_error(exc: ServiceError) -> ExitCode:
    sys.stderr.write(f"{PROG}: error: {exc}\n")
    if exc.code == "unauthorized":
        sys.stderr.write(f"{PROG}: pass a token with --token or METAPARSE_TOKEN\n")
    return ExitCode.NOT_FOUND if exc.status == 404 else ExitCode.SERVER


def quiet_broken_pipe() -> ExitCode:
    """`metaparse export | head`: the reader left; say nothing, and keep Python from complaining at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return ExitCode.SOME_FAILED


# ---- the parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Command-line client of the metaparse metadata parser service.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_submit(commands)
    add_get(commands)
    add_export(commands)
    add_control(commands)
    return parser


def add_global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Accepted before or after the command; after it, SUPPRESS keeps an unset option from
    overwriting one given before it."""
    default = (lambda value: argparse.SUPPRESS) if suppress else (lambda value: value)
    parser.add_argument("--server", type=server_url, metavar="URL",
                        default=default(os.environ.get("METAPARSE_URL") or DEFAULT_SERVER),
                        help="the service's base URL (default: $METAPARSE_URL or %s)" % DEFAULT_SERVER)
    parser.add_argument("--token", default=default(os.environ.get("METAPARSE_TOKEN")),
                        help="API token, sent as Authorization: Bearer (default: $METAPARSE_TOKEN)")
    parser.add_argument("--quiet", "-q", action="store_true", default=default(False),
                        help="no progress bar or notes; results and errors only")


def command_parser(commands, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_global_options(parser, suppress=True)
    parser.set_defaults(command_parser=parser)  # so a later UsageError shows this command's usage
    return parser


def add_submit(commands) -> None:
    parser = command_parser(commands, "submit", "submit URLs for parsing")
    parser.add_argument("urls", nargs="*", metavar="URL", help="URLs to submit")
    parser.add_argument("--file", "-f", metavar="F",
                        help="read URLs from F ('-' for stdin), one a line; blank lines and #comments skipped")
    parser.add_argument("--refresh", action="store_true", help="fetch again even when a fresh record is stored")
    parser.add_argument("--wait", action="store_true",
                        help="wait until every URL is done or failed, then list each URL's final state and a summary")
    parser.add_argument("--timeout", type=positive_seconds, metavar="S",
                        help="with --wait: give up after S seconds (exit 3); default: no limit")
    parser.add_argument("--json", action="store_true",
                        help="print the result as one JSON object (with --wait: counts and each URL's final state)")


def add_get(commands) -> None:
    parser = command_parser(commands, "get", "show the record of each URL")
    parser.add_argument("urls", nargs="+", metavar="URL")
    parser.add_argument("--json", action="store_true",
                        help="print the service's raw answer (several URLs: one JSON object a line)")


def add_export(commands) -> None:
    parser = command_parser(commands, "export", "write records, newest first, as JSON Lines or CSV")
    parser.add_argument("--batch", metavar="ID", help="only this batch's records")
    parser.add_argument("--kind", choices=("book", "news", "page"), help="only records of this kind (a CSV then has its columns only)")
    parser.add_argument("--since", metavar="T",
                        help="only records fetched at or after T (ISO 8601, e.g. 2026-01-31T12:00Z)")
    parser.add_argument("--format", choices=sorted(("jsonl", "csv")),
                        help="default: csv when --output ends in .csv, else jsonl")
    parser.add_argument("--output", "-o", metavar="F", help="write to F instead of stdout")


def add_control(commands) -> None:
    """cancel, delete, batches: cli/control.py."""
    parser = command_parser(commands, "cancel", "cancel queued jobs (or every queued job of a batch) before they run")
    parser.add_argument("job_ids", nargs="*", metavar="JOB_ID", help="job ids (as `submit --json` shows them)")
    parser.add_argument("--batch", metavar="ID", help="cancel every job of this batch that has not started")
    parser.add_argument("--json", action="store_true", help="print the answers as JSON")
    parser = command_parser(commands, "delete", "delete the stored records of URLs (any spelling)")
    parser.add_argument("urls", nargs="+", metavar="URL")
    parser = command_parser(commands, "batches", "list recent batches, newest first")
    parser.add_argument("--limit", type=positive_count, default=20, metavar="N", help="how many (default 20)")
    parser.add_argument("--json", action="store_true", help="print them as JSON")


def server_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http(s):// URL")
    return text


def positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return seconds
