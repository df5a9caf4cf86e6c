"""LEDGER part B (spot portfolios), one group of tests per rule (B1-B8), and oversells."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.exceptions import ConfigError
from streams.foldfile import fold_lines
from streams.ledger import (
    LedgerConfig,
    account_summary,
    apply_event,
    decode_state,
    encode_state,
    parse_event,
)
from streams.ledger.config import config_from_mapping
from streams.ledger.events import Mark
from streams.ledger.fold import FoldResult
from streams.ledger.numbers import q18
from streams.ledger.state import AssetBalance

from ._helpers import Events, Run, avro_roundtrip, load_schemas

D = Decimal
XBT = "XBT/USD"
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def spot_run(config: LedgerConfig | None = None) -> tuple[Events, Run]:
    return Events(venue="kraken"), Run(config)


def fill(e: Events, side: str, qty: Any, price: Any, symbol: str = XBT, **kw: Any,
         ) -> dict[str, Any]:
    return e.fill(side, qty, price, symbol, market="spot", **kw)


def deposit(e: Events, asset: str, amount: Any, flow: str = "deposit") -> dict[str, Any]:
    return e("cash_flow", asset=asset, amount=amount, flow=flow)


def mark(symbol: str, price: Any) -> dict[str, Any]:
    return {"kind": "mark", "symbol": symbol, "price": str(price), "ts": "2026-01-05T09:00:00Z"}


def balances(run: Run) -> dict[str, dict[str, Any]]:
    return {b["asset"]: b for b in run.last_snapshot()["balances"]}


def summary(run: Run, **kw: Any) -> dict[str, Any]:
    return account_summary(run.state(), run.marks, run.config, **kw)


# B1 -------------------------------------------------------------------------------


def test_b1_spot_fill_moves_base_and_quote_balances():
    e, run = spot_run()
    run(deposit(e, "USD", 1000), fill(e, "BUY", 2, 100, fee="0.5", fee_asset="USD"))
    bal = balances(run)
    assert bal["USD"]["total"] == D("799.5") and bal["XBT"]["total"] == 2
    assert bal["USD"]["free"] == D("799.5") and bal["XBT"]["locked"] == 0
    assert "UNSUPPORTED_MARKET" not in run.codes()
    run(fill(e, "SELL", "0.5", 110))
    bal = balances(run)
    assert bal["XBT"]["total"] == D("1.5") and bal["USD"]["total"] == D("854.5")


def test_b1_locked_is_the_exchange_report_and_free_the_rest():
    e, run = spot_run()
    run(deposit(e, "USD", 1000), fill(e, "BUY", 2, 100),
        e("balance", wallet_balance=None,
          assets={"USD": {"free": "700", "locked": "100"}, "XBT": {"free": "1.5",
                                                                 "locked": "0.5"}}))
    bal = balances(run)
    assert (bal["XBT"]["free"], bal["XBT"]["locked"], bal["XBT"]["total"]) == (
        D("1.5"), D("0.5"), 2)
    assert (bal["USD"]["free"], bal["USD"]["locked"]) == (700, 100)


def test_b1_exchange_balances_are_e_facts_and_a_spot_frame_needs_no_wallet():
    e, run = spot_run()
    run(e("balance", wallet_balance=None, assets={"ADA": {"free": "10", "locked": "1"}}))
    assert run.state().e_assets == [AssetBalance("ADA", "10", "1")]
    assert "WALLET_BALANCE_INVALID" not in run.codes()
    assert run.state().e_wallet is None


def test_b1_balances_fill_the_avro_snapshot():
    e, run = spot_run()
    run.marks[XBT] = D("120")
    run(deposit(e, "USD", 1000), fill(e, "BUY", 2, 100), e("cash_flow", asset="DOGE",
                                                             amount="5", flow="reward"))
    snap_out = [o for o in run.outputs if o.kind == "snapshot"][-1]
    back = avro_roundtrip(load_schemas(), snap_out)
    assert {b["asset"]: b["value"] for b in back["balances"]} == {
        "DOGE": 0, "USD": 800, "XBT": 240}
    assert [b["unvalued"] for b in back["balances"]] == [True, False, False]


def test_b1_state_codec_keeps_the_spot_book():
    e, run = spot_run(LedgerConfig(cost_basis="fifo"))
    run(deposit(e, "USD", 1000), fill(e, "BUY", 1, 100), fill(e, "BUY", 1, 120),
        e("balance", wallet_balance=None, assets={"XBT": {"free": "5"}}))
    restored = decode_state(encode_state(run.state()))
    assert encode_state(restored) == encode_state(run.state())
    run.states["acc-1"] = restored
    run(fill(e, "SELL", 1, 130))
    assert run.of("trade")[-1]["pnl_leg"] == 30  # the oldest lot survived the restore
    assert summary(run)["drift"]["active"]


# B2 -------------------------------------------------------------------------------


def test_b2_weighted_average_cost_and_sell_realized():
    e, run = spot_run()
    run(deposit(e, "USD", 10000), fill(e, "BUY", 1, 100), fill(e, "BUY", 3, 104))
    assert balances(run)["XBT"]["avg_cost"] == 103
    run(fill(e, "SELL", 2, 110))
    assert run.of("trade")[-1]["pnl_leg"] == 2 * (110 - 103)
    assert balances(run)["XBT"]["avg_cost"] == 103  # selling keeps the average


def test_b2_realized_is_net_of_the_trades_fees_in_base_currency():
    e, run = spot_run()
    run(deposit(e, "USD", 1000), fill(e, "BUY", 1, 100, fee="1", fee_asset="USD"),
        fill(e, "SELL", 1, 120, fee="2", fee_asset="USD"))
    t = summary(run)["trades"][-1]
    assert (t["realized_pnl"], t["fees"], t["net_pnl"]) == ("20", "2", "18")
    snap = run.last_snapshot()
    assert snap["realized_pnl"] - snap["fees"] == 17  # both trades' fees counted once


def test_b2_fifo_consumes_the_oldest_lots_first():
    e, run = spot_run(LedgerConfig(cost_basis="fifo"))
    run(deposit(e, "USD", 1000), fill(e, "BUY", 1, 100), fill(e, "BUY", 2, 120),
        fill(e, "SELL", "1.5", 130))
    # 1 @ 100 and 0.5 @ 120 leave: (130-100)*1 + (130-120)*0.5
    assert run.of("trade")[-1]["pnl_leg"] == 35
    assert balances(run)["XBT"]["avg_cost"] == 120


def test_b2_fifo_and_wac_differ_and_agree_on_totals():
    results = {}
    for basis in ("wac", "fifo"):
        e, run = spot_run(LedgerConfig(cost_basis=basis))
        run.marks[XBT] = D("150")
        run(deposit(e, "USD", 1000), fill(e, "BUY", 1, 100), fill(e, "BUY", 1, 140),
            fill(e, "SELL", 1, 150))
        snap = run.last_snapshot()
        results[basis] = (snap["realized_pnl"], snap["unrealized_pnl"], snap["equity"])
    assert results["wac"][0] == 30 and results["fifo"][0] == 50
    assert results["wac"][2] == results["fifo"][2] == 1060
    assert sum(results["wac"][:2]) == sum(results["fifo"][:2])


def test_b2_cost_basis_config_is_validated():
    with pytest.raises(ConfigError, match="cost_basis"):
        LedgerConfig(cost_basis="lifo")
    cfg = config_from_mapping({"cost_basis": "fifo", "valuation_pairs": {"ADA": "ADA/USDM"},
                               "drift_tolerance": "2", "track_manual_trades": False,
                               "base_currency": "EUR", "spot_venues": ["kraken"]})
    assert (cfg.cost_basis, cfg.drift_tolerance, cfg.spot_venues) == ("fifo", 2, ("kraken",))
    assert cfg.valuation_symbol("ADA") == "ADA/USDM" and cfg.valuation_symbol("XBT") == "XBT/EUR"


# B3 -------------------------------------------------------------------------------


def test_b3_fee_in_base_asset_reduces_it_at_its_average():
    e, run = spot_run()
    run(deposit(e, "USD", 1000), fill(e, "BUY", 2, 100, fee="0.01", fee_asset="XBT"))
    bal = balances(run)
    assert bal["XBT"]["total"] == D("1.99") and bal["XBT"]["avg_cost"] == 100
    trade = run.of("trade")[-1]
    assert trade["fee_leg"] == 1  # 0.01 XBT at the trade's price (no mark yet)
    assert run.last_snapshot()["fees"] == 1


def test_b3_fee_in_quote_asset_reduces_the_quote_balance():
    e, run = spot_run()
    run(deposit(e, "USD", 1000), fill(e, "BUY", 2, 100, fee="0.4"))  # fee_asset = quote
    assert balances(run)["USD"]["total"] == D("799.6")
    assert run.of("trade")[-1]["fee_leg"] == D("0.4")


def test_b3_fee_in_a_third_asset_is_valued_at_its_mark_and_booked_once():
    e, run = spot_run()
    run.marks["BNB/USD"] = D("300")
    run(deposit(e, "USD", 1000), deposit(e, "BNB", 1))
    run.marks["BNB/USD"] = D("310")
    run(fill(e, "BUY", 2, 100, fee="0.01", fee_asset="BNB"))
    bal = balances(run)
    assert bal["BNB"]["total"] == D("0.99") and bal["BNB"]["avg_cost"] == 300  # unmoved
    assert bal["XBT"]["avg_cost"] == 100  # the fee never enters the bought asset's average
    t = run.of("trade")[-1]
    assert t["fee_leg"] == D("3.1")
    # paying 0.01 BNB bought at 300 when worth 310 realizes the 0.10 difference
    assert t["pnl_leg"] == D("0.1") and run.last_snapshot()["fees"] == D("3.1")


def test_b3_fee_without_any_price_is_reported():
    e, run = spot_run()
    run(deposit(e, "USD", 1000), deposit(e, "KFEE", 10),
        fill(e, "BUY", 1, 100, fee="1", fee_asset="KFEE"))
    assert "FEE_UNVALUED" in run.codes()
    assert balances(run)["KFEE"]["total"] == 9


def test_b3_rebate_adds_to_the_fee_asset():
    e, run = spot_run()
    run(deposit(e, "USD", 1000), fill(e, "BUY", 1, 100, fee="-0.5", fee_asset="USD"))
    assert balances(run)["USD"]["total"] == D("900.5")
    assert run.last_snapshot()["fees"] == D("-0.5")


# B4 -------------------------------------------------------------------------------


def test_b4_assets_are_valued_through_their_pair_and_base_values_at_1():
    e, run = spot_run()
    run.marks[XBT] = D("150")
    run(deposit(e, "USD", 1000), fill(e, "BUY", 2, 100))
    bal = balances(run)
    assert (bal["USD"]["value"], bal["XBT"]["value"]) == (800, 300)
    snap = run.last_snapshot()
    assert snap["equity"] == 1100 and snap["unrealized_pnl"] == 100  # (150-100) x 2


def test_b4_valuation_pair_override_and_another_base_currency():
    cfg = LedgerConfig(base_currency="EUR", valuation_pairs={"ADA": "ADA-EUR-INDEX"})
    e, run = spot_run(cfg)
    run.marks["ADA-EUR-INDEX"] = D("0.5")
    run.marks["ADA/EUR"] = D("9")  # not the configured pair: never read
    run(deposit(e, "EUR", 100), fill(e, "BUY", 10, "0.4", "ADA/EUR"))
    bal = balances(run)
    assert bal["ADA"]["value"] == 5 and bal["EUR"]["value"] == 96
    assert summary(run)["base_currency"] == "EUR"


def test_b4_asset_without_price_is_listed_unvalued_with_value_zero():
    e, run = spot_run()
    run(deposit(e, "USD", 100), deposit(e, "NOPE", 7, "reward"))
    bal = summary(run)["balances"]
    assert bal["NOPE"] == {"free": "7", "locked": "0", "total": "7", "avg_cost": "0",
                           "value": "0", "unvalued": True, "unrealized_pnl": "0"}
    assert bal["USD"]["unvalued"] is False


def test_b4_unrealized_is_mark_minus_average_times_held():
    e, run = spot_run()
    run(deposit(e, "USD", 1000), fill(e, "BUY", 1, 100), fill(e, "BUY", 2, 103))
    run.marks[XBT] = D("101.5")
    run(e("anchor", capital="0"))
    xbt = summary(run)["balances"]["XBT"]
    assert D(xbt["unrealized_pnl"]) == (D("101.5") - 102) * 3
    pos = [p for p in summary(run)["positions"] if p["market"] == "spot"]
    assert pos[0]["symbol"] == XBT and pos[0]["unrealized_pnl"] == xbt["unrealized_pnl"]


# B5 -------------------------------------------------------------------------------


def test_b5_crypto_deposit_enters_at_its_mark_as_cost_basis():
    e, run = spot_run()
    run.marks[XBT] = D("90")
    run(deposit(e, "XBT", "0.5"))
    run.marks[XBT] = D("100")
    run(fill(e, "SELL", "0.5", 100))
    snap = run.last_snapshot()
    assert snap["cash_flows"] == 45 and snap["realized_pnl"] == 5
    assert snap["k_capital"] == 50 and snap["equity"] == 50


def test_b5_cash_flows_never_touch_realized_and_withdrawals_leave_at_cost():
    e, run = spot_run()
    run.marks[XBT] = D("100")
    run(deposit(e, "USD", 500), fill(e, "BUY", 2, 100))
    run.marks[XBT] = D("130")
    run(deposit(e, "XBT", "-1", "withdrawal"), deposit(e, "USD", "-50", "withdrawal"),
        deposit(e, "USD", "3", "reward"), deposit(e, "XBT", "0.1", "adjustment"))
    snap = run.last_snapshot()
    assert snap["realized_pnl"] == 0
    assert snap["cash_flows"] == 500 - 100 - 50 + 3 + 13
    assert balances(run)["XBT"]["total"] == D("1.1")


def test_b5_a_futures_account_keeps_raw_cash_flows_and_no_balances():
    e = Events()  # venue "test": not a spot venue
    run = Run()
    run(e("cash_flow", asset="USDT", amount="50", flow="deposit"))
    snap = run.last_snapshot()
    assert snap["cash_flows"] == 50 and snap["balances"] == []


def test_b5_an_account_turns_spot_at_its_first_spot_fill_or_asset_frame():
    e = Events(venue="binance")
    run = Run()
    run(fill(e, "BUY", 1, 100), deposit(e, "XBT", 1))
    assert run.state().book.spot and balances(run)["XBT"]["total"] == 2
    e2 = Events("acc-2", venue="binance")
    run(e2("balance", wallet_balance=None, assets={"ETH": {"free": "1"}}))
    assert run.states["acc-2"].book.spot
    cfg = LedgerConfig(spot_venues=("custom",))
    e3 = Events("acc-3", venue="custom")
    run3 = Run(cfg)
    run3(deposit(e3, "USD", 10))
    assert [b["asset"] for b in run3.last_snapshot()["balances"]] == ["USD"]


# B6 -------------------------------------------------------------------------------

ASSETS = ("USD", "XBT", "ETH", "BNB")
PAIRS = ("XBT/USD", "ETH/USD", "ETH/XBT")
MARKS = ("XBT/USD", "ETH/USD", "BNB/USD")
small = st.sampled_from(["0.1", "0.5", "1", "2.5", "0.333"])
px = st.sampled_from(["1", "90", "100.5", "0.07", "2000"])
b6_step = st.one_of(
    st.tuples(st.just("fill"), st.sampled_from(PAIRS), st.sampled_from(["BUY", "SELL"]), small,
              px, st.sampled_from(["0", "0.01", "0.3", "-0.02"]),
              st.sampled_from(["base", "quote", "BNB"]), st.sampled_from(["", "grid"])),
    st.tuples(st.just("cash"), st.sampled_from(ASSETS),
              st.sampled_from(["500", "3", "0.2", "-0.5", "-2", "-100"]),
              st.sampled_from(["deposit", "withdrawal", "reward", "adjustment"])),
    st.tuples(st.just("mark"), st.sampled_from(MARKS), px),
    st.tuples(st.just("balance"), st.sampled_from(ASSETS), small),
    st.tuples(st.just("again"), st.integers(0, 40)),
)


def b6_events(steps: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    e = Events("s1", venue="kraken")
    out: list[dict[str, Any]] = []
    for s in steps:
        if s[0] == "fill":
            base, quote = s[1].split("/")
            fee_asset = {"base": base, "quote": quote}.get(s[6], s[6])
            out.append(fill(e, s[2], s[3], s[4], s[1], fee=s[5], fee_asset=fee_asset,
                            strategy_tag=s[7]))
        elif s[0] == "cash":
            # The sign follows the flow (issue 13: a negative deposit is invalid input):
            # deposits and rewards come in, withdrawals go out, adjustments either way.
            amount = s[2].lstrip("-")
            if s[3] == "withdrawal" or (s[3] == "adjustment" and s[2].startswith("-")):
                amount = "-" + amount
            out.append(deposit(e, s[1], amount, s[3]))
        elif s[0] == "mark":
            out.append(mark(s[1], s[2]))
        elif s[0] == "balance":
            out.append(e("balance", wallet_balance=None,
                         assets={s[1]: {"free": s[2], "locked": "0"}}))
        elif out:
            out.append(out[s[1] % len(out)])
    return out


def applied(steps: list[tuple[Any, ...]], cfg: LedgerConfig) -> Iterator[FoldResult]:
    """Fold the generated stream of ``steps`` (marks into the marks); each applied event's result."""
    marks: dict[str, Decimal] = {}
    state = None
    for d in b6_events(steps):
        ev = parse_event(d)
        if isinstance(ev, Mark):
            marks[ev.symbol] = ev.price
            continue
        res = apply_event(state, ev, marks, cfg)
        state = res.state
        if res.status == "applied":
            yield res


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(b6_step, min_size=1, max_size=25), st.sampled_from(["wac", "fifo"]))
def test_b6_equity_identity_holds_exactly_at_every_event(steps, basis):
    prev = (D(0), D(0), D(0), D(0), D(0))  # equity, realized, fees, unrealized, cash flows
    for res in applied(steps, LedgerConfig(cost_basis=basis)):
        snap = [o.record for o in res.outputs if o.kind == "snapshot"][0]
        now = (snap["equity"], snap["realized_pnl"], snap["fees"], snap["unrealized_pnl"],
               snap["cash_flows"])
        # B6: delta equity = realized (net of fees) + delta unrealized + net cash flows
        assert now[0] - prev[0] == (now[1] - prev[1]) - (now[2] - prev[2]) + \
            (now[3] - prev[3]) + (now[4] - prev[4])
        assert snap["equity"] == sum((b["value"] for b in snap["balances"]), D(0))
        assert all(b["total"] >= 0 and b["free"] + b["locked"] == b["total"]
                   for b in snap["balances"])
        assert snap["k_capital"] == snap["equity"] - snap["unrealized_pnl"]
        prev = now


# B7 -------------------------------------------------------------------------------


def test_b7_untagged_fills_are_manual():
    e, run = spot_run()
    run(deposit(e, "USD", 1000), fill(e, "BUY", 1, 100), fill(e, "BUY", 1, 100,
                                                               strategy_tag="grid"))
    assert [t["strategy_tag"] for t in run.of("trade")] == ["manual", "grid"]


def test_b7_summaries_exclude_manual_when_not_tracked_unless_asked():
    cfg = LedgerConfig(track_manual_trades=False)
    e, run = spot_run(cfg)
    run(deposit(e, "USD", 1000), fill(e, "BUY", 2, 100), fill(e, "SELL", 1, 110),
        fill(e, "SELL", 1, 120, strategy_tag="grid"))
    s = summary(run)
    assert [t["strategy_tag"] for t in s["trades"]] == ["grid"]
    assert set(s["pnl_by_strategy"]) == {"grid"}
    assert s["pnl_by_strategy"]["grid"]["realized_pnl"] == "20"
    assert s["balances"]["XBT"]["total"] == "0"  # balances include every trade
    full = summary(run, include_manual=True)
    assert len(full["trades"]) == 3 and full["pnl_by_strategy"]["manual"]["realized_pnl"] == "10"
    assert len(account_summary(run.state(), run.marks, replace(cfg, track_manual_trades=True))
               ["trades"]) == 3


# B8 -------------------------------------------------------------------------------


def test_b8_drift_is_raised_with_per_asset_details_until_it_clears():
    e, run = spot_run(LedgerConfig(drift_tolerance=D("1")))
    run.marks[XBT] = D("100")
    run(deposit(e, "USD", 1000), fill(e, "BUY", 2, 100))
    new = run(e("balance", wallet_balance=None,
                assets={"USD": {"free": "800"}, "XBT": {"free": "1.5", "locked": "0.4"}}))
    drift = [o.record for o in new if o.kind == "anomaly"]
    assert [a["code"] for a in drift] == ["DRIFT"]
    assert "XBT: derived 2 exchange 1.9 delta 0.1 worth 10" in drift[0]["detail"]
    assert "USD: derived" not in drift[0]["detail"]
    s = summary(run)
    assert s["drift"] == {"active": True, "assets": {"XBT": {
        "derived": "2", "exchange": "1.9", "delta": "0.1", "value": "10.0"}}}
    new = run(e("balance", wallet_balance=None,
                assets={"USD": {"free": "800"}, "XBT": {"free": "1.5"}}))
    assert [o.record["code"] for o in new if o.kind == "anomaly"] == ["DRIFT"]  # still there
    new = run(e("balance", wallet_balance=None,
                assets={"USD": {"free": "800.5"}, "XBT": {"free": "2"}}))
    assert [o.record["code"] for o in new if o.kind == "anomaly"] == ["DRIFT_CLEARED"]
    assert summary(run)["drift"] == {"active": False, "assets": {}}


def test_b8_difference_within_tolerance_or_missing_asset_reported():
    e, run = spot_run()
    run(deposit(e, "USD", 100), deposit(e, "NOPE", 1))
    new = run(e("balance", wallet_balance=None, assets={"USD": {"free": "100.005"}}))
    anomalies = [o.record for o in new if o.kind == "anomaly"]
    # USD within 0.01; NOPE missing from the frame and unvalued: drift of unknown worth
    assert len(anomalies) == 1 and "NOPE: derived 1 exchange 0" in anomalies[0]["detail"]
    assert "worth unvalued" in anomalies[0]["detail"]


# oversell ---------------------------------------------------------------------------


def test_oversell_names_the_missing_quantity_and_the_ledger_stays_usable():
    e, run = spot_run()
    run.marks[XBT] = D("100")
    run(deposit(e, "USD", 1000), fill(e, "BUY", 1, 100))
    new = run(fill(e, "SELL", "1.5", 100))
    oversell = [o.record for o in new if o.kind == "anomaly"]
    assert [a["code"] for a in oversell] == ["OVERSELL"]
    assert "missing 0.5 XBT" in oversell[0]["detail"]
    bal = balances(run)
    assert bal["XBT"]["total"] == 0 and bal["USD"]["total"] == 1050
    snap = run.last_snapshot()
    assert snap["realized_pnl"] == 0 and snap["cash_flows"] == 1050  # adjustment, not PnL
    run(fill(e, "BUY", 1, 90), fill(e, "SELL", 1, 95))
    assert run.of("trade")[-1]["pnl_leg"] == 5


def test_oversell_of_the_quote_and_of_a_withdrawal():
    e, run = spot_run()
    run(fill(e, "BUY", 1, 100), deposit(e, "XBT", "-2", "withdrawal"))
    assert run.codes() == ["OVERSELL", "OVERSELL"]
    assert all(b["total"] >= 0 for b in run.last_snapshot()["balances"])


# fold file ---------------------------------------------------------------------------


def test_example_spot_kraken_fold_document():
    doc = fold_lines((EXAMPLES / "spot_kraken.jsonl").read_text().splitlines(),
                     LedgerConfig())
    acc = doc["accounts"]["kraken-spot-1"]
    assert doc["rejected"] == []
    assert acc["balances"]["XBT"] == {
        "free": "0.49", "locked": "0.5", "total": "0.99", "avg_cost": "100",
        "value": "118.80", "unvalued": False, "unrealized_pnl": "19.80"}
    assert acc["balances"]["USD"]["total"] == "919.5"
    assert acc["equity"] == "1038.30" and acc["cash_flows"] == "1000"
    assert [p["market"] for p in acc["positions"]] == ["spot"]
    assert [(t["side"], t["strategy_tag"]) for t in acc["trades"]] == [
        ("BUY", "grid"), ("SELL", "manual")]
    assert acc["drift"]["active"] is False
    assert [a["code"] for a in acc["anomalies"]] == []


# edges of the spot path ----------------------------------------------------------------


def test_spot_fill_without_price_or_pair_books_nothing_and_says_so():
    e, run = spot_run()
    # issue 13: XBTUSD is a pair now; a symbol with no separator and no known quote is not
    run(deposit(e, "USD", 100), fill(e, "BUY", 1, 0), fill(e, "BUY", 1, 10, "XBTFOO"))
    assert run.codes() == ["SPOT_NO_PRICE", "UNSUPPORTED_SYMBOL"]
    assert "no known quote asset (USDT, USDC, USD" in run.of("anomaly")[-1]["detail"]
    assert [b["asset"] for b in run.last_snapshot()["balances"]] == ["USD"]
    assert run.of("trade") == []


def test_spot_fill_delivered_twice_is_booked_once():
    e, run = spot_run()
    buy = fill(e, "BUY", 1, 100)
    run(deposit(e, "USD", 1000), buy, buy)
    assert run.statuses == ["applied", "applied", "duplicate"]
    assert balances(run)["USD"]["total"] == 900


def test_state_written_before_the_spot_book_still_decodes():
    e, run = spot_run()
    run(deposit(e, "USD", 10))
    raw = encode_state(run.state())
    head_end = raw.index(b"\n", 5)
    import json

    header = json.loads(raw[5:head_end])
    # a version 1 header (no position here: its lines read the same in both versions)
    old = raw[:5] + json.dumps([1, *header[1:25]], separators=(",", ":")).encode() + raw[head_end:]
    restored = decode_state(old)
    assert not restored.book.spot and restored.book.assets == {}
    assert restored.event_seq == run.state().event_seq


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(b6_step, min_size=2, max_size=20), st.integers(0, 19),
       st.sampled_from(["wac", "fifo"]))
def test_spot_save_restore_at_any_cut_equals_uninterrupted(steps, cut, basis):
    cfg = LedgerConfig(cost_basis=basis)
    dicts = b6_events(steps)

    def fold(restore_at: int | None) -> tuple[bytes, list[Any]]:
        marks: dict[str, Decimal] = {}
        state = None
        outs: list[Any] = []
        for i, d in enumerate(dicts):
            if i == restore_at and state is not None:
                state = decode_state(encode_state(state))
            ev = parse_event(d)
            if isinstance(ev, Mark):
                marks[ev.symbol] = ev.price
                continue
            res = apply_event(state, ev, marks, cfg)
            state = res.state
            outs.extend(res.outputs)
        return (b"" if state is None else encode_state(state)), outs

    assert fold(cut % max(len(dicts), 1)) == fold(None)


def test_b6_generated_streams_are_not_trivial():
    """The B6 strategy reaches fills with fees in base, quote and a third asset, unvalued
    assets, oversells and drift (checked on a fixed sample, not by chance)."""
    steps = [("cash", "USD", "500", "deposit"), ("mark", "XBT/USD", "90"),
             ("fill", "XBT/USD", "BUY", "2.5", "90", "0.01", "base", ""),
             ("fill", "ETH/XBT", "BUY", "1", "0.07", "0.3", "BNB", "grid"),
             ("fill", "ETH/XBT", "SELL", "0.5", "0.07", "0.01", "quote", ""),
             ("fill", "ETH/USD", "SELL", "2", "2000", "0", "base", ""),
             ("balance", "XBT", "1"), ("again", 3)]
    run = Run()
    for d in b6_events(steps):  # type: ignore[arg-type]
        run(d)
    codes = run.codes()
    assert {"OVERSELL", "FEE_UNVALUED", "DRIFT"} <= set(codes)
    assert {b["asset"] for b in run.last_snapshot()["balances"]} == {"USD", "XBT", "ETH", "BNB"}
    assert any(b["unvalued"] for b in run.last_snapshot()["balances"])
    assert run.statuses[-1] == "duplicate"


# gateways into the fold ---------------------------------------------------------------


def _gateway_events(venue: str, raws: list[object]) -> list[dict[str, Any]]:
    from streams.gateways import OrderMemory, Rejection, normalize_payload

    memory = OrderMemory()
    out: list[dict[str, Any]] = []
    for raw in raws:
        result = normalize_payload(venue, raw, memory, "acct-1")
        assert not isinstance(result, Rejection), result
        out.extend(result)
    return sorted(out, key=lambda d: d["ts"])


def test_kraken_gateway_events_fold_into_balances_with_the_identity_held():
    fixtures = Path(__file__).resolve().parents[2] / "fixtures" / "venues" / "kraken"
    evs = _gateway_events("kraken", [(fixtures / "ledgers.json").read_text(),
                                     (fixtures / "trades_history.json").read_text()])
    run = Run()
    run.marks.update({"XBT/USD": D("83000"), "ETH/USD": D("1900"), "EUR/USD": D("1.08")})
    run(*evs)
    snaps = run.of("snapshot")
    assert len(snaps) == len(evs)
    for before, after in zip(snaps, snaps[1:], strict=False):
        assert after["equity"] - before["equity"] == (
            after["realized_pnl"] - before["realized_pnl"]) - (after["fees"] - before["fees"]) \
            + (after["unrealized_pnl"] - before["unrealized_pnl"]) \
            + (after["cash_flows"] - before["cash_flows"])
    bal = balances(run)
    assert {"USD", "XBT", "DOT"} <= set(bal)
    assert bal["DOT"]["unvalued"] is True and bal["USD"]["value"] == bal["USD"]["total"]
    tags = {t["strategy_tag"] for t in run.of("trade")}
    assert "manual" in tags and "20250301" in tags


def test_deltadefi_gateway_events_fold_with_usdm_as_base_currency():
    fixtures = Path(__file__).resolve().parents[2] / "fixtures" / "venues" / "deltadefi"
    lines = [x for x in (fixtures / "account_stream.jsonl").read_text().splitlines() if x]
    run = Run(LedgerConfig(base_currency="USDM"))
    run.marks["ADA/USDM"] = D("0.74")
    run(deposit(Events("acct-1", venue="deltadefi"), "USDM", "2000"))
    run(*_gateway_events("deltadefi", lines))
    bal = balances(run)
    # fees in ADA (base) left the average where the two buys put it
    assert bal["ADA"]["avg_cost"] == D("0.724600360216129678")
    assert bal["ADA"]["total"] == D("1098.5") and bal["ADA"]["value"] == D("812.890")
    assert bal["USDM"]["avg_cost"] == 1 and bal["USDM"]["unvalued"] is False
    sell = run.of("trade")[-1]
    assert sell["fee_leg"] == D("0.29564")  # fee in USDM, the quote and base currency
    assert sell["pnl_leg"] == q18(400 * (D("0.7391") - D("1086.2484") / D("1499.1")))
    assert "OVERSELL" not in run.codes()


def test_b7_fold_main_include_manual_flag(tmp_path, capsys):
    import json

    from streams.foldfile import fold_main

    cfg = tmp_path / "ledger.json"
    cfg.write_text('{"track_manual_trades": false}')
    src = str(EXAMPLES / "spot_kraken.jsonl")
    assert fold_main([src, "--config", str(cfg)]) == 0
    trades = json.loads(capsys.readouterr().out)["accounts"]["kraken-spot-1"]["trades"]
    assert [t["strategy_tag"] for t in trades] == ["grid"]
    assert fold_main([src, "--config", str(cfg), "--include-manual"]) == 0
    trades = json.loads(capsys.readouterr().out)["accounts"]["kraken-spot-1"]["trades"]
    assert [t["strategy_tag"] for t in trades] == ["grid", "manual"]
