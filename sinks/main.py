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
from collections.abc import Callable, Mapping
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
#: seconds between two pairs of offsets the fold check may fall back to (``FoldCheckpoints``)
FOLD_CHECKPOINT_S = 10.0


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


Offsets = dict[tuple[str, int], int | None]


class FoldCheckpoints:
    """Recent pairs of (the worker group's offsets, the outcome topics' ends after them).

    The fold check (``/conservation``, ``verify``) may look below the worker's
    committed offsets of any moment whose outcome ends the sink has since
    committed past: every output of an event below those offsets was flushed
    before they were committed, so it lies below those ends, and the sink
    commits only what ClickHouse holds. Under steady load the sink rarely
    passes the ends of *now* within the check's wait, but it has passed those
    of some seconds ago: the check then runs up to the worker's offsets of
    that moment and says how old they are. ``take`` reads one pair (the
    sink's HTTP server takes one every ``FOLD_CHECKPOINT_S``, and each check
    keeps the pair it read); the newest ``keep`` are kept.
    """

    def __init__(self, keep: int = 8, spacing: float | None = None) -> None:
        self._lock = threading.Lock()
        self._points: list[tuple[float, Offsets, dict[tuple[str, int], int]]] = []
        self.keep = keep
        #: a reading younger than this after the newest kept one is not kept: a client
        #: polling /conservation every second must not push out the older, passed ones
        self.spacing = FOLD_CHECKPOINT_S / 2 if spacing is None else spacing

    def add(self, worker: Offsets, ends: dict[tuple[str, int], int],
            at: float | None = None) -> None:
        at = time.monotonic() if at is None else at
        with self._lock:
            if self._points:
                last_at, last_worker, last_ends = self._points[-1]
                if _went_down(last_worker, worker) or _went_down(last_ends, ends):
                    # Topics recreated, or the worker group reset for a replay: the
                    # readings before say nothing about the records of now.
                    self._points.clear()
                elif at - last_at < self.spacing:
                    return
            self._points.append((at, worker, ends))
            del self._points[:-self.keep]

    def take(self, settings: Settings, tables: dict[str, str]
             ) -> tuple[Offsets, dict[tuple[str, int], int], list[str]]:
        """Read the worker group's offsets, then the outcome topics' ends.

        Returns them with the outcome topics whose ends could not be read (the
        broker named them with an error, as during a restart); a reading
        without such topics is kept for later checks (``add``). An outcome
        topic that does not exist has no ends, and holds no output either.
        """
        from streams.infra.kafka_admin import committed_offsets, watermarks

        source = settings.topic("venue.events")
        worker = committed_offsets(settings.kafka_bootstrap, settings.app_id, [source])
        missing: list[str] = []
        ends = {tp: end for tp, (_, end) in
                watermarks(settings.kafka_bootstrap, _outcome_topics(tables), missing).items()}
        if not missing:
            self.add(worker, ends)
        return worker, ends, sorted(missing)

    def passed(self, committed: Offsets) -> tuple[float, Offsets] | None:
        """(age in seconds, worker offsets) of the newest pair whose ends ``committed`` passed."""
        now = time.monotonic()
        with self._lock:
            points = list(self._points)
        for at, worker, ends in reversed(points):
            if not _unread(ends, committed):
                return now - at, worker
        return None

    def run(self, settings: Settings, tables: Callable[[], dict[str, str]],
            stop: threading.Event, every: float | None = None) -> None:
        """Take a pair every ``every`` seconds (``FOLD_CHECKPOINT_S``) until ``stop``."""
        while not stop.wait(FOLD_CHECKPOINT_S if every is None else every):
            try:
                self.take(settings, tables())
            except Exception as exc:  # noqa: BLE001 - a broker away: the next one, later
                log.debug("fold checkpoint not taken: %s", exc)


def _outcome_topics(tables: Mapping[str, str]) -> list[str]:
    """The sinked topics whose tables hold the outcomes of the fold (``OUTCOME_TABLES``)."""
    return sorted(t for t, table in tables.items() if table in OUTCOME_TABLES)


def _went_down(before: Mapping[tuple[str, int], int | None],
               now: Mapping[tuple[str, int], int | None]) -> bool:
    return any((now.get(tp) or 0) < (offset or 0) for tp, offset in before.items()
               if tp in now)


def _unread(ends: dict[tuple[str, int], int], committed: Offsets) -> dict[str, int]:
    return {f"{topic}[{partition}]": end - (committed.get((topic, partition)) or 0)
            for (topic, partition), end in ends.items()
            if end > (committed.get((topic, partition)) or 0)}


def sink_committed(settings: Settings, runner: SinkRunner,
                   checkpoints: FoldCheckpoints | None = None
                   ) -> tuple[Offsets, dict[str, str], FoldedBound]:
    """For ``/conservation``: the sink group's committed offsets of every sinked topic,
    each topic's table, and how far the fold can be checked (``FoldedBound``).

    Read in this order: the worker group's committed offsets on ``venue.events``,
    then the end offsets of the outcome topics (every output of an event below
    those offsets was flushed before they were committed, so it lies below
    these ends), then the sink group's committed offsets. When the sink has not
    passed those ends within ``FOLD_CHECK_WAIT_S``, the newest earlier pair it
    has passed (``FoldCheckpoints``) bounds the check instead.
    """
    from streams.infra.kafka_admin import committed_offsets

    tables = dict(runner.table_by_topic)
    source = settings.topic("venue.events")
    checkpoints = checkpoints if checkpoints is not None else FoldCheckpoints(keep=1)
    worker, ends, missing = checkpoints.take(settings, tables)
    # A sink that keeps up commits past those ends within a batch or two: wait for that
    # briefly, so the fold check runs on a busy pipeline too, not only on an idle one.
    deadline = time.monotonic() + FOLD_CHECK_WAIT_S
    while True:
        committed = committed_offsets(settings.kafka_bootstrap, settings.sink_group,
                                      list(tables))
        pending = _unread(ends, committed)
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    bound = FoldedBound(source, pending=pending, not_read=missing,
                        outcome_topics=_outcome_topics(tables))
    earlier = checkpoints.passed(committed) if pending or missing else None
    if earlier is not None:
        bound.age_s, worker = earlier
        bound.pending, bound.not_read = {}, []
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
            checkpoints = FoldCheckpoints()
            threading.Thread(target=checkpoints.run, name="fold-checkpoints", daemon=True,
                             args=(settings, lambda: dict(runner.table_by_topic), stop)).start()
            port = settings.sink_http_port if args.http_port is None else args.http_port
            http = SinkHTTPServer(backend, settings.sink_http_host, port, health=lambda: {
                "assigned": [f"{t}[{p}]" for t, p in runner.assigned],
                "stats": dict(runner.stats), "last_error": runner.last_error,
            }, ready=lambda: sink_readiness(runner),
                committed=lambda: sink_committed(settings, runner, checkpoints),
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
