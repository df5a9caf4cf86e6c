"""A process started while the broker restarts waits for it (``kafka_admin.until_reachable``)."""

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.infra.kafka_admin import until_reachable


def _failing(codes):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= len(codes):
            raise KafkaException(KafkaError(codes[len(calls) - 1]))
        return "done"
    return fn, calls


def test_transport_failures_are_tried_again_until_the_broker_answers():
    fn, calls = _failing([KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
                          KafkaError._TIMED_OUT])
    slept = []
    assert until_reachable("test", fn, wait_s=60, sleep=slept.append) == "done"
    assert len(calls) == 4 and slept == [0.5, 1.0, 2.0]  # backing off


def test_any_other_error_is_raised_at_once():
    fn, calls = _failing([KafkaError.TOPIC_AUTHORIZATION_FAILED])
    with pytest.raises(KafkaException):
        until_reachable("test", fn, wait_s=60, sleep=lambda s: None)
    assert len(calls) == 1


def test_the_last_failure_is_raised_when_the_wait_is_over():
    fn, calls = _failing([KafkaError._TRANSPORT] * 100)
    with pytest.raises(KafkaException):
        until_reachable("test", fn, wait_s=0.0, sleep=lambda s: None)
    assert len(calls) == 1
