"""Reconcile as an ordered list of named rules (``reconcile.RULES``) with typed results.

A rule is one function of a ``Context`` appending ``RuleResult``s; the results
keep the order of ``RULES``; a new rule is one function and one entry.
"""

from __future__ import annotations

import ast
import json
from decimal import Decimal
from pathlib import Path

import pytest

from streams.ledger import LedgerConfig, decode_state, encode_state
from streams.ledger import reconcile as rec
from streams.ledger.reconcile import RULES, Context, RuleResult, explain, reconcile
from streams.ledger.state import MAGIC, AccountState

from ._helpers import Events, Run

D = Decimal
SYM = "BTC-USDT"


def test_the_rules_are_named_documented_functions_in_their_output_order():
    assert [r.__name__ for r in RULES] == [
        "r1_capital", "r2_realized", "r3_r4_r6_positions", "b8_drift", "r5_used_margin"]
    # read from the source: a compiled function (``_native``) keeps no docstring
    source = Path(__file__).resolve().parents[3] / "streams" / "ledger" / "reconcile.py"
    tree = ast.parse(source.read_text())
    docs = {f.name: ast.get_docstring(f) for f in tree.body if isinstance(f, ast.FunctionDef)}
    assert all(docs[r.__name__] for r in RULES)


def test_results_are_typed_and_listed_in_rules_order():
    st = AccountState("a")
    st.e_wallet = D("900")  # R1: K capital 0 vs 900 -> ERROR
    st.e_used = D("100")  # R5: K used margin 103 vs 100 -> WARN (within 5%)
    cfg = LedgerConfig(r5_leverage_band=D("0.05"))
    status, out = reconcile(st, cfg, {}, D("103"), [("x.realized_pnl", D("10.5"), D("10"))])
    assert status == "ERROR"
    assert [(r.rule, r.status, r.code, r.field, r.delta) for r in out] == [
        ("R1", "ERROR", "CAPITAL_MISMATCH", "capital", D("-900")),
        ("R2", "WARN", "LOT_STEP_ROUNDING", "x.realized_pnl", D("0.5")),
        ("R5", "WARN", "LEVERAGE_ROUNDING", "used_margin", D("3")),
    ]
    assert all(type(r) is RuleResult for r in out)
    assert [explain(r) for r in out] == [
        "CAPITAL_MISMATCH|capital|-900", "LOT_STEP_ROUNDING|x.realized_pnl|0.5",
        "LEVERAGE_ROUNDING|used_margin|3"]


def test_results_survive_the_state_codec_as_typed_records_in_the_same_bytes():
    e = Events()
    run = Run()
    run(e("anchor", capital="1000"), e("balance", wallet_balance="990"))
    st = run.state()
    assert st.results == [RuleResult("R1", "ERROR", "CAPITAL_MISMATCH", "capital", D("10"))]
    blob = encode_state(st)
    # the header still holds each result as its five fields, the delta as a string
    header = json.loads(blob[len(MAGIC):].split(b"\n", 1)[0])
    assert header[19] == [["R1", "ERROR", "CAPITAL_MISMATCH", "capital", "10"]]
    back = decode_state(blob)
    assert back.results == st.results and type(back.results[0]) is RuleResult
    assert encode_state(back) == blob


def test_a_new_rule_is_one_function_and_one_entry(monkeypatch: pytest.MonkeyPatch):
    def r7_cash_flows_not_negative(ctx: Context) -> None:
        """R7 (an example): more withdrawn than deposited is a WARN."""
        if ctx.st.k_cash < 0:
            ctx.out.append(RuleResult("R7", "WARN", "NET_WITHDRAWAL", "cash_flows",
                                      ctx.st.k_cash))

    monkeypatch.setattr(rec, "RULES", (*RULES, r7_cash_flows_not_negative))
    e = Events()
    run = Run()
    run(e("anchor", capital="1000"),
        e("cash_flow", flow="withdrawal", amount="-5", asset="USDT"))
    last = run.of("reconcile")[-1]
    assert (last["previous_status"], last["status"]) == ("OK", "WARN")
    assert last["explanations"] == ["NET_WITHDRAWAL|cash_flows|-5"]
    assert run.last_snapshot()["reconcile_status"] == "WARN"
