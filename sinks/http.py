"""The sink's small read-only HTTP endpoint (stdlib server in a thread).

Owns: ``GET /health``, ``GET /metrics``, ``GET /counts`` (the :func:`sinks.main.verify` verdict) and ``POST /query``
and their JSON shapes. Must not touch: the consumer or the write path. It
exists because chDB lets one process own its data directory: reports, tests
and ``twinledger verify`` read through here while the sink runs.

Binds to ``TWINLEDGER_SINK_HTTP_HOST`` (loopback by default). ``POST /query``
takes either a JSON body ``{"sql": "...", "params": {...}}`` or the SQL as
plain text, accepts one SELECT/WITH statement (``sinks.sqlguard``) and runs
it with ``readonly = 1``; values go in ``params`` as ``{name:Type}``
parameters. Answers: ``{"columns": [...], "rows": [{column: value}]}`` with decimals
and times as strings, so no float ever rounds a balance on the way out.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Mapping
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sinks.backend import Backend
from sinks.exceptions import BackendError, UnsafeQuery
from sinks.metrics import REGISTRY
from sinks.runner import count_events, verdict
from sinks.sqlguard import READONLY_SETTINGS, wrap_readonly

log = logging.getLogger("twinledger.sink.http")

MAX_BODY = 1 << 20


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


def run_readonly_query(backend: Backend, sql: str, params: Mapping[str, Any] | None = None
                       ) -> dict[str, Any]:
    """What ``POST /query`` answers, callable without HTTP (the guard included)."""
    names, rows = backend.query_with_names(wrap_readonly(sql), params or {}, READONLY_SETTINGS)
    return {"columns": names,
            "rows": [{n: to_json_value(v) for n, v in zip(names, r, strict=True)} for r in rows]}


class SinkHTTPServer:
    """Serves the endpoint in a daemon thread until :meth:`stop`."""

    def __init__(self, backend: Backend, host: str = "127.0.0.1", port: int = 8765,
                 health: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.backend = backend
        self.health = health or (lambda: {})
        handler = self._handler_class()
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
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
        log.info("sink: HTTP endpoint on %s", self.url)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "twinledger-sink"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
                log.debug("http: " + format, *args)

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, doc: Any) -> None:
                self._send(status, json.dumps(to_json_value(doc)).encode())

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                path = self.path.split("?", 1)[0]
                try:
                    if path == "/health":
                        self._json(200, {"status": "ok", "backend": outer.backend.kind,
                                         **outer.health()})
                    elif path == "/metrics":
                        self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
                    elif path == "/counts":
                        self._json(200, verdict(count_events(outer.backend)))
                    else:
                        self._json(404, {"error": f"no such endpoint {path}"})
                except BackendError as exc:
                    self._json(503, {"error": str(exc)})

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                if self.path.split("?", 1)[0] != "/query":
                    self._json(404, {"error": "POST only on /query"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length <= 0 or length > MAX_BODY:
                    self._json(400, {"error": f"body must be 1..{MAX_BODY} bytes"})
                    return
                raw = self.rfile.read(length)
                try:
                    sql, params = _parse_body(raw, self.headers.get("Content-Type", ""))
                    self._json(200, run_readonly_query(outer.backend, sql, params))
                except UnsafeQuery as exc:
                    self._json(400, {"error": f"refused: {exc}"})
                except (ValueError, BackendError) as exc:
                    self._json(400, {"error": str(exc)})

            def do_PUT(self) -> None:  # noqa: N802 - stdlib name
                self._json(405, {"error": "read-only endpoint"})

            do_DELETE = do_PUT  # noqa: N815 - stdlib name

        return Handler


def _parse_body(raw: bytes, content_type: str) -> tuple[str, dict[str, Any]]:
    text = raw.decode("utf-8")
    if "json" in content_type or text.lstrip().startswith("{"):
        doc = json.loads(text)
        if not isinstance(doc, dict) or not isinstance(doc.get("sql"), str):
            raise ValueError('JSON body must be {"sql": "...", "params": {...}}')
        params = doc.get("params") or {}
        if not isinstance(params, dict):
            raise ValueError("params must be an object")
        return doc["sql"], params
    return text, {}
