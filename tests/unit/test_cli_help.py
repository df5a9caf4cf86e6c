"""Every command's --help is user documentation; a closed pipe ends a command quietly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streams.cli import COMMANDS
from streams.config import PROJECT_ROOT
from streams.queries import QUERIES

# No broker may be started or reached to answer --help: a command that tried
# would fail on this script and this address.
ENV = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "", "TWINLEDGER_KAFKA_SCRIPT": "/nonexistent",
       "CLICKHOUSE_URL": "", "COLUMNS": "100"}
# Words of the maintainers' docstrings, and references a user cannot follow.
FORBIDDEN = ["Owns:", "Must not touch", "FOLD_FORMAT", "LEDGER ", "DESIGN", "../shared"]


def _cli(*argv: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *argv], env=ENV,
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
                          check=False, **kw)  # type: ignore[call-overload]


def _check(text: str, prog: str) -> None:
    assert text.startswith(f"usage: {prog}"), text[:200]
    body = text.split("\n\n", 1)[1]
    description = body.split("\n\n", 1)[0]
    assert len(description.split()) >= 8, f"{prog}: no description: {description!r}"
    assert re.search(r"^examples?:\n  twinledger ", text, re.M), f"{prog}: no example"
    for word in FORBIDDEN:
        assert word not in text, f"{prog}: {word!r} in --help"
    # Every option and argument says what it is for.
    for section in re.findall(r"^(?:options|positional arguments):\n((?:  .*\n?)+)", text, re.M):
        entries = re.split(r"\n(?=  \S)", section.rstrip("\n"))
        for entry in entries:
            if entry.strip().startswith("-h, --help") or entry.startswith("    "):
                continue
            assert len(entry.split()) > 1 and (
                "  " in entry.strip() or "\n" in entry), f"{prog}: no help for {entry!r}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_help_reads_as_user_documentation(command: str) -> None:
    out = _cli(command, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr  # nothing started, nothing logged
    _check(out.stdout, f"twinledger {command}")


@pytest.mark.parametrize("query", sorted(QUERIES))
def test_every_portfolio_query_help_has_an_example(query: str) -> None:
    out = _cli("portfolio", query, "--help")
    assert out.returncode == 0, out.stderr
    assert f"twinledger portfolio {query} " in out.stdout
    assert "example:" in out.stdout


def test_top_level_help_lists_every_command_with_examples() -> None:
    out = _cli("--help")
    assert out.returncode == 0
    for command, (_, summary) in COMMANDS.items():
        assert f"  {command:<10} {summary}" in out.stdout
    assert "examples:" in out.stdout and "COMMAND --help" in out.stdout


def _closed_early(argv: list[str]) -> tuple[int, str]:
    """Run, read one line of stdout, close it (as `| head -1` does); exit code, stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", *argv], env=ENV,  # noqa: S603
                            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    return proc.wait(timeout=60), err


def test_a_reader_that_goes_away_ends_commands_quietly(tmp_path: Path) -> None:
    # Far more output than a pipe buffers, so the writer does see the closed pipe.
    lines = (PROJECT_ROOT / "examples" / "fet_short.jsonl").read_text().splitlines()
    big = tmp_path / "events.jsonl"
    with big.open("w") as fh:
        for i in range(400):
            for line in lines:
                fh.write(line.replace('"event_id": "', f'"event_id": "r{i}-') + "\n")
    for argv in (["fold", str(big)], ["portfolio", "trades", "acc-1", "--file", str(big)]):
        code, err = _closed_early(argv)
        assert "Traceback" not in err and "BrokenPipe" not in err, (argv, err)
        assert code == 0, (argv, code, err)
