"""Issue 13: a figure the fold derives beyond decimal(38,18) — one rule, offline and in the stream.

The event that would make an output figure leave the wire type is not
booked: the state stays as it was and one ``OUT_OF_RANGE`` anomaly says
which figure. The sink never sees such a figure.
"""

from __future__ import annotations

import json
from decimal import Decimal

from streams.foldfile import fold_lines, run_fold
from streams.ledger import LedgerConfig, apply_event, encode_state, parse_event
from streams.ledger.grammar import fits_wire
from streams.ledger.headroom import first_out_of_range, may_leave_wire
from streams.ledger.state import Output

from ._helpers import Events, Run

BIG = "99999999999999999999"


def test_a_fill_of_two_twenty_digit_figures_is_not_booked_offline():
    """Observed: qty = price = 99999999999999999999 was booked offline, dead-lettered live."""
    e = Events()
    doc = fold_lines([json.dumps(e.fill("BUY", BIG, BIG, "X")),
                      json.dumps(e.fill("BUY", 1, 100, "X"))], LedgerConfig())
    acc = doc["accounts"]["acc-1"]
    assert doc["rejected"] == []
    assert [a["code"] for a in acc["anomalies"]] == ["OUT_OF_RANGE"]
    assert "would not fit decimal(38,18); the event is not booked" in acc["anomalies"][0]["detail"]
    assert acc["event_seq"] == 1  # only the second fill
    (pos,) = acc["positions"]
    assert pos["qty"] == "1" and pos["avg_entry_price"] == "100"


def test_three_huge_fundings_book_the_first_and_refuse_the_capital_no_schema_can_carry():
    e = Events()
    run = Run()
    run(e("anchor", capital="0"), *(e("funding", symbol="X", amount=BIG) for _ in range(3)))
    assert run.statuses == ["applied", "applied", "rejected", "rejected"]
    st = run.state()
    assert st.capital == -Decimal(BIG) and st.k_funding == Decimal(BIG)
    assert run.codes().count("OUT_OF_RANGE") == 2
    for out in run.outputs:
        assert first_out_of_range([out]) is None


def test_a_refused_event_leaves_the_state_exactly_as_it_was_and_replays_its_anomaly():
    e = Events()
    run = Run()
    run(e("anchor", capital="1000"), source=(0, 1))
    run(e.fill("BUY", 2, 100, "X"), source=(0, 2))
    run(e("funding", symbol="X", amount=BIG), source=(0, 3))
    st = run.state()
    capital = st.capital
    before = encode_state(st)
    bad = parse_event(e("funding", symbol="X", amount=BIG))
    res = apply_event(st, bad, run.marks, run.config, source=(0, 4))
    assert res.status == "rejected"
    assert res.state is st  # restored in place: the caller's object is the state
    assert st.event_seq == 3 and st.capital == capital
    assert st.anomalies[-1]["code"] == "OUT_OF_RANGE"
    # a redelivered record (same offset) gets the very same anomaly again
    again = apply_event(st, bad, run.marks, run.config, source=(0, 4))
    assert again.status == "duplicate" and again.outputs == []
    # nothing but that anomaly and the offset moved
    st.anomalies.pop()
    st.offsets[0] = 3
    st.cold = None
    assert encode_state(st) == before


def test_a_mark_that_makes_a_held_position_worth_too_much_refuses_the_next_event():
    e = Events()
    marks_line = {"kind": "mark", "account_id": "", "ts": "2026-01-05T09:00:00Z",
                  "symbol": "X", "price": BIG}
    run = run_fold([json.dumps(e.fill("BUY", 10, 100, "X")), json.dumps(marks_line),
                    json.dumps(e("funding", symbol="X", amount="1"))], LedgerConfig())
    codes = [a["code"] for a in run.document()["accounts"]["acc-1"]["anomalies"]]
    assert codes == ["OUT_OF_RANGE"]
    assert all(first_out_of_range([o]) is None for o in run.outputs if o.kind != "anomaly")


def test_a_small_fill_opening_a_position_at_a_huge_mark_is_refused():
    """Found by the parity property: the fill's own symbol's mark values what it opens."""
    e = Events()
    run = Run()
    run({"kind": "mark", "symbol": "X", "price": BIG, "ts": "2026-01-05T09:00:00Z"},
        e.fill("BUY", 2, 1, "X"))
    assert run.statuses == ["rejected"]
    assert run.codes() == ["OUT_OF_RANGE"]
    assert run.of("anomaly")[0]["detail"].startswith("snapshot.equity = 199999999999999999996")


def test_a_tiny_fill_at_a_tiny_leverage_on_a_held_position_is_refused():
    """Found by the parity property: a fill's leverage applies to the whole position, so
    1 unit held at 100 and 1e-18 more at leverage 1e-18 needs a margin of 1e20."""
    e = Events()
    run = Run()
    run(e.fill("BUY", 1, 100, leverage="1"),
        e.fill("BUY", "0.000000000000000001", 1, leverage="0.000000000000000001"))
    assert run.statuses == ["applied", "rejected"]
    assert run.codes() == ["OUT_OF_RANGE"]
    assert run.of("anomaly")[0]["detail"].startswith("snapshot.k_used_margin = 1000000000")
    # every record the fold did emit fits the wire
    assert first_out_of_range(run.outputs) is None


def test_a_spot_trade_worth_more_than_the_wire_carries_is_refused():
    e = Events("s1", venue="kraken")
    cfg = LedgerConfig(spot_venues=("kraken",))
    run = Run(cfg)
    run(e("cash_flow", asset="USD", amount=BIG, flow="deposit"),
        {"kind": "mark", "symbol": "XBT/USD", "price": BIG, "ts": "2026-01-05T09:00:00Z"},
        e.fill("BUY", "10", BIG, "XBT/USD", market="spot"))
    assert run.statuses == ["applied", "rejected"]
    assert run.codes()[-1] == "OUT_OF_RANGE"


def test_ordinary_events_take_the_fast_path():
    """The bound proves ordinary events safe, so no state copy is made for them."""
    e = Events()
    run = Run()
    events = [e("anchor", capital="10000"), e.fill("SELL", 195259, "0.1878"),
              e.fill("SELL", 7017, "0.1878", fee="0.5"), e("funding", symbol="FET-USDT",
                                                           amount="1.25"),
              e.fill("BUY", 202276, "0.1866")]
    for d in events:
        ev = parse_event(d)
        st = run.states.get("acc-1")
        risky, _ = may_leave_wire(st, ev, run.marks, run.config)
        assert not risky, d
        run(d)


def test_first_out_of_range_names_the_figure():
    bad = Output("snapshot", "a", {"capital": Decimal("1E+20"), "positions": [
        {"qty": Decimal("1")}]})
    assert first_out_of_range([bad]) == "snapshot.capital = 1E+20"
    nested = Output("snapshot", "a", {"positions": [{"qty": Decimal("0.1234567890123456789")}]})
    assert first_out_of_range([nested]) == "snapshot.positions[0].qty = 0.1234567890123456789"
    assert fits_wire(Decimal("99999999999999999999.999999999999999999"))
    assert fits_wire(Decimal("1.000000000000000000000000"))  # trailing zeros do not count
