"""``Producer.encode_event``: the same rules as the fold before anything is sent (issue 13)."""

from __future__ import annotations

import pytest

from streams import produce
from streams.codec import Codec
from streams.exceptions import InvalidEvent
from streams.ledger import grammar

FILL = {"kind": "fill", "event_id": "f1", "account_id": "acc", "venue": "test",
        "ts": "2026-01-05T09:00:00Z", "symbol": "FET-USDT", "side": "BUY", "qty": "1",
        "price": "0.1878"}


@pytest.fixture(scope="module")
def producer() -> produce.Producer:
    p = object.__new__(produce.Producer)  # no Kafka client: only the encoding is tested
    p.codec = Codec.load()
    return p


def test_a_valid_event_is_encoded_keyed_by_account_and_a_mark_by_symbol(producer):
    topic, key, value, _ = producer.encode_event(FILL)
    assert (topic, key) == ("venue.events", b"acc")
    assert producer.codec.decode(value)[1]["event_id"] == "f1"
    mark = {"kind": "mark", "ts": "2026-01-05T09:00:00Z", "symbol": "FET-USDT", "price": "0.2"}
    assert producer.encode_event(mark)[:2] == ("market.marks", b"FET-USDT")


@pytest.mark.parametrize(("change", "reason"), [
    ({"qty": "1_000"}, "is not a decimal"),
    ({"qty": "-1"}, "must be > 0"),
    ({"ts": "9999-12-31T23:59:59Z"}, "is outside"),
    ({"account_id": "a\ud800"}, "not valid UTF-8"),
])
def test_an_event_the_fold_refuses_is_never_sent(producer, change, reason):
    with pytest.raises(InvalidEvent, match=reason):
        producer.encode_event({**FILL, **change})


def test_a_record_over_the_broker_limit_is_refused_before_sending(producer, monkeypatch):
    monkeypatch.setattr(grammar, "MAX_RECORD_BYTES", 60)
    with pytest.raises(InvalidEvent, match="exceeds 60"):
        producer.encode_event(FILL)


def test_a_gateway_anomaly_goes_to_ledger_anomalies_as_an_anomaly_record(producer):
    from streams.gateways import GatewayAnomaly

    anomaly = GatewayAnomaly("bingx:fill:1:0.75", "acct-1", "CUMULATIVE_FEE_DECREASED",
                             "order 1: commission went from 31 to 1.1", "2025-03-12T14:29:59Z")
    topic, key, value, _ = produce._anomaly_send(producer, anomaly)
    assert (topic, key) == ("ledger.anomalies", b"acct-1")
    name, record = producer.codec.decode(value)
    assert name == "Anomaly"
    assert record["event_id"] == "bingx:fill:1:0.75:CUMULATIVE_FEE_DECREASED"
    assert (record["source_event_id"], record["code"], record["severity"]) == (
        "bingx:fill:1:0.75", "CUMULATIVE_FEE_DECREASED", "WARN")
