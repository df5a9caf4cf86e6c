"""``twinledger normalize`` and the LEDGER C2 golden case end to end through ``normalize | fold``."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from streams.foldfile import fold_lines
from streams.gateways import OrderMemory
from streams.gateways.cli import normalize_lines, normalize_main
from streams.ledger import load_ledger_config

from .conftest import FIXTURES, fixture_text

C2 = FIXTURES / "bingx" / "fet_short_c2.jsonl"


def _normalize(path: Path, venue: str = "bingx", account: str | None = "fet-acct",
               memory: OrderMemory | None = None) -> tuple[list[str], str, int]:
    out, err = io.StringIO(), io.StringIO()
    with path.open("rb") as fh:
        _, rejected = normalize_lines(venue, fh, memory or OrderMemory(), account, out, err,
                                      str(path))
    return out.getvalue().splitlines(), err.getvalue(), rejected


def _fold(lines: list[str]) -> dict[str, Any]:
    document = fold_lines(lines, load_ledger_config(None))
    assert document["rejected"] == [], document["rejected"]
    account: dict[str, Any] = document["accounts"]["fet-acct"]
    return account


def test_c2_normalize_then_fold_books_the_exchange_repair_and_242_7312() -> None:
    lines, err, rejected = _normalize(C2)
    assert rejected == 0, err

    account = _fold(lines)

    (trade,) = account["trades"]
    assert Decimal(trade["realized_pnl"]) == Decimal("242.7312")
    exits = [leg for leg in trade["legs"] if leg["action"] in ("reduce", "close")]
    assert [(leg["qty"], leg["price"]) for leg in exits] == [("26007", "0"), ("176269", "0.1866")]
    assert exits[0]["pnl_source"] == "exchange"
    assert Decimal(exits[0]["pnl_leg"]) == Decimal("31.2084")
    assert Decimal(exits[1]["pnl_leg"]) == Decimal("211.5228")
    # The mis-booking C2 exists to prevent: the protective bound taken as the exit price.
    assert "3214.4652" not in json.dumps(account)
    assert Decimal(account["realized_pnl"]) == Decimal("242.7312")


def test_c2_before_the_repair_the_priceless_exit_books_zero_and_is_flagged() -> None:
    lines, _, _ = _normalize(C2)
    without_repair = [line for line in lines if json.loads(line)["event_id"] !=
                      "bingx:settle:1899412985126522880"]

    account = _fold(without_repair)

    (trade,) = account["trades"]
    leg1 = next(leg for leg in trade["legs"] if leg["qty"] == "26007")
    assert Decimal(leg1["pnl_leg"]) == 0
    assert "realized_skipped_no_price" in leg1["flags"]
    assert Decimal(trade["realized_pnl"]) == Decimal("211.5228")


def test_c1_clean_prices_fold_to_242_7312_too() -> None:
    frames = [json.loads(line, parse_float=Decimal) for line in C2.read_text().splitlines()]
    frames[3]["o"]["ap"] = "0.1866"  # the exit report as a clean venue would send it
    path_lines = [json.dumps(f, default=str).encode() for f in frames[:5]]
    out, err = io.StringIO(), io.StringIO()
    normalize_lines("bingx", path_lines, OrderMemory(), "fet-acct", out, err)
    (trade,) = _fold(out.getvalue().splitlines())["trades"]
    assert Decimal(trade["realized_pnl"]) == Decimal("242.7312")


def test_normalize_main_prints_fold_lines_and_reports_rejections_on_stderr(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "raw.jsonl"
    good = C2.read_text().splitlines()[0]
    raw.write_text("\n".join([good, "not json", "", '{"e": "ORDER_TRADE_UPDATE"}']) + "\n")

    status = normalize_main(["--venue", "bingx", "--account", "fet-acct", str(raw)])

    captured = capsys.readouterr()
    assert status == 1
    (line,) = captured.out.splitlines()
    assert json.loads(line)["event_id"] == "bingx:fill:1899384022338322432:195259"
    assert f"{raw}:2: rejected: not valid JSON" in captured.err
    assert f"{raw}:4: rejected: E (event time)" in captured.err
    assert "1 events, 2 rejected lines" in captured.err


def test_normalize_main_exits_zero_when_every_line_normalizes(
        capsys: pytest.CaptureFixture[str]) -> None:
    status = normalize_main(["--venue", "bingx", "--account", "fet-acct", str(C2)])
    assert status == 0
    assert len(capsys.readouterr().out.splitlines()) == 11


def test_memory_file_carries_cumulative_quantities_across_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = C2.read_text().splitlines()[:2]
    (tmp_path / "a.jsonl").write_text(first + "\n")
    (tmp_path / "b.jsonl").write_text(second + "\n")
    memory = tmp_path / "memory.json"
    for name in ("a.jsonl", "b.jsonl"):
        assert normalize_main(["--venue", "bingx", "--account", "x", "--memory", str(memory),
                               str(tmp_path / name)]) == 0
    fills = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [f["qty"] for f in fills] == ["195259", "7017"]


def test_unknown_venue_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        normalize_main(["--venue", "mtgox", str(C2)])
    assert exc.value.code == 2


def test_missing_file_is_a_usage_error(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert normalize_main(["--venue", "kraken", "--account", "k", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_normalize_reports_hostile_lines_and_goes_on_without_a_traceback(tmp_path) -> None:
    """Issue 13: invalid UTF-8, 100,000-deep nesting, a 2 MB field, a lone surrogate."""
    good = fixture_text("bingx", "cost_minus_31.json").replace("\n", "")
    frame = json.loads(good)
    lines = [
        good.encode(),
        good.encode().replace(b'"BTC-USDT"', b'"BTC-\xffUSDT"'),
        b"[" * 100_000 + b"]" * 100_000,
        json.dumps({**frame, "o": {**frame["o"], "s": "X" * (2 * 1024 * 1024)}}).encode(),
        good.replace('"BTC-USDT"', '"BTC-\\ud800"').encode(),
        good.replace('"i": 1899800123456789504', '"i": 2').encode(),
    ]
    raw = tmp_path / "hostile.jsonl"
    raw.write_bytes(b"\n".join(lines) + b"\n")
    done = subprocess.run([sys.executable, "-m", "streams.cli", "normalize", "--venue", "bingx",
                           "--account", "acct-1", str(raw)], capture_output=True,
                          timeout=120, check=False)
    err = done.stderr.decode()
    assert "Traceback" not in err
    assert done.returncode == 1
    assert len(done.stdout.decode().splitlines()) == 2  # lines 1 and 6
    for number, part in ((2, "not UTF-8"), (3, "nested deeper than"),
                         (4, "not printable text of at most 40"), (5, "lone surrogate")):
        assert f"{raw}:{number}: rejected: " in err and part in err, (number, err)
    assert "2 events, 4 rejected lines" in err
