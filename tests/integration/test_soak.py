"""The soak, short: a year-old backfill through worker and sink across a broker restart.

``make soak`` runs 200,000 events over 1,000 accounts; this runs the same
script (``bench/soak.py``) with 20,000 events over 200 accounts, on a broker
of its own (its own port and data dir, started and stopped by the soak with
``ops/kafka/kafka.sh``), so the restart never touches the session's broker.
After the compare, the worker is stopped, its local store deleted, and its
state, restored from the changelog alone, compared again. It passes when every account's live state equals ``twinledger fold`` of the
same events, ``venue.events`` holds each event in sent order (a re-send of the
producer across the restart must be answered "duplicate"), the row
counts match the offline fold and ``twinledger verify`` exits 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.soak import Soak, parse_args

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(420)
def test_short_soak_year_old_backfill_across_a_broker_restart(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]):
    args = parse_args(["--events", "20000", "--accounts", "200", "--workdir", str(tmp_path),
                       "--progress-every", "15", "--stall-seconds", "90",
                       "--timeout-drain", "240"])
    soak = Soak(args)
    status = soak.run()
    result = soak.result
    out = capsys.readouterr().out
    verify = result.get("verify")
    problems = verify.get("problems") if isinstance(verify, dict) else verify
    assert status == 0 and result["verdict"] == "pass", (
        json.dumps({k: v for k, v in result.items() if k != "verify"}, default=str)[:4000]
        + f"\nverify problems: {str(problems)[:2000]}\n" + out[-6000:])
    assert result["broker_restart"]["down_s"] > 0
    order = result["log_order"]
    assert order["missing"] == 0 and order["unknown"] == 0 and order["inversions"] == 0
    # A re-send of librdkafka's producer across the restart may double records
    # (bench/soak.py log_order); each must have been answered "duplicate".
    assert order["records"] == 20_000 + order["doubled"]
    if order["doubled"]:
        assert order["duplicates_counted"] >= order["doubled"]
    logs = result["worker_logs"]  # the worker, and the one started after it from the changelog
    assert len(logs["read"]) >= 2 and not logs["stalled"] and not logs["false_gaps"]
    # A worker that exits is started again, as a supervisor does: never after a stall.
    assert all(r["exit"] != 70 for r in result.get("worker_restarts", []))
    restart = result["restart_workers"]  # state restored from the changelog alone
    assert restart["stores_deleted"] == 1 and restart["state_mismatches"] == []
    assert result["accounts_compared"] == 202  # 200 futures + 2 Kraken spot accounts
    assert result["first_ts"] < "2025-"  # stamped more than a year before the run
