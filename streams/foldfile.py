"""``twinledger fold EVENTS.jsonl [--config FILE]``: the ledger fold, offline (FOLD_FORMAT.md).

Owns: reading JSON lines (numbers never through float), routing ``mark``
lines into the global marks mapping, applying every other line with the same
``apply_event`` the stream agent runs, and printing the FOLD_FORMAT document.
Must not touch: brokers, databases, the clock; booking rules live in
``streams.ledger``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from streams.exceptions import ConfigError, InvalidEvent
from streams.ledger import (
    AccountState,
    LedgerConfig,
    Output,
    account_summary,
    apply_event,
    load_ledger_config,
    parse_event,
)
from streams.ledger.events import Mark


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def loads_line(line: str) -> Any:
    """One JSON line; floats become Decimal and NaN/Infinity are refused."""
    return json.loads(line, parse_float=Decimal, parse_constant=_no_constant)


@dataclass
class FoldRun:
    """Everything one offline fold produced, for the document and for tests."""

    config: LedgerConfig
    states: dict[str, AccountState] = field(default_factory=dict)
    marks: dict[str, Decimal] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def document(self, include_manual: bool | None = None) -> dict[str, Any]:
        """The FOLD_FORMAT output document.

        ``include_manual`` None follows ``track_manual_trades`` (LEDGER B7).
        """
        return {
            "accounts": {
                acc: account_summary(self.states[acc], self.marks, self.config,
                                     include_manual)
                for acc in sorted(self.states)
            },
            "rejected": list(self.rejected),
        }


def run_fold(lines: Iterable[str], config: LedgerConfig) -> FoldRun:
    """Apply every line in file order; invalid lines are recorded and the fold goes on.

    Runs with unlimited trade, leg and anomaly history (``config.unbounded()``)
    so the document lists every trade.
    """
    run = FoldRun(config.unbounded())
    cfg = run.config
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            try:
                raw = loads_line(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
            event = parse_event(raw)
            if isinstance(event, Mark):
                run.marks[event.symbol] = event.price
                continue
            result = apply_event(run.states.get(event.account_id), event, run.marks, cfg)
        except (ValueError, InvalidEvent) as exc:
            run.rejected.append({"line": lineno, "reason": str(exc)})
            continue
        run.states[event.account_id] = result.state
        run.outputs.extend(result.outputs)
    return run


def fold_lines(lines: Iterable[str], config: LedgerConfig,
               include_manual: bool | None = None) -> dict[str, Any]:
    """Fold JSON lines into the whole FOLD_FORMAT output document."""
    return run_fold(lines, config).document(include_manual)


def fold_main(argv: list[str]) -> int:
    """``twinledger fold EVENTS.jsonl [--config FILE]``; prints the JSON document, exit 0.

    ``--include-manual`` lists manual trades even when ``track_manual_trades``
    is false (LEDGER B7).

    ``-`` reads standard input. An unreadable file or a bad config exits 2
    with the reason on standard error.
    """
    parser = argparse.ArgumentParser(
        prog="twinledger fold",
        description="Run the ledger fold offline over a JSON-lines event file.")
    parser.add_argument("events", help="JSON lines (FOLD_FORMAT.md); '-' for stdin")
    parser.add_argument("--config", default=None, help="ledger config, YAML or JSON")
    parser.add_argument("--include-manual", action="store_true", default=None,
                        help="list manual (untagged) trades even when the config's "
                             "track_manual_trades is false")
    args = parser.parse_args(argv)
    try:
        config = load_ledger_config(args.config)
        if args.events == "-":
            doc = fold_lines(sys.stdin, config, args.include_manual)
        else:
            with open(args.events, encoding="utf-8") as fh:
                doc = fold_lines(fh, config, args.include_manual)
    except ConfigError as exc:
        print(f"twinledger fold: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"twinledger fold: cannot read {args.events}: {exc.strerror}", file=sys.stderr)
        return 2
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
