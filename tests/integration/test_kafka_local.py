"""Round trips through a real broker with both Kafka clients the project uses.

Owns: the evidence that the broker of ``kafka_bootstrap`` (ops/kafka locally)
works with aiokafka (Faust's client) and confluent-kafka (producers, admin, sinks):
produce N, consume with a group, commit, resume from the committed offsets; and
that topology.yaml's topics are created with its partition counts.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as CTopicPartition

from streams.infra.kafka_admin import (
    delete_topics,
    describe_partitions,
    ensure_topics,
    topics_from_topology,
)
from streams.infra.kafka_local import local_kafka_running

pytestmark = pytest.mark.integration

N = 60
PARTITIONS = 3


def _keys(i: int) -> str:
    return f"acct-{i % 11}"


@pytest.fixture
def topic(kafka_bootstrap: str, unique_topic: Callable[[str], str]) -> Iterator[str]:
    name = unique_topic("it.kafka")
    ensure_topics(kafka_bootstrap, {name: PARTITIONS})
    yield name
    delete_topics(kafka_bootstrap, [name])


def test_topology_topics_are_created_with_their_partition_counts(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    topology = topics_from_topology()
    assert topology["venue.events"] >= 3
    prefix = unique_topic("it.topology")
    wanted = {f"{prefix}.{name}": parts for name, parts in topology.items()}
    try:
        ensure_topics(kafka_bootstrap, wanted)
        assert describe_partitions(kafka_bootstrap, wanted) == wanted
        # Idempotent, and an existing topic is never altered.
        first = next(iter(wanted))
        ensure_topics(kafka_bootstrap, {first: wanted[first] + 2})
        assert describe_partitions(kafka_bootstrap, [first]) == {first: wanted[first]}
    finally:
        delete_topics(kafka_bootstrap, wanted)
    deadline = time.monotonic() + 30
    while describe_partitions(kafka_bootstrap, wanted) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert describe_partitions(kafka_bootstrap, wanted) == {}


def test_aiokafka_group_resumes_from_committed_offsets(kafka_bootstrap: str, topic: str) -> None:
    group = f"{topic}.aiokafka"

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            batch = [
                await producer.send(topic, key=_keys(i).encode(), value=str(i).encode())
                for i in range(N)
            ]
            await asyncio.gather(*batch)
        finally:
            await producer.stop()

    async def consume(limit: int, drain: bool = False) -> list[tuple[str, int]]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        got: list[tuple[str, int]] = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < limit and time.monotonic() < deadline:
                records = await consumer.getmany(timeout_ms=200, max_records=limit - len(got))
                for batch in records.values():
                    got += [(r.key.decode(), int(r.value)) for r in batch]  # type: ignore[union-attr, arg-type]
            if drain:  # anything beyond the limit would be a replay: catch it
                for batch in (await consumer.getmany(timeout_ms=1000)).values():
                    got += [(r.key.decode(), int(r.value)) for r in batch]  # type: ignore[union-attr, arg-type]
            await consumer.commit()
        finally:
            await consumer.stop()
        return got

    async def committed_total() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group)
        await consumer.start()
        try:
            offsets = [await consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)]
        finally:
            await consumer.stop()
        return sum(o or 0 for o in offsets)

    async def scenario() -> None:
        await produce()
        first = await consume(N // 3)
        assert len(first) == N // 3
        assert await committed_total() == N // 3
        # a new member of the same group: resumes, no replays
        rest = await consume(N - len(first), drain=True)
        assert sorted(v for _, v in first + rest) == list(range(N))
        assert await committed_total() == N
        _assert_per_key_order(first + rest)

    asyncio.run(scenario())


def test_confluent_group_resumes_from_committed_offsets(kafka_bootstrap: str, topic: str) -> None:
    group = f"{topic}.confluent"
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all",
                         "enable.idempotence": True, "partitioner": "murmur2_random"})
    for i in range(N):
        producer.produce(topic, key=_keys(i), value=str(i),
                         on_delivery=lambda err, _m: errors.append(str(err)) if err else None)
    assert producer.flush(30) == 0
    assert errors == []

    def consumer() -> Consumer:
        c = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group,
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        c.subscribe([topic])
        return c

    def consume(limit: int, drain: bool = False) -> list[tuple[str, int]]:
        c = consumer()
        got: list[tuple[str, int]] = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < limit and time.monotonic() < deadline:
                for msg in c.consume(limit - len(got), timeout=0.2):
                    assert msg.error() is None, msg.error()
                    got.append((msg.key().decode(), int(msg.value())))
            if drain:  # anything beyond the limit would be a replay: catch it
                got += [(m.key().decode(), int(m.value())) for m in c.consume(100, timeout=1.0)]
            c.commit(asynchronous=False)
        finally:
            c.close()
        return got

    def committed_total() -> int:
        c = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
        try:
            parts = c.committed([CTopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        finally:
            c.close()
        return sum(max(tp.offset, 0) for tp in parts)

    first = consume(N // 2)
    assert len(first) == N // 2
    assert committed_total() == N // 2
    rest = consume(N - len(first), drain=True)
    assert sorted(v for _, v in first + rest) == list(range(N))
    assert committed_total() == N
    _assert_per_key_order(first + rest)


def test_both_clients_put_a_key_on_the_same_partition(kafka_bootstrap: str, topic: str) -> None:
    """confluent with murmur2_random and aiokafka (Faust) agree: co-keyed topics stay co-keyed."""
    keys = [f"acct-{i}" for i in range(20)]
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random"})
    placed: dict[str, int] = {}
    for key in keys:
        producer.produce(topic, key=key, value=b"c",
                         on_delivery=lambda _e, m: placed.__setitem__(m.key().decode(), m.partition()))
    assert producer.flush(30) == 0

    async def aiokafka_partitions() -> dict[str, int]:
        p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await p.start()
        try:
            return {k: (await (await p.send(topic, key=k.encode(), value=b"a"))).partition
                    for k in keys}
        finally:
            await p.stop()

    assert asyncio.run(aiokafka_partitions()) == placed
    assert len(set(placed.values())) > 1  # the keys really are spread


@pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")),
                    reason="broker given by KAFKA_BOOTSTRAP_SERVERS, not by ops/kafka")
def test_local_script_reports_running(kafka_bootstrap: str) -> None:
    if kafka_bootstrap != "127.0.0.1:" + os.environ.get("TWINLEDGER_KAFKA_PORT", "39092"):
        pytest.skip("broker is not the local script's (Docker)")
    assert local_kafka_running()


def _assert_per_key_order(records: list[tuple[str, int]]) -> None:
    by_key: dict[str, list[int]] = {}
    for key, value in records:
        by_key.setdefault(key, []).append(value)
    for key, values in by_key.items():
        assert values == sorted(values), f"{key}: {values}"
