"""Raw venue payloads end to end: `twinledger produce --venue` -> Kafka -> worker -> ClickHouse.

The LEDGER C2 case from raw BingX frames (the first exit carries only the MARKET
protective bound 0.229): the trade books 242.7312, leg 1 repaired by the
exchange figure, and a payload the gateway cannot trust lands in dead_letters
with its original bytes.
"""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from streams.gateways import OrderMemory, Rejection, normalize_payload
from tests.integration.pipeline import Pipeline

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "venues" / "bingx" / "fet_short_c2.jsonl"
GARBAGE = b'{"e":"ORDER_TRADE_UPDATE","o":{"s":"FET-USDT","X":"FILLED","z":"NaN"}}'


def test_raw_bingx_c2_through_the_pipeline(pipeline: Pipeline, tmp_path: Path):
    raw = FIXTURE.read_bytes().rstrip(b"\n") + b"\n" + GARBAGE + b"\n"
    path = tmp_path / "raw.jsonl"
    path.write_bytes(raw)
    memory = OrderMemory()
    normalized = []
    for line in raw.splitlines():
        result = normalize_payload("bingx", line, memory, "acct-c2")
        if not isinstance(result, Rejection):
            normalized += result
    assert normalized and isinstance(normalize_payload("bingx", GARBAGE, OrderMemory(), "acct-c2"),
                                     Rejection)

    pipeline.start_sink()
    pipeline.start_worker()
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "produce", "--venue", "bingx", "--account", "acct-c2",
         str(path)], env=pipeline.env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "1 rejected" in done.stderr

    expected = len({e["event_id"] for e in normalized})
    counts = pipeline.wait_for({"venue_events": expected, "account_snapshots": expected,
                                "dead_letters": 1})
    assert counts["venue_events"]["count"] == counts["venue_events"]["uniq"] == expected
    assert counts["dead_letters"]["count"] == 1

    dead = pipeline.read("dead_letters")
    assert dead[0]["source_topic"] == "gateway:bingx"
    assert dead[0]["original_text"] == GARBAGE.decode()
    assert dead[0]["reason"]

    legs = pipeline.read("trade_legs", account="acct-c2")
    final = [r for r in legs if r["action"] in ("close", "settle")]
    assert final and Decimal(final[-1]["cumulative_pnl"]) == Decimal("242.7312")
    assert all(Decimal(r["pnl_leg"]) != Decimal("-3214.4652") for r in legs)
    assert any(r["pnl_source"] == "exchange" for r in legs)
