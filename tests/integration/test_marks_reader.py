"""The marks reader on a real broker: every partition from the first offset, outside any group.

A worker values positions at the latest mark of each symbol on ``market.marks``.
The reader must have every record present at its start before it says it caught
up, follow later marks and tombstones, and have nothing a rebalance could take
away (it joins no group: two readers of one topic each hold every symbol).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from streams.infra.kafka_admin import ensure_topics
from streams.marks import MarksReader
from streams.procs import wait_until

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes | None, int]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for key, value, partition in records:
        producer.produce(topic, key=key, value=value, partition=partition)
    assert producer.flush(30) == 0


def test_reader_holds_every_symbol_of_every_partition_and_follows_updates(
        kafka_bootstrap: str, unique_topic: Callable[[str], str]) -> None:
    topic = unique_topic("market.marks")
    ensure_topics(kafka_bootstrap, {topic: 3})
    # 600 records over 3 partitions (a symbol keeps to one); the last per symbol wins.
    first = [(f"SYM{i % 50}".encode(), f"p{i}".encode(), (i % 50) % 3) for i in range(600)]
    _produce(kafka_bootstrap, topic, first)
    latest: dict[bytes, bytes] = {}
    for key, value, _ in first:
        latest[key] = value

    async def scenario() -> None:
        readers = [MarksReader(kafka_bootstrap, topic, poll_ms=200) for _ in range(2)]
        tasks = [asyncio.create_task(r.run()) for r in readers]
        try:
            for reader in readers:
                await asyncio.wait_for(reader.wait_caught_up(), 60)
                # Caught up means everything present at start: no partial table.
                assert reader.prices == latest
                assert reader.records == 600
                status = reader.status()
                assert (status["caught_up"], status["symbols"], status["records_read"]) == (
                    True, 50, 600)
                assert status["last_poll_seconds_ago"] is not None
            # Later records: a new price and a tombstone, seen by both readers.
            _produce(kafka_bootstrap, topic, [(b"SYM1", b"new", 1), (b"SYM2", None, 2),
                                              (b"SYM99", b"fresh", 0)])
            want = dict(latest)
            want.update({b"SYM1": b"new", b"SYM99": b"fresh"})
            del want[b"SYM2"]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while any(r.prices != want for r in readers):
                assert loop.time() < deadline, [len(r.prices) for r in readers]
                await asyncio.sleep(0.1)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())


def test_reader_of_an_empty_topic_catches_up_at_once(
        kafka_bootstrap: str, unique_topic: Callable[[str], str]) -> None:
    topic = unique_topic("market.marks")
    ensure_topics(kafka_bootstrap, {topic: 1})

    async def scenario() -> None:
        reader = MarksReader(kafka_bootstrap, topic, poll_ms=200)
        task = asyncio.create_task(reader.run())
        try:
            await asyncio.wait_for(reader.wait_caught_up(), 30)
            assert reader.prices == {}
            _produce(kafka_bootstrap, topic, [(b"XBT/USD", b"m", 0)])
            await asyncio.to_thread(wait_until, lambda: reader.prices == {b"XBT/USD": b"m"},
                                    30, what="the first mark")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
