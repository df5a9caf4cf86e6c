"""Record -> row mapping: column order, exact decimals, aware times, rejections."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from sinks.ddl import TABLES
from sinks.exceptions import RowRejected
from sinks.rows import SPECS, build_row, canonical_json, dead_letter_for, kafka_time
from streams.codec import fold_dict_to_venue_record
from tests.unit.sinks import samples

CASES = {
    "venue_events": ("VenueEvent", samples.fill_event),
    "account_snapshots": ("AccountSnapshot", samples.snapshot),
    "trade_events": ("TradeEvent", samples.trade),
    "reconcile_events": ("ReconcileEvent", samples.reconcile),
    "anomaly_events": ("Anomaly", samples.anomaly),
    "dead_letters": ("DeadLetter", samples.dead_letter),
    "cash_flows": ("CashFlowEvent", samples.cash_flow),
    "balances": ("BalanceChange", samples.balance_change),
    "portfolio_snapshots": ("PortfolioSnapshot", samples.portfolio),
}


def test_every_sink_table_has_a_row_builder() -> None:
    assert set(SPECS) == set(TABLES) == set(CASES)


@pytest.mark.parametrize("table", sorted(CASES))
def test_row_matches_table_columns_and_keys_lead(table: str) -> None:
    name, make = CASES[table]
    rec = samples.decoded(name, make())
    row = build_row(table, name, rec)
    assert len(row) == len(TABLES[table].columns)
    # The runner reads the key from the first two columns.
    assert [c for c, _ in TABLES[table].columns[:2]] == ["account_id", "event_id"]
    assert row[0] == rec["account_id"] and row[1] == rec["event_id"]
    for value in row:
        assert not isinstance(value, float)
        if isinstance(value, dt.datetime):
            assert value.tzinfo is not None


def test_row_building_is_deterministic() -> None:
    rec = samples.decoded("AccountSnapshot", samples.snapshot())
    assert build_row("account_snapshots", "AccountSnapshot", rec) == \
        build_row("account_snapshots", "AccountSnapshot", rec)


def test_venue_fill_keeps_decimals_exact_and_stores_the_fold_line() -> None:
    rec = samples.decoded("VenueEvent", samples.fill_event())
    row = dict(zip([c for c, _ in TABLES["venue_events"].columns],
                   build_row("venue_events", "VenueEvent", rec), strict=True))
    assert row["price"] == Decimal("242.7312")
    assert row["fee"] == Decimal("0.000000000000000001")
    assert row["ts"] == dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    assert row["kind"] == "fill" and row["side"] == "BUY"
    assert row["amount"] is None and row["wallet_balance"] is None
    fold = json.loads(row["fold_json"])
    assert fold["price"] == "242.7312" and fold["fee"] == "0.000000000000000001"
    assert fold["ts"] == "2024-05-01T12:00:00.123456Z"
    # The stored line folds back into the very same record.
    assert samples.decoded("VenueEvent", fold_dict_to_venue_record(fold)) == rec


def test_venue_balance_assets_are_json_with_string_decimals() -> None:
    rec = samples.decoded("VenueEvent", samples.balance_event())
    cols = [c for c, _ in TABLES["venue_events"].columns]
    row = dict(zip(cols, build_row("venue_events", "VenueEvent", rec), strict=True))
    assert row["kind"] == "balance"
    assert row["wallet_balance"] == Decimal("1000.5")
    assert json.loads(row["assets"]) == [
        {"asset": "USDT", "free": "900", "locked": "100.5"}]


def test_snapshot_positions_json_is_canonical() -> None:
    rec = samples.decoded("AccountSnapshot", samples.snapshot())
    cols = [c for c, _ in TABLES["account_snapshots"].columns]
    row = dict(zip(cols, build_row("account_snapshots", "AccountSnapshot", rec), strict=True))
    assert row["capital"] == Decimal("1000.123456789012345678")
    positions = json.loads(row["positions"])
    assert positions[0]["qty"] == "-202276" and positions[0]["avg_entry_price"] == "0.1878"
    assert row["positions"] == canonical_json(positions)


def test_trade_flags_are_a_string_list() -> None:
    rec = samples.decoded("TradeEvent", samples.trade())
    row = build_row("trade_events", "TradeEvent", rec)
    assert ["A4", "it's"] in row


def test_wrong_record_type_is_rejected() -> None:
    rec = samples.decoded("Anomaly", samples.anomaly())
    with pytest.raises(RowRejected, match="takes TradeEvent"):
        build_row("trade_events", "Anomaly", rec)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("event_seq", -1, "unsigned"),
    ("capital", Decimal("1e20"), "exceeds"),
    ("capital", Decimal("-100000000000000000000.000000000000000001"), "exceeds"),
    ("capital", Decimal("0.0000000000000000001"), "18 decimal places"),
    ("ts", dt.datetime(1800, 1, 1, tzinfo=dt.UTC), "outside"),
    ("event_id", "", "empty"),
])
def test_values_that_would_fail_an_insert_are_rejected(field: str, value: object,
                                                       message: str) -> None:
    rec = samples.decoded("AccountSnapshot", samples.snapshot())
    rec[field] = value
    with pytest.raises(RowRejected, match=message):
        build_row("account_snapshots", "AccountSnapshot", rec)


def test_largest_decimal_38_18_is_accepted_exactly() -> None:
    rec = samples.decoded("AccountSnapshot", samples.snapshot())
    top = Decimal("-99999999999999999999.999999999999999999")
    rec["capital"] = top
    row = build_row("account_snapshots", "AccountSnapshot", rec)
    assert row[5] == top


def test_missing_field_becomes_a_rejection_not_a_crash() -> None:
    rec = samples.decoded("Anomaly", samples.anomaly())
    del rec["code"]
    with pytest.raises(RowRejected, match="KeyError"):
        build_row("anomaly_events", "Anomaly", rec)


def test_dead_letter_for_keeps_bytes_and_coordinates() -> None:
    row = dead_letter_for("venue.events", 3, 42, b"acc-9", b"\x00\xffgarbage", 1714564800123,
                          "DecodeError", "bad magic byte")
    cols = [c for c, _ in TABLES["dead_letters"].columns]
    got = dict(zip(cols, row, strict=True))
    assert got["event_id"] == "venue.events:3:42"
    assert got["account_id"] == "acc-9"
    assert got["original_value"] == b"\x00\xffgarbage"
    assert got["original_key"] == b"acc-9"
    assert got["ts"] == dt.datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=dt.UTC)


def test_dead_letter_for_binary_key_and_missing_timestamp() -> None:
    row = dead_letter_for("t", 0, 0, b"\xff\xfe", None, None, "DecodeError", "tombstone")
    assert row[0] == ""  # a key that is not text is no account id
    assert row[-1] == b""
    assert kafka_time(None) == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize("when", [
    dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
    dt.datetime(2024, 5, 1, 12, 0, 0, 5, tzinfo=dt.UTC),
    dt.datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))),
])
def test_canonical_json_times_match_the_codec_iso(when: dt.datetime) -> None:
    from streams.codec import iso

    assert canonical_json({"ts": when}) == json.dumps({"ts": iso(when)}, separators=(",", ":"))


# --- the per-item path of nested JSON and the money check cache -------------------------

_NESTED_ITEMS = [
    [],
    [{"symbol": "BTC\"USDT\\", "qty": Decimal("-202276.000000000000000000"),
      "price": Decimal("0.187800000000000000"), "flag": True, "off": False, "n": 7,
      "none": None, "name": "ünï\u2028\x01"}],
    [{"b": Decimal("0E-18"), "a": Decimal("-0"), "c": Decimal("1E+5")},
     {"z": "x", "y": Decimal("12.5")}],
    # not flat (a list, a datetime, a float, a non-dict item): the reference path
    [{"a": [Decimal("1.5")], "b": "x"}],
    [{"ts": dt.datetime(2024, 5, 1, tzinfo=dt.UTC), "q": Decimal("2")}],
    [{"q": Decimal("2")}, {"f": 1.5}],
]


@pytest.mark.parametrize("items", _NESTED_ITEMS)
def test_nested_json_is_the_reference_text(items: list[dict[str, object]]) -> None:
    from sinks.rows import _nested, _nested_reference

    assert _nested(items, "positions") == _nested_reference(items, "positions")
    assert _nested(items, "positions") == canonical_json(items)
    # A second time the decimals come from the cache: the same text again.
    assert _nested(items, "positions") == canonical_json(items)


@pytest.mark.parametrize("bad", [Decimal("1E+20"), Decimal("0.0000000000000000001"),
                                 Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"),
                                 Decimal("0E+25")])
def test_nested_refuses_what_the_reference_refuses_with_its_message(bad: Decimal) -> None:
    from sinks.rows import _nested, _nested_reference

    items = [{"qty": Decimal("1")}, {"a": Decimal("2"), "price": bad, "b": Decimal("1E+21")}]
    with pytest.raises(RowRejected) as expected:
        _nested_reference(items, "positions")
    with pytest.raises(RowRejected) as got:
        _nested(items, "positions")
    assert str(got.value) == str(expected.value)


def test_money_check_cache_answers_for_the_same_object_only() -> None:
    from sinks.rows import money

    zero = Decimal("0")
    assert money(zero, "x") is zero
    assert money(zero, "x") is zero
    # Equal to a cached zero but not the same object, and out of range: still refused.
    with pytest.raises(RowRejected, match="exceeds"):
        money(Decimal("0E+25"), "x")
    with pytest.raises(RowRejected, match="not a finite decimal"):
        money(0, "x")
    with pytest.raises(RowRejected, match="not a finite decimal"):
        money(Decimal("NaN"), "x")


def test_nested_item_cache_tells_types_and_big_zeros_apart() -> None:
    from sinks.rows import _nested

    first = [{"symbol": "X", "qty": Decimal("0E-18"), "open": True, "n": 1}]
    assert _nested(first, "positions") == canonical_json(first)
    # Equal to the cached item (True == 1 == Decimal(1)) but not of the same types.
    as_int = [{"symbol": "X", "qty": Decimal("0E-18"), "open": 1, "n": 1}]
    as_dec = [{"symbol": "X", "qty": Decimal("0E-18"), "open": True, "n": Decimal("1")}]
    assert _nested(as_int, "positions") == canonical_json(as_int) != canonical_json(first)
    assert _nested(as_dec, "positions") == canonical_json(as_dec) != canonical_json(first)
    # Equal to the cached item, but its zero does not fit Decimal(38, 18).
    big_zero = [{"symbol": "X", "qty": Decimal("0E+25"), "open": True, "n": 1}]
    with pytest.raises(RowRejected, match=r"positions\.qty: 0E\+25 exceeds"):
        _nested(big_zero, "positions")
    # An equal, different but fitting zero: the cached text.
    other_zero = [{"symbol": "X", "qty": Decimal("-0.0"), "open": True, "n": 1}]
    assert _nested(other_zero, "positions") == canonical_json(first)


def test_positions_read_through_the_item_cache_give_the_text_of_plain_dicts() -> None:
    """The decoder names each cached item's wire bytes (``fastread.WireItem``); the row
    builder keeps their text under that name. First and cached reads, and fastavro's
    plain dicts of the same record, give the same columns."""
    from sinks.rows import account_snapshot_row
    from streams.codec import Codec
    from streams.codec.fastread import WireItem

    codec = Codec.load()
    wire = codec.encode("AccountSnapshot", samples.snapshot())
    reference = account_snapshot_row(codec.decode_with_fastavro(wire)[1])
    for _ in range(3):  # read, then from the decoder's cache, then the rows' cache
        rec = codec.decode(wire)[1]
        assert rec["positions"] and all(type(p) is WireItem for p in rec["positions"])
        assert account_snapshot_row(rec) == reference
    # The record's name is part of the key: an item of another record type with the
    # same bytes cannot be taken for a position.
    assert {p.wire[0] for p in codec.decode(wire)[1]["positions"]} == {
        "twinledger.v1.PositionState"}
