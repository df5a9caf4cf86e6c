"""The catalogue of outputs: one line for every record that reaches a ClickHouse table.

Owns: for each such record, the fold output kind that emits it (``Output.kind``
of ``streams.ledger``), its Avro record name (``streams/resources/avro/<record>.avsc``,
with a wire id in ``ids.json``), the logical topic it is sent to (a declared
topic of topology.yaml; ``TWINLEDGER_TOPIC_PREFIX`` is added at run time) and
the sink table it lands in (``sinks.ddl.TABLES``, ``sinks.rows.SPECS``). The
worker's kind -> (topic, record), the sink's table -> record and topic -> table
are derived from it, and topology.yaml is checked against it when loaded.

Must not touch: anything but plain data. It imports nothing of the project, so
the ledger, the worker, the topology loader and the sink can all read it
without an import circle. Topic configs (partitions, retention) stay in
topology.yaml, columns in ``sinks.ddl``, row builders in ``sinks.rows``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """One output: who emits it, how it is encoded, where it is sent, where it lands."""

    #: The fold's ``Output.kind``; None for a record the fold does not emit.
    kind: str | None
    #: The Avro record name (the topic's value schema).
    record: str
    #: The logical topic name (topology.yaml ``topics:``).
    topic: str
    #: The ClickHouse table (topology.yaml ``sinks:``).
    table: str


CATALOGUE: tuple[Entry, ...] = (
    # the input, stored as it was received
    Entry(None, "VenueEvent", "venue.events", "venue_events"),
    # what the fold emits
    Entry("snapshot", "AccountSnapshot", "ledger.snapshots", "account_snapshots"),
    Entry("trade", "TradeEvent", "ledger.trades", "trade_events"),
    Entry("reconcile", "ReconcileEvent", "ledger.reconcile", "reconcile_events"),
    Entry("anomaly", "Anomaly", "ledger.anomalies", "anomaly_events"),
    Entry("cashflow", "CashFlowEvent", "ledger.cashflows", "cash_flows"),
    Entry("balance", "BalanceChange", "ledger.balances", "balances"),
    Entry("portfolio", "PortfolioSnapshot", "ledger.portfolio", "portfolio_snapshots"),
    # what the worker or the sink could not book (topology.yaml ``deadletter_topic``)
    Entry(None, "DeadLetter", "ledger.deadletter", "dead_letters"),
)

#: The entries the fold emits, by ``Output.kind``.
BY_KIND: dict[str, Entry] = {e.kind: e for e in CATALOGUE if e.kind is not None}
#: Every entry by its sink table.
BY_TABLE: dict[str, Entry] = {e.table: e for e in CATALOGUE}
#: Every entry by its logical topic.
BY_TOPIC: dict[str, Entry] = {e.topic: e for e in CATALOGUE}

#: Output kind -> Avro record name.
RECORD_OF_KIND: dict[str, str] = {k: e.record for k, e in BY_KIND.items()}
#: Output kind -> (logical topic, Avro record name): what the worker sends.
TOPIC_OF_KIND: dict[str, tuple[str, str]] = {k: (e.topic, e.record) for k, e in BY_KIND.items()}
#: Output kind -> sink table.
TABLE_OF_KIND: dict[str, str] = {k: e.table for k, e in BY_KIND.items()}
#: Sink table -> Avro record name: what each table's row builder takes.
RECORD_OF_TABLE: dict[str, str] = {t: e.record for t, e in BY_TABLE.items()}
#: Sink table -> logical topic: what topology.yaml ``sinks:`` must say.
TOPIC_OF_TABLE: dict[str, str] = {t: e.topic for t, e in BY_TABLE.items()}


def disagreements(sinks: Mapping[str, str], values: Mapping[str, str],
                  deadletter_topic: str | None = None) -> list[str]:
    """How a topology disagrees with the catalogue, one sentence each (empty: it agrees).

    ``sinks`` is topology.yaml ``sinks:`` (table -> topic), ``values`` each
    declared topic's value schema (topic -> record), ``deadletter_topic`` its
    ``deadletter_topic``.
    """
    out = []
    for table, topic in sinks.items():
        want = TOPIC_OF_TABLE.get(str(table))
        if want is None:
            out.append(f"sink table {table!r} is not in the catalogue of outputs "
                       f"({', '.join(TOPIC_OF_TABLE)})")
        elif topic != want:
            out.append(f"sink {table!r} reads topic {topic!r}, the catalogue says {want!r}")
    for entry in CATALOGUE:
        if entry.table not in sinks:
            out.append(f"sink {entry.table!r} is missing (the catalogue says "
                       f"`{entry.table}: {entry.topic}`)")
        value = values.get(entry.topic)
        if value is None:
            out.append(f"topic {entry.topic!r} is not declared (the catalogue sends "
                       f"{entry.record} records to it)")
        elif value != entry.record:
            out.append(f"topic {entry.topic!r} has value schema {value!r}, the catalogue "
                       f"says {entry.record!r}")
    dead = BY_TABLE["dead_letters"].topic
    if deadletter_topic is not None and deadletter_topic != dead:
        out.append(f"deadletter_topic is {deadletter_topic!r}, the catalogue says {dead!r}")
    return out
