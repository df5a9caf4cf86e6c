"""Client compatibility check of a Kafka broker: the evidence behind the version pin.

Owns nothing but this check. Runs, against BOOTSTRAP (default 127.0.0.1:39092):

* aiokafka: admin create_topics, producer (acks=all), consumer group with manual
  commits, a second consumer of the same group resuming from the committed offsets;
* confluent-kafka: AdminClient create/describe, Producer, Consumer group with commits,
  resume from the committed offsets;
* faust-streaming: a worker (subprocess) with an agent and a table, so Faust's own
  topic creation (changelog, leader topic), its consumer group and its producer run.

Every step is reported; any exception or ERROR-level client log fails the check.
The client versions under test are printed first (the faust worker's own are
checked to be the same).

    .venv/bin/python ops/kafka/client_compat.py [BOOTSTRAP]
    .venv/bin/python ops/kafka/client_compat.py --kafka-version 3.9.2 [--port 39692]

With ``--kafka-version`` the check starts its own broker of that version
(``ops/kafka/kafka.sh``, fetched if needed) on ``--port`` with a temporary data
directory, runs against it and stops it: nothing shared is touched. ``make
kafka-compat`` checks the pinned version and 3.9.2, the last 3.x, this way.
To check older clients, install them into a directory and put it first on
PYTHONPATH (the faust worker subprocess inherits it), e.g.
``pip install --no-deps --target /tmp/low aiokafka==0.13.0 faust-streaming==0.12.0
confluent-kafka==2.6.0`` then ``PYTHONPATH=/tmp/low .venv/bin/python ...``.
"""

from __future__ import annotations

import argparse
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
import aiokafka

print("COMPAT-FAUST-VERSIONS", faust.__version__, aiokafka.__version__, flush=True)
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
            # The app's directory first, then whatever the caller put on the path
            # (older clients under test), so the worker runs the same clients.
            PYTHONPATH=os.pathsep.join(p for p in (tmp, os.environ.get("PYTHONPATH")) if p),
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
    expected = f"COMPAT-FAUST-VERSIONS {_versions()['faust-streaming']} {_versions()['aiokafka']}"
    if expected not in out:
        raise RuntimeError(f"the faust worker ran other clients than this process ({expected}): "
                           + next((ln for ln in out.splitlines() if "COMPAT-FAUST-VERSIONS" in ln),
                                  "no version line"))
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


def _versions() -> dict[str, str]:
    import aiokafka
    import confluent_kafka
    import faust

    ck = confluent_kafka.version()  # (str, int) in 2.6; newer releases may differ
    return {"aiokafka": aiokafka.__version__,
            "confluent-kafka": getattr(confluent_kafka, "__version__", None)
            or (ck[0] if isinstance(ck, tuple) else str(ck)),
            "librdkafka": confluent_kafka.libversion()[0], "faust-streaming": faust.__version__}


def _kafka_sh(action: str, version: str, port: int, data_dir: str) -> subprocess.CompletedProcess[str]:
    script = Path(__file__).resolve().parent / "kafka.sh"
    env = {**os.environ, "TWINLEDGER_KAFKA_VERSION": version, "TWINLEDGER_KAFKA_PORT": str(port),
           "TWINLEDGER_DATA_DIR": data_dir}
    return subprocess.run(["bash", str(script), action], env=env, text=True,  # noqa: S603, S607
                          stdout=subprocess.PIPE, timeout=900, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Check that the installed Kafka clients (aiokafka, confluent-kafka, "
                    "faust-streaming) work against a broker.",
        epilog="examples:\n  client_compat.py 127.0.0.1:39092\n"
               "  client_compat.py --kafka-version 3.9.2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bootstrap", nargs="?", default="127.0.0.1:39092",
                        help="a running broker (default 127.0.0.1:39092)")
    parser.add_argument("--kafka-version", metavar="VERSION",
                        help="start a broker of this version for the check, then stop it")
    parser.add_argument("--port", type=int, default=39692,
                        help="client port of that broker (default 39692; controller +1)")
    args = parser.parse_args()
    print("clients: " + ", ".join(f"{k} {v}" for k, v in _versions().items()), flush=True)
    if not args.kafka_version:
        return _check(args.bootstrap)
    with tempfile.TemporaryDirectory(prefix="kafka-compat-") as data_dir:
        started = _kafka_sh("start", args.kafka_version, args.port, data_dir)
        try:
            if started.returncode != 0:
                print(f"FAIL could not start Kafka {args.kafka_version} on port {args.port} "
                      "(kafka.sh's reason is above)")
                return 1
            print(f"broker: Kafka {args.kafka_version} at 127.0.0.1:{args.port}", flush=True)
            return _check(f"127.0.0.1:{args.port}")
        finally:
            _kafka_sh("stop", args.kafka_version, args.port, data_dir)


def _check(bootstrap: str) -> int:
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
