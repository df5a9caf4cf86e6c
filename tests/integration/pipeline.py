"""Test harness: one isolated twinledger pipeline (topics, worker, sink) on a real broker.

Each Pipeline gets its own topic prefix, consumer groups, data directory and
ports, so tests never see each other's records. Worker and sink run as real
child processes (``twinledger worker`` / ``twinledger sink``), so a test can
SIGKILL them like a crash would.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from streams.catalogue import BY_TABLE
from streams.config import Settings, load_settings
from streams.infra.kafka_admin import delete_records_before, watermarks
from streams.ledger.synth import generate_events
from streams.ops import SinkClient, create_topics
from streams.procs import Child, wait_until
from streams.produce import Producer

#: Every table the sink fills (the catalogue of outputs).
TABLES = tuple(BY_TABLE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def synth_venue_events(n: int, accounts: int, seed: int) -> list[dict[str, Any]]:
    """Synthetic events of accounts only (no marks): what lands on venue.events."""
    return [e for e in generate_events(n, accounts, seed=seed) if e["account_id"]]


class Pipeline:
    def __init__(self, bootstrap: str, root: Path, name: str = "t") -> None:
        tag = f"{name}-{uuid.uuid4().hex[:8]}"
        self.root = root
        self.env = dict(os.environ)
        self.env.update({
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "TWINLEDGER_TOPIC_PREFIX": f"{tag}.",
            "TWINLEDGER_APP_ID": f"tl-{tag}",
            "TWINLEDGER_SINK_GROUP": f"tl-{tag}-sink",
            "TWINLEDGER_DATA_DIR": str(root / "data"),
            "TWINLEDGER_CHDB_PATH": str(root / "data" / "chdb"),
            "TWINLEDGER_SINK_HTTP_PORT": str(free_port()),
            "TWINLEDGER_WORKER_WEB_PORT": str(free_port()),
            # Shorter than the default (1.0) so tests wait less; the environment wins
            # (the bench measures batch times with it).
            "TWINLEDGER_SINK_BATCH_SECONDS": os.environ.get("TWINLEDGER_SINK_BATCH_SECONDS",
                                                            "0.5"),
            # Synthetic events carry fixed past timestamps: no TTL merge may drop a
            # portfolio snapshot the counts expect.
            "TWINLEDGER_SNAPSHOT_RETENTION_DAYS": "0",
        })
        self.settings: Settings = load_settings(self.env)
        self.client = SinkClient(self.settings, timeout=20)
        self.worker: Child | None = None
        self.sink: Child | None = None
        self._producer: Producer | None = None
        self._starts = 0
        #: every fold-format event sent through send_event, in order (the offline reference)
        self.produced: list[dict[str, Any]] = []

    # -- lifecycle -------------------------------------------------------------
    def create_topics(self) -> dict[str, int]:
        return create_topics(self.settings)

    def delete_topics(self) -> None:
        """Every topic this pipeline made (its prefix, its app id's changelogs).

        Each partition costs the broker heap: a whole test run keeping every
        pipeline's topics (some 60 partitions each) ran the local broker out of
        its 512 MB after a day of runs.
        """
        from confluent_kafka.admin import AdminClient

        from streams.infra.kafka_admin import delete_topics

        bootstrap = self.settings.kafka_bootstrap
        listed = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
        prefix, app = self.settings.topic_prefix, self.settings.app_id
        assert prefix and app, "a pipeline's topics are told apart by their prefix"
        mine = [t for t in listed if t.startswith(prefix) or t.startswith(f"{app}-")]
        delete_topics(bootstrap, mine)

    def start_worker(self) -> Child:
        self._starts += 1
        self.worker = Child(["worker", "--loglevel", os.environ.get("TL_WORKER_LOGLEVEL", "warning")], self.env, self.root / "logs" / f"worker-{self._starts}.log")
        return self.worker

    def start_another_worker(self, name: str, port: int | None = None) -> Child:
        """One more worker in the same group, with its own web port and data directory."""
        env = dict(self.env)
        env.update({"TWINLEDGER_WORKER_WEB_PORT": str(port or free_port()),
                    "TWINLEDGER_DATA_DIR": str(self.root / f"data-{name}")})
        return Child(["worker", "--loglevel", os.environ.get("TL_WORKER_LOGLEVEL", "warning")],
                     env, self.root / "logs" / f"worker-{name}.log")

    def start_sink(self) -> Child:
        self._starts += 1
        self.sink = Child(["sink"], self.env, self.root / "logs" / f"sink-{self._starts}.log")
        sink = self.sink
        wait_until(lambda: self._alive(sink) and self.client.healthy(), 120, what="sink endpoint")
        return sink

    def stop(self) -> None:
        for child in (self.worker, self.sink):
            if child is not None:
                child.stop()

    def _alive(self, child: Child) -> bool:
        if not child.alive():
            raise AssertionError(f"{child.command} died:\n{child.log_tail(60)}")
        return True

    def logs(self) -> str:
        out = []
        for child in (self.worker, self.sink):
            if child is not None:
                out.append(f"--- {child.command} ---\n{child.log_tail(60)}")
        return "\n".join(out)

    # -- data ------------------------------------------------------------------
    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self.settings)
        return self._producer

    def produce(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.send_event(event)
        self.producer.flush()

    def send_event(self, event: dict[str, Any]) -> None:
        self.producer.send_event(event)
        self.produced.append(event)

    def source_marks(self) -> dict[tuple[str, int], tuple[int, int]]:
        """(log start, end) of every venue.events partition."""
        return watermarks(self.settings.kafka_bootstrap, [self.settings.topic("venue.events")])

    def produce_then_delete_unread(self, events: list[dict[str, Any]], keep: int,
                                   pause: float = 0.0
                                   ) -> tuple[dict[tuple[str, int], tuple[int, int]],
                                              dict[tuple[str, int], int]]:
        """Produce ``events``, then delete all but the last ``keep`` records of every
        venue.events partition that got records past its end before: records a
        stopped consumer has not read, deleted as a time retention would.

        Waits ``pause`` seconds between producing and deleting. Returns the
        watermarks before producing and the delete-before offset per partition.
        """
        before = self.source_marks()
        self.produce(events)
        after = self.source_marks()
        cut = {tp: hi - keep for tp, (_, hi) in after.items() if hi - keep > before[tp][1]}
        assert cut, "no partition got enough new records to delete some"
        time.sleep(pause)
        delete_records_before(self.settings.kafka_bootstrap, cut)
        return before, cut

    def produce_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.producer.send_raw(topic, key, value, None)

    def counts(self) -> dict[str, dict[str, int]]:
        """``/counts`` per table: count, uniq and (balances) versions, keys, final."""
        doc = self.client.counts()
        tables = doc.get("tables", doc)
        return {t: {k: int(v) for k, v in tables[t].items() if k != "match"}
                for t in TABLES if t in tables}

    def read(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """Rows of a named read query of the sink (``sinks.readqueries``); no free SQL."""
        return self.client.read(name, **params)

    def wait_for(self, expected: dict[str, int], timeout: float = 300.0) -> dict[str, dict[str, int]]:
        """Wait until each table holds at least the expected rows, then settle briefly."""
        deadline = time.monotonic() + timeout
        counts: dict[str, dict[str, int]] = {}
        while time.monotonic() < deadline:
            for child in (self.worker, self.sink):
                if child is not None:
                    self._alive(child)
            counts = self.counts()
            if all(counts.get(t, {}).get("count", 0) >= n for t, n in expected.items()):
                time.sleep(2.0)  # a late duplicate would show up now
                return self.counts()
            time.sleep(0.5)
        raise AssertionError(f"timed out: expected {expected}, have {counts}\n{self.logs()}")
