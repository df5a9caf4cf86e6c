"""Watching a running pipeline without loading it: committed offsets and ``/progress``.

Shared by the end-to-end and replay phases of ``make bench``: progress is read
from Kafka (a consumer group's committed offsets, one OffsetFetch per look) and
from the worker's ``/progress`` page, never from ClickHouse.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.phases import Phases, PhaseTimeout, emit

#: the pipeline a phase is running ("pipeline"), for the hard-stall report
RUNNING: dict[str, Any] = {}


class OffsetWatch:
    """Sum of one consumer group's committed offsets on some topics, asked of the broker.

    One OffsetFetch request per look (the group coordinator answers from memory):
    no ClickHouse query, no group join, nothing the measured pipeline waits on.
    """

    def __init__(self, bootstrap: str, group: str, topics: list[str]) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from streams.infra.kafka_admin import client_config_from_env

        conf: dict[str, Any] = client_config_from_env()
        conf.update({"bootstrap.servers": bootstrap, "group.id": group,
                     "enable.auto.commit": False})
        self._consumer = Consumer(conf)
        meta = self._consumer.list_topics(timeout=30)
        self._tps = [TopicPartition(t, p) for t in topics for p in sorted(meta.topics[t].partitions)]

    def committed(self) -> int:
        got = self._consumer.committed(self._tps, timeout=10)
        return sum(max(tp.offset, 0) for tp in got)

    def close(self) -> None:
        self._consumer.close()


def wait_committed(watch: OffsetWatch, target: int, phases: Phases, pipeline: Any,
                   stall_seconds: float, what: str) -> None:
    """Until ``watch`` reaches ``target``; a stall (no move for ``stall_seconds``) raises."""
    last, last_move, last_print = -1, time.monotonic(), time.monotonic()
    while True:
        now = time.monotonic()
        got = watch.committed()
        if got >= target:
            return
        if got != last:
            last, last_move = got, now
        for child in (pipeline.worker, pipeline.sink):
            if child is not None and not child.alive():
                raise PhaseTimeout(phases.current or what, f"{child.command[0]} exited with "
                                   f"{child.proc.returncode} waiting for {what}")
        if now - last_move > stall_seconds:
            raise PhaseTimeout(phases.current or what, f"{what}: the sink's committed offsets "
                               f"stayed at {got} of {target} for {stall_seconds:.0f} s")
        phases.check()
        if now - last_print >= 10:
            last_print = now
            emit({"phase": phases.current, "waiting_for": what, "committed": got,
                  "target": target, "worker": worker_progress(pipeline)})
        time.sleep(0.2)


def cpu_seconds(child: Any, kind: str = "all") -> float | None:
    """CPU seconds a child process used so far (Linux /proc), None if unknown.

    ``kind``: "all" (user + system), "user" or "system".
    """
    import os

    try:
        with open(f"/proc/{child.proc.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        user, system = int(fields[11]), int(fields[12])
    except (OSError, AttributeError, IndexError, ValueError):
        return None
    ticks = {"all": user + system, "user": user, "system": system}[kind]
    return ticks / os.sysconf("SC_CLK_TCK")


def worker_progress(pipeline: Any) -> Any:

    return _progress(f"http://127.0.0.1:{pipeline.settings.worker_web_port}/progress")


def _progress(url: str) -> Any:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback child
            return json.loads(resp.read())
    except (OSError, ValueError) as exc:
        return f"no answer: {type(exc).__name__}"


def diagnose(p: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"worker_progress": worker_progress(p)}
    for child in (p.worker, p.sink):
        if child is not None:
            doc[f"{child.command[0]}_alive"] = child.alive()
            doc[f"{child.command[0]}_log_tail"] = child.log_tail(30)
    # workers started beside the first (``replay`` with workers > 1): each one's state too
    for n, child in enumerate(getattr(p, "extra_workers", []), 2):
        port = child.env.get("TWINLEDGER_WORKER_WEB_PORT")
        doc[f"worker{n}_alive"] = child.alive()
        doc[f"worker{n}_exit"] = child.proc.returncode
        doc[f"worker{n}_progress"] = _progress(f"http://127.0.0.1:{port}/progress")
        doc[f"worker{n}_log_tail"] = child.log_tail(30)
    keep = os.environ.get("TWINLEDGER_BENCH_KEEP_LOGS")
    if keep:  # the whole logs of a stalled run, for whoever reads the diagnosis
        dest = Path(keep) / f"{p.settings.topic_prefix.strip('.')}-logs"
        shutil.copytree(p.root / "logs", dest, dirs_exist_ok=True)
        doc["logs_kept_in"] = str(dest)
    return doc


@contextmanager
def watched_pipeline(bootstrap: str, name: str) -> Iterator[tuple[Any, OffsetWatch]]:
    """A pipeline with its topics (no process started) and a watch of the sink group's
    committed offsets on the snapshot topic; a stall is reported with the processes'
    state, and everything is stopped and removed afterwards."""
    from tests.integration.pipeline import Pipeline

    with tempfile.TemporaryDirectory(prefix=f"tl-bench-{name}-") as tmp:
        p = Pipeline(bootstrap, Path(tmp), name=name)
        RUNNING["pipeline"] = p
        watch = None
        try:
            p.create_topics()
            watch = OffsetWatch(bootstrap, p.settings.sink_group,
                                [p.settings.topic("ledger.snapshots")])
            yield p, watch
        except PhaseTimeout as exc:
            emit({"stalled_phase": exc.phase, "why": exc.why, **diagnose(p)})
            raise
        finally:
            if watch is not None:
                watch.close()
            for child in getattr(p, "extra_workers", []):
                child.stop()
            p.stop()
            RUNNING.pop("pipeline", None)
