"""``twinledger portfolio``: JSON and ``--table`` from a file, exit codes, the worker client.

The worker itself is exercised in tests/integration/test_queries_http.py; here
a canned local HTTP server stands in for it to check how its answers and
errors map to output and exit codes.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from streams.cli import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_USAGE, main
from streams.foldfile import run_fold
from streams.ledger import load_ledger_config
from streams.queries import PARAMS, QUERIES, run_query
from streams.workerclient import worker_path
from tests.unit.test_queries import ACCOUNT, spot_stream


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in spot_stream()))
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["portfolio", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_file_answers_every_query_like_the_query_functions(events: Path, capsys):
    run = run_fold(events.read_text().splitlines(), load_ledger_config(None))
    for name in QUERIES:
        extra = ["XBT-USD"] if name == "position" else []
        code, out, err = cli(capsys, name, ACCOUNT, *extra, "--file", str(events))
        assert (code, err) == (0, ""), name
        params: dict[str, Any] = {"symbol": "XBT-USD"} if name == "position" else {}
        if "as_of" in PARAMS[name]:
            params["as_of"] = run.last_ts  # mark ages count to the file's last event
        assert json.loads(out) == run_query(name, run.states[ACCOUNT], ACCOUNT, run.marks,
                                            run.config, **params), name


def test_file_with_trade_filters(events: Path, capsys):
    code, out, _ = cli(capsys, "trades", ACCOUNT, "--file", str(events), "--pair", "ETH/USD",
                       "--no-include-manual")
    doc = json.loads(out)
    assert code == 0 and doc["include_manual"] is False
    assert [(t["symbol"], t["side"]) for t in doc["trades"]] == [("ETH/USD", "BUY")]
    code, out, _ = cli(capsys, "cash-flows", ACCOUNT, "--file", str(events), "--limit", "1")
    assert [f["asset"] for f in json.loads(out)["flows"]] == ["FOO"]
    code, out, _ = cli(capsys, "equity", ACCOUNT, "--file", str(events))
    assert Decimal(json.loads(out)["equity"]) == Decimal("9360.5")


def test_table_is_readable_text(events: Path, capsys):
    code, out, _ = cli(capsys, "fees", ACCOUNT, "--file", str(events), "--table")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["account_id", ACCOUNT]
    assert ["total", "9.5"] in [line.split() for line in lines]
    assert "by_pair (2)" in lines
    assert ["XBT/USD", "7.5", "80", "72.5"] in [line.split() for line in lines]
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_not_found_exits_3_with_a_message(events: Path, capsys):
    code, out, err = cli(capsys, "position", ACCOUNT, "SOL/USD", "--file", str(events))
    assert (code, out) == (EXIT_NOT_FOUND, "")
    assert "SOL/USD" in err and err.startswith("twinledger portfolio:")
    code, out, err = cli(capsys, "equity", "nobody", "--file", str(events))
    assert (code, out) == (EXIT_NOT_FOUND, "") and "'nobody' not found" in err


def test_usage_errors_exit_2(events: Path, tmp_path: Path, capsys):
    assert cli(capsys, "trades", ACCOUNT, "--file", str(events), "--limit", "-3")[0] == EXIT_USAGE
    assert cli(capsys, "equity", ACCOUNT, "--file", str(events), "--worker", "http://x")[0] \
        == EXIT_USAGE
    assert cli(capsys, "equity", ACCOUNT, "--limit", "3")[0] == EXIT_USAGE
    assert cli(capsys, "position", ACCOUNT, "--file", str(events))[0] == EXIT_USAGE  # no symbol
    code, _, err = cli(capsys, "equity", ACCOUNT, "--file", str(tmp_path / "missing.jsonl"))
    assert code == EXIT_USAGE and "cannot read" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("no_such_key: 1\n")
    code, _, err = cli(capsys, "equity", ACCOUNT, "--file", str(events), "--config", str(bad))
    assert code == EXIT_USAGE and "no_such_key" in err


def test_rejected_lines_are_reported_and_the_rest_answers(events: Path, capsys):
    with events.open("a") as fh:
        fh.write("not json\n")
    code, out, err = cli(capsys, "fees", ACCOUNT, "--file", str(events))
    assert code == 0 and "1 line(s)" in err and json.loads(out)["total"] == "9.5"


def test_worker_unreachable_exits_1(capsys):
    code, out, err = cli(capsys, "equity", ACCOUNT, "--worker",
                         f"http://127.0.0.1:{free_port()}", "--timeout", "2")
    assert (code, out) == (EXIT_ERROR, "") and "cannot reach the worker" in err


def test_worker_path_encodes_account_symbol_and_parameters():
    assert worker_path("position", "acc 1", {"symbol": "XBT/USD"}) == \
        "/accounts/acc%201/positions/XBT%2FUSD"
    assert worker_path("trades", "a", {"pair": "XBT/USD", "limit": 5,
                                       "include_manual": False}) == \
        "/accounts/a/trades?pair=XBT%2FUSD&limit=5&include_manual=false"
    assert worker_path("cash-flows", "a", {}) == "/accounts/a/cash-flows"


class _Canned(BaseHTTPRequestHandler):
    """Answers each path from ``routes``: (status, JSON body); records the paths asked."""

    routes: dict[str, tuple[int, Any]] = {}
    asked: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.asked.append(self.path)
        status, body = self.routes.get(self.path, (500, {"error": "boom"}))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Canned.asked = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_worker_answers_map_to_output_and_exit_codes(canned: str, capsys, monkeypatch):
    doc = {"account_id": "a", "event_seq": 3, "base_currency": "USD", "equity": "12.5"}
    _Canned.routes = {
        "/accounts/a/equity": (200, doc),
        "/accounts/a/positions/SOL%2FUSD": (404, {
            "error": "position_not_found", "message": "no SOL/USD", "account_id": "a",
            "position": "SOL/USD"}),
        "/accounts/b/equity": (404, {"error": "account_not_found", "account_id": "b"}),
        "/accounts/a/trades?limit=1": (400, {"error": "bad_request", "message": "nope"}),
    }
    code, out, _ = cli(capsys, "equity", "a", "--worker", canned + "/")
    assert code == 0 and out == json.dumps(doc, indent=2) + "\n"
    code, out, err = cli(capsys, "position", "a", "SOL/USD", "--worker", canned)
    assert (code, out) == (EXIT_NOT_FOUND, "") and "SOL/USD" in err
    code, _, err = cli(capsys, "equity", "b", "--worker", canned)
    assert code == EXIT_NOT_FOUND and "'b' not found" in err
    code, _, err = cli(capsys, "trades", "a", "--limit", "1", "--worker", canned)
    assert code == EXIT_USAGE and "nope" in err
    code, _, err = cli(capsys, "fees", "a", "--worker", canned)
    assert code == EXIT_ERROR and "500" in err
    # no --worker: the local worker of the settings (TWINLEDGER_WORKER_WEB_PORT)
    monkeypatch.setenv("TWINLEDGER_WORKER_WEB_HOST", "127.0.0.1")
    monkeypatch.setenv("TWINLEDGER_WORKER_WEB_PORT", canned.rsplit(":", 1)[1])
    code, out, _ = cli(capsys, "equity", "a", "--table")
    assert code == 0 and ["equity", "12.5"] in [line.split() for line in out.splitlines()]
    assert _Canned.asked[-1] == "/accounts/a/equity"


def test_top_level_help_lists_portfolio(capsys):
    assert main(["--help"]) == 0
    assert "portfolio" in capsys.readouterr().out
    assert main(["portfolio", "--help"]) == 0
    assert "exit status" in capsys.readouterr().out


def test_since_beyond_the_workers_history_reads_the_sink(capsys, monkeypatch):
    """Issue 11: history the live state no longer keeps comes from ClickHouse, not a cut."""
    asked: list[tuple[str, dict[str, Any]]] = []
    live = {"account_id": "acc", "event_seq": 9, "base_currency": "USD",
            "include_manual": True, "complete": False,
            "history_from": "2024-05-06T12:00:00+00:00", "count": 0, "trades": []}
    monkeypatch.setattr("streams.workerclient.query_worker", lambda *a, **k: live)

    class Sink:
        truncated: set[str] = set()

        def __init__(self, *a: Any, **k: Any) -> None:
            pass

        def read(self, name: str, **params: Any) -> list[dict[str, Any]]:
            asked.append((name, params))
            return [{"account_id": "acc", "trade_id": "t1", "event_seq": 1,
                     "ts": "2024-05-06T09:01:00Z", "symbol": "FET-USDT", "side": "SHORT",
                     "position_side": "BOTH", "market": "futures", "action": "open",
                     "qty": "10", "price": "0.2", "cumulative_pnl": "0", "trade_fees": "1",
                     "holding_seconds": 0, "flags": [], "strategy_tag": "grid"}]

    monkeypatch.setattr("streams.ops.SinkClient", Sink)
    code, out, _ = cli(capsys, "trades", "acc", "--since", "2024-05-06T09:00:00Z")
    doc = json.loads(out)
    assert code == 0 and doc["source"].startswith("clickhouse")
    assert [t["trade_id"] for t in doc["trades"]] == ["t1"] and doc["complete"] is True
    assert doc["trades"][0]["entry_price"] == "0.2"
    ((name, params),) = asked
    assert name == "trade_legs" and params["account"] == "acc"
    assert params["since"].isoformat() == "2024-05-06T09:00:00+00:00"
    # a worker whose history reaches back answers alone
    asked.clear()
    live["complete"] = True
    code, out, _ = cli(capsys, "trades", "acc", "--since", "2024-05-06T13:00:00Z")
    assert code == 0 and "source" not in json.loads(out) and not asked
