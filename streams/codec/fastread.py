"""A compiled Avro binary reader for the record shapes twinledger consumes.

Owns: turning an Avro writer schema into a tree of small Python closures, each
``read(data, pos) -> (value, new_pos)`` over one ``bytes`` body. Must not
touch: framing, schema ids or error classes of the pipeline (``streams.codec.avro``
wraps whatever a reader raises into ``DecodeError``), nor what records mean.

Why: the sink decodes every consumed record, and fastavro's ``schemaless_reader``
re-checks the schemas and dispatches on type names for every field of every
record; a snapshot carries dozens of decimals. The closures are built
once per writer schema and do only the byte work: each record type becomes one
generated function reading its primitive fields inline, and decimals, most of
a record, come from a small cache keyed by their wire bytes (measured by
``bench/decode_bench.py``); so do the items of an array of flat records (a
snapshot's positions), as copies that name their wire bytes (:func:`_cached_array`).

Output is what ``fastavro.schemaless_reader`` returns for the same body with the
writer schema as reader schema (a test compares them on every schema and on
the synthetic streams): dicts for records (the items of a cached array are
:class:`WireItem`, a dict subclass), ``Decimal`` via fastavro's own rule
(unscaled integer, ``scaleb(-scale)`` in a context of the declared precision,
so the exponent is always ``-scale``), UTC-aware datetimes as ``epoch +
timedelta``, and, with ``record_names=True``, the ``return_record_name`` +
``return_record_name_override`` shapes (``(full name, record)`` for a branch of
a union with several records, the bare record for ``[null, record]``).

Malformed input raises (IndexError, ValueError, UnicodeDecodeError,
OverflowError...): never a silent short read. Where fastavro accepts garbage
this reader refuses it: a varint longer than 10 bytes or beyond 64 bits
(fastavro wraps it around), a negative enum or union index (fastavro indexes
from the end), a ``[null, T]`` index not written as one byte, a block count
larger than the bytes left. Types not listed in :func:`compile_reader` (fixed,
other logical types such as date or uuid, arrays of nulls) raise
:class:`Unsupported` when compiling, so the caller keeps fastavro for that schema.
"""

from __future__ import annotations

import datetime as dt
import struct
import sys
from collections.abc import Callable, Mapping
from decimal import Context, Decimal
from typing import Any, Generic, TypeVar

from fastavro import parse_schema

from streams.codec import cext

Reader = Callable[[bytes, int], tuple[Any, int]]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_timedelta = dt.timedelta
_from_bytes = int.from_bytes
_FLOAT = struct.Struct("<f").unpack_from
_DOUBLE = struct.Struct("<d").unpack_from
#: entries of one decimal cache before it starts over (about 3 MB at 16384): the sink's
#: row builder checks each decimal object once (sinks.rows), so a longer-lived object
#: saves it work too
_DECIMAL_CACHE = 16384
_PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
# fastavro's AVRO_TYPES: a union branch named by anything else is a named-type reference.
_AVRO_TYPES = frozenset({"boolean", "bytes", "double", "float", "int", "long", "null",
                         "string", "fixed", "enum", "record", "error", "array", "map",
                         "union", "request", "error_union"})


class Unsupported(Exception):
    """The schema uses something this reader does not compile."""


class Malformed(ValueError):
    """The body cannot be a datum of the schema (checks fastavro does not make)."""


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """Zig-zag varint (Avro int and long) at ``pos``: (value, position after it)."""
    b = data[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    n = b & 0x7F
    shift = 7
    pos += 1
    while True:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise Malformed("varint longer than 10 bytes")
    if n >> 64:
        raise Malformed("varint beyond 64 bits")
    return (n >> 1) ^ -(n & 1), pos


def _r_null(data: bytes, pos: int) -> tuple[Any, int]:
    return None, pos


def _r_boolean(data: bytes, pos: int) -> tuple[Any, int]:
    # fastavro reads any non-zero byte as True.
    return data[pos] != 0, pos + 1


def _r_float(data: bytes, pos: int) -> tuple[Any, int]:
    return _FLOAT(data, pos)[0], pos + 4


def _r_double(data: bytes, pos: int) -> tuple[Any, int]:
    return _DOUBLE(data, pos)[0], pos + 8


def _span(data: bytes, pos: int) -> tuple[int, int]:
    """(start, end) of a length-prefixed body (bytes, string, decimal) at ``pos``."""
    b = data[pos]
    if b < 0x80:
        n = b >> 1 if not b & 1 else -1
        pos += 1
    else:
        n, pos = read_long(data, pos)
    end = pos + n
    if n < 0 or end > len(data):
        raise Malformed(f"expected {n} bytes, {len(data) - pos} left")
    return pos, end


def _r_bytes(data: bytes, pos: int) -> tuple[Any, int]:
    start, end = _span(data, pos)
    return data[start:end], end


def _r_string(data: bytes, pos: int) -> tuple[Any, int]:
    start, end = _span(data, pos)
    return data[start:end].decode("utf-8"), end


def _block(data: bytes, pos: int) -> tuple[int, int]:
    """The item count of the next block of an array or map (0: the end), and where its
    items start. Every item takes at least a byte, so a count beyond the bytes left is
    refused before anything is read."""
    n, pos = read_long(data, pos)
    if n < 0:  # a block with its size in bytes: not needed to read it
        n = -n
        _, pos = read_long(data, pos)
    if n > len(data) - pos:
        raise Malformed(f"{n} items with {len(data) - pos} bytes left")
    return n, pos


def _timestamp_maker(unit: int) -> Callable[[int], dt.datetime]:
    """A count of ``unit`` microseconds since the epoch -> aware UTC datetime (fastavro's)."""
    def make(n: int) -> dt.datetime:
        return _EPOCH + _timedelta(microseconds=n * unit)

    return make


def _timestamp_reader(unit: int) -> Reader:
    make = _timestamp_maker(unit)

    def read_timestamp(data: bytes, pos: int) -> tuple[Any, int]:
        n, pos = read_long(data, pos)
        return make(n), pos

    return read_timestamp


def decimal_width(precision: int) -> int:
    """The most bytes a decimal of ``precision`` digits is read from.

    A two's complement of ``10**precision`` takes ``ceil((precision * log2(10) + 1) / 8)``
    bytes; a writer may pad it with sign bytes, so 8 more are allowed (and a value a
    little beyond the precision is rounded as fastavro rounds it). Anything wider is
    refused: turning N bytes into a number costs N squared, and a decimal of a
    megabyte would stall a reader for minutes.
    """
    return (len(format(10**precision, "b")) + 1 + 7) // 8 + 8


def _too_wide(n: int, width: int) -> Malformed:
    return Malformed(f"a decimal of {n} bytes (its precision needs at most {width})")


def _decimal_maker(precision: int, scale: int) -> Callable[[bytes], Decimal]:
    """Wire bytes -> Decimal, by fastavro's rule.

    fastavro: Context(prec=precision).create_decimal(unscaled).scaleb(-scale). For an
    unscaled value within the precision that is exact and equals Decimal(u).scaleb;
    beyond it fastavro rounds to ``precision`` digits, and so does this.
    """
    ctx = Context(prec=precision)
    limit = 10**precision
    exponent = -scale
    width = decimal_width(precision)

    def make(raw: bytes) -> Decimal:
        if len(raw) > width:
            raise _too_wide(len(raw), width)
        unscaled = _from_bytes(raw, "big", signed=True)
        if -limit < unscaled < limit:
            return Decimal(unscaled).scaleb(exponent, ctx)
        return ctx.create_decimal(unscaled).scaleb(exponent, ctx)

    return make


def _decimal_reader(precision: int, scale: int) -> Reader:
    make = _decimal_maker(precision, scale)

    def read_decimal(data: bytes, pos: int) -> tuple[Any, int]:
        start, end = _span(data, pos)
        return make(data[start:end]), end

    return read_decimal


T = TypeVar("T")


class _SchemaWalk(Generic[T]):
    """The walk both readers take over a parsed schema, building a ``T`` per type.

    The Python reader (:class:`_Compiler`) builds functions, the C reader's
    planner (:class:`_Planner`) builds plans; which types each accepts, how named
    types are found and what is refused (:class:`Unsupported`) is decided here once.
    """

    def __init__(self, record_names: bool, sources: Mapping[str, Any]) -> None:
        self.record_names = record_names
        # Named types a parsed schema references without defining them inline.
        self.sources = sources
        self.named: dict[str, T] = {}
        self.named_schemas: dict[str, Any] = {}

    def build(self, schema: Any) -> T:
        if isinstance(schema, str):
            return self._primitive_or_named(schema)
        if isinstance(schema, list):
            return self._union(schema)
        if not isinstance(schema, dict):
            raise Unsupported(repr(schema))
        kind = schema["type"]
        logical = schema.get("logicalType")
        if logical is not None:
            if kind == "bytes" and logical == "decimal":
                return self._decimal(int(schema["precision"]), int(schema.get("scale", 0)))
            if kind == "long" and logical == "timestamp-micros":
                return self._timestamp(1)
            if kind == "long" and logical == "timestamp-millis":
                return self._timestamp(1000)
            raise Unsupported(f"{kind}/{logical}")
        if kind == "record":
            return self._record(schema)
        if kind == "array":
            if _zero_width(schema["items"]):
                raise Unsupported("array of zero-width items")
            return self._array(schema)
        if kind == "map":
            return self._map(schema)
        if kind == "enum":
            return self._enum(schema)
        if isinstance(kind, str) and kind in _PRIMITIVES:
            return self._primitive_or_named(kind)
        raise Unsupported(str(kind))

    def _primitive_or_named(self, name: str) -> T:
        if name in _PRIMITIVES:
            return self._primitive(name)
        if name not in self.named and isinstance(self.sources.get(name), dict):
            self.build(self.sources[name])
        if name in self.named:
            return self._reference(name)
        raise Unsupported(name)

    def _primitive(self, name: str) -> T:
        raise NotImplementedError

    def _reference(self, name: str) -> T:
        """A use of the named type ``name``, built (or being built) before."""
        raise NotImplementedError

    def _decimal(self, precision: int, scale: int) -> T:
        raise NotImplementedError

    def _timestamp(self, unit: int) -> T:
        raise NotImplementedError

    def _record(self, schema: Mapping[str, Any]) -> T:
        raise NotImplementedError

    def _array(self, schema: Mapping[str, Any]) -> T:
        raise NotImplementedError

    def _map(self, schema: Mapping[str, Any]) -> T:
        raise NotImplementedError

    def _enum(self, schema: Mapping[str, Any]) -> T:
        raise NotImplementedError

    def _union(self, branches: list[Any]) -> T:
        raise NotImplementedError


_PRIMITIVE_READERS: dict[str, Reader] = {
    "null": _r_null, "boolean": _r_boolean, "int": read_long, "long": read_long,
    "float": _r_float, "double": _r_double, "bytes": _r_bytes, "string": _r_string}


class _Compiler(_SchemaWalk[Reader]):
    """The Python reader: generated functions and closures."""

    def __init__(self, record_names: bool, sources: Mapping[str, Any]) -> None:
        super().__init__(record_names, sources)
        #: (precision, scale) -> wire bytes -> Decimal, shared by the fields of that type
        self.decimals: dict[tuple[int, int], dict[bytes, Decimal]] = {}
        #: record name -> ``scan(data, pos) -> end`` of a flat record (see _scan_lines)
        self.scanners: dict[str, Callable[[bytes, int], int]] = {}

    def _primitive(self, name: str) -> Reader:
        return _PRIMITIVE_READERS[name]

    def _reference(self, name: str) -> Reader:
        named = self.named

        def read_named(data: bytes, pos: int) -> tuple[Any, int]:
            return named[name](data, pos)

        return read_named

    def _decimal(self, precision: int, scale: int) -> Reader:
        return _decimal_reader(precision, scale)

    def _timestamp(self, unit: int) -> Reader:
        return _timestamp_reader(unit)

    def _record(self, schema: Mapping[str, Any]) -> Reader:
        # One generated function per record type: its fields' primitives (strings,
        # longs, decimals, timestamps, [null, T] of those) read inline, without a call
        # and a tuple per field; any other field calls that field's reader.
        name = schema["name"]
        slot: list[Reader] = []

        def read_later(data: bytes, pos: int) -> tuple[Any, int]:
            return slot[0](data, pos)  # only a recursive reference reads before slot is set

        self.named[name] = read_later
        self.named_schemas[name] = schema
        env: dict[str, Any] = {"read_long": read_long, "Decimal": Decimal, "EPOCH": _EPOCH,
                               "timedelta": _timedelta, "from_bytes": _from_bytes,
                               "short": _short, "bad_index": _bad_index,
                               "too_wide": _too_wide}
        body: list[str] = ["size = len(data)"]
        for i, field in enumerate(schema["fields"]):
            body += self._inline(field["type"], f"v{i}", i, env)
        items = ", ".join(f"{f['name']!r}: v{i}" for i, f in enumerate(schema["fields"]))
        body.append(f"return {{{items}}}, pos")
        source = "def read_record(data, pos):\n" + "".join(f"    {line}\n" for line in body)
        scan = _scan_lines(schema["fields"])
        if scan is not None:
            source += ("def scan_record(data, pos):\n"
                       + "".join(f"    {line}\n" for line in ["size = len(data)", *scan,
                                                             "return pos"]))
        exec(compile(source, f"<fastread {name}>", "exec"), env)  # noqa: S102 - our own text
        read_record: Reader = env["read_record"]
        slot.append(read_record)
        self.named[name] = read_record
        if scan is not None:
            self.scanners[name] = env["scan_record"]
        return read_record

    def _inline(self, schema: Any, var: str, i: int, env: dict[str, Any]) -> list[str]:
        """Lines reading ``schema`` at ``pos`` into ``var`` (and moving ``pos``)."""
        if (isinstance(schema, list) and len(schema) == 2 and schema[0] == "null"
                and _kind(schema[1]) in _INLINE):
            inner = self._inline(schema[1], var, i, env)
            return ["b = data[pos]", "pos += 1", "if b == 0:", f"    {var} = None",
                    "elif b == 2:", *(f"    {line}" for line in inner),
                    "else:", "    raise bad_index(b)"]
        kind, logical = _kind(schema)
        if logical is None and kind in ("long", "int"):
            return _varint(var)
        if kind == "long" and logical in ("timestamp-micros", "timestamp-millis"):
            unit = "" if logical == "timestamp-micros" else " * 1000"
            return [*_varint(var), f"{var} = EPOCH + timedelta(microseconds={var}{unit})"]
        if logical is None and kind == "boolean":
            return [f"{var} = data[pos] != 0", "pos += 1"]
        if logical is None and kind == "string":
            return [*_sized(), f"{var} = data[pos:end].decode('utf-8')", "pos = end"]
        if logical is None and kind == "bytes":
            return [*_sized(), f"{var} = data[pos:end]", "pos = end"]
        if kind == "bytes" and logical == "decimal":
            assert isinstance(schema, dict)
            precision, scale = int(schema["precision"]), int(schema.get("scale", 0))
            env[f"C{i}"] = Context(prec=precision)
            env[f"L{i}"] = 10**precision
            env[f"W{i}"] = decimal_width(precision)
            env[f"K{i}"] = self.decimals.setdefault((precision, scale), {})
            # fastavro: create_decimal(u) in a context of the precision (rounds beyond
            # it), then scaleb(-scale); within the precision that is Decimal(u).scaleb.
            # Decimals are immutable and records repeat values (zeros, prices, sizes):
            # a bounded cache by wire bytes skips most of the construction.
            return [*_sized(), f"if n > W{i}:", f"    raise too_wide(n, W{i})",
                    "raw = data[pos:end]", "pos = end", f"{var} = K{i}.get(raw)",
                    f"if {var} is None:",
                    "    u = from_bytes(raw, 'big', signed=True)",
                    f"    {var} = (Decimal(u).scaleb({-scale}, C{i}) if -L{i} < u < L{i}"
                    f" else C{i}.create_decimal(u).scaleb({-scale}, C{i}))",
                    f"    if len(K{i}) >= {_DECIMAL_CACHE}:",
                    f"        K{i}.clear()",
                    f"    K{i}[raw] = {var}"]
        env[f"R{i}"] = self.build(schema)
        return [f"{var}, pos = R{i}(data, pos)"]

    def _enum(self, schema: Mapping[str, Any]) -> Reader:
        symbols = tuple(schema["symbols"])
        count = len(symbols)

        def read_enum(data: bytes, pos: int) -> tuple[Any, int]:
            i, pos = read_long(data, pos)
            if not 0 <= i < count:
                raise Malformed(f"enum index {i} out of {count} symbols")
            return symbols[i], pos

        self.named[schema["name"]] = read_enum
        self.named_schemas[schema["name"]] = schema
        return read_enum

    def _array(self, schema: Mapping[str, Any]) -> Reader:
        item = self.build(schema["items"])
        items = schema["items"]
        scan = (self.scanners.get(items["name"])
                if isinstance(items, dict) and items.get("type") == "record" else None)
        if scan is not None:
            return _cached_array(item, scan, items["name"])

        def read_array(data: bytes, pos: int) -> tuple[Any, int]:
            out: list[Any] = []
            append = out.append
            while True:
                n, pos = _block(data, pos)
                if n == 0:
                    return out, pos
                for _ in range(n):
                    value, pos = item(data, pos)
                    append(value)

        return read_array

    def _map(self, schema: Mapping[str, Any]) -> Reader:
        values = self.build(schema["values"])

        def read_map(data: bytes, pos: int) -> tuple[Any, int]:
            out: dict[str, Any] = {}
            while True:
                n, pos = _block(data, pos)
                if n == 0:
                    return out, pos
                for _ in range(n):
                    key, pos = _r_string(data, pos)
                    out[key], pos = values(data, pos)

        return read_map

    def _union(self, branches: list[Any]) -> Reader:
        readers = [self.build(b) for b in branches]
        labels = _union_labels(branches, self.record_names, self.named_schemas)
        count = len(branches)
        if count == 2 and branches[0] == "null" and labels[1] is None:
            other = readers[1]

            def read_optional(data: bytes, pos: int) -> tuple[Any, int]:
                b = data[pos]
                if b == 0:
                    return None, pos + 1
                if b == 2:
                    return other(data, pos + 1)
                raise Malformed(f"union index byte {b} for [null, T]")

            return read_optional

        def read_union(data: bytes, pos: int) -> tuple[Any, int]:
            i, pos = read_long(data, pos)
            if not 0 <= i < count:
                raise Malformed(f"union index {i} out of {count} branches")
            value, pos = readers[i](data, pos)
            label = labels[i]
            return (value if label is None else (label, value)), pos

        return read_union


def _union_labels(branches: list[Any], record_names: bool,
                  named_schemas: Mapping[str, Any]) -> list[str | None]:
    """fastavro's return_record_name(_override) rules, decided once per branch: the
    label its value is returned with, or None for the bare value."""
    labels: list[str | None] = [None] * len(branches)
    if record_names:
        records = 0
        for b in branches:
            kind = b["type"] if isinstance(b, dict) else b
            if kind == "record" or (isinstance(kind, str) and kind not in _AVRO_TYPES):
                records += 1
        if records != 1:
            for i, b in enumerate(branches):
                if isinstance(b, dict) and b["type"] == "record":
                    labels[i] = b["name"]
                elif isinstance(b, str) and b not in _AVRO_TYPES:
                    labels[i] = named_schemas[b]["name"]
    return labels


#: entries of the item cache of one array of flat records before it starts over
_ITEM_CACHE = 4096
#: the longest item the cache keeps (a position is about 100 bytes): what it holds
#: stays bounded whatever the records carry
_ITEM_CACHE_BYTES = 1024


class WireItem(dict[str, Any]):
    """An item of a cached array (:func:`_cached_array`): a dict like any other, plus
    ``wire``, its record's name and wire bytes.

    Equal ``wire`` means equal content as read, so a consumer may remember what
    it derived from an item under ``wire`` (the sink's JSON text of a position,
    ``sinks.rows``) instead of deriving it again. That holds only for items
    nobody changed after the read: the pipeline only reads them.
    """

    __slots__ = ("wire",)
    wire: tuple[str, bytes]


def _cached_array(item: Reader, scan: Callable[[bytes, int], int], name: str) -> Reader:
    """An array of flat records whose items are remembered by their wire bytes.

    A snapshot repeats most positions of the one before. ``scan`` only
    proposes where an item ends (without building values); a proposed span
    that was read before, in full, to exactly that end is the same bytes and
    so the same record, returned as a copy (every value of a flat record is
    immutable). Anything else, and any failure of ``scan``, is read by
    ``item`` as without the cache, with its errors.
    """
    cache: dict[bytes, WireItem] = {}

    def read_array(data: bytes, pos: int) -> tuple[Any, int]:
        out: list[Any] = []
        append = out.append
        while True:
            n, pos = _block(data, pos)
            if n == 0:
                return out, pos
            for _ in range(n):
                try:
                    end = scan(data, pos)
                except Exception:  # noqa: BLE001 - the full reader raises its own error
                    end = -1
                raw = data[pos:end] if pos < end <= pos + _ITEM_CACHE_BYTES else None
                if raw is not None:
                    hit = cache.get(raw)
                    if hit is not None:
                        copy = WireItem(hit)
                        copy.wire = hit.wire
                        append(copy)
                        pos = end
                        continue
                value, after = item(data, pos)
                if raw is not None and after == end:
                    if len(cache) >= _ITEM_CACHE:
                        cache.clear()
                    kept = cache[raw] = WireItem(value)
                    kept.wire = (name, raw)
                    value = WireItem(kept)
                    value.wire = kept.wire
                append(value)
                pos = after

    return read_array


def _scan_lines(fields: list[Mapping[str, Any]]) -> list[str] | None:
    """Lines moving ``pos`` over a record of only scalar fields (strings, bytes, decimals,
    longs, booleans, times, [null, T] of those); None for any other record."""
    lines: list[str] = []
    for field in fields:
        schema = field["type"]
        optional = (isinstance(schema, list) and len(schema) == 2 and schema[0] == "null")
        kind, logical = _kind(schema[1] if optional else schema)
        if (kind, logical) not in _INLINE:
            return None
        if kind in ("string", "bytes"):
            body = ["b = data[pos]", "if b < 0x80:", "    n = b >> 1 if not b & 1 else -1",
                    "    pos += 1", "else:", "    n, pos = read_long(data, pos)",
                    "if n < 0 or pos + n > size:", "    raise short(n, size - pos)",
                    "pos += n"]
        elif kind == "boolean":
            body = ["pos += 1"]
        else:  # a varint
            body = ["if data[pos] < 0x80:", "    pos += 1", "else:",
                    "    b, pos = read_long(data, pos)"]
        if optional:
            body = ["b = data[pos]", "pos += 1", "if b == 2:", *(f"    {x}" for x in body),
                    "elif b != 0:", "    raise bad_index(b)"]
        lines += body
    return lines


#: (type, logicalType) a generated record reader reads inline
_INLINE = frozenset({("long", None), ("int", None), ("long", "timestamp-micros"),
                     ("long", "timestamp-millis"), ("boolean", None), ("string", None),
                     ("bytes", None), ("bytes", "decimal")})


def _kind(schema: Any) -> tuple[Any, Any]:
    if isinstance(schema, str):
        return schema, None
    if isinstance(schema, dict) and isinstance(schema.get("type"), str):
        return schema["type"], schema.get("logicalType")
    return None, None


def _varint(var: str) -> list[str]:
    return ["b = data[pos]", "if b < 0x80:", f"    {var} = (b >> 1) ^ -(b & 1)", "    pos += 1",
            "else:", f"    {var}, pos = read_long(data, pos)"]


def _sized() -> list[str]:
    """Lines reading a length prefix and checking it: bytes from ``pos`` to ``end``."""
    return ["b = data[pos]", "if b < 0x80:", "    n = b >> 1 if not b & 1 else -1",
            "    pos += 1", "else:", "    n, pos = read_long(data, pos)", "end = pos + n",
            "if n < 0 or end > size:", "    raise short(n, size - pos)"]


def _short(n: int, left: int) -> Malformed:
    return Malformed(f"expected {n} bytes, {left} left")


def _bad_index(b: int) -> Malformed:
    return Malformed(f"union index byte {b} for [null, T]")


def _zero_width(schema: Any) -> bool:
    if schema == "null":
        return True
    if isinstance(schema, dict):
        if schema.get("type") == "null":
            return True
        if schema.get("type") == "record":
            return all(_zero_width(f["type"]) for f in schema["fields"])
    return False


# ---- the same reads in C (streams/codec/_avroread.c), along a plan ----------------------
#
# The C reader walks a plan: a tree of tuples built here once per schema, each
# ``(opcode, ...)`` (the opcodes and their items are listed in the C source). It
# builds the same values as the closures above, from the same rules: decimals and
# times are made by the Python callables a plan carries, unions are labelled by
# :func:`_union_labels`, arrays of flat records keep the same item cache.

(OP_NULL, OP_BOOL, OP_LONG, OP_FLOAT, OP_DOUBLE, OP_BYTES, OP_STRING, OP_DECIMAL,
 OP_TIMESTAMP, OP_RECORD, OP_OPTIONAL, OP_UNION, OP_ENUM, OP_ARRAY, OP_CACHED_ARRAY,
 OP_MAP, OP_REF) = range(17)

Plan = tuple[Any, ...]

_PRIMITIVE_PLANS: dict[str, Plan] = {
    "null": (OP_NULL,), "boolean": (OP_BOOL,), "int": (OP_LONG,), "long": (OP_LONG,),
    "float": (OP_FLOAT,), "double": (OP_DOUBLE,), "bytes": (OP_BYTES,), "string": (OP_STRING,)}


class _Planner(_SchemaWalk[Plan]):
    """The plan of a schema for the C reader."""

    def __init__(self, record_names: bool, sources: Mapping[str, Any]) -> None:
        super().__init__(record_names, sources)
        #: (precision, scale) -> the one plan (and so the one cache) of that decimal type
        self.decimals: dict[tuple[int, int], Plan] = {}
        #: records of only scalar fields, whose items an array may cache (see _scan_lines)
        self.flat: set[str] = set()

    def _primitive(self, name: str) -> Plan:
        return _PRIMITIVE_PLANS[name]

    def _reference(self, name: str) -> Plan:
        return self.named[name]

    def _decimal(self, precision: int, scale: int) -> Plan:
        key = (precision, scale)
        if key not in self.decimals:
            self.decimals[key] = (OP_DECIMAL, {}, _decimal_maker(*key), _DECIMAL_CACHE,
                                  Decimal, *key, decimal_width(precision))
        return self.decimals[key]

    def _timestamp(self, unit: int) -> Plan:
        return (OP_TIMESTAMP, _timestamp_maker(unit), unit)

    def _map(self, schema: Mapping[str, Any]) -> Plan:
        return (OP_MAP, self.build(schema["values"]))

    def _enum(self, schema: Mapping[str, Any]) -> Plan:
        node = (OP_ENUM, tuple(schema["symbols"]))
        self.named[schema["name"]] = node
        self.named_schemas[schema["name"]] = schema
        return node

    def _record(self, schema: Mapping[str, Any]) -> Plan:
        name = schema["name"]
        holder: list[Plan] = []  # filled below; a recursive reference reads through it
        self.named[name] = (OP_REF, holder)
        self.named_schemas[name] = schema
        fields = tuple(self.build(f["type"]) for f in schema["fields"])
        node = (OP_RECORD, tuple(sys.intern(f["name"]) for f in schema["fields"]), fields)
        holder.append(node)
        self.named[name] = node
        if _scan_lines(schema["fields"]) is not None:
            self.flat.add(name)
        return node

    def _array(self, schema: Mapping[str, Any]) -> Plan:
        item = self.build(schema["items"])
        items = schema["items"]
        if (isinstance(items, dict) and items.get("type") == "record"
                and items["name"] in self.flat):
            return (OP_CACHED_ARRAY, item, {}, items["name"], WireItem, _ITEM_CACHE,
                    _ITEM_CACHE_BYTES)
        return (OP_ARRAY, item)

    def _union(self, branches: list[Any]) -> Plan:
        nodes = tuple(self.build(b) for b in branches)
        labels = _union_labels(branches, self.record_names, self.named_schemas)
        if len(branches) == 2 and branches[0] == "null" and labels[1] is None:
            return (OP_OPTIONAL, nodes[1])
        return (OP_UNION, nodes, tuple(labels))


def _load_native() -> Any:
    """The C reader, or None where it is not built, is stale, or Python is asked for."""
    module = cext.load("_avroread")
    if module is not None:
        module.configure(Malformed)
    return module


_NATIVE = _load_native()
#: whether :func:`compile_reader` reads with the C reader by default
NATIVE = _NATIVE is not None


def compile_reader(schema: Any, record_names: bool = False,
                   native: bool | None = None) -> Callable[..., tuple[Any, int]]:
    """``read(data, pos=0) -> (datum, end)`` for bodies written with ``schema``.

    Reads records, named-type references, enums, arrays, maps, unions, null,
    boolean, int, long, float, double, string, bytes, decimal (bytes) and
    timestamp-micros/millis (long). ``schema`` is any schema fastavro parses
    (named types resolved). With
    ``record_names`` the output follows ``return_record_name=True,
    return_record_name_override=True``. Raises :class:`Unsupported` for types
    this module does not read; then use fastavro.
    """
    parsed = parse_schema(schema) if isinstance(schema, dict | list) else schema
    sources = parsed.get("__named_schemas", {}) if isinstance(parsed, dict) else {}
    if native is None:
        native = NATIVE
    elif native and not NATIVE:
        raise Unsupported("the C reader is not built (make install)")
    if native:
        plan = _Planner(record_names, sources).build(parsed)
        read_plan = _NATIVE.read

        def read_native(data: bytes | bytearray | memoryview, pos: int = 0
                        ) -> tuple[Any, int]:
            if data.__class__ is not bytes:
                data = bytes(data)
            return read_plan(plan, data, pos)

        return read_native
    root = _Compiler(record_names, sources).build(parsed)

    def read(data: bytes | bytearray | memoryview, pos: int = 0) -> tuple[Any, int]:
        if data.__class__ is not bytes:
            data = bytes(data)
        return root(data, pos)

    return read
