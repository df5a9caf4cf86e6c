"""Replay from offset 0: events already on ``venue.events``, then worker(s) and sink start.

What a user does after resetting offsets or backfilling history: the whole
backlog is on the topic before anything folds it. Timed from the moment the
processes start (their start-up and group join are part of a replay) until
the sink group's committed offsets on ``ledger.snapshots`` cover one
snapshot per event, read from Kafka (``OffsetWatch``), never from a
ClickHouse query.

``workers`` > 1 starts that many workers in one group on the same six
partitions: the throughput of two workers against one says what a second
process buys on this machine (with two cores, two workers, the sink and the
broker share them).
"""

from __future__ import annotations

import sys
import time
from typing import Any


def replay(bootstrap: str, events: list[dict[str, Any]], phases: Any, stall_seconds: float,
           workers: int = 1) -> dict[str, Any]:
    from bench.phases import PhaseTimeout
    from bench.watch import wait_committed, watched_pipeline

    with watched_pipeline(bootstrap, f"replay{workers}") as (p, watch):
        extra = []
        try:
            p.produce(events)  # the backlog: all of it before anything folds
            start = time.perf_counter()
            p.start_sink()
            p.start_worker()
            extra = [p.start_another_worker(f"extra-{n}") for n in range(2, workers + 1)]
            p.extra_workers = extra  # a stall's diagnosis reads them too
            wait_committed(watch, len(events), phases, p, stall_seconds,
                           f"every snapshot row of the replay ({workers} worker(s))")
            seconds = time.perf_counter() - start
            for child in extra:
                if not child.alive():
                    raise PhaseTimeout(phases.current or "replay",
                                       f"an extra worker exited: {child.log_tail(20)}")
            return {"events": len(events), "workers": workers, "seconds": round(seconds, 1),
                    "events_per_s": round(len(events) / seconds)}
        finally:
            if sys.exc_info()[0] is None:  # else watched_pipeline diagnoses them, then stops them
                for child in extra:
                    child.stop()
