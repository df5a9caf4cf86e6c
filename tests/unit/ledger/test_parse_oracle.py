"""``parse_event`` and the grammar against a frozen copy of the parser before its fast paths.

The copy (``_old_*`` below, as of commit caf29c2) is the oracle: for generated
inputs - valid and invalid numbers, identifiers, timestamps, whole events with
one field replaced or dropped - the fast parser must return the same event
(same class, same ``repr``: decimals with the same exponent, datetimes with the
same zone; the same payload digest) or raise the same exception type with the
same message. It lives only here; nothing in ``streams`` uses it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, localcontext
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streams.exceptions import InvalidEvent
from streams.ledger import events, grammar
from streams.ledger.events import (
    FLOWS,
    INFLOWS,
    KINDS,
    MARKETS,
    MAX_ITEMS,
    OUTFLOWS,
    POSITION_SIDES,
    SIDES,
    Anchor,
    Balance,
    CashFlow,
    ExchangePosition,
    Fill,
    FillSettled,
    Funding,
    Mark,
    Positions,
    payload_digest,
)
from streams.ledger.grammar import (
    FRAC_DIGITS,
    INT_DIGITS,
    MAX_ID_CHARS,
    MAX_RECORD_BYTES,
    TS_MAX,
    TS_MIN,
    GrammarError,
    _show,
)
from streams.ledger.numbers import D0, D1

PROPERTY = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ the oracle (frozen copy)

_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?\Z", re.ASCII)
_TS = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})\Z", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _old_decimal_text(text: str, field: str) -> Decimal:
    if len(text) > INT_DIGITS + FRAC_DIGITS + 64 or not _DECIMAL.match(text):
        raise GrammarError(f"{field}: {_show(text)} is not a decimal (-?digits(.digits)?, "
                           "no exponent, sign +, spaces or non-ASCII digits)")
    dot = text.find(".")
    places = len(text) - dot - 1 if dot >= 0 else 0
    if places > FRAC_DIGITS:
        raise GrammarError(f"{field}: {_show(text)} has more than {FRAC_DIGITS} decimal places")
    x = Decimal(_old_canonical_text(text) if dot >= 0 or text[0] == "-" else text)
    if x and x.adjusted() >= INT_DIGITS:
        raise GrammarError(f"{field}: |{text}| must be below 1e20 (decimal(38,18))")
    return x


def _old_canonical_text(text: str) -> str:
    if "." in text:
        text = text.rstrip("0")
        if text.endswith("."):
            text = text[:-1]
    if text == "-0" or (text.startswith("-0") and not text.strip("-0.")):
        return "0"
    return text


def _old_decimal_value(value: Any, field: str) -> Decimal:
    if type(value) is Decimal:
        x = value
    elif isinstance(value, str):
        return _old_decimal_text(value, field)
    elif isinstance(value, bool):
        raise GrammarError(f"{field}: expected a decimal string, got bool")
    elif isinstance(value, Decimal):
        x = value
    elif isinstance(value, int):
        if abs(value) >= 10 ** INT_DIGITS:
            raise GrammarError(f"{field}: |{_show(value)}| must be below 1e20 (decimal(38,18))")
        return Decimal(value)
    elif isinstance(value, float):
        raise GrammarError(f"{field}: a float is not an amount (read JSON with "
                           "parse_float=Decimal)")
    else:
        raise GrammarError(f"{field}: expected a decimal string, got {type(value).__name__}")
    if not x.is_finite():
        raise GrammarError(f"{field}: {_show(value)} is not a decimal (not finite)")
    if x and x.adjusted() >= INT_DIGITS:
        raise GrammarError(f"{field}: |{x}| must be below 1e20 (decimal(38,18))")
    exp = x.as_tuple().exponent
    assert isinstance(exp, int)
    if exp < -FRAC_DIGITS:
        raise GrammarError(f"{field}: {x} has more than {FRAC_DIGITS} decimal places")
    return x


def _old_timestamp_text(text: str, field: str) -> dt.datetime:
    if not _TS.match(text):
        if _TS.match(text + "Z") or _TS.match(text.replace(" ", "T", 1) + "Z"):
            raise GrammarError(f"{field}: {_show(text)} has no time zone (use a trailing Z)")
        raise GrammarError(f"{field}: {_show(text)} is not an ISO-8601 timestamp "
                           "(YYYY-MM-DDTHH:MM:SS[.ffffff] and Z or ±HH:MM)")
    try:
        parsed = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        parsed = parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise GrammarError(f"{field}: {_show(text)} is not a valid time") from None
    return _old_timestamp_value(parsed, field)


def _old_timestamp_value(value: Any, field: str) -> dt.datetime:
    if isinstance(value, str):
        if not value:
            raise GrammarError(f"missing required field {field!r}")
        return _old_timestamp_text(value, field)
    if not isinstance(value, dt.datetime):
        if value is None:
            raise GrammarError(f"missing required field {field!r}")
        raise GrammarError(f"{field}: expected an ISO-8601 string, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise GrammarError(f"{field}: {_show(value)} has no time zone (use a trailing Z)")
    try:
        ts = value if value.tzinfo is dt.UTC else value.astimezone(dt.UTC)
    except OverflowError:
        raise GrammarError(f"{field}: {_show(value)} is outside "
                           f"{TS_MIN:%Y-%m-%d} .. {TS_MAX:%Y-%m-%d}") from None
    if not TS_MIN <= ts <= TS_MAX:
        raise GrammarError(f"{field}: {ts.isoformat()} is outside {TS_MIN:%Y-%m-%d}T00:00:00Z .. "
                           f"{TS_MAX:%Y-%m-%dT%H:%M:%S}Z (ClickHouse DateTime64)")
    return ts


def _old_identifier(value: str, field: str) -> str:
    if len(value) > MAX_ID_CHARS:
        raise GrammarError(f"{field}: longer than {MAX_ID_CHARS} characters ({len(value)})")
    if value.isascii() and value.isprintable():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise GrammarError(f"{field}: not valid UTF-8 text ({exc.reason} at "
                           f"character {exc.start})") from None
    if _CONTROL.search(value):
        raise GrammarError(f"{field}: holds a control character")
    return value


def _old_dec(d: Mapping[str, Any], key: str, *, default: Decimal | None = None,
             nonneg: bool = False, positive: bool = False) -> Decimal:
    v = d.get(key)
    if v is None or v == "":
        if default is not None:
            return default
        raise InvalidEvent(f"missing required field {key!r}")
    return _old_to_decimal(v, key, nonneg=nonneg, positive=positive)


def _old_to_decimal(v: Any, key: str, *, nonneg: bool = False, positive: bool = False) -> Decimal:
    x = _old_decimal_value(v, key)
    if positive and x <= 0:
        raise InvalidEvent(f"{key}: must be > 0, got {_old_shown(v)}")
    if nonneg and x < 0:
        raise InvalidEvent(f"{key}: must not be negative, got {_old_shown(v)}")
    return x


def _old_shown(v: Any) -> str:
    return repr(v) if isinstance(v, str) else repr(str(v))


def _old_str(d: Mapping[str, Any], key: str, default: str | None = None) -> str:
    v = d.get(key)
    if v is None or v == "":
        if default is not None:
            return default
        raise InvalidEvent(f"missing required field {key!r}")
    if not isinstance(v, str):
        raise InvalidEvent(f"{key}: expected a string, got {type(v).__name__}")
    return _old_identifier(v, key)


def _old_choice(d: Mapping[str, Any], key: str, allowed: tuple[str, ...],
                default: str | None = None) -> str:
    v = _old_str(d, key, default)
    if v not in allowed:
        raise InvalidEvent(f"{key}: {v!r} is not one of {'/'.join(allowed)}")
    return v


def _old_assets(v: Any) -> tuple[tuple[str, Decimal, Decimal], ...]:
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
            items.append((_old_str(a, "asset"), a))
    else:
        raise InvalidEvent("assets: expected an object asset -> {free, locked}")
    if len(items) > MAX_ITEMS:
        raise InvalidEvent(f"assets: more than {MAX_ITEMS} entries")
    out = []
    for asset, fl in sorted(items, key=lambda kv: str(kv[0])):
        if not isinstance(fl, Mapping) or not isinstance(asset, str) or not asset:
            raise InvalidEvent("assets: expected asset -> {free, locked}")
        _old_identifier(asset, "assets")
        out.append((asset, _old_dec(fl, "free", default=D0, nonneg=True),
                    _old_dec(fl, "locked", default=D0, nonneg=True)))
    return tuple(out)


def _old_positions(v: Any) -> tuple[ExchangePosition, ...]:
    if v is None:
        raise InvalidEvent("missing required field 'positions'")
    if not isinstance(v, list | tuple):
        raise InvalidEvent("positions: expected a list")
    if len(v) > MAX_ITEMS:
        raise InvalidEvent(f"positions: more than {MAX_ITEMS} entries")
    out = []
    for p in v:
        if not isinstance(p, Mapping):
            raise InvalidEvent("positions: each item must be an object")
        out.append(ExchangePosition(
            symbol=_old_str(p, "symbol"),
            position_side=_old_choice(p, "position_side", POSITION_SIDES, "BOTH"),
            qty=_old_dec(p, "qty"),
            entry_price=_old_dec(p, "entry_price", default=D0, nonneg=True),
            mark_price=_old_dec(p, "mark_price", default=D0, nonneg=True),
            leverage=_old_dec(p, "leverage", default=D1, positive=True),
        ))
    return tuple(out)


_DEC_BYTES = 18
_FIXED_BYTES = 16 * 1024 + 12 * 4 * 256


def _old_str_bytes(s: str) -> int:
    return len(s.encode("utf-8")) + 10


def _old_check_size(list_bytes: int) -> None:
    if _FIXED_BYTES + list_bytes > MAX_RECORD_BYTES:
        raise InvalidEvent(f"event too large: its record could reach {MAX_RECORD_BYTES} bytes "
                           "(the broker's message size limit)")


def _old_parse_event(d: Mapping[str, Any]) -> Any:
    if not isinstance(d, Mapping):
        raise InvalidEvent(f"event must be an object, got {type(d).__name__}")
    kind = d.get("kind")
    if kind not in KINDS:
        raise InvalidEvent(f"unknown kind {kind!r}" if kind else "missing required field 'kind'")
    ts_raw = d.get("ts")
    if ts_raw is None:
        ts_raw = d.get("ts_exchange")
    ts = _old_timestamp_value(ts_raw, "ts")
    tsi_raw = d.get("ts_ingest")
    ts_ingest = None if tsi_raw in (None, "") else _old_timestamp_value(tsi_raw, "ts_ingest")
    if kind == "mark":
        return Mark(event_id=_old_str(d, "event_id", ""), account_id=_old_str(d, "account_id", ""),
                    venue=_old_str(d, "venue", ""), ts=ts, ts_ingest=ts_ingest,
                    symbol=_old_str(d, "symbol"), price=_old_dec(d, "price", positive=True))
    env: dict[str, Any] = {
        "event_id": _old_str(d, "event_id"),
        "account_id": _old_str(d, "account_id"),
        "venue": _old_str(d, "venue", ""),
        "ts": ts,
        "ts_ingest": ts_ingest,
    }
    if kind == "fill":
        return Fill(
            **env,
            symbol=_old_str(d, "symbol"),
            side=_old_choice(d, "side", SIDES),
            qty=_old_dec(d, "qty", positive=True),
            price=_old_dec(d, "price", nonneg=True),
            fee=_old_dec(d, "fee", default=D0),
            fee_asset=_old_str(d, "fee_asset", ""),
            position_side=_old_choice(d, "position_side", POSITION_SIDES, "BOTH"),
            leverage=_old_dec(d, "leverage", default=D1, positive=True),
            venue_order_id=_old_str(d, "venue_order_id", ""),
            client_order_id=_old_str(d, "client_order_id", ""),
            strategy_tag=_old_str(d, "strategy_tag", ""),
            market=_old_choice(d, "market", MARKETS, "futures"),
        )
    if kind == "fill_settled":
        ev = FillSettled(
            **env,
            symbol=_old_str(d, "symbol"),
            venue_order_id=_old_str(d, "venue_order_id", ""),
            fill_event_id=_old_str(d, "fill_event_id", ""),
            realized_pnl=_old_dec(d, "realized_pnl"),
            fee=_old_dec(d, "fee", default=D0),
        )
        if not ev.venue_order_id and not ev.fill_event_id:
            raise InvalidEvent("fill_settled needs venue_order_id or fill_event_id")
        return ev
    if kind == "funding":
        return Funding(**env, symbol=_old_str(d, "symbol"), amount=_old_dec(d, "amount"))
    if kind == "balance":
        if "wallet_balance" not in d:
            raise InvalidEvent("missing required field 'wallet_balance' (null if the frame had none)")
        wb = d["wallet_balance"]
        assets = _old_assets(d.get("assets"))
        _old_check_size(sum(_old_str_bytes(a) + 2 * _DEC_BYTES for a, _, _ in assets))
        return Balance(
            **env,
            wallet_balance=None if wb is None else _old_to_decimal(wb, "wallet_balance"),
            available_margin=_old_dec(d, "available_margin", default=D0),
            used_margin=_old_dec(d, "used_margin", default=D0, nonneg=True),
            maint_margin=_old_dec(d, "maint_margin", default=D0, nonneg=True),
            assets=assets,
        )
    if kind == "positions":
        positions = _old_positions(d.get("positions"))
        _old_check_size(sum(_old_str_bytes(p.symbol) + _old_str_bytes(p.position_side)
                            + 4 * _DEC_BYTES for p in positions))
        return Positions(**env, positions=positions)
    if kind == "cash_flow":
        flow = _old_choice(d, "flow", FLOWS)
        amount = _old_dec(d, "amount")
        if flow in INFLOWS and amount < 0:
            raise InvalidEvent(f"amount: a {flow} is an inflow and must not be negative, "
                               f"got {_old_shown(d.get('amount'))}")
        if flow in OUTFLOWS and amount > 0:
            raise InvalidEvent(f"amount: a {flow} is an outflow and must not be positive, "
                               f"got {_old_shown(d.get('amount'))}")
        return CashFlow(**env, asset=_old_str(d, "asset"), amount=amount, flow=flow)
    return Anchor(**env, capital=_old_dec(d, "capital", nonneg=True))


# ------------------------------------------------------------------ comparing


def _outcome(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    try:
        value = fn(*args)
    except Exception as exc:  # the type and message are what is compared
        return ("raised", (type(exc), str(exc)))
    return ("returned", (type(value), repr(value)))


def _same(old: Callable[..., Any], new: Callable[..., Any], *args: Any) -> None:
    expected = _outcome(old, *args)
    assert _outcome(new, *args) == expected
    # Twice: the second reading meets whatever the first one left in a cache.
    assert _outcome(new, *args) == expected


def _same_event(d: Any) -> None:
    _same(_old_parse_event, events.parse_event, d)
    try:
        ev = events.parse_event(d)
    except InvalidEvent:
        return
    assert ev == _old_parse_event(d)
    assert payload_digest(ev) == payload_digest(_old_parse_event(d))


# ------------------------------------------------------------------ generated inputs

_DIGITS = st.text(alphabet="0123456789", min_size=1, max_size=24)
_FRACTION = st.text(alphabet="0123456789", min_size=0, max_size=21)
#: Texts near the grammar: sign, leading and trailing zeros, 0-21 places, up to 24 digits.
decimal_like = st.builds(
    lambda sign, whole, dot, frac: f"{sign}{whole}{dot}{frac}",
    st.sampled_from(["", "", "-", "+", "--", " "]), _DIGITS, st.sampled_from(["", ".", "."]),
    _FRACTION)
decimal_noise = st.text(alphabet="0123456789.-+eE_ \t٣５xN", max_size=26)
decimal_numbers = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.integers(0, 22).flatmap(lambda n: st.decimals(allow_nan=False, allow_infinity=False,
                                                     places=n)),
    st.integers(-(10 ** 22), 10 ** 22).map(Decimal),
    st.integers(-(10 ** 22), 10 ** 22),
    st.sampled_from([True, False, None, "", 1.5, [], {}, b"1",
                     Decimal("-0"), Decimal("0E-30"), Decimal("1E+25"), Decimal("1.000E-20"),
                     Decimal("1.5E-7"), Decimal("1.5E-17"), Decimal("15E-19"), Decimal("1E+1"),
                     Decimal("0.000000000000000000"), Decimal("0.0000000000000000000"),
                     Decimal("1.000000000000000000"), Decimal("1.0000000000000000000"),
                     Decimal("-0.000001"), Decimal("-1E-18"), Decimal("sNaN")]),
)
amounts = st.one_of(decimal_like, decimal_like, decimal_noise, decimal_numbers,
                    st.sampled_from(["0", "-0", "-0.0", "10", "1.50", "0.000000000000000001",
                                     "99999999999999999999", "100000000000000000000",
                                     "099999999999999999999.5", "1e5", "٣"]))

identifiers = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=st.characters(codec="ascii"), max_size=12),
    st.text(alphabet=st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=4),
    st.integers(MAX_ID_CHARS - 2, MAX_ID_CHARS + 2).map(lambda n: "a" * n),
    st.integers(MAX_ID_CHARS - 2, MAX_ID_CHARS + 2).map(lambda n: "é" * n),
    st.sampled_from([None, "", 7, Decimal(1), b"x", "BUY", "SELL", "BOTH", "LONG", "SHORT",
                     "futures", "spot", "deposit", "withdrawal", "reward", "adjustment",
                     "buy", "a\x7f", "tab\there", "\ud800"]),
)

_TWO = st.integers(0, 99).map(lambda n: f"{n:02d}")
timestamp_like = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, zone: f"{y:04d}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{zone}",
    st.sampled_from([1, 1899, 1900, 1970, 2026, 2299, 2300, 9999]), _TWO, _TWO,
    st.sampled_from(["T", "T", " ", "t"]), _TWO, _TWO, _TWO,
    st.one_of(st.just(""), st.integers(1, 7).map(lambda n: "." + "5" * n)),
    st.sampled_from(["Z", "Z", "", "+00:00", "-05:30", "+14:00", "z", "+0100", "+24:00"]),
)
timestamps = st.one_of(
    timestamp_like,
    st.text(alphabet="0123456789-:TZ. +", max_size=26),
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                 timezones=st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=5)),
                                            dt.timezone(dt.timedelta(hours=-9, minutes=-30))])),
    st.sampled_from([None, "", 0, Decimal(1), "2026-01-05T10:23:22Z", "2299-12-31T23:59:59Z",
                     "2299-12-31T23:59:59.000001Z", "1900-01-01T00:00:00Z",
                     "1899-12-31T23:59:59.999999Z", "1900-01-01T00:30:00+01:00",
                     "2026-02-30T00:00:00Z", "2026-01-05T24:00:00Z"]),
)


def _ts(i: int) -> str:
    return f"2026-01-05T10:{i // 60 % 60:02d}:{i % 60:02d}Z"


#: One valid dict of every kind (the synthetic mix's shapes and the optional fields).
BASE: dict[str, dict[str, Any]] = {
    "fill": {"kind": "fill", "event_id": "e1", "account_id": "acc-1", "venue": "synth",
             "ts": _ts(1), "symbol": "S0-USDT", "side": "BUY", "qty": "180.6",
             "price": "93.3086", "fee": "6.74061326", "fee_asset": "USDT",
             "position_side": "BOTH", "leverage": "10", "venue_order_id": "o-1",
             "client_order_id": "c-1", "strategy_tag": "t", "market": "futures"},
    "fill_settled": {"kind": "fill_settled", "event_id": "e2", "account_id": "acc-1",
                     "venue": "synth", "ts": _ts(2), "symbol": "S4-USDT",
                     "fill_event_id": "e1", "venue_order_id": "o-1",
                     "realized_pnl": "-175.62787", "fee": "2.69591172"},
    "funding": {"kind": "funding", "event_id": "e3", "account_id": "acc-1", "venue": "synth",
                "ts": _ts(3), "symbol": "S6-USDT", "amount": "2.65"},
    "balance": {"kind": "balance", "event_id": "e4", "account_id": "acc-1", "venue": "synth",
                "ts": _ts(4), "ts_ingest": _ts(5), "wallet_balance": "9973.94284602",
                "available_margin": "-3054.63414598", "used_margin": "13028.576992",
                "maint_margin": "1302.8576992",
                "assets": {"USDT": {"free": "1.5", "locked": "0"}, "BTC": {"free": "0.25"}}},
    "positions": {"kind": "positions", "event_id": "e5", "account_id": "acc-1",
                  "venue": "synth", "ts": _ts(6),
                  "positions": [{"symbol": "S3-USDT", "position_side": "BOTH", "qty": "-94.2",
                                 "entry_price": "172.0986", "mark_price": "172.7174",
                                 "leverage": "1"},
                                {"symbol": "S1-USDT", "qty": "3"}]},
    "cash_flow": {"kind": "cash_flow", "event_id": "e6", "account_id": "acc-1",
                  "venue": "synth", "ts": _ts(7), "asset": "USDT", "amount": "254",
                  "flow": "deposit"},
    "anchor": {"kind": "anchor", "event_id": "e7", "account_id": "acc-1", "venue": "synth",
               "ts": _ts(8), "capital": "10000"},
    "mark": {"kind": "mark", "event_id": "", "account_id": "", "venue": "synth",
             "ts": _ts(9), "symbol": "S7-USDT", "price": "308.0208"},
}
AMOUNT_KEYS = ("qty", "price", "fee", "leverage", "realized_pnl", "amount", "wallet_balance",
               "available_margin", "used_margin", "maint_margin", "capital")
ID_KEYS = ("event_id", "account_id", "venue", "symbol", "fee_asset", "venue_order_id",
           "client_order_id", "strategy_tag", "fill_event_id", "asset", "side",
           "position_side", "market", "flow")
_DROP = object()
field_value = st.one_of(amounts, identifiers, timestamps, st.just(_DROP))


def _set(d: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    out = dict(d)
    if value is _DROP:
        out.pop(key, None)
    else:
        out[key] = value
    return out


# ------------------------------------------------------------------ properties


@PROPERTY
@given(amounts, st.sampled_from(["qty", "price"]))
@example("1.50", "qty")
@example("-0", "qty")
@example("00.10", "qty")
def test_decimal_value_is_unchanged(value: Any, field: str) -> None:
    _same(_old_decimal_value, grammar.decimal_value, value, field)
    if isinstance(value, str):
        _same(_old_decimal_text, grammar.decimal_text, value, field)


@PROPERTY
@given(decimal_numbers)
def test_decimal_value_is_unchanged_when_the_context_prints_lowercase(value: Any) -> None:
    """The exponent is read from the text when it has no exponent mark; "e" is one too."""
    with localcontext() as ctx:
        ctx.capitals = 0
        _same(_old_decimal_value, grammar.decimal_value, value, "qty")


@PROPERTY
@given(timestamps)
@example("2026-01-05T10:23:22Z")
@example("2299-12-31T23:59:59.5Z")
@example("2026-13-01T00:00:00Z")
def test_timestamp_value_is_unchanged(value: Any) -> None:
    _same(_old_timestamp_value, grammar.timestamp_value, value, "ts")


@PROPERTY
@given(identifiers.filter(lambda v: isinstance(v, str)))
def test_identifier_is_unchanged(value: str) -> None:
    _same(_old_identifier, grammar.identifier, value, "symbol")


@PROPERTY
@given(st.sampled_from(sorted(BASE)), st.lists(
    st.tuples(st.sampled_from(AMOUNT_KEYS + ID_KEYS + ("ts", "ts_ingest", "kind")), field_value),
    max_size=3))
def test_parse_event_is_unchanged(kind: str, changes: list[tuple[str, Any]]) -> None:
    d = BASE[kind]
    for key, value in changes:
        d = _set(d, key, value)
    _same_event(d)


@PROPERTY
@given(st.sampled_from(sorted(BASE)), st.sampled_from(AMOUNT_KEYS), amounts)
def test_every_amount_field_reads_alike(kind: str, key: str, value: Any) -> None:
    _same_event(_set(BASE[kind], key, value))


@PROPERTY
@given(st.sampled_from(sorted(BASE)), st.sampled_from(ID_KEYS), identifiers)
def test_every_identifier_field_reads_alike(kind: str, key: str, value: Any) -> None:
    _same_event(_set(BASE[kind], key, value))


@PROPERTY
@given(st.lists(st.fixed_dictionaries({}, optional={
    "symbol": identifiers, "position_side": identifiers, "qty": amounts,
    "entry_price": amounts, "mark_price": amounts, "leverage": amounts}), max_size=4),
    st.one_of(st.none(), st.dictionaries(identifiers.filter(lambda v: isinstance(v, str)),
                                         st.fixed_dictionaries({}, optional={
                                             "free": amounts, "locked": amounts}),
                                         max_size=3)))
def test_lists_read_alike(positions: list[dict[str, Any]], assets: Any) -> None:
    _same_event(_set(BASE["positions"], "positions", positions))
    _same_event(_set(BASE["balance"], "assets", assets))
    _same_event(_set(BASE["balance"], "assets",
                     None if assets is None else [{"asset": a, **fl} for a, fl in assets.items()]))


def test_odd_shapes_read_alike() -> None:
    """Not a mapping, a mapping that is not a dict, lists at and past the size limits."""
    from types import MappingProxyType

    long_symbol = "\U0001f600" * MAX_ID_CHARS
    for d in [None, [], "fill", 3, MappingProxyType(BASE["fill"]),
              {"kind": ["fill"]}, {"kind": "fill"}, {},
              _set(BASE["positions"], "positions", [{"symbol": long_symbol, "qty": "1"}] * 400),
              _set(BASE["positions"], "positions", [{"symbol": long_symbol, "qty": "1"}] * 900),
              _set(BASE["positions"], "positions", [{"symbol": "S", "qty": "1"}] * 2001),
              _set(BASE["positions"], "positions", [MappingProxyType({"symbol": "S", "qty": "1"})]),
              _set(BASE["positions"], "positions", ({"symbol": "S", "qty": "1"},)),
              _set(BASE["positions"], "positions", [1]),
              _set(BASE["balance"], "assets",
                   {f"{long_symbol[:-4]}{i:04d}": {"free": "1"} for i in range(900)}),
              _set(BASE["balance"], "assets", [{"asset": "A"}, 1]),
              _set(BASE["balance"], "assets", "USDT"),
              _set(BASE["fill_settled"], "venue_order_id", ""),
              _set(_set(BASE["fill_settled"], "venue_order_id", ""), "fill_event_id", None)]:
        _same_event(d)


def test_the_synthetic_mix_reads_alike() -> None:
    """Every event of the benchmark's mix, as JSON with Decimal numbers gives it."""
    import json

    from streams.ledger.synth import generate_events

    for e in generate_events(3000, 50, seed=1):
        _same_event(json.loads(json.dumps(e), parse_float=Decimal))


def test_the_worker_shaped_mix_reads_alike() -> None:
    """The same mix as the worker hands it over: Decimal amounts and datetimes (the codec's)."""
    from streams.codec import fold_dict_to_venue_record
    from streams.codec.venue import venue_record_to_fold_dict
    from streams.ledger.synth import generate_events

    for e in generate_events(3000, 50, seed=2):
        if e["kind"] != "mark":
            _same_event(venue_record_to_fold_dict(fold_dict_to_venue_record(e)))
