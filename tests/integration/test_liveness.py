"""The worker never stalls silently and never loses silently (real broker, real worker process).

- records deleted under the worker (delete-records, as a retention does) are
  reported by topic, partition and offsets, and folding goes on after them;
- an agent that hangs makes /ready and /live answer 503 and the process exit
  with code 70 after the grace, so a supervisor restarts it;
- a worker killed with SIGKILL folds again within 15 s of its restart
  (static group membership);
- `twinledger topics` restores a topic's retention that an operator changed.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from streams.infra.kafka_admin import (
    align_topic_configs,
    describe_topic_configs,
    watermarks,
)
from streams.ops import create_topics
from streams.procs import wait_until
from tests.integration.pipeline import Pipeline, synth_venue_events

pytestmark = pytest.mark.integration


def _get(pipeline: Pipeline, path: str) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{pipeline.settings.worker_web_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback test URL
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, ConnectionError):  # not listening yet
        return 0, {}


def _progress(pipeline: Pipeline) -> dict[str, Any]:
    try:
        return _get(pipeline, "/progress")[1]
    except (OSError, ValueError):
        return {}


def _wait(pred: Any, timeout: float, what: str, pipeline: Pipeline) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if pred():
            return time.monotonic() - start
        if pipeline.worker is not None and not pipeline.worker.alive():
            raise AssertionError(f"worker died waiting for {what}:\n{pipeline.logs()}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{pipeline.logs()}")


def test_records_deleted_under_the_worker_are_reported_and_folding_goes_on(pipeline: Pipeline):
    first = synth_venue_events(400, 10, seed=1)
    pipeline.start_worker()
    pipeline.produce(first)
    _wait(lambda: _progress(pipeline).get("events_processed", 0) >= len(first), 120,
          "the first events", pipeline)
    # Worker stopped (its offsets committed); records land and an operator deletes
    # most of them before it comes back, as a time retention would.
    assert pipeline.worker is not None
    pipeline.worker.stop()
    source = pipeline.settings.topic("venue.events")
    # All but the last 5 records of every partition with records the worker has not read.
    folded, cut = pipeline.produce_then_delete_unread(synth_venue_events(600, 10, seed=2), keep=5)
    third = synth_venue_events(300, 10, seed=3)
    pipeline.start_worker()
    pipeline.produce(third)

    def reported() -> bool:
        gaps = _progress(pipeline).get("gaps") or []
        return {g["partition"] for g in gaps} >= {p for (_, p) in cut}

    _wait(reported, 120, "every deleted range reported", pipeline)
    gaps = _progress(pipeline)["gaps"]
    for (_, partition), start in cut.items():
        mine = [g for g in gaps if g["partition"] == partition]
        assert mine and mine[-1]["last"] == start - 1, (partition, mine)
        assert all(g["topic"] == source for g in mine)
    assert "RECORDS NEVER FOLDED" in pipeline.worker.log_path.read_text()
    # The events after the deleted ones are folded: the worker did not stop.
    # (events_processed counts this worker process only)
    due = sum(hi - max(folded[tp][1], cut.get(tp, 0)) for tp, (_, hi) in
              watermarks(pipeline.settings.kafka_bootstrap, [source]).items())
    assert due >= len(third)
    _wait(lambda: _progress(pipeline).get("events_processed", 0) >= due, 120,
          "every record left after the deleted ones", pipeline)
    _wait(lambda: _progress(pipeline).get("lag") == 0, 60, "lag 0 after the gap", pipeline)
    metrics = urllib.request.urlopen(  # noqa: S310 - loopback test URL
        f"http://127.0.0.1:{pipeline.settings.worker_web_port}/metrics/prometheus",
        timeout=5).read().decode()
    assert "twinledger_worker_skipped_records_total" in metrics


def test_a_hung_agent_fails_readiness_then_exits_for_its_supervisor(pipeline: Pipeline):
    pipeline.env.update({"TWINLEDGER_FAULT_HANG_ON": "hang-here",
                         "TWINLEDGER_WORKER_STALL_SECONDS": "4",
                         "TWINLEDGER_WORKER_STALL_GRACE_SECONDS": "8"})
    events = synth_venue_events(200, 5, seed=4)
    events[100] = dict(events[100], event_id="hang-here-1")
    pipeline.start_worker()
    pipeline.produce(events)
    _wait(lambda: _get(pipeline, "/ready")[0] == 200 or
          _progress(pipeline).get("status") == "stalled", 120, "ready or stalled", pipeline)
    stalled_after = _wait(lambda: _progress(pipeline).get("status") == "stalled", 60,
                          "the watchdog to see the stall", pipeline)
    status, doc = _get(pipeline, "/ready")
    assert status == 503 and doc["ready"] is False and doc["lag"] > 0
    assert _get(pipeline, "/live")[0] == 503
    worker = pipeline.worker
    assert worker is not None
    deadline = time.monotonic() + 60
    while worker.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not worker.alive(), "the stalled worker did not exit"
    assert worker.proc.returncode == 70
    log = worker.log_path.read_text()
    assert "STALLED" in log and "exiting with code 70" in log
    # The report says where the agent waits (the await chain down to the hang)
    # and what the consumer holds for each partition.
    assert re.search(r"in process_batch -> app\.py:\d+ in _hang_forever", log), log[-3000:]
    assert "consumer state:" in log and "kafka_position" in log
    assert stalled_after < 60


def test_killed_worker_folds_again_within_15_seconds_of_its_restart(pipeline: Pipeline):
    first = synth_venue_events(300, 12, seed=5)
    pipeline.start_worker()
    pipeline.produce(first)
    _wait(lambda: _progress(pipeline).get("events_processed", 0) >= len(first), 120,
          "the first events", pipeline)
    time.sleep(3)  # let a commit land, as in production between crashes
    assert pipeline.worker is not None
    pipeline.worker.kill()
    second = synth_venue_events(300, 12, seed=6)
    pipeline.produce(second)
    pipeline.start_worker()
    started = time.monotonic()
    # Folding again = the new events are taken (a redelivered tail may come first).
    _wait(lambda: _progress(pipeline).get("events_processed", 0) >= len(second), 60,
          "the restarted worker to fold", pipeline)
    took = time.monotonic() - started
    print(f"killed worker folded again {took:.1f} s after its restart")
    assert took <= 15.0, f"restart to folding took {took:.1f} s"


def test_topics_restores_a_retention_an_operator_changed(pipeline: Pipeline):
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    bootstrap = pipeline.settings.kafka_bootstrap
    source = pipeline.settings.topic("venue.events")
    trades = pipeline.settings.topic("ledger.trades")
    configs = describe_topic_configs(bootstrap, [source, trades])
    assert configs[source]["retention.ms"] == "-1"
    assert configs[source]["retention.bytes"] == "-1"
    assert configs[trades]["message.timestamp.type"] == "LogAppendTime"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    change = ConfigResource(ResourceType.TOPIC, source, incremental_configs=[
        ConfigEntry("retention.ms", "259200000", incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([change]).values():
        future.result(30)

    def retention() -> str:
        return describe_topic_configs(bootstrap, [source])[source]["retention.ms"]

    # KRaft: the controller acknowledges the change before the broker's metadata
    # (which answers DescribeConfigs) shows it.
    wait_until(lambda: retention() == "259200000", 30, what="the broker to show the change")
    drift = align_topic_configs(bootstrap, {source: {"retention.ms": "-1"}}, fix=False)
    assert drift == {source: {"retention.ms": ("259200000", "-1")}}
    create_topics(pipeline.settings)  # what `twinledger topics` runs
    wait_until(lambda: retention() == "-1", 30, what="the retention restored")
