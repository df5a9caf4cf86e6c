"""The venue_events archive holds only events the ledger can book."""

import pytest

from sinks.exceptions import RowRejected
from sinks.rows import build_row
from streams.codec import Codec, fold_dict_to_venue_record

BASE = {"kind": "fill", "event_id": "f1", "account_id": "a1", "venue": "x",
        "ts": "2024-01-01T00:00:00Z", "symbol": "BTCUSDT", "side": "BUY", "price": "100"}


def _decoded(**fields):
    codec = Codec.load()
    return codec.decode(codec.encode("VenueEvent", fold_dict_to_venue_record({**BASE, **fields})))


def test_a_bookable_event_becomes_an_archive_row():
    name, rec = _decoded(qty="1.5")
    row = build_row("venue_events", name, rec)
    assert row[0] == "a1" and row[1] == "f1"


def test_an_event_the_ledger_refuses_is_rejected_with_the_ledger_reason():
    name, rec = _decoded(qty="-1")
    with pytest.raises(RowRejected, match="invalid venue event.*qty"):
        build_row("venue_events", name, rec)


# -- the archive's text is the event's canonical JSON, checked as the offline fold reads it --

import datetime as dt  # noqa: E402
from decimal import Decimal  # noqa: E402

from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sinks.rows import canonical_json  # noqa: E402
from streams.codec import venue_record_to_fold_dict  # noqa: E402
from streams.codec.venue import NS  # noqa: E402
from streams.exceptions import InvalidEvent  # noqa: E402
from streams.ledger import parse_event  # noqa: E402

CODEC = Codec.load()
# Any decimal(38,18) the wire carries: zeros of every scale, signs, the extremes.
WIRE_AMOUNTS = st.one_of(
    st.decimals(min_value=Decimal("-99999999999999999999.999999999999999999"),
                max_value=Decimal("99999999999999999999.999999999999999999"), places=18),
    st.sampled_from([Decimal("0"), Decimal("-0"), Decimal("0E-18"), Decimal("1"),
                     Decimal("-1.5"), Decimal("0.000000000000000001"), Decimal("100")]))
# Times the wire carries, inside and outside the stores' range (1900..2299).
WIRE_TIMES = st.datetimes(min_value=dt.datetime(1800, 1, 1), max_value=dt.datetime(2400, 1, 1),
                          timezones=st.just(dt.UTC))
TEXTS = st.sampled_from(["", "BTCUSDT", "BUY", "SELL", "LONG", "BOTH", "é\"\\x", "futures",
                         "spot", "deposit", "USD"])


@st.composite
def venue_record(draw):
    kind = draw(st.sampled_from(["Fill", "FillSettled", "Funding", "BalanceUpdate",
                                 "PositionSnapshot", "CashFlow", "AccountAnchor"]))
    a = WIRE_AMOUNTS
    if kind == "Fill":
        payload = {"symbol": draw(TEXTS), "side": draw(st.sampled_from(["BUY", "SELL"])), "qty": draw(a), "price": draw(a),
                   "fee": draw(a), "fee_asset": draw(TEXTS), "position_side": draw(TEXTS),
                   "leverage": draw(a), "venue_order_id": draw(TEXTS),
                   "client_order_id": draw(TEXTS), "strategy_tag": draw(TEXTS),
                   "market": draw(TEXTS)}
    elif kind == "FillSettled":
        payload = {"symbol": draw(TEXTS), "venue_order_id": draw(TEXTS),
                   "fill_event_id": draw(TEXTS), "realized_pnl": draw(a), "fee": draw(a)}
    elif kind == "Funding":
        payload = {"symbol": draw(TEXTS), "amount": draw(a)}
    elif kind == "CashFlow":
        payload = {"asset": draw(TEXTS), "amount": draw(a),
                   "flow": draw(st.sampled_from(["deposit", "withdrawal"]))}
    elif kind == "AccountAnchor":
        payload = {"capital": draw(a)}
    elif kind == "BalanceUpdate":
        payload = {"wallet_balance": draw(st.one_of(st.none(), a)), "available_margin": draw(a),
                   "used_margin": draw(a), "maint_margin": draw(a),
                   "assets": [{"asset": draw(TEXTS), "free": draw(a), "locked": draw(a)}
                              for _ in range(draw(st.integers(0, 2)))]}
    else:
        payload = {"positions": [
            {"symbol": draw(TEXTS), "position_side": draw(TEXTS), "qty": draw(a),
             "entry_price": draw(a), "mark_price": draw(a), "leverage": draw(a)}
            for _ in range(draw(st.integers(0, 3)))]}
    record = {"event_id": draw(st.sampled_from(["e1", "e-2"])), "account_id": "acc-1",
              "venue": draw(TEXTS), "ts_exchange": draw(WIRE_TIMES), "ts_ingest": draw(WIRE_TIMES),
              "payload": (NS + kind, payload)}
    # Through the wire: the decoded record holds what the sink gets (scale 18, shared objects).
    return CODEC.decode(CODEC.encode("VenueEvent", record))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(venue_record())
def test_the_archive_row_keeps_the_canonical_json_and_the_ledgers_verdict(decoded):
    """The row checks the event as its FOLD_FORMAT text (what the offline fold reads) and
    keeps that text: the same verdict as ``parse_event`` on the decoded event, and the
    same JSON as ``canonical_json`` of it."""
    name, rec = decoded
    fold = venue_record_to_fold_dict(rec)
    try:
        parse_event(fold)
        refused = None
    except InvalidEvent as exc:
        refused = exc
    event("refused" if refused is not None else "archived")
    if refused is not None:
        with pytest.raises(RowRejected, match="invalid venue event"):
            build_row("venue_events", name, rec)
        return
    row = build_row("venue_events", name, rec)
    assert row[-1] == canonical_json(fold)
