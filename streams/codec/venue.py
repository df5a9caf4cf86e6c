"""VenueEvent and Mark records <-> fold dicts (the FOLD_FORMAT line shape).

Owns: the mapping between the Avro envelope with its payload union and the
flat dicts that gateways produce, ``twinledger fold`` reads and the ledger
parses. Must not touch: what is bookable (the ledger's ``parse_event`` decides; amounts
and times written here only follow the input grammar of
``streams.ledger.grammar``) or the wire framing (``streams.codec.avro``).
Decimals read from the wire carry the schema's scale (``0.187800000000000000``);
they are returned in plain canonical form so a payload digest is the same
whether an event came from a file or from Kafka.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from streams.exceptions import InvalidEvent
from streams.ledger import grammar

NS = "twinledger.v1."

KIND_TO_PAYLOAD = {
    "fill": "Fill",
    "fill_settled": "FillSettled",
    "funding": "Funding",
    "balance": "BalanceUpdate",
    "positions": "PositionSnapshot",
    "cash_flow": "CashFlow",
    "anchor": "AccountAnchor",
}
PAYLOAD_TO_KIND = {v: k for k, v in KIND_TO_PAYLOAD.items()}

# Fields of each payload with the FOLD_FORMAT default ("" = required when None).
_FIELDS: dict[str, dict[str, Any]] = {
    "Fill": {"symbol": None, "side": None, "qty": None, "price": None, "fee": "0",
             "fee_asset": "", "position_side": "BOTH", "leverage": "1", "venue_order_id": "",
             "client_order_id": "", "strategy_tag": "", "market": "futures"},
    "FillSettled": {"symbol": None, "venue_order_id": "", "fill_event_id": "",
                    "realized_pnl": None, "fee": "0"},
    "Funding": {"symbol": None, "amount": None},
    "CashFlow": {"asset": None, "amount": None, "flow": None},
    "AccountAnchor": {"capital": None},
}
_DECIMALS = {"qty", "price", "fee", "leverage", "realized_pnl", "amount", "capital",
             "wallet_balance", "available_margin", "used_margin", "maint_margin", "free",
             "locked", "entry_price", "mark_price"}


def plain(d: Decimal) -> Decimal:
    """Canonical form of a decimal: no trailing zeros, never exponent notation for integers.

    Exact for every decimal(38,18): the default context (28 digits) would round
    ``99999999999999999999.999999999999999999`` to ``1E+20``.
    """
    return grammar.canonical(d)


def dec_str(d: Decimal) -> str:
    """A decimal as a plain string (``'0.1878'``, ``'202276'``), never ``'1E+2'``."""
    return format(plain(d), "f")


def _dec(value: Any, field: str) -> Decimal:
    """An amount under the input grammar (``streams.ledger.grammar``): text, int or Decimal."""
    return grammar.decimal_value(value, field)


def parse_ts(value: Any, field: str = "ts") -> dt.datetime:
    """An ISO-8601 string with a zone or an aware datetime, within the stores' range."""
    return grammar.timestamp_value(value, field)


def _take(src: Mapping[str, Any], spec: Mapping[str, Any], kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, default in spec.items():
        value = src.get(name, default)
        if value is None:
            raise InvalidEvent(f"{kind}: missing field {name!r}")
        out[name] = _dec(value, name) if name in _DECIMALS else value
    return out


def fold_dict_to_venue_record(d: Mapping[str, Any]) -> dict[str, Any]:
    """A FOLD_FORMAT dict (not ``mark``) -> VenueEvent record ready for :meth:`Codec.encode`."""
    kind = d.get("kind")
    payload_name = KIND_TO_PAYLOAD.get(str(kind))
    if payload_name is None:
        raise InvalidEvent(f"unknown kind {kind!r}")
    for key in ("event_id", "account_id", "venue"):
        if not isinstance(d.get(key), str) or not d.get(key):
            if key == "venue" and isinstance(d.get(key), str):
                continue
            raise InvalidEvent(f"{kind}: missing field {key!r}")
    ts = parse_ts(d.get("ts"))
    ts_ingest = parse_ts(d["ts_ingest"], "ts_ingest") if d.get("ts_ingest") else ts
    payload: dict[str, Any]
    if payload_name == "BalanceUpdate":
        wb = d.get("wallet_balance")
        payload = {
            "wallet_balance": None if wb is None or wb == "" else _dec(wb, "wallet_balance"),
            "available_margin": _dec(d.get("available_margin", "0"), "available_margin"),
            "used_margin": _dec(d.get("used_margin", "0"), "used_margin"),
            "maint_margin": _dec(d.get("maint_margin", "0"), "maint_margin"),
            "assets": [
                {"asset": asset, "free": _dec(v.get("free", "0"), "free"),
                 "locked": _dec(v.get("locked", "0"), "locked")}
                for asset, v in sorted((d.get("assets") or {}).items())
            ],
        }
    elif payload_name == "PositionSnapshot":
        payload = {"positions": [
            {"symbol": p["symbol"], "position_side": p.get("position_side", "BOTH"),
             "qty": _dec(p["qty"], "qty"), "entry_price": _dec(p.get("entry_price", "0"), "entry_price"),
             "mark_price": _dec(p.get("mark_price", "0"), "mark_price"),
             "leverage": _dec(p.get("leverage", "1"), "leverage")}
            for p in d.get("positions") or []
        ]}
    else:
        payload = _take(d, _FIELDS[payload_name], str(kind))
    return {
        "event_id": d["event_id"], "account_id": d["account_id"], "venue": d.get("venue", ""),
        "ts_exchange": ts, "ts_ingest": ts_ingest, "payload": (NS + payload_name, payload),
    }


def venue_record_to_fold_dict(rec: Mapping[str, Any], amount: Callable[[Decimal], Any] = plain,
                              time: Callable[[dt.datetime], Any] | None = None,
                              ) -> dict[str, Any]:
    """A decoded VenueEvent record -> FOLD_FORMAT dict with canonical Decimals and datetimes.

    ``amount`` renders each decimal (canonical ``Decimal`` by default) and
    ``time`` each time (kept as ``datetime`` by default): with
    :func:`dec_str` and :func:`iso_utc` the dict is a FOLD_FORMAT line's,
    every value as its JSON text would carry it (the sink's venue archive).
    """
    name, payload = rec["payload"]
    short = name.rsplit(".", 1)[-1]
    kind = PAYLOAD_TO_KIND[short]
    ts, ts_ingest = rec["ts_exchange"], rec["ts_ingest"]
    if time is not None:
        ts, ts_ingest = time(ts), time(ts_ingest)
    out: dict[str, Any] = {"kind": kind, "event_id": rec["event_id"], "account_id": rec["account_id"],
                           "venue": rec["venue"], "ts": ts, "ts_ingest": ts_ingest}
    if short == "BalanceUpdate":
        wb = payload["wallet_balance"]
        out["wallet_balance"] = None if wb is None else amount(wb)
        for k in ("available_margin", "used_margin", "maint_margin"):
            out[k] = amount(payload[k])
        out["assets"] = {a["asset"]: {"free": amount(a["free"]), "locked": amount(a["locked"])}
                         for a in payload["assets"]}
    elif short == "PositionSnapshot":
        out["positions"] = [
            {k: (amount(v) if isinstance(v, Decimal) else v) for k, v in p.items()}
            for p in payload["positions"]
        ]
    else:
        for k, v in payload.items():
            out[k] = amount(v) if isinstance(v, Decimal) else v
    return out


def iso_utc(value: dt.datetime) -> str:
    """An aware time as FOLD_FORMAT text in UTC (``2026-01-05T09:00:06Z``, microseconds
    only when present); a naive one is refused (``TypeError``)."""
    if value.tzinfo is None:
        raise TypeError("naive datetime")
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat() + "Z"


def mark_to_record(d: Mapping[str, Any]) -> dict[str, Any]:
    """A FOLD_FORMAT ``mark`` line -> Mark record."""
    if not d.get("symbol"):
        raise InvalidEvent("mark: missing field 'symbol'")
    price = _dec(d.get("price"), "price")
    if not price.is_finite() or price < 0:
        raise InvalidEvent(f"mark: invalid price {price}")
    return {"symbol": d["symbol"], "price": price, "ts": parse_ts(d.get("ts")),
            "venue": d.get("venue", "")}
