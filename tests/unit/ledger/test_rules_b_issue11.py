"""Spot engine rules of issue 11: tracked assets, stale marks, external activity, performance.

One group per rule: include/exclude asset lists (``LedgerConfig.include_assets`` /
``exclude_assets``), marks older than ``max_mark_age`` (flagged with their age,
never silently fresh; the age is event ts - mark ts, no clock), manual trades or
cash flows moving more than ``external_activity_share`` of equity, and the
``performance`` query (max drawdown, win rate, profit factor, average win/loss,
return net of cash flows).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from streams import queries as q
from streams.exceptions import ConfigError
from streams.foldfile import run_fold
from streams.ledger import LedgerConfig
from streams.ledger.config import config_from_mapping
from streams.ledger.numbers import MarkPrice

from ._helpers import T0, Events, Run

D = Decimal
XBT = "XBT/USD"


def spot(config: LedgerConfig | None = None) -> tuple[Events, Run]:
    r = Run(config)
    r.marks.update({XBT: D(60000), "ETH/USD": D(3000), "KFEE/USD": D("0.01")})
    return Events(venue="kraken"), r


def fill(e: Events, side: str, qty: Any, price: Any, symbol: str = XBT, **kw: Any,
         ) -> dict[str, Any]:
    return e.fill(side, qty, price, symbol, market="spot", **kw)


def deposit(e: Events, asset: str, amount: Any, flow: str = "deposit") -> dict[str, Any]:
    return e("cash_flow", asset=asset, amount=amount, flow=flow)


def anomalies(run: Run, code: str) -> list[str]:
    return [a["detail"] for a in run.of("anomaly") if a["code"] == code]


# ------------------------------------------------------------------ include/exclude assets


def test_excluded_asset_fill_and_cash_flow_book_nothing_and_say_so():
    e, r = spot(LedgerConfig(exclude_assets=("ETH",)))
    r(deposit(e, "USD", 10000), deposit(e, "ETH", 2), fill(e, "BUY", 1, 3000, "ETH/USD",
                                                          strategy_tag="grid"))
    st = r.state()
    assert set(st.book.assets) == {"USD"} and st.book.assets["USD"].qty == 10000
    assert len(anomalies(r, "ASSET_EXCLUDED")) == 2
    assert not st.book.pairs and st.k_cash == 10000
    assert [f["asset"] for f in r.of("cashflow")] == ["USD"]


def test_include_list_tracks_only_its_assets_and_the_base_currency():
    e, r = spot(LedgerConfig(include_assets=("XBT",)))
    r(deposit(e, "USD", 100000), fill(e, "BUY", 1, 60000, strategy_tag="g"),
      fill(e, "BUY", 1, 3000, "ETH/USD", strategy_tag="g"))
    assert set(r.state().book.assets) == {"USD", "XBT"}
    assert anomalies(r, "ASSET_EXCLUDED") and "ETH" in anomalies(r, "ASSET_EXCLUDED")[0]


def test_fee_in_an_excluded_asset_is_not_taken_from_balances_and_is_valued_0():
    e, r = spot(LedgerConfig(exclude_assets=("KFEE",)))
    r(deposit(e, "USD", 100000), fill(e, "BUY", 1, 60000, fee="500", fee_asset="KFEE",
                                      strategy_tag="g"))
    st = r.state()
    assert "KFEE" not in st.book.assets and st.k_fees == 0
    assert st.book.fees["KFEE"] == [D(500), D(0)]
    assert any("KFEE" in d for d in anomalies(r, "ASSET_EXCLUDED"))


def test_balance_frames_ignore_untracked_assets():
    e, r = spot(LedgerConfig(exclude_assets=("DOGE",)))
    r(deposit(e, "USD", 1000),
      e("balance", wallet_balance=None, assets={"USD": {"free": "1000", "locked": "0"},
                                               "DOGE": {"free": "50", "locked": "0"}}))
    assert not r.state().book.drift and not anomalies(r, "DRIFT")


def test_asset_list_config_is_validated():
    cfg = config_from_mapping({"include_assets": ["XBT"], "exclude_assets": ["KFEE"]})
    assert cfg.tracks("USD") and cfg.tracks("XBT") and not cfg.tracks("ETH")
    assert not cfg.tracks("KFEE")
    with pytest.raises(ConfigError, match="base currency"):
        LedgerConfig(exclude_assets=("USD",))
    with pytest.raises(ConfigError, match="exclude_assets"):
        config_from_mapping({"exclude_assets": "KFEE"})


# ------------------------------------------------------------------------- stale marks


def test_a_mark_older_than_max_mark_age_is_flagged_with_its_age_at_every_valuation():
    e, r = spot(LedgerConfig(max_mark_age=600))
    r.marks[XBT] = MarkPrice(D(60000), T0 - timedelta(hours=1))
    r(deposit(e, "USD", 100000), fill(e, "BUY", 1, 60000, strategy_tag="g"))
    (detail,) = anomalies(r, "STALE_MARK")  # the deposit valued nothing at a mark
    assert "XBT/USD 3602s old" in detail  # event ts T0+2s - mark ts T0-1h
    # The snapshot of the same event carries it too, with the age; the deposit's none.
    snaps = r.of("snapshot")
    assert [s["stale_marks"] for s in snaps] == [
        [], [{"symbol": "XBT/USD", "age_seconds": 3602}]]
    # a fresh mark: no flag
    r.marks[XBT] = MarkPrice(D(61000), T0 + timedelta(seconds=2))
    r(deposit(e, "USD", 1))
    assert len(anomalies(r, "STALE_MARK")) == 1
    assert r.of("snapshot")[-1]["stale_marks"] == []


def test_stale_marks_are_off_by_default_and_marks_without_a_time_have_no_age():
    e, r = spot()
    r.marks[XBT] = MarkPrice(D(60000), T0 - timedelta(days=30))
    r(deposit(e, "USD", 100000), fill(e, "BUY", 1, 60000, strategy_tag="g"))
    assert not anomalies(r, "STALE_MARK")
    e2, r2 = spot(LedgerConfig(max_mark_age=0))  # plain Decimal marks: no known age
    r2(deposit(e2, "USD", 100000), fill(e2, "BUY", 1, 60000, strategy_tag="g"))
    assert not anomalies(r2, "STALE_MARK")


def test_futures_positions_are_flagged_too():
    r = Run(LedgerConfig(max_mark_age=60))
    e = Events()
    r.marks["FET-USDT"] = MarkPrice(D("0.19"), T0 - timedelta(minutes=5))
    r(e.fill("SELL", 100, "0.19", leverage="1"))
    assert anomalies(r, "STALE_MARK") == [
        "valued at marks older than max_mark_age 60s: FET-USDT 301s old"]
    assert r.of("snapshot")[-1]["stale_marks"] == [{"symbol": "FET-USDT", "age_seconds": 301}]


def test_queries_show_stale_marks_with_their_age_and_still_value_at_them():
    e, r = spot(LedgerConfig(max_mark_age=600))
    r(deposit(e, "USD", 100000), fill(e, "BUY", 1, 60000, strategy_tag="g"))
    r.marks[XBT] = MarkPrice(D(62000), T0 - timedelta(hours=2))
    r.marks["ETH/USD"] = MarkPrice(D(3000), T0)  # the newest mark: the reference time
    eq = q.run_query("equity", r.state(), "acc-1", r.marks, r.config)
    assert eq["stale_marks"] == {XBT: 7200} and eq["max_mark_age"] == 600
    assert D(eq["equity"]) == 40000 + 62000  # valued at it, and said so
    pos = q.run_query("positions", r.state(), "acc-1", r.marks, r.config,
                      as_of=T0 + timedelta(hours=1))
    assert pos["balances"]["XBT"]["mark_age_seconds"] == 3 * 3600
    assert pos["balances"]["XBT"]["mark_stale"] is True
    assert pos["balances"]["USD"]["mark_stale"] is False
    (row,) = pos["positions"]
    assert row["mark_stale"] is True and row["mark_age_seconds"] == 3 * 3600
    assert q.run_query("exposure", r.state(), "acc-1", r.marks, r.config)["stale_marks"] == \
        {XBT: 7200}


def test_the_file_fold_keeps_each_marks_time():
    lines = ['{"kind":"mark","event_id":"m1","account_id":"","venue":"kraken",'
             '"ts":"2026-01-05T08:00:00Z","symbol":"XBT/USD","price":"60000"}']
    run = run_fold(lines, LedgerConfig())
    assert run.marks[XBT].ts == T0 - timedelta(hours=1)  # type: ignore[attr-defined]


def test_as_of_is_an_iso_time_parameter_and_a_bad_one_is_400():
    assert q.parse_params("equity", {"as_of": "2026-01-05T09:00:00Z"})["as_of"] == T0
    with pytest.raises(q.QueryError, match="ISO-8601"):
        q.parse_params("equity", {"as_of": "yesterday"})


# ------------------------------------------------------------------- external activity


def test_a_manual_trade_worth_more_than_the_share_of_equity_is_external_activity():
    e, r = spot(LedgerConfig(external_activity_share=D("0.25")))
    r(deposit(e, "USD", 100000))
    r(fill(e, "BUY", D("0.5"), 60000))  # manual, 30000 = 0.3 of 100000
    (detail,) = anomalies(r, "EXTERNAL_ACTIVITY")
    assert "manual trade BUY 0.5 XBT/USD worth 30000" in detail and "0.3 (30.00%)" in detail
    r(fill(e, "BUY", D("0.5"), 60000, strategy_tag="grid"))  # a strategy's: not external
    r(fill(e, "SELL", D("0.1"), 60000))  # manual but 6000 of ~99970: below the share
    assert len(anomalies(r, "EXTERNAL_ACTIVITY")) == 1


def test_a_large_cash_flow_is_external_activity_the_first_deposit_is_not():
    e, r = spot(LedgerConfig(external_activity_share=D("0.1")))
    r(deposit(e, "USD", 10000))  # equity before 0: nothing to compare with
    assert not anomalies(r, "EXTERNAL_ACTIVITY")
    r(deposit(e, "USD", 500))
    assert not anomalies(r, "EXTERNAL_ACTIVITY")
    r(deposit(e, "USD", -5000, flow="withdrawal"))
    (detail,) = anomalies(r, "EXTERNAL_ACTIVITY")
    assert "withdrawal of -5000 USD worth 5000" in detail and "(47.62%)" in detail
    with pytest.raises(ConfigError, match="external_activity_share"):
        LedgerConfig(external_activity_share=D(0))


# ------------------------------------------------------------------------ performance


def test_performance_of_futures_trades():
    r = Run()
    e = Events()
    r(e("anchor", capital="10000"))
    r.marks["FET-USDT"] = D(1)
    # win +100 (fees 10 -> +90), loss -50 (fees 10 -> -60), win +40 (fees 0)
    for entry, exit_, fee in (("1", "2", "5"), ("2", "1.5", "5"), ("1", "1.4", "0")):
        r(e.fill("BUY", 100, entry, fee=fee), e.fill("SELL", 100, exit_, fee=fee))
    doc = q.run_query("performance", r.state(), "acc-1", r.marks, r.config)
    assert (doc["trades_counted"], doc["wins"], doc["losses"]) == (3, 2, 1)
    assert D(doc["win_rate"]) == q.q18(D(2) / 3)
    assert D(doc["profit_factor"]) == q.q18(D(130) / 60)
    assert D(doc["average_win"]) == 65 and D(doc["average_loss"]) == -60
    assert D(doc["net_pnl"]) == 70 and D(doc["capital_in"]) == 10000
    assert D(doc["return"]) == D("0.007")
    # curve 0, 90, 30, 70: the fall from 90 to 30
    assert D(doc["max_drawdown"]) == 60 and D(doc["max_drawdown_share"]) == q.q18(D(60) / 10090)
    assert doc["complete"] is True


def test_performance_of_spot_counts_sales_not_purchases_for_cash():
    e, r = spot()
    r(deposit(e, "USD", 100000), fill(e, "BUY", 1, 60000, fee="60", strategy_tag="g"))
    r.marks[XBT] = D(61000)
    r(fill(e, "SELL", D("0.5"), 61000, fee="30", strategy_tag="g"))
    doc = q.run_query("performance", r.state(), "acc-1", r.marks, r.config)
    assert doc["trades_counted"] == 1 and doc["wins"] == 1 and doc["profit_factor"] is None
    assert D(doc["average_win"]) == 500 - 30
    # realized 500 - fees 90 + unrealized 0.5 x 1000 = 910 on 100000 put in
    assert D(doc["net_pnl"]) == 910 and D(doc["return"]) == D("0.0091")


def test_performance_says_when_the_state_no_longer_holds_every_trade():
    r = Run(LedgerConfig(max_closed_trades=1))
    e = Events()
    r.marks["FET-USDT"] = D(1)
    for _ in range(2):
        r(e.fill("BUY", 1, 1), e.fill("SELL", 1, 2))
    doc = q.run_query("performance", r.state(), "acc-1", r.marks, r.config)
    assert doc["complete"] is False and doc["trades_in_state"] == 1 and doc["trade_count"] == 2


# ----------------------------------------------------------------- history by time range


def _flows_run(cap: int | None) -> Run:
    e, r = spot(LedgerConfig(max_cash_flows=cap))
    for amount in (100, 200, 300, 400):
        r(deposit(e, "USD", amount))  # at T0+1s .. T0+4s
    return r


def test_cash_flows_by_time_range_and_whether_the_state_reaches_back():
    r = _flows_run(None)
    doc = q.run_query("cash-flows", r.state(), "acc-1", r.marks, r.config,
                      since=T0 + timedelta(seconds=2), until=T0 + timedelta(seconds=4))
    assert [f["amount"] for f in doc["flows"]] == ["200", "300"]
    assert doc["complete"] is True and doc["since"] == "2026-01-05T09:00:02+00:00"
    capped = _flows_run(2)  # the live worker keeps the last 2: 300 and 400
    doc = q.run_query("cash-flows", capped.state(), "acc-1", capped.marks, capped.config,
                      since=T0)
    assert doc["complete"] is False and doc["history_from"] == "2026-01-05T09:00:03+00:00"
    assert "ClickHouse" in doc["older_history"]
    doc = q.run_query("cash-flows", capped.state(), "acc-1", capped.marks, capped.config,
                      since=T0 + timedelta(seconds=3))
    assert doc["complete"] is True and [f["amount"] for f in doc["flows"]] == ["300", "400"]


def test_trades_by_time_range_with_open_and_close_times():
    r = Run(LedgerConfig(max_closed_trades=1))
    e = Events()
    r.marks["FET-USDT"] = D(1)
    r(e.fill("BUY", 1, 1), e.fill("SELL", 1, 2))  # T0+1s .. T0+2s
    r(e.fill("BUY", 2, 1), e.fill("BUY", 2, 3), e.fill("SELL", 4, 4))  # T0+3s .. T0+5s
    doc = q.run_query("trades", r.state(), "acc-1", r.marks, r.config,
                      since=T0 + timedelta(seconds=4))
    (t,) = doc["trades"]
    assert t["opened_at"] == "2026-01-05T09:00:03+00:00"
    assert t["closed_at"] == "2026-01-05T09:00:05+00:00" and t["holding_seconds"] == 2
    assert (t["entry_qty"], t["entry_price"], t["exit_qty"], t["exit_price"]) == \
        ("4", "2", "4", "4")
    assert doc["complete"] is True  # the dropped trade closed before since
    doc = q.run_query("trades", r.state(), "acc-1", r.marks, r.config, since=T0)
    assert doc["complete"] is False and doc["history_from"] == "2026-01-05T09:00:03+00:00"
    assert q.run_query("trades", r.state(), "acc-1", r.marks, r.config,
                       until=T0 + timedelta(seconds=3))["count"] == 0


def test_since_and_until_are_validated_iso_times():
    assert q.parse_params("snapshots", {"since": "2026-01-05T09:00:00"})["since"] == T0
    for bad in ("2026-13-01", "", "x" * 41):
        with pytest.raises(q.QueryError):
            q.parse_params("trades", {"until": bad})
    with pytest.raises(q.QueryError, match="unknown parameter"):
        q.parse_params("equity", {"since": "2026-01-05"})
