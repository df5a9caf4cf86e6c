"""Prometheus metrics of the sink, in a registry of their own.

Owns: metric names, labels and the registry ``/metrics`` serves. Must not
touch: what is counted (the runner decides) or how it is served
(``sinks.http``). A private registry keeps several runners in one process
(tests) from clashing with each other or with the worker's metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

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
