"""`twinledger verify` proves conservation and fails, naming what is missing, when it is not.

Real broker, real worker and sink processes, the embedded ClickHouse engine:
- an intact run verifies: every offset accounted for, snapshots without holes,
  the worker's event_seq equal to ClickHouse's for every account;
- rows deleted from a table (the sink stopped, an operator's DELETE) fail it,
  naming the topic partition and offsets and the account whose snapshot went;
- records deleted from venue.events before the sink read them fail it too.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from sinks.backend import open_backend
from streams.ops import verify_pipeline
from tests.integration.pipeline import Pipeline, synth_venue_events

pytestmark = pytest.mark.integration


def _settled(pipeline: Pipeline, timeout: float = 180) -> dict[str, Any]:
    """Wait until both groups have no lag, then return the verify document."""
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = verify_pipeline(pipeline.settings, pipeline.client)
        lag = doc["lag"]
        if lag.get("worker_total_lag") == 0 and lag.get("sink_total_lag") == 0:
            time.sleep(1.5)  # the sink commits right after its insert: read once more
            return verify_pipeline(pipeline.settings, pipeline.client)
        time.sleep(1.0)
    raise AssertionError(f"pipeline did not settle: {json.dumps(doc['lag'])[:2000]}\n"
                         f"{pipeline.logs()}")


def test_an_intact_pipeline_verifies_and_compares_every_account(pipeline: Pipeline):
    events = synth_venue_events(800, 20, seed=11)
    events.append(dict(events[10]))  # a gateway re-send: same event, second offset
    pipeline.start_sink()
    pipeline.start_worker()
    pipeline.produce(events)
    doc = _settled(pipeline)
    assert doc["ok"], doc["problems"]
    assert doc["worker"]["compared"] == 20
    venue = [p for p in doc["conservation"]["offsets"]["partitions"]
             if p["topic"].endswith("venue.events")]
    assert sum(p["committed"] for p in venue) == len(events)
    assert all(p["missing"] == 0 for p in venue)
    folded = doc["conservation"]["folded"]
    assert folded["checked"] and folded["unfolded"] == 0, folded


def test_rows_deleted_from_tables_fail_verify_naming_them(pipeline: Pipeline):
    events = synth_venue_events(600, 10, seed=12)
    pipeline.start_sink()
    pipeline.start_worker()
    pipeline.produce(events)
    assert _settled(pipeline)["ok"]
    assert pipeline.sink is not None
    pipeline.sink.stop()
    # An operator (or a bad TTL, or a botched migration) removes rows behind our back.
    backend = open_backend(pipeline.settings)
    try:
        victim = backend.query("SELECT kafka_topic, kafka_partition, kafka_offset FROM "
                               "venue_events ORDER BY kafka_partition, kafka_offset LIMIT 1 "
                               "OFFSET 7")[0]
        backend.command("DELETE FROM venue_events WHERE kafka_partition = {p:UInt32} AND "
                        "kafka_offset = {o:UInt64}", {"p": victim[1], "o": victim[2]})
        snap = backend.query("SELECT account_id, event_seq FROM account_snapshots "
                             "WHERE event_seq = 3 ORDER BY account_id LIMIT 1")[0]
        backend.command("DELETE FROM account_snapshots WHERE account_id = {a:String} AND "
                        "event_seq = 3", {"a": snap[0]})
    finally:
        backend.close()
    pipeline.start_sink()
    doc = verify_pipeline(pipeline.settings, pipeline.client)
    assert not doc["ok"]
    text = "\n".join(doc["problems"])
    assert f"{victim[0]}[{victim[1]}]: 1 of the" in text
    assert f"offsets {victim[2]}..{victim[2]}" in text
    assert f"account {snap[0]}: 1 snapshot(s) missing" in text
    # count() = uniqExact(event_id) still holds: only conservation sees the loss.
    assert all(t["match"] for t in doc["counts"]["tables"].values())


def test_records_deleted_from_the_topic_before_the_sink_read_them_fail_verify(
        pipeline: Pipeline):
    first = synth_venue_events(300, 8, seed=13)
    pipeline.start_sink()
    pipeline.start_worker()
    pipeline.produce(first)
    assert _settled(pipeline)["ok"]
    assert pipeline.sink is not None
    pipeline.sink.stop()
    # The worker (still running) folds them within the pause; the sink never sees them.
    read, cut = pipeline.produce_then_delete_unread(synth_venue_events(300, 8, seed=14),
                                                    keep=3, pause=3)
    pipeline.start_sink()
    doc = _settled(pipeline)
    assert not doc["ok"]
    text = "\n".join(doc["problems"])
    for (topic, partition), start in cut.items():
        assert f"{topic}[{partition}]" in text
        assert f"offsets {read[(topic, partition)][1]}..{start - 1}" in text, text


def _move_worker_group_to_end(pipeline: Pipeline) -> dict[tuple[str, int], int]:
    """Commit the (stopped) worker group at the end of venue.events: what a worker that
    drops records it fetched and commits past them leaves behind."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    marks = pipeline.source_marks()
    tps = [TopicPartition(t, p, hi) for (t, p), (_, hi) in sorted(marks.items())]
    deadline = time.monotonic() + 60
    while True:
        consumer = Consumer({"bootstrap.servers": pipeline.settings.kafka_bootstrap,
                             "group.id": pipeline.settings.app_id,
                             "enable.auto.commit": False})
        try:
            consumer.commit(offsets=tps, asynchronous=False)
            return {(t, p): hi for (t, p), (_, hi) in marks.items()}
        except KafkaException:
            # the stopped worker's membership may not have left the group yet
            assert time.monotonic() < deadline, "could not commit the worker group's offsets"
            time.sleep(1.0)
        finally:
            consumer.close()


def test_events_the_worker_never_folded_fail_verify(pipeline: Pipeline):
    """Every other check passes when the worker moves past records it never folded.

    The sink holds their rows in venue_events, no snapshot row is missing
    from any account's event_seq, and the worker's live event_seq equals
    ClickHouse's: only the fold check (every event below the worker's
    committed offset has a snapshot, an anomaly or a dead letter) names them.
    """
    pipeline.start_sink()
    pipeline.start_worker()
    pipeline.produce(synth_venue_events(300, 8, seed=15))
    assert _settled(pipeline)["ok"]
    assert pipeline.worker is not None
    pipeline.worker.stop()
    before = pipeline.source_marks()
    skipped = synth_venue_events(120, 8, seed=16)
    pipeline.produce(skipped)
    after = _move_worker_group_to_end(pipeline)
    pipeline.start_worker()
    pipeline.produce(synth_venue_events(100, 8, seed=17))
    doc = _settled(pipeline)
    assert not doc["ok"]
    folded = doc["conservation"]["folded"]
    assert folded["checked"] and folded["unfolded"] == len(skipped), folded
    text = "\n".join(doc["problems"])
    for (topic, partition), (_, start) in sorted(before.items()):
        end = after[(topic, partition)]
        if end > start:
            assert (f"{topic}[{partition}]: {end - start} event(s) below the worker's "
                    f"committed offset left no snapshot") in text, text
            assert f"offsets {start}..{end - 1}" in text, text
    # The other checks cannot see it: rows are there, and no account has a hole.
    assert doc["conservation"]["offsets"]["ok"] and doc["conservation"]["snapshots"]["ok"]
    assert not any("live" in p or "event_seq" in p for p in doc["problems"]), text


def test_the_fold_check_runs_while_events_keep_arriving(pipeline: Pipeline):
    """Under steady load the sink seldom passes the outcome topics' ends of *now* within
    its wait; it checks up to the worker's offsets of an earlier reading it has passed
    (``sinks.main.FoldCheckpoints``) instead of reporting the check pending."""
    import threading

    events = synth_venue_events(8_000, 40, seed=21)
    # The sink commits every 15 s: the ends of *now* are mostly not passed within the
    # check's 5 s wait (without the earlier readings 1 check in 3 was left pending even
    # at 6 s), an earlier reading (one every 10 s) is.
    pipeline.env["TWINLEDGER_SINK_BATCH_SECONDS"] = "15"
    pipeline.start_sink()
    pipeline.start_worker()
    pipeline.produce(events[:200])
    done = threading.Event()

    def steady() -> None:  # about 200 events a second for 39 s
        for start in range(200, len(events), 200):
            pipeline.produce(events[start:start + 200])
            time.sleep(1.0)
        done.set()

    sender = threading.Thread(target=steady, daemon=True)
    sender.start()
    seen: list[dict[str, Any]] = []
    time.sleep(16)  # the sink's first commit, and readings 10 s apart
    while not done.is_set():
        folded = pipeline.client.conservation()["folded"]
        seen.append(folded)
        assert folded["ok"], folded
        time.sleep(1)
    sender.join()
    earlier = [f for f in seen if f["checked"] and f["worker_offsets_age_s"] > 0]
    assert earlier, f"never checked up to an earlier reading under load: {seen}"
    assert all(f["unfolded"] == 0 for f in earlier)
    folded = _settled(pipeline)["conservation"]["folded"]
    assert folded["checked"] and folded["unfolded"] == 0, folded
