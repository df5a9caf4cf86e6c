"""parse_event validation, event_to_dict round trip, LedgerConfig loading, state codec errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from streams.exceptions import ConfigError, InvalidEvent, TwinledgerError
from streams.ledger import (
    LedgerConfig,
    StateDecodeError,
    decode_state,
    encode_state,
    event_to_dict,
    load_ledger_config,
    parse_event,
)
from streams.ledger.synth import generate_events

from ._helpers import Events

BASE = Events().fill("BUY", 1, "100", "X")


@pytest.mark.parametrize(("change", "reason"), [
    ({"kind": "wire"}, "unknown kind 'wire'"),
    ({"kind": None}, "missing required field 'kind'"),
    ({"event_id": ""}, "missing required field 'event_id'"),
    ({"symbol": None}, "missing required field 'symbol'"),
    ({"qty": "NaN"}, "qty: 'NaN' is not a decimal"),
    ({"price": "Infinity"}, "price: 'Infinity' is not a decimal"),
    ({"qty": Decimal("NaN")}, "qty: Decimal('NaN') is not a decimal (not finite)"),
    ({"qty": "-1"}, "qty: must be > 0, got '-1'"),
    ({"qty": "0"}, "qty: must be > 0, got '0'"),
    ({"price": "-0.1"}, "price: must not be negative, got '-0.1'"),
    ({"price": "0.1234567890123456789"}, "price: '0.1234567890123456789' has more than 18"),
    ({"price": "1.5E-19"}, "price: '1.5E-19' is not a decimal"),
    ({"qty": "100000000000000000000"}, "must be below 1e20"),
    ({"qty": 0.5}, "a float is not an amount"),
    ({"qty": True}, "expected a decimal string, got bool"),
    ({"qty": "abc"}, "qty: 'abc' is not a decimal"),
    ({"side": "HOLD"}, "side: 'HOLD' is not one of BUY/SELL"),
    ({"position_side": "UP"}, "position_side: 'UP' is not one of BOTH/LONG/SHORT"),
    ({"ts": "2026-01-05T09:00:00"}, "has no time zone"),
    ({"ts": "yesterday"}, "is not an ISO-8601 timestamp"),
    ({"ts": None}, "missing required field 'ts'"),
    ({"leverage": "0"}, "leverage: must be > 0"),
    # issue 13: what Python's Decimal() accepts and a ledger must not
    ({"qty": "1_000"}, "qty: '1_000' is not a decimal"),
    ({"qty": "\u0661\u0662\u0663"}, "is not a decimal"),  # Arabic-Indic 123
    ({"qty": "\uff15"}, "is not a decimal"),  # full-width 5
    ({"qty": "+5"}, "qty: '+5' is not a decimal"),
    ({"qty": " 5 "}, "qty: ' 5 ' is not a decimal"),
    ({"qty": "5 "}, "qty: '5 ' is not a decimal"),
    ({"qty": "1e5"}, "qty: '1e5' is not a decimal"),
    ({"qty": "1E+3"}, "qty: '1E+3' is not a decimal"),
    ({"qty": ".5"}, "qty: '.5' is not a decimal"),
    ({"qty": "5."}, "qty: '5.' is not a decimal"),
    ({"qty": "-inf"}, "is not a decimal"),
    ({"price": 10**20}, "must be below 1e20"),
    ({"price": Decimal("1E+20")}, "must be below 1e20"),
    ({"ts": "0001-01-01T00:00:00Z"}, "is outside 1900-01-01T00:00:00Z .. 2299-12-31T23:59:59Z"),
    ({"ts": "9999-12-31T23:59:59Z"}, "is outside 1900-01-01T00:00:00Z .. 2299-12-31T23:59:59Z"),
    ({"ts": "1899-12-31T23:59:59.999999Z"}, "is outside"),
    ({"ts": "2299-12-31T23:59:59.000001Z"}, "is outside"),
    ({"ts": "2026-01-05 09:00:00Z"}, "is not an ISO-8601 timestamp"),
    ({"ts": "20260105T090000Z"}, "is not an ISO-8601 timestamp"),
    ({"ts": "2026-01-05T09:00:00.1234567Z"}, "is not an ISO-8601 timestamp"),
    ({"ts": "\uff12026-01-05T09:00:00Z"}, "is not an ISO-8601 timestamp"),
    ({"ts": "2026-02-30T09:00:00Z"}, "is not a valid time"),
    ({"event_id": "x" * 257}, "event_id: longer than 256 characters"),
    ({"account_id": "a\ud800"}, "account_id: not valid UTF-8 text"),
    ({"symbol": "FET\x00USDT"}, "symbol: holds a control character"),
])
def test_parse_event_rejects_with_a_clear_reason(change, reason):
    with pytest.raises(InvalidEvent) as exc:
        parse_event({**BASE, **change})
    assert reason in str(exc.value)
    assert isinstance(exc.value, TwinledgerError)


def test_parse_event_accepts_str_int_decimal_and_aware_datetimes():
    ts = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    ev = parse_event({**BASE, "qty": 3, "price": Decimal("0.1878"), "ts": ts,
                      "ts_ingest": "2026-01-05T10:00:00.123456Z"})
    assert ev.qty == 3 and ev.price == Decimal("0.1878") and ev.ts == ts
    assert ev.ts_ingest is not None and ev.ts_ingest.microsecond == 123456
    with pytest.raises(InvalidEvent):
        parse_event({**BASE, "ts": datetime(2026, 1, 5)})  # noqa: DTZ001 - naive on purpose


def test_the_grammar_accepts_its_own_edges():
    """The largest and smallest values the wire carries, and the ends of the time range."""
    ev = parse_event({**BASE, "qty": "99999999999999999999.999999999999999999",
                      "price": "0.000000000000000001", "fee": "-7",
                      "ts": "1900-01-01T00:00:00Z", "ts_ingest": "2299-12-31T23:59:59Z",
                      "event_id": "\u00e9" * 256})
    assert ev.qty == Decimal("99999999999999999999.999999999999999999")
    assert ev.price == Decimal("1E-18") and ev.fee == -7
    assert ev.ts == datetime(1900, 1, 1, tzinfo=UTC)
    assert parse_event({**BASE, "ts": "2026-01-05T10:00:00+02:00"}).ts == \
        datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(("flow", "amount", "ok"), [
    ("deposit", "5", True), ("deposit", "-5", False), ("reward", "-0.1", False),
    ("reward", "0.1", True), ("withdrawal", "-5", True), ("withdrawal", "5", False),
    ("adjustment", "-5", True), ("adjustment", "5", True),
])
def test_cash_flow_signs_follow_the_flow(flow, amount, ok):
    """Issue 13: a deposit of -5 was booked; positive = inflow must agree with the flow."""
    d = {"kind": "cash_flow", "event_id": "c", "account_id": "a", "venue": "kraken",
         "ts": "2026-01-05T09:00:00Z", "asset": "USD", "amount": amount, "flow": flow}
    if ok:
        assert parse_event(d).amount == Decimal(amount)
    else:
        with pytest.raises(InvalidEvent, match=f"a {flow} is an"):
            parse_event(d)


def test_a_list_too_large_for_one_broker_record_is_refused():
    d = {"kind": "balance", "event_id": "b", "account_id": "a", "venue": "kraken",
         "ts": "2026-01-05T09:00:00Z", "wallet_balance": None,
         "assets": {"\u00e9" * 250 + f"{i:04d}": {"free": "1"} for i in range(1900)}}
    with pytest.raises(InvalidEvent, match="event too large"):
        parse_event(d)
    d["assets"] = {f"A{i}": {"free": "1"} for i in range(1500)}
    assert len(parse_event(d).assets) == 1500  # type: ignore[union-attr]


def test_event_to_dict_round_trips_every_kind():
    dicts = generate_events(400, 4, seed=9)
    dicts.append({"kind": "cash_flow", "event_id": "c", "account_id": "a", "ts":
                  "2026-01-05T09:00:00.5Z", "asset": "USDT", "amount": "-5", "flow": "withdrawal"})
    dicts.append({"kind": "balance", "event_id": "b", "account_id": "a", "ts":
                  "2026-01-05T09:00:00Z", "wallet_balance": None,
                  "assets": {"BTC": {"free": "1", "locked": "0.5"}}})
    kinds = set()
    for d in dicts:
        ev = parse_event(d)
        kinds.add(ev.kind)
        canon = event_to_dict(ev)
        assert parse_event(canon) == ev
        assert json.loads(json.dumps(canon)) == canon  # plain JSON, amounts as strings
    assert kinds == {"fill", "fill_settled", "funding", "balance", "positions", "cash_flow",
                     "anchor", "mark"}


def test_config_defaults_and_documented_fields():
    cfg = load_ledger_config(None)
    assert cfg == LedgerConfig()
    assert (cfg.dedup_window, cfg.max_closed_trades) == (1024, 100)
    doc = LedgerConfig.__doc__ or ""
    for name in LedgerConfig.__dataclass_fields__:
        assert name in doc, f"{name} is not documented"


def test_config_from_yaml_and_json(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("r1_pending_fee_bound: 2.5\nlot_steps:\n  BTC-USDT: '0.001'\n"
                 "max_closed_trades: null\n")
    cfg = load_ledger_config(str(y))
    assert cfg.r1_pending_fee_bound == Decimal("2.5") and cfg.max_closed_trades is None
    assert cfg.lot_step("BTC-USDT") == Decimal("0.001") and cfg.lot_step("X") == 0
    j = tmp_path / "c.json"
    j.write_text('{"settle_tolerance": 0.1, "dedup_window": 10}')
    cfg = load_ledger_config(str(j))
    assert cfg.settle_tolerance == Decimal("0.1") and cfg.dedup_window == 10


@pytest.mark.parametrize(("text", "reason"), [
    ("bogus: 1\n", "unknown ledger config key(s): bogus"),
    ("r1_epsilon: abc\n", "r1_epsilon"),
    ("r1_epsilon: 10\n", "r1_epsilon must not exceed r1_pending_fee_bound"),
    ("dedup_window: 0\n", "dedup_window"),
    ("- 1\n", "expected a mapping"),
    ("r2_epsilon: -1\n", "r2_epsilon"),
])
def test_config_errors(tmp_path, text, reason):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_ledger_config(str(p))
    assert reason in str(exc.value)


def test_decode_state_refuses_garbage_and_never_unpickles():
    with pytest.raises(StateDecodeError):
        decode_state(b"\x80\x04\x95pickle")
    with pytest.raises(StateDecodeError):
        decode_state(b"TLS1\n[1,2")
    e = Events()
    from streams.ledger import apply_event

    st = apply_event(None, parse_event(e.fill("BUY", 1, 100, "X")), {}, LedgerConfig()).state
    blob = encode_state(st)
    assert decode_state(blob) is not st and encode_state(decode_state(blob)) == blob
    with pytest.raises(StateDecodeError):
        decode_state(blob[:-20])


def test_an_older_config_with_outbox_events_is_accepted_and_the_key_ignored(tmp_path):
    y = tmp_path / "old.yaml"
    y.write_text("outbox_events: 8\ndedup_window: 16\n")
    assert load_ledger_config(str(y)) == LedgerConfig(dedup_window=16)
