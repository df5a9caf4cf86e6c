"""Binance USDⓈ-M user data stream normalizer: fills, realized PnL, account frames, funding."""

from __future__ import annotations

import json

import pytest

from streams.gateways import OrderMemory

from .conftest import events, fixture_json, fixture_lines, fixture_text, rejection


def test_trade_report_is_a_fill_at_the_last_fill_price_with_fee_and_asset() -> None:
    fill, _ = events("binance", fixture_text("binance", "order_trade_update_partial_fill.json"))
    assert fill == {
        "kind": "fill",
        "event_id": "binance:fill:ETHUSDT:4127855361",
        "account_id": "acct-1",
        "venue": "binance",
        "ts": "2025-03-13T09:30:00.120000Z",
        "symbol": "ETHUSDT",
        "side": "SELL",
        "qty": "0.6",
        "price": "1902.41",
        "fee": "0.4565784",
        "fee_asset": "USDT",
        "position_side": "BOTH",
        "venue_order_id": "8389765829452113",
        "client_order_id": "mom-eth-7f3a",
        "market": "futures",
    }


def test_realized_profit_of_a_trade_is_a_settlement_of_that_fill() -> None:
    fill, settled = events("binance",
                           fixture_text("binance", "order_trade_update_partial_fill.json"))
    assert settled == {
        "kind": "fill_settled", "event_id": "binance:settle:ETHUSDT:4127855361",
        "account_id": "acct-1", "venue": "binance", "ts": fill["ts"], "symbol": "ETHUSDT",
        "fill_event_id": fill["event_id"], "venue_order_id": "8389765829452113",
        "realized_pnl": "37.806", "fee": "0.4565784"}


def test_opening_trade_with_zero_realized_profit_has_no_settlement() -> None:
    frame = fixture_json("binance", "order_trade_update_partial_fill.json")
    frame["o"]["rp"] = "0"
    assert [e["kind"] for e in events("binance", frame)] == ["fill"]


def test_order_price_is_never_a_fill_price() -> None:
    frame = fixture_json("binance", "order_trade_update_partial_fill.json")
    frame["o"].update({"o": "LIMIT", "p": "1900", "L": "0", "ap": "1902.5"})
    assert events("binance", frame)[0]["price"] == "1902.5"
    frame["o"]["ap"] = "0"
    assert events("binance", frame)[0]["price"] == "0"


def test_hedge_mode_position_side_is_carried() -> None:
    frame = fixture_json("binance", "order_trade_update_partial_fill.json")
    frame["o"]["ps"] = "SHORT"
    assert events("binance", frame)[0]["position_side"] == "SHORT"


def test_new_order_report_books_nothing() -> None:
    new = fixture_lines("binance", "user_data_stream.jsonl")[1]
    assert json.loads(new)["o"]["x"] == "NEW"
    assert events("binance", new) == []


def test_trade_report_without_last_quantity_is_rejected() -> None:
    frame = fixture_json("binance", "order_trade_update_partial_fill.json")
    frame["o"]["l"] = "0"
    assert "l > 0" in rejection("binance", frame).reason


def test_account_update_states_wallet_balance_and_positions() -> None:
    balance, positions = events("binance", fixture_lines("binance", "user_data_stream.jsonl")[3])
    assert balance["wallet_balance"] == "25037.3494216"
    assert balance["ts"] == "2025-03-13T09:30:00.120000Z"  # T, the transaction time
    assert positions["positions"] == [
        {"symbol": "ETHUSDT", "position_side": "BOTH", "qty": "0.9", "entry_price": "1839.4"}]


def test_account_update_without_margin_asset_yields_no_wallet_balance_fact() -> None:
    raw = fixture_text("binance", "account_update_without_margin_asset.json")
    assert events("binance", raw) == []


def test_funding_fee_frame_is_funding_paid_and_the_new_wallet_balance() -> None:
    funding, balance = events("binance", fixture_text("binance", "account_update_funding_fee.json"))
    assert funding["kind"] == "funding"
    assert funding["amount"] == "1.7184"  # bc -1.7184: paid, so positive
    assert funding["symbol"] == "*"  # cross-margin frame, no known position: account-level
    assert balance["wallet_balance"] == "25035.6310216"


def test_cross_margin_funding_is_attributed_to_the_only_open_position() -> None:
    memory = OrderMemory()
    events("binance", fixture_lines("binance", "user_data_stream.jsonl")[3], memory)
    funding, _ = events("binance", fixture_text("binance", "account_update_funding_fee.json"),
                        memory)
    assert funding["symbol"] == "ETHUSDT"


def test_isolated_funding_frame_names_its_symbol() -> None:
    frame = fixture_json("binance", "account_update_funding_fee.json")
    frame["a"]["P"] = [{"s": "ETHUSDT", "pa": "0.9", "ep": "1860.4", "ps": "BOTH"}]
    funding = events("binance", frame)[0]
    assert funding["symbol"] == "ETHUSDT"


def test_deposit_frame_is_a_cash_flow_before_the_balance() -> None:
    flow, balance = events("binance", fixture_lines("binance", "user_data_stream.jsonl")[6])
    assert (flow["kind"], flow["asset"], flow["amount"], flow["flow"]) == \
        ("cash_flow", "USDT", "5000", "deposit")
    assert balance["kind"] == "balance"


def test_combined_stream_envelope_is_unwrapped() -> None:
    wrapped = fixture_text("binance", "combined_stream_account_update.json")
    bare = fixture_lines("binance", "user_data_stream.jsonl")[3]
    assert events("binance", wrapped) == events("binance", bare)


def test_received_at_envelope_sets_ts_ingest_and_keeps_ts() -> None:
    bare = fixture_json("binance", "order_trade_update_partial_fill.json")
    fill, _ = events("binance", {"received_at": "2025-03-13T09:30:00.300Z", "frame": bare})
    assert fill["ts"] == "2025-03-13T09:30:00.120000Z"
    assert fill["ts_ingest"] == "2025-03-13T09:30:00.300000Z"


@pytest.mark.parametrize("event_type", ["listenKeyExpired", "TRADE_LITE", "MARGIN_CALL"])
def test_frames_that_carry_nothing_bookable_normalize_to_no_events(event_type: str) -> None:
    assert events("binance", {"e": event_type, "E": 1741858200124}) == []


def test_unknown_event_type_is_rejected() -> None:
    assert "unknown Binance" in rejection("binance", {"e": "SOMETHING", "E": 1}).reason


def test_liquidation_execution_is_booked_like_a_trade() -> None:
    frame = fixture_json("binance", "order_trade_update_partial_fill.json")
    frame["o"]["x"] = "CALCULATED"
    assert events("binance", frame)[0]["kind"] == "fill"


def test_position_book_persists_across_frames_of_the_same_account_only() -> None:
    memory = OrderMemory()
    events("binance", fixture_lines("binance", "user_data_stream.jsonl")[3], memory)
    other = fixture_json("binance", "account_update_funding_fee.json")
    other["a"]["P"] = [{"s": "BTCUSDT", "pa": "-0.01", "ep": "83000", "ps": "BOTH"}]
    _, _, mine = events("binance", other, memory)
    _, _, theirs = events("binance", other, memory, account="acct-2")
    assert [p["symbol"] for p in mine["positions"]] == ["BTCUSDT", "ETHUSDT"]
    assert [p["symbol"] for p in theirs["positions"]] == ["BTCUSDT"]


def test_fee_paid_in_bnb_keeps_its_asset() -> None:
    frame = fixture_json("binance", "order_trade_update_partial_fill.json")
    frame["o"].update({"N": "BNB", "n": "0.00071322"})
    fill, settled = events("binance", frame)
    assert (fill["fee"], fill["fee_asset"]) == ("0.00071322", "BNB")
    assert settled["fee"] == "0.00071322"
