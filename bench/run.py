"""``make bench``: throughput of twinledger against raw baselines, measured in one run.

Prints one JSON document. Every ratio compares two figures measured in this
run, on this broker, with the same encoded events, because absolute times on
a shared machine drift:

- ``e2e_events_per_s``: produce -> row in ClickHouse (worker + sink running, warmed up);
- ``raw_passthrough_events_per_s``: aiokafka ``getmany`` -> batched ``send`` of the same
  bytes to another topic, produce -> arrival; ``r_e2e`` = e2e / raw passthrough (goal >= 0.3);
- ``fold_events_per_s``: the pure fold alone (decode of fold dicts, apply, state encode per
  account per batch) and ``raw_consume_events_per_s``: an aiokafka consume loop over the same
  encoded events; ``r_fold_vs_consume`` (goal >= 2);
- ``sink_rows_per_s`` vs ``raw_insert_rows_per_s`` of the same rows into the same engine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams.codec import Codec, fold_dict_to_venue_record  # noqa: E402
from streams.ledger.synth import generate_events  # noqa: E402


def _bootstrap() -> tuple[str, bool]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"], False
    from streams.infra.kafka_local import ensure_local_kafka, local_kafka_running

    was = local_kafka_running()
    return ensure_local_kafka(), not was


def encode_events(events: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    codec = Codec.load()
    return [(e["account_id"].encode(), codec.encode("VenueEvent", fold_dict_to_venue_record(e)))
            for e in events]


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_batch_size=1 << 20, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in records]
        await producer.flush()
        for fut in futures:
            await fut
    finally:
        await producer.stop()


async def raw_consume(bootstrap: str, topic: str, n: int) -> float:
    """events/s of a bare aiokafka consume loop (getmany, no processing), from the first fetch."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=4 << 20)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        start = time.perf_counter()
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for msgs in batch.values():
                for m in msgs:  # touch every record, as a consumer would
                    _ = m.value
                seen += len(msgs)
        return n / (time.perf_counter() - start)
    finally:
        await consumer.stop()


async def raw_passthrough(bootstrap: str, records: list[tuple[bytes, bytes]],
                          partitions: int) -> float:
    """produce -> getmany -> batched send (bytes untouched) -> arrival, events/s."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from streams.infra.kafka_admin import ensure_topics

    tag = uuid.uuid4().hex[:6]
    src, dst = f"bench-src-{tag}", f"bench-dst-{tag}"
    ensure_topics(bootstrap, {src: partitions, dst: partitions})
    n = len(records)
    forward_in = AIOKafkaConsumer(src, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                  group_id=f"bench-fwd-{tag}", enable_auto_commit=False)
    out = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    counter = AIOKafkaConsumer(dst, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                               group_id=f"bench-count-{tag}", enable_auto_commit=False)
    await asyncio.gather(forward_in.start(), out.start(), counter.start())

    async def forward() -> None:
        moved = 0
        while moved < n:
            batch = await forward_in.getmany(timeout_ms=200, max_records=1000)
            for msgs in batch.values():
                for m in msgs:
                    await out.send(dst, m.value, key=m.key)
                moved += len(msgs)
            await out.flush()
            await forward_in.commit()

    async def count() -> None:
        seen = 0
        while seen < n:
            batch = await counter.getmany(timeout_ms=200, max_records=10_000)
            seen += sum(len(v) for v in batch.values())

    try:
        # Let both groups settle on their partitions before the clock starts.
        await forward_in.getmany(timeout_ms=2000)
        await counter.getmany(timeout_ms=2000)
        start = time.perf_counter()
        tasks = [asyncio.create_task(forward()), asyncio.create_task(count())]
        await _produce(bootstrap, src, records)
        await asyncio.gather(*tasks)
        return n / (time.perf_counter() - start)
    finally:
        await asyncio.gather(forward_in.stop(), out.stop(), counter.stop())


def e2e(bootstrap: str, events: list[dict[str, Any]], warmup: list[dict[str, Any]]) -> float:
    """produce -> worker -> sink -> every snapshot row in ClickHouse, events/s."""
    from tests.integration.pipeline import Pipeline

    with tempfile.TemporaryDirectory(prefix="tl-bench-") as tmp:
        p = Pipeline(bootstrap, Path(tmp), name="bench")
        p.create_topics()
        try:
            p.start_sink()
            p.start_worker()
            p.produce(warmup)
            p.wait_for({"account_snapshots": len(warmup)}, timeout=300)
            base = p.counts()["account_snapshots"]["count"]
            start = time.perf_counter()
            p.produce(events)
            target = base + len(events)
            while p.counts()["account_snapshots"]["count"] < target:
                time.sleep(0.2)
            return len(events) / (time.perf_counter() - start)
        finally:
            p.stop()


def sink_bench(bootstrap: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The sink (consume, map, dedup, existence filter, insert, commit) on snapshot records,
    against a raw insert of the same rows into the same engine, in fresh chDB directories."""
    from sinks.backend import ClickHouseBackend, chdb_url
    from sinks.ddl import apply_ddl
    from sinks.rows import build_row
    from sinks.runner import SinkRunner
    from streams.config import load_settings
    from streams.infra.kafka_admin import ensure_topics
    from streams.ledger import apply_event, load_ledger_config, parse_event

    config = load_ledger_config(None)
    states: dict[str, Any] = {}
    snapshots = []
    for d in events:
        ev = parse_event(d)
        res = apply_event(states.get(ev.account_id), ev, {}, config)
        states[ev.account_id] = res.state
        snapshots += [o for o in res.outputs if o.kind == "snapshot"]
    codec = Codec.load()
    encoded = [(o.key.encode(), codec.encode("AccountSnapshot", o.record)) for o in snapshots]
    tag = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="tl-bench-sink-") as tmp:
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "TWINLEDGER_TOPIC_PREFIX": f"bs{tag}.",
               "TWINLEDGER_SINK_GROUP": f"bench-sink-{tag}", "TWINLEDGER_DATA_DIR": tmp,
               "TWINLEDGER_CHDB_PATH": str(Path(tmp) / "chdb")}
        settings = load_settings(env)
        topic = settings.topic("ledger.snapshots")
        ensure_topics(bootstrap, {topic: 6})
        asyncio.run(_produce(bootstrap, topic, encoded))
        backend = ClickHouseBackend(chdb_url(settings.chdb_path), settings.clickhouse_database)
        try:
            apply_ddl(backend, settings.clickhouse_database)
            runner = SinkRunner(settings, backend, codec, topics={topic: "account_snapshots"})
            idle = 1.0
            start = time.perf_counter()
            runner.run_until_idle(idle_seconds=idle, timeout=600)
            sink_seconds = time.perf_counter() - start - idle
            runner.close()
            (count,), = backend.query("SELECT count() FROM account_snapshots")
            assert count == len(snapshots), (count, len(snapshots))
            rows = []
            for i, (_, value) in enumerate(encoded):
                name, rec = codec.decode(value)
                rows.append([*build_row("account_snapshots", name, rec), topic, 0, i])
            backend.command("CREATE TABLE raw_snapshots AS account_snapshots")
            from sinks.ddl import ACCOUNT_SNAPSHOTS

            columns = list(ACCOUNT_SNAPSHOTS.insert_columns)
            start = time.perf_counter()
            for i in range(0, len(rows), 10_000):
                backend.insert("raw_snapshots", columns, rows[i:i + 10_000], f"raw-{i}")
            raw_seconds = time.perf_counter() - start
        finally:
            backend.close()
    return {"sink_rows": len(snapshots),
            "sink_rows_per_s": round(len(snapshots) / sink_seconds),
            "raw_insert_rows_per_s": round(len(rows) / raw_seconds),
            "sink_note": "sink time includes the consumer group join; raw insert is rows prebuilt"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--fold-events", type=int, default=1_000_000)
    parser.add_argument("--fold-accounts", type=int, default=1_000)
    parser.add_argument("--sink-events", type=int, default=20_000)
    args = parser.parse_args()

    from bench.fold_bench import run as fold_run

    result: dict[str, Any] = {"events": args.events, "accounts": args.accounts}
    bootstrap, started = _bootstrap()
    try:
        all_events = [e for e in generate_events(args.events + 1_200, args.accounts, seed=1)
                      if e["kind"] != "mark"]
        warmup = [dict(e, event_id=f"warm-{e['event_id']}", account_id=f"warm-{e['account_id']}")
                  for e in all_events[:200]]
        events = all_events[: args.events]
        records = encode_events(events)
        partitions = 6
        result["raw_passthrough_events_per_s"] = round(
            asyncio.run(raw_passthrough(bootstrap, records, partitions)))
        result["e2e_events_per_s"] = round(e2e(bootstrap, events, warmup))
        result["r_e2e"] = round(result["e2e_events_per_s"] / result["raw_passthrough_events_per_s"], 3)

        # Raw consume of the same encoded events vs the fold alone.
        tag = uuid.uuid4().hex[:6]
        from streams.infra.kafka_admin import ensure_topics

        topic = f"bench-consume-{tag}"
        ensure_topics(bootstrap, {topic: partitions})
        asyncio.run(_produce(bootstrap, topic, records))
        result["raw_consume_events_per_s"] = round(asyncio.run(raw_consume(bootstrap, topic, len(records))))
        fold = fold_run(args.fold_events, args.fold_accounts)
        result["fold"] = fold
        # issue 10: fold vs parse-only and the state's size, from bench/fold_bench.py
        from bench.fold_bench import state_bytes

        result["fold_vs_parse"] = fold.get("fold_vs_parse")
        result["state_rss_mb_per_1000_accounts"] = fold.get("state_rss_mb_per_1000_accounts")
        result["encoded_state_bytes_per_account_1000_events"] = (
            state_bytes()["encoded_state_bytes_per_account"])
        fold_rate = fold.get("events_per_s") or fold.get("fold_events_per_s")
        result["fold_events_per_s"] = fold_rate
        if fold_rate:
            result["r_fold_vs_consume"] = round(fold_rate / result["raw_consume_events_per_s"], 3)
        result.update(sink_bench(bootstrap, events[: args.sink_events]))
        if result["raw_insert_rows_per_s"]:
            result["r_sink_vs_raw_insert"] = round(
                result["sink_rows_per_s"] / result["raw_insert_rows_per_s"], 3)
    finally:
        if started:
            from streams.infra.kafka_local import stop_local_kafka

            stop_local_kafka()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
