"""The fold check under steady load: bounded by an earlier reading the sink has passed.

``sinks.main.sink_committed`` reads the worker group's offsets, then the outcome
topics' ends, then the sink's own offsets. A sink that keeps up but never
catches the ends of *now* within the wait can still check up to the worker's
offsets of an earlier moment whose ends it has passed (``FoldCheckpoints``).
Kafka's offsets are given by hand here; the check on a real broker is in
tests/integration/test_verify.py.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from sinks import main as sink_main
from sinks.main import FoldCheckpoints
from streams.config import load_settings
from streams.infra import kafka_admin

SRC, SNAP = "venue.events", "ledger.snapshots"
TABLES = {SRC: "venue_events", SNAP: "account_snapshots"}


@pytest.fixture
def kafka(monkeypatch):
    """Offsets as the broker would answer them: {group: {(topic, p): offset}}, ends."""
    state = {"groups": {}, "ends": {}, "errored": []}

    def committed_offsets(bootstrap, group, topics):
        return {tp: o for tp, o in state["groups"].get(group, {}).items() if tp[0] in topics}

    def watermarks(bootstrap, topics, errors=None):
        topics = list(topics)
        if errors is not None:
            errors.extend(t for t in state["errored"] if t in topics)
        return {tp: (0, end) for tp, end in state["ends"].items()
                if tp[0] in topics and tp[0] not in state["errored"]}

    monkeypatch.setattr(kafka_admin, "committed_offsets", committed_offsets)
    monkeypatch.setattr(kafka_admin, "watermarks", watermarks)
    monkeypatch.setattr(sink_main, "FOLD_CHECK_WAIT_S", 0.0)
    return state


def _now(kafka, settings, worker, end, sink_src, sink_snap):
    kafka["groups"] = {settings.app_id: {(SRC, 0): worker},
                       settings.sink_group: {(SRC, 0): sink_src, (SNAP, 0): sink_snap}}
    kafka["ends"] = {(SNAP, 0): end}


def test_a_sink_behind_the_ends_of_now_is_checked_up_to_an_earlier_reading_it_passed(kafka):
    settings = load_settings({})
    runner = SimpleNamespace(table_by_topic=TABLES)
    checkpoints = FoldCheckpoints()
    # 20 s ago the worker had committed 800, and the snapshots topic ended at 2,400.
    checkpoints.add({(SRC, 0): 800}, {(SNAP, 0): 2400}, at=time.monotonic() - 20)
    # Now: the worker at 1,000, the topic ends at 3,000, the sink has committed 2,500.
    _now(kafka, settings, worker=1000, end=3000, sink_src=1200, sink_snap=2500)
    _, _, bound = sink_main.sink_committed(settings, runner, checkpoints)
    assert bound.pending == {} and bound.upto == {0: 800}
    assert 19 < bound.age_s < 60


def test_without_an_earlier_reading_passed_the_check_stays_pending(kafka):
    settings = load_settings({})
    runner = SimpleNamespace(table_by_topic=TABLES)
    checkpoints = FoldCheckpoints()
    checkpoints.add({(SRC, 0): 800}, {(SNAP, 0): 2600}, at=time.monotonic() - 20)
    _now(kafka, settings, worker=1000, end=3000, sink_src=1200, sink_snap=2500)
    _, _, bound = sink_main.sink_committed(settings, runner, checkpoints)
    assert bound.pending == {f"{SNAP}[0]": 500}
    # ... and with none at all (a one-off call keeps only its own reading)
    _, _, bound = sink_main.sink_committed(settings, runner)
    assert bound.pending == {f"{SNAP}[0]": 500}


def test_a_sink_past_the_ends_of_now_checks_up_to_the_worker_of_now(kafka):
    settings = load_settings({})
    runner = SimpleNamespace(table_by_topic=TABLES)
    checkpoints = FoldCheckpoints()
    checkpoints.add({(SRC, 0): 800}, {(SNAP, 0): 2400}, at=time.monotonic() - 20)
    _now(kafka, settings, worker=1000, end=3000, sink_src=1200, sink_snap=3000)
    _, _, bound = sink_main.sink_committed(settings, runner, checkpoints)
    assert bound.pending == {} and bound.upto == {0: 1000} and bound.age_s == 0.0


def test_the_newest_passed_reading_wins_and_only_the_newest_few_are_kept():
    checkpoints = FoldCheckpoints(keep=3, spacing=0)
    t = time.monotonic()
    for i, end in enumerate([100, 200, 300, 400]):
        checkpoints.add({(SRC, 0): end // 10}, {(SNAP, 0): end}, at=t - 40 + i)
    assert checkpoints.passed({(SNAP, 0): 350})[1] == {(SRC, 0): 30}
    assert checkpoints.passed({(SNAP, 0): 150}) is None  # 100's reading was dropped
    assert checkpoints.passed({}) is None


def test_readings_closer_than_the_spacing_are_not_kept():
    checkpoints = FoldCheckpoints(keep=2, spacing=5)
    t = time.monotonic()
    checkpoints.add({(SRC, 0): 10}, {(SNAP, 0): 100}, at=t - 30)
    for i in range(10):  # a client polling every second
        checkpoints.add({(SRC, 0): 20 + i}, {(SNAP, 0): 200 + i}, at=t - 10 + i / 10)
    # the 30 s old reading is still there, next to the first of the burst
    assert checkpoints.passed({(SNAP, 0): 150})[1] == {(SRC, 0): 10}
    assert checkpoints.passed({(SNAP, 0): 205})[1] == {(SRC, 0): 20}


def test_offsets_going_down_drop_every_earlier_reading():
    checkpoints = FoldCheckpoints(spacing=0)
    t = time.monotonic()
    checkpoints.add({(SRC, 0): 500}, {(SNAP, 0): 900}, at=t - 20)
    # the outcome topic recreated: its ends start again from 0
    checkpoints.add({(SRC, 0): 520}, {(SNAP, 0): 30}, at=t - 10)
    assert checkpoints.passed({(SNAP, 0): 950})[1] == {(SRC, 0): 520}
    checkpoints.add({(SRC, 0): 0}, {(SNAP, 0): 40}, at=t)  # the worker group reset
    assert checkpoints.passed({(SNAP, 0): 35}) is None


def test_a_reading_missing_a_topic_is_not_kept_and_bounds_nothing(kafka):
    settings = load_settings({})
    runner = SimpleNamespace(table_by_topic=TABLES)
    checkpoints = FoldCheckpoints()
    _now(kafka, settings, worker=1000, end=3000, sink_src=1200, sink_snap=3000)
    kafka["errored"] = [SNAP]  # the snapshot topic has no leader (a broker restart)
    _, _, bound = sink_main.sink_committed(settings, runner, checkpoints)
    assert bound.not_read == [SNAP] and checkpoints.passed({}) is None
    from sinks.conservation import check_folded

    doc = check_folded(None, bound)  # answered before any query
    assert doc["checked"] is False and SNAP in doc["pending"]
    # An earlier complete reading the sink has passed bounds it instead.
    checkpoints.add({(SRC, 0): 800}, {(SNAP, 0): 2400}, at=time.monotonic() - 20)
    _, _, bound = sink_main.sink_committed(settings, runner, checkpoints)
    assert bound.not_read == [] and bound.upto == {0: 800}


def test_an_outcome_topic_that_does_not_exist_holds_no_output_and_blocks_nothing(kafka):
    """Never created (no anomaly yet, topics made on first produce): no ends, nothing
    to wait for; the check runs, and the reading is kept."""
    settings = load_settings({})
    runner = SimpleNamespace(table_by_topic={**TABLES, "ledger.anomalies": "anomaly_events"})
    checkpoints = FoldCheckpoints()
    _now(kafka, settings, worker=1000, end=3000, sink_src=1200, sink_snap=3000)
    _, _, bound = sink_main.sink_committed(settings, runner, checkpoints)
    assert bound.not_read == [] and bound.pending == {} and bound.upto == {0: 1000}
    assert checkpoints.passed({(SNAP, 0): 3000}) is not None
