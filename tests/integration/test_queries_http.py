"""The portfolio queries (LEDGER B10) over real HTTP from a real worker on a real broker.

The spot stream of ``tests/unit/test_queries.py`` is produced to Kafka; once the
worker has folded it, every page under ``/accounts/{account}/`` must answer
exactly what the same query answers over the offline fold of the same lines
(``streams.foldfile.run_fold``), and ``twinledger portfolio ... --worker URL``
must print what ``twinledger portfolio ... --file EVENTS`` prints.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from streams.cli import main
from streams.foldfile import run_fold
from streams.ledger import load_ledger_config
from streams.procs import wait_until
from streams.queries import run_query
from tests.integration.pipeline import Pipeline
from tests.unit.ledger._helpers import Events
from tests.unit.test_queries import ACCOUNT, mark, spot_events, spot_marks, spot_stream

pytestmark = pytest.mark.integration

D = Decimal

#: (path under /accounts/<ACCOUNT>, query, typed parameters) - every page, some twice
PAGES: list[tuple[str, str, dict[str, Any]]] = [
    ("/equity", "equity", {}),
    ("/positions", "positions", {}),
    ("/positions/XBT-USD", "position", {"symbol": "XBT/USD"}),
    ("/positions/XBT%2FUSD", "position", {"symbol": "XBT/USD"}),
    ("/positions/DOT", "position", {"symbol": "DOT"}),
    ("/exposure", "exposure", {}),
    ("/trades", "trades", {}),
    ("/trades?pair=ETH-USD&limit=1&include_manual=false", "trades",
     {"pair": "ETH/USD", "limit": 1, "include_manual": False}),
    ("/trades?include_manual=false", "trades", {"include_manual": False}),
    ("/fees", "fees", {}),
    ("/cash-flows", "cash-flows", {}),
    ("/cash-flows?limit=2", "cash-flows", {"limit": 2}),
    ("/snapshots", "snapshots", {}),
    ("/snapshots?limit=1", "snapshots", {"limit": 1}),
]


def get(url: str) -> tuple[int, Any]:
    """(status, JSON body) of a GET; connection errors raise."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - our test worker
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def answer_or_none(url: str) -> Any:
    """The body of a 200, or None while the worker is not up or has not the account yet."""
    try:
        status, body = get(url)
    except OSError:
        return None
    return body if status == 200 else None


def test_portfolio_pages_and_cli_answer_like_the_offline_fold(
        pipeline: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    p = pipeline
    # The worker does not create its data directory (Faust makes only the last
    # level); the other pipeline tests get it from the sink, which this one omits.
    p.settings.data_dir.mkdir(parents=True, exist_ok=True)
    worker = p.start_worker()
    web = f"http://127.0.0.1:{p.env['TWINLEDGER_WORKER_WEB_PORT']}"
    acct = f"{web}/accounts/{ACCOUNT}"

    # Spot bookings value trades and fees at the marks the worker holds when it
    # folds them: the account's events go out only once the worker holds all
    # three marks, which a probe account's live equity (1 XBT + 1 ETH + 1 DOT
    # = 100 + 20 + 5) shows.
    p.produce(spot_marks())
    probe = Events("probe", venue="kraken")
    p.produce([probe("cash_flow", asset=a, amount=1, flow="deposit")
               for a in ("XBT", "ETH", "DOT")])

    def probe_equity() -> Decimal | None:
        if not worker.alive():
            raise AssertionError(f"the worker died:\n{p.logs()}")
        body = answer_or_none(f"{web}/accounts/probe/equity")
        return None if body is None else D(body["equity"])

    try:
        wait_until(lambda: probe_equity() == 125, 240, what="the worker to hold the marks")
        p.produce(spot_events())
        wait_until(lambda: (answer_or_none(f"{acct}/equity") or {}).get("event_seq") == 10,
                   120, what="the account's ten events to be folded")
        p.produce([mark("XBT/USD", 130)])

        def xbt_mark() -> Any:
            body = answer_or_none(f"{acct}/positions/XBT-USD")
            return None if body is None else body["positions"][0]["mark_price"]

        wait_until(lambda: xbt_mark() == "130", 60, what="the new XBT mark")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{p.logs()}") from None

    # the offline reference: the same lines folded by twinledger's own fold
    events_file = tmp_path / "events.jsonl"
    events_file.write_text("".join(json.dumps(d) + "\n" for d in spot_stream()))
    run = run_fold(events_file.read_text().splitlines(), load_ledger_config(None))
    assert not run.rejected
    state = run.states[ACCOUNT]

    # Live pages count mark ages to the wall clock, the file to its last event: ask the
    # pages for the file's reference time so both answers are comparable to the byte.
    assert run.last_ts is not None
    as_of = run.last_ts.isoformat().replace("+00:00", "Z")
    for path, query, params in PAGES:
        url, expected = acct + path, dict(params)
        if query in ("equity", "positions", "position", "exposure"):
            url += ("&" if "?" in url else "?") + "as_of=" + as_of
            expected["as_of"] = run.last_ts
        status, body = get(url)
        assert status == 200, (path, body)
        assert body == run_query(query, state, ACCOUNT, run.marks, run.config,
                                 **expected), path
    # Without as_of, a live page values at now.
    _, live = get(f"{acct}/equity")
    live_at = datetime.fromisoformat(live["as_of"])
    assert abs((datetime.now(UTC) - live_at).total_seconds()) < 120
    # a few figures, so that agreement is not agreement on nothing
    _, eq = get(f"{acct}/equity")
    assert (D(eq["equity"]), eq["drift"], eq["unvalued"]) == (D("9360.5"), True, ["FOO"])
    _, trades = get(f"{acct}/trades?pair=ETH-USD&limit=1&include_manual=false")
    assert [(t["symbol"], t["side"]) for t in trades["trades"]] == [("ETH/USD", "BUY")]

    # errors: JSON bodies with typed codes
    status, body = get(f"{web}/accounts/nobody/equity")
    assert (status, body["error"], body["account_id"]) == (404, "account_not_found", "nobody")
    status, body = get(f"{web}/accounts/nobody/positions/XBT-USD")
    assert (status, body["error"]) == (404, "account_not_found")
    status, body = get(f"{acct}/positions/SOL-USD")
    assert (status, body["error"], body["position"]) == (404, "position_not_found", "SOL-USD")
    for bad in ("/trades?limit=-1", "/trades?include_manual=maybe", "/equity?limit=1",
                "/snapshots?limit=x", "/trades?limit=1&limit=2"):
        status, body = get(acct + bad)
        assert (status, body["error"]) == (400, "bad_request"), bad

    # the CLI: --worker prints what --file prints, and that is the page's JSON
    def cli(*argv: str) -> tuple[int, str, str]:
        code = main(["portfolio", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    monkeypatch.setenv("TWINLEDGER_WORKER_WEB_PORT", p.env["TWINLEDGER_WORKER_WEB_PORT"])
    monkeypatch.setenv("TWINLEDGER_WORKER_WEB_HOST", "127.0.0.1")
    for query, extra in [("equity", []), ("positions", []), ("position", ["XBT/USD"]),
                         ("position", ["DOT"]), ("exposure", []), ("fees", []),
                         ("trades", ["--pair", "XBT-USD", "--limit", "1"]),
                         ("trades", ["--no-include-manual"]), ("cash-flows", ["--limit", "3"]),
                         ("snapshots", [])]:
        argv = [query, ACCOUNT, *extra]
        if query in ("equity", "positions", "position", "exposure"):
            argv += ["--as-of", as_of]  # the file's reference time, as for the pages
        code_w, out_w, err_w = cli(*argv, "--worker", web)
        code_f, out_f, _ = cli(*argv, "--file", str(events_file))
        code_d, out_d, _ = cli(*argv)  # the default: the local worker of the settings
        assert (code_w, code_f, code_d) == (0, 0, 0), (argv, err_w)
        assert out_w == out_f == out_d, argv
        assert cli(*argv, "--worker", web, "--table")[1] == \
            cli(*argv, "--file", str(events_file), "--table")[1], argv
    _, http_equity = get(f"{acct}/equity?as_of={as_of}")
    assert cli("equity", ACCOUNT, "--worker", web, "--as-of", as_of)[1] == \
        json.dumps(http_equity, indent=2) + "\n"

    code, out, err = cli("position", ACCOUNT, "SOL/USD", "--worker", web)
    assert (code, out) == (3, "") and "SOL/USD" in err
    code, out, err = cli("equity", "nobody", "--worker", web)
    assert (code, out) == (3, "") and "nobody" in err

    # and the installed entry point, in a process of its own
    proc = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "streams.cli", "portfolio", "fees", ACCOUNT, "--worker", web],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == get(f"{acct}/fees")[1]
