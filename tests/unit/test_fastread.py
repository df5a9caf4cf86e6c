"""The compiled reader returns exactly what fastavro's schemaless_reader returns."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.catalogue import RECORD_OF_KIND
from streams.codec import Codec, fold_dict_to_venue_record
from streams.codec.avro import load_named_schemas
from streams.codec.fastread import Unsupported, WireItem, compile_reader
from streams.codec.fastwrite import compile_writer
from streams.exceptions import DecodeError
from streams.foldfile import run_fold
from streams.ledger import load_ledger_config
from streams.ledger.synth import generate_events
from tests.unit.sinks import samples

CODEC = Codec.load()
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _plain_type(value: Any) -> type:
    return dict if type(value) is WireItem else type(value)


def same(a: Any, b: Any) -> bool:
    """Equal, of the same types all the way down, decimals with the same digits and exponent.

    An item of a cached array (``fastread.WireItem``) counts as the dict it subclasses.
    """
    if _plain_type(a) is not _plain_type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, dt.datetime):
        return a == b and a.utcoffset() == b.utcoffset()
    return bool(a == b)


def _fold_wires() -> list[bytes]:
    """Every output record of a synthetic fold, the venue events, marks and samples, framed;
    half encoded by the compiled writer, half by fastavro."""
    events = generate_events(1_500, 25, seed=11)
    run = run_fold([json.dumps(e) for e in events], load_ledger_config(None))
    named: list[tuple[str, dict[str, Any]]] = [(RECORD_OF_KIND[o.kind], o.record)
                                              for o in run.outputs]
    for e in events:
        if e["kind"] == "mark":
            named.append(("Mark", {"symbol": e["symbol"], "price": Decimal(str(e["price"])),
                                   "ts": dt.datetime.fromisoformat(e["ts"]), "venue": "kraken"}))
        else:
            named.append(("VenueEvent", fold_dict_to_venue_record(e)))
    named += [("AccountSnapshot", samples.snapshot()), ("TradeEvent", samples.trade()),
              ("ReconcileEvent", samples.reconcile()), ("Anomaly", samples.anomaly()),
              ("DeadLetter", samples.dead_letter()), ("CashFlowEvent", samples.cash_flow()),
              ("BalanceChange", samples.balance_change()),
              ("PortfolioSnapshot", samples.portfolio())]
    wires = []
    for name, record in named:
        wires.append(CODEC.encode(name, record))
        wires.append(CODEC.encode_with_fastavro(name, record))
    return wires


WIRES = _fold_wires()


def test_every_schema_compiles_and_the_codec_reads_every_current_id_compiled():
    for full, schema in load_named_schemas().items():
        compile_reader(schema, record_names=True)  # raises Unsupported if not
        assert full
    names = {CODEC._name_by_id[sid] for sid in CODEC._readers}
    assert names == {name for name in CODEC._writer_ids}


def test_the_fold_the_venue_events_and_every_sample_decode_as_fastavro_decodes_them():
    kinds = set()
    for wire in WIRES:
        got = CODEC.decode(wire)
        want = CODEC.decode_with_fastavro(wire)
        assert same(got, want), (got, want)
        kinds.add(got[0])
    assert {"AccountSnapshot", "TradeEvent", "ReconcileEvent", "VenueEvent", "Mark",
            "DeadLetter", "PortfolioSnapshot", "BalanceChange", "CashFlowEvent"} <= kinds


def test_a_venue_event_payload_keeps_fastavro_record_name_shape():
    wire = next(w for w in WIRES if CODEC.decode(w)[0] == "VenueEvent")
    _, record = CODEC.decode(wire)
    label, payload = record["payload"]
    assert label.startswith("twinledger.v1.") and isinstance(payload, dict)


def test_memoryview_and_bytearray_read_like_bytes():
    wire = WIRES[0]
    assert same(CODEC.decode(memoryview(wire)), CODEC.decode(wire))
    assert same(CODEC.decode(bytearray(wire)), CODEC.decode(wire))


EDGE = {"type": "record", "name": "Edge", "namespace": "t", "fields": [
    {"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 38,
                           "scale": 18}},
    {"name": "o", "type": ["null", {"type": "bytes", "logicalType": "decimal",
                                    "precision": 38, "scale": 18}]},
    {"name": "d0", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10}},
    {"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "tm", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "a", "type": {"type": "array", "items": "string"}},
    {"name": "s", "type": "string"}, {"name": "os", "type": ["null", "string"]},
    {"name": "by", "type": "bytes"}, {"name": "ob", "type": ["string", "null"]},
    {"name": "b", "type": "boolean"}, {"name": "n", "type": "long"}, {"name": "i", "type": "int"},
    {"name": "f", "type": "double"}, {"name": "g", "type": "float"},
    {"name": "e", "type": {"type": "enum", "name": "Side", "symbols": ["BUY", "SELL"]}},
    {"name": "m", "type": {"type": "map", "values": "long"}},
    {"name": "r", "type": ["null", {"type": "record", "name": "Leg", "fields": [
        {"name": "side", "type": "Side"}, {"name": "q", "type": "long"}]}]},
    {"name": "legs", "type": {"type": "array", "items": "Leg"}},
    {"name": "u", "type": ["null", "Leg", {"type": "record", "name": "Other", "fields": [
        {"name": "x", "type": "string"}]}, "long"]},
]}
PARSED = fastavro.parse_schema(EDGE)
# The part of EDGE the compiled writer writes (no float, double, map, millis, wide unions, enum references).
WRITABLE = {"type": "record", "name": "W", "namespace": "t", "fields": [
    f for f in EDGE["fields"] if f["name"] in ("d", "o", "d0", "t", "a", "s", "os", "by", "b",
                                               "n", "i", "e")]}
FAST_WRITE = compile_writer(WRITABLE)
READ_WRITABLE = compile_reader(WRITABLE)
READ_NAMED = compile_reader(EDGE, record_names=True)
READ_PLAIN = compile_reader(EDGE)


def _fastavro_bytes(datum: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, PARSED, datum)
    return buf.getvalue()


def _check(body: bytes) -> None:
    for read, named in ((READ_NAMED, True), (READ_PLAIN, False)):
        buf = io.BytesIO(body)
        want = fastavro.schemaless_reader(buf, PARSED, None, return_record_name=named,
                                          return_record_name_override=named)
        got, end = read(body)
        assert same(got, want), (got, want)
        assert end == buf.tell() == len(body)


def _datum(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "d": Decimal("0"), "o": None, "d0": Decimal("0"), "t": EPOCH, "tm": EPOCH, "a": [],
        "s": "", "os": None, "by": b"", "ob": None, "b": False, "n": 0, "i": 0, "f": 0.0,
        "g": 0.0, "e": "BUY", "m": {}, "r": None, "legs": [], "u": None}
    base.update(over)
    return base


MAX38 = "99999999999999999999.999999999999999999"


@pytest.mark.parametrize("value", ["0", "-0", "1", "-1", "0.000000000000000001",
                                   "-0.000000000000000001", "-128", "127", "128", "-129",
                                   "242.7312", "-0.5", "1E+3", MAX38, "-" + MAX38])
def test_decimal_edge_cases(value):
    body = _fastavro_bytes(_datum(d=Decimal(value), o=Decimal(value)))
    _check(body)
    _, record = CODEC.decode(CODEC.encode("Mark", {"symbol": "X", "price": Decimal(value),
                                                   "ts": EPOCH}))
    assert record["price"] == Decimal(value)


def test_decimal_with_more_digits_than_its_precision_is_rounded_as_fastavro_rounds_it():
    unscaled = 10**40 + 5  # not writable by either writer: built by hand
    raw = unscaled.to_bytes(17, "big", signed=True)
    prefix = _fastavro_bytes(_datum())
    body = bytes([len(raw) * 2]) + raw + prefix[2:]  # "d" is the first field (b"\x02\x00")
    assert prefix[:2] == b"\x02\x00"
    _check(body)


@pytest.mark.parametrize("micros", [0, -1, 1, -86_400_000_000 * 365 * 300, 2**52,
                                    -62135596800 * 10**6, 253402300799 * 10**6 + 999_999])
def test_timestamps_before_and_after_1970(micros):
    ts = EPOCH + dt.timedelta(microseconds=micros)
    body = _fastavro_bytes(_datum(t=ts, tm=EPOCH + dt.timedelta(milliseconds=micros // 1000)))
    _check(body)


@pytest.mark.parametrize("n", [0, 1, -1, 63, -64, 64, -65, 2**31 - 1, -(2**31),
                               2**63 - 1, -(2**63)])
def test_longs(n):
    _check(_fastavro_bytes(_datum(n=n, i=max(min(n, 2**31 - 1), -(2**31)))))


def test_strings_bytes_arrays_maps_unions_and_named_references():
    _check(_fastavro_bytes(_datum(
        s="žluťoučký kůň 🐎 日本", os="", ob="x", by=b"\x00\xff", a=["", "é", "a" * 300],
        m={"": 1, "ü": -2}, r={"side": "SELL", "q": -5},
        legs=[{"side": "BUY", "q": 1}, {"side": "SELL", "q": 2**40}],
        u=("t.Other", {"x": "y"}), e="SELL", b=True, f=-1.5e300, g=0.25)))
    _check(_fastavro_bytes(_datum(u=("t.Leg", {"side": "BUY", "q": 0}))))
    _check(_fastavro_bytes(_datum(u=7)))


def test_arrays_in_several_blocks_with_byte_sizes():
    # fastavro writes one block; Avro allows more, and negative counts carry a byte size.
    body = _fastavro_bytes(_datum(a=["a", "b", "c"]))
    one_block = b"\x06\x02a\x02b\x02c\x00"
    blocks = b"\x03\x04\x02a\x02b\x01\x02\x02c\x00"  # -2 items (4 bytes), then -1 item (2)
    assert one_block in body
    _check(body.replace(one_block, blocks))


decimals = st.decimals(min_value=Decimal("-" + MAX38), max_value=Decimal(MAX38), places=18,
                       allow_nan=False, allow_infinity=False)


@given(d=decimals, o=st.none() | decimals, micros=st.integers(-(2**55), 2**55),
       a=st.lists(st.text(max_size=5), max_size=4), s=st.text(max_size=40),
       by=st.binary(max_size=20), b=st.booleans(), n=st.integers(-(2**63), 2**63 - 1))
@settings(max_examples=400, deadline=None)
def test_hypothesis_records_read_as_fastavro_reads_them(d, o, micros, a, s, by, b, n):
    datum = _datum(d=d, o=o, t=EPOCH + dt.timedelta(microseconds=micros), a=a, s=s, by=by,
                   b=b, n=n)
    _check(_fastavro_bytes(datum))
    assert FAST_WRITE is not None
    part = {k: v for k, v in datum.items() if k in {f["name"] for f in WRITABLE["fields"]}}
    body = FAST_WRITE(part)
    got, end = READ_WRITABLE(body)
    want = fastavro.schemaless_reader(io.BytesIO(body), fastavro.parse_schema(WRITABLE), None)
    assert same(got, want) and end == len(body)


def test_unsupported_types_are_refused_at_compile_time():
    for schema in ({"type": "fixed", "name": "F", "size": 4},
                   {"type": "int", "logicalType": "date"},
                   {"type": "string", "logicalType": "uuid"},
                   {"type": "array", "items": "null"}):
        with pytest.raises(Unsupported):
            compile_reader(schema)


# ---- bad input: always DecodeError, never another exception out of the codec ----

def _decode_both(wire: bytes) -> tuple[Any, Any]:
    out = []
    for decode in (CODEC.decode, CODEC.decode_with_fastavro):
        try:
            out.append(decode(wire))
        except DecodeError as exc:
            out.append(exc)
    return out[0], out[1]


def test_every_truncation_of_every_kind_of_record_is_a_decode_error():
    by_name: dict[str, bytes] = {}
    for wire in WIRES:
        by_name.setdefault(CODEC.decode(wire)[0], wire)
    for wire in by_name.values():
        for cut in range(len(wire)):
            with pytest.raises(DecodeError):
                CODEC.decode(wire[:cut])


def test_trailing_bytes_are_a_decode_error_as_before():
    for wire in WIRES[:40]:
        with pytest.raises(DecodeError, match="trailing bytes"):
            CODEC.decode(wire + b"\x00")
        with pytest.raises(DecodeError, match="trailing bytes"):
            CODEC.decode_with_fastavro(wire + b"\x00")


def test_garbled_bodies_are_decode_errors_or_read_as_fastavro_reads_them():
    rng = random.Random(5)
    stricter = 0
    for wire in WIRES[::7]:
        for _ in range(30):
            garbled = bytearray(wire)
            for _ in range(rng.randint(1, 3)):
                garbled[rng.randrange(5, len(wire))] = rng.randrange(256)
            got, want = _decode_both(bytes(garbled))
            if isinstance(got, DecodeError):
                stricter += not isinstance(want, DecodeError)
                continue
            assert same(got, want), (bytes(garbled), got, want)
    # fastavro accepts a few garbled bodies (wrapped varints, negative indexes) that the
    # compiled reader refuses; never the other way round (the assert above).
    assert stricter < 50


@pytest.mark.parametrize("body", [b"\x01", b"\xff" * 11, b"\x80", b"\x0b\x80\x80"])
def test_bodies_fastavro_might_misread_are_refused(body):
    sid = CODEC.schema_id("Anomaly")
    with pytest.raises(DecodeError):
        CODEC.decode(b"\x00" + sid.to_bytes(4, "big") + body)
