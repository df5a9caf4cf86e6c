"""In-memory stand-ins for the broker and ClickHouse, for unit tests of the runner only.

Integration tests use a real Kafka broker and the real ClickHouse engine; these
fakes only let the unit tests check the order of the flow's steps.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import TopicPartition

from sinks.backend import Backend
from sinks.exceptions import BackendError


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None,
                 value: bytes | None) -> None:
        self._t, self._p, self._o, self._k, self._v = topic, partition, offset, key, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes | None:
        return self._v

    def timestamp(self) -> tuple[int, int]:
        return (1, 1714564800000 + self._o)


class FakeBroker:
    """Partitions as lists and the committed offsets of one group."""

    def __init__(self) -> None:
        self.logs: dict[tuple[str, int], list[FakeMessage]] = {}
        self.committed: dict[tuple[str, int], int] = {}
        self.events: list[tuple[str, Any]] = []  # shared with FakeBackend: step order

    def produce(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> int:
        log = self.logs.setdefault((topic, partition), [])
        log.append(FakeMessage(topic, partition, len(log), key, value))
        return len(log) - 1


class FakeConsumer:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.positions: dict[tuple[str, int], int] = {}
        self._on_assign: Callable[..., None] | None = None
        self.closed = False

    def subscribe(self, topics: list[str], on_assign: Callable[..., None], **_: Any) -> None:
        self._topics = topics
        self._on_assign = on_assign
        self._assigned = False

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        if not self._assigned:
            self._assigned = True
            tps = [TopicPartition(t, p) for (t, p) in sorted(self.broker.logs) if t in self._topics]
            for tp in tps:
                self.positions[(tp.topic, tp.partition)] = self.broker.committed.get(
                    (tp.topic, tp.partition), 0)
            assert self._on_assign is not None
            self._on_assign(self, tps)
        out: list[FakeMessage] = []
        for key, pos in sorted(self.positions.items()):
            log = self.broker.logs[key]
            take = log[pos:pos + max(0, num_messages - len(out))]
            out.extend(take)
            self.positions[key] = pos + len(take)
        return out

    def commit(self, offsets: Sequence[TopicPartition], asynchronous: bool) -> None:
        assert asynchronous is False
        for tp in offsets:
            self.broker.committed[(tp.topic, tp.partition)] = tp.offset
            self.broker.events.append(("commit", (tp.topic, tp.partition, tp.offset)))

    def close(self) -> None:
        self.closed = True


_FROM = re.compile(r"FROM (\w+)\.(\w+)")


class FakeBackend(Backend):
    """Understands exactly the statements the runner sends, by their parameters."""

    kind = "fake"

    def __init__(self, broker: FakeBroker, database: str = "twinledger") -> None:
        self.database = database
        self.broker = broker
        self.rows: dict[str, list[tuple[Any, ...]]] = {}
        self.tokens: dict[str, set[str]] = {}
        self.ranges: list[dict[str, Any]] = []
        self.fail_inserts = 0

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        if "sink_ranges" in sql and sql.startswith("INSERT") and params is not None:
            # One row per element of the parallel arrays t, p, f, l, s, v (one per batch).
            assert len({len(params[k]) for k in "tpflsv"}) == 1, params
            for t, p, f, last, s, v in zip(*(params[k] for k in "tpflsv"), strict=True):
                self.ranges.append({"g": params["g"], "t": t, "p": p, "f": f, "l": last,
                                    "s": s, "v": v})
                self.broker.events.append(("state", (s, f, last)))

    def query(self, sql: str, params: Mapping[str, Any] | None = None,
              settings: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        p = dict(params or {})
        if "argMax(first_offset" in sql:
            latest: dict[tuple[str, int], dict[str, Any]] = {}
            for r in self.ranges:
                if r["g"] == p["g"]:
                    k = (r["t"], r["p"])
                    if k not in latest or r["v"] > latest[k]["v"]:
                        latest[k] = r
            return [(t, part, r["f"], r["l"], r["s"], r["v"]) for (t, part), r in latest.items()]
        m = _FROM.search(sql)
        assert m is not None, sql
        table = m.group(2)
        accounts, ids = set(p["a"]), set(p["e"])
        # (account_id, event_id, kafka_topic, kafka_partition, kafka_offset): the
        # runner appends the Kafka coordinates last on every event row.
        return [(r[0], r[1], *r[-3:]) for r in self.rows.get(table, [])
                if r[0] in accounts and r[1] in ids]

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
               dedup_token: str) -> None:
        if self.fail_inserts:
            self.fail_inserts -= 1
            raise BackendError("simulated: connection reset")
        self.broker.events.append(("insert", (table, dedup_token, len(rows))))
        seen = self.tokens.setdefault(table, set())
        if dedup_token in seen:
            return
        seen.add(dedup_token)
        self.rows.setdefault(table, []).extend(tuple(r) for r in rows)

    def use_database(self) -> None:
        return None

    def close(self) -> None:
        return None
