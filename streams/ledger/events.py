"""Typed venue events of the ledger core: parsing, validation, canonical form and payload digest.

Owns: the event classes the fold applies, ``parse_event`` (a FOLD_FORMAT line
dict -> typed event, raising ``InvalidEvent`` with a reason), ``event_to_dict``
(the canonical FOLD_FORMAT dict) and ``payload_digest`` (the idempotency
digest). Must not touch: Avro bytes, topics or files (codecs and the fold file
reader turn those into dicts first).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from streams.exceptions import InvalidEvent

from .grammar import (
    CANONICAL_DECIMAL,
    MAX_ID_CHARS,
    MAX_RECORD_BYTES,
    decimal_text,
    decimal_value,
    identifier,
    timestamp_value,
)
from .numbers import D0, D1, LEDGER_CONTEXT, plain

SIDES = ("BUY", "SELL")
POSITION_SIDES = ("BOTH", "LONG", "SHORT")
MARKETS = ("futures", "spot")
FLOWS = ("deposit", "withdrawal", "reward", "adjustment")
#: Cash-flow signs (positive = inflow): a deposit or reward is never negative, a
#: withdrawal never positive; an adjustment may go either way.
INFLOWS = ("deposit", "reward")
OUTFLOWS = ("withdrawal",)
#: Most entries a positions or assets list may carry (keeps a record far below
#: the broker's size limit together with MAX_RECORD_BYTES).
MAX_ITEMS = 2_000


@dataclass(frozen=True, slots=True, kw_only=True)
class _Envelope:
    event_id: str
    account_id: str
    venue: str
    ts: datetime
    ts_ingest: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill(_Envelope):
    """One execution (LEDGER A3-A5). ``price == 0`` means no true execution price."""

    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    fee: Decimal = D0
    fee_asset: str = ""
    position_side: str = "BOTH"
    leverage: Decimal = D1
    venue_order_id: str = ""
    client_order_id: str = ""
    strategy_tag: str = ""
    market: str = "futures"
    kind: str = "fill"


@dataclass(frozen=True, slots=True, kw_only=True)
class FillSettled(_Envelope):
    """The venue's realized PnL and fee for a fill (``fill_event_id``) or an order (A7)."""

    symbol: str
    venue_order_id: str = ""
    fill_event_id: str = ""
    realized_pnl: Decimal
    fee: Decimal = D0
    kind: str = "fill_settled"


@dataclass(frozen=True, slots=True, kw_only=True)
class Funding(_Envelope):
    """A funding payment; positive ``amount`` is paid by the account (A6)."""

    symbol: str
    amount: Decimal
    kind: str = "funding"


@dataclass(frozen=True, slots=True, kw_only=True)
class Balance(_Envelope):
    """Exchange wallet and margin facts (E, A9). ``wallet_balance`` None: frame had none."""

    wallet_balance: Decimal | None
    available_margin: Decimal = D0
    used_margin: Decimal = D0
    maint_margin: Decimal = D0
    assets: tuple[tuple[str, Decimal, Decimal], ...] = ()
    kind: str = "balance"


@dataclass(frozen=True, slots=True)
class ExchangePosition:
    """One exchange-reported position: signed ``qty``."""

    symbol: str
    position_side: str
    qty: Decimal
    entry_price: Decimal
    mark_price: Decimal
    leverage: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class Positions(_Envelope):
    """The exchange's positions; replaces E positions wholesale (A9)."""

    positions: tuple[ExchangePosition, ...]
    kind: str = "positions"


@dataclass(frozen=True, slots=True, kw_only=True)
class CashFlow(_Envelope):
    """Deposit, withdrawal, reward or adjustment; positive ``amount`` is an inflow."""

    asset: str
    amount: Decimal
    flow: str
    kind: str = "cash_flow"


@dataclass(frozen=True, slots=True, kw_only=True)
class Anchor(_Envelope):
    """Seed or re-seed capital (A10)."""

    capital: Decimal
    kind: str = "anchor"


@dataclass(frozen=True, slots=True, kw_only=True)
class Mark(_Envelope):
    """A mark price; global (``account_id`` may be empty). Not applied to an account."""

    symbol: str
    price: Decimal
    kind: str = "mark"


Event = Fill | FillSettled | Funding | Balance | Positions | CashFlow | Anchor | Mark
KINDS = ("fill", "fill_settled", "funding", "balance", "positions", "cash_flow", "anchor", "mark")


_T = TypeVar("_T")


def _builder(cls: type[_T]) -> Callable[..., _T]:
    """A constructor with ``cls``'s keyword arguments and defaults that stores each slot directly.

    The ``__init__`` of a frozen dataclass stores each field through
    ``object.__setattr__`` (about 1.5 us for a fill's 17 fields on the dev
    machine; this one about 0.65). This one calls each slot's own setter and
    makes the same object: same class, same fields. It knows plain defaults
    only, and the classes have no ``__post_init__``. A compiled class (which
    ``object.__new__`` refuses) is its own builder.
    """
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__ the builder would skip")
    try:
        object.__new__(cls)
    except TypeError:  # compiled (mypyc, ``_native``): its own constructor is native code
        return cls
    ns: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    params, body = [], []
    for i, f in enumerate(fields(cls)):  # type: ignore[arg-type]
        if f.default_factory is not MISSING or not f.init:
            raise TypeError(f"{cls.__name__}.{f.name}: the builder knows plain defaults only")
        if f.default is not MISSING:
            ns[f"_d{i}"] = f.default
            params.append(f"{f.name}=_d{i}")
        else:
            params.append(f.name)
        ns[f"_s{i}"] = getattr(cls, f.name).__set__
        body.append(f"    _s{i}(self, {f.name})\n")
    exec(f"def build(*, {', '.join(params)}):\n    self = _new(_cls)\n"  # noqa: S102
         f"{''.join(body)}    return self\n", ns)
    build: Callable[..., _T] = ns["build"]
    return build


_new_fill = _builder(Fill)
_new_fill_settled = _builder(FillSettled)
_new_funding = _builder(Funding)
_new_balance = _builder(Balance)
_new_position = _builder(ExchangePosition)
_new_positions = _builder(Positions)
_new_cash_flow = _builder(CashFlow)
_new_anchor = _builder(Anchor)
_new_mark = _builder(Mark)


# --------------------------------------------------------------------------- parsing
#
# One call per field, whose first lines take the common case and return what the
# full rule would: an amount text read before (``_DECIMALS``), a printable ASCII
# identifier, an allowed choice. Anything else goes through the full rule
# (grammar.decimal_value, grammar.identifier), so every refused input gets the
# same error as before. The fields of a kind are read in one fixed order, and
# the first one that is wrong is the one reported.

#: Sign rules of _dec.
_ANY, _NONNEG, _POSITIVE = 0, 1, 2
#: Amount texts the grammar accepted -> their value (Decimal is immutable, and
#: decimal_text depends on the text alone). Leverages, zero fees, round sizes and
#: prices on a venue's tick repeat; the table is emptied when full, so it stays
#: bounded and follows what the stream currently repeats.
_DECIMALS: dict[str, Decimal] = {}
_DECIMALS_MAX = 4096


def _amount(v: Any, key: str) -> Decimal:
    """``grammar.decimal_value(v, key)``, remembering accepted texts."""
    if v.__class__ is not str:
        return decimal_value(v, key)
    x = _DECIMALS.get(v)
    if x is None:
        x = _remember(v, key)
    return x


def _remember(v: str, key: str) -> Decimal:
    # Canonical text (the common case) is read here, saving decimal_text's call.
    x = Decimal(v) if CANONICAL_DECIMAL(v) and v != "-0" else decimal_text(v, key)
    if len(_DECIMALS) >= _DECIMALS_MAX:
        _DECIMALS.clear()
    _DECIMALS[v] = x
    return x


def _dec(d: Mapping[str, Any], key: str, default: Decimal | None = None,
         sign: int = _ANY) -> Decimal:
    v = d.get(key)
    if v.__class__ is str and v:
        x = _DECIMALS.get(v)
        if x is None:  # _remember, without the call
            x = Decimal(v) if CANONICAL_DECIMAL(v) and v != "-0" else decimal_text(v, key)
            if len(_DECIMALS) >= _DECIMALS_MAX:
                _DECIMALS.clear()
            _DECIMALS[v] = x
        # Accepted text below zero starts with "-": most amounts skip the comparison.
        if sign and ((v[0] == "-" and x < D0) or (sign == _POSITIVE and not x)):
            _sign_error(v, key, sign)
        return x
    if v is None or v == "":
        if default is not None:
            return default
        raise InvalidEvent(f"missing required field {key!r}")
    x = decimal_value(v, key)
    if sign and (x < D0 or (sign == _POSITIVE and not x)):
        _sign_error(v, key, sign)
    return x


def _sign_error(v: Any, key: str, sign: int) -> None:
    if sign == _POSITIVE:
        raise InvalidEvent(f"{key}: must be > 0, got {_shown(v)}")
    raise InvalidEvent(f"{key}: must not be negative, got {_shown(v)}")


def to_decimal(v: Any, key: str, *, nonneg: bool = False, positive: bool = False) -> Decimal:
    """Validate one amount with the input grammar (``grammar.decimal_value``) and its sign."""
    x = _amount(v, key)
    if positive and x <= 0:
        raise InvalidEvent(f"{key}: must be > 0, got {_shown(v)}")
    if nonneg and x < 0:
        raise InvalidEvent(f"{key}: must not be negative, got {_shown(v)}")
    return x


def _shown(v: Any) -> str:
    return repr(v) if isinstance(v, str) else repr(str(v))


def _str(d: Mapping[str, Any], key: str, default: str | None = None) -> str:
    v = d.get(key)
    if v.__class__ is str and v and v.isascii() and v.isprintable() and len(v) <= MAX_ID_CHARS:
        return v  # what grammar.identifier returns first
    if v is None or v == "":
        if default is not None:
            return default
        raise InvalidEvent(f"missing required field {key!r}")
    if not isinstance(v, str):
        raise InvalidEvent(f"{key}: expected a string, got {type(v).__name__}")
    return identifier(v, key)


def _choice(d: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str | None = None,
            ) -> str:
    v = d.get(key)
    if v.__class__ is str and v in allowed:  # every allowed value is an identifier
        return v
    v = _str(d, key, default)
    if v not in allowed:
        raise InvalidEvent(f"{key}: {v!r} is not one of {'/'.join(allowed)}")
    return v


def to_datetime(v: Any, key: str) -> datetime:
    """An ISO-8601 string with ``Z`` (or an offset) or an aware datetime -> aware UTC datetime.

    Held to the input grammar (``grammar.timestamp_value``): ASCII, a zone,
    within the range every store holds.
    """
    return timestamp_value(v, key)


def _assets(v: Any) -> tuple[tuple[str, Decimal, Decimal], ...]:
    if v is None:
        return ()
    items: list[tuple[str, Any]]
    if isinstance(v, Mapping):
        items = list(v.items())
    elif isinstance(v, list | tuple):
        items = []
        for a in v:
            if not isinstance(a, Mapping):
                raise InvalidEvent("assets: each item must be an object")
            items.append((_str(a, "asset"), a))
    else:
        raise InvalidEvent("assets: expected an object asset -> {free, locked}")
    if len(items) > MAX_ITEMS:
        raise InvalidEvent(f"assets: more than {MAX_ITEMS} entries")
    out = []
    for asset, fl in sorted(items, key=lambda kv: str(kv[0])):
        if not isinstance(fl, Mapping) or not isinstance(asset, str) or not asset:
            raise InvalidEvent("assets: expected asset -> {free, locked}")
        identifier(asset, "assets")
        out.append((asset, _dec(fl, "free", default=D0, sign=_NONNEG),
                    _dec(fl, "locked", default=D0, sign=_NONNEG)))
    return tuple(out)


def _positions(v: Any) -> tuple[ExchangePosition, ...]:
    if v is None:
        raise InvalidEvent("missing required field 'positions'")
    if not isinstance(v, list | tuple):
        raise InvalidEvent("positions: expected a list")
    if len(v) > MAX_ITEMS:
        raise InvalidEvent(f"positions: more than {MAX_ITEMS} entries")
    out = []
    for p in v:
        if p.__class__ is not dict and not isinstance(p, Mapping):
            raise InvalidEvent("positions: each item must be an object")
        out.append(_new_position(
            symbol=_str(p, "symbol"),
            position_side=_choice(p, "position_side", POSITION_SIDES, "BOTH"),
            qty=_dec(p, "qty"),
            entry_price=_dec(p, "entry_price", default=D0, sign=_NONNEG),
            mark_price=_dec(p, "mark_price", default=D0, sign=_NONNEG),
            leverage=_dec(p, "leverage", default=D1, sign=_POSITIVE),
        ))
    return tuple(out)


# Upper bounds of the Avro encoding: a decimal(38,18) is at most 17 bytes plus its
# length; a string its UTF-8 bytes plus a varint length; the envelope and a payload
# without lists hold at most a dozen identifiers of MAX_ID_CHARS characters.
_DEC_BYTES = 18
_FIXED_BYTES = 16 * 1024 + 12 * 4 * 256


#: What one positions or assets entry can weigh at most: two identifiers of
#: MAX_ID_CHARS characters (4 UTF-8 bytes each) and four decimals. A list short
#: enough that even this bound fits needs no byte count.
_ITEM_MAX_BYTES = 2 * (4 * MAX_ID_CHARS + 10) + 4 * _DEC_BYTES
_SHORT_LIST = (MAX_RECORD_BYTES - _FIXED_BYTES) // _ITEM_MAX_BYTES


def _str_bytes(s: str) -> int:
    return len(s.encode("utf-8")) + 10


def _check_size(list_bytes: int) -> None:
    """Refuse an event whose Avro record could reach the broker's limit (grammar)."""
    if _FIXED_BYTES + list_bytes > MAX_RECORD_BYTES:
        raise InvalidEvent(f"event too large: its record could reach {MAX_RECORD_BYTES} bytes "
                           "(the broker's message size limit)")


def parse_event(d: Mapping[str, Any]) -> Event:
    """Turn one FOLD_FORMAT line dict into a typed event, or raise ``InvalidEvent``.

    Amounts may be str, int or Decimal (never float). ``ts`` is an ISO-8601
    string with ``Z`` or an aware datetime (``ts_exchange`` is read when
    ``ts`` is absent, as the Avro envelope names it); ``ts_ingest`` is
    optional. The reason in the exception says which field is wrong.
    """
    if d.__class__ is not dict and not isinstance(d, Mapping):
        raise InvalidEvent(f"event must be an object, got {type(d).__name__}")
    kind = d.get("kind")
    if kind not in KINDS:
        raise InvalidEvent(f"unknown kind {kind!r}" if kind else "missing required field 'kind'")
    ts_raw = d.get("ts")
    if ts_raw is None:
        ts_raw = d.get("ts_exchange")
    ts = timestamp_value(ts_raw, "ts")
    tsi_raw = d.get("ts_ingest")
    ts_ingest = None if tsi_raw in (None, "") else timestamp_value(tsi_raw, "ts_ingest")
    if kind == "mark":
        return _new_mark(event_id=_str(d, "event_id", ""), account_id=_str(d, "account_id", ""),
                         venue=_str(d, "venue", ""), ts=ts, ts_ingest=ts_ingest,
                         symbol=_str(d, "symbol"), price=_dec(d, "price", sign=_POSITIVE))
    event_id = _str(d, "event_id")
    account_id = _str(d, "account_id")
    venue = _str(d, "venue", "")
    if kind == "fill":
        return _new_fill(
            event_id=event_id, account_id=account_id, venue=venue, ts=ts, ts_ingest=ts_ingest,
            symbol=_str(d, "symbol"),
            side=_choice(d, "side", SIDES),
            qty=_dec(d, "qty", sign=_POSITIVE),
            price=_dec(d, "price", sign=_NONNEG),
            fee=_dec(d, "fee", default=D0),
            fee_asset=_str(d, "fee_asset", ""),
            position_side=_choice(d, "position_side", POSITION_SIDES, "BOTH"),
            leverage=_dec(d, "leverage", default=D1, sign=_POSITIVE),
            venue_order_id=_str(d, "venue_order_id", ""),
            client_order_id=_str(d, "client_order_id", ""),
            strategy_tag=_str(d, "strategy_tag", ""),
            market=_choice(d, "market", MARKETS, "futures"),
        )
    if kind == "fill_settled":
        ev = _new_fill_settled(
            event_id=event_id, account_id=account_id, venue=venue, ts=ts, ts_ingest=ts_ingest,
            symbol=_str(d, "symbol"),
            venue_order_id=_str(d, "venue_order_id", ""),
            fill_event_id=_str(d, "fill_event_id", ""),
            realized_pnl=_dec(d, "realized_pnl"),
            fee=_dec(d, "fee", default=D0),
        )
        if not ev.venue_order_id and not ev.fill_event_id:
            raise InvalidEvent("fill_settled needs venue_order_id or fill_event_id")
        return ev
    if kind == "funding":
        return _new_funding(
            event_id=event_id, account_id=account_id, venue=venue, ts=ts, ts_ingest=ts_ingest,
            symbol=_str(d, "symbol"), amount=_dec(d, "amount"))
    if kind == "balance":
        if "wallet_balance" not in d:
            raise InvalidEvent("missing required field 'wallet_balance' (null if the frame had none)")
        wb = d["wallet_balance"]
        assets = _assets(d.get("assets"))
        if len(assets) > _SHORT_LIST:
            _check_size(sum(_str_bytes(a) + 2 * _DEC_BYTES for a, _, _ in assets))
        return _new_balance(
            event_id=event_id, account_id=account_id, venue=venue, ts=ts, ts_ingest=ts_ingest,
            wallet_balance=None if wb is None else to_decimal(wb, "wallet_balance"),
            available_margin=_dec(d, "available_margin", default=D0),
            used_margin=_dec(d, "used_margin", default=D0, sign=_NONNEG),
            maint_margin=_dec(d, "maint_margin", default=D0, sign=_NONNEG),
            assets=assets,
        )
    if kind == "positions":
        positions = _positions(d.get("positions"))
        if len(positions) > _SHORT_LIST:
            _check_size(sum(_str_bytes(p.symbol) + _str_bytes(p.position_side) + 4 * _DEC_BYTES
                            for p in positions))
        return _new_positions(
            event_id=event_id, account_id=account_id, venue=venue, ts=ts, ts_ingest=ts_ingest,
            positions=positions)
    if kind == "cash_flow":
        flow = _choice(d, "flow", FLOWS)
        amount = _dec(d, "amount")
        # The sign says the direction (positive = inflow): it must agree with the flow.
        if flow in INFLOWS and amount < 0:
            raise InvalidEvent(f"amount: a {flow} is an inflow and must not be negative, "
                               f"got {_shown(d.get('amount'))}")
        if flow in OUTFLOWS and amount > 0:
            raise InvalidEvent(f"amount: a {flow} is an outflow and must not be positive, "
                               f"got {_shown(d.get('amount'))}")
        return _new_cash_flow(
            event_id=event_id, account_id=account_id, venue=venue, ts=ts, ts_ingest=ts_ingest,
            asset=_str(d, "asset"), amount=amount, flow=flow)
    return _new_anchor(
        event_id=event_id, account_id=account_id, venue=venue, ts=ts, ts_ingest=ts_ingest,
        capital=_dec(d, "capital", sign=_NONNEG))


# --------------------------------------------------------------------------- canonical form


def iso_z(ts: datetime) -> str:
    """ISO-8601 UTC with ``Z``; microseconds only when present."""
    ts = ts.astimezone(UTC)
    if ts.microsecond:
        return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _payload(ev: Event) -> dict[str, Any]:
    if isinstance(ev, Fill):
        return {"symbol": ev.symbol, "side": ev.side, "qty": plain(ev.qty),
                "price": plain(ev.price), "fee": plain(ev.fee), "fee_asset": ev.fee_asset,
                "position_side": ev.position_side, "leverage": plain(ev.leverage),
                "venue_order_id": ev.venue_order_id, "client_order_id": ev.client_order_id,
                "strategy_tag": ev.strategy_tag, "market": ev.market}
    if isinstance(ev, FillSettled):
        return {"symbol": ev.symbol, "venue_order_id": ev.venue_order_id,
                "fill_event_id": ev.fill_event_id, "realized_pnl": plain(ev.realized_pnl),
                "fee": plain(ev.fee)}
    if isinstance(ev, Funding):
        return {"symbol": ev.symbol, "amount": plain(ev.amount)}
    if isinstance(ev, Balance):
        return {"wallet_balance": None if ev.wallet_balance is None else plain(ev.wallet_balance),
                "available_margin": plain(ev.available_margin),
                "used_margin": plain(ev.used_margin), "maint_margin": plain(ev.maint_margin),
                "assets": {a: {"free": plain(f), "locked": plain(lk)} for a, f, lk in ev.assets}}
    if isinstance(ev, Positions):
        return {"positions": [
            {"symbol": p.symbol, "position_side": p.position_side, "qty": plain(p.qty),
             "entry_price": plain(p.entry_price), "mark_price": plain(p.mark_price),
             "leverage": plain(p.leverage)} for p in ev.positions]}
    if isinstance(ev, CashFlow):
        return {"asset": ev.asset, "amount": plain(ev.amount), "flow": ev.flow}
    if isinstance(ev, Anchor):
        return {"capital": plain(ev.capital)}
    return {"symbol": ev.symbol, "price": plain(ev.price)}


def event_to_dict(ev: Event) -> dict[str, Any]:
    """The canonical FOLD_FORMAT dict of an event: amounts as plain strings, ``ts`` ISO ``Z``.

    ``parse_event(event_to_dict(e)) == e`` for every event ``parse_event`` returns.
    """
    out: dict[str, Any] = {"kind": ev.kind, "event_id": ev.event_id,
                           "account_id": ev.account_id, "venue": ev.venue, "ts": iso_z(ev.ts)}
    if ev.ts_ingest is not None:
        out["ts_ingest"] = iso_z(ev.ts_ingest)
    out.update(_payload(ev))
    return out


def _norm(x: Decimal) -> str:
    return str(x.normalize(LEDGER_CONTEXT))


def payload_digest(ev: Event) -> bytes:
    """8-byte digest of what the event says, for "same event_id, different payload" (A8).

    Covers kind, account, venue, exchange timestamp and every payload field,
    with amounts normalized (``1.50`` and ``1.5`` are the same fact, as they
    are once on the decimal(38,18) wire). ``ts_ingest`` is left out: a
    gateway re-publishing the same fact later is a duplicate, not a conflict.
    """
    parts = [ev.kind, ev.account_id, ev.venue, ev.ts.isoformat()]
    if isinstance(ev, Fill):
        parts += [ev.symbol, ev.side, _norm(ev.qty), _norm(ev.price), _norm(ev.fee),
                  ev.fee_asset, ev.position_side, _norm(ev.leverage), ev.venue_order_id,
                  ev.client_order_id, ev.strategy_tag, ev.market]
    elif isinstance(ev, FillSettled):
        parts += [ev.symbol, ev.venue_order_id, ev.fill_event_id, _norm(ev.realized_pnl),
                  _norm(ev.fee)]
    elif isinstance(ev, Funding):
        parts += [ev.symbol, _norm(ev.amount)]
    elif isinstance(ev, Balance):
        parts += ["-" if ev.wallet_balance is None else _norm(ev.wallet_balance),
                  _norm(ev.available_margin), _norm(ev.used_margin), _norm(ev.maint_margin)]
        for a, f, lk in ev.assets:
            parts += [a, _norm(f), _norm(lk)]
    elif isinstance(ev, Positions):
        for p in ev.positions:
            parts += [p.symbol, p.position_side, _norm(p.qty), _norm(p.entry_price),
                      _norm(p.mark_price), _norm(p.leverage)]
    elif isinstance(ev, CashFlow):
        parts += [ev.asset, _norm(ev.amount), ev.flow]
    elif isinstance(ev, Anchor):
        parts += [_norm(ev.capital)]
    else:
        parts += [ev.symbol, _norm(ev.price)]
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
