"""The three commands: each takes the client and the parsed arguments and returns an exit code.

Results go to stdout; progress and notes go to stderr, so stdout can be piped or parsed.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from cli import output
from cli.client import ServiceClient, ServiceError, Submission
from cli.exits import ExitCode, UsageError
from cli.urls import gather_urls
from cli.waiting import Waiter, count, final_items

# ---- submit ---------------------------------------------------------------------------------


def submit(client: ServiceClient, args: argparse.Namespace) -> ExitCode:
    if args.timeout is not None and not args.wait:
        raise UsageError("--timeout only applies with --wait")
    urls = gather_urls(args.urls, args.file)
    submission = client.submit(urls, refresh=args.refresh)
    if args.wait:
        return wait_and_summarise(client, submission, args)
    if args.json:
        output.print_json(vars(submission), sys.stdout)
    else:
        output.print_submission(submission, sys.stdout, args.quiet)
    return ExitCode.SOME_FAILED if submission.rejected else ExitCode.OK


def wait_and_summarise(client: ServiceClient, submission: Submission, args: argparse.Namespace) -> ExitCode:
    # The bar goes to stderr so `--json` output on stdout stays parseable.
    with tqdm(total=len(submission.accepted), unit="url", file=sys.stderr, disable=args.quiet) as bar:
        outcomes = Waiter(client, submission, bar.update, timeout=args.timeout).run()
    items = final_items(submission, outcomes)
    counts = count(items, submission.rejected)
    if args.json:
        output.print_json({"batch_ids": submission.batch_ids, "counts": counts, "accepted": items,
                           "rejected": submission.rejected}, sys.stdout)
    else:
        output.print_summary(items, submission.rejected, counts, sys.stdout)
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
    status, body = client.info(args.url)
    if status == 404:
        message = (body or {}).get("error", {}).get("message") or f"{args.url} has never been submitted"
        sys.stderr.write(f"metaparse: not found: {message}\n")
        return ExitCode.NOT_FOUND
    summary = None if args.json or status == 202 else output.record_summary(body)
    if summary is not None:
        sys.stdout.write(summary)
    elif status == 202 and not args.json:
        output.print_in_flight(body, sys.stdout)
    else:
        output.print_json(body, sys.stdout)
    return record_exit_code(status, body)


def record_exit_code(status: int, body: dict) -> ExitCode:
    if status == 202:
        return ExitCode.IN_FLIGHT
    return ExitCode.SOME_FAILED if body.get("status") == "failed" else ExitCode.OK


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
