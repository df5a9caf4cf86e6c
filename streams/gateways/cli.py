"""``twinledger normalize``: raw venue payloads (JSON lines) -> fold-format events on stdout.

Owns: the offline face of the gateways, so that ``twinledger normalize
--venue bingx --account A raw.jsonl | twinledger fold -`` answers "what would
the ledger say about what the venue sent" without a broker. Must not touch:
normalization rules (``streams.gateways``) or Kafka (``twinledger produce``).

Each non-blank input line is one payload as the venue sent it (a WebSocket
frame or a REST response), optionally wrapped by the gateway as
``{"received_at": …, "frame": …}``. Events go to stdout, one JSON object per
line, in the FOLD_FORMAT line shape; every rejected line is reported on
stderr with its line number and reason, and the run goes on; an anomaly a
gateway raised on a line it booked (a cumulative figure that went down) is
reported there too. Exit status: 0
when every line normalized, 1 when some line was rejected, 2 on usage errors.
``--memory FILE`` keeps the gateway's order memory across runs (read if the
file exists, written back at the end), as a gateway process would.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from streams.gateways import VENUES, OrderMemory, Rejection, normalize_payload
from streams.gateways.exceptions import PayloadRejected


def normalize_lines(venue: str, lines: Iterable[bytes], memory: OrderMemory,
                    account_id: str | None, out: IO[str], err: IO[str],
                    source: str = "-") -> tuple[int, int]:
    """Normalize each line; write events to ``out`` and rejections to ``err``.

    Returns (events written, lines rejected).
    """
    written = rejected = 0
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        result = normalize_payload(venue, raw.rstrip(b"\r\n"), memory, account_id)
        if isinstance(result, Rejection):
            rejected += 1
            print(f"{source}:{number}: rejected: {result.reason}", file=err)
            continue
        for anomaly in getattr(result, "anomalies", ()):
            print(f"{source}:{number}: anomaly {anomaly.code} ({anomaly.event_id}): "
                  f"{anomaly.detail}", file=err)
        for event in result:
            out.write(json.dumps(event, ensure_ascii=False) + "\n")
            written += 1
    return written, rejected


def _load_memory(path: Path | None) -> OrderMemory:
    if path is None or not path.exists():
        return OrderMemory()
    data: Any = json.loads(path.read_text(encoding="utf-8"))
    return OrderMemory.from_json(data)


def normalize_main(argv: list[str]) -> int:
    from streams.helptext import parser as help_parser

    parser = help_parser("normalize")
    parser.add_argument("file", help="raw payloads, one per line ('-' = standard input)")
    parser.add_argument("--venue", required=True, choices=VENUES,
                        help="the venue that sent the payloads")
    parser.add_argument("--account", default=None,
                        help="account id (required for venues whose payloads name none)")
    parser.add_argument("--memory", type=Path, default=None,
                        help="JSON file holding the gateway's order memory across runs")
    args = parser.parse_args(argv)

    try:
        memory = _load_memory(args.memory)
    except (OSError, ValueError, PayloadRejected) as exc:
        print(f"twinledger normalize: cannot read memory {args.memory}: {exc}", file=sys.stderr)
        return 2
    try:
        if args.file == "-":
            written, rejected = normalize_lines(args.venue, sys.stdin.buffer, memory,
                                                args.account, sys.stdout, sys.stderr, "<stdin>")
        else:
            with open(args.file, "rb") as fh:
                written, rejected = normalize_lines(args.venue, fh, memory, args.account,
                                                    sys.stdout, sys.stderr, args.file)
    except OSError as exc:
        print(f"twinledger normalize: {exc}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    if args.memory is not None:
        args.memory.write_text(json.dumps(memory.to_json(), sort_keys=True), encoding="utf-8")
    print(f"twinledger normalize: {written} events, {rejected} rejected lines", file=sys.stderr)
    return 1 if rejected else 0
