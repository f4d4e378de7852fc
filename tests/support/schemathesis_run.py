"""Schemathesis over the service's own OpenAPI document, as `schemathesis run` would: one
configuration and one event loop for the in-process run (tests/web/test_fuzz.py, from_wsgi) and
the run against a live gunicorn (tests/web/test_live_fuzz.py, from_url)."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import schemathesis
from schemathesis.engine import events as engine_events
from schemathesis.engine import from_schema
from schemathesis.schemas import BaseSchema

CHECKS = ["not_a_server_error", "response_schema_conformance", "status_code_conformance",
          "content_type_conformance", "response_headers_conformance"]


def fuzz_config(seed: int, max_examples: int) -> schemathesis.Config:
    """Examples, coverage and fuzzing phases of every operation, with CHECKS only."""
    return schemathesis.Config.from_dict({
        "seed": seed,
        "workers": 1,
        "generation": {"max-examples": max_examples, "mode": "all", "database": "none"},
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
                   # response-derived values make a small, finite space: hypothesis would stop early
                   "fuzzing": {"enabled": True, "extra-data-sources": {"responses": False}},
                   "stateful": {"enabled": False}},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    })


@dataclass
class Run:
    """What one schemathesis run did: requests per "phase operation", statuses, and every problem."""

    operations: list[str]
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int | None] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    finished: engine_events.EngineFinished | None = None
    elapsed: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    def per_operation(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for key, count in self.requests.items():
            counts[key.split(" ", 1)[1]] += count
        return counts


def run(schema: BaseSchema) -> Run:
    """Run every phase the schema's config enables, collecting what each scenario sent and got."""
    result = Run(sorted(found.ok().label for found in schema.get_all_operations()))
    started = time.monotonic()
    for event in from_schema(schema).execute():
        if isinstance(event, engine_events.ScenarioFinished):
            record_scenario(result, event)
        elif isinstance(event, (engine_events.NonFatalError, engine_events.FatalError)):
            result.errors.append(event.info.format() if hasattr(event, "info") else repr(event.exception))
        elif isinstance(event, engine_events.EngineFinished):
            result.finished = event
    result.elapsed = time.monotonic() - started
    return result


def record_scenario(result: Run, event: engine_events.ScenarioFinished) -> None:
    recorder = event.recorder
    for interaction in recorder.interactions.values():
        result.requests[f"{event.phase.value} {recorder.label}"] += 1
        status = interaction.response.status_code if interaction.response is not None else None
        result.statuses[status] += 1
        if status is not None and status >= 500:
            result.server_errors.append(f"{interaction.request.method} {interaction.request.uri} "
                                        f"{(interaction.request.body or b'')[:300]!r} -> {status} "
                                        f"{interaction.response.content[:300]!r}")
    for case_id, checks in recorder.checks.items():
        for check in checks:
            if check.failure_info is not None:
                interaction = recorder.interactions.get(case_id)
                sent = f"{interaction.request.method} {interaction.request.uri}" if interaction else "?"
                result.failed_checks.append(f"{check.name}: {check.failure_info.failure.title} ({sent})")


def summary(result: Run, title: str) -> str:
    """The lines a run prints: requests per operation and phase, and the statuses seen."""
    per_operation = result.per_operation()
    lines = [f"\nschemathesis {schemathesis.__version__}: {title}, {result.total} requests in {result.elapsed:.0f} s "
             f"over {len(result.operations)} operations"]
    for label in result.operations:
        phases = ", ".join(f"{key.split(' ', 1)[0]} {count}" for key, count in sorted(result.requests.items())
                           if key.split(" ", 1)[1] == label)
        lines.append(f"  {label:32} {per_operation[label]:6}  ({phases})")
    lines.append(f"  statuses: {dict(sorted(result.statuses.items(), key=lambda item: str(item[0])))}")
    return "\n".join(lines)


def assert_clean(result: Run) -> None:
    """Completed, no engine error, no 5xx, no failed check, and every operation exercised."""
    assert result.finished is not None and result.finished.stop_reason.value == "completed", result.finished
    assert not result.errors, "\n".join(result.errors[:10])
    assert not result.server_errors, (f"{len(result.server_errors)} answers were 5xx:\n"
                                      + "\n".join(result.server_errors[:20]))
    assert not result.failed_checks, (f"{len(result.failed_checks)} checks failed:\n"
                                      + "\n".join(sorted(set(result.failed_checks))[:20]))
    missing = set(result.operations) - set(result.per_operation())
    assert not missing, missing
