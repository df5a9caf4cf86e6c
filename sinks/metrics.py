"""Prometheus metrics of the sink, in a registry of their own.

Owns: metric names, labels and the registry ``/metrics`` serves. Must not
touch: what is counted (the runner decides) or how it is served
(``sinks.http``). A private registry keeps several runners in one process
(tests) from clashing with each other or with the worker's metrics.
"""

from __future__ import annotations

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
    ["table", "where"], registry=REGISTRY)  # where: batch | table
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
    """``twinledger_sink_lag_records{topic, partition}``: records not yet taken, per partition.

    Read at each scrape from the sink consumer's own view (no broker request):
    its position on each assigned partition against the high watermark of
    that partition's last fetch. A partition the sink does not hold has no
    sample. ``source`` is set by the sink at start (``sinks.main``).
    """

    name = "twinledger_sink_lag_records"
    documentation = ("records on a sinked topic partition after the sink consumer's position "
                     "(high watermark - position)")

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[tuple[str, int], int]] | None = None

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily(self.name, self.documentation, labels=["topic", "partition"])]

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=["topic", "partition"])
        try:
            lags = dict(self.source()) if self.source is not None else {}
        except Exception:  # noqa: BLE001 - a closing consumer must not break the scrape
            lags = {}
        for (topic, partition), lag in sorted(lags.items()):
            family.add_metric([topic, str(partition)], lag)
        yield family


def consumer_lag(consumer: Any, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """High watermark minus position per partition, from the consumer's cached offsets.

    Partitions without a position yet (nothing fetched since the assignment)
    or without a known high watermark are left out rather than guessed.
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


LAG = ConsumerLagCollector()
REGISTRY.register(LAG)
