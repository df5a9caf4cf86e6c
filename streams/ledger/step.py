"""One event being booked: the state, the event, and the outputs it makes.

Owns: the per-event collector the booking rules write through (anomalies with
their numbered ids, trade legs' records, holding time, the K/capital bridge of
a realized amount) and the id of a trade (A13). Must not touch: the booking rules themselves (``fold``
for futures, ``spot`` for spot portfolios) — both book through a ``Step``, and
it lives apart from both so that neither imports the other back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from decimal import Decimal

from .config import LedgerConfig
from .events import Event
from .numbers import D0
from .state import AccountState, Output, Position, Trade


def trade_id_for(account_id: str, symbol: str, position_side: str, side: str,
                 opening_event_id: str) -> str:
    """A13: the trade id derives from account, symbol, side and the opening event."""
    raw = "\x1f".join((account_id, symbol, position_side, side, opening_event_id))
    return hashlib.blake2b(raw.encode(), digest_size=10).hexdigest()


class Step:
    """Collects the outputs of one event while it is booked."""

    __slots__ = ("st", "ev", "cfg", "marks", "outputs", "codes", "r2", "touched", "spot_pairs")

    def __init__(self, st: AccountState, ev: Event, cfg: LedgerConfig,
                 marks: Mapping[str, Decimal] | None = None) -> None:
        self.st = st
        self.ev = ev
        self.cfg = cfg
        self.marks: Mapping[str, Decimal] = {} if marks is None else marks
        # spot pairs this event booked (listed in the snapshot)
        self.spot_pairs: list[str] = []
        self.outputs: list[Output] = []
        self.codes: dict[str, int] = {}
        # R2 inputs of this event: (field, kernel estimate, exchange figure)
        self.r2: list[tuple[str, Decimal, Decimal]] = []
        # positions this event changed (listed in the snapshot even when flat)
        self.touched: list[Position] = []

    def touch(self, pos: Position) -> None:
        """``pos`` changed: the snapshot lists it, its record and line are made afresh."""
        if pos not in self.touched:
            self.touched.append(pos)
            pos.changed()

    def anomaly(self, code: str, severity: str, detail: str) -> None:
        n = self.codes.get(code, 0) + 1
        self.codes[code] = n
        ev = self.ev
        st = self.st
        eid = f"{ev.event_id}:{code}" if n == 1 else f"{ev.event_id}:{code}:{n}"
        self.outputs.append(Output("anomaly", st.account_id, {
            "event_id": eid, "account_id": st.account_id, "source_event_id": ev.event_id,
            "event_seq": st.event_seq, "ts": ev.ts, "code": code, "severity": severity,
            "detail": detail,
        }))
        st.add_anomaly({"event_id": ev.event_id, "code": code, "detail": detail},
                       self.cfg.max_anomalies)

    def hold(self, trade: Trade) -> int:
        """A13: holding seconds >= 0; negative clock skew is clamped and reported."""
        secs = (self.ev.ts - trade.open_ts).total_seconds()
        if secs < 0:
            self.anomaly("CLOCK_SKEW", "WARN",
                         f"trade {trade.trade_id}: event ts is {-secs}s before the trade opened;"
                         " holding_seconds clamped to 0")
            return 0
        return int(secs)

    def trade_event(self, trade: Trade, pos: Position, action: str, qty: Decimal,
                    price: Decimal, pnl: Decimal, fee: Decimal, source: str,
                    exch: Decimal | None, hold: int, flags: list[str]) -> None:
        ev = self.ev
        st = self.st
        self.outputs.append(Output("trade", st.account_id, {
            "event_id": f"{trade.trade_id}:{ev.event_id}:{action}",
            "account_id": st.account_id, "trade_id": trade.trade_id,
            "source_event_id": ev.event_id, "event_seq": st.event_seq, "ts": ev.ts,
            "symbol": trade.symbol, "position_side": trade.position_side, "side": trade.side,
            "action": action, "market": trade.market, "qty": qty, "price": price,
            "position_qty": pos.qty if pos.trade is trade else D0,
            "avg_entry_price": pos.avg, "pnl_leg": pnl, "fee_leg": fee,
            "cumulative_pnl": trade.realized, "trade_fees": trade.fees, "pnl_source": source,
            "exchange_realized_pnl": exch, "holding_seconds": hold, "flags": list(flags),
            "strategy_tag": trade.strategy_tag, "cost_basis": None,  # spot legs only
        }))

    def book(self, realized: Decimal, cost: Decimal) -> None:
        """Move K and bridge published capital by realized - cost (A10/A11)."""
        st = self.st
        if realized:
            st.k_realized += realized
        delta = realized - cost
        if delta:
            st.capital += delta
            st.capital_source = "k_bridged"
