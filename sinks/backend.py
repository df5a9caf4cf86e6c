"""One way to reach ClickHouse: clickhouse-connect, for the embedded engine and for servers.

Owns: the connection (an in-process chDB engine through clickhouse-connect's
``chdb://`` interface, or a server through http(s)), how query parameters and
insert data travel, turning every client failure into :class:`BackendError`,
and the read-only clients of :meth:`Backend.reader`. Must not touch: table
layouts (``sinks.ddl``), row building (``sinks.rows``) or the exactly-once
flow (``sinks.runner``).

**Nothing read from a topic or a request is ever put into SQL text.** Values
travel as ``{name:Type}`` query parameters (``query``/``command``) or as
insert data in the native format (``insert``). The only SQL we build from
strings are identifiers from ``sinks.ddl``.

Targets: ``CLICKHOUSE_URL`` unset = the embedded engine at
``TWINLEDGER_CHDB_PATH`` (``chdb:///that/path``); ``http(s)://...`` = that
server; a ``chdb://`` URL = the embedded engine at its path. chDB lets one
process own a data directory ("Cannot lock file .../status"): the sink
process holds it and everyone else reads through its HTTP endpoint. Inside
the process every client (the ingest client, each reader) has its own
connection handle, so session state, a failed query or an open stream of
one client never reaches another.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sinks.ddl import ident
from sinks.exceptions import BackendError, BackendUnavailable

if TYPE_CHECKING:
    from streams.config import Settings

Params = Mapping[str, Any]

_TOKEN = re.compile(r"^[A-Za-z0-9._:-]{1,512}$")

#: Limits every read-only client runs with, enforced by the engine. They are set on the
#: connection BEFORE ``readonly`` (a read-only connection cannot change settings after).
READ_LIMITS: dict[str, Any] = {
    "max_execution_time": 5,
    "timeout_overflow_mode": "throw",
    "max_result_rows": 100_000,
    "max_result_bytes": 64 << 20,
    "result_overflow_mode": "throw",
    "max_memory_usage": 512 << 20,
    # A read takes one core at most: the sink's inserts keep the other.
    "max_threads": 1,
}


def check_token(token: str) -> str:
    """An insert token travels as a setting; keep it to topic names and offsets."""
    if not _TOKEN.match(token):
        raise BackendError(f"insert_deduplication_token has characters outside [A-Za-z0-9._:-]: "
                           f"{token!r}")
    return token


class Backend(ABC):
    """What the sink needs from ClickHouse: statements, reads and idempotent inserts."""

    #: ``chdb`` or ``server``; the HTTP endpoint and reports show it.
    kind: str = ""
    database: str = "twinledger"

    @abstractmethod
    def command(self, sql: str, params: Params | None = None) -> None:
        """Run a statement that returns nothing (DDL, small state writes)."""

    def query(self, sql: str, params: Params | None = None,
              settings: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows as tuples of Python values (Decimal, aware datetime, int, str, list...)."""
        return self.query_with_names(sql, params, settings)[1]

    def query_with_names(self, sql: str, params: Params | None = None,
                         settings: Mapping[str, Any] | None = None
                         ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows; the HTTP endpoint needs the names."""
        raise NotImplementedError

    @abstractmethod
    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
               dedup_token: str) -> None:
        """Insert synchronously; returns only once ClickHouse acknowledged the rows.

        ``dedup_token`` becomes ``insert_deduplication_token``: the same token
        again (within the table's deduplication window) inserts nothing.
        """

    @abstractmethod
    def use_database(self) -> None:
        """Make ``self.database`` the default for unqualified names (after the DDL made it)."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection (and, for chDB, the data directory lock)."""

    def reader(self, limits: Mapping[str, Any] | None = None) -> Backend:
        """A separate read-only connection to the same data, with engine-enforced limits."""
        raise NotImplementedError(f"{type(self).__name__} has no read-only client")


def _mask(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _aware(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    if isinstance(value, list):
        return [_aware(v) for v in value]
    return value


class _StringArray:
    """An ``Array(String)`` parameter in the text form clickhouse-connect sends for a list.

    clickhouse-connect escapes a string one character at a time in Python: the
    sink's existence query binds every event id of a batch, and that took most
    of the query's CPU (about 2.4 ms per 1,000 ids against 0.2 ms here). Its
    binder passes an object of a type it does not know through ``str()``, so
    this one carries the text it would have made: the same escapes (backslash,
    quote, backtick, tab and newline get a backslash) and separators, proven equal
    by the unit tests. The server parses it as a typed parameter, never as SQL.
    """

    __slots__ = ("text",)

    def __init__(self, values: Sequence[str]) -> None:
        self.text = "[" + ", ".join(["'" + _escape(v) + "'" for v in values]) + "]"

    def __str__(self) -> str:
        return self.text


def _escape(value: str) -> str:
    # The backslash first: the others add backslashes of their own.
    return (value.replace("\\", "\\\\").replace("'", "\\'").replace("`", "\\`")
            .replace("\t", "\\\t").replace("\n", "\\\n"))


def _bind(value: Any) -> Any:
    """A parameter as clickhouse-connect binds it; times in UTC, no floats."""
    if isinstance(value, float):
        raise BackendError("a float parameter: money and quantities travel as Decimal")
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise BackendError("naive datetime parameter: every time must be timezone-aware")
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, list | tuple):
        if all(type(v) is str for v in value):
            return _StringArray(value)
        return [_bind(v) for v in value]
    return value


def _check_rows(rows: Sequence[Sequence[Any]]) -> None:
    """No float and no NaN/Infinity decimal is ever stored; naive times are refused."""
    for row in rows:
        for v in row:
            t = type(v)
            if t is float:
                raise BackendError("cannot store a float (money and quantities are Decimal)")
            if t is Decimal and not v.is_finite():
                raise BackendError(f"non-finite decimal {v} cannot be stored")
            if t is dt.datetime and v.tzinfo is None:
                raise BackendError("naive datetime: every time the sink writes must be "
                                   "timezone-aware")


def chdb_url(path: str | Path) -> str:
    """The clickhouse-connect DSN of the embedded engine with its data at ``path``."""
    return f"chdb://{Path(path).expanduser().resolve()}"


class ClickHouseBackend(Backend):
    """ClickHouse through clickhouse-connect: ``chdb:///path`` (embedded) or ``http(s)://``.

    ``settings`` are connection-level settings (a reader's limits and
    ``readonly``); they are applied in order, so limits come before
    ``readonly``.
    """

    def __init__(self, url: str, database: str = "twinledger", *,
                 settings: Mapping[str, Any] | None = None) -> None:
        import clickhouse_connect

        self.database = ident(database)
        self.url = url
        self._shown = _mask(url)
        self.kind = "chdb" if url.startswith("chdb:") else "server"
        if not url.startswith(("chdb:", "http:", "https:")):
            raise BackendUnavailable(f"CLICKHOUSE_URL must be http(s):// or chdb://, "
                                     f"got {self._shown}")
        self._settings = dict(settings or {})
        # Calls on one client are serialized: the chdb handle needs it, and the
        # HTTP client's session state (database) is per client too.
        self._lock = threading.RLock()
        try:
            if self.kind == "chdb":
                path = url.split("://", 1)[1]
                if path.startswith("/"):
                    Path(path.split("?", 1)[0]).mkdir(parents=True, exist_ok=True)
                self._client: Any = clickhouse_connect.get_client(
                    dsn=url, tz_mode="aware", settings=self._settings)
            else:
                # No database= here: it may not exist until the DDL ran; names are qualified.
                self._client = clickhouse_connect.get_client(
                    dsn=url, connect_timeout=5, send_receive_timeout=60, tz_mode="aware",
                    # No server session: readers and the ingest path are separate clients.
                    autogenerate_session_id=False, settings=self._settings)
        except Exception as exc:
            text = str(exc)
            hint = ""
            if "Cannot lock file" in text:
                hint = (" — another process (a running `twinledger sink`?) owns this directory;"
                        " read through the sink's HTTP endpoint or stop it first")
            # The exception text of a server client can echo the DSN: only the type is shown.
            detail = text if self.kind == "chdb" else type(exc).__name__
            raise BackendUnavailable(f"cannot open ClickHouse at {self._shown}: "
                                     f"{detail}{hint}") from None
        _use_if_exists(self)

    def _fail(self, what: str, exc: Exception) -> BackendError:
        text = str(exc)
        if self.kind == "server":
            text = text.replace(self.url, self._shown)
        return BackendError(f"ClickHouse{what}: {text}")

    def command(self, sql: str, params: Params | None = None) -> None:
        bound = {k: _bind(v) for k, v in (params or {}).items()}
        try:
            with self._lock:
                self._client.command(sql, parameters=bound)
        except Exception as exc:
            raise self._fail("", exc) from exc

    def query_with_names(self, sql: str, params: Params | None = None,
                         settings: Mapping[str, Any] | None = None
                         ) -> tuple[list[str], list[tuple[Any, ...]]]:
        bound = {k: _bind(v) for k, v in (params or {}).items()}
        try:
            with self._lock:
                result = self._client.query(sql, parameters=bound, settings=dict(settings or {}))
                names = list(result.column_names)
                rows = result.result_rows
        except Exception as exc:
            raise self._fail("", exc) from exc
        return names, [tuple(_aware(v) for v in row) for row in rows]

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
               dedup_token: str) -> None:
        if not rows:
            return
        _check_rows(rows)
        settings = {"insert_deduplication_token": check_token(dedup_token), "async_insert": 0}
        try:
            with self._lock:
                self._client.insert(ident(table), rows, column_names=list(columns),
                                    database=self.database, settings=settings)
        except Exception as exc:
            raise self._fail(f" insert into {table}", exc) from exc

    def use_database(self) -> None:
        with self._lock:
            self._client.database = self.database

    def reader(self, limits: Mapping[str, Any] | None = None) -> ClickHouseBackend:
        """A new read-only client: ``limits`` (default :data:`READ_LIMITS`), then readonly.

        chDB takes ``readonly = 1``. A server client sends its own settings
        with every request, which ``readonly = 1`` refuses; ``2`` still
        refuses every write and DDL (and only our named SQL runs on it).
        """
        settings = dict(READ_LIMITS if limits is None else limits)
        settings["readonly"] = 1 if self.kind == "chdb" else 2
        return ClickHouseBackend(self.url, self.database, settings=settings)

    def close(self) -> None:
        with self._lock:
            try:
                self._client.close()
            except Exception as exc:
                raise self._fail(" close", exc) from exc


def _use_if_exists(backend: Backend) -> None:
    """Readers that open a backend after the sink made the tables get unqualified names too."""
    rows = backend.query("SELECT count() FROM system.databases WHERE name = {db:String}",
                         {"db": backend.database})
    if rows and rows[0][0]:
        backend.use_database()


def backend_url(settings: Settings) -> str:
    """``CLICKHOUSE_URL`` when set (http(s) or chdb), else the embedded engine's DSN."""
    return settings.clickhouse_url or chdb_url(settings.chdb_path)


def open_backend(settings: Settings) -> Backend:
    """A server backend when ``CLICKHOUSE_URL`` is set, else chDB at ``TWINLEDGER_CHDB_PATH``."""
    return ClickHouseBackend(backend_url(settings), settings.clickhouse_database)


__all__ = ["READ_LIMITS", "Backend", "ClickHouseBackend", "backend_url", "chdb_url",
           "check_token", "open_backend"]
