"""Binance USDⓈ-M futures user data stream -> venue events.

Owns: the meaning of Binance futures user-data frames as the venue documents
them — ``ORDER_TRADE_UPDATE`` (``o``: s symbol, c client order id, S side,
o order type, x execution type, X order status, i order id, l last filled
qty, z cumulative filled qty, L last filled price, ap average price, p order
price, n commission, N commission asset, rp realized profit of the trade,
ps position side, t trade id, T trade time) and ``ACCOUNT_UPDATE`` (shared
with BingX in ``streams.gateways.futures``). Frames may come bare, in a
combined-stream envelope ``{"stream", "data"}`` or a WebSocket-API envelope
``{"subscriptionId", "event"}``. Must not touch: ledger rules.

Documentation followed: Binance USDⓈ-M Futures API, "User Data Streams —
Event: Order Update" (per field as listed above; ``l`` and ``n`` are this
execution's quantity and commission, so no increment is ever derived from a
cumulative figure: ``z`` is not used) and "Event: Balance and Position
Update" (``ACCOUNT_UPDATE``).

Mapping:

- A fill is an execution report with ``x`` = ``TRADE`` (or ``CALCULATED``:
  liquidation/ADL) and ``l`` > 0. qty = ``l``; price = ``L`` (the price of
  this very execution), else ``ap``, else ``"0"`` — never the order price
  ``p``. fee = ``n`` in ``N`` (Binance reports costs as positive numbers).
  event_id = ``binance:fill:<symbol>:<t>`` (trade ids are unique per symbol).
- ``rp`` ≠ 0 on a fill is the exchange's realized PnL for that trade: a
  ``fill_settled`` with ``fill_event_id`` of that fill.
- Other execution reports (NEW, CANCELED, EXPIRED, AMENDMENT) and the frames
  listed in ``IGNORED_EVENTS`` book nothing: they normalize to no events.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from streams.gateways.common import (
    Context,
    MemoryTxn,
    fmt,
    ident,
    mapping,
    opt_amount,
    position_side_of,
    side_of,
    text_field,
    ts_from_ms,
    unset,
)
from streams.gateways.exceptions import PayloadRejected
from streams.gateways.futures import account_update, frame_times

VENUE = "binance"
MARGIN_ASSET = "USDT"
FILL_EXECUTIONS = frozenset({"TRADE", "CALCULATED"})
#: User-data frames that carry nothing the ledger books (TRADE_LITE repeats fills
#: that ORDER_TRADE_UPDATE also reports; booking both would double them).
IGNORED_EVENTS = frozenset({
    "listenKeyExpired", "MARGIN_CALL", "ACCOUNT_CONFIG_UPDATE", "TRADE_LITE",
    "STRATEGY_UPDATE", "GRID_UPDATE", "CONDITIONAL_ORDER_TRIGGER_REJECT", "ALGO_UPDATE",
})


def symbol_of(raw: str) -> str:
    symbol = raw.strip().upper()
    if not symbol.isalnum():
        raise PayloadRejected(f"symbol {raw!r} is not a Binance futures symbol")
    return symbol


def unwrap(payload: Any) -> Mapping[str, Any]:
    frame = mapping(payload, "frame")
    if "e" not in frame:
        if isinstance(frame.get("data"), Mapping) and "stream" in frame:
            frame = frame["data"]
        elif isinstance(frame.get("event"), Mapping):
            frame = frame["event"]
    return frame


def normalize(payload: Any, txn: MemoryTxn, ctx: Context) -> list[dict[str, Any]]:
    frame = unwrap(payload)
    kind = frame.get("e")
    if kind == "ORDER_TRADE_UPDATE":
        return order_trade_update(frame, ctx)
    if kind == "ACCOUNT_UPDATE":
        return account_update(frame, txn, ctx, symbol_of=symbol_of, margin_asset=MARGIN_ASSET)
    if isinstance(kind, str) and kind in IGNORED_EVENTS:
        return []
    if kind is None:
        raise PayloadRejected("not a Binance user-data frame: no event type 'e'")
    raise PayloadRejected(f"unknown Binance user-data event type {str(kind)[:40]!r}")


def order_trade_update(frame: Mapping[str, Any], ctx: Context) -> list[dict[str, Any]]:
    _, frame_ts = frame_times(frame)
    o = mapping(frame.get("o"), "o (order)")
    execution = text_field(o, "x", "o.x (execution type)", max_len=32)
    if execution not in FILL_EXECUTIONS:
        return []
    account = ctx.account()
    symbol = symbol_of(text_field(o, "s", "o.s (symbol)", max_len=40))
    side = side_of(o.get("S"), "o.S (side)")
    order_id = ident(o.get("i"), "o.i (order id)")
    trade_id = ident(o.get("t"), "o.t (trade id)")
    qty = opt_amount(o, "l", "o.l (last filled quantity)")
    if qty is None or qty <= 0:
        raise PayloadRejected(f"o.l (last filled quantity): a {execution} report needs l > 0, "
                              f"got {o.get('l')!r}")
    price = _true_price(o)
    fee = opt_amount(o, "n", "o.n (commission)") or Decimal(0)
    ts = frame_ts if unset(o.get("T")) else ts_from_ms(o["T"], "o.T (trade time)")

    fill_id = f"{VENUE}:fill:{symbol}:{trade_id}"
    fill: dict[str, Any] = {
        "symbol": symbol, "side": side, "qty": fmt(qty), "price": fmt(price), "fee": fmt(fee),
        "position_side": position_side_of(o.get("ps"), "o.ps (position side)"),
        "venue_order_id": order_id, "market": "futures",
    }
    fee_asset = text_field(o, "N", "o.N (commission asset)", default="", max_len=32)
    if fee_asset:
        fill["fee_asset"] = fee_asset.upper()
    client_id = text_field(o, "c", "o.c (client order id)", default="", max_len=64)
    if client_id:
        fill["client_order_id"] = client_id
    events = [ctx.event("fill", fill_id, account, ts, **fill)]

    realized = opt_amount(o, "rp", "o.rp (realized profit)")
    if realized:
        events.append(ctx.event(
            "fill_settled", f"{VENUE}:settle:{symbol}:{trade_id}", account, ts,
            symbol=symbol, fill_event_id=fill_id, venue_order_id=order_id,
            realized_pnl=fmt(realized), fee=fmt(fee)))
    return events


def _true_price(o: Mapping[str, Any]) -> Decimal:
    """Last fill price, else average price, else 0 (unknown). Never the order price ``p``."""
    for key, name in (("L", "o.L (last filled price)"), ("ap", "o.ap (average price)")):
        value = opt_amount(o, key, name)
        if value is not None and value < 0:
            raise PayloadRejected(f"{name}: negative price {value}")
        if value:
            return value
    return Decimal(0)
