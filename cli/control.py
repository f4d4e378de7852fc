"""The control commands: cancel jobs or a batch, delete records, list recent batches.

Each item (a job, a URL) is reported on its own line; the exit code is the worst outcome:
4 when something was not found, else 1 when something could not be canceled, else 0.
"""
from __future__ import annotations

import argparse
import sys

from cli import output
from cli.client import ServiceClient
from cli.exits import ExitCode, UsageError


def cancel(client: ServiceClient, args: argparse.Namespace) -> ExitCode:
    if bool(args.batch) == bool(args.job_ids):
        raise UsageError("name job ids, or one batch with --batch ID")
    if args.batch:
        return cancel_batch(client, args)
    outcomes = [(job_id, *client.cancel_job(job_id)) for job_id in args.job_ids]
    if args.json:
        output.print_json([{"job_id": job_id, "http_status": status, **body} for job_id, status, body in outcomes],
                          sys.stdout)
    else:
        for job_id, status, body in outcomes:
            sys.stdout.write(f"{'canceled' if status == 200 else 'kept':<9} {job_id}  {reason(status, body)}\n")
    return worst([status for _, status, _ in outcomes])


def cancel_batch(client: ServiceClient, args: argparse.Namespace) -> ExitCode:
    status, body = client.cancel_batch(args.batch)
    if status == 404:
        sys.stderr.write(f"metaparse: not found: {reason(status, body)}\n")
        return ExitCode.NOT_FOUND
    if args.json:
        output.print_json(body, sys.stdout)
    else:
        for item in body["canceled"]:
            sys.stdout.write(f"canceled  {item['canonical_url']}\n")
        for item in body["not_canceled"]:
            sys.stdout.write(f"kept      {item['canonical_url']}  ({item['status']})\n")
        sys.stdout.write(f"{len(body['canceled'])} canceled, {len(body['not_canceled'])} kept\n")
    return ExitCode.SOME_FAILED if any(item["status"] != "canceled" for item in body["not_canceled"]) else ExitCode.OK


def delete(client: ServiceClient, args: argparse.Namespace) -> ExitCode:
    outcomes = [(url, *client.delete_record(url)) for url in args.urls]
    for url, status, body in outcomes:
        if status == 200:
            note = f"  (a fetch is {body['refresh']}: it will save a new record)" if body.get("refresh") else ""
            sys.stdout.write(f"deleted   {body['url']}{note}\n")
        else:
            sys.stdout.write(f"missing   {url}  {reason(status, body)}\n")
    return worst([status for _, status, _ in outcomes])


def batches(client: ServiceClient, args: argparse.Namespace) -> ExitCode:
    listed = list(client.batches(args.limit))
    if args.json:
        output.print_json(listed, sys.stdout)
        return ExitCode.OK
    for card in listed:
        callback = "  callback" if card["callback"] else ""
        sys.stdout.write(f"{card['batch_id']}  {card['created_at']}  {card['total']} URLs{callback}\n")
    return ExitCode.OK


def reason(status: int, body: dict) -> str:
    if status == 200:
        return ""
    return output.describe_error(body.get("error"))


def worst(statuses: list[int]) -> ExitCode:
    if 404 in statuses:
        return ExitCode.NOT_FOUND
    return ExitCode.SOME_FAILED if any(status != 200 for status in statuses) else ExitCode.OK


def positive_count(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


CONTROL_COMMANDS = {"cancel": cancel, "delete": delete, "batches": batches}
