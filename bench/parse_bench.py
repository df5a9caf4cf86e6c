"""Speed of ``parse_event`` (and ``payload_digest``) against ``json.loads``, in one run.

Owns: ``run(n_events, n_accounts, rounds) -> dict``. Takes the synthetic mix
(``generate_events(n_events, n_accounts, seed=1)``, one ``json.dumps`` line per
event, as ``bench/fold_bench.py`` does), reads every line once with
``json.loads(line, parse_float=Decimal)``, then times in alternating rounds, in
CPU seconds: ``json.loads`` of the lines, ``parse_event`` of the read dicts,
``parse_event`` of the same events as the worker gets them (the codec's dicts:
Decimal amounts and UTC datetimes, marks left out; ``parse_event_worker_us``)
and ``payload_digest`` of the parsed events. The best round of each counts, so a
shared, loaded machine slows all alike. ``ratio`` is json.loads time over
parse_event time (the share of the fold ``parse_event`` leaves to the rest; the
larger the better). Must not touch: the parser (public API only). Run:
``python bench/parse_bench.py [n_events [n_accounts [rounds]]]``; prints JSON.
"""

from __future__ import annotations

import json
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.codec import fold_dict_to_venue_record  # noqa: E402
from streams.codec.venue import venue_record_to_fold_dict  # noqa: E402
from streams.ledger import parse_event  # noqa: E402
from streams.ledger.events import payload_digest  # noqa: E402
from streams.ledger.synth import generate_events  # noqa: E402


def _cpu(fn: Any, items: list[Any]) -> float:
    t0 = time.process_time()
    for item in items:
        fn(item)
    return time.process_time() - t0


def _loads(line: str) -> Any:
    return json.loads(line, parse_float=Decimal)


def run(n_events: int = 50_000, n_accounts: int = 1000, rounds: int = 5) -> dict[str, Any]:
    """Best-of-``rounds`` CPU microseconds per line/event of each step, and their ratio."""
    generated = generate_events(n_events, n_accounts, seed=1)
    lines = [json.dumps(e) for e in generated]
    dicts = [_loads(line) for line in lines]
    decoded = [venue_record_to_fold_dict(fold_dict_to_venue_record(e))
               for e in generated if e["kind"] != "mark"]
    events = [parse_event(d) for d in dicts]
    best = {"json_loads": float("inf"), "parse_event": float("inf"),
            "parse_event_worker": float("inf"), "payload_digest": float("inf")}
    for _ in range(rounds):
        best["json_loads"] = min(best["json_loads"], _cpu(_loads, lines))
        best["parse_event"] = min(best["parse_event"], _cpu(parse_event, dicts))
        best["parse_event_worker"] = min(best["parse_event_worker"],
                                         _cpu(parse_event, decoded))
        best["payload_digest"] = min(best["payload_digest"], _cpu(payload_digest, events))
    us = {k: round(v / n_events * 1e6, 3) for k, v in best.items()}
    us["parse_event_worker"] = round(best["parse_event_worker"] / len(decoded) * 1e6, 3)
    return {
        "n_events": n_events,
        "rounds": rounds,
        "json_loads_us": us["json_loads"],
        "parse_event_us": us["parse_event"],
        "parse_event_worker_us": us["parse_event_worker"],
        "payload_digest_us": us["payload_digest"],
        "ratio": round(best["json_loads"] / best["parse_event"], 3),
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    print(json.dumps(run(*args), indent=2))
