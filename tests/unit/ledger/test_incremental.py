"""The fold's per-event shortcuts give exactly what a full evaluation gives.

The fold reuses work whose inputs did not change (the R3/R4/R6 results of
``reconcile.position_rules``); these tests fold the synthetic stream and, after
every event, evaluate everything again from scratch to compare.
"""

from __future__ import annotations

import json
from decimal import Decimal

from streams.ledger import LedgerConfig, apply_event, parse_event
from streams.ledger.events import Mark
from streams.ledger.reconcile import position_rules
from streams.ledger.synth import generate_events


def test_reused_position_rules_equal_a_full_evaluation_after_every_event():
    cfg = LedgerConfig()
    marks: dict[str, Decimal] = {}
    states: dict = {}
    reused = 0
    for off, d in enumerate(generate_events(4000, 12, seed=3, spot_accounts=2), 1):
        ev = parse_event(json.loads(json.dumps(d), parse_float=Decimal))
        if isinstance(ev, Mark):
            marks[ev.symbol] = ev.price
            continue
        before = states.get(ev.account_id)
        memo = None if before is None else before.rules_memo
        st = apply_event(before, ev, marks, cfg, source=(0, off)).state
        states[ev.account_id] = st
        if st.e_positions is None:
            continue
        kept = st.rules_memo
        reused += kept is memo
        st.rules_memo = None
        assert position_rules(st, cfg, marks) == kept[3], (off, d["kind"])
        st.rules_memo = kept
    assert reused > 500  # the shortcut is taken, not only checked
