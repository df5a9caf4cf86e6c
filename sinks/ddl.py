"""The sink tables: one typed table per sinked topic plus the range-state table.

Owns: table names, column names, column types and engines — the single source
of truth that ``sinks.rows`` (row shapes) and ``sinks.runner`` (inserts and
the existence filter) read. A table whose columns are its record's fields of
the same names needs nothing more: its rows are built from its columns
(``sinks.rows.columns_row``); one that reshapes its record has a hand-written
builder in ``sinks.rows.BUILDERS``. Which record and topic feed a table is
the catalogue's (``streams.catalogue``). Must not touch: values (rows are built in
``sinks.rows``) or any connection: ``sinks.migrate`` runs these statements
through a ``Backend``, so this module imports neither.

Conventions:

- money and quantities ``Decimal(38, 18)`` (the Avro decimal scale), times
  ``DateTime64(6, 'UTC')``; nothing is ever a float;
- event tables are ``ReplacingMergeTree ORDER BY (account_id, event_id)``,
  partitioned by month of their time column, the second line of defense
  behind the sink's own exactly-once flow, with
  ``non_replicated_deduplication_window`` so ``insert_deduplication_token``
  works on a single (non-replicated) MergeTree;
- ``balances`` is the exception that keeps the latest state rather than
  every event: ``ReplacingMergeTree(version) ORDER BY (account_id, asset)``
  and no partitioning (ReplacingMergeTree replaces only within a partition,
  so a monthly partition would keep one row per asset per month). It still
  has ``event_id`` first after ``account_id``: the sink's existence filter
  and insert flow are the same as everywhere. Read it with ``FINAL`` for one
  row per (account, asset); without ``FINAL`` older versions may still be
  there, never the same (account, asset, version) twice;
- ``portfolio_snapshots`` expire: ``TTL toDateTime(ts) + toIntervalDay(N)``
  with N = ``TWINLEDGER_SNAPSHOT_RETENTION_DAYS`` (0 = kept forever). The
  sink brings an existing table's TTL in line with the setting at start
  (:func:`sinks.migrate.sync_ttl`: ``MODIFY TTL`` or ``REMOVE TTL``), since
  ``CREATE ... IF NOT EXISTS`` would keep the old one;
- nested records (positions, balances, rule results) are JSON strings with
  decimals as strings, read with ``JSONExtract*``; string lists are
  ``Array(String)``;
- every event row keeps the Kafka coordinates it was read from
  (``kafka_topic``, ``kafka_partition``, ``kafka_offset``) for audits;
- ``sink_ranges`` holds the BEFORE/AFTER range state per (group, topic,
  partition). It lives in ClickHouse, next to the rows it guards, rather than
  in a local file: wiping the chDB directory wipes both together, and with a
  server the state follows a partition to whichever sink host owns it.

With ``TWINLEDGER_CLICKHOUSE_CLUSTER`` set, every statement gets
``ON CLUSTER <name>`` and engines become ``Replicated*`` with the usual
``{shard}``/``{replica}`` macros (deduplication then uses the replicated
window). That path is documented, not tested here (no cluster in CI).

DDL is idempotent (``IF NOT EXISTS``) and applied by the sink at start
(:func:`sinks.migrate.apply_ddl`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sinks.exceptions import DDLError

MONEY = "Decimal(38, 18)"
NMONEY = "Nullable(Decimal(38, 18))"
TIME = "DateTime64(6, 'UTC')"
LC = "LowCardinality(String)"

#: How many recent insert tokens each table remembers; a retry must come
#: within this many inserts into the same table (all partitions together).
DEDUP_WINDOW = 10000

#: Kafka coordinates kept on every event row (filled by the runner).
KAFKA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("kafka_topic", LC),
    ("kafka_partition", "UInt32"),
    ("kafka_offset", "UInt64"),
)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def ident(name: str) -> str:
    """``name`` if it is a plain ClickHouse identifier; raise otherwise.

    Database, cluster and table names come from our settings, never from a
    topic; this check keeps even a mistyped setting from reaching SQL unquoted.
    """
    if not _IDENT.match(name):
        raise DDLError(f"not a plain identifier: {name!r}")
    return name


#: ``Table.partition`` of event tables: one partition per month of the time column.
MONTHLY = "monthly"


@dataclass(frozen=True)
class Table:
    """A sink table: typed columns in insert order, then the Kafka coordinates.

    The first two columns are always ``account_id`` and ``event_id`` (the
    runner's key). ``order_by`` is the sorting (and replacing) key,
    ``version`` the ReplacingMergeTree version column ("" = the last
    inserted row wins), ``partition`` :data:`MONTHLY` or "" (none), ``ttl``
    whether rows expire ``retention_days`` after their time column.
    ``added`` names the columns a later layout added: a table an older sink
    created gets them by ``ALTER TABLE ... ADD COLUMN`` at start (the rows
    already there read the type's default), any other missing column stops
    the sink (``sinks.migrate.check_columns``).
    """

    name: str
    columns: tuple[tuple[str, str], ...]
    time_column: str = "ts"
    order_by: tuple[str, ...] = ("account_id", "event_id")
    version: str = ""
    partition: str = MONTHLY
    ttl: bool = False
    added: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [c for c, _ in self.columns]
        if not set(self.added) <= set(names[2:]):
            raise DDLError(f"{self.name}: added columns {self.added} must be its columns")
        if names[:2] != ["account_id", "event_id"]:
            raise DDLError(f"{self.name}: the first columns must be account_id, event_id")
        unknown = [c for c in (*self.order_by, self.version, self.time_column)
                   if c and c not in names]
        if unknown:
            raise DDLError(f"{self.name}: no such columns {unknown}")
        if self.partition not in (MONTHLY, ""):
            raise DDLError(f"{self.name}: partition must be {MONTHLY!r} or ''")

    @property
    def insert_columns(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns) + tuple(c for c, _ in KAFKA_COLUMNS)

    def ttl_expression(self, retention_days: int) -> str:
        """The TTL clause's expression for ``retention_days`` ("" = none)."""
        if not self.ttl or retention_days <= 0:
            return ""
        return f"toDateTime({ident(self.time_column)}) + toIntervalDay({int(retention_days)})"

    def create_body(self, database: str, cluster: str, retention_days: int) -> str:
        """Engine, partitioning, sorting key, TTL and settings of the CREATE statement."""
        window = ("replicated_deduplication_window" if cluster
                  else "non_replicated_deduplication_window")
        engine = _engine("ReplacingMergeTree", self.name, database, cluster,
                         ident(self.version) if self.version else "")
        lines = [f"ENGINE = {engine}"]
        if self.partition == MONTHLY:
            lines.append(f"PARTITION BY toYYYYMM({ident(self.time_column)})")
        lines.append(f"ORDER BY ({', '.join(ident(c) for c in self.order_by)})")
        ttl = self.ttl_expression(retention_days)
        if ttl:
            lines.append(f"TTL {ttl}")
        lines.append(f"SETTINGS {window} = {DEDUP_WINDOW}")
        return "\n".join(lines)


VENUE_EVENTS = Table("venue_events", (
    ("account_id", "String"),
    ("event_id", "String"),
    ("venue", LC),
    ("kind", LC),
    ("ts", TIME),                     # ts_exchange, named ts like every other table
    ("ts_ingest", TIME),
    ("symbol", LC),
    ("side", LC),
    ("position_side", LC),
    ("market", LC),
    ("qty", NMONEY),
    ("price", NMONEY),
    ("fee", NMONEY),
    ("fee_asset", LC),
    ("leverage", NMONEY),
    ("realized_pnl", NMONEY),
    ("amount", NMONEY),               # funding and cash-flow amount
    ("capital", NMONEY),              # anchor
    ("asset", LC),                    # cash-flow asset
    ("flow", LC),
    ("wallet_balance", NMONEY),
    ("available_margin", NMONEY),
    ("used_margin", NMONEY),
    ("maint_margin", NMONEY),
    ("venue_order_id", "String"),
    ("client_order_id", "String"),
    ("fill_event_id", "String"),
    ("strategy_tag", LC),
    ("positions", "String"),          # PositionSnapshot positions (JSON)
    ("assets", "String"),             # BalanceUpdate per-asset free/locked (JSON)
    ("fold_json", "String"),          # the canonical FOLD_FORMAT line: re-fold from here
))

ACCOUNT_SNAPSHOTS = Table("account_snapshots", (
    ("account_id", "String"),
    ("event_id", "String"),
    ("event_seq", "UInt64"),
    ("event_kind", LC),
    ("ts", TIME),
    ("capital", MONEY),
    ("capital_source", LC),
    ("k_capital", MONEY),
    ("equity", MONEY),
    ("peak_capital", MONEY),
    ("unrealized_pnl", MONEY),
    ("realized_pnl", MONEY),
    ("fees", MONEY),
    ("funding", MONEY),
    ("cash_flows", MONEY),
    ("wallet_balance", NMONEY),
    ("available_margin", MONEY),
    ("used_margin", MONEY),
    ("maint_margin", MONEY),
    ("k_used_margin", MONEY),
    ("reconcile_status", LC),
    ("capital_frozen", "Bool"),
    ("positions", "String"),          # JSON list of PositionState
    ("balances", "String"),           # JSON list of BalanceState
    ("stale_marks", "Map(String, UInt64)"),  # symbol -> age (s) of a mark older than allowed
), added=("stale_marks",))

TRADE_EVENTS = Table("trade_events", (
    ("account_id", "String"),
    ("event_id", "String"),
    ("trade_id", "String"),
    ("source_event_id", "String"),
    ("event_seq", "UInt64"),
    ("ts", TIME),
    ("symbol", LC),
    ("position_side", LC),
    ("side", LC),
    ("action", LC),
    ("market", LC),
    ("qty", MONEY),
    ("price", MONEY),
    ("position_qty", MONEY),
    ("avg_entry_price", MONEY),
    ("pnl_leg", MONEY),
    ("fee_leg", MONEY),
    ("cumulative_pnl", MONEY),
    ("trade_fees", MONEY),
    ("pnl_source", LC),
    ("exchange_realized_pnl", NMONEY),
    ("holding_seconds", "Int64"),
    ("flags", "Array(String)"),
    ("strategy_tag", LC),
    ("cost_basis", NMONEY),           # spot legs: cost added (BUY) / removed (SELL)
), added=("cost_basis",))

RECONCILE_EVENTS = Table("reconcile_events", (
    ("account_id", "String"),
    ("event_id", "String"),
    ("source_event_id", "String"),
    ("event_seq", "UInt64"),
    ("ts", TIME),
    ("status", LC),
    ("previous_status", LC),
    ("capital_frozen", "Bool"),
    ("results", "String"),            # JSON list of RuleResult
    ("explanations", "Array(String)"),
))

ANOMALY_EVENTS = Table("anomaly_events", (
    ("account_id", "String"),
    ("event_id", "String"),
    ("source_event_id", "String"),
    ("event_seq", "UInt64"),
    ("ts", TIME),
    ("code", LC),
    ("severity", LC),
    ("detail", "String"),
))

DEAD_LETTERS = Table("dead_letters", (
    ("account_id", "String"),
    ("event_id", "String"),           # <topic>:<partition>:<offset> of the bad record
    ("source_topic", LC),
    ("source_partition", "Int32"),
    ("source_offset", "Int64"),
    ("ts", TIME),
    ("error_type", LC),
    ("reason", "String"),
    ("original_key", "Nullable(String)"),
    ("original_value", "String"),     # the bytes as received; binary-safe
))

CASH_FLOWS = Table("cash_flows", (
    ("account_id", "String"),
    ("event_id", "String"),           # <source event_id>:cashflow
    ("source_event_id", "String"),
    ("event_seq", "UInt64"),
    ("ts", TIME),
    ("flow", LC),
    ("asset", LC),
    ("amount", MONEY),                # signed, in the asset
    ("value", MONEY),                 # signed, in `currency`
    ("currency", LC),
    ("price", NMONEY),
    ("unvalued", "Bool"),
    ("balance_after", NMONEY),
))

BALANCES = Table("balances", (
    ("account_id", "String"),
    ("event_id", "String"),           # <source event_id>:balance:<asset>
    ("asset", LC),
    ("version", "UInt64"),            # event_seq of the change: the highest is kept
    ("source_event_id", "String"),
    ("event_seq", "UInt64"),
    ("ts", TIME),
    ("free", MONEY),
    ("locked", MONEY),
    ("total", MONEY),
    ("avg_cost", MONEY),
    ("cost_basis", MONEY),
    ("value", MONEY),
    ("unvalued", "Bool"),
    ("exchange_total", NMONEY),
    ("drift", "Bool"),
), order_by=("account_id", "asset"), version="version", partition="")

PORTFOLIO_SNAPSHOTS = Table("portfolio_snapshots", (
    ("account_id", "String"),
    ("event_id", "String"),           # <account_id>:portfolio:<bucket start epoch s>
    ("source_event_id", "String"),
    ("event_seq", "UInt64"),
    ("ts", TIME),
    ("bucket_start", TIME),
    ("interval_seconds", "Int64"),
    ("base_currency", LC),
    ("equity", MONEY),
    ("realized_pnl", MONEY),
    ("fees", MONEY),
    ("unrealized_pnl", MONEY),
    ("cash_flows", MONEY),
    ("drift", "Bool"),
    ("drift_assets", "Array(String)"),
    ("unvalued_assets", "Array(String)"),
    ("balances", "String"),           # JSON list of BalanceState
), ttl=True)

#: Every sink table by name; the keys are the catalogue's tables (``streams.catalogue``).
TABLES: dict[str, Table] = {t.name: t for t in (
    VENUE_EVENTS, ACCOUNT_SNAPSHOTS, TRADE_EVENTS, RECONCILE_EVENTS, ANOMALY_EVENTS,
    DEAD_LETTERS, CASH_FLOWS, BALANCES, PORTFOLIO_SNAPSHOTS,
)}

#: Tables that keep the latest row per key instead of one row per event.
LATEST_TABLES = frozenset(t.name for t in TABLES.values() if t.version)

#: Default of ``TWINLEDGER_SNAPSHOT_RETENTION_DAYS``.
DEFAULT_RETENTION_DAYS = 365

RANGES_TABLE = "sink_ranges"
RANGES_COLUMNS: tuple[tuple[str, str], ...] = (
    ("consumer_group", "String"),
    ("topic", "String"),
    ("partition", "UInt32"),
    ("first_offset", "Int64"),
    ("last_offset", "Int64"),
    ("state", "Enum8('BEFORE' = 1, 'AFTER' = 2)"),
    # Monotonic per (group, topic, partition), kept by the runner, not a clock:
    # a clock step back must not resurrect an old state.
    ("version", "UInt64"),
    ("updated_at", f"{TIME} DEFAULT now64(6)"),
)


#: Records the sink read but did not insert because their (account_id, event_id) was
#: already earlier in the batch or in the table (a batch the worker replayed after a crash, a gateway re-send).
#: With the rows and the dead letters they account for every offset the sink
#: consumed, which is what ``twinledger verify`` checks (``sinks.conservation``).
DUPLICATES_TABLE = "sink_duplicates"
DUPLICATES_COLUMNS: tuple[tuple[str, str], ...] = (
    ("kafka_topic", LC),
    ("kafka_partition", "UInt32"),
    ("kafka_offset", "UInt64"),
    ("target_table", LC),
    ("account_id", "String"),
    ("event_id", "String"),
    ("inserted_at", f"{TIME} DEFAULT now64(6)"),
)
DUPLICATES_INSERT_COLUMNS = tuple(c for c, _ in DUPLICATES_COLUMNS if c != "inserted_at")


def _engine(kind: str, table: str, database: str, cluster: str, args: str = "") -> str:
    if cluster:
        path = f"'/clickhouse/tables/{{shard}}/{database}/{table}', '{{replica}}'"
        return f"Replicated{kind}({path}{', ' + args if args else ''})"
    return f"{kind}({args})"


def create_statements(database: str, cluster: str = "",
                      retention_days: int = DEFAULT_RETENTION_DAYS,
                      tables: Mapping[str, Table] | None = None) -> list[str]:
    """Every DDL statement, in order, for ``database`` (and ``cluster`` when set).

    ``retention_days`` is the TTL of tables with ``ttl`` (0 = none); ``tables``
    the sink tables (default :data:`TABLES`; tests pass their own).
    """
    db = ident(database)
    on = f" ON CLUSTER {ident(cluster)}" if cluster else ""
    stmts = [f"CREATE DATABASE IF NOT EXISTS {db}{on}"]
    for table in (TABLES if tables is None else tables).values():
        cols = ",\n    ".join(f"{ident(c)} {t}" for c, t in table.columns + KAFKA_COLUMNS)
        stmts.append(
            f"CREATE TABLE IF NOT EXISTS {db}.{ident(table.name)}{on} (\n    {cols},\n"
            f"    inserted_at {TIME} DEFAULT now64(6)\n)\n"
            + table.create_body(db, cluster, retention_days)
        )
    cols = ",\n    ".join(f"{c} {t}" for c, t in RANGES_COLUMNS)
    stmts.append(
        f"CREATE TABLE IF NOT EXISTS {db}.{RANGES_TABLE}{on} (\n    {cols}\n)\n"
        f"ENGINE = {_engine('ReplacingMergeTree', RANGES_TABLE, db, cluster, 'version')}\n"
        "ORDER BY (consumer_group, topic, partition)"
    )
    cols = ",\n    ".join(f"{c} {t}" for c, t in DUPLICATES_COLUMNS)
    stmts.append(
        f"CREATE TABLE IF NOT EXISTS {db}.{DUPLICATES_TABLE}{on} (\n    {cols}\n)\n"
        f"ENGINE = {_engine('ReplacingMergeTree', DUPLICATES_TABLE, db, cluster)}\n"
        "ORDER BY (kafka_topic, kafka_partition, kafka_offset)\n"
        f"SETTINGS {'replicated' if cluster else 'non_replicated'}_deduplication_window"
        f" = {DEDUP_WINDOW}"
    )
    return stmts
