"""``twinledger sink`` and ``verify``: start-up, shutdown and the exactly-once check.

Owns: the order of start-up (backend, DDL, HTTP endpoint, consumer) and of
shutdown (stop consuming, flush, close the consumer, stop HTTP, release the
backend), signal handling, and the verdict of :func:`verify`. Must not
touch: the flow itself (``sinks.runner``) or the CLI wiring (``streams.cli``
calls :func:`sink_main`).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
import urllib.request
from typing import Any

from sinks import metrics as sink_metrics
from sinks.backend import Backend, open_backend
from sinks.conservation import OUTCOME_TABLES, FoldedBound
from sinks.ddl import TABLES
from sinks.http import SinkHTTPServer
from sinks.migrate import apply_ddl
from sinks.runner import SinkRunner, consumer_config, count_events, verdict
from streams.codec import Codec
from streams.config import Settings, load_settings
from streams.exceptions import TwinledgerError
from streams.httpsec import bearer_header, check_bind
from streams.infra import gctune

log = logging.getLogger("twinledger.sink")

#: how long ``/conservation`` waits for the sink's commits to pass the outcome topics' ends
FOLD_CHECK_WAIT_S = 5.0


def verify(backend: Backend) -> dict[str, Any]:
    """Per table ``count()`` and ``uniqExact(event_id)`` WITHOUT ``FINAL``, and whether they match.

    ``{"ok": bool, "tables": {table: {"count", "uniq", "match"}}}`` — also what
    ``GET /counts`` answers. ``balances`` (latest per asset) also has
    ``versions``, ``keys`` and ``final``: it matches when no (account, asset,
    version) is stored twice and ``FINAL`` shows one row per (account, asset)
    (``sinks.runner.table_matches``).
    """
    return verdict(count_events(backend, TABLES))


def verify_http(base_url: str, timeout: float = 30.0, token: str = "") -> dict[str, Any]:
    """:func:`verify` through a running sink's ``GET /counts`` (chDB is locked by the sink)."""
    if not base_url.startswith(("http://", "https://")):
        raise ValueError("base_url must be http(s)")
    req = urllib.request.Request(f"{base_url.rstrip('/')}/counts",  # noqa: S310 - scheme checked
                                 headers=bearer_header(token))
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - scheme checked
        counts = json.loads(resp.read())
    tables = counts.get("tables", counts)
    figures = ("count", "uniq", "versions", "keys", "final")
    return verdict({t: {k: int(c[k]) for k in figures if k in c} for t, c in tables.items()})


def sink_readiness(runner: SinkRunner) -> dict[str, Any]:
    """``/ready``: consuming with partitions assigned (DDL applied before the server starts)."""
    assigned = [f"{t}[{p}]" for t, p in runner.assigned]
    return {"ready": bool(assigned), "assigned": assigned, "last_error": runner.last_error}


def sink_committed(settings: Settings, runner: SinkRunner
                   ) -> tuple[dict[tuple[str, int], int | None], dict[str, str], FoldedBound]:
    """For ``/conservation``: the sink group's committed offsets of every sinked topic,
    each topic's table, and how far the fold can be checked (``FoldedBound``).

    Read in this order: the worker group's committed offsets on ``venue.events``,
    then the end offsets of the outcome topics (every output of an event below
    those offsets was flushed before they were committed, so it lies below
    these ends), then the sink group's committed offsets.
    """
    from streams.infra.kafka_admin import committed_offsets, watermarks

    tables = dict(runner.table_by_topic)
    source = settings.topic("venue.events")
    worker = committed_offsets(settings.kafka_bootstrap, settings.app_id, [source])
    outcome_topics = [t for t, table in tables.items() if table in OUTCOME_TABLES]
    ends = watermarks(settings.kafka_bootstrap, outcome_topics)
    # A sink that keeps up commits past those ends within a batch or two: wait for that
    # briefly, so the fold check runs on a busy pipeline too, not only on an idle one.
    deadline = time.monotonic() + FOLD_CHECK_WAIT_S
    while True:
        committed = committed_offsets(settings.kafka_bootstrap, settings.sink_group,
                                      list(tables))
        pending = {f"{topic}[{partition}]": end - (committed.get((topic, partition)) or 0)
                   for (topic, partition), (_, end) in ends.items()
                   if end > (committed.get((topic, partition)) or 0)}
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    bound = FoldedBound(source, pending=pending)
    for (topic, partition), folded in worker.items():
        read = committed.get((topic, partition))
        bound.upto[partition] = min(folded or 0, read or 0)
    return committed, tables, bound


def _parser() -> argparse.ArgumentParser:
    from streams.helptext import parser as help_parser

    p = help_parser("sink")
    p.add_argument("--no-http", action="store_true", help="do not serve the read-only endpoint")
    p.add_argument("--http-port", type=int, default=None,
                   help="override TWINLEDGER_SINK_HTTP_PORT (0 = any free port)")
    p.add_argument("--until-idle", type=float, default=None, metavar="SECONDS",
                   help="exit once nothing new arrived for SECONDS (scripts, tests)")
    p.add_argument("--verify", action="store_true",
                   help="print the verify verdict as JSON before exiting")
    p.add_argument("--log-level", default="INFO",
                   help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    return p


def sink_main(argv: list[str]) -> int:
    """Run the sink until SIGTERM/SIGINT (or idle with ``--until-idle``); 0 on a clean stop."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    http: SinkHTTPServer | None = None
    backend: Backend | None = None
    try:
        settings = load_settings()
        if not args.no_http:  # refuse an open bind before taking the data directory
            check_bind(settings.sink_http_host, settings.http_token, "sink HTTP endpoint")
        backend = open_backend(settings)
        apply_ddl(backend, settings.clickhouse_database, settings.clickhouse_cluster,
                  settings.snapshot_retention_days)
        codec = Codec.load(settings.schema_registry_url)
        from confluent_kafka import Consumer

        # The consumer measures the lag per partition between its polls (sinks.metrics).
        consumer = sink_metrics.LagTrackingConsumer(Consumer(consumer_config(settings)),
                                                    partitions=lambda: runner.assigned)
        runner = SinkRunner(settings, backend, codec, consumer=consumer)
        if not args.no_http:
            port = settings.sink_http_port if args.http_port is None else args.http_port
            http = SinkHTTPServer(backend, settings.sink_http_host, port, health=lambda: {
                "assigned": [f"{t}[{p}]" for t, p in runner.assigned],
                "stats": dict(runner.stats), "last_error": runner.last_error,
            }, ready=lambda: sink_readiness(runner),
                committed=lambda: sink_committed(settings, runner),
                token=settings.http_token).start()
            print(f"sink: read-only endpoint {http.url}", file=sys.stderr, flush=True)
        def on_signal(signum: int, frame: Any) -> None:
            log.info("sink: %s received, stopping after the current batch",
                     signal.Signals(signum).name)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        gctune.for_long_running(settings.gc_gen0)  # once start-up has allocated (gctune)
        if args.until_idle is not None:
            try:
                runner.run_until_idle(idle_seconds=args.until_idle, timeout=24 * 3600)
            finally:
                runner.close()
        else:
            runner.run(stop)
        log.info("sink: stopped; %s", dict(runner.stats))
        if args.verify:
            print(json.dumps(verify(backend)), flush=True)
        return 0
    except TwinledgerError as exc:
        print(f"twinledger sink: {exc}", file=sys.stderr)
        return 1
    finally:
        if http is not None:
            http.stop()
        if backend is not None:
            backend.close()


if __name__ == "__main__":
    raise SystemExit(sink_main(sys.argv[1:]))
