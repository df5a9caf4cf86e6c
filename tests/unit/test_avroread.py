"""The C Avro reader (``streams/codec/_avroread.c``) and the Python reader are one reader.

``tests/unit/test_fastread.py`` holds whichever reader this process runs to
fastavro's output; here the two forms of ``streams.codec.fastread`` read the
same bodies, good and bad, side by side: same values, same ends, and a refusal
by one is a refusal by the other. They also check what only C can get wrong:
references kept or dropped (no growth over repeated reads, good or refused),
and nesting without end (a recursive schema) refused instead of a crash.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streams.codec import fastread
from streams.codec.fastread import Malformed, WireItem, compile_reader, decimal_width
from tests.unit.refcheck import blocks_grown
from tests.unit.sinks import samples
from tests.unit.test_fastread import CODEC, EDGE, WIRES, _datum, _fastavro_bytes, same

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not fastread.NATIVE,
                                reason="the C reader is not built here (make install)")


@functools.cache
def _readers(sid: int) -> tuple[Any, Any]:
    """(C, Python) readers of writer schema ``sid``, as the codec compiles them."""
    schema = CODEC._by_id[sid]
    return (compile_reader(schema, record_names=True, native=True),
            compile_reader(schema, record_names=True, native=False))


def _outcome(read: Any, body: bytes, pos: int = 5) -> Any:
    try:
        return read(body, pos)
    except Exception as exc:  # noqa: BLE001 - the comparison is the test
        return exc


def _alike(native: Any, python: Any) -> bool:
    if isinstance(native, Exception) or isinstance(python, Exception):
        return isinstance(native, Exception) and isinstance(python, Exception)
    return same(native[0], python[0]) and native[1] == python[1]


def _sid(wire: bytes) -> int:
    return int.from_bytes(wire[1:5], "big")


def test_every_record_of_every_schema_reads_alike():
    for wire in WIRES:
        native, python = _readers(_sid(wire))
        got, want = native(wire, 5), python(wire, 5)
        assert same(got[0], want[0]), (got, want)
        assert got[1] == want[1] == len(wire)


def test_the_edge_schema_reads_alike_with_and_without_record_names():
    body = _fastavro_bytes(_datum(
        s="žluťoučký 🐎", os="", ob="x", by=b"\x00\xff", a=["", "é"], m={"": 1, "ü": -2},
        r={"side": "SELL", "q": -5}, legs=[{"side": "BUY", "q": 1}] * 3,
        u=("t.Other", {"x": "y"}), e="SELL", b=True, f=-1.5e300, g=0.25))
    for named in (True, False):
        native = compile_reader(EDGE, named, native=True)
        python = compile_reader(EDGE, named, native=False)
        got, want = native(body), python(body)
        assert same(got[0], want[0]) and got[1] == want[1] == len(body)


def test_every_truncation_and_garbling_is_refused_by_both_or_read_alike():
    rng = random.Random(17)
    for wire in WIRES[::5]:
        native, python = _readers(_sid(wire))
        for cut in range(5, len(wire)):
            assert _alike(_outcome(native, wire[:cut]), _outcome(python, wire[:cut])), cut
        for _ in range(40):
            garbled = bytearray(wire)
            for _ in range(rng.randint(1, 3)):
                garbled[rng.randrange(5, len(wire))] = rng.randrange(256)
            body = bytes(garbled)
            got, want = _outcome(native, body), _outcome(python, body)
            assert _alike(got, want), (body, got, want)


def test_the_item_cache_of_a_snapshot_reads_alike_warm_and_cold():
    wire = CODEC.encode("AccountSnapshot", samples.snapshot())
    native, python = _readers(_sid(wire))
    first = native(wire, 5)[0]
    again = native(wire, 5)[0]  # positions from the item cache
    want = python(wire, 5)[0]
    assert same(first, want) and same(again, want)
    assert again["positions"] and again["positions"][0] is not first["positions"][0]
    assert again["positions"][0].wire == first["positions"][0].wire
    assert again["positions"][0].wire[1] in wire


def test_repeated_reads_keep_no_references():
    # A reference the C code forgets to drop shows as blocks that pile up per read.
    bodies = [w for w in WIRES[::3]]
    rng = random.Random(3)
    garbled = []
    for wire in bodies[:60]:
        b = bytearray(wire)
        b[rng.randrange(5, len(b))] ^= 0xFF
        garbled.append(bytes(b))

    def one_round() -> None:
        for body in bodies + garbled:
            _outcome(_readers(_sid(body))[0], body)

    grown = blocks_grown(one_round)
    assert grown < 2_000, f"{grown} blocks more after 20 rounds of {len(bodies + garbled)} reads"


def test_reading_leaves_the_reference_counts_of_cached_values_as_they_were():
    # A reference taken and not given back allocates nothing: it shows in the count.
    wire = CODEC.encode("AccountSnapshot", samples.snapshot())
    native, _ = _readers(_sid(wire))
    first = native(wire, 5)[0]
    cached = [first["capital"], first["positions"][0]["qty"], first["positions"][0].wire]
    del first
    counts = [sys.getrefcount(v) for v in cached]
    for _ in range(1_000):
        native(wire, 5)
        _outcome(native, wire[:-3])
    assert [sys.getrefcount(v) for v in cached] == counts


NODE = {"type": "record", "name": "Node", "fields": [
    {"name": "v", "type": "long"}, {"name": "next", "type": ["null", "Node"]}]}


def _chain(depth: int) -> bytes:
    # v = 1, next = another node, ..., the last next = null
    return b"\x02\x02" * depth + b"\x02\x00"


def test_a_recursive_schema_reads_alike_and_endless_nesting_is_refused_by_both():
    native = compile_reader(NODE, native=True)
    python = compile_reader(NODE, native=False)
    # Both spend about one level of Python's recursion limit (1,000) per record, union
    # and reference: 250 links (750 levels) read in both, however deep pytest's stack.
    for depth in (40, 250):
        body = _chain(depth)
        got, want = native(body), python(body)
        assert same(got[0], want[0]) and got[1] == want[1] == len(body)
    for read in (native, python):
        with pytest.raises(RecursionError):
            read(_chain(100_000))


def test_the_c_reader_bounds_its_stack_whatever_the_recursion_limit():
    from streams.codec import _avroread

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10**6)
    try:
        with pytest.raises(Malformed, match=f"deeper than {_avroread.MAX_DEPTH} levels"):
            compile_reader(NODE, native=True)(_chain(100_000))
    finally:
        sys.setrecursionlimit(limit)


def test_asking_for_the_c_reader_where_it_is_not_built_is_refused():
    code = ("from streams.codec import fastread\n"
            "from streams.codec.fastread import Unsupported, compile_reader\n"
            "assert not fastread.NATIVE\n"
            "try:\n"
            "    compile_reader('long', native=True)\n"
            "except Unsupported:\n"
            "    print('refused')\n"
            "print(compile_reader('long')(b'\\x04'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT, env={**os.environ, "TWINLEDGER_PURE_PYTHON": "1"})
    assert out.stdout.split() == ["refused", "(2,", "1)"]


def test_setup_builds_the_reader_from_this_source_and_names_its_digest():
    ns = runpy.run_path(str(ROOT / "setup.py"), run_name="not_main")
    ext = ns["_codec_extension"]("streams.codec._avroread")
    assert ext.name == "streams.codec._avroread" and ext.sources == ["streams/codec/_avroread.c"]
    digest = hashlib.sha256((ROOT / ext.sources[0]).read_bytes()).hexdigest()
    assert ("SOURCE_SHA256", f'"{digest}"') in ext.define_macros
    from streams.codec import _avroread
    assert _avroread.SOURCE_SHA256 == digest  # what runs was built from what is here


def _zigzag(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


FIRST_DAY = -62135596800 * 10**6  # 0001-01-01T00:00:00Z in microseconds
AFTER_LAST = 253402300800 * 10**6  # 10000-01-01T00:00:00Z


@pytest.mark.parametrize("unit", ["timestamp-micros", "timestamp-millis"])
def test_times_read_alike_across_and_beyond_the_calendar(unit):
    schema = {"type": "long", "logicalType": unit}
    native, python = compile_reader(schema, native=True), compile_reader(schema, native=False)
    scale = 1 if unit == "timestamp-micros" else 1000
    edges = [FIRST_DAY // scale + d for d in (-1, 0, 1)] + [AFTER_LAST // scale + d
                                                            for d in (-1, 0, 1)]
    rng = random.Random(23)
    counts = [0, -1, 1, 86_400_000_000 // scale, -86_400_000_000 // scale, 2**63 - 1,
              -(2**63), *edges, *(rng.randint(FIRST_DAY // scale, AFTER_LAST // scale)
                                  for _ in range(2_000))]
    for n in counts:
        body = _zigzag(n)
        got, want = _outcome(native, body), _outcome(python, body)
        assert _alike(got, want), (n, got, want)
        if isinstance(want, Exception):
            assert type(got) is type(want), (n, got, want)  # the Python rule raised both
        else:
            assert got[0].tzinfo is want[0].tzinfo


@pytest.mark.parametrize("precision,scale", [(38, 18), (10, 0), (18, 8), (38, 0), (4, 2)])
def test_decimals_read_alike_at_every_width(precision, scale):
    schema = {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}
    native, python = compile_reader(schema, native=True), compile_reader(schema, native=False)
    rng = random.Random(precision * 100 + scale)
    for width in range(1, 21):
        for _ in range(60):
            raw = bytes(rng.randrange(256) for _ in range(width))
            if rng.random() < 0.3:  # values near zero and near the precision's limit
                u = rng.choice([0, -1, 1, 10**precision - 1, -(10**precision) + 1,
                                10**precision, -(10**precision)])
                raw = u.to_bytes(max(width, (u.bit_length() + 8) // 8), "big", signed=True)
            body = _zigzag(len(raw)) + raw
            got, want = _outcome(native, body, 0), _outcome(python, body, 0)
            if len(raw) > decimal_width(precision):
                assert isinstance(got, Malformed) and isinstance(want, Malformed), (raw, got)
                continue
            assert got[0].as_tuple() == want[0].as_tuple(), (raw, got, want)
            assert got[1] == want[1] == len(body)


@pytest.mark.parametrize("native", [True, False])
def test_a_decimal_wider_than_its_precision_needs_is_refused_without_reading_it(native):
    # Turning N bytes into a number costs N squared: a megabyte would take minutes.
    schema = {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 18}
    raw = b"\x01" * 1_000_000
    with pytest.raises(Malformed, match="1000000 bytes"):
        compile_reader(schema, native=native)(_zigzag(len(raw)) + raw)
    snapshot = CODEC.encode("AccountSnapshot", samples.snapshot())
    read = compile_reader(CODEC._by_id[_sid(snapshot)], record_names=True, native=native)
    assert read(snapshot, 5)[1] == len(snapshot)  # real decimals are far narrower


FLAT = {"type": "array", "items": {"type": "record", "name": "Flat", "fields": [
    {"name": "s", "type": "string"}, {"name": "n", "type": "long"}]}}


@pytest.mark.parametrize("native", [True, False])
def test_the_item_cache_keeps_no_long_items(native):
    read = compile_reader(FLAT, native=native)
    short, long_ = {"s": "x", "n": 1}, {"s": "y" * fastread._ITEM_CACHE_BYTES, "n": 2}
    body = _zigzag(2) + b"".join(_zigzag(len(d["s"])) + d["s"].encode() + _zigzag(d["n"])
                                 for d in (short, long_)) + b"\x00"
    for _ in range(2):
        items, end = read(body)
        assert items == [short, long_] and end == len(body)
        assert type(items[0]) is WireItem and type(items[1]) is dict
