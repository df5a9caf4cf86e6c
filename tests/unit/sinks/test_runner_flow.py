"""The runner's exactly-once flow, step order and recovery, with in-memory fakes (no broker)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from sinks.batching import Batch
from sinks.exceptions import BackendError
from sinks.runner import SinkRunner
from streams.config import load_settings
from tests.unit.sinks import samples
from tests.unit.sinks.fakes import FakeBackend, FakeBroker, FakeConsumer

TOPICS = {"venue.events": "venue_events", "ledger.deadletter": "dead_letters"}


class Crash(Exception):
    """Stands for the process dying at a hook."""


def make_runner(broker: FakeBroker, backend: FakeBackend, hook: Any = None,
                batch_rows: int = 4, batch_seconds: float = 0.0) -> SinkRunner:
    settings = replace(load_settings({}), sink_batch_rows=batch_rows,
                       sink_batch_seconds=batch_seconds, sink_group="g")
    return SinkRunner(settings, backend, samples.codec(), consumer=FakeConsumer(broker),
                      topics=TOPICS, hook=hook, max_retry_seconds=0.01)


def fill(i: int, account: str = "acc-1") -> bytes:
    return samples.wire("VenueEvent", samples.fill_event(f"f-{i}", account))


def populate(broker: FakeBroker) -> int:
    """10 logical events on 2 partitions, 3 re-sent at later offsets, 2 garbage records."""
    for i in range(10):
        broker.produce("venue.events", i % 2, b"acc-1", fill(i))
    broker.produce("venue.events", 0, b"acc-1", fill(0))          # resent, next batch
    broker.produce("venue.events", 1, b"acc-1", fill(1))
    broker.produce("venue.events", 0, b"acc-1", b"\x00garbage")   # undecodable
    broker.produce("venue.events", 1, None, None)                 # tombstone
    broker.produce("venue.events", 1, b"acc-1", fill(9))
    return 10


def drain(runner: SinkRunner, rounds: int = 20) -> None:
    for _ in range(rounds):
        runner.poll_once(0.0)


def keys(backend: FakeBackend, table: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in backend.rows.get(table, [])]


def test_every_logical_event_lands_once_and_bad_records_are_dead_letters() -> None:
    broker = FakeBroker()
    expected = populate(broker)
    backend = FakeBackend(broker)
    runner = make_runner(broker, backend)
    drain(runner)
    venue = keys(backend, "venue_events")
    assert len(venue) == len(set(venue)) == expected
    dead = backend.rows["dead_letters"]
    assert sorted(r[1] for r in dead) == ["venue.events:0:6", "venue.events:1:6"]
    assert {r[6] for r in dead} == {"UnknownSchemaId", "DecodeError"}  # garbage, tombstone
    assert b"\x00garbage" in {r[9] for r in dead}
    assert runner.stats["duplicates_in_table"] == 3
    assert broker.committed == {("venue.events", 0): 7, ("venue.events", 1): 8}


def test_steps_run_in_order_before_insert_after_commit() -> None:
    broker = FakeBroker()
    for i in range(4):
        broker.produce("venue.events", 0, b"acc-1", fill(i))
    backend = FakeBackend(broker)
    drain(make_runner(broker, backend))
    assert broker.events == [
        ("state", ("BEFORE", 0, 3)),
        ("insert", ("venue_events", "venue.events-0-0-3", 4)),
        ("state", ("AFTER", 0, 3)),
        ("commit", ("venue.events", 0, 4)),
    ]


def test_duplicates_inside_one_batch_keep_the_first_offset() -> None:
    broker = FakeBroker()
    broker.produce("venue.events", 0, b"acc-1", fill(1))
    broker.produce("venue.events", 0, b"acc-1", fill(1))
    broker.produce("venue.events", 0, b"acc-1", fill(2))
    broker.produce("venue.events", 0, b"acc-1", fill(1))
    backend = FakeBackend(broker)
    runner = make_runner(broker, backend)
    drain(runner)
    rows = backend.rows["venue_events"]
    assert [(r[1], r[-1]) for r in rows] == [("f-1", 0), ("f-2", 2)]  # (event_id, kafka_offset)
    assert runner.stats["duplicates_in_batch"] == 2
    # Every offset is accounted for: the two copies are recorded where verify finds them.
    assert [(r[0], r[1], r[2], r[3], r[5]) for r in backend.rows["sink_duplicates"]] == [
        ("venue.events", 0, 1, "venue_events", "f-1"), ("venue.events", 0, 3, "venue_events", "f-1")]


def test_a_record_already_in_the_table_from_another_offset_is_a_recorded_duplicate() -> None:
    broker = FakeBroker()
    broker.produce("venue.events", 0, b"acc-1", fill(1))
    backend = FakeBackend(broker)
    drain(make_runner(broker, backend))
    broker.produce("venue.events", 0, b"acc-1", fill(1))  # a gateway re-send, next batch
    drain(make_runner(broker, backend))
    assert [r[-1] for r in backend.rows["venue_events"]] == [0]
    assert [r[2] for r in backend.rows["sink_duplicates"]] == [1]


@pytest.mark.parametrize("stage", ["before_recorded", "inserted", "after_recorded"])
def test_crash_at_any_step_then_restart_is_exact(stage: str) -> None:
    broker = FakeBroker()
    expected = populate(broker)
    backend = FakeBackend(broker)
    crashes: Counter[str] = Counter()

    def hook(at: str, batch: Batch) -> None:
        if at == stage and batch.partition == 0 and not crashes:
            crashes[at] += 1
            raise Crash(at)

    first = make_runner(broker, backend, hook)
    with pytest.raises(Crash):
        drain(first)
    first.abort()
    second = make_runner(broker, backend)
    drain(second)
    venue = keys(backend, "venue_events")
    assert len(venue) == len(set(venue)) == expected
    assert len(backend.rows["dead_letters"]) == 2
    if stage in ("before_recorded", "inserted"):
        # The interrupted range is rebuilt with its own token.
        assert second.stats["ranges_rebuilt"] == 1
        inserts = [e[1] for e in broker.events if e[0] == "insert"]
        assert inserts[0][1] == "venue.events-0-0-3"
        if stage == "inserted":
            # Its rows were already in: nothing is inserted for it a second time.
            assert [i for i in inserts if i[1] == "venue.events-0-0-3"] == [inserts[0]]
    else:
        assert second.stats["ranges_rebuilt"] == 0


def test_failed_insert_is_retried_with_the_same_token() -> None:
    broker = FakeBroker()
    for i in range(4):
        broker.produce("venue.events", 0, b"acc-1", fill(i))
    backend = FakeBackend(broker)
    backend.fail_inserts = 2
    runner = make_runner(broker, backend)
    drain(runner)
    inserts = [e[1] for e in broker.events if e[0] == "insert"]
    assert inserts == [("venue_events", "venue.events-0-0-3", 4)]
    assert len(backend.rows["venue_events"]) == 4


def test_an_unexpected_error_on_the_ingest_path_is_retried_not_fatal() -> None:
    # A malformed answer from the engine once ended the sink (JSONDecodeError is no
    # BackendError); every failure on the ingest path is now retried.
    import json

    broker = FakeBroker()
    for i in range(3):
        broker.produce("venue.events", 0, b"acc-1", fill(i))
    backend = FakeBackend(broker)
    real_query = backend.query
    failures = [json.JSONDecodeError("Extra data", "{}{}", 2), ValueError("garbled")]

    def flaky(sql, params=None, settings=None):
        if failures and "event_id IN" in sql:
            raise failures.pop(0)
        return real_query(sql, params, settings)

    backend.query = flaky  # type: ignore[method-assign]
    runner = make_runner(broker, backend)
    drain(runner)
    assert len(backend.rows["venue_events"]) == 3
    assert not failures
    assert runner.last_error is not None and "garbled" in runner.last_error


def test_replay_from_the_beginning_inserts_nothing_new() -> None:
    broker = FakeBroker()
    expected = populate(broker)
    backend = FakeBackend(broker)
    drain(make_runner(broker, backend))
    broker.committed.clear()  # `twinledger replay --group sink --to-earliest`
    replay = make_runner(broker, backend)
    drain(replay)
    assert len(keys(backend, "venue_events")) == expected
    assert len(backend.rows["dead_letters"]) == 2
    assert replay.stats["inserted"] == 0


def test_deadletter_topic_records_are_rows_too() -> None:
    broker = FakeBroker()
    broker.produce("ledger.deadletter", 0, b"acc-1",
                   samples.wire("DeadLetter", samples.dead_letter()))
    broker.produce("ledger.deadletter", 0, b"acc-1", b"not avro")
    backend = FakeBackend(broker)
    drain(make_runner(broker, backend))
    assert sorted(r[1] for r in backend.rows["dead_letters"]) == [
        "ledger.deadletter:0:1", "venue.events:0:5"]


def test_wrong_record_type_on_a_topic_is_a_dead_letter() -> None:
    broker = FakeBroker()
    broker.produce("venue.events", 0, b"acc-1", samples.wire("Anomaly", samples.anomaly()))
    backend = FakeBackend(broker)
    drain(make_runner(broker, backend))
    (row,) = backend.rows["dead_letters"]
    assert row[6] == "DecodeError" and "expected a VenueEvent" in row[7]


def test_venue_events_the_worker_refuses_are_dead_letters_not_archive_rows() -> None:
    broker = FakeBroker()
    broker.produce("venue.events", 0, b"acc-2", fill(1, "acc-1"))   # key is not its account
    broker.produce("venue.events", 0, b"acc-1", samples.wire(
        "VenueEvent", samples.fill_event("neg", "acc-1", qty="-1")))  # the ledger refuses it
    broker.produce("venue.events", 0, b"acc-1", fill(2))
    backend = FakeBackend(broker)
    drain(make_runner(broker, backend))
    assert keys(backend, "venue_events") == [("acc-1", "f-2")]
    dead = {r[1]: (r[6], r[7]) for r in backend.rows["dead_letters"]}
    assert dead["venue.events:0:0"][0] == "InvalidEvent"
    assert "is not its account_id" in dead["venue.events:0:0"][1]
    assert "qty" in dead["venue.events:0:1"][1]


def test_a_failed_commit_holds_the_others_of_the_poll_cycle_then_commits_them_after() -> None:
    """With the coordinator gone (a broker restart), each synchronous commit waits ~10 s
    and the client rejoins only while polled: one failed commit holds the rest of the
    cycle's commits, and what they would have committed goes in one request later."""
    from confluent_kafka import KafkaError, KafkaException

    broker = FakeBroker()
    backend = FakeBackend(broker)
    populate(broker)
    runner = make_runner(broker, backend)
    consumer = runner._consumer
    assert isinstance(consumer, FakeConsumer)
    drain(runner)
    real_commit = consumer.commit
    attempts: list[list[tuple[str, int, int]]] = []

    def failing_commit(offsets: Any, asynchronous: bool) -> None:
        attempts.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])
        raise KafkaException(KafkaError(KafkaError._WAIT_COORD))

    consumer.commit = failing_commit  # type: ignore[method-assign]
    runner._commits_held = False  # a new poll cycle
    # Three groups due in one cycle: the first fails, the other two wait for the next poll.
    for group in (((0, 20), (1, 21)), ((0, 22),), ((1, 23),)):
        runner._commit([Batch("venue.events", partition, last, last, ())
                        for partition, last in group])
    # One wait, not three; a group's offsets go in one request.
    assert attempts == [[("venue.events", 0, 21), ("venue.events", 1, 22)]]
    assert runner.stats["commits_held"] == 2
    runner.poll_once(0.0)  # the next cycle: still no coordinator, one attempt
    assert len(attempts) == 2
    consumer.commit = real_commit  # type: ignore[method-assign]
    runner.poll_once(0.0)
    # What the held commits left went in one request, the latest offset per partition.
    assert broker.committed[("venue.events", 0)] == 23
    assert broker.committed[("venue.events", 1)] == 24
    assert runner._pending_commits == {}


def populate_group(broker: FakeBroker) -> int:
    """8 logical events on 3 partitions: f-2 (partition 2) also on partition 1, f-0 re-sent."""
    for i in range(8):
        broker.produce("venue.events", i % 3, b"acc-1", fill(i))
    broker.produce("venue.events", 1, b"acc-1", fill(2))  # the same event on another partition
    broker.produce("venue.events", 0, b"acc-1", fill(0))  # and on its own, a re-send
    return 8


def accounted(broker: FakeBroker, backend: FakeBackend) -> None:
    """Every offset of the topic is exactly one row or one recorded duplicate."""
    produced = sorted((t, p, m.offset()) for (t, p), log in broker.logs.items() for m in log)
    rows = [tuple(r[-3:]) for r in backend.rows.get("venue_events", [])]
    dups = [tuple(r[:3]) for r in backend.rows.get("sink_duplicates", [])]
    assert sorted(rows + dups) == produced


def test_partitions_due_together_share_one_state_write_query_and_commit() -> None:
    broker = FakeBroker()
    expected = populate_group(broker)
    backend = FakeBackend(broker)
    runner = make_runner(broker, backend, batch_rows=100)  # every partition due at once
    drain(runner)
    kinds = [e[0] for e in broker.events]
    # One group: BEFORE of the three partitions, each batch's rows and duplicates with its
    # own token, AFTER of the three, then their commits (one request: one event each here).
    assert kinds == ["state"] * 3 + ["insert"] * 5 + ["state"] * 3 + ["commit"] * 3
    assert runner.stats["batches"] == 3
    inserts = [e[1] for e in broker.events if e[0] == "insert"]
    assert inserts == [
        ("venue_events", "venue.events-0-0-3", 3), ("sink_duplicates", "venue.events-0-0-3", 1),
        ("venue_events", "venue.events-1-0-3", 4),
        ("venue_events", "venue.events-2-0-1", 1), ("sink_duplicates", "venue.events-2-0-1", 1)]
    venue = keys(backend, "venue_events")
    assert len(venue) == len(set(venue)) == expected
    # f-2 goes to the first batch of the group that carries it (partition 1, offset 3);
    # the copy on partition 2 is a recorded duplicate, as is f-0's re-send.
    assert runner.stats["duplicates_in_batch"] == 1
    assert runner.stats["duplicates_in_group"] == 1
    assert [r[:3] for r in backend.rows["sink_duplicates"]] == [
        ("venue.events", 0, 3), ("venue.events", 2, 0)]
    accounted(broker, backend)
    assert broker.committed == {("venue.events", 0): 4, ("venue.events", 1): 4,
                                ("venue.events", 2): 2}


def test_a_key_two_batches_of_a_group_carry_is_inserted_once() -> None:
    broker = FakeBroker()
    broker.produce("venue.events", 0, b"acc-1", fill(7))
    broker.produce("venue.events", 1, b"acc-1", fill(7))  # the same event, another partition
    broker.produce("venue.events", 1, b"acc-1", fill(8))
    backend = FakeBackend(broker)
    runner = make_runner(broker, backend, batch_rows=100)
    drain(runner)
    assert [(r[1], *r[-3:]) for r in backend.rows["venue_events"]] == [
        ("f-7", "venue.events", 0, 0), ("f-8", "venue.events", 1, 1)]
    assert [r[:3] for r in backend.rows["sink_duplicates"]] == [("venue.events", 1, 0)]
    assert runner.stats["duplicates_in_group"] == 1
    accounted(broker, backend)


@pytest.mark.parametrize("stage", ["before_recorded", "inserted", "after_recorded",
                                   "committed"])
@pytest.mark.parametrize("at_partition", [0, 1, 2])
def test_crash_in_a_group_then_restart_is_exact(stage: str, at_partition: int) -> None:
    broker = FakeBroker()
    expected = populate_group(broker)
    backend = FakeBackend(broker)

    def hook(at: str, batch: Batch) -> None:
        if at == stage and batch.partition == at_partition:
            raise Crash(at)

    first = make_runner(broker, backend, hook, batch_rows=100)
    with pytest.raises(Crash):
        drain(first)
    first.abort()
    tokens_before = {e[1][1] for e in broker.events if e[0] == "insert"}
    second = make_runner(broker, backend, batch_rows=100)
    drain(second)
    venue = keys(backend, "venue_events")
    assert len(venue) == len(set(venue)) == expected
    accounted(broker, backend)
    assert broker.committed == {("venue.events", 0): 4, ("venue.events", 1): 4,
                                ("venue.events", 2): 2}
    if stage in ("before_recorded", "inserted"):
        # BEFORE was recorded for the whole group: every range is rebuilt, same tokens.
        assert second.stats["ranges_rebuilt"] == 3
        tokens_after = {e[1][1] for e in broker.events if e[0] == "insert"}
        assert tokens_after == tokens_before | {"venue.events-0-0-3", "venue.events-1-0-3",
                                                "venue.events-2-0-1"}
    else:
        assert second.stats["ranges_rebuilt"] == 0


#: Batches of 4 due by size only (the timer far away), so buffers keep leftovers.
BY_SIZE = 3600.0


def two_partitions_with_leftovers(broker: FakeBroker, runner: SinkRunner) -> int:
    """p0 and p1 each 0..4 buffered: one group of 0..3 is due, offset 4 stays behind."""
    n = 0
    for per_part in (3, 2):
        for p in (0, 1):
            for _ in range(per_part):
                broker.produce("venue.events", p, b"acc-1", fill(n))
                n += 1
        if per_part == 3:
            runner.poll_once(0.0)  # consume() returns at most 4 records per call
            runner.poll_once(0.0)  # 3 + 3 buffered, nothing due yet
    return n


def test_a_stop_during_a_retry_leaves_the_group_to_be_rebuilt_not_skipped() -> None:
    """SIGTERM while an insert of a group waits to be retried: close() must not flush what
    follows the group's batches (it would commit past rows never inserted)."""
    broker = FakeBroker()
    backend = FakeBackend(broker)
    stopping: list[bool] = []

    def hook(stage: str, batch: Batch) -> None:
        if stage == "before_recorded" and not stopping:
            stopping.append(True)
            backend.fail_inserts = 1  # one transient failure of the next insert...
            first.stop()              # ...while SIGTERM arrives

    first = make_runner(broker, backend, batch_seconds=BY_SIZE)
    n = two_partitions_with_leftovers(broker, first)
    first.hook = hook
    first.run()  # the group [p0 0..3, p1 0..3] stops in a retry; close() runs
    # Nothing of the two partitions was committed past their interrupted ranges.
    assert broker.committed.get(("venue.events", 0), 0) == 0
    assert broker.committed.get(("venue.events", 1), 0) == 0
    second = make_runner(broker, backend)
    drain(second)
    assert second.stats["ranges_rebuilt"] == 2
    venue = keys(backend, "venue_events")
    assert len(venue) == len(set(venue)) == n
    accounted(broker, backend)


def test_a_partition_stuck_on_a_refused_row_does_not_cost_the_rest_of_its_group() -> None:
    """p0 holds a row the engine refuses every time; the operator stops the sink, fixes the
    table and starts it again: p1's batch, in the same group, is rebuilt, not lost."""
    broker = FakeBroker()
    poison = ["f-0"]
    runners: list[SinkRunner] = []

    class Refusing(FakeBackend):
        refused = 0

        def insert(self, table: str, columns: Any, rows: Any, dedup_token: str) -> None:
            if poison and any(r[1] in poison for r in rows):
                self.refused += 1
                if self.refused == 3:
                    runners[0].stop()  # SIGTERM to the stuck sink
                raise BackendError("simulated: value out of range")
            super().insert(table, columns, rows, dedup_token)

    backend = Refusing(broker)
    first = make_runner(broker, backend, batch_seconds=BY_SIZE)
    runners.append(first)
    n = two_partitions_with_leftovers(broker, first)
    first.run()
    poison.clear()  # the operator fixes the table
    second = make_runner(broker, backend)
    drain(second)
    for partition in (0, 1):
        assert sorted(r[-1] for r in backend.rows["venue_events"]
                      if r[-2] == partition) == [0, 1, 2, 3, 4]
    assert len(keys(backend, "venue_events")) == n
    accounted(broker, backend)
