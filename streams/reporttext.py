"""The text of ``twinledger report``: what a trader reads, without doing arithmetic.

Owns: turning the rows of the sink's named read queries into per-trade
records (``trades_from_legs``), the reconcile explanation sentences
(``explain_result``) and the report's text (``format_accounts``). Must not
touch: HTTP (``streams.ops`` reads the rows), booking rules or the fold.

Conventions of the text (``--json`` keeps every figure exact):

- money (equity, PnL, fees, margin) rounded to cents with thousands
  separators; quantities and prices exact, without trailing zeros;
- shares of equity as percentages with two decimals;
- times in UTC, ``YYYY-MM-DD HH:MM:SS``; durations as ``2h 29m 05s``;
- a position's side is ``long``/``short`` (futures, from the sign of its
  quantity or its hedge side) or ``spot``, never the venue term ``BOTH``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

D0 = Decimal(0)
CENT = Decimal("0.01")
ENTRY_ACTIONS = frozenset({"open", "increase"})
EXIT_ACTIONS = frozenset({"reduce", "close", "flip"})


# ------------------------------------------------------------------------------ numbers


def dec(x: Any) -> Decimal:
    """A figure from a row (string, number or None) as a Decimal; None and junk -> 0."""
    if x is None or x == "":
        return D0
    if isinstance(x, Decimal):
        return x
    try:
        return Decimal(str(x))
    except InvalidOperation:
        return D0


def money(x: Any, sign: bool = False) -> str:
    """Cents with thousands separators (``50,577.02``); ``sign`` adds ``+`` to gains."""
    d = dec(x).quantize(CENT, ROUND_HALF_EVEN)
    if not d:
        d = abs(d)  # no "-0.00"
    return format(d, "+,.2f" if sign else ",.2f")


def num(x: Any) -> str:
    """A quantity or price exactly, without trailing zeros, with thousands separators."""
    d = dec(x)
    if not d:
        return "0"
    d = d.normalize()
    return format(d, ",f")


def pct(part: Any, whole: Any) -> str:
    """``part`` as a share of ``whole`` in percent with two decimals; ``-`` when undefined."""
    w = dec(whole)
    if w <= 0:
        return "-"
    return format((dec(part) * 100 / w).quantize(CENT, ROUND_HALF_EVEN), ",f") + "%"


def when(x: Any) -> str:
    """An event time as ``YYYY-MM-DD HH:MM:SS`` (UTC); ``-`` when absent."""
    t = parse_time(x)
    return "-" if t is None else t.strftime("%Y-%m-%d %H:%M:%S")


def parse_time(x: Any) -> dt.datetime | None:
    if x is None or x == "":
        return None
    if isinstance(x, dt.datetime):
        t = x
    else:
        try:
            t = dt.datetime.fromisoformat(str(x).replace("Z", "+00:00"))
        except ValueError:
            return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC)


def duration(seconds: float | int | None) -> str:
    """``1d 2h 03m``, ``2h 29m 05s``, ``4m 10s``, ``12s``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = max(int(seconds), 0)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h}h {m:02d}m"
    if h:
        return f"{h}h {m:02d}m {s:02d}s"
    if m:
        return f"{m}m {s:02d}s"
    return f"{s}s"


def truthy(x: Any) -> bool:
    return x is True or x == 1 or (isinstance(x, str) and x.lower() in ("true", "1"))


def json_list(x: Any) -> list[Any]:
    """A JSON list column (``positions``, ``balances``, ``results``); [] when unreadable."""
    if isinstance(x, list):
        return x
    if isinstance(x, str) and x:
        try:
            value = json.loads(x)
        except ValueError:
            return []
        return value if isinstance(value, list) else []
    return []


_STALE = re.compile(r"(\S+) (\d+)s old")


def stale_ages(detail: str) -> dict[str, int]:
    """symbol -> age in seconds from a ``STALE_MARK`` anomaly's detail."""
    return {sym: int(age) for sym, age in _STALE.findall(detail or "")}


# ------------------------------------------------------------------------------- trades


def trades_from_legs(legs: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per account, one record per trade from its trade events (``trade_legs`` rows).

    A record has the trade's open and close times, entry and exit quantity
    and average price (the quantity-weighted price of its priced entry and
    exit legs), realized PnL (its last ``cumulative_pnl``), fees (its last
    ``trade_fees``), net PnL and duration (close - open, or the last leg's
    ``holding_seconds``). ``settle`` events move PnL, not quantity. Records
    are sorted by open time (then by their first event).
    """
    trades: dict[tuple[str, str], dict[str, Any]] = {}
    for leg in legs:
        key = (leg["account_id"], leg["trade_id"])
        t = trades.get(key)
        ts = parse_time(leg.get("ts"))
        seq = int(leg.get("event_seq") or 0)
        if t is None:
            t = trades[key] = {
                "account_id": leg["account_id"], "trade_id": leg["trade_id"],
                "symbol": leg.get("symbol"), "market": leg.get("market") or "",
                "side": leg.get("side"), "position_side": leg.get("position_side"),
                "strategy_tag": leg.get("strategy_tag") or "",
                "opened_at": ts, "closed_at": None, "first_seq": seq, "last_seq": -1,
                "entry_qty": D0, "entry_value": D0, "entry_priced": D0,
                "exit_qty": D0, "exit_value": D0, "exit_priced": D0,
                "realized_pnl": D0, "fees": D0, "holding_seconds": None, "status": "OPEN",
                "legs": 0, "flags": [],
            }
        t["legs"] += 1
        if ts is not None and (t["opened_at"] is None or ts < t["opened_at"]):
            t["opened_at"] = ts
        t["first_seq"] = min(t["first_seq"], seq)
        action = leg.get("action") or ""
        qty = abs(dec(leg.get("qty")))
        price = dec(leg.get("price"))
        if action in ENTRY_ACTIONS or action in ("buy", "sell"):
            part = "entry" if action != "sell" or t["market"] != "spot" else "exit"
        elif action in EXIT_ACTIONS:
            part = "exit"
        else:
            part = ""
        if part:
            t[f"{part}_qty"] += qty
            if price:
                t[f"{part}_value"] += qty * price
                t[f"{part}_priced"] += qty
        if action in ("close", "flip", "buy", "sell"):
            t["status"] = "CLOSED"
            t["closed_at"] = ts
        if seq >= t["last_seq"]:
            t["last_seq"] = seq
            t["realized_pnl"] = dec(leg.get("cumulative_pnl"))
            t["fees"] = dec(leg.get("trade_fees"))
            hold = leg.get("holding_seconds")
            if hold is not None and action != "settle":
                t["holding_seconds"] = int(hold)
        for flag in leg.get("flags") or ():
            if flag not in t["flags"]:
                t["flags"].append(flag)
    out: dict[str, list[dict[str, Any]]] = {}
    for t in trades.values():
        for part in ("entry", "exit"):
            priced = t.pop(f"{part}_priced")
            value = t.pop(f"{part}_value")
            t[f"{part}_price"] = (value / priced).quantize(Decimal("1e-18")).normalize() \
                if priced else None
        t["net_pnl"] = t["realized_pnl"] - t["fees"]
        if t["market"] == "spot":
            t["holding_seconds"] = None  # a spot fill is a trade of its own: no lifetime
        elif t["closed_at"] is not None and t["opened_at"] is not None:
            t["holding_seconds"] = int((t["closed_at"] - t["opened_at"]).total_seconds())
        out.setdefault(t["account_id"], []).append(t)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    for rows in out.values():
        rows.sort(key=lambda r: (r["opened_at"] or epoch, r.pop("first_seq"), r["trade_id"]))
        for r in rows:
            r.pop("last_seq", None)
    return out


# ---------------------------------------------------------------------------- reconcile

_RULE_WHAT = {
    "R1": "capital vs the exchange wallet",
    "R2": "a trade's realized PnL vs the exchange's settlement",
    "R3": "position quantity vs the exchange's",
    "R4": "position value at our mark vs the exchange's mark",
    "R5": "used margin vs the exchange's",
    "R6": "open positions vs the exchange's",
    "B8": "asset balance vs the exchange's",
}


def explain_result(r: Mapping[str, Any]) -> str:
    """One reconcile result (rule, status, code, field, delta) as a sentence a trader reads."""
    rule = str(r.get("rule", ""))
    code = str(r.get("code", ""))
    field = str(r.get("field", ""))
    delta = dec(r.get("delta"))
    size = abs(delta)
    more = "more" if delta > 0 else "less"
    if code in ("CAPITAL_MISMATCH", "UNSETTLED_FEE"):
        where = "above" if delta > 0 else "below"
        text = (f"the ledger's capital (seed + realized - fees - funding + cash flows) is "
                f"{money(size)} {where} the wallet balance the exchange reported")
        text += ("; within the pending-fee bound: fees the exchange has not settled yet"
                 if code == "UNSETTLED_FEE" else
                 "; more than unsettled fees explain, so capital is frozen until a wallet "
                 "balance or a correction brings them together")
    elif code in ("REALIZED_MISMATCH", "LOT_STEP_ROUNDING"):
        text = (f"trade {field}: our realized PnL estimate is {money(size)} {more} than the "
                "exchange settled")
        text += ("; within the lot-step rounding bound" if code == "LOT_STEP_ROUNDING" else "")
    elif code == "POSITION_QTY_MISMATCH":
        sym = field.rsplit(".", 1)[0]
        text = (f"the ledger holds {num(size)} {more} of {sym} than the exchange reports "
                "(a fill missing on one side)")
    elif code in ("MARK_PRICE_STALENESS", "MARK_MISMATCH"):
        sym = field.rsplit(".", 1)[0]
        text = (f"{sym}: the position is worth {money(size)} {more} at our mark than at the "
                "exchange's mark")
        text += ("; within the staleness band: one of the marks is a little old"
                 if code == "MARK_PRICE_STALENESS" else "")
    elif code in ("MARGIN_MISMATCH", "LEVERAGE_ROUNDING"):
        text = f"our used margin is {money(size)} {more} than the exchange's"
        text += "; within the leverage-rounding band" if code == "LEVERAGE_ROUNDING" else ""
    elif code == "POSITION_COUNT_MISMATCH":
        n = int(size)
        text = (f"the ledger has {n} {more if delta > 0 else 'fewer'} open position"
                f"{'s' if n != 1 else ''} than the exchange reports")
    elif code == "DRIFT":
        asset = field.split(":", 1)[-1]
        text = (f"the {asset} balance derived from fills and cash flows is {num(size)} "
                f"{more} than the exchange reports")
    else:
        text = f"{field} differs by {num(delta)}"
    what = _RULE_WHAT.get(rule, rule)
    return f"{rule} {code} ({what}): delta {num(delta)} - {text}"


# ------------------------------------------------------------------------------- tables


def _grid(header: list[str], rows: list[list[str]], indent: str = "    ",
          left: int = 1) -> list[str]:
    """An aligned table: the first ``left`` columns left-aligned, the others right-aligned."""
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i])
              for i in range(len(header))]
    last = len(header) - 1
    text_last = header[last] in ("", "strategy", "reconcile")  # a note reads left-aligned

    def fmt(cells: list[str]) -> str:
        return indent + "  ".join(c.ljust(w) if i < left or (i == last and text_last)
                                  else c.rjust(w)
                                  for i, (c, w) in enumerate(zip(cells, widths, strict=True))
                                  ).rstrip()

    return [fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def position_side(p: Mapping[str, Any]) -> str:
    """``spot``, ``long``, ``short`` or ``flat``: never the venue term ``BOTH``."""
    if p.get("market") == "spot":
        return "spot"
    side = str(p.get("position_side") or "")
    if side in ("LONG", "SHORT"):
        return side.lower()
    q = dec(p.get("qty"))
    return "long" if q > 0 else "short" if q < 0 else "flat"


def _is_spot(a: Mapping[str, Any]) -> bool:
    return bool(a.get("asset_balances")) or any(
        p.get("market") == "spot" for p in json_list(a.get("positions")))


def _stale_note(symbol: str, stale: Mapping[str, Any]) -> str:
    """``STALE mark, 1h 00m 02s old`` when ``symbol`` (or an asset's pair) was valued stale."""
    age = stale.get(symbol)
    if age is None:
        age = next((a for s, a in stale.items() if s.split("/")[0] == symbol), None)
    return "" if age is None else f"STALE mark, {duration(int(dec(age)))} old"


def _equity_lines(a: Mapping[str, Any], spot: bool) -> list[str]:
    eq = dec(a.get("equity"))
    cap = dec(a.get("capital"))
    k = dec(a.get("k_capital"))
    real = dec(a.get("realized_pnl"))
    fees = dec(a.get("fees"))
    fund = dec(a.get("funding"))
    cash = dec(a.get("net_cash_flows"))
    unreal = dec(a.get("unrealized_pnl"))
    parts = (f"realized {money(real, True)} - fees {money(fees)} - funding {money(fund)} "
             f"+ cash flows {money(cash, True)}")
    if spot:
        total = real - fees - fund + cash + unreal
        line = f"  equity   {money(eq)} = {parts} + unrealized {money(unreal, True)}"
        if total != eq:
            line += f"  (differs by {money(eq - total, True)}: see reconcile)"
        return [line]
    seed = k - real + fees + fund - cash
    source = {"e_anchored": "the exchange wallet balance", "k_bridged":
              "the last wallet balance moved by PnL since", "seed": "the starting capital"
              }.get(str(a.get("capital_source")), str(a.get("capital_source")))
    lines = [f"  equity   {money(eq)} = capital {money(cap)} + unrealized {money(unreal, True)}"]
    if cap == k:
        lines.append(f"  capital  {money(cap)} = start {money(seed)} + {parts}"
                     f"   (capital is {source})")
    else:
        gap = k - cap
        lines.append(f"  capital  {money(cap)}  ({source})")
        lines.append(f"  ledger   {money(k)} = start {money(seed)} + {parts}"
                     f"   ({money(abs(gap))} {'above' if gap > 0 else 'below'} the capital)")
    return lines


def _reconcile_lines(a: Mapping[str, Any]) -> list[str]:
    status = str(a.get("reconcile_status") or "OK")
    frozen = truthy(a.get("capital_frozen"))
    rec = a.get("reconcile") or {}
    results = [r for r in json_list(rec.get("results")) if isinstance(r, Mapping)]
    head = f"  reconcile {status}"
    if frozen:
        head += " - capital FROZEN (trading on this account should stop until it clears)"
    elif status == "OK":
        head += " - the ledger agrees with everything the exchange reported"
    elif status == "WARN":
        head += " - capital not frozen: a difference within its tolerance band, or a drift"
    lines = [head]
    if status != "OK" and not results:
        lines.append("    (no reconcile results in the range read; widen --since)")
    for r in results:
        lines.append(f"    {r.get('status', '')} {explain_result(r)}")
    return lines


def _position_lines(a: Mapping[str, Any]) -> list[str]:
    rows = []
    for p in json_list(a.get("positions")):
        if not isinstance(p, Mapping) or not dec(p.get("qty")):
            continue
        spot = p.get("market") == "spot"
        mark = p.get("mark_price")
        qty = dec(p.get("qty"))
        rows.append([
            str(p.get("symbol")), position_side(p), num(qty), num(p.get("avg_entry_price")),
            num(mark) if dec(mark) else "no mark",
            money(abs(qty) * dec(mark)) if dec(mark) else "-",
            money(p.get("unrealized_pnl"), True),
            "-" if spot else f"{num(p.get('leverage'))}x",
            "-" if spot else money(p.get("used_margin")),
            money(p.get("realized_pnl"), True),
            _stale_note(str(p.get("symbol")), a.get("stale_marks") or {}),
        ])
    if not rows:
        return ["  positions: none open"]
    return ["  positions", *_grid(["symbol", "side", "qty", "avg entry", "mark", "notional",
                                   "unrealized", "leverage", "used margin", "realized", ""],
                                  rows, left=2)]


def _balance_lines(a: Mapping[str, Any]) -> list[str]:
    bals = a.get("asset_balances") or []
    if not bals:
        return []
    eq = a.get("equity")
    rows = []
    for b in bals:
        value = dec(b.get("value"))
        exch = b.get("exchange_total")
        note = []
        if truthy(b.get("unvalued")):
            note.append("UNVALUED (no mark)")
        if truthy(b.get("drift")):
            note.append(f"DRIFT: exchange {num(exch)}")
        stale = _stale_note(str(b.get("asset")), a.get("stale_marks") or {})
        if stale:
            note.append(stale)
        rows.append([str(b.get("asset")), num(b.get("total")), num(b.get("avg_cost")),
                     money(value), money(value - dec(b.get("cost_basis")), True),
                     pct(value, eq), "-" if exch is None else num(exch), ", ".join(note)])
    return ["  balances", *_grid(["asset", "total", "avg cost", "value", "unrealized",
                                  "of equity", "exchange", ""], rows)]


def _trade_lines(a: Mapping[str, Any]) -> list[str]:
    trades = a.get("trades") or []
    if not trades:
        return ["  trades: none in the range read"]
    futures = [t for t in trades if t.get("market") != "spot"]
    spot = [t for t in trades if t.get("market") == "spot"]
    out: list[str] = []
    if futures:
        rows = [[when(t.get("opened_at")), when(t.get("closed_at")) if t.get("closed_at")
                 else "open", str(t.get("symbol")),
                 {"LONG": "long", "SHORT": "short"}.get(str(t.get("side")), str(t.get("side"))),
                 num(t.get("entry_qty")), _price(t.get("entry_price")),
                 num(t.get("exit_qty")) if dec(t.get("exit_qty")) else "-",
                 _price(t.get("exit_price")), money(t.get("realized_pnl"), True),
                 money(t.get("fees")), money(t.get("net_pnl"), True),
                 duration(t.get("holding_seconds")) if t.get("closed_at") else "-",
                 _trade_note(t)]
                for t in futures]
        out += [f"  trades ({len(futures)}, by time)",
                *_grid(["opened", "closed", "symbol", "side", "qty", "entry", "exit qty",
                        "exit", "realized", "fees", "net", "held", ""], rows, left=4)]
    if spot:
        rows = [[when(t.get("opened_at")), str(t.get("symbol")), str(t.get("side")),
                 num(t.get("entry_qty") or t.get("exit_qty")),
                 _price(t.get("entry_price") or t.get("exit_price")),
                 money(t.get("realized_pnl"), True), money(t.get("fees")),
                 money(t.get("net_pnl"), True), str(t.get("strategy_tag") or "manual")]
                for t in spot]
        out += [f"  spot trades ({len(spot)}, by time)",
                *_grid(["time", "pair", "side", "qty", "price", "realized", "fees", "net",
                        "strategy"], rows, left=3)]
    return out


def _price(x: Any) -> str:
    return "-" if x is None or not dec(x) else num(x)


def _trade_note(t: Mapping[str, Any]) -> str:
    flags = t.get("flags") or []
    return ", ".join(str(f) for f in flags)


def _cash_flow_lines(a: Mapping[str, Any]) -> list[str]:
    flows = a.get("cash_flows")
    if not isinstance(flows, list) or not flows:
        return []
    rows = [[when(f.get("ts")), str(f.get("flow")), num(f.get("amount")), str(f.get("asset")),
             money(f.get("value")) + f" {f.get('currency') or ''}".rstrip()] for f in flows]
    return [f"  cash flows ({len(rows)})",
            *_grid(["time", "flow", "amount", "asset", "value"], rows, left=2)]


def _snapshot_lines(a: Mapping[str, Any]) -> list[str]:
    snaps = a.get("portfolio_snapshots") or []
    if not snaps:
        return []
    rows = [[when(s.get("bucket_start")), money(s.get("equity")),
             money(s.get("realized_pnl"), True), money(s.get("fees")),
             money(s.get("unrealized_pnl"), True), money(s.get("cash_flows"), True),
             "DRIFT " + ",".join(s.get("drift_assets") or []) if truthy(s.get("drift")) else ""]
            for s in snaps]
    return [f"  equity over time ({len(rows)} interval snapshots)",
            *_grid(["interval from", "equity", "realized", "fees", "unrealized",
                    "cash flows", ""], rows)]


def format_accounts(accounts: Sequence[Mapping[str, Any]], base_currency: str = "USD") -> str:
    """The report: an overview table, a totals line, then each account in detail."""
    if not accounts:
        return "no accounts in ClickHouse for this selection"
    lines = ["accounts (money rounded to cents; --json has every figure exact)"]
    rows = []
    tot = {k: D0 for k in ("equity", "unrealized_pnl", "realized_pnl", "fees", "funding",
                           "net_cash_flows")}
    frozen = 0
    for a in accounts:
        for k in tot:
            tot[k] += dec(a.get(k))
        frozen += truthy(a.get("capital_frozen"))
        status = str(a.get("reconcile_status") or "")
        if truthy(a.get("capital_frozen")):
            status += " FROZEN"
        rows.append([str(a.get("account_id")), "spot" if _is_spot(a) else "futures",
                     money(a.get("equity")), money(a.get("unrealized_pnl"), True),
                     money(a.get("realized_pnl"), True), money(a.get("fees")),
                     money(a.get("funding")), money(a.get("net_cash_flows"), True), status])
    rows.append([f"TOTAL {len(accounts)} accounts", base_currency,
                 money(tot["equity"]), money(tot["unrealized_pnl"], True),
                 money(tot["realized_pnl"], True), money(tot["fees"]), money(tot["funding"]),
                 money(tot["net_cash_flows"], True), f"{frozen} frozen"])
    grid = _grid(["account", "type", "equity", "unrealized", "realized", "fees", "funding",
                  "cash flows", "reconcile"], rows, indent="  ", left=2)
    lines += [*grid[:-1], grid[1], grid[-1]]  # a rule above the total
    lines.append(f"  (the total adds every account's own currency at par: {base_currency} "
                 "for spot, the margin asset, e.g. USDT, for futures)")
    for a in accounts:
        spot = _is_spot(a)
        lines.append("")
        lines.append(f"account {a.get('account_id')}  ({'spot' if spot else 'futures'}; "
                     f"last event #{a.get('event_seq')} at {when(a.get('ts'))} UTC)")
        lines += _equity_lines(a, spot)
        lines += _reconcile_lines(a)
        stale = a.get("stale_marks") or {}
        if stale:
            lines.append("  STALE marks (valued, but older than max_mark_age): " + ", ".join(
                f"{s} {duration(int(dec(age)))} old" for s, age in sorted(stale.items())))
        lines += _position_lines(a)
        lines += _balance_lines(a)
        if a.get("drift") and a["drift"].get("active"):
            lines.append(f"  drift ACTIVE: {a['drift']['detail']}")
        elif a.get("drift"):
            lines.append("  drift cleared: exchange balances match the derived ones")
        lines += _trade_lines(a)
        lines += _cash_flow_lines(a)
        lines += _snapshot_lines(a)
    return "\n".join(lines)
