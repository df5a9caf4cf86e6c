"""A second worker joins while the first folds a backlog: nothing lost, nothing doubled.

Real broker, two real worker processes in one group, one sink. The rebalance
moves partitions while the first worker has batches in flight; a batch folded
across a rebalance stores no state (its records are read again by whoever
holds the partition after it). Checked:

- every account's live state (asked of either worker, which forwards to the
  owner) equals `twinledger fold` of the same events, and every table holds
  exactly the rows the offline fold expects;
- after both workers are stopped and their local stores deleted, the states
  restored from the changelog topics alone equal the fold again. A state
  written late by a worker that had lost the partition landed among the new
  owner's writes; restored, it brought an older state back or one that could
  not be read (docs/operations.md, "A batch folded across a rebalance").
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bench.soak import worker_events_by_status
from streams.procs import Child
from tests.integration.live_state import expected_rows, offline_reference, worker_state_mismatches
from tests.integration.pipeline import Pipeline, free_port, synth_venue_events

pytestmark = pytest.mark.integration


def _get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(  # noqa: S310 - loopback URL of our own child
                f"http://127.0.0.1:{port}{path}", timeout=15) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, {}


def _view(port: int):
    def view(account: str) -> dict[str, Any] | None:
        status, doc = _get(port, f"/accounts/{urllib.parse.quote(account, safe='')}")
        return dict(doc) if status == 200 else None
    return view


def _wait(what: str, ok, children: list[Child], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        for child in children:
            assert child.alive(), f"{child.command} died:\n{child.log_tail(60)}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _ready(ports: tuple[int, ...]) -> bool:
    return all(_get(port, "/ready")[0] == 200 for port in ports)


def _restored_from_changelogs_equal_the_fold(pipeline: Pipeline, ref: Any, first: Child,
                                            second: Child, second_port: int) -> None:
    """Stop both workers, delete their local stores and start them again: the states,
    restored from the changelog topics alone, equal the offline fold."""
    for child in (second, first):
        if child.alive():
            child.stop(timeout=30)
    for store in (pipeline.root / "data" / "faust",
                  Path(second.env["TWINLEDGER_DATA_DIR"]) / "faust"):
        assert store.exists(), store
        shutil.rmtree(store)
    ports = (pipeline.settings.worker_web_port, second_port)
    first = pipeline.start_worker()
    again = pipeline.start_another_worker("second-again", second_port)
    try:
        _wait("both workers ready after their stores were deleted", lambda: _ready(ports),
              [first, again])
        assert worker_state_mismatches(ref, _view(ports[0])) == []
    finally:
        again.stop(timeout=30)


def test_a_worker_joining_mid_backlog_loses_and_doubles_nothing(pipeline: Pipeline):
    events = synth_venue_events(12_000, 60, seed=21)
    ref = offline_reference(events)
    first_port = pipeline.settings.worker_web_port
    second_port = free_port()
    pipeline.start_sink()
    first = pipeline.start_worker()
    pipeline.produce(events[: len(events) // 2])
    _wait("the first worker to fold part of the backlog",
          lambda: _get(first_port, "/progress")[1].get("events_processed", 0) >= 1_000,
          [first])
    second = pipeline.start_another_worker("second", second_port)
    try:
        pipeline.produce(events[len(events) // 2:])
        counts = pipeline.wait_for(expected_rows(ref), timeout=300)
        for table, n in expected_rows(ref).items():
            assert counts[table]["count"] == counts[table]["uniq"] == n, (table, counts)
        _wait("both workers ready", lambda: _ready((first_port, second_port)),
              [first, second])
        statuses = worker_events_by_status([first_port, second_port])
        print("worker events by status:", statuses)
        assert statuses.get("state_unreadable", 0) == 0, statuses
        assert worker_state_mismatches(ref, _view(first_port)) == []
        assert worker_state_mismatches(ref, _view(second_port)) == []
    finally:
        if second.alive():
            second.stop(timeout=30)
    _restored_from_changelogs_equal_the_fold(pipeline, ref, first, second, second_port)


def test_a_batch_a_rebalance_overtakes_stores_no_state_over_the_new_owner(pipeline: Pipeline):
    """The first worker's batch pauses between its sends and its state write (a fault
    injected for the test) while a second worker joins, takes half the partitions and
    folds on. The paused batch then must not store its states: on the partitions that
    moved, they would land in the changelog after the new owner's newer ones, and the
    states restored from the changelogs would go back to the paused batch's."""
    events = synth_venue_events(12_000, 60, seed=22)
    marked = 1_500  # early: the accounts of the moved partitions fold much more after it
    events[marked] = dict(events[marked], event_id=f"{events[marked]['event_id']}-pause-here")
    ref = offline_reference(events)
    first_port, second_port = pipeline.settings.worker_web_port, free_port()
    pipeline.start_sink()
    pipeline.env.update({"TWINLEDGER_FAULT_PAUSE_ON": "pause-here",
                         "TWINLEDGER_FAULT_PAUSE_SECONDS": "30"})
    first = pipeline.start_worker()
    for key in ("TWINLEDGER_FAULT_PAUSE_ON", "TWINLEDGER_FAULT_PAUSE_SECONDS"):
        del pipeline.env[key]  # the second worker and the restarts run without the fault
    pipeline.produce(events)
    _wait("the first worker to pause its batch",
          lambda: "fault injection: the batch from" in first.log_tail(400), [first])
    second = pipeline.start_another_worker("second", second_port)
    try:
        pipeline.wait_for(expected_rows(ref), timeout=300)
        _wait("both workers ready and the paused batch over",
              lambda: _ready((first_port, second_port))
              and worker_events_by_status([first_port]).get("not_stored_rebalance", 0) > 0,
              [first, second], timeout=120)
        assert worker_state_mismatches(ref, _view(first_port)) == []
    finally:
        if second.alive():
            second.stop(timeout=30)
    _restored_from_changelogs_equal_the_fold(pipeline, ref, first, second, second_port)
