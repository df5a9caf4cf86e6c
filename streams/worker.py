"""``twinledger worker``: run the Faust worker that folds venue events.

Owns: process start-up (settings, logging, the Faust worker). Must not touch:
the agent loop (``streams.app``) or bookkeeping (``streams.ledger``).
"""

from __future__ import annotations

import logging

from streams.config import load_settings
from streams.infra import gctune


def _dump_tasks_on_sigusr1() -> None:
    """``kill -USR1 <pid>`` prints every asyncio task's stack: where a stalled worker waits."""
    import signal

    from streams.app import dump_tasks

    signal.signal(signal.SIGUSR1, lambda signum, frame: dump_tasks())


def worker_main(argv: list[str]) -> int:
    from streams.helptext import parser as help_parser

    parser = help_parser("worker")
    parser.add_argument("--loglevel", default="warning",
                        help="log level: debug, info, warning, error (default warning)")
    args = parser.parse_args(argv)

    import faust

    from streams.app import create_worker
    from streams.ops import with_kafka

    settings = with_kafka(load_settings())
    logging.basicConfig(level=args.loglevel.upper())
    worker = create_worker(settings)
    from streams.app import changelog_topics
    from streams.infra.kafka_admin import ensure_topics, until_reachable

    # A worker (re)started while the broker restarts waits for it instead of exiting.
    until_reachable("worker start-up", lambda: ensure_topics(
        settings.kafka_bootstrap, changelog_topics(settings, worker.topology),
        config={"cleanup.policy": "compact"}))
    _dump_tasks_on_sigusr1()
    worker.app.finalize()
    gctune.for_long_running(settings.gc_gen0)  # once start-up has allocated (gctune)
    fw = faust.Worker(worker.app, loglevel=args.loglevel, quiet=True)
    # Faust's start-up spinner sets the root logger to DEBUG for good (one spin per log
    # record): every debug call of aiokafka and Faust, several per record sent, then
    # builds a LogRecord that the handler drops. Without it the root logger keeps
    # ``--loglevel`` (measured: about 6% of the worker's time at the default level).
    fw.spinner = None
    fw.execute_from_commandline()
    return 0
