"""The one input grammar of twinledger: what a number, a time, an identifier and a record may be.

Owns: the rules every input path applies before anything is booked — the
fold file reader (``streams.foldfile``), the gateways (``streams.gateways``),
``twinledger produce``, the worker's decoder (``parse_event`` after the
codec) and the sink's archive check (``sinks.rows``, through
``parse_event``) — so that the offline fold and the stream accept and refuse
exactly the same inputs. Must not touch: the meaning of fields (``events``
says which field is which and which sign a kind allows) or any I/O.

The grammar (README "twinledger fold"):

- **Decimals** are ASCII text ``-?[0-9]+(\\.[0-9]+)?`` — no exponent, no
  ``+``, no underscores, no surrounding spaces, no non-ASCII digits
  (``"١٢٣"``, ``"５"``), no ``NaN``/``Infinity``. A JSON number is read
  exactly (its text, never a float) and held to the same form. A value must
  fit the wire type of ``schemas/avro`` — ``decimal(38, 18)``: at most 20
  integer and 18 fractional digits (``|x| < 1e20``). Text is read in
  canonical form (``"1.50"`` is 1.5, ``"-0"`` is 0), as the worker reads the
  wire's scaled integers, so one amount prints and digests alike everywhere.
- **Timestamps** are ISO-8601 ``YYYY-MM-DDTHH:MM:SS[.ffffff]`` with a zone
  (``Z`` or ``±HH:MM``), ASCII, within ``TS_MIN .. TS_MAX``
  (1900-01-01T00:00:00Z .. 2299-12-31T23:59:59Z): the intersection of
  ClickHouse ``DateTime64(6)`` (1900-01-01 .. 2299-12-31 23:59:59) and
  Avro ``timestamp-micros`` (a signed 64-bit count of microseconds, about
  ±292,000 years around 1970).
- **Identifiers** (event_id, account_id, venue, symbol, asset, order ids,
  strategy tags) are text of at most ``MAX_ID_CHARS`` characters that
  encodes as UTF-8 (no lone surrogates) and holds no control characters.
- **Records**: an event whose Avro encoding could reach ``MAX_RECORD_BYTES``
  is refused before it is sent (the broker's default ``max.message.bytes``
  is 1,048,588 bytes and the producer's ``message.max.bytes`` 1,000,000;
  the margin covers key, headers and batch overhead).
- **JSON lines** nested deeper than ``MAX_JSON_DEPTH`` are refused without
  recursing (Python's parser would raise ``RecursionError``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Context, Decimal
from typing import Any

from streams.exceptions import InvalidEvent

#: decimal(38, 18): 20 integer digits, 18 fractional digits (schemas/avro, sinks/ddl).
INT_DIGITS = 20
FRAC_DIGITS = 18
LIMIT = Decimal(10) ** INT_DIGITS
#: Every store holds these instants (see the module docstring).
TS_MIN = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
TS_MAX = dt.datetime(2299, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
MAX_ID_CHARS = 256
#: Largest framed Avro value produce sends (below the broker's 1 MB default).
MAX_RECORD_BYTES = 900_000
MAX_JSON_DEPTH = 64
#: An exact context for the scale check of fits_wire and for canonical().
_EXACT_CTX = Context(prec=200)
_ONE = Decimal(1)
_ZERO = Decimal(0)

_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?\Z", re.ASCII)
#: The common case in one match: a decimal already in canonical form that fits
#: decimal(38, 18) — no leading zero, at most 20 integer digits, at most 18
#: places without a trailing zero — and is not ``-0`` (checked apart: a
#: look-ahead would double the cost). ``Decimal(text)`` of such text is what the
#: full rule returns, so the rule's other steps can be skipped.
CANONICAL_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]{0,19})(?:\.[0-9]{0,17}[1-9])?", re.ASCII).fullmatch
_TS = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})\Z", re.ASCII)
#: The common case of _TS: UTC with ``Z``, which ``fromisoformat`` reads as UTC itself.
_TS_Z = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z\Z", re.ASCII).match
_FROMISO = dt.datetime.fromisoformat
# C0 controls and DEL: never part of an id, and unsafe in logs and keys.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class GrammarError(InvalidEvent, ValueError):
    """An input that breaks the grammar; the message names the field and the rule.

    An ``InvalidEvent`` (the worker dead-letters it, the fold rejects the line)
    and a ``ValueError`` (for JSON hooks and callers that catch that).
    """


def _show(value: object) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return f"<{type(value).__name__} too long to print>"
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------------------ decimals


def decimal_text(text: str, field: str) -> Decimal:
    """A decimal written as text, held to ``-?digits(.digits)?`` and decimal(38, 18)."""
    if CANONICAL_DECIMAL(text) and text != "-0":
        return Decimal(text)
    if len(text) > INT_DIGITS + FRAC_DIGITS + 64 or not _DECIMAL.match(text):
        raise GrammarError(f"{field}: {_show(text)} is not a decimal (-?digits(.digits)?, "
                           "no exponent, sign +, spaces or non-ASCII digits)")
    dot = text.find(".")
    places = len(text) - dot - 1 if dot >= 0 else 0
    if places > FRAC_DIGITS:
        raise GrammarError(f"{field}: {_show(text)} has more than {FRAC_DIGITS} decimal places")
    x = Decimal(_canonical_text(text) if dot >= 0 or text[0] == "-" else text)
    if x and x.adjusted() >= INT_DIGITS:  # abs() would round to the context's 28 digits
        raise GrammarError(f"{field}: |{text}| must be below 1e20 (decimal(38,18))")
    return x


def _canonical_text(text: str) -> str:
    """``"1.50"`` -> ``"1.5"``, ``"2.0"`` -> ``"2"``, ``"-0.0"`` -> ``"0"``.

    One value, one form: the wire carries scaled integers, so what the worker
    decodes is canonical (``streams.codec.venue.plain``), and a file's amount
    must read the same to print and digest the same.
    """
    if "." in text:
        text = text.rstrip("0")
        if text.endswith("."):
            text = text[:-1]
    if text == "-0" or (text.startswith("-0") and not text.strip("-0.")):
        return "0"
    return text


def canonical(x: Decimal) -> Decimal:
    """The canonical form of a finite decimal: no trailing zeros, integers with exponent 0."""
    if x == x.to_integral_value():
        return x.quantize(_ONE, context=_EXACT_CTX) if x else _ZERO
    return x.normalize(context=_EXACT_CTX)


def fits_wire(x: Decimal) -> bool:
    """True when a finite ``x`` fits decimal(38, 18) exactly."""
    if not x.is_finite():
        return False
    if x and x.adjusted() >= INT_DIGITS:
        return False
    exp = x.as_tuple().exponent
    assert isinstance(exp, int)
    if exp >= -FRAC_DIGITS:
        return True
    # Trailing zeros beyond the scale do not count (1.000...0 with 30 places is 1).
    return x == x.quantize(Decimal(1).scaleb(-FRAC_DIGITS), context=_EXACT_CTX)


def decimal_value(value: Any, field: str) -> Decimal:
    """An amount as text, int or Decimal (a JSON number read exactly, a wire value).

    A float is refused (it is not exact); a ``Decimal`` must be finite and fit
    decimal(38, 18); text must match the grammar.
    """
    if type(value) is Decimal:  # the worker's path (the codec's canonical decimals) first
        x = value
    elif isinstance(value, str):
        return decimal_text(value, field)
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
    # The exponent, read from the text when it has no exponent mark: then it has
    # exactly -exponent digits after the point. as_tuple() (a tuple of every
    # digit) costs three times as much, and this is the worker's path.
    text = str(x)
    if "E" in text or "e" in text:  # "e" when the context prints lowercase
        exp = x.as_tuple().exponent
        assert isinstance(exp, int)
    else:
        dot = text.find(".")
        exp = dot + 1 - len(text) if dot >= 0 else 0
    if exp < -FRAC_DIGITS:  # as many places as the text rule allows, trailing zeros too
        raise GrammarError(f"{field}: {x} has more than {FRAC_DIGITS} decimal places")
    return x


# ------------------------------------------------------------------------------ time


def timestamp_text(text: str, field: str) -> dt.datetime:
    """ISO-8601 text with a zone -> aware UTC datetime within TS_MIN .. TS_MAX."""
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
    return timestamp_value(parsed, field)


def timestamp_value(value: Any, field: str) -> dt.datetime:
    """An ISO-8601 string or an aware datetime -> aware UTC datetime within the range."""
    cls = value.__class__
    if cls is str and _TS_Z(value):  # the common cases first; anything odd takes the rule
        try:
            ts = _FROMISO(value)
        except ValueError:
            ts = None
        if ts is not None and TS_MIN <= ts <= TS_MAX:
            return ts
    elif cls is dt.datetime and value.tzinfo is dt.UTC and TS_MIN <= value <= TS_MAX:
        return value  # the worker's decoded times
    if isinstance(value, str):
        if not value:
            raise GrammarError(f"missing required field {field!r}")
        return timestamp_text(value, field)
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


# ------------------------------------------------------------------------------ identifiers


def identifier(value: str, field: str) -> str:
    """Text of at most MAX_ID_CHARS characters, valid as UTF-8, without control characters."""
    if len(value) > MAX_ID_CHARS:
        raise GrammarError(f"{field}: longer than {MAX_ID_CHARS} characters ({len(value)})")
    if value.isascii() and value.isprintable():  # the common case, checked in C
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise GrammarError(f"{field}: not valid UTF-8 text ({exc.reason} at "
                           f"character {exc.start})") from None
    if _CONTROL.search(value):
        raise GrammarError(f"{field}: holds a control character")
    return value


# ------------------------------------------------------------------------------ JSON


def _json_number(text: str) -> Decimal:
    # JSON's own grammar already excludes "+", spaces, underscores and non-ASCII
    # digits; what remains to refuse is the exponent.
    if not _DECIMAL.match(text):
        raise GrammarError(f"JSON number {_show(text)} is not a plain decimal "
                           "(-?digits(.digits)?, no exponent)")
    return Decimal(_canonical_text(text))


def _no_constant(name: str) -> Any:
    raise GrammarError(f"{name} is not a number")


def _depth_ok(text: str, limit: int) -> bool:
    """True when brackets nest at most ``limit`` deep (strings are skipped)."""
    if text.count("[") + text.count("{") <= limit:
        return True
    depth = 0
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def loads(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """One JSON document with exact numbers held to the grammar; ValueError with a reason.

    Bytes must be UTF-8. Numbers become ``Decimal`` (never float) and must be
    plain decimals; ``NaN``/``Infinity`` are refused; nesting deeper than
    ``max_depth`` is refused before parsing; text with lone surrogates
    (``"\\ud800"``) is refused.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GrammarError(f"not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    if not _depth_ok(text, max_depth):
        raise GrammarError(f"JSON nested deeper than {max_depth} levels")
    try:
        doc = json.loads(text, parse_float=_json_number, parse_int=_json_number,
                         parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise GrammarError(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise GrammarError(f"JSON nested deeper than {max_depth} levels") from None
    if "\\u" in text:
        _no_surrogates(doc)
    return doc


def _no_surrogates(value: Any) -> None:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise GrammarError(f"text {_show(v)} holds a lone surrogate "
                                   "(not valid UTF-8)") from None
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
