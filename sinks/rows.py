"""Decoded records -> table rows: pure functions, one per sink table.

Owns: which record field lands in which column, the canonical FOLD_FORMAT
JSON kept with each venue event, the JSON of nested records, and the range
checks that keep one bad value from failing a whole insert. Must not touch:
Kafka, ClickHouse, time or randomness — the same record always gives the same
row, which is what lets a retried batch be rebuilt byte for byte.

Rows are lists in the column order of ``sinks.ddl`` (without the Kafka
coordinates, which the runner appends). Decimals stay ``Decimal`` and times
stay aware ``datetime``; a float never appears.

``venue_events`` archives exactly what the ledger books: a VenueEvent is
checked with the worker's own rule (:func:`check_bookable`: keyed by its
account; :func:`venue_event_row`: accepted by ``streams.ledger.parse_event``);
one the ledger refuses becomes a dead letter with the id the worker gives
it, so the two dead letters of one bad record collapse into one row.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Context, Decimal
from operator import is_
from typing import Any

from sinks.ddl import LC, MONEY, NMONEY, TABLES, TIME, Table
from sinks.exceptions import RowRejected
from streams.catalogue import RECORD_OF_TABLE
from streams.codec import dec_str, venue_record_to_fold_dict
from streams.codec.fastread import WireItem
from streams.codec.venue import iso_utc
from streams.exceptions import DecodeError, InvalidEvent
from streams.ledger import parse_event
from streams.ledger.grammar import TS_MAX, TS_MIN

Row = list[Any]
Record = Mapping[str, Any]

# Decimal(38, 18) holds 20 integer digits; DateTime64(6) spans 1900..2299.
_SCALE = Decimal("1E-18")
_EXACT = Context(prec=80)
# One range for every input and every store: the input grammar's (streams.ledger.grammar).
_TS_MIN = TS_MIN
_TS_MAX = TS_MAX
_UINT64_MAX = 2**64 - 1
_INT64 = 2**63


#: entries of the identity caches below before they start over
_CACHE_MAX = 1 << 16
#: id(decimal) -> that decimal: decimals that passed :func:`money`
_MONEY_OK: dict[int, Decimal] = {}


def money(value: Any, field: str) -> Decimal:
    """``value`` when it is a finite decimal that fits Decimal(38, 18), else RowRejected.

    Checked once per decimal object: the compiled Avro reader hands out one
    ``Decimal`` object per distinct wire value (``streams.codec.fastread``), so
    a batch repeats the same objects. The cache holds every object it answers
    for, so an id cannot be another object's while its entry lives; an equal
    but distinct value (``0E+25`` against ``0``) is checked on its own.
    """
    hit = _MONEY_OK.get(id(value))
    if hit is value and hit is not None:
        return hit
    _check_money(value, field)
    if len(_MONEY_OK) >= _CACHE_MAX:
        _MONEY_OK.clear()
    _MONEY_OK[id(value)] = value
    return value


def monies(rec: Record, fields: tuple[str, ...]) -> list[Decimal]:
    """:func:`money` of each of ``fields`` of ``rec``, in one call: a row has many."""
    ok = _MONEY_OK
    out = []
    for f in fields:
        v = rec[f]
        if ok.get(id(v)) is not v or v is None:
            v = money(v, f)
        out.append(v)
    return out


def _check_money(value: Any, field: str) -> None:
    if type(value) is not Decimal or not value.is_finite():
        raise RowRejected(f"{field}: not a finite decimal: {value!r}")
    # adjusted() is the exponent of the leading digit: >= 20 means |value| >= 1E+20.
    if value.adjusted() >= 20:
        raise RowRejected(f"{field}: {value} exceeds Decimal(38, 18)")
    # An exact context: the default one would round 38 digits to 28.
    if value != value.quantize(_SCALE, context=_EXACT):
        raise RowRejected(f"{field}: {value} has more than 18 decimal places")


def nmoney(value: Any, field: str) -> Decimal | None:
    return None if value is None else money(value, field)


def ts(value: Any, field: str = "ts") -> dt.datetime:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise RowRejected(f"{field}: not a timezone-aware time: {value!r}")
    if not _TS_MIN <= value <= _TS_MAX:
        raise RowRejected(f"{field}: {value.isoformat()} outside DateTime64 range 1900..2299")
    return value.astimezone(dt.UTC)


def uint(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _UINT64_MAX:
        raise RowRejected(f"{field}: not an unsigned 64-bit integer: {value!r}")
    return value


def int64(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not -_INT64 <= value < _INT64:
        raise RowRejected(f"{field}: not a signed 64-bit integer: {value!r}")
    return value


def text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise RowRejected(f"{field}: not a string: {value!r}")
    return value


def key_text(value: Any, field: str) -> str:
    """Key columns must be non-empty: an empty event_id would collide with every other."""
    out = text(value, field)
    if not out:
        raise RowRejected(f"{field}: empty")
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return dec_str(value)
    if isinstance(value, dt.datetime):
        return iso_utc(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"not JSON: {type(value).__name__}")


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, decimals as plain strings: one text per value.

    The C encoder walks the structure and calls back only for decimals and
    times, which keeps this off the sink's profile.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_json_default)


#: id(decimal) -> (that decimal, its JSON text): decimals that passed :func:`money`
_DEC_JSON: dict[int, tuple[Decimal, str]] = {}
#: key -> its JSON text and the colon
_KEY_JSON: dict[str, str] = {}
_encode_str = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses


def _decimal_json(value: Decimal, field: str) -> str:
    """The JSON text of a checked money decimal as :func:`canonical_json` writes it."""
    hit = _DEC_JSON.get(id(value))
    if hit is not None and hit[0] is value:
        return hit[1]
    money(value, field)
    out = _encode_str(dec_str(value))
    if len(_DEC_JSON) >= _CACHE_MAX:
        _DEC_JSON.clear()
    _DEC_JSON[id(value)] = (value, out)
    return out


#: (keys, values) of a flat record that passed -> (types of the values, indexes of its
#: zero decimals, those zeros, its JSON text); a snapshot repeats most positions of the one before
_ITEM_JSON: dict[tuple[tuple[Any, ...], tuple[Any, ...]],
                 tuple[tuple[type, ...], tuple[int, ...], tuple[Decimal, ...], str]] = {}


#: (record name, wire bytes) of an item the decoder's cache read -> its JSON text
_WIRE_JSON: dict[tuple[str, bytes], str] = {}


def _item_json(item: Any, field: str) -> str | None:
    """``canonical_json(item)`` of a flat record (str, Decimal, int, bool, None values),
    each decimal checked with :func:`money`; None for anything else or any failed check,
    and the caller takes the reference path (which raises what it raises).

    Remembered by value: an item equal to one that passed, with values of the
    same types, has the same text and passes too. Equal decimals have one
    canonical text and pass or fail :func:`money` alike, except a zero, whose
    exponent is its ``adjusted()`` (``0E+25`` equals ``0`` but does not fit):
    zeros are checked again, unless they are the very objects that passed.
    """
    if type(item) is not dict:
        return None
    values = tuple(item.values())
    key = (tuple(item), values)
    try:
        hit = _ITEM_JSON.get(key)
    except TypeError:  # an unhashable value (a list) or a signaling NaN
        return _item_text(item, field)
    if hit is not None:
        types, zeros, same_zeros, out = hit
        if tuple(map(type, values)) == types and (
                all(map(is_, map(values.__getitem__, zeros), same_zeros))
                or all(values[i].adjusted() < 20 for i in zeros)):
            return out
    out_ = _item_text(item, field)
    if out_ is not None:
        if len(_ITEM_JSON) >= _CACHE_MAX:
            _ITEM_JSON.clear()
        zeros = tuple(i for i, v in enumerate(values) if type(v) is Decimal and not v)
        _ITEM_JSON[key] = (tuple(map(type, values)), zeros, tuple(values[i] for i in zeros),
                           out_)
    return out_


def _item_text(item: dict[Any, Any], field: str) -> str | None:
    parts = []
    try:
        for k in sorted(item):
            v = item[k]
            t = type(v)
            if t is Decimal:
                text_ = _decimal_json(v, field)
            elif t is str:
                text_ = _encode_str(v)
            elif t is bool:
                text_ = "true" if v else "false"
            elif v is None:
                text_ = "null"
            elif t is int:
                text_ = int.__repr__(v)
            else:
                return None
            key = _KEY_JSON.get(k)
            if key is None:
                if type(k) is not str:
                    return None
                key = _KEY_JSON[k] = _encode_str(k) + ":"
            parts.append(key + text_)
    except (RowRejected, TypeError):
        return None
    return "{" + ",".join(parts) + "}"


def _nested(items: Any, field: str) -> str:
    """A list of nested records as canonical JSON, every decimal in money range.

    Same text and same errors as :func:`_nested_reference`; flat records (the
    positions and balances of every snapshot) take a per-item path that skips
    ``json.dumps``' callback for each decimal.
    """
    if type(items) is list:
        out = []
        for item in items:
            if type(item) is WireItem:
                # Read through the decoder's item cache: the same wire bytes as an item
                # rendered before are the same text, and passed the same checks.
                text_ = _WIRE_JSON.get(item.wire)
                if text_ is None:
                    text_ = _item_text(item, field)
                    if text_ is None:
                        return _nested_reference(items, field)
                    if len(_WIRE_JSON) >= _CACHE_MAX:
                        _WIRE_JSON.clear()
                    _WIRE_JSON[item.wire] = text_
            else:
                text_ = _item_json(item, field)
                if text_ is None:
                    return _nested_reference(items, field)
            out.append(text_)
        return "[" + ",".join(out) + "]"
    return _nested_reference(items, field)


def _nested_reference(items: Any, field: str) -> str:
    if not isinstance(items, list):
        raise RowRejected(f"{field}: not a list")
    for item in items:
        for k, v in item.items():
            if isinstance(v, Decimal):
                money(v, f"{field}.{k}")
    return canonical_json(items)


#: id(decimal) -> (that decimal, its canonical text): the venue events' amounts
_AMOUNT_TEXT: dict[int, tuple[Decimal, str]] = {}


def _amount_text(value: Decimal) -> str:
    """:func:`dec_str` of a decoded amount, once per decimal object (the Avro reader
    hands out one object per distinct wire value; an entry holds its object, so
    its id stays that object's while it lives)."""
    hit = _AMOUNT_TEXT.get(id(value))
    if hit is not None and hit[0] is value:
        return hit[1]
    out = dec_str(value)
    if len(_AMOUNT_TEXT) >= _CACHE_MAX:
        _AMOUNT_TEXT.clear()
    _AMOUNT_TEXT[id(value)] = (value, out)
    return out


def _strings(items: Any, field: str) -> list[str]:
    if not isinstance(items, list):
        raise RowRejected(f"{field}: not a list")
    return [text(v, field) for v in items]


def venue_event_row(rec: Record) -> Row:
    name, payload = rec["payload"]
    short = name.rsplit(".", 1)[-1]
    p: Mapping[str, Any] = payload
    # The event as a FOLD_FORMAT line carries it (every amount and time as its text):
    # what the archive keeps, checked as the offline fold reads it.
    fold = venue_record_to_fold_dict(rec, amount=_amount_text, time=iso_utc)
    try:
        # The archive holds the events the ledger can book; one it refuses (a
        # negative quantity, say) is a dead letter here as in the worker, under
        # the same <topic>:<partition>:<offset> id, so it is one row either way.
        parse_event(fold)
    except InvalidEvent as exc:
        raise RowRejected(f"invalid venue event: {exc}") from None
    positions = p.get("positions") if short == "PositionSnapshot" else None
    assets = p.get("assets") if short == "BalanceUpdate" else None
    amount = p.get("amount") if short in ("Funding", "CashFlow") else None
    fee = p.get("fee") if short in ("Fill", "FillSettled") else None
    return [
        key_text(rec["account_id"], "account_id"),
        key_text(rec["event_id"], "event_id"),
        text(rec["venue"], "venue"),
        fold["kind"],
        ts(rec["ts_exchange"], "ts_exchange"),
        ts(rec["ts_ingest"], "ts_ingest"),
        text(p.get("symbol", ""), "symbol"),
        text(p.get("side", ""), "side"),
        text(p.get("position_side", ""), "position_side"),
        text(p.get("market", ""), "market"),
        nmoney(p.get("qty"), "qty"),
        nmoney(p.get("price"), "price"),
        nmoney(fee, "fee"),
        text(p.get("fee_asset", ""), "fee_asset"),
        nmoney(p.get("leverage"), "leverage"),
        nmoney(p.get("realized_pnl"), "realized_pnl"),
        nmoney(amount, "amount"),
        nmoney(p.get("capital"), "capital"),
        text(p.get("asset", ""), "asset"),
        text(p.get("flow", ""), "flow"),
        nmoney(p.get("wallet_balance"), "wallet_balance"),
        nmoney(p.get("available_margin"), "available_margin"),
        nmoney(p.get("used_margin"), "used_margin"),
        nmoney(p.get("maint_margin"), "maint_margin"),
        text(p.get("venue_order_id", ""), "venue_order_id"),
        text(p.get("client_order_id", ""), "client_order_id"),
        text(p.get("fill_event_id", ""), "fill_event_id"),
        text(p.get("strategy_tag", ""), "strategy_tag"),
        _nested(positions, "positions") if positions is not None else "",
        _nested(assets, "assets") if assets is not None else "",
        canonical_json(fold),
    ]


def account_snapshot_row(rec: Record) -> Row:
    return [
        key_text(rec["account_id"], "account_id"),
        key_text(rec["event_id"], "event_id"),
        uint(rec["event_seq"], "event_seq"),
        text(rec["event_kind"], "event_kind"),
        ts(rec["ts"]),
        money(rec["capital"], "capital"),
        text(rec["capital_source"], "capital_source"),
        *monies(rec, ("k_capital", "equity", "peak_capital", "unrealized_pnl",
                      "realized_pnl", "fees", "funding", "cash_flows")),
        nmoney(rec.get("wallet_balance"), "wallet_balance"),
        *monies(rec, ("available_margin", "used_margin", "maint_margin",
                      "k_used_margin")),
        text(rec["reconcile_status"], "reconcile_status"),
        bool(rec["capital_frozen"]),
        _nested(rec["positions"], "positions"),
        _nested(rec.get("balances", []), "balances"),
        _stale_marks(rec.get("stale_marks", [])),
    ]


def _stale_marks(items: Any) -> dict[str, int]:
    """The snapshot's stale marks as symbol -> age in seconds (a UInt64 column)."""
    if not isinstance(items, list):
        raise RowRejected("stale_marks: not a list")
    out: dict[str, int] = {}
    for item in items:
        age = item.get("age_seconds") if isinstance(item, Mapping) else None
        if not isinstance(age, int) or isinstance(age, bool) or not 0 <= age < 2 ** 64:
            raise RowRejected(f"stale_marks: bad age {age!r}")
        out[text(item.get("symbol"), "stale_marks.symbol")] = age
    return out


def trade_event_row(rec: Record) -> Row:
    return [
        key_text(rec["account_id"], "account_id"),
        key_text(rec["event_id"], "event_id"),
        text(rec["trade_id"], "trade_id"),
        text(rec["source_event_id"], "source_event_id"),
        uint(rec["event_seq"], "event_seq"),
        ts(rec["ts"]),
        text(rec["symbol"], "symbol"),
        text(rec["position_side"], "position_side"),
        text(rec["side"], "side"),
        text(rec["action"], "action"),
        text(rec.get("market", "futures"), "market"),
        *monies(rec, ("qty", "price", "position_qty", "avg_entry_price",
                      "pnl_leg", "fee_leg", "cumulative_pnl", "trade_fees")),
        text(rec["pnl_source"], "pnl_source"),
        nmoney(rec.get("exchange_realized_pnl"), "exchange_realized_pnl"),
        int64(rec["holding_seconds"], "holding_seconds"),
        _strings(rec["flags"], "flags"),
        text(rec.get("strategy_tag", ""), "strategy_tag"),
        nmoney(rec.get("cost_basis"), "cost_basis"),
    ]


def reconcile_event_row(rec: Record) -> Row:
    return [
        key_text(rec["account_id"], "account_id"),
        key_text(rec["event_id"], "event_id"),
        text(rec["source_event_id"], "source_event_id"),
        uint(rec["event_seq"], "event_seq"),
        ts(rec["ts"]),
        text(rec["status"], "status"),
        text(rec["previous_status"], "previous_status"),
        bool(rec["capital_frozen"]),
        _nested(rec["results"], "results"),
        _strings(rec["explanations"], "explanations"),
    ]


def anomaly_event_row(rec: Record) -> Row:
    return [
        key_text(rec["account_id"], "account_id"),
        key_text(rec["event_id"], "event_id"),
        text(rec["source_event_id"], "source_event_id"),
        uint(rec["event_seq"], "event_seq"),
        ts(rec["ts"]),
        text(rec["code"], "code"),
        text(rec["severity"], "severity"),
        text(rec["detail"], "detail"),
    ]


def cash_flow_row(rec: Record) -> Row:
    """A CashFlowEvent (LEDGER B5/A11) -> its ``cash_flows`` row."""
    return [
        key_text(rec["account_id"], "account_id"),
        key_text(rec["event_id"], "event_id"),
        text(rec["source_event_id"], "source_event_id"),
        uint(rec["event_seq"], "event_seq"),
        ts(rec["ts"]),
        text(rec["flow"], "flow"),
        text(rec["asset"], "asset"),
        money(rec["amount"], "amount"),
        money(rec["value"], "value"),
        text(rec["currency"], "currency"),
        nmoney(rec.get("price"), "price"),
        bool(rec.get("unvalued", False)),
        nmoney(rec.get("balance_after"), "balance_after"),
    ]


def balance_change_row(rec: Record) -> Row:
    """A BalanceChange (one asset of a spot account after an event) -> its ``balances`` row."""
    return [
        key_text(rec["account_id"], "account_id"),
        key_text(rec["event_id"], "event_id"),
        key_text(rec["asset"], "asset"),
        uint(rec["version"], "version"),
        text(rec["source_event_id"], "source_event_id"),
        uint(rec["event_seq"], "event_seq"),
        ts(rec["ts"]),
        *monies(rec, ("free", "locked", "total", "avg_cost", "cost_basis",
                      "value")),
        bool(rec["unvalued"]),
        nmoney(rec.get("exchange_total"), "exchange_total"),
        bool(rec.get("drift", False)),
    ]


def portfolio_snapshot_row(rec: Record) -> Row:
    """A PortfolioSnapshot (B9) -> its ``portfolio_snapshots`` row; balances as JSON."""
    return [
        key_text(rec["account_id"], "account_id"),
        key_text(rec["event_id"], "event_id"),
        text(rec["source_event_id"], "source_event_id"),
        uint(rec["event_seq"], "event_seq"),
        ts(rec["ts"]),
        ts(rec["bucket_start"], "bucket_start"),
        int64(rec["interval_seconds"], "interval_seconds"),
        text(rec["base_currency"], "base_currency"),
        *monies(rec, ("equity", "realized_pnl", "fees", "unrealized_pnl",
                      "cash_flows")),
        bool(rec["drift"]),
        _strings(rec["drift_assets"], "drift_assets"),
        _strings(rec["unvalued_assets"], "unvalued_assets"),
        _nested(rec["balances"], "balances"),
    ]


def dead_letter_row(rec: Record) -> Row:
    """A DeadLetter record published by the worker (or a gateway) -> its row."""
    key = rec.get("original_key")
    return [
        text(rec["account_id"], "account_id"),
        key_text(rec["event_id"], "event_id"),
        text(rec["source_topic"], "source_topic"),
        int(rec["source_partition"]),
        int64(rec["source_offset"], "source_offset"),
        ts(rec["ts"]),
        text(rec["error_type"], "error_type"),
        text(rec["reason"], "reason"),
        None if key is None else bytes(key),
        bytes(rec["original_value"]),
    ]


def dead_letter_event_id(topic: str, partition: int, offset: int) -> str:
    return f"{topic}:{partition}:{offset}"


def key_as_account(key: bytes | None) -> str:
    """The record key as text when it is UTF-8 (it is the account id on co-keyed topics)."""
    if key is None:
        return ""
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return ""


def kafka_time(timestamp_ms: int | None) -> dt.datetime:
    """A Kafka record timestamp (ms) as a UTC time; a missing one becomes the epoch."""
    millis = timestamp_ms if timestamp_ms is not None and timestamp_ms >= 0 else 0
    out = dt.datetime.fromtimestamp(millis / 1000, tz=dt.UTC)
    return min(max(out, _TS_MIN), _TS_MAX)


def dead_letter_for(topic: str, partition: int, offset: int, key: bytes | None,
                    value: bytes | None, timestamp_ms: int | None, error_type: str,
                    reason: str) -> Row:
    """The row for a record the sink itself could not turn into a row."""
    return [
        key_as_account(key),
        dead_letter_event_id(topic, partition, offset),
        topic,
        partition,
        offset,
        kafka_time(timestamp_ms),
        error_type,
        reason,
        key,
        value if value is not None else b"",
    ]


@dataclass(frozen=True)
class RowSpec:
    """How one table is fed: the record it expects and the function that builds its row."""

    table: Table
    record: str
    build: Callable[[Record], Row]


#: How a field becomes the value of a column of each type, for :func:`columns_row`.
#: A type not here (a JSON ``String`` of nested records, a ``Map``) needs a builder.
_BY_TYPE: dict[str, Callable[[Any, str], Any]] = {
    "String": text, LC: text, MONEY: money, TIME: ts, "UInt64": uint, "Int64": int64,
    "Bool": lambda value, _field: bool(value), "Array(String)": _strings,
}


def columns_row(table: Table) -> Callable[[Record], Row]:
    """The row builder of a table whose columns are its record's fields of the same names.

    Each column is the field of its name, checked by its type (``account_id``
    and ``event_id`` must not be empty; a ``Nullable(Decimal)`` field may be
    missing): a new output whose table mirrors its record needs no builder of
    its own. Raises :class:`ValueError` for a column type it cannot fill.
    """
    fills: list[tuple[str, Callable[[Any, str], Any], bool]] = []
    for i, (name, kind) in enumerate(table.columns):
        if kind == NMONEY:
            fills.append((name, nmoney, True))
        elif i < 2:
            fills.append((name, key_text, False))
        elif kind in _BY_TYPE:
            fills.append((name, _BY_TYPE[kind], False))
        else:
            raise ValueError(f"{table.name}.{name}: no row builder for {kind}; "
                             "give the table its own in sinks.rows.BUILDERS")

    def build(rec: Record) -> Row:
        return [fill(rec.get(name) if optional else rec[name], name)
                for name, fill, optional in fills]
    return build


#: The row builders written by hand, by table: a table that reshapes its record
#: (nested JSON, renamed or defaulted fields) needs one; a table of
#: ``sinks.ddl.TABLES`` without one here is built by :func:`columns_row`. The
#: record a table takes is the catalogue's (``streams.catalogue``).
BUILDERS: dict[str, Callable[[Record], Row]] = {
    "venue_events": venue_event_row,
    "account_snapshots": account_snapshot_row,
    "trade_events": trade_event_row,
    "reconcile_events": reconcile_event_row,
    "anomaly_events": anomaly_event_row,
    "dead_letters": dead_letter_row,
    "cash_flows": cash_flow_row,
    "balances": balance_change_row,
    "portfolio_snapshots": portfolio_snapshot_row,
}


def row_specs(tables: Mapping[str, Table] = TABLES,
              records: Mapping[str, str] = RECORD_OF_TABLE) -> dict[str, RowSpec]:
    """Each table's spec: its layout, its catalogue record, its builder."""
    return {name: RowSpec(table, records[name], BUILDERS.get(name) or columns_row(table))
            for name, table in tables.items()}


SPECS: dict[str, RowSpec] = row_specs()


def check_bookable(record_name: str, record: Record, key: bytes | None) -> None:
    """The worker's envelope rule for a venue.events record; raises what the worker raises.

    Mirrors ``streams.app`` (decode_event): a VenueEvent, keyed by its own
    account. The ledger's ``parse_event`` runs in :func:`venue_event_row`.
    """
    if record_name != "VenueEvent":
        raise DecodeError(f"expected a VenueEvent, got a {record_name}")
    if key is not None:
        text_key = key.decode("utf-8", "replace")
        if text_key != record.get("account_id"):
            raise InvalidEvent(f"record key {text_key!r} is not its account_id "
                               f"{record.get('account_id')!r}")


def build_row(table: str, record_name: str, record: Record) -> Row:
    """The row of ``record`` for ``table``; :class:`RowRejected` when it does not fit."""
    spec = SPECS[table]
    if record_name != spec.record:
        raise RowRejected(f"{table} takes {spec.record} records, got {record_name}")
    try:
        return spec.build(record)
    except RowRejected:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RowRejected(f"{record_name}: {type(exc).__name__}: {exc}") from exc
