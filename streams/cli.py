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
from typing import Any

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


def _export(argv: list[str]) -> int:
    from streams.export import export_main

    return export_main(argv)


def _topology(argv: list[str]) -> int:
    from streams.codec import load_named_schemas
    from streams.config import load_settings
    from streams.helptext import parser
    from streams.topology import load_topology

    parser("topology").parse_args(argv)
    settings = load_settings()
    names = {full.rsplit(".", 1)[1] for full in load_named_schemas()}
    topology = load_topology(settings.topology_path, names)
    doc = topology.describe()
    doc["resolved_topic_names"] = {n: settings.topic(n) for n in topology.topics}
    print(json.dumps(doc, indent=2))
    return 0


# --------------------------------------------------------------- twinledger portfolio

#: exit codes of ``twinledger portfolio`` (besides 0)
EXIT_ERROR = 1  # the worker cannot be reached or answered with an error
EXIT_USAGE = 2  # bad arguments or parameters, unreadable file or config
EXIT_NOT_FOUND = 3  # no such account (on this worker / in this file), no such position



def _portfolio_parser() -> argparse.ArgumentParser:
    from streams.queries import QUERIES

    common = argparse.ArgumentParser(add_help=False)
    src = common.add_mutually_exclusive_group()
    src.add_argument("--worker", metavar="URL",
                     help="worker base URL (default: the local worker)")
    src.add_argument("--file", metavar="EVENTS",
                     help="fold this JSON-lines event file offline instead ('-' = stdin)")
    common.add_argument("--config", default=None,
                        help="ledger config, YAML or JSON (with --file)")
    common.add_argument("--table", action="store_true",
                        help="print a readable text table instead of JSON")
    common.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the worker (default 10)")
    common.add_argument("account", help="account id")
    from streams.helptext import parser as help_parser

    parser = help_parser("portfolio")
    sub = parser.add_subparsers(dest="query", metavar="QUERY", required=True)
    helps = {
        "equity": "equity, PnL parts, cash flows, drift flag and details, unvalued assets",
        "positions": "every position (futures and spot pairs) and every asset balance",
        "position": "one position by symbol (XBT/USD or XBT-USD) or one asset's balance",
        "exposure": "each asset's value as a share of equity",
        "trades": "trade history (--pair, --limit, --include-manual, --since, --until)",
        "fees": "fees by asset, by pair and in total (--include-manual)",
        "cash-flows": "recent cash flows and the net total (--limit, --since, --until)",
        "snapshots": "recent portfolio snapshots (--limit, --since, --until)",
        "performance": "win rate, profit factor, average win and loss, return net of cash "
                       "flows and max drawdown from the account's history",
    }
    for name in QUERIES:
        q = sub.add_parser(name, parents=[common], help=helps[name],
                           description=helps[name],
                           epilog=f"example:\n  twinledger portfolio {_EXAMPLE_ARGS[name]}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == "position":
            q.add_argument("symbol", help="symbol (XBT/USD, XBT-USD) or asset (XBT)")
        if name == "trades":
            q.add_argument("--pair", help="only this symbol")
        if name in ("trades", "fees", "performance"):
            q.add_argument("--include-manual", action=argparse.BooleanOptionalAction,
                           default=None, help="count manual (untagged) trades "
                           "(default: the ledger config's track_manual_trades)")
        if name in ("trades", "cash-flows", "snapshots"):
            q.add_argument("--limit", type=_non_negative, help="only the most recent N")
            q.add_argument("--since", type=_iso_time, metavar="TIME",
                           help="ISO-8601 event time, inclusive; when the worker's history does "
                                "not reach back this far, it is read from ClickHouse (the sink)")
            q.add_argument("--until", type=_iso_time, metavar="TIME",
                           help="ISO-8601 event time, exclusive")
        if name in ("equity", "positions", "position", "exposure"):
            q.add_argument("--as-of", dest="as_of", type=_iso_time, metavar="TIME",
                           help="count mark ages to this ISO-8601 time (default: the newest "
                                "mark's own time)")
    return parser


def _iso_time(text: str) -> Any:
    from streams.exceptions import QueryError
    from streams.queries import parse_time

    try:
        return parse_time("time", text)
    except QueryError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative(text: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def _portfolio(argv: list[str]) -> int:
    """``twinledger portfolio QUERY ACCOUNT [...]``: see ``streams.helptext``."""
    from streams.exceptions import NotFound, QueryError
    from streams.queries import PARAMS, render_table
    from streams.workerclient import query_worker

    parser = _portfolio_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on a usage error, 0 on --help
        return int(exc.code or 0)
    params = {k: getattr(args, k) for k in PARAMS[args.query]
              if getattr(args, k, None) is not None}
    try:
        if args.file is not None:
            doc = _portfolio_from_file(args.query, args.account, params, args.file,
                                       args.config)
        else:
            doc = query_worker(args.query, args.account, params, args.worker, args.timeout)
    except NotFound as exc:
        print(f"twinledger portfolio: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except (QueryError, _UsageError) as exc:
        print(f"twinledger portfolio: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.file is None and params.get("since") is not None and doc.get("complete") is False:
        try:
            doc = history_from_sink(args.query, args.account, params, doc)
        except TwinledgerError as exc:
            print(f"twinledger portfolio: the worker's history starts at "
                  f"{doc.get('history_from')} and the sink could not be read for older: {exc}",
                  file=sys.stderr)
    if args.table:
        sys.stdout.write(render_table(doc))
    else:
        print(json.dumps(doc, indent=2))
    return 0


class _UsageError(TwinledgerError):
    """An unreadable events file or ledger config (exit 2)."""


def _portfolio_from_file(query: str, account: str, params: dict[str, Any], path: str,
                         config_path: str | None) -> dict[str, Any]:
    from streams.exceptions import ConfigError
    from streams.foldfile import run_fold
    from streams.ledger import load_ledger_config
    from streams.queries import PARAMS, run_query

    try:
        config = load_ledger_config(config_path)
        if path == "-":
            run = run_fold(sys.stdin.buffer, config)
        else:
            with open(path, "rb") as fh:  # a line that is not UTF-8 is rejected, not fatal
                run = run_fold(fh, config)
    except ConfigError as exc:
        raise _UsageError(str(exc)) from None
    except OSError as exc:
        raise _UsageError(f"cannot read {path}: {exc.strerror}") from None
    if run.rejected:
        first = run.rejected[0]
        print(f"twinledger portfolio: {len(run.rejected)} line(s) of {path} rejected "
              f"(line {first['line']}: {first['reason']})", file=sys.stderr)
    if "as_of" in PARAMS[query] and "as_of" not in params and run.last_ts is not None:
        params = {**params, "as_of": run.last_ts}  # mark ages count to the file's last event
    return run_query(query, run.states.get(account), account, run.marks, run.config,
                     **params)


#: query -> (named read query of the sink, the answer's list key)
_SINK_HISTORY = {"trades": ("trade_legs", "trades"), "cash-flows": ("cash_flows", "flows"),
                 "snapshots": ("portfolio_snapshots", "snapshots")}


def history_from_sink(query: str, account: str, params: dict[str, Any],
                      live: dict[str, Any], client: Any = None) -> dict[str, Any]:
    """``query`` answered from ClickHouse when the worker's history does not reach ``since``.

    The worker keeps only recent trades, cash flows and snapshots; the sink's
    named read queries (``trade_legs``, ``cash_flows``, ``portfolio_snapshots``)
    have them all. Trades are rebuilt from their legs
    (``streams.reporttext.trades_from_legs``); ``pair``, ``include_manual`` and
    ``limit`` filter as on the worker. ``source`` says where the rows came from;
    ``complete`` is false only when the sink cut the read at its row limit.
    """
    from streams.ops import REPORT_LIMIT, SinkClient

    if client is None:
        from streams.config import load_settings

        client = SinkClient(load_settings())
    name, key = _SINK_HISTORY[query]
    rows: list[dict[str, Any]] = client.read(
        name, account=account, since=params.get("since"), until=params.get("until"),
        limit=REPORT_LIMIT)
    if query == "trades":
        from streams.reporttext import trades_from_legs

        rows = trades_from_legs(rows).get(account, [])
        pair = params.get("pair")
        if pair is not None:
            from streams.queries import resolve_symbol

            pair = resolve_symbol(pair, {str(t["symbol"]) for t in rows})
            rows = [t for t in rows if t["symbol"] == pair]
        manual = params.get("include_manual", live.get("include_manual", True))
        if not manual:
            rows = [t for t in rows if t.get("strategy_tag") not in ("", "manual")]
    else:
        rows = [{k: v for k, v in r.items() if k != "account_id"} for r in rows]
    limit = params.get("limit")
    if limit is not None:
        rows = rows[len(rows) - limit:] if limit else []
    return {
        "account_id": account, "event_seq": live.get("event_seq"),
        "base_currency": live.get("base_currency"),
        "source": "clickhouse: the worker's history starts at "
                  f"{live.get('history_from')}, after --since",
        "since": _iso_text(params.get("since")), "until": _iso_text(params.get("until")),
        "complete": name not in client.truncated,
        "count": len(rows), key: [_json_row(r) for r in rows],
    }


def _iso_text(t: Any) -> Any:
    return t.isoformat() if hasattr(t, "isoformat") else t


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """Decimals as plain strings, times as ISO-8601, for a JSON answer."""
    from decimal import Decimal

    from streams.ledger.numbers import plain

    return {k: (plain(v.normalize()) if isinstance(v, Decimal) else _iso_text(v))
            for k, v in row.items()}


#: An example argument list of each portfolio query (its --help shows it).
_EXAMPLE_ARGS = {
    "equity": "equity kraken-1 --table",
    "positions": "positions kraken-1",
    "position": "position kraken-1 XBT/USD",
    "exposure": "exposure kraken-1 --worker http://10.0.0.5:6066",
    "trades": "trades kraken-1 --pair XBT/USD --limit 20",
    "fees": "fees kraken-spot-1 --file examples/spot_kraken.jsonl",
    "cash-flows": "cash-flows kraken-1 --limit 10",
    "snapshots": "snapshots kraken-1 --limit 5 --table",
    "performance": "performance kraken-1 --table",
}

_HANDLERS: dict[str, Callable[[list[str]], int]] = {
    "fold": _fold, "normalize": _normalize, "produce": _produce, "worker": _worker,
    "sink": _sink, "demo": _demo, "topology": _topology, "kafka": _ops, "topics": _ops,
    "replay": _ops, "report": _ops, "portfolio": _portfolio, "verify": _ops,
    "export": _export,
}


def _commands() -> dict[str, tuple[Callable[[list[str]], int], str]]:
    from streams.helptext import HELP

    return {name: (handler, HELP[name].summary) for name, handler in _HANDLERS.items()}


#: Every command: its handler and the one line `twinledger --help` shows.
COMMANDS = _commands()

_MAIN_EPILOG = """\
Run `twinledger COMMAND --help` for a command's arguments and examples.
Settings come from environment variables (KAFKA_BOOTSTRAP_SERVERS,
CLICKHOUSE_URL, TWINLEDGER_*); the README lists them all.

examples:
  twinledger fold examples/fet_short.jsonl          # the ledger of a file, offline
  twinledger demo                                   # the whole pipeline on a sample
  twinledger kafka start && twinledger topics && twinledger worker
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args)
    except BrokenPipeError:
        # The reader went away (`twinledger ... | head`): not an error. Point stdout
        # at /dev/null so the interpreter's final flush does not raise again.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="twinledger",
        description="Streaming bookkeeping for trading accounts: fold venue events into "
                    "per-account ledgers\n(offline or on Kafka), write them to ClickHouse "
                    "exactly once, and query them.",
        epilog="commands:\n"
               + "\n".join(f"  {name:<10} {doc}" for name, (_, doc) in COMMANDS.items())
               + "\n\n" + _MAIN_EPILOG,
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
