"""Brings a ClickHouse database in line with the tables of ``sinks.ddl``, at sink start.

Owns: running the statements of :func:`sinks.ddl.create_statements`, adding
the columns a later layout added to a table an older sink created, refusing a
table that lacks any other column, and setting the TTL of
expiring tables to the configured retention. Must not touch: table layouts
(``sinks.ddl`` describes them) or the connection (``sinks.backend`` runs what
this module asks). It sits above both, so neither of them imports the other
back.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from sinks.backend import Backend
from sinks.ddl import DEFAULT_RETENTION_DAYS, TABLES, Table, create_statements, ident
from sinks.exceptions import DDLError

log = logging.getLogger("twinledger.sink")


def apply_ddl(backend: Backend, database: str, cluster: str = "",
              retention_days: int = DEFAULT_RETENTION_DAYS) -> list[str]:
    """Create what is missing, check existing tables, make ``database`` the default.

    The default database lets endpoint readers write ``FROM account_snapshots``.
    Returns the ``ALTER`` statements :func:`sync_ttl` ran (empty when none).
    """
    for stmt in create_statements(database, cluster, retention_days):
        backend.command(stmt)
    add_columns(backend, database, cluster)
    check_columns(backend, database)
    altered = sync_ttl(backend, database, cluster, retention_days)
    backend.use_database()
    return altered


_TTL_CLAUSE = re.compile(r"\sTTL\s+(.*?)(?:\s+SETTINGS\s|$)", re.S)


def current_ttl(backend: Backend, database: str, table: str) -> str:
    """The table TTL expression as ClickHouse shows it (``engine_full``); "" when none."""
    rows = backend.query(
        "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        {"db": database, "t": table})
    if not rows:
        raise DDLError(f"table {database}.{table} does not exist")
    m = _TTL_CLAUSE.search(str(rows[0][0]))
    return " ".join(m.group(1).split()) if m else ""


def sync_ttl(backend: Backend, database: str, cluster: str = "",
             retention_days: int = DEFAULT_RETENTION_DAYS) -> list[str]:
    """Bring the TTL of every expiring table in line with ``retention_days``.

    ``CREATE TABLE IF NOT EXISTS`` keeps an existing table's TTL, so a changed
    ``TWINLEDGER_SNAPSHOT_RETENTION_DAYS`` is applied here: ``MODIFY TTL`` to
    the new expression (ClickHouse applies it to the rows already there), or
    ``REMOVE TTL`` for 0. Each change is logged; returns the statements run.
    """
    db = ident(database)
    on = f" ON CLUSTER {ident(cluster)}" if cluster else ""
    done: list[str] = []
    for table in TABLES.values():
        if not table.ttl:
            continue
        want = table.ttl_expression(retention_days)
        have = current_ttl(backend, database, table.name)
        if have == want:
            continue
        if want:
            stmt = f"ALTER TABLE {db}.{ident(table.name)}{on} MODIFY TTL {want}"
        else:
            stmt = f"ALTER TABLE {db}.{ident(table.name)}{on} REMOVE TTL"
        log.warning("sink: %s.%s TTL was %r, setting %s: %s", database, table.name,
                    have or "none", f"{retention_days} days" if want else "none", stmt)
        backend.command(stmt)
        done.append(stmt)
    return done


def _columns(backend: Backend, database: str, table: str) -> set[str]:
    rows = backend.query(
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}",
        {"db": database, "t": table},
    )
    return {r[0] for r in rows}


def add_columns(backend: Backend, database: str, cluster: str = "",
                tables: Sequence[Table] | None = None) -> list[str]:
    """Give a table an older sink created the columns a later layout added (``Table.added``).

    ``ADD COLUMN`` changes only metadata: the rows already there read the
    column's default (an empty map, 0, ""). Each change is logged; returns
    the statements run.
    """
    db = ident(database)
    on = f" ON CLUSTER {ident(cluster)}" if cluster else ""
    done: list[str] = []
    for table in tables or list(TABLES.values()):
        if not table.added:
            continue
        have = _columns(backend, database, table.name)
        names = [c for c, _ in table.columns]
        for name, typ in table.columns:
            if name not in table.added or name in have:
                continue
            before = names[names.index(name) - 1]
            stmt = (f"ALTER TABLE {db}.{ident(table.name)}{on} ADD COLUMN IF NOT EXISTS "
                    f"{ident(name)} {typ} AFTER {ident(before)}")
            log.warning("sink: %s.%s has no column %s (an older layout): %s", database,
                        table.name, name, stmt)
            backend.command(stmt)
            done.append(stmt)
            have.add(name)
    return done


def check_columns(backend: Backend, database: str, tables: Sequence[Table] | None = None
                  ) -> None:
    """Refuse to run against a table created by an older layout with missing columns.

    ``CREATE ... IF NOT EXISTS`` keeps an existing table as it is; inserting
    into it would fail batch after batch, so say which column is missing now.
    """
    for table in tables or list(TABLES.values()):
        have = _columns(backend, database, table.name)
        missing = [c for c in table.insert_columns if c not in have]
        if missing:
            raise DDLError(f"table {database}.{table.name} lacks columns {missing}; "
                           "migrate it or drop it so the sink recreates it")
