"""`make bench`: every benchmark in one run, with its baselines measured side by side.

1. parse:  ms per page for every parser and page, beside the tree build alone and the regex floor;
2. end to end: the service against the seed-style and floor baselines, URLs/s and latency,
   with 1, 2 and 4 worker processes, and the workers' memory;
3. API: GET /info and POST /parse, idle and with the workers saturated, beside raw Redis GETs;
4. polite: the service with its shipped per-host politeness on a mixed backlog (one busy host,
   many small ones, news fronts), its makespan against the ideal and news latency meanwhile.

Parts 2-4 run the service with the bench's settings (bench/stack.py FAST_SETTINGS) except
polite, which runs the shipped ones; every figure is printed with the settings it ran with.

It starts its own redis-server, local HTTPS site and service processes, and writes everything
to bench/results/latest.json (and a copy named by the time) so runs can be compared.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone

from bench import api_bench, e2e_bench, parse_bench, polite_bench
from bench.stack import Stack, running_stack
from config import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "bench" / "results"
PARTS = ("parse", "e2e", "api", "polite")
SERVICE_PARTS = ("e2e", "api", "polite")


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def run_parts(parts: tuple[str, ...], quick: bool) -> dict:
    result: dict = {"started_at": datetime.now(timezone.utc).isoformat(), "machine": machine(), "quick": quick}
    if "parse" in parts:
        result["parse"] = timed(lambda: parse_bench.run(repeat=3 if quick else 5), "parse")
        parse_bench.print_table(result["parse"])
    if any(part in parts for part in SERVICE_PARTS):
        # The generic sites only when the polite part needs them: the others' FETCH_CONNECT_TO stays as it was.
        with running_stack(extra_hosts=polite_bench.SITE_HOSTS if "polite" in parts else ()) as stack:
            result["pages"] = stack.site.pages.origin
            run_service_parts(stack, parts, quick, result)
    return result


def run_service_parts(stack: Stack, parts: tuple[str, ...], quick: bool, result: dict) -> None:
    if "e2e" in parts:
        sizes = e2e_bench.QUICK if quick else e2e_bench.Sizes()
        result["e2e"] = timed(lambda: e2e_bench.run(stack, sizes), "end to end")
        e2e_bench.print_table(result["e2e"])
    if "api" in parts:
        result["api"] = timed(lambda: api_bench.run(stack), "API")
        api_bench.print_table(result["api"])
    if "polite" in parts:
        polite_sizes = polite_bench.QUICK if quick else polite_bench.PoliteSizes()
        result["polite"] = timed(lambda: polite_bench.run(stack, polite_sizes), "polite (shipped politeness)")
        polite_bench.print_table(result["polite"])


def timed(action: Callable[[], dict], label: str) -> dict:
    print(f"\n== {label} ==", flush=True)
    started = time.monotonic()
    outcome = action()
    outcome["bench_seconds"] = round(time.monotonic() - started, 1)
    return outcome


def write(result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=1, default=str)
    (RESULTS / "latest.json").write_text(text)
    stamp = result["started_at"][:19].replace(":", "-")
    (RESULTS / f"run-{stamp}.json").write_text(text)
    print(f"\nwritten to {(RESULTS / 'latest.json').relative_to(PROJECT_ROOT)}")


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--only", choices=PARTS, action="append", help="run only these parts (repeatable)")
    options.add_argument("--quick", action="store_true", help="smaller workloads, for a smoke run")
    args = options.parse_args(argv)
    started = time.monotonic()
    result = run_parts(tuple(args.only or PARTS), args.quick)
    result["seconds"] = round(time.monotonic() - started, 1)
    write(result)
    print(f"bench took {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
