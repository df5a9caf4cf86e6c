"""JSON shapes of the read-only endpoint, without a server or a database."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from sinks.http import _parse_body, to_json_value


def test_values_leave_as_exact_strings() -> None:
    assert to_json_value(Decimal("0.000000000000000001")) == "0.000000000000000001"
    # As ClickHouse prints them: no trailing zeros (clickhouse-connect keeps the column scale).
    assert to_json_value(Decimal("-202276.000000000000000000")) == "-202276"
    assert to_json_value(Decimal("242.731200000000000000")) == "242.7312"
    assert to_json_value(dt.datetime(2024, 5, 1, 0, 0, 0, 1, tzinfo=dt.UTC)) == \
        "2024-05-01T00:00:00.000001+00:00"
    assert to_json_value([Decimal("1.5"), {"a": Decimal("2")}]) == ["1.5", {"a": "2"}]


def test_body_as_json_with_params_or_as_plain_sql() -> None:
    assert _parse_body(b'{"sql": "SELECT 1", "params": {"a": "x"}}', "application/json") == \
        ("SELECT 1", {"a": "x"})
    assert _parse_body(b"SELECT 2", "text/plain") == ("SELECT 2", {})


@pytest.mark.parametrize("body", [b'{"query": "SELECT 1"}', b'{"sql": "SELECT 1", "params": [1]}',
                                  b"[1, 2]"])
def test_malformed_json_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        _parse_body(body, "application/json")
