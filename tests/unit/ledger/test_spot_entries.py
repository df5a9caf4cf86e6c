"""The spot book's entries are typed records (FIFO ``Lot``, B8 ``Drift``, E's ``AssetBalance``).

Each keeps the state codec's bytes: it encodes as the list it replaced and
decodes back to the same typed record.
"""

from __future__ import annotations

import json
from decimal import Decimal

from streams.ledger import LedgerConfig, decode_state, encode_state
from streams.ledger.state import AssetBalance, Drift, Lot

from .test_rules_b import XBT, deposit, fill, spot_run

D = Decimal


def test_fifo_lots_are_lots_and_a_partial_sale_leaves_the_rest_of_the_oldest():
    e, run = spot_run(LedgerConfig(cost_basis="fifo"))
    run.marks[XBT] = D("61000")
    run(deposit(e, "USD", 100000), fill(e, "BUY", "0.3", 50000), fill(e, "BUY", "0.3", 70000))
    run(fill(e, "SELL", "0.4", 61000))
    # 0.3 of the first lot goes whole, 0.1 of the second: 0.2 left of it at 0.2 x 70000
    st = run.state()
    assert st.book.holding("XBT").lots == [Lot(D("0.2"), D("14000"))]
    blob = encode_state(st)
    back = decode_state(blob)
    (lot,) = back.book.holding("XBT").lots
    assert type(lot) is Lot and (lot.qty, lot.cost) == (D("0.2"), D("14000"))
    assert encode_state(back) == blob


def test_drift_entries_and_exchange_balances_are_typed_and_encode_as_before():
    e, run = spot_run(LedgerConfig(drift_tolerance=D("1")))
    run.marks[XBT] = D("100")
    run(deposit(e, "USD", 1000), fill(e, "BUY", 2, 100),
        e("balance", wallet_balance=None,
          assets={"USD": {"free": "800"}, "XBT": {"free": "1.5", "locked": "0.4"}}))
    st = run.state()
    assert st.book.drift == {"XBT": Drift("2", "1.9", "0.1", "10.0")}
    assert st.e_assets == [AssetBalance("USD", "800", "0"), AssetBalance("XBT", "1.5", "0.4")]
    blob = encode_state(st)
    # the cold line (after the header) holds E's assets as [asset, free, locked] lists
    cold = json.loads(blob.split(b"\n")[2])
    assert cold[0] == [["USD", "800", "0"], ["XBT", "1.5", "0.4"]]
    back = decode_state(blob)
    assert type(back.book.drift["XBT"]) is Drift and back.book.drift == st.book.drift
    assert all(type(a) is AssetBalance for a in back.e_assets) and back.e_assets == st.e_assets
    assert encode_state(back) == blob
