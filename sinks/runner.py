"""The sink loop: Kafka topics of topology.yaml ``sinks:`` -> ClickHouse, exactly once.

Owns: the consumer of the sink group, the exactly-once flow below, dead
letters for records the sink cannot map, retries and the sink's metrics.
Must not touch: table layouts (``sinks.ddl``), record -> row mapping
(``sinks.rows``), batch boundaries (``sinks.batching``) or SQL transport
(``sinks.backend``).

**Rule: an offset is committed only after ClickHouse acknowledged the rows
before it, and a row is inserted only when its (account_id, event_id) is
neither earlier in its batch nor already in the table.** Read without
``FINAL``, every table then has ``count() = uniqExact(event_id)`` = the
number of logical events, after any crash, restart, rebalance or replay.
The same logical record may legitimately sit on a topic twice at different
offsets (a batch the worker replays after a crash, gateways re-send
frames); the insert token alone would only cover an identical retried
batch, hence the existence filter.

The flow, per (topic, partition); batches of different partitions due in the
same poll form a group that shares the bookkeeping of steps 4, 7, 9 and 10
(one state insert for all their BEFORE rows, one existence query per table,
one for AFTER, one commit request) while each batch keeps its own insert and
token (``process_group``):

1. **Assign.** Read the partition's last range state from ``sink_ranges``.
2. **Buffer.** Consume in bulk; append records to the partition's buffer.
3. **Cut.** A batch ``F..L`` is due at ``sink_batch_rows`` records or after
   ``sink_batch_seconds``; a range recovered in state BEFORE is instead
   rebuilt as exactly ``F..L`` (``sinks.batching``, rule 3).
4. **BEFORE.** Record ``(F, L, BEFORE)`` with the next version.
5. **Map.** Decode each record and build its row. A record that does not
   decode, does not fit its table, or (on venue.events) is not bookable by
   the ledger's own rule becomes a ``dead_letters`` row with event_id
   ``<topic>:<partition>:<offset>`` — the id the worker gives its dead
   letter for the same record — with its reason and its bytes: never
   dropped, never stopping the loop.
6. **Dedup in batch.** The lowest offset of each key wins.
7. **Existence filter.** One parameterized query per table (keys chunked):
   ``account_id IN {..} AND event_id IN {..}`` — the primary key prefix (on
   ``balances``, ordered by (account_id, asset), the account_id prefix) —
   drops keys already in the table.
8. **Insert** what is left, synchronously, ``async_insert = 0``, with
   ``insert_deduplication_token = <topic>-<partition>-<F>-<L>``; nothing
   left means no insert. Failures are retried with the same batch.
9. **AFTER.** Record ``(F, L, AFTER)``.
10. **Commit** ``L + 1`` synchronously.

A crash before 4 leaves nothing behind. A crash between 4 and 10 leaves
BEFORE ``F..L``, so the restart rebuilds the same records (3) with the same
in-batch winners (6); rows an interrupted insert did land are dropped by 7,
so the retry inserts exactly the remainder — and where a read cannot see
the earlier insert yet (replica lag on a cluster), the retry is the same
block with the same token, which ClickHouse drops. A crash between 9 and 10
re-reads ``F..L`` as new batches whose every key 7 drops.

Replay (reset the sink group's offsets) is therefore a no-op on intact
tables. To rebuild a table from Kafka, DROP it (the sink recreates it) —
not TRUNCATE: a truncated table keeps its deduplication log, and batches
whose recycled token matches would be skipped.

Rebalance: revoked partitions flush what they buffered (full flow) before
they go; a range interrupted there is rebuilt by the next owner from
``sink_ranges``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sinks import metrics
from sinks.backend import Backend
from sinks.batching import (
    AFTER,
    BEFORE,
    Batch,
    Candidate,
    Msg,
    PartitionBuffer,
    RangeState,
    RecoveryOutcome,
    first_wins,
    split_batch,
)
from sinks.ddl import (
    DEAD_LETTERS,
    DUPLICATES_INSERT_COLUMNS,
    DUPLICATES_TABLE,
    RANGES_TABLE,
    TABLES,
    VENUE_EVENTS,
    ident,
)
from sinks.exceptions import BackendError, RowRejected, SinkError
from sinks.rows import build_row, check_bookable, dead_letter_for
from streams.codec import Codec
from streams.config import Settings
from streams.exceptions import DecodeError, InvalidEvent
from streams.topology import load_topology

log = logging.getLogger("twinledger.sink")

#: Keys per existence query: keeps parameters small enough for an HTTP server's URI limit.
EXISTS_CHUNK = 1000
#: Keys per existence query on the embedded engine, which has no URI: one query for a
#: default batch (10,000 rows) costs half the CPU of ten 1,000-key queries (measured).
EXISTS_CHUNK_EMBEDDED = 10_000

#: A test hook: called with a stage name and the batch; raising stops the flow there.
Hook = Callable[[str, Batch], None]
STAGES = ("before_recorded", "inserted", "after_recorded", "committed")


def sink_topics(settings: Settings) -> dict[str, str]:
    """Broker topic name -> table, from topology.yaml ``sinks:`` (table -> topic).

    ``load_topology`` refuses a ``sinks:`` that disagrees with the catalogue
    of outputs (``streams.catalogue``), which the unit tests hold to the
    tables of ``sinks.ddl`` and the row builders of ``sinks.rows``.
    """
    topology = load_topology(settings.topology_path)
    return {settings.topic(topic): table for table, topic in topology.sinks.items()}


def consumer_config(settings: Settings) -> dict[str, Any]:
    bootstrap = settings.kafka_bootstrap or f"127.0.0.1:{settings.kafka_port}"
    return {
        "bootstrap.servers": bootstrap,
        "group.id": settings.sink_group,
        # Commits happen in step 10 only, after the insert was acknowledged.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # A crashed sink's partitions move on after 10 s rather than the default 45 s.
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 3000,
        **dict(settings.kafka_security),
    }


class _Stopping(Exception):  # noqa: N818 - control flow, not an error
    """Raised inside a retry loop when stop was requested: the batch is left in BEFORE."""


class SinkRunner:
    """Consumes the sinked topics and writes them with the flow of this module."""

    def __init__(self, settings: Settings, backend: Backend, codec: Codec, *,
                 consumer: Any = None, topics: Mapping[str, str] | None = None,
                 hook: Hook | None = None, max_retry_seconds: float = 30.0) -> None:
        self.settings = settings
        self.backend = backend
        self.codec = codec
        self.db = ident(backend.database)
        self.group = settings.sink_group
        self.table_by_topic = dict(topics) if topics is not None else sink_topics(settings)
        self.max_rows = max(1, settings.sink_batch_rows)
        self.max_seconds = max(0.0, settings.sink_batch_seconds)
        self.hook = hook
        self.max_retry_seconds = max_retry_seconds
        self.buffers: dict[tuple[str, int], PartitionBuffer] = {}
        self.stats: Counter[str] = Counter()
        self._consumer = consumer
        self._subscribed = False
        self._stop = threading.Event()
        self.last_error: str = ""
        #: a commit failed in this poll cycle: the others wait for the next poll
        self._commits_held = False
        #: (topic, partition) -> offset to commit that a failed or held commit left behind
        self._pending_commits: dict[tuple[str, int], int] = {}

    # --- consumer lifecycle -------------------------------------------------

    def _ensure_consumer(self) -> Any:
        if self._consumer is None:
            from confluent_kafka import Consumer

            self._consumer = Consumer(consumer_config(self.settings))
        if not self._subscribed:
            self._consumer.subscribe(sorted(self.table_by_topic), on_assign=self._on_assign,
                                     on_revoke=self._on_revoke, on_lost=self._on_lost)
            self._subscribed = True
        return self._consumer

    @property
    def assigned(self) -> list[tuple[str, int]]:
        return sorted(self.buffers)

    def _on_assign(self, consumer: Any, partitions: Sequence[Any]) -> None:
        states = self.read_states()
        for tp in partitions:
            key = (tp.topic, tp.partition)
            buf = PartitionBuffer(tp.topic, tp.partition)
            state = states.get(key)
            buf.recover(state)
            if state is not None and state.state == BEFORE:
                log.warning("sink: %s[%d] has range %d..%d in BEFORE: it will be rebuilt",
                            tp.topic, tp.partition, state.first, state.last)
            self.buffers[key] = buf
        log.info("sink: assigned %s", [f"{t.topic}[{t.partition}]" for t in partitions])

    def _on_revoke(self, consumer: Any, partitions: Sequence[Any]) -> None:
        for tp in partitions:
            revoked = self.buffers.get((tp.topic, tp.partition))
            if revoked is not None:
                try:
                    self._drain([revoked], force=True)
                except Exception:
                    # The range stays BEFORE (or was never started); the next owner
                    # rebuilds it.
                    log.exception("sink: flush on revoke of %s[%d] failed", tp.topic,
                                  tp.partition)
                self.buffers.pop((tp.topic, tp.partition), None)
            # Its next owner starts from the group's committed offset; committing for a
            # partition this member no longer holds could move the owner's back.
            self._pending_commits.pop((tp.topic, tp.partition), None)

    def _on_lost(self, consumer: Any, partitions: Sequence[Any]) -> None:
        # Lost (not revoked): another member may own them already; committing is unsafe.
        for tp in partitions:
            self.buffers.pop((tp.topic, tp.partition), None)
            self._pending_commits.pop((tp.topic, tp.partition), None)

    # --- range state -----------------------------------------------------------

    def read_states(self) -> dict[tuple[str, int], RangeState]:
        # Identifiers from sinks.ddl; the group is a parameter.
        sql = (
            "SELECT topic, partition, argMax(first_offset, version), argMax(last_offset, version),"  # noqa: S608,E501
            " toString(argMax(state, version)), max(version)"
            f" FROM {self.db}.{RANGES_TABLE}"
            " WHERE consumer_group = {g:String} GROUP BY topic, partition")
        rows = self._retry(RANGES_TABLE, self._query_fn(sql, {"g": self.group}))
        return {(str(t), int(p)): RangeState(int(f), int(last), str(s), int(v))
                for t, p, f, last, s, v in rows}

    def _record_states(self, group: Sequence[tuple[PartitionBuffer, Batch]], state: str) -> None:
        """Record ``state`` for every batch of ``group`` in one insert (one block, one part).

        Each partition's row carries that partition's next version; a block is
        written whole or not at all, so a crash leaves all of them or none.
        """
        if not group:
            return
        for buf, _ in group:
            buf.version += 1
        params = {"g": self.group,
                  "t": [b.topic for _, b in group], "p": [b.partition for _, b in group],
                  "f": [b.first for _, b in group], "l": [b.last for _, b in group],
                  "s": [state] * len(group), "v": [buf.version for buf, _ in group]}
        self._retry(RANGES_TABLE, lambda: self.backend.command(
            f"INSERT INTO {self.db}.{RANGES_TABLE}"  # noqa: S608 - identifiers from sinks.ddl
            " (consumer_group, topic, partition, first_offset, last_offset, state, version)"
            " SELECT {g:String}, r.1, r.2, r.3, r.4, r.5, r.6 FROM (SELECT arrayJoin(arrayZip("
            "{t:Array(String)}, {p:Array(UInt32)}, {f:Array(Int64)}, {l:Array(Int64)},"
            " {s:Array(String)}, {v:Array(UInt64)})) AS r)", params))

    # --- the loop ------------------------------------------------------------------

    def poll_once(self, timeout: float = 0.2) -> int:
        """Consume one bulk of records, flush every batch that is due; return records read."""
        consumer = self._ensure_consumer()
        self._commits_held = False
        wait = timeout
        now = time.monotonic()
        for buf in self.buffers.values():
            due = buf.seconds_until_due(now, self.max_seconds)
            if due is not None:
                wait = min(wait, due)
        msgs = consumer.consume(num_messages=min(self.max_rows, 10000), timeout=max(wait, 0.0))
        now = time.monotonic()
        n = 0
        for m in msgs:
            err = m.error()
            if err is not None:
                self._on_kafka_error(err)
                continue
            target = self.buffers.get((m.topic(), m.partition()))
            if target is None:
                continue  # from a partition revoked meanwhile; its next owner reads it
            ts_type, ts_ms = m.timestamp()
            target.add(Msg(m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                        ts_ms if ts_type else None), now)
            n += 1
        self.stats["consumed"] += n
        self._drain(self.buffers.values())
        self._commit_pending()
        return n

    def _on_kafka_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        if err.code() == KafkaError._PARTITION_EOF:
            return
        self.last_error = str(err)
        if err.fatal():
            raise SinkError(f"fatal Kafka error: {err}")
        log.warning("sink: Kafka: %s", err)

    def _drain(self, bufs: Iterable[PartitionBuffer], force: bool = False) -> None:
        """Process every batch due in ``bufs``, one batch per partition per group."""
        bufs = list(bufs)
        while True:
            group: list[tuple[PartitionBuffer, Batch]] = []
            now = time.monotonic()
            for buf in bufs:
                batch = buf.cut(now, self.max_rows, self.max_seconds, force=force)
                self._count_recoveries(buf)
                if batch is not None:
                    group.append((buf, batch))
            if not group:
                return
            try:
                self.process_group(group)
            except BaseException:
                # The group's batches are out of their buffers and their ranges are
                # BEFORE (or not even recorded): nothing after them may be flushed or
                # committed by this member (close() after a stop would otherwise commit
                # past them). Leave them as a crash would; their next owner or this
                # sink's restart rebuilds them from sink_ranges and the committed offset.
                for buf, _ in group:
                    self.buffers.pop((buf.topic, buf.partition), None)
                raise

    def _count_recoveries(self, buf: PartitionBuffer) -> None:
        for outcome, state in buf.outcomes:
            metrics.RANGES_RECOVERED.labels(outcome.value).inc()
            self.stats[f"ranges_{outcome.value}"] += 1
            if outcome is RecoveryOutcome.ABANDONED:
                log.warning("sink: %s[%d] range %d..%d cannot be rebuilt (offsets were reset or "
                            "deleted); the existence filter keeps the table exact",
                            buf.topic, buf.partition, state.first, state.last)
        buf.outcomes.clear()

    def run(self, stop_event: threading.Event | None = None) -> None:
        """Run until ``stop_event`` is set; then flush what is due and close the consumer."""
        stop = stop_event or self._stop
        self._stop = stop
        try:
            while not stop.is_set():
                try:
                    self.poll_once()
                except _Stopping:
                    break
        finally:
            self.close()

    def run_until_idle(self, idle_seconds: float = 2.0, timeout: float = 120.0) -> Counter[str]:
        """Run until assigned, nothing new for ``idle_seconds`` and nothing buffered (tests)."""
        deadline = time.monotonic() + timeout
        last_activity = time.monotonic()
        while time.monotonic() < deadline:
            # Idle time counts from the assignment: joining a group can take a
            # session timeout when a crashed member is still registered.
            if self.poll_once(0.2) or not self.buffers:
                last_activity = time.monotonic()
            buffered = any(b.records for b in self.buffers.values())
            if (self.buffers and not buffered
                    and time.monotonic() - last_activity >= idle_seconds):
                return self.stats
        raise SinkError(f"sink not idle after {timeout}s: {dict(self.stats)}")

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Flush due batches (not half-rebuilt ranges) and leave the group."""
        if self._consumer is None:
            return
        try:
            self._drain([b for b in self.buffers.values() if not b.waiting_for_rebuild()],
                        force=True)
        except _Stopping:
            pass
        finally:
            consumer, self._consumer = self._consumer, None
            self._subscribed = False
            self.buffers.clear()
            consumer.close()

    def abort(self) -> None:
        """Drop everything buffered and leave without flushing or committing.

        What a crash leaves behind, minus the dead process: tests use it to
        interrupt the flow at a hook and restart from what ClickHouse and
        Kafka recorded.
        """
        consumer, self._consumer = self._consumer, None
        self._subscribed = False
        self.buffers.clear()
        if consumer is not None:
            consumer.close()

    # --- a group of batches: steps 4..10 ---------------------------------------------

    def process_group(self, group: Sequence[tuple[PartitionBuffer, Batch]]) -> None:
        """Steps 4..10 for batches of different partitions, due in the same poll.

        The bookkeeping is shared, the batches stay whole: one state insert
        records BEFORE for all of them (AFTER likewise), one existence query
        per table (keys chunked) covers all of them, one commit request
        commits them; each batch's rows are still one insert with the batch's
        own token, so a rebuilt range inserts the same block as before. A key
        that two batches of the group carry, not yet in the table, goes to the
        first batch (in group order) and is a recorded duplicate of the other.
        """
        self._record_states([(buf, b) for buf, b in group if not b.rebuilt], BEFORE)
        for _, batch in group:  # a rebuilt range is already recorded BEFORE with these bounds
            self._at("before_recorded", batch)
        kept_by_batch: list[list[Candidate]] = []
        skipped_by_batch: list[list[Candidate]] = []
        by_table: dict[str, list[Candidate]] = {}
        for _, batch in group:
            kept, dups = first_wins(self.map_records(batch))
            for c in dups:
                metrics.DUPLICATES_DROPPED.labels(c.table, "batch").inc()
            self.stats["duplicates_in_batch"] += len(dups)
            kept_by_batch.append(kept)
            skipped_by_batch.append(list(dups))
            for c in kept:
                by_table.setdefault(c.table, []).append(c)
        existing = {table: self.existing_keys(table, rows)
                    for table, rows in sorted(by_table.items())}
        claimed: dict[str, set[tuple[str, str]]] = {}  # table -> keys earlier batches insert
        for (_, batch), kept, skipped in zip(group, kept_by_batch, skipped_by_batch,
                                             strict=True):
            split = split_batch(kept, batch.topic, batch.partition, existing, claimed)
            for c in split.own + split.elsewhere:
                metrics.DUPLICATES_DROPPED.labels(c.table, "table").inc()
            for c in split.claimed:
                metrics.DUPLICATES_DROPPED.labels(c.table, "group").inc()
            self.stats["duplicates_in_table"] += len(split.own) + len(split.elsewhere)
            self.stats["duplicates_in_group"] += len(split.claimed)
            # A row an interrupted attempt of this very batch inserted is the record's
            # own row, not a duplicate of another record.
            skipped += split.elsewhere + split.claimed
            fresh: dict[str, list[Candidate]] = {}
            for c in split.fresh:
                fresh.setdefault(c.table, []).append(c)
            for table, rows in sorted(fresh.items()):
                self._insert(table, rows, batch.token)
            self._record_duplicates(batch, skipped)
            self._at("inserted", batch)
        self._record_states(group, AFTER)
        for _, batch in group:
            self._at("after_recorded", batch)
        self._commit([b for _, b in group])
        for _, batch in group:
            metrics.BATCHES.labels(batch.topic).inc()
            self.stats["batches"] += 1
            self._at("committed", batch)

    def _at(self, stage: str, batch: Batch) -> None:
        if self.hook is not None:
            self.hook(stage, batch)

    def map_records(self, batch: Batch) -> list[Candidate]:
        """Step 5: a candidate row per record; bad records become dead-letter rows."""
        out: list[Candidate] = []
        for m in batch.records:
            table = self.table_by_topic[m.topic]
            coords = (m.topic, m.partition, m.offset)
            try:
                if m.value is None:
                    raise DecodeError("record without a value (tombstone)")
                name, record = self.codec.decode(m.value)
                if table == VENUE_EVENTS.name:
                    check_bookable(name, record, m.key)
                row = build_row(table, name, record)
            except (DecodeError, InvalidEvent, RowRejected) as exc:
                out.append(self._dead(m, type(exc).__name__, getattr(exc, "reason", str(exc))))
                continue
            except Exception as exc:  # a bug in mapping must not stall the partition
                log.exception("sink: unexpected error mapping %s[%d]@%d", *coords)
                out.append(self._dead(m, type(exc).__name__, str(exc)))
                continue
            out.append(Candidate(table, row[0], row[1], (*row, *coords), m.offset))
        return out

    def _dead(self, m: Msg, error_type: str, reason: str) -> Candidate:
        row = dead_letter_for(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp_ms,
                              error_type, reason)
        metrics.DEAD_LETTERS.labels(m.topic, error_type).inc()
        self.stats["dead_letters"] += 1
        return Candidate(DEAD_LETTERS.name, row[0], row[1],
                         (*row, m.topic, m.partition, m.offset), m.offset)

    def existing_keys(self, table: str, rows: Sequence[Candidate]
                      ) -> dict[tuple[str, str], tuple[str, int, int]]:
        """Step 7: keys of ``rows`` already in ``table``, with the Kafka coordinates of the row.

        Primary-key prefix lookups; the coordinates tell the record's own row
        (an interrupted attempt inserted it) from another record's.
        """
        found: dict[tuple[str, str], tuple[str, int, int]] = {}
        size = EXISTS_CHUNK_EMBEDDED if self.backend.kind == "chdb" else EXISTS_CHUNK
        for i in range(0, len(rows), size):
            chunk = rows[i:i + size]
            accounts = sorted({c.account_id for c in chunk})
            ids = sorted({c.event_id for c in chunk})
            params = {"a": accounts, "e": ids}
            sql = (f"SELECT account_id, event_id, kafka_topic, kafka_partition, kafka_offset"  # noqa: S608,E501 - ddl
                   f" FROM {self.db}.{ident(table)}"
                   " WHERE account_id IN {a:Array(String)} AND event_id IN {e:Array(String)}")
            result = self._retry(table, self._query_fn(sql, params))
            for a, e, t, p, o in result:
                found[(str(a), str(e))] = (str(t), int(p), int(o))
        return found

    def _query_fn(self, sql: str, params: Mapping[str, Any]
                  ) -> Callable[[], list[tuple[Any, ...]]]:
        return lambda: self.backend.query(sql, params)

    def _insert(self, table: str, rows: Sequence[Candidate], token: str) -> None:
        if not rows:
            return
        columns = TABLES[table].insert_columns
        data = [c.row for c in rows]
        started = time.perf_counter()
        def insert() -> None:
            self.backend.insert(table, columns, data, token)

        self._retry(table, insert)
        metrics.INSERT_SECONDS.labels(table).observe(time.perf_counter() - started)
        metrics.ROWS_INSERTED.labels(table).inc(len(data))
        self.stats[f"inserted:{table}"] += len(data)
        self.stats["inserted"] += len(data)

    def _record_duplicates(self, batch: Batch, skipped: Sequence[Candidate]) -> None:
        """Step 8b: where each record not inserted went, so every offset is accounted for.

        Same token as the batch (the table has its own deduplication log), so
        a retried batch records its duplicates once.
        """
        if not skipped:
            return
        data = [(batch.topic, batch.partition, c.offset, c.table, c.account_id, c.event_id)
                for c in sorted(skipped, key=lambda c: c.offset)]

        def insert() -> None:
            self.backend.insert(DUPLICATES_TABLE, DUPLICATES_INSERT_COLUMNS, data, batch.token)

        self._retry(DUPLICATES_TABLE, insert)

    def _retry(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` until it succeeds; same batch, same token, growing pauses."""
        pause = 0.2
        while True:
            try:
                return fn()
            except BackendError as exc:
                self.last_error = str(exc)
                metrics.INSERT_RETRIES.labels(what).inc()
                log.warning("sink: %s failed (%s); retrying in %.1fs", what, exc, pause)
            except Exception as exc:  # noqa: BLE001 - nothing on the ingest path may end the sink
                # Not a BackendError: a client answer that did not parse, a driver bug.
                # Retried like any other failure (same batch, same token), with the
                # traceback logged, instead of ending the process by accident.
                self.last_error = f"{type(exc).__name__}: {exc}"
                metrics.INSERT_RETRIES.labels(what).inc()
                log.exception("sink: %s failed unexpectedly; retrying in %.1fs", what, pause)
            if self._stop.wait(pause):
                raise _Stopping()
            pause = min(pause * 2, self.max_retry_seconds)

    def _commit(self, batches: Sequence[Batch]) -> None:
        """Step 10 for a group: ``last + 1`` of each batch, in one synchronous request."""
        if self._consumer is None or not batches:
            return
        offsets = {(b.topic, b.partition): b.last + 1 for b in batches}
        if self._commits_held:
            # A commit already failed in this poll cycle (the coordinator is gone, e.g.
            # the broker restarted). Each further synchronous commit would wait ~10 s
            # for it, and the client rejoins the group only while it is polled: one
            # cycle of 80 due batches stalled a sink for a quarter of an hour. The
            # rows are in and the ranges are AFTER: the commit is retried after a poll.
            self._pending_commits.update(offsets)
            self.stats["commits_held"] += len(offsets)
            return
        error = self._commit_offsets(offsets)
        if error is None:
            for key in offsets:
                self._pending_commits.pop(key, None)
            return
        # The rows are in and the ranges are AFTER: records re-read later are
        # dropped by the existence filter, so a lost commit costs time only.
        self._pending_commits.update(offsets)
        log.warning("sink: commit of %s failed: %s; no more commits until the next poll",
                    ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(offsets.items())), error)

    def _commit_pending(self) -> None:
        """Commit, in one request, what failed or held commits left (after a poll)."""
        if self._consumer is None or self._commits_held or not self._pending_commits:
            return
        pending = dict(self._pending_commits)
        error = self._commit_offsets(pending)
        if error is not None:
            log.warning("sink: commit of %d pending offsets failed: %s", len(pending), error)
            return
        for key, offset in pending.items():
            if self._pending_commits.get(key) == offset:
                del self._pending_commits[key]
        log.info("sink: committed %d offsets a failed commit had left", len(pending))

    def _commit_offsets(self, offsets: Mapping[tuple[str, int], int]) -> str | None:
        """One synchronous commit request; on failure the error, and no more commits
        in this poll cycle (``_commits_held``)."""
        from confluent_kafka import KafkaException, TopicPartition

        assert self._consumer is not None
        try:
            self._consumer.commit(offsets=[TopicPartition(t, p, o)
                                           for (t, p), o in sorted(offsets.items())],
                                  asynchronous=False)
        except KafkaException as exc:
            self.last_error = str(exc)
            self._commits_held = True
            return str(exc)
        return None


def count_events(backend: Backend, tables: Iterable[str] | None = None
                 ) -> dict[str, dict[str, int]]:
    """Per table ``count()`` and ``uniqExact(event_id)``, read WITHOUT ``FINAL``.

    A table that keeps the latest row per key (``balances``: a ``version``
    column) also gets ``versions`` = distinct (key, version) without
    ``FINAL`` — equal to ``count`` when no change was stored twice — and
    ``keys`` = distinct keys and ``final`` = ``count()`` read WITH ``FINAL``,
    equal when ``FINAL`` shows one row per key. Older versions may be in the
    table until a merge replaces them, so ``count`` is not the number of keys.
    """
    out: dict[str, dict[str, int]] = {}
    db = ident(backend.database)
    for name in tables or TABLES:
        table = TABLES[name]
        t = f"{db}.{ident(name)}"
        if not table.version:
            rows = backend.query(f"SELECT count(), uniqExact(event_id) FROM {t}")  # noqa: S608
            count, uniq = rows[0]
            out[name] = {"count": int(count), "uniq": int(uniq)}
            continue
        key = ", ".join(ident(c) for c in table.order_by)
        rows = backend.query(
            f"SELECT count(), uniqExact(event_id), uniqExact({key}, {ident(table.version)}),"  # noqa: S608,E501
            f" uniqExact({key}), (SELECT count() FROM {t} FINAL) FROM {t}")
        count, uniq, versions, keys, final = rows[0]
        out[name] = {"count": int(count), "uniq": int(uniq), "versions": int(versions),
                     "keys": int(keys), "final": int(final)}
    return out


def table_matches(counts: Mapping[str, int]) -> bool:
    """The exactly-once promise of one table, from :func:`count_events`' figures.

    Event tables: ``count = uniq``. Latest-state tables also: no (key,
    version) twice (``count = versions``) and one row per key with ``FINAL``
    (``final = keys``).
    """
    ok = counts["count"] == counts["uniq"]
    if "versions" in counts:
        ok = ok and counts["count"] == counts["versions"]
    if "final" in counts:
        ok = ok and counts["final"] == counts.get("keys")
    return ok


def verdict(counts: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """``{"ok": bool, "tables": {table: {"count", "uniq", ..., "match"}}}``."""
    tables = {t: {**c, "match": table_matches(c)} for t, c in counts.items()}
    return {"ok": all(t["match"] for t in tables.values()), "tables": tables}
