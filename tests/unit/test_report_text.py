"""The text of `twinledger report`: read as a trader would, without arithmetic (issue 11)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from streams.reporttext import (
    explain_result,
    format_accounts,
    money,
    pct,
    stale_ages,
    trades_from_legs,
)


def leg(trade: str, seq: int, ts: str, action: str, qty: str, price: str, cum: str, fees: str,
        **kw: Any) -> dict[str, Any]:
    return {"account_id": "acc", "trade_id": trade, "event_seq": seq, "ts": ts,
            "symbol": kw.get("symbol", "FET-USDT"), "side": kw.get("side", "SHORT"),
            "position_side": "BOTH", "market": kw.get("market", "futures"), "action": action,
            "qty": qty, "price": price, "cumulative_pnl": cum, "trade_fees": fees,
            "holding_seconds": kw.get("hold", 0), "flags": [], "strategy_tag": ""}


def test_trades_from_legs_give_times_quantities_average_prices_and_duration():
    legs = [
        leg("t1", 1, "2024-05-06T09:01:00Z", "open", "195259", "0.1878", "0", "18.3348"),
        leg("t1", 2, "2024-05-06T09:01:02Z", "increase", "7017", "0.1878", "0", "18.9937"),
        leg("t1", 3, "2024-05-06T11:30:00Z", "reduce", "26007", "0.1866", "31.2084", "21.4202"),
        leg("t1", 4, "2024-05-06T11:30:05Z", "close", "176269", "0.1866", "242.7312",
            "37.8661"),
        # a spot fill opened earlier sorts first, whatever its id
        leg("s0", 5, "2024-05-06T08:00:00Z", "sell", "1", "3100", "100", "3",
            symbol="ETH/USD", side="SELL", market="spot"),
    ]
    (spot, fut) = trades_from_legs(reversed(legs))["acc"]
    assert spot["trade_id"] == "s0" and spot["exit_qty"] == 1 and spot["holding_seconds"] is None
    assert fut["entry_qty"] == 202276 and fut["entry_price"] == Decimal("0.1878")
    assert fut["exit_qty"] == 202276 and fut["exit_price"] == Decimal("0.1866")
    assert fut["realized_pnl"] == Decimal("242.7312") and fut["fees"] == Decimal("37.8661")
    assert fut["net_pnl"] == Decimal("204.8651") and fut["status"] == "CLOSED"
    assert fut["holding_seconds"] == 2 * 3600 + 29 * 60 + 5


def test_a_capital_mismatch_is_explained_with_its_rule_delta_and_why():
    text = explain_result({"rule": "R1", "status": "ERROR", "code": "CAPITAL_MISMATCH",
                           "field": "capital", "delta": "494"})
    assert text.startswith("R1 CAPITAL_MISMATCH") and "494" in text
    assert "above the wallet balance" in text and "frozen" in text


def _accounts() -> list[dict[str, Any]]:
    fut = {"account_id": "acct-eth", "event_seq": 3, "ts": "2024-05-06T09:10:01Z",
           "capital": "19500", "capital_source": "e_anchored", "k_capital": "19994",
           "equity": "19600", "realized_pnl": "0", "fees": "6", "funding": "0",
           "net_cash_flows": "0", "unrealized_pnl": "100", "reconcile_status": "ERROR",
           "capital_frozen": True,
           "positions": [{"symbol": "ETHUSDT", "position_side": "BOTH", "qty": "10",
                          "avg_entry_price": "3000", "mark_price": "3010",
                          "unrealized_pnl": "100", "leverage": "10", "used_margin": "3000",
                          "realized_pnl": "0", "market": "futures"}],
           "reconcile": {"status": "ERROR", "results": json.dumps([
               {"rule": "R1", "status": "ERROR", "code": "CAPITAL_MISMATCH",
                "field": "capital", "delta": "494"}])},
           "trades": []}
    spot = {"account_id": "acct-spot", "event_seq": 7, "ts": "2024-05-06T12:06:00Z",
            "capital": "50947", "capital_source": "k_bridged", "k_capital": "50947",
            "equity": "50947", "realized_pnl": "300", "fees": "53", "funding": "0",
            "net_cash_flows": "50700", "unrealized_pnl": "0", "reconcile_status": "OK",
            "capital_frozen": False,
            "positions": [{"symbol": "XBT/USD", "position_side": "BOTH", "qty": "0.2999",
                           "avg_entry_price": "60000", "mark_price": "60000",
                           "unrealized_pnl": "0", "leverage": "1", "used_margin": "0",
                           "realized_pnl": "200", "market": "spot"}],
            "asset_balances": [{"asset": "USD", "total": "23267", "avg_cost": "1",
                                "value": "23267", "cost_basis": "23267", "drift": False}],
            "trades": []}
    return [fut, spot]


def test_the_report_adds_up_explains_and_speaks_a_traders_terms():
    text = format_accounts(_accounts())
    # equity and the parts it adds up to; the ledger's own capital when it differs
    assert "equity   19,600.00 = capital 19,500.00 + unrealized +100.00" in text
    assert "ledger   19,994.00 = start 20,000.00" in text and "494.00 above" in text
    assert "equity   50,947.00 = realized +300.00 - fees 53.00" in text
    # why the account is frozen, in a sentence with the rule and the delta
    assert "capital FROZEN" in text and "R1 CAPITAL_MISMATCH" in text and "delta 494" in text
    # per position: qty, average, mark, unrealized, leverage, used margin; spot is not BOTH
    eth = next(line for line in text.splitlines() if line.strip().startswith("ETHUSDT"))
    assert eth.split()[:9] == ["ETHUSDT", "long", "10", "3,000", "3,010", "30,100.00",
                               "+100.00", "10x", "3,000.00"]
    xbt = next(line for line in text.splitlines() if line.strip().startswith("XBT/USD"))
    assert xbt.split()[1] == "spot" and "BOTH" not in text
    # shares of equity rounded for reading; a total across accounts
    assert "45.67%" in text
    total = next(line for line in text.splitlines() if line.strip().startswith("TOTAL"))
    assert total.split()[:6] == ["TOTAL", "2", "accounts", "USD", "70,547.00", "+100.00"]
    assert "1 frozen" in total


def test_money_and_percent_rounding():
    assert money("10204.8651") == "10,204.87" and money("-0.001") == "0.00"
    assert money("242.7312", sign=True) == "+242.73"
    assert pct("23267", "50947") == "45.67%" and pct("1", "0") == "-"


def test_stale_marks_are_flagged_with_their_age_on_the_positions_valued_at_them():
    accounts = _accounts()
    accounts[1]["stale_marks"] = stale_ages(
        "valued at marks older than max_mark_age 3600s: XBT/USD 10800s old")
    text = format_accounts(accounts)
    assert "STALE marks (valued, but older than max_mark_age): XBT/USD 3h 00m 00s old" in text
    xbt = next(line for line in text.splitlines() if line.strip().startswith("XBT/USD"))
    assert xbt.endswith("STALE mark, 3h 00m 00s old")
