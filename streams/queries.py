"""Portfolio queries (LEDGER B10) over one account's state, as JSON-ready documents.

Owns: the answers to ``equity``, ``positions``, ``position``, ``exposure``,
``trades``, ``fees``, ``cash-flows`` and ``snapshots`` for one
``AccountState`` valued at a marks mapping under a ``LedgerConfig``; the
parsing of their parameters from text (HTTP query strings) and a plain-text
table of any answer (``--table``). The worker's HTTP pages and
``twinledger portfolio --file`` both call ``run_query``, so the live answer
and the offline one are the same function of the same state.

Must not touch: Faust, Kafka, ClickHouse, files or clocks (callers bring the
state and the marks), and booking rules: every figure is read from the state
or computed the way ``streams.ledger.summary`` computes it. Nothing here
mutates a state.

Conventions of every answer:

- amounts are plain decimal strings (``numbers.plain``), never floats or
  exponent form, without trailing zeros: a mark read from Kafka carries the
  wire's 18 places (``130.000000000000000000``) where a file's mark has
  none, and the same amount prints the same either way, so the worker and
  ``--file`` agree to the character; arithmetic runs under ``LEDGER_CONTEXT``;
- each answer starts with ``account_id``, ``event_seq`` (the last applied
  event) and ``base_currency`` (what every value and PnL figure is in);
- lists are oldest first (trades in opening order, cash flows and snapshots
  in event order); ``limit`` keeps the most recent N of them;
- a price that is unknown is ``null`` (``mark_price``), never a silent 0,
  and such an asset is listed as ``unvalued`` (LEDGER B4).

The live worker answers from the history its state keeps (the last
``max_closed_trades`` trades, ``max_cash_flows`` cash flows and
``max_portfolio_snapshots`` snapshots, see ``LedgerConfig``); the offline
fold keeps everything. ClickHouse keeps every row of all three.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from streams.exceptions import AccountNotFound, PositionNotFound, QueryError
from streams.ledger import AccountState, LedgerConfig, spot
from streams.ledger.fold import position_marks
from streams.ledger.numbers import D0, LEDGER_CONTEXT, mark_ts, plain, q18
from streams.ledger.reconcile import explain
from streams.reporttext import explain_result

#: query name -> the parameters it takes (beyond the account)
PARAMS: dict[str, tuple[str, ...]] = {
    "equity": ("as_of",),
    "positions": ("as_of",),
    "position": ("symbol", "as_of"),
    "exposure": ("as_of",),
    "trades": ("pair", "limit", "include_manual", "since", "until"),
    "fees": ("include_manual",),
    "cash-flows": ("limit", "since", "until"),
    "snapshots": ("limit", "since", "until"),
    "performance": ("include_manual",),
}
QUERIES = tuple(PARAMS)
#: query -> its worker page under ``/accounts/{account}`` (served by ``streams.app``)
PAGES = {
    "equity": "/equity",
    "positions": "/positions",
    "position": "/positions/{symbol}",
    "exposure": "/exposure",
    "trades": "/trades",
    "fees": "/fees",
    "cash-flows": "/cash-flows",
    "snapshots": "/snapshots",
    "performance": "/performance",
}

FLOW_FIELDS = ("event_id", "ts", "flow", "asset", "amount", "value", "currency", "price")
SNAPSHOT_FIELDS = ("event_id", "bucket_start", "ts", "equity", "realized_pnl", "fees",
                   "unrealized_pnl", "cash_flows", "drift")
_FLOW_AMOUNTS = ("amount", "value", "price")
_SNAPSHOT_AMOUNTS = ("equity", "realized_pnl", "fees", "unrealized_pnl", "cash_flows")


def _amounts(row: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """A state row (amounts kept as strings) with its amounts printed like every other."""
    for name in names:
        row[name] = _opt(row[name])
    return row


def _n(x: Decimal | str) -> str:
    """An amount as a plain decimal string without trailing zeros (module docstring)."""
    d = x if isinstance(x, Decimal) else Decimal(x)
    return plain(d.normalize(LEDGER_CONTEXT))


def _opt(x: Decimal | str | None) -> str | None:
    return None if x is None else _n(x)


def _head(st: AccountState, config: LedgerConfig) -> dict[str, Any]:
    return {"account_id": st.account_id, "event_seq": st.event_seq,
            "base_currency": config.base_currency}


def reference_time(marks: Mapping[str, Decimal], as_of: datetime | None) -> datetime | None:
    """The time a mark's age is counted to: ``as_of``, else the newest mark's own ts.

    The queries read no clock: without ``as_of`` a mark's age is how far it
    lags the newest market data the caller holds (the worker's marks table,
    the file's last marks). None when no mark carries a time.
    """
    if as_of is not None:
        return as_of
    newest = None
    for sym in list(marks):
        ts = mark_ts(marks.get(sym))
        if ts is not None and (newest is None or ts > newest):
            newest = ts
    return newest


class _Ages:
    """Mark ages at the reference time and which are stale (``max_mark_age``)."""

    def __init__(self, marks: Mapping[str, Decimal], config: LedgerConfig,
                 as_of: datetime | None) -> None:
        self.at = reference_time(marks, as_of)
        self.limit = config.max_mark_age

    def of(self, price: Decimal | None) -> int | None:
        ts = mark_ts(price)
        if ts is None or self.at is None:
            return None
        return max(int((self.at - ts).total_seconds()), 0)

    def stale(self, age: int | None) -> bool:
        return age is not None and self.limit is not None and age > self.limit

    def fields(self, price: Decimal | None) -> dict[str, Any]:
        age = self.of(price)
        return {"mark_age_seconds": age, "mark_stale": self.stale(age)}


class _Valuation:
    """The account valued at ``marks``: equity and unrealized exactly as the account view."""

    def __init__(self, st: AccountState, marks: Mapping[str, Decimal],
                 config: LedgerConfig, as_of: datetime | None = None) -> None:
        self.ages = ages = _Ages(marks, config, as_of)
        #: valuation symbol -> age in seconds of every stale mark used
        self.stale: dict[str, int] = {}
        futures_unreal = D0
        self.futures: list[dict[str, Any]] = []
        for pos in st.positions.values():
            mark, upnl, margin = position_marks(pos, marks)
            futures_unreal += upnl
            known = marks.get(pos.symbol)
            self.futures.append({
                "symbol": pos.symbol, "market": pos.market,
                "position_side": pos.position_side, "qty": pos.qty,
                "avg_entry_price": pos.avg, "mark_price": known,
                "realized_pnl": pos.realized, "fees": pos.fees, "funding": pos.funding,
                "unrealized_pnl": upnl, "leverage": pos.leverage, "used_margin": margin,
                "entry_basis_missing": pos.basis_missing,
                "notional": q18(pos.qty * mark) if known is not None else None,
                **ages.fields(known),
            })
            if pos.qty and self.futures[-1]["mark_stale"]:
                self.stale[pos.symbol] = self.futures[-1]["mark_age_seconds"]
        self.valued = spot.valued(st, marks, config) if st.book.spot else []
        self.unrealized = futures_unreal + sum((v.unrealized for v in self.valued), D0)
        self.equity = spot.equity(st, self.valued, futures_unreal)
        self.unvalued = [v.asset for v in self.valued if v.unvalued and v.total]
        for v in self.valued:
            if v.total and v.asset != config.base_currency:
                age = ages.of(spot.price_of(v.asset, marks, config))
                if age is not None and ages.stale(age):
                    self.stale[config.valuation_symbol(v.asset)] = age
        self.stale = dict(sorted(self.stale.items()))

    def head(self) -> dict[str, Any]:
        """``as_of``, ``max_mark_age`` and ``stale_marks`` (symbol -> age in seconds)."""
        at = self.ages.at
        return {"as_of": None if at is None else at.astimezone(UTC).isoformat(),
                "max_mark_age": self.ages.limit, "stale_marks": self.stale}


def _position_row(p: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in _jsonable(p).items() if k != "notional"}


def _pair_row(symbol: str, st: AccountState, marks: Mapping[str, Decimal],
              config: LedgerConfig, ages: _Ages | None = None) -> dict[str, Any]:
    rec = dict(spot.pair_record(symbol, st, marks, config))
    pair = spot.split_symbol(symbol)
    assert pair is not None  # book.pairs holds BASE/QUOTE symbols only
    rec["mark_price"] = spot.price_of(pair[0], marks, config)  # None = no mark, not 0
    order = ("symbol", "market", "position_side", "qty", "avg_entry_price", "mark_price",
             "realized_pnl", "fees", "funding", "unrealized_pnl", "leverage", "used_margin",
             "entry_basis_missing")
    row = {k: rec[k] for k in order}
    if ages is not None:
        row.update(ages.fields(rec["mark_price"]))
    return _jsonable(row)


def _balance_row(st: AccountState, v: spot.Valued, marks: Mapping[str, Decimal],
                 config: LedgerConfig, ages: _Ages | None = None) -> dict[str, Any]:
    price = spot.price_of(v.asset, marks, config)
    return _jsonable({
        "asset": v.asset, "free": v.free, "locked": v.locked, "total": v.total,
        "avg_cost": v.avg, "cost_basis": st.book.assets[v.asset].cost,
        "mark_price": price, "value": v.value,
        "unrealized_pnl": v.unrealized, "unvalued": v.unvalued,
        "drift": v.asset in st.book.drift,
        **(ages.fields(price) if ages is not None and v.asset != config.base_currency
           else {"mark_age_seconds": None, "mark_stale": False}),
    })


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _n(x) if isinstance(x, Decimal) else x for k, x in d.items()}


def _limit(rows: list[Any], limit: int | None) -> list[Any]:
    if limit is None:
        return rows
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise QueryError(f"limit must be an integer >= 0, got {limit!r}")
    return rows[len(rows) - limit:] if limit else []


def resolve_symbol(key: str, known: set[str]) -> str:
    """``key`` itself when known; else the pair it spells, ``BASE/QUOTE``, when that is known.

    URLs cannot carry a bare ``/`` in a path segment, so ``XBT-USD`` (or
    ``XBTUSD``, ``XXBTZUSD``) stands for ``XBT/USD``. A symbol that really has
    a dash (``FET-USDT``) is found as it is first.
    """
    if key in known:
        return key
    # Any venue spelling of a spot pair (XBTUSD, XBT-USD, XXBTZUSD) names its
    # canonical BASE/QUOTE when the account knows that (issue 13).
    pair = spot.split_symbol(key)
    canonical = None if pair is None else f"{pair[0]}/{pair[1]}"
    return canonical if canonical is not None and canonical in known else key


# ------------------------------------------------------------------------------ queries


def equity(st: AccountState, marks: Mapping[str, Decimal], config: LedgerConfig,
           as_of: datetime | None = None) -> dict[str, Any]:
    """Equity and its parts (B6), the drift flag with per-asset details (B8), unvalued assets.

    ``equity`` is the holdings' value (plus futures unrealized) for a spot
    account and capital + unrealized otherwise, as in the account view.
    ``cash_flows`` is K's net cash flows (OVERSELL adjustments included).
    ``drift_assets``: asset -> derived / exchange totals, their delta and its
    value (``null`` when the asset has no mark), while a drift is active.
    ``reconcile.why``: each rule that is not OK as a sentence (rule, code,
    delta and what it means), beside the terse ``explanations``.
    ``stale_marks``: symbol -> age in seconds of every mark the valuation
    used that is older than ``max_mark_age`` at ``as_of`` (``reference_time``):
    the equity is still computed at them, and says so.
    """
    with localcontext(LEDGER_CONTEXT):
        val = _Valuation(st, marks, config, as_of)
        return {
            **_head(st, config),
            **val.head(),
            "equity": _n(val.equity),
            "realized_pnl": _n(st.k_realized),
            "fees": _n(st.k_fees),
            "funding": _n(st.k_funding),
            "net_pnl": _n(st.k_realized - st.k_fees - st.k_funding),
            "unrealized_pnl": _n(val.unrealized),
            "cash_flows": _n(st.k_cash),
            "drift": bool(st.book.drift),
            "drift_assets": {
                a: {"derived": _opt(d.derived), "exchange": _opt(d.exchange),
                    "delta": _opt(d.delta), "value": _opt(d.value)}
                for a, d in sorted(st.book.drift.items())},
            "unvalued": val.unvalued,
            "reconcile": {
                "status": st.status,
                "capital_frozen": st.status == "ERROR",
                "deltas": {r.field: _n(r.delta) for r in st.results},
                "explanations": [explain(r) for r in st.results],
                "why": [explain_result({"rule": r.rule, "code": r.code, "field": r.field,
                                        "delta": r.delta}) for r in st.results],
            },
        }


def positions(st: AccountState, marks: Mapping[str, Decimal], config: LedgerConfig,
              as_of: datetime | None = None) -> dict[str, Any]:
    """Every position and every asset balance.

    ``positions``: futures positions (``market`` as booked), then one per spot
    pair (``market: spot``: the base asset's holding and the pair's realized
    PnL and fees; two pairs with one base asset show the same holding), each
    group by symbol. ``balances``: asset -> free/locked/total, average cost,
    cost basis, mark, value, unrealized PnL, unvalued and drift flags. Every
    row has ``mark_age_seconds`` and ``mark_stale`` (``max_mark_age``).
    """
    with localcontext(LEDGER_CONTEXT):
        val = _Valuation(st, marks, config, as_of)
        rows = [_position_row(p) for p in sorted(
            val.futures, key=lambda p: (p["symbol"], p["position_side"]))]
        rows.extend(_pair_row(s, st, marks, config, val.ages) for s in sorted(st.book.pairs))
        return {
            **_head(st, config),
            **val.head(),
            "positions": rows,
            "balances": {v.asset: _balance_row(st, v, marks, config, val.ages)
                         for v in val.valued},
        }


def position(st: AccountState, marks: Mapping[str, Decimal], config: LedgerConfig,
             symbol: str, as_of: datetime | None = None) -> dict[str, Any]:
    """One position by symbol (``XBT/USD``, or ``XBT-USD``) or one asset's balance (``XBT``).

    A symbol answers ``{"kind": "position", "symbol", "positions": [...]}``
    (a list: a hedge-mode futures symbol has a LONG and a SHORT side); an
    asset answers ``{"kind": "balance", "asset", "balance": {...}}``. A
    symbol is looked up before an asset of the same name. Neither held ->
    ``PositionNotFound``. A position or asset that went to 0 is still found.
    """
    known = {p.symbol for p in st.positions.values()} | set(st.book.pairs)
    key = resolve_symbol(symbol, known)
    with localcontext(LEDGER_CONTEXT):
        if key in known:
            val = _Valuation(st, marks, config, as_of)
            rows = [_position_row(p) for p in sorted(
                (p for p in val.futures if p["symbol"] == key),
                key=lambda p: p["position_side"])]
            if key in st.book.pairs:
                rows.append(_pair_row(key, st, marks, config, val.ages))
            return {**_head(st, config), "kind": "position", "symbol": key,
                    "positions": rows}
        if symbol in st.book.assets:
            v = next(v for v in spot.valued(st, marks, config) if v.asset == symbol)
            return {**_head(st, config), "kind": "balance", "asset": symbol,
                    "balance": _balance_row(st, v, marks, config,
                                            _Ages(marks, config, as_of))}
    raise PositionNotFound(st.account_id, symbol)


def exposure(st: AccountState, marks: Mapping[str, Decimal], config: LedgerConfig,
             as_of: datetime | None = None) -> dict[str, Any]:
    """Each held asset's value and its share of equity; futures notionals likewise.

    ``share`` = value / equity, computed exactly and rounded once to 18
    decimal places, ROUND_HALF_EVEN (the ledger's one rounding rule,
    ``numbers.q18``); a share that needs fewer places keeps them (``"0.5"``).
    When equity is 0 or negative a share has no meaning: every ``share`` is
    ``null`` and ``shares_defined`` is false (no division happens). Assets
    held with no mark are listed under ``unvalued`` with value and share
    ``null``; assets held at 0 are left out. ``assets`` is sorted by value,
    largest first. ``positions``: open futures positions, notional =
    signed qty x mark (``null`` without a mark).
    """
    with localcontext(LEDGER_CONTEXT):
        val = _Valuation(st, marks, config, as_of)
        eq = val.equity
        defined = eq > 0

        def share(x: Decimal | None) -> str | None:
            return _n(q18(x / eq)) if defined and x is not None else None

        assets = []
        unvalued = []
        for v in val.valued:
            if not v.total:
                continue
            if v.unvalued:
                unvalued.append({"asset": v.asset, "total": _n(v.total), "value": None,
                                 "share": None})
            else:
                assets.append((v.value, v.asset, {
                    "asset": v.asset, "total": _n(v.total), "value": _n(v.value),
                    "share": share(v.value)}))
        assets.sort(key=lambda a: (-a[0], a[1]))
        futures = [{
            "symbol": p["symbol"], "position_side": p["position_side"], "qty": _n(p["qty"]),
            "mark_price": _opt(p["mark_price"]), "notional": _opt(p["notional"]),
            "share": share(p["notional"]),
        } for p in sorted(val.futures, key=lambda p: (p["symbol"], p["position_side"]))
            if p["qty"]]
        return {**_head(st, config), **val.head(), "equity": _n(eq),
                "shares_defined": defined,
                "assets": [a[2] for a in assets], "unvalued": unvalued, "positions": futures}


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat()


def _in_range(start: datetime, end: datetime | None, since: datetime | None,
              until: datetime | None) -> bool:
    """Whether [start, end] (end None: still open) meets [since, until)."""
    if until is not None and start >= until:
        return False
    return since is None or end is None or end >= since


def _history(kept_from: datetime | None, dropped: bool, since: datetime | None,
             ) -> dict[str, Any]:
    """``complete`` / ``history_from`` of a history the live state keeps only the tail of.

    ``complete`` is true when nothing was dropped, or when ``since`` is at or
    after the oldest item kept (``history_from``). When it is false, older
    items are in ClickHouse: ``twinledger portfolio ... --since`` reads them
    from there, as do ``twinledger report`` and ``export``.
    """
    complete = not dropped or (since is not None and kept_from is not None
                               and since >= kept_from)
    out: dict[str, Any] = {"complete": complete, "history_from": _iso(kept_from)}
    if not complete:
        out["older_history"] = ("in ClickHouse: the live state keeps only the most recent; "
                                "twinledger portfolio ... --since reads it from the sink")
    return out


def trades(st: AccountState, marks: Mapping[str, Decimal], config: LedgerConfig,
           pair: str | None = None, limit: int | None = None,
           include_manual: bool | None = None, since: datetime | None = None,
           until: datetime | None = None) -> dict[str, Any]:
    """Trade history in opening order: optionally one symbol, the most recent ``limit``.

    ``include_manual`` (default ``config.track_manual_trades``, LEDGER B7)
    decides whether ``manual`` (untagged) trades are listed; ``limit`` applies
    after the filters. A spot trade is one fill (``market: spot``, side
    ``BUY``/``SELL``); a futures trade is a lifecycle from flat to flat.
    ``pair`` may be spelled ``XBT-USD``; a pair never traded gives no rows.
    ``since``/``until``: only trades open at some time in ``[since, until)``
    (opened before ``until``, closed at or after ``since`` or still open).
    Each row has its ``opened_at``, ``closed_at``, ``holding_seconds``,
    entry and exit quantity and average price (of its priced legs).
    ``complete``/``history_from``: see ``_history`` (the live state keeps the
    last ``max_closed_trades`` closed trades).
    """
    if include_manual is None:
        include_manual = config.track_manual_trades
    all_trades = st.trades()
    if pair is not None:
        pair = resolve_symbol(pair, {t.symbol for t in all_trades} | set(st.book.pairs))
    chosen = []
    for t in all_trades:
        tag = spot.tag_of(t.strategy_tag)
        if tag == spot.MANUAL and not include_manual:
            continue
        if pair is not None and t.symbol != pair:
            continue
        if not _in_range(t.open_ts, _closed_at(t), since, until):
            continue
        chosen.append((t, tag))
    chosen = _limit(chosen, limit)
    with localcontext(LEDGER_CONTEXT):
        rows = [{
            "trade_id": t.trade_id, "symbol": t.symbol, "market": t.market, "side": t.side,
            "status": "CLOSED" if t.closed else "OPEN", "strategy_tag": tag,
            "manual": tag == spot.MANUAL, "opened_at": t.open_ts.isoformat(),
            "closed_at": _iso(_closed_at(t)),
            "holding_seconds": t.legs[-1].hold if t.closed and t.legs else None,
            **_entry_exit(t),
            "opened_by": t.open_event_id, "realized_pnl": _n(t.realized),
            "fees": _n(t.fees), "net_pnl": _n(t.realized - t.fees),
            "legs": [{"event_id": leg.event_id, "action": leg.action, "qty": _n(leg.qty),
                      "price": _n(leg.price), "pnl_leg": _n(leg.pnl),
                      "fee_leg": _n(leg.fee), "pnl_source": leg.source}
                     for leg in t.legs],
        } for t, tag in chosen]
    dropped = st.trade_count > len(all_trades)
    return {**_head(st, config), "pair": pair, "limit": limit,
            "include_manual": include_manual, "since": _iso(since), "until": _iso(until),
            **_history(all_trades[0].open_ts if all_trades else None, dropped, since),
            "count": len(rows), "trades": rows}


def _closed_at(t: Any) -> datetime | None:
    """When a closed trade closed: its opening time + its last leg's holding seconds."""
    if not t.closed:
        return None
    if not t.legs:
        return t.open_ts
    return t.open_ts + timedelta(seconds=t.legs[-1].hold)


_ENTRY = frozenset({"open", "increase"})
_EXIT = frozenset({"reduce", "close", "flip"})


def _entry_exit(t: Any) -> dict[str, str | None]:
    """Entry and exit quantity and average price (quantity-weighted over priced legs)."""
    out: dict[str, str | None] = {}
    for part, actions in (("entry", _ENTRY | {"buy"}), ("exit", _EXIT | {"sell"})):
        qty = value = priced = D0
        for leg in t.legs:
            if leg.action in actions:
                qty += leg.qty
                if leg.price:
                    value += leg.qty * leg.price
                    priced += leg.qty
        out[f"{part}_qty"] = _n(qty)
        out[f"{part}_price"] = _n(q18(value / priced)) if priced else None
    return out


def fees(st: AccountState, marks: Mapping[str, Decimal], config: LedgerConfig,
         include_manual: bool | None = None) -> dict[str, Any]:
    """Fees by asset paid (quantity and booked base-currency value), by spot pair, and total.

    ``total`` is every fee K booked (futures included); ``by_pair`` covers spot
    pairs, with the pair's realized PnL and net. ``include_manual`` (default
    ``config.track_manual_trades``, LEDGER B7): when false, what ``manual``
    (untagged) spot fills booked is left out of all three; a pair or asset
    only manual fills touched is then not listed.
    """
    book = st.book
    if include_manual is None:
        include_manual = config.track_manual_trades
    with localcontext(LEDGER_CONTEXT):
        by_asset = _without(book.fees, {} if include_manual else book.manual_fees)
        by_pair = _without(book.pairs, {} if include_manual else book.manual_pairs)
        manual_total = sum((v for _q, v in book.manual_fees.values()), D0)
        return {
            **_head(st, config),
            "include_manual": include_manual,
            "total": _n(st.k_fees if include_manual else st.k_fees - manual_total),
            "by_asset": {a: {"qty": _n(q), "value": _n(v)}
                         for a, (q, v) in sorted(by_asset.items())},
            "by_pair": {s: {"fees": _n(f), "realized_pnl": _n(r),
                            "net_pnl": _n(r - f)}
                        for s, (r, f) in sorted(by_pair.items())},
        }


def _without(total: Mapping[str, list[Decimal]], part: Mapping[str, list[Decimal]],
              ) -> dict[str, tuple[Decimal, Decimal]]:
    """``total - part`` per key (two figures each); a key that only ``part`` made is dropped."""
    out = {}
    for key, (a, b) in total.items():
        pa, pb = part.get(key, (D0, D0))
        if key in part and pa == a and pb == b:
            continue
        out[key] = (a - pa, b - pb)
    return out


def _ts_in(text: str, since: datetime | None, until: datetime | None) -> bool:
    t = datetime.fromisoformat(text)
    return (since is None or t >= since) and (until is None or t < until)


def _kept(rows: list[list[Any]], cap: int | None, ts_at: int, since: datetime | None,
          ) -> dict[str, Any]:
    """``_history`` of a capped list in state: full at its cap = older rows may be gone."""
    first = datetime.fromisoformat(rows[0][ts_at]) if rows else None
    return _history(first, cap is not None and len(rows) >= cap, since)


def cash_flows(st: AccountState, marks: Mapping[str, Decimal], config: LedgerConfig,
               limit: int | None = None, since: datetime | None = None,
               until: datetime | None = None) -> dict[str, Any]:
    """Recent cash flows (B5), oldest first, and ``net``: K's net cash flows in total.

    ``value`` is the base-currency value booked (an inflow at its mark then,
    an outflow at its cost basis); ``price`` the mark an inflow was valued at
    (``null`` for outflows and for assets without a mark). ``since``/``until``:
    event time in ``[since, until)``. ``complete``/``history_from``: see
    ``_history`` (the live state keeps the last ``max_cash_flows``).
    """
    flows = st.book.flows
    rows = _limit([_amounts(dict(zip(FLOW_FIELDS, r, strict=True)), _FLOW_AMOUNTS)
                   for r in flows if _ts_in(r[1], since, until)], limit)
    return {**_head(st, config), "net": _n(st.k_cash), "limit": limit,
            "since": _iso(since), "until": _iso(until),
            **_kept(flows, config.max_cash_flows, 1, since),
            "count": len(rows), "flows": rows}


def snapshots(st: AccountState, marks: Mapping[str, Decimal], config: LedgerConfig,
              limit: int | None = None, since: datetime | None = None,
              until: datetime | None = None) -> dict[str, Any]:
    """Recent portfolio snapshots (B9), oldest first: the state after the first event of
    each ``interval_seconds`` event-time interval. ``since``/``until``: the interval
    start in ``[since, until)``. ``complete``/``history_from``: see ``_history``
    (the live state keeps the last ``max_portfolio_snapshots``)."""
    snaps = st.book.snaps
    rows = _limit([_amounts(dict(zip(SNAPSHOT_FIELDS, r, strict=True)), _SNAPSHOT_AMOUNTS)
                   for r in snaps if _ts_in(r[1], since, until)], limit)
    return {**_head(st, config), "interval_seconds": config.snapshot_interval_seconds,
            "limit": limit, "since": _iso(since), "until": _iso(until),
            **_kept(snaps, config.max_portfolio_snapshots, 1, since),
            "count": len(rows), "snapshots": rows}


def _drawdown(points: list[Decimal]) -> tuple[Decimal, Decimal]:
    """(largest fall from a running peak, that peak) over a curve; (0, first) when none."""
    peak = points[0]
    worst = D0
    worst_peak = peak
    for x in points:
        if x > peak:
            peak = x
        if peak - x > worst:
            worst = peak - x
            worst_peak = peak
    return worst, worst_peak


def performance(st: AccountState, marks: Mapping[str, Decimal], config: LedgerConfig,
                include_manual: bool | None = None) -> dict[str, Any]:
    """Basic performance statistics of the account from the history its state keeps.

    - Counted trades: closed futures trades, and spot trades that realized
      something (a sale, or a purchase paid in another asset that realized a
      gain or loss); a purchase for the base currency realizes nothing, it is
      not a round trip (its fee stays in ``net_pnl``). ``manual`` trades are
      left out unless ``include_manual`` (default ``track_manual_trades``).
    - A trade's result is its net PnL (realized - its fees): a win above 0, a
      loss below. ``win_rate`` = wins / counted trades; ``profit_factor`` =
      sum of wins / |sum of losses| (``null`` without a loss);
      ``average_win`` / ``average_loss`` (``null`` without one).
    - ``net_pnl`` = realized - fees - funding + unrealized (every trade: K's
      sums); ``capital_in`` = the starting capital + net cash flows (what was
      put in); ``return`` = net_pnl / capital_in (``null`` when capital_in
      <= 0): a return net of cash flows, not time-weighted.
    - ``max_drawdown``: the largest fall of the PnL curve net of cash flows
      from a running peak. The curve is the portfolio snapshots' equity -
      cash flows (spot) or the cumulative net PnL after each counted trade
      (futures), starting at 0, then the current net_pnl;
      ``max_drawdown_share`` = that fall / (capital_in + the peak).
    - ``complete`` is false when the state no longer holds every trade the
      account made (the live worker keeps ``max_closed_trades``):
      ``trades_in_state`` of ``trade_count``; ClickHouse holds them all.

    Fractions are exact (rounded once to 18 places).
    """
    if include_manual is None:
        include_manual = config.track_manual_trades
    with localcontext(LEDGER_CONTEXT):
        val = _Valuation(st, marks, config)
        kept = st.trades()
        results: list[Decimal] = []
        for t in kept:
            if not t.closed:
                continue
            if spot.tag_of(t.strategy_tag) == spot.MANUAL and not include_manual:
                continue
            if t.market == "spot" and t.side != "SELL" and not t.realized:
                continue
            results.append(t.realized - t.fees)
        wins = [x for x in results if x > 0]
        losses = [x for x in results if x < 0]
        won = sum(wins, D0)
        lost = sum(losses, D0)
        net = st.k_realized - st.k_fees - st.k_funding + val.unrealized
        capital_in = st.seed + st.k_cash
        if st.book.snaps:
            curve = [D0] + [Decimal(r[3]) - Decimal(r[7]) for r in st.book.snaps]
        else:
            curve = [D0]
            for x in results:
                curve.append(curve[-1] + x)
        curve.append(net)
        dd, peak = _drawdown(curve)

        def frac(a: Decimal, b: Decimal) -> str | None:
            return _n(q18(a / b)) if b > 0 else None

        return {
            **_head(st, config),
            "include_manual": include_manual,
            "complete": len(kept) == st.trade_count,
            "trades_in_state": len(kept), "trade_count": st.trade_count,
            "trades_counted": len(results), "wins": len(wins), "losses": len(losses),
            "win_rate": frac(Decimal(len(wins)), Decimal(len(results))),
            "profit_factor": frac(won, -lost),
            "average_win": _n(q18(won / len(wins))) if wins else None,
            "average_loss": _n(q18(lost / len(losses))) if losses else None,
            "gross_wins": _n(won), "gross_losses": _n(lost),
            "net_pnl": _n(net), "capital_in": _n(capital_in),
            "return": frac(net, capital_in),
            "max_drawdown": _n(dd),
            "max_drawdown_share": frac(dd, capital_in + peak) if dd else
            ("0" if capital_in + peak > 0 else None),
        }


_FUNCTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "equity": equity, "positions": positions, "position": position, "exposure": exposure,
    "trades": trades, "fees": fees, "cash-flows": cash_flows, "snapshots": snapshots,
    "performance": performance,
}


def run_query(name: str, state: AccountState | None, account: str,
              marks: Mapping[str, Decimal], config: LedgerConfig, **params: Any,
              ) -> dict[str, Any]:
    """Answer query ``name`` for ``account``; ``state`` None -> ``AccountNotFound``.

    ``params`` are the query's typed parameters (``PARAMS``); anything else
    is a ``QueryError``.
    """
    if name not in _FUNCTIONS:
        raise QueryError(f"unknown query {name!r}; one of {', '.join(QUERIES)}")
    extra = sorted(set(params) - set(PARAMS[name]))
    if extra:
        raise QueryError(f"{name} takes no parameter {', '.join(extra)}")
    if state is None:
        raise AccountNotFound(account)
    return _FUNCTIONS[name](state, marks, config, **params)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


#: Bounds of a query parameter's text and of ``limit``.
MAX_PARAM_CHARS = 256
MAX_QUERY_LIMIT = 100_000


def parse_time(key: str, value: str) -> datetime:
    """An ISO-8601 time parameter (``Z`` or an offset; a naive one is UTC) -> aware UTC."""
    if not 1 <= len(value) <= 40:
        raise QueryError(f"{key} must be an ISO-8601 time of at most 40 characters")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise QueryError(f"{key} is not an ISO-8601 time, got {value[:40]!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC)


def parse_params(name: str, raw: Mapping[str, str]) -> dict[str, Any]:
    """Typed parameters of query ``name`` from text (an HTTP query string).

    ``limit``: an integer >= 0; ``include_manual``: true/false (also 1/0,
    yes/no, on/off); ``pair``: a symbol; ``as_of``, ``since``, ``until``:
    ISO-8601 times (``parse_time``). An unknown, malformed or repeated
    parameter is a ``QueryError`` (HTTP 400).
    """
    allowed = set(PARAMS.get(name, ())) - {"symbol"}
    out: dict[str, Any] = {}
    for key, value in raw.items():  # a multidict (aiohttp's query) yields repeats
        if key in out:
            raise QueryError(f"parameter {key!r} given twice")
        if key not in allowed:
            raise QueryError(f"unknown parameter {key!r} for {name}"
                             + (f"; it takes {', '.join(sorted(allowed))}" if allowed else ""))
        if len(value) > MAX_PARAM_CHARS:
            raise QueryError(f"{key} is longer than {MAX_PARAM_CHARS} characters")
        if key == "limit":
            if not value.isdigit() or not value.isascii() or len(value) > 6:
                raise QueryError(f"limit must be an integer from 0 to {MAX_QUERY_LIMIT}, "
                                 f"got {value[:20]!r}")
            if int(value) > MAX_QUERY_LIMIT:
                raise QueryError(f"limit must be at most {MAX_QUERY_LIMIT}")
            out[key] = int(value)
        elif key in ("as_of", "since", "until"):
            out[key] = parse_time(key, value)
        elif key == "include_manual":
            low = value.lower()
            if low not in _TRUE | _FALSE:
                raise QueryError(f"include_manual must be true or false, got {value!r}")
            out[key] = low in _TRUE
        else:
            if not value:
                raise QueryError(f"{key} must not be empty")
            out[key] = value
    return out


# ------------------------------------------------------------------------------ tables


def render_table(doc: Mapping[str, Any]) -> str:
    """A readable text form of any query answer (``twinledger portfolio --table``).

    Scalars become ``name: value`` lines, nested mappings ``name.key: value``
    lines (``reconcile.deltas.capital  494``); a list of rows or a mapping of
    name -> row becomes a titled, aligned table (numbers right-aligned, nested
    lists summarised by their length); ``null`` prints as ``-``. A ``share``
    (of equity), a win rate, a return or a drawdown share prints as a
    percentage with two decimals, a profit factor with two decimals (the JSON
    keeps the exact fraction). The exposure answer's ``positions`` (futures notionals)
    is titled ``futures positions``, so a spot account does not read as
    holding none.
    """
    pairs: list[tuple[str, str]] = []
    tables: list[tuple[str, list[dict[str, Any]]]] = []
    titles = {"positions": "futures positions"} if "shares_defined" in doc else {}

    def scalars(key: str, value: Mapping[str, Any]) -> None:
        if not value:
            pairs.append((key, "(none)"))
        for k, v in value.items():
            if isinstance(v, Mapping) and v:
                scalars(f"{key}.{k}", v)
            else:
                pairs.append((f"{key}.{k}", _cell(v)))

    for key, value in doc.items():
        title = titles.get(key, key)
        if isinstance(value, list) and value and all(isinstance(r, Mapping) for r in value):
            tables.append((title, [dict(r) for r in value]))
        elif isinstance(value, Mapping) and value and all(
                isinstance(r, Mapping) for r in value.values()):
            # rows already naming their key (balances[asset]["asset"]) need no key column
            named = all(k in r.values() for k, r in value.items())
            tables.append((title, [dict(r) if named else {"": k, **r}
                                   for k, r in value.items()]))
        elif isinstance(value, Mapping):
            scalars(title, value)
        elif isinstance(value, list):
            pairs.append((title, ", ".join(_cell(v) for v in value) or "(none)"))
        else:
            pairs.append((title, _cell(_rounded(key, value))))
    width = max((len(k) for k, _ in pairs), default=0)
    out = [f"{k:<{width}}  {v}" for k, v in pairs]
    for title, rows in tables:
        out.append("")
        out.append(f"{title} ({len(rows)})")
        out.extend(_grid([{k: _rounded(k, v) for k, v in r.items()} for r in rows]))
    return "\n".join(out) + "\n"


#: fractions a table shows as percentages, ratios it rounds to 2 places (exact in JSON)
_PERCENTS = frozenset({"share", "win_rate", "return", "max_drawdown_share"})
_RATIOS = frozenset({"profit_factor"})


def _rounded(key: str, v: Any) -> Any:
    if key in _PERCENTS:
        return _percent(v)
    if key in _RATIOS and isinstance(v, str):
        with localcontext(LEDGER_CONTEXT):
            return f"{Decimal(v).quantize(Decimal('0.01')):f}"
    return v


def _percent(v: Any) -> Any:
    """A share (an exact fraction as text) as a percentage with two decimals: ``45.67%``."""
    if v is None:
        return None
    with localcontext(LEDGER_CONTEXT):
        return f"{(Decimal(v) * 100).quantize(Decimal('0.01')):f}%"


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return f"[{len(v)}]" if any(isinstance(x, Mapping | list) for x in v) else \
            ",".join(_cell(x) for x in v)
    if isinstance(v, Mapping):
        return f"{{{len(v)}}}"
    return str(v)


def _numeric(s: str) -> bool:
    s = s[:-1] if s.endswith("%") else s
    try:
        Decimal(s)
    except ArithmeticError:
        return False
    return s not in ("", "-") and not s.isalpha()


def _grid(rows: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    right = [all(_numeric(row[i]) or row[i] == "-" for row in cells) for i in range(len(cols))]

    def fmt(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w)
                         for v, w, r in zip(values, widths, right, strict=True)).rstrip()

    return [fmt(cols), fmt(["-" * w for w in widths]), *(fmt(row) for row in cells)]
