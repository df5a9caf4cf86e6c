"""BingX perpetual swap (USDT-M) user stream and REST order results -> venue events.

Owns: the meaning of BingX swap payloads and their known quirks (LEDGER A4, A5):

- WebSocket ``ORDER_TRADE_UPDATE`` ``{"e", "E", "o": {s, c, i, S, o, q, p, ap,
  x, X, N, n, T, wt, ps, rp, z, l?, L?}}``; frames may arrive gzip-compressed
  (bytes starting ``1f 8b``); the text ``Ping`` is a heartbeat.
- WebSocket ``ACCOUNT_UPDATE`` (same shape as Binance, see
  ``streams.gateways.futures``).
- REST order results ``{"code": 0, "data": {"order": {...}}}`` or
  ``{"data": {"orders": [...]}}`` with ``symbol, orderId, side, positionSide,
  type, price, avgPrice, origQty, executedQty, profit, commission, status,
  time, updateTime, clientOrderId, leverage``.

Must not touch: ledger rules — this module only states what the venue said,
in the ledger's conventions.

The quirks, normalized here and nowhere else:

- **Fees come as negative costs** (``n``, ``commission``): the fee is the
  flipped value, so a cost of −31 arrives as fee +31. ``n``/``commission``
  are the order's cumulative fee; the fill carries the increment since the
  last report the gateway booked (``OrderMemory``).
- **Cumulative-only quantities.** When ``l`` is 0 or absent, the filled
  quantity is only in ``z`` (``executedQty`` in REST): the fill's qty is
  ``z`` minus what the gateway already booked for the order. An order the
  memory does not know that reports ``l`` > 0 books ``l``.
- **Cumulative figures never go down.** A cumulative figure that does is not
  turned into a negative increment: a ``z``/``executedQty`` below what was
  booked is a stale report (nothing booked, ``CUMULATIVE_QTY_DECREASED``); an
  ``n``/``commission`` smaller in magnitude than what was booked, or of the
  other sign, is read as the commission of this execution (what ``n`` means
  in the Binance user-data format BingX mirrors) and booked as this fill's
  fee, with ``CUMULATIVE_FEE_DECREASED`` (a taker fee of 31 followed by a
  frame saying 1.1 books 31 and 1.1, never 31 and −29.9). The anomalies come
  with the events (``Normalized.anomalies``).

Documentation followed, per field: BingX Perpetual Swap API v2, "Websocket
account data — Order update push" (``ORDER_TRADE_UPDATE``: ``z`` accumulated
filled quantity, ``l``/``L`` last filled quantity/price, ``ap`` average
price, ``n``/``N`` commission and its asset, ``rp`` realized profit, ``T``
trade time) and "Query order" / "Query order history" (REST
``executedQty``, ``avgPrice``, ``commission``, ``profit``, ``updateTime``);
where BingX is silent on whether ``n`` is per fill or per order, frames
observed grow it with ``z``, so it is read as the order's total.
- **True prices only.** price = ``L`` when the frame reports this execution
  (``l`` > 0), else the average ``ap``/``avgPrice``, else ``L``, else ``"0"``.
  The order's ``p``/``price`` is never used: for a MARKET order it is a
  protective bound that can sit 20–25 % off the tape.
- **Symbols** ``FET-USDT`` and ``FETUSDT`` are one symbol: canonical form
  ``FET-USDT``.
- **Exchange realized PnL** (``rp``, ``profit``) of an order in a final
  state (FILLED, or CANCELED/EXPIRED after partial fills), when not zero, is
  the order's realized PnL: a ``fill_settled`` for the order
  (``venue_order_id``) with event id ``bingx:settle:<order id>`` and the
  time of the order's last booked fill: the same fact from the stream and
  from REST, so the two sources deduplicate in the ledger. A realized PnL of
  0 is not emitted (it would "repair" a price-less exit leg with 0).

Event ids: a fill is ``bingx:fill:<order id>:<cumulative filled qty>`` — the
same report re-sent, or the same state seen through REST, has the same id.
A re-sent report whose quantity the memory already booked re-emits the very
same fill (the ledger ignores the duplicate); an older report than the last
one booked emits nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from streams.gateways.common import (
    Context,
    MemoryTxn,
    OrderProgress,
    amount,
    fmt,
    ident,
    iso,
    mapping,
    opt_amount,
    position_side_of,
    sequence,
    side_of,
    text_field,
    ts_from_ms,
    unset,
)
from streams.gateways.exceptions import PayloadRejected
from streams.gateways.futures import account_update, frame_times

VENUE = "bingx"
MARGIN_ASSET = "USDT"
QUOTES = ("USDT", "USDC", "BUSD", "FDUSD", "USD")
#: Stream frames that carry nothing the ledger books.
IGNORED_EVENTS = frozenset({"listenKeyExpired", "ACCOUNT_CONFIG_UPDATE", "SNAPSHOT"})
HEARTBEATS = frozenset({"Ping", "Pong", "ping", "pong"})
#: An order in one of these states reports its final realized PnL (``rp``/``profit``).
TERMINAL_STATUSES = frozenset({"FILLED", "CANCELED", "CANCELLED", "EXPIRED"})


def symbol_of(raw: str) -> str:
    """``FET-USDT``, ``FETUSDT``, ``fet_usdt``, ``FET/USDT`` -> ``FET-USDT``."""
    text = raw.strip().upper()
    for sep in ("-", "/", "_"):
        if sep in text:
            base, _, quote = text.partition(sep)
            break
    else:
        quote = next((q for q in QUOTES if text.endswith(q) and len(text) > len(q)), "")
        base = text[: len(text) - len(quote)]
    if not (base.isalnum() and quote.isalnum() and base.isascii() and quote.isascii()):
        raise PayloadRejected(f"symbol {raw!r}: cannot tell base from quote")
    return f"{base}-{quote}"


def normalize(payload: Any, txn: MemoryTxn, ctx: Context) -> list[dict[str, Any]]:
    if isinstance(payload, str) and payload.strip() in HEARTBEATS:
        return []
    frame = mapping(payload, "frame")
    kind = frame.get("e")
    if kind == "ORDER_TRADE_UPDATE":
        return order_trade_update(frame, txn, ctx)
    if kind == "ACCOUNT_UPDATE":
        return account_update(frame, txn, ctx, symbol_of=symbol_of, margin_asset=MARGIN_ASSET)
    if isinstance(kind, str) and kind in IGNORED_EVENTS:
        return []
    if kind is None and ("data" in frame or "orderId" in frame):
        return rest_result(frame, txn, ctx)
    if kind is None:
        raise PayloadRejected("not a BingX swap frame: no event type 'e' and no REST 'data'")
    raise PayloadRejected(f"unknown BingX swap event type {str(kind)[:40]!r}")


def order_trade_update(frame: Mapping[str, Any], txn: MemoryTxn,
                       ctx: Context) -> list[dict[str, Any]]:
    _, frame_ts = frame_times(frame)
    o = mapping(frame.get("o"), "o (order)")
    # BingX often sends T = 0 in order frames: the event time is then the only clock.
    trade_ms = o.get("T")
    ts = frame_ts if unset(trade_ms) else ts_from_ms(trade_ms, "o.T (trade time)")
    return _order(
        ctx, txn,
        symbol=text_field(o, "s", "o.s (symbol)", max_len=40),
        order_id=o.get("i"), order_id_name="o.i (order id)",
        client_order_id=text_field(o, "c", "o.c (client order id)", default="", max_len=64),
        side=side_of(o.get("S"), "o.S (side)"),
        position_side=position_side_of(o.get("ps"), "o.ps (position side)"),
        cumulative=opt_amount(o, "z", "o.z (cumulative filled quantity)"),
        last=opt_amount(o, "l", "o.l (last filled quantity)"),
        last_price=opt_amount(o, "L", "o.L (last filled price)"),
        avg_price=opt_amount(o, "ap", "o.ap (average price)"),
        venue_fee=opt_amount(o, "n", "o.n (commission)"),
        fee_asset=text_field(o, "N", "o.N (commission asset)", default="", max_len=32),
        status=text_field(o, "X", "o.X (order status)", default="", max_len=32),
        realized=opt_amount(o, "rp", "o.rp (realized profit)"),
        leverage=None,
        ts=ts,
    )


def rest_result(frame: Mapping[str, Any], txn: MemoryTxn, ctx: Context) -> list[dict[str, Any]]:
    code = frame.get("code", 0)
    if code not in (0, "0") and not (isinstance(code, Decimal) and code == 0):
        raise PayloadRejected(f"BingX REST error code {str(code)[:20]}: "
                              f"{str(frame.get('msg', ''))[:120]}")
    data = frame.get("data", frame)
    if isinstance(data, Mapping) and "order" in data:
        orders = [data["order"]]
    elif isinstance(data, Mapping) and "orders" in data:
        orders = sequence(data["orders"], "data.orders")
    elif isinstance(data, list):
        orders = data
    else:
        orders = [data]
    events: list[dict[str, Any]] = []
    for i, row in enumerate(orders):
        order = mapping(row, f"order[{i}]")
        if order.get("executedQty") is None and order.get("profit") is None:
            continue  # a place-order acknowledgement: no execution state to book yet
        when = order.get("updateTime") or order.get("time")
        leverage = text_field(order, "leverage", f"order[{i}].leverage", default="", max_len=16)
        lev = amount(leverage.upper().rstrip("X"), f"order[{i}].leverage") if leverage else None
        if lev is not None and lev <= 0:
            raise PayloadRejected(f"order[{i}].leverage: {leverage!r} is not positive")
        events += _order(
            ctx, txn,
            symbol=text_field(order, "symbol", f"order[{i}].symbol", max_len=40),
            order_id=order.get("orderId"), order_id_name=f"order[{i}].orderId",
            client_order_id=text_field(order, "clientOrderId", f"order[{i}].clientOrderId",
                                       default="", max_len=64),
            side=side_of(order.get("side"), f"order[{i}].side"),
            position_side=position_side_of(order.get("positionSide"),
                                           f"order[{i}].positionSide"),
            cumulative=opt_amount(order, "executedQty", f"order[{i}].executedQty"),
            last=None, last_price=None,
            avg_price=opt_amount(order, "avgPrice", f"order[{i}].avgPrice"),
            venue_fee=opt_amount(order, "commission", f"order[{i}].commission"),
            fee_asset="",
            status=text_field(order, "status", f"order[{i}].status", default="", max_len=32),
            realized=opt_amount(order, "profit", f"order[{i}].profit"),
            leverage=lev,
            ts=ts_from_ms(when, f"order[{i}].updateTime"),
        )
    return events


def _order(ctx: Context, txn: MemoryTxn, *, symbol: str, order_id: object, order_id_name: str,
           client_order_id: str, side: str, position_side: str, cumulative: Decimal | None,
           last: Decimal | None, last_price: Decimal | None, avg_price: Decimal | None,
           venue_fee: Decimal | None, fee_asset: str, status: str, realized: Decimal | None,
           leverage: Decimal | None, ts: Any) -> list[dict[str, Any]]:
    """One order report (stream or REST) -> its new fill, if any, and its settlement."""
    symbol = symbol_of(symbol)
    oid = ident(order_id, order_id_name)
    for name, value in (("cumulative filled quantity", cumulative),
                        ("last filled quantity", last), ("last filled price", last_price),
                        ("average price", avg_price)):
        if value is not None and value < 0:
            raise PayloadRejected(f"{name}: negative {value}")
    account = ctx.account()
    key = f"{VENUE}|{account}|{oid}"
    progress = txn.order(key)
    booked = progress.filled if progress else Decimal(0)
    booked_fee = progress.fee if progress else Decimal(0)
    # BingX reports costs as negative numbers: flip here and nowhere else (LEDGER A5).
    cumulative_fee = -venue_fee if venue_fee is not None else booked_fee
    if cumulative is None:
        cumulative = booked + last if last else booked

    events: list[dict[str, Any]] = []
    fill_id = f"{VENUE}:fill:{oid}:{fmt(cumulative)}"
    if cumulative > booked:
        if progress is None and last:
            # An order first seen mid-way that states its execution: book what it states.
            qty = min(last, cumulative)
        else:
            qty = cumulative - booked
        if last and last_price:
            price = last_price
        else:
            price = avg_price or last_price or Decimal(0)
        fee = cumulative_fee - booked_fee
        if booked_fee and (cumulative_fee * booked_fee < 0
                           or abs(cumulative_fee) < abs(booked_fee)):
            # A cumulative fee cannot shrink or change sign: this n is not the order's
            # total. Read it as the commission of this execution (n's meaning in the
            # Binance format BingX mirrors) instead of turning a cost into a rebate.
            ctx.anomaly("CUMULATIVE_FEE_DECREASED", fill_id, account, ts,
                        f"order {oid}: commission went from {fmt(booked_fee)} to "
                        f"{fmt(cumulative_fee)} (costs positive); booked {fmt(cumulative_fee)} "
                        f"as this fill's fee, not {fmt(fee)}")
            fee = cumulative_fee
            cumulative_fee = booked_fee + fee
        fill: dict[str, Any] = {
            "symbol": symbol, "side": side, "qty": fmt(qty), "price": fmt(price),
            "fee": fmt(fee), "position_side": position_side,
            "venue_order_id": oid, "market": "futures",
        }
        if fee_asset:
            fill["fee_asset"] = fee_asset.upper()
        if leverage is not None:
            fill["leverage"] = fmt(leverage)
        if client_order_id:
            fill["client_order_id"] = client_order_id
        event = ctx.event("fill", fill_id, account, ts, **fill)
        events.append(event)
        kept = {k: v for k, v in event.items() if k != "ts_ingest"}
        txn.set_order(key, OrderProgress(filled=cumulative, fee=cumulative_fee, last=kept))
    elif progress is not None and progress.last is not None and \
            progress.last.get("event_id") == fill_id:
        # The last report re-sent: the same event again, which the ledger ignores.
        again = dict(progress.last)
        if ctx.received_at is not None:
            again["ts_ingest"] = iso(ctx.received_at)
        events.append(again)
    elif cumulative < booked:
        # An older report than the last one booked (z went down): nothing new to book,
        # never a negative quantity.
        ctx.anomaly("CUMULATIVE_QTY_DECREASED", f"{VENUE}:order:{oid}", account, ts,
                    f"order {oid}: filled quantity {fmt(cumulative)} is below the "
                    f"{fmt(booked)} already booked; a stale report, nothing booked")

    if status.upper() in TERMINAL_STATUSES and realized:
        booked_now = txn.order(key)
        settled = ctx.event(
            "fill_settled", f"{VENUE}:settle:{oid}", account, ts, symbol=symbol,
            venue_order_id=oid, realized_pnl=fmt(realized),
            fee=fmt(booked_now.fee if booked_now is not None else cumulative_fee))
        # Stream and REST report the same settlement at different clocks; stamping it with
        # the order's last booked fill makes both the same fact (the ledger digests ts).
        booked_last = (txn.order(key) or OrderProgress()).last
        if booked_last is not None and isinstance(booked_last.get("ts"), str):
            settled["ts"] = booked_last["ts"]
        events.append(settled)
    return events
