"""Kraken spot REST normalizer: asset codes, trades with fee assets, ledger cash flows, tags."""

from __future__ import annotations

import pytest

from streams.gateways.kraken import asset_of, pair_of

from .conftest import events, fixture_json, fixture_text, rejection


@pytest.mark.parametrize(("code", "expected"), [
    ("XXBT", "XBT"), ("ZUSD", "USD"), ("XETH", "ETH"), ("ZEUR", "EUR"), ("XXDG", "XDG"),
    ("XBT", "XBT"), ("SOL", "SOL"), ("USDT", "USDT"), ("ZEC", "ZEC"), ("XTZ", "XTZ"),
    ("DOT.S", "DOT"), ("XBT.M", "XBT"), ("ETH.F", "ETH"),
])
def test_kraken_asset_codes_are_normalized(code: str, expected: str) -> None:
    assert asset_of(code) == expected


@pytest.mark.parametrize(("pair", "expected"), [
    ("XXBTZUSD", ("XBT", "USD")), ("XETHZEUR", ("ETH", "EUR")), ("SOLUSD", ("SOL", "USD")),
    ("XBTUSDT", ("XBT", "USDT")), ("ETHXBT", ("ETH", "XBT")), ("XBT/USD", ("XBT", "USD")),
])
def test_pair_names_split_into_normalized_base_and_quote(
        pair: str, expected: tuple[str, str]) -> None:
    assert pair_of(pair) == expected


def test_trades_history_rows_become_spot_fills_oldest_first() -> None:
    out = events("kraken", fixture_text("kraken", "trades_history.json"))
    assert [e["event_id"] for e in out] == [
        "kraken:trade:TBC2RV-K3NJG-CTZQYQ", "kraken:trade:TCWJEG-FL4SZ-3FKGH6",
        "kraken:trade:THVRQM-33VKH-UCI7BS"]
    assert out[2] == {
        "kind": "fill", "event_id": "kraken:trade:THVRQM-33VKH-UCI7BS", "account_id": "acct-1",
        "venue": "kraken", "ts": "2025-03-12T12:20:34.483700Z", "symbol": "XBT/USD",
        "side": "SELL", "qty": "0.05", "price": "83210.1", "fee": "10.81731", "fee_asset": "USD",
        "market": "spot", "venue_order_id": "OQCLML-BW3P3-BUCMWZ", "strategy_tag": "20250301"}


def test_trade_fee_is_in_the_quote_asset_of_the_pair() -> None:
    eth_eur = events("kraken", fixture_text("kraken", "trades_history.json"))[1]
    assert (eth_eur["symbol"], eth_eur["fee"], eth_eur["fee_asset"]) == ("ETH/EUR", "3.57824", "EUR")


def test_userref_zero_or_absent_leaves_the_fill_untagged() -> None:
    sol, eth, _ = events("kraken", fixture_text("kraken", "trades_history.json"))
    assert "strategy_tag" not in sol  # userref 0
    assert "strategy_tag" not in eth  # no userref joined


def test_ledger_rows_become_cash_flows_net_of_fee_and_trade_rows_book_nothing() -> None:
    out = events("kraken", fixture_text("kraken", "ledgers.json"))
    assert [(e["event_id"], e["asset"], e["amount"], e["flow"]) for e in out] == [
        ("kraken:ledger:LOIHKH-7XQ3B-4IXRPA", "USD", "3000", "deposit"),
        ("kraken:ledger:LPXMQI-7MXLL-MGB3KO", "USD", "-505", "withdrawal"),
        ("kraken:ledger:LJ3HRQ-5C4DW-NX3B5Q", "DOT", "0.3415", "reward"),
        ("kraken:ledger:LTGQ5E-OQW6O-DP6ZJ4", "XBT", "0.00001423", "reward"),
    ]  # the trade row and the spot->earn allocation are absent on purpose


def test_margin_trade_is_rejected_on_a_spot_ledger() -> None:
    page = fixture_json("kraken", "trades_history.json")
    page["result"]["trades"]["TBC2RV-K3NJG-CTZQYQ"]["margin"] = "126.43"
    assert "margin trade" in rejection("kraken", page).reason


def test_one_untrustworthy_row_rejects_the_whole_page_naming_it() -> None:
    page = fixture_json("kraken", "ledgers.json")
    page["result"]["ledger"]["LOIHKH-7XQ3B-4IXRPA"]["amount"] = "3,000.00"
    reason = rejection("kraken", page).reason
    assert "LOIHKH-7XQ3B-4IXRPA" in reason and "not a decimal" in reason


def test_unsupported_ledger_type_is_rejected_not_dropped() -> None:
    page = fixture_json("kraken", "ledgers.json")
    page["result"]["ledger"]["LOIHKH-7XQ3B-4IXRPA"]["type"] = "rollover"
    assert "rollover" in rejection("kraken", page).reason


def test_kraken_error_response_is_rejected_with_its_text() -> None:
    reason = rejection("kraken", {"error": ["EAPI:Invalid nonce"], "result": {}}).reason
    assert "EAPI:Invalid nonce" in reason


def test_result_object_alone_is_accepted() -> None:
    page = fixture_json("kraken", "trades_history.json")
    assert events("kraken", page["result"]) == events("kraken", page)


def test_kraken_payloads_need_an_account_id() -> None:
    assert "account" in rejection("kraken", fixture_text("kraken", "ledgers.json"),
                                  account=None).reason
