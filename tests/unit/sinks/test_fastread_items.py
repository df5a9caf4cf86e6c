"""The compiled reader's item cache for arrays of flat records (``streams.codec.fastread``).

The sink reads every snapshot's positions through it; the reader's other
guarantees are tested in ``tests/unit/test_fastread.py``, whose records and
deep comparison these tests reuse.
"""

from __future__ import annotations

import random

from streams.codec import Codec
from streams.exceptions import DecodeError
from tests.unit.sinks import samples
from tests.unit.test_fastread import CODEC, WIRES, same


def test_repeated_array_items_are_read_as_fastavro_reads_them_and_are_copies():
    wire = CODEC.encode("AccountSnapshot", samples.snapshot())
    first = CODEC.decode(wire)[1]
    assert first["positions"], "the sample needs positions to exercise the item cache"
    first["positions"][0]["qty"] = "changed by a consumer"
    first["positions"].append({"x": 1})
    for _ in range(2):  # the second read comes from the cache
        got = CODEC.decode(wire)
        assert same(got, CODEC.decode_with_fastavro(wire))
        assert got[1]["positions"][0] is not first["positions"][0]


def test_garbled_arrays_after_cached_items_read_as_a_cold_reader_reads_them():
    snapshots = [w for w in WIRES if CODEC.decode(w)[0] == "AccountSnapshot"][:30]
    rng = random.Random(9)
    for wire in snapshots:
        CODEC.decode(wire)  # warm the item cache
        cold = Codec.load()  # a new compiled reader that never read this record
        for _ in range(20):
            garbled = bytearray(wire)
            garbled[rng.randrange(5, len(wire))] = rng.randrange(256)
            outcomes = []
            for codec in (CODEC, cold):
                try:
                    outcomes.append(codec.decode(bytes(garbled)))
                except DecodeError as exc:
                    outcomes.append(str(exc))
            assert type(outcomes[0]) is type(outcomes[1])
            assert outcomes[0] == outcomes[1] if isinstance(outcomes[0], str) \
                else same(outcomes[0], outcomes[1])
