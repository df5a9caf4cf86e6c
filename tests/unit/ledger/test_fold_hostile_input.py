"""Issue 13: ``twinledger fold`` on hostile lines reports each one and goes on, never a traceback.

Each bad line is in ``rejected`` with its line number and reason; the good
lines around it are folded; the command exits 4 with a one-line summary on
standard error.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streams.foldfile import EXIT_REJECTED, fold_lines, fold_main
from streams.ledger import LedgerConfig

from ._helpers import Events

ROOT = Path(__file__).resolve().parents[3]


def _good(e: Events, side: str) -> bytes:
    return json.dumps(e.fill(side, 1, 100, "X")).encode()


def hostile_file(tmp_path: Path) -> tuple[Path, dict[int, str]]:
    """A file of good fills around every hostile line of the issue; line -> reason part."""
    e = Events()
    lines: list[bytes] = [_good(e, "BUY")]
    expect: dict[int, str] = {}

    def bad(line: bytes, reason: str) -> None:
        lines.append(line)
        expect[len(lines)] = reason
        lines.append(_good(e, "BUY"))

    ok = json.dumps(e.fill("BUY", 1, 100, "X"))
    bad(ok.replace('"X"', '"X\xff"').encode("latin-1"), "not valid UTF-8")
    bad(b"[" * 100_000 + b"]" * 100_000, "nested deeper than")
    bad(b'{"kind": "fill", "a": ' + b'{"b": ' * 100_000 + b"1" + b"}" * 100_001, "nested deeper")
    bad(json.dumps({**e.fill("BUY", 1, 100, "X"), "event_id": "x" * (2 * 1024 * 1024)}).encode(),
        "event_id: longer than 256 characters")
    bad(ok.replace('"acc-1"', '"acc-\\ud800"').encode(), "lone surrogate")
    bad(json.dumps(e.fill("BUY", "1_000", 100, "X")).encode(), "qty: '1_000' is not a decimal")
    bad(json.dumps(e.fill("BUY", 1, 100, "X")).replace('"1"', "1e0").encode(),
        "JSON number '1e0' is not a plain decimal")
    bad(json.dumps({**e.fill("BUY", 1, 100, "X"), "ts": "0001-01-01T00:00:00Z"}).encode(),
        "is outside 1900-01-01")
    bad(json.dumps({**e.fill("BUY", 1, 100, "X"), "ts": "9999-12-31T23:59:59Z"}).encode(),
        "is outside 1900-01-01")
    bad(json.dumps(e("cash_flow", asset="USDT", amount="-5", flow="deposit")).encode(),
        "a deposit is an inflow and must not be negative")
    bad(b"\x00\x01garbage", "not valid JSON")
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, expect


def test_fold_cli_reports_every_hostile_line_and_folds_the_rest(tmp_path: Path):
    path, expect = hostile_file(tmp_path)
    done = subprocess.run([sys.executable, "-m", "streams.cli", "fold", str(path)], cwd=ROOT,
                          capture_output=True, timeout=120, check=False)
    err = done.stderr.decode()
    assert "Traceback" not in err
    assert done.returncode == EXIT_REJECTED == 4
    summary = err.strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith(
        f"twinledger fold: {len(expect)} line(s) rejected (first: line 2: ")
    doc = json.loads(done.stdout)
    got = {r["line"]: r["reason"] for r in doc["rejected"]}
    assert sorted(got) == sorted(expect)
    for line, part in expect.items():
        assert part in got[line], (line, got[line])
    # every good line around them was folded: one fill per good line
    assert doc["accounts"]["acc-1"]["event_seq"] == len(expect) + 1


def test_fold_main_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    e = Events()
    clean = tmp_path / "clean.jsonl"
    clean.write_text(json.dumps(e.fill("BUY", 1, 100, "X")) + "\n")
    assert fold_main([str(clean)]) == 0
    assert capsys.readouterr().err == ""
    dirty = tmp_path / "dirty.jsonl"
    dirty.write_text(json.dumps(e.fill("BUY", "+1", 100, "X")) + "\n")
    assert fold_main([str(dirty)]) == 4
    captured = capsys.readouterr()
    assert json.loads(captured.out)["rejected"][0]["line"] == 1
    assert captured.err == ("twinledger fold: 1 line(s) rejected (first: line 1: qty: '+1' is "
                            "not a decimal (-?digits(.digits)?, no exponent, sign +, spaces or "
                            "non-ASCII digits))\n")


def test_fold_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exc:
        fold_main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "0  every line was folded" in text
    assert "2  usage error" in text
    assert "4  the document was printed, but some lines were rejected" in text


def test_text_and_bytes_lines_fold_alike():
    e = Events()
    text = [json.dumps(e.fill("BUY", 1, 100, "X")), json.dumps(e.fill("SELL", 1, 101, "X"))]
    assert fold_lines(text, LedgerConfig()) == fold_lines(
        [t.encode() for t in text], LedgerConfig())
