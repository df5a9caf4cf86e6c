"""One contract for the sink's one backend class, on both of its targets.

``ClickHouseBackend`` is clickhouse-connect for the embedded engine
(``chdb:///path``, always run) and for a server (``http(s)://``, run only when
``CLICKHOUSE_URL`` points at a server that answers; skipped with the reason
otherwise). Both targets go through the same client code — query binding,
native insert encoding, result types, errors — so the chdb run covers all of
it except the HTTP transport itself, which stays untested on machines without
a ClickHouse server (no server can be installed on the development machines).
Each test gets a fresh chDB directory or a fresh, uniquely named server
database (dropped afterwards).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sinks.backend import READ_LIMITS, Backend, ClickHouseBackend, chdb_url
from sinks.batching import Candidate
from sinks.ddl import (
    ACCOUNT_SNAPSHOTS,
    BALANCES,
    CASH_FLOWS,
    DEAD_LETTERS,
    PORTFOLIO_SNAPSHOTS,
    TABLES,
    TRADE_EVENTS,
    VENUE_EVENTS,
)
from sinks.exceptions import BackendError, BackendUnavailable, DDLError
from sinks.http import ReadService, SinkHTTPServer
from sinks.main import verify
from sinks.migrate import apply_ddl, current_ttl
from sinks.runner import SinkRunner
from streams.config import load_settings
from tests.unit.sinks import samples

pytestmark = pytest.mark.integration

TS = dt.datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=dt.UTC)


def _server_backend(database: str) -> Backend:
    url = os.environ.get("CLICKHOUSE_URL", "")
    if not url:
        pytest.skip("CLICKHOUSE_URL is not set: no ClickHouse server to run the contract against")
    try:
        backend = ClickHouseBackend(url, database)
        backend.query("SELECT 1")
    except (BackendUnavailable, BackendError) as exc:
        pytest.skip(f"CLICKHOUSE_URL does not answer: {exc}")
    return backend


#: chdb always; the server target only where CLICKHOUSE_URL is set, so a machine without a
#: server runs the whole contract on the embedded engine and skips nothing. Only the HTTP
#: transport of clickhouse-connect stays untested here.
TARGETS = ["chdb"] + ([pytest.param("server", marks=pytest.mark.server)]
                      if os.environ.get("CLICKHOUSE_URL") else [])


@pytest.fixture(params=TARGETS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    database = f"tl_contract_{uuid.uuid4().hex[:10]}"
    if request.param == "chdb":
        b: Backend = ClickHouseBackend(chdb_url(tmp_path / "chdb"), database)
    else:
        b = _server_backend(database)
    try:
        apply_ddl(b, database)
        yield b
    finally:
        if request.param == "server":
            b.command(f"DROP DATABASE IF EXISTS {database}")
        b.close()


def venue_row(account: str, event_id: str, offset: int = 0, **over: Any) -> list[Any]:
    rec = samples.decoded("VenueEvent", samples.fill_event(event_id, account, **over))
    from sinks.rows import venue_event_row

    return [*venue_event_row(rec), "venue.events", 0, offset]


def count_uniq(backend: Backend, table: str) -> tuple[int, int]:
    (row,) = backend.query(
        f"SELECT count(), uniqExact(event_id) FROM {backend.database}.{table}")  # noqa: S608
    return int(row[0]), int(row[1])


def test_ddl_is_idempotent_and_typed(backend: Backend) -> None:
    apply_ddl(backend, backend.database)
    apply_ddl(backend, backend.database)
    rows = backend.query(
        "SELECT name, engine, sorting_key FROM system.tables WHERE database = {db:String}",
        {"db": backend.database})
    tables = {r[0]: (r[1], r[2]) for r in rows}
    for name in TABLES:
        if name == "balances":  # latest per asset
            assert tables[name] == ("ReplacingMergeTree", "account_id, asset")
        else:
            assert tables[name] == ("ReplacingMergeTree", "account_id, event_id")
    assert "sink_ranges" in tables
    types = dict(backend.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String}",
        {"db": backend.database, "t": "account_snapshots"}))
    assert types["capital"] == "Decimal(38, 18)"
    assert types["wallet_balance"] == "Nullable(Decimal(38, 18))"
    assert types["ts"] == "DateTime64(6, 'UTC')"


def test_same_token_twice_inserts_one_copy(backend: Backend) -> None:
    cols = VENUE_EVENTS.insert_columns
    rows = [venue_row("acc-1", "e-1"), venue_row("acc-1", "e-2", 1)]
    backend.insert("venue_events", cols, rows, "venue.events-0-0-1")
    backend.insert("venue_events", cols, rows, "venue.events-0-0-1")
    assert count_uniq(backend, "venue_events") == (2, 2)
    # A different token is a different batch: the token, not the content, decides.
    backend.insert("venue_events", cols, rows[:1], "venue.events-0-0-0")
    assert count_uniq(backend, "venue_events") == (3, 2)


def test_existence_filter_finds_exact_keys(backend: Backend) -> None:
    cols = VENUE_EVENTS.insert_columns
    backend.insert("venue_events", cols, [venue_row("acc-1", "e-1"), venue_row("acc-2", "e-9")],
                   "venue.events-0-0-1")
    settings = replace(load_settings({}), sink_group="contract")
    runner = SinkRunner(settings, backend, samples.codec(), consumer=object(),
                        topics={"venue.events": "venue_events"})
    probe = [Candidate("venue_events", a, e, (), 0)
             for a, e in [("acc-1", "e-1"), ("acc-1", "e-9"), ("acc-2", "e-1"), ("acc-2", "e-9"),
                          ("acc-3", "x'); DROP TABLE venue_events; --")]]
    assert set(runner.existing_keys("venue_events", probe)) == {("acc-1", "e-1"),
                                                                ("acc-2", "e-9")}
    assert runner.read_states() == {}


def test_existence_filter_finds_keys_with_every_escaped_character(backend: Backend) -> None:
    """Keys are bound by the sink's own Array(String) text (sinks.backend): each character
    it escapes, and its neighbours, must come back as the same key. A dead letter's
    account_id is its record's key, any UTF-8 text a producer sent."""
    from sinks.rows import dead_letter_for

    odd = ["q'uote", "back\\slash", "tick`", "tab\tx", "new\nline", "\\'", "\\n", "ü'ß",
           "end\\", "'", "r\rz", "nul\x00"]
    rows = [[*dead_letter_for("venue.events", 0, i, k.encode(), b"x", 0, "DecodeError", "r"),
             "venue.events", 0, i] for i, k in enumerate(odd)]
    backend.insert(DEAD_LETTERS.name, DEAD_LETTERS.insert_columns, rows, "venue.events-0-0-11")
    settings = replace(load_settings({}), sink_group="contract")
    runner = SinkRunner(settings, backend, samples.codec(), consumer=object(),
                        topics={"venue.events": "venue_events"})
    keys = [(str(r[0]), str(r[1])) for r in rows]
    probe = [Candidate(DEAD_LETTERS.name, a, e, (), 0) for a, e in keys]
    probe.append(Candidate(DEAD_LETTERS.name, "q\\'uote", keys[0][1], (), 0))  # not a key
    assert set(runner.existing_keys(DEAD_LETTERS.name, probe)) == set(keys)


def snapshot_row(event_id: str, capital: Decimal, offset: int) -> list[Any]:
    from sinks.rows import account_snapshot_row

    rec = samples.decoded("AccountSnapshot", {**samples.snapshot(event_id), "capital": capital})
    return [*account_snapshot_row(rec), "ledger.snapshots", 0, offset]


def test_decimal_round_trip_is_exact(backend: Backend) -> None:
    values = ["242.7312", "0.000000000000000001", "-0.000000000000000001",
              "99999999999999999999.999999999999999999",
              "-99999999999999999999.999999999999999999", "-202276", "0"]
    rows = [snapshot_row(f"e-{i}", Decimal(v), i) for i, v in enumerate(values)]
    backend.insert("account_snapshots", ACCOUNT_SNAPSHOTS.insert_columns, rows,
                   "ledger.snapshots-0-0-6")
    got = backend.query(
        f"SELECT event_id, capital, toString(capital), wallet_balance"  # noqa: S608
        f" FROM {backend.database}.account_snapshots")
    by_id = {r[0]: r[1:] for r in got}
    for i, v in enumerate(values):
        capital, text, wallet = by_id[f"e-{i}"]
        assert isinstance(capital, Decimal) and capital == Decimal(v)
        assert Decimal(text) == Decimal(v)
        assert wallet is None
    # The venue archive keeps the fill's price exactly too.
    backend.insert("venue_events", VENUE_EVENTS.insert_columns,
                   [venue_row("acc-1", "f-1", price="242.7312", fee="0.000000000000000001")],
                   "venue.events-0-0-0")
    assert backend.query(f"SELECT price, fee FROM {backend.database}.venue_events") == [  # noqa: S608
        (Decimal("242.7312"), Decimal("0.000000000000000001"))]


def test_datetime64_keeps_microseconds_in_utc(backend: Backend) -> None:
    plus2 = dt.timezone(dt.timedelta(hours=2))
    row = dict(zip([c for c, _ in VENUE_EVENTS.columns], venue_row("acc-1", "e-1"), strict=False))
    assert row["ts"] == dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    rows = [venue_row("acc-1", "e-1"),
            venue_row("acc-1", "e-2", 1, ts="2024-05-01T14:00:00.000001+02:00")]
    backend.insert("venue_events", VENUE_EVENTS.insert_columns, rows, "venue.events-0-0-1")
    got = dict(backend.query(
        f"SELECT event_id, ts FROM {backend.database}.venue_events"))  # noqa: S608
    assert got["e-1"] == dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    assert got["e-2"] == dt.datetime(2024, 5, 1, 14, 0, 0, 1, tzinfo=plus2)
    assert got["e-2"].microsecond == 1 and got["e-2"].utcoffset() == dt.timedelta(0)


def test_bytes_and_hostile_strings_round_trip(backend: Backend) -> None:
    nasty = ["a'b", 'q"q', "back\\slash", "tab\tnew\nline\rcr", "nul\x00", "ünïcødé ✓",
             "{x:String}", "'); DROP TABLE dead_letters; --"]
    raw = bytes(range(256))
    rows = [[*samples_dead(i, reason, raw), "ledger.deadletter", 0, i]
            for i, reason in enumerate(nasty)]
    backend.insert("dead_letters", DEAD_LETTERS.insert_columns, rows, "ledger.deadletter-0-0-7")
    got = backend.query(
        f"SELECT reason, hex(original_value), original_key FROM {backend.database}.dead_letters"  # noqa: S608
        " ORDER BY source_offset")
    assert [r[0] for r in got] == nasty
    assert {r[1] for r in got} == {raw.hex().upper()}
    assert {r[2] for r in got} == {None}
    echoed = backend.query("SELECT {v:Array(String)}, {s:String}",
                           {"v": nasty, "s": nasty[-1]})
    assert echoed == [(nasty, nasty[-1])]


def samples_dead(i: int, reason: str, raw: bytes) -> list[Any]:
    from sinks.rows import dead_letter_for

    row = dead_letter_for("venue.events", 0, i, None, raw, 1714564800000, "DecodeError", reason)
    return row


def test_named_reads_on_a_read_only_client(backend: Backend) -> None:
    backend.insert("venue_events", VENUE_EVENTS.insert_columns, [venue_row("acc-1", "e-1")],
                   "venue.events-0-0-0")
    backend.insert("dead_letters", DEAD_LETTERS.insert_columns,
                   [[*samples_dead(0, "bad", b"\xff\x00ok"), "ledger.deadletter", 0, 0]],
                   "ledger.deadletter-0-0-0")
    reads = ReadService(backend)
    try:
        doc = reads.named("dead_letters", {"limit": "5"})
        assert doc["columns"][:2] == ["account_id", "event_id"] and not doc["truncated"]
        (row,) = doc["rows"]
        assert row["reason"] == "bad" and row["original_value_base64"] == "/wBvaw=="
        assert reads.named("counts", {})["tables"]["venue_events"] == {
            "count": 1, "uniq": 1, "match": True}
        # A value that looks like SQL is a value: bound, never part of the text.
        assert reads.named("snapshots", {"account": "x' OR 1=1 --"})["rows"] == []
        # The read client refuses writes and reaching outside, whatever text it is given.
        reader = backend.reader()
        try:
            for sql in ("INSERT INTO venue_events SELECT * FROM venue_events",
                        "SELECT * FROM file('/etc/hostname', LineAsString)",
                        "SELECT 1 SETTINGS readonly = 0", "DROP TABLE venue_events"):
                with pytest.raises(BackendError, match="(?i)readonly"):
                    reader.query(sql)
        finally:
            reader.close()
        # ...and stops what runs too long, before readonly could be turned off.
        with pytest.raises(BackendError, match="TIMEOUT|Timeout"):
            slow = backend.reader({**READ_LIMITS, "max_execution_time": 1})
            try:
                slow.query("SELECT count() FROM numbers(10000000000) "
                           "WHERE sipHash64(number) % 7 = 3")
            finally:
                slow.close()
        assert count_uniq(backend, "venue_events") == (1, 1)
    finally:
        reads.close()


def test_verify_counts_without_final(backend: Backend) -> None:
    cols = VENUE_EVENTS.insert_columns
    backend.insert("venue_events", cols, [venue_row("acc-1", "e-1")], "venue.events-0-0-0")
    assert verify(backend)["ok"] is True
    # A second copy under another token (what the sink's filter exists to prevent).
    backend.insert("venue_events", cols, [venue_row("acc-1", "e-1", 5)], "venue.events-0-5-5")
    verdict = verify(backend)
    assert verdict["ok"] is False
    assert verdict["tables"]["venue_events"] == {"count": 2, "uniq": 1, "match": False}


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_http_endpoint(backend: Backend) -> None:
    backend.insert("venue_events", VENUE_EVENTS.insert_columns, [venue_row("acc-1", "e-1")],
                   "venue.events-0-0-0")
    server = SinkHTTPServer(backend, "127.0.0.1", 0, health=lambda: {"assigned": []}).start()
    try:
        assert server.address[0] == "127.0.0.1"
        status, body = _get(server.url + "/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, body = _get(server.url + "/counts")
        counts = json.loads(body)
        assert counts["ok"] is True
        assert counts["tables"]["venue_events"] == {"count": 1, "uniq": 1, "match": True}
        status, body = _get(server.url + "/metrics")
        assert status == 200 and b"twinledger_sink_rows_inserted" in body
        status, body = _get(server.url + "/q")
        assert status == 200 and "accounts" in {q["name"] for q in json.loads(body)["queries"]}
        status, doc = _post(server.url + "/q", {"name": "counts"})
        assert status == 200 and doc["tables"]["venue_events"]["count"] == 1
        status, body = _get(server.url + "/q/snapshots?account=acc-1&limit=5")
        assert (status, json.loads(body)["rows"]) == (200, [])
        # No free SQL: the old endpoint is gone and the text is never run.
        status, doc = _post(server.url + "/query", {"sql": "DROP TABLE venue_events"})
        assert status == 404
        assert count_uniq(backend, "venue_events") == (1, 1)
    finally:
        server.stop()


# --- spot tables ------------------------------------------------------------------------


def spot_row(table: str, record: str, rec: dict[str, Any], topic: str, offset: int
             ) -> list[Any]:
    from sinks.rows import build_row

    return [*build_row(table, record, samples.decoded(record, rec)), topic, 0, offset]


def test_cash_flows_exact_and_found_by_the_existence_filter(backend: Backend) -> None:
    rows = [spot_row("cash_flows", "CashFlowEvent", samples.cash_flow(), "ledger.cashflows", 0),
            spot_row("cash_flows", "CashFlowEvent",
                     {**samples.cash_flow("w-1:cashflow"), "amount": Decimal("-0.5"),
                      "value": Decimal("-30000.000000000000000001"), "price": None,
                      "flow": "withdrawal"}, "ledger.cashflows", 1)]
    backend.insert("cash_flows", CASH_FLOWS.insert_columns, rows, "ledger.cashflows-0-0-1")
    got = dict((r[0], r[1:]) for r in backend.query(
        f"SELECT event_id, amount, value, price FROM {backend.database}.cash_flows"))  # noqa: S608
    assert got["d-1:cashflow"] == (Decimal("0.000000000000000001"),
                                   Decimal("0.000000000000061234"), Decimal("61234.5"))
    assert got["w-1:cashflow"] == (Decimal("-0.5"), Decimal("-30000.000000000000000001"), None)
    runner = SinkRunner(replace(load_settings({}), sink_group="contract"), backend,
                        samples.codec(), consumer=object(),
                        topics={"ledger.cashflows": "cash_flows"})
    probe = [Candidate("cash_flows", "acc-k", e, (), 0)
             for e in ("d-1:cashflow", "w-1:cashflow", "x:cashflow")]
    assert set(runner.existing_keys("cash_flows", probe)) == {("acc-k", "d-1:cashflow"),
                                                              ("acc-k", "w-1:cashflow")}
    assert verify(backend)["tables"]["cash_flows"] == {"count": 2, "uniq": 2, "match": True}


def balance_rec(source: str, asset: str, version: int, total: str,
                account: str = "acc-k") -> dict[str, Any]:
    t = Decimal(total)
    return {**samples.balance_change(f"{source}:balance:{asset}", account, version),
            "source_event_id": source, "asset": asset, "free": t, "locked": Decimal(0),
            "total": t, "avg_cost": Decimal(2), "cost_basis": t * 2,
            "value": t * 3}


def test_balances_final_is_the_highest_version_per_asset(backend: Backend) -> None:
    # Out of order across batches, as partitions of a rebuilt sink could deliver them.
    batches = [
        [balance_rec("e5", "XBT", 5, "1.5"), balance_rec("e5", "USD", 5, "100")],
        [balance_rec("e2", "XBT", 2, "1"), balance_rec("e9", "USD", 9, "250.000000000000000001"),
         balance_rec("e1", "XBT", 1, "0.25", account="acc-z")],
        [balance_rec("e7", "XBT", 7, "0")],
    ]
    offset = 0
    for i, batch in enumerate(batches):
        rows = []
        for rec in batch:
            rows.append(spot_row("balances", "BalanceChange", rec, "ledger.balances", offset))
            offset += 1
        backend.insert("balances", BALANCES.insert_columns, rows, f"ledger.balances-0-{i}-{i}")
    db = backend.database
    final = backend.query(
        f"SELECT account_id, asset, version, total FROM {db}.balances FINAL"  # noqa: S608
        " ORDER BY account_id, asset")
    assert final == [("acc-k", "USD", 9, Decimal("250.000000000000000001")),
                     ("acc-k", "XBT", 7, Decimal("0")),
                     ("acc-z", "XBT", 1, Decimal("0.25"))]
    runner = SinkRunner(replace(load_settings({}), sink_group="contract"), backend,
                        samples.codec(), consumer=object(),
                        topics={"ledger.balances": "balances"})
    # The existence filter still answers by (account_id, event_id) on this table.
    probe = [Candidate("balances", "acc-k", e, (), 0)
             for e in ("e2:balance:XBT", "e9:balance:USD", "e3:balance:XBT")]
    assert set(runner.existing_keys("balances", probe)) == {("acc-k", "e2:balance:XBT"),
                                                            ("acc-k", "e9:balance:USD")}
    verdict = verify(backend)["tables"]["balances"]
    assert verdict["final"] == verdict["keys"] == 3 and verdict["match"] is True
    assert verdict["count"] == verdict["uniq"] == verdict["versions"] >= 3
    # A merge keeps the latest row per (account, asset) only; still one per key.
    backend.command(f"OPTIMIZE TABLE {db}.balances FINAL")
    after = verify(backend)["tables"]["balances"]
    assert after == {"count": 3, "uniq": 3, "versions": 3, "keys": 3, "final": 3, "match": True}
    # The same change stored twice under another token breaks the promise.
    backend.insert("balances", BALANCES.insert_columns,
                   [spot_row("balances", "BalanceChange", balance_rec("e9", "USD", 9, "250"),
                             "ledger.balances", 99)], "ledger.balances-0-99-99")
    assert verify(backend)["tables"]["balances"]["match"] is False


def test_portfolio_snapshots_ttl_expires_old_rows_and_follows_the_setting(
        backend: Backend) -> None:
    db = backend.database
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    old = now - dt.timedelta(days=400)

    def insert(event_id: str, when: dt.datetime, offset: int) -> None:
        rec = samples.portfolio(event_id, "acc-k", when)
        backend.insert("portfolio_snapshots", PORTFOLIO_SNAPSHOTS.insert_columns,
                       [spot_row("portfolio_snapshots", "PortfolioSnapshot", rec,
                                 "ledger.portfolio", offset)],
                       f"ledger.portfolio-0-{offset}-{offset}")

    def ids() -> list[str]:
        return [r[0] for r in backend.query(
            f"SELECT event_id FROM {db}.portfolio_snapshots ORDER BY event_id")]  # noqa: S608

    # The fixture applied the default: a year.
    assert current_ttl(backend, db, "portfolio_snapshots") == \
        "toDateTime(ts) + toIntervalDay(365)"
    insert("acc-k:portfolio:old", old, 0)
    insert("acc-k:portfolio:new", now, 1)
    backend.command(f"OPTIMIZE TABLE {db}.portfolio_snapshots FINAL")
    assert ids() == ["acc-k:portfolio:new"]

    # 0 = forever: the sink removes the TTL of the existing table at start.
    assert apply_ddl(backend, db, retention_days=0) == [
        f"ALTER TABLE {db}.portfolio_snapshots REMOVE TTL"]
    assert current_ttl(backend, db, "portfolio_snapshots") == ""
    insert("acc-k:portfolio:old", old, 2)
    backend.command(f"OPTIMIZE TABLE {db}.portfolio_snapshots FINAL")
    assert ids() == ["acc-k:portfolio:new", "acc-k:portfolio:old"]
    assert apply_ddl(backend, db, retention_days=0) == []

    # A shorter retention again: MODIFY TTL, applied to the rows already there.
    assert apply_ddl(backend, db, retention_days=30) == [
        f"ALTER TABLE {db}.portfolio_snapshots MODIFY TTL toDateTime(ts) + toIntervalDay(30)"]
    backend.command(f"OPTIMIZE TABLE {db}.portfolio_snapshots FINAL")
    assert ids() == ["acc-k:portfolio:new"]
    assert verify(backend)["tables"]["portfolio_snapshots"] == {
        "count": 1, "uniq": 1, "match": True}


def test_stale_marks_map_round_trips_and_an_older_table_gets_the_column(backend: Backend
                                                                        ) -> None:
    from sinks.migrate import add_columns, check_columns
    from sinks.rows import account_snapshot_row

    db = backend.database
    rec = samples.decoded("AccountSnapshot", {
        **samples.snapshot("stale-1"),
        "stale_marks": [{"symbol": "XBT/USD", "age_seconds": 3602},
                        {"symbol": "ETH/USD", "age_seconds": 601}]})
    backend.insert("account_snapshots", ACCOUNT_SNAPSHOTS.insert_columns,
                   [[*account_snapshot_row(rec), "ledger.snapshots", 0, 0]],
                   "ledger.snapshots-0-0-0")
    assert backend.query(
        f"SELECT stale_marks['XBT/USD'], stale_marks FROM {db}.account_snapshots") == [  # noqa: S608
        (3602, {"XBT/USD": 3602, "ETH/USD": 601})]

    # A table an older sink made, without the column: refused before, now extended in place.
    backend.command(f"CREATE TABLE {db}.old_snapshots AS {db}.account_snapshots")
    backend.command(f"ALTER TABLE {db}.old_snapshots DROP COLUMN stale_marks")
    old = replace(ACCOUNT_SNAPSHOTS, name="old_snapshots")
    with pytest.raises(DDLError, match="lacks columns \\['stale_marks'\\]"):
        check_columns(backend, db, [old])
    backend.insert("old_snapshots", [c for c in old.insert_columns if c != "stale_marks"],
                   [[v for c, v in zip(old.insert_columns,
                                       [*account_snapshot_row(samples.decoded(
                                           "AccountSnapshot", samples.snapshot("before"))),
                                        "ledger.snapshots", 0, 1], strict=True)
                     if c != "stale_marks"]], "old-0")
    (stmt,) = add_columns(backend, db, tables=[old])
    assert "ADD COLUMN IF NOT EXISTS stale_marks Map(String, UInt64) AFTER balances" in stmt
    assert add_columns(backend, db, tables=[old]) == []  # once
    check_columns(backend, db, [old])
    backend.insert("old_snapshots", old.insert_columns,
                   [[*account_snapshot_row(rec), "ledger.snapshots", 0, 2]], "old-1")
    got = dict(backend.query(
        f"SELECT event_id, stale_marks FROM {db}.old_snapshots"))  # noqa: S608
    assert got == {"before": {}, "stale-1": {"XBT/USD": 3602, "ETH/USD": 601}}


def test_spot_cost_basis_reaches_trade_pnl_and_an_older_table_gets_the_column(
        backend: Backend) -> None:
    from sinks.migrate import add_columns, check_columns
    from sinks.rows import trade_event_row

    db = backend.database
    d = Decimal
    sale = {**samples.trade("s-1:f-2:sell"), "trade_id": "s-1", "market": "spot",
            "symbol": "XBT/USD", "side": "SELL", "action": "sell", "qty": d("0.2"),
            "price": d("61000"), "pnl_leg": d("200.1"), "cumulative_pnl": d("200.1"),
            "cost_basis": d("12000")}
    legs = [samples.trade(), {**sale, "event_id": "s-2:f-3:sell", "trade_id": "s-2",
                              "cost_basis": None}, sale]  # futures, an older spot leg, spot
    backend.insert("trade_events", TRADE_EVENTS.insert_columns,
                   [[*trade_event_row(samples.decoded("TradeEvent", r)), "ledger.trades", 0, i]
                    for i, r in enumerate(legs)], "ledger.trades-0-0-0")
    reads = ReadService(backend)
    try:
        rows = {r["trade_id"]: r for r in reads.named(
            "trade_pnl", {"since": "2000-01-01T00:00:00Z", "limit": "10"})["rows"]}
    finally:
        reads.close()
    assert Decimal(rows["s-1"]["spot_cost_basis"]) == d("12000")
    assert rows["s-2"]["spot_cost_basis"] is None and rows["t-1"]["spot_cost_basis"] is None

    # A table an older sink made, without the column: extended in place by ALTER.
    backend.command(f"CREATE TABLE {db}.old_trades AS {db}.trade_events")
    backend.command(f"ALTER TABLE {db}.old_trades DROP COLUMN cost_basis")
    old = replace(TRADE_EVENTS, name="old_trades")
    with pytest.raises(DDLError, match="lacks columns \\['cost_basis'\\]"):
        check_columns(backend, db, [old])
    (stmt,) = add_columns(backend, db, tables=[old])
    assert "ADD COLUMN IF NOT EXISTS cost_basis Nullable(Decimal(38, 18)) AFTER strategy_tag" in stmt
    check_columns(backend, db, [old])
