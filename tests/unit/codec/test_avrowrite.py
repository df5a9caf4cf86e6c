"""The C Avro writer (``streams/codec/_avrowrite.c``) and the Python writer are one writer.

``tests/unit/codec/test_fastwrite.py`` holds whichever writer this process
runs to fastavro's bytes; here the two forms of ``streams.codec.fastwrite``
write the same data, good and bad, side by side: the same bytes, and where
one refuses a value the other raises the same error. They also check what
only C can get wrong: references kept or dropped, and nesting without end.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import runpy
import sys
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.catalogue import RECORD_OF_KIND
from streams.codec import fastwrite
from streams.codec.avro import load_named_schemas
from streams.codec.fastwrite import compile_writer
from streams.ledger import apply_event, load_ledger_config, parse_event
from streams.ledger.synth import generate_events
from tests.unit.refcheck import blocks_grown
from tests.unit.sinks import samples

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.skipif(not fastwrite.NATIVE,
                                reason="the C writer is not built here (make install)")

SCHEMAS = {full.rsplit(".", 1)[-1]: schema for full, schema in load_named_schemas().items()}


@functools.cache
def _writers(name: str) -> tuple[Any, Any]:
    """(C, Python) writers of the current schema of record ``name``."""
    native = compile_writer(SCHEMAS[name], native=True)
    python = compile_writer(SCHEMAS[name], native=False)
    assert native is not None and python is not None
    return native, python


def _outcome(write: Any, datum: Any) -> Any:
    try:
        return write(datum)
    except Exception as exc:  # noqa: BLE001 - the comparison is the test
        return (type(exc), str(exc))


def _records() -> list[tuple[str, dict[str, Any]]]:
    config = load_ledger_config(None)
    states: dict[str, Any] = {}
    out: list[tuple[str, dict[str, Any]]] = []
    for d in generate_events(1_500, 25, seed=13):
        if d["kind"] == "mark":
            continue
        ev = parse_event(d)
        res = apply_event(states.get(ev.account_id), ev, {}, config)
        states[ev.account_id] = res.state
        out += [(RECORD_OF_KIND[o.kind], o.record) for o in res.outputs]
    out += [("AccountSnapshot", samples.snapshot()), ("TradeEvent", samples.trade()),
            ("ReconcileEvent", samples.reconcile()), ("Anomaly", samples.anomaly()),
            ("DeadLetter", samples.dead_letter()), ("CashFlowEvent", samples.cash_flow()),
            ("BalanceChange", samples.balance_change()),
            ("PortfolioSnapshot", samples.portfolio())]
    return out


RECORDS = _records()


def test_every_record_of_every_kind_is_written_alike():
    kinds = set()
    for name, record in RECORDS:
        native, python = _writers(name)
        assert native(record) == python(record), name
        kinds.add(name)
    assert {"AccountSnapshot", "TradeEvent", "ReconcileEvent", "DeadLetter",
            "PortfolioSnapshot", "BalanceChange", "CashFlowEvent"} <= kinds


class _Frozen(Mapping[str, Any]):
    """A record that is a Mapping but not a dict: written through its own ``get``."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_a_mapping_that_is_not_a_dict_is_written_alike():
    name, record = next((n, r) for n, r in RECORDS if n == "AccountSnapshot" and r["positions"])
    native, python = _writers(name)
    frozen = _Frozen({**record, "positions": [_Frozen(p) for p in record["positions"]]})
    assert native(frozen) == python(frozen) == python(record)
    assert _outcome(native, object()) == _outcome(python, object())  # no .get at all


class _Str(str):
    pass


class _Int(int):
    pass


class _Dec(Decimal):
    pass


WRONG = [None, True, False, 0, -1, 2**63, -(2**63) - 1, 2**70, _Int(5), 1.5, "", "x",
         _Str("s"), "\ud800", b"raw", Decimal("0"), Decimal("-0.000000000000000001"),
         Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("1E+30"),
         Decimal("0.1234567890123456789"), Decimal("1.000000000000000000000"), _Dec("2.5"),
         dt.datetime(2026, 1, 2, 3, 4, 5, 6), dt.datetime(1, 1, 1, tzinfo=dt.UTC),
         dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
         [], [None], ["a", 1], {}, {"a": 1}, object()]


def test_every_field_of_every_kind_refuses_or_writes_a_wrong_value_alike():
    seen: dict[str, dict[str, Any]] = {}
    for name, record in RECORDS:
        seen.setdefault(name, record)
    for name, record in seen.items():
        native, python = _writers(name)
        for field in record:
            for value in WRONG:
                datum = {**record, field: value}
                got, want = _outcome(native, datum), _outcome(python, datum)
                assert got == want, (name, field, value, got, want)
            missing = {k: v for k, v in record.items() if k != field}
            assert _outcome(native, missing) == _outcome(python, missing), (name, field)


@given(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31),
                    timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=3))])))
@settings(max_examples=300, deadline=None)
def test_times_across_the_calendar_are_written_alike(when):
    record = {**samples.anomaly(), "ts": when}
    native, python = _writers("Anomaly")
    assert _outcome(native, record) == _outcome(python, record)


def test_repeated_writes_keep_no_references():
    data = [(n, r) for n, r in RECORDS[::4]]
    bad = [("Anomaly", {**samples.anomaly(), "ts": v}) for v in WRONG]
    bad += [("TradeEvent", {**samples.trade(), "price": v}) for v in WRONG]

    def one_round() -> None:
        for name, record in data + bad:
            _outcome(_writers(name)[0], record)

    grown = blocks_grown(one_round)
    assert grown < 2_000, f"{grown} blocks more after 20 rounds of {len(data + bad)} writes"


def test_writing_leaves_the_reference_counts_of_the_values_as_they_were():
    # A reference taken and not given back allocates nothing: it shows in the count.
    text, price, when = "marker-" + str(id(object())), Decimal("12.5"), dt.datetime.now(dt.UTC)
    trade = {**samples.trade(), "symbol": text, "price": price, "ts": when}
    wrong = {**trade, "qty": "not a decimal"}
    native, _ = _writers("TradeEvent")
    native(trade)
    counts = [sys.getrefcount(v) for v in (text, price, when, trade, wrong)]
    for _ in range(1_000):
        native(trade)
        _outcome(native, wrong)
    assert [sys.getrefcount(v) for v in (text, price, when, trade, wrong)] == counts


NODE = {"type": "record", "name": "Node", "fields": [
    {"name": "v", "type": "long"}, {"name": "next", "type": ["null", "Node"]}]}


def _chain(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"v": 0, "next": None}
    for i in range(depth):
        node = {"v": i, "next": node}
    return node


def test_a_recursive_schema_is_written_alike_and_endless_nesting_is_refused_by_both():
    native, python = compile_writer(NODE, native=True), compile_writer(NODE, native=False)
    assert native is not None and python is not None
    # Both spend two levels of Python's recursion limit (1,000) per link (the record and
    # the reference to it): 300 links are written by both, 600 refused by both.
    assert native(_chain(300)) == python(_chain(300))
    for depth in (600, 100_000):
        for write in (native, python):
            with pytest.raises(RecursionError):
                write(_chain(depth))


ENUM = {"type": "record", "name": "R", "fields": [
    {"name": "f", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}}]}


def test_a_value_an_enum_does_not_have_is_refused_alike():
    native, python = compile_writer(ENUM, native=True), compile_writer(ENUM, native=False)
    for value in ("B", "C", None, ("A",), (), 1, [], {}):
        assert _outcome(native, {"f": value}) == _outcome(python, {"f": value}), value


DEC = {"type": "record", "name": "D", "fields": [
    {"name": "a", "type": {"type": "bytes", "logicalType": "decimal", "precision": 38,
                           "scale": 18}}]}


@pytest.mark.parametrize("size", [0, 1, 3, -1, 1.5, float("inf"), 2**70, "delete"])
def test_the_decimal_cache_turns_alike_whatever_its_size_setting(monkeypatch, size):
    if size == "delete":
        monkeypatch.delattr(fastwrite, "DECIMAL_CACHE_SIZE")
    else:
        monkeypatch.setattr(fastwrite, "DECIMAL_CACHE_SIZE", size)
    young, old = fastwrite._DECIMAL_CACHES[(38, 18)]
    saved = dict(young), dict(old)
    values = [Decimal(f"{i}.{i:02d}") for i in range(7)] * 2 + [Decimal("1E+5000")]
    outcomes = []
    try:
        for native in (True, False):
            young.clear()
            old.clear()
            write = compile_writer(DEC, native=native)
            outcomes.append(([_outcome(write, {"a": v}) for v in values], dict(young), dict(old)))
    finally:
        young.clear(), old.clear()
        young.update(saved[0]), old.update(saved[1])
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("native", [True, False])
def test_a_decimal_far_beyond_the_precision_is_refused_without_building_it(native):
    # as_integer_ratio of 1E+99999999 builds a 41 MB int: minutes. Zero with a large
    # exponent still fits; a value with digits below the scale keeps its own error.
    write = compile_writer(DEC, native=native)
    with pytest.raises(ValueError, match="does not fit decimal"):
        write({"a": Decimal("1E+99999999")})
    assert write({"a": Decimal("0E+99999999")}) == write({"a": Decimal("0")})
    with pytest.raises(ValueError, match="Scale provided"):
        write({"a": Decimal("1" * 30 + ".1234567890123456789")})


def test_an_entry_of_the_older_cache_that_is_not_bytes_is_left_to_python():
    young, old = fastwrite._DECIMAL_CACHES[(38, 18)]
    value = Decimal("1.25")
    results = []
    for entry in (None, "zz" * 50, bytearray(b"\x02\x01")):
        for native in (True, False):
            young.pop(value, None)
            old[value] = entry
            try:
                results.append(_outcome(compile_writer(DEC, native=native), {"a": value}))
            finally:
                old.pop(value, None)
                young.pop(value, None)
        assert results[-2] == results[-1], entry


def test_setup_builds_the_writer_from_this_source_and_names_its_digest():
    ns = runpy.run_path(str(ROOT / "setup.py"), run_name="not_main")
    ext = ns["_codec_extension"]("streams.codec._avrowrite")
    assert ext.sources == ["streams/codec/_avrowrite.c"]
    digest = hashlib.sha256((ROOT / ext.sources[0]).read_bytes()).hexdigest()
    assert ("SOURCE_SHA256", f'"{digest}"') in ext.define_macros
    from streams.codec import _avrowrite

    assert _avrowrite.SOURCE_SHA256 == digest


UNSUPPORTED = [
    {"type": "fixed", "name": "F", "size": 4},
    {"type": "map", "values": "long"},
    {"type": "int", "logicalType": "date"},
    {"type": "record", "name": "U", "fields": [{"name": "u", "type": ["null", "long", "string"]}]},
    {"type": "record", "name": "V", "fields": [{"name": "v", "type": "float"}]},
    {"type": "record", "name": "W", "fields": [
        {"name": "e", "type": {"type": "enum", "name": "S", "symbols": ["A"]}},
        {"name": "again", "type": "S"}]},
]


def test_both_forms_leave_the_same_schemas_to_fastavro():
    for schema in UNSUPPORTED:
        assert compile_writer(schema, native=True) is None, schema
        assert compile_writer(schema, native=False) is None, schema
    compiled = 0
    for schema in (NODE, ENUM, DEC, *SCHEMAS.values()):
        native = compile_writer(schema, native=True)
        assert (native is None) == (compile_writer(schema, native=False) is None), schema
        compiled += native is not None
    assert compiled >= 10  # every output record; VenueEvent's payload union is fastavro's
