"""The synthetic event generator the integration test and the bench rely on."""

from __future__ import annotations

from collections import Counter

from streams.ledger import parse_event
from streams.ledger.synth import generate_events

from ._helpers import Run


def test_synth_is_valid_deterministic_and_covers_every_kind():
    events = generate_events(5000, 50, seed=7)
    assert len(events) == 5000
    assert events == generate_events(5000, 50, seed=7)
    assert events != generate_events(5000, 50, seed=8)
    parsed = [parse_event(d) for d in events]  # raises on any invalid line
    assert len({d["event_id"] for d in events}) == 5000
    assert all(isinstance(d.get(k), str) for d in events for k in
               ("qty", "price", "fee", "amount", "capital", "realized_pnl") if k in d)
    kinds = Counter(d["kind"] for d in events)
    assert set(kinds) == {"anchor", "balance", "fill", "fill_settled", "funding", "positions",
                          "cash_flow", "mark"}
    assert all(d["account_id"] == "" for d in events if d["kind"] == "mark")
    assert len({d["account_id"] for d in events if d["kind"] != "mark"}) == 50
    last = {}
    for ev in parsed:
        if ev.account_id:
            prev = last.get(ev.account_id)
            assert prev is None or ev.ts > prev  # monotonic per account
            last[ev.account_id] = ev.ts
    assert any(d["kind"] == "fill" and d["price"] == "0" for d in events)


def test_synth_stream_exercises_the_trade_lifecycle():
    run = Run()
    run(*generate_events(5000, 20, seed=3))
    actions = Counter(t["action"] for t in run.of("trade"))
    assert {"open", "increase", "reduce", "close", "flip", "settle"} <= set(actions)
    assert set(run.statuses) == {"applied"}
    repaired = [t for t in run.of("trade") if t["action"] == "settle"]
    assert repaired and all(t["pnl_source"] == "exchange" for t in repaired)
