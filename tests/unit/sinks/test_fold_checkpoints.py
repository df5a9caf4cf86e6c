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


def _bound(kafka, sink_snap, checkpoints=None, tables=TABLES):
    """The fold check's bound when, now, the worker has committed 1,000, the snapshot
    topic ends at 3,000 and the sink has committed ``sink_snap`` on it (1,200 on the
    source)."""
    settings = load_settings({})
    kafka["groups"] = {settings.app_id: {(SRC, 0): 1000},
                       settings.sink_group: {(SRC, 0): 1200, (SNAP, 0): sink_snap}}
    kafka["ends"] = {(SNAP, 0): 3000}
    runner = SimpleNamespace(table_by_topic=tables)
    return sink_main.sink_committed(settings, runner, checkpoints)[2]


def _earlier(snap_end):
    """Readings holding one of 20 s ago: the worker at 800, the snapshot topic's end."""
    checkpoints = FoldCheckpoints()
    checkpoints.add({(SRC, 0): 800}, {(SNAP, 0): snap_end}, at=time.monotonic() - 20)
    return checkpoints


def test_a_sink_behind_the_ends_of_now_is_checked_up_to_an_earlier_reading_it_passed(kafka):
    # 20 s ago the snapshot topic ended at 2,400; the sink has committed 2,500 of 3,000.
    bound = _bound(kafka, sink_snap=2500, checkpoints=_earlier(2400))
    assert bound.pending == {} and bound.upto == {0: 800}
    assert 19 < bound.age_s < 60


def test_without_an_earlier_reading_passed_the_check_stays_pending(kafka):
    bound = _bound(kafka, sink_snap=2500, checkpoints=_earlier(2600))
    assert bound.pending == {f"{SNAP}[0]": 500}
    # ... and with none at all (a one-off call keeps only its own reading)
    assert _bound(kafka, sink_snap=2500).pending == {f"{SNAP}[0]": 500}


def test_a_sink_past_the_ends_of_now_checks_up_to_the_worker_of_now(kafka):
    bound = _bound(kafka, sink_snap=3000, checkpoints=_earlier(2400))
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
    from sinks.conservation import check_folded

    checkpoints = FoldCheckpoints()
    kafka["errored"] = [SNAP]  # the snapshot topic has no leader (a broker restart)
    bound = _bound(kafka, sink_snap=3000, checkpoints=checkpoints)
    assert bound.not_read == [SNAP] and checkpoints.passed({}) is None
    doc = check_folded(None, bound)  # answered before any query
    assert doc["checked"] is False and SNAP in doc["pending"]
    # An earlier complete reading the sink has passed bounds it instead.
    bound = _bound(kafka, sink_snap=3000, checkpoints=_earlier(2400))
    assert bound.not_read == [] and bound.upto == {0: 800}


def test_an_outcome_topic_that_does_not_exist_holds_no_output_and_blocks_nothing(kafka):
    """Never created (no anomaly yet, topics made on first produce): no ends, nothing
    to wait for; the check runs, and the reading is kept."""
    checkpoints = FoldCheckpoints()
    bound = _bound(kafka, sink_snap=3000, checkpoints=checkpoints,
                   tables={**TABLES, "ledger.anomalies": "anomaly_events"})
    assert bound.not_read == [] and bound.pending == {} and bound.upto == {0: 1000}
    assert checkpoints.passed({(SNAP, 0): 3000}) is not None
