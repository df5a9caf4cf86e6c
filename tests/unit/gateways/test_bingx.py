"""BingX swap normalizer: the golden boundary cases of LEDGER A4/A5/C2 and the stream/REST shapes."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal

import pytest

from streams.gateways import OrderMemory, Rejection, normalize_payload
from streams.gateways.bingx import symbol_of

from .conftest import events, fixture_json, fixture_lines, fixture_text, rejection

ENTRY_OID = "1899384022338322432"
EXIT1_OID = "1899412985126522880"
EXIT2_OID = "1899420170791354368"


def c2_frames() -> list[str]:
    return fixture_lines("bingx", "fet_short_c2.jsonl")


def test_fet_exit_leg_with_only_the_protective_bound_arrives_with_price_zero() -> None:
    raw = fixture_text("bingx", "fet_exit1_protective_bound_only.json")
    assert json.loads(raw)["o"]["p"] == "0.22900000"  # the bound is in the frame...

    (fill,) = events("bingx", raw)

    assert fill == {  # ...and never becomes the price
        "kind": "fill",
        "event_id": f"bingx:fill:{EXIT1_OID}:26007",
        "account_id": "acct-1",
        "venue": "bingx",
        "ts": "2025-03-11T10:02:40.118000Z",
        "symbol": "FET-USDT",
        "side": "BUY",
        "qty": "26007",
        "price": "0",
        "fee": "2.4264531",
        "fee_asset": "USDT",
        "position_side": "SHORT",
        "venue_order_id": EXIT1_OID,
        "client_order_id": "fet-exit-1",
        "market": "futures",
    }


def test_market_order_price_is_never_used_even_when_it_is_the_only_number() -> None:
    frame = fixture_json("bingx", "fet_exit1_protective_bound_only.json")
    del frame["o"]["ap"]
    (fill,) = events("bingx", frame)
    assert fill["price"] == "0"


def test_bingx_cost_of_minus_31_arrives_as_fee_plus_31() -> None:
    (fill,) = events("bingx", fixture_text("bingx", "cost_minus_31.json"))
    assert fill["fee"] == "31"
    assert fill["fee_asset"] == "USDT"
    assert fill["price"] == "82666"  # l > 0 and L given: the price of this execution
    assert fill["ts"] == "2025-03-12T14:29:59.870000Z"  # o.T when the venue sets it


def test_negative_bingx_fee_is_a_rebate_after_the_flip() -> None:
    frame = fixture_json("bingx", "cost_minus_31.json")
    frame["o"]["n"] = "4.5"
    (fill,) = events("bingx", frame)
    assert fill["fee"] == "-4.5"


def test_cumulative_only_reports_become_increments_195259_then_7017() -> None:
    memory = OrderMemory()
    first, second = c2_frames()[:2]
    assert json.loads(first)["o"]["l"] == "0"
    assert "l" not in json.loads(second)["o"]

    (fill1,) = events("bingx", first, memory)
    (fill2,) = events("bingx", second, memory)

    assert (fill1["qty"], fill1["price"], fill1["fee"]) == ("195259", "0.1878", "18.3348201")
    assert (fill2["qty"], fill2["price"], fill2["fee"]) == ("7017", "0.1878", "0.6588963")
    assert fill1["event_id"] == f"bingx:fill:{ENTRY_OID}:195259"
    assert fill2["event_id"] == f"bingx:fill:{ENTRY_OID}:202276"


def test_fet_usdt_and_fetusdt_are_one_symbol() -> None:
    first, second = c2_frames()[:2]
    assert json.loads(second)["o"]["s"] == "FETUSDT"
    memory = OrderMemory()
    symbols = {e["symbol"] for line in (first, second) for e in events("bingx", line, memory)}
    assert symbols == {"FET-USDT"}
    assert {symbol_of(s) for s in ("FET-USDT", "FETUSDT", "fet_usdt", "FET/USDT")} == {"FET-USDT"}


def test_symbol_without_a_known_quote_is_rejected() -> None:
    frame = fixture_json("bingx", "cost_minus_31.json")
    frame["o"]["s"] = "FETXYZ"
    assert "cannot tell base from quote" in rejection("bingx", frame).reason


def test_account_update_without_margin_asset_yields_no_wallet_balance_fact() -> None:
    out = events("bingx", fixture_text("bingx", "account_update_without_margin_asset.json"))
    assert [e["kind"] for e in out] == ["positions"]
    assert all("wallet_balance" not in e for e in out)


def test_account_update_with_margin_asset_states_wallet_balance_and_signed_short() -> None:
    balance, positions = events("bingx", c2_frames()[2])
    assert balance["kind"] == "balance"
    assert balance["wallet_balance"] == "12981.0062836"
    assert positions["positions"] == [
        {"symbol": "FET-USDT", "position_side": "SHORT", "qty": "-202276",
         "entry_price": "0.1878"}]


def test_position_book_merges_changes_and_drops_closed_positions() -> None:
    memory = OrderMemory()
    events("bingx", c2_frames()[2], memory)  # FET-USDT SHORT open
    events("bingx", fixture_text("bingx", "account_update_without_margin_asset.json"), memory)
    _, closing = events("bingx", c2_frames()[5], memory)  # FET-USDT closed (pa 0)
    assert closing["positions"] == [
        {"symbol": "BTC-USDT", "position_side": "LONG", "qty": "0.75", "entry_price": "82666"}]


def test_exchange_realized_pnl_on_the_filled_exit_is_a_settlement_of_the_order() -> None:
    memory = OrderMemory()
    fill, settled = events("bingx", c2_frames()[4], memory)
    assert fill["price"] == "0.1866" and fill["qty"] == "176269"
    assert settled == {
        "kind": "fill_settled", "event_id": f"bingx:settle:{EXIT2_OID}", "account_id": "acct-1",
        "venue": "bingx", "ts": fill["ts"], "symbol": "FET-USDT", "venue_order_id": EXIT2_OID,
        "realized_pnl": "211.5228", "fee": "16.4458977"}


def test_rest_order_result_repairs_the_priceless_exit_without_booking_it_twice() -> None:
    memory = OrderMemory()
    (ws_fill,) = events("bingx", fixture_text("bingx", "fet_exit1_protective_bound_only.json"),
                        memory)
    rest = fixture_text("bingx", "fet_exit1_rest_order_result.json")

    again, settled = events("bingx", rest, memory)

    assert again == ws_fill  # same state seen through REST: the identical event, a duplicate
    assert settled == {
        "kind": "fill_settled", "event_id": f"bingx:settle:{EXIT1_OID}", "account_id": "acct-1",
        "venue": "bingx", "ts": ws_fill["ts"], "symbol": "FET-USDT",
        "venue_order_id": EXIT1_OID, "realized_pnl": "31.2084", "fee": "2.4264531"}


def test_rest_order_result_alone_books_the_average_price_and_leverage() -> None:
    fill, settled = events("bingx", fixture_text("bingx", "fet_exit1_rest_order_result.json"))
    assert (fill["qty"], fill["price"], fill["fee"], fill["leverage"]) == \
        ("26007", "0.1866", "2.4264531", "3")
    assert fill["event_id"] == f"bingx:fill:{EXIT1_OID}:26007"  # same id as the stream's
    assert settled["realized_pnl"] == "31.2084"


def test_zero_realized_pnl_is_not_a_settlement() -> None:
    (fill,) = events("bingx", c2_frames()[3])  # exit 1 frame: rp "0.00000000"
    assert fill["kind"] == "fill"


def test_resent_frame_reproduces_the_same_event_and_an_older_report_books_nothing() -> None:
    memory = OrderMemory()
    first, second = c2_frames()[:2]
    (fill1,) = events("bingx", first, memory)
    (fill2,) = events("bingx", second, memory)
    assert events("bingx", second, memory) == [fill2]  # re-sent: duplicate, same id and payload
    assert events("bingx", first, memory) == []  # older than what was booked
    assert memory.order(f"bingx|acct-1|{ENTRY_OID}").filled == 202276  # type: ignore[union-attr]
    assert fill1 != fill2


def test_order_first_seen_mid_way_books_its_stated_execution_quantity() -> None:
    frame = fixture_json("bingx", "cost_minus_31.json")
    frame["o"].update({"z": "2.0", "l": "0.75"})
    (fill,) = events("bingx", frame)
    assert fill["qty"] == "0.75"


def test_gzip_compressed_frame_is_read_like_its_text() -> None:
    raw = fixture_text("bingx", "cost_minus_31.json").encode()
    assert events("bingx", gzip.compress(raw)) == events("bingx", raw)


@pytest.mark.parametrize("beat", ["Ping", b"Ping", "Pong"])
def test_heartbeat_is_not_an_event(beat: object) -> None:
    assert events("bingx", beat) == []


def test_rest_error_response_is_rejected_with_the_venue_message() -> None:
    raw = {"code": 109400, "msg": "order not exist", "data": {}}
    assert "109400" in rejection("bingx", raw).reason


def test_order_status_frame_without_fill_books_nothing() -> None:
    frame = fixture_json("bingx", "cost_minus_31.json")
    frame["o"].update({"x": "NEW", "X": "NEW", "z": "0", "l": "0", "n": "0", "ap": "0"})
    assert events("bingx", frame) == []


def test_stream_frames_need_an_account_id() -> None:
    reason = rejection("bingx", fixture_text("bingx", "cost_minus_31.json"), account=None).reason
    assert "account" in reason


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("z", "-5", "negative"),
    ("ap", "NaN", "is not a decimal"),
    ("n", 1.5, "binary float"),
    ("S", "HOLD", "BUY or SELL"),
    ("i", None, "order id"),
    ("z", "1e40", "is not a decimal"),
    ("z", "100000000000000000000", "must be below 1e20"),
    ("ap", "0.0000000000000000001", "decimal places"),
    # issue 13: Python's Decimal() reads these; a ledger must not
    ("z", "1_000", "is not a decimal"),
    ("z", "\u0661\u0662\u0663", "is not a decimal"),
    ("z", "\uff15", "is not a decimal"),
    ("z", "+5", "is not a decimal"),
    ("z", " 5 ", "is not a decimal"),
])
def test_untrustworthy_order_fields_are_rejected_with_a_reason(
        field: str, value: object, needle: str) -> None:
    frame = fixture_json("bingx", "cost_minus_31.json")
    frame["o"][field] = value
    assert needle in rejection("bingx", frame).reason


def test_rejected_frame_leaves_the_memory_untouched() -> None:
    memory = OrderMemory()
    first, second = c2_frames()[:2]
    events("bingx", first, memory)
    before = memory.to_json()
    bad = json.loads(second)
    bad["o"]["ap"] = "-1"
    rejection("bingx", bad, memory)
    assert memory.to_json() == before


def test_place_order_acknowledgement_books_nothing() -> None:
    ack = {"code": 0, "msg": "", "data": {"order": {
        "symbol": "FET-USDT", "orderId": 1899412985126522880, "side": "BUY",
        "positionSide": "SHORT", "type": "MARKET", "clientOrderId": "fet-exit-1",
        "workingType": "MARK_PRICE"}}}
    assert events("bingx", ack) == []


def test_rest_order_history_page_books_each_order_once() -> None:
    order = fixture_json("bingx", "fet_exit1_rest_order_result.json")["data"]["order"]
    page = {"code": 0, "msg": "", "data": {"orders": [order, order]}}
    fill, settled, again, settled_again = events("bingx", page)
    assert (again, settled_again) == (fill, settled)


def test_partially_filled_then_canceled_exit_still_reports_its_realized_pnl() -> None:
    frame = fixture_json("bingx", "fet_exit1_protective_bound_only.json")
    frame["o"].update({"X": "CANCELED", "x": "CANCELED", "rp": "12.0000"})
    fill, settled = events("bingx", frame)
    assert (settled["kind"], settled["realized_pnl"]) == ("fill_settled", "12")


# issue 13: cumulative figures that go down ------------------------------------------------


def _order_frames(*steps: tuple[str, str]) -> list[dict]:
    """ORDER_TRADE_UPDATE frames of one order, each (z cumulative qty, n cumulative fee)."""
    frames = []
    for i, (z, n) in enumerate(steps):
        frame = fixture_json("bingx", "cost_minus_31.json")
        frame["o"].update({"z": z, "n": n, "l": "0", "X": "PARTIALLY_FILLED",
                           "T": 1741789799870 + i})
        frames.append(frame)
    return frames


def test_a_cumulative_fee_that_falls_is_booked_as_this_fills_fee_with_an_anomaly() -> None:
    """Observed: fees -31 then -1.1 of one order booked 31 and -29.9 (a taker fee as a rebate)."""
    memory = OrderMemory()
    first, second = _order_frames(("0.5", "-31"), ("0.75", "-1.1"))
    result1 = normalize_payload("bingx", first, memory, "acct-1")
    result2 = normalize_payload("bingx", second, memory, "acct-1")
    assert not isinstance(result1, Rejection) and not isinstance(result2, Rejection)
    (fill1,), (fill2,) = result1, result2
    assert (fill1["qty"], fill1["fee"]) == ("0.5", "31")
    assert (fill2["qty"], fill2["fee"]) == ("0.25", "1.1")  # never -29.9
    assert result1.anomalies == ()
    (anomaly,) = result2.anomalies
    assert anomaly.code == "CUMULATIVE_FEE_DECREASED" and anomaly.event_id == fill2["event_id"]
    assert "from 31 to 1.1" in anomaly.detail
    progress = memory.order(f"bingx|acct-1|{1899800123456789504}")
    assert progress is not None and progress.fee == Decimal("32.1")
    # the order's next report, cumulative again, books the increment from 32.1
    (third,) = _order_frames(("1", "-33"))
    (fill3,) = events("bingx", third, memory)
    assert fill3["fee"] == "0.9"


def test_a_growing_rebate_is_not_a_decrease() -> None:
    memory = OrderMemory()
    first, second = _order_frames(("0.5", "4.5"), ("0.75", "6"))
    result = [normalize_payload("bingx", f, memory, "acct-1") for f in (first, second)]
    assert [r[0]["fee"] for r in result] == ["-4.5", "-1.5"]  # type: ignore[index]
    assert all(r.anomalies == () for r in result)  # type: ignore[union-attr]


def test_a_cumulative_quantity_that_falls_books_nothing_and_says_so() -> None:
    memory = OrderMemory()
    newer, older = _order_frames(("0.75", "-31"), ("0.5", "-20"))
    (fill,) = events("bingx", newer, memory)
    result = normalize_payload("bingx", older, memory, "acct-1")
    assert not isinstance(result, Rejection)
    assert list(result) == []
    (anomaly,) = result.anomalies
    assert anomaly.code == "CUMULATIVE_QTY_DECREASED"
    assert "0.5 is below the 0.75 already booked" in anomaly.detail


def test_normalize_cli_reports_the_anomaly_with_its_line(tmp_path, capsys) -> None:
    from streams.gateways.cli import normalize_main

    raw = tmp_path / "raw.jsonl"
    raw.write_text("\n".join(json.dumps(f, default=str) for f in
                             _order_frames(("0.5", "-31"), ("0.75", "-1.1"))) + "\n")
    assert normalize_main(["--venue", "bingx", "--account", "acct-1", str(raw)]) == 0
    captured = capsys.readouterr()
    assert [json.loads(x)["fee"] for x in captured.out.splitlines()] == ["31", "1.1"]
    assert f"{raw}:2: anomaly CUMULATIVE_FEE_DECREASED" in captured.err
