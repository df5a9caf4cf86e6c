"""``twinledger demo``: the whole pipeline on a bundled sample, reported from ClickHouse.

Owns: orchestration only — start local Kafka unless KAFKA_BOOTSTRAP_SERVERS
is set, create topics, start worker and sink as child processes, produce the
sample, wait for the sink to catch up, report, verify, stop what it started.
Every run cleans the previous demo's data (its own topic prefix, consumer
groups and data directory) and says so, so a second run reports the same.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from streams.config import Settings, load_settings
from streams.exceptions import TwinledgerError
from streams.ops import SinkClient, create_topics, format_report, report
from streams.procs import Child, wait_until
from streams.produce import produce_events, read_fold_lines
from streams.queries import render_table
from streams.resources import demo_sample
from streams.workerclient import query_worker

SAMPLE = demo_sample()
DEMO_PREFIX = "demo."


def demo_env(settings: Settings, data_dir: Path, retention_days: int | None = None,
             ) -> dict[str, str]:
    env = dict(os.environ)
    if retention_days is not None:
        env["TWINLEDGER_SNAPSHOT_RETENTION_DAYS"] = str(retention_days)
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
        "TWINLEDGER_TOPIC_PREFIX": DEMO_PREFIX,
        "TWINLEDGER_APP_ID": "twinledger-demo",
        "TWINLEDGER_SINK_GROUP": "twinledger-demo-sink",
        "TWINLEDGER_DATA_DIR": str(data_dir),
        "TWINLEDGER_CHDB_PATH": str(data_dir / "chdb"),
    })
    return env


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def retention_for(events: list[dict[str, Any]], configured: int,
                  today: dt.date | None = None) -> int | None:
    """A snapshot retention that keeps the sample's portfolio snapshots, or None if it does.

    The sample's events carry their own (past) timestamps and the
    ``portfolio_snapshots`` TTL counts from event time, so a TTL merge could
    drop them during the demo; the demo then extends the retention to cover
    the oldest event and says so. 0 (no TTL) needs nothing.
    """
    if not configured or not events:
        return None
    today = today or dt.datetime.now(dt.UTC).date()
    oldest = min(dt.datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).date()
                 for e in events)
    needed = (today - oldest).days + 30
    return needed if needed > configured else None


def load_sample(path: Path) -> list[dict[str, Any]]:
    events = []
    for number, doc, _ in read_fold_lines(path):
        if isinstance(doc, Exception):
            raise TwinledgerError(f"{path}:{number}: {doc}")
        events.append(doc)
    return events


def demo_main(argv: list[str]) -> int:
    from streams.helptext import parser as help_parser

    parser = help_parser("demo")
    parser.add_argument("--sample", type=Path, default=SAMPLE,
                        help="fold-format events to send instead of the bundled sample")
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="seconds to wait for ClickHouse to hold every event (default 180)")
    args = parser.parse_args(argv)

    base = load_settings()
    started_kafka = False
    if not base.kafka_bootstrap:
        from streams.infra.kafka_local import (
            ensure_local_kafka,
            local_kafka_jars_present,
            local_kafka_running,
        )

        was_running = local_kafka_running()
        if was_running:
            _say("using the local Kafka broker that is already running")
        elif local_kafka_jars_present():
            _say("starting the local Kafka broker")
        else:
            _say("starting the local Kafka broker; first downloading its jars with Maven "
                 "(about 45 MB, once)")
        base = dataclasses.replace(base, kafka_bootstrap=ensure_local_kafka())
        started_kafka = not was_running
    data_dir = base.data_dir / "demo"
    events = load_sample(args.sample)
    retention = retention_for(events, base.snapshot_retention_days)
    # The sample's events are dated in the past and portfolio snapshots expire by
    # event time: the demo's own tables keep them longer (nothing to tell the user).
    env = demo_env(base, data_dir, retention)
    settings = load_settings(env)
    children: list[Child] = []
    try:
        _clean_previous(settings, data_dir)
        create_topics(settings)
        venue_events = [e for e in events if e.get("kind") != "mark"]
        marks = [e for e in events if e.get("kind") == "mark"]
        logs = data_dir / "logs"
        sink = Child(["sink"], env, logs / "sink.log")
        worker = Child(["worker"], env, logs / "worker.log")
        children += [sink, worker]
        client = SinkClient(settings, timeout=10)
        _say("starting a worker and a sink")
        wait_until(lambda: _alive_or_fail(sink) and client.healthy(), 90, what="the sink endpoint")
        # Marks first: the worker's global marks table then has them before the fills.
        produce_events(settings, marks)
        time.sleep(2.0)
        produce_events(settings, venue_events)
        _say(f"sent {len(venue_events)} venue events and {len(marks)} prices "
             f"for {len({e['account_id'] for e in venue_events})} accounts; waiting for "
             "ClickHouse to hold them")
        expected = len({e["event_id"] for e in venue_events})
        _wait_for_rows(client, expected, args.timeout, [worker, sink])
        accounts = report(client)
        _say("report from ClickHouse (twinledger report):")
        print(format_report(accounts))
        _live_queries(settings, [a["account_id"] for a in accounts if a.get("asset_balances")])
        counts = client.counts()
        tables = counts.get("tables", counts)
        dupes = sum(int(c["count"]) - int(c["uniq"]) for c in tables.values())
        rows = sum(int(c["count"]) for c in tables.values())
        if dupes:
            print(json.dumps(tables, indent=2), file=sys.stderr)
            raise TwinledgerError(f"{dupes} duplicate rows found")
        print(f"\ndemo ok: {len(venue_events)} events, {rows} rows in ClickHouse, "
              "0 duplicates")
        _say(f"logs of the worker and the sink: {logs}")
        return 0
    finally:
        for child in reversed(children):
            child.stop()
        if started_kafka:
            from streams.infra.kafka_local import stop_local_kafka

            stop_local_kafka()
            _say("stopped the local Kafka this demo started")


def _live_queries(settings: Settings, spot_accounts: list[str]) -> None:
    """B10 from the worker's live state: equity with the drift flag, exposure, fees and
    performance statistics."""
    base = f"http://127.0.0.1:{settings.worker_web_port}"
    for account in spot_accounts:
        for query in ("equity", "exposure", "fees", "performance"):
            print(f"\n$ twinledger portfolio {query} {account} --table   (worker {base})")
            print(render_table(query_worker(query, account, {}, base, 10.0)), end="")


def _alive_or_fail(child: Child) -> bool:
    if not child.alive():
        raise TwinledgerError(f"{' '.join(child.command)} exited:\n{child.log_tail()}")
    return True


def _clean_previous(settings: Settings, data_dir: Path) -> None:
    from streams.infra.kafka_admin import delete_topics, describe_partitions

    names = [n for n in describe_partitions(settings.kafka_bootstrap, _all_demo_topics(settings))]
    if data_dir.exists() or names:
        _say(f"removing the previous demo run's topics and data ({data_dir})")
    if names:
        delete_topics(settings.kafka_bootstrap, names)
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True, exist_ok=True)


def _all_demo_topics(settings: Settings) -> list[str]:
    from confluent_kafka.admin import AdminClient

    conf: dict[str, str | int | float | bool] = {"bootstrap.servers": settings.kafka_bootstrap}
    conf.update(settings.kafka_security)
    meta = AdminClient(conf).list_topics(timeout=10)
    return [t for t in meta.topics if t.startswith(DEMO_PREFIX) or
            t.startswith("twinledger-demo-")]


def _wait_for_rows(client: SinkClient, expected: int, timeout: float,
                   children: list[Child]) -> None:
    """Show progress until venue_events and account_snapshots hold every event.

    On a terminal one line updates in place; in a log (not a terminal) each
    change is its own line.
    """
    deadline = time.monotonic() + timeout
    last = ""
    tty = sys.stderr.isatty()
    while True:
        for child in children:
            _alive_or_fail(child)
        tables = client.counts()
        tables = tables.get("tables", tables)
        archived = int(tables.get("venue_events", {}).get("count", 0))
        snaps = int(tables.get("account_snapshots", {}).get("count", 0))
        line = f"ClickHouse: {archived}/{expected} events, {snaps}/{expected} snapshots"
        if line != last:
            if tty:
                print(f"\r{line}", end="", file=sys.stderr, flush=True)
            else:
                _say(line)
            last = line
        if archived >= expected and snaps >= expected:
            if tty:
                print(file=sys.stderr)
            time.sleep(1.5)  # let trailing trade/reconcile batches land
            return
        if time.monotonic() > deadline:
            if tty:
                print(file=sys.stderr)
            raise TwinledgerError(f"sink did not catch up within {timeout:.0f}s "
                                  f"({archived} archived, {snaps} snapshots of {expected})")
        time.sleep(0.5)


