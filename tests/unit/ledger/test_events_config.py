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
    ({"qty": "NaN"}, "qty: 'NaN' is not finite"),
    ({"price": "Infinity"}, "price: 'Infinity' is not finite"),
    ({"qty": "-1"}, "qty: must be > 0, got '-1'"),
    ({"qty": "0"}, "qty: must be > 0, got '0'"),
    ({"price": "-0.1"}, "price: must not be negative, got '-0.1'"),
    ({"price": "0.1234567890123456789"}, "price: '0.1234567890123456789' has more than 18"),
    ({"price": "1.5E-19"}, "has more than 18 decimal places"),
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
    assert (cfg.dedup_window, cfg.outbox_events, cfg.max_closed_trades) == (1024, 8, 100)
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
