"""LEDGER part C golden cases, exact Decimal, at the fold level."""

from __future__ import annotations

from decimal import Decimal

from streams.ledger import LedgerConfig, account_summary, decode_state, encode_state

from ._helpers import Events, Run

D = Decimal
SYM = "FET-USDT"


def c1_events(e: Events, leverage: str = "3", first_exit_price: str = "0.1866",
              ) -> list[dict]:
    return [
        e.fill("SELL", 195259, "0.1878", leverage=leverage, venue_order_id="o-1"),
        e.fill("SELL", 7017, "0.1878", leverage=leverage, venue_order_id="o-1"),
        e.fill("BUY", 26007, first_exit_price, leverage=leverage, venue_order_id="o-2"),
        e.fill("BUY", 176269, "0.1866", leverage=leverage, venue_order_id="o-3"),
    ]


def exit_legs(run: Run) -> list[dict]:
    return [t for t in run.of("trade") if t["action"] in ("reduce", "close", "flip")]


def test_c1_fet_short_clean_prices_realizes_242_7312():
    e = Events()
    run = Run()
    run(*c1_events(e))
    expected = (D("0.1878") - D("0.1866")) * 202276
    assert expected == D("242.7312")
    snap = run.last_snapshot()
    assert snap["realized_pnl"] == expected
    legs = exit_legs(run)
    assert [leg["pnl_leg"] for leg in legs] == [D("31.2084"), D("211.5228")]
    assert legs[-1]["cumulative_pnl"] == expected
    assert legs[-1]["action"] == "close" and legs[-1]["position_qty"] == 0
    assert {t["trade_id"] for t in run.of("trade")} == {legs[0]["trade_id"]}
    summary = account_summary(run.state(), {}, run.config)
    assert summary["trades"][0]["realized_pnl"] == "242.7312"
    assert summary["positions"][0]["qty"] == "0"


def test_c2_price_zero_exit_leg_flagged_then_repaired_by_fill_settled():
    e = Events()
    run = Run()
    # A mark sitting at the protective bound must not leak into anything.
    run.marks[SYM] = D("0.229")
    fills = c1_events(e, first_exit_price="0")
    run(*fills)
    leg1, leg2 = exit_legs(run)
    assert leg1["pnl_leg"] == 0
    assert "realized_skipped_no_price" in leg1["flags"]
    assert leg2["pnl_leg"] == D("211.5228")
    assert run.last_snapshot()["realized_pnl"] == D("211.5228")

    run(e("fill_settled", symbol=SYM, fill_event_id=fills[2]["event_id"],
          realized_pnl="31.2084", fee="0"))
    settle = run.of("trade")[-1]
    assert settle["action"] == "settle" and settle["pnl_source"] == "exchange"
    assert settle["cumulative_pnl"] == D("242.7312")
    assert run.last_snapshot()["realized_pnl"] == D("242.7312")
    trade = account_summary(run.state(), run.marks, run.config)["trades"][0]
    assert trade["realized_pnl"] == "242.7312"
    legs = [leg for leg in trade["legs"] if leg["action"] in ("reduce", "close")]
    assert legs[0]["pnl_source"] == "exchange"
    assert legs[0]["pnl_leg"] == "31.2084"
    assert "realized_skipped_no_price" not in legs[0]["flags"]
    assert legs[1]["pnl_source"] == "kernel_estimate"
    assert [leg["cumulative_pnl"] for leg in legs] == ["31.2084", "242.7312"]

    # The mis-booking this prevents: 26,007 x (0.229 - 0.1878) x 3 of loss.
    misbooking = D(26007) * (D("0.229") - D("0.1878")) * 3
    assert misbooking == D("3214.4652")
    figures = [v for o in run.outputs for v in o.record.values() if isinstance(v, Decimal)]
    assert all(abs(v) != misbooking and abs(v) != misbooking / 3 for v in figures)
    assert all(s["realized_pnl"] >= 0 for s in run.of("snapshot"))


def test_c3_restart_mid_position_realizes_c1_and_settles_once():
    e = Events()
    fills = c1_events(e, first_exit_price="0")
    settle = e("fill_settled", symbol=SYM, fill_event_id=fills[2]["event_id"],
               realized_pnl="31.2084")
    uninterrupted = Run()
    uninterrupted(*fills, settle)

    first = Run()
    first(*fills[:2])
    blob = encode_state(first.state())
    restored = Run()
    restored.states["acc-1"] = decode_state(blob)
    restored(*fills[2:], settle)
    # redelivery of the settlement after a second restart: skipped, not re-booked
    again = Run()
    again.states["acc-1"] = decode_state(encode_state(restored.state()))
    again(settle)
    assert again.statuses == ["duplicate"]
    # a second settlement message for the same leg (new event id) is not booked either
    again(e("fill_settled", symbol=SYM, fill_event_id=fills[2]["event_id"],
            realized_pnl="31.2084"))
    assert again.codes() == ["ALREADY_SETTLED"]
    assert again.last_snapshot()["realized_pnl"] == D("242.7312")
    assert restored.last_snapshot()["realized_pnl"] == D("242.7312")
    assert restored.outputs == uninterrupted.outputs[-len(restored.outputs):]
    assert encode_state(restored.state()) == encode_state(uninterrupted.state())


def test_c4_two_entries_basis_is_their_vwap_exactly():
    e = Events()
    run = Run()
    run(e.fill("BUY", 1000, "0.1878"), e.fill("BUY", 3000, "0.1866"))
    pos = run.last_snapshot()["positions"][0]
    assert pos["avg_entry_price"] == (1000 * D("0.1878") + 3000 * D("0.1866")) / 4000
    assert pos["avg_entry_price"] == D("0.1869")
    # an inexact VWAP is rounded once, half-even, to the 18 places of the wire
    run(e.fill("BUY", 2000, "0.19"))
    avg = run.last_snapshot()["positions"][0]["avg_entry_price"]
    exact = (4000 * D("0.1869") + 2000 * D("0.19")) / 6000
    assert avg == exact.quantize(D("1E-18"))
    assert abs(avg - exact) < D("1E-18")


def test_c5_leverage_1_vs_3_same_pnl_margin_factor_3():
    snaps = {}
    summaries = {}
    for lev in ("1", "3"):
        e = Events()
        run = Run()
        run.marks[SYM] = D("0.1870")
        fills = c1_events(e, leverage=lev)
        run(*fills[:2])
        summaries[lev] = run.last_snapshot()
        run(*fills[2:])
        snaps[lev] = run.last_snapshot()
    mid1, mid3 = summaries["1"], summaries["3"]
    assert mid1["unrealized_pnl"] == mid3["unrealized_pnl"] == (D("0.1878") - D("0.187")) * 202276
    assert mid1["k_used_margin"] == 3 * mid3["k_used_margin"]
    assert mid1["k_used_margin"] == D(202276) * D("0.1878")
    assert snaps["1"]["realized_pnl"] == snaps["3"]["realized_pnl"] == D("242.7312")
    assert snaps["1"]["unrealized_pnl"] == snaps["3"]["unrealized_pnl"] == 0


def test_c6_warn_between_errors_unfreezes_and_zero_wallet_is_one_anomaly():
    e = Events()
    cfg = LedgerConfig(r1_epsilon=D("0.01"), r1_pending_fee_bound=D("5"))
    run = Run(cfg)
    run(e("anchor", capital="1000"), e("balance", wallet_balance="1000"))
    assert run.last_snapshot()["reconcile_status"] == "OK"
    run(e("balance", wallet_balance="900"))
    error1 = run.last_snapshot()
    run(e("balance", wallet_balance="998"))
    warn = run.last_snapshot()
    run(e("balance", wallet_balance="800"))
    error2 = run.last_snapshot()
    assert (error1["reconcile_status"], warn["reconcile_status"],
            error2["reconcile_status"]) == ("ERROR", "WARN", "ERROR")
    assert (error1["capital_frozen"], warn["capital_frozen"],
            error2["capital_frozen"]) == (True, False, True)
    transitions = [(r["previous_status"], r["status"], r["capital_frozen"])
                   for r in run.of("reconcile")]
    assert transitions == [("OK", "ERROR", True), ("ERROR", "WARN", False),
                           ("WARN", "ERROR", True)]
    assert run.of("reconcile")[1]["explanations"] == ["UNSETTLED_FEE|capital|2"]

    anomalies_before = len(run.of("anomaly"))
    state_before = run.state()
    e_before = (state_before.e_wallet, state_before.e_used, state_before.e_available)
    new = run(e("balance", wallet_balance="0", used_margin="7", available_margin="7"))
    zero = run.last_snapshot()
    assert [o.record["code"] for o in new if o.kind == "anomaly"] == ["WALLET_BALANCE_INVALID"]
    assert len(run.of("anomaly")) == anomalies_before + 1
    assert zero["capital"] == error2["capital"] == D("800")
    assert zero["wallet_balance"] == D("800")
    st = run.state()
    assert (st.e_wallet, st.e_used, st.e_available) == e_before
