"""Wire format: Confluent framing, every schema parses, old bytes stay readable."""

import datetime as dt
import json
import struct
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.codec import (
    Codec,
    dec_str,
    fold_dict_to_venue_record,
    load_named_schemas,
    mark_to_record,
    venue_record_to_fold_dict,
)
from streams.exceptions import DecodeError, InvalidEvent, UnknownSchemaId

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "avro"


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec.load()


def test_every_schema_parses_in_namespace_v1():
    named = load_named_schemas()
    assert {"twinledger.v1.VenueEvent", "twinledger.v1.AccountSnapshot", "twinledger.v1.ReconcileEvent",
            "twinledger.v1.TradeEvent", "twinledger.v1.Anomaly", "twinledger.v1.DeadLetter",
            "twinledger.v1.Mark"} <= set(named)


def test_money_fields_are_avro_decimals_never_floats():
    def walk(node):
        if isinstance(node, dict):
            assert node.get("type") not in ("float", "double"), node
            yield node
            for v in node.values():
                yield from walk(v)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v)

    decimals = [n for s in load_named_schemas().values() for n in walk(s)
                if n.get("logicalType") == "decimal"]
    assert decimals and all(n["precision"] == 38 and n["scale"] == 18 for n in decimals)


def test_frame_is_magic_zero_then_big_endian_schema_id(codec):
    rec = mark_to_record({"symbol": "BTCUSDT", "price": "65000.5", "ts": "2024-01-01T00:00:00Z"})
    data = codec.encode("Mark", rec)
    assert data[0] == 0
    assert struct.unpack(">I", data[1:5])[0] == codec.schema_id("Mark") == 2
    name, back = codec.decode(data)
    assert name == "Mark" and back["price"] == Decimal("65000.5")


def test_fold_dict_round_trips_through_the_wire_exactly(codec):
    d = {"kind": "fill", "event_id": "e1", "account_id": "a", "venue": "bingx",
         "ts": "2024-01-01T00:00:00.000001Z", "symbol": "FET-USDT", "side": "SELL",
         "qty": "195259", "price": "0.1878", "fee": "-0.000000000000000001", "leverage": "3"}
    name, rec = codec.decode(codec.encode("VenueEvent", fold_dict_to_venue_record(d)))
    back = venue_record_to_fold_dict(rec)
    assert name == "VenueEvent"
    assert back["qty"] == Decimal("195259") and str(back["qty"]) == "195259"
    assert str(back["price"]) == "0.1878"
    assert dec_str(back["fee"]) == "-0.000000000000000001"
    assert back["ts"] == dt.datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC)
    assert back["position_side"] == "BOTH" and back["market"] == "futures"


def test_balance_without_margin_asset_keeps_wallet_null(codec):
    d = {"kind": "balance", "event_id": "b", "account_id": "a", "venue": "binance",
         "ts": "2024-01-01T00:00:00Z", "wallet_balance": None}
    _, rec = codec.decode(codec.encode("VenueEvent", fold_dict_to_venue_record(d)))
    assert venue_record_to_fold_dict(rec)["wallet_balance"] is None


@pytest.mark.parametrize("data,error", [
    (b"", DecodeError), (b"\x00\x00", DecodeError), (b"\x01\x00\x00\x00\x01abc", DecodeError),
    (b"\x00\x00\x00\x03\xe7abc", UnknownSchemaId), (b"\x00\x00\x00\x00\x01\xff\xff\xff", DecodeError),
])
def test_bad_bytes_raise_decode_errors_that_keep_the_bytes(codec, data, error):
    with pytest.raises(error) as info:
        codec.decode(data)
    assert info.value.raw in (data, None) and (info.value.raw is not None or len(data) < 5)


def test_trailing_garbage_after_a_valid_body_is_refused(codec):
    rec = mark_to_record({"symbol": "X", "price": "1", "ts": "2024-01-01T00:00:00Z"})
    with pytest.raises(DecodeError, match="trailing"):
        codec.decode(codec.encode("Mark", rec) + b"\x00")


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_never_escape_as_anything_but_decode_error(data):
    codec = _CODEC
    try:
        codec.decode(b"\x00\x00\x00\x00\x01" + data)
    except DecodeError as exc:
        assert exc.raw is not None


_CODEC = Codec.load()


def test_float_amounts_are_refused_not_rounded():
    with pytest.raises(InvalidEvent, match="a float is not an amount"):
        fold_dict_to_venue_record({"kind": "anchor", "event_id": "a", "account_id": "x",
                                   "venue": "", "ts": "2024-01-01T00:00:00Z", "capital": 0.1})


@pytest.mark.parametrize("bin_path", sorted((FIXTURES / "v1").glob("*.bin")), ids=lambda p: p.name)
def test_records_written_with_schema_v1_read_with_the_current_schema(codec, bin_path):
    """Every earlier schema version's bytes stay readable (backward compatibility)."""
    expected = json.loads(bin_path.with_suffix(".json").read_text())
    name, rec = codec.decode(bin_path.read_bytes())
    if name == "Mark":
        assert rec["symbol"] == expected["symbol"] and rec["price"] == Decimal(expected["price"])
        return
    got = venue_record_to_fold_dict(rec)
    for key, value in expected.items():
        if key == "ts":
            assert got["ts"] == dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif key == "assets":
            assert {a: {k: Decimal(v) for k, v in fl.items()} for a, fl in value.items()} == got[key]
        elif key == "positions":
            assert [p["qty"] for p in got[key]] == [Decimal(p["qty"]) for p in value]
        elif value is None or isinstance(value, str) and key in ("kind", "event_id", "account_id",
                                                                   "venue", "symbol", "side",
                                                                   "asset", "flow", "fee_asset",
                                                                   "venue_order_id"):
            assert got[key] == value, key
        else:
            assert got[key] == Decimal(value), key


def test_a_snapshot_of_the_first_version_reads_as_the_current_one_with_no_stale_marks(codec):
    """AccountSnapshot v2 added ``stale_marks`` (default []): v1 bytes keep id 3, history file."""
    import io

    import fastavro

    from tests.unit.sinks import samples

    v1 = json.loads((Path(__file__).resolve().parents[3] / "streams" / "resources" / "avro"
                     / "history" / "AccountSnapshot.v1.avsc").read_text())
    assert "stale_marks" not in [f["name"] for f in v1["fields"]]
    assert codec.schema_id("AccountSnapshot") == 11  # the current version writes a new id
    rec = {k: v for k, v in samples.snapshot("old-1").items() if k != "stale_marks"}
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, 3))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(v1), rec)
    name, got = codec.decode(buf.getvalue())
    assert name == "AccountSnapshot" and got["stale_marks"] == []
    assert got["capital"] == rec["capital"] and got["positions"][0]["qty"] == Decimal("-202276")
    # and the current version carries them
    now = codec.decode(codec.encode("AccountSnapshot", {
        **rec, "stale_marks": [{"symbol": "XBT/USD", "age_seconds": 3602}]}))[1]
    assert now["stale_marks"] == [{"symbol": "XBT/USD", "age_seconds": 3602}]


def test_a_trade_event_of_the_first_version_reads_as_the_current_one_with_no_cost_basis(codec):
    """TradeEvent v2 added ``cost_basis`` (default null): v1 bytes keep id 5, history file."""
    import io

    import fastavro

    from tests.unit.sinks import samples

    history = Path(__file__).resolve().parents[3] / "streams" / "resources" / "avro" / "history"
    v1 = json.loads((history / "TradeEvent.v1.avsc").read_text())
    assert "cost_basis" not in [f["name"] for f in v1["fields"]]
    assert codec.schema_id("TradeEvent") == 12  # the current version writes a new id
    rec = {k: v for k, v in samples.trade().items() if k != "cost_basis"}
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, 5))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(v1), rec)
    name, got = codec.decode(buf.getvalue())
    assert name == "TradeEvent" and got["cost_basis"] is None
    assert got["price"] == rec["price"] and got["flags"] == rec["flags"]
    # and the current version carries it
    now = codec.decode(codec.encode("TradeEvent", {**rec, "cost_basis": Decimal("12000")}))[1]
    assert now["cost_basis"] == Decimal("12000")


def test_history_schemas_are_clean_json_with_no_fastavro_internals():
    """A history file is the expanded schema only: no keys fastavro adds when parsing."""
    history = Path(__file__).resolve().parents[3] / "streams" / "resources" / "avro" / "history"
    files = sorted(history.glob("*.avsc"))
    assert [p.name for p in files] == ["AccountSnapshot.v1.avsc", "TradeEvent.v1.avsc"]
    for p in files:
        assert "__fastavro" not in p.read_text() and "__named_schemas" not in p.read_text(), p


def test_schema_registry_ids_replace_the_checked_in_map():
    """With a registry (here confluent-kafka's in-memory one), ids come from it."""
    reg = Codec.load("mock://twinledger-test")
    rec = mark_to_record({"symbol": "BTCUSDT", "price": "1.5", "ts": "2024-01-01T00:00:00Z"})
    data = reg.encode("Mark", rec)
    assert struct.unpack(">I", data[1:5])[0] == reg.schema_id("Mark")
    assert reg.decode(data)[1]["price"] == Decimal("1.5")
    # A second process registering the same schemas gets the same ids.
    again = Codec.load("mock://twinledger-test")
    assert again.schema_id("Mark") == reg.schema_id("Mark")
    assert again.decode(data)[0] == "Mark"


def test_a_body_of_an_older_version_is_bounded_before_fastavro_reads_it(codec):
    """fastavro reads an older version into the current one, and has no bound on a
    decimal's width (N bytes cost N squared to read): the codec's own reader of the
    writer schema refuses such a body first."""
    import io

    import fastavro

    v1 = json.loads((Path(__file__).resolve().parents[3] / "streams" / "resources" / "avro"
                     / "history" / "AccountSnapshot.v1.avsc").read_text())
    fields = v1["fields"]
    assert fields[5]["name"] == "capital"  # the first decimal: the fields before it, then it
    head = {**v1, "fields": fields[:5]}
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, 3))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(head), {
        "event_id": "e", "account_id": "a", "event_seq": 1, "event_kind": "fill",
        "ts": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)})
    wide = b"\x01" * 200_000
    n = len(wide) << 1
    varint = bytearray()
    while n >= 0x80:
        varint.append((n & 0x7F) | 0x80)
        n >>= 7
    varint.append(n)
    with pytest.raises(DecodeError, match="a decimal of 200000 bytes"):
        codec.decode(buf.getvalue() + bytes(varint) + wide)
