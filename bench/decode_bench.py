"""Decode speed of the sink's records: the compiled reader against fastavro, in one run.

Owns: ``run(n_events, n_accounts, rounds) -> dict``. Folds synthetic events
(``generate_events`` through ``run_fold``) and frames what the sink consumes
(snapshots, trades, reconcile, cash-flow and other fold outputs, plus the venue
events) with the codec, then decodes the whole mix with ``Codec.decode``
(compiled reader) and ``Codec.decode_with_fastavro`` in alternating rounds,
timed in CPU seconds; the best round of each counts, so a shared, loaded
machine slows both alike. ``decode_compiled_vs_fastavro`` is fastavro's time
over the compiled reader's (above 1: the compiled reader is faster). The first
round also checks both decode every record alike. Must not touch: the codec
(public API only). Run: ``python bench/decode_bench.py [n_events [n_accounts]]``;
prints JSON.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.catalogue import RECORD_OF_KIND  # noqa: E402
from streams.codec import Codec, fold_dict_to_venue_record  # noqa: E402
from streams.foldfile import run_fold  # noqa: E402
from streams.ledger import load_ledger_config  # noqa: E402
from streams.ledger.synth import generate_events  # noqa: E402


def sink_records(codec: Codec, n_events: int, n_accounts: int) -> tuple[list[bytes], Counter[str]]:
    """The framed records a sink consumes for ``n_events`` synthetic events, and their mix."""
    events = generate_events(n_events, n_accounts, seed=7)
    run = run_fold([json.dumps(e) for e in events], load_ledger_config(None))
    mix: Counter[str] = Counter()
    wires = []
    for out in run.outputs:
        name = RECORD_OF_KIND[out.kind]
        wires.append(codec.encode(name, out.record))
        mix[name] += 1
    for e in events:
        if e["kind"] != "mark":
            wires.append(codec.encode("VenueEvent", fold_dict_to_venue_record(e)))
            mix["VenueEvent"] += 1
    return wires, mix


def run(n_events: int = 5_000, n_accounts: int = 100, rounds: int = 5) -> dict[str, Any]:
    codec = Codec.load()
    wires, mix = sink_records(codec, n_events, n_accounts)
    for wire in wires:  # same output, or the ratio means nothing
        if codec.decode(wire) != codec.decode_with_fastavro(wire):
            raise AssertionError(f"compiled and fastavro decodes differ on {wire!r}")
    best = {"compiled": float("inf"), "fastavro": float("inf")}
    for _ in range(rounds):
        for label, decode in (("compiled", codec.decode),
                              ("fastavro", codec.decode_with_fastavro)):
            t0 = time.process_time()
            for wire in wires:
                decode(wire)
            best[label] = min(best[label], time.process_time() - t0)
    n = len(wires)
    return {
        "decode_records": n,
        "decode_bytes_mean": round(sum(map(len, wires)) / n),
        "decode_mix": dict(mix.most_common()),
        "decode_compiled_records_per_s": round(n / best["compiled"]),
        "decode_fastavro_records_per_s": round(n / best["fastavro"]),
        "decode_compiled_vs_fastavro": round(best["fastavro"] / best["compiled"], 2),
        "decode_note": f"best of {rounds} alternating rounds, CPU seconds, same records",
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    print(json.dumps(run(*args), indent=2))
