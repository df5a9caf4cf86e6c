"""JSON shapes and request parsing of the read-only endpoint, without a server or a database."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from sinks.http import _query_params, json_depth_ok, to_json_value
from sinks.readqueries import ParamError


def test_values_leave_as_exact_strings() -> None:
    assert to_json_value(Decimal("0.000000000000000001")) == "0.000000000000000001"
    # As ClickHouse prints them: no trailing zeros (clickhouse-connect keeps the column scale).
    assert to_json_value(Decimal("-202276.000000000000000000")) == "-202276"
    assert to_json_value(Decimal("242.731200000000000000")) == "242.7312"
    assert to_json_value(dt.datetime(2024, 5, 1, 0, 0, 0, 1, tzinfo=dt.UTC)) == \
        "2024-05-01T00:00:00.000001+00:00"
    assert to_json_value([Decimal("1.5"), {"a": Decimal("2")}]) == ["1.5", {"a": "2"}]


@pytest.mark.parametrize(("body", "ok"), [
    (b'{"name": "counts"}', True),
    (b'{"a": [[[[[[[1]]]]]]]}', True),                 # 8 levels
    (b'{"a": [[[[[[[[1]]]]]]]]}', False),              # 9 levels
    (b"[" * 100_000, False),
    (b'{"s": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', True),  # brackets in a string do not count
    (b'{"s": "\\"[[[[[[[[[[["}', True),
])
def test_json_depth_is_checked_before_parsing(body: bytes, ok: bool) -> None:
    assert json_depth_ok(body) is ok


def test_query_strings_are_strict() -> None:
    assert _query_params("account=a%20b&limit=5") == {"account": "a b", "limit": "5"}
    assert _query_params("") == {}
    for bad in ("limit=1&limit=2", "&".join(f"p{i}=1" for i in range(20)), "a"):
        with pytest.raises(ParamError):
            _query_params(bad)
