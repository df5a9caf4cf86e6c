"""``twinledger export`` round-trips: a real pipeline, then CSV, Parquet and JSON lines read
back and compared with the offline fold of the same events, exactly (Decimal equality).

What is compared: every trade's realized PnL, fees, net PnL, entry and exit quantity,
cost basis and proceeds (sums of qty x price over its legs, computed here from the fold's
trade outputs); every cash flow's amount and value; every snapshot's capital and equity;
every fill's qty, price and fee as produced; the latest balance of every asset. The export
pages through the sink's named queries; a small page size makes it take many pages.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from streams import export
from streams.config import PROJECT_ROOT
from streams.foldfile import run_fold
from streams.ledger import load_ledger_config
from streams.ledger.synth import generate_events
from tests.integration.pipeline import Pipeline
from tests.integration.test_pipeline import expected_rows, venue_only

pytestmark = pytest.mark.integration

ENTRY = ("open", "increase", "buy")
EXIT = ("reduce", "close", "flip", "sell")
SCIENTIFIC = re.compile(r"^-?[0-9.]+[eE][-+]?[0-9]+$")


def _reference(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What the offline fold of the same events says each exported row must hold."""
    run = run_fold([json.dumps(e) for e in events], load_ledger_config(None))
    assert not run.rejected
    legs: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    ref: dict[str, Any] = {"cash_flows": {}, "snapshots": {}, "balances": {}, "outputs": {}}
    counts: dict[str, int] = defaultdict(int)
    for out in run.outputs:
        counts[out.kind] += 1
        rec = out.record
        if out.kind == "trade":
            legs[rec["account_id"], rec["trade_id"]].append(rec)
        elif out.kind == "cashflow":
            ref["cash_flows"][rec["account_id"], rec["event_id"]] = (
                Decimal(rec["amount"]), Decimal(rec["value"]))
        elif out.kind == "snapshot":
            ref["snapshots"][rec["account_id"], rec["event_id"]] = (
                Decimal(rec["capital"]), Decimal(rec["equity"]), rec["reconcile_status"])
        elif out.kind == "balance":
            ref["balances"][rec["account_id"], rec["asset"]] = (
                Decimal(rec["total"]), Decimal(rec["avg_cost"]))
    trades = {}
    for key, rows in legs.items():
        rows.sort(key=lambda r: r["event_seq"])
        last = rows[-1]
        realized, fees = Decimal(last["cumulative_pnl"]), Decimal(last["trade_fees"])
        trades[key] = {
            "realized_pnl": realized, "fees": fees, "net_pnl": realized - fees,
            "entry_qty": sum((Decimal(r["qty"]) for r in rows if r["action"] in ENTRY),
                             Decimal(0)),
            "exit_qty": sum((Decimal(r["qty"]) for r in rows if r["action"] in EXIT),
                            Decimal(0)),
            "cost_basis": sum((Decimal(r["qty"]) * Decimal(r["price"]) for r in rows
                               if r["action"] in ENTRY), Decimal(0)),
            "proceeds": sum((Decimal(r["qty"]) * Decimal(r["price"]) for r in rows
                             if r["action"] in EXIT), Decimal(0)),
            "legs": len(rows), "opened_at": min(_as_time(r["ts"]) for r in rows),
        }
        t = trades[key]
        if rows[0]["market"] == "spot":
            # a spot trade: the cost basis its legs moved, as the fold says (a BUY's cost
            # added, a SELL's cost removed from the units sold)
            t["cost_basis"] = sum((Decimal(r["cost_basis"]) for r in rows), Decimal(0))
    ref["trades"] = trades
    ref["fills"] = {(e["account_id"], e["event_id"]): (Decimal(e["qty"]), Decimal(e["price"]),
                                                        Decimal(e.get("fee") or "0"))
                    for e in events if e["kind"] == "fill"}
    ref["counts"] = counts
    return ref


def _as_time(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(dt.UTC)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _read_parquet(path: Path, kind: str) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    assert table.schema.equals(export.parquet_schema(export.KINDS[kind]))
    for name, typ in export.KINDS[kind].columns:
        field = table.schema.field(name)
        if typ == export.DECIMAL:
            assert field.type == pa.decimal128(38, 18), name
        if typ == export.TIME:
            assert field.type == pa.timestamp("us", tz="UTC"), name
    return list(table.to_pylist())


def _dec(value: Any) -> Decimal:
    """A cell as Decimal: CSV and JSON lines give text, Parquet gives Decimal; never a float."""
    assert not isinstance(value, float), value
    if isinstance(value, str):
        assert not SCIENTIFIC.match(value), f"scientific notation: {value!r}"
        assert value == export.plain(Decimal(value)), f"not trimmed plainly: {value!r}"
    return Decimal(value)


def _time(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        assert value.tzinfo is not None
        return value
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$", value), value
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _export(p: Pipeline, tmp: Path, kind: str, fmt: str, *extra: str) -> list[dict[str, Any]]:
    out = tmp / f"{kind}.{fmt}"
    assert export.export_main([kind, "--format", fmt, "--out", str(out), *extra],
                              client=p.client) == 0
    if fmt == "csv":
        with open(out, encoding="utf-8", newline="") as fh:
            header = fh.readline()
        assert header.rstrip("\r\n").split(",") == [n for n, _ in export.KINDS[kind].columns]
        return _read_csv(out)
    if fmt == "jsonl":
        return _read_jsonl(out)
    return _read_parquet(out, kind)


def test_export_round_trips_csv_parquet_jsonl_against_the_fold(
        pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = pipeline
    events = venue_only(generate_events(1_400, 8, seed=41, spot_accounts=2))[:1_000]
    ref = _reference(events)
    p.start_sink()
    p.start_worker()
    p.produce(events)
    expected = expected_rows(events, ref["counts"])
    p.wait_for(expected)
    assert ref["trades"] and ref["cash_flows"] and ref["balances"] and ref["fills"]
    # Small pages: the export must walk many offsets and still get every row once.
    monkeypatch.setattr(export, "PAGE_ROWS", 97)

    for fmt in ("csv", "jsonl", "parquet"):
        trades = _export(p, tmp_path, "trades", fmt)
        got = {(r["account_id"], r["trade_id"]): r for r in trades}
        assert len(got) == len(trades) == len(ref["trades"]), fmt
        for key, want in ref["trades"].items():
            row = got[key]
            for name in ("realized_pnl", "fees", "net_pnl", "entry_qty", "exit_qty",
                         "cost_basis", "proceeds"):
                assert _dec(row[name]) == want[name], (fmt, key, name, row[name], want[name])
            assert int(row["legs"]) == want["legs"], (fmt, key)
            assert _time(row["opened_at"]) == want["opened_at"], (fmt, key)
            units_in = want["entry_qty"] or want["exit_qty"]
            if units_in and (want["entry_qty"] or row["market"] == "spot"):
                assert _dec(row["avg_entry_price"]) == (
                    want["cost_basis"] / units_in).quantize(Decimal("1E-18"))

        flows = _export(p, tmp_path, "cash-flows", fmt)
        got_flows = {(r["account_id"], r["event_id"]): r for r in flows}
        assert len(got_flows) == len(flows) == len(ref["cash_flows"]), fmt
        for key, (amount, value) in ref["cash_flows"].items():
            assert _dec(got_flows[key]["amount"]) == amount, (fmt, key)
            assert _dec(got_flows[key]["value"]) == value, (fmt, key)

        snaps = _export(p, tmp_path, "snapshots", fmt)
        got_snaps = {(r["account_id"], r["event_id"]): r for r in snaps}
        assert len(got_snaps) == len(snaps) == len(ref["snapshots"]), fmt
        for key, (capital, equity, status) in ref["snapshots"].items():
            assert _dec(got_snaps[key]["capital"]) == capital, (fmt, key)
            assert _dec(got_snaps[key]["equity"]) == equity, (fmt, key)
            assert got_snaps[key]["reconcile_status"] == status, (fmt, key)
            _time(got_snaps[key]["ts"])

        fills = _export(p, tmp_path, "fills", fmt)
        got_fills = {(r["account_id"], r["event_id"]): r for r in fills}
        assert len(got_fills) == len(fills) == len(ref["fills"]), fmt
        for key, (qty, price, fee) in ref["fills"].items():
            assert (_dec(got_fills[key]["qty"]), _dec(got_fills[key]["price"]),
                    _dec(got_fills[key]["fee"] or "0")) == (qty, price, fee), (fmt, key)

        balances = _export(p, tmp_path, "balances", fmt)
        got_bal = {(r["account_id"], r["asset"]): r for r in balances}
        assert set(got_bal) == set(ref["balances"]), fmt
        for key, (total, avg_cost) in ref["balances"].items():
            assert (_dec(got_bal[key]["total"]), _dec(got_bal[key]["avg_cost"])) == (
                total, avg_cost), (fmt, key)

    # One account and a time range: only its rows, only trades opened inside the range.
    account = sorted({a for a, _ in ref["trades"]})[0]
    opened = sorted(t["opened_at"] for (a, _), t in ref["trades"].items() if a == account)
    since = opened[len(opened) // 2]
    rows = _export(p, tmp_path, "trades", "jsonl", "--account", account, "--since",
                   since.isoformat())
    want = {k for k, t in ref["trades"].items() if k[0] == account and t["opened_at"] >= since}
    assert {(r["account_id"], r["trade_id"]) for r in rows} == want and want


def test_export_command_writes_csv_to_standard_output(pipeline: Pipeline) -> None:
    """The installed command, as a user runs it: header, ISO times, plain decimals."""
    p = pipeline
    events = venue_only(generate_events(300, 2, seed=43))[:200]
    ref = _reference(events)
    p.start_sink()
    p.start_worker()
    p.produce(events)
    p.wait_for(expected_rows(events, ref["counts"]))
    env = {**p.env, "PYTHONPATH": str(PROJECT_ROOT)}
    out = subprocess.run([sys.executable, "-m", "streams.cli", "export", "cash-flows"],
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(out.stdout.splitlines()))
    assert {(r["account_id"], r["event_id"]): _dec(r["amount"]) for r in rows} == {
        k: a for k, (a, _) in ref["cash_flows"].items()}
    assert f"{len(rows)} cash-flows rows" in out.stderr
    bad = subprocess.run([sys.executable, "-m", "streams.cli", "export", "fills", "--format",
                          "parquet"], env=env, capture_output=True, text=True, timeout=60,
                         check=False)
    assert bad.returncode == 2 and "--out" in bad.stderr
