"""Kraken spot REST ``TradesHistory`` and ``Ledgers`` results -> venue events.

Owns: the meaning of Kraken spot REST rows as the venue documents them:

- ``{"error": [], "result": {"trades": {<txid>: {ordertxid, postxid, pair,
  time, type, ordertype, price, cost, fee, vol, margin, misc, trade_id, maker,
  ...}}, "count": n}}`` -> one spot ``fill`` per trade;
- ``{"error": [], "result": {"ledger": {<ledger id>: {refid, time, type,
  subtype, aclass, asset, amount, fee, balance}}, "count": n}}`` -> cash flows.

The ``result`` object alone is accepted too. Must not touch: ledger rules.

Decisions:

- **Asset codes** are normalized here (LEDGER B1): ``XXBT`` -> ``XBT``,
  ``ZUSD`` -> ``USD``, ``XETH`` -> ``ETH`` … by an explicit table (a blind
  "strip a leading X/Z" would mangle ``ZEC`` or ``XTZ``). Earn/staking
  variants (``DOT.S``, ``XBT.M``, ``ETH.F``) are the same asset: the suffix
  is dropped, and moves between spot and earn wallets book nothing.
- **Symbols** of spot fills are ``BASE/QUOTE`` in normalized codes
  (``XBTUSD`` -> ``XBT/USD``), so the fold can tell base from quote.
- **Fees** of trades are in the quote currency (Kraken's ``fee``) with that
  asset named (LEDGER B3).
- **Cash flows** (LEDGER B5): deposit, withdrawal, staking/earn rewards,
  dividends, airdrops, adjustments; the amount is net of the ledger fee
  (``amount - fee``: what the balance really moved). ``trade`` ledger rows
  book nothing (the trade is booked from TradesHistory with its fee).
- **Strategy tags** (LEDGER B7): TradesHistory rows do not carry the order's
  ``userref``; a gateway that joins it from ClosedOrders puts it on the row
  as ``userref`` and it becomes ``strategy_tag`` (``0``/absent = untagged).
- Rows are emitted oldest first (Kraken pages are newest first). One row
  that cannot be trusted rejects the whole page: a page is a snapshot, and
  booking part of it would hide the gap.
"""

from __future__ import annotations

import datetime as dt
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
    req_amount,
    text_field,
    ts_from_epoch,
)
from streams.gateways.exceptions import PayloadRejected

VENUE = "kraken"

#: Kraken's legacy X/Z-prefixed codes -> the codes the ledger uses.
ASSET_CODES = {
    "XXBT": "XBT", "XBT": "XBT", "XETH": "ETH", "XLTC": "LTC", "XXRP": "XRP", "XXLM": "XLM",
    "XXMR": "XMR", "XZEC": "ZEC", "XETC": "ETC", "XREP": "REP", "XMLN": "MLN", "XXDG": "XDG",
    "XXTZ": "XTZ", "XICN": "ICN", "XNMC": "NMC", "XXVN": "XVN", "XDAO": "DAO",
    "ZUSD": "USD", "ZEUR": "EUR", "ZGBP": "GBP", "ZCAD": "CAD", "ZJPY": "JPY", "ZAUD": "AUD",
    "ZKRW": "KRW", "ZCHF": "CHF",
}
#: Earn/staking wallet variants of an asset (``DOT.S``, ``XBT.M``).
EARN_SUFFIXES = frozenset({"S", "M", "P", "F", "B", "HOLD"})
#: Quote codes tried (longest first) when a pair name has no separator.
QUOTE_CODES = ("ZUSD", "ZEUR", "ZGBP", "ZCAD", "ZJPY", "ZAUD", "ZCHF", "XXBT", "XETH",
               "PYUSD", "USDT", "USDC", "USD", "EUR", "GBP", "CAD", "JPY", "AUD", "CHF",
               "XBT", "ETH", "DAI", "DOT", "POL")

CASH_FLOW_TYPES = {"deposit": "deposit", "withdrawal": "withdrawal", "staking": "reward",
                   "dividend": "reward", "airdrop": "reward", "reward": "reward",
                   "adjustment": "adjustment", "credit": "adjustment"}
#: Wallet-internal moves (spot <-> earn): the asset does not leave the account.
INTERNAL_SUBTYPES = frozenset({"spottostaking", "stakingfromspot", "stakingtospot",
                               "spotfromstaking", "allocation", "deallocation",
                               "autoallocation", "migration"})
BOOKED_ELSEWHERE = frozenset({"trade"})


def asset_of(code: str) -> str:
    text = code.strip().upper()
    base, dot, suffix = text.partition(".")
    if dot:
        if suffix not in EARN_SUFFIXES:
            raise PayloadRejected(f"asset {code!r}: unknown wallet suffix .{suffix}")
        text = base
    text = ASSET_CODES.get(text, text)
    if not text or not text.isalnum() or not text.isascii() or len(text) > 16:
        raise PayloadRejected(f"asset {code!r} is not a Kraken asset code")
    return text


def pair_of(name: str) -> tuple[str, str]:
    """``XXBTZUSD``, ``XBTUSDT``, ``SOLUSD``, ``XBT/USD`` -> (base, quote), normalized."""
    text = name.strip().upper()
    if "/" in text:
        base, _, quote = text.partition("/")
    elif len(text) == 8 and text[:4] in ASSET_CODES and text[4:] in ASSET_CODES:
        base, quote = text[:4], text[4:]
    else:
        quote = next((q for q in QUOTE_CODES if text.endswith(q) and len(text) > len(q)), "")
        base = text[: len(text) - len(quote)]
    if not base or not quote:
        raise PayloadRejected(f"pair {name!r}: cannot tell base from quote")
    return asset_of(base), asset_of(quote)


def normalize(payload: Any, txn: MemoryTxn, ctx: Context) -> list[dict[str, Any]]:
    frame = mapping(payload, "payload")
    errors = frame.get("error")
    if errors:
        raise PayloadRejected(f"Kraken error: {str(errors)[:200]}")
    result = mapping(frame.get("result", frame), "result")
    if "trades" in result:
        rows = mapping(result["trades"], "result.trades")
        events = [_trade(ident(txid, "trade txid"), mapping(row, f"trade {txid}"), ctx)
                  for txid, row in rows.items()]
    elif "ledger" in result:
        rows = mapping(result["ledger"], "result.ledger")
        events = [e for lid, row in rows.items()
                  for e in _ledger(ident(lid, "ledger id"), mapping(row, f"ledger {lid}"), ctx)]
    else:
        raise PayloadRejected("not a Kraken TradesHistory or Ledgers result "
                              "(expected result.trades or result.ledger)")
    return [event for _, _, event in sorted(events, key=lambda e: (e[0], e[1]))]


def _when(row: Mapping[str, Any], where: str) -> dt.datetime:
    return ts_from_epoch(row.get("time"), f"{where}.time", Decimal(1))


def _trade(txid: str, row: Mapping[str, Any],
           ctx: Context) -> tuple[dt.datetime, str, dict[str, Any]]:
    where = f"trade {txid}"
    account = ctx.account()
    base, quote = pair_of(text_field(row, "pair", f"{where}.pair", max_len=32))
    kind = text_field(row, "type", f"{where}.type", max_len=8).lower()
    if kind not in ("buy", "sell"):
        raise PayloadRejected(f"{where}.type: expected buy or sell, got {kind!r}")
    margin = opt_amount(row, "margin", f"{where}.margin")
    if margin:
        raise PayloadRejected(f"{where}: margin trade (margin {fmt(margin)}); only spot is booked")
    qty = req_amount(row, "vol", f"{where}.vol")
    price = req_amount(row, "price", f"{where}.price")
    fee = opt_amount(row, "fee", f"{where}.fee") or Decimal(0)
    if qty <= 0:
        raise PayloadRejected(f"{where}.vol: must be > 0, got {fmt(qty)}")
    if price < 0:
        raise PayloadRejected(f"{where}.price: negative {fmt(price)}")
    ts = _when(row, where)
    fill: dict[str, Any] = {
        "symbol": f"{base}/{quote}", "side": kind.upper(), "qty": fmt(qty), "price": fmt(price),
        "fee": fmt(fee), "fee_asset": quote, "market": "spot",
    }
    order = row.get("ordertxid")
    if order is not None:
        fill["venue_order_id"] = ident(order, f"{where}.ordertxid")
    userref = row.get("userref")
    if userref not in (None, "", 0, "0") and not (isinstance(userref, Decimal) and userref == 0):
        fill["strategy_tag"] = ident(userref, f"{where}.userref")
    return ts, txid, ctx.event("fill", f"{VENUE}:trade:{txid}", account, ts, **fill)


def _ledger(lid: str, row: Mapping[str, Any],
            ctx: Context) -> list[tuple[dt.datetime, str, dict[str, Any]]]:
    where = f"ledger {lid}"
    account = ctx.account()
    kind = text_field(row, "type", f"{where}.type", max_len=32).lower()
    subtype = text_field(row, "subtype", f"{where}.subtype", default="", max_len=32).lower()
    ts = _when(row, where)
    asset = asset_of(text_field(row, "asset", f"{where}.asset", max_len=24))
    gross = req_amount(row, "amount", f"{where}.amount")
    fee = opt_amount(row, "fee", f"{where}.fee") or Decimal(0)
    if kind in BOOKED_ELSEWHERE or subtype in INTERNAL_SUBTYPES:
        return []
    if kind == "earn":
        if subtype != "reward":
            raise PayloadRejected(f"{where}: earn subtype {subtype!r} is not supported")
        flow = "reward"
    elif kind == "transfer":
        if subtype in ("spotfromfutures", "spottofutures"):
            flow = "deposit" if gross - fee > 0 else "withdrawal"
        else:  # airdrops and forks arrive as transfers without a wallet subtype
            flow = "reward" if gross - fee > 0 else "adjustment"
    elif kind in CASH_FLOW_TYPES:
        flow = CASH_FLOW_TYPES[kind]
    else:
        raise PayloadRejected(f"{where}: ledger type {kind!r} is not supported on a spot ledger")
    net = gross - fee
    if net == 0:
        return []
    event = ctx.event("cash_flow", f"{VENUE}:ledger:{lid}", account, ts, asset=asset,
                      amount=fmt(net), flow=flow)
    return [(ts, lid, event)]
