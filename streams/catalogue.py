"""The catalogue of outputs: one line for every record that reaches a ClickHouse table.

Owns: for each such record, the fold output kind that emits it (``Output.kind``
of ``streams.ledger``), its Avro record name (``streams/resources/avro/<record>.avsc``)
and the wire id of that schema's current version (written here once; ``ids.json``
keeps only the ids of schemas that are not a current output: ``Mark`` and the
retired versions under ``history/``), the logical topic it is sent to
(``TWINLEDGER_TOPIC_PREFIX`` is added at run time) and the sink table it lands
in (``sinks.ddl.TABLES``, ``sinks.rows.SPECS``). Derived from it: the codec's
ids (``streams.codec.avro``), the worker's kind -> (topic, record), topology.yaml's
output topics (its ``output_topic_defaults:`` unless the topic is declared),
``sinks:`` and the fold agent's ``sinks_to``, the sink's table -> record and
topic -> table; a topology.yaml that says otherwise is refused when loaded.

Must not touch: anything but plain data. It imports nothing of the project, so
the ledger, the worker, the codec, the topology loader and the sink can all
read it without an import circle. Topic configs (partitions, retention) stay in
topology.yaml, columns in ``sinks.ddl``, reshaping row builders in ``sinks.rows``.
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
    #: The logical topic name (a topology.yaml ``topics:`` entry, or its
    #: ``output_topic_defaults:`` when it has none).
    topic: str
    #: The ClickHouse table (``sinks.ddl.TABLES``).
    table: str
    #: The Confluent wire id of the record's current schema when no Schema Registry
    #: is configured. Never reused or renumbered: records on topics carry it forever.
    #: A new schema version takes the next unused id here and its previous file moves
    #: to ``history/<Name>.v<N>.avsc`` with the old id in ``ids.json``.
    wire_id: int


CATALOGUE: tuple[Entry, ...] = (
    # the input, stored as it was received
    Entry(None, "VenueEvent", "venue.events", "venue_events", wire_id=1),
    # what the fold emits
    Entry("snapshot", "AccountSnapshot", "ledger.snapshots", "account_snapshots", wire_id=11),
    Entry("trade", "TradeEvent", "ledger.trades", "trade_events", wire_id=12),
    Entry("reconcile", "ReconcileEvent", "ledger.reconcile", "reconcile_events", wire_id=4),
    Entry("anomaly", "Anomaly", "ledger.anomalies", "anomaly_events", wire_id=6),
    Entry("cashflow", "CashFlowEvent", "ledger.cashflows", "cash_flows", wire_id=9),
    Entry("balance", "BalanceChange", "ledger.balances", "balances", wire_id=10),
    Entry("portfolio", "PortfolioSnapshot", "ledger.portfolio", "portfolio_snapshots",
          wire_id=8),
    # what the worker or the sink could not book (topology.yaml ``deadletter_topic``)
    Entry(None, "DeadLetter", "ledger.deadletter", "dead_letters", wire_id=7),
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
#: Sink table -> logical topic: what the sink reads (topology.yaml ``sinks:``, derived).
TOPIC_OF_TABLE: dict[str, str] = {t: e.topic for t, e in BY_TABLE.items()}


#: The record the worker and the sink write what they could not book as.
DEAD_LETTER_RECORD = "DeadLetter"


def fold_sends(catalogue: tuple[Entry, ...] = CATALOGUE) -> list[str]:
    """The topics the fold agent sends to: every emitted kind's, then the dead letters'."""
    return ([e.topic for e in catalogue if e.kind is not None]
            + [e.topic for e in catalogue if e.record == DEAD_LETTER_RECORD])


def disagreements(sinks: Mapping[str, str], values: Mapping[str, str],
                  deadletter_topic: str | None = None,
                  catalogue: tuple[Entry, ...] = CATALOGUE,
                  sends: Mapping[str, list[str]] | None = None) -> list[str]:
    """How a topology disagrees with the catalogue, one sentence each (empty: it agrees).

    ``sinks`` is topology.yaml ``sinks:`` (table -> topic), ``values`` each
    declared topic's value schema (topic -> record), ``deadletter_topic`` its
    ``deadletter_topic`` and ``sends`` the ``sinks_to`` of each agent that reads
    a catalogue topic (the fold agent) and declares one.
    """
    topic_of_table = {e.table: e.topic for e in catalogue}
    out = []
    for table, topic in sinks.items():
        want = topic_of_table.get(str(table))
        if want is None:
            out.append(f"sink table {table!r} is not in the catalogue of outputs "
                       f"({', '.join(topic_of_table)})")
        elif topic != want:
            out.append(f"sink {table!r} reads topic {topic!r}, the catalogue says {want!r}")
    for entry in catalogue:
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
    dead = [e.topic for e in catalogue if e.record == DEAD_LETTER_RECORD]
    if deadletter_topic is not None and dead and deadletter_topic != dead[0]:
        out.append(f"deadletter_topic is {deadletter_topic!r}, the catalogue says {dead[0]!r}")
    want_sends = fold_sends(catalogue)
    for agent, topics in (sends or {}).items():
        missing = [t for t in want_sends if t not in topics]
        extra = [t for t in topics if t not in want_sends]
        if missing:
            out.append(f"agent {agent!r} sinks_to lacks {', '.join(missing)} (the catalogue "
                       "sends there)")
        if extra:
            out.append(f"agent {agent!r} sinks_to has {', '.join(map(str, extra))}, which "
                       "the catalogue sends nothing to")
    return out
