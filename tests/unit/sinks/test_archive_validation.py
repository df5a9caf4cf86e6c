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
