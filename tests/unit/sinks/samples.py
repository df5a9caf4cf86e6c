"""Sample records of every sinked type, as the codec decodes them from the wire."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from streams.codec import Codec, fold_dict_to_venue_record

TS = dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
_CODEC: Codec | None = None


def codec() -> Codec:
    global _CODEC
    if _CODEC is None:
        _CODEC = Codec.load()
    return _CODEC


def wire(name: str, record: dict[str, Any]) -> bytes:
    return codec().encode(name, record)


def decoded(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` after a trip through the wire format, exactly what the sink sees."""
    got_name, got = codec().decode(wire(name, record))
    assert got_name == name
    return got


def fill_event(event_id: str = "f-1", account_id: str = "acc-1", **over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": "fill", "event_id": event_id, "account_id": account_id,
                         "venue": "binance", "ts": "2024-05-01T12:00:00.123456Z",
                         "symbol": "BTCUSDT", "side": "BUY", "qty": "0.5",
                         "price": "242.7312", "fee": "0.000000000000000001"}
    d.update(over)
    return fold_dict_to_venue_record(d)


def balance_event(event_id: str = "b-1", account_id: str = "acc-1") -> dict[str, Any]:
    return fold_dict_to_venue_record({
        "kind": "balance", "event_id": event_id, "account_id": account_id, "venue": "bingx",
        "ts": "2024-05-01T12:00:01Z", "wallet_balance": "1000.5", "available_margin": "900",
        "assets": {"USDT": {"free": "900", "locked": "100.5"}}})


def snapshot(event_id: str = "f-1", account_id: str = "acc-1") -> dict[str, Any]:
    d = Decimal
    return {
        "event_id": event_id, "account_id": account_id, "event_seq": 7, "event_kind": "fill",
        "ts": TS, "capital": d("1000.123456789012345678"), "capital_source": "e_anchored",
        "k_capital": d("999.5"), "equity": d("1001"), "peak_capital": d("1002"),
        "unrealized_pnl": d("-1.25"), "realized_pnl": d("0.000000000000000001"),
        "fees": d("0.1"), "funding": d("0"), "cash_flows": d("0"), "wallet_balance": None,
        "available_margin": d("1"), "used_margin": d("2"), "maint_margin": d("3"),
        "k_used_margin": d("2"), "reconcile_status": "OK", "capital_frozen": False,
        "positions": [{
            "symbol": "BTCUSDT", "position_side": "BOTH", "qty": d("-202276"),
            "avg_entry_price": d("0.1878"), "realized_pnl": d("0"), "fees": d("0.01"),
            "funding": d("0"), "unrealized_pnl": d("0"), "mark_price": d("0.19"),
            "leverage": d("10"), "used_margin": d("3.8"), "entry_basis_missing": False,
            "market": "futures"}],
        "balances": [], "stale_marks": [],
    }


def trade(event_id: str = "t-1:f-1:open", account_id: str = "acc-1") -> dict[str, Any]:
    d = Decimal
    return {
        "event_id": event_id, "account_id": account_id, "trade_id": "t-1",
        "source_event_id": "f-1", "event_seq": 7, "ts": TS, "symbol": "BTCUSDT",
        "position_side": "BOTH", "side": "LONG", "action": "open", "market": "futures",
        "qty": d("0.5"), "price": d("242.7312"), "position_qty": d("0.5"),
        "avg_entry_price": d("242.7312"), "pnl_leg": d("0"), "fee_leg": d("0.01"),
        "cumulative_pnl": d("0"), "trade_fees": d("0.01"), "pnl_source": "kernel_estimate",
        "exchange_realized_pnl": None, "holding_seconds": 0, "flags": ["A4", "it's"],
        "strategy_tag": "", "cost_basis": None,  # spot legs only
    }


def reconcile(event_id: str = "f-1:reconcile", account_id: str = "acc-1") -> dict[str, Any]:
    return {
        "event_id": event_id, "account_id": account_id, "source_event_id": "f-1",
        "event_seq": 7, "ts": TS, "status": "WARN", "previous_status": "OK",
        "capital_frozen": False,
        "results": [{"rule": "R1", "status": "WARN", "code": "CAPITAL_DRIFT",
                     "field": "capital", "delta": Decimal("0.5"),
                     "explanation": "CAPITAL_DRIFT|capital|0.5"}],
        "explanations": ["CAPITAL_DRIFT|capital|0.5"],
    }


def anomaly(event_id: str = "f-1:ZERO_PRICE", account_id: str = "acc-1") -> dict[str, Any]:
    return {"event_id": event_id, "account_id": account_id, "source_event_id": "f-1",
            "event_seq": 7, "ts": TS, "code": "ZERO_PRICE", "severity": "WARN",
            "detail": "price 0: no true execution price"}


def dead_letter(event_id: str = "venue.events:0:5") -> dict[str, Any]:
    return {"event_id": event_id, "account_id": "acc-1", "source_topic": "venue.events",
            "source_partition": 0, "source_offset": 5, "ts": TS, "error_type": "InvalidEvent",
            "reason": "qty: NaN", "original_key": b"acc-1", "original_value": b"\x00\xffraw"}


def cash_flow(event_id: str = "d-1:cashflow", account_id: str = "acc-k") -> dict[str, Any]:
    d = Decimal
    return {"event_id": event_id, "account_id": account_id, "source_event_id": "d-1",
            "event_seq": 3, "ts": TS, "flow": "deposit", "asset": "XBT",
            "amount": d("0.000000000000000001"), "value": d("0.000000000000061234"),
            "currency": "USD", "price": d("61234.5"), "unvalued": False,
            "balance_after": d("2.000000000000000001")}


def balance_change(event_id: str = "f-9:balance:XBT", account_id: str = "acc-k",
                   version: int = 9) -> dict[str, Any]:
    d = Decimal
    return {"event_id": event_id, "account_id": account_id, "source_event_id": "f-9",
            "event_seq": version, "version": version, "ts": TS, "asset": "XBT",
            "free": d("1.5"), "locked": d("0.25"), "total": d("1.75"),
            "avg_cost": d("60000.123456789012345678"), "cost_basis": d("105000.216049"),
            "value": d("107160.375"), "unvalued": False, "exchange_total": None,
            "drift": True}


def portfolio(event_id: str = "acc-k:portfolio:1714564800", account_id: str = "acc-k",
              when: dt.datetime = TS) -> dict[str, Any]:
    d = Decimal
    start = when.replace(minute=0, second=0, microsecond=0)
    return {"event_id": event_id, "account_id": account_id, "source_event_id": "f-9",
            "event_seq": 9, "ts": when, "bucket_start": start, "interval_seconds": 3600,
            "base_currency": "USD", "equity": d("1107.375"), "realized_pnl": d("-0.5"),
            "fees": d("0.000000000000000001"), "unrealized_pnl": d("2160.159"),
            "cash_flows": d("1000"), "drift": True, "drift_assets": ["XBT"],
            "unvalued_assets": ["KFEE"],
            "balances": [{"asset": "KFEE", "free": d("10"), "locked": d("0"), "total": d("10"),
                          "avg_cost": d("0"), "value": d("0"), "unvalued": True},
                         {"asset": "XBT", "free": d("1.5"), "locked": d("0.25"),
                          "total": d("1.75"), "avg_cost": d("60000.123456789012345678"),
                          "value": d("107160.375"), "unvalued": False}]}
