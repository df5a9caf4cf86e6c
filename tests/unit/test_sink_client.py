"""SinkClient: named reads with the bearer token, retried while the sink's read slot is busy."""

from __future__ import annotations

import io
import json
import urllib.error
from typing import Any

import pytest

from streams.config import load_settings
from streams.exceptions import TwinledgerError
from streams.ops import SinkClient, report

TOKEN = "t0ken-t0ken-t0ken-t0ken"


class Resp:
    def __init__(self, doc: Any) -> None:
        self.body = json.dumps(doc).encode()

    def __enter__(self) -> Resp:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read(self) -> bytes:
        return self.body


def busy(url: str) -> urllib.error.HTTPError:
    return urllib.error.HTTPError(url, 503, "busy", {}, io.BytesIO(b'{"error": "busy"}'))  # type: ignore[arg-type]


def test_named_reads_send_the_token_and_retry_while_busy(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    calls: list[Any] = []

    def urlopen(req: Any, timeout: float) -> Resp:
        calls.append(req)
        if len(calls) == 1:
            raise busy(req.full_url)
        return Resp({"name": "trades", "columns": ["a"], "rows": [{"a": "1"}],
                     "truncated": True})

    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    client = SinkClient(load_settings({"TWINLEDGER_HTTP_TOKEN": TOKEN}))
    assert client.read("trades", account="acc-1", since=None, limit=5) == [{"a": "1"}]
    assert len(calls) == 2
    req = calls[-1]
    assert req.full_url.endswith("/q") and req.get_header("Authorization") == f"Bearer {TOKEN}"
    assert json.loads(req.data) == {"name": "trades", "params": {"account": "acc-1", "limit": 5}}
    assert client.truncated == {"trades"}


def test_errors_other_than_busy_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def urlopen(req: Any, timeout: float) -> Resp:
        calls.append(req)
        raise urllib.error.HTTPError(req.full_url, 400, "bad", {},  # type: ignore[arg-type]
                                     io.BytesIO(b'{"error": "limit must be 1..10000"}'))

    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    client = SinkClient(load_settings({}))
    assert "Authorization" not in client.headers
    with pytest.raises(TwinledgerError, match="HTTP 400.*limit"):
        client.read("trades", limit=0)
    assert len(calls) == 1


def test_report_reads_only_named_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, dict[str, Any]]] = []

    def urlopen(req: Any, timeout: float) -> Resp:
        doc = json.loads(req.data)
        asked.append((doc["name"], doc["params"]))
        rows: list[dict[str, Any]] = []
        if doc["name"] == "accounts":
            rows = [{"account_id": "acc-1", "last_event_seq": 3, "last_capital": "10"}]
        elif doc["name"] == "drift":
            rows = [{"account_id": "acc-1", "drift_code": "DRIFT", "drift_detail": "XBT"}]
        return Resp({"rows": rows, "truncated": False})

    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    (acc,) = report(SinkClient(load_settings({})), "acc-1", since="2024-05-01T00:00:00Z")
    assert acc["event_seq"] == 3 and acc["drift"] == {"active": True, "detail": "XBT"}
    assert [n for n, _ in asked] == ["accounts", "trade_legs", "reconcile_latest", "drift",
                                     "stale_marks", "balances", "cash_flows",
                                     "portfolio_snapshots"]
    assert all(p["account"] == "acc-1" and p["since"] == "2024-05-01T00:00:00Z"
               for _, p in asked)
