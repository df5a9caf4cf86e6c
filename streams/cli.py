"""The ``twinledger`` command line.

Owns: argument parsing and dispatch. Each subcommand's work lives in its own
module, imported lazily so that ``twinledger fold`` starts without Faust or
Kafka clients.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from streams.exceptions import TwinledgerError


def _fold(argv: list[str]) -> int:
    from streams.foldfile import fold_main

    return fold_main(argv)


def _normalize(argv: list[str]) -> int:
    from streams.gateways.cli import normalize_main

    return normalize_main(argv)


def _produce(argv: list[str]) -> int:
    from streams.produce import produce_main

    return produce_main(argv)


def _worker(argv: list[str]) -> int:
    from streams.worker import worker_main

    return worker_main(argv)


def _sink(argv: list[str]) -> int:
    from sinks.main import sink_main

    return sink_main(argv)


def _demo(argv: list[str]) -> int:
    from streams.demo import demo_main

    return demo_main(argv)


def _ops(argv: list[str]) -> int:
    from streams.ops import ops_main

    return ops_main(argv)


def _topology(argv: list[str]) -> int:
    from streams.codec import load_named_schemas
    from streams.config import load_settings
    from streams.topology import load_topology

    settings = load_settings()
    names = {full.rsplit(".", 1)[1] for full in load_named_schemas()}
    topology = load_topology(settings.topology_path, names)
    doc = topology.describe()
    doc["resolved_topic_names"] = {n: settings.topic(n) for n in topology.topics}
    print(json.dumps(doc, indent=2))
    return 0


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "fold": (_fold, "fold a JSON-lines file of venue events offline (no broker, no database)"),
    "normalize": (_normalize, "turn raw venue payloads into fold-format events"),
    "produce": (_produce, "send fold-format events (or raw payloads with --venue) to Kafka"),
    "worker": (_worker, "run the Faust worker (agent fold_account_events)"),
    "sink": (_sink, "run the ClickHouse sink (exactly-once inserts, read-only query endpoint)"),
    "demo": (_demo, "run the whole pipeline on a bundled sample and report from ClickHouse"),
    "topology": (_topology, "print the resolved topology"),
    "kafka": (_ops, "local broker: kafka start|stop|status"),
    "topics": (_ops, "create the topics of topology.yaml"),
    "replay": (_ops, "reset a consumer group's offsets (worker or sink) to replay"),
    "report": (_ops, "report accounts from ClickHouse through the sink"),
    "verify": (_ops, "check count() = uniqExact(event_id) for every table"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="twinledger",
        description="Streaming bookkeeping for trading accounts.",
        epilog="\n".join(f"  {name:<10} {doc}" for name, (_, doc) in COMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    if not args or args[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if args else 2
    ns = parser.parse_args(args[:1])
    handler, _ = COMMANDS[ns.command]
    rest = args[1:]
    if handler is _ops:
        rest = [ns.command, *rest]
    try:
        return handler(rest)
    except TwinledgerError as exc:
        print(f"twinledger {ns.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
