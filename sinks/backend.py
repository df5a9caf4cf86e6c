"""Two ways to reach ClickHouse behind one small interface: chDB on disk, or a server.

Owns: connections, how query parameters and insert data travel to each
engine, and turning results into Python values (``Decimal`` for decimals,
timezone-aware ``datetime`` for times). Must not touch: table layouts
(``sinks.ddl``), row building (``sinks.rows``) or the exactly-once flow
(``sinks.runner``).

**Nothing read from a topic is ever put into SQL text.** Values travel as
``{name:Type}`` query parameters (``query``/``command``) or as insert data in
a separate channel (``insert``): a TabSeparated stream for chDB, the native
protocol of clickhouse-connect for a server. The only SQL we build from
strings are identifiers from ``sinks.ddl`` and the insert token, which the
runner derives from topic names of our settings and integer offsets and
which :func:`check_token` restricts to ``[A-Za-z0-9._:-]``.

chDB lets one process own a data directory ("Cannot lock file .../status");
the sink process holds it and everyone else reads through its HTTP endpoint.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clickhouse_connect.driver.binding import format_bind_value

from sinks.ddl import ident
from sinks.exceptions import BackendError, BackendUnavailable

if TYPE_CHECKING:
    from streams.config import Settings

Params = Mapping[str, Any]

_TOKEN = re.compile(r"^[A-Za-z0-9._:-]{1,512}$")


def check_token(token: str) -> str:
    """An insert token is inlined into the INSERT's SETTINGS clause; keep it inert."""
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


# --- chDB -----------------------------------------------------------------


def _param_text(value: Any) -> str:
    """A Python value as ClickHouse's text form of a query parameter.

    chDB takes parameters as text exactly like the HTTP interface does, so
    clickhouse-connect's own formatter (escaping included) is reused; times
    are formatted here because that formatter drops microseconds.
    """
    if isinstance(value, dt.datetime):
        return _ts_text(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(format_bind_value(value))


def _ts_text(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise BackendError("naive datetime: every time the sink writes must be timezone-aware")
    if value.utcoffset():
        value = value.astimezone(dt.UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


_STR_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r",
                              "\0": "\\0", "\b": "\\b", "\f": "\\f"})
_QUOTED_STR_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n",
                                     "\r": "\\r", "\0": "\\0", "\b": "\\b", "\f": "\\f",
                                     "'": "\\'"})
_BYTE_ESCAPES = ((b"\\", b"\\\\"), (b"\t", b"\\t"), (b"\n", b"\\n"), (b"\r", b"\\r"),
                 (b"\0", b"\\0"), (b"\b", b"\\b"), (b"\f", b"\\f"))


def _escape_bytes(data: bytes, quote: bool = False) -> bytes:
    for raw, escaped in _BYTE_ESCAPES:  # backslash first, so escapes are not escaped again
        if raw in data:
            data = data.replace(raw, escaped)
    if quote and b"'" in data:
        data = data.replace(b"'", b"\\'")
    return data


def _f_str(value: str) -> bytes:
    return value.translate(_STR_ESCAPES).encode("utf-8")


def _f_bytes(value: bytes | bytearray | memoryview) -> bytes:
    return _escape_bytes(bytes(value))


def _f_bool(value: bool) -> bytes:
    return b"true" if value else b"false"


def _f_int(value: int) -> bytes:
    return str(value).encode()


def _f_decimal(value: Decimal) -> bytes:
    if not value.is_finite():
        raise BackendError(f"non-finite decimal {value} cannot be stored")
    return format(value, "f").encode()


def _f_datetime(value: dt.datetime) -> bytes:
    return _ts_text(value).encode()


def _f_none(value: None) -> bytes:
    return b"\\N"


def _f_seq(value: list[Any] | tuple[Any, ...]) -> bytes:
    open_, close = (b"[", b"]") if isinstance(value, list) else (b"(", b")")
    return open_ + b",".join(_quoted(v) for v in value) + close


_ENCODERS: dict[type, Any] = {
    str: _f_str, bytes: _f_bytes, bytearray: _f_bytes, memoryview: _f_bytes, bool: _f_bool,
    int: _f_int, Decimal: _f_decimal, dt.datetime: _f_datetime, type(None): _f_none,
    list: _f_seq, tuple: _f_seq,
}


def tsv_field(value: Any) -> bytes:
    """One value in ClickHouse's TabSeparated (escaped) form; bytes stay bytes."""
    encode = _ENCODERS.get(type(value))
    if encode is None:
        raise BackendError(f"cannot store a {type(value).__name__} (floats are never stored)")
    return bytes(encode(value))


def _quoted(value: Any) -> bytes:
    if isinstance(value, str):
        return b"'" + value.translate(_QUOTED_STR_ESCAPES).encode("utf-8") + b"'"
    if isinstance(value, bytes):
        return b"'" + _escape_bytes(value, quote=True) + b"'"
    if isinstance(value, dt.datetime):
        return b"'" + _ts_text(value).encode() + b"'"
    if value is None:
        return b"NULL"
    return tsv_field(value)


def tsv_rows(rows: Sequence[Sequence[Any]]) -> bytes:
    get = _ENCODERS.get
    out: list[bytes] = []
    for row in rows:
        fields = []
        for v in row:
            encode = get(type(v))
            if encode is None:
                raise BackendError(f"cannot store a {type(v).__name__} (floats are never stored)")
            fields.append(encode(v))
        out.append(b"\t".join(fields))
    out.append(b"")
    return b"\n".join(out)


_JSON_SETTINGS = (" SETTINGS output_format_json_quote_decimals = 1,"
                  " output_format_json_quote_64bit_integers = 0,"
                  " output_format_json_quote_64bit_floats = 0")


def _convert(type_name: str, value: Any) -> Any:
    """JSON value -> Python value, driven by the ClickHouse type in the result meta."""
    if value is None:
        return None
    t = type_name
    while True:  # wrappers that do not change the value
        for wrapper in ("Nullable(", "LowCardinality("):
            if t.startswith(wrapper):
                t = t[len(wrapper):-1]
                break
        else:
            break
    if t.startswith("Decimal"):
        return Decimal(str(value))
    if t.startswith("DateTime"):
        return _parse_ts(str(value))
    if t.startswith("Array(") and isinstance(value, list):
        inner = t[len("Array("):-1]
        return [_convert(inner, v) for v in value]
    if t.startswith(("Int", "UInt")) and isinstance(value, str):
        return int(value)
    return value


def _parse_ts(text: str) -> dt.datetime:
    # Result times are rendered in the column's zone, which is UTC for every sink table.
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


class ChdbBackend(Backend):
    """chDB (in-process ClickHouse) with its data on disk at ``path``."""

    kind = "chdb"

    def __init__(self, path: str | Path, database: str = "twinledger") -> None:
        from chdb import session as chdb_session

        self.database = ident(database)
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._session: Any = chdb_session.Session(str(self.path))
        except Exception as exc:  # chDB raises RuntimeError subclasses with the engine text
            hint = ""
            if "Cannot lock file" in str(exc):
                hint = (" — another process (a running `twinledger sink`?) owns this directory;"
                        " read through the sink's HTTP endpoint or stop it first")
            raise BackendUnavailable(f"cannot open chDB at {self.path}: {exc}{hint}") from exc
        # One statement at a time: the HTTP thread reads while the runner inserts,
        # and a chDB streaming insert blocks every other statement on the session.
        self._lock = threading.RLock()
        _use_if_exists(self)

    def _run(self, sql: str, fmt: str, params: Params | None) -> Any:
        text_params = {k: _param_text(v) for k, v in (params or {}).items()}
        with self._lock:
            if self._session is None:
                raise BackendError("chDB backend is closed")
            try:
                return self._session.query(sql, fmt, params=text_params)
            except Exception as exc:
                raise BackendError(f"chDB: {exc}") from exc

    def command(self, sql: str, params: Params | None = None) -> None:
        self._run(sql, "CSV", params)

    def query_with_names(self, sql: str, params: Params | None = None,
                         settings: Mapping[str, Any] | None = None
                         ) -> tuple[list[str], list[tuple[Any, ...]]]:
        extra = "".join(f", {ident(k)} = {int(v)}" for k, v in (settings or {}).items())
        result = self._run(f"{sql}{_JSON_SETTINGS}{extra}", "JSONCompact", params)
        raw = result.bytes() if hasattr(result, "bytes") else bytes(result)
        if not raw.strip():
            return [], []
        doc = json.loads(raw)
        meta = doc["meta"]
        names = [m["name"] for m in meta]
        types = [m["type"] for m in meta]
        rows = [tuple(_convert(t, v) for t, v in zip(types, row, strict=True))
                for row in doc["data"]]
        return names, rows

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
               dedup_token: str) -> None:
        if not rows:
            return
        cols = ", ".join(ident(c) for c in columns)
        # Identifiers from sinks.ddl and a checked token: no topic data in this text.
        sql = (f"INSERT INTO {self.database}.{ident(table)} ({cols}) SETTINGS "  # noqa: S608
               f"insert_deduplication_token = '{check_token(dedup_token)}', async_insert = 0")
        data = tsv_rows(rows)
        with self._lock:
            if self._session is None:
                raise BackendError("chDB backend is closed")
            try:
                with self._session.send_insert(sql, "TabSeparated") as ins:
                    ins.append(data)
                    ins.finish()
            except Exception as exc:
                raise BackendError(f"chDB insert into {table}: {exc}") from exc

    def use_database(self) -> None:
        self.command(f"USE {self.database}")

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None


# --- ClickHouse server through clickhouse-connect ----------------------------


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


class ClickHouseConnectBackend(Backend):
    """A ClickHouse server at ``url`` (``http(s)://user:pass@host:port``)."""

    kind = "server"

    def __init__(self, url: str, database: str = "twinledger") -> None:
        import clickhouse_connect

        self.database = ident(database)
        self._url = _mask(url)
        try:
            # No database= here: it may not exist until the DDL ran; names are qualified.
            self._client: Any = clickhouse_connect.get_client(
                dsn=url, connect_timeout=5, send_receive_timeout=60,
                # No server session: the HTTP endpoint reads while the runner inserts.
                autogenerate_session_id=False,
            )
        except Exception as exc:
            # The exception text can echo the DSN; only the masked URL is reported.
            raise BackendUnavailable(f"cannot reach ClickHouse at {self._url}: "
                                     f"{type(exc).__name__}") from None
        _use_if_exists(self)

    def command(self, sql: str, params: Params | None = None) -> None:
        try:
            self._client.command(sql, parameters=dict(params or {}))
        except Exception as exc:
            raise BackendError(f"ClickHouse: {exc}") from exc

    def query_with_names(self, sql: str, params: Params | None = None,
                         settings: Mapping[str, Any] | None = None
                         ) -> tuple[list[str], list[tuple[Any, ...]]]:
        query_settings = dict(settings or {})
        if query_settings.get("readonly") == 1:
            # clickhouse-connect sends settings of its own with every request, which
            # readonly = 1 refuses; 2 still refuses every write and DDL.
            query_settings["readonly"] = 2
        try:
            result = self._client.query(sql, parameters=dict(params or {}),
                                        settings=query_settings)
        except Exception as exc:
            raise BackendError(f"ClickHouse: {exc}") from exc
        rows = [tuple(_aware(v) for v in row) for row in result.result_rows]
        return list(result.column_names), rows

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
               dedup_token: str) -> None:
        if not rows:
            return
        try:
            self._client.insert(
                ident(table), [list(r) for r in rows], column_names=list(columns),
                database=self.database,
                settings={"insert_deduplication_token": check_token(dedup_token),
                          "async_insert": 0},
            )
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"ClickHouse insert into {table}: {exc}") from exc

    def use_database(self) -> None:
        self._client.database = self.database

    def close(self) -> None:
        self._client.close()


def _use_if_exists(backend: Backend) -> None:
    """Readers that open a backend after the sink made the tables get unqualified names too."""
    rows = backend.query("SELECT count() FROM system.databases WHERE name = {db:String}",
                         {"db": backend.database})
    if rows and rows[0][0]:
        backend.use_database()


def open_backend(settings: Settings) -> Backend:
    """A server backend when ``CLICKHOUSE_URL`` is set, else chDB at ``TWINLEDGER_CHDB_PATH``."""
    if settings.clickhouse_url:
        return ClickHouseConnectBackend(settings.clickhouse_url, settings.clickhouse_database)
    return ChdbBackend(settings.chdb_path, settings.clickhouse_database)


__all__ = ["Backend", "ChdbBackend", "ClickHouseConnectBackend", "check_token", "open_backend",
           "tsv_field", "tsv_rows"]
