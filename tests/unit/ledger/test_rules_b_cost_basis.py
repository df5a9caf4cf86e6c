"""LEDGER B2/B3: every spot trade record carries the cost basis its leg moved.

A BUY's ``cost_basis`` is the cost added to the bought asset (the trade's
base-currency value), a SELL's the cost the cost method (WAC or FIFO) took
out of the sold asset for the units sold; a fee paid out of the same holding
is not part of it. It is what ``twinledger export trades`` reports, so it must
not be derived from proceeds - realized (wrong with a fee in the sold asset, a
quote that is not the base currency, or a cross pair).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from streams.ledger import LedgerConfig

from ._helpers import Events, Run, avro_roundtrip, load_schemas
from .test_rules_b import XBT, deposit, fill, spot_run

D = Decimal
SCHEMAS = load_schemas()


def trade_of(outputs: list[Any]) -> dict[str, Any]:
    (t,) = [o for o in outputs if o.kind == "trade"]
    assert avro_roundtrip(SCHEMAS, t)["cost_basis"] == t.record["cost_basis"]
    return t.record  # type: ignore[no-any-return]


def test_wac_sale_removes_the_average_cost_of_the_units_sold_not_the_fee():
    e, run = spot_run()
    run.marks[XBT] = D("65000")
    run(deposit(e, "USD", 100000))
    # buys add their value: 0.5 x 60000 = 30000 and 0.5 x 62000 = 31000; avg 61000
    assert trade_of(run(fill(e, "BUY", "0.5", 60000)))["cost_basis"] == D("30000")
    assert trade_of(run(fill(e, "BUY", "0.5", 62000)))["cost_basis"] == D("31000")
    t = trade_of(run(fill(e, "SELL", "0.2", 65000, fee="0.0001", fee_asset="XBT")))
    # cost removed 0.2 x 61000 = 12200; value 13000 -> 800; the fee 0.0001 XBT is worth
    # 6.5 at the mark and costs 0.0001 x 61000 = 6.1 -> +0.4: realized 800.4
    assert t["cost_basis"] == D("12200")
    assert t["cumulative_pnl"] == D("800.4")
    assert t["qty"] * t["price"] - t["cumulative_pnl"] == D("12199.6")  # the old shortcut


def test_fifo_sale_removes_the_oldest_lots():
    e, run = spot_run(LedgerConfig(cost_basis="fifo"))
    run.marks[XBT] = D("61000")
    run(deposit(e, "USD", 100000))
    run(fill(e, "BUY", "0.3", 50000), fill(e, "BUY", "0.3", 70000))  # lots 15000, 21000
    t = trade_of(run(fill(e, "SELL", "0.4", 61000, fee="0.0001", fee_asset="XBT")))
    # 0.3 of the first lot (15000) + 0.1 of the second (0.1 x 70000 = 7000) = 22000;
    # value 24400 -> 2400; the fee comes out of the second lot: worth 6.1, cost 7 -> -0.9
    assert t["cost_basis"] == D("22000")
    assert t["cumulative_pnl"] == D("2399.1")
    # what is left: 0.2 - 0.0001 = 0.1999 XBT of the second lot, 21000 - 7000 - 7 = 13993
    h = run.state().book.holding("XBT")
    assert (h.qty, h.cost) == (D("0.1999"), D("13993"))


def test_a_quote_that_is_not_the_base_currency():
    e, run = spot_run()
    run.marks.update({XBT: D("61000"), "USDT/USD": D("0.999")})
    run(deposit(e, "USD", 100000), deposit(e, "USDT", 10000))  # 10000 USDT cost 9990
    run(fill(e, "BUY", "0.5", 60000))  # 30000
    t = trade_of(run(fill(e, "SELL", "0.2", 61000, symbol="XBT/USDT")))
    # cost removed 0.2 x 60000 = 12000 (USD); proceeds 12200 USDT are worth 12187.8
    assert t["cost_basis"] == D("12000")
    assert t["cumulative_pnl"] == D("187.8")
    # a BUY for USDT adds its USD value: 0.1 x 60000 = 6000 USDT x 0.999 = 5994
    t = trade_of(run(fill(e, "BUY", "0.1", 60000, symbol="XBT/USDT")))
    assert t["cost_basis"] == D("5994")
    # XBT held: 0.3 at 18000 + 0.1 at 5994 = 23994
    assert run.state().book.holding("XBT").cost == D("23994")


def test_a_cross_pair_sale_removes_the_sold_assets_cost_in_the_base_currency():
    e, run = spot_run()
    run.marks.update({XBT: D("60000"), "ETH/USD": D("3000")})
    run(deposit(e, "USD", 100000))
    run(fill(e, "BUY", "1", 2500, symbol="ETH/USD"))  # cost 2500
    t = trade_of(run(fill(e, "SELL", "1", "0.05", symbol="ETH/XBT")))
    # 0.05 XBT at 60000 = 3000 USD for an ETH that cost 2500: realized 500, cost 2500
    assert t["cost_basis"] == D("2500")
    assert t["cumulative_pnl"] == D("500")
    assert run.state().book.holding("XBT").cost == D("3000")


def test_futures_legs_carry_no_cost_basis():
    e, run = Events(), Run()
    out = run(e("anchor", capital="1000"), e.fill("BUY", "10", "1.5"))
    (t,) = [o for o in out if o.kind == "trade"]
    assert t.record["cost_basis"] is None
    assert avro_roundtrip(SCHEMAS, t)["cost_basis"] is None
