"""storage: pickled records and batches in Redis, loaded with an unpickler that refuses code."""
from __future__ import annotations

import builtins
import logging
import os
import pickle
import shlex
import subprocess
import time
from collections import OrderedDict
from datetime import date, datetime, timedelta, timezone

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import pages
from tests.support.forged import shared_lists

import parsers
import storage
from storage import (
    BATCH_TTL, RECORD_KEYS, Storage, batch_key, dumps, make_record, record_key, safe_loads,
)

URL = "https://www.goodreads.com/book/show/5907"
OTHER = "https://www.bbc.com/news"


@pytest.fixture
def redis():
    client = fakeredis.FakeRedis()
    yield client
    client.close()


@pytest.fixture
def store(redis):
    return Storage(redis)


def a_record(url: str = URL, **data) -> dict:
    return make_record(url, "goodreads_book", "done", "1", data={"title": "The Hobbit", **data})


# --- hostile pickles ------------------------------------------------------------------------------


class ShellPayload:
    """Unpickling runs os.system(command)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class EvalPayload:
    """Unpickling runs builtins.eval(source)."""

    def __init__(self, source: str):
        self.source = source

    def __reduce__(self):
        return builtins.eval, (self.source,)


class PopenPayload:
    """Unpickling calls the class subprocess.Popen via REDUCE."""

    def __init__(self, argv: list[str]):
        self.argv = argv

    def __reduce__(self):
        return subprocess.Popen, (self.argv,)


class Plain:
    """An ordinary user class: not on the allow list either."""

    def __init__(self):
        self.x = 1


def shell_payload(marker, protocol: int = storage.PICKLE_PROTOCOL) -> bytes:
    return pickle.dumps(ShellPayload(f"echo hacked > {shlex.quote(str(marker))}"), protocol=protocol)


def hostile_payloads(marker) -> dict[str, bytes]:
    """Each payload, if executed, creates marker."""
    return {
        "os.system": shell_payload(marker),
        "builtins.eval": pickle.dumps(EvalPayload(f"open({str(marker)!r}, 'w').write('hacked')"), protocol=5),
        "subprocess.Popen class": pickle.dumps(PopenPayload(["touch", str(marker)]), protocol=5),
        "hand-written protocol 0": b"cos\nsystem\n(S'echo hacked > " + shlex.quote(str(marker)).encode() + b"'\ntR.",
    }


PAYLOAD_NAMES = ["os.system", "builtins.eval", "subprocess.Popen class", "hand-written protocol 0"]


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_payloads_are_live(tmp_path, name):
    # Control: the ordinary unpickler really runs each payload, so the refusals below mean something.
    marker = tmp_path / "control"
    result = pickle.loads(hostile_payloads(marker)[name])
    if isinstance(result, subprocess.Popen):
        result.wait(timeout=10)
    assert marker.exists()


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_safe_loads_refuses_code(tmp_path, name):
    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        safe_loads(hostile_payloads(marker)[name])
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_safe_loads_refuses_os_system_in_every_protocol(tmp_path, protocol):
    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError):
        safe_loads(shell_payload(marker, protocol))
    assert not marker.exists()


@pytest.mark.parametrize("value", [
    Plain(),
    OrderedDict(a=1),
    {"nested": [1, {"deep": Plain()}]},
    ValueError("boom"),
])
def test_safe_loads_refuses_other_classes(value):
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        safe_loads(dumps(value))


@pytest.mark.parametrize("raw", [b"", b"not a pickle", b"\x80\x05", dumps({"a": 1})[:-3], b"P0\n."])
def test_safe_loads_raises_on_garbage(raw):
    with pytest.raises(Exception):
        safe_loads(raw)


@pytest.mark.parametrize("value", [
    None, True, 0, -7, 2**80, 1.5, "text", "ünïcødé", b"\x00bytes", [1, [2, [3]]], (1, "a"), {1, 2},
    frozenset({"a"}), {"k": {"nested": [None]}},
    datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc),
    datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(2024, 5, 1, 12, 30),
    date(2024, 5, 1),
    timedelta(days=2, seconds=5),
    timezone.utc,
])
def test_safe_loads_accepts_plain_data_and_datetime_types(value):
    loaded = safe_loads(dumps(value))
    assert loaded == value
    assert type(loaded) is type(value)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary()
    | st.datetimes(timezones=st.sampled_from([None, timezone.utc, timezone(timedelta(hours=-3))])),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_like)
def test_safe_loads_round_trips_any_plain_value(value):
    assert safe_loads(dumps(value)) == value


# --- records through Redis ------------------------------------------------------------------------


def test_make_record_shape():
    before = datetime.now(timezone.utc)
    record = make_record(URL, "goodreads_book", "ok", "3", data={"title": "x"})
    after = datetime.now(timezone.utc)
    assert tuple(record) == RECORD_KEYS
    assert record["url"] == URL and record["kind"] == "goodreads_book" and record["status"] == "ok"
    assert record["parser_version"] == "3" and record["data"] == {"title": "x"} and record["error"] is None
    assert record["fetched_at"].utcoffset() == timedelta(0)
    assert before <= record["fetched_at"] <= after


def test_key_names():
    assert record_key(URL) == f"metaparse:record:{URL}"
    assert batch_key("abc") == "metaparse:batch:abc"


def test_record_round_trip_keeps_aware_datetime(store, redis):
    fetched = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    record = {**a_record(), "fetched_at": fetched, "error": {"code": "x", "message": "y"}}
    store.save_record(record, ttl=3600)
    loaded = store.load_record(URL)
    assert loaded == record
    assert loaded is not record
    assert loaded["fetched_at"].tzinfo is not None
    assert loaded["fetched_at"].utcoffset() == timedelta(hours=2)
    assert loaded["fetched_at"] == fetched
    assert redis.exists(record_key(URL))


def test_save_record_sets_ttl(store, redis):
    store.save_record(a_record(), ttl=120)
    assert 110 <= redis.ttl(record_key(URL)) <= 120


def test_save_record_overwrites_and_refreshes_ttl(store, redis):
    store.save_record(a_record(title="old"), ttl=60)
    store.save_record(a_record(title="new"), ttl=5000)
    assert store.load_record(URL)["data"]["title"] == "new"
    assert redis.ttl(record_key(URL)) > 60


def test_load_missing_record_is_none(store):
    assert store.load_record("https://example.com/missing") is None


def test_load_records_in_one_call_keeps_order_and_gaps(store, redis, monkeypatch):
    first, second = a_record(URL), a_record(OTHER)
    store.save_record(first, ttl=60)
    store.save_record(second, ttl=60)

    calls = []
    real_mget, real_get = redis.mget, redis.get
    monkeypatch.setattr(redis, "mget", lambda *a, **k: calls.append("mget") or real_mget(*a, **k))
    monkeypatch.setattr(redis, "get", lambda *a, **k: calls.append("get") or real_get(*a, **k))

    loaded = store.load_records([OTHER, "https://example.com/missing", URL, OTHER])
    assert loaded == [second, None, first, second]
    assert calls == ["mget"]


def test_load_records_empty_list_makes_no_call(store, redis, monkeypatch):
    monkeypatch.setattr(redis, "mget", lambda *a, **k: pytest.fail("no Redis call expected"))
    assert store.load_records([]) == []


def test_batch_round_trip_and_ttl(store, redis):
    batch = a_batch("b1")
    store.save_batch(batch)
    assert store.load_batch("b1") == batch
    assert BATCH_TTL == 7 * 86400  # README: a batch can be read for 7 days
    assert BATCH_TTL - 10 <= redis.ttl(batch_key("b1")) <= BATCH_TTL
    assert store.load_batch("nope") is None


def a_batch(batch_id: str) -> dict:
    items = [{"url": url, "canonical_url": url, "source": "goodreads", "job_id": f"job-{n}"}
             for n, url in enumerate([URL, OTHER])]
    return {"id": batch_id, "created_at": datetime.now(timezone.utc), "items": items, "callback_url": None}


def a_snapshot(n: int) -> dict:
    return {"fetched_at": datetime.now(timezone.utc), "headlines": [{"title": f"Story {n}", "url": f"{OTHER}/{n}"}]}


# --- tampered values in Redis ---------------------------------------------------------------------


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_tampered_record_refused_and_logged(store, redis, tmp_path, caplog, name):
    marker = tmp_path / "pwned"
    redis.set(record_key(URL), hostile_payloads(marker)[name])
    with caplog.at_level(logging.ERROR, logger=storage.__name__):
        assert store.load_record(URL) is None
    assert not marker.exists()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == storage.__name__]
    assert len(errors) == 1
    assert record_key(URL) in errors[0].getMessage()
    assert "refused" in errors[0].getMessage()


def test_tampered_record_among_good_ones(store, redis, tmp_path, caplog):
    marker = tmp_path / "pwned"
    good = a_record(OTHER)
    store.save_record(good, ttl=60)
    redis.set(record_key(URL), shell_payload(marker))
    with caplog.at_level(logging.ERROR, logger=storage.__name__):
        assert store.load_records([URL, OTHER]) == [None, good]
    assert not marker.exists()
    assert any(record_key(URL) in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_tampered_batch_refused(store, redis, tmp_path, caplog):
    marker = tmp_path / "pwned"
    redis.set(batch_key("b1"), shell_payload(marker))
    with caplog.at_level(logging.ERROR, logger=storage.__name__):
        assert store.load_batch("b1") is None
    assert not marker.exists()
    assert batch_key("b1") in caplog.text


@pytest.mark.parametrize("raw", [b"garbage", b"", dumps(a_record())[:20]])
def test_corrupt_record_refused_and_logged(store, redis, caplog, raw):
    redis.set(record_key(URL), raw)
    with caplog.at_level(logging.ERROR, logger=storage.__name__):
        assert store.load_record(URL) is None
    assert record_key(URL) in caplog.text


@pytest.mark.parametrize("value, type_name", [
    (["a", "list"], "list"),
    ("a string", "str"),
    (42, "int"),
    (None, "NoneType"),
    ((URL,), "tuple"),
])
def test_non_dict_record_refused(store, redis, caplog, value, type_name):
    redis.set(record_key(URL), dumps(value))
    with caplog.at_level(logging.ERROR, logger=storage.__name__):
        assert store.load_record(URL) is None
        assert store.load_records([URL]) == [None]
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(messages) == 2
    assert all(type_name in m and "not a dict" in m for m in messages)


def test_non_dict_batch_refused(store, redis, caplog):
    redis.set(batch_key("b1"), dumps(["x"]))
    with caplog.at_level(logging.ERROR, logger=storage.__name__):
        assert store.load_batch("b1") is None
    assert "not a dict" in caplog.text


def test_save_once_saves_the_record_snapshot_and_guard_together_and_reads_the_watchers(store, redis):
    store.watch_batch("b1", [URL])
    for n in range(3):
        store.push_snapshot(URL, a_snapshot(n), keep=3, ttl=60)
    record = make_record(URL, "goodreads_book", "done", "1", data={"title": "The Hobbit"})
    assert store.save_once(record, 60, "job-1", b"gen-1", a_snapshot(3), keep=3) == ["b1"]
    assert store.load_record(URL)["status"] == "done" and store.saved_by("job-1") == b"gen-1"
    assert redis.get("metaparse:saved-by:job-1") == b"gen-1" and 0 < redis.ttl("metaparse:saved-by:job-1") <= 86400
    titles = [snap["headlines"][0]["title"] for snap in store.load_snapshots(URL)]
    assert titles == ["Story 3", "Story 2", "Story 1"]  # newest `keep` kept
    # The same generation again (a re-run): nothing written, not even its snapshot.
    failed = make_record(URL, "goodreads_book", "failed", "1", error={"code": "x", "message": "y"})
    assert store.save_once(failed, 60, "job-1", b"gen-1", a_snapshot(4), keep=3) is None
    assert store.load_record(URL)["status"] == "done" and len(store.load_snapshots(URL)) == 3
    # A later generation of the job saves; without a snapshot, none is pushed.
    assert store.save_once(failed, 60, "job-1", b"gen-2") == ["b1"]
    assert store.load_record(URL)["status"] == "failed" and store.saved_by("job-1") == b"gen-2"
    assert [snap["headlines"][0]["title"] for snap in store.load_snapshots(URL)] == titles
    assert store.saved_by("job-2") is None


# --- values that unpickle safely but are not plain data of the right shape ---------------------------


def self_referencing() -> list:
    node: list = ["x"]
    node.append(node)
    return node


def nested(levels: int) -> dict:
    node: dict = {"leaf": "x"}
    for _ in range(levels):
        node = {"child": node}
    return node


def shared_text(times: int) -> list:
    text = "x" * 1_000_000
    return [text] * times  # one string, `times` references: ~6 bytes of pickle each


NOT_PLAIN = {
    "shared sub-lists unfolding into 2**25 lists": ({"data": shared_lists(25)}, "values"),
    "shared sub-lists unfolding into 2**60 lists": ({"data": shared_lists(60)}, "deeper"),
    "a self-reference": ({"data": self_referencing()}, "deeper"),
    "a set": ({"data": {"a", "b"}}, "a set"),
    "a frozenset": ({"data": frozenset({1})}, "a frozenset"),
    "bytes": ({"data": b"raw"}, "a bytes"),
    "a complex number": ({"data": 1j}, "refused global builtins.complex"),
    "NaN": ({"data": float("nan")}, "not finite"),
    "infinity": ({"data": float("inf")}, "not finite"),
    "an integer of 5,000 digits": ({"data": 10**5000}, "out of range"),
    "an integer key": ({"data": {1: "x"}}, "a int key"),
    "a lone surrogate": ({"data": "\ud800"}, "lone surrogates"),
    "a lone surrogate in a key": ({"data": {"\udfff": 1}}, "lone surrogates"),
    "nesting 40 deep": ({"data": nested(40)}, "deeper"),
    "one megabyte of text referred to 40 times": ({"data": shared_text(40)}, "characters of text"),
}


@pytest.mark.parametrize("name", list(NOT_PLAIN))
def test_a_record_that_is_not_plain_data_is_refused_quickly(store, redis, caplog, name):
    fields, reason = NOT_PLAIN[name]
    record = {**a_record(), **fields}
    raw = dumps(record)
    assert len(raw) < storage.MAX_STORED_BYTES
    redis.set(record_key(URL), raw)
    started = time.perf_counter()
    with caplog.at_level(logging.ERROR, logger=storage.__name__):
        assert store.load_record(URL) is None
        assert store.load_records([URL]) == [None]
    assert time.perf_counter() - started < 1.0
    assert reason in caplog.text and record_key(URL) in caplog.text


def test_one_list_of_millions_of_references_is_refused_before_it_is_walked():
    shared = ["x"]
    record = {**a_record(), "data": {"many": [shared] * 4_000_000}}
    started = time.process_time()
    assert "values" in storage.plain_data_problem(record)
    assert time.process_time() - started < 0.05


def test_the_issues_bomb_is_small_and_would_unfold_into_megabytes():
    """The shape of the issue's 297-byte pickle: each level doubles what JSON would write."""
    bomb = {**a_record(), "data": shared_lists(20)}
    assert len(dumps(bomb)) < 500
    assert storage.plain_data_problem(bomb) is not None
    assert storage.plain_data_problem({**a_record(), "data": shared_lists(8)}) is None  # 2**8 lists: fine


def test_a_stored_value_over_the_byte_limit_is_refused_unread(store, redis, caplog, monkeypatch):
    redis.set(record_key(URL), dumps(a_record(description="x" * 2000)))
    monkeypatch.setattr(storage, "MAX_STORED_BYTES", 1000)
    monkeypatch.setattr(storage, "safe_loads", lambda raw: pytest.fail("unpickled a value over the limit"))
    with caplog.at_level(logging.ERROR, logger=storage.__name__):
        assert store.load_record(URL) is None
    assert "over 1000" in caplog.text


# The bounds as README states them, written out: a change of the constants in storage.py shows here.
README_BOUNDS = {"bytes": 8 * 1024 * 1024, "values": 200_000, "text": 32 * 1024 * 1024, "depth": 32}


def nested_lists(depth: int) -> list:
    node: list = []
    for _ in range(depth - 1):
        node = [node]
    return node


@pytest.mark.parametrize("bound, at_limit, over, reason", [
    ("values", lambda n: [0] * (n - 1), lambda n: [0] * n, "values"),  # a list of k scalars is k + 1 values
    ("text", lambda n: ["x" * (n // 32)] * 32, lambda n: ["x" * (n // 32)] * 32 + ["x"], "characters"),
    ("depth", nested_lists, lambda n: nested_lists(n + 1), "deeper"),
])
def test_plain_data_is_bounded_exactly_where_the_readme_says(bound, at_limit, over, reason):
    limit = README_BOUNDS[bound]
    assert storage.plain_data_problem(at_limit(limit)) is None
    assert reason in storage.plain_data_problem(over(limit))


def record_pickled_to(size: int) -> dict:
    """A record whose pickle is exactly size bytes (its description pads it)."""
    padding = size - len(dumps(a_record(description="")))
    overshoot = len(dumps(a_record(description="x" * padding))) - size  # the string's longer length field
    record = a_record(description="x" * (padding - overshoot))
    assert len(dumps(record)) == size
    return record


def test_a_stored_value_of_exactly_the_byte_limit_is_read_and_one_byte_more_is_not(store, redis, caplog):
    limit = README_BOUNDS["bytes"]
    at_limit = record_pickled_to(limit)
    store.save_record(at_limit, ttl=60)
    assert store.load_record(URL) == at_limit
    redis.set(record_key(URL), dumps(at_limit) + b".")  # one byte more (a second STOP opcode: never read)
    with caplog.at_level(logging.ERROR, logger=storage.__name__):
        assert store.load_record(URL) is None
    assert f"{limit + 1} bytes, over {limit}" in caplog.text


WRONG_RECORDS = {
    "no url": lambda r: r.pop("url"),
    "fetched_at without a time zone": lambda r: r.update(fetched_at=datetime(2026, 1, 1)),
    "a done record without data": lambda r: r.update(data=None),
    "a done news record without headlines": lambda r: r["data"].pop("headlines"),
    "a failed record without its error": lambda r: r.update(status="failed", data=None, error=None),
    "a url that is a list": lambda r: r.update(url=[URL]),
    "fetched_at as text": lambda r: r.update(fetched_at="2026-01-01"),
    "an unknown status": lambda r: r.update(status="pwned"),
    "data that is a list": lambda r: r.update(data=["x"]),
    "error that is text": lambda r: r.update(error="x"),
    "headlines that are text": lambda r: r["data"].update(headlines="x"),
    "headlines without urls": lambda r: r["data"].update(headlines=[{"title": "x"}]),
    "a headline url that is a number": lambda r: r["data"].update(headlines=[{"url": 1}]),
}


@pytest.mark.parametrize("name", list(WRONG_RECORDS))
def test_a_record_of_the_wrong_shape_is_refused(store, redis, caplog, name):
    record = make_record(OTHER, "news_headlines", "done", "1", data={"headlines": [{"title": "t", "url": OTHER}]})
    WRONG_RECORDS[name](record)
    redis.set(record_key(OTHER), dumps(record))
    with caplog.at_level(logging.ERROR, logger=storage.__name__):
        assert store.load_record(OTHER) is None
    assert "refused stored value" in caplog.text


@pytest.mark.parametrize("change", [
    lambda b: b.pop("items"), lambda b: b.update(items="x"), lambda b: b.update(created_at=0),
    lambda b: b.update(created_at=datetime(2026, 1, 1)),
    lambda b: b["items"].append("x"), lambda b: b["items"][0].pop("canonical_url"),
    lambda b: b.update(callback_url=5), lambda b: b.update(id=None),
    lambda b: b.update(callback_format="xml"), lambda b: b.update(callback_format=None),
    lambda b: b.update(callback_format=["slack"]),
])
def test_a_batch_of_the_wrong_shape_is_refused(store, redis, change):
    batch = a_batch("b1")
    change(batch)
    redis.set(batch_key("b1"), dumps(batch))
    assert store.load_batch("b1") is None


@pytest.mark.parametrize("callback_format", ["json", "slack", None], ids=["json", "slack", "saved-before-it-existed"])
def test_a_batch_names_its_callback_format_or_none(store, redis, callback_format):
    batch = a_batch("b1") if callback_format is None else {**a_batch("b1"), "callback_format": callback_format}
    redis.set(batch_key("b1"), dumps(batch))
    assert store.load_batch("b1") == batch


def test_a_snapshot_of_the_wrong_shape_is_skipped(store, redis):
    store.push_snapshot(URL, a_snapshot(1), keep=5, ttl=60)
    redis.lpush(storage.SNAPSHOTS + URL, dumps({"fetched_at": "yesterday", "headlines": []}))
    redis.lpush(storage.SNAPSHOTS + URL, dumps({"fetched_at": datetime.now(timezone.utc), "headlines": [1]}))
    redis.lpush(storage.SNAPSHOTS + URL, dumps({"fetched_at": datetime.now(), "headlines": []}))  # naive
    assert [snap["headlines"][0]["title"] for snap in store.load_snapshots(URL)] == ["Story 1"]


def test_every_real_page_record_is_well_within_the_bounds(store):
    """The bounds leave room: every record the parsers make from the saved pages."""
    # Only the pages the manifest calls soft 404s are refused; any other ParseError fails here.
    parsed = [entry for entry in pages.manifest() if "soft-404" not in entry["layout"]]
    assert len(parsed) >= 20
    for entry in parsed:
        data = parsers.parse(pages.read_page(entry["file"]), entry["url"])
        record = make_record(entry["url"], data["kind"], "done", "1", data=data)
        assert storage.plain_data_problem(record) is None and storage.record_problem(record) is None, entry["file"]
        assert len(dumps(record)) < storage.MAX_STORED_BYTES // 100, entry["file"]


def test_a_key_of_another_redis_type_is_a_value_of_the_wrong_shape(redis_client, caplog):
    """On a real Redis (WRONGTYPE): a hash where a record, batch or snapshot list should be."""
    store = Storage(redis_client)
    for key in (record_key(URL), batch_key("b1")):
        redis_client.hset(key, "a", "b")
    redis_client.set(storage.SNAPSHOTS + URL, b"not a list")
    with caplog.at_level(logging.ERROR, logger=storage.__name__):
        assert store.load_record(URL) is None and store.load_batch("b1") is None
        assert store.load_records([URL]) == [None] and store.load_snapshots(URL) == []
    assert caplog.text.count("another type") == 3
