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


class _LeaderMoves:
    """One partition of 1,000 records; the broker answers 100, then fetches come back
    empty for a while (a leader change), then the rest."""

    tp = ("market.marks", 0)

    def __init__(self, **_: object) -> None:
        self.pos = 0
        self.calls = 0

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def subscribe(self, topics: list[str]) -> None:
        pass

    def assignment(self) -> set[tuple[str, int]]:
        return {self.tp}

    def seek(self, tp: object, offset: int) -> None:
        self.pos = offset

    async def end_offsets(self, tps: object) -> dict[tuple[str, int], int]:
        return {self.tp: 1000}

    async def position(self, tp: object) -> int:
        return self.pos

    def highwater(self, tp: object) -> int:
        return 1000

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[object, list[Rec]]:
        import asyncio

        self.calls += 1
        await asyncio.sleep(0)
        if 2 <= self.calls < 8:
            return {}
        recs = [Rec(o, b"S%d" % (o % 300), b"p%d" % o)
                for o in range(self.pos, min(self.pos + 100, 1000))]
        if recs:
            self.pos = recs[-1].offset + 1
        return {self.tp: recs} if recs else {}


def test_empty_polls_before_the_end_are_not_caught_up(monkeypatch) -> None:
    import asyncio

    import aiokafka

    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", _LeaderMoves)

    async def scenario() -> MarksReader:
        reader = MarksReader("127.0.0.1:1", "market.marks", poll_ms=1)
        task = asyncio.create_task(reader.run())
        try:
            await asyncio.wait_for(reader.wait_caught_up(), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return reader

    reader = asyncio.run(scenario())
    # Caught up only with every record present at start: all 300 symbols at their last price.
    assert reader.records == 1000 and len(reader.prices) == 300
    assert reader.prices[b"S0"] == b"p900"
