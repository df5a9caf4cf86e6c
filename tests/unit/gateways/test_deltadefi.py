"""DeltaDeFi account stream normalizer: execution records as fills, per-asset balances."""

from __future__ import annotations

from .conftest import events, fixture_json, fixture_lines, fixture_text, rejection

ACCOUNT = "5f2b6c1e-8d3a-4a7e-9c41-2f6d0b8e7a13"
ORDER = "3b9d7a52-1c0e-4f6b-a8d2-6e4c91f07b35"


def test_each_execution_record_is_a_fill_with_its_id_as_event_id() -> None:
    first, second = events("deltadefi", fixture_text("deltadefi", "order_info_two_executions.json"),
                           account=None)
    assert first == {
        "kind": "fill", "event_id": "deltadefi:fill:9e41c7d0-5b2a-4c3e-8f17-0a6d2b9c4e51",
        "account_id": ACCOUNT, "venue": "deltadefi", "ts": "2025-03-10T12:00:02.105000Z",
        "symbol": "ADA/USDM", "side": "BUY", "qty": "900", "price": "0.724", "fee": "0.9",
        "fee_asset": "ADA", "market": "spot", "venue_order_id": ORDER}
    assert (second["qty"], second["price"], second["fee"]) == ("600", "0.7255", "0.6")


def test_order_commission_in_lovelace_is_split_pro_rata_in_ada() -> None:
    fills = events("deltadefi", fixture_text("deltadefi", "order_info_two_executions.json"))
    assert sum(float(f["fee"]) for f in fills) == 1.5  # 1,500,000 lovelace
    assert {f["fee_asset"] for f in fills} == {"ADA"}


def test_execution_price_is_used_never_the_order_price() -> None:
    message = fixture_json("deltadefi", "order_info_two_executions.json")
    message["order"]["price"] = "9.99"
    assert {f["price"] for f in events("deltadefi", message)} == {"0.724", "0.7255"}


def test_caller_account_id_takes_precedence_over_the_venue_account() -> None:
    fills = events("deltadefi", fixture_text("deltadefi", "order_info_two_executions.json"),
                   account="desk-7")
    assert {f["account_id"] for f in fills} == {"desk-7"}


def test_order_update_without_executions_books_nothing() -> None:
    message = fixture_json("deltadefi", "order_info_two_executions.json")
    message["order"]["order_execution_records"] = []
    assert events("deltadefi", message) == []


def test_balance_message_states_free_and_locked_per_asset_and_no_wallet_balance() -> None:
    line = fixture_lines("deltadefi", "account_stream.jsonl")[1]
    (balance,) = events("deltadefi", line)
    assert balance["kind"] == "balance"
    assert balance["wallet_balance"] is None
    assert balance["assets"] == {"ADA": {"free": "2883.52097", "locked": "120.5"},
                                 "USDM": {"free": "1153.006812", "locked": "0"}}
    assert balance["ts"] == balance["ts_ingest"] == "2025-03-10T12:00:04.250000Z"


def test_balance_numbers_sent_as_json_numbers_stay_exact() -> None:
    raw = fixture_text("deltadefi", "balance_without_time.json")
    assert "1153.006812" in raw
    (balance,) = events("deltadefi", {"received_at": 1741608004250, "frame": raw})
    assert balance["assets"]["USDM"]["free"] == "1153.006812"


def test_balance_message_without_any_time_is_rejected() -> None:
    reason = rejection("deltadefi", fixture_text("deltadefi", "balance_without_time.json")).reason
    assert "received_at" in reason


def test_balance_update_alias_with_available_field() -> None:
    message = {"type": "Account", "sub_type": "balance_update", "timestamp": 1741608004250,
               "balances": [{"asset": "usdm", "available": "10.5", "locked": "1"}]}
    (balance,) = events("deltadefi", message)
    assert balance["assets"] == {"USDM": {"free": "10.5", "locked": "1"}}


def test_fill_message_is_one_fill_with_its_own_commission() -> None:
    line = fixture_lines("deltadefi", "account_stream.jsonl")[3]
    (fill,) = events("deltadefi", line, account=None)
    assert (fill["event_id"], fill["side"], fill["qty"], fill["fee"], fill["fee_asset"]) == (
        "deltadefi:fill:c5e8a2f1-7b4d-4e9a-9c3f-1d6b8e0a4f72", "SELL", "400", "0.29564", "USDM")


def test_points_are_not_money() -> None:
    assert events("deltadefi", fixture_lines("deltadefi", "account_stream.jsonl")[2]) == []


def test_unknown_sub_type_is_rejected() -> None:
    assert "sub_type" in rejection("deltadefi", {"type": "Account", "sub_type": "margin"}).reason


def test_negative_balance_is_rejected() -> None:
    message = {"type": "Account", "sub_type": "balance", "timestamp": 1741608004250,
               "balance": [{"asset": "ada", "free": "-1", "locked": "0"}]}
    assert "negative" in rejection("deltadefi", message).reason


def test_commission_in_an_unnamed_on_chain_unit_is_rejected() -> None:
    message = fixture_json("deltadefi", "order_info_two_executions.json")
    message["order"]["commission_unit"] = "5066154a102ee037390c5236f78db23239b49c5748d3d349f3ccf04b"
    assert "asset symbol" in rejection("deltadefi", message).reason
