"""The ``twinledger fold`` file contract (FOLD_FORMAT.md)."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

from streams.foldfile import fold_lines, fold_main, run_fold
from streams.ledger import LedgerConfig

from ._helpers import Events

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
PLAIN = re.compile(r"^-?\d+(\.\d+)?$")
AMOUNT_KEYS = {"capital", "k_capital", "equity", "peak_capital", "qty", "avg_entry_price",
               "realized_pnl", "fees", "funding", "unrealized_pnl", "net_pnl", "price",
               "pnl_leg", "fee_leg", "cumulative_pnl", "seed", "cash_flows", "mark_price",
               "leverage", "used_margin", "k_used_margin"}


def lines(*dicts: dict) -> list[str]:
    return [json.dumps(d) for d in dicts]


def amounts(node: object) -> list[str]:
    """Every amount string in a fold document."""
    found: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in AMOUNT_KEYS and isinstance(v, str):
                found.append(v)
            else:
                found.extend(amounts(v))
    elif isinstance(node, list):
        for v in node:
            found.extend(amounts(v))
    return found


def test_fold_example_fet_short_document():
    doc = fold_lines((EXAMPLES / "fet_short.jsonl").read_text().splitlines(), LedgerConfig())
    acc = doc["accounts"]["acc-1"]
    assert doc["rejected"] == []
    assert acc["trades"][0]["realized_pnl"] == "242.7312"
    assert acc["capital"] == "10242.7312" and acc["capital_source"] == "e_anchored"
    assert acc["reconcile"]["status"] == "OK"
    assert set(acc) >= {"event_seq", "capital", "capital_source", "k_capital", "equity",
                        "peak_capital", "capital_frozen", "reconcile", "positions", "trades",
                        "balances", "anomalies"}


def test_rejected_lines_carry_line_number_and_reason_and_the_fold_goes_on():
    e = Events()
    good = e.fill("BUY", 1, 100, "X")
    doc = fold_lines([
        json.dumps(good),
        "not json",
        json.dumps({**e.fill("BUY", 1, 100, "X"), "qty": "-1"}),
        "",
        json.dumps({**e.fill("BUY", 1, 100, "X"), "kind": "teleport"}),
        '{"kind": "fill", "qty": NaN}',
        json.dumps({**e.fill("BUY", 1, 100, "X"), "ts": "2026-01-05T09:00:00"}),
        json.dumps(e.fill("SELL", 1, 101, "X")),
    ], LedgerConfig())
    rejected = doc["rejected"]
    assert [r["line"] for r in rejected] == [2, 3, 5, 6, 7]
    assert rejected[0]["reason"].startswith("not valid JSON")
    assert rejected[1]["reason"] == "qty: must be > 0, got '-1'"
    assert "unknown kind 'teleport'" in rejected[2]["reason"]
    assert "NaN" in rejected[3]["reason"]
    assert "time zone" in rejected[4]["reason"]
    assert doc["accounts"]["acc-1"]["event_seq"] == 2


def test_json_numbers_never_go_through_float():
    e = Events()
    d = e.fill("BUY", 1, 100, "X")
    raw = json.dumps(d).replace('"qty": "1"', '"qty": 0.1').replace('"price": "100"',
                                                                    '"price": 1.1')
    run = run_fold([raw], LedgerConfig())
    trade = run.outputs[0].record
    assert trade["qty"] == Decimal("0.1") and trade["price"] == Decimal("1.1")
    doc = run.document()
    assert doc["accounts"]["acc-1"]["positions"][0]["qty"] == "0.1"


def test_amounts_are_plain_decimal_strings_without_exponent():
    # Tiny amounts (which Python prints as 1E-8) come out plain. Issue 13: the input
    # grammar refuses exponents, so this test now writes its inputs in plain form.
    e = Events()
    doc = fold_lines(lines(
        e("anchor", capital="1000"),
        e.fill("BUY", "100", "0.00000001", "X", fee="0.00000001"),
        e.fill("SELL", "100", "0.00000002", "X"),
        {"kind": "mark", "account_id": "", "ts": "2026-01-05T09:00:00Z", "symbol": "X",
         "price": "0.0000001"},
        e("anchor", capital="1E+3"),
    ), LedgerConfig())
    acc = doc["accounts"]["acc-1"]
    found = amounts(acc)
    assert found and all(PLAIN.match(v) for v in found), found
    assert acc["capital"] == "1000.00000099"
    assert acc["trades"][0]["legs"][0]["qty"] == "100"
    assert doc["rejected"] == [{"line": 5, "reason": "capital: '1E+3' is not a decimal "
                                "(-?digits(.digits)?, no exponent, sign +, spaces or "
                                "non-ASCII digits)"}]


def test_flat_position_stays_listed_with_qty_zero_until_it_reopens():
    e = Events()
    events = [e.fill("BUY", 2, 100, "X", fee="0.1"), e.fill("SELL", 2, 110, "X", fee="0.1")]
    acc = fold_lines(lines(*events), LedgerConfig())["accounts"]["acc-1"]
    pos = acc["positions"][0]
    assert pos["qty"] == "0" and pos["realized_pnl"] == "20" and pos["fees"] == "0.2"
    acc = fold_lines(lines(*events, e.fill("SELL", 1, 90, "X")), LedgerConfig()
                     )["accounts"]["acc-1"]
    pos = acc["positions"][0]
    assert pos["qty"] == "-1" and pos["realized_pnl"] == "0" and pos["fees"] == "0"
    assert [t["status"] for t in acc["trades"]] == ["CLOSED", "OPEN"]  # opening order


def test_marks_are_global_and_value_open_positions():
    e = Events()
    mark = {"kind": "mark", "account_id": "", "ts": "2026-01-05T09:00:00Z", "symbol": "X",
            "price": "105"}
    acc = fold_lines(lines(e.fill("BUY", 2, 100, "X"), mark), LedgerConfig()
                     )["accounts"]["acc-1"]
    assert acc["positions"][0]["unrealized_pnl"] == "10" and acc["equity"] == "10"


def test_fold_lists_every_trade_despite_streaming_limits():
    e = Events()
    evs = [e.fill("BUY" if i % 2 == 0 else "SELL", 1, 100, "X") for i in range(20)]
    doc = fold_lines(lines(*evs), LedgerConfig(max_closed_trades=2))
    assert len(doc["accounts"]["acc-1"]["trades"]) == 10


def test_fold_main_prints_the_document_and_exits_0(capsys, tmp_path):
    rc = fold_main([str(EXAMPLES / "fet_short.jsonl")])
    out = capsys.readouterr().out
    assert rc == 0
    assert json.loads(out)["accounts"]["acc-1"]["k_capital"] == "10242.7312"


def test_fold_main_config_and_errors(capsys, tmp_path):
    cfg = tmp_path / "ledger.yaml"
    cfg.write_text("r1_epsilon: '0.5'\nmax_closed_trades: 3\n")
    assert fold_main([str(EXAMPLES / "fet_short.jsonl"), "--config", str(cfg)]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.yaml"
    bad.write_text("r1_epsilom: 1\n")
    assert fold_main([str(EXAMPLES / "fet_short.jsonl"), "--config", str(bad)]) == 2
    assert "r1_epsilom" in capsys.readouterr().err
    assert fold_main([str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_example_price_zero_exit_is_repaired_by_the_exchange_figure():
    doc = fold_lines((EXAMPLES / "price_zero_exit.jsonl").read_text().splitlines(),
                     LedgerConfig())
    acc = doc["accounts"]["acc-2"]
    trade = acc["trades"][0]
    assert trade["realized_pnl"] == "242.7312" and trade["status"] == "CLOSED"
    exit_legs = [leg for leg in trade["legs"] if leg["action"] in ("reduce", "close")]
    assert [leg["pnl_source"] for leg in exit_legs] == ["exchange", "kernel_estimate"]
    assert acc["k_capital"] == "10242.7312"


def test_example_reconcile_freeze_ends_frozen_with_one_wallet_anomaly():
    doc = fold_lines((EXAMPLES / "reconcile_freeze.jsonl").read_text().splitlines(),
                     LedgerConfig())
    acc = doc["accounts"]["acc-6"]
    assert acc["capital"] == "800" and acc["capital_frozen"] is True
    assert acc["reconcile"] == {"status": "ERROR", "deltas": {"capital": "200"},
                                "explanations": ["CAPITAL_MISMATCH|capital|200"]}
    assert [a["code"] for a in acc["anomalies"]] == ["WALLET_BALANCE_INVALID"]
