"""LEDGER part A, one group of tests per rule (A1-A13)."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal

import pytest

from streams.ledger import LedgerConfig, account_summary, decode_state, encode_state

from ._helpers import Events, Run

D = Decimal
SYM = "BTC-USDT"


def exits(run: Run) -> list[dict]:
    return [t for t in run.of("trade") if t["action"] in ("reduce", "close", "flip")]


# A1 -------------------------------------------------------------------------------


def test_a1_hedge_mode_long_and_short_are_separate_positions():
    e = Events()
    run = Run()
    run(e.fill("BUY", 2, 100, SYM, position_side="LONG"),
        e.fill("SELL", 3, 101, SYM, position_side="SHORT"),
        e.fill("BUY", 1, 102, SYM))
    positions = {(p["symbol"], p["position_side"]): p["qty"]
                 for p in run.last_snapshot()["positions"]}
    assert positions == {(SYM, "LONG"): 2, (SYM, "SHORT"): -3, (SYM, "BOTH"): 1}
    assert len({t["trade_id"] for t in run.of("trade")}) == 3


def test_a1_quantity_is_the_exchange_quantity():
    e = Events()
    run = Run()
    run(e.fill("SELL", "195259.5", "0.1878", "FET-USDT"))
    assert run.last_snapshot()["positions"][0]["qty"] == D("-195259.5")


# A2 -------------------------------------------------------------------------------


@pytest.mark.parametrize(("entry_side", "exit_side", "sign"), [("BUY", "SELL", 1),
                                                                ("SELL", "BUY", -1)])
def test_a2_realized_is_side_signed_closed_qty_times_price_move(entry_side, exit_side, sign):
    e = Events()
    run = Run()
    run(e.fill(entry_side, 10, "100.5", SYM), e.fill(exit_side, 4, "103.25", SYM))
    assert exits(run)[0]["pnl_leg"] == sign * 4 * (D("103.25") - D("100.5"))


def test_a2_leverage_is_a_margin_fact_only():
    results = []
    for lev in ("1", "20"):
        e = Events()
        run = Run()
        run.marks[SYM] = D("110")
        run(e.fill("BUY", 2, 100, SYM, leverage=lev), e.fill("SELL", 1, 105, SYM, leverage=lev))
        results.append(run.last_snapshot())
    lo, hi = results
    assert lo["realized_pnl"] == hi["realized_pnl"] == 5
    assert lo["unrealized_pnl"] == hi["unrealized_pnl"] == 10
    assert lo["k_used_margin"] == 100 and hi["k_used_margin"] == 5  # notional / leverage


# A3 -------------------------------------------------------------------------------


def test_a3_entry_basis_is_vwap_and_reducing_keeps_it():
    e = Events()
    run = Run()
    run(e.fill("BUY", 1, 100, SYM), e.fill("BUY", 3, 104, SYM))
    assert run.last_snapshot()["positions"][0]["avg_entry_price"] == 103
    run(e.fill("SELL", 2, 110, SYM))
    pos = run.last_snapshot()["positions"][0]
    assert pos["avg_entry_price"] == 103 and pos["qty"] == 2
    assert exits(run)[0]["pnl_leg"] == 2 * 7


def test_a3_flip_closes_whole_position_and_opens_remainder_as_new_trade():
    e = Events()
    run = Run()
    run(e.fill("BUY", 2, 100, SYM, fee="0.2"), e.fill("SELL", 5, 110, SYM, fee="0.5"))
    trades = run.of("trade")
    closing, opening = trades[-2], trades[-1]
    assert closing["action"] == "flip" and closing["qty"] == 2 and closing["pnl_leg"] == 20
    assert closing["side"] == "LONG" and closing["position_qty"] == 0
    assert opening["action"] == "open" and opening["side"] == "SHORT"
    assert opening["qty"] == 3 and opening["price"] == 110 and "flip" in opening["flags"]
    assert opening["trade_id"] != closing["trade_id"]
    # fee split pro rata by quantity, parts summing exactly to the fee
    assert closing["fee_leg"] == D("0.2") and opening["fee_leg"] == D("0.3")
    assert closing["fee_leg"] + opening["fee_leg"] == D("0.5")
    pos = run.last_snapshot()["positions"][0]
    assert pos["qty"] == -3 and pos["avg_entry_price"] == 110
    assert pos["realized_pnl"] == 0 and pos["fees"] == D("0.3")  # new lifecycle


def test_a3_flip_fee_split_is_exact_when_not_divisible():
    e = Events()
    run = Run()
    run(e.fill("BUY", 1, 100, SYM), e.fill("SELL", 3, 100, SYM, fee="1"))
    closing, opening = run.of("trade")[-2:]
    assert closing["fee_leg"] + opening["fee_leg"] == 1
    assert closing["fee_leg"] == D("0.333333333333333333")


# A4 -------------------------------------------------------------------------------


def test_a4_exit_without_price_books_zero_and_is_flagged():
    e = Events()
    run = Run()
    run.marks[SYM] = D("150")
    run(e.fill("BUY", 2, 100, SYM), e.fill("SELL", 1, 0, SYM))
    leg = exits(run)[0]
    assert leg["pnl_leg"] == 0 and leg["flags"] == ["realized_skipped_no_price"]
    snap = run.last_snapshot()
    assert snap["realized_pnl"] == 0 and snap["positions"][0]["qty"] == 1


def test_a4_entry_without_price_never_takes_the_mark_as_basis():
    e = Events()
    run = Run()
    run.marks[SYM] = D("150")
    run(e.fill("BUY", 2, 0, SYM))
    pos = run.last_snapshot()["positions"][0]
    assert pos["entry_basis_missing"] is True
    assert pos["avg_entry_price"] == 0 and pos["unrealized_pnl"] == 0
    assert run.last_snapshot()["unrealized_pnl"] == 0
    assert "entry_basis_missing" in run.of("trade")[0]["flags"]
    # an exit while the basis is unknown books nothing either
    run(e.fill("SELL", 1, 160, SYM))
    assert exits(run)[0]["pnl_leg"] == 0
    assert exits(run)[0]["flags"] == ["realized_skipped_no_basis"]


def test_a4_priced_fill_gives_the_basis_back():
    e = Events()
    run = Run()
    run.marks[SYM] = D("150")
    run(e.fill("BUY", 2, 0, SYM), e.fill("BUY", 1, 120, SYM))
    pos = run.last_snapshot()["positions"][0]
    assert pos["entry_basis_missing"] is False and pos["avg_entry_price"] == 120
    assert pos["unrealized_pnl"] == 3 * 30


# A5 -------------------------------------------------------------------------------


def test_a5_fees_are_costs_rebates_are_negative_and_opening_fees_count():
    e = Events()
    run = Run()
    run(e("anchor", capital="1000"),
        e.fill("BUY", 1, 100, SYM, fee="0.4"),
        e.fill("SELL", 1, 100, SYM, fee="-0.1"))
    snap = run.last_snapshot()
    assert snap["fees"] == D("0.3")
    assert snap["capital"] == D("999.7") and snap["k_capital"] == D("999.7")
    summary = account_summary(run.state(), {}, run.config)
    trade = summary["trades"][0]
    assert trade["fees"] == "0.3" and trade["net_pnl"] == "-0.3"
    assert summary["positions"][0]["fees"] == "0.3"
    assert run.of("trade")[0]["fee_leg"] == D("0.4")


# A6 -------------------------------------------------------------------------------


def test_a6_funding_paid_reduces_and_received_increases_capital():
    e = Events()
    run = Run()
    run(e("anchor", capital="1000"), e.fill("BUY", 1, 100, SYM),
        e("funding", symbol=SYM, amount="2.5"))
    assert run.last_snapshot()["capital"] == D("997.5")
    run(e("funding", symbol=SYM, amount="-1"))
    snap = run.last_snapshot()
    assert snap["capital"] == D("998.5") and snap["funding"] == D("1.5")
    assert snap["positions"][0]["funding"] == D("1.5")
    assert snap["realized_pnl"] == 0  # funding is not trading PnL


def test_a6_funding_without_position_is_booked_and_reported():
    e = Events()
    run = Run()
    run(e("anchor", capital="100"), e("funding", symbol=SYM, amount="1"))
    assert run.last_snapshot()["capital"] == 99
    assert run.codes() == ["FUNDING_WITHOUT_POSITION"]


# A7 -------------------------------------------------------------------------------


def test_a7_settlement_repairs_a_flagged_leg_as_exchange():
    e = Events()
    run = Run()
    fills = [e.fill("BUY", 2, 100, SYM), e.fill("SELL", 2, 0, SYM)]
    run(*fills, e("fill_settled", symbol=SYM, fill_event_id=fills[1]["event_id"],
                  realized_pnl="13.5"))
    snap = run.last_snapshot()
    assert snap["realized_pnl"] == D("13.5") and snap["capital"] == D("13.5")
    settle = run.of("trade")[-1]
    assert settle["pnl_source"] == "exchange" and settle["exchange_realized_pnl"] == D("13.5")


def test_a7_settlement_of_a_priced_leg_keeps_the_estimate_and_flags_a_mismatch():
    e = Events()
    run = Run(LedgerConfig(settle_tolerance=D("0.5")))
    fills = [e.fill("BUY", 2, 100, SYM, venue_order_id="o1"),
             e.fill("SELL", 2, 105, SYM, venue_order_id="o2")]
    run(*fills, e("fill_settled", symbol=SYM, venue_order_id="o2", realized_pnl="10.4"))
    assert run.codes() == []  # within tolerance
    run(*[e.fill("BUY", 1, 100, SYM, venue_order_id="o3"),
          e.fill("SELL", 1, 101, SYM, venue_order_id="o4"),
          e("fill_settled", symbol=SYM, venue_order_id="o4", realized_pnl="3")])
    assert run.codes() == ["SETTLE_MISMATCH"]
    assert run.last_snapshot()["realized_pnl"] == 11  # 10 + 1: never silently re-booked
    assert run.of("trade")[-1]["exchange_realized_pnl"] == 3


def test_a7_unmatched_settlement_changes_nothing_and_is_unresolved():
    e = Events()
    run = Run()
    run(e.fill("BUY", 2, 100, SYM), e.fill("SELL", 1, 0, SYM))
    before = encode_state(run.state())
    new = run(e("fill_settled", symbol=SYM, fill_event_id="nope", realized_pnl="5"),
              e("fill_settled", symbol="ETH-USDT", venue_order_id="x", realized_pnl="5"))
    assert [o.record["code"] for o in new if o.kind == "anomaly"] == ["UNRESOLVED"] * 2
    assert not [o for o in new if o.kind == "trade"]
    st = run.state()
    assert st.k_realized == 0 and st.capital == 0
    # never "the first position": the flagged leg stays flagged
    after = decode_state(before)
    assert [leg.flags for t in after.trades() for leg in t.legs] == \
        [leg.flags for t in st.trades() for leg in t.legs]


# A8 -------------------------------------------------------------------------------


def test_a8_same_event_twice_is_a_noop_that_re_sends_nothing():
    # Its outputs were flushed before the state that applied it was stored (no outbox).
    e = Events()
    run = Run()
    f = e.fill("BUY", 1, 100, SYM)
    first = run(f)
    blob = encode_state(run.state())
    again = run(f)
    assert run.statuses == ["applied", "duplicate"]
    assert first and again == []
    assert encode_state(run.state()) == blob


def test_a8_same_offset_redelivered_is_a_duplicate():
    e = Events()
    run = Run()
    f = e.fill("BUY", 1, 100, SYM)
    first = run(f, source=(3, 41))
    again = run(f, source=(3, 41))
    older = run(e.fill("BUY", 9, 100, SYM), source=(3, 40))
    assert run.statuses == ["applied", "duplicate", "duplicate"]
    assert first and again == [] and older == []
    assert run.state().event_seq == 1


def test_a8_same_event_id_different_payload_is_a_conflict_not_a_booking():
    e = Events()
    run = Run()
    f = e.fill("BUY", 1, 100, SYM)
    run(f)
    st = run.state()
    booked = (st.event_seq, st.k_fees, st.capital, [p.qty for p in st.positions.values()])
    new = run({**f, "qty": "5"})
    assert run.statuses == ["applied", "conflict"]
    assert [(o.kind, o.record["code"]) for o in new] == [("anomaly", "EVENT_ID_CONFLICT")]
    assert new[0].record["event_seq"] == 1
    st = run.state()
    assert (st.event_seq, st.k_fees, st.capital, [p.qty for p in st.positions.values()]) == booked
    # the same fact spelled differently is a duplicate, not a conflict
    run({**f, "qty": "1.000", "ts_ingest": "2026-02-01T00:00:00Z"})
    assert run.statuses[-1] == "duplicate"


def test_a8_settle_baseline_survives_a_state_restore():
    e = Events()
    run = Run()
    fills = [e.fill("BUY", 2, 100, SYM), e.fill("SELL", 2, 0, SYM)]
    settle = e("fill_settled", symbol=SYM, fill_event_id=fills[1]["event_id"],
               realized_pnl="4")
    run(*fills, settle)
    restored = Run()
    restored.states["acc-1"] = decode_state(encode_state(run.state()))
    restored(settle)
    restored(e("fill_settled", symbol=SYM, fill_event_id=fills[1]["event_id"],
               realized_pnl="4"))
    assert restored.statuses == ["duplicate", "applied"]
    assert restored.codes() == ["ALREADY_SETTLED"]
    assert restored.state().k_realized == 4


def test_a8_dedup_window_and_closed_trades_are_bounded():
    e = Events()
    cfg = LedgerConfig(dedup_window=4, max_closed_trades=1)
    run = Run(cfg)
    evs = [e.fill("BUY" if i % 2 == 0 else "SELL", 1, 100, SYM) for i in range(10)]
    run(*evs)
    st = run.state()
    assert len(st.ring) == 4 * 16 and len(st.closed_trades) == 1
    run(evs[-1])  # inside the window: duplicate
    assert run.statuses[-1] == "duplicate"


# A9 -------------------------------------------------------------------------------


def test_a9_balance_update_sets_e_and_positions_snapshot_replaces():
    e = Events()
    run = Run()
    run(e("balance", wallet_balance="500", available_margin="400", used_margin="100",
          maint_margin="10"))
    snap = run.last_snapshot()
    assert (snap["wallet_balance"], snap["available_margin"], snap["used_margin"],
            snap["maint_margin"]) == (500, 400, 100, 10)
    run(e("positions", positions=[{"symbol": SYM, "qty": "1", "entry_price": "100"},
                                  {"symbol": "ETH-USDT", "qty": "-2", "entry_price": "10"}]))
    run(e("positions", positions=[{"symbol": SYM, "qty": "3", "entry_price": "100"}]))
    assert list(run.state().e_positions or {}) == [(SYM, "BOTH")]


@pytest.mark.parametrize("wallet", [None, "0", "-5"])
def test_a9_wallet_balance_not_a_fact_is_ignored_with_an_anomaly(wallet):
    e = Events()
    run = Run()
    run(e("anchor", capital="100"), e("balance", wallet_balance="120"))
    new = run(e("balance", wallet_balance=wallet, used_margin="50"))
    assert [o.record["code"] for o in new if o.kind == "anomaly"] == ["WALLET_BALANCE_INVALID"]
    st = run.state()
    assert st.e_wallet == 120 and st.e_used == 0 and st.capital == 120


# A10 ------------------------------------------------------------------------------


def test_a10_capital_source_seed_then_e_anchored_then_k_bridged():
    e = Events()
    run = Run()
    run(e("anchor", capital="1000"))
    assert (run.last_snapshot()["capital"], run.last_snapshot()["capital_source"]) == \
        (1000, "seed")
    run(e("balance", wallet_balance="1010"))
    assert (run.last_snapshot()["capital"], run.last_snapshot()["capital_source"]) == \
        (1010, "e_anchored")
    run(e.fill("BUY", 1, 100, SYM, fee="1"), e.fill("SELL", 1, 120, SYM, fee="1"))
    snap = run.last_snapshot()
    assert (snap["capital"], snap["capital_source"]) == (1028, "k_bridged")


def test_a10_equity_peak_and_gap_free_event_seq():
    e = Events()
    run = Run()
    run.marks[SYM] = D("90")
    f = e.fill("BUY", 1, 100, SYM)
    run(e("anchor", capital="1000"), f, f, {**f, "qty": "2"}, e("funding", symbol=SYM,
                                                                  amount="5"))
    assert run.statuses == ["applied", "applied", "duplicate", "conflict", "applied"]
    snaps = {s["event_seq"]: s for s in run.of("snapshot")}  # duplicates re-send theirs
    assert list(snaps) == [1, 2, 3]
    snaps = list(snaps.values())
    assert snaps[-1]["equity"] == snaps[-1]["capital"] - 10
    assert [s["peak_capital"] for s in snaps] == [1000, 1000, 1000]
    assert snaps[-1]["capital"] == 995


# A11 ------------------------------------------------------------------------------


def test_a11_k_capital_is_the_checksum_and_never_the_published_capital():
    e = Events()
    run = Run()
    run(e("anchor", capital="1000"), e.fill("BUY", 1, 100, SYM, fee="0.5"),
        e.fill("SELL", 1, 110, SYM, fee="0.5"), e("funding", symbol=SYM, amount="2"),
        e("cash_flow", asset="USDT", amount="50", flow="deposit"),
        e("balance", wallet_balance="1100"))
    snap = run.last_snapshot()
    assert snap["k_capital"] == 1000 + 10 - 1 - 2 + 50
    assert snap["k_capital"] == (snap["k_capital"] - snap["realized_pnl"] + snap["fees"]
                                 + snap["funding"] - snap["cash_flows"]) + 10 - 1 - 2 + 50
    assert snap["capital"] == 1100 and snap["capital_source"] == "e_anchored"


def test_a11_first_wallet_seeds_k_when_no_anchor():
    e = Events()
    run = Run()
    run(e.fill("BUY", 1, 100, SYM, fee="1"), e("balance", wallet_balance="500"))
    assert run.last_snapshot()["k_capital"] == 500
    assert run.codes() == ["K_SEEDED_FROM_WALLET"]
    off = Run(LedgerConfig(seed_k_from_first_wallet=False))
    off(e.fill("BUY", 1, 100, SYM, fee="1"), e("balance", wallet_balance="500"))
    assert off.last_snapshot()["k_capital"] == -1


# A12 ------------------------------------------------------------------------------


def _r1_status(delta: str, cfg: LedgerConfig) -> str:
    e = Events()
    run = Run(cfg)
    run(e("anchor", capital="1000"), e("balance", wallet_balance=str(1000 - D(delta))))
    return str(run.last_snapshot()["reconcile_status"])


def test_a12_r1_bounds_come_from_config():
    cfg = LedgerConfig()
    assert [_r1_status(d, cfg) for d in ("0.01", "0.02", "5", "5.01")] == \
        ["OK", "WARN", "WARN", "ERROR"]
    wide = replace(cfg, r1_epsilon=D("1"), r1_pending_fee_bound=D("100"))
    assert [_r1_status(d, wide) for d in ("0.5", "50", "101")] == ["OK", "WARN", "ERROR"]


def test_a12_r2_compares_one_trade_with_its_settlement():
    e = Events()
    cfg = LedgerConfig(r2_epsilon=D("0.01"), r2_rounding_bound=D("1"))
    run = Run(cfg)
    run(e.fill("BUY", 2, 100, SYM, venue_order_id="a"),
        e.fill("SELL", 2, 110, SYM, venue_order_id="b"),
        e("fill_settled", symbol=SYM, venue_order_id="b", realized_pnl="19.5"))
    rec = run.of("reconcile")[-1]
    assert rec["status"] == "WARN"
    assert rec["explanations"] == ["LOT_STEP_ROUNDING|BTC-USDT.realized_pnl[order b]|0.5"]
    run(e.fill("BUY", 1, 100, SYM, venue_order_id="c"),
        e.fill("SELL", 1, 110, SYM, venue_order_id="d"),
        e("fill_settled", symbol=SYM, venue_order_id="d", realized_pnl="5"))
    assert run.of("reconcile")[-1]["results"][0]["code"] == "REALIZED_MISMATCH"


def test_a12_r3_r6_positions_against_exchange():
    e = Events()
    cfg = LedgerConfig(lot_steps={SYM: D("0.001")})
    run = Run(cfg)
    run(e.fill("BUY", "1.0005", 100, SYM),
        e("positions", positions=[{"symbol": SYM, "qty": "1", "entry_price": "100"}]))
    assert run.last_snapshot()["reconcile_status"] == "OK"
    run(e("positions", positions=[{"symbol": SYM, "qty": "2", "entry_price": "100"},
                                  {"symbol": "ETH-USDT", "qty": "1", "entry_price": "1"}]))
    rec = run.of("reconcile")[-1]
    codes = sorted(r["code"] for r in rec["results"])
    assert codes == ["POSITION_COUNT_MISMATCH", "POSITION_QTY_MISMATCH",
                     "POSITION_QTY_MISMATCH"]


def test_a12_r4_mark_staleness_band():
    e = Events()
    cfg = LedgerConfig(r4_epsilon=D("0.01"), r4_staleness_band=D("0.01"))
    run = Run(cfg)
    pos = [{"symbol": SYM, "qty": "2", "entry_price": "100", "mark_price": "100"}]
    run(e.fill("BUY", 2, 100, SYM))
    statuses = []
    for k_mark in ("100", "100.5", "102"):
        run.marks[SYM] = D(k_mark)
        run(e("positions", positions=pos))
        statuses.append(run.last_snapshot()["reconcile_status"])
    assert statuses == ["OK", "WARN", "ERROR"]
    assert run.of("reconcile")[-1]["results"][0]["code"] == "MARK_MISMATCH"


def test_a12_r5_used_margin_leverage_rounding_band():
    e = Events()
    run = Run(LedgerConfig(r5_leverage_band=D("0.02")))
    run(e("anchor", capital="1000"), e.fill("BUY", 2, 100, SYM, leverage="2"))
    statuses = []
    for used in ("100", "101", "110"):
        run(e("balance", wallet_balance="1000", used_margin=used))
        statuses.append(run.last_snapshot()["reconcile_status"])
    assert statuses == ["OK", "WARN", "ERROR"]
    assert run.of("reconcile")[-1]["explanations"] == ["MARGIN_MISMATCH|used_margin|-10"]


def test_a12_reconcile_never_mutates_k_or_e_and_freezes_only_on_error():
    e = Events()
    run = Run()
    run(e("anchor", capital="1000"), e("balance", wallet_balance="500"))
    st = run.state()
    assert (st.k_capital, st.e_wallet, st.capital) == (1000, 500, 500)
    assert run.last_snapshot()["capital_frozen"] is True
    run(e("anchor", capital="500"))
    assert run.last_snapshot()["capital_frozen"] is False
    assert [r["status"] for r in run.of("reconcile")] == ["ERROR", "OK"]
    # OK -> OK emits nothing
    run(e("anchor", capital="500"))
    assert len(run.of("reconcile")) == 2


# A13 ------------------------------------------------------------------------------


def test_a13_trade_id_derives_from_account_symbol_side_and_opening_event():
    ids = []
    for account in ("a", "a", "b"):
        e = Events(account)
        run = Run()
        run(e.fill("BUY", 1, 100, SYM))
        ids.append(run.of("trade")[0]["trade_id"])
    assert ids[0] == ids[1] != ids[2]
    e = Events()
    run = Run()
    run(e.fill("BUY", 1, 100, SYM), e.fill("SELL", 1, 100, SYM), e.fill("BUY", 1, 100, SYM))
    trades = run.of("trade")
    assert trades[0]["trade_id"] == trades[1]["trade_id"] != trades[2]["trade_id"]
    assert trades[1]["event_id"] == f"{trades[1]['trade_id']}:{trades[1]['source_event_id']}:close"


def test_a13_exit_legs_carry_pnl_fee_cumulative_source_and_holding():
    e = Events()
    run = Run()
    run(e.fill("BUY", 3, 100, SYM, fee="0.3"), e.fill("SELL", 1, 110, SYM, fee="0.1"),
        e.fill("SELL", 2, 90, SYM, fee="0.2"))
    legs = exits(run)
    assert [(x["pnl_leg"], x["fee_leg"], x["cumulative_pnl"], x["pnl_source"])
            for x in legs] == [(10, D("0.1"), 10, "kernel_estimate"),
                               (-20, D("0.2"), -10, "kernel_estimate")]
    assert [x["holding_seconds"] for x in legs] == [1, 2]
    trade = account_summary(run.state(), {}, run.config)["trades"][0]
    assert trade["net_pnl"] == "-10.6"  # realized net of the trade's own fees


def test_a13_negative_holding_time_is_clamped_and_reported():
    e = Events()
    run = Run()
    entry = e.fill("BUY", 1, 100, SYM)
    exit_ = e.fill("SELL", 1, 100, SYM)
    exit_["ts"] = "2026-01-05T08:00:00Z"  # clock skew: before the entry
    run(entry, exit_)
    assert exits(run)[0]["holding_seconds"] == 0
    assert run.codes() == ["CLOCK_SKEW"]


def test_a3_hedge_side_cannot_flip_and_says_so():
    e = Events()
    run = Run()
    run(e.fill("BUY", 1, 100, SYM, position_side="LONG"),
        e.fill("SELL", 3, 101, SYM, position_side="LONG"))
    assert run.codes() == ["HEDGE_SIDE_FLIP"]
    assert exits(run)[0]["pnl_leg"] == 1


def test_output_ids_derive_from_account_and_source_event_only():
    e = Events()
    run = Run()
    run(e("anchor", capital="100"), e("balance", wallet_balance="90"))
    f = e.fill("BUY", 1, 100, SYM)
    run(f)
    settle = e("fill_settled", symbol=SYM, fill_event_id="missing", realized_pnl="1")
    settle2 = e("fill_settled", symbol=SYM, fill_event_id="missing2", realized_pnl="1")
    run(settle, settle2)
    snap = [o for o in run.outputs if o.kind == "snapshot"]
    assert [s.record["event_id"] for s in snap][-3] == f["event_id"]
    assert all(o.key == "acc-1" and o.record["account_id"] == "acc-1" for o in run.outputs)
    trade = run.of("trade")[0]
    assert trade["event_id"] == f"{trade['trade_id']}:{f['event_id']}:open"
    rec = run.of("reconcile")[0]
    assert rec["event_id"] == f"{rec['source_event_id']}:reconcile"
    anomalies = run.of("anomaly")
    assert [a["event_id"] for a in anomalies][-2:] == [
        f"{settle['event_id']}:UNRESOLVED", f"{settle2['event_id']}:UNRESOLVED"]
    # the same code twice on one event is numbered
    two = Run()
    entry = Events("acc-2")
    skew = entry.fill("BUY", 1, 100, SYM, position_side="LONG")
    later = entry.fill("SELL", 3, 100, SYM, position_side="LONG")
    later["ts"] = "2026-01-05T08:00:00Z"
    two(skew, later)
    assert [a["event_id"] for a in two.of("anomaly")] == [
        f"{later['event_id']}:HEDGE_SIDE_FLIP", f"{later['event_id']}:CLOCK_SKEW"]


def test_apply_returns_state_and_outputs_like_design():
    from streams.ledger import apply, parse_event

    e = Events()
    state, outputs = apply(None, parse_event(e.fill("BUY", 1, 100, SYM)), {}, LedgerConfig())
    assert state.event_seq == 1 and [o.kind for o in outputs] == ["trade", "snapshot"]
    state2, outputs2 = apply(state, parse_event(e.fill("BUY", 1, 100, SYM)), {}, LedgerConfig())
    assert state2 is state and state.event_seq == 2 and outputs2[-1].record["event_seq"] == 2


def test_a7_order_settlement_repairs_only_the_unpriced_legs_of_the_order():
    e = Events()
    run = Run()
    run(e.fill("BUY", 4, 100, SYM, venue_order_id="in"),
        e.fill("SELL", 1, 110, SYM, venue_order_id="out"),
        e.fill("SELL", 3, 0, SYM, venue_order_id="out"),
        e("fill_settled", symbol=SYM, venue_order_id="out", realized_pnl="40"))
    st = run.state()
    legs = [leg for t in st.trades() for leg in t.legs if leg.action != "open"]
    assert [(leg.pnl, leg.source, leg.exch) for leg in legs] == [
        (10, "kernel_estimate", 10), (30, "exchange", 30)]
    assert st.k_realized == 40 and st.trades()[0].realized == 40
    assert [leg.cum for leg in legs] == [10, 40]


def test_a7_settlement_finds_a_closed_trade_kept_as_bytes():
    e = Events()
    run = Run()
    fills = [e.fill("BUY", 2, 100, SYM), e.fill("SELL", 2, 0, SYM)]
    others = [e.fill("BUY", 1, 50, "ETH-USDT"), e.fill("SELL", 1, 55, "ETH-USDT")]
    run(*fills, *others)
    encode_state(run.state())  # closed trades are now held as their encoded bytes
    assert all(isinstance(t, bytes) for t in run.state().closed_trades)
    run(e("fill_settled", symbol=SYM, fill_event_id=fills[1]["event_id"], realized_pnl="7"))
    st = run.state()
    assert st.k_realized == 12 and run.of("trade")[-1]["pnl_source"] == "exchange"
    assert [t.realized for t in st.trades()] == [7, 5]
    assert encode_state(decode_state(encode_state(st))) == encode_state(st)


def test_a8_a_state_written_with_an_outbox_decodes_and_its_outbox_is_dropped():
    # Layout of states written while the fold kept an outbox: entries in header slot 21,
    # their blobs after the closed trades. Such a state restores; it is written back without.
    e = Events()
    run = Run()
    run(e.fill("BUY", 1, 100, SYM), source=(0, 1))
    blob = encode_state(run.state())
    magic, header, rest = blob.split(b"\n", 2)
    h = json.loads(header)
    h[21] = [["old-event", [0, 1], "applied"]]
    n_lines = 1 + h[22] + h[23]  # cold line, positions, closed trades
    lines = rest.split(b"\n", n_lines)
    old = b"\n".join([magic, json.dumps(h, separators=(",", ":")).encode(), *lines[:n_lines],
                      b'[["anomaly","acc-1",[]]]', lines[n_lines]])
    restored = decode_state(old)
    assert encode_state(restored) == blob


def _late_settlements(reach: int) -> tuple[list[dict], list[dict]]:
    """Three trades, each closed by an exit without a price; then the venue settles the
    first and the last exit. With ``max_closed_trades=reach`` the first has left the state."""
    e = Events()
    evs, exits = [], []
    for _ in range(3):
        evs.append(e.fill("BUY", 2, 100, SYM))
        exits.append(e.fill("SELL", 2, 0, SYM))
        evs.append(exits[-1])
    settles = [e("fill_settled", symbol=SYM, fill_event_id=x["event_id"], realized_pnl="4")
               for x in (exits[0], exits[2])]
    return evs + settles, settles


@pytest.mark.parametrize("reach", [1, 3])
def test_a7_a_settlement_older_than_the_kept_closed_trades_is_unresolved_offline_too(reach):
    # The stream keeps max_closed_trades; the offline fold keeps every trade for its listing
    # but settles only what the stream can reach, so both book the same figures.
    from streams.foldfile import run_fold

    evs, _ = _late_settlements(reach)
    cfg = LedgerConfig(max_closed_trades=reach)
    stream = Run(cfg)
    stream(*evs)
    offline = run_fold([json.dumps(d) for d in evs], cfg)
    assert offline.outputs == stream.outputs
    assert offline.states["acc-1"].k_realized == stream.state().k_realized
    unresolved = [o.record for o in offline.outputs
                  if o.kind == "anomaly" and o.record["code"] == "UNRESOLVED"]
    assert len(unresolved) == (1 if reach == 1 else 0)
    assert stream.state().k_realized == (4 if reach == 1 else 8)
    assert len(offline.states["acc-1"].closed_trades) == 3  # still listed offline


def test_a7_a_settlement_of_a_leg_the_stream_dropped_is_unresolved_offline_too():
    from streams.foldfile import run_fold

    e = Events()
    evs = [e.fill("BUY", 5, 100, SYM)]
    unpriced = e.fill("SELL", 1, 0, SYM)
    evs += [unpriced, e.fill("BUY", 1, 100, SYM), e.fill("BUY", 1, 100, SYM),
            e("fill_settled", symbol=SYM, fill_event_id=unpriced["event_id"], realized_pnl="3")]
    cfg = LedgerConfig(max_trade_legs=2)
    stream = Run(cfg)
    stream(*evs)
    offline = run_fold([json.dumps(d) for d in evs], cfg)
    assert stream.codes()[-1] == "UNRESOLVED"
    assert offline.outputs == stream.outputs
