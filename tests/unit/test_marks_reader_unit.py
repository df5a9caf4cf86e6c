"""The marks reader's bookkeeping without a broker: tombstones, and no going back."""

from __future__ import annotations

from collections import namedtuple

from streams.marks import MarksReader

Rec = namedtuple("Rec", "offset key value")


def test_a_partition_read_again_never_brings_back_an_older_price() -> None:
    reader = MarksReader("127.0.0.1:1", "market.marks")
    tp0, tp1 = ("market.marks", 0), ("market.marks", 1)
    reader._apply_batch({tp0: [Rec(0, b"XBT", b"1"), Rec(1, b"XBT", b"2")],
                         tp1: [Rec(0, b"ETH", b"9")]})
    assert reader.prices == {b"XBT": b"2", b"ETH": b"9"}
    # A replaced consumer reads partition 0 from its start again: nothing older wins.
    reader._apply_batch({tp0: [Rec(0, b"XBT", b"1")]})
    assert reader.prices[b"XBT"] == b"2"
    reader._apply_batch({tp0: [Rec(1, b"XBT", b"2"), Rec(2, b"XBT", b"3")],
                         tp1: [Rec(1, b"ETH", None)]})  # a tombstone removes the symbol
    assert reader.prices == {b"XBT": b"3"}
    assert reader.records == 5


def test_records_without_a_key_are_ignored() -> None:
    reader = MarksReader("127.0.0.1:1", "market.marks")
    reader._apply_batch({("t", 0): [Rec(0, None, b"x"), Rec(1, b"A", b"y")]})
    assert reader.prices == {b"A": b"y"} and reader.status()["caught_up"] is False
