"""Shared gateway machinery: exact amounts, time, the dispatcher's promises, the order memory."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from streams.gateways import (
    VENUES,
    GatewayError,
    OrderMemory,
    Rejection,
    normalize_payload,
    normalizer_for,
)
from streams.gateways.common import OrderProgress, amount, fmt, ts_from_ms
from streams.gateways.exceptions import PayloadRejected

from .conftest import events, fixture_lines, fixture_text, rejection


def test_venues_are_the_four_supported_ones() -> None:
    assert VENUES == ("binance", "bingx", "kraken", "deltadefi")


@pytest.mark.parametrize(("value", "expected"), [
    ("0.18780000", "0.1878"), ("202276.00000000", "202276"), (Decimal("1E+2"), "100"),
    ("-0", "0"), ("-31", "-31"), (7, "7"), ("0.000000000000000001", "0.000000000000000001"),
])
def test_amounts_are_exact_and_printed_plain(value: object, expected: str) -> None:
    assert fmt(amount(value, "x")) == expected


@pytest.mark.parametrize(("value", "needle"), [
    (0.1, "binary float"), ("NaN", "not a decimal"), ("Infinity", "not a decimal"),
    ("1e20", "not a decimal"), ("100000000000000000000", "below 1e20"),
    ("0.0000000000000000001", "decimal places"), ("abc", "not a decimal"), (True, "expected"),
    ("1_000", "not a decimal"), ("\u0661\u0662\u0663", "not a decimal"),
    ("\uff15", "not a decimal"), ("+5", "not a decimal"), (" 5 ", "not a decimal"),
    ("", "not a decimal"),
])
def test_amounts_that_cannot_be_booked_exactly_are_rejected(value: object, needle: str) -> None:
    with pytest.raises(PayloadRejected, match=needle):
        amount(value, "x")


def test_json_nan_constant_in_a_frame_is_rejected_not_parsed() -> None:
    raw = fixture_text("bingx", "cost_minus_31.json").replace('"-31"', "NaN")
    assert "NaN" in rejection("bingx", raw).reason


def test_json_numbers_in_frames_are_read_as_exact_decimals() -> None:
    raw = fixture_text("bingx", "cost_minus_31.json").replace('"-31"', "-31.10000000000000001")
    (fill,) = events("bingx", raw)
    assert fill["fee"] == "31.10000000000000001"


def test_millisecond_timestamps_are_timezone_aware_utc() -> None:
    ts = ts_from_ms(1741680902311, "E")
    assert ts.tzinfo is not None and ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert ts.isoformat() == "2025-03-11T08:15:02.311000+00:00"


@pytest.mark.parametrize("value", [0, -1, 10**20, "tomorrow"])
def test_timestamps_outside_2000_to_2100_or_not_numbers_are_rejected(value: object) -> None:
    with pytest.raises(PayloadRejected):
        ts_from_ms(value, "E")


def test_unknown_venue_is_a_rejection_from_normalize_payload() -> None:
    result = normalize_payload("mtgox", "{}", OrderMemory())
    assert isinstance(result, Rejection) and "unknown venue" in result.reason


def test_normalizer_for_unknown_venue_raises_at_configuration_time() -> None:
    with pytest.raises(GatewayError, match="mtgox"):
        normalizer_for("mtgox")


def test_normalizer_for_a_venue_is_normalize_payload_bound_to_it() -> None:
    raw = fixture_text("bingx", "cost_minus_31.json")
    assert normalizer_for("bingx")(raw, OrderMemory(), "acct-1") == events("bingx", raw)


def test_rejection_keeps_the_original_bytes_and_text() -> None:
    raw = b"\xff\xfe not utf-8"
    result = rejection("bingx", raw)
    assert result.raw == raw and "UTF-8" in result.reason
    assert rejection("kraken", "[1, 2]").raw == "[1, 2]"


def test_mapping_payload_with_binary_float_amount_is_rejected() -> None:
    frame = json.loads(fixture_text("kraken", "trades_history.json"))  # floats for "time"
    assert "binary float" in rejection("kraken", frame).reason


def test_non_memory_argument_is_a_rejection_not_an_exception() -> None:
    result = normalize_payload("bingx", "{}", {}, "a")  # type: ignore[arg-type]
    assert isinstance(result, Rejection)


def test_memory_round_trips_through_json() -> None:
    memory = OrderMemory()
    for line in fixture_lines("bingx", "fet_short_c2.jsonl"):
        normalize_payload("bingx", line, memory, "acct-1")
    text = json.dumps(memory.to_json())
    again = OrderMemory.from_json(json.loads(text))
    assert again.to_json() == memory.to_json()
    assert len(again) == 3


def test_memory_forgets_least_recently_used_orders_beyond_its_bound() -> None:
    memory = OrderMemory(max_orders=2)
    txn = memory.begin()
    for key in ("a", "b", "c"):
        txn.set_order(key, OrderProgress(filled=Decimal(1)))
    txn.commit()
    assert len(memory) == 2
    assert memory.order("a") is None and memory.order("c") is not None


def test_unknown_memory_version_is_refused() -> None:
    with pytest.raises(PayloadRejected, match="version"):
        OrderMemory.from_json({"version": 99})


def test_widest_schema_amounts_survive_arithmetic_without_rounding() -> None:
    memory = OrderMemory()
    frame = json.loads(fixture_text("bingx", "cost_minus_31.json"))
    frame["o"].update({"z": "10000000000000000000.000000000000000001", "l": "0",
                       "n": "-12345678901234567890.123456789012345678"})
    (fill,) = events("bingx", frame, memory)
    frame["o"].update({"z": "19999999999999999999.999999999999999999",
                       "n": "-12345678901234567891.123456789012345679"})
    (fill2,) = events("bingx", frame, memory)
    assert fill["fee"] == "12345678901234567890.123456789012345678"
    assert fill2["qty"] == "9999999999999999999.999999999999999998"
    assert fill2["fee"] == "1.000000000000000001"


@pytest.mark.parametrize("raw", [
    '{"e": "ACCOUNT_UPDATE", "E": ' + "9" * 6000 + "}",
    '{"e": "ACCOUNT_UPDATE", "E": 1e5000}',
    '{"e": "ORDER_TRADE_UPDATE", "E": 1741680902311, "o": {"s": "FET-USDT", "S": "BUY", '
    '"i": 1, "z": 1e-999999999}}',
])
def test_absurd_numbers_are_rejected_not_crashed_on(raw: str) -> None:
    reason = rejection("bingx", raw).reason
    assert "normalizer error" not in reason
