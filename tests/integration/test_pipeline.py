"""The whole pipeline on real Kafka and the real ClickHouse engine (chDB).

venue events -> Kafka -> Faust worker (the pure fold) -> output topics -> sink -> ClickHouse.
The promise checked everywhere: every table holds exactly one row per logical
event, count() = uniqExact(event_id) = expected, read WITHOUT FINAL, and the
streamed account state equals the offline fold of the same events.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from streams.codec import Codec, dec_str, fold_dict_to_venue_record
from streams.ledger import load_ledger_config
from streams.ledger.synth import generate_events
from streams.ops import format_report, report
from tests.integration.live_state import fold_as_worker
from tests.integration.pipeline import Pipeline

pytestmark = pytest.mark.integration

N_EVENTS = 10_000
N_ACCOUNTS = 50
#: Kraken spot accounts mixed into the 10k-event runs (LEDGER part B).
N_SPOT = 5


def venue_only(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Marks reach the worker through their own topic at their own pace, so a streamed
    unrealized PnL depends on timing; the exactly-once assertions use venue events only."""
    return [e for e in events if e["kind"] != "mark"]


class Reference:
    """What the offline fold emitted, beyond the counts: the spot figures the tables must show."""

    def __init__(self) -> None:
        #: (account, asset) -> the last BalanceChange record (what balances FINAL must hold)
        self.balances: dict[tuple[str, str], dict[str, Any]] = {}
        self.spot_trades = 0
        self.drift_reconciles = 0
        #: account -> cash-flow / portfolio records emitted for it
        self.per_account: Counter[tuple[str, str]] = Counter()


def offline_fold(events: list[dict[str, Any]]) -> tuple[dict[str, Any], Counter[str]]:
    """The reference: the same fold, in file order, no broker."""
    states, outputs, _ = offline_fold_spot(events)
    return states, outputs


def offline_fold_spot(events: list[dict[str, Any]]
                      ) -> tuple[dict[str, Any], Counter[str], Reference]:
    """:func:`offline_fold` and the spot figures of the same run."""
    ref = Reference()
    states, emitted = fold_as_worker(events, load_ledger_config(None))
    outputs: Counter[str] = Counter()
    for out in emitted:
        outputs[out.kind] += 1
        rec = out.record
        ref.per_account[rec["account_id"], out.kind] += 1
        if out.kind == "balance":
            ref.balances[rec["account_id"], rec["asset"]] = rec
        elif out.kind == "trade" and rec.get("market") == "spot":
            ref.spot_trades += 1
        elif out.kind == "reconcile" and any(
                r["rule"] == "B8" and r["code"] == "DRIFT" for r in rec["results"]):
            ref.drift_reconciles += 1
    return states, outputs, ref


def expected_rows(events: list[dict[str, Any]], outputs: Counter[str]) -> dict[str, int]:
    return {
        "venue_events": len({e["event_id"] for e in events}),
        "account_snapshots": outputs["snapshot"],
        "trade_events": outputs["trade"],
        "reconcile_events": outputs["reconcile"],
        "anomaly_events": outputs["anomaly"],
        "cash_flows": outputs["cashflow"],
        "portfolio_snapshots": outputs["portfolio"],
    }


def assert_exactly_once(counts: dict[str, dict[str, int]], expected: dict[str, int]) -> None:
    for table, n in expected.items():
        got = counts[table]
        assert got["count"] == got["uniq"] == n, (table, got, n)


def assert_state_equals_offline(p: Pipeline, states: dict[str, Any]) -> None:
    """The last snapshot of every account equals what `twinledger fold` says of the same events."""
    from tests.integration.live_state import offline_reference, sink_state_mismatches

    ref = offline_reference(p.produced)
    assert not ref.doc["rejected"]
    assert set(ref.doc["accounts"]) == set(states)
    assert sink_state_mismatches(ref, p.read("accounts", limit=10_000)) == []


def assert_spot_tables(p: Pipeline, ref: Reference, timeout: float = 180.0) -> None:
    """balances FINAL = the fold's last change per (account, asset), which is the fold's
    final per-asset total and average cost; spot trades and B8 drift results arrived."""
    import json

    from streams.foldfile import fold_lines

    want = {k: (r["version"], r["event_id"], r["total"], r["free"], r["locked"], r["avg_cost"],
                r["cost_basis"], r["drift"]) for k, r in ref.balances.items()}
    assert want, "the reference run has spot balances"
    got: dict[tuple[str, str], tuple[Any, ...]] = {}
    deadline = time.monotonic() + timeout
    while True:  # balances is its own topic: its last batches may land after the others
        got = {(r["account_id"], r["asset"]): (
            int(r["version"]), r["event_id"], Decimal(r["total"]), Decimal(r["free"]),
            Decimal(r["locked"]), Decimal(r["avg_cost"]), Decimal(r["cost_basis"]),
            bool(r["drift"])) for r in p.read("balances", limit=10_000)}
        if got == want or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got == want
    counts = p.counts()["balances"]
    assert counts["final"] == counts["keys"] == len(want), counts
    assert counts["count"] == counts["uniq"] == counts["versions"], counts
    # The same figures as `twinledger fold` prints for every spot account.
    doc = fold_lines([json.dumps(e) for e in p.produced], load_ledger_config(None))
    summary = {(a, asset): b for a, acc in doc["accounts"].items()
               for asset, b in (acc.get("balances") or {}).items()}
    assert set(summary) == set(want)
    for key, b in summary.items():
        assert got[key][2] == Decimal(b["total"]) and got[key][5] == Decimal(b["avg_cost"]), key
    markets = {r["market"]: int(r["n"]) for r in p.read("trade_counts")}
    assert markets.get("spot", 0) == ref.spot_trades > 0
    rules = {(r["rule"], r["code"]): int(r["events"]) for r in p.read("reconcile_rule_counts")}
    assert rules.get(("B8", "DRIFT"), 0) == ref.drift_reconciles > 0


def spot_mix(seed: int) -> list[dict[str, Any]]:
    events = venue_only(generate_events(N_EVENTS + 2_000, N_ACCOUNTS, seed=seed,
                                        spot_accounts=N_SPOT))[:N_EVENTS]
    assert len(events) == N_EVENTS and len({e["account_id"] for e in events}) >= N_ACCOUNTS
    assert len({e["account_id"] for e in events if e["venue"] == "kraken"}) == N_SPOT
    return events


def test_ten_thousand_events_fifty_accounts_exactly_once(pipeline: Pipeline):
    events = spot_mix(7)
    states, outputs, ref = offline_fold_spot(events)
    expected = expected_rows(events, outputs)
    assert expected["cash_flows"] and expected["portfolio_snapshots"]

    pipeline.start_sink()
    pipeline.start_worker()
    pipeline.produce(events)
    counts = pipeline.wait_for(expected)
    assert_exactly_once(counts, expected)
    assert counts.get("dead_letters", {"count": 0})["count"] == 0
    assert_state_equals_offline(pipeline, states)
    assert_spot_tables(pipeline, ref)
    # `twinledger report` reads the same spot tables for one spot account
    spot_id = sorted(a for a, _ in ref.balances)[0]
    (acc,) = report(pipeline.client, spot_id)
    assert {b["asset"]: Decimal(b["total"]) for b in acc["asset_balances"]} == {
        asset: rec["total"] for (a, asset), rec in ref.balances.items() if a == spot_id}
    assert len(acc["cash_flows"]) == ref.per_account[spot_id, "cashflow"] > 0
    assert len(acc["portfolio_snapshots"]) == ref.per_account[spot_id, "portfolio"] > 0
    assert f"account {spot_id}" in format_report([acc])


def test_sigkill_worker_and_sink_mid_stream_then_restart(pipeline: Pipeline):
    events = spot_mix(11)
    states, outputs, ref = offline_fold_spot(events)
    expected = expected_rows(events, outputs)

    pipeline.start_sink()
    pipeline.start_worker()
    half = len(events) // 2
    pipeline.produce(events[:half])
    # Kill both while they are busy: wait for the first rows, then SIGKILL.
    deadline = time.monotonic() + 180
    while pipeline.counts().get("account_snapshots", {}).get("count", 0) < 500:
        assert time.monotonic() < deadline, pipeline.logs()
        time.sleep(0.2)
    pipeline.produce(events[half:])
    assert pipeline.worker is not None and pipeline.sink is not None
    pipeline.worker.kill()
    pipeline.sink.kill()
    before = pipeline  # same data dir, same groups: a restart, not a new deployment
    before.start_sink()
    before.start_worker()
    counts = before.wait_for(expected)
    assert_exactly_once(counts, expected)
    assert_state_equals_offline(before, states)
    assert_spot_tables(before, ref)


def test_one_percent_malformed_records_go_to_dead_letters(pipeline: Pipeline):
    events = venue_only(generate_events(3_000, 20, seed=5))[:2_000]
    states, outputs = offline_fold(events)
    expected = expected_rows(events, outputs)
    codec = Codec.load()
    rng = random.Random(3)
    bad: list[tuple[bytes, bytes, str]] = []
    for i in range(len(events) // 100):  # 1%
        kind = i % 4
        account = events[rng.randrange(len(events))]["account_id"]
        if kind == 0:
            value = bytes(rng.randrange(256) for _ in range(40))
            reason = ""
        elif kind == 1:
            value = b"\x00\x00\x00\x03\xe7" + b"\x02ab"
            reason = "unknown schema id"
        elif kind == 2:
            value = (b'{"kind":"fill","event_id":"nan-%d","account_id":"%s","price":NaN}'
                     % (i, account.encode()))
            reason = "magic"
        else:
            rec = fold_dict_to_venue_record({
                "kind": "fill", "event_id": f"neg-{i}", "account_id": account, "venue": "x",
                "ts": "2024-01-01T00:00:00Z", "symbol": "BTCUSDT", "side": "BUY",
                "qty": dec_str(Decimal("-1")), "price": "100"})
            value = codec.encode("VenueEvent", rec)
            reason = "qty"
        bad.append((account.encode(), value, reason))

    pipeline.start_sink()
    pipeline.start_worker()
    # Interleave the bad records with the valid ones.
    step = max(1, len(events) // (len(bad) + 1))
    pending = list(bad)
    for i, event in enumerate(events):
        pipeline.send_event(event)
        if i % step == step - 1 and pending:
            key, value, _ = pending.pop()
            pipeline.produce_raw("venue.events", key, value)
    for key, value, _ in pending:
        pipeline.produce_raw("venue.events", key, value)
    pipeline.producer.flush()
    sent_bad = bad
    expected_dead = len(sent_bad)
    counts = pipeline.wait_for({**expected, "dead_letters": expected_dead})
    assert_exactly_once(counts, {**expected, "dead_letters": expected_dead})
    rows = pipeline.read("dead_letters", limit=10_000)
    assert len(rows) == expected_dead
    assert all(r["reason"] for r in rows)
    reasons = " ".join(r["reason"] for r in rows).lower()
    assert "unknown schema id" in reasons and "magic" in reasons and "qty" in reasons
    assert_state_equals_offline(pipeline, states)



def test_worker_serves_live_state_valued_at_the_marks_topic(pipeline: Pipeline):
    """Marks flow from market.marks into the fold; the worker serves live state."""
    import json
    import urllib.error
    import urllib.request

    pipeline.start_sink()
    pipeline.start_worker()
    base = {"account_id": "", "venue": "binance", "ts": "2024-05-06T09:00:00Z"}
    pipeline.produce([{**base, "kind": "mark", "event_id": "m1", "symbol": "BTCUSDT",
                       "price": "61000"}])
    web = f"http://127.0.0.1:{pipeline.env['TWINLEDGER_WORKER_WEB_PORT']}"

    def account(acct: str) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{web}/accounts/{acct}", timeout=5) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
            return None
        except OSError:
            return None

    fill = {**base, "account_id": "acct-m", "ts": "2024-05-06T09:01:00Z"}
    deadline = time.monotonic() + 120
    n = 0
    while True:
        # A fill per round until the worker has seen the mark: the marks reader
        # reads at its own pace, so the first fills may be valued without it.
        n += 1
        pipeline.produce([{**fill, "kind": "fill", "event_id": f"f{n}", "symbol": "BTCUSDT",
                           "side": "BUY", "qty": "0.5", "price": "60000"}])
        pipeline.wait_for({"account_snapshots": n}, timeout=60)
        view = account("acct-m")
        assert view is not None
        pos = [p for p in view["positions"] if p["symbol"] == "BTCUSDT"][0]
        if Decimal(pos["unrealized_pnl"]) != 0:
            break
        assert time.monotonic() < deadline, view
    qty = Decimal("0.5") * n
    assert Decimal(pos["qty"]) == qty
    assert Decimal(pos["unrealized_pnl"]) == (Decimal("61000") - Decimal("60000")) * qty
    assert account("no-such-account") is None


def test_replay_from_earliest_gives_the_same_rows_again(pipeline: Pipeline):
    """Reset both groups to the earliest offsets: the same rows, none added twice."""
    import subprocess
    import sys

    events = venue_only(generate_events(1_500, 10, seed=21))[:1_000]
    states, outputs = offline_fold(events)
    expected = expected_rows(events, outputs)
    pipeline.start_sink()
    pipeline.start_worker()
    pipeline.produce(events)
    before = pipeline.wait_for(expected)
    assert_exactly_once(before, expected)
    snapshot_rows = pipeline.read("snapshots", limit=10_000)

    pipeline.stop()
    for group in ("worker", "sink"):
        done = subprocess.run([sys.executable, "-m", "streams.cli", "replay", "--group", group,
                               "--to-earliest"], env=pipeline.env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert "-> 0" in done.stderr
    pipeline.start_sink()
    pipeline.start_worker()
    # The worker re-reads every event, and every one is a duplicate of what its state applied.
    import urllib.request

    metrics_url = f"http://127.0.0.1:{pipeline.env['TWINLEDGER_WORKER_WEB_PORT']}/metrics/prometheus"

    def duplicates_seen() -> float:
        try:
            with urllib.request.urlopen(metrics_url, timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return 0.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith('twinledger_worker_events_total{status="duplicate"}'))

    deadline = time.monotonic() + 180
    while duplicates_seen() < len(events):
        assert time.monotonic() < deadline, (duplicates_seen(), pipeline.logs())
        time.sleep(0.5)
    assert duplicates_seen() == len(events)
    after = pipeline.wait_for(expected)
    assert_exactly_once(after, expected)
    assert pipeline.read("snapshots", limit=10_000) == snapshot_rows
    assert_state_equals_offline(pipeline, states)
