"""The ``kafka_bootstrap`` and ``unique_topic`` pytest fixtures: a real Kafka broker for tests.

Owns: choosing the broker of a test session, in this order (DESIGN §5):

1. ``KAFKA_BOOTSTRAP_SERVERS`` from the environment: used as is, never stopped;
2. Docker via testcontainers, only if a Docker engine answers a ping within a
   couple of seconds (``TWINLEDGER_TEST_DOCKER=0`` skips this step);
3. the local broker of ``ops/kafka/kafka.sh``: reused if running, else started
   and then stopped at session end, since this session started it.

Must not stop a broker it did not start, create topology topics (tests do) or
mock Kafka. Import both fixtures into a conftest.py to use them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.infra.kafka_local import (
    ensure_local_kafka,
    local_kafka_running,
    stop_local_kafka,
    wait_for_broker,
)

# Confluent Platform 7.9 ships Apache Kafka 3.9, a supported broker (ops/kafka pins
# 4.x, the other); testcontainers' KafkaContainer is written for the cp-kafka image.
DOCKER_IMAGE = os.environ.get("TWINLEDGER_KAFKA_IMAGE", "confluentinc/cp-kafka:7.9.0")


def docker_available(timeout: float = 2.0) -> bool:
    """True if a Docker engine answers a ping within ``timeout`` seconds."""
    if os.environ.get("TWINLEDGER_TEST_DOCKER", "1") == "0":
        return False
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not Path("/var/run/docker.sock").exists():
        return False  # the common no-Docker case, decided without importing docker
    try:
        import docker

        client = docker.from_env(timeout=int(max(1, timeout)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means "no usable engine"
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real broker for the whole test session."""
    explicit = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if explicit:
        wait_for_broker(explicit, timeout=60)
        yield explicit
        return

    if docker_available():
        from testcontainers.community.kafka import KafkaContainer

        container = (
            KafkaContainer(DOCKER_IMAGE)
            .with_kraft()
            .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
        )
        with container:
            bootstrap = container.get_bootstrap_server()
            wait_for_broker(bootstrap, timeout=60)
            yield bootstrap
        return

    started_here = not local_kafka_running()
    bootstrap = ensure_local_kafka()
    try:
        yield bootstrap
    finally:
        if started_here:
            stop_local_kafka()


def new_topic_name(prefix: str = "test") -> str:
    """A topic name no other test (or earlier run) uses: ``<prefix>.<12 hex>``."""
    return f"{prefix}.{uuid.uuid4().hex[:12]}"


@pytest.fixture
def unique_topic() -> Callable[[str], str]:
    """Factory of unique topic names: ``unique_topic("venue.events")``."""
    return new_topic_name
