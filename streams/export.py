"""``twinledger export KIND``: trades, fills, cash flows, snapshots or balances to a file.

Owns: the exported kinds (which named read query each reads, its columns and
their types), paging through a query (``offset``), the exact conversion of
every value, and the three writers (CSV, Parquet, JSON lines). Must not
touch: ClickHouse directly (the sink owns it; every row comes through its
named read queries, :class:`streams.ops.SinkClient`) or the ledger.

Money is exact end to end: the sink answers decimals as strings, read here
as :class:`~decimal.Decimal`, rounded half-even to 18 places (the tables'
scale; only an average or a notional of more than 18 places is rounded) and
written as plain decimals in CSV (``1234.5``, never ``1.2345E+3``), as
strings in JSON lines and as ``decimal128(38, 18)`` in Parquet. Times are
ISO-8601 UTC (``2024-05-06T09:01:00Z``), ``timestamp[us, UTC]`` in Parquet.
In CSV a text cell that a spreadsheet would run as a formula (it starts with
``= + - @``, a tab or a carriage return; ids come from topics) gets a leading
apostrophe; numbers are never touched.

A trade row is a PnL report line (``trade_pnl``): one row per trade with its
whole history, chosen by its opening time. For a futures trade
``cost_basis`` is the exact sum of qty x price over the legs that open or add
to it, so ``avg_entry_price`` = cost_basis / entry_qty; ``proceeds`` likewise
over the legs that reduce, close or flip it (and a spot SELL fill's qty x
price, in the quote asset). A spot fill is a trade of its own and its
``cost_basis`` is the fold's, carried on its leg (``cost_basis`` of the trade
event), in the base currency: a BUY's cost of what it bought (its
base-currency value), a SELL's cost of the units it sold as the cost method
(weighted average or FIFO) took it out of the holding; ``avg_entry_price`` is
that cost per unit bought or sold. A spot sale's realized_pnl is its
base-currency value - that cost, plus the gain or loss of disposing of a fee
paid in an asset other than the base currency; so proceeds - cost_basis equals
realized_pnl only when the quote is the base currency and the fee is paid in
it. Legs written before the fold carried a cost basis have none: such a BUY
exports its quote amount qty x price, such a SELL an empty cost basis.
``realized_pnl`` (before fees) and ``fees`` are the ledger's, ``net_pnl`` =
realized_pnl - fees. ``avg_cost``
is the average entry (futures) or the average cost per unit of the holding
(spot) as the ledger held it after the trade's last leg. A futures trade is
closed when its position is flat; a spot fill is a closed trade of its own.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import IO, Any

from streams.exceptions import TwinledgerError

#: Rows per request: the named queries' maximum limit.
PAGE_ROWS = 10_000
_Q18 = Decimal("1E-18")

TEXT, DECIMAL, TIME, INT, BOOL = "text", "decimal", "time", "int", "bool"


class ExportError(TwinledgerError):
    """A value the sink answered that cannot be exported exactly."""


def exact(value: Any) -> Decimal | None:
    """A money value of the sink's answer as a Decimal of at most 18 places (None stays None)."""
    if value is None or value == "":
        return None
    if isinstance(value, float):  # never: the sink answers decimals as strings
        raise ExportError(f"a float reached the export: {value!r}")
    try:
        with localcontext() as ctx:
            ctx.prec = 100
            d = Decimal(str(value))
            if not d.is_finite():
                raise ExportError(f"not a finite decimal: {value!r}")
            return d.quantize(_Q18, rounding=ROUND_HALF_EVEN)
    except InvalidOperation:
        raise ExportError(f"not a decimal: {value!r}") from None


def plain(value: Decimal | None) -> str:
    """A decimal as plain text, trailing zeros trimmed: ``1234.5``, ``0``, ``-0.000001``."""
    if value is None:
        return ""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def when(value: Any) -> dt.datetime | None:
    """A time of the sink's answer (ISO-8601) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def iso(value: dt.datetime | None) -> str:
    return "" if value is None else value.isoformat().replace("+00:00", "Z")


def _bool(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


def _int(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


_CONVERT: dict[str, Callable[[Any], Any]] = {
    TEXT: lambda v: "" if v is None else str(v), DECIMAL: exact, TIME: when, INT: _int,
    BOOL: _bool}

Row = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    """One exportable kind: the named query it pages through and its typed columns."""

    name: str
    query: str
    columns: tuple[tuple[str, str], ...]
    #: the query's row -> the export's row (values still raw); identity when None
    shape: Callable[[Row], Row] | None = None

    def convert(self, raw: Row) -> Row:
        src = self.shape(raw) if self.shape else raw
        return {name: _CONVERT[typ](src.get(name)) for name, typ in self.columns}


def _trade(raw: Row) -> Row:
    """A ``trade_pnl`` row as a PnL report line (see the module docstring)."""
    entry_qty = exact(raw["entry_qty"]) or Decimal(0)
    exit_qty = exact(raw["exit_qty"]) or Decimal(0)
    cost: Decimal | None = exact(raw["entry_notional"]) or Decimal(0)
    proceeds = exact(raw["exit_notional"]) or Decimal(0)
    realized = exact(raw["trade_realized_pnl"]) or Decimal(0)
    fees = exact(raw["trade_total_fees"]) or Decimal(0)
    spot = raw["trade_market"] == "spot"
    closed = spot or (exact(raw["last_position_qty"]) or Decimal(0)) == 0
    units_in = entry_qty
    if spot:
        # the fold's cost basis of the legs: a BUY's cost added, a SELL's the cost it
        # removed from the units sold; legs written before the fold carried it have
        # none: a BUY keeps its quote amount, a sale's cost is unknown
        fold_cost = exact(raw.get("spot_cost_basis"))
        if fold_cost is not None:
            cost = fold_cost
        elif not entry_qty:
            cost = None
        units_in = entry_qty or exit_qty
    with localcontext() as ctx:
        ctx.prec = 100
        avg_in = ((cost / units_in).quantize(_Q18, ROUND_HALF_EVEN)
                  if cost is not None and units_in else None)
        avg_out = (proceeds / exit_qty).quantize(_Q18, ROUND_HALF_EVEN) if exit_qty else None
        net = realized - fees
    return {
        "account_id": raw["account_id"], "trade_id": raw["trade_id"],
        "market": raw["trade_market"], "symbol": raw["trade_symbol"], "side": raw["trade_side"],
        "position_side": raw["trade_position_side"], "status": "closed" if closed else "open",
        "opened_at": raw["opened_at"], "closed_at": raw["last_at"] if closed else None,
        "holding_seconds": raw["trade_holding_seconds"], "legs": raw["legs"],
        "entry_qty": entry_qty, "avg_entry_price": avg_in, "cost_basis": cost,
        "exit_qty": exit_qty, "avg_exit_price": avg_out, "proceeds": proceeds,
        "realized_pnl": realized, "fees": fees, "net_pnl": net,
        "avg_cost": raw["last_avg_entry_price"], "last_action": raw["last_action"],
        "pnl_source": raw["pnl_sources"], "strategy_tag": raw["trade_strategy_tag"],
    }


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("trades", "trade_pnl", (
        ("account_id", TEXT), ("trade_id", TEXT), ("market", TEXT), ("symbol", TEXT),
        ("side", TEXT), ("position_side", TEXT), ("status", TEXT), ("opened_at", TIME),
        ("closed_at", TIME), ("holding_seconds", INT), ("legs", INT), ("entry_qty", DECIMAL),
        ("avg_entry_price", DECIMAL), ("cost_basis", DECIMAL), ("exit_qty", DECIMAL),
        ("avg_exit_price", DECIMAL), ("proceeds", DECIMAL), ("realized_pnl", DECIMAL),
        ("fees", DECIMAL), ("net_pnl", DECIMAL), ("avg_cost", DECIMAL), ("last_action", TEXT),
        ("pnl_source", TEXT), ("strategy_tag", TEXT)), _trade),
    Kind("fills", "fills", (
        ("account_id", TEXT), ("event_id", TEXT), ("venue", TEXT), ("ts", TIME),
        ("symbol", TEXT), ("side", TEXT), ("position_side", TEXT), ("market", TEXT),
        ("qty", DECIMAL), ("price", DECIMAL), ("fee", DECIMAL), ("fee_asset", TEXT),
        ("leverage", DECIMAL), ("realized_pnl", DECIMAL), ("venue_order_id", TEXT),
        ("client_order_id", TEXT), ("strategy_tag", TEXT))),
    Kind("cash-flows", "cash_flows", (
        ("account_id", TEXT), ("event_id", TEXT), ("ts", TIME), ("flow", TEXT),
        ("asset", TEXT), ("amount", DECIMAL), ("value", DECIMAL), ("currency", TEXT),
        ("price", DECIMAL), ("unvalued", BOOL), ("balance_after", DECIMAL))),
    Kind("snapshots", "snapshots", (
        ("account_id", TEXT), ("event_id", TEXT), ("event_seq", INT), ("event_kind", TEXT),
        ("ts", TIME), ("capital", DECIMAL), ("capital_source", TEXT), ("k_capital", DECIMAL),
        ("equity", DECIMAL), ("peak_capital", DECIMAL), ("unrealized_pnl", DECIMAL),
        ("realized_pnl", DECIMAL), ("fees", DECIMAL), ("funding", DECIMAL),
        ("cash_flows", DECIMAL), ("reconcile_status", TEXT), ("capital_frozen", BOOL))),
    Kind("balances", "balances", (
        ("account_id", TEXT), ("asset", TEXT), ("version", INT), ("event_id", TEXT),
        ("ts", TIME), ("total", DECIMAL), ("free", DECIMAL), ("locked", DECIMAL),
        ("avg_cost", DECIMAL), ("cost_basis", DECIMAL), ("value", DECIMAL),
        ("unvalued", BOOL), ("exchange_total", DECIMAL), ("drift", BOOL))),
)}

FORMATS = ("csv", "parquet", "jsonl")


def pages(client: Any, kind: Kind, account: str | None, since: str | None,
          until: str | None, page_rows: int = PAGE_ROWS) -> Iterator[list[Row]]:
    """Every row of ``kind`` in pages, converted; ``offset`` moves on while a page is full."""
    offset = 0
    while True:
        doc = client.named(kind.query, account=account, since=since, until=until,
                           limit=page_rows, offset=offset)
        rows = list(doc["rows"])
        yield [kind.convert(r) for r in rows]
        if not doc.get("truncated") or not rows:
            return
        offset += len(rows)


def rows_of(client: Any, kind: str, account: str | None = None, since: str | None = None,
            until: str | None = None, page_rows: int = PAGE_ROWS) -> list[Row]:
    """Every row of ``kind`` (converted, exact) as a list: for tests and small exports."""
    return [r for page in pages(client, KINDS[kind], account, since, until, page_rows)
            for r in page]


# ---------------------------------------------------------------------------- writers


def _text(value: Any, typ: str) -> Any:
    if value is None:
        return None
    if typ == DECIMAL:
        return plain(value)
    if typ == TIME:
        return iso(value)
    return value


def write_csv(kind: Kind, batches: Iterator[list[Row]], out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([name for name, _ in kind.columns])
    n = 0
    for batch in batches:
        for row in batch:
            writer.writerow([_csv_cell(row[name], typ) for name, typ in kind.columns])
            n += 1
    return n


#: First characters that make a spreadsheet read a cell as a formula (CSV injection).
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any, typ: str) -> str:
    if value is None:
        return ""
    if typ == BOOL:
        return "true" if value else "false"
    text = str(_text(value, typ))
    if typ == TEXT and text.startswith(_FORMULA):
        # An id or tag comes from a topic: one that would run as a formula when the
        # file is opened is written as text (a leading apostrophe), as OWASP advises.
        return "'" + text
    return text


def write_jsonl(kind: Kind, batches: Iterator[list[Row]], out: IO[str]) -> int:
    n = 0
    for batch in batches:
        for row in batch:
            out.write(json.dumps({name: _text(row[name], typ) for name, typ in kind.columns},
                                 ensure_ascii=False) + "\n")
            n += 1
    return n


def parquet_schema(kind: Kind) -> Any:
    import pyarrow as pa

    types = {TEXT: pa.string(), DECIMAL: pa.decimal128(38, 18),
             TIME: pa.timestamp("us", tz="UTC"), INT: pa.int64(), BOOL: pa.bool_()}
    return pa.schema([pa.field(name, types[typ]) for name, typ in kind.columns])


def write_parquet(kind: Kind, batches: Iterator[list[Row]], path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema(kind)
    n = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        wrote = False
        for batch in batches:
            if not batch and wrote:
                continue
            table = pa.Table.from_pylist(batch, schema=schema)
            writer.write_table(table)
            wrote = True
            n += len(batch)
    return n


# ------------------------------------------------------------------------------- main


def export_parser() -> argparse.ArgumentParser:
    from streams.helptext import parser

    p = parser("export")
    p.add_argument("kind", choices=sorted(KINDS), metavar="KIND",
                   help="what to export: " + ", ".join(sorted(KINDS)))
    p.add_argument("--account", default="all", metavar="ID",
                   help="one account id, or 'all' (the default)")
    p.add_argument("--since", metavar="TIME",
                   help="from this ISO-8601 time on (UTC when no zone is given)")
    p.add_argument("--until", metavar="TIME", help="before this ISO-8601 time")
    p.add_argument("--format", choices=FORMATS, default="csv",
                   help="csv (the default), parquet or jsonl")
    p.add_argument("--out", metavar="FILE",
                   help="write here instead of standard output (required for parquet)")
    return p


def export_main(argv: list[str], client: Any = None) -> int:
    args = export_parser().parse_args(argv)
    if args.format == "parquet" and not args.out:
        print("twinledger export: --format parquet needs --out FILE", file=sys.stderr)
        return 2
    if client is None:
        from streams.config import load_settings
        from streams.ops import SinkClient

        client = SinkClient(load_settings())
    kind = KINDS[args.kind]
    account = None if args.account == "all" else args.account
    batches = pages(client, kind, account, args.since, args.until, PAGE_ROWS)
    write_text = write_csv if args.format == "csv" else write_jsonl
    if not args.out:
        n = write_text(kind, batches, sys.stdout)
    else:
        # Written next to the target and renamed at the end: a failed export (the sink
        # stopped, a refused parameter) leaves no half file under the name asked for.
        out = Path(args.out)
        part = out.with_name(f".{out.name}.partial")
        try:
            if args.format == "parquet":
                n = write_parquet(kind, batches, part)
            else:
                with open(part, "w", encoding="utf-8", newline="") as fh:
                    n = write_text(kind, batches, fh)
            os.replace(part, out)
        finally:
            part.unlink(missing_ok=True)
    where = args.out or "standard output"
    print(f"twinledger export: {n} {kind.name} rows to {where}", file=sys.stderr)
    return 0

