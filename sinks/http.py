"""The sink's small read-only HTTP endpoint (stdlib server in a thread).

Owns: ``GET /health``, ``GET /metrics``, ``GET /counts`` (the
:func:`sinks.main.verify` verdict), the named read queries ``GET /q``
(the catalog), ``GET /q/<name>?param=...`` and ``POST /q`` (JSON
``{"name": ..., "params": {...}}``), their JSON shapes, the read-only HTML
dashboard ``GET /dashboard[/<account>]`` (rendered by ``sinks.dashboard`` from
the same named queries, same token), and the hygiene of the server itself.
Must not touch: the consumer or the write path. It exists because chDB lets
one process own its data directory: reports, tests and ``twinledger verify``
read through here while the sink runs.

**There is no free SQL.** A request names a query of
``sinks.readqueries`` and gives parameter values, which are checked there
and bound as query parameters.

**Reads never hurt ingest.** Every read runs on a read-only client of its
own (:meth:`sinks.backend.Backend.reader`: its own connection handle, the
engine-enforced :data:`sinks.backend.READ_LIMITS` set before ``readonly``),
never on the ingest client; at most :attr:`SinkHTTPServer.read_slots` reads
run at once (others wait briefly, then get 503); a read that fails drops its
client and the next read opens a fresh one.

**Hygiene.** Bound to ``TWINLEDGER_SINK_HTTP_HOST`` (loopback by default; a
non-loopback bind needs ``TWINLEDGER_HTTP_TOKEN``, :func:`streams.httpsec.check_bind`).
With a token every endpoint but ``/health`` wants ``Authorization: Bearer``.
One request per connection (HTTP/1.0), a socket timeout on every read, a
deadline on the whole connection, a bounded number of connections (503 when
full), request lines and bodies of bounded size (414/413), ``Content-Length``
required and an integer (411/400), JSON bodies of bounded depth (400).
Answers are JSON with decimals and times as strings, so no float ever rounds
a balance on the way out.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sinks.backend import READ_LIMITS, Backend
from sinks.exceptions import BackendError, SinkError
from sinks.metrics import REGISTRY
from sinks.readqueries import ParamError, UnknownQuery, bind_params, catalog, get_query
from sinks.runner import count_events, verdict
from streams.httpsec import authorized, check_bind

log = logging.getLogger("twinledger.sink.http")

MAX_BODY = 16 << 10
MAX_TARGET = 2048
MAX_JSON_DEPTH = 8
MAX_QUERY_FIELDS = 10
#: Bytes and lines of request headers. The stdlib's own bound (100 headers) is raised to
#: 10000 process-wide by clickhouse-connect (``http.client._MAXHEADERS``), so the
#: handler counts for itself.
MAX_HEADER_BYTES = 16 << 10
MAX_HEADER_LINES = 64


#: Limits of the read client behind ``/counts``: whole-table counts need more time than
#: a named query; still one thread, still read-only.
COUNTS_LIMITS: dict[str, Any] = {**READ_LIMITS, "max_execution_time": 60}


class ReadBusy(SinkError):
    """Every read slot is taken (HTTP 503)."""


def decimal_text(value: Decimal) -> str:
    """A decimal as ClickHouse prints it: plain, no trailing zeros (``242.7312``, ``0``)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def to_json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    return value


def json_depth_ok(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the brackets of a JSON text nest at most ``limit`` deep (strings skipped).

    Checked before ``json.loads``, which recurses once per level.
    """
    depth = 0
    in_string = False
    escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


class _HeadLimit:
    """The request stream, with the header lines after the request line bounded.

    ``parse_request`` turns the errors raised here into a 431 answer.
    """

    def __init__(self, raw: Any, max_bytes: int = MAX_HEADER_BYTES,
                 max_lines: int = MAX_HEADER_LINES) -> None:
        self._raw = raw
        self._max_bytes = max_bytes
        self._max_lines = max_lines
        self._lines = 0
        self._bytes = 0

    def readline(self, size: int = -1) -> bytes:
        line = bytes(self._raw.readline(size))
        self._lines += 1
        if self._lines > 1:  # the request line has its own bound (414)
            self._bytes += len(line)
            if self._bytes > self._max_bytes:
                raise http.client.LineTooLong("request headers")
            if self._lines > self._max_lines + 2:
                raise http.client.HTTPException(f"more than {self._max_lines} headers")
        return line

    def read(self, size: int = -1) -> bytes:
        return bytes(self._raw.read(size))

    def close(self) -> None:
        self._raw.close()


class ReadService:
    """Named reads on read-only clients of their own, a bounded number at a time.

    Two limit profiles: ``read`` (the named queries, ``limits``, default
    :data:`sinks.backend.READ_LIMITS`) and ``counts`` (``/counts``, the verify
    figures over whole tables: the same limits with a longer time,
    :data:`COUNTS_LIMITS`). Both share the read slots.
    """

    def __init__(self, backend: Backend, slots: int = 1, wait_seconds: float = 1.0,
                 limits: Mapping[str, Any] | None = None,
                 counts_limits: Mapping[str, Any] | None = None) -> None:
        self.backend = backend
        self.wait_seconds = wait_seconds
        self.limits = {"read": dict(READ_LIMITS if limits is None else limits),
                       "counts": dict(COUNTS_LIMITS if counts_limits is None else counts_limits)}
        self._slots = threading.BoundedSemaphore(max(1, slots))
        self._idle: dict[str, list[Backend]] = {name: [] for name in self.limits}
        self._pool_lock = threading.Lock()
        self._closed = False

    def _take(self, profile: str) -> Backend:
        with self._pool_lock:
            if self._idle[profile]:
                return self._idle[profile].pop()
        return self.backend.reader(self.limits[profile])

    def _give(self, profile: str, reader: Backend, ok: bool) -> None:
        with self._pool_lock:
            if ok and not self._closed:
                self._idle[profile].append(reader)
                return
        # A failed read's client is dropped: whatever state it was left in goes with it.
        try:
            reader.close()
        except BackendError:
            log.debug("closing a read client failed", exc_info=True)

    def _run(self, fn: Callable[[Backend], Any], profile: str = "read") -> Any:
        if not self._slots.acquire(timeout=self.wait_seconds):
            raise ReadBusy("another read is running; try again shortly")
        try:
            reader = self._take(profile)
            ok = False
            try:
                result = fn(reader)
                ok = True
                return result
            finally:
                self._give(profile, reader, ok)
        finally:
            self._slots.release()

    def conservation(self, committed: Mapping[tuple[str, int], int | None],
                     table_of_topic: Mapping[str, str], folded: Any = None) -> dict[str, Any]:
        """``/conservation``: every consumed offset accounted for, snapshots without holes,
        every event the worker committed folded."""
        from sinks.conservation import conservation

        return dict(self._run(
            lambda reader: conservation(reader, committed, table_of_topic, folded), "counts"))

    def counts(self) -> dict[str, Any]:
        """The ``/counts`` verdict, read on a read-only client."""
        return dict(self._run(lambda reader: verdict(count_events(reader)), "counts"))

    def named(self, name: Any, raw_params: Mapping[str, Any]) -> dict[str, Any]:
        """``{"name", "columns", "rows": [{column: value}], "truncated"}`` of a named query."""
        query = get_query(name)
        params = bind_params(query, raw_params)
        if query.name == "counts":
            return {"name": "counts", **self.counts()}
        limit = params["limit_plus_one"] - 1
        names, rows = self._run(lambda reader: reader.query_with_names(
            query.text(self.backend.database), params))
        return {"name": query.name, "columns": names, "truncated": len(rows) > limit,
                "rows": [{n: to_json_value(v) for n, v in zip(names, r, strict=True)}
                         for r in rows[:limit]]}

    def close(self) -> None:
        with self._pool_lock:
            self._closed = True
            idle = [r for readers in self._idle.values() for r in readers]
            for readers in self._idle.values():
                readers.clear()
        for reader in idle:
            try:
                reader.close()
            except BackendError:
                log.debug("closing a read client failed", exc_info=True)


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with a bounded number of connections and a per-connection deadline."""

    daemon_threads = True
    request_queue_size = 16

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 max_connections: int, connection_seconds: float) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)
        self._open: dict[socket.socket, float] = {}
        self._open_lock = threading.Lock()
        self.connection_seconds = connection_seconds
        self._reaper_stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="sink-http-reaper", daemon=True)
        self._reaper.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                body = b'{"error": "too many connections"}'
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: "
                                b"application/json\r\nRetry-After: 1\r\nContent-Length: "
                                + str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        with self._open_lock:
            self._open[request] = time.monotonic() + self.connection_seconds
        try:
            super().process_request(request, client_address)
        except Exception:
            self._forget(request)
            raise

    def _forget(self, request: Any) -> None:
        with self._open_lock:
            known = self._open.pop(request, None) is not None
        if known:
            self._slots.release()

    def shutdown_request(self, request: Any) -> None:
        try:
            super().shutdown_request(request)
        finally:
            self._forget(request)

    def _reap(self) -> None:
        """Cut connections past their deadline: a slow client cannot hold a slot forever."""
        while not self._reaper_stop.wait(0.5):
            now = time.monotonic()
            with self._open_lock:
                late = [s for s, deadline in self._open.items() if deadline < now]
            for sock in late:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("http: error serving %s", client_address, exc_info=True)

    def server_close(self) -> None:
        self._reaper_stop.set()
        super().server_close()


class SinkHTTPServer:
    """Serves the endpoint in a daemon thread until :meth:`stop`.

    ``token`` (``TWINLEDGER_HTTP_TOKEN``): required on every endpoint but
    ``/health`` when set; without it only a loopback ``host`` is accepted.
    """

    def __init__(self, backend: Backend, host: str = "127.0.0.1", port: int = 8765,
                 health: Callable[[], Mapping[str, Any]] | None = None, *,
                 ready: Callable[[], Mapping[str, Any]] | None = None,
                 committed: Callable[[], tuple[Mapping[tuple[str, int], int | None],
                                               Mapping[str, str], Any]] | None = None,
                 token: str = "", read_slots: int = 1, read_wait_seconds: float = 1.0,
                 read_limits: Mapping[str, Any] | None = None, max_connections: int = 32,
                 socket_timeout: float = 5.0, connection_seconds: float = 75.0) -> None:
        check_bind(host, token, "sink HTTP endpoint")
        self.backend = backend
        self.health = health or (lambda: {})
        #: ``/ready``: {"ready": bool, ...}; ``/conservation``: the sink group's committed
        #: offsets, the table of each sinked topic and the bound of the fold check
        #: (``sinks.conservation.FoldedBound``), read from Kafka by the caller.
        self.ready = ready or (lambda: {"ready": True})
        self.committed = committed
        self.token = token
        self.read_slots = read_slots
        self.socket_timeout = socket_timeout
        self.reads = ReadService(backend, read_slots, read_wait_seconds, read_limits)
        self._server = _Server((host, port), self._handler_class(), max_connections,
                               connection_seconds)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def start(self) -> SinkHTTPServer:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="sink-http", daemon=True)
        self._thread.start()
        log.info("sink: HTTP endpoint on %s%s", self.url,
                 " (bearer token required)" if self.token else "")
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.reads.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "twinledger-sink"
            sys_version = ""
            # Every socket read waits at most this long (StreamRequestHandler.setup).
            timeout = outer.socket_timeout

            def setup(self) -> None:
                super().setup()
                self.rfile = _HeadLimit(self.rfile)  # type: ignore[assignment]

            def parse_request(self) -> bool:
                if not super().parse_request():
                    return False
                if self.request_version == "HTTP/0.9":
                    self.send_error(400, "HTTP/0.9 requests are not served")
                    return False
                return True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
                log.debug("http: " + format, *args)

            def send_error(self, code: int, message: str | None = None,
                           explain: str | None = None) -> None:
                # The stdlib's malformed-request answers (400, 414, 431...) as JSON too,
                # always with a status line (never the bare HTTP/0.9 form).
                self.close_connection = True
                if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
                    self.request_version = "HTTP/1.0"
                try:
                    reason = message or HTTPStatus(code).phrase
                except ValueError:
                    reason = message or "error"
                self._json(code, {"error": reason})

            def _send(self, status: int, body: bytes, ctype: str = "application/json",
                      extra: Mapping[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if getattr(self, "command", "") != "HEAD":
                    self.wfile.write(body)

            def _json(self, status: int, doc: Any,
                      extra: Mapping[str, str] | None = None) -> None:
                self._send(status, json.dumps(to_json_value(doc)).encode(), extra=extra)

            def _target(self) -> tuple[str, str] | None:
                if len(self.path) > MAX_TARGET:
                    self._json(414, {"error": f"request target longer than {MAX_TARGET}"})
                    return None
                path, _, query = self.path.partition("?")
                return path, query

            def _allowed(self, path: str) -> bool:
                if path == "/health" or authorized(self.headers.get("Authorization"),
                                                   outer.token):
                    return True
                self._json(401, {"error": "missing or wrong bearer token"},
                           {"WWW-Authenticate": "Bearer"})
                return False

            def _guarded(self, fn: Callable[[], None]) -> None:
                try:
                    fn()
                except UnknownQuery as exc:
                    self._json(404, {"error": str(exc)})
                except ParamError as exc:
                    self._json(400, {"error": str(exc)})
                except ReadBusy as exc:
                    self._json(503, {"error": str(exc)}, {"Retry-After": "1"})
                except BackendError as exc:
                    # The engine refused or stopped a read (a limit, a timeout): the read
                    # failed, the sink did not. The text names only our own SQL.
                    self._json(503, {"error": f"read failed: {str(exc).splitlines()[0][:300]}"})
                except Exception:
                    log.exception("sink HTTP: unexpected error on %s", self.path[:200])
                    self._json(500, {"error": "internal error"})

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                target = self._target()
                if target is None:
                    return
                path, query = target
                if not self._allowed(path):
                    return
                self._guarded(lambda: self._get(path, query))

            do_HEAD = do_GET  # noqa: N815 - stdlib name

            def _get(self, path: str, query: str) -> None:
                if path == "/health":
                    self._json(200, {"status": "ok", "backend": outer.backend.kind,
                                     **outer.health()})
                elif path == "/metrics":
                    self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
                elif path == "/counts":
                    self._json(200, outer.reads.counts())
                elif path == "/ready":
                    doc = dict(outer.ready())
                    self._json(200 if doc.get("ready") else 503, doc)
                elif path == "/conservation":
                    if outer.committed is None:
                        self._json(404, {"error": "no consumer offsets behind this endpoint"})
                    else:
                        committed, tables, folded = outer.committed()
                        doc = outer.reads.conservation(committed, tables, folded)
                        doc["committed"] = [
                            {"topic": t, "partition": p, "offset": o}
                            for (t, p), o in sorted(committed.items())]
                        self._json(200, doc)
                elif path in ("/q", "/q/"):
                    self._json(200, {"queries": catalog()})
                elif path.startswith("/q/"):
                    name = urllib.parse.unquote(path[3:])
                    self._json(200, outer.reads.named(name, _query_params(query)))
                elif path == "/dashboard" or path.startswith("/dashboard/"):
                    from sinks.dashboard import HEADERS, page

                    status, html_body = page(path, outer.reads.named)
                    self._send(status, html_body, "text/html; charset=utf-8", HEADERS)
                else:
                    self._json(404, {"error": "no such endpoint; GET /q lists the named "
                                              "read queries"})

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                target = self._target()
                if target is None:
                    return
                path, _ = target
                if not self._allowed(path):
                    return
                if path != "/q":
                    self._json(404, {"error": "POST only on /q (a named read query); "
                                              "there is no free SQL"})
                    return
                raw = self._body()
                if raw is None:
                    return
                self._guarded(lambda: self._post_named(raw))

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding"):
                    self._json(411, {"error": "chunked bodies are not accepted; "
                                              "send Content-Length"})
                    return None
                header = self.headers.get("Content-Length")
                if header is None:
                    self._json(411, {"error": "Content-Length required"})
                    return None
                text = header.strip()
                if not text.isdigit() or len(text) > 9:
                    self._json(400, {"error": "Content-Length must be a non-negative integer"})
                    return None
                length = int(text)
                if length > MAX_BODY:
                    self._json(413, {"error": f"body larger than {MAX_BODY} bytes"})
                    return None
                raw = self.rfile.read(length)
                if len(raw) != length:
                    self._json(400, {"error": "body shorter than Content-Length"})
                    return None
                return raw

            def _post_named(self, raw: bytes) -> None:
                if not json_depth_ok(raw):
                    raise ParamError(f"JSON nested deeper than {MAX_JSON_DEPTH}")
                try:
                    doc = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError, RecursionError):
                    raise ParamError("body is not JSON") from None
                if not isinstance(doc, dict) or set(doc) - {"name", "params"}:
                    raise ParamError('body must be {"name": "...", "params": {...}}')
                params = doc.get("params") or {}
                if not isinstance(params, dict):
                    raise ParamError("params must be an object")
                self._json(200, outer.reads.named(doc.get("name"), params))

            def do_PUT(self) -> None:  # noqa: N802 - stdlib name
                self._json(405, {"error": "read-only endpoint"})

            do_DELETE = do_PUT  # noqa: N815 - stdlib name
            do_PATCH = do_PUT  # noqa: N815 - stdlib name
            do_OPTIONS = do_PUT  # noqa: N815 - stdlib name

        return Handler


def _query_params(query: str) -> dict[str, str]:
    """Query-string parameters; a repeated or malformed one is a 400."""
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query),
                                       max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        raise ParamError("malformed query string") from None
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in out:
            raise ParamError(f"parameter {key[:40]!r} given twice")
        out[key] = value
    return out
