"""Client compatibility check of a Kafka broker: the evidence behind the version pin.

Owns nothing but this check. Runs, against BOOTSTRAP (default 127.0.0.1:39092):

* aiokafka: admin create_topics, producer (acks=all), consumer group with manual
  commits, a second consumer of the same group resuming from the committed offsets;
* confluent-kafka: AdminClient create/describe, Producer, Consumer group with commits,
  resume from the committed offsets;
* faust-streaming: a worker (subprocess) with an agent and a table, so Faust's own
  topic creation (changelog, leader topic), its consumer group and its producer run.

Every step is reported; any exception or ERROR-level client log fails the check.

    .venv/bin/python ops/kafka/client_compat.py [BOOTSTRAP]

To compare versions: start another version on another port and data dir, e.g.
``TWINLEDGER_KAFKA_VERSION=4.3.1 TWINLEDGER_KAFKA_PORT=39192
TWINLEDGER_DATA_DIR=/tmp/k4 ops/kafka/kafka.sh start`` and pass 127.0.0.1:39192.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

N = 30
PARTITIONS = 3


class _ErrorCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}")


async def check_aiokafka(bootstrap: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"compat.aiokafka.{uuid.uuid4().hex[:8]}"
    group = f"compat-aiokafka-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
        meta = await admin.describe_topics([topic])
        parts = len(meta[0]["partitions"])
        assert parts == PARTITIONS, f"describe_topics: {parts} partitions"
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(N):
            await producer.send(topic, key=f"k{i % 7}".encode(), value=str(i).encode())
        await producer.flush()
    finally:
        await producer.stop()

    async def consume(limit: int, commit: bool, total: int) -> list[int]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        got: list[int] = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < limit and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500, max_records=limit - len(got))
                for records in batch.values():
                    got.extend(int(r.value) for r in records)  # type: ignore[arg-type]
            if commit:
                await consumer.commit()
                committed = [
                    await consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)
                ]
                # committed offsets cover everything this group consumed so far
                assert sum(c or 0 for c in committed) == total, committed
        finally:
            await consumer.stop()
        return got

    first = await consume(10, commit=True, total=10)
    rest = await consume(N - len(first), commit=True, total=N)
    assert sorted(first + rest) == list(range(N)), (len(first), len(rest))


def check_confluent(bootstrap: str) -> None:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"compat.confluent.{uuid.uuid4().hex[:8]}"
    group = f"compat-confluent-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        fut.result(30)
    # Metadata can trail CreateTopics by a moment; poll briefly.
    deadline = time.monotonic() + 10
    while True:
        md = admin.list_topics(topic, timeout=10)
        parts = len(md.topics[topic].partitions)
        if parts == PARTITIONS or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert parts == PARTITIONS, f"list_topics: {parts} partitions"

    errors: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "enable.idempotence": True})
    for i in range(N):
        producer.produce(topic, key=f"k{i % 7}", value=str(i), on_delivery=on_delivery)
    assert producer.flush(30) == 0 and not errors, errors

    def consume(limit: int) -> list[int]:
        consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
        })
        consumer.subscribe([topic])
        got: list[int] = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < limit and time.monotonic() < deadline:
                for msg in consumer.consume(limit - len(got), timeout=0.5):
                    if msg.error():
                        raise RuntimeError(msg.error())
                    got.append(int(msg.value()))
            consumer.commit(asynchronous=False)
        finally:
            consumer.close()
        return got

    first = consume(10)
    rest = consume(N - len(first))
    assert sorted(first + rest) == list(range(N)), (len(first), len(rest))
    for fut in admin.delete_topics([topic]).values():
        fut.result(30)


FAUST_APP = '''
import os, signal
import faust

app = faust.App(
    os.environ["COMPAT_APP_ID"],
    broker="kafka://" + os.environ["COMPAT_BOOTSTRAP"],
    store="memory://",
    topic_partitions=3,
    topic_replication_factor=1,
    web_enabled=False,
)
topic = app.topic(os.environ["COMPAT_TOPIC"], key_type=str, value_type=str, partitions=3)
counts = app.Table("counts", default=int, partitions=3)
N = int(os.environ["COMPAT_N"])
seen = 0

@app.agent(topic)
async def count(stream):
    global seen
    async for key, value in stream.items():
        counts[key] += 1
        seen += 1
        if seen == N:
            print("COMPAT-FAUST-DONE", seen, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)

@app.task
async def produce():
    for i in range(N):
        await topic.send(key=f"k{i % 7}", value=str(i))
'''


def check_faust(bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    # Faust creates only its internal topics; the source topic is ours to create
    # (the broker runs with auto.create.topics.enable=false).
    source = f"compat.faust.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(source, PARTITIONS, 1)]).values():
        fut.result(30)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "compat_faust_app.py").write_text(textwrap.dedent(FAUST_APP))
        env = dict(os.environ)
        env.update(
            COMPAT_BOOTSTRAP=bootstrap,
            COMPAT_APP_ID=f"compat-faust-{uuid.uuid4().hex[:8]}",
            COMPAT_TOPIC=source,
            COMPAT_N=str(N),
            PYTHONPATH=tmp,
        )
        proc = subprocess.run(  # noqa: S603 - our interpreter, fixed argv
            [sys.executable, "-m", "faust", "-A", "compat_faust_app", "--datadir", tmp,
             "worker", "-l", "info", "--without-web"],
            cwd=tmp, env=env, capture_output=True, text=True, timeout=120, check=False,
        )
    out = proc.stdout + proc.stderr
    bad = [ln for ln in out.splitlines()
           if ("ERROR" in ln or "Traceback" in ln or "Exception" in ln)
           and "DeprecationWarning" not in ln]
    if "COMPAT-FAUST-DONE" not in out or bad:
        tail = "\n".join(out.splitlines()[-40:])
        raise RuntimeError(f"faust worker failed (rc={proc.returncode}):\n"
                           + "\n".join(bad[:20]) + "\n--- tail ---\n" + tail)


def _step(name: str, fn: Callable[[], None], collector: _ErrorCollector) -> bool:
    collector.records.clear()
    t0 = time.monotonic()
    try:
        fn()
    except Exception as exc:  # the check reports every failure, it does not stop
        print(f"FAIL {name}: {type(exc).__name__}: {exc}")
        return False
    if collector.records:
        print(f"FAIL {name}: client logged errors: {collector.records[:5]}")
        return False
    print(f"ok   {name} ({time.monotonic() - t0:.1f} s)")
    return True


def main() -> int:
    bootstrap = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:39092"
    collector = _ErrorCollector()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger().addHandler(collector)
    results = [
        _step("aiokafka", lambda: asyncio.run(check_aiokafka(bootstrap)), collector),
        _step("confluent-kafka", lambda: check_confluent(bootstrap), collector),
        _step("faust-streaming", lambda: check_faust(bootstrap), collector),
    ]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
