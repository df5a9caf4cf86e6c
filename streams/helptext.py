"""What ``twinledger COMMAND --help`` says: one summary, description and example per command.

Written for the people who run the commands, not for the code's maintainers;
kept in one place so that every command reads alike and a test
(tests/unit/test_cli_help.py) can check each has a description, its
arguments and an example.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Help:
    summary: str  # one line in `twinledger --help`
    description: str
    epilog: str  # ends with "example(s):"


FOLD_GRAMMAR = """\
input: one JSON object per line, each with "kind" (fill, funding, balance,
position, pnl_settled, anchor, cash_flow, mark, ...), "event_id",
"account_id", "venue" and "ts"; amounts are decimal strings such as "12.5"
(or JSON numbers of that form) with at most 20 integer and 18 fractional
digits; timestamps are ISO-8601 with a zone (2026-01-05T09:00:00Z) between
1900 and 2299; ids are text of at most 256 characters. The full format is
docs/fold-format.md in the twinledger repository."""

HELP: dict[str, Help] = {
    "fold": Help(
        "fold a JSON-lines file of venue events offline (no broker, no database)",
        "Fold a file of venue events into the per-account ledgers, offline, and print\n"
        "the result as one JSON document: each account's capital, positions, trades,\n"
        "fees, funding, cash flows, reconcile status and anomalies. Needs no Kafka and\n"
        "no ClickHouse; the worker applies the same fold to the same events.",
        f"""{FOLD_GRAMMAR}

exit status:
  0  every line was folded
  2  usage error: unreadable events file or ledger config
  4  the document was printed, but some lines were rejected (listed under
     "rejected" with their line number and reason; a one-line summary goes
     to standard error)

examples:
  twinledger fold examples/fet_short.jsonl
  twinledger fold examples/spot_kraken.jsonl --config ledger.yaml --include-manual
  twinledger normalize --venue kraken --account kraken-1 examples/venues/kraken.jsonl \\
      | twinledger fold -
"""),
    "normalize": Help(
        "turn raw venue payloads into fold-format events",
        "Turn payloads exactly as a venue sent them (WebSocket frames or REST\n"
        "responses, one JSON document per line) into fold-format events, one per line\n"
        "on standard output, through the same gateway code that `twinledger produce\n"
        "--venue` uses. Each rejected line is reported on standard error with its line\n"
        "number and reason, and the run goes on. Nothing is sent anywhere.",
        """venues: binance and bingx (futures user-data streams), kraken (spot ledgers,
trades history, REST pages), deltadefi (spot account stream and order info).
A line may also be wrapped as {"received_at": ..., "frame": ...}.
--account names the account: pass it unless every payload names its own
(binance, bingx and kraken payloads never do, deltadefi balance frames do
not); --memory keeps the gateway's memory of open orders
across runs (read if the file exists, written back at the end).

exit status: 0 every line normalized; 1 some line rejected; 2 usage error.

examples:
  twinledger normalize --venue binance --account binance-1 examples/venues/binance.jsonl
  twinledger normalize --venue kraken --account kraken-1 examples/venues/kraken.jsonl
  twinledger normalize --venue bingx --account bingx-1 examples/venues/bingx.jsonl \\
      | twinledger fold -
"""),
    "produce": Help(
        "send fold-format events (or raw payloads with --venue) to Kafka",
        "Send a file of events to Kafka: venue events to the venue.events topic keyed\n"
        "by account, marks (prices) to market.marks keyed by symbol, encoded as Avro.\n"
        "With --venue the file holds raw venue payloads, normalized first as\n"
        "`twinledger normalize` does; a payload the gateway rejects is sent to the\n"
        "dead-letter topic with the reason. Keys are hashed like the Java client, so\n"
        "records land on the same partition whichever client produced them.",
        """Kafka is KAFKA_BOOTSTRAP_SERVERS, or the local broker (started if needed) when
it is unset. TWINLEDGER_TOPIC_PREFIX prefixes every topic name.
exit status: 0 sent; 1 Kafka error; 2 unreadable file.

examples:
  twinledger produce examples/spot_kraken.jsonl
  twinledger produce --venue kraken --account kraken-1 examples/venues/kraken.jsonl
"""),
    "worker": Help(
        "run the worker that folds venue events into account ledgers",
        "Run a worker: it consumes venue.events, folds each account's events into its\n"
        "ledgers, keeps the state in a table backed by a compacted changelog topic, and\n"
        "publishes snapshots, trades, reconcile results, anomalies, cash flows, balances\n"
        "and portfolio snapshots to the ledger.* topics. Run several with the same\n"
        "TWINLEDGER_APP_ID to share the partitions. Runs until SIGTERM or Ctrl-C.",
        """HTTP pages on TWINLEDGER_WORKER_WEB_HOST:TWINLEDGER_WORKER_WEB_PORT
(127.0.0.1:6066): /accounts/<id> and the portfolio queries, /ready, /live,
/progress, /metrics. A non-loopback bind needs TWINLEDGER_HTTP_TOKEN.
exit status: 0 stopped; 70 stalled past TWINLEDGER_WORKER_STALL_GRACE_SECONDS
(let a supervisor restart it); 1 configuration or Kafka error.

examples:
  twinledger worker
  TWINLEDGER_WORKER_WEB_PORT=6067 twinledger worker --loglevel info
"""),
    "sink": Help(
        "run the ClickHouse sink (exactly-once inserts, read-only query endpoint)",
        "Run the sink: it consumes the ledger.* topics, venue.events and the dead-letter\n"
        "topic and writes each record into its ClickHouse table exactly once, creating\n"
        "the tables at start. ClickHouse is CLICKHOUSE_URL, or the embedded engine\n"
        "(chDB) in TWINLEDGER_CHDB_PATH when it is unset. It also serves read-only named\n"
        "queries for `twinledger report` and `verify`. Runs until SIGTERM or Ctrl-C.",
        """HTTP on TWINLEDGER_SINK_HTTP_HOST:TWINLEDGER_SINK_HTTP_PORT (127.0.0.1:8765):
/health, /ready, /metrics, /counts, /q/<query>. A non-loopback bind needs
TWINLEDGER_HTTP_TOKEN.
exit status: 0 stopped cleanly; 1 configuration, Kafka or ClickHouse error.

examples:
  twinledger sink
  CLICKHOUSE_URL=http://user:secret@clickhouse:8123 twinledger sink --log-level WARNING
  twinledger sink --until-idle 10 --verify     # drain what is there, check, exit
"""),
    "demo": Help(
        "run the whole pipeline on a bundled sample and report from ClickHouse",
        "Run the whole pipeline once on a bundled sample: start the local Kafka broker\n"
        "(unless KAFKA_BOOTSTRAP_SERVERS is set), create the topics, start a worker and\n"
        "a sink, send the sample, wait until ClickHouse holds every event, print the\n"
        "per-account report and live portfolio queries, check for duplicates, and stop\n"
        "everything it started. Each run first removes the previous demo's topics and\n"
        "data (prefix demo.), so two runs print the same.",
        """The first run downloads the broker's jars with Maven (about 45 MB, once).
Progress goes to standard error, one line per step; the report to standard
output.
exit status: 0 demo ok; 1 a step failed (its reason and the log tail are printed).

examples:
  twinledger demo
  twinledger demo --sample my_events.jsonl --timeout 300
"""),
    "topology": Help(
        "print the resolved topology (topics, partitions, schemas, sinks) as JSON",
        "Print the topology in force as JSON: every topic with its key, value schema,\n"
        "partition count and Kafka configs, the tables the sink fills from which topics,\n"
        "and the broker-side topic names after TWINLEDGER_TOPIC_PREFIX. The topology is\n"
        "TWINLEDGER_TOPOLOGY, or the one shipped with the package.",
        """Needs no broker. Copy the printed file's source to start your own topology:
the shipped one is streams/resources/topology.yaml (topology.yaml at the root of
the repository).

examples:
  twinledger topology
  TWINLEDGER_TOPIC_PREFIX=staging. twinledger topology
"""),
    "kafka": Help(
        "start, stop or ask about the local single-node Kafka broker",
        "Manage the local single-node Kafka broker (KRaft, loopback only) that twinledger\n"
        "uses when KAFKA_BOOTSTRAP_SERVERS is unset: `start` downloads the broker's jars\n"
        "with Maven the first time, starts it and waits until it answers; `stop` stops\n"
        "the broker it started; `status` prints its pid, address and version.",
        """The port is TWINLEDGER_KAFKA_PORT (39092); data lives under
TWINLEDGER_DATA_DIR, jars under TWINLEDGER_CACHE_DIR. Needs Java 17+ and Maven.
exit status: 0 done (status: running); 1 stopped (status) or failed.

examples:
  twinledger kafka start
  twinledger kafka status      # running pid=12345 bootstrap=127.0.0.1:39092 version=...
  twinledger kafka stop
"""),
    "topics": Help(
        "create the topology's topics with their configs, or check them",
        "Create the topology's topics that are missing, with their partitions and\n"
        "configs (retention, timestamp type, cleanup policy), and set back configs that\n"
        "drifted on existing topics. Prints {topic: partitions} as JSON. A partition\n"
        "count that differs from the topology is refused (it cannot be fixed in place).",
        """exit status: 0 done (or, with --check, nothing drifted); 1 drift found or a
Kafka error.

examples:
  twinledger topics
  twinledger topics --check     # exit 1 if any config drifted
"""),
    "replay": Help(
        "reset the worker's or the sink's consumer group to replay",
        "Reset a consumer group's committed offsets so that it reads again: the worker's\n"
        "group on venue.events or the sink's group on the topics it writes to\n"
        "ClickHouse. Stop every worker (or sink) of the group first.",
        """--to-earliest goes back to the first record still in the topic;
--to-datetime to the first record at or after that time (the record's
timestamp: event time on venue.events, append time on the ledger.* topics).
On restart the same rows come out and none is added twice (every output
carries its event id). See "Replay and backfill" in docs/operations.md of the
twinledger repository.

examples:
  twinledger replay --group sink --to-earliest
  twinledger replay --group worker --to-datetime 2026-01-01T00:00:00Z
"""),
    "report": Help(
        "report accounts from ClickHouse through the sink",
        "Print each account's latest state as ClickHouse holds it: capital, equity,\n"
        "positions, reconcile status, balances, cash flows, portfolio snapshots, drift\n"
        "and trades, read through the running sink's read-only endpoint.",
        """The sink is reached at TWINLEDGER_SINK_HTTP_HOST:TWINLEDGER_SINK_HTTP_PORT,
with TWINLEDGER_HTTP_TOKEN when set. Large answers are cut at the query limit
(a note on standard error says so).

examples:
  twinledger report
  twinledger report --account kraken-1 --since 2026-01-01T00:00:00Z --json
"""),
    "verify": Help(
        "check nothing was lost or doubled between Kafka and ClickHouse",
        "Check that nothing was lost or doubled between venue.events and ClickHouse:\n"
        "one row per logical event in every table; every offset the sink committed\n"
        "accounted for (a row, a dead letter or a recorded duplicate); every account's\n"
        "snapshots without holes; consumer lag of both groups; with no lag, each\n"
        "account's live state on the worker equal to what ClickHouse holds.",
        """Prints JSON; each problem also goes to standard error.
exit status: 0 all hold; 1 something is missing or doubled (named).

examples:
  twinledger verify
  twinledger verify --worker-url http://127.0.0.1:6066
"""),
    "export": Help(
        "export trades (a PnL report), fills, cash flows, snapshots or balances",
        "Write one kind of history, as ClickHouse holds it, to CSV, Parquet or JSON\n"
        "lines: trades (one line per trade with its cost basis, proceeds, realized PnL,\n"
        "fees and net PnL), fills, cash flows, account snapshots or the latest balances,\n"
        "for one account or all, read through the running sink's read-only endpoint.",
        """Amounts are exact: plain decimals in CSV (never 1E+3, never a float), strings
in JSON lines, decimal128(38, 18) in Parquet; times are ISO-8601 UTC. CSV has a
header row and opens as is in a spreadsheet. --since/--until bound the event
time (a trade by its opening time). Every page of the sink's answer is read,
so nothing is cut at the query limit. The sink is reached at
TWINLEDGER_SINK_HTTP_HOST:TWINLEDGER_SINK_HTTP_PORT, with TWINLEDGER_HTTP_TOKEN
when set.
exit status: 0 written; 1 the sink cannot be reached or refused a parameter;
2 usage error.

examples:
  twinledger export trades --account acct-fet-short --out trades.csv
  twinledger export cash-flows --since 2024-05-01T00:00:00Z --format jsonl
  twinledger export snapshots --account all --format parquet --out snapshots.parquet
"""),
    "portfolio": Help(
        "portfolio queries (equity, positions, trades...) on a worker or a file",
        "Answer a portfolio query on one account as JSON (or a table): equity,\n"
        "positions, one position, exposure, trades, fees, cash flows, portfolio\n"
        "snapshots or performance statistics. From a running worker's live state, or\n"
        "from an events file folded offline with the same code. Trades, cash flows and\n"
        "snapshots take --since/--until; history older than the worker keeps is read\n"
        "from ClickHouse through the sink.",
        """sources:
  --worker URL     ask a running worker (default: the local worker,
                   http://127.0.0.1:$TWINLEDGER_WORKER_WEB_PORT); live state and marks
  --file FILE      fold a fold-format events file offline and answer from that
                   state, valued at the file's last marks

exit status: 0 answered; 2 bad arguments, parameter, file or config;
3 account or position not found; 1 worker unreachable or failing.

examples:
  twinledger portfolio equity kraken-1
  twinledger portfolio position kraken-1 XBT/USD --table
  twinledger portfolio trades kraken-1 --pair XBT/USD --limit 20 --no-include-manual
  twinledger portfolio fees kraken-spot-1 --file examples/spot_kraken.jsonl
  twinledger portfolio cash-flows kraken-1 --since 2024-05-01T00:00:00Z
  twinledger portfolio performance kraken-1 --table
"""),
}


def parser(command: str, **kwargs: object) -> argparse.ArgumentParser:
    """The argument parser of ``twinledger <command>`` with its description and examples."""
    h = HELP[command]
    return argparse.ArgumentParser(
        prog=f"twinledger {command}", description=h.description, epilog=h.epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)  # type: ignore[arg-type]
