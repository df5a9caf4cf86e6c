"""Synthetic Kraken spot accounts, folded, through the wire and the row builders.

The integration tests count these rows in ClickHouse; here every output the
fold emits for them must become a row without a rejection, and the
generator must give what those tests rely on.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from sinks.rows import build_row
from streams.catalogue import RECORD_OF_KIND, TABLE_OF_KIND
from streams.ledger import apply_event, load_ledger_config, parse_event
from streams.ledger.synth import generate_events
from tests.unit.sinks import samples


def fold(events: list[dict[str, Any]], with_marks: bool) -> tuple[dict[str, Any], list[Any]]:
    config = load_ledger_config(None)
    states: dict[str, Any] = {}
    marks: dict[str, Decimal] = {}
    outputs = []
    for d in events:
        ev = parse_event(d)
        if ev.kind == "mark":
            if with_marks:
                marks[ev.symbol] = ev.price
            continue
        res = apply_event(states.get(ev.account_id), ev, marks, config)
        states[ev.account_id] = res.state
        outputs += res.outputs
    return states, outputs


@pytest.fixture(scope="module")
def spot_events() -> list[dict[str, Any]]:
    return generate_events(4_000, 5, seed=7, spot_accounts=3)


def test_default_output_is_unchanged() -> None:
    # The digest of the generator's output before spot accounts existed: tests
    # across the repository depend on these exact events.
    text = json.dumps(generate_events(2000, 10, seed=3))
    assert hashlib.sha256(text.encode()).hexdigest() == \
        "a42a8cbd84388f745cf95361cb7fa89cb4bf96b52f9416329e66c72db3f190f7"
    assert generate_events(500, 4, seed=1) == generate_events(500, 4, seed=1, spot_accounts=0)


def test_spot_accounts_cover_what_the_pipeline_tests_rely_on(
        spot_events: list[dict[str, Any]]) -> None:
    spot = [e for e in spot_events if e["account_id"].startswith("spot-7-")]
    assert len({e["account_id"] for e in spot}) == 3
    assert {e["venue"] for e in spot} == {"kraken"}
    fills = [e for e in spot if e["kind"] == "fill"]
    assert {e["market"] for e in fills} == {"spot"}
    assert len({e["symbol"] for e in fills}) >= 2
    assert {e["symbol"] for e in fills} <= {"XBT/USD", "ETH/USD", "ETH/XBT"}
    assert {"DOT", "USD", "XBT"} <= {e["fee_asset"] for e in fills}
    pairs = [(e["fee_asset"], *e["symbol"].split("/")) for e in fills]
    assert any(fee == base for fee, base, _ in pairs), "a fee in the base asset"
    assert any(fee == quote for fee, _, quote in pairs), "a fee in the quote asset"
    assert any(fee not in (base, quote) for fee, base, quote in pairs), "a fee in a third asset"
    tags = Counter(e["strategy_tag"] for e in fills)
    assert tags[""] and len(tags) >= 2
    flows = Counter((e["flow"], e["asset"]) for e in spot if e["kind"] == "cash_flow")
    assert flows["deposit", "USD"] and flows["deposit", "XBT"]
    assert any(flow == "withdrawal" for flow, _ in flows)
    frames = [e for e in spot if e["kind"] == "balance"]
    assert frames and all(e["wallet_balance"] is None and e["assets"] for e in frames)
    marks = {e["symbol"] for e in spot_events if e["kind"] == "mark"}
    assert {"XBT/USD", "ETH/USD", "DOT/USD"} <= marks
    assert {e["account_id"] for e in spot_events if e["kind"] == "mark"} == {""}
    ts = {}
    for e in spot_events:  # time never goes back for an account
        assert e["ts"] >= ts.get(e["account_id"], "")
        ts[e["account_id"]] = e["ts"]


@pytest.mark.parametrize("with_marks", [False, True])
def test_spot_outputs_never_oversell_and_drift_comes_and_goes(
        spot_events: list[dict[str, Any]], with_marks: bool) -> None:
    _, outputs = fold(spot_events, with_marks)
    spot = [o for o in outputs if o.record["account_id"].startswith("spot-7-")]
    kinds = Counter(o.kind for o in spot)
    assert kinds["cashflow"] and kinds["balance"] and kinds["portfolio"] and kinds["trade"]
    codes = Counter(o.record["code"] for o in spot if o.kind == "anomaly")
    assert codes["OVERSELL"] == 0
    assert codes["DRIFT"] and codes["DRIFT_CLEARED"]
    b8 = [r for o in spot if o.kind == "reconcile" for r in o.record["results"]
          if r["rule"] == "B8" and r["code"] == "DRIFT"]
    assert b8
    assert all(o.record["market"] == "spot" for o in spot if o.kind == "trade")


def test_every_fold_output_becomes_a_row(spot_events: list[dict[str, Any]]) -> None:
    _, outputs = fold(spot_events, with_marks=True)
    built: Counter[str] = Counter()
    for out in outputs:
        record = RECORD_OF_KIND[out.kind]
        table = TABLE_OF_KIND[out.kind]
        row = build_row(table, record, samples.decoded(record, out.record))
        assert row[0] == out.record["account_id"] and row[1] == out.record["event_id"]
        built[table] += 1
    assert {"cash_flows", "balances", "portfolio_snapshots"} <= set(built)
