"""Records not delivered: the error says why, in the Kafka client's own words."""

from __future__ import annotations

import gc
import socket
import weakref

import pytest

from streams import produce
from streams.config import load_settings
from streams.exceptions import TwinledgerError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # free again once closed: nothing listens there


def test_undelivered_records_name_the_clients_last_errors():
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_closed_port()}"})
    producer = produce.Producer(settings)
    producer.send_event({"kind": "fill", "event_id": "f1", "account_id": "acc",
                         "venue": "test", "ts": "2026-01-05T09:00:00Z",
                         "symbol": "FET-USDT", "side": "BUY", "qty": "1", "price": "0.1878"})
    try:
        with pytest.raises(TwinledgerError) as err:
            producer.flush(timeout=3.0)
        text = str(err.value)
    finally:
        producer._producer.purge()
        producer._producer.flush(1)  # serves the purged records' delivery reports
        alive = weakref.ref(producer)
        gc.disable()
        try:
            err = producer = None  # the traceback holds the producer too
            # Freed with its client as soon as it is dropped, not at some later garbage
            # collection: no thread left retrying a stopped broker meanwhile.
            freed = alive() is None
        finally:
            gc.enable()
    assert freed
    assert text.startswith("1 records not delivered within 3.0s")
    assert "the Kafka client's last errors:" in text and "127.0.0.1" in text
