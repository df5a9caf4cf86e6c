"""Issue 13: spot pairs in every venue spelling are one pair, written ``BASE/QUOTE``.

``XBTUSD``, ``XBT/USD``, ``XBT-USD`` and Kraken's ``XXBTZUSD`` are one pair,
split by the configured quote assets; marks and valuation pairs are found in
the same spellings; an unsplittable symbol is ``UNSUPPORTED_SYMBOL``.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from streams.exceptions import ConfigError
from streams.ledger import LedgerConfig
from streams.ledger.config import config_from_mapping
from streams.ledger.spot import pair_symbol, split_symbol

from ._helpers import Events, Run

CFG = LedgerConfig()


@pytest.mark.parametrize(("symbol", "pair"), [
    ("XBT/USD", "XBT/USD"), ("XBTUSD", "XBT/USD"), ("XBT-USD", "XBT/USD"),
    ("XBT_USD", "XBT/USD"), ("XXBTZUSD", "XBT/USD"), ("XETHXXBT", "ETH/XBT"),
    ("ETHUSD", "ETH/USD"), ("BNBUSD", "BNB/USD"), ("XBTUSDT", "XBT/USDT"),
    ("BTCUSDC", "BTC/USDC"), ("ETHBTC", "ETH/BTC"), ("ADAEUR", "ADA/EUR"),
    ("DOTGBP", "DOT/GBP"), ("SOLETH", "SOL/ETH"), ("ADAUSD", "ADA/USD"),
    ("XBTFOO", None), ("USD", None), ("XBT/", None), ("/USD", None), ("A/B/C", None),
])
def test_every_spelling_is_one_pair(symbol, pair):
    assert pair_symbol(symbol, CFG) == pair


def test_the_quote_assets_are_configurable():
    cfg = config_from_mapping({"quote_assets": ["FOO"]})
    assert pair_symbol("XBTFOO", cfg) == "XBT/FOO"
    assert pair_symbol("XBTUSD", cfg) is None
    assert split_symbol("XBT-USD", cfg.quote_assets) == ("XBT", "USD")  # a separator needs none
    with pytest.raises(ConfigError, match="quote_assets"):
        config_from_mapping({"quote_assets": "USD"})


def _mark(symbol: str, price: str) -> dict[str, str]:
    return {"kind": "mark", "symbol": symbol, "price": price, "ts": "2026-01-05T09:00:00Z"}


def test_fills_in_four_spellings_book_one_pair_and_output_the_canonical_one():
    """Observed: a spot fill on ETHUSD was UNSUPPORTED_SYMBOL and nothing was booked."""
    e = Events(venue="kraken")
    run = Run()
    run(e("cash_flow", asset="USD", amount="10000", flow="deposit"), _mark("XBT/USD", "100"))
    for symbol in ("XBTUSD", "XBT/USD", "XBT-USD", "XXBTZUSD"):
        run(e.fill("BUY", 1, 100, symbol, market="spot"))
    assert run.codes() == []
    trades = run.of("trade")
    assert [t["symbol"] for t in trades] == ["XBT/USD"] * 4
    pairs = [p for p in run.last_snapshot()["positions"] if p["market"] == "spot"]
    assert [(p["symbol"], p["qty"]) for p in pairs] == [("XBT/USD", Decimal(4))]
    book = run.state().book
    assert list(book.pairs) == ["XBT/USD"] and book.assets["XBT"].qty == 4


@pytest.mark.parametrize("spelling", ["ETHUSD", "ETH/USD", "ETH-USD", "XETHZUSD"])
def test_a_mark_in_any_spelling_values_the_asset(spelling):
    """Observed: a mark on ETHUSD did not value ETH (only ETH/USD did)."""
    e = Events(venue="kraken")
    run = Run()
    run(e("cash_flow", asset="USD", amount="1000", flow="deposit"),
        e.fill("BUY", 2, 100, "ETHUSD", market="spot"), _mark(spelling, "150"))
    run(e("cash_flow", asset="USD", amount="1", flow="deposit"))
    eth = next(b for b in run.last_snapshot()["balances"] if b["asset"] == "ETH")
    assert eth["value"] == Decimal(300) and eth["unvalued"] is False


def test_a_valuation_pair_override_is_found_in_any_spelling():
    cfg = config_from_mapping({"valuation_pairs": {"BNB": "BNBUSDT"}})
    e = Events(venue="kraken")
    run = Run(cfg)
    run(e("cash_flow", asset="BNB", amount="2", flow="deposit"), _mark("BNB/USDT", "600"))
    run(e("cash_flow", asset="USD", amount="1", flow="deposit"))
    bnb = next(b for b in run.last_snapshot()["balances"] if b["asset"] == "BNB")
    assert bnb["value"] == Decimal(1200)
