"""Shared machinery of the venue normalizers: decoding, exact amounts, time, ids, memory.

Owns: turning raw bytes/text into JSON with exact decimals (``parse_float=Decimal``,
integers as ``Decimal``, ``NaN``/``Infinity`` refused), the checks every amount
and timestamp goes through, the FOLD_FORMAT event builder, the ``Rejection``
value and the bounded, serializable ``OrderMemory``. Must not touch: the
meaning of any venue's fields (one module per venue owns that) or the ledger's
rules (a normalizer states venue facts; the fold decides what they mean).

Every amount leaves here as a plain decimal string (``"0.1878"``, ``"202276"``),
never a float and never in exponent form, within the Avro ``decimal(38, 18)``
of ``schemas/avro`` (at most 20 integer and 18 fractional digits): a value the
schema cannot hold exactly is rejected, not rounded.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import (
    ROUND_HALF_EVEN,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)
from decimal import Context as DecimalContext
from typing import Any

from streams.gateways.exceptions import PayloadRejected
from streams.ledger import grammar
from streams.ledger.events import iso_z as iso  # one ISO-8601 format for the project

#: Kinds of FOLD_FORMAT lines a normalizer may emit.
KINDS = ("fill", "fill_settled", "funding", "balance", "positions", "cash_flow", "anchor", "mark")
#: Largest raw payload accepted, after decompression (a REST page of trades fits easily).
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
MAX_INT_DIGITS = 20
MAX_FRAC_DIGITS = 18
#: Venue timestamps outside [2000, 2100) are corrupt, not history.
_TS_MIN = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_TS_MAX = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_ID_LEN = 128
#: Arithmetic of the normalizers: wide enough for decimal(38, 18) sums and differences, and
#: any rounding raises (``Inexact``) instead of silently changing an amount.
EXACT = DecimalContext(prec=100, rounding=ROUND_HALF_EVEN,
                       traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])


@dataclass(frozen=True)
class Rejection:
    """A raw payload that was not turned into events, with the reason in clear text.

    ``raw`` is the original payload as received (bytes or text; a mapping
    handed in by a caller is kept as canonical JSON text) so it can be
    dead-lettered as it was.
    """

    venue: str
    reason: str
    raw: bytes | str

    def __str__(self) -> str:
        return f"{self.venue}: {self.reason}"


# --------------------------------------------------------------------------- decoding


def original_bytes(raw: object) -> bytes | str:
    """The payload as it will be kept in a rejection: bytes and text unchanged."""
    if isinstance(raw, bytes | bytearray | memoryview):
        return bytes(raw)
    if isinstance(raw, str):
        return raw
    try:
        return json.dumps(raw, sort_keys=True, default=str, ensure_ascii=False)
    except Exception:  # a caller's object that is not JSON-like: keep what can be shown
        return _show(raw)


def _to_text(raw: bytes) -> str:
    if raw[:2] == b"\x1f\x8b":
        # BingX sends its WebSocket frames gzip-compressed; the gateway may pass them as-is.
        try:
            raw = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(MAX_PAYLOAD_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise PayloadRejected(f"gzip frame does not decompress: {exc}") from None
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise PayloadRejected(f"payload larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadRejected(f"payload is not UTF-8: {exc.reason} at byte {exc.start}") from None


def loads(text: str) -> Any:
    """JSON text -> Python with exact decimals; ``NaN``/``Infinity`` and exponents refused."""
    if len(text) > MAX_PAYLOAD_BYTES:
        raise PayloadRejected(f"payload larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        # The input grammar: exact numbers in plain form, no NaN, bounded nesting.
        return grammar.loads(text)
    except grammar.GrammarError as exc:
        raise PayloadRejected(str(exc)) from None


def decode(raw: object) -> Any:
    """bytes | str | Mapping -> JSON value. Text that is not JSON is rejected."""
    if isinstance(raw, bytes | bytearray | memoryview):
        return loads(_to_text(bytes(raw)))
    if isinstance(raw, str):
        return loads(raw)
    if isinstance(raw, Mapping):
        return raw
    raise PayloadRejected(f"payload must be bytes, text or a JSON object, got {type(raw).__name__}")


# --------------------------------------------------------------------------- amounts


def amount(value: object, name: str) -> Decimal:
    """A venue amount -> exact Decimal under the input grammar; anything else is rejected.

    Text must be a plain ASCII decimal ``-?digits(.digits)?`` (no exponent,
    ``+``, underscores, spaces or non-ASCII digits: ``"1_000"``, ``"١٢٣"``,
    ``"５"`` are not numbers); a JSON number was already held to the same form
    by :func:`loads`; every value must fit decimal(38, 18)
    (``streams.ledger.grammar``).
    """
    if value is None:
        raise PayloadRejected(f"{name}: expected a decimal, got {_show(value)}")
    if isinstance(value, float):
        raise PayloadRejected(f"{name}: binary float {value!r} refused (amounts must be exact)")
    try:
        return grammar.decimal_value(value, name)
    except grammar.GrammarError as exc:
        raise PayloadRejected(str(exc)) from None


def unset(value: object) -> bool:
    """Venues send "no value" as null, "" or a zero (BingX ``"T": 0``)."""
    if value is None or isinstance(value, bool):
        return value is None
    if isinstance(value, str):
        text = value.strip()
        return not text or text.strip("0.") == "" and any(c == "0" for c in text)
    if isinstance(value, int | Decimal):
        return value == 0
    return False


def opt_amount(obj: Mapping[str, Any], key: str, name: str | None = None) -> Decimal | None:
    """``obj[key]`` as an amount, or None when absent, null or an empty string."""
    value = obj.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return amount(value, name or key)


def req_amount(obj: Mapping[str, Any], key: str, name: str | None = None) -> Decimal:
    value = opt_amount(obj, key, name)
    if value is None:
        raise PayloadRejected(f"{name or key}: missing")
    return value


def fmt(d: Decimal) -> str:
    """Plain decimal string: ``'0.1878'``, ``'202276'``, ``'0'`` — never ``'1E+2'`` or ``'-0'``."""
    if d == 0:
        return "0"
    if d == d.to_integral_value():
        return format(d.quantize(Decimal(1), context=EXACT), "f")
    # exact: the default context would round a 38-digit amount to 28 digits
    return format(d.normalize(context=EXACT), "f")


def _show(value: object) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long to print (sys.set_int_max_str_digits)
        return f"<{type(value).__name__} too long to print>"
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- time


def _bounded(ts: dt.datetime, name: str, value: object) -> dt.datetime:
    if not _TS_MIN <= ts < _TS_MAX:
        raise PayloadRejected(f"{name}: {_show(value)} is outside 2000..2100")
    return ts


def ts_from_epoch(value: object, name: str, unit: Decimal) -> dt.datetime:
    """Epoch number (``unit`` seconds per step: 1 for seconds, 0.001 for ms) -> aware UTC."""
    seconds = amount(value, name) * unit
    if not Decimal(_TS_MIN.timestamp()) <= seconds < Decimal(_TS_MAX.timestamp()):
        raise PayloadRejected(f"{name}: {_show(value)} is outside 2000..2100")
    micros = int((seconds * 1_000_000).to_integral_value(rounding="ROUND_FLOOR"))
    return EPOCH + dt.timedelta(microseconds=micros)


def ts_from_ms(value: object, name: str) -> dt.datetime:
    return ts_from_epoch(value, name, Decimal("0.001"))


def ts_from_iso(value: object, name: str) -> dt.datetime:
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise PayloadRejected(f"{name}: not an ISO-8601 timestamp: {_show(value)}")
    text = value.strip()
    try:
        parsed = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise PayloadRejected(f"{name}: not an ISO-8601 timestamp: {_show(value)}") from None
    if parsed.tzinfo is None:
        raise PayloadRejected(f"{name}: timestamp without time zone: {_show(value)}")
    return _bounded(parsed.astimezone(dt.UTC), name, value)


def ts_any(value: object, name: str) -> dt.datetime:
    """Milliseconds since the epoch (number or digit string) or ISO-8601 text."""
    if isinstance(value, str) and not value.strip().isdigit():
        return ts_from_iso(value, name)
    return ts_from_ms(value, name)


# --------------------------------------------------------------------------- ids and fields


def ident(value: object, name: str) -> str:
    """A venue id (order id, trade id, txid) as text: a string or a non-negative integer."""
    if isinstance(value, bool) or value is None:
        raise PayloadRejected(f"{name}: missing or not an id: {_show(value)}")
    if isinstance(value, int):
        value = Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite() or value < 0 or (value and value.adjusted() >= 27) or \
                value != value.to_integral_value():
            raise PayloadRejected(f"{name}: not an id: {_show(value)}")
        text = format(value.quantize(Decimal(1)), "f")
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise PayloadRejected(f"{name}: not an id: {_show(value)}")
    if not text or len(text) > _MAX_ID_LEN or not text.isprintable() or " " in text:
        raise PayloadRejected(f"{name}: not an id: {_show(value)}")
    return text


def text_field(obj: Mapping[str, Any], key: str, name: str | None = None,
               default: str | None = None, max_len: int = 128) -> str:
    """``obj[key]`` as a printable string; missing -> ``default`` or rejection."""
    value = obj.get(key)
    if value is None or value == "":
        if default is not None:
            return default
        raise PayloadRejected(f"{name or key}: missing")
    if not isinstance(value, str):
        raise PayloadRejected(f"{name or key}: expected text, got {_show(value)}")
    if len(value) > max_len or not value.isprintable():
        raise PayloadRejected(f"{name or key}: not printable text of at most {max_len} chars")
    return value


def mapping(obj: object, name: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise PayloadRejected(f"{name}: expected a JSON object, got {_json_type(obj)}")
    return obj


def sequence(obj: object, name: str) -> list[Any]:
    if obj is None:
        return []
    if not isinstance(obj, list):
        raise PayloadRejected(f"{name}: expected a JSON array, got {_json_type(obj)}")
    return obj


def _json_type(obj: object) -> str:
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "boolean"
    if isinstance(obj, Decimal | int | float):
        return "number"
    if isinstance(obj, str):
        return "string"
    if isinstance(obj, list):
        return "array"
    if isinstance(obj, Mapping):
        return "object"
    return type(obj).__name__


def side_of(value: object, name: str = "side") -> str:
    if isinstance(value, str) and value.strip().upper() in ("BUY", "SELL"):
        return value.strip().upper()
    raise PayloadRejected(f"{name}: expected BUY or SELL, got {_show(value)}")


def position_side_of(value: object, name: str = "position_side") -> str:
    if value is None or value == "":
        return "BOTH"
    if isinstance(value, str) and value.strip().upper() in ("BOTH", "LONG", "SHORT"):
        return value.strip().upper()
    raise PayloadRejected(f"{name}: expected BOTH, LONG or SHORT, got {_show(value)}")


def digest(obj: object) -> str:
    """Short content hash of a decoded frame: the same frame re-sent has the same digest."""
    canonical = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"),
                           ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------- context and events


@dataclass(frozen=True)
class GatewayAnomaly:
    """Suspicious but bookable venue data, booked per the venue's documentation and reported.

    ``event_id`` is the event it concerns (or the order), so a re-sent frame
    reports the same anomaly; ``ts`` is that event's time (ISO-8601).
    """

    event_id: str
    account_id: str
    code: str
    detail: str
    ts: str


class Normalized(list[dict[str, Any]]):
    """The events of one payload, with the anomalies the normalizer raised on the way."""

    anomalies: tuple[GatewayAnomaly, ...] = ()


@dataclass(frozen=True)
class Context:
    """What a normalizer knows besides the frame: venue, the caller's account, receive time."""

    venue: str
    account_id: str | None = None
    received_at: dt.datetime | None = None
    anomalies: list[GatewayAnomaly] = field(default_factory=list, compare=False)

    def anomaly(self, code: str, event_id: str, account_id: str, ts: dt.datetime,
                detail: str) -> None:
        """Report suspicious venue data next to the events (``Normalized.anomalies``)."""
        self.anomalies.append(GatewayAnomaly(event_id, account_id, code, detail, iso(ts)))

    def account(self, from_payload: object = None) -> str:
        """The caller's account id, else the one the payload names, else a rejection."""
        if self.account_id:
            return self.account_id
        if isinstance(from_payload, str) and from_payload.strip():
            return ident(from_payload, "account id")
        raise PayloadRejected(
            f"{self.venue} payloads do not name the account: pass account_id (--account)")

    def event(self, kind: str, event_id: str, account_id: str, ts: dt.datetime,
              **fields: Any) -> dict[str, Any]:
        """One FOLD_FORMAT line: the common fields first, then the kind's fields."""
        out: dict[str, Any] = {"kind": kind, "event_id": event_id, "account_id": account_id,
                               "venue": self.venue, "ts": iso(ts)}
        out.update(fields)
        if self.received_at is not None:
            out["ts_ingest"] = iso(self.received_at)
        return out


# --------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class OrderProgress:
    """What the gateway has already booked of one order (venue quantities, exact).

    ``filled`` is the cumulative filled quantity and ``fee`` the cumulative
    fee (positive = cost) already emitted; ``last`` is the last fill emitted
    for the order so that a re-sent frame reproduces the identical event (the
    ledger then ignores it as a duplicate) instead of vanishing.
    """

    filled: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    last: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"filled": fmt(self.filled), "fee": fmt(self.fee),
                "last": dict(self.last) if self.last is not None else None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OrderProgress:
        last = data.get("last")
        return cls(filled=amount(data.get("filled", "0"), "filled"),
                   fee=amount(data.get("fee", "0"), "fee"),
                   last=dict(mapping(last, "last")) if last is not None else None)


Position = dict[str, str]


@dataclass
class OrderMemory:
    """Small, explicit, bounded memory of the gateway, per (venue, account, order).

    Venues that report fills only cumulatively (BingX ``z``) need the
    cumulative quantity already booked to turn a report into an increment;
    venues that report only the positions that changed (Binance/BingX
    ``ACCOUNT_UPDATE``) need the last known book to publish a whole snapshot.
    Both live here and nowhere else. Least recently used orders are forgotten
    beyond ``max_orders`` (a forgotten order that reports again is treated as
    new). ``to_json``/``from_json`` make it storable next to the gateway's
    offsets so a restart resumes where it stopped.
    """

    max_orders: int = 50_000
    max_books: int = 10_000
    max_positions_per_book: int = 2_000
    _orders: OrderedDict[str, OrderProgress] = field(default_factory=OrderedDict, repr=False)
    _books: OrderedDict[str, dict[str, Position]] = field(default_factory=OrderedDict, repr=False)

    def __len__(self) -> int:
        return len(self._orders)

    def order(self, key: str) -> OrderProgress | None:
        return self._orders.get(key)

    def book(self, key: str) -> dict[str, Position]:
        return {k: dict(v) for k, v in self._books.get(key, {}).items()}

    def begin(self) -> MemoryTxn:
        """Stage changes so that a rejected payload leaves the memory untouched."""
        return MemoryTxn(self)

    def _put_order(self, key: str, progress: OrderProgress) -> None:
        self._orders[key] = progress
        self._orders.move_to_end(key)
        while len(self._orders) > self.max_orders:
            self._orders.popitem(last=False)

    def _put_book(self, key: str, book: dict[str, Position]) -> None:
        if len(book) > self.max_positions_per_book:
            raise PayloadRejected(
                f"more than {self.max_positions_per_book} open positions in one account")
        self._books[key] = book
        self._books.move_to_end(key)
        while len(self._books) > self.max_books:
            self._books.popitem(last=False)

    def to_json(self) -> dict[str, Any]:
        return {"version": 1,
                "orders": {k: v.to_json() for k, v in self._orders.items()},
                "books": {k: {pk: dict(p) for pk, p in b.items()} for k, b in self._books.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], max_orders: int = 50_000) -> OrderMemory:
        if data.get("version") != 1:
            raise PayloadRejected(f"unknown memory version {data.get('version')!r}")
        memory = cls(max_orders=max_orders)
        for key, value in mapping(data.get("orders", {}), "orders").items():
            memory._put_order(str(key), OrderProgress.from_json(mapping(value, key)))
        for key, book in mapping(data.get("books", {}), "books").items():
            memory._put_book(str(key), {str(pk): {str(f): str(v) for f, v in
                                                  mapping(p, pk).items()}
                                        for pk, p in mapping(book, key).items()})
        return memory


class MemoryTxn:
    """Reads through to an ``OrderMemory``; writes land only on :meth:`commit`."""

    def __init__(self, memory: OrderMemory) -> None:
        self._memory = memory
        self._orders: dict[str, OrderProgress] = {}
        self._books: dict[str, dict[str, Position]] = {}

    def order(self, key: str) -> OrderProgress | None:
        if key in self._orders:
            return self._orders[key]
        return self._memory.order(key)

    def set_order(self, key: str, progress: OrderProgress) -> None:
        self._orders[key] = progress

    def book(self, key: str) -> dict[str, Position]:
        if key in self._books:
            return {k: dict(v) for k, v in self._books[key].items()}
        return self._memory.book(key)

    def set_book(self, key: str, book: dict[str, Position]) -> None:
        if len(book) > self._memory.max_positions_per_book:
            raise PayloadRejected(
                f"more than {self._memory.max_positions_per_book} open positions in one account")
        self._books[key] = {k: dict(v) for k, v in book.items()}

    def commit(self) -> None:
        for key, progress in self._orders.items():
            self._memory._put_order(key, progress)
        for key, book in self._books.items():
            self._memory._put_book(key, book)
