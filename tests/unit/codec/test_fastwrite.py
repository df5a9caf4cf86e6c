"""The compiled writer writes exactly fastavro's bytes."""

import datetime as dt
import io
from decimal import Decimal

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.catalogue import RECORD_OF_KIND
from streams.codec import Codec, fold_dict_to_venue_record
from streams.codec.fastwrite import compile_writer
from streams.ledger import apply_event, load_ledger_config, parse_event
from streams.ledger.synth import generate_events

CODEC = Codec.load()
NAMES = RECORD_OF_KIND
DEC = {"type": "record", "name": "D", "fields": [
    {"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 18}},
    {"name": "o", "type": ["null", {"type": "bytes", "logicalType": "decimal",
                                    "precision": 38, "scale": 18}], "default": None},
    {"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "a", "type": {"type": "array", "items": "string"}},
    {"name": "b", "type": "boolean"}, {"name": "n", "type": "long"}]}
PARSED = fastavro.parse_schema(DEC)
FAST = compile_writer(DEC)


def _reference(datum):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, PARSED, datum)
    return buf.getvalue()


def test_every_output_of_the_synthetic_streams_encodes_byte_identically():
    config = load_ledger_config(None)
    states: dict = {}
    checked = 0
    for d in generate_events(3_000, 40, seed=9):
        if d["kind"] == "mark":
            continue
        rec = fold_dict_to_venue_record(d)
        assert CODEC.encode("VenueEvent", rec) == CODEC.encode_with_fastavro("VenueEvent", rec)
        ev = parse_event(d)
        res = apply_event(states.get(ev.account_id), ev, {}, config)
        states[ev.account_id] = res.state
        for out in res.outputs:
            name = NAMES[out.kind]
            assert CODEC.encode(name, out.record) == CODEC.encode_with_fastavro(name, out.record)
            checked += 1
    assert checked > 3_000


decimals = st.decimals(min_value=Decimal("-99999999999999999999.999999999999999999"),
                       max_value=Decimal("99999999999999999999.999999999999999999"),
                       places=18, allow_nan=False, allow_infinity=False)


@given(d=decimals, o=st.none() | decimals, micros=st.integers(0, 2**52),
       a=st.lists(st.text(max_size=5), max_size=4), b=st.booleans(),
       n=st.integers(-(2**63), 2**63 - 1))
@settings(max_examples=500, deadline=None)
def test_decimals_times_arrays_and_longs_match_fastavro(d, o, micros, a, b, n):
    ts = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)
    datum = {"d": d, "o": o, "t": ts, "a": a, "b": b, "n": n}
    assert FAST(datum) == _reference(datum)


@pytest.mark.parametrize("value", ["0", "-0", "1", "-1", "0.000000000000000001", "-128",
                                   "127", "128", "-129", "242.7312", "1E+3", "-0.5"])
def test_decimal_edge_cases(value):
    datum = {"d": Decimal(value), "o": None, "t": 0, "a": [], "b": False, "n": 0}
    assert FAST(datum) == _reference(datum)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "0.0000000000000000001", "1E+20"])
def test_values_the_wire_cannot_carry_are_refused(value):
    with pytest.raises(ValueError):
        FAST({"d": Decimal(value), "o": None, "t": 0, "a": [], "b": False, "n": 0})


def _dec(value):
    return {"d": value, "o": None, "t": 0, "a": [], "b": False, "n": 0}


@pytest.mark.parametrize("first, second", [("1", "1.000"), ("-0", "0"), ("1E+3", "1000.0"),
                                           ("242.7312", "242.73120000")])
def test_a_remembered_decimal_is_written_as_any_equal_value_would_be(first, second):
    # The decimal writer remembers encodings by value: the second of two equal values
    # (another exponent, another sign of zero) is written from the first one's bytes.
    written = FAST(_dec(Decimal(first)))
    assert FAST(_dec(Decimal(first))) == written
    assert FAST(_dec(Decimal(second))) == written == _reference(_dec(Decimal(second)))


@pytest.mark.parametrize("value, error", [(5, TypeError), (5.0, TypeError), ("5", TypeError),
                                          (Decimal("sNaN"), ValueError),
                                          (Decimal("NaN"), ValueError),
                                          (Decimal("1E+20"), ValueError)])
def test_what_the_writer_refuses_stays_refused_once_equal_decimals_are_remembered(value, error):
    FAST(_dec(Decimal(5)))  # remembered: an int or a float equal to it must not use it
    for _ in range(2):
        with pytest.raises(error):
            FAST(_dec(value))


STR = {"type": "record", "name": "S", "namespace": "t", "fields": [
    {"name": "s", "type": "string"}, {"name": "n", "type": ["null", "long"], "default": None},
    {"name": "next", "type": ["null", "t.S"], "default": None}]}
STR_FAST = compile_writer(STR)
STR_PARSED = fastavro.parse_schema(STR)


@pytest.mark.parametrize("s", ["", "a", "é" * 31, "x" * 63, "x" * 64, "ü" * 40, "x" * 5000])
@pytest.mark.parametrize("n", [None, 0, -1, 63, -64, 64, -65, 2**40, -(2**63)])
def test_strings_and_optional_longs_of_every_length_match_fastavro(s, n):
    # The generated record writer writes short strings and small longs inline.
    datum = {"s": s, "n": n, "next": {"s": s[:3], "n": n}}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, STR_PARSED, datum)
    assert STR_FAST(datum) == buf.getvalue()


@pytest.mark.parametrize("datum, error, message", [
    ({"n": 1}, ValueError, "missing field 's'"),
    ({"s": b"bytes"}, AttributeError, None),
    ({"s": "x", "n": True}, TypeError, "expected an int, got bool"),
    ({"s": "x", "n": 1.0}, TypeError, "expected an int, got float"),
    ({"s": "x", "next": {"n": 1}}, ValueError, "missing field 's'"),
])
def test_a_refused_field_raises_what_its_writer_raises(datum, error, message):
    with pytest.raises(error) as info:
        STR_FAST(datum)
    if message:
        assert str(info.value) == message


def test_decimals_are_written_alike_while_the_remembered_ones_are_evicted(monkeypatch):
    import streams.codec.fastwrite as fastwrite

    monkeypatch.setattr(fastwrite, "DECIMAL_CACHE_SIZE", 4)
    values = [Decimal(f"{i}.{abs(i):03d}") for i in range(-10, 11)] + [Decimal("0.1" + "0" * 39)]
    for _ in range(3):  # young, old and neither: every path of the cache
        for v in values:
            assert FAST(_dec(v)) == _reference(_dec(Decimal(v.normalize())))
    young, old = fastwrite._DECIMAL_CACHES[(38, 18)]
    assert 0 < len(young) <= 4 and len(old) <= 4
