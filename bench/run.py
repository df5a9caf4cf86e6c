"""``make bench``: throughput of twinledger against raw baselines, measured in one run.

Prints one JSON document. Every ratio compares two figures measured in this
run, on this broker, with the same encoded events, because absolute times on
a shared machine drift:

- ``e2e_events_per_s``: produce -> row in ClickHouse (worker + sink running, warmed up);
- ``raw_passthrough_events_per_s``: aiokafka ``getmany`` -> batched ``send`` of the same
  bytes to another topic, produce -> arrival; ``r_e2e`` = e2e / raw passthrough (goal >= 0.3);
  with it ``e2e_{worker,sink}_cpu_s_per_1k_events`` and ``e2e_{worker,sink}_cpu_share`` (CPU
  seconds over the measured wall time: below 1 is waiting or a busy machine);
- ``fold_events_per_s``: the pure fold alone (decode of fold dicts, apply, state encode per
  account per batch) and ``raw_consume_events_per_s``: an aiokafka consume loop over the same
  encoded events; ``r_fold_vs_consume`` (goal >= 2);
- ``sink_rows_per_s`` vs ``raw_insert_rows_per_s`` of the same rows into the same engine;
- ``decode_compiled_vs_fastavro``: the codec's compiled Avro reader against fastavro's
  ``schemaless_reader`` over the same mix of sink records (``bench/decode_bench.py``, no broker).

Each phase has its own timeout (``--timeout-*``) and prints one JSON line with its
figures the moment it has them (``bench/phases.py``), then the whole document is
printed at the end. A phase that runs past its timeout, or an end-to-end run whose
committed offsets stop moving for ``--stall-seconds``, is reported by name (with the
worker's ``/progress`` and log tails) and the bench exits 2 instead of hanging.
Progress is read from Kafka (the sink group's committed offsets on the snapshot
topic: the sink commits only after ClickHouse acknowledged the rows) and never
from ClickHouse, so watching does not load the system measured.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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

from bench.phases import Phases, PhaseTimeout, emit  # noqa: E402
from bench.watch import RUNNING as _RUNNING  # noqa: E402
from bench.watch import cpu_seconds, diagnose, wait_committed, watched_pipeline  # noqa: E402
from streams.codec import Codec, fold_dict_to_venue_record  # noqa: E402
from streams.ledger.synth import generate_events  # noqa: E402

#: child processes of the running phase, stopped by the watchdog if a phase blocks


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


def e2e(bootstrap: str, events: list[dict[str, Any]], warmup: list[dict[str, Any]],
        phases: Phases, stall_seconds: float) -> dict[str, Any]:
    """produce -> worker -> sink -> every snapshot row in ClickHouse, events/s.

    "In ClickHouse" is read from the sink group's committed offsets on the
    snapshot topic (one snapshot per event), never from a ClickHouse query.
    Also the CPU the worker and the sink used meanwhile: per 1,000 events, and
    as a share of one core over the measured wall time (a share well below 1
    with the rate low means the process waited, or the machine was busy).
    """
    with watched_pipeline(bootstrap, "bench") as (p, watch):
        p.start_sink()
        p.start_worker()
        p.produce(warmup)
        wait_committed(watch, len(warmup), phases, p, stall_seconds, "the warm-up rows")
        base = watch.committed()
        cpu0 = {c.command[0]: cpu_seconds(c) for c in (p.worker, p.sink)}
        sys0 = {c.command[0]: cpu_seconds(c, "system") for c in (p.worker, p.sink)}
        start = time.perf_counter()
        p.produce(events)
        wait_committed(watch, base + len(events), phases, p, stall_seconds,
                       "every snapshot row")
        wall = time.perf_counter() - start
        fig: dict[str, Any] = {"e2e_events_per_s": round(len(events) / wall)}
        for child in (p.worker, p.sink):
            name, before, after = child.command[0], cpu0[child.command[0]], cpu_seconds(child)
            if before is not None and after is not None:
                fig[f"e2e_{name}_cpu_s_per_1k_events"] = round(
                    (after - before) * 1000 / len(events), 3)
                fig[f"e2e_{name}_cpu_share"] = round((after - before) / wall, 3)
            sys_before, sys_after = sys0[child.command[0]], cpu_seconds(child, "system")
            if sys_before is not None and sys_after is not None:
                fig[f"e2e_{name}_system_cpu_s_per_1k_events"] = round(
                    (sys_after - sys_before) * 1000 / len(events), 3)
        return fig


def sink_bench(bootstrap: str, events: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
    """The sink (consume, decode, map, dedup, existence filter, insert, commit) on snapshot
    records, against a raw insert of the same rows into the same engine, in fresh chDB
    directories.

    The sink is timed in its steady state: the client is warmed by one insert into
    another table (its first insert imports pandas), it joins its group on the empty topic first
    (the join, timed apart as ``sink_join_seconds``, is not part of the rate), then the
    records are produced, then the clock runs from the first poll until every record was
    consumed and the runner was closed, which flushes the tail batches at once (a long
    backlog cuts its batches by size; waiting ``sink_batch_seconds`` for the last ones
    is latency, not throughput) and commits them after ClickHouse acknowledged them.
    Objects alive before the clock starts (the bench's own data) are frozen out of the
    garbage collector for both timed parts, as they are not in a sink process.
    """
    from sinks.backend import ClickHouseBackend, chdb_url
    from sinks.migrate import apply_ddl
    from sinks.rows import build_row
    from sinks.runner import SinkRunner
    from streams.config import load_settings
    from streams.infra import gctune
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
    n = len(encoded)
    thresholds = None
    tag = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="tl-bench-sink-") as tmp:
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "TWINLEDGER_TOPIC_PREFIX": f"bs{tag}.",
               "TWINLEDGER_SINK_GROUP": f"bench-sink-{tag}", "TWINLEDGER_DATA_DIR": tmp,
               "TWINLEDGER_CHDB_PATH": str(Path(tmp) / "chdb")}
        settings = load_settings(env)
        topic = settings.topic("ledger.snapshots")
        ensure_topics(bootstrap, {topic: 6})
        backend = ClickHouseBackend(chdb_url(settings.chdb_path), settings.clickhouse_database)
        try:
            apply_ddl(backend, settings.clickhouse_database)
            # The client's first insert in a process imports pandas (~0.5 s): a one-off
            # that neither timed insert below should carry.
            backend.command("CREATE TABLE bench_warm (x String) ENGINE = Memory")
            backend.insert("bench_warm", ["x"], [["x"]], "warm")
            runner = SinkRunner(settings, backend, codec, topics={topic: "account_snapshots"})
            deadline = time.monotonic() + max(timeout, 30.0)
            try:
                start = time.perf_counter()
                while not runner.assigned:  # join the group while the topic is empty
                    if time.monotonic() > deadline:
                        raise PhaseTimeout("sink", "the sink did not join its group")
                    runner.poll_once(0.2)
                join_seconds = time.perf_counter() - start
                asyncio.run(_produce(bootstrap, topic, encoded))
                # This process holds what a sink process does not (the fold of the
                # events, the snapshots, the other phases' data): every full collection
                # walked it, ~0.4 s CPU per 20,000 rows. Frozen, the collector sees only
                # what is made from here on, and collects as a sink process sets it
                # once started (streams.infra.gctune); both timed parts run so.
                thresholds = gc.get_threshold()
                gctune.for_long_running(settings.gc_gen0)
                if not settings.gc_gen0:
                    gc.collect()
                    gc.freeze()
                start, cpu = time.perf_counter(), time.process_time()
                while runner.stats["consumed"] < n:
                    if time.monotonic() > deadline:
                        raise PhaseTimeout("sink", f"the sink consumed "
                                                   f"{runner.stats['consumed']} of {n} records")
                    runner.poll_once(0.2)
                runner.close()
                sink_seconds = time.perf_counter() - start
                sink_cpu = time.process_time() - cpu
            except BaseException:
                runner.abort()  # leave the group; nothing of a failed run is measured
                raise
            (count,), = backend.query("SELECT count() FROM account_snapshots")
            assert count == n == runner.stats["inserted"], (count, n, dict(runner.stats))
            rows = []
            for i, (_, value) in enumerate(encoded):
                name, rec = codec.decode(value)
                rows.append([*build_row("account_snapshots", name, rec), topic, 0, i])
            backend.command("CREATE TABLE raw_snapshots AS account_snapshots")
            from sinks.ddl import ACCOUNT_SNAPSHOTS

            columns = list(ACCOUNT_SNAPSHOTS.insert_columns)
            start, cpu = time.perf_counter(), time.process_time()
            for i in range(0, len(rows), 10_000):
                backend.insert("raw_snapshots", columns, rows[i:i + 10_000], f"raw-{i}")
            raw_seconds = time.perf_counter() - start
            raw_cpu = time.process_time() - cpu
        finally:
            gc.unfreeze()
            if thresholds is not None:
                gc.set_threshold(*thresholds)
            backend.close()
    return {"sink_rows": n,
            "sink_rows_per_s": round(n / sink_seconds),
            "raw_insert_rows_per_s": round(len(rows) / raw_seconds),
            "sink_join_seconds": round(join_seconds, 2),
            # CPU seconds of this process (every thread, the engine's too): steadier than
            # wall time on a machine shared with other work.
            "sink_cpu_seconds": round(sink_cpu, 3),
            "raw_insert_cpu_seconds": round(raw_cpu, 3),
            "r_sink_vs_raw_insert_cpu": round(raw_cpu / sink_cpu, 3) if sink_cpu else None,
            "sink_batches": runner.stats["batches"],
            "sink_note": "sink timed in steady state: client warmed by one insert elsewhere, "
                         "the bench's own heap frozen out of the garbage collector, "
                         f"young generation collected every {settings.gc_gen0} allocations "
                         "as in a sink process, "
                         "group joined on the empty topic before producing (join not "
                         "timed), clock from the first poll to "
                         "every row committed, tail batches flushed by close() instead of "
                         "waiting the batch timer; raw insert is the same rows prebuilt, "
                         "10,000 per insert"}


def _async(coro: Any, phases: Phases) -> Any:
    """Run a coroutine within what is left of the current phase."""
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout=max(phases.left(), 1.0))

    try:
        return asyncio.run(bounded())
    except TimeoutError:
        raise PhaseTimeout(phases.current or "?", "timed out") from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--fold-events", type=int, default=1_000_000)
    parser.add_argument("--fold-accounts", type=int, default=1_000)
    parser.add_argument("--sink-events", type=int, default=20_000)
    parser.add_argument("--timeout-passthrough", type=float, default=300.0)
    parser.add_argument("--timeout-e2e", type=float, default=900.0)
    parser.add_argument("--timeout-consume", type=float, default=300.0)
    parser.add_argument("--timeout-fold", type=float, default=900.0)
    parser.add_argument("--timeout-sink", type=float, default=600.0)
    parser.add_argument("--decode-events", type=int, default=5_000)
    parser.add_argument("--timeout-decode", type=float, default=300.0)
    parser.add_argument("--replay-events", type=int, default=1_000_000,
                        help="replay from offset 0 through worker and sink (0: skip)")
    parser.add_argument("--timeout-replay", type=float, default=3600.0)
    parser.add_argument("--scale-events", type=int, default=50_000,
                        help="replay with 1 worker, then 2 workers in one group (0: skip)")
    parser.add_argument("--timeout-scale", type=float, default=1800.0)
    parser.add_argument("--only", action="append", default=[],
                        choices=["raw_passthrough", "e2e", "raw_consume", "fold", "sink",
                                 "decode", "replay", "scale"],
                        help="run only these phases (repeatable); r_e2e needs both "
                             "raw_passthrough and e2e")
    parser.add_argument("--stall-seconds", type=float, default=120.0,
                        help="end-to-end: no committed offset moving this long is a stall")
    args = parser.parse_args()

    from bench.decode_bench import run as decode_run
    from bench.fold_bench import run as fold_run

    result: dict[str, Any] = {"events": args.events, "accounts": args.accounts}
    started = [False]

    def hard_stall(phase: str) -> None:
        doc: dict[str, Any] = {"stalled_phase": phase, "why": "blocked past its timeout"}
        pipeline = _RUNNING.get("pipeline")
        if pipeline is not None:
            doc.update(diagnose(pipeline))
            pipeline.stop()
        emit(doc)
        result.update(stalled_phase=phase, why=doc["why"])
        print(json.dumps(result, indent=2), flush=True)

    phases = Phases(hard_stall)
    status = 0

    def wanted(name: str) -> bool:
        return not args.only or name in args.only

    try:
        with phases.phase("broker", 600) as fig:
            bootstrap, started[0] = _bootstrap()
            fig["bootstrap"] = bootstrap
        all_events = [e for e in generate_events(args.events + 1_200, args.accounts, seed=1)
                      if e["kind"] != "mark"]
        warmup = [dict(e, event_id=f"warm-{e['event_id']}", account_id=f"warm-{e['account_id']}")
                  for e in all_events[:200]]
        events = all_events[: args.events]
        result["events"] = len(events)  # marks are left out: a few short of --events
        records = encode_events(events)
        partitions = 6
        if wanted("raw_passthrough"):
            with phases.phase("raw_passthrough", args.timeout_passthrough) as fig:
                fig["raw_passthrough_events_per_s"] = round(
                    _async(raw_passthrough(bootstrap, records, partitions), phases))
                result.update(fig)
        if wanted("e2e"):
            with phases.phase("e2e", args.timeout_e2e) as fig:
                fig.update(e2e(bootstrap, events, warmup, phases, args.stall_seconds))
                if result.get("raw_passthrough_events_per_s"):
                    fig["r_e2e"] = round(fig["e2e_events_per_s"]
                                         / result["raw_passthrough_events_per_s"], 3)
                result.update(fig)
        if wanted("raw_consume"):
            with phases.phase("raw_consume", args.timeout_consume) as fig:
                # Raw consume of the same encoded events, the baseline of the fold alone.
                tag = uuid.uuid4().hex[:6]
                from streams.infra.kafka_admin import ensure_topics

                topic = f"bench-consume-{tag}"
                ensure_topics(bootstrap, {topic: partitions})
                _async(_produce(bootstrap, topic, records), phases)
                fig["raw_consume_events_per_s"] = round(
                    _async(raw_consume(bootstrap, topic, len(records)), phases))
                result.update(fig)
        if wanted("fold"):
            with phases.phase("fold", args.timeout_fold) as fig:
                fold = fold_run(args.fold_events, args.fold_accounts)
                fold_rate = fold.get("events_per_s") or fold.get("fold_events_per_s")
                fig.update(fold=fold, fold_events_per_s=fold_rate)
                if fold_rate and result.get("raw_consume_events_per_s"):
                    fig["r_fold_vs_consume"] = round(
                        fold_rate / result["raw_consume_events_per_s"], 3)
                result.update(fig)
        if wanted("sink"):
            with phases.phase("sink", args.timeout_sink) as fig:
                fig.update(sink_bench(bootstrap, events[: args.sink_events], phases.left()))
                if fig["raw_insert_rows_per_s"]:
                    fig["r_sink_vs_raw_insert"] = round(
                        fig["sink_rows_per_s"] / fig["raw_insert_rows_per_s"], 3)
                result.update(fig)
        if wanted("decode"):
            with phases.phase("decode", args.timeout_decode) as fig:
                fig.update(decode_run(args.decode_events))
                result.update(fig)
        replay_events = args.replay_events if wanted("replay") else 0
        scale_events = args.scale_events if wanted("scale") else 0
        if replay_events or scale_events:
            from bench.replay import replay

            pool = [e for e in generate_events(max(replay_events, scale_events)
                                               + 2_000, args.accounts, seed=7)
                    if e["kind"] != "mark"]
        if replay_events:
            with phases.phase("replay", args.timeout_replay) as fig:
                done = replay(bootstrap, pool[: args.replay_events], phases,
                              args.stall_seconds)
                fig.update(replay_events=done["events"], replay_seconds=done["seconds"],
                           replay_events_per_s=done["events_per_s"])
                result.update(fig)
        if scale_events:
            with phases.phase("scale", args.timeout_scale) as fig:
                one = replay(bootstrap, pool[: args.scale_events], phases, args.stall_seconds)
                two = replay(bootstrap, pool[: args.scale_events], phases, args.stall_seconds,
                             workers=2)
                fig.update(scale_events=one["events"],
                           one_worker_events_per_s=one["events_per_s"],
                           two_workers_events_per_s=two["events_per_s"],
                           r_two_workers_vs_one=round(two["events_per_s"]
                                                      / one["events_per_s"], 3),
                           scale_note="same backlog replayed from offset 0 by 1, then 2 "
                                      "workers in one group; 2 cores shared with the sink "
                                      "and the broker")
                result.update(fig)
    except PhaseTimeout as exc:
        result.update(stalled_phase=exc.phase, why=exc.why)
        status = 2
    finally:
        if started[0]:
            from streams.infra.kafka_local import stop_local_kafka

            stop_local_kafka()
    result["phase_seconds"] = phases.seconds
    print(json.dumps(result, indent=2), flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
