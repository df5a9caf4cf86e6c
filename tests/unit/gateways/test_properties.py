"""Property and fuzz tests of every normalizer: never raises, deterministic, stable ids on re-send.

Arbitrary JSON (and arbitrary bytes) either normalizes or comes back as a
Rejection with a reason; mutated real payloads too, and whatever they
normalize to is a valid ledger event. Normalizing twice from the same memory
gives the same events; a re-sent frame gives the same event ids (the ledger
ignores the duplicates).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.exceptions import InvalidEvent
from streams.gateways import VENUES, OrderMemory, Rejection, normalize_payload

from .conftest import FIXTURES

SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

#: Keys the venues use, so generated objects reach past the first "is it a frame" checks.
VENUE_KEYS = ["e", "E", "T", "o", "a", "m", "B", "P", "s", "S", "c", "i", "l", "z", "L", "ap",
              "p", "n", "N", "x", "X", "t", "rp", "ps", "wb", "cw", "bc", "pa", "ep", "code",
              "data", "order", "orders", "orderId", "symbol", "side", "executedQty", "avgPrice",
              "profit", "commission", "status", "updateTime", "error", "result", "trades",
              "ledger", "pair", "time", "type", "vol", "price", "fee", "amount", "asset",
              "sub_type", "balance", "order_execution_records", "id", "execution_price",
              "filled_base_qty", "created_at", "free", "locked", "received_at", "frame",
              "subtype", "margin", "userref", "account_id", "commission_unit"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**25), max_value=10**25),
    st.decimals(allow_nan=False, allow_infinity=False, places=None).map(str),
    st.sampled_from(["0", "-31", "0.1878", "NaN", "Infinity", "1e999", "BUY", "SELL",
                     "ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE", "TRADE", "FILLED", "USDT",
                     "FET-USDT", "XXBTZUSD", "balance", "order_info", "fill", "deposit",
                     "1741680902311", "2025-03-11T08:15:02Z", ""]),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(VENUE_KEYS), st.text(max_size=4)),
                        children, max_size=6),
    ),
    max_leaves=30,
)


def _as_text(value: Any) -> str:
    return json.dumps(value, default=str)


def _check(result: object, raw: object) -> None:
    if isinstance(result, Rejection):
        assert isinstance(result.reason, str) and result.reason.strip()
        assert result.raw == (bytes(raw) if isinstance(raw, bytes) else raw) or \
            not isinstance(raw, bytes | str)
    else:
        assert isinstance(result, list)
        for event in result:
            _assert_valid_event(event)


def _assert_valid_event(event: dict[str, Any]) -> None:
    from streams.codec import fold_dict_to_venue_record
    from streams.ledger import parse_event

    try:
        parse_event(event)
        if event["kind"] != "mark":
            fold_dict_to_venue_record(event)
    except InvalidEvent as exc:  # pragma: no cover - the failure message is the point
        pytest.fail(f"normalizer emitted an invalid event {event}: {exc}")


@pytest.mark.parametrize("venue", VENUES)
@SETTINGS
@given(value=json_values)
def test_arbitrary_json_never_raises_it_normalizes_or_rejects(venue: str, value: Any) -> None:
    raw = _as_text(value)
    _check(normalize_payload(venue, raw, OrderMemory(), "acct-1"), raw)
    _check(normalize_payload(venue, value, OrderMemory(), None), value)


@pytest.mark.parametrize("venue", VENUES)
@SETTINGS
@given(raw=st.one_of(st.binary(max_size=64), st.text(max_size=64)))
def test_arbitrary_bytes_and_text_never_raise(venue: str, raw: bytes | str) -> None:
    result = normalize_payload(venue, raw, OrderMemory(), "acct-1")
    _check(result, raw)


def _fixture_payloads(venue: str) -> list[Any]:
    out: list[Any] = []
    for path in sorted((FIXTURES / venue).iterdir()):
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            out += [json.loads(line, parse_float=Decimal) for line in text.splitlines() if line]
        else:
            out.append(json.loads(text, parse_float=Decimal))
    return out


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*prefix, i))
    return found


def _mutate(payload: Any, path: tuple[Any, ...], replacement: Any, delete: bool) -> Any:
    copy = json.loads(json.dumps(payload, default=str), parse_float=Decimal)
    if not path:
        return replacement
    parent = copy
    for step in path[:-1]:
        parent = parent[step]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return copy


@pytest.mark.parametrize("venue", VENUES)
@SETTINGS
@given(data=st.data())
def test_mutated_real_payloads_never_raise_and_emit_only_valid_events(
        venue: str, data: st.DataObject) -> None:
    payloads = _fixture_payloads(venue)
    payload = data.draw(st.sampled_from(payloads), label="payload")
    path = data.draw(st.sampled_from(_paths(payload)), label="path")
    replacement = data.draw(json_values, label="replacement")
    mutated = _mutate(payload, path, replacement, data.draw(st.booleans(), label="delete"))
    raw = _as_text(mutated)
    _check(normalize_payload(venue, raw, OrderMemory(), "acct-1"), raw)


def _stream(venue: str) -> list[str]:
    lines: list[str] = []
    for path in sorted((FIXTURES / venue).glob("*.jsonl")):
        lines += [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    return lines


@pytest.mark.parametrize("venue", VENUES)
def test_normalizing_is_deterministic_given_the_same_memory(venue: str) -> None:
    first, second = OrderMemory(), OrderMemory()
    for line in _stream(venue):
        snapshot = OrderMemory.from_json(first.to_json())
        a = normalize_payload(venue, line, first, "acct-1")
        b = normalize_payload(venue, line, second, "acct-1")
        c = normalize_payload(venue, line, snapshot, "acct-1")
        assert a == b == c
    assert first.to_json() == second.to_json()


@pytest.mark.parametrize("venue", VENUES)
def test_resent_frames_produce_only_duplicates_with_the_same_ids_and_payloads(venue: str) -> None:
    memory = OrderMemory()
    seen: dict[str, dict[str, Any]] = {}
    for line in _stream(venue):
        result = normalize_payload(venue, line, memory, "acct-1")
        assert isinstance(result, list), result
        for event in result:
            seen[event["event_id"]] = event
        resent = normalize_payload(venue, line, memory, "acct-1")
        assert isinstance(resent, list)
        for event in resent:
            assert event == seen[event["event_id"]], "a re-send must be an exact duplicate"


@pytest.mark.parametrize("venue", VENUES)
def test_every_fixture_event_survives_kafka_avro_as_the_same_ledger_fact(venue: str) -> None:
    from streams.codec import Codec, fold_dict_to_venue_record, venue_record_to_fold_dict
    from streams.ledger.events import parse_event, payload_digest

    codec = Codec.load()
    memory = OrderMemory()
    count = 0
    for line in _stream(venue):
        result = normalize_payload(venue, line, memory, "acct-1")
        assert isinstance(result, list), result
        for event in result:
            _assert_valid_event(event)
            name, record = codec.decode(codec.encode("VenueEvent",
                                                     fold_dict_to_venue_record(event)))
            from_kafka = parse_event(venue_record_to_fold_dict(record))
            assert payload_digest(from_kafka) == payload_digest(parse_event(event)), event
            count += 1
    assert count > 0


@pytest.mark.parametrize("venue", VENUES)
def test_event_ids_are_unique_within_a_stream(venue: str) -> None:
    memory = OrderMemory()
    ids: list[str] = []
    for line in _stream(venue):
        result = normalize_payload(venue, line, memory, "acct-1")
        assert isinstance(result, list), result
        ids += [e["event_id"] for e in result]
    # The one legitimate repeat: BingX REST re-stating a fill the stream already booked.
    repeated = {i for i in ids if ids.count(i) > 1}
    assert repeated <= {"bingx:fill:1899412985126522880:26007"}
