"""The account view of the fold file (FOLD_FORMAT ``accounts[<id>]``), computed from state.

Owns: ``account_summary``. Reads state and marks, mutates nothing. Must not
touch: booking rules or output records.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, localcontext
from typing import Any

from . import spot
from .config import LedgerConfig
from .fold import position_marks
from .numbers import D0, LEDGER_CONTEXT, plain
from .reconcile import explain
from .state import AccountState


def account_summary(state: AccountState, marks: Mapping[str, Decimal],
                    config: LedgerConfig, include_manual: bool | None = None,
                    ) -> dict[str, Any]:
    """The FOLD_FORMAT account object; amounts as plain decimal strings.

    Beyond the documented fields it adds ``seed``, ``realized_pnl``, ``fees``,
    ``funding``, ``cash_flows`` (the K identity, A11), ``wallet_balance``,
    ``used_margin`` and ``k_used_margin`` and, per leg, its ``action`` and
    ``exchange_realized_pnl`` (the contract allows new fields only).

    Spot accounts (LEDGER part B) also get ``balances`` (B1/B4), a position
    per traded pair (``market: spot``), one trade per spot fill (side
    ``BUY``/``SELL``), ``base_currency``, ``pnl_by_strategy`` (B7: tag ->
    realized, fees, net of its trades) and ``drift`` (B8: ``active`` and the
    per-asset details of the last balance frame). ``include_manual`` (default:
    ``config.track_manual_trades``) decides whether ``manual`` trades are in
    ``trades`` and ``pnl_by_strategy``; balances and cost basis always
    include them.
    """
    st = state
    if include_manual is None:
        include_manual = config.track_manual_trades
    with localcontext(LEDGER_CONTEXT):
        positions = []
        unreal = D0
        used = D0
        for pos in st.positions.values():
            mark, upnl, margin = position_marks(pos, marks)
            unreal += upnl
            used += margin
            positions.append({
                "symbol": pos.symbol, "position_side": pos.position_side,
                "market": pos.market, "qty": plain(pos.qty),
                "avg_entry_price": plain(pos.avg), "realized_pnl": plain(pos.realized),
                "fees": plain(pos.fees), "funding": plain(pos.funding),
                "unrealized_pnl": plain(upnl), "mark_price": plain(mark),
                "leverage": plain(pos.leverage), "used_margin": plain(margin),
                "entry_basis_missing": pos.basis_missing,
            })
        book = st.book
        balances: dict[str, Any] = {}
        vals = spot.valued(st, marks, config) if book.spot else []
        equity = spot.equity(st, vals, unreal)  # unreal is the futures' part until the loop
        for v in vals:
            balances[v.asset] = {
                "free": plain(v.free), "locked": plain(v.locked), "total": plain(v.total),
                "avg_cost": plain(v.avg), "value": plain(v.value), "unvalued": v.unvalued,
                "unrealized_pnl": plain(v.unrealized)}
            unreal += v.unrealized
        if book.spot:
            for sym in book.pairs:
                rec = spot.pair_record(sym, st, marks, config)
                positions.append({
                    k: (plain(x) if isinstance(x, Decimal) else x) for k, x in rec.items()})
        trades = []
        by_tag: dict[str, tuple[Decimal, Decimal]] = {}  # tag -> (realized, fees)
        for t in st.trades():
            tag = spot.tag_of(t.strategy_tag)
            if tag == spot.MANUAL and not include_manual:
                continue
            realized, fees = by_tag.get(tag, (D0, D0))
            by_tag[tag] = (realized + t.realized, fees + t.fees)
            trades.append({
                "trade_id": t.trade_id, "symbol": t.symbol, "position_side": t.position_side,
                "side": t.side, "status": "CLOSED" if t.closed else "OPEN",
                "realized_pnl": plain(t.realized), "fees": plain(t.fees),
                "net_pnl": plain(t.realized - t.fees), "opened_by": t.open_event_id,
                "strategy_tag": t.strategy_tag, "dropped_legs": t.dropped_legs,
                "legs": [{
                    "event_id": leg.event_id, "action": leg.action, "qty": plain(leg.qty),
                    "price": plain(leg.price), "pnl_leg": plain(leg.pnl),
                    "fee_leg": plain(leg.fee), "cumulative_pnl": plain(leg.cum),
                    "pnl_source": leg.source,
                    "exchange_realized_pnl": None if leg.exch is None else plain(leg.exch),
                    "holding_seconds": leg.hold, "flags": list(leg.flags),
                } for leg in t.legs],
            })
        deltas = {r.field: plain(r.delta) for r in st.results}  # the rules that are not OK
        return {
            "event_seq": st.event_seq,
            "capital": plain(st.capital),
            "capital_source": st.capital_source,
            "k_capital": plain(st.k_capital),
            "equity": plain(equity),
            "peak_capital": plain(st.peak_capital),
            "capital_frozen": st.status == "ERROR",
            "seed": plain(st.seed),
            "realized_pnl": plain(st.k_realized),
            "fees": plain(st.k_fees),
            "funding": plain(st.k_funding),
            "cash_flows": plain(st.k_cash),
            "unrealized_pnl": plain(unreal),
            "wallet_balance": None if st.e_wallet is None else plain(st.e_wallet),
            "used_margin": plain(st.e_used),
            "k_used_margin": plain(used),
            "reconcile": {
                "status": st.status,
                "deltas": deltas,
                "explanations": [explain(r) for r in st.results],
            },
            "positions": positions,
            "trades": trades,
            "balances": balances,
            "base_currency": config.base_currency,
            "pnl_by_strategy": {
                tag: {"realized_pnl": plain(r), "fees": plain(f), "net_pnl": plain(r - f)}
                for tag, (r, f) in sorted(by_tag.items())},
            "drift": {"active": bool(book.drift), "assets": {
                a: {"derived": d.derived, "exchange": d.exchange, "delta": d.delta,
                    "value": d.value}
                for a, d in book.drift.items()}},
            "anomalies": [dict(a) for a in st.anomalies],
        }
