"""Conservation across stages: every consumed record is accounted for, every applied event has its snapshot.

Owns: the checks behind ``twinledger verify`` beyond ``count() = uniq``,
which holds just as well when rows are missing:

1. **Offsets.** For each sinked topic partition, every offset below the sink
   group's committed offset is accounted for in ClickHouse: a row of the
   topic's table, a dead letter the sink made for it, or a duplicate the sink
   recorded in ``sink_duplicates``. Offsets no table accounts for are
   reported as ranges — rows deleted from a table, or records deleted from
   the topic (retention, delete-records) before the sink read them.
2. **Snapshots.** ``event_seq`` counts an account's applied events from 1
   without holes, and each applied event has exactly one snapshot, so per
   account ``max(event_seq) = uniqExact(event_seq)``; an account that fails
   has snapshot rows missing.

Topics whose table keeps only the latest row per key (``balances``) or drops
rows by TTL (``portfolio_snapshots``) cannot account for every offset after
merges; they are listed as not checked, never silently passed.

Must not touch: Kafka (callers pass the committed offsets) or the write path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sinks.backend import Backend
from sinks.ddl import DEAD_LETTERS, DUPLICATES_TABLE, LATEST_TABLES, TABLES, ident

#: Missing ranges reported per partition (the count is always exact).
MAX_RANGES = 20


def offset_checked_tables() -> list[str]:
    """Tables whose rows stay one per record, so their offsets can be accounted for."""
    return [name for name, t in TABLES.items() if name not in LATEST_TABLES and not t.ttl]


def _offsets_sql(db: str, table: str) -> str:
    # Identifiers from sinks.ddl only; the topic and offsets travel as parameters.
    sources = [f"SELECT kafka_partition AS p, kafka_offset AS o FROM {db}.{ident(table)}"
               " WHERE kafka_topic = {topic:String}"]
    if table != DEAD_LETTERS.name:
        sources.append(f"SELECT kafka_partition, kafka_offset FROM {db}.{DEAD_LETTERS.name}"
                       " WHERE kafka_topic = {topic:String}")
    sources.append(f"SELECT kafka_partition, kafka_offset FROM {db}.{DUPLICATES_TABLE}"
                   " WHERE kafka_topic = {topic:String}")
    return " UNION ALL ".join(sources)


def _covered(backend: Backend, db: str, table: str, topic: str, parts: list[int],
             upto: list[int]) -> dict[int, int]:
    sql = (
        "SELECT p, uniqExact(o) FROM (" + _offsets_sql(db, table) + ")"
        " WHERE has({parts:Array(UInt32)}, p) AND o < {upto:Array(UInt64)}[indexOf("
        "{parts:Array(UInt32)}, p)] GROUP BY p")
    rows = backend.query(sql, {"topic": topic, "parts": parts, "upto": upto})
    return {int(p): int(n) for p, n in rows}


def _missing_ranges(backend: Backend, db: str, table: str, topic: str, partition: int,
                    upto: int) -> list[tuple[int, int]]:
    """Up to :data:`MAX_RANGES` ranges ``(first, last)`` of offsets below ``upto`` not found."""
    sql = (
        "SELECT prev + 1, x - 1 FROM ("
        " SELECT x, lagInFrame(x, 1, toInt64(-1)) OVER (ORDER BY x ROWS BETWEEN UNBOUNDED"
        " PRECEDING AND CURRENT ROW) AS prev FROM ("
        "  SELECT DISTINCT toInt64(o) AS x FROM (" + _offsets_sql(db, table) + ")"
        "  WHERE p = {p:UInt32} AND o < {upto:UInt64}"
        "  UNION ALL SELECT toInt64({upto:UInt64}) AS x))"
        " WHERE x - prev > 1 ORDER BY x LIMIT {n:UInt32}")
    rows = backend.query(sql, {"topic": topic, "p": partition, "upto": upto, "n": MAX_RANGES})
    return [(int(a), int(b)) for a, b in rows]


def check_offsets(backend: Backend, committed: Mapping[tuple[str, int], int | None],
                  table_of_topic: Mapping[str, str]) -> dict[str, Any]:
    """Check 1 for ``committed`` ({(topic, partition): sink group's committed offset})."""
    db = ident(backend.database)
    checked = set(offset_checked_tables())
    partitions: list[dict[str, Any]] = []
    not_checked: set[str] = set()
    by_topic: dict[str, list[tuple[int, int]]] = {}
    for (topic, partition), offset in sorted(committed.items()):
        table = table_of_topic.get(topic)
        if table is None:
            continue
        if table not in checked:
            not_checked.add(f"{topic} -> {table}")
            continue
        by_topic.setdefault(topic, []).append((partition, int(offset or 0)))
    missing_total = 0
    for topic, items in sorted(by_topic.items()):
        table = table_of_topic[topic]
        parts = [p for p, _ in items]
        upto = [u for _, u in items]
        covered = _covered(backend, db, table, topic, parts, upto)
        for partition, limit in items:
            have = covered.get(partition, 0)
            entry: dict[str, Any] = {"topic": topic, "partition": partition, "table": table,
                                     "committed": limit, "accounted": have,
                                     "missing": limit - have}
            if have < limit:
                missing_total += limit - have
                entry["missing_ranges"] = [
                    {"first": a, "last": b, "count": b - a + 1}
                    for a, b in _missing_ranges(backend, db, table, topic, partition, limit)]
            partitions.append(entry)
    return {"ok": missing_total == 0, "missing": missing_total, "partitions": partitions,
            "not_checked": sorted(not_checked)}


def check_snapshots(backend: Backend, limit: int = 50) -> dict[str, Any]:
    """Check 2: accounts whose snapshots have holes in ``event_seq``."""
    db = ident(backend.database)
    sql = (
        f"SELECT account_id, max(event_seq), uniqExact(event_seq) FROM {db}.account_snapshots"
        " GROUP BY account_id HAVING max(event_seq) != uniqExact(event_seq)"
        " ORDER BY account_id LIMIT {n:UInt32}")
    holes = [{"account_id": str(a), "last_event_seq": int(m), "snapshots": int(n),
              "missing": int(m) - int(n)}
             for a, m, n in backend.query(sql, {"n": limit})]
    accounts = backend.query(
        f"SELECT uniqExact(account_id), count() FROM {db}.account_snapshots")
    n_accounts, n_rows = accounts[0] if accounts else (0, 0)
    return {"ok": not holes, "accounts": int(n_accounts), "snapshots": int(n_rows),
            "accounts_with_holes": holes}


def conservation(backend: Backend, committed: Mapping[tuple[str, int], int | None],
                 table_of_topic: Mapping[str, str]) -> dict[str, Any]:
    """Both checks: ``{"ok", "offsets": {...}, "snapshots": {...}}``."""
    offsets = check_offsets(backend, committed, table_of_topic)
    snapshots = check_snapshots(backend)
    return {"ok": offsets["ok"] and snapshots["ok"], "offsets": offsets, "snapshots": snapshots}


__all__ = ["check_offsets", "check_snapshots", "conservation", "offset_checked_tables"]
