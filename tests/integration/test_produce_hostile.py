"""Issue 13: ``twinledger produce`` on hostile lines, against the real broker.

A line with invalid UTF-8, a 2 MB field, a lone surrogate or 100,000-deep
nesting is reported with its line number and reason and dead-lettered with
its bytes; the valid records before and after it arrive on ``venue.events``
(and the mark on ``market.marks``), and there is no traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from streams.codec import Codec
from streams.produce import DEAD_LETTER_KEEP
from tests.integration.pipeline import Pipeline

pytestmark = pytest.mark.integration


def _fill(i: int) -> dict[str, Any]:
    return {"kind": "fill", "event_id": f"good-{i}", "account_id": "acc-h", "venue": "test",
            "ts": f"2026-01-05T09:00:{i:02d}Z", "symbol": "FET-USDT", "side": "BUY",
            "qty": "1", "price": "0.1878"}


def _consume(bootstrap: str, topic: str, want: int, timeout: float = 60) -> list[Any]:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < want and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            got.append(msg)
        # anything beyond what was expected would be a bug: give it a moment to show
        end = time.monotonic() + 2
        while time.monotonic() < end:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                got.append(msg)
    finally:
        consumer.close()
    return got


def test_produce_reports_and_dead_letters_bad_lines_and_sends_the_rest(kafka_bootstrap: str,
                                                                      tmp_path: Path):
    pipeline = Pipeline(kafka_bootstrap, tmp_path, name="produce-hostile")
    pipeline.create_topics()
    big = json.dumps({**_fill(4), "event_id": "x" * (2 * 1024 * 1024)}).encode()
    lines: list[bytes] = [
        json.dumps(_fill(1)).encode(),
        json.dumps(_fill(2)).replace('"acc-h"', '"acc-h\xff"').encode("latin-1"),  # 2
        json.dumps(_fill(3)).encode(),
        big,  # 4: a 2 MB field
        json.dumps(_fill(5)).encode(),
        json.dumps(_fill(6)).replace('"acc-h"', '"acc-\\ud800"').encode(),  # 6: lone surrogate
        json.dumps({"kind": "mark", "account_id": "", "ts": "2026-01-05T09:00:00Z",
                    "symbol": "FET-USDT", "price": "0.19"}).encode(),
        b"[" * 100_000 + b"]" * 100_000,  # 8
        json.dumps({**_fill(9), "qty": "1_000"}).encode(),  # 9
        json.dumps(_fill(10)).encode(),
    ]
    bad_lines = {2: "not valid UTF-8", 4: "longer than 256 characters", 6: "lone surrogate",
                 8: "nested deeper than", 9: "is not a decimal"}
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    done = subprocess.run([sys.executable, "-m", "streams.cli", "produce", str(path)],
                          env=pipeline.env, capture_output=True, timeout=180, check=False)
    err = done.stderr.decode()
    assert "Traceback" not in err, err
    assert done.returncode == 0, err
    for line, reason in bad_lines.items():
        assert any(row.startswith(f"line {line}: rejected: ") and reason in row
                   for row in err.splitlines()), (line, err)
    assert f"{len(bad_lines)} rejected" in err

    codec = Codec.load()
    settings = pipeline.settings
    events = _consume(kafka_bootstrap, settings.topic("venue.events"), 4)
    ids = [codec.decode(m.value())[1]["event_id"] for m in events]
    assert ids == ["good-1", "good-3", "good-5", "good-10"]
    marks = _consume(kafka_bootstrap, settings.topic("market.marks"), 1)
    assert [codec.decode(m.value())[1]["symbol"] for m in marks] == ["FET-USDT"]

    dead = _consume(kafka_bootstrap, settings.topic("ledger.deadletter"), len(bad_lines))
    records = sorted((codec.decode(m.value())[1] for m in dead),
                     key=lambda r: r["source_offset"])
    assert [r["source_offset"] for r in records] == sorted(bad_lines)
    by_line = {r["source_offset"]: r for r in records}
    assert by_line[2]["original_value"] == lines[1]
    assert by_line[6]["original_value"] == lines[5]
    # the 2 MB line keeps its head, so that its dead letter fits the broker too
    assert by_line[4]["original_value"] == big[:DEAD_LETTER_KEEP]
    assert f"original {len(big)} bytes" in by_line[4]["reason"]
    assert all(r["source_topic"] == "gateway:fold" for r in records)
