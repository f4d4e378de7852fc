"""keys.py is the one home of the service's Redis key names, and the names do not change:
they name data already in Redis."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import keys
import storage
from config import PROJECT_ROOT
from web import ratelimit

# Read by the service, not part of it: their own keys (bench:...) or spelled out to check ours.
NOT_THE_SERVICE = {".venv", ".git", "tests", "bench", "scripts", "node_modules"}
KEY_LIKE = re.compile(r"^(?:metaparse|rq):[\w{*-]")  # a key goes on after the colon; a message has a space


def service_sources() -> list[Path]:
    return sorted(path for path in PROJECT_ROOT.rglob("*.py")
                  if not NOT_THE_SERVICE & set(path.relative_to(PROJECT_ROOT).parts[:-1]))


def spelled(node: ast.AST) -> str | None:
    """The text of a string or f-string, its replacement fields as {NAME}; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else "{" + ast.unparse(part.value) + "}"
                       for part in node.values)
    return None


def key_literals(path: Path) -> set[str]:
    """Strings in path that spell a Redis key of the service or of RQ: metaparse:..., rq:...,
    or an f-string that starts with the key prefix."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        text = spelled(node)
        if text is not None and (KEY_LIKE.match(text) or text.startswith("{PREFIX}")):
            found.add(text)
    return found


def misplaced_keys() -> set[tuple[str, str]]:
    return {(str(path.relative_to(PROJECT_ROOT)), text) for path in service_sources() if path.name != "keys.py"
            for text in key_literals(path)}


def test_no_module_but_keys_spells_a_redis_key():
    assert misplaced_keys() == set()


def test_the_check_sees_keys_spelled_in_either_way(tmp_path):
    source = tmp_path / "x.py"
    source.write_text('A = "metaparse:x"\nB = f"{PREFIX}:y:{z}"\nC = "rq:job:"\nD = "metaparse/1.0 (+bot)"\n'
                      'E = "metaparse: not found"\nF = f"metaparse:{kind}"\n')
    assert key_literals(source) == {"metaparse:x", "{PREFIX}:y:{z}", "rq:job:", "metaparse:{kind}"}


def test_key_names_are_the_ones_data_is_stored_under():
    url, batch_id, host = "https://www.goodreads.com/book/show/1", "b" * 32, "example.com"
    names = [
        (keys.record_key(url), f"metaparse:record:{url}"),
        (keys.record_key_of(url.encode()), f"metaparse:record:{url}".encode()),
        (keys.RECORD_KEY_PATTERN, "metaparse:record:*"),
        (keys.records_by_time_key(), "metaparse:records-by-time"),
        (keys.records_by_time_key("goodreads_book"), "metaparse:records-by-time:goodreads_book"),
        (keys.RECORDS_EXPIRY, "metaparse:records-expiry"),
        (keys.RECORDS_INDEXED, "metaparse:records-indexed"),
        (keys.RECORDS_INDEX_SCAN, "metaparse:records-index-scan"),
        (keys.RECORDS_INDEX_LOCK, "metaparse:records-index-lock"),
        (keys.SNAPSHOTS + url, f"metaparse:snapshots:{url}"),
        (keys.batch_key(batch_id), f"metaparse:batch:{batch_id}"),
        (keys.batch_card_key(batch_id), f"metaparse:batch-card:{batch_id}"),
        (keys.BATCH_INDEX, "metaparse:batches"),
        (keys.WATCHERS + url, f"metaparse:batch-watchers:{url}"),
        (keys.CALLBACKS_PENDING, "metaparse:callbacks-pending"),
        (keys.CALLBACK_CLAIM + batch_id, f"metaparse:callback-claimed:{batch_id}"),
        (keys.RECRAWL_DUE, "metaparse:recrawl-due"),
        (keys.RECRAWL_WANTED, "metaparse:recrawl-wanted"),
        (keys.host_slots_key(host), f"metaparse:host-slots:{host}"),
        (keys.host_next_start_key(host), f"metaparse:host-next-start:{host}"),
        (keys.host_delay_key(host), f"metaparse:host-delay:{host}"),
        (keys.robots_key(f"https://{host}:443"), f"metaparse:robots:https://{host}:443"),
        (keys.FRONTIER_READY, "metaparse:frontier:ready"),
        (keys.FRONTIER_BACKLOG, "metaparse:frontier:backlog"),
        (keys.FRONTIER_LANES + host, f"metaparse:frontier:lanes:{host}"),
        (keys.FRONTIER_LANE + host, f"metaparse:frontier:lane:{host}"),
        (keys.AOF_MARKER, "metaparse:aof-marker"),
        (keys.saved_by_key("j1"), "metaparse:saved-by:j1"),
        (keys.JOB_CLAIMS, "metaparse:claims"),
        (keys.claim_key("j1"), "metaparse:claim:j1"),
        (keys.RATE_LIMITS, "metaparse:limits"),
        (keys.DASHBOARD_AUTH_FAILURES, "metaparse:dashboard-auth-failures"),
        (keys.RQ_JOB_PREFIX, "rq:job:"),
        (keys.RQ_QUEUE_PREFIX, "rq:queue:"),
    ]
    changed = [(name, stored) for name, stored in names if name != stored]
    assert changed == [], "a key name changed: what Redis holds under the old one would be orphaned"


def test_every_record_kind_has_its_index_and_delete_clears_them_all():
    assert set(keys.RECORD_INDEX_KEYS) == {"metaparse:records-expiry", "metaparse:records-by-time",
                                           "metaparse:records-by-time:goodreads_book",
                                           "metaparse:records-by-time:news_headlines", "metaparse:records-by-time:page"}


def test_storage_and_ratelimit_use_the_names_of_keys_py():
    assert storage.record_key is keys.record_key and storage.FRONTIER_LANE is keys.FRONTIER_LANE
    assert ratelimit.RATE_LIMITS is keys.RATE_LIMITS
