"""DeltaDeFi account stream (``wss://…/accounts/stream``) -> venue events.

Owns: the meaning of DeltaDeFi account-stream messages
``{"type": "Account", "sub_type": …}`` as the venue documents them:

- ``balance`` (alias ``balance_update``): ``"balance": [{asset, asset_unit,
  free, locked}]`` (``available`` is read as ``free``) -> one ``balance``
  event with per-asset free/locked and ``wallet_balance: null`` (a spot
  account has no margin wallet: the balance is stated per asset, never
  invented);
- ``order_info``: ``"order": {id, account_id, symbol, side, status,
  commission, commission_unit, executed_base_qty, order_execution_records:
  [{id, order_id, execution_price, filled_base_qty, filled_quote_qty, role,
  created_at, commission?, commission_unit?}]}`` -> one spot ``fill`` per
  execution record;
- ``fill``: ``"fill": {id, order_id, symbol, side, execution_price,
  filled_base_qty, commission, commission_unit, created_at}`` -> one fill;
- ``dlta_points``: loyalty points, not money: no event.

Must not touch: ledger rules.

Decisions: the **execution record id is the event id** (``deltadefi:fill:<id>``),
so an order re-reported with more records re-emits the earlier fills under
the same ids and the ledger ignores them. Prices are the records'
``execution_price``, never the order's ``price``. A commission in
``lovelace`` is ADA / 1,000,000. When records carry no commission of their
own, the order's commission is split over its records pro rata by quantity
(exact when the venue charges one rate, which its ``commission_rate_bp``
states). Balance messages carry no clock: the gateway's ``received_at``
envelope (or a ``timestamp`` field) gives them their time, else they are
rejected.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, Inexact, localcontext
from typing import Any

from streams.gateways.common import (
    EPOCH,
    Context,
    MemoryTxn,
    amount,
    digest,
    fmt,
    ident,
    mapping,
    opt_amount,
    req_amount,
    sequence,
    side_of,
    text_field,
    ts_any,
)
from streams.gateways.exceptions import PayloadRejected

VENUE = "deltadefi"
QUOTES = ("USDCX", "USDM", "USDX", "USDT", "USDC", "ADA")
LOVELACE_PER_ADA = Decimal(1_000_000)
_QUANTUM = Decimal(1).scaleb(-18)


def asset_of(code: str) -> str:
    text = code.strip().upper()
    if text == "LOVELACE":
        return "ADA"
    if not text or not text.isalnum() or not text.isascii() or len(text) > 16:
        raise PayloadRejected(f"asset {code!r} is not an asset symbol the ledger can name")
    return text


def symbol_of(raw: str) -> str:
    """``ADAUSDM`` -> ``ADA/USDM`` (spot pairs are BASE/QUOTE, as for Kraken)."""
    text = raw.strip().upper().replace("-", "/").replace("_", "/")
    if "/" in text:
        base, _, quote = text.partition("/")
    else:
        quote = next((q for q in QUOTES if text.endswith(q) and len(text) > len(q)), "")
        base = text[: len(text) - len(quote)]
    if not base or not quote:
        raise PayloadRejected(f"symbol {raw!r}: cannot tell base from quote")
    return f"{asset_of(base)}/{asset_of(quote)}"


def normalize(payload: Any, txn: MemoryTxn, ctx: Context) -> list[dict[str, Any]]:
    message = mapping(payload, "message")
    sub_type = text_field(message, "sub_type", "sub_type", max_len=32).lower()
    if sub_type in ("balance", "balance_update"):
        return _balance(message, ctx)
    if sub_type == "order_info":
        return _order_info(mapping(message.get("order"), "order"), ctx)
    if sub_type == "fill":
        body = mapping(message.get("fill", message.get("data")), "fill")
        return [_fill(body, body, ctx, fee=None)]
    if sub_type == "dlta_points":
        return []
    raise PayloadRejected(f"unknown DeltaDeFi account message sub_type {sub_type!r}")


def _balance(message: Mapping[str, Any], ctx: Context) -> list[dict[str, Any]]:
    rows = message.get("balance", message.get("balances", message.get("data")))
    assets: dict[str, dict[str, str]] = {}
    for i, row in enumerate(sequence(rows, "balance")):
        row = mapping(row, f"balance[{i}]")
        asset = asset_of(text_field(row, "asset", f"balance[{i}].asset", max_len=24))
        free = opt_amount(row, "free", f"balance[{i}].free")
        if free is None:
            free = req_amount(row, "available", f"balance[{i}].available")
        locked = opt_amount(row, "locked", f"balance[{i}].locked") or Decimal(0)
        if free < 0 or locked < 0:
            raise PayloadRejected(f"balance[{i}] ({asset}): negative free or locked")
        if asset in assets:
            raise PayloadRejected(f"balance: asset {asset} listed twice")
        assets[asset] = {"free": fmt(free), "locked": fmt(locked)}
    if "timestamp" in message:
        ts = ts_any(message["timestamp"], "timestamp")
    elif ctx.received_at is not None:
        ts = ctx.received_at
    else:
        raise PayloadRejected("balance message carries no time: wrap it as "
                              '{"received_at": <ms>, "frame": <message>} at the gateway')
    account = ctx.account(message.get("account_id"))
    millis = (ts - EPOCH) // dt.timedelta(milliseconds=1)
    event_id = f"{VENUE}:balance:{millis}:{digest(message)}"
    return [ctx.event("balance", event_id, account, ts, wallet_balance=None,
                      assets={k: assets[k] for k in sorted(assets)})]


def _order_info(order: Mapping[str, Any], ctx: Context) -> list[dict[str, Any]]:
    records = [mapping(r, f"order_execution_records[{i}]") for i, r in
               enumerate(sequence(order.get("order_execution_records"),
                                  "order_execution_records"))]
    if not records:
        return []
    shares: list[Decimal | None] = [None] * len(records)
    if any(r.get("commission") is None for r in records):
        total = opt_amount(order, "commission", "order.commission") or Decimal(0)
        total = _in_asset_units(total, text_field(order, "commission_unit",
                                                  "order.commission_unit", default=""))
        qtys = [req_amount(r, "filled_base_qty", "filled_base_qty") for r in records]
        filled = sum(qtys, Decimal(0))
        for i, qty in enumerate(qtys):
            if records[i].get("commission") is None:
                with localcontext() as pro_rata:  # the one place a fee may be rounded
                    pro_rata.traps[Inexact] = False
                    share = total if len(records) == 1 or filled == 0 else total * qty / filled
                    shares[i] = share.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)
    return [_fill(record, order, ctx, fee=shares[i]) for i, record in enumerate(records)]


def _in_asset_units(value: Decimal, unit: str) -> Decimal:
    return value / LOVELACE_PER_ADA if unit.strip().lower() == "lovelace" else value


def _fill(record: Mapping[str, Any], order: Mapping[str, Any], ctx: Context,
          fee: Decimal | None) -> dict[str, Any]:
    rid = ident(record.get("id"), "execution record id")
    where = f"execution {rid}"
    account = ctx.account(order.get("account_id", record.get("account_id")))
    symbol = symbol_of(text_field(order, "symbol", f"{where}: symbol", max_len=32))
    side = side_of(order.get("side"), f"{where}: side")
    qty = opt_amount(record, "filled_base_qty", f"{where}.filled_base_qty")
    if qty is None:
        qty = req_amount(record, "quantity", f"{where}.quantity")
    if qty <= 0:
        raise PayloadRejected(f"{where}: filled quantity must be > 0, got {fmt(qty)}")
    price = opt_amount(record, "execution_price", f"{where}.execution_price")
    if price is None or price < 0:
        raise PayloadRejected(f"{where}.execution_price: missing or negative")
    unit = text_field(record, "commission_unit", f"{where}.commission_unit",
                      default=text_field(order, "commission_unit", "commission_unit", default=""),
                      max_len=64)
    if fee is None:
        fee = _in_asset_units(amount(record.get("commission", "0"), f"{where}.commission"), unit)
    when = record.get("created_at", record.get("timestamp"))
    ts = ts_any(when, f"{where}.created_at")
    fill: dict[str, Any] = {"symbol": symbol, "side": side, "qty": fmt(qty),
                            "price": fmt(price), "fee": fmt(fee), "market": "spot"}
    if unit:
        fill["fee_asset"] = asset_of(unit)
    order_id = record.get("order_id", order.get("id"))
    if order_id is not None:
        fill["venue_order_id"] = ident(order_id, f"{where}.order_id")
    return ctx.event("fill", f"{VENUE}:fill:{rid}", account, ts, **fill)
