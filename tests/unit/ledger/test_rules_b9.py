"""LEDGER B8/B9 through the pipeline outputs: cash-flow, balance and portfolio records.

The fold's spot book feeds three topics besides the account snapshot: one
``cashflow`` record per booked cash flow, one ``balance`` record per asset
whose figures changed (latest per asset by version) and one ``portfolio``
record per event-time interval. Drift is also a reconcile result (B8), so its
start and end are reconcile transitions.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.exceptions import ConfigError
from streams.ledger import LedgerConfig, decode_state, encode_state
from streams.ledger.config import config_from_mapping

from ._helpers import Events, Run, avro_roundtrip, load_schemas
from .test_rules_b import XBT, applied, b6_step, deposit, fill, spot_run

D = Decimal
SCHEMAS = load_schemas()


def at(e: Events, kind: str, ts: str, **kw: Any) -> dict[str, Any]:
    return e(kind, ts=ts, **kw)


# cash flows ---------------------------------------------------------------------------


def test_b5_every_cash_flow_is_one_cashflow_record_valued_in_the_base_currency():
    e, run = spot_run()
    run.marks[XBT] = D("100")
    run(deposit(e, "USD", 1000), deposit(e, "XBT", "0.5"), deposit(e, "NOPE", 3))
    run(fill(e, "BUY", 1, 100))
    new = run(deposit(e, "XBT", "-0.75", flow="withdrawal"))
    flows = run.of("cashflow")
    assert [f["event_id"] for f in flows] == [f"acc-1-{i}:cashflow" for i in (1, 2, 3, 5)]
    usd, xbt, nope, out = flows
    assert (usd["amount"], usd["value"], usd["currency"], usd["price"]) == (1000, 1000, "USD", 1)
    assert (xbt["value"], xbt["price"], xbt["unvalued"], xbt["balance_after"]) == (
        50, 100, False, D("0.5"))
    assert (nope["value"], nope["price"], nope["unvalued"]) == (0, None, True)
    # an outflow leaves at its cost basis (avg 100 here), and names no price
    assert (out["amount"], out["value"], out["price"], out["balance_after"]) == (
        D("-0.75"), -75, None, D("0.75"))
    assert sum(f["value"] for f in flows) == run.last_snapshot()["cash_flows"]
    assert [o.kind for o in new].count("cashflow") == 1
    # kept for the live query, bounded, oldest first
    assert [f[0] for f in run.state().book.flows] == [f["event_id"] for f in flows]


def test_b5_a_margin_account_cash_flow_is_recorded_raw_in_its_own_asset():
    e = Events()
    run = Run()
    run(e("cash_flow", asset="USDT", amount="250", flow="deposit"))
    (flow,) = run.of("cashflow")
    assert (flow["value"], flow["currency"], flow["balance_after"]) == (250, "USDT", None)
    assert run.of("balance") == [] and run.of("portfolio") == []


def test_recent_cash_flows_kept_in_state_are_bounded():
    e, run = spot_run(LedgerConfig(max_cash_flows=2))
    run(*(deposit(e, "USD", i) for i in range(1, 6)))
    assert [f[4] for f in run.state().book.flows] == ["4", "5"]
    assert len(run.of("cashflow")) == 5  # every one is still emitted


# balances -----------------------------------------------------------------------------


def test_b1_balance_records_only_for_assets_that_changed_with_version_event_seq():
    e, run = spot_run()
    run.marks[XBT] = D("100")
    run(deposit(e, "USD", 1000))
    run(fill(e, "BUY", 2, 100, fee="1", fee_asset="USD"))
    new = run(deposit(e, "USD", 5))
    changes = [o.record for o in new if o.kind == "balance"]
    assert [(c["asset"], c["version"], c["total"]) for c in changes] == [("USD", 3, 804)]
    by = {(c["asset"], c["version"]): c for c in run.of("balance")}
    assert set(by) == {("USD", 1), ("USD", 2), ("XBT", 2), ("USD", 3)}
    xbt = by[("XBT", 2)]
    assert (xbt["total"], xbt["avg_cost"], xbt["cost_basis"], xbt["value"]) == (2, 100, 200, 200)
    assert xbt["event_id"] == "acc-1-2:balance:XBT" and xbt["exchange_total"] is None
    # a mark moves values but is not a balance change: nothing new until holdings move
    run.marks[XBT] = D("120")
    assert [o.kind for o in run(e("balance", wallet_balance=None,
                                  assets={"USD": {"free": "804"}, "XBT": {"free": "2"}}))
            if o.kind == "balance"] == ["balance", "balance"]  # exchange totals now known
    assert run.of("balance")[-1]["value"] == 240 and run.of("balance")[-1]["exchange_total"] == 2


def test_b8_drift_flag_on_balance_records_and_b8_reconcile_transitions():
    e, run = spot_run(LedgerConfig(drift_tolerance=D("1")))
    run.marks[XBT] = D("100")
    run(deposit(e, "USD", 1000), fill(e, "BUY", 2, 100))
    assert run.of("reconcile") == []
    new = run(e("balance", wallet_balance=None,
                assets={"USD": {"free": "800"}, "XBT": {"free": "1.9"}}))
    (rec,) = [o.record for o in new if o.kind == "reconcile"]
    assert (rec["previous_status"], rec["status"], rec["capital_frozen"]) == ("OK", "WARN", False)
    assert [(r["rule"], r["code"], r["field"], r["delta"]) for r in rec["results"]] == [
        ("B8", "DRIFT", "balance:XBT", D("0.1"))]
    assert rec["explanations"] == ["DRIFT|balance:XBT|0.1"]
    flags = {o.record["asset"]: o.record["drift"] for o in new if o.kind == "balance"}
    assert flags == {"XBT": True, "USD": False}
    assert run.last_snapshot()["reconcile_status"] == "WARN"
    # every event while it lasts repeats the non-OK result; clearing is a transition to OK
    new = run(deposit(e, "USD", 1))
    assert [o.record["status"] for o in new if o.kind == "reconcile"] == ["WARN"]
    new = run(e("balance", wallet_balance=None,
                assets={"USD": {"free": "801"}, "XBT": {"free": "2"}}))
    (rec,) = [o.record for o in new if o.kind == "reconcile"]
    assert (rec["previous_status"], rec["status"], rec["results"]) == ("WARN", "OK", [])
    flags = {o.record["asset"]: o.record["drift"] for o in new if o.kind == "balance"}
    assert flags == {"XBT": False, "USD": False}  # XBT cleared; USD's exchange total moved
    assert [o.record["code"] for o in new if o.kind == "anomaly"] == ["DRIFT_CLEARED"]


# portfolio snapshots ------------------------------------------------------------------


def test_b9_one_portfolio_snapshot_per_event_time_interval():
    e, run = spot_run(LedgerConfig(snapshot_interval_seconds=3600))
    run.marks[XBT] = D("100")
    run(at(e, "cash_flow", "2026-01-05T09:10:00Z", asset="USD", amount="1000", flow="deposit"))
    run(at(e, "fill", "2026-01-05T09:50:00Z", symbol=XBT, side="BUY", qty="2", price="100",
           market="spot"))
    run(at(e, "fill", "2026-01-05T10:00:00Z", symbol=XBT, side="SELL", qty="1", price="110",
           market="spot"))
    # out of order (an earlier interval) and the same interval again: no new snapshot
    run(at(e, "cash_flow", "2026-01-05T09:59:59Z", asset="USD", amount="1", flow="deposit"))
    run(at(e, "cash_flow", "2026-01-05T10:30:00Z", asset="USD", amount="1", flow="deposit"))
    run(at(e, "cash_flow", "2026-01-05T13:05:00Z", asset="USD", amount="1", flow="deposit"))
    snaps = run.of("portfolio")
    starts = [s["bucket_start"] for s in snaps]
    assert starts == [datetime(2026, 1, 5, h, tzinfo=UTC) for h in (9, 10, 13)]
    assert [s["source_event_id"] for s in snaps] == ["acc-1-1", "acc-1-3", "acc-1-6"]
    epoch = int(starts[1].timestamp())
    assert snaps[1]["event_id"] == f"acc-1:portfolio:{epoch}"
    # the state after the crossing event: sold 1 XBT at 110 (avg 100)
    s = snaps[1]
    assert (s["equity"], s["realized_pnl"], s["unrealized_pnl"], s["cash_flows"]) == (
        1010, 10, 0, 1000)
    assert {b["asset"]: b["total"] for b in s["balances"]} == {"USD": 910, "XBT": 1}
    assert (s["interval_seconds"], s["base_currency"], s["drift"]) == (3600, "USD", False)
    # kept in state for the query, compact
    assert [x[0] for x in run.state().book.snaps] == [x["event_id"] for x in snaps]


def test_b9_portfolio_snapshot_lists_drift_and_unvalued_assets():
    e, run = spot_run(LedgerConfig(snapshot_interval_seconds=60, drift_tolerance=D("0")))
    run(deposit(e, "USD", 10), deposit(e, "NOPE", 1))
    run(at(e, "balance", "2026-01-05T09:05:00Z", wallet_balance=None,
           assets={"USD": {"free": "9"}, "NOPE": {"free": "1"}}))
    s = run.of("portfolio")[-1]
    assert (s["drift"], s["drift_assets"], s["unvalued_assets"]) == (True, ["USD"], ["NOPE"])


def test_b9_interval_zero_turns_portfolio_snapshots_off_and_is_validated():
    e, run = spot_run(LedgerConfig(snapshot_interval_seconds=0))
    run(deposit(e, "USD", 10), at(e, "cash_flow", "2027-01-01T00:00:00Z", asset="USD",
                                  amount="1", flow="deposit"))
    assert run.of("portfolio") == [] and len(run.of("cashflow")) == 2
    for bad in (-1, True, "60"):
        with pytest.raises(ConfigError, match="snapshot_interval_seconds"):
            config_from_mapping({"snapshot_interval_seconds": bad})
    assert config_from_mapping({"max_portfolio_snapshots": 3}).max_portfolio_snapshots == 3


def test_b9_recent_snapshots_kept_in_state_are_bounded():
    e, run = spot_run(LedgerConfig(snapshot_interval_seconds=1, max_portfolio_snapshots=3))
    run(*(deposit(e, "USD", i) for i in range(1, 8)))  # one second apart: one each
    assert len(run.of("portfolio")) == 7 and len(run.state().book.snaps) == 3


# fees by asset, codecs ----------------------------------------------------------------


def test_b3_fees_are_summed_per_asset_paid_and_per_value_booked():
    e, run = spot_run()
    run.marks[XBT] = D("100")
    run.marks["DOT/USD"] = D("5")
    run(deposit(e, "USD", 1000), deposit(e, "DOT", 10))
    run(fill(e, "BUY", 2, 100, fee="0.2", fee_asset="DOT"),
        fill(e, "SELL", 1, 100, fee="0.5", fee_asset="USD"),
        fill(e, "BUY", 1, 100, fee="0.01", fee_asset="XBT"))
    fees = run.state().book.fees
    assert fees == {"DOT": [D("0.2"), D("1")], "USD": [D("0.5"), D("0.5")],
                    "XBT": [D("0.01"), D("1")]}
    assert sum(v for _q, v in fees.values()) == run.last_snapshot()["fees"]


def test_spot_book_fields_survive_the_state_codec_and_outputs_avro():
    e, run = spot_run(LedgerConfig(snapshot_interval_seconds=60))
    run.marks[XBT] = D("100")
    run(deposit(e, "USD", 1000), fill(e, "BUY", 2, 100, fee="1", fee_asset="USD"),
        e("balance", wallet_balance=None, assets={"USD": {"free": "700", "locked": "99"},
                                                  "XBT": {"free": "2"}}))
    st = run.state()
    back = decode_state(encode_state(st))
    for name in ("fees", "flows", "snaps", "last_bucket", "published", "drift", "manual_pairs",
                 "manual_fees"):
        assert getattr(back.book, name) == getattr(st.book, name), name
    assert back.book.last_bucket is not None
    kinds = {"cashflow", "balance", "portfolio"}
    outs = [o for o in run.outputs if o.kind in kinds]
    assert {o.kind for o in outs} == kinds
    for o in outs:
        assert avro_roundtrip(SCHEMAS, o) == o.record, o.kind


def test_state_whose_spot_book_predates_flows_and_snapshots_still_decodes():
    e, run = spot_run()
    run(deposit(e, "USD", 5))
    blob = encode_state(run.state())
    # the book as encoded before fees/flows/snapshots existed: its first four parts
    head, rest = blob[len(b"TLS1\n"):].split(b"\n", 1)
    header = json.loads(head)
    header[25] = header[25][:4]
    old = b"TLS1\n" + json.dumps(header, separators=(",", ":")).encode() + b"\n" + rest
    st = decode_state(old)
    assert st.book.assets["USD"].qty == 5
    assert (st.book.flows, st.book.snaps, st.book.last_bucket, st.book.fees) == ([], [], None, {})


# the records add up to the snapshot, at every event ----------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(b6_step, min_size=1, max_size=25), st.sampled_from(["wac", "fifo"]))
def test_latest_balance_records_cash_flow_and_fee_sums_equal_every_snapshot(steps, basis):
    latest: dict[str, dict[str, Any]] = {}  # what balances FINAL would hold
    flows = D(0)
    for res in applied(steps, LedgerConfig(cost_basis=basis)):
        state = res.state
        for o in res.outputs:
            if o.kind == "balance":
                assert o.record["version"] == state.event_seq
                latest[o.record["asset"]] = o.record
            elif o.kind == "cashflow":
                flows += o.record["value"]
        snap = [o.record for o in res.outputs if o.kind == "snapshot"][0]
        assert {a: (r["total"], r["locked"], r["avg_cost"]) for a, r in latest.items()} == {
            b["asset"]: (b["total"], b["locked"], b["avg_cost"]) for b in snap["balances"]}
        assert flows == snap["cash_flows"]
        assert sum((v for _q, v in state.book.fees.values()), D(0)) == snap["fees"]


def test_an_oversell_adjustment_is_a_cash_flow_record_too():
    e, run = spot_run()
    run.marks[XBT] = D("100")
    run(deposit(e, "USD", 50), fill(e, "BUY", 1, 100, fee="1", fee_asset="USD"))
    adj = [f for f in run.of("cashflow") if f["flow"] == "adjustment"]
    # the buy takes 100 USD of 50 held, then its 1 USD fee finds none left
    assert [(f["event_id"], f["amount"], f["value"]) for f in adj] == [
        ("acc-1-2:cashflow:OVERSELL", 50, 50), ("acc-1-2:cashflow:OVERSELL:2", 1, 1)]
    assert sum(f["value"] for f in run.of("cashflow")) == run.last_snapshot()["cash_flows"]
