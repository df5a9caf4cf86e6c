"""Fold throughput and state memory, measured the way the stream agent runs the fold.

Owns: ``run(n_events, n_accounts) -> dict``. For each batch of the agent's size
(``TWINLEDGER_WORKER_BATCH``, 2,000 events by default) it
parses every line (JSON with Decimal numbers), groups events by account,
applies them with ``apply_event`` and Kafka-like source coordinates, then
stores ``encode_state`` once per account touched - the agent's loop without a
broker (``encode_split``: the hot part, and the history blobs that changed), with
the garbage collector set as a worker process sets it (``streams.infra.gctune``). Marks are fed into the global marks mapping. ``parse_only`` is the
baseline of the same lines through ``json.loads`` with Decimal alone, timed
batch by batch next to the fold in CPU seconds, so ``fold_vs_parse`` (parse
CPU time over fold CPU time) holds on a loaded, shared machine. ``state_bytes`` folds 1,000
events into each account and reports the hot state per account (what every
store write carries) and what its parts weigh, and the history beside it. ``measure`` returns all of it for ``bench/run.py``.
Must not touch: the fold (it only calls the public API). Run:
``python bench/fold_bench.py [measure] [n_events [n_accounts]]``; prints JSON.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time
from decimal import Decimal
from typing import Any

from streams import ledger
from streams.config import load_settings
from streams.infra import gctune
from streams.ledger import LedgerConfig, apply_event, decode_state, encode_state, parse_event
from streams.ledger.events import Mark
from streams.ledger.state import encode_split
from streams.ledger.synth import generate_events

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


def parse_only(lines: list[str]) -> float:
    """CPU seconds of the parse-only baseline: each line through ``json.loads`` with Decimal."""
    t0 = time.process_time()
    for line in lines:
        json.loads(line, parse_float=Decimal)
    return time.process_time() - t0


def run(n_events: int = 1_000_000, n_accounts: int = 1000, decode_each_batch: bool = False,
        **limits: Any) -> dict[str, Any]:
    """Fold ``n_events`` synthetic events over ``n_accounts`` accounts; return the numbers.

    ``decode_each_batch`` also decodes each account's state at the start of
    every batch, as an agent does that keeps no decoded cache. ``limits``
    override ``LedgerConfig`` fields (e.g. ``dedup_window=128``).
    """
    config = LedgerConfig(**limits)
    settings = load_settings()
    batch = settings.worker_batch  # the agent's batch: one state write per account per batch
    events = generate_events(n_events, n_accounts, seed=1)
    lines = [json.dumps(e) for e in events]
    del events
    gc.collect()
    # The collector as a worker process sets it once started (streams.infra.gctune).
    gen0 = settings.gc_gen0
    gctune.for_long_running(gen0)
    rss_before = _rss_mb()
    marks: dict[str, Decimal] = {}
    states: dict[str, Any] = {}
    stored: dict[str, bytes] = {}
    archives: dict[tuple[str, bytes], bytes] = {}
    archive_writes = 0
    statuses: dict[str, int] = {}
    n_outputs = 0
    offset = 0
    parse_cpu = fold_cpu = 0.0
    t0 = time.perf_counter()
    for start in range(0, len(lines), batch):
        # The baseline is timed batch by batch next to the fold, in CPU seconds: on a
        # shared machine both then see the same load and their ratio holds.
        parse_cpu += parse_only(lines[start:start + batch])
        c0 = time.process_time()
        by_account: dict[str, list[Any]] = {}
        for line in lines[start:start + batch]:
            ev = parse_event(json.loads(line, parse_float=Decimal))
            offset += 1
            if isinstance(ev, Mark):
                marks[ev.symbol] = ev.price
                continue
            by_account.setdefault(ev.account_id, []).append((ev, offset))
        for account, items in by_account.items():
            if decode_each_batch and account in stored:
                state = decode_state(stored[account],
                                     lambda name, a=account: archives.get((a, name)))
            else:
                state = states.get(account)
            for ev, off in items:
                res = apply_event(state, ev, marks, config, source=(off % PARTITIONS, off))
                state = res.state
                statuses[res.status] = statuses.get(res.status, 0) + 1
                n_outputs += len(res.outputs)
            states[account] = state
            stored[account], history = encode_split(state)
            for name, blob in history:
                archives[(account, name)] = blob
                archive_writes += 1
        fold_cpu += time.process_time() - c0
    elapsed = time.perf_counter() - t0 - parse_cpu
    gc.collect()
    rss_after = _rss_mb()
    state_bytes = sum(len(b) for b in stored.values())
    archive_bytes = sum(len(b) for b in archives.values()) // 2  # two slots of each blob
    return {
        # "compiled" (mypyc, make install) or "python" (docs/performance.md)
        "ledger_mode": ledger.MODE,
        "n_events": n_events,
        "n_accounts": n_accounts,
        "batch": batch,
        "gc_gen0": gen0,
        "decode_each_batch": decode_each_batch,
        "limits": {k: getattr(config, k) for k in (
            "dedup_window", "max_closed_trades", "max_trade_legs")},
        "seconds": round(elapsed, 3),
        "fold_events_per_s": round(n_events / elapsed),
        "fold_cpu_events_per_s": round(n_events / fold_cpu),
        "parse_events_per_s": round(n_events / parse_cpu),
        # target >= 0.2 (issue 10): parse-only CPU time over the fold's, same batches
        "fold_vs_parse": round(parse_cpu / fold_cpu, 4),
        "outputs": n_outputs,
        "statuses": statuses,
        "encoded_state_bytes_per_1000_accounts": round(state_bytes * 1000 / n_accounts),
        "history_bytes_per_1000_accounts": round(archive_bytes * 1000 / n_accounts),
        "history_writes": archive_writes,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        # decoded states in memory + their last encoded bytes, as an agent would hold them
        "state_rss_mb_per_1000_accounts": round(
            max(0.0, rss_after - rss_before) * 1000 / n_accounts, 1),
    }


def state_bytes(events_per_account: int = 1000, n_accounts: int = 20) -> dict[str, Any]:
    """Hot state per account after ``events_per_account`` events each, and its parts.

    The hot state is what the agent stores after every batch (``encode_split``),
    its parts read from the encoded layout (``streams.ledger.state``): the
    header, the cold line (E facts, anomalies), positions with their open
    trades, closed trades and outbox blobs (none in a hot state) and the newest
    dedup ring slots. ``history`` is what the agent stores beside it only when
    it changes (``streams.ledger.state``: the archive of closed trades and older
    ring slots, the recent closed trades, the log of cash flows, portfolio
    snapshots and anomalies): its size at the end, and the bytes
    written for it per event (the state stored after each event, the worst case).
    """
    config = LedgerConfig()
    events = generate_events(events_per_account * n_accounts, n_accounts, seed=1)
    marks: dict[str, Decimal] = {}
    states: dict[str, Any] = {}
    archives: dict[tuple[str, bytes], bytes] = {}
    applied = history_written = 0
    for off, e in enumerate(events, 1):
        ev = parse_event(json.loads(json.dumps(e), parse_float=Decimal))
        if isinstance(ev, Mark):
            marks[ev.symbol] = ev.price
            continue
        res = apply_event(states.get(ev.account_id), ev, marks, config,
                          source=(off % PARTITIONS, off))
        states[ev.account_id] = res.state
        applied += 1
        for name, blob in encode_split(res.state)[1]:
            archives[(ev.account_id, name)] = blob
            history_written += len(blob)
    totals: dict[str, int] = {}
    for account, st in states.items():
        for part, n in _parts(encode_split(st)[0]).items():
            totals[part] = totals.get(part, 0) + n
        now = [b"a%d" % (st.archive_version % 2)] if st.archive_version else []
        if st.recent:
            now.append(b"r%d" % (st.recent_version % 2))
        if st.log_version:
            now.append(b"l%d" % (st.log_version % 2))
        if st.dedup_version:
            now.append(b"d%d" % (st.dedup_version % 2))
        totals["history"] = totals.get("history", 0) + sum(
            len(archives[(account, name)]) for name in now)
        totals["whole"] = totals.get("whole", 0) + len(encode_state(st))
    per = {k: round(v / len(states)) for k, v in totals.items()}
    return {"events_per_account": events_per_account, "n_accounts": len(states),
            # target <= 4096 (issue 10)
            "encoded_state_bytes_per_account": per.pop("total"), "parts": per,
            "history_bytes_per_account": per.pop("history"),
            "history_bytes_written_per_event": round(history_written / applied),
            # the whole state in one blob (``encode_state``), as stored before the split
            "whole_state_bytes_per_account": per.pop("whole")}


def _parts(blob: bytes) -> dict[str, int]:
    """Bytes of each part of one encoded state (lines of the layout in ``state``)."""
    lines = blob.split(b"\n")
    header = json.loads(lines[1])
    sizes = {"total": len(blob), "header": len(lines[1]), "cold": len(lines[2])}
    n_pos, n_closed, ring = header[22], header[23], header[24]
    n_out = len(header[21])
    if len(header) > 27 and header[27]:  # a hot part: closed trades are in the history blobs
        n_closed = n_out = 0
    at = 3
    for part, n in (("positions", n_pos), ("closed_trades", n_closed), ("outbox", n_out)):
        sizes[part] = sum(len(x) for x in lines[at:at + n])
        at += n
    sizes["dedup_ring"] = ring
    return sizes


def measure(n_events: int = 200_000, n_accounts: int = 1000) -> dict[str, Any]:
    """What ``bench/run.py`` reports for the fold (issue 10): one dict, one run."""
    fold = run(n_events, n_accounts)
    size = state_bytes()
    return {
        "ledger_mode": fold["ledger_mode"],
        "fold_events_per_s": fold["fold_events_per_s"],
        "fold_cpu_events_per_s": fold["fold_cpu_events_per_s"],
        "parse_events_per_s": fold["parse_events_per_s"],
        "fold_vs_parse": fold["fold_vs_parse"],
        "encoded_state_bytes_per_account_1000_events": size["encoded_state_bytes_per_account"],
        "encoded_state_parts": size["parts"],
        "state_rss_mb_per_1000_accounts": fold["state_rss_mb_per_1000_accounts"],
        "fold": fold,
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["measure"]:  # what bench/run.py reports
        print(json.dumps(measure(*[int(a) for a in sys.argv[2:4]]), indent=2))
    else:
        print(json.dumps(run(*[int(a) for a in sys.argv[1:3]]), indent=2))
