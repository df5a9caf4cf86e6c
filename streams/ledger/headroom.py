"""Headroom of derived figures: can an event make the fold output a figure the wire cannot carry?

Owns: the one rule for figures the fold *derives* (capital after three huge
fundings, a notional of two 20-digit numbers, an average cost over a dust
holding): the event that would make any output figure leave decimal(38, 18)
is not booked; ``apply_event`` restores the state as it was and emits an
``OUT_OF_RANGE`` anomaly instead. Offline and in the stream the same
``apply_event`` runs, so both refuse the same event, and the sink never sees a
figure it would have to refuse. Must not touch: booking rules (``fold``,
``spot``) or I/O.

Checking every output of every event exactly would need a copy of the state
before each event (to restore it), which would double the fold's cost. So:

1. :func:`may_leave_wire` bounds, in decimal digits, every figure the event
   can produce from the magnitudes involved — the event's amounts, the
   account's sums, each position's and holding's quantity times its prices
   and marks, ratios over small divisors — plus digits for the sums of many
   terms. The state's own figures are bounded by a number kept with the state
   (``AccountState.headroom``: a full scan after a decode, then grown by each
   event's bound and tightened by a new scan when it alone would fail the
   check), so an
   ordinary event costs a look at the marks of what the account holds.
   Ordinary accounts are far below the limit and take the fast path.
2. Only when that bound does not prove the event safe does ``apply_event``
   keep the encoded state, apply the event, and check every output figure
   exactly with :func:`first_out_of_range`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .events import Balance, CashFlow, Event, Fill, Funding, Positions
from .grammar import fits_wire
from .spot import price_of
from .state import AccountState, Output

if TYPE_CHECKING:
    from .config import LedgerConfig

#: Proven-safe bound: every figure below 10**19, one digit under decimal(38,18)'s 10**20.
SAFE_DIGITS = 19


def _d(x: Decimal | None) -> int:
    """``|x| < 10 ** _d(x)`` (a negative count for |x| < 0.1; 0 for zero and None)."""
    return x.adjusted() + 1 if x else 0


def _inv(x: Decimal) -> int:
    """``|1 / x| < 10 ** _inv(x)`` for a non-zero ``x``."""
    return 1 - x.adjusted()


def _price(asset: str, marks: Mapping[str, Decimal], cfg: LedgerConfig) -> int:
    p = price_of(asset, marks, cfg)
    return _d(p) if p is not None else 0


def may_leave_wire(st: AccountState | None, ev: Event, marks: Mapping[str, Decimal],
                   cfg: LedgerConfig) -> tuple[bool, int]:
    """(not proven safe, the state's bound after the event) for ``ev`` applied to ``st``.

    The first is False when every figure ``ev`` can make the fold output
    provably fits decimal(38,18); True means "not proven", and the caller
    checks exactly. The second is what ``apply_event`` keeps as the state's
    ``headroom`` once the event is booked.
    """
    event = _event_digits(ev, marks, cfg)
    if st is None:
        return event + 3 > SAFE_DIGITS or ev.kind == "fill_settled", _pow10(event + 1)
    held, terms = _held_digits(st, marks, cfg)
    if type(ev) is Fill and ev.leverage:
        # A fill sets its leverage on the whole position it adds to: the margin of
        # what is already held, at the new leverage.
        again = _margin_digits(st, ev, marks)
        if again > held:
            held = again
    step = event if event > held else held
    # Sums over many terms and the few additions a booking makes (capital + realized
    # - fee, K - E deltas): one digit per factor of ten terms, two spare.
    room = SAFE_DIGITS - _digits_of(terms) - 2
    bound = st.headroom
    fresh = bound is None
    if bound is None:
        bound = st.headroom = _pow10(_static_digits(st))
    while True:
        # Every figure the state holds is below ``bound``; the event moves any of them
        # by less than 10 ** (step + 1) (sums, and the unit values of its acquisitions).
        after = bound + _pow10(step + 1)
        worst = _digits_of(after)
        if step > worst:
            worst = step
        if worst <= room or fresh:
            break
        # The kept bound has grown loose over many events: tighten it and look again.
        bound = st.headroom = _pow10(_static_digits(st))
        fresh = True
    # A settlement reaches into closed trades, whose figures are not scanned here.
    return worst > room or ev.kind == "fill_settled", after


_POW = [10 ** i for i in range(80)]


def _pow10(n: int) -> int:
    return _POW[n if n > 0 else 0] if n < 80 else 10 ** n


def _digits_of(n: int) -> int:
    """``n < 10 ** _digits_of(n)`` for n >= 1 (from the bit length: no str())."""
    return (n.bit_length() * 1233 >> 12) + 1


def _held_digits(st: AccountState, marks: Mapping[str, Decimal], cfg: LedgerConfig,
                 ) -> tuple[int, int]:
    """Digits of what the account holds times the current marks, and how many terms."""
    out = 0
    get = marks.get
    positions = st.positions
    for pos in positions.values():
        qty = pos.qty
        if qty:
            # unrealized (qty x (mark - avg)) and used margin (notional / leverage)
            px = pos.avg.adjusted() if pos.avg else 0
            mark = get(pos.symbol)
            if mark and mark.adjusted() > px:
                px = mark.adjusted()
            n = qty.adjusted() + (px if px > 0 else 0) + 3 - pos.leverage.adjusted()
            if n > out:
                out = n
    terms = len(positions) + 8
    eps = st.e_positions
    if eps:
        for ep in eps.values():
            mark = get(ep.symbol)
            if mark and ep.qty:
                n = ep.qty.adjusted() + mark.adjusted() + 3
                if n > out:
                    out = n
        terms += len(eps)
    assets = st.book.assets
    if assets:
        for asset, h in assets.items():
            if h.qty:
                n = _d(h.qty) + max(_price(asset, marks, cfg), 1) + 1
                if n > out:
                    out = n
        terms += len(assets) + len(st.book.pairs)
    return out, terms


def _margin_digits(st: AccountState, ev: Fill, marks: Mapping[str, Decimal]) -> int:
    """Digits of the used margin of ``ev.symbol``'s positions after ``ev`` (held + its qty,
    at the highest of average, price and mark, over the fill's leverage)."""
    out = 0
    mark = marks.get(ev.symbol)
    for pos in st.positions.values():
        if pos.symbol != ev.symbol or not pos.qty:
            continue
        px = max(pos.avg.adjusted() if pos.avg else 0, ev.price.adjusted() if ev.price else 0,
                 mark.adjusted() if mark else 0, 0)
        qty = max(pos.qty.adjusted(), ev.qty.adjusted()) + 1
        n = qty + px + 3 - ev.leverage.adjusted()
        if n > out:
            out = n
    return out


def _static_digits(st: AccountState) -> int:
    """Digits of every figure the state holds, marks aside (a full scan)."""
    big = max(_d(st.capital), _d(st.peak_capital), _d(st.seed), _d(st.k_realized),
              _d(st.k_fees), _d(st.k_funding), _d(st.k_cash), _d(st.e_wallet),
              _d(st.e_available), _d(st.e_used), _d(st.e_maint))
    for pos in st.positions.values():
        big = max(big, _d(pos.qty), _d(pos.avg), _d(pos.realized), _d(pos.fees),
                  _d(pos.funding))
        trade = pos.trade
        if trade is not None:
            big = max(big, _d(trade.realized), _d(trade.fees))
    if st.e_positions:
        for ep in st.e_positions.values():
            big = max(big, _d(ep.qty) + max(_d(ep.entry_price), _d(ep.mark_price), 1) + 1
                      + max(_inv(ep.leverage), 0))
    book = st.book
    for h in book.assets.values():
        big = max(big, _d(h.qty), _d(h.cost))
        if h.qty and h.cost:
            big = max(big, _d(h.cost) + _inv(h.qty))  # the average cost, cost / qty
    for r, f in book.pairs.values():
        big = max(big, _d(r), _d(f))
    return big


def _event_digits(ev: Event, marks: Mapping[str, Decimal], cfg: LedgerConfig) -> int:
    if type(ev) is Fill:
        price = ev.price.adjusted() + 1 if ev.price else 0
        # the position it opens is valued at its symbol's mark in the same snapshot
        mark = marks.get(ev.symbol)
        if mark and mark.adjusted() + 1 > price:
            price = mark.adjusted() + 1
        notional = ev.qty.adjusted() + 1 + (price if price > 1 else 1)
        out = notional + 2 - ev.leverage.adjusted()
        fee = ev.fee.adjusted() + 1 if ev.fee else 0
        if fee > out:
            out = fee
        if ev.market == "spot":
            from .spot import split_symbol

            pair = split_symbol(ev.symbol, cfg.quote_assets)
            marks_d = 1
            if pair is not None:
                marks_d = max(_price(pair[0], marks, cfg), _price(pair[1], marks, cfg), 1)
            fee_mark = max(_price(ev.fee_asset, marks, cfg), marks_d) if ev.fee_asset \
                else marks_d
            value = notional + marks_d
            # value, the fee's value, and the ratios of the fee split and an oversell
            out = max(out, value, _d(ev.fee) + fee_mark,
                      value + _d(ev.fee) + _inv(ev.qty) + (_inv(ev.price) if ev.price else 0),
                      value + _inv(ev.qty))
        return out
    if isinstance(ev, Funding):
        return _d(ev.amount)
    if isinstance(ev, CashFlow):
        mark_d = max(_price(ev.asset, marks, cfg), 1)
        # its value, and an oversell's unit value (value / missing quantity: the mark)
        return max(_d(ev.amount) + mark_d, mark_d + 1)
    if isinstance(ev, Balance):
        out = max(_d(ev.wallet_balance), _d(ev.available_margin), _d(ev.used_margin),
                  _d(ev.maint_margin))
        for asset, free, locked in ev.assets:
            out = max(out, _d(free + locked) + max(_price(asset, marks, cfg), 1) + 1)
        return out
    if isinstance(ev, Positions):
        out = 0
        for ep in ev.positions:
            mark = marks.get(ep.symbol)
            out = max(out, _d(ep.qty) + max(_d(ep.entry_price), _d(ep.mark_price), _d(mark), 1)
                      + 1 + _inv(ep.leverage))
        return out + len(str(len(ev.positions)))
    return _d(getattr(ev, "capital", None))


def first_out_of_range(outputs: Iterable[Output]) -> str | None:
    """The first output figure that does not fit decimal(38,18), as ``kind.field = value``."""
    for out in outputs:
        found = _scan(out.record, out.kind)
        if found is not None:
            return found
    return None


def _scan(value: Any, path: str) -> str | None:
    if isinstance(value, Decimal):
        return None if fits_wire(value) else f"{path} = {value}"
    if isinstance(value, Mapping):
        for k, v in value.items():
            found = _scan(v, f"{path}.{k}")
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = _scan(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None
