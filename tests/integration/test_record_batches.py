"""The worker's outputs sent as record batches on a real broker (``streams.infra.record_batches``).

Each record must land where a per-record ``send`` would have put it (the
default partitioner's partition for its key), in the order of the batch
within each partition, with its key, value and event time; a record the
broker refuses must raise, never pass as sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner

from streams.infra.kafka_admin import ensure_topics
from streams.infra.record_batches import OutputsNotDelivered, deliver

pytestmark = pytest.mark.integration


class FaustLikeProducer:
    """What ``deliver`` uses of Faust's producer: its aiokafka producer and ``flush``."""

    def __init__(self, aio: AIOKafkaProducer) -> None:
        self.aio = aio
        self.flushes = 0

    def _ensure_producer(self) -> AIOKafkaProducer:
        return self.aio

    async def flush(self) -> None:
        self.flushes += 1
        await self.aio.flush()


async def _read_all(bootstrap: str, topic: str, partitions: int, n: int
                    ) -> dict[int, list[tuple[bytes | None, bytes, int]]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got: dict[int, list[tuple[bytes | None, bytes, int]]] = {p: [] for p in range(partitions)}
        deadline = asyncio.get_running_loop().time() + 60
        while sum(map(len, got.values())) < n:
            assert asyncio.get_running_loop().time() < deadline, "records missing"
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                got[tp.partition] += [(r.key, r.value, r.timestamp) for r in records]
        return got
    finally:
        await consumer.stop()


def test_records_land_on_the_default_partition_in_order_with_their_times(
        kafka_bootstrap: str, unique_topic: Callable[[str], str]) -> None:
    snapshots, trades = unique_topic("ledger.snapshots"), unique_topic("ledger.trades")
    ensure_topics(kafka_bootstrap, {snapshots: 6, trades: 3})
    # Interleaved topics and keys, values of several sizes; a small batch size makes
    # each partition's records span several record batches.
    sends = []
    for i in range(3000):
        topic = snapshots if i % 3 else trades
        sends.append((topic, f"acc-{i % 37}".encode(), f"v{i}:".encode() + b"x" * (i % 700),
                      1_700_000_000.0 + i / 1000))
    sends.append((snapshots, b"", b"empty key", None))  # a dead letter of a keyless record

    async def scenario() -> dict[str, dict[int, list[tuple[bytes | None, bytes, int]]]]:
        aio = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks=-1, max_batch_size=4096)
        await aio.start()
        try:
            producer = FaustLikeProducer(aio)
            await deliver(producer, sends)
            assert producer.flushes == 1
        finally:
            await aio.stop()
        return {snapshots: await _read_all(kafka_bootstrap, snapshots, 6, 2001),
                trades: await _read_all(kafka_bootstrap, trades, 3, 1000)}

    got = asyncio.run(scenario())
    partitioner = DefaultPartitioner()
    # The keyless dead letter has no event time: the producer's clock stamps it.
    keyless = got[snapshots][partitioner(b"", list(range(6)), list(range(6)))]
    (key, _, stamp), = [r for r in keyless if r[1] == b"empty key"]
    assert key == b"" and stamp > 1_700_000_000_000
    for topic, partitions in ((snapshots, 6), (trades, 3)):
        want: dict[int, list[tuple[bytes | None, bytes, int]]] = {p: [] for p in range(partitions)}
        for t, key, value, ts in sends:
            if t == topic and ts is not None:
                p = partitioner(key, list(range(partitions)), list(range(partitions)))
                want[p].append((key, value, int(ts * 1000)))
        for p in range(partitions):
            records = [r for r in got[topic][p] if r[1] != b"empty key"]
            assert records == want[p], f"{topic}[{p}]"


def test_a_record_the_broker_refuses_or_the_producer_refuses_is_never_taken_as_sent(
        kafka_bootstrap: str, unique_topic: Callable[[str], str]) -> None:
    small = unique_topic("ledger.snapshots")
    # The broker takes no record batch over 2,000 bytes on this topic.
    ensure_topics(kafka_bootstrap, {small: 2}, config={"max.message.bytes": "2000"})

    async def scenario() -> None:
        aio = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks=-1,
                               max_request_size=50_000, request_timeout_ms=10_000)
        await aio.start()
        try:
            producer = FaustLikeProducer(aio)
            with pytest.raises(OutputsNotDelivered, match="not delivered"):
                await deliver(producer, [(small, b"a", b"x" * 10_000, None)])
            # What a per-record send refuses before anything is sent, refused the same,
            # and reported as outputs not delivered (the worker exits, nothing stored).
            with pytest.raises(OutputsNotDelivered, match="could not be queued") as caught:
                await deliver(producer, [(small, b"a", b"x" * 60_000, None)])
            assert isinstance(caught.value.__cause__, MessageSizeTooLargeError)
        finally:
            await aio.stop()

    asyncio.run(scenario())
