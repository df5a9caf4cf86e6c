"""``twinledger fold EVENTS.jsonl [--config FILE]``: the ledger fold, offline (FOLD_FORMAT.md).

Owns: reading JSON lines (numbers never through float), routing ``mark``
lines into the global marks mapping, applying every other line with the same
``apply_event`` the stream agent runs, and printing the FOLD_FORMAT document.
Must not touch: brokers, databases, the clock; booking rules live in
``streams.ledger``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from streams.exceptions import ConfigError, InvalidEvent
from streams.ledger import (
    AccountState,
    LedgerConfig,
    Output,
    account_summary,
    apply_event,
    grammar,
    load_ledger_config,
    parse_event,
)
from streams.ledger.events import Mark
from streams.ledger.numbers import MarkPrice


def loads_line(line: str | bytes) -> Any:
    """One JSON line under the input grammar (``streams.ledger.grammar.loads``)."""
    return grammar.loads(line)


@dataclass
class FoldRun:
    """Everything one offline fold produced, for the document and for tests."""

    config: LedgerConfig
    states: dict[str, AccountState] = field(default_factory=dict)
    marks: dict[str, Decimal] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    #: the latest event time in the file (marks included): what mark ages count to
    last_ts: datetime | None = None

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


def run_fold(lines: Iterable[str | bytes], config: LedgerConfig) -> FoldRun:
    """Apply every line in file order; invalid lines are recorded and the fold goes on.

    Lines may be text or raw bytes (bytes must be UTF-8: a line that is not
    is rejected, the others are read).

    Runs with unlimited trade, leg and anomaly history (``config.unbounded()``)
    so the document lists every trade.
    """
    run = FoldRun(config.unbounded())
    cfg = run.config
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = parse_event(loads_line(line))
            if run.last_ts is None or event.ts > run.last_ts:
                run.last_ts = event.ts
            if isinstance(event, Mark):
                run.marks[event.symbol] = MarkPrice(event.price, event.ts)  # its age counts
                continue
            result = apply_event(run.states.get(event.account_id), event, run.marks, cfg)
        except (ValueError, InvalidEvent) as exc:
            run.rejected.append({"line": lineno, "reason": str(exc)})
            continue
        run.states[event.account_id] = result.state
        run.outputs.extend(result.outputs)
    return run


def fold_lines(lines: Iterable[str | bytes], config: LedgerConfig,
               include_manual: bool | None = None) -> dict[str, Any]:
    """Fold JSON lines into the whole FOLD_FORMAT output document."""
    return run_fold(lines, config).document(include_manual)


#: Exit codes of ``twinledger fold`` (also in ``--help`` and the README).
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_REJECTED = 4



def fold_main(argv: list[str]) -> int:
    """``twinledger fold EVENTS.jsonl [--config FILE]``; prints the JSON document.

    ``--include-manual`` lists manual trades even when ``track_manual_trades``
    is false (LEDGER B7).

    ``-`` reads standard input. Exit 0 when every line was folded, 4 when some
    lines were rejected (the document is printed all the same, with a summary
    on standard error), 2 for an unreadable file or a bad config.
    """
    from streams.helptext import parser as help_parser

    parser = help_parser("fold")
    parser.add_argument("events", help="events file, one JSON object per line ('-' = "
                                       "standard input)")
    parser.add_argument("--config", default=None,
                        help="ledger config file, YAML or JSON: reconcile bounds, base "
                             "currency, cost method, limits (default: built-in values)")
    parser.add_argument("--include-manual", action="store_true", default=None,
                        help="list manual (untagged) trades even when the config's "
                             "track_manual_trades is false")
    args = parser.parse_args(argv)
    try:
        config = load_ledger_config(args.config)
        if args.events == "-":
            doc = fold_lines(sys.stdin.buffer, config, args.include_manual)
        else:
            with open(args.events, "rb") as fh:
                doc = fold_lines(fh, config, args.include_manual)
    except ConfigError as exc:
        print(f"twinledger fold: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"twinledger fold: cannot read {args.events}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")
    rejected = doc["rejected"]
    if rejected:
        first = rejected[0]
        print(f"twinledger fold: {len(rejected)} line(s) rejected (first: line {first['line']}: "
              f"{first['reason']})", file=sys.stderr)
        return EXIT_REJECTED
    return EXIT_OK
