"""Exactly-once on a real broker: crash the sink mid-batch, restart, count WITHOUT FINAL.

Topics carry what production carries: logical events, the same events again
at later offsets (a worker re-sending its outbox, a gateway re-sending a
frame) and garbage bytes. Whatever step the sink dies at, after a restart
``count() = uniqExact(event_id)`` = the number of logical events and every
garbage record is in ``dead_letters`` under ``<topic>:<partition>:<offset>``.

Each test uses its own topic prefix, consumer group and chDB directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from sinks.backend import ClickHouseBackend, chdb_url
from sinks.batching import Batch
from sinks.main import verify
from sinks.migrate import apply_ddl
from sinks.runner import SinkRunner, sink_topics
from streams.config import PROJECT_ROOT, Settings, load_settings
from tests.unit.sinks import samples

pytestmark = pytest.mark.integration

PARTITIONS = 3


@pytest.fixture
def bootstrap(request: pytest.FixtureRequest) -> str:
    """The shared ``kafka_bootstrap`` fixture when present, else KAFKA_BOOTSTRAP_SERVERS."""
    try:
        servers = str(request.getfixturevalue("kafka_bootstrap"))
    except pytest.FixtureLookupError:
        servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
        if not servers:
            pytest.skip("no Kafka broker: set KAFKA_BOOTSTRAP_SERVERS or provide kafka_bootstrap")
    try:
        AdminClient({"bootstrap.servers": servers}).list_topics(timeout=10)
    except Exception as exc:
        pytest.skip(f"Kafka at {servers} does not answer: {exc}")
    return servers


@dataclass
class Env:
    env: dict[str, str]
    settings: Settings
    chdb: Path
    garbage: list[str] = field(default_factory=list)  # dead-letter event ids expected
    logical: dict[str, int] = field(default_factory=dict)  # table -> logical events


@pytest.fixture
def sink_env(bootstrap: str, tmp_path: Path) -> Iterator[Env]:
    tag = uuid.uuid4().hex[:10]
    chdb = tmp_path / "chdb"
    env = dict(os.environ)
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TWINLEDGER_TOPIC_PREFIX": f"tl-eo-{tag}.",
        "TWINLEDGER_SINK_GROUP": f"tl-eo-{tag}-sink",
        "TWINLEDGER_DATA_DIR": str(tmp_path / "data"),
        "TWINLEDGER_CHDB_PATH": str(chdb),
        "TWINLEDGER_SINK_BATCH_ROWS": "50",
        "TWINLEDGER_SINK_BATCH_SECONDS": "0.3",
        "TWINLEDGER_SINK_HTTP_HOST": "127.0.0.1",
    })
    env.pop("CLICKHOUSE_URL", None)
    settings = load_settings(env)
    topics = sorted(sink_topics(settings))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics(
            [NewTopic(t, PARTITIONS, 1) for t in topics], operation_timeout=30).values():
        fut.result()
    try:
        yield Env(env, settings, chdb)
    finally:
        for fut in admin.delete_topics(topics, operation_timeout=30).values():
            try:
                fut.result()
            except Exception:  # noqa: S110 - cleanup of unique names; the test result stands
                pass


def produce(e: Env, events: int) -> None:
    """``events`` venue events and snapshots, a fifth of them re-sent later, 1% garbage."""
    venue = e.settings.topic("venue.events")
    snaps = e.settings.topic("ledger.snapshots")
    dlq = e.settings.topic("ledger.deadletter")
    producer = Producer({"bootstrap.servers": e.settings.kafka_bootstrap, "linger.ms": 5})
    garbage: list[str] = []

    def remember(err: Any, msg: Any) -> None:
        assert err is None, err
        garbage.append(f"{msg.topic()}:{msg.partition()}:{msg.offset()}")

    encoded: list[tuple[str, bytes, bytes]] = []
    for i in range(events):
        account = f"acc-{i % 7}"
        encoded.append((venue, account.encode(), samples.wire(
            "VenueEvent", samples.fill_event(f"f-{i}", account))))
        encoded.append((snaps, account.encode(), samples.wire(
            "AccountSnapshot", samples.snapshot(f"f-{i}", account))))
    for topic, key, value in encoded:
        producer.produce(topic, key=key, value=value)
    for topic, key, value in encoded[::5]:  # re-sent: same record, later offset
        producer.produce(topic, key=key, value=value)
    for i in range(max(1, events // 100)):
        producer.produce(venue, key=b"acc-1", value=b"\x00\x00\x00\x00\x09garbage-%d" % i,
                         on_delivery=remember)
        producer.produce(snaps, key=b"\xff\xfe", value=b"{not avro}", on_delivery=remember)
    producer.produce(dlq, key=b"acc-1", value=b"not a DeadLetter", on_delivery=remember)
    for i in range(3):
        producer.produce(dlq, key=b"acc-1", value=samples.wire(
            "DeadLetter", samples.dead_letter(f"upstream:0:{i}")))
    assert producer.flush(30) == 0
    e.garbage = garbage
    e.logical = {"venue_events": events, "account_snapshots": events,
                 "dead_letters": len(garbage) + 3}


def assert_exact(e: Env, verdict: dict[str, Any]) -> None:
    for table, n in e.logical.items():
        assert verdict["tables"][table] == {"count": n, "uniq": n, "match": True}, table
    assert verdict["ok"] is True


def dead_letter_ids(backend: ClickHouseBackend) -> set[str]:
    return {r[0] for r in backend.query("SELECT event_id FROM dead_letters")}


class Crash(Exception):
    """Stands for the sink process dying at that point."""


def new_runner(e: Env, backend: ClickHouseBackend, **kw: Any) -> SinkRunner:
    return SinkRunner(e.settings, backend, samples.codec(), **kw)


@pytest.mark.parametrize("stage", ["before_recorded", "inserted", "after_recorded"])
def test_crash_mid_batch_then_restart_is_exact(sink_env: Env, stage: str) -> None:
    e = sink_env
    produce(e, 600)
    backend = ClickHouseBackend(chdb_url(e.chdb), e.settings.clickhouse_database)
    apply_ddl(backend, backend.database)
    seen: list[Batch] = []

    def die_on_third_batch(at: str, batch: Batch) -> None:
        if at == stage:
            seen.append(batch)
            if len(seen) == 3:
                raise Crash(f"{at} {batch.token}")

    first = new_runner(e, backend, hook=die_on_third_batch)
    with pytest.raises(Crash):
        first.run_until_idle(idle_seconds=5, timeout=120)
    crashed = seen[-1]
    first.abort()          # no flush, no commit: what a dead process leaves
    backend.close()        # releases the chDB directory like process exit does

    backend = ClickHouseBackend(chdb_url(e.chdb), e.settings.clickhouse_database)
    apply_ddl(backend, backend.database)
    states = new_runner(e, backend, consumer=object()).read_states()
    state = states[(crashed.topic, crashed.partition)]
    # Batches of other partitions due in the same poll share the BEFORE write: the
    # whole group the crash interrupted is rebuilt.
    before = [k for k, s in states.items() if s.state == "BEFORE"]
    if stage == "after_recorded":
        assert (state.state, state.first, state.last) == ("AFTER", crashed.first, crashed.last)
    else:
        assert (state.state, state.first, state.last) == ("BEFORE", crashed.first, crashed.last)

    second = new_runner(e, backend)
    stats = second.run_until_idle(idle_seconds=3, timeout=120)
    second.close()
    assert stats["ranges_rebuilt"] == len(before)
    if stage == "after_recorded":
        assert before == []
    else:
        assert (crashed.topic, crashed.partition) in before
    assert_exact(e, verify(backend))
    assert set(e.garbage) <= dead_letter_ids(backend)
    assert len(dead_letter_ids(backend)) == len(e.garbage) + 3  # + the upstream DeadLetters

    # Replay everything from the earliest offset under a fresh group: nothing changes.
    replay_settings = load_settings({**e.env, "TWINLEDGER_SINK_GROUP": f"{e.settings.sink_group}-r"})
    replay = SinkRunner(replay_settings, backend, samples.codec())
    replay_stats = replay.run_until_idle(idle_seconds=3, timeout=120)
    replay.close()
    assert replay_stats["inserted"] == 0 and replay_stats["consumed"] > 0
    assert_exact(e, verify(backend))
    backend.close()


def _sink_process(e: Env, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sinks.main", "--log-level", "WARNING", *args],
        env=e.env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _endpoint(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "read-only endpoint" in line:
            return line.rsplit(" ", 1)[1].strip()
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"sink did not start (rc={proc.poll()})")


def _counts(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/counts", timeout=10) as resp:  # noqa: S310
        return dict(json.loads(resp.read()))


@pytest.mark.slow
def test_sigkill_during_inserts_then_restart_is_exact(sink_env: Env) -> None:
    e = sink_env
    produce(e, 6000)
    total = e.logical["venue_events"]
    proc = _sink_process(e, "--http-port", "0")
    try:
        url = _endpoint(proc)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            n = _counts(url)["tables"]["venue_events"]["count"]
            if n > 0:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = n
    assert 0 < killed_at < total, "the kill must land while the sink is writing"

    restart = _sink_process(e, "--no-http", "--until-idle", "3", "--verify")
    out, err = restart.communicate(timeout=300)
    assert restart.returncode == 0, err
    assert_exact(e, json.loads(out.strip().splitlines()[-1]))
    backend = ClickHouseBackend(chdb_url(e.chdb), e.settings.clickhouse_database)
    try:
        assert set(e.garbage) <= dead_letter_ids(backend)
    finally:
        backend.close()


def test_rebalance_between_two_sinks_is_exact(sink_env: Env) -> None:
    """A second sink joins mid-stream: revoked partitions flush, nothing is lost or doubled."""
    e = sink_env
    produce(e, 900)
    backend = ClickHouseBackend(chdb_url(e.chdb), e.settings.clickhouse_database)
    apply_ddl(backend, backend.database)
    try:
        a = new_runner(e, backend)
        deadline = time.monotonic() + 60
        while a.stats["batches"] < 3 and time.monotonic() < deadline:
            a.poll_once(0.2)
        assert a.stats["batches"] >= 3
        b = new_runner(e, backend)
        # One thread drives both members: each must keep polling for the rebalance to finish.
        idle_since = time.monotonic()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            moved = a.poll_once(0.1) + b.poll_once(0.1)
            buffered = any(buf.records for r in (a, b) for buf in r.buffers.values())
            if moved or buffered or not (a.buffers and b.buffers):
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > 3:
                break
        assert a.buffers and b.buffers, "both members must own partitions after the rebalance"
        assert b.stats["inserted"] > 0
        a.close()
        b.close()
        assert_exact(e, verify(backend))
        assert set(e.garbage) <= dead_letter_ids(backend)
    finally:
        backend.close()


def test_sigterm_stops_after_flushing_and_committing(sink_env: Env) -> None:
    e = sink_env
    produce(e, 300)
    proc = _sink_process(e, "--http-port", "0")
    try:
        url = _endpoint(proc)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            tables = _counts(url)["tables"]
            if all(tables[t]["count"] == n for t, n in e.logical.items()):
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    backend = ClickHouseBackend(chdb_url(e.chdb), e.settings.clickhouse_database)
    try:
        assert_exact(e, verify(backend))
        states = new_runner(e, backend, consumer=object()).read_states()
        assert states and {s.state for s in states.values()} == {"AFTER"}
    finally:
        backend.close()
