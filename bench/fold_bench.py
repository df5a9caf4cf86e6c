"""Fold throughput and state memory, measured the way the stream agent runs the fold.

Owns: ``run(n_events, n_accounts) -> dict``. For each 1,000-event batch it
parses every line (JSON with Decimal numbers), groups events by account,
applies them with ``apply_event`` and Kafka-like source coordinates, then
stores ``encode_state`` once per account touched - the agent's loop without a
broker. Marks are fed into the global marks mapping. Must not touch: the fold
(it only calls the public API). Run: ``python bench/fold_bench.py [n_events
[n_accounts]]``; prints JSON.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time
from decimal import Decimal
from typing import Any

from streams.ledger import LedgerConfig, apply_event, decode_state, encode_state, parse_event
from streams.ledger.events import Mark
from streams.ledger.synth import generate_events

BATCH = 1000
PARTITIONS = 6


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux: the peak resident set of this process.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    """Resident set now (Linux /proc), else the peak: the state's share is a difference."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:  # pragma: no cover - not Linux
        return _peak_rss_mb()


def run(n_events: int = 1_000_000, n_accounts: int = 1000, decode_each_batch: bool = False,
        **limits: Any) -> dict[str, Any]:
    """Fold ``n_events`` synthetic events over ``n_accounts`` accounts; return the numbers.

    ``decode_each_batch`` also decodes each account's state at the start of
    every batch, as an agent does that keeps no decoded cache. ``limits``
    override ``LedgerConfig`` fields (e.g. ``outbox_events=8``).
    """
    config = LedgerConfig(**limits)
    events = generate_events(n_events, n_accounts, seed=1)
    lines = [json.dumps(e) for e in events]
    del events
    gc.collect()
    rss_before = _rss_mb()
    marks: dict[str, Decimal] = {}
    states: dict[str, Any] = {}
    stored: dict[str, bytes] = {}
    statuses: dict[str, int] = {}
    n_outputs = 0
    offset = 0
    t0 = time.perf_counter()
    for start in range(0, len(lines), BATCH):
        by_account: dict[str, list[Any]] = {}
        for line in lines[start:start + BATCH]:
            ev = parse_event(json.loads(line, parse_float=Decimal))
            offset += 1
            if isinstance(ev, Mark):
                marks[ev.symbol] = ev.price
                continue
            by_account.setdefault(ev.account_id, []).append((ev, offset))
        for account, items in by_account.items():
            if decode_each_batch and account in stored:
                state = decode_state(stored[account])
            else:
                state = states.get(account)
            for ev, off in items:
                res = apply_event(state, ev, marks, config, source=(off % PARTITIONS, off))
                state = res.state
                statuses[res.status] = statuses.get(res.status, 0) + 1
                n_outputs += len(res.outputs)
            states[account] = state
            stored[account] = encode_state(state)
    elapsed = time.perf_counter() - t0
    gc.collect()
    rss_after = _rss_mb()
    state_bytes = sum(len(b) for b in stored.values())
    return {
        "n_events": n_events,
        "n_accounts": n_accounts,
        "batch": BATCH,
        "decode_each_batch": decode_each_batch,
        "limits": {k: getattr(config, k) for k in (
            "dedup_window", "outbox_events", "max_closed_trades", "max_trade_legs")},
        "seconds": round(elapsed, 3),
        "fold_events_per_s": round(n_events / elapsed),
        "outputs": n_outputs,
        "statuses": statuses,
        "encoded_state_bytes_per_1000_accounts": round(state_bytes * 1000 / n_accounts),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        # decoded states in memory + their last encoded bytes, as an agent would hold them
        "state_rss_mb_per_1000_accounts": round(
            max(0.0, rss_after - rss_before) * 1000 / n_accounts, 1),
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    print(json.dumps(run(*args), indent=2))
