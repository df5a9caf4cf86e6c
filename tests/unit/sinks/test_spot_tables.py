"""The spot tables (cash_flows, balances, portfolio_snapshots): rows, DDL, TTL sync, verdicts."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import pytest

from sinks.backend import Backend
from sinks.ddl import (
    BALANCES,
    MONTHLY,
    PORTFOLIO_SNAPSHOTS,
    TABLES,
    Table,
    create_statements,
)
from sinks.exceptions import DDLError, RowRejected
from sinks.main import verify_http
from sinks.migrate import current_ttl, sync_ttl
from sinks.rows import build_row
from sinks.runner import count_events, table_matches, verdict
from streams.config import load_settings
from streams.exceptions import ConfigError
from tests.unit.sinks import samples

D = Decimal


def row_of(table: str, record: str, rec: dict[str, Any]) -> dict[str, Any]:
    row = build_row(table, record, samples.decoded(record, rec))
    return dict(zip([c for c, _ in TABLES[table].columns], row, strict=True))


def stmt_of(name: str, **kw: Any) -> str:
    (stmt,) = [s for s in create_statements("tl", **kw) if f"tl.{name} " in s]
    return stmt


# --- rows ------------------------------------------------------------------------------


def test_cash_flow_row_keeps_signed_exact_amounts_and_null_price() -> None:
    row = row_of("cash_flows", "CashFlowEvent", samples.cash_flow())
    assert row["amount"] == D("0.000000000000000001")
    assert row["value"] == D("0.000000000000061234") and row["price"] == D("61234.5")
    assert row["balance_after"] == D("2.000000000000000001")
    assert (row["flow"], row["asset"], row["currency"], row["unvalued"]) == \
        ("deposit", "XBT", "USD", False)
    out = row_of("cash_flows", "CashFlowEvent",
                 {**samples.cash_flow(), "amount": D("-0.5"), "value": D("-30000"),
                  "price": None, "balance_after": None, "flow": "withdrawal"})
    assert out["amount"] == D("-0.5") and out["value"] == D("-30000")
    assert out["price"] is None and out["balance_after"] is None


def test_balance_row_has_key_then_asset_and_version() -> None:
    row = row_of("balances", "BalanceChange", samples.balance_change())
    assert list(row)[:4] == ["account_id", "event_id", "asset", "version"]
    assert (row["account_id"], row["event_id"], row["asset"], row["version"]) == \
        ("acc-k", "f-9:balance:XBT", "XBT", 9)
    assert row["avg_cost"] == D("60000.123456789012345678")
    assert row["total"] == row["free"] + row["locked"] == D("1.75")
    assert row["exchange_total"] is None and row["drift"] is True
    assert not any(isinstance(v, float) for v in row.values())


def test_balance_row_refuses_an_empty_asset() -> None:
    with pytest.raises(RowRejected, match="asset"):
        row_of("balances", "BalanceChange", {**samples.balance_change(), "asset": ""})


def test_portfolio_row_balances_are_canonical_json_with_string_decimals() -> None:
    row = row_of("portfolio_snapshots", "PortfolioSnapshot", samples.portfolio())
    assert row["bucket_start"] == dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
    assert row["interval_seconds"] == 3600
    assert row["drift_assets"] == ["XBT"] and row["unvalued_assets"] == ["KFEE"]
    balances = json.loads(row["balances"])
    assert [b["asset"] for b in balances] == ["KFEE", "XBT"]
    assert balances[1]["avg_cost"] == "60000.123456789012345678"
    assert balances[0]["locked"] == "0" and balances[0]["unvalued"] is True
    assert row["fees"] == D("0.000000000000000001")


def test_portfolio_row_refuses_a_balance_beyond_decimal_38_18() -> None:
    rec = samples.portfolio()
    rec["balances"][0]["value"] = D("1E+20")
    with pytest.raises(RowRejected, match="balances.value"):
        build_row("portfolio_snapshots", "PortfolioSnapshot", rec)


# --- DDL -------------------------------------------------------------------------------


def test_balances_is_latest_per_asset_by_version_without_partitions() -> None:
    stmt = stmt_of("balances")
    assert "ENGINE = ReplacingMergeTree(version)" in stmt
    assert "ORDER BY (account_id, asset)" in stmt
    # ReplacingMergeTree replaces only within a partition: a monthly one would keep stale rows.
    assert "PARTITION BY" not in stmt and "TTL" not in stmt
    assert "event_id String" in stmt and "version UInt64" in stmt


def test_cash_flows_is_an_event_table() -> None:
    stmt = stmt_of("cash_flows")
    assert "ENGINE = ReplacingMergeTree()" in stmt
    assert "PARTITION BY toYYYYMM(ts)" in stmt and "ORDER BY (account_id, event_id)" in stmt
    assert "amount Decimal(38, 18)" in stmt and "price Nullable(Decimal(38, 18))" in stmt
    assert "TTL" not in stmt


@pytest.mark.parametrize(("days", "clause"), [
    (365, "TTL toDateTime(ts) + toIntervalDay(365)\n"),
    (7, "TTL toDateTime(ts) + toIntervalDay(7)\n"),
    (0, None),
])
def test_portfolio_snapshots_ttl_follows_the_retention_setting(days: int,
                                                               clause: str | None) -> None:
    stmt = stmt_of("portfolio_snapshots", retention_days=days)
    assert "ORDER BY (account_id, event_id)" in stmt and "PARTITION BY toYYYYMM(ts)" in stmt
    if clause is None:
        assert "TTL" not in stmt
    else:
        # Before SETTINGS: ClickHouse's grammar wants TTL after ORDER BY, before SETTINGS.
        assert clause in stmt and stmt.index("TTL") < stmt.index("SETTINGS")
    # Only the expiring table gets a TTL.
    others = [s for s in create_statements("tl", retention_days=days)
              if "portfolio_snapshots" not in s]
    assert not any("TTL" in s for s in others)


def test_on_cluster_latest_table_keeps_its_version_column() -> None:
    stmt = stmt_of("balances", cluster="main")
    assert "ENGINE = ReplicatedReplacingMergeTree(" in stmt and "'{replica}', version)" in stmt
    assert " ON CLUSTER main" in stmt and "replicated_deduplication_window" in stmt


def test_table_definition_is_checked() -> None:
    cols = (("account_id", "String"), ("event_id", "String"), ("ts", "DateTime"))
    assert Table("ok", cols, partition="").partition == ""
    assert Table("ok", cols).partition == MONTHLY
    with pytest.raises(DDLError, match="first columns"):
        Table("bad", cols[1:])
    with pytest.raises(DDLError, match="no such columns"):
        Table("bad", cols, order_by=("account_id", "asset"))
    with pytest.raises(DDLError, match="no such columns"):
        Table("bad", cols, version="version")
    with pytest.raises(DDLError, match="partition"):
        Table("bad", cols, partition="daily")


def test_only_portfolio_snapshots_expire_and_only_balances_keep_versions() -> None:
    assert [t.name for t in TABLES.values() if t.ttl] == ["portfolio_snapshots"]
    assert [t.name for t in TABLES.values() if t.version] == ["balances"]
    assert PORTFOLIO_SNAPSHOTS.ttl_expression(0) == ""
    assert BALANCES.ttl_expression(30) == ""


# --- TTL sync at start -----------------------------------------------------------------


class ScriptedBackend(Backend):
    """Answers system.tables with a given engine_full and records the statements run."""

    kind = "fake"

    def __init__(self, engine_full: str, counts: Mapping[str, tuple[int, ...]] | None = None
                 ) -> None:
        self.database = "tl"
        self.engine_full = engine_full
        self.counts = counts or {}
        self.commands: list[str] = []

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.commands.append(sql)

    def query_with_names(self, sql: str, params: Mapping[str, Any] | None = None,
                         settings: Mapping[str, Any] | None = None
                         ) -> tuple[list[str], list[tuple[Any, ...]]]:
        if "system.tables" in sql:
            return ["engine_full"], [(self.engine_full,)]
        table = sql.rsplit(" FROM tl.", 1)[1].split()[0]
        return [], [self.counts[table]]

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
               dedup_token: str) -> None:
        raise AssertionError("no inserts here")

    def use_database(self) -> None:
        pass

    def close(self) -> None:
        pass


ENGINE = ("ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (account_id, event_id) {ttl}"
          "SETTINGS non_replicated_deduplication_window = 10000, index_granularity = 8192")


def test_current_ttl_reads_engine_full() -> None:
    ttl = "TTL toDateTime(ts) + toIntervalDay(30) "
    assert current_ttl(ScriptedBackend(ENGINE.format(ttl=ttl)), "tl", "portfolio_snapshots") \
        == "toDateTime(ts) + toIntervalDay(30)"
    assert current_ttl(ScriptedBackend(ENGINE.format(ttl="")), "tl", "portfolio_snapshots") == ""


@pytest.mark.parametrize(("have", "days", "want"), [
    ("TTL toDateTime(ts) + toIntervalDay(30) ", 365,
     "ALTER TABLE tl.portfolio_snapshots MODIFY TTL toDateTime(ts) + toIntervalDay(365)"),
    ("", 90, "ALTER TABLE tl.portfolio_snapshots MODIFY TTL toDateTime(ts) + toIntervalDay(90)"),
    ("TTL toDateTime(ts) + toIntervalDay(30) ", 0, "ALTER TABLE tl.portfolio_snapshots REMOVE TTL"),
])
def test_sync_ttl_changes_a_differing_ttl_and_says_so(have: str, days: int, want: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    backend = ScriptedBackend(ENGINE.format(ttl=have))
    with caplog.at_level(logging.WARNING, logger="twinledger.sink"):
        assert sync_ttl(backend, "tl", retention_days=days) == [want]
    assert backend.commands == [want]
    assert "portfolio_snapshots TTL was" in caplog.text and want in caplog.text


@pytest.mark.parametrize(("have", "days"), [
    ("TTL toDateTime(ts) + toIntervalDay(365) ", 365), ("", 0)])
def test_sync_ttl_leaves_a_matching_ttl_alone(have: str, days: int) -> None:
    backend = ScriptedBackend(ENGINE.format(ttl=have))
    assert sync_ttl(backend, "tl", retention_days=days) == []
    assert backend.commands == []


def test_sync_ttl_on_cluster() -> None:
    backend = ScriptedBackend(ENGINE.format(ttl=""))
    assert sync_ttl(backend, "tl", "main", 5) == [
        "ALTER TABLE tl.portfolio_snapshots ON CLUSTER main MODIFY TTL "
        "toDateTime(ts) + toIntervalDay(5)"]


# --- settings --------------------------------------------------------------------------


def test_retention_setting_defaults_to_a_year_and_refuses_negatives() -> None:
    assert load_settings({}).snapshot_retention_days == 365
    assert load_settings({"TWINLEDGER_SNAPSHOT_RETENTION_DAYS": "0"}).snapshot_retention_days == 0
    with pytest.raises(ConfigError, match="TWINLEDGER_SNAPSHOT_RETENTION_DAYS"):
        load_settings({"TWINLEDGER_SNAPSHOT_RETENTION_DAYS": "-1"})
    with pytest.raises(ConfigError, match="TWINLEDGER_SNAPSHOT_RETENTION_DAYS"):
        load_settings({"TWINLEDGER_SNAPSHOT_RETENTION_DAYS": "a year"})


# --- verify ----------------------------------------------------------------------------


def test_count_events_reads_balances_invariants_and_event_tables_plainly() -> None:
    backend = ScriptedBackend("", {"cash_flows": (4, 4), "balances": (7, 7, 7, 3, 3)})
    counts = count_events(backend, ["cash_flows", "balances"])
    assert counts == {"cash_flows": {"count": 4, "uniq": 4},
                      "balances": {"count": 7, "uniq": 7, "versions": 7, "keys": 3, "final": 3}}
    assert verdict(counts)["ok"] is True


@pytest.mark.parametrize(("figures", "ok"), [
    ({"count": 7, "uniq": 7, "versions": 7, "keys": 3, "final": 3}, True),
    # The same (account, asset, version) stored twice.
    ({"count": 8, "uniq": 7, "versions": 7, "keys": 3, "final": 3}, False),
    ({"count": 8, "uniq": 8, "versions": 7, "keys": 3, "final": 3}, False),
    # FINAL shows more than one row for some (account, asset).
    ({"count": 7, "uniq": 7, "versions": 7, "keys": 3, "final": 4}, False),
    ({"count": 2, "uniq": 2}, True),
    ({"count": 3, "uniq": 2}, False),
])
def test_table_matches(figures: dict[str, int], ok: bool) -> None:
    assert table_matches(figures) is ok
    assert verdict({"t": figures}) == {"ok": ok, "tables": {"t": {**figures, "match": ok}}}


def test_verify_http_keeps_the_balances_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = {"ok": True, "tables": {
        "cash_flows": {"count": 2, "uniq": 2, "match": True},
        "balances": {"count": 5, "uniq": 5, "versions": 5, "keys": 2, "final": 3,
                     "match": True}}}

    class Resp:
        def __enter__(self) -> Resp:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def read(self) -> bytes:
            return json.dumps(doc).encode()

    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: Resp())
    out = verify_http("http://127.0.0.1:1")
    # The client recomputes the verdict: FINAL showing 3 rows for 2 keys is a mismatch.
    assert out["ok"] is False and out["tables"]["balances"]["match"] is False
    assert out["tables"]["cash_flows"] == {"count": 2, "uniq": 2, "match": True}
