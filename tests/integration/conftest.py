"""Integration fixtures: a real Kafka broker (env, Docker, or ops/kafka) and isolated pipelines."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.kafka_fixture import kafka_bootstrap, unique_topic  # noqa: F401
from tests.integration.pipeline import Pipeline


@pytest.fixture
def pipeline(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Pipeline]:  # noqa: F811
    p = Pipeline(kafka_bootstrap, tmp_path)
    p.create_topics()
    try:
        yield p
    finally:
        p.stop()
        try:
            p.delete_topics()
        except Exception as exc:  # noqa: BLE001 - housekeeping must not fail a test
            warnings.warn(f"could not delete the pipeline's topics: {exc}", stacklevel=1)
