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
        # what the fold found (reusing what it could) is what a full evaluation finds,
        # down to each delta's representation
        got = [r for r in st.results if r[0] in ("R3", "R4", "R6")]
        st.rules_memo = None
        full = position_rules(st, cfg, marks)
        assert repr(got) == repr(full), (off, d["kind"])
        st.rules_memo = kept
    assert reused > 500  # the shortcut is taken, not only checked


def test_a_mark_of_equal_value_but_another_exponent_is_a_new_input():
    from streams.ledger.events import ExchangePosition
    from streams.ledger.state import AccountState

    st = AccountState("a")
    st.e_positions = {("X", "BOTH"): ExchangePosition("X", "BOTH", Decimal(1), Decimal(1),
                                                     Decimal(1), Decimal(1))}
    cfg = LedgerConfig()
    first = position_rules(st, cfg, {"X": Decimal("3")}, positions_changed=False)
    again = position_rules(st, cfg, {"X": Decimal("3.0")}, positions_changed=False)
    st.rules_memo = None
    assert repr(again) == repr(position_rules(st, cfg, {"X": Decimal("3.0")}))
    assert repr(first) != repr(again)  # 2 vs 2.0: the memo did not hand back the first
