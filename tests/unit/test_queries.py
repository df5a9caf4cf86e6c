"""Portfolio queries (LEDGER B10, ``streams.queries``) over a small folded spot stream.

The stream (``spot_stream``, also produced by the HTTP integration test): a
kraken account deposits USD and DOT, trades XBT/USD and ETH/USD (fees in DOT,
a third asset, and in USD), sells ETH in an untagged (manual) trade,
withdraws USD, receives a DOT reward and an unvalued FOO deposit an hour
later, and two hours later the exchange reports 39 ETH where 40 are derived
(drift). Marks: XBT 100 then 130, ETH 20, DOT 5, FOO none. Every figure
below is worked out by hand.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from streams import queries as q
from streams.exceptions import AccountNotFound, PositionNotFound, QueryError, TwinledgerError
from streams.ledger import LedgerConfig, account_summary, encode_state
from streams.ledger.numbers import q18
from tests.unit.ledger._helpers import T0, Events, Run

D = Decimal
ACCOUNT = "acc-q"


def mark(symbol: str, price: Any) -> dict[str, Any]:
    return {"kind": "mark", "event_id": f"mark-{symbol}-{price}", "account_id": "",
            "venue": "kraken", "symbol": symbol, "price": str(price),
            "ts": "2026-01-05T09:00:00Z"}


def _at(d: dict[str, Any], hours: int) -> dict[str, Any]:
    d["ts"] = (T0 + timedelta(hours=hours, seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return d


def spot_marks() -> list[dict[str, Any]]:
    return [mark("XBT/USD", 100), mark("ETH/USD", 20), mark("DOT/USD", 5)]


def spot_events(account: str = ACCOUNT) -> list[dict[str, Any]]:
    """The account's ten venue events (no marks)."""
    e = Events(account, venue="kraken")

    def fill(side: str, qty: Any, price: Any, symbol: str, **kw: Any) -> dict[str, Any]:
        return e.fill(side, qty, price, symbol, market="spot", **kw)

    return [
        e("cash_flow", asset="USD", amount=10000, flow="deposit"),
        e("cash_flow", asset="DOT", amount=10, flow="deposit"),
        fill("BUY", 10, 100, "XBT/USD", fee="1", fee_asset="DOT", strategy_tag="grid"),
        fill("BUY", 50, 20, "ETH/USD", fee="2", fee_asset="USD", strategy_tag="grid"),
        fill("SELL", 4, 120, "XBT/USD", fee="0.5", fee_asset="DOT", strategy_tag="grid"),
        fill("SELL", 10, 25, "ETH/USD"),  # untagged: manual
        _at(e("cash_flow", asset="USD", amount=-1000, flow="withdrawal"), 1),
        _at(e("cash_flow", asset="DOT", amount=2, flow="reward"), 1),
        _at(e("cash_flow", asset="FOO", amount=3, flow="deposit"), 1),
        _at(e("balance", wallet_balance=None, assets={
            "USD": {"free": "7728"}, "XBT": {"free": "5", "locked": "1"},
            "ETH": {"free": "39"}, "DOT": {"free": "10.5"}, "FOO": {"free": "3"}}), 2),
    ]


def spot_stream(account: str = ACCOUNT) -> list[dict[str, Any]]:
    """Marks, the account's events, then XBT marked up to 130: a FOLD_FORMAT file's lines."""
    return [*spot_marks(), *spot_events(account), mark("XBT/USD", 130)]


@pytest.fixture
def run() -> Run:
    r = Run()
    r(*spot_stream())
    return r


def ask(run: Run, name: str, **params: Any) -> dict[str, Any]:
    return q.run_query(name, run.states.get(ACCOUNT), ACCOUNT, run.marks, run.config,
                       **params)


# equity -----------------------------------------------------------------------------


def test_equity_parts_drift_and_unvalued(run: Run):
    doc = ask(run, "equity")
    # USD 10000 - 1000 (XBT) - 1000 - 2 (ETH) + 480 + 250 - 1000 = 7728; XBT 6 x 130 = 780;
    # ETH 40 x 20 = 800; DOT (10 - 1 - 0.5 + 2) x 5 = 52.5; FOO unvalued
    assert D(doc["equity"]) == D("9360.5")
    assert D(doc["realized_pnl"]) == 130  # XBT (120 - 100) x 4 + ETH (25 - 20) x 10
    assert D(doc["fees"]) == D("9.5")  # 1 DOT x 5 + 2 USD + 0.5 DOT x 5
    assert D(doc["unrealized_pnl"]) == 180  # (130 - 100) x 6
    assert D(doc["cash_flows"]) == 9060  # 10000 + 50 - 1000 + 10 + 0 (FOO has no mark)
    assert D(doc["net_pnl"]) == D("120.5")
    # B6: equity = net cash flows + realized - fees + unrealized, exactly
    assert D(doc["equity"]) == (D(doc["cash_flows"]) + D(doc["realized_pnl"])
                                - D(doc["fees"]) + D(doc["unrealized_pnl"]))
    assert doc["drift"] is True
    assert doc["drift_assets"] == {
        "ETH": {"derived": "40", "exchange": "39", "delta": "1", "value": "20"}}
    assert doc["unvalued"] == ["FOO"]
    assert doc["reconcile"]["status"] == "WARN"
    assert doc["reconcile"]["deltas"] == {"balance:ETH": "1"}
    assert (doc["account_id"], doc["event_seq"], doc["base_currency"]) == (ACCOUNT, 10, "USD")


def test_equity_agrees_with_the_account_view(run: Run):
    view = account_summary(run.state(ACCOUNT), run.marks, run.config)
    doc = ask(run, "equity")
    for key in ("equity", "realized_pnl", "fees", "unrealized_pnl", "cash_flows"):
        assert D(doc[key]) == D(view[key]), key
    assert doc["drift"] == view["drift"]["active"]


def test_drift_clears_and_the_flag_goes_down(run: Run):
    e = Events(ACCOUNT, venue="kraken")
    e.n = iter(range(100, 200))  # ids after the stream's
    run(_at(e("balance", wallet_balance=None, assets={
        "USD": {"free": "7728"}, "XBT": {"free": "6"}, "ETH": {"free": "40"},
        "DOT": {"free": "10.5"}, "FOO": {"free": "3"}}), 3))
    doc = ask(run, "equity")
    assert doc["drift"] is False and doc["drift_assets"] == {}
    assert doc["reconcile"]["status"] == "OK"


# positions --------------------------------------------------------------------------


def test_positions_lists_each_pair_and_each_asset(run: Run):
    doc = ask(run, "positions")
    pos = {p["symbol"]: p for p in doc["positions"]}
    assert list(pos) == ["ETH/USD", "XBT/USD"]
    xbt = pos["XBT/USD"]
    assert xbt["market"] == "spot" and xbt["position_side"] == "BOTH"
    assert (D(xbt["qty"]), D(xbt["avg_entry_price"]), D(xbt["mark_price"])) == (6, 100, 130)
    assert (D(xbt["realized_pnl"]), D(xbt["fees"]), D(xbt["unrealized_pnl"])) == (
        80, D("7.5"), 180)
    eth = pos["ETH/USD"]
    assert (D(eth["qty"]), D(eth["realized_pnl"]), D(eth["fees"])) == (40, 50, 2)
    bal = doc["balances"]
    assert list(bal) == ["DOT", "ETH", "FOO", "USD", "XBT"]
    assert {a: D(b["total"]) for a, b in bal.items()} == {
        "DOT": D("10.5"), "ETH": 40, "FOO": 3, "USD": 7728, "XBT": 6}
    # the exchange's last frame locks 1 XBT
    assert (D(bal["XBT"]["free"]), D(bal["XBT"]["locked"])) == (5, 1)
    # DOT: 50 deposited - 5 and 2.5 paid as fees at cost + 10 reward = 52.5 for 10.5
    assert (D(bal["DOT"]["cost_basis"]), D(bal["DOT"]["avg_cost"])) == (D("52.5"), 5)
    assert bal["FOO"]["unvalued"] is True and bal["FOO"]["mark_price"] is None
    assert D(bal["FOO"]["value"]) == 0
    assert bal["ETH"]["drift"] is True and bal["XBT"]["drift"] is False
    assert D(bal["USD"]["mark_price"]) == 1
    # every figure is a plain decimal string
    assert all(isinstance(b["value"], str) and "E" not in b["value"] for b in bal.values())


def test_one_position_by_symbol_dash_spelling_and_asset(run: Run):
    by_slash = ask(run, "position", symbol="XBT/USD")
    assert by_slash["kind"] == "position" and by_slash["symbol"] == "XBT/USD"
    assert [D(p["qty"]) for p in by_slash["positions"]] == [6]
    assert ask(run, "position", symbol="XBT-USD") == by_slash
    # issue 13: every venue spelling of the pair names it
    assert ask(run, "position", symbol="XBTUSD") == by_slash
    assert ask(run, "position", symbol="XXBTZUSD") == by_slash
    asset = ask(run, "position", symbol="DOT")
    assert asset["kind"] == "balance" and asset["asset"] == "DOT"
    assert D(asset["balance"]["value"]) == D("52.5")


def test_one_position_not_found_is_typed(run: Run):
    with pytest.raises(PositionNotFound) as info:
        ask(run, "position", symbol="SOL/USD")
    assert isinstance(info.value, TwinledgerError)
    assert (info.value.account_id, info.value.key) == (ACCOUNT, "SOL/USD")
    assert info.value.code == "position_not_found"
    with pytest.raises(PositionNotFound):
        ask(run, "position", symbol="SOL-USD")


def test_unknown_account_is_typed(run: Run):
    for name in q.QUERIES:
        params = {"symbol": "XBT/USD"} if name == "position" else {}
        with pytest.raises(AccountNotFound) as info:
            q.run_query(name, None, "nobody", run.marks, run.config, **params)
        assert info.value.account_id == "nobody"


def test_futures_positions_are_listed_and_found():
    e = Events("fut-1", venue="bingx")
    r = Run()
    r({"kind": "mark", "symbol": "FET-USDT", "price": "0.2", "ts": "2026-01-05T09:00:00Z"},
      e("anchor", capital="1000"), e.fill("BUY", 100, "0.1878", "FET-USDT"))
    doc = q.run_query("positions", r.state("fut-1"), "fut-1", r.marks, r.config)
    assert [(p["symbol"], p["market"], D(p["qty"])) for p in doc["positions"]] == [
        ("FET-USDT", "futures", 100)]
    assert D(doc["positions"][0]["unrealized_pnl"]) == D("1.22")  # (0.2 - 0.1878) x 100
    assert doc["balances"] == {}
    # a real dash is found as it is, not read as FET/USDT
    one = q.run_query("position", r.state("fut-1"), "fut-1", r.marks, r.config,
                      symbol="FET-USDT")
    assert one["symbol"] == "FET-USDT" and len(one["positions"]) == 1
    exp = q.run_query("exposure", r.state("fut-1"), "fut-1", r.marks, r.config)
    assert D(exp["equity"]) == D("1001.22")
    assert exp["positions"] == [{"symbol": "FET-USDT", "position_side": "BOTH", "qty": "100",
                                 "mark_price": "0.2", "notional": "20",
                                 "share": str(q18(D(20) / D("1001.22")))}]


# exposure ---------------------------------------------------------------------------


def test_exposure_shares_of_equity(run: Run):
    doc = ask(run, "exposure")
    eq = D("9360.5")
    assert D(doc["equity"]) == eq and doc["shares_defined"] is True
    assert [a["asset"] for a in doc["assets"]] == ["USD", "ETH", "XBT", "DOT"]  # by value
    values = {a["asset"]: D(a["value"]) for a in doc["assets"]}
    assert values == {"USD": 7728, "ETH": 800, "XBT": 780, "DOT": D("52.5")}
    for a in doc["assets"]:
        assert a["share"] == str(q18(D(a["value"]) / eq))  # 18 places, half-even
    assert doc["assets"][0]["share"] == "0.825596923241279846"
    # the shares of a spot portfolio add up to 1, up to one rounding per asset
    assert abs(sum(D(a["share"]) for a in doc["assets"]) - 1) <= D("4e-18")
    assert doc["unvalued"] == [{"asset": "FOO", "total": "3", "value": None, "share": None}]
    assert doc["positions"] == []


def test_exposure_exact_share_keeps_its_places():
    e = Events("half", venue="kraken")
    r = Run()
    r({"kind": "mark", "symbol": "XBT/USD", "price": "100", "ts": "2026-01-05T09:00:00Z"},
      e("cash_flow", asset="USD", amount=500, flow="deposit"),
      e("cash_flow", asset="XBT", amount=5, flow="deposit"))
    doc = q.run_query("exposure", r.state("half"), "half", r.marks, r.config)
    assert [(a["asset"], a["share"]) for a in doc["assets"]] == [("USD", "0.5"), ("XBT", "0.5")]


def test_exposure_with_zero_equity_has_no_shares():
    e = Events("zero", venue="kraken")
    r = Run()
    r(e("cash_flow", asset="FOO", amount=3, flow="deposit"))  # no mark: equity 0
    doc = q.run_query("exposure", r.state("zero"), "zero", r.marks, r.config)
    assert D(doc["equity"]) == 0 and doc["shares_defined"] is False
    assert doc["assets"] == [] and doc["unvalued"][0]["share"] is None


def test_exposure_with_negative_equity_has_no_shares():
    e = Events("neg", venue="bingx")
    r = Run()
    r({"kind": "mark", "symbol": "FET-USDT", "price": "0.1", "ts": "2026-01-05T09:00:00Z"},
      e("anchor", capital="5"), e.fill("BUY", 100, "0.2", "FET-USDT"))
    doc = q.run_query("exposure", r.state("neg"), "neg", r.marks, r.config)
    assert D(doc["equity"]) == -5  # 5 + (0.1 - 0.2) x 100
    assert doc["shares_defined"] is False
    assert doc["positions"][0]["share"] is None and doc["positions"][0]["notional"] == "10"


# trades -----------------------------------------------------------------------------


def test_trades_history_filters(run: Run):
    doc = ask(run, "trades")
    assert doc["include_manual"] is True and doc["count"] == 4  # track_manual_trades default
    assert [(t["symbol"], t["side"], t["strategy_tag"], t["manual"]) for t in doc["trades"]] == [
        ("XBT/USD", "BUY", "grid", False), ("ETH/USD", "BUY", "grid", False),
        ("XBT/USD", "SELL", "grid", False), ("ETH/USD", "SELL", "manual", True)]
    sell = doc["trades"][2]
    assert sell["market"] == "spot" and sell["status"] == "CLOSED"
    assert (D(sell["realized_pnl"]), D(sell["fees"]), D(sell["net_pnl"])) == (
        80, D("2.5"), D("77.5"))
    assert [(D(leg["qty"]), D(leg["price"])) for leg in sell["legs"]] == [(4, 120)]
    assert sell["opened_at"] == "2026-01-05T09:00:05+00:00"

    eth = ask(run, "trades", pair="ETH-USD")
    assert eth["pair"] == "ETH/USD" and [t["side"] for t in eth["trades"]] == ["BUY", "SELL"]
    no_manual = ask(run, "trades", include_manual=False)
    assert [t["manual"] for t in no_manual["trades"]] == [False, False, False]
    last2 = ask(run, "trades", limit=2)
    assert [t["trade_id"] for t in last2["trades"]] == [
        t["trade_id"] for t in doc["trades"][-2:]]
    assert ask(run, "trades", limit=0)["trades"] == []
    both = ask(run, "trades", pair="XBT/USD", limit=1, include_manual=False)
    assert [(t["symbol"], t["side"]) for t in both["trades"]] == [("XBT/USD", "SELL")]
    assert ask(run, "trades", pair="SOL/USD")["trades"] == []


def test_trades_default_follows_track_manual_trades():
    r = Run(LedgerConfig(track_manual_trades=False))
    r(*spot_stream())
    doc = q.run_query("trades", r.state(ACCOUNT), ACCOUNT, r.marks, r.config)
    assert doc["include_manual"] is False and doc["count"] == 3
    doc = q.run_query("trades", r.state(ACCOUNT), ACCOUNT, r.marks, r.config,
                      include_manual=True)
    assert doc["count"] == 4


# fees, cash flows, snapshots --------------------------------------------------------


def test_fee_summary(run: Run):
    doc = ask(run, "fees")
    assert D(doc["total"]) == D("9.5")
    assert {a: (D(f["qty"]), D(f["value"])) for a, f in doc["by_asset"].items()} == {
        "DOT": (D("1.5"), D("7.5")), "USD": (2, 2)}
    assert {s: (D(f["fees"]), D(f["realized_pnl"]), D(f["net_pnl"]))
            for s, f in doc["by_pair"].items()} == {
        "ETH/USD": (2, 50, 48), "XBT/USD": (D("7.5"), 80, D("72.5"))}
    assert sum(D(f["value"]) for f in doc["by_asset"].values()) == D(doc["total"])


def test_fee_summary_leaves_manual_fills_out_unless_asked():
    r = Run(LedgerConfig(track_manual_trades=False))
    e = Events(ACCOUNT, venue="kraken")
    extra = e.fill("BUY", 1, 130, "XBT/USD", eid="manual-extra", market="spot", fee="0.2",
                   fee_asset="DOT")  # untagged: manual, its fee worth 1 USD at DOT 5
    r(*spot_stream(), extra)

    def figures(doc: dict[str, Any]) -> tuple[Any, ...]:
        return (D(doc["total"]),
                {a: (D(f["qty"]), D(f["value"])) for a, f in doc["by_asset"].items()},
                {s: (D(f["fees"]), D(f["realized_pnl"]), D(f["net_pnl"]))
                 for s, f in doc["by_pair"].items()})

    default = q.run_query("fees", r.state(ACCOUNT), ACCOUNT, r.marks, r.config)
    assert default["include_manual"] is False
    assert figures(default) == (D("9.5"), {"DOT": (D("1.5"), D("7.5")), "USD": (2, 2)},
                                {"ETH/USD": (2, 0, -2), "XBT/USD": (D("7.5"), 80, D("72.5"))})
    every = q.run_query("fees", r.state(ACCOUNT), ACCOUNT, r.marks, r.config,
                        include_manual=True)
    assert figures(every) == (D("10.5"), {"DOT": (D("1.7"), D("8.5")), "USD": (2, 2)},
                              {"ETH/USD": (2, 50, 48), "XBT/USD": (D("8.5"), 80, D("71.5"))})
    assert D(every["total"]) == r.state(ACCOUNT).k_fees
    assert q.parse_params("fees", {"include_manual": "true"}) == {"include_manual": True}


def test_cash_flows(run: Run):
    doc = ask(run, "cash-flows")
    assert D(doc["net"]) == 9060 and doc["count"] == 5
    rows = [(f["flow"], f["asset"], D(f["amount"]), D(f["value"]), f["price"])
            for f in doc["flows"]]
    assert rows == [("deposit", "USD", 10000, 10000, "1"), ("deposit", "DOT", 10, 50, "5"),
                    ("withdrawal", "USD", -1000, -1000, None),
                    ("reward", "DOT", 2, 10, "5"), ("deposit", "FOO", 3, 0, None)]
    assert all(f["currency"] == "USD" for f in doc["flows"])
    assert doc["flows"][2]["ts"] == "2026-01-05T10:00:01+00:00"
    assert [f["flow"] for f in ask(run, "cash-flows", limit=2)["flows"]] == ["reward", "deposit"]


def test_snapshots(run: Run):
    doc = ask(run, "snapshots")
    assert doc["interval_seconds"] == 3600 and doc["count"] == 3
    snaps = doc["snapshots"]
    assert [s["bucket_start"] for s in snaps] == [
        "2026-01-05T09:00:00+00:00", "2026-01-05T10:00:00+00:00", "2026-01-05T11:00:00+00:00"]
    # hour 9: the first deposit only; hour 10: after the withdrawal (trades done, XBT at 100)
    assert (D(snaps[0]["equity"]), D(snaps[0]["cash_flows"])) == (10000, 10000)
    assert (D(snaps[1]["equity"]), D(snaps[1]["realized_pnl"]), D(snaps[1]["fees"]),
            D(snaps[1]["cash_flows"])) == (D("9170.5"), 130, D("9.5"), 9050)
    assert [s["drift"] for s in snaps] == [False, False, True]
    assert ask(run, "snapshots", limit=1)["snapshots"] == snaps[-1:]


# parameters, purity, tables -------------------------------------------------------


class _Multi(dict[str, str]):
    """A query string with a repeated key, as aiohttp's MultiDict yields it."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        super().__init__()
        self._items = items

    def items(self) -> Any:
        return iter(self._items)


def test_parse_params_types_and_refusals():
    assert q.parse_params("trades", {"pair": "XBT-USD", "limit": "5",
                                     "include_manual": "false"}) == {
        "pair": "XBT-USD", "limit": 5, "include_manual": False}
    assert q.parse_params("trades", {"include_manual": "1"}) == {"include_manual": True}
    assert q.parse_params("snapshots", {"limit": "0"}) == {"limit": 0}
    with pytest.raises(QueryError, match="twice"):
        q.parse_params("trades", _Multi([("limit", "1"), ("limit", "2")]))
    for name, raw in [("trades", {"limit": "-1"}), ("trades", {"limit": "x"}),
                      ("trades", {"include_manual": "maybe"}), ("trades", {"pair": ""}),
                      ("equity", {"limit": "1"}), ("position", {"symbol": "XBT"}),
                      ("fees", {"verbose": "1"})]:
        with pytest.raises(QueryError):
            q.parse_params(name, raw)


def test_run_query_refuses_unknown_queries_and_parameters(run: Run):
    with pytest.raises(QueryError):
        ask(run, "balance-sheet")
    with pytest.raises(QueryError):
        ask(run, "equity", limit=1)
    with pytest.raises(QueryError):
        ask(run, "trades", limit=-1)


def test_queries_do_not_change_the_state(run: Run):
    st = run.state(ACCOUNT)
    before = encode_state(st)
    for name in q.QUERIES:
        ask(run, name, **({"symbol": "XBT"} if name == "position" else {}))
    assert encode_state(st) == before


def test_every_answer_is_json_with_plain_decimal_strings(run: Run):
    for name in q.QUERIES:
        doc = ask(run, name, **({"symbol": "XBT/USD"} if name == "position" else {}))
        text = json.dumps(doc)
        assert json.loads(text) == doc
        assert "E+" not in text and "E-" not in text


def test_render_table_shows_scalars_and_rows(run: Run):
    text = q.render_table(ask(run, "exposure"))
    lines = text.splitlines()
    assert lines[0].split() == ["account_id", ACCOUNT]
    assert "assets (4)" in lines
    header = lines[lines.index("assets (4)") + 1]
    assert header.split() == ["asset", "total", "value", "share"]
    usd = next(line for line in lines if line.startswith("USD "))
    assert usd.split() == ["USD", "7728", "7728", "82.56%"]  # exact in JSON, rounded here
    foo = next(line for line in lines if line.startswith("FOO "))
    assert foo.split() == ["FOO", "3", "-", "-"]
    # the exposure's futures list is named so: a spot account does not read as holding none
    assert ["futures", "positions", "(none)"] in [line.split() for line in lines]
    fees = q.render_table(ask(run, "fees")).splitlines()
    assert [line.split() for line in fees if line.startswith("DOT")] == [["DOT", "1.5", "7.5"]]


def test_render_table_flattens_nested_mappings_instead_of_counting_them():
    doc = {"account_id": "a", "reconcile": {"status": "WARN", "deltas": {"balance:USD": "3267"},
                                            "explanations": ["DRIFT|balance:USD|3267"]},
           "drift_assets": {}}
    lines = [line.split() for line in q.render_table(doc).splitlines()]
    assert ["reconcile.deltas.balance:USD", "3267"] in lines
    assert ["drift_assets", "(none)"] in lines
    assert not any("{1}" in " ".join(line) for line in lines)


def test_marks_at_the_wire_scale_give_the_same_answers(run: Run):
    """Marks read from Kafka carry 18 places (Avro decimal(38,18)); a file's do not.
    The worker and ``--file`` must still print the same characters."""
    wire = Run()
    for d in spot_stream():
        wire(d)
        if d["kind"] == "mark":
            # A file's text is read canonically now (issue 13), so the wire scale is set
            # on the mark itself, as a decoder that kept it would.
            wire.marks[d["symbol"]] = D(d["price"]).quantize(D("1e-18"))
    assert wire.marks["XBT/USD"].as_tuple().exponent == -18
    for name in q.QUERIES:
        params = {"symbol": "XBT/USD"} if name == "position" else {}
        assert q.run_query(name, wire.state(ACCOUNT), ACCOUNT, wire.marks, wire.config,
                           **params) == ask(run, name, **params), name


@pytest.mark.parametrize("raw", ["9" * 5000, "9" * 7, "-1", "1e3", "١٢", " 5"])
def test_a_limit_outside_its_bounds_is_a_400_not_a_crash(raw):
    from streams.exceptions import QueryError
    from streams.queries import parse_params

    with pytest.raises(QueryError, match="limit"):
        parse_params("trades", {"limit": raw})


def test_an_overlong_parameter_is_refused():
    from streams.exceptions import QueryError
    from streams.queries import parse_params

    with pytest.raises(QueryError, match="longer than"):
        parse_params("trades", {"pair": "X" * 1000})


def test_render_table_rounds_fractions_for_reading_and_json_stays_exact():
    doc = {"win_rate": "0.666666666666666667", "return": "0.007", "profit_factor": "2.1666",
           "max_drawdown_share": None}
    lines = [line.split() for line in q.render_table(doc).splitlines()]
    assert lines == [["win_rate", "66.67%"], ["return", "0.70%"], ["profit_factor", "2.17"],
                     ["max_drawdown_share", "-"]]
