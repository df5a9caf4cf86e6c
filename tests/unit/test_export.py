"""``twinledger export`` without a sink: exact values, plain text, paging, the three writers."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from streams import export
from streams.exceptions import TwinledgerError


class FakeSink:
    """Answers a named query like the sink: pages of ``rows``, ``truncated`` when more remain."""

    def __init__(self, rows: list[dict[str, Any]], fail_at: int | None = None) -> None:
        self.rows = rows
        self.calls: list[dict[str, Any]] = []
        self.fail_at = fail_at

    def named(self, name: str, **params: Any) -> dict[str, Any]:
        self.calls.append({"name": name, **params})
        if self.fail_at is not None and len(self.calls) > self.fail_at:
            raise TwinledgerError("sink endpoint /q: HTTP 503")
        start, limit = params["offset"], params["limit"]
        return {"rows": self.rows[start:start + limit],
                "truncated": start + limit < len(self.rows)}


def flow(i: int, amount: str) -> dict[str, Any]:
    return {"account_id": f"acc-{i % 3}", "event_id": f"e{i}:cashflow",
            "ts": "2024-05-06T09:01:00+00:00", "flow": "deposit", "asset": "USDT",
            "amount": amount, "value": amount, "currency": "USDT", "price": None,
            "unvalued": False, "balance_after": "1E+3"}


@pytest.mark.parametrize(("raw", "text"), [
    ("1E-18", "0.000000000000000001"), ("1E+3", "1000"), ("-0.000", "0"),
    ("12345678901234567890.123456789012345678", "12345678901234567890.123456789012345678"),
    ("0.1234567890123456789", "0.123456789012345679"),  # beyond 18 places: half-even
    ("0.0000000000000000005", "0"), ("0.0000000000000000015", "0.000000000000000002"),
    ("242.7312000", "242.7312"), ("-5", "-5"),
])
def test_decimals_are_exact_and_plain(raw: str, text: str) -> None:
    assert export.plain(export.exact(raw)) == text


def test_floats_and_junk_never_pass() -> None:
    for bad in (1.5, "NaN", "Infinity", "12a"):
        with pytest.raises(export.ExportError):
            export.exact(bad)
    assert export.exact(None) is None and export.plain(None) == ""


def test_pages_walk_offsets_until_the_answer_is_not_truncated() -> None:
    sink = FakeSink([flow(i, str(i)) for i in range(25)])
    rows = export.rows_of(sink, "cash-flows", account="acc-1", since="2024-01-01",
                          page_rows=10)
    assert [r["event_id"] for r in rows] == [f"e{i}:cashflow" for i in range(25)]
    assert [c["offset"] for c in sink.calls] == [0, 10, 20]
    assert all(c["name"] == "cash_flows" and c["account"] == "acc-1" and c["limit"] == 10
               for c in sink.calls)
    assert rows[3]["amount"] == Decimal(3) and rows[0]["balance_after"] == Decimal(1000)
    assert rows[0]["ts"].isoformat() == "2024-05-06T09:01:00+00:00"


def test_csv_opens_in_a_spreadsheet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = FakeSink([flow(1, "1E-7"), flow(2, "-1234567.50")])
    out = tmp_path / "flows.csv"
    assert export.export_main(["cash-flows", "--out", str(out)], client=sink) == 0
    raw = out.read_bytes()
    assert raw.startswith(b"account_id,event_id,ts,flow,asset,amount,value,currency,price,"
                          b"unvalued,balance_after\r\n")
    rows = list(csv.DictReader(io.StringIO(raw.decode())))
    assert rows[0]["amount"] == "0.0000001" and rows[1]["amount"] == "-1234567.5"
    assert rows[0]["ts"] == "2024-05-06T09:01:00Z" and rows[0]["price"] == ""
    assert rows[0]["unvalued"] == "false" and rows[0]["balance_after"] == "1000"
    assert not list(tmp_path.glob(".*partial"))


def test_jsonl_carries_decimals_as_strings(tmp_path: Path) -> None:
    out = tmp_path / "flows.jsonl"
    assert export.export_main(["cash-flows", "--format", "jsonl", "--out", str(out)],
                              client=FakeSink([flow(1, "0.30")])) == 0
    doc = json.loads(out.read_text().splitlines()[0])
    assert doc["amount"] == "0.3" and doc["price"] is None and doc["unvalued"] is False


def test_parquet_types(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "flows.parquet"
    assert export.export_main(["cash-flows", "--format", "parquet", "--out", str(out)],
                              client=FakeSink([flow(1, "0.000000000000000001")])) == 0
    table = pq.read_table(out)
    assert table.schema.field("amount").type == pa.decimal128(38, 18)
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert table.to_pylist()[0]["amount"] == Decimal("1E-18")
    empty = tmp_path / "none.parquet"
    assert export.export_main(["fills", "--format", "parquet", "--out", str(empty)],
                              client=FakeSink([])) == 0
    assert pq.read_table(empty).num_rows == 0


def test_a_failed_export_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "flows.csv"
    with pytest.raises(TwinledgerError):
        export.export_main(["cash-flows", "--out", str(out)],
                           client=FakeSink([flow(i, "1") for i in range(30_000)], fail_at=1))
    assert not out.exists() and not list(tmp_path.iterdir())


def test_parquet_needs_an_output_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert export.export_main(["fills", "--format", "parquet"], client=FakeSink([])) == 2
    assert "--out" in capsys.readouterr().err


def test_a_trade_row_is_a_pnl_line() -> None:
    raw = {"account_id": "a", "trade_id": "t1", "trade_market": "futures",
           "trade_symbol": "FET-USDT", "trade_side": "SHORT", "trade_position_side": "BOTH",
           "trade_strategy_tag": "", "opened_at": "2024-05-06T09:01:00+00:00",
           "last_at": "2024-05-06T11:30:05+00:00", "last_action": "close", "legs": 4,
           "entry_qty": "202276", "entry_notional": "37987.4328",
           "exit_qty": "202276", "exit_notional": "37744.7016",
           "last_avg_entry_price": "0.1878", "last_position_qty": "0",
           "trade_realized_pnl": "242.7312", "trade_total_fees": "37.8661",
           "trade_holding_seconds": 8945, "pnl_sources": "kernel_estimate"}
    row = export.KINDS["trades"].convert(raw)
    assert row["status"] == "closed" and row["closed_at"] is not None
    assert row["cost_basis"] == Decimal("37987.4328") and row["proceeds"] == Decimal("37744.7016")
    assert row["avg_entry_price"] == Decimal("0.1878") and row["avg_exit_price"] == \
        Decimal("0.1866")
    assert row["net_pnl"] == Decimal("204.8651")
    still_open = export.KINDS["trades"].convert({**raw, "last_position_qty": "-1000",
                                                 "exit_qty": "0", "exit_notional": "0"})
    assert still_open["status"] == "open" and still_open["closed_at"] is None
    assert still_open["avg_exit_price"] is None


def test_a_spot_sale_carries_the_cost_of_the_units_it_sold() -> None:
    # The demo's Kraken sale: 0.2 XBT at 61000, bought at an average of 60000; the fold's
    # leg says it removed 0.2 x 60000 = 12000 of cost basis.
    raw = {"account_id": "acct-spot", "trade_id": "t3", "trade_market": "spot",
           "trade_symbol": "XBT/USD", "trade_side": "SELL", "trade_position_side": "BOTH",
           "trade_strategy_tag": "grid", "opened_at": "2024-05-06T09:03:00+00:00",
           "last_at": "2024-05-06T09:03:00+00:00", "last_action": "sell", "legs": 1,
           "entry_qty": "0", "entry_notional": "0", "exit_qty": "0.2",
           "exit_notional": "12200.0", "spot_cost_basis": "12000.000000000000000000",
           "last_avg_entry_price": "60000",
           "last_position_qty": "0.3", "trade_realized_pnl": "200.0000",
           "trade_total_fees": "6.0000", "trade_holding_seconds": 0,
           "pnl_sources": "kernel_estimate"}
    row = export.KINDS["trades"].convert(raw)
    assert row["status"] == "closed"
    assert (row["proceeds"], row["cost_basis"]) == (Decimal("12200"), Decimal("12000"))
    assert row["avg_entry_price"] == Decimal("60000")
    assert row["proceeds"] - row["cost_basis"] == row["realized_pnl"] == Decimal("200")
    assert row["net_pnl"] == Decimal("194")
    # The cost is the fold's, not proceeds - realized: a fee of 0.0001 XBT paid out of the
    # holding adds its disposal gain 0.0001 x (61000 - 60000) = 0.1 to realized (200.1)
    # and leaves the cost of the 0.2 sold at 12000.
    fee_in_xbt = export.KINDS["trades"].convert({**raw, "trade_realized_pnl": "200.1"})
    assert fee_in_xbt["cost_basis"] == Decimal("12000")
    assert fee_in_xbt["avg_entry_price"] == Decimal("60000")
    # A cross pair: 1 ETH sold for 0.05 XBT; proceeds are in XBT, the cost in USD.
    cross = export.KINDS["trades"].convert({
        **raw, "trade_symbol": "ETH/XBT", "exit_qty": "1", "exit_notional": "0.05",
        "spot_cost_basis": "2500", "trade_realized_pnl": "500"})
    assert (cross["cost_basis"], cross["avg_entry_price"]) == (Decimal("2500"),
                                                               Decimal("2500"))
    # A row written before the fold carried a cost basis: a sale's cost is unknown.
    old = export.KINDS["trades"].convert({**raw, "spot_cost_basis": None})
    assert (old["cost_basis"], old["avg_entry_price"]) == (None, None)
    # A spot purchase carries the cost of what it bought (its base-currency value).
    buy = export.KINDS["trades"].convert({
        **raw, "trade_side": "BUY", "last_action": "buy", "entry_qty": "0.5",
        "entry_notional": "30000", "exit_qty": "0", "exit_notional": "0",
        "spot_cost_basis": "30000", "trade_realized_pnl": "0", "trade_total_fees": "30"})
    assert (buy["cost_basis"], buy["avg_entry_price"], buy["proceeds"]) == (
        Decimal("30000"), Decimal("60000"), Decimal("0"))
    # bought for USDT at a USDT mark of 0.999: 30000 USDT cost 29970 USD
    usdt = export.KINDS["trades"].convert({
        **raw, "trade_symbol": "XBT/USDT", "trade_side": "BUY", "last_action": "buy",
        "entry_qty": "0.5", "entry_notional": "30000", "exit_qty": "0", "exit_notional": "0",
        "spot_cost_basis": "29970", "trade_realized_pnl": "0"})
    assert (usdt["cost_basis"], usdt["avg_entry_price"]) == (Decimal("29970"),
                                                             Decimal("59940"))
    # and an older BUY row keeps its quote amount
    old_buy = export.KINDS["trades"].convert({**raw, "trade_side": "BUY", "entry_qty": "0.5",
                                              "entry_notional": "30000", "exit_qty": "0",
                                              "exit_notional": "0", "spot_cost_basis": None})
    assert old_buy["cost_basis"] == Decimal("30000")


def test_csv_text_that_a_spreadsheet_would_run_is_written_as_text(tmp_path: Path) -> None:
    evil = {**flow(1, "-5"), "account_id": "=HYPERLINK(\"http://x\")", "event_id": "@SUM(A1)",
            "flow": "+1", "asset": "-2"}
    out = tmp_path / "f.csv"
    assert export.export_main(["cash-flows", "--out", str(out)], client=FakeSink([evil])) == 0
    row = next(csv.DictReader(io.StringIO(out.read_text())))
    assert row["account_id"] == "'=HYPERLINK(\"http://x\")" and row["event_id"] == "'@SUM(A1)"
    assert row["flow"] == "'+1" and row["asset"] == "'-2"
    assert row["amount"] == "-5"  # a negative amount is a number, not a formula
    jl = tmp_path / "f.jsonl"
    assert export.export_main(["cash-flows", "--format", "jsonl", "--out", str(jl)],
                              client=FakeSink([evil])) == 0
    assert json.loads(jl.read_text())["account_id"] == "=HYPERLINK(\"http://x\")"
