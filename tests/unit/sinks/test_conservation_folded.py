"""Check 3 of conservation on the embedded engine: venue events left with no outcome of the fold.

Hand-made rows: a snapshot, an anomaly naming the event (refused as out of
range) or a dead letter for its source offset each account for a venue
event; anything else below the bound is reported, as runs of offsets per
partition with its first events. Above the bound, nothing is asked.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from sinks.backend import ClickHouseBackend, chdb_url
from sinks.conservation import FoldedBound, check_folded
from sinks.ddl import TABLES
from sinks.http import COUNTS_LIMITS
from sinks.migrate import apply_ddl

V = "p.venue.events"
S = "p.ledger.snapshots"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _default(typ: str) -> Any:
    if typ.startswith("Map"):
        return {}
    if typ.startswith("Nullable"):
        return None
    if "Decimal" in typ:
        return 0
    if "DateTime" in typ:
        return T0
    if "Int" in typ:
        return 0
    if typ == "Bool":
        return False
    return ""


def _insert(backend: ClickHouseBackend, table: str, rows: list[dict[str, Any]]) -> None:
    t = TABLES[table]
    types = dict(t.columns)
    types.update({"kafka_topic": "String", "kafka_partition": "UInt32", "kafka_offset": "UInt64"})
    data = [[r.get(c, _default(types.get(c, "String"))) for c in t.insert_columns] for r in rows]
    backend.insert(table, t.insert_columns, data, f"test-{table}-{len(rows)}")


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    backend = ClickHouseBackend(chdb_url(str(tmp_path_factory.mktemp("chdb"))), "tl")
    apply_ddl(backend, "tl", "", 0)
    _insert(backend, "venue_events", [
        {"account_id": f"p{p}a{o % 3}", "event_id": f"e{p}-{o}", "kafka_topic": V,
         "kafka_partition": p, "kafka_offset": o} for p in (0, 1) for o in range(10)])
    missing = {(0, 3), (0, 4), (0, 5), (0, 8), (1, 7)}
    _insert(backend, "account_snapshots", [
        {"account_id": f"p{p}a{o % 3}", "event_id": f"e{p}-{o}"}
        for p in (0, 1) for o in range(10) if (p, o) not in missing])
    _insert(backend, "anomaly_events", [  # e0-4 was refused as out of range: folded
        {"account_id": "p0a1", "event_id": "e0-4:OUT_OF_RANGE", "source_event_id": "e0-4"}])
    _insert(backend, "dead_letters", [  # offset 8 of partition 0 was dead-lettered: folded
        {"account_id": "p0a2", "event_id": f"{V}:0:8", "source_topic": V,
         "source_partition": 0, "source_offset": 8},
        # the sink refused a snapshot record (it names no venue event): not an outcome
        {"account_id": "p1a1", "event_id": f"{S}:1:40", "source_topic": S,
         "source_partition": 1, "source_offset": 40},
        # ... and one of an account with every event accounted for
        {"account_id": "zz", "event_id": f"{S}:2:41", "source_topic": S,
         "source_partition": 2, "source_offset": 41}])
    yield backend.reader(COUNTS_LIMITS)
    backend.close()


def test_events_without_snapshot_anomaly_or_dead_letter_are_named_by_run(reader):
    doc = check_folded(reader, FoldedBound(V, {0: 10, 1: 10}))
    assert doc["checked"] and not doc["ok"] and doc["unfolded"] == 3
    by_part = {p["partition"]: p for p in doc["partitions"]}
    assert by_part[0]["ranges"] == [{"first": 3, "last": 3, "count": 1},
                                    {"first": 5, "last": 5, "count": 1}]
    assert by_part[1]["ranges"] == [{"first": 7, "last": 7, "count": 1}]
    assert by_part[1]["first_events"] == [{"offset": 7, "account_id": "p1a1",
                                           "event_id": "e1-7"}]


def test_only_offsets_below_the_bound_are_asked(reader):
    doc = check_folded(reader, FoldedBound(V, {0: 4, 1: 0}))
    assert doc["unfolded"] == 1 and doc["partitions"][0]["ranges"][0]["first"] == 3
    assert check_folded(reader, FoldedBound(V, {0: 3, 1: 7}))["ok"]


def test_pending_outputs_or_no_bound_mean_not_checked_and_not_failed(reader):
    doc = check_folded(reader, FoldedBound(V, {0: 10}, pending={"p.ledger.snapshots[0]": 4}))
    assert doc["ok"] and not doc["checked"] and "4 output record(s)" in doc["pending"]
    assert not check_folded(reader, None)["checked"]


def test_an_engine_refusal_is_reported_not_raised(reader):
    class Refusing:
        database = "tl"

        def query(self, sql, params=None):
            raise MemoryError("MEMORY_LIMIT_EXCEEDED")

    doc = check_folded(Refusing(), FoldedBound(V, {0: 10}))
    assert doc["ok"] and not doc["checked"] and "MEMORY_LIMIT_EXCEEDED" in doc["error"]


def test_the_sinks_refusals_of_outcome_records_are_named_beside_the_finding(reader):
    from streams.ops import _outcome_refusals

    doc = check_folded(reader, FoldedBound(V, {0: 10, 1: 10},
                                           outcome_topics=[S, "p.ledger.anomalies"]))
    assert doc["unfolded"] == 3  # a refused outcome record accounts for no event
    assert doc["outcome_dead_letters"] == {S: 1}  # of the accounts found only (p1a1)
    assert _outcome_refusals(doc) == (
        f"; unless the sink refused their outcome: it dead-lettered 1 of {S} "
        "(dead_letters, by source_topic), which names no venue event")
    assert "outcome_dead_letters" not in check_folded(reader, FoldedBound(V, {0: 10, 1: 10}))
    # nothing unfolded (below offset 3 of partition 0): not asked
    assert "outcome_dead_letters" not in check_folded(
        reader, FoldedBound(V, {0: 3}, outcome_topics=[S]))
    assert _outcome_refusals({"outcome_dead_letters": {S: 0}}) == ""
