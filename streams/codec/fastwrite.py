"""A compiled Avro binary writer for the record shapes twinledger emits.

Owns: turning a fully expanded Avro schema into small Python functions that
append a datum's binary encoding to a ``bytearray``: one generated function per
record type, writing its ints, strings, booleans, nulls and already-seen
decimals inline, and closures for the rest. Must not
touch: framing or schema ids (``streams.codec.avro``) or what records mean.

Why: encoding an AccountSnapshot (about a hundred decimals with its
positions) was a quarter of the worker's time in fastavro, whose per-field
dispatch dominates for decimal-heavy records. Wherever both accept a datum the
output is byte-for-byte what ``fastavro.schemaless_writer`` writes (a test
checks every output of the synthetic streams and edge-case decimals against
it), including fastavro's decimal length rule (two's complement sized from the
magnitude) and its single-block arrays. Two edge cases differ on purpose: a
decimal beyond the declared precision is refused (fastavro writes it), and
trailing zeros beyond the scale are accepted when the value fits (fastavro
refuses ``0.1`` written with 39 places). Schemas with a type this writer does not know are left
to fastavro: :func:`compile_writer` returns ``None`` for them.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Mapping
from decimal import Context, Decimal
from typing import Any

from streams.codec import cext

Writer = Callable[[bytearray, Any], None]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# scaleb rounds to the context's precision (28 digits by default): shift exactly.
_EXACT = Context(prec=100)


class Unsupported(Exception):
    """The schema uses something this writer does not compile."""


def write_long(out: bytearray, n: int) -> None:
    """Zig-zag varint, as Avro int and long."""
    n = (n << 1) ^ (n >> 63)
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _w_long(out: bytearray, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an int, got {type(value).__name__}")
    write_long(out, value)


def _w_boolean(out: bytearray, value: Any) -> None:
    out.append(1 if value else 0)


def _w_string(out: bytearray, value: Any) -> None:
    data = value.encode("utf-8")
    write_long(out, len(data))
    out += data


def _w_bytes(out: bytearray, value: Any) -> None:
    write_long(out, len(value))
    out += value


def _w_null(out: bytearray, value: Any) -> None:
    if value is not None:
        raise TypeError("expected None")


def _w_timestamp_micros(out: bytearray, value: Any) -> None:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime for timestamp-micros")
        delta = value - _EPOCH
        value = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    write_long(out, value)


#: Encoded decimals remembered per (precision, scale), value -> length-prefixed bytes, in
#: two generations: when the young one is full it becomes the old one (the previous old
#: one is dropped) and a value found in the old one moves back to the young one, so
#: figures still in use survive (at most about 2 x 15 MB per (precision, scale)).
DECIMAL_CACHE_SIZE = 1 << 16
_DECIMAL_CACHES: dict[tuple[int, int], tuple[dict[Decimal, bytes], dict[Decimal, bytes]]] = {}


def _decimal_writer(precision: int, scale: int) -> Writer:
    limit = 10**precision
    factor = 10**scale
    # A decimal's encoding depends on its numeric value only (equal values, such as
    # 1.0 and 1.00, scale to the same integer), so it is remembered by value:
    # snapshots repeat most of their figures from one event to the next.
    cache, old = _DECIMAL_CACHES.setdefault((precision, scale), ({}, {}))

    def write(out: bytearray, value: Any) -> None:
        if value.__class__ is Decimal:
            try:
                out += cache[value]
                return
            except (KeyError, TypeError):  # TypeError: a signalling NaN is unhashable
                pass
        elif not isinstance(value, Decimal):
            raise TypeError(f"expected a Decimal, got {type(value).__name__}")
        if not value.is_finite():
            raise ValueError(f"not a finite decimal: {value}")
        encoded = old.get(value)
        if encoded is None:
            if value and value.adjusted() >= precision - scale:
                # |value| >= 10**(precision - scale): it cannot fit, and when it has no
                # digit below 10**-scale the check below would say so only after
                # building an int of its size (1E+99999999: minutes). Say it now.
                exponent = value.as_tuple().exponent
                if isinstance(exponent, int) and exponent >= -scale:
                    raise ValueError(f"{value} does not fit decimal({precision},{scale})")
            # Exact: the value must be a whole number of 10**-scale ...
            numerator, denominator = value.as_integer_ratio()
            unscaled, rest = divmod(numerator * factor, denominator)
            if rest:
                # ... which the exact-context shift decides for what is left (it rounds
                # beyond 100 digits, as this writer always did).
                scaled = value.scaleb(scale, context=_EXACT)
                unscaled = int(scaled)
                if scaled != unscaled:
                    raise ValueError("Scale provided in schema does not match the decimal")
            magnitude = -unscaled if unscaled < 0 else unscaled
            # ... and fit the declared precision (fastavro checks digits of the
            # representation instead, and would write 1E+25 into decimal(38,18)).
            if magnitude >= limit:
                raise ValueError(f"{value} does not fit decimal({precision},{scale})")
            data = unscaled.to_bytes((magnitude.bit_length() + 8) // 8, "big", signed=True)
            buf = bytearray()
            write_long(buf, len(data))
            buf += data
            encoded = bytes(buf)
        out += encoded
        if len(cache) >= DECIMAL_CACHE_SIZE:
            old.clear()
            old.update(cache)
            cache.clear()
        cache[value] = encoded

    write.decimal_cache = cache  # type: ignore[attr-defined] # read by _inline
    return write


def _compile(schema: Any, named: dict[str, Writer]) -> Writer:
    if isinstance(schema, str):
        primitive = {"long": _w_long, "int": _w_long, "boolean": _w_boolean,
                     "string": _w_string, "bytes": _w_bytes, "null": _w_null}
        if schema in primitive:
            return primitive[schema]
        if schema in named:
            return lambda out, value: named[schema](out, value)
        raise Unsupported(schema)
    if isinstance(schema, list):
        return _compile_union(schema, named)
    kind = schema["type"]
    logical = schema.get("logicalType")
    if kind == "bytes" and logical == "decimal":
        return _decimal_writer(int(schema["precision"]), int(schema.get("scale", 0)))
    if kind == "long" and logical == "timestamp-micros":
        return _w_timestamp_micros
    if logical is not None:
        raise Unsupported(f"{kind}/{logical}")
    if kind == "record":
        return _compile_record(schema, named)
    if kind == "array":
        item = _compile(schema["items"], named)

        def write_array(out: bytearray, value: Any) -> None:
            if value:
                write_long(out, len(value))
                for element in value:
                    item(out, element)
            out.append(0)

        return write_array
    if kind == "enum":
        index = {symbol: i for i, symbol in enumerate(schema["symbols"])}

        def write_enum(out: bytearray, value: Any) -> None:
            write_long(out, index[value])

        return write_enum
    if isinstance(kind, str) and kind in ("long", "int", "boolean", "string", "bytes", "null"):
        return _compile(kind, named)
    raise Unsupported(str(kind))


def _compile_union(branches: list[Any], named: dict[str, Writer]) -> Writer:
    if len(branches) != 2 or "null" not in branches:
        raise Unsupported("unions other than [null, T]")
    null_index = branches.index("null")
    other = _compile(branches[1 - null_index], named)
    other_index = 1 - null_index

    def write_optional(out: bytearray, value: Any) -> None:
        if value is None:
            write_long(out, null_index)
        else:
            write_long(out, other_index)
            other(out, value)

    return write_optional


_MISSING = object()


def _compile_record(schema: Mapping[str, Any], named: dict[str, Writer]) -> Writer:
    # One generated function per record type, its fields in order: the common cases
    # (an int, a str, a Decimal already in the decimal cache, a bool, None of a
    # [null, T]) are written inline, without a call per field; anything else calls
    # that field's compiled writer, which also raises what a refused value raises.
    slot: list[Writer] = []

    def write_later(out: bytearray, value: Any) -> None:
        slot[0](out, value)  # only a recursive reference writes before slot is set

    name = schema.get("name", "")
    names = [name] if name else []
    if name and "namespace" in schema and "." not in name:
        names.append(f"{schema['namespace']}.{name}")
    for alias in names:
        named[alias] = write_later
    env: dict[str, Any] = {"MISSING": _MISSING, "Decimal": Decimal, "int": int, "str": str,
                           "write_long": write_long}
    body = ["get = value.get"]
    for i, field in enumerate(schema["fields"]):
        env[f"D{i}"] = field.get("default", _MISSING)
        env[f"N{i}"] = field["name"]
        body.append(f"d = get(N{i}, D{i})")
        if "default" not in field:
            body += ["if d is MISSING:", f"    raise ValueError('missing field %r' % N{i})"]
        body += _inline(field["type"], i, "d", env, named)
    source = "def write_record(out, value):\n" + "".join(f"    {line}\n" for line in body)
    exec(compile(source, f"<fastwrite {name or 'record'}>", "exec"), env)  # noqa: S102
    write_record: Writer = env["write_record"]
    slot.append(write_record)
    for alias in names:
        named[alias] = write_record
    return write_record


def _inline(schema: Any, i: int, var: str, env: dict[str, Any],
            named: dict[str, Writer]) -> list[str]:
    """Lines writing ``var`` (a field of ``schema``) to ``out``, as ``_compile``'s writer would."""
    if isinstance(schema, list) and len(schema) == 2 and "null" in schema:
        null_index = schema.index("null")
        inner = _inline(schema[1 - null_index], i, var, env, named)
        return [f"if {var} is None:", f"    out.append({2 * null_index})", "else:",
                f"    out.append({2 * (1 - null_index)})", *(f"    {line}" for line in inner)]
    write = env[f"W{i}"] = _compile(schema, named)
    if write is _w_long:
        return [f"if {var}.__class__ is int and -64 <= {var} < 64:",
                f"    out.append((({var} << 1) ^ ({var} >> 63)))",
                "else:", f"    W{i}(out, {var})"]
    if write is _w_string:
        return [f"if {var}.__class__ is str:", f"    b = {var}.encode('utf-8')",
                "    n = len(b)", "    if n < 64:", "        out.append(n << 1)",
                "    else:", "        write_long(out, n)", "    out += b",
                "else:", f"    W{i}(out, {var})"]
    if write is _w_boolean:
        return [f"out.append(1 if {var} else 0)"]
    cache = getattr(write, "decimal_cache", None)
    if cache is not None:
        env[f"K{i}"] = cache
        return [f"if {var}.__class__ is Decimal:", "    try:", f"        out += K{i}[{var}]",
                "    except (KeyError, TypeError):  # TypeError: a signalling NaN",
                f"        W{i}(out, {var})", "else:", f"    W{i}(out, {var})"]
    return [f"W{i}(out, {var})"]


# ---- the same writes in C (streams/codec/_avrowrite.c), along a plan --------------------
#
# The C writer walks a plan: a tree of tuples built here once per schema, each
# ``(opcode, ...)`` (listed in the C source). C writes what the generated code
# above writes inline (an int of 64 bits, a str, a boolean, a cached Decimal, None
# of a [null, T]) and records, arrays and enums; every other value goes to the
# Python writer of its node, which the plan carries: same bytes, same refusals.

(OP_LONG, OP_STRING, OP_BOOL, OP_PYTHON, OP_DECIMAL, OP_RECORD, OP_OPTIONAL, OP_ARRAY,
 OP_ENUM, OP_REF, OP_TIMESTAMP) = range(11)

Plan = tuple[Any, ...]


def _plan(schema: Any, plans: dict[str, Plan], named: dict[str, Writer]) -> Plan:
    """The plan of ``schema``; refuses (Unsupported) exactly what :func:`_compile` refuses."""
    if isinstance(schema, str):
        if schema in ("long", "int"):
            return (OP_LONG, _w_long)
        if schema == "string":
            return (OP_STRING, _w_string)
        if schema == "boolean":
            return (OP_BOOL,)
        if schema in ("bytes", "null"):
            return (OP_PYTHON, _compile(schema, named))
        if schema in plans:
            return plans[schema]
        raise Unsupported(schema)
    if isinstance(schema, list):
        if len(schema) != 2 or "null" not in schema:
            raise Unsupported("unions other than [null, T]")
        null_index = schema.index("null")
        return (OP_OPTIONAL, null_index, _plan(schema[1 - null_index], plans, named))
    kind = schema["type"]
    logical = schema.get("logicalType")
    if kind == "bytes" and logical == "decimal":
        precision, scale = int(schema["precision"]), int(schema.get("scale", 0))
        write = _decimal_writer(precision, scale)
        young, old = _DECIMAL_CACHES[(precision, scale)]
        return (OP_DECIMAL, young, write, Decimal, old, 10**scale, 10**precision,
                (globals(), "DECIMAL_CACHE_SIZE"), precision - scale)
    if kind == "long" and logical == "timestamp-micros":
        return (OP_TIMESTAMP, _w_timestamp_micros)
    if logical is not None:
        raise Unsupported(f"{kind}/{logical}")
    if kind == "record":
        return _plan_record(schema, plans, named)
    if kind == "array":
        return (OP_ARRAY, _plan(schema["items"], plans, named))
    if kind == "enum":
        return (OP_ENUM, {symbol: i for i, symbol in enumerate(schema["symbols"])})
    if isinstance(kind, str) and kind in ("long", "int", "boolean", "string", "bytes", "null"):
        return _plan(kind, plans, named)
    raise Unsupported(str(kind))


def _plan_record(schema: Mapping[str, Any], plans: dict[str, Plan],
                 named: dict[str, Writer]) -> Plan:
    holder: list[Plan] = []  # filled below; a recursive reference writes through it
    name = schema.get("name", "")
    names = [name] if name else []
    if name and "namespace" in schema and "." not in name:
        names.append(f"{schema['namespace']}.{name}")
    for alias in names:
        plans[alias] = (OP_REF, holder)
    fields = schema["fields"]
    node = (OP_RECORD, tuple(sys.intern(f["name"]) for f in fields),
            tuple(f.get("default", _MISSING) for f in fields),
            tuple(_plan(f["type"], plans, named) for f in fields), _MISSING)
    holder.append(node)
    for alias in names:
        plans[alias] = node
    return node


_NATIVE = cext.load("_avrowrite")
#: whether :func:`compile_writer` writes with the C writer by default
NATIVE = _NATIVE is not None


def compile_writer(schema: Mapping[str, Any], native: bool | None = None
                   ) -> Callable[[Any], bytes] | None:
    """A function datum -> Avro body for ``schema`` (fully expanded), or None if unsupported.

    ``native``: the C writer (the default where it is built) or the Python one;
    asking for C where it is not built raises :class:`Unsupported`.
    """
    if native is None:
        native = NATIVE
    elif native and not NATIVE:
        raise Unsupported("the C writer is not built (make install)")
    try:
        if native:
            plan = _plan(dict(schema), {}, {})  # builds the Python writers it delegates to
        else:
            write = _compile(dict(schema), {})
    except Unsupported:
        return None
    if native:
        encode_plan = _NATIVE.encode

        def encode_native(datum: Any) -> bytes:
            return encode_plan(plan, datum)

        return encode_native

    def encode(datum: Any) -> bytes:
        out = bytearray()
        write(out, datum)
        return bytes(out)

    return encode
