"""The three commands: each takes the client and the parsed arguments and returns an exit code.

Results go to stdout; progress and notes go to stderr, so stdout can be piped or parsed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, TextIO

from tqdm import tqdm

from cli import output
from cli.client import ServiceClient, ServiceError, Submission
from cli.exits import ExitCode, UsageError
from cli.records import answer_text
from cli.results import count, url_results
from cli.urls import gather_urls
from cli.waiting import Waiter

# ---- submit ---------------------------------------------------------------------------------


def submit(client: ServiceClient, args: argparse.Namespace) -> ExitCode:
    if args.timeout is not None and not args.wait:
        raise UsageError("--timeout only applies with --wait")
    urls = gather_urls(args.urls, args.file)
    submission = client.submit(urls, refresh=args.refresh)
    if args.wait:
        return wait_and_summarise(client, submission, args)
    if args.json:
        answers = {key: getattr(submission, key) for key in ("batch_ids", "accepted", "rejected")}
        output.print_json(answers, sys.stdout)
    else:
        output.print_submission(submission, sys.stdout, args.quiet)
    return ExitCode.SOME_FAILED if submission.rejected else ExitCode.OK


def wait_and_summarise(client: ServiceClient, submission: Submission, args: argparse.Namespace) -> ExitCode:
    # The bar goes to stderr so `--json` output on stdout stays parseable.
    with tqdm(total=len(submission.accepted), unit="url", file=sys.stderr, disable=args.quiet) as bar:
        outcomes = Waiter(client, submission, bar.update, timeout=args.timeout).run()
    results = url_results(submission, outcomes)
    counts = count(results)
    if args.json:
        output.print_json({"batch_ids": submission.batch_ids, "counts": counts,
                           "urls": [vars(result) for result in results]}, sys.stdout)
    else:
        output.print_results(results, counts, sys.stdout)
    return summary_exit_code(counts)


def summary_exit_code(counts: dict[str, int]) -> ExitCode:
    """Unfinished work outranks failures: the caller should look again before trusting the rest."""
    if counts.get("pending"):
        return ExitCode.IN_FLIGHT
    if counts["failed"] or counts["rejected"]:
        return ExitCode.SOME_FAILED
    return ExitCode.OK


# ---- get ------------------------------------------------------------------------------------


def get(client: ServiceClient, args: argparse.Namespace) -> ExitCode:
    """Each URL's answer in turn: a block of text each (a blank line between), or with --json
    the raw answer (several URLs: one JSON object a line, in the order given)."""
    codes: list[ExitCode] = []
    for url in args.urls:
        status, body = client.info(url)
        if args.json:
            write_raw(body, sys.stdout, several=len(args.urls) > 1)
        elif status != 404:
            blank = "\n" if any(code != ExitCode.NOT_FOUND for code in codes) else ""  # after an earlier block
            sys.stdout.write(blank + answer_text(status, body))
        if status == 404:
            report_not_found(url, body)
        codes.append(record_exit_code(status, body))
    return max(codes, key=GET_PRECEDENCE.index)


def write_raw(body: object, out: TextIO, several: bool) -> None:
    if several:
        out.write(json.dumps(body, ensure_ascii=False) + "\n")
    else:
        output.print_json(body, out)


def report_not_found(url: str, body: dict | None) -> None:
    message = ((body or {}).get("error") or {}).get("message") or f"{url} has never been submitted"
    sys.stderr.write(f"metaparse: not found: {message}\n")


# Several URLs exit with the code that asks the most of the caller: submit what was never
# seen, wait for what is in flight, then look at what failed.
GET_PRECEDENCE = [ExitCode.OK, ExitCode.SOME_FAILED, ExitCode.IN_FLIGHT, ExitCode.NOT_FOUND]


def record_exit_code(status: int, body: dict) -> ExitCode:
    if status == 404:
        return ExitCode.NOT_FOUND
    if status == 202:
        return ExitCode.IN_FLIGHT
    return ExitCode.SOME_FAILED if body.get("status") in ("failed", "canceled") else ExitCode.OK


# ---- export ---------------------------------------------------------------------------------


def export(client: ServiceClient, args: argparse.Namespace) -> ExitCode:
    """Stream the server's export (GET /records.jsonl or .csv) to stdout or a file: the
    server is the one home of both formats."""
    chosen = args.format or format_from_name(args.output)
    filters = {"batch": args.batch, "kind": args.kind, "since": args.since}
    chunks = client.export(chosen, {name: value for name, value in filters.items() if value})
    try:
        if args.output in (None, "-"):
            size = copy(chunks, sys.stdout.buffer)
        else:
            size = write_file(Path(args.output), chunks)
    except ServiceError as exc:
        if exc.status == 400:  # the server refused a filter given on the command line
            raise UsageError(exc.message) from None
        raise
    if not args.quiet:
        sys.stderr.write(f"exported {size:,} bytes of {chosen}\n")
    return ExitCode.OK


def format_from_name(path: str | None) -> str:
    """--format wins; else the --output suffix (.csv); else JSON Lines."""
    return "csv" if path and path.lower().endswith(".csv") else "jsonl"


def copy(chunks: Iterable[bytes], out: BinaryIO) -> int:
    size = 0
    for chunk in chunks:
        out.write(chunk)
        size += len(chunk)
    out.flush()
    return size


def write_file(path: Path, chunks: Iterable[bytes]) -> int:
    """Written beside the target and renamed into place once whole, so a reader never sees
    half a file, and a failure midway (the server's error, a cut-off stream) leaves none."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as handle:
            size = copy(chunks, handle)
        os.replace(partial, path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)  # gone after the rename; a leftover only after a failure
    return size


COMMANDS = {"submit": submit, "get": get, "export": export}
