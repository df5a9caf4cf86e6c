"""The read-only dashboard the sink serves: ``GET /dashboard`` and ``/dashboard/<account>``.

Owns: the HTML of both pages and the server-rendered SVG equity curve. Must
not touch: SQL or connections — every figure comes from a named read query
(``sinks.readqueries``) through the sink's :class:`sinks.http.ReadService`,
with its limits and its one read slot, given here as ``read(name, params)``.

No script runs: the pages are HTML with inline CSS and inline SVG, and the
sink sends them with a Content-Security-Policy that forbids scripts and any
other origin (no CDN). Every value that comes from the data (account ids come
from topics) is escaped with :func:`html.escape` before it reaches HTML or
SVG, and percent-encoded whole in links. Money is shown rounded to cents with
thousands separators (display only: exact values are in ``/q`` and
``twinledger export``); SVG coordinates are floats computed from Decimals.

Access is the sink endpoint's: no token configured (a loopback bind) means no
token; with ``TWINLEDGER_HTTP_TOKEN`` the pages want ``Authorization: Bearer``
like every endpoint but ``/health`` (put a reverse proxy that adds the header
in front of a browser). No token is ever taken from the URL, where it would
end up in logs and history.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

Read = Callable[[str, Mapping[str, Any]], Mapping[str, Any]]

#: Snapshots drawn on an account's curve (the most recent ones).
CURVE_POINTS = 2_000
#: Up to this many snapshots each gets a dot (with its time and equity as a tooltip).
MARKED_POINTS = 200
RECENT_TRADES = 25
RECENT_RECONCILES = 25
ACCOUNTS = 1_000

#: Headers of every dashboard answer: nothing runs, nothing loads from elsewhere.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "img-src data:; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1b1f24;
background:#f6f7f9}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
a{color:#0b5cad;text-decoration:none}a:hover{text-decoration:underline}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002;min-width:50%}
th,td{padding:5px 10px;border-bottom:1px solid #e4e7eb;text-align:left;white-space:nowrap}
th{background:#eef1f4;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600}.bad{color:#c62828;font-weight:600}
.warn{color:#a15c00;font-weight:600}.muted{color:#6a737d}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#fff;padding:10px 14px;
box-shadow:0 1px 2px #0002;min-width:140px}.card b{display:block;font-size:18px}
svg{background:#fff;box-shadow:0 1px 2px #0002}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _dec(value: Any) -> Decimal | None:
    if value is None or value == "" or isinstance(value, bool | float):
        return None
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def money(value: Any) -> str:
    """``50577.0212`` -> ``50,577.02`` (display); not a number -> its text."""
    d = _dec(value)
    if d is None:
        return esc(value)
    return esc(f"{d.quantize(Decimal('0.01'), ROUND_HALF_EVEN):,.2f}")


def qty(value: Any) -> str:
    """A quantity or a price as plain text, trailing zeros trimmed."""
    d = _dec(value)
    if d is None:
        return esc(value)
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return esc("0" if text in ("-0", "") else text)


def when(value: Any) -> str:
    """An ISO time as ``2024-05-06 09:01:00`` (UTC)."""
    text = str(value or "")
    return esc(text.replace("T", " ").replace("+00:00", "").replace("Z", "")[:19])


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


def status_html(status: Any, frozen: Any) -> str:
    s = str(status or "")
    cls = "ok" if s == "OK" else ("bad" if s in ("ERROR", "FROZEN") else "warn")
    out = f'<span class="{cls}">{esc(s or "-")}</span>'
    if _truthy(frozen):
        out += ' <span class="bad">frozen</span>'
    return out


def account_href(account: str) -> str:
    return esc("/dashboard/" + urllib.parse.quote(account, safe=""))


def _page(title: str, body: str) -> bytes:
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title>"
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<style>{_CSS}</style></head><body>{body}</body></html>\n").encode()


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int],
           empty: str) -> str:
    if not rows:
        return f'<p class="muted">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                         for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ------------------------------------------------------------------------------ pages


def index(read: Read) -> tuple[int, bytes]:
    doc = read("accounts", {"limit": ACCOUNTS})
    rows = []
    for a in doc["rows"]:
        account = str(a["account_id"])
        rows.append([
            f'<a href="{account_href(account)}">{esc(account)}</a>',
            money(a.get("last_capital")), money(a.get("last_equity")),
            money(a.get("last_realized_pnl")), money(a.get("last_fees")),
            status_html(a.get("last_reconcile_status"), a.get("last_capital_frozen")),
            esc(a.get("last_event_seq")),
        ])
    note = (f'<p class="warn">only the first {ACCOUNTS} accounts are listed</p>'
            if doc.get("truncated") else "")
    body = ("<h1>twinledger accounts</h1>"
            f'<p class="muted">{len(rows)} account(s), latest snapshot of each, read from '
            "ClickHouse through the sink's named queries. Money rounded to cents.</p>"
            + _table(["account", "capital", "equity", "realized PnL", "fees", "reconcile",
                      "event seq"], rows, {1, 2, 3, 4, 6}, "no account has a snapshot yet")
            + note)
    return 200, _page("twinledger accounts", body)


def curve_svg(points: Sequence[Mapping[str, Any]], width: int = 900, height: int = 260
              ) -> str:
    """The equity (and capital) curve of snapshots in time order: one polyline point each.

    x is the snapshot's time (its index when every snapshot has the same time or
    a time is unreadable), y its value; the axis labels give the range and times.
    """
    if not points:
        return '<p class="muted">no snapshots yet</p>'
    equity = [_dec(p.get("equity")) or Decimal(0) for p in points]
    capital = [_dec(p.get("capital")) or Decimal(0) for p in points]
    lo, hi = min(equity + capital), max(equity + capital)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    left, right, top, bottom = 90, 16, 28, 34
    w, h = width - left - right, height - top - bottom
    n = len(points)

    times = [_epoch(p.get("ts")) for p in points]
    known = [t for t in times if t is not None]
    t0, t1 = (min(known), max(known)) if len(known) == n else (0.0, 0.0)

    def xy(i: int, v: Decimal) -> str:
        if t1 > t0:
            x = left + w * ((times[i] or t0) - t0) / (t1 - t0)
        else:
            x = left + (w * i / (n - 1) if n > 1 else w / 2)
        y = top + h - float((v - lo) / (hi - lo)) * h
        return f"{x:.1f},{y:.1f}"

    eq = " ".join(xy(i, v) for i, v in enumerate(equity))
    # A dot per snapshot while they are few enough to tell apart.
    dots = "".join(
        f'<circle cx="{c.split(",")[0]}" cy="{c.split(",")[1]}" r="2.5" fill="#0b5cad">'
        f"<title>{when(p.get('ts'))}  equity {money(p.get('equity'))}</title></circle>"
        for c, p in zip(eq.split(), points, strict=True)) if n <= MARKED_POINTS else ""
    cap = " ".join(xy(i, v) for i, v in enumerate(capital))
    first, last = points[0].get("ts"), points[-1].get("ts")
    grid = "".join(
        f'<line x1="{left}" x2="{left + w}" y1="{top + h * k / 4:.1f}" y2="{top + h * k / 4:.1f}"'
        ' stroke="#e4e7eb"/>'
        f'<text x="{left - 6}" y="{top + h * k / 4 + 4:.1f}" text-anchor="end" '
        f'font-size="11" fill="#6a737d">{money(hi - (hi - lo) * k / 4)}</text>'
        for k in range(5))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="equity curve">'
        f"{grid}"
        f'<polyline class="capital" data-points="{n}" fill="none" stroke="#9aa5b1" '
        f'stroke-width="1.5" stroke-dasharray="4 3" points="{cap}"/>'
        f'<polyline class="equity" data-points="{n}" fill="none" stroke="#0b5cad" '
        f'stroke-width="2" points="{eq}"/>'
        f"{dots}"
        f'<text x="{left}" y="{height - 10}" font-size="11" fill="#6a737d">{when(first)}</text>'
        f'<text x="{left + w}" y="{height - 10}" font-size="11" fill="#6a737d" '
        f'text-anchor="end">{when(last)}</text>'
        f'<text x="{left + w}" y="14" font-size="11" text-anchor="end">'
        '<tspan fill="#0b5cad">&#9473; equity</tspan>  '
        '<tspan fill="#6a737d">&#9476; capital</tspan></text>'
        "</svg>")


def _epoch(value: Any) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _positions(raw: Any) -> list[dict[str, Any]]:
    if isinstance(raw, list):
        return [p for p in raw if isinstance(p, dict)]
    try:
        doc = json.loads(str(raw or "[]"))
    except ValueError:
        return []
    return [p for p in doc if isinstance(p, dict)] if isinstance(doc, list) else []


def account_page(read: Read, account: str) -> tuple[int, bytes]:
    acc = read("accounts", {"account": account, "limit": 1})["rows"]
    if not acc:
        body = (f'<p><a href="/dashboard">&larr; accounts</a></p><h1>{esc(account)}</h1>'
                '<p class="bad">no snapshot of this account in ClickHouse</p>')
        return 404, _page(f"{account} - not found", body)
    a = acc[0]
    curve = read("equity_curve", {"account": account, "limit": CURVE_POINTS})
    points = list(reversed(curve["rows"]))
    trades = read("recent_trades", {"account": account, "limit": RECENT_TRADES})["rows"]
    recs = read("recent_reconciles", {"account": account, "limit": RECENT_RECONCILES})["rows"]

    cards = "".join(
        f'<div class="card"><span class="muted">{esc(label)}</span><b>{value}</b></div>'
        for label, value in (
            ("capital", money(a.get("last_capital"))), ("equity", money(a.get("last_equity"))),
            ("realized PnL", money(a.get("last_realized_pnl"))),
            ("fees", money(a.get("last_fees"))),
            ("reconcile", status_html(a.get("last_reconcile_status"),
                                      a.get("last_capital_frozen")))))
    positions = [p for p in _positions(a.get("last_positions"))
                 if (_dec(p.get("qty")) or Decimal(0)) != 0]
    pos_rows = [[esc(p.get("symbol")), esc(p.get("market", "")),
                 esc(_side(p)), qty(p.get("qty")), qty(p.get("avg_entry_price")),
                 qty(p.get("mark_price")), money(p.get("unrealized_pnl")),
                 money(p.get("realized_pnl")), qty(p.get("leverage"))] for p in positions]
    trade_rows = [[when(t.get("opened_at")), esc(t.get("trade_symbol")),
                   esc(t.get("trade_side")), esc(t.get("last_action")),
                   qty(t.get("entry_qty")), qty(t.get("exit_qty")),
                   money(t.get("trade_realized_pnl")), money(t.get("trade_total_fees"))]
                  for t in trades]
    rec_rows = [[when(r.get("ts")), esc(r.get("previous_status")) + " &rarr; "
                 + status_html(r.get("status"), r.get("capital_frozen")), _why(r)]
                for r in recs]
    more = (f'<p class="muted">the curve shows the latest {CURVE_POINTS} snapshots</p>'
            if curve.get("truncated") else "")
    body = (
        '<p><a href="/dashboard">&larr; accounts</a></p>'
        f"<h1>{esc(account)}</h1>"
        f'<p class="muted">latest snapshot: event {esc(a.get("last_event_seq"))}; '
        f"{len(points)} snapshot(s) on the curve</p>"
        f'<div class="cards">{cards}</div>'
        f"<h2>Equity over time</h2>{curve_svg(points)}{more}"
        "<h2>Open positions</h2>"
        + _table(["symbol", "market", "side", "qty", "avg entry", "mark", "unrealized",
                  "realized", "leverage"], pos_rows, {3, 4, 5, 6, 7, 8}, "no open position")
        + f"<h2>Recent trades (latest {RECENT_TRADES})</h2>"
        + _table(["opened", "symbol", "side", "last action", "entry qty", "exit qty",
                  "realized PnL", "fees"], trade_rows, {4, 5, 6, 7}, "no trade")
        + f"<h2>Reconcile timeline (latest {RECENT_RECONCILES})</h2>"
        + _table(["time", "status", "why"], rec_rows, set(), "no reconcile event"))
    return 200, _page(f"{account} - twinledger", body)


def _why(rec: Mapping[str, Any]) -> str:
    """The rules of a reconcile event that were not OK: rule, code, field and delta."""
    lines = []
    for r in _positions(rec.get("results")):
        if str(r.get("status", "OK")) == "OK":
            continue
        delta = r.get("delta")
        lines.append(f"{esc(r.get('rule'))} {esc(r.get('code'))}: {esc(r.get('field'))}"
                     + (f" off by {qty(delta)}" if delta not in (None, "") else ""))
    if not lines:
        lines = [esc(x) for x in (rec.get("explanations") or [])]
    return "<br>".join(lines[:4]) or '<span class="muted">all rules OK</span>'


def _side(p: Mapping[str, Any]) -> str:
    side = str(p.get("position_side") or "")
    if side in ("", "BOTH"):
        q = _dec(p.get("qty")) or Decimal(0)
        return "LONG" if q > 0 else "SHORT" if q < 0 else "-"
    return side


def page(path: str, read: Read) -> tuple[int, bytes]:
    """The answer of ``GET path`` for a path under ``/dashboard``: (status, HTML)."""
    rest = path[len("/dashboard"):].strip("/")
    if not rest:
        return index(read)
    return account_page(read, urllib.parse.unquote(rest))
