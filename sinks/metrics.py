"""Prometheus metrics of the sink, in a registry of their own.

Owns: metric names, labels and the registry ``/metrics`` serves. Must not
touch: what is counted (the runner decides) or how it is served
(``sinks.http``). A private registry keeps several runners in one process
(tests) from clashing with each other or with the worker's metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

REGISTRY = CollectorRegistry(auto_describe=True)

ROWS_INSERTED = Counter(
    "twinledger_sink_rows_inserted", "Rows inserted into ClickHouse", ["table"],
    registry=REGISTRY)
DUPLICATES_DROPPED = Counter(
    "twinledger_sink_duplicates_dropped",
    "Rows not inserted because their (account_id, event_id) was already there",
    ["table", "where"], registry=REGISTRY)  # where: batch | table | group (sinks.runner)
DEAD_LETTERS = Counter(
    "twinledger_sink_dead_letters",
    "Records the sink could not decode or map, written to dead_letters", ["topic", "error_type"],
    registry=REGISTRY)
BATCHES = Counter(
    "twinledger_sink_batches", "Batches completed (inserted, AFTER recorded, committed)",
    ["topic"], registry=REGISTRY)
RANGES_RECOVERED = Counter(
    "twinledger_sink_ranges_recovered", "BEFORE ranges found at assignment", ["outcome"],
    registry=REGISTRY)
INSERT_RETRIES = Counter(
    "twinledger_sink_insert_retries", "Failed ClickHouse statements retried", ["table"],
    registry=REGISTRY)
INSERT_SECONDS = Histogram(
    "twinledger_sink_insert_seconds", "Latency of one acknowledged insert", ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY)


class ConsumerLagCollector:
    """``twinledger_sink_lag_records{topic, partition}`` and when it was last measured.

    The lag of a partition is its high watermark (as of the consumer's last
    fetch) minus the sink consumer's position. It is measured on the thread
    that polls (:class:`LagTrackingConsumer`): the Kafka consumer may not be
    called from the HTTP thread while it polls (a call waits for the poll to
    end). ``twinledger_sink_lag_measured_timestamp_seconds`` tells when: a sink
    stuck retrying an insert does not poll, and its lag stops being measured.
    """

    name = "twinledger_sink_lag_records"
    documentation = ("records on a sinked topic partition after the sink consumer's position "
                     "(high watermark - position)")
    stamp_name = "twinledger_sink_lag_measured_timestamp_seconds"
    stamp_documentation = "Unix time the sink last measured its lag (0 = never)"

    def __init__(self) -> None:
        self.lags: dict[tuple[str, int], int] = {}
        self.measured_at = 0.0

    def update(self, lags: Mapping[tuple[str, int], int]) -> None:
        self.lags = dict(lags)  # replaced whole: a scrape sees one measurement
        self.measured_at = time.time()

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily(self.name, self.documentation, labels=["topic", "partition"]),
                GaugeMetricFamily(self.stamp_name, self.stamp_documentation)]

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=["topic", "partition"])
        for (topic, partition), lag in sorted(self.lags.items()):
            family.add_metric([topic, str(partition)], lag)
        yield family
        yield GaugeMetricFamily(self.stamp_name, self.stamp_documentation,
                                value=self.measured_at)


def consumer_lag(consumer: Any, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """High watermark minus position per partition, from the consumer's cached offsets.

    Partitions without a position yet (nothing fetched since the assignment)
    or without a known high watermark are left out rather than guessed. Call
    it on the thread that polls ``consumer``.
    """
    from confluent_kafka import TopicPartition

    wanted = [TopicPartition(topic, partition) for topic, partition in partitions]
    if consumer is None or not wanted:
        return {}
    out: dict[tuple[str, int], int] = {}
    for tp in consumer.position(wanted):
        if tp.offset < 0:
            continue
        _low, high = consumer.get_watermark_offsets(tp, cached=True)
        if high is None or high < 0:
            continue
        out[(tp.topic, tp.partition)] = max(0, int(high) - int(tp.offset))
    return out


class LagTrackingConsumer:
    """A Kafka consumer whose ``consume`` also measures the lag, every ``every`` seconds.

    Everything else is the wrapped consumer's. ``partitions`` names the
    partitions held (the runner's assignment), read on the polling thread too.
    """

    def __init__(self, consumer: Any, partitions: Callable[[], Iterable[tuple[str, int]]],
                 every: float = 5.0, collector: ConsumerLagCollector | None = None) -> None:
        self._consumer = consumer
        self._partitions = partitions
        self._every = every
        self._collector = collector if collector is not None else LAG
        self._next = 0.0

    def consume(self, *args: Any, **kwargs: Any) -> Any:
        messages = self._consumer.consume(*args, **kwargs)
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._every
            try:
                self._collector.update(consumer_lag(self._consumer, self._partitions()))
            except Exception as exc:  # noqa: BLE001 - a metric must never stop the sink
                logging.getLogger("twinledger.sink").debug("lag not measured: %s", exc)
        return messages

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


LAG = ConsumerLagCollector()
REGISTRY.register(LAG)
