"""Spot portfolios (LEDGER part B): balances, cost basis, fees in any asset, valuation, drift.

Owns: booking spot fills and cash flows into an account's ``SpotBook``
(B1-B3, B5), valuing holdings in the base currency (B4), the per-asset
balance and per-pair position views, strategy tags of spot trades (B7) and
the drift check against exchange-reported balances (B8). Must not touch:
part A booking (``fold``), the state codec, clocks or I/O.

The accounting, so that B6 holds exactly (Decimal, at every event):

- Each holding keeps its quantity and its cost basis in the base currency
  (``cost``); the average cost is ``cost / qty``. Equity is the sum of the
  holdings' values, unrealized PnL the sum of ``value - cost``; so
  ``equity = sum(cost) + unrealized`` and only bookings move ``sum(cost)``.
- A trade is a disposal of one asset and an acquisition of the other at one
  base-currency value V: the quote amount (qty x price) times the quote's
  mark (the base currency: 1); if the quote has no mark, qty times the
  base asset's mark; if neither has one, 0 (``UNVALUED_TRADE``). The
  acquired asset's cost grows by V (B2's buy formula, in the base currency);
  the disposed asset's cost falls by its cost basis (WAC: at the average, so
  the average does not move; FIFO: the oldest lots) and
  realized = V - cost removed. Selling for the base currency this is
  (price - avg) x qty. The trade's record carries its ``cost_basis``: a
  BUY's V (the cost added to the bought asset), a SELL's cost removed from
  the sold asset (a fee's disposal is not in it).
- A fee (B3) is paid out of whatever asset it is in, at that asset's cost
  basis (under WAC at the average, which does not move; under FIFO out of
  the oldest lots); its base-currency value at the trade
  (the fee asset's mark; without one, the trade's own price when the fee is
  in one of the pair's assets) is booked once, as the trade's fee. The
  difference between that value and the cost basis paid out is the gain or
  loss of disposing the fee asset and is part of the trade's realized PnL
  (0 for a fee in the base currency). A negative fee (rebate) is an
  acquisition at its value. So realized - fees of a trade is exactly what
  it moved ``sum(cost)`` by.
- A cash flow (B5) moves balances and equity, never realized PnL: an inflow
  enters at its mark at that time as cost basis (an asset without a mark
  enters at cost 0); an outflow leaves at its cost basis, and that cost is
  its base-currency value. K capital of a spot account moves by these
  values, so K capital = seed + the cost basis of everything held.
- An oversell (disposing of more than is held: a sale, a quote spent, a fee
  or a withdrawal) raises ``OVERSELL`` naming the missing quantity. The
  missing quantity is booked as an ``adjustment`` inflow at the disposal's
  own unit value (so it realizes nothing) and the holding goes to 0, never
  below; drift against the exchange's balances shows it until fixed.
- Marks looked up: for an asset A, ``LedgerConfig.valuation_symbol(A)`` -
  the ``valuation_pairs`` override, else ``A/<base_currency>`` (``XBT/USD``,
  ``ADA/USD``), the ``BASE/QUOTE`` spelling of the gateways, found under any
  venue spelling of that pair (``ADAUSD``, ``ADA-USD``, ``XADAZUSD``). The
  base currency itself values at 1. An asset without a mark is valued 0 and
  flagged ``unvalued``; its cost basis then shows as unrealized loss until a
  mark arrives.
- A spot fill with price 0 (no true execution price) moves nothing and
  raises ``SPOT_NO_PRICE``. A spot symbol is one pair in any venue spelling
  (``XBT/USD``, ``XBT-USD``, ``XBTUSD`` split by ``LedgerConfig.quote_assets``,
  Kraken's ``XXBTZUSD``) and is booked and output as ``XBT/USD``; marks are
  found in any of those spellings. A symbol that does not split raises
  ``UNSUPPORTED_SYMBOL``. Balances do not know open orders: ``locked`` is
  the exchange's last reported locked amount (capped at the total) and
  ``free = total - locked``.
- Tracked assets (``LedgerConfig.include_assets``/``exclude_assets``): a
  fill on a pair with an untracked asset and a cash flow of one book
  nothing (``ASSET_EXCLUDED``, INFO); a fee in one is not taken from the
  balances and is valued 0; balance frames ignore untracked assets.
- Stale marks (``LedgerConfig.max_mark_age``): a mark whose age at the event
  (event ts - the mark's ts, ``numbers.MarkPrice``) exceeds the bound is
  still used, and every event that valued a holding or position at one
  raises ``STALE_MARK`` naming each symbol and its age (``stale_marks``).
- External activity (``LedgerConfig.external_activity_share``): a manual
  trade or a cash flow worth more than that share of the equity before it
  raises ``EXTERNAL_ACTIVITY`` with the share (``check_external``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from .config import LedgerConfig
from .events import Balance, CashFlow, Fill
from .grammar import TS_MIN
from .numbers import D0, D1, mark_ts, plain, q18
from .state import AccountState, Drift, Holding, Leg, Lot, Output, Record, SpotBook, Trade
from .step import Step, trade_id_for

MANUAL = "manual"


DEFAULT_QUOTES: tuple[str, ...] = LedgerConfig().quote_assets
_SEPARATORS = ("/", "-", "_")
# Kraken's legacy pair names: X + crypto code + (Z + fiat | X + crypto), ``XXBTZUSD``.
_KRAKEN_PAIR = re.compile(r"X([A-Z0-9]{3})[XZ]([A-Z0-9]{3})\Z")


@lru_cache(maxsize=4096)
def split_symbol(symbol: str, quotes: tuple[str, ...] = DEFAULT_QUOTES,
                 ) -> tuple[str, str] | None:
    """A spot pair in any of its venue spellings -> (base, quote); None when it does not split.

    ``XBT/USD``, ``XBT-USD``, ``XBT_USD`` split at the separator; Kraken's
    ``XXBTZUSD`` by its prefixes; ``XBTUSD`` by the longest known quote asset
    it ends with (``quotes``: ``LedgerConfig.quote_assets``).
    """
    for sep in _SEPARATORS:
        if sep in symbol:
            base, _, quote = symbol.partition(sep)
            if not base or not quote or any(s in quote for s in _SEPARATORS):
                return None
            return base, quote
    kraken = _KRAKEN_PAIR.match(symbol)
    if kraken is not None and kraken.group(2) in quotes:
        return kraken.group(1), kraken.group(2)
    for quote in sorted(quotes, key=len, reverse=True):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return None


def pair_symbol(symbol: str, cfg: LedgerConfig) -> str | None:
    """The canonical spelling ``BASE/QUOTE`` of a spot symbol, or None when it does not split."""
    pair = split_symbol(symbol, cfg.quote_assets)
    return None if pair is None else "/".join(pair)


@lru_cache(maxsize=4096)
def _spellings(symbol: str, quotes: tuple[str, ...]) -> tuple[str, ...]:
    """Every spelling a mark of ``symbol`` may be keyed by, the given one first."""
    pair = split_symbol(symbol, quotes)
    if pair is None:
        return (symbol,)
    base, quote = pair
    out = [symbol, f"{base}/{quote}", f"{base}{quote}", f"{base}-{quote}", f"{base}_{quote}"]
    if len(base) == 3 and len(quote) == 3:
        out += [f"X{base}Z{quote}", f"X{base}X{quote}"]
    return tuple(dict.fromkeys(out))


def price_of(asset: str, marks: Mapping[str, Decimal], cfg: LedgerConfig) -> Decimal | None:
    """B4: one unit of ``asset`` in the base currency, or None when it has no mark.

    The valuation pair is found in any spelling of it (``ETH/USD``, ``ETHUSD``,
    ``ETH-USD``, ``XETHZUSD``), the configured one first.
    """
    if asset == cfg.base_currency:
        return D1
    symbol = cfg.valuation_symbol(asset)
    price = marks.get(symbol)
    if price is None:
        for alt in _spellings(symbol, cfg.quote_assets)[1:]:
            price = marks.get(alt)
            if price is not None:
                break
    return price


def tag_of(tag: str) -> str:
    """B7: an untagged fill is ``manual``."""
    return tag or MANUAL


# ----------------------------------------------------------------------------- booking


def _acquire(book: SpotBook, cfg: LedgerConfig, asset: str, qty: Decimal,
             cost: Decimal) -> None:
    h = book.holding(asset)
    h.qty += qty
    h.cost += cost
    if cfg.cost_basis == "fifo":
        h.lots.append(Lot(qty, cost))


def _remove_cost(h: Holding, qty: Decimal, fifo: bool) -> Decimal:
    """The cost basis of ``qty`` of a holding that holds at least that much."""
    if qty == h.qty:
        h.lots.clear()
        return h.cost
    if not fifo:
        return q18(h.cost * qty / h.qty)  # WAC: at the average, which does not move
    removed = D0
    left = qty
    lots = h.lots
    while left:
        oldest = lots[0]
        if oldest.qty <= left:
            removed += oldest.cost
            left -= oldest.qty
            del lots[0]
        else:  # part of the oldest lot: its cost pro rata, the rest stays first
            part = q18(oldest.cost * left / oldest.qty)
            lots[0] = Lot(oldest.qty - left, oldest.cost - part)
            removed += part
            left = D0
    return removed


def _dispose(step: Step, asset: str, qty: Decimal, proceeds: Decimal, what: str) -> Decimal:
    """Take ``qty`` of ``asset`` out of the book; returns the cost basis removed."""
    cfg = step.cfg
    st = step.st
    book = st.book
    h = book.holding(asset)
    if qty > h.qty:
        missing = qty - h.qty
        value = q18(proceeds * missing / qty)
        step.anomaly("OVERSELL", "ERROR",
                     f"{what} takes {plain(qty)} {asset} but {plain(h.qty)} is held: "
                     f"missing {plain(missing)} {asset}, booked as an adjustment inflow "
                     f"worth {plain(value)} {cfg.base_currency}")
        _acquire(book, cfg, asset, missing, value)
        st.k_cash += value
        if value:
            st.capital += value
            st.capital_source = "k_bridged"
        n = step.codes["OVERSELL"]
        cash_flow_output(step, f"{step.ev.event_id}:cashflow:OVERSELL" + (f":{n}" if n > 1 else ""),
                         "adjustment", asset, missing, value, cfg.base_currency,
                         q18(value / missing), False, h.qty)
    removed = _remove_cost(h, qty, cfg.cost_basis == "fifo")
    h.qty -= qty
    h.cost -= removed
    return removed


def book_fill(step: Step, ev: Fill) -> None:
    """B1-B3, B7: one spot fill; a trade of its own (one leg) in ``trades``."""
    st = step.st
    cfg = step.cfg
    marks = step.marks
    pair = split_symbol(ev.symbol, cfg.quote_assets)
    if pair is None:
        step.anomaly("UNSUPPORTED_SYMBOL", "ERROR",
                     f"spot symbol {ev.symbol!r} is not a pair: no separator (/ - _) and no "
                     f"known quote asset ({', '.join(cfg.quote_assets)}) it ends with; "
                     "nothing booked")
        return
    base, quote = pair
    symbol = f"{base}/{quote}"  # one spelling in every output and in the book
    if ev.price <= 0:
        step.anomaly("SPOT_NO_PRICE", "ERROR",
                     f"spot fill of {plain(ev.qty)} {symbol} has no execution price;"
                     " nothing booked (drift shows the balances it moved)")
        return
    untracked = [a for a in pair if not cfg.tracks(a)]
    if untracked:
        step.anomaly("ASSET_EXCLUDED", "INFO",
                     f"{ev.side} {plain(ev.qty)} {symbol}: {', '.join(untracked)} not tracked "
                     "(include_assets/exclude_assets); nothing booked")
        return
    book = st.book
    manual = tag_of(ev.strategy_tag) == MANUAL
    before = equity_before(st, marks, cfg) if manual and cfg.external_activity_share else None
    notional = q18(ev.qty * ev.price)
    pq = price_of(quote, marks, cfg)
    pb = price_of(base, marks, cfg)
    if pq is not None:
        value = q18(notional * pq)
    elif pb is not None:
        value = q18(ev.qty * pb)
    else:
        value = D0
        step.anomaly("UNVALUED_TRADE", "WARN",
                     f"neither {base} nor {quote} has a mark in {cfg.base_currency}: "
                     f"{symbol} booked at value 0")
    what = f"{ev.side} {plain(ev.qty)} {symbol}"
    if before is not None:
        check_external(step, f"manual trade {what}", value, before)
    # ``cost``: the leg's cost basis - a BUY's cost added to the base asset (its value), a
    # SELL's cost removed from it (the units sold as WAC or FIFO held them; fee not included)
    if ev.side == "BUY":
        realized = value - _dispose(step, quote, notional, value, what)
        _acquire(book, cfg, base, ev.qty, value)
        cost = value
    else:
        cost = _dispose(step, base, ev.qty, value, what)
        realized = value - cost
        _acquire(book, cfg, quote, notional, value)
    fee = D0
    fee_asset = ev.fee_asset or quote
    if ev.fee and not cfg.tracks(fee_asset):
        step.anomaly("ASSET_EXCLUDED", "INFO",
                     f"fee of {plain(ev.fee)} {fee_asset} of {what}: {fee_asset} not tracked; "
                     "not taken from the balances, booked at value 0")
        for by_asset in (book.fees, book.manual_fees) if manual else (book.fees,):
            by_asset.setdefault(fee_asset, [D0, D0])[0] += ev.fee
    elif ev.fee:
        pf = price_of(fee_asset, marks, cfg)
        if pf is not None:
            fee = q18(ev.fee * pf)
        elif fee_asset == base and value:
            fee = q18(value * ev.fee / ev.qty)
        elif fee_asset == quote and value and notional:
            fee = q18(value * ev.fee / notional)
        else:
            step.anomaly("FEE_UNVALUED", "WARN",
                         f"fee of {plain(ev.fee)} {fee_asset} has no mark in "
                         f"{cfg.base_currency}; booked at value 0")
        if ev.fee > 0:
            realized += fee - _dispose(step, fee_asset, ev.fee, fee, f"fee of {what}")
        else:
            _acquire(book, cfg, fee_asset, -ev.fee, -fee)
        for by_asset in (book.fees, book.manual_fees) if manual else (book.fees,):
            paid = by_asset.setdefault(fee_asset, [D0, D0])
            paid[0] += ev.fee
            paid[1] += fee
    st.k_fees += fee
    step.book(realized, fee)
    for by_pair in (book.pairs, book.manual_pairs) if manual else (book.pairs,):
        stats = by_pair.setdefault(symbol, [D0, D0])
        stats[0] += realized
        stats[1] += fee
    step.spot_pairs.append(symbol)
    # B7: every spot fill is one trade, tagged; balances include it whatever the tag.
    st.trade_count += 1
    tag = tag_of(ev.strategy_tag)
    action = ev.side.lower()
    trade = Trade(trade_id_for(st.account_id, symbol, "BOTH", ev.side, ev.event_id),
                  st.trade_count, symbol, "BOTH", ev.side, "spot", ev.event_id, ev.ts, tag,
                  closed=True, realized=realized, fees=fee)
    trade.legs.append(Leg(ev.event_id, ev.venue_order_id, action, ev.qty, ev.price, realized,
                          fee, realized, "kernel_estimate", None, 0, []))
    st.close_trade(trade, cfg.max_closed_trades)
    held = book.holding(base)
    step.outputs.append(_trade_output(step, trade, action, ev, held, realized, fee, cost))


def _trade_output(step: Step, trade: Trade, action: str, ev: Fill, held: Holding,
                  realized: Decimal, fee: Decimal, cost: Decimal) -> Output:
    st = step.st
    return Output("trade", st.account_id, {
        "event_id": f"{trade.trade_id}:{ev.event_id}:{action}",
        "account_id": st.account_id, "trade_id": trade.trade_id,
        "source_event_id": ev.event_id, "event_seq": st.event_seq, "ts": ev.ts,
        "symbol": trade.symbol, "position_side": "BOTH", "side": ev.side, "action": action,
        "market": "spot", "qty": ev.qty, "price": ev.price, "position_qty": held.qty,
        "avg_entry_price": avg_cost(held), "pnl_leg": realized, "fee_leg": fee,
        "cumulative_pnl": realized, "trade_fees": fee, "pnl_source": "kernel_estimate",
        "exchange_realized_pnl": None, "holding_seconds": 0, "flags": [],
        "strategy_tag": trade.strategy_tag, "cost_basis": cost,
    })


def book_cash_flow(step: Step, ev: CashFlow) -> None:
    """B5: a cash flow into or out of the book; K cash and capital move by its value."""
    st = step.st
    cfg = step.cfg
    if not cfg.tracks(ev.asset):
        step.anomaly("ASSET_EXCLUDED", "INFO",
                     f"{ev.flow} of {plain(ev.amount)} {ev.asset}: {ev.asset} not tracked "
                     "(include_assets/exclude_assets); nothing booked")
        return
    p = price_of(ev.asset, step.marks, cfg)
    before = equity_before(st, step.marks, cfg) if cfg.external_activity_share else None
    if before is not None and ev.amount:
        size = -ev.amount if ev.amount < 0 else ev.amount
        value_at_mark = None if p is None else q18(size * p)
        if value_at_mark is None and ev.amount < 0:
            h = st.book.assets.get(ev.asset)
            value_at_mark = q18(h.cost * size / h.qty) if h is not None and h.qty else None
        if value_at_mark is not None:
            check_external(step, f"{ev.flow} of {plain(ev.amount)} {ev.asset}",
                           value_at_mark, before)
    if ev.amount > 0:
        value = D0 if p is None else q18(ev.amount * p)
        _acquire(st.book, cfg, ev.asset, ev.amount, value)
    elif ev.amount < 0:
        qty = -ev.amount
        value = -_dispose(step, ev.asset, qty, D0 if p is None else q18(qty * p),
                          f"{ev.flow} {ev.event_id}")
    else:
        value = D0
    st.k_cash += value
    if value:
        st.capital += value
        st.capital_source = "k_bridged"
    inflow = ev.amount > 0
    cash_flow_output(step, f"{ev.event_id}:cashflow", ev.flow, ev.asset, ev.amount, value,
                     cfg.base_currency, p if inflow else None, inflow and p is None,
                     st.book.holding(ev.asset).qty)


def cash_flow_output(step: Step, event_id: str, flow: str, asset: str, amount: Decimal,
                     value: Decimal, currency: str, price: Decimal | None, unvalued: bool,
                     after: Decimal | None) -> None:
    """The ``cashflow`` output of a booked cash flow, remembered for the B10 query.

    Besides cash-flow events, an oversell's ``adjustment`` inflow is one too
    (id ``<source event_id>:cashflow:OVERSELL[:n]``), so the records' values
    always sum to the snapshot's ``cash_flows``.
    """
    st = step.st
    ev = step.ev
    step.outputs.append(Output("cashflow", st.account_id, {
        "event_id": event_id, "account_id": st.account_id,
        "source_event_id": ev.event_id, "event_seq": st.event_seq, "ts": ev.ts,
        "flow": flow, "asset": asset, "amount": amount, "value": value,
        "currency": currency, "price": price, "unvalued": unvalued, "balance_after": after,
    }))
    flows = st.book.flows
    flows.append([event_id, ev.ts.isoformat(), flow, asset, plain(amount), plain(value),
                  currency, None if price is None else plain(price)])
    limit = step.cfg.max_cash_flows
    if limit is not None and len(flows) > limit:
        del flows[: len(flows) - limit]


# ------------------------------------------------------------------------------- drift


def check_drift(step: Step, ev: Balance) -> None:
    """B8: exchange-reported totals vs derived ones, at every balance frame with assets.

    The frame is taken as complete: a derived asset it does not list is
    reported as 0. A difference worth more than ``drift_tolerance`` (or any
    difference in an asset without a mark, whose worth is unknown) is drift;
    ``DRIFT`` is raised at every frame while any asset drifts and
    ``DRIFT_CLEARED`` once none does.
    """
    st = step.st
    cfg = step.cfg
    book = st.book
    reported = {a: f + lk for a, f, lk in ev.assets if cfg.tracks(a)}
    drift: dict[str, Drift] = {}
    for asset in sorted(set(reported) | set(book.assets)):
        h = book.assets.get(asset)
        derived = h.qty if h is not None else D0
        exchange = reported.get(asset, D0)
        delta = derived - exchange
        if not delta:
            continue
        p = price_of(asset, step.marks, cfg)
        worth = None if p is None else q18(abs(delta) * p)
        if worth is None or worth > cfg.drift_tolerance:
            drift[asset] = Drift(plain(derived), plain(exchange), plain(delta),
                                 None if worth is None else plain(worth))
    if drift:
        detail = "; ".join(
            f"{a}: derived {d.derived} exchange {d.exchange} delta {d.delta} worth "
            f"{d.value if d.value is not None else 'unvalued'}" for a, d in drift.items())
        step.anomaly("DRIFT", "WARN",
                     f"balances drift beyond {plain(cfg.drift_tolerance)} "
                     f"{cfg.base_currency}: {detail}")
    elif book.drift:
        step.anomaly("DRIFT_CLEARED", "INFO", "exchange balances match the derived ones again")
    book.drift = drift


# ------------------------------------------------------- external activity and stale marks


def equity_before(st: AccountState, marks: Mapping[str, Decimal], cfg: LedgerConfig,
                  ) -> Decimal:
    """The spot holdings' value at ``marks`` before the event is booked (B4, no futures)."""
    total = D0
    for asset, h in st.book.assets.items():
        if h.qty:
            p = price_of(asset, marks, cfg)
            if p is not None:
                total += q18(h.qty * p)
    return total


def check_external(step: Step, what: str, value: Decimal, before: Decimal) -> None:
    """``EXTERNAL_ACTIVITY`` when ``value`` is more than the configured share of ``before``.

    The share is |value| / equity before, rounded once to 18 places; an
    account whose equity before was 0 or less has none (nothing is raised).
    """
    limit = step.cfg.external_activity_share
    if limit is None or before <= 0:
        return
    share = q18(abs(value) / before)
    if share > limit:
        pct = (share * 100).quantize(Decimal("0.01"))
        step.anomaly("EXTERNAL_ACTIVITY", "WARN",
                     f"{what} worth {plain(abs(value))} {step.cfg.base_currency} is "
                     f"{plain(share)} ({pct}%) of the equity before it "
                     f"({plain(before)}), more than external_activity_share "
                     f"{plain(limit)}")


def _age(ts: Any, now: datetime) -> int | None:
    if ts is None:
        return None
    return max(int((now - ts).total_seconds()), 0)


def mark_ages(st: AccountState, marks: Mapping[str, Decimal], cfg: LedgerConfig,
              now: datetime) -> dict[str, int]:
    """symbol -> age in seconds at ``now`` of every mark a valuation of the account uses.

    Futures positions with a quantity use the mark of their symbol; spot
    holdings with a quantity (not the base currency) the mark of their
    valuation pair (``LedgerConfig.valuation_symbol``). Marks without a ts
    (no known age) and symbols without a mark are left out.
    """
    ages: dict[str, int] = {}
    for pos in st.positions.values():
        if pos.qty:
            age = _age(mark_ts(marks.get(pos.symbol)), now)
            if age is not None:
                ages[pos.symbol] = age
    if st.book.spot:
        for asset, h in st.book.assets.items():
            if h.qty and asset != cfg.base_currency:
                age = _age(mark_ts(price_of(asset, marks, cfg)), now)
                if age is not None:
                    ages[cfg.valuation_symbol(asset)] = age
    return ages


def stale_marks(st: AccountState, marks: Mapping[str, Decimal], cfg: LedgerConfig,
                now: datetime) -> dict[str, int]:
    """The marks of ``mark_ages`` older than ``max_mark_age`` (none when it is off)."""
    limit = cfg.max_mark_age
    if limit is None:
        return {}
    return {s: a for s, a in sorted(mark_ages(st, marks, cfg, now).items()) if a > limit}


def flag_stale_marks(step: Step) -> list[dict[str, Any]]:
    """``STALE_MARK`` (WARN) when this event's snapshot values anything at a stale mark.

    Returns the snapshot's ``stale_marks`` (symbol and age in seconds, by symbol).
    """
    cfg = step.cfg
    if cfg.max_mark_age is None:
        return []
    stale = stale_marks(step.st, step.marks, cfg, step.ev.ts)
    if stale:
        step.anomaly("STALE_MARK", "WARN",
                     "valued at marks older than max_mark_age "
                     f"{cfg.max_mark_age}s: " + ", ".join(
                         f"{sym} {age}s old" for sym, age in stale.items()))
    return [{"symbol": sym, "age_seconds": age} for sym, age in stale.items()]


# ------------------------------------------------------------------------------- views


def avg_cost(h: Holding) -> Decimal:
    """B2: cost basis per unit held (0 when nothing is held or it cost nothing)."""
    return q18(h.cost / h.qty) if h.qty and h.cost else D0


class Valued:
    """A holding valued at the current marks (B4)."""

    __slots__ = ("asset", "free", "locked", "total", "avg", "value", "unvalued", "unrealized")

    def __init__(self, asset: str, h: Holding, locked: Decimal, price: Decimal | None) -> None:
        self.asset = asset
        self.total = h.qty
        self.locked = min(max(locked, D0), h.qty) if h.qty > 0 else D0
        self.free = h.qty - self.locked
        self.avg = avg_cost(h)
        self.unvalued = price is None
        self.value = D0 if price is None else q18(h.qty * price)
        # value - cost, i.e. (mark - avg) x held; valued 0 when there is no mark
        self.unrealized = self.value - h.cost


def valued(st: Any, marks: Mapping[str, Decimal], cfg: LedgerConfig) -> list[Valued]:
    """Every holding of the account's book, by asset name, valued at ``marks``."""
    locked = {e.asset: Decimal(e.locked) for e in st.e_assets}
    book: SpotBook = st.book
    return [Valued(a, book.assets[a], locked.get(a, D0), price_of(a, marks, cfg))
            for a in sorted(book.assets)]


def equity(st: AccountState, vals: list[Valued], futures_unrealized: Decimal) -> Decimal:
    """B6: a spot account's equity is its holdings' value (``vals``) plus any futures
    unrealized; any other account's is capital plus unrealized."""
    if st.book.spot:
        return sum((v.value for v in vals), D0) + futures_unrealized
    return st.capital + futures_unrealized


def balance_record(v: Valued) -> dict[str, Any]:
    """The BalanceState record (AccountSnapshot.balances)."""
    return {"asset": v.asset, "free": v.free, "locked": v.locked, "total": v.total,
            "avg_cost": v.avg, "value": v.value, "unvalued": v.unvalued}


def pair_record(symbol: str, st: Any, marks: Mapping[str, Decimal], cfg: LedgerConfig,
                ) -> Record:
    """The PositionState of a spot pair: its base asset's holding, the pair's realized/fees.

    Two pairs with the same base asset (``ETH/USD``, ``ETH/BTC``) show the
    same holding; the account's unrealized PnL counts each asset once.
    """
    book: SpotBook = st.book
    pair = split_symbol(symbol)
    assert pair is not None
    base, _quote = pair
    h = book.assets.get(base) or Holding()
    p = price_of(base, marks, cfg)
    value = D0 if p is None else q18(h.qty * p)
    realized, fees = book.pairs.get(symbol, [D0, D0])
    return Record({
        "symbol": symbol, "position_side": "BOTH", "qty": h.qty,
        "avg_entry_price": avg_cost(h), "realized_pnl": realized, "fees": fees,
        "funding": D0, "unrealized_pnl": value - h.cost, "mark_price": D0 if p is None else p,
        "leverage": D1, "used_margin": D0, "entry_basis_missing": False, "market": "spot",
    })


# --------------------------------------------------------------- balance and portfolio outputs


def balance_outputs(step: Step, vals: list[Valued]) -> None:
    """A ``balance`` output per asset whose figures changed since the last one emitted.

    Figures: total, locked, cost basis, the exchange's last reported total and
    the drift flag; version = event_seq, so ClickHouse keeps the latest per
    asset (``balances``, ReplacingMergeTree by version).
    """
    st = step.st
    ev = step.ev
    book: SpotBook = st.book
    reported = {e.asset: Decimal(e.free) + Decimal(e.locked) for e in st.e_assets}
    for v in vals:
        h = book.assets[v.asset]
        exch = reported.get(v.asset)
        drift = v.asset in book.drift
        key = [plain(v.total), plain(v.locked), plain(h.cost),
               None if exch is None else plain(exch), drift]
        if book.published.get(v.asset) == key:
            continue
        book.published[v.asset] = key
        step.outputs.append(Output("balance", st.account_id, {
            "event_id": f"{ev.event_id}:balance:{v.asset}", "account_id": st.account_id,
            "source_event_id": ev.event_id, "event_seq": st.event_seq,
            "version": st.event_seq, "ts": ev.ts, "asset": v.asset, "free": v.free,
            "locked": v.locked, "total": v.total, "avg_cost": v.avg, "cost_basis": h.cost,
            "value": v.value, "unvalued": v.unvalued, "exchange_total": exch, "drift": drift,
        }))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def portfolio_output(step: Step, vals: list[Valued], balances: list[dict[str, Any]],
                     equity: Decimal, unrealized: Decimal) -> None:
    """B9: a ``portfolio`` output at the first event of each event-time interval.

    An event whose interval (``floor((ts - epoch) / interval)``) is later than
    the last one snapshotted emits one, with the state after that event; an
    event of an earlier or the same interval emits none. Its id is the
    account and the interval start, so a replay emits the same record.
    """
    cfg = step.cfg
    interval = cfg.snapshot_interval_seconds
    if not interval:
        return
    st = step.st
    ev = step.ev
    book: SpotBook = st.book
    bucket = (ev.ts - _EPOCH) // timedelta(seconds=interval)
    if book.last_bucket is not None and bucket <= book.last_bucket:
        return
    book.last_bucket = bucket
    start_s = bucket * interval
    # An interval that does not divide a day can start before the earliest instant the
    # stores hold (grammar.TS_MIN) for events at its very beginning: clamp it there.
    start = max(_EPOCH + timedelta(seconds=start_s), TS_MIN)
    drift = bool(book.drift)
    rec = {
        "event_id": f"{st.account_id}:portfolio:{start_s}", "account_id": st.account_id,
        "source_event_id": ev.event_id, "event_seq": st.event_seq, "ts": ev.ts,
        "bucket_start": start, "interval_seconds": interval,
        "base_currency": cfg.base_currency, "equity": equity, "realized_pnl": st.k_realized,
        "fees": st.k_fees, "unrealized_pnl": unrealized, "cash_flows": st.k_cash,
        "drift": drift, "drift_assets": sorted(book.drift),
        "unvalued_assets": [v.asset for v in vals if v.unvalued and v.total],
        "balances": balances,
    }
    step.outputs.append(Output("portfolio", st.account_id, rec))
    book.snaps.append([rec["event_id"], start.isoformat(), ev.ts.isoformat(), plain(equity),
                       plain(st.k_realized), plain(st.k_fees), plain(unrealized),
                       plain(st.k_cash), drift])
    limit = cfg.max_portfolio_snapshots
    if limit is not None and len(book.snaps) > limit:
        del book.snaps[: len(book.snaps) - limit]
