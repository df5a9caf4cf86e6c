"""What the backend lets through: stored values, bound parameters, insert tokens, DDL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from clickhouse_connect.driver.binding import format_bind_value
from hypothesis import given
from hypothesis import strategies as st

from sinks.backend import _bind, _check_rows, check_token
from sinks.ddl import DEDUP_WINDOW, TABLES, create_statements, ident
from sinks.exceptions import BackendError, DDLError


@pytest.mark.parametrize("row", [
    ["a", 1.5], ["a", Decimal("NaN")], ["a", Decimal("Infinity")], [dt.datetime(2024, 1, 1)],
])
def test_rows_with_floats_non_finite_decimals_or_naive_times_are_refused(row: list[object]
                                                                         ) -> None:
    with pytest.raises(BackendError):
        _check_rows([["ok", Decimal("1")], row])


def test_rows_of_what_the_sink_stores_pass() -> None:
    _check_rows([["a", None, True, -7, Decimal("0.000000000000000001"), b"\x00\xff",
                  dt.datetime(2024, 5, 1, tzinfo=dt.UTC), ["x"]]])


def test_parameters_are_bound_in_utc_and_never_as_floats() -> None:
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert _bind(dt.datetime(2024, 5, 1, 14, 0, 0, 1, tzinfo=plus2)) == \
        dt.datetime(2024, 5, 1, 12, 0, 0, 1)
    assert format_bind_value(_bind(["x", "y'z"])) == "['x', 'y\\'z']"
    assert _bind([1, "a"]) == [1, "a"]  # not all strings: clickhouse-connect binds it
    with pytest.raises(BackendError):
        _bind(1.5)
    with pytest.raises(BackendError):
        _bind(dt.datetime(2024, 1, 1))


@given(st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=12) |
                st.sampled_from(["\\", "'", "`", "\t", "\n", "\\'", "\r\x00", "\\n", "ü'ß"]),
                max_size=8))
def test_a_list_of_strings_is_bound_to_the_text_clickhouse_connect_makes(
        values: list[str]) -> None:
    """The sink's own binding of Array(String) parameters is the client's, character for
    character: quotes, backslashes, backticks, tabs, newlines, any Unicode."""
    assert format_bind_value(_bind(values)) == format_bind_value(values)
    assert format_bind_value([_bind(values)]) == format_bind_value([values])  # nested
    assert format_bind_value(_bind(tuple(values))) == format_bind_value(list(values))


@pytest.mark.parametrize("token", ["venue.events-0-10-19", "t_x.y-12-0-0", "a:b"])
def test_tokens_from_topics_and_offsets_pass(token: str) -> None:
    assert check_token(token) == token


@pytest.mark.parametrize("token", ["x'; DROP TABLE t; --", "a b", "", "ü"])
def test_tokens_with_sql_characters_are_refused(token: str) -> None:
    with pytest.raises(BackendError):
        check_token(token)


def test_identifiers_are_checked() -> None:
    assert ident("twinledger_test_1") == "twinledger_test_1"
    with pytest.raises(DDLError):
        ident("x; DROP DATABASE y")


def test_ddl_is_idempotent_replacing_merge_tree_with_dedup_window() -> None:
    stmts = create_statements("tl")
    assert all("IF NOT EXISTS" in s for s in stmts)
    for name, table in TABLES.items():
        (stmt,) = [s for s in stmts if f"tl.{name} " in s]
        if table.version:  # latest-state tables: tests/unit/sinks/test_spot_tables.py
            assert f"ENGINE = ReplacingMergeTree({table.version})" in stmt
            continue
        assert "ENGINE = ReplacingMergeTree()" in stmt
        assert "ORDER BY (account_id, event_id)" in stmt
        assert "PARTITION BY toYYYYMM(ts)" in stmt
        assert f"non_replicated_deduplication_window = {DEDUP_WINDOW}" in stmt
        assert "Float" not in stmt
    assert any("tl.sink_ranges" in s for s in stmts)


def test_ddl_on_cluster_uses_replicated_engines() -> None:
    stmts = create_statements("tl", "main")
    assert all(" ON CLUSTER main" in s for s in stmts)
    assert all("Replicated" in s for s in stmts[1:])
    assert not any("non_replicated" in s for s in stmts)


def test_money_and_time_column_types() -> None:
    types = dict(TABLES["account_snapshots"].columns)
    assert types["capital"] == "Decimal(38, 18)"
    assert types["ts"] == "DateTime64(6, 'UTC')"
