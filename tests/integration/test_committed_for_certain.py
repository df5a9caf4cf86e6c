"""The seek's second reading of committed offsets, against a real group coordinator.

``streams.infra.faust_seek.committed_for_certain`` sends its own OffsetFetch
through aiokafka's group coordinator (to read the request-level error that
aiokafka drops): on a real broker it must find what the group committed, and
no offset for a partition never committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from streams.infra.faust_seek import committed_for_certain
from streams.infra.kafka_admin import ensure_topics
from tests.integration.kafka_fixture import new_topic_name

pytestmark = pytest.mark.integration


def test_committed_offsets_are_read_from_the_group_coordinator(
        kafka_bootstrap: str, unique_topic: Callable[[str], str]) -> None:
    topic = unique_topic("venue.events")
    ensure_topics(kafka_bootstrap, {topic: 3})
    group = new_topic_name("group")

    async def scenario() -> dict[TopicPartition, int | None] | None:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            deadline = asyncio.get_running_loop().time() + 60
            while len(consumer.assignment()) < 3:
                assert asyncio.get_running_loop().time() < deadline, "no assignment"
                await consumer.getmany(timeout_ms=200)
            # Offsets beyond the (empty) log are still stored as committed.
            await consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(2312, ""),
                                   TopicPartition(topic, 2): OffsetAndMetadata(0, "")})
            return await committed_for_certain(
                consumer, [TopicPartition(topic, p) for p in range(3)])
        finally:
            await consumer.stop()

    got = asyncio.run(scenario())
    assert got == {TopicPartition(topic, 0): 2312, TopicPartition(topic, 1): None,
                   TopicPartition(topic, 2): 0}
