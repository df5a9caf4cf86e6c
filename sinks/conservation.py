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

3. **Folded.** Every venue event below the worker group's committed offset
   (and below the sink's, so its ``venue_events`` row is in) has an outcome
   of the fold in ClickHouse: its snapshot, an anomaly naming it (an event
   refused as out of range), or a dead letter for its source offset. Checks
   1 and 2 cannot see an event the worker never folded (its account's
   ``event_seq`` simply never counted it); this one names it. It runs only
   when the sink has read every output the worker had produced when its
   committed offsets were read (``FoldedBound``): otherwise a missing
   snapshot may still be on its way, and the check says it is pending.

Topics whose table keeps only the latest row per key (``balances``) or drops
rows by TTL (``portfolio_snapshots``) cannot account for every offset after
merges; they are listed as not checked, never silently passed.

Must not touch: Kafka (callers pass the committed offsets) or the write path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sinks.backend import Backend
from sinks.ddl import (
    ACCOUNT_SNAPSHOTS,
    ANOMALY_EVENTS,
    DEAD_LETTERS,
    DUPLICATES_TABLE,
    LATEST_TABLES,
    TABLES,
    VENUE_EVENTS,
    ident,
)

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


#: the tables that hold an outcome of the fold for a venue event (check 3)
OUTCOME_TABLES = (ACCOUNT_SNAPSHOTS.name, ANOMALY_EVENTS.name, DEAD_LETTERS.name)


@dataclass
class FoldedBound:
    """How far check 3 can look, read from Kafka in this order by the caller.

    ``upto``: per ``topic`` partition, the lower of the worker group's and the
    sink group's committed offsets. ``pending``: output partitions of
    :data:`OUTCOME_TABLES` where the sink's committed offset is still below
    the end offset read after the worker's offsets (the outputs of an event
    below ``upto`` may be there); the check waits while any is. ``age_s``: how
    long ago the worker's offsets in ``upto`` were read (0 when read for this
    check; more when an earlier reading bounds it, ``sinks.main.FoldCheckpoints``).
    """

    topic: str
    upto: dict[int, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)  # "topic[p]" -> records unread
    age_s: float = 0.0
    #: topics whose offsets could not be read (missing, or no metadata): no bound
    not_read: list[str] = field(default_factory=list)
    #: the outcome topics the sink reads: a record of them the sink refused (a dead letter
    #: of that topic) may be the outcome an event below ``upto`` seems to lack
    outcome_topics: list[str] = field(default_factory=list)


def _unfolded_sql(db: str) -> str:
    # Identifiers from sinks.ddl only; the topic and offsets travel as parameters. The
    # outcome sets hold 64-bit hashes of (account, event id), not the strings: a set over a
    # whole table of snapshots must fit the read limits (strings of 4M snapshots did not,
    # in 512 MiB). A hash collision could only hide a missing event (odds ~n^2 / 2^65).
    return (
        f"SELECT kafka_partition AS p, kafka_offset AS o, account_id, event_id"
        f" FROM {db}.{VENUE_EVENTS.name}"
        " WHERE kafka_topic = {topic:String} AND has({parts:Array(UInt32)}, kafka_partition)"
        " AND kafka_offset < {upto:Array(UInt64)}[indexOf({parts:Array(UInt32)}, kafka_partition)]"
        f" AND cityHash64(account_id, event_id) NOT IN"
        f" (SELECT cityHash64(account_id, event_id) FROM {db}.{ACCOUNT_SNAPSHOTS.name})"
        f" AND cityHash64(account_id, event_id) NOT IN"
        f" (SELECT cityHash64(account_id, source_event_id) FROM {db}.{ANOMALY_EVENTS.name})"
        f" AND (kafka_partition, kafka_offset) NOT IN"
        f" (SELECT toUInt32(source_partition), toUInt64(source_offset) FROM {db}.{DEAD_LETTERS.name}"
        "  WHERE source_topic = {topic:String})")


def check_folded(backend: Backend, bound: FoldedBound | None,
                 limit: int = MAX_RANGES) -> dict[str, Any]:
    """Check 3: venue events below ``bound.upto`` that left no outcome of the fold.

    ``{"ok", "checked", "unfolded", "partitions": [{"partition", "upto",
    "unfolded", "ranges": [{"first", "last", "count"}], "first_events": [...]}],
    "worker_offsets_age_s"}`` (how old the worker's offsets bounding it are);
    ``checked`` is false (and ``ok`` true) with a ``pending`` reason while
    the sink is still reading outputs, or when no bound was given, and with an
    ``error`` when the engine refused the check (checks 1 and 2 still report).
    """
    if bound is None:
        return {"ok": True, "checked": False,
                "pending": "the worker's committed offsets were not read"}
    if bound.not_read:
        return {"ok": True, "checked": False,
                "pending": f"the offsets of {', '.join(bound.not_read)} could not be read"}
    if bound.pending:
        unread = sum(bound.pending.values())
        return {"ok": True, "checked": False,
                "pending": f"the sink has {unread} output record(s) of folded events still to "
                           f"read ({', '.join(sorted(bound.pending))})"}
    items = sorted((p, u) for p, u in bound.upto.items() if u > 0)
    if not items:
        return {"ok": True, "checked": True, "unfolded": 0, "partitions": [],
                "worker_offsets_age_s": round(bound.age_s, 1)}
    db = ident(backend.database)
    params: dict[str, Any] = {"topic": bound.topic, "parts": [p for p, _ in items],
                              "upto": [u for _, u in items], "n": limit}
    inner = _unfolded_sql(db)
    try:
        counts = backend.query(f"SELECT p, count() FROM ({inner}) GROUP BY p ORDER BY p",
                               params)
        if not counts:
            return {"ok": True, "checked": True, "topic": bound.topic, "unfolded": 0,
                    "partitions": [], "worker_offsets_age_s": round(bound.age_s, 1)}
        # Runs of consecutive offsets: offset - row number is constant along a run.
        runs = backend.query(
            "SELECT p, min(o), max(o), count() FROM ("
            " SELECT p, o, toInt64(o) - toInt64(row_number() OVER (PARTITION BY p ORDER BY o))"
            " AS run FROM (" + inner + ")) GROUP BY p, run ORDER BY p, min(o)"
            " LIMIT {n:UInt32} BY p", params)
        first = backend.query(inner + " ORDER BY p, o LIMIT 3 BY p", params)
    except Exception as exc:  # noqa: BLE001 - the other checks must still report
        return {"ok": True, "checked": False,
                "error": f"the engine refused the check: {type(exc).__name__}: {exc}"[:500]}
    partitions: dict[int, dict[str, Any]] = {
        int(p): {"partition": int(p), "upto": bound.upto[int(p)], "unfolded": int(n),
                 "ranges": [], "first_events": []} for p, n in counts}
    for p, low, high, n in runs:
        partitions[int(p)]["ranges"].append({"first": int(low), "last": int(high),
                                             "count": int(n)})
    for p, o, account, event_id in first:
        partitions[int(p)]["first_events"].append(
            {"offset": int(o), "account_id": str(account), "event_id": str(event_id)})
    total = sum(e["unfolded"] for e in partitions.values())
    doc = {"ok": total == 0, "checked": True, "topic": bound.topic, "unfolded": total,
           "partitions": [partitions[p] for p in sorted(partitions)],
           "worker_offsets_age_s": round(bound.age_s, 1)}
    if total and bound.outcome_topics:
        # The sink's own refusals of outcome records name no venue event: those of the
        # accounts found are said beside the finding, so that the worker is not blamed
        # for what the sink refused (an output record is keyed by its account).
        try:
            refused = backend.query(
                f"SELECT source_topic, count() FROM {db}.{DEAD_LETTERS.name}"
                " WHERE has({outcomes:Array(String)}, source_topic)"
                f" AND account_id IN (SELECT account_id FROM ({inner}))"
                " GROUP BY source_topic ORDER BY source_topic",
                {**params, "outcomes": bound.outcome_topics})
        except Exception as exc:  # noqa: BLE001 - the finding stands without it
            refused = []
            doc["outcome_dead_letters_error"] = f"{type(exc).__name__}: {exc}"[:300]
        doc["outcome_dead_letters"] = {str(t): int(n) for t, n in refused}
    return doc


def conservation(backend: Backend, committed: Mapping[tuple[str, int], int | None],
                 table_of_topic: Mapping[str, str],
                 folded: FoldedBound | None = None) -> dict[str, Any]:
    """The three checks: ``{"ok", "offsets": {...}, "snapshots": {...}, "folded": {...}}``."""
    offsets = check_offsets(backend, committed, table_of_topic)
    snapshots = check_snapshots(backend)
    unfolded = check_folded(backend, folded)
    return {"ok": offsets["ok"] and snapshots["ok"] and unfolded["ok"], "offsets": offsets,
            "snapshots": snapshots, "folded": unfolded}


__all__ = ["OUTCOME_TABLES", "FoldedBound", "check_folded", "check_offsets", "check_snapshots",
           "conservation", "offset_checked_tables"]
