"""How values travel to chDB: TabSeparated fields, parameter text, insert tokens, DDL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from sinks.backend import _param_text, check_token, tsv_field, tsv_rows
from sinks.ddl import DEDUP_WINDOW, TABLES, create_statements, ident
from sinks.exceptions import BackendError, DDLError


@pytest.mark.parametrize(("value", "expected"), [
    (None, b"\\N"),
    ("plain", b"plain"),
    ("tab\there\nnl\\bs", b"tab\\there\\nnl\\\\bs"),
    (b"\x00\xff\t", b"\\0\xff\\t"),
    (True, b"true"),
    (-7, b"-7"),
    (Decimal("0.000000000000000001"), b"0.000000000000000001"),
    (Decimal("1E+2"), b"100"),
    (dt.datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=dt.UTC), b"2024-05-01 12:00:00.000001"),
    (dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
     b"2024-05-01 12:00:00.000000"),
    (["a'b", "c\\d"], b"['a\\'b','c\\\\d']"),
])
def test_tsv_field(value: object, expected: bytes) -> None:
    assert tsv_field(value) == expected


@pytest.mark.parametrize("value", [1.5, Decimal("NaN"), dt.datetime(2024, 1, 1), object()])
def test_tsv_field_refuses_what_must_never_be_stored(value: object) -> None:
    with pytest.raises(BackendError):
        tsv_field(value)


def test_tsv_rows_end_each_row_with_a_newline() -> None:
    assert tsv_rows([["a", 1], ["b", None]]) == b"a\t1\nb\t\\N\n"


def test_param_text_escapes_like_the_http_interface() -> None:
    # clickhouse-connect's escaping: a backslash before \, ', ` and raw tab/newline.
    assert _param_text("a\tb\\c'd") == "a\\\tb\\\\c\\'d"
    assert _param_text(["x", "y'z"]) == "['x', 'y\\'z']"
    assert _param_text(5) == "5"
    assert _param_text(dt.datetime(2024, 1, 1, tzinfo=dt.UTC)) == "2024-01-01 00:00:00.000000"


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
