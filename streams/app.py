"""The Faust app: agent ``fold_account_events``, the ledger table and the marks table.

Owns: wiring topics, tables and the agent loop around the pure fold; the
dead-letter path for records the codec or the ledger refuses; sending outputs;
the read-only web pages of live state (``/accounts/{account}`` and the B10
portfolio queries under it, answered by ``streams.queries``).
Must not touch: bookkeeping (``streams.ledger`` decides every number) or
ClickHouse (the sink reads our output topics).

The loop, per batch taken from ``venue.events`` (batched: per-message awaits
and flushes are the known way to make Faust slow):

1. decode each record; a record that does not decode or does not validate is
   sent to ``ledger.deadletter`` with its original bytes and coordinates;
2. group the valid events by account, keeping topic order, load each
   account's state once and apply its events through the fold, passing the
   source (partition, offset) so a redelivered event is recognised;
3. send every output (snapshot, trades, reconcile, anomalies, dead letters)
   as record batches per topic and partition, and wait until the broker
   acknowledged each (``streams.infra.record_batches``): outputs are on the
   broker before anything else. A batch not acknowledged ends the process
   (exit code 71, ``Worker.run_batch``) before any state is stored, as does
   any other failure of a batch (72);
4. store each account's new state once (table -> RocksDB + changelog): its
   hot part under the account id, and before it, only those that changed, the
   blobs of its history (closed trades, older dedup ring slots; recent cash
   flows, portfolio snapshots, anomalies) under the account id + ``\x00`` +
   ``a0``/``a1``/``r0``/``r1``/``l0``/``l1``
   (``streams.ledger.state.encode_split``);
5. the batch ends and Faust acks the offsets, which it commits later.

A crash before 4 replays the batch against the old state and re-emits the
same outputs (ids are deterministic; the sink drops the copies); so does a
crash between a history blob and its hot part, whose stored hot part still
names the other slot of that blob, untouched. A crash after 4 replays events
the state has already applied: the fold answers "duplicate" and sends
nothing, since step 3 put their outputs on the broker before the state was
stored. Nothing is lost, nothing is booked twice.

Liveness (``streams.liveness``): after each batch the source offsets are
tracked, so offsets deleted under the worker are reported as gaps; a timer
compares the agent's progress with the lag of its partitions and fails
``/ready`` and ``/live``, then exits with code 70, when the agent stalls.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import socket
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import faust
from faust.types import TP
from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from streams.catalogue import TOPIC_OF_KIND
from streams.codec import Codec, venue_record_to_fold_dict
from streams.config import Settings
from streams.exceptions import DecodeError, InvalidEvent, TwinledgerError
from streams.infra import faust_commit, faust_seek
from streams.infra.record_batches import OutputsNotDelivered, deliver, key_partition
from streams.ledger import (
    AccountState,
    LedgerConfig,
    Output,
    account_summary,
    apply_event,
    decode_state,
    load_ledger_config,
    parse_event,
)
from streams.ledger.grammar import MAX_ID_CHARS
from streams.ledger.numbers import MarkPrice
from streams.ledger.state import encode_split
from streams.liveness import Gap, OffsetTracker, Watchdog
from streams.marks import MarksReader
from streams.topology import Topology, load_topology

log = logging.getLogger("twinledger.worker")

#: Output kind -> (logical topic, Avro record), from the catalogue of outputs.
OUTPUT_TOPIC = TOPIC_OF_KIND

EVENTS = Counter("twinledger_worker_events_total", "venue events by fold status",
                 ["status"])
OUTPUTS = Counter("twinledger_worker_outputs_total", "records sent by topic", ["topic"])
DEAD_LETTERS = Counter("twinledger_worker_dead_letters_total", "records dead-lettered",
                       ["error_type"])
BATCH_SECONDS = Histogram("twinledger_worker_batch_seconds", "time to fold and send one batch")
SKIPPED = Counter("twinledger_worker_skipped_records_total",
                  "source records deleted under the worker before it folded them (never folded)",
                  ["topic", "partition"])
STALLED = Gauge("twinledger_worker_stalled",
                "1 while the agent takes no event although records wait on its partitions")
LAG = Gauge("twinledger_worker_lag_records", "records waiting on this worker's source partitions")
READY = Gauge("twinledger_worker_ready", "1 when partitions are assigned, tables recovered and "
              "the agent is not stalled")
PARTITION_LAG = Gauge("twinledger_worker_partition_lag_records",
                      "records waiting on one source partition of this worker", ["topic", "partition"])
ACCOUNTS = Gauge("twinledger_worker_accounts", "accounts held by this worker by their current "
                 "reconcile status (OK, WARN, ERROR)", ["status"])
#: The reconcile statuses of an account (LEDGER R*): the labels of ``ACCOUNTS``.
RECONCILE_STATUSES = ("OK", "WARN", "ERROR")
for _status in RECONCILE_STATUSES:
    ACCOUNTS.labels(_status).set(0)
#: Prefix of Faust's own sensor figures (records in/out, events, table operations,
#: send and commit latency, offsets per partition, rebalances): :class:`FaustCollector`.
FAUST_METRICS_PREFIX = "twinledger_faust"

#: Exit code of a worker the watchdog stopped (EX_SOFTWARE): a supervisor restarts it.
STALL_EXIT_CODE = 70
#: exit code of a worker whose outputs the broker did not acknowledge (``Worker.run_batch``)
UNDELIVERED_EXIT_CODE = 71
#: exit code of a worker whose batch failed otherwise before its states were stored
BATCH_FAILED_EXIT_CODE = 72


class MarksView(Mapping[str, Decimal]):
    """The marks table (UTF-8 symbol bytes -> framed Mark bytes) seen as symbol -> price.

    Decoding is cached by the bytes, so a mark is decoded once per change.
    """

    def __init__(self, table: Any, codec: Codec) -> None:
        self._table = table
        self._codec = codec
        self._cache: dict[bytes, Decimal | None] = {}

    def _price(self, raw: bytes) -> Decimal | None:
        if raw not in self._cache:
            try:
                _, rec = self._codec.decode(raw)
                # a mark knows its event time: the fold flags one older than max_mark_age
                self._cache[raw] = MarkPrice(rec["price"], rec.get("ts"))
            except (DecodeError, KeyError):
                self._cache[raw] = None
            if len(self._cache) > 100_000:
                self._cache.clear()
        return self._cache[raw]

    def __getitem__(self, symbol: str) -> Decimal:
        raw = self._table.get(symbol.encode("utf-8"))
        price = None if raw is None else self._price(raw)
        if price is None:
            raise KeyError(symbol)
        return price

    def __iter__(self) -> Iterator[str]:
        return (k.decode("utf-8") if isinstance(k, bytes) else k for k in list(self._table.keys()))

    def __len__(self) -> int:
        return len(self._table)


#: Runs of late-folded offsets remembered per partition (``Worker.late_folded``).
LATE_RUNS_KEPT = 64


@dataclass
class Worker:
    """Everything the agent needs, built once from settings."""

    settings: Settings
    topology: Topology
    codec: Codec
    ledger_config: LedgerConfig
    app: faust.App
    ledger_table: Any = None
    marks_reader: MarksReader | None = None
    marks: MarksView | None = None
    applied: int = 0
    #: account -> (state bytes as stored, decoded state); decoding is a large part
    #: of a batch, and an account's next batch usually finds its own bytes unchanged.
    state_cache: OrderedDict[str, tuple[bytes, Any]] = field(default_factory=OrderedDict)
    #: next source offset per partition, to see records deleted under the worker
    offsets: OffsetTracker = field(default_factory=OffsetTracker)
    watchdog: Watchdog = field(default_factory=lambda: Watchdog(60.0, 120.0))
    #: the most recent gaps (bounded), shown on /progress
    gaps: list[dict[str, Any]] = field(default_factory=list)
    lag: int | None = None
    status: str = "starting"
    #: source partition -> account -> reconcile status, for the accounts this worker holds
    statuses: dict[int, dict[str, str]] = field(default_factory=dict)
    status_counts: dict[str, int] = field(default_factory=dict)
    #: the held accounts' statuses are read from the table once it is recovered
    status_scan_pending: bool = False
    #: source partition -> the committed offset Faust sought it to after its assignment
    assign_committed: dict[int, int] = field(default_factory=dict)
    #: source partition -> runs [first, last] of offsets folded from batches of an older
    #: generation (``is_late``): folded, so never part of a reported gap
    late_folded: dict[int, list[list[int]]] = field(default_factory=dict)
    #: logical output topic -> its name on the broker (with the prefix)
    _topic_names: dict[str, str] = field(default_factory=dict)

    def is_late(self, msg: Any) -> bool:
        """Was ``msg`` fetched in an earlier consumer generation than the current one?

        A batch taken before a rebalance is folded after it (nothing acks its
        records otherwise, and the group resumes every partition from its
        committed offset, so folding it twice is safe: the second fold answers
        "duplicate"). Its partitions may be another worker's by then, or ours
        again from an older offset: such a record says nothing about this
        generation's offsets or accounts.
        """
        fetched = getattr(msg, "generation_id", None)
        current = getattr(self.app, "consumer_generation_id", None)
        return fetched is not None and current is not None and fetched != current

    def note_offsets(self, events: list[Any]) -> None:
        """Track source offsets of a batch; report every run of offsets never seen.

        A partition's records are compared with the committed offset Faust
        sought it to after its assignment (``note_seek``); records taken
        before that seek start nothing (they are read again after it). Records fetched in an earlier
        generation (``is_late``) neither start nor move a partition's reading
        position (seen after ``forget_partition``, they made a gap from offset
        0 to themselves); they are remembered as folded, so a gap over them is
        not reported (the group may commit them, and this generation then
        reads on after them).
        """
        for ev in events:
            msg = ev.message
            if self.is_late(msg):
                self._note_late(msg.partition, msg.offset)
                continue
            partition = msg.partition
            if partition not in self.offsets.next_offset:
                self.offsets.expect(partition, self.assign_committed.get(partition))
            gap = self.offsets.observe(partition, msg.offset)
            if gap is not None:
                self.report_gap(msg.topic, gap)
        self.watchdog.progressed(time.monotonic())

    def note_assignment(self, committed: Mapping[int, int | None]) -> None:
        """Where the group resumes each source partition (no committed offset: offset 0).

        Learnt when Faust seeks after restoring the tables (``note_seek``).
        Faust's own record of the committed offsets is empty until then, and
        the agent can take a partition's first records before it: compared
        with that, they made false gaps ("RECORDS NEVER FOLDED" for records
        folded long before).
        """
        for partition, offset in committed.items():
            start = offset if offset is not None and offset >= 0 else 0
            self.assign_committed[partition] = start
            self.offsets.expect(partition, start)

    def _note_late(self, partition: int, offset: int) -> None:
        runs = self.late_folded.setdefault(partition, [])
        if runs and runs[-1][0] <= offset <= runs[-1][1] + 1:
            runs[-1][1] = max(runs[-1][1], offset)
        else:
            runs.append([offset, offset])
            del runs[:-LATE_RUNS_KEPT]

    def report_gap(self, topic: str, gap: Gap) -> None:
        """Report the offsets of ``gap`` that no late batch of this worker folded."""
        pieces = [(gap.first, gap.last)]
        for low, high in self.late_folded.get(gap.partition, ()):
            pieces = [piece for first, last in pieces
                      for piece in ((first, min(last, low - 1)), (max(first, high + 1), last))
                      if piece[0] <= piece[1]]
        for first, last in pieces:
            self._report_gap(topic, Gap(gap.partition, first, last))

    def _report_gap(self, topic: str, gap: Gap) -> None:
        SKIPPED.labels(topic, str(gap.partition)).inc(gap.count)
        log.error("RECORDS NEVER FOLDED: %s[%d] offsets %d..%d (%d records) were deleted "
                  "before this worker read them (a time/size retention or delete-records on "
                  "the topic); the ledger does not contain them. Re-ingest them; "
                  "`twinledger verify` lists what is missing.", topic, gap.partition,
                  gap.first, gap.last, gap.count)
        self.gaps.append({"topic": topic, "partition": gap.partition, "first": gap.first,
                          "last": gap.last, "count": gap.count})
        del self.gaps[:-100]

    def topic_name(self, name: str) -> str:
        return self.settings.topic(name)

    def dead_letter(self, message: Any, error: TwinledgerError | Exception
                    ) -> tuple[str, bytes, bytes, float | None]:
        """The DeadLetter send for a refused source record: (topic, key, framed value, ts)."""
        key = message.key if isinstance(message.key, bytes) else None
        account = ""
        if key is not None:
            try:
                account = key.decode("utf-8")
            except UnicodeDecodeError:
                account = ""
        value = message.value if isinstance(message.value, bytes) else b""
        reason = getattr(error, "reason", None) or str(error)
        record = {
            "event_id": f"{message.topic}:{message.partition}:{message.offset}",
            "account_id": account,
            "source_topic": message.topic,
            "source_partition": message.partition,
            "source_offset": message.offset,
            "ts": _message_ts(message),
            "error_type": type(error).__name__,
            "reason": reason,
            "original_key": key,
            "original_value": value,
        }
        DEAD_LETTERS.labels(type(error).__name__).inc()
        return (self.topic_name(self.topology.deadletter_topic), key or b"",
                self.codec.encode("DeadLetter", record), message.timestamp)

    def decode_event(self, message: Any) -> Any:
        """Source record -> parsed ledger event; raises DecodeError / InvalidEvent."""
        value = message.value
        if not isinstance(value, bytes):
            raise DecodeError("record has no value", raw=None)
        name, record = self.codec.decode(value)
        if name != "VenueEvent":
            raise DecodeError(f"expected a VenueEvent, got a {name}", raw=value)
        event_dict = venue_record_to_fold_dict(record)
        key = message.key.decode("utf-8", "replace") if isinstance(message.key, bytes) else None
        if key is not None and key != event_dict["account_id"]:
            # A key that differs from the account breaks per-account ordering.
            raise InvalidEvent(f"record key {key!r} is not its account_id "
                               f"{event_dict['account_id']!r}")
        return parse_event(event_dict)

    async def process_batch(self, events: list[Any],
                            set_current_event: Callable[[Any], None] | None = None) -> None:
        """Steps 1-4 of the module docstring for one batch of Faust events.

        ``set_current_event`` tells Faust which source event a table read or
        write belongs to: an account's state lives in the store and changelog
        partition its events came from, and Faust takes that partition from
        the current event, which a batch taken with ``take_events`` leaves at
        whatever event came last.
        """
        producer = self.app.producer
        sends: list[tuple[str, bytes, bytes, float | None]] = []
        by_account: dict[str, list[tuple[Any, Any]]] = {}
        for ev in events:
            msg = ev.message
            if _HANG_ON and _HANG_ON in (msg.value or b""):
                await _hang_forever(msg)
            if self.crossed_rebalance(msg):
                # Taken before a rebalance that has begun since: read again after its seek
                # (a straggler Faust held over from before the rebalance, ahead of the
                # records read again). Folded here, it marked the account's current
                # records, read after the seek, as crossed too: those nothing reads again.
                self._not_stored([ev])
                continue
            try:
                event = self.decode_event(msg)
            except (TwinledgerError, ValueError) as exc:
                sends.append(self.dead_letter(msg, exc))
                EVENTS.labels("dead_letter").inc()
                continue
            by_account.setdefault(event.account_id, []).append((ev, event))

        marks = self.marks if self.marks is not None else {}
        new_states: dict[str, tuple[bytes, list[tuple[bytes, bytes]], Any, Any]] = {}
        for account, items in by_account.items():
            if set_current_event is not None:
                # Faust's RocksDB store reads (and writes) the partition of the current event.
                set_current_event(items[0][0])
            raw_state = self.ledger_table.get(account.encode("utf-8"))
            try:
                state = self._cached_state(account, raw_state)
            except Exception as exc:  # noqa: BLE001 - one account must not stop the others
                # Its stored state cannot be read: its events are kept in the
                # dead-letter topic with their bytes (never dropped, never folded onto
                # a state rebuilt from nothing); see docs/operations.md.
                log.exception("the stored state of account %s cannot be read; its %d "
                              "event(s) of this batch go to the dead-letter topic",
                              account, len(items))
                for ev, _ in items:
                    sends.append(self.dead_letter(
                        ev.message, TwinledgerError(f"stored state unreadable: {exc}")))
                EVENTS.labels("state_unreadable").inc(len(items))
                continue
            refused: set[int] = set()  # ids of the source messages the fold failed on
            while True:
                try:
                    state, outputs, changed = self._fold_account(state, items, refused, marks)
                    break
                except _EventFailed as failed:
                    # A bug must not stop the pipeline on one event (a poison pill):
                    # the event is dead-lettered and the account's batch folded again
                    # without it, from the stored state (the failed fold mutated ours).
                    msg = failed.message
                    refused.add(id(msg))
                    sends.append(self.dead_letter(msg, failed.error))
                    EVENTS.labels("fold_error").inc()
                    log.exception("fold failed on %s[%d]@%d", msg.topic, msg.partition,
                                  msg.offset, exc_info=failed.error)
                    state = self.decode_stored(account, raw_state) if raw_state else None
            sends.extend(outputs)
            if state is not None and changed:
                new_states[account] = (*encode_split(state), items[-1][0], state)

        # On the broker, acknowledged, before any state is stored (module docstring).
        await deliver(producer, sends)
        sent: dict[str, int] = {}
        for topic, _, _, _ in sends:
            sent[topic] = sent.get(topic, 0) + 1
        for topic, count in sent.items():  # one labelled-child lookup per topic, not per record
            OUTPUTS.labels(topic).inc(count)
        if _PAUSE_ON and any(_PAUSE_ON in (ev.message.value or b"") for ev in events):
            await _pause_once(events[0].message)
        for account, (blob, history, source_event, state) in new_states.items():
            # Every record left was taken before this batch began: a rebalance begun since
            # crosses them all, and its seek comes after them.
            taken = [ev for ev, _ in by_account[account]]
            if any(self.crossed_rebalance(ev.message) for ev in taken):
                self._not_stored(taken)
                continue
            if set_current_event is not None:
                set_current_event(source_event)
            key = account.encode("utf-8")
            for name, value in history:  # before the hot part that names them (docstring)
                self.ledger_table[archive_key(key, name)] = value
            self.ledger_table[key] = blob
            self._remember_state(account, blob, state)
            if not self.is_late(source_event.message):
                self.note_status(source_event.message.partition, account, state.status)
        self.applied += len(events)
        # After the batch is on the broker and in the table: the watchdog's lag is
        # counted from what was folded, not from what was merely taken.
        self.note_offsets(events)

    async def run_batch(self, events: list[Any],
                        set_current_event: Callable[[Any], None] | None = None) -> None:
        """The agent's step: ``process_batch``, and the process ends if it fails.

        Faust acknowledges every event of a batch taken with ``take_events``
        once the agent leaves it, by an exception too (the take buffer's
        ``finally``), and the agent is restarted in the same process: the
        group could then commit past events whose states were never stored,
        and a later batch store the same accounts past them, so they would be
        answered "duplicate" when read again, their outputs never sent. A
        batch that fails therefore ends the process at once (``os._exit``:
        no ``finally`` runs, nothing is acknowledged), with exit code 71 when
        its outputs were not acknowledged by the broker, 72 for any other
        failure. The restarted worker folds the batch again from the stored
        states and the committed offsets (same output ids: the sink keeps
        one row of each). A fold error of one event is not a failure of the
        batch: that event goes to the dead-letter topic (``process_batch``).
        """
        try:
            await self.process_batch(events, set_current_event)
        except OutputsNotDelivered as exc:
            self.exit_on_failed_batch(exc, UNDELIVERED_EXIT_CODE)
        except Exception as exc:  # noqa: BLE001 - any failure: nothing of the batch acked
            self.exit_on_failed_batch(exc, BATCH_FAILED_EXIT_CODE)

    def exit_on_failed_batch(self, exc: BaseException, code: int) -> None:
        """Log why and end the process with ``code`` (``run_batch``)."""
        what = ("its outputs were not delivered" if code == UNDELIVERED_EXIT_CODE
                else "it failed")
        log.critical("a batch of %s was not stored: %s (%r); exiting with code %d so the "
                     "supervisor restarts the worker, which folds the batch again",
                     self.topic_name("venue.events"), what, exc, code, exc_info=exc)
        logging.shutdown()
        os._exit(code)

    def crossed_rebalance(self, msg: Any) -> bool:
        """Did a rebalance begin after Faust handed ``msg`` to the agent?

        Then the rebalance ends with a seek to the committed offsets, after
        ``msg`` was taken: whoever holds its partition then reads it again
        (unless it was acknowledged, which ``_not_stored`` prevents). Known
        from the rebalance count Faust had when it handed ``msg`` out
        (``faust_seek.rebalanced_since_delivery``; Faust counts a rebalance
        as soon as the consumer hears its partitions are being revoked), or
        from a consumer generation older than the current one (``is_late``).
        """
        return faust_seek.rebalanced_since_delivery(msg, self.app) or self.is_late(msg)

    def _not_stored(self, events: list[Any]) -> None:
        """Records a rebalance crossed: let go before the fold, or their states not stored.

        The partition may be another worker's by now (``stream_wait_empty`` is
        off: a rebalance does not wait for the batch), and that worker may
        already store states of it: a late write here landed in the changelog
        among its writes, and an account's hot part then named history the
        other had overwritten ("the stored dedup ring is not version 2"), or
        a restore took this older state over the newer one. Nothing of the
        batch is lost: its records are not acknowledged either, so the group
        has not committed them, and whoever holds the partition after the
        rebalance reads them again from the committed offset (the outputs
        already sent come again with the same ids; the sink keeps one row).
        """
        consumer = self.app.consumer
        for ev in events:
            ev.message.acked = True  # Faust acks nothing it thinks acked: never committed
            faust_commit.hold(consumer, ev.message)  # nor commits past it (faust_commit)
        EVENTS.labels("not_stored_rebalance").inc(len(events))

    def _fold_account(self, state: Any, items: list[tuple[Any, Any]], refused: set[int],
                      marks: Mapping[str, Decimal]
                      ) -> tuple[Any, list[tuple[str, bytes, bytes, float | None]], bool]:
        """Apply one account's events of a batch; (state, encoded outputs, state changed)."""
        outputs: list[tuple[str, bytes, bytes, float | None]] = []
        statuses: list[str] = []
        for ev, event in items:
            msg = ev.message
            if id(msg) in refused:
                continue
            try:
                result = apply_event(state, event, marks, self.ledger_config,
                                     source=(msg.partition, msg.offset))
                encoded = [self.encode_output(out) for out in result.outputs]
            except Exception as exc:  # noqa: BLE001 - any bug in the fold, see process_batch
                raise _EventFailed(msg, exc) from exc
            state = result.state
            statuses.append(result.status)
            outputs.extend(encoded)
        for status in set(statuses):
            EVENTS.labels(status).inc(statuses.count(status))
        # Only duplicates: the stored bytes already hold this state.
        return state, outputs, any(st != "duplicate" for st in statuses)

    def _cached_state(self, account: str, raw: bytes | None) -> Any:
        """The decoded state of ``account``, from the cache when it is what the table holds.

        A cached state is trusted only while the table still holds the exact
        bytes it was encoded to (another worker may have moved the account on
        after a rebalance), and it is taken out of the cache while a batch
        mutates it, so a batch that fails half-way leaves nothing stale behind.
        """
        cached = self.state_cache.pop(account, None)
        if not raw:
            return None
        if cached is not None and cached[0] == raw:
            return cached[1]
        return self.decode_stored(account, raw)

    def decode_stored(self, account: str, raw: bytes) -> AccountState:
        """The state of ``account`` from its stored hot bytes and the history blobs they name."""
        key = account.encode("utf-8")
        return decode_state(raw, lambda name: self.ledger_table.get(archive_key(key, name)))

    def _remember_state(self, account: str, blob: bytes, state: Any) -> None:
        self.state_cache[account] = (blob, state)
        while len(self.state_cache) > self.settings.worker_state_cache:
            self.state_cache.popitem(last=False)  # least recently stored

    def encode_output(self, out: Output) -> tuple[str, bytes, bytes, float | None]:
        topic, schema = OUTPUT_TOPIC[out.kind]
        ts = out.record.get("ts")
        name = self._topic_names.get(topic)
        if name is None:
            name = self._topic_names[topic] = self.topic_name(topic)
        return (name, out.key.encode("utf-8"),
                self.codec.encode(schema, out.record), ts.timestamp() if ts is not None else None)

    def note_status(self, partition: int, account: str, status: str) -> None:
        """Count ``account`` (on source ``partition``) under its reconcile ``status``."""
        accounts = self.statuses.setdefault(partition, {})
        old = accounts.get(account)
        if old == status:
            return
        accounts[account] = status
        counts = self.status_counts
        counts[status] = counts.get(status, 0) + 1
        ACCOUNTS.labels(status).set(counts[status])
        if old is not None:
            counts[old] -= 1
            ACCOUNTS.labels(old).set(counts[old])

    def note_seek(self, committed: Mapping[Any, int | None]) -> None:
        """Faust sought the assigned partitions to these committed offsets (``faust_seek``).

        The next record of each source partition comes from there: the gap
        check starts there, whatever the agent took before (records fetched
        before the seek are read again after it).
        """
        source = self.topic_name("venue.events")
        mine = {tp.partition: offset for tp, offset in committed.items() if tp.topic == source}
        for partition in mine:
            self.offsets.forget(partition)
        self.note_assignment(mine)

    def forget_partition(self, partition: int) -> None:
        """A revoked partition: its accounts and its lag are another worker's now."""
        self.offsets.forget(partition)
        self.assign_committed.pop(partition, None)
        for status in self.statuses.pop(partition, {}).values():
            self.status_counts[status] -= 1
        for status, count in self.status_counts.items():
            ACCOUNTS.labels(status).set(count)
        try:
            PARTITION_LAG.remove(self.topic_name("venue.events"), str(partition))
        except KeyError:
            pass

    async def scan_statuses(self) -> int:
        """Count every account this worker holds by its stored reconcile status.

        Run once the tables are recovered after an assignment, so an account
        that stays in ERROR is counted even when no event of it arrived since
        the worker started. Only the first line of each stored state is read,
        a few thousand accounts at a time between other work.
        """
        partitions = self.topology.partitions("venue.events")
        seen = 0
        for key, raw in self.ledger_table.items():
            if not isinstance(raw, bytes | bytearray) or not raw or is_archive_key(key):
                continue
            account = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
            self.note_status(account_partition(account, partitions), account,
                             reconcile_status_of(bytes(raw)))
            seen += 1
            if seen % 2000 == 0:
                await asyncio.sleep(0)
        return seen

    def readiness(self) -> dict[str, Any]:
        """What ``/ready`` answers: assigned, recovered, consuming."""
        app = self.app
        source = self.topic_name("venue.events")
        try:
            assigned = sorted(tp.partition for tp in app.consumer.assignment()
                              if tp.topic == source)
        except Exception:  # noqa: BLE001 - no consumer yet while starting
            assigned = []
        recovering = self._recovering()
        ready = bool(assigned) and not recovering and self.status in ("ok", "idle")
        READY.set(1 if ready else 0)
        return {"ready": ready, "assigned_partitions": assigned, "recovering": recovering,
                "status": self.status, "lag": self.lag}

    def _recovering(self) -> bool:
        """Faust restoring tables, or the marks still being read: not ready to fold."""
        return self._marks_pending() or self._restoring_tables()

    def _restoring_tables(self) -> bool:
        app = self.app
        return bool(getattr(app, "rebalancing", False)) or bool(
            getattr(getattr(app.tables, "recovery", None), "in_recovery", False))

    def _marks_pending(self) -> bool:
        return self.marks_reader is not None and not self.marks_reader.caught_up

    async def watch(self) -> None:
        """One watchdog tick: lag of the assigned partitions, then the verdict."""
        app = self.app
        source = self.topic_name("venue.events")
        tps = [tp for tp in app.consumer.assignment() if tp.topic == source]
        if not tps:
            self.status = "waiting for partitions"
            READY.set(0)
            return
        if self._restoring_tables():
            # Tables are restored from their changelogs before the agent may take an
            # event: a long recovery is work, not a stall.
            self.watchdog.progressed(time.monotonic())
            self.status = "recovering"
            READY.set(0)
            return
        reader = self.marks_reader
        if reader is not None and self._marks_pending():
            # The fold waits for the marks (streams.marks): work for up to the stall
            # time; beyond it, a stall like any other (reported, then exit 70).
            now = time.monotonic()
            waited = now - (reader.started_at or now)
            if waited < self.watchdog.stall_after or self.watchdog.stall_after <= 0:
                self.watchdog.progressed(now)
                self.status = "reading marks"
                READY.set(0)
                return
            log.error("marks: %s not read after %.0f s (%s); the fold is waiting for them",
                      reader.topic, waited, reader.status())
        if self.status_scan_pending:
            self.status_scan_pending = False
            try:
                await self.scan_statuses()
            except Exception as exc:  # noqa: BLE001 - a metric must not stop the watchdog
                log.warning("cannot count accounts by reconcile status (%s)", exc)
        try:
            ends, starts = await asyncio.wait_for(asyncio.gather(
                app.consumer.highwaters(*tps), app.consumer.earliest_offsets(*tps)), timeout=10)
        except Exception as exc:  # noqa: BLE001 - the broker may be restarting
            log.warning("watchdog: cannot read end offsets (%s)", type(exc).__name__)
            return
        log_starts = {tp.partition: int(starts[tp]) for tp in tps if tp in starts}
        for partition, start in log_starts.items():
            gap = self.offsets.check_log_start(partition, start)
            if gap is not None:
                self.report_gap(source, gap)
        # Where Faust's last seek resumed each partition (``note_seek``), before the
        # agent took anything from it.
        committed: dict[int, int | None] = {tp.partition: self.assign_committed.get(tp.partition)
                                            for tp in tps}
        end_offsets = {tp.partition: int(ends[tp]) for tp in tps if tp in ends}
        self.lag = self.offsets.lag(end_offsets, committed, log_starts)
        LAG.set(self.lag)
        for partition, end in end_offsets.items():
            PARTITION_LAG.labels(source, str(partition)).set(
                self.offsets.lag({partition: end}, committed, log_starts))
        verdict = self.watchdog.check(self.lag, time.monotonic())
        if verdict == "ok":
            self.status = "ok" if self.lag else "idle"
            STALLED.set(0)
        else:
            STALLED.set(1)
            idle = time.monotonic() - self.watchdog.last_progress
            if self.status != "stalled":
                log.error("STALLED: the agent took no event for %.0f s while %d records wait on "
                          "partitions %s; exiting in %.0f s unless it resumes "
                          "(TWINLEDGER_WORKER_STALL_SECONDS / _GRACE_SECONDS)", idle, self.lag,
                          sorted(tp.partition for tp in tps), self.watchdog.grace)
                dump_tasks()
                log.error("STALLED: consumer state: %s", self.consumer_state(tps))
            self.status = "stalled"
            if verdict == "exit":
                self.status = "exiting"
                log.critical("STALLED for %.0f s with %d records waiting: exiting with code %d "
                             "so the supervisor restarts the worker", idle, self.lag,
                             STALL_EXIT_CODE)
                dump_tasks()
                logging.shutdown()
                os._exit(STALL_EXIT_CODE)
        READY.set(1 if self.readiness()["ready"] else 0)

    def consumer_state(self, tps: list[Any]) -> dict[int, dict[str, Any]]:
        """Per source partition: what Faust and aiokafka hold for it (a stall's report).

        Read across the consumer thread without a lock: figures for a person
        to read, not for a decision.
        """
        consumer: Any = self.app.consumer
        doc: dict[int, dict[str, Any]] = {}
        inner: Any = getattr(getattr(consumer, "_thread", None), "_consumer", None)
        subs = getattr(getattr(inner, "_fetcher", None), "_subscriptions", None)
        assignment = getattr(getattr(subs, "subscription", None), "assignment", None)
        active = consumer._active_partitions
        for tp in tps:
            row: dict[str, Any] = {
                "faust_active": None if active is None else tp in active,
                "faust_paused": tp in consumer._paused_partitions,
                "faust_read_offset": consumer._read_offset.get(tp),
                "faust_committed": consumer._committed_offset.get(tp),
                "flow_active": consumer.flow_active,
            }
            try:
                state = assignment.state_value(tp) if assignment is not None else None
            except Exception:  # noqa: BLE001 - diagnostics only
                state = None
            if state is not None:
                row.update(kafka_paused=state.paused,
                           kafka_position=state.position if state.has_valid_position else None,
                           kafka_awaiting_reset=state.awaiting_reset,
                           kafka_highwater=state.highwater,
                           kafka_buffered=tp in (getattr(inner._fetcher, "_records", None)
                                                 or {}))
            doc[tp.partition] = row
        return doc

    def account_state(self, account: str) -> AccountState | None:
        """The account's state as stored in this worker's table partitions (None: not here)."""
        raw = self.ledger_table.get(account.encode("utf-8"))
        return self.decode_stored(account, raw) if raw else None

    def account_view(self, account: str) -> dict[str, Any] | None:
        raw = self.ledger_table.get(account.encode("utf-8"))
        if not raw:
            return None
        return account_summary(self.decode_stored(account, raw), self.marks or {},
                               self.ledger_config)


class _EventFailed(Exception):
    """The fold raised on one source record (a bug, not bad input: that is InvalidEvent)."""

    def __init__(self, message: Any, error: Exception) -> None:
        super().__init__(str(error))
        self.message = message
        self.error = error


def _message_ts(message: Any) -> Any:
    import datetime as dt

    ts = getattr(message, "timestamp", None) or 0.0
    return dt.datetime.fromtimestamp(float(ts), tz=dt.UTC)


def changelog_topics(settings: Settings, topology: Topology) -> dict[str, int]:
    """Faust's internal topics (table changelogs, leader topic) with their partitions.

    The worker creates them before Faust starts: when Faust creates one itself
    and subscribes before the broker's metadata shows it, it "ignores the
    missing topic" and the table's recovery waits for it forever.
    """
    app_id = settings.app_id
    return {
        f"{app_id}-account_to_ledger-changelog": topology.partitions("venue.events"),
        f"{app_id}-__assignor-__leader": 1,
    }


def create_worker(settings: Settings, codec: Codec | None = None) -> Worker:
    """Build the Faust app and its agent from settings (no I/O until the worker starts)."""
    from streams.httpsec import check_bind
    check_bind(settings.worker_web_host, settings.http_token, "worker web pages")
    # Before the consumer exists: a partition never committed is read from its start.
    faust_seek.install()
    # ... and a record let go at a rebalance is never committed over before it is read again.
    faust_commit.install()
    codec = codec or Codec.load(settings.schema_registry_url)
    topology = load_topology(settings.topology_path)
    ledger_config = load_ledger_config(settings.ledger_config_path or None)
    partitions = topology.partitions("venue.events")
    bootstrap = settings.kafka_bootstrap
    brokers = [f"kafka://{b.strip()}" for b in bootstrap.split(",") if b.strip()]
    store = "rocksdb://" if settings.store == "rocksdb" else "memory://"
    app = faust.App(
        settings.app_id,
        # Static group membership: a worker restarted after a crash rejoins under the
        # same id and gets its partitions back at once, instead of waiting for the
        # dead member's session to expire (minutes with the defaults).
        consumer_group_instance_id=worker_instance_id(settings),
        broker_session_timeout=settings.worker_session_timeout,
        broker_heartbeat_interval=max(1.0, settings.worker_session_timeout / 10),
        # Faust's generic /table/<name>/<key> (raw state bytes) and /router/ pages:
        # not ours to expose; the account pages are the read surface.
        web_tables_enabled=False,
        web_router_enabled=False,
        broker=brokers,
        store=store,
        datadir=str(_ensure_dir(settings.data_dir / "faust")),
        topic_partitions=partitions,
        topic_replication_factor=1,
        web_bind=settings.worker_web_host,
        web_port=settings.worker_web_port,
        web_host=settings.worker_web_host,
        # What the other workers forward an account's page requests to (never 0.0.0.0).
        canonical_url=advertised_url(settings),
        web_application_options=web_options(settings.http_token),
        stream_wait_empty=False,
        producer_acks=-1,
        producer_linger_ms=settings.worker_linger_ms,
        producer_max_batch_size=settings.worker_max_batch_bytes,
        producer_compression_type=(None if settings.worker_compression == "none"
                                   else settings.worker_compression),
        consumer_auto_offset_reset="earliest",
        broker_credentials=_faust_credentials(settings),
    )
    FAUST_SENSORS.app = app
    worker = Worker(settings=settings, topology=topology, codec=codec,
                    ledger_config=ledger_config, app=app,
                    watchdog=Watchdog(settings.worker_stall_seconds,
                                      settings.worker_stall_grace_seconds))
    source = app.topic(settings.topic("venue.events"), key_serializer="raw",
                       value_serializer="raw", partitions=partitions)
    # bytes key and value types make Faust use the raw serializer: the state is
    # our own deterministic encoding, and keys are account ids as UTF-8.
    faust_seek.on_seek(worker.note_seek)
    worker.ledger_table = app.Table("account_to_ledger", default=None, key_type=bytes,
                                    value_type=bytes, partitions=partitions)
    # Every worker needs every mark: each reads the whole compacted market.marks
    # itself, outside the consumer group, so a rebalance cannot take marks away
    # (streams/marks.py). The fold waits for it to catch up before its first event.
    marks_reader = MarksReader(bootstrap, settings.topic("market.marks"),
                               _aiokafka_auth(settings))
    worker.marks_reader = marks_reader
    worker.marks = MarksView(marks_reader.prices, codec)

    @app.task
    async def read_marks() -> None:
        await marks_reader.run()

    @app.agent(source, name="fold_account_events")
    async def fold_account_events(stream: Any) -> None:
        # Positions are valued at the marks present when the worker started, as a
        # restart must not fold the next events against an empty price table.
        await marks_reader.wait_caught_up()
        async for events in stream.take_events(max_=settings.worker_batch,
                                               within=settings.worker_batch_seconds):
            with BATCH_SECONDS.time():
                await worker.run_batch(list(events), _set_current_event)

    router = AccountRouter(worker)

    @app.page("/accounts/{account}")
    @router.routed
    async def account_page(web: Any, request: Any, account: str) -> Any:
        view = worker.account_view(account)
        if view is None:
            return web.json({"error": "account_not_found", "account_id": account}, status=404)
        return web.json(_jsonable(view))

    _portfolio_pages(app, worker, router)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def leave_group(sender: Any, *args: Any, **kwargs: Any) -> None:
        _leave_group_on_stop(app)

    @app.page("/metrics/prometheus")
    async def metrics_page(web: Any, request: Any) -> Any:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        # The full type with the exposition format's version, as the sink's /metrics
        # serves it; aiohttp takes parameters only in the header, not in content_type.
        return web.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/progress")
    async def progress_page(web: Any, request: Any) -> Any:
        marks = worker.marks_reader.status() if worker.marks_reader is not None else None
        return web.json({"events_processed": worker.applied, "status": worker.status,
                         "lag": worker.lag, "gaps": worker.gaps, "marks": marks})

    @app.page("/ready")
    async def ready_page(web: Any, request: Any) -> Any:
        """200 when partitions are assigned, tables recovered and the agent not stalled."""
        doc = worker.readiness()
        return web.json(doc, status=200 if doc["ready"] else 503)

    @app.page("/live")
    async def live_page(web: Any, request: Any) -> Any:
        """200 unless the watchdog found the agent stalled (then 503 until it exits)."""
        live = worker.status not in ("stalled", "exiting")
        return web.json({"live": live, "status": worker.status}, status=200 if live else 503)

    source_name = settings.topic("venue.events")

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        for tp in args[0] if args else kwargs.get("revoked", ()):
            if tp.topic == source_name:
                worker.forget_partition(tp.partition)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        # The agent cannot take an event before it holds partitions: the watchdog counts
        # time without events from the assignment, not from the process start (a worker
        # joining a group with records waiting was reported stalled for the machine's
        # uptime on its first tick).
        worker.watchdog.progressed(time.monotonic())
        worker.status_scan_pending = True

    @app.timer(interval=max(3.0, min(10.0, settings.worker_stall_seconds / 4)))
    async def watch_agent() -> None:
        await worker.watch()

    @app.task
    async def check_topology() -> None:
        from streams.infra.kafka_admin import describe_partitions

        names = [settings.topic(n) for n in topology.topics]
        actual = await asyncio.get_running_loop().run_in_executor(
            None, describe_partitions, settings.kafka_bootstrap, names)
        try:
            topology.check_broker(actual, settings.topic_prefix)
        except TwinledgerError as exc:
            log.critical("refusing to run: %s", exc)
            raise

    return worker


def _portfolio_pages(app: faust.App, worker: Worker, router: AccountRouter) -> None:
    """LEDGER B10 as read-only GET pages: ``/accounts/{account}/<query>``, JSON.

    Each answers ``streams.queries.run_query`` over the account's live state
    (read from this worker's table partitions, as ``/accounts/{account}``
    does) valued at the marks table now. With several workers any worker
    answers: the request is forwarded to the worker that holds the account's
    partition (:class:`AccountRouter`). A spot symbol in the path is spelled
    ``XBT-USD`` or percent-encoded (``XBT%2FUSD``); a bare asset (``XBT``)
    answers its balance. Errors are JSON ``{"error", "message", ...}``:
    404 ``account_not_found`` / ``position_not_found``, 400 ``bad_request``
    for an unknown or malformed query parameter.
    """
    from streams.exceptions import NotFound, PositionNotFound, QueryError
    from streams.queries import PAGES, PARAMS, parse_params, run_query

    def make(query: str) -> Callable[..., Any]:
        async def page(web: Any, request: Any, account: str, **match: str) -> Any:
            try:
                params = parse_params(query, request.query)
                params.update(match)
                if "as_of" in PARAMS[query] and "as_of" not in params:
                    # a live answer counts mark ages to now (the fold counts to event time)
                    params["as_of"] = datetime.datetime.now(datetime.UTC)
                doc = run_query(query, worker.account_state(account), account,
                                worker.marks or {}, worker.ledger_config, **params)
            except QueryError as exc:
                return web.json({"error": exc.code, "message": str(exc)}, status=400)
            except NotFound as exc:
                body = {"error": exc.code, "message": str(exc), "account_id": exc.account_id}
                if isinstance(exc, PositionNotFound):
                    body["position"] = exc.key
                return web.json(body, status=404)
            return web.json(doc)

        page.__name__ = "portfolio_" + query.replace("-", "_")
        return router.routed(page)

    for query, suffix in PAGES.items():
        handler = make(query)
        app.page("/accounts/{account}" + suffix, name=handler.__name__)(handler)


#: Header a forwarded account request carries: the receiver answers it itself (or 503),
#: never forwards it again, so workers that disagree during a rebalance cannot loop.
ROUTED_HEADER = "X-Twinledger-Routed-By"
#: Seconds a forwarded request may take before the asking worker answers 503.
ROUTE_TIMEOUT_SECONDS = 10.0


class AccountRouter:
    """Which worker answers an account's pages, and forwarding the request there.

    An account's state lives in the table partition its events came from:
    ``venue.events`` records are keyed by the account id and partitioned by
    murmur2 of the key (``streams.produce`` asks librdkafka for
    ``murmur2_random``, the Java client's partitioner), and the worker stores
    the state in the changelog partition of the source event. The owner of
    that partition is read from Faust's partition assignor (each worker
    publishes its ``canonical_url``, :func:`advertised_url`, when it joins
    the group; ``app.router.table_metadata``). Faust's ``app.table_route``
    does the same, but its forward has no timeout, drops the status headers,
    loops between two workers that disagree during a rebalance and asks the
    producer's metadata for a partition count it may not have fetched; this
    one answers 503 with ``Retry-After`` whenever the owner is unknown or
    unreachable, and a forwarded request is never forwarded again.
    """

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.app = worker.app
        self.partitions = worker.topology.partitions("venue.events")
        self.table_name = "account_to_ledger"

    def partition(self, account: str) -> int:
        """The ``venue.events`` (and changelog) partition of ``account``'s records."""
        return account_partition(account, self.partitions)

    @property
    def changelog_topic(self) -> str:
        return str(self.worker.ledger_table.changelog_topic.get_topic_name())

    def owner(self, partition: int) -> str | None:
        """URL of the worker holding ``partition`` of the ledger table; None while unknown."""
        try:
            metadata = self.app.router.table_metadata(self.table_name)
        except Exception:  # noqa: BLE001 - no assignment yet
            return None
        topic = self.changelog_topic
        for url, topics in metadata.items():
            if partition in (topics.get(topic) or ()):
                return str(url)
        return None

    def holds(self, partition: int) -> bool:
        """Whether this worker actively holds ``partition`` of the ledger table."""
        is_active = getattr(self.app.assignor, "is_active", None)
        return bool(is_active and is_active(TP(self.changelog_topic, partition)))

    def me(self) -> str:
        return str(self.app.conf.canonical_url)

    def routed(self, page: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap an ``/accounts/{account}...`` page: answer here, or forward to the owner."""
        import functools

        @functools.wraps(page)
        async def handler(web: Any, request: Any, account: str, **match: str) -> Any:
            if len(account) > MAX_ID_CHARS:
                return web.json({"error": "bad_request",
                                 "message": f"account ids are at most {MAX_ID_CHARS} characters"},
                                status=400)
            partition = self.partition(account)
            owner = self.owner(partition)
            forwarded = bool(request.headers.get(ROUTED_HEADER))
            if owner == self.me() or ((owner is None or forwarded) and self.holds(partition)):
                return await page(web, request, account, **match)
            if owner is None or forwarded:
                return self.unavailable(web, partition, "no worker holds the account's "
                                        "partition yet (the group is rebalancing)")
            return await self.forward(web, request, owner, partition)

        return handler

    def unavailable(self, web: Any, partition: int, why: str, owner: str | None = None) -> Any:
        body: dict[str, Any] = {"error": "unavailable", "message": why, "partition": partition}
        if owner is not None:
            body["owner"] = owner
        return web.json(body, status=503, headers={"Retry-After": "1"})

    async def forward(self, web: Any, request: Any, owner: str, partition: int) -> Any:
        """The owner's answer to the same GET (path and query as received), with our token."""
        import aiohttp
        from yarl import URL

        from streams.httpsec import bearer_header

        url = URL(owner.rstrip("/") + request.raw_path, encoded=True)
        headers = {ROUTED_HEADER: self.me(), "Accept": "application/json",
                   **bearer_header(self.worker.settings.http_token)}
        if "Authorization" not in headers and request.headers.get("Authorization"):
            headers["Authorization"] = request.headers["Authorization"]
        try:
            async with self.app.http_client.get(
                    url, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=ROUTE_TIMEOUT_SECONDS)) as resp:
                body = await resp.read()
                kept = {k: resp.headers[k] for k in ("Retry-After", "WWW-Authenticate")
                        if k in resp.headers}
                return web.bytes(body, content_type=resp.content_type, status=resp.status,
                                 headers=kept)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("account page: the owner of partition %d, %s, did not answer (%s)",
                        partition, owner, type(exc).__name__)
            return self.unavailable(web, partition, "the worker holding the account's "
                                    "partition did not answer; retry", owner)


def archive_key(key: bytes, name: bytes) -> bytes:
    """The table key of an account's history blob ``name`` (``a0``, ``r1``...), by its state.

    An account id never holds a control character (``grammar.identifier``), so
    ``\x00`` keeps the two kinds of key apart.
    """
    return b"%s\x00%s" % (key, name)


def is_archive_key(key: Any) -> bool:
    return isinstance(key, bytes) and b"\x00" in key


def reconcile_status_of(raw: bytes) -> str:
    """The reconcile status of a stored state, read from its first line only.

    The first line of ``encode_state`` bytes is a JSON header whose 19th
    field is the status; anything unexpected falls back to a full decode.
    """
    import json

    from streams.ledger.state import MAGIC

    try:
        header = json.loads(raw[len(MAGIC):raw.index(b"\n", len(MAGIC))])
        status = header[18]
        if raw.startswith(MAGIC) and status in RECONCILE_STATUSES:
            return str(status)
    except (ValueError, IndexError, TypeError, KeyError):
        pass
    try:
        return str(decode_state(raw).status)
    except Exception:  # noqa: BLE001 - a hot part naming history blobs needs them to decode
        return "UNKNOWN"


class FaustCollector:
    """Faust's own sensor figures as ``twinledger_faust_*`` metrics, read at scrape time.

    Faust's monitor (``app.monitor``, always running) already counts records
    in and out, events, table operations, send and commit latency, offsets
    per partition and rebalances. Faust's ``PrometheusMonitor`` would update
    Prometheus metrics on every record as well: about 20 us per record
    measured here (labelled-child lookups, a regex per event), a large share
    of what folding a record costs; reading the monitor when Prometheus
    scrapes costs nothing per record. Named after twinledger, not the app id,
    so dashboards do not depend on it. Latencies are over the monitor's
    recent history (the last 30 sends or commits).
    """

    def __init__(self) -> None:
        self.app: Any = None

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        monitor = getattr(self.app, "monitor", None) if self.app is not None else None
        if monitor is None:
            return
        p = FAUST_METRICS_PREFIX
        received = CounterMetricFamily(f"{p}_messages_received", "records received by topic",
                                       labels=["topic"])
        for topic, n in sorted((monitor.messages_received_by_topic or {}).items()):
            received.add_metric([str(topic)], n)
        sent = CounterMetricFamily(f"{p}_messages_sent", "records sent by topic",
                                   labels=["topic"])
        for topic, n in sorted((monitor.messages_sent_by_topic or {}).items()):
            sent.add_metric([str(topic)], n)
        events = CounterMetricFamily(f"{p}_events", "stream events by stream", labels=["stream"])
        for stream, n in sorted((monitor.events_by_stream or {}).items()):
            events.add_metric([str(stream)], n)
        tables = CounterMetricFamily(f"{p}_table_operations", "table operations",
                                     labels=["table", "operation"])
        for name, state in sorted((monitor.tables or {}).items()):
            tables.add_metric([name, "get"], state.keys_retrieved)
            tables.add_metric([name, "set"], state.keys_updated)
            tables.add_metric([name, "del"], state.keys_deleted)
        yield from (received, sent, events, tables)
        yield GaugeMetricFamily(f"{p}_messages_active", "records taken, not yet acked",
                                value=monitor.messages_active)
        yield CounterMetricFamily(f"{p}_send_errors", "produce requests that failed",
                                  value=monitor.send_errors)
        yield CounterMetricFamily(f"{p}_rebalances", "rebalances seen", value=monitor.rebalances)
        for name, doc, history in (
                ("send_latency_seconds", "producer send latency", monitor.send_latency),
                ("commit_latency_seconds", "consumer commit latency", monitor.commit_latency)):
            family = GaugeMetricFamily(f"{p}_{name}", f"{doc} over the recent history",
                                       labels=["stat"])
            recent = list(history or ())
            if recent:
                family.add_metric(["mean"], sum(recent) / len(recent))
                family.add_metric(["max"], max(recent))
            yield family
        offsets = GaugeMetricFamily(f"{p}_offset", "offset per partition: committed, read "
                                    "(last taken) and end (high watermark)",
                                    labels=["topic", "partition", "kind"])
        for kind, mapping in (("committed", monitor.tp_committed_offsets),
                              ("read", monitor.tp_read_offsets),
                              ("end", monitor.tp_end_offsets)):
            for tp, offset in sorted((mapping or {}).items()):
                offsets.add_metric([tp.topic, str(tp.partition), kind], offset)
        yield offsets


FAUST_SENSORS = FaustCollector()
REGISTRY.register(FAUST_SENSORS)


def account_partition(account: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives the key ``account``.

    What librdkafka's ``murmur2_random`` (our producer), the Java client and
    aiokafka's ``DefaultPartitioner`` (Faust) all compute for a non-empty key.
    """
    return key_partition(account.encode("utf-8"), partitions)


def advertised_url(settings: Settings) -> str:
    """``TWINLEDGER_WORKER_ADVERTISED_URL``, else ``http://<web host>:<web port>``.

    A wildcard web host (``0.0.0.0``, ``::``) is where the worker listens,
    not where anyone reaches it: the default then uses this machine's host
    name (a container's name in Compose or Kubernetes).
    """
    from streams.config import WILDCARD_HOSTS

    if settings.worker_advertised_url:
        return settings.worker_advertised_url
    host = settings.worker_web_host.strip()
    if host in WILDCARD_HOSTS:
        host = socket.gethostname()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.worker_web_port}"


def _leave_group_on_stop(app: faust.App) -> None:
    """Make the consumer send LeaveGroup when it closes on a clean stop.

    With static membership (``TWINLEDGER_WORKER_INSTANCE_ID``) the Kafka client
    does not leave the group when it closes: the group keeps the stopped
    worker's partitions until its session times out
    (``TWINLEDGER_WORKER_SESSION_TIMEOUT``), and nobody folds or answers them
    meanwhile. A worker stopped on purpose leaves, so the others take its
    partitions at once; a crashed worker still gets them back at its restart.
    """
    try:
        coordinator = app.consumer._thread._consumer._coordinator  # type: ignore[attr-defined]
    except AttributeError:
        return
    if coordinator is not None and getattr(coordinator, "_group_instance_id", None):
        log.info("leaving the consumer group on stop (static member %s)",
                 coordinator._group_instance_id)
        coordinator._group_instance_id = None


#: Bounds of the worker's web pages (all GET, small answers): request body, request
#: line and header sizes, keep-alive of an idle connection, requests served at once.
WEB_MAX_BODY = 16 * 1024
WEB_MAX_LINE = 4096
WEB_MAX_FIELD = 8190
WEB_MAX_HEADERS = 64
WEB_KEEPALIVE_SECONDS = 5.0
WEB_MAX_CONCURRENT = 32
#: Pages a supervisor probes; they answer without a token.
WEB_OPEN_PATHS = frozenset({"/live", "/ready"})


def web_options(token: str) -> dict[str, Any]:
    """aiohttp ``Application`` options for Faust's web server: bounds, token, concurrency.

    Oversized request lines or headers are answered 400 by aiohttp's parser,
    bodies over :data:`WEB_MAX_BODY` 413; with ``TWINLEDGER_HTTP_TOKEN`` set
    every page but the probes wants ``Authorization: Bearer <token>``; more
    than :data:`WEB_MAX_CONCURRENT` requests at once answer 503.
    """
    import inspect

    from aiohttp import web
    from aiohttp.web_protocol import RequestHandler

    from streams.httpsec import authorized

    slots = asyncio.Semaphore(WEB_MAX_CONCURRENT)

    @web.middleware
    async def guard(request: Any, handler: Any) -> Any:
        if request.path not in WEB_OPEN_PATHS and not authorized(
                request.headers.get("Authorization"), token):
            return web.json_response({"error": "unauthorized",
                                      "message": "Authorization: Bearer <token> required"},
                                     status=401, headers={"WWW-Authenticate": "Bearer"})
        if slots.locked():
            return web.json_response({"error": "busy", "message": "too many requests at once"},
                                     status=503, headers={"Retry-After": "1"})
        async with slots:
            return await handler(request)

    wanted = {"keepalive_timeout": WEB_KEEPALIVE_SECONDS, "max_line_size": WEB_MAX_LINE,
              "max_field_size": WEB_MAX_FIELD, "max_headers": WEB_MAX_HEADERS}
    accepted = inspect.signature(RequestHandler.__init__).parameters
    # Older aiohttp releases lack some of these; pass what this one knows.
    handler_args = {k: v for k, v in wanted.items() if k in accepted}
    return {"client_max_size": WEB_MAX_BODY, "middlewares": [guard],
            "handler_args": handler_args}


def worker_instance_id(settings: Settings) -> str:
    """The static membership id: configured, else ``<app id>-<host>-<web port>``.

    Two workers on one host need distinct web ports anyway, so the default is
    unique per running worker and stable across its restarts.
    """
    if settings.worker_instance_id:
        return settings.worker_instance_id
    return f"{settings.app_id}-{socket.gethostname()}-{settings.worker_web_port}"


#: Fault injection for the watchdog's test: the agent hangs on a record whose value
#: contains these bytes. Unset in production; read once at import.
_HANG_ON = os.environ.get("TWINLEDGER_FAULT_HANG_ON", "").encode("utf-8")


#: Test-only fault: the first batch holding this text pauses between sending its outputs
#: and storing its states, for ``TWINLEDGER_FAULT_PAUSE_SECONDS`` (a slow batch a
#: rebalance overtakes; tests/integration/test_rebalance.py).
_PAUSE_ON = os.environ.get("TWINLEDGER_FAULT_PAUSE_ON", "").encode("utf-8")
_PAUSED: list[bool] = []


async def _pause_once(msg: Any) -> None:
    if _PAUSED:
        return
    _PAUSED.append(True)
    seconds = float(os.environ.get("TWINLEDGER_FAULT_PAUSE_SECONDS", "20"))
    log.warning("fault injection: the batch from %s[%d]@%d pauses %.0f s before its state "
                "write (TWINLEDGER_FAULT_PAUSE_ON)", msg.topic, msg.partition, msg.offset,
                seconds)
    await asyncio.sleep(seconds)


async def _hang_forever(msg: Any) -> None:
    log.warning("fault injection: agent hangs on %s[%d]@%d (TWINLEDGER_FAULT_HANG_ON)",
                msg.topic, msg.partition, msg.offset)
    await asyncio.Event().wait()


def dump_tasks() -> None:
    """Every asyncio task's stack on stderr: where a stalled worker waits.

    Called by the watchdog from a coroutine and by the SIGUSR1 handler of
    ``twinledger worker`` between two steps of the running loop.
    """
    import sys

    try:
        tasks = asyncio.all_tasks(asyncio.get_event_loop())
    except RuntimeError:
        return
    for task in tasks:
        print(f"task {task.get_name()}: {_await_chain(task.get_coro())}", file=sys.stderr)


def _await_chain(coro: Any, limit: int = 40) -> str:
    """Where a suspended coroutine waits, outermost first: ``file:line in func`` per frame.

    ``Task.print_stack`` shows only a task's own frame; a stalled agent waits
    several awaits deeper (Faust's stream, aiokafka's fetcher), so this
    follows ``cr_await`` (and async generators' ``ag_await``) to the end.
    """
    import gc

    hops: list[str] = []
    while coro is not None and len(hops) < limit:
        frame = (getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
                 or getattr(coro, "gi_frame", None))
        if frame is None:
            # ``async for`` waits on an ``async_generator_asend`` and ``__await__``
            # returns a ``coroutine_wrapper``: each holds its coroutine or generator
            # without naming it, and the garbage collector knows the way.
            inner = next((r for r in gc.get_referents(coro)
                          if any(getattr(r, a, None) is not None
                                 for a in ("cr_frame", "ag_frame", "gi_frame"))), None)
            if inner is None:  # a Future, or a finished coroutine
                hops.append(f"<{type(coro).__name__}>")
                break
            coro = inner
            continue
        code = frame.f_code
        hops.append(f"{Path(code.co_filename).name}:{frame.f_lineno} in {code.co_name}")
        coro = (getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
                or getattr(coro, "gi_yieldfrom", None))
    return " -> ".join(hops)


def _ensure_dir(path: Path) -> Path:
    """Faust opens its RocksDB stores under ``path`` and fails if the parents are missing."""
    path.mkdir(parents=True, exist_ok=True)
    return path


def _set_current_event(event: Any) -> None:
    """Make ``event`` Faust's current event for this task only.

    Faust's table store picks the partition of a read or write from the
    context variable behind ``faust.streams.current_event()``. Only that
    variable is set: ``Stream._set_current_event`` would also overwrite the
    stream attribute that ``take_events`` reads while it buffers the next
    batch, and the buffered event would be replaced by ours (a lost event).
    """
    from faust.streams import _current_event

    _current_event.set(weakref.ref(event))


def _faust_credentials(settings: Settings) -> Any:
    sec = settings.kafka_security
    proto = sec.get("security.protocol", "PLAINTEXT")
    if proto.startswith("SASL"):
        return faust.SASLCredentials(username=sec.get("sasl.username", ""),
                                     password=sec.get("sasl.password", ""),
                                     mechanism=sec.get("sasl.mechanism", "PLAIN"),
                                     ssl_context=_ssl_context(sec) if proto == "SASL_SSL" else None)
    if proto == "SSL":
        return faust.SSLCredentials(_ssl_context(sec))
    return None


def _aiokafka_auth(settings: Settings) -> dict[str, Any]:
    """The same credentials as the worker's own clients, for the marks reader."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    return dict(credentials_to_aiokafka_auth(_faust_credentials(settings)))


def _ssl_context(sec: Mapping[str, str]) -> Any:
    import ssl

    return ssl.create_default_context(cafile=sec.get("ssl.ca.location") or None)


def _jsonable(value: Any) -> Any:
    import datetime as dt

    from streams.codec import dec_str, iso

    if isinstance(value, Decimal):
        return dec_str(value)
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
