"""Any worker answers any account: two real worker processes on the six partitions.

An account's pages are answered by the worker holding its partition; a
request to the other worker is forwarded there (with the bearer token) and
answered alike. The partition the worker computes for an account is where
the producer's records actually landed. A worker stopped with SIGTERM leaves
the group, so the survivor takes its partitions and answers every account
long before the session timeout would have handed them over.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from streams.app import ROUTED_HEADER, account_partition
from streams.ledger.synth import generate_events
from streams.procs import wait_until
from tests.integration.pipeline import Pipeline, free_port

pytestmark = pytest.mark.integration

TOKEN = "t0ken-for-the-any-worker-test"
PARTITIONS = 6


def _get(port: int, path: str, token: str | None = TOKEN,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 - loopback test URL
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if body[:1] == b"{" else body
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        return 0, str(exc)


def _landed(bootstrap: str, topic: str, expected: int) -> dict[str, set[int]]:
    """account -> partitions its venue.events records are on, read back from the broker."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{topic}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen: dict[str, set[int]] = {}
    count = 0
    deadline = time.monotonic() + 60
    try:
        while count < expected and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            seen.setdefault(msg.key().decode("utf-8"), set()).add(msg.partition())
            count += 1
    finally:
        consumer.close()
    assert count == expected, (count, expected)
    return seen


def test_two_workers_answer_every_account_and_a_survivor_after_a_stop(pipeline: Pipeline):
    pipeline.env["TWINLEDGER_HTTP_TOKEN"] = TOKEN
    events = generate_events(600, 18, seed=31, spot_accounts=3)
    accounts = sorted({e["account_id"] for e in events if e["account_id"]})
    assert len(accounts) >= 20
    spot = sorted({e["account_id"] for e in events
                   if e["account_id"] and e.get("venue") == "kraken"})
    assert spot
    ports = {"a": free_port(), "b": free_port()}
    workers = {name: pipeline.start_another_worker(name, port)
               for name, port in ports.items()}
    try:
        pipeline.produce(events)

        # The partition the worker routes by is where the producer's records landed.
        landed = _landed(pipeline.settings.kafka_bootstrap,
                         pipeline.settings.topic("venue.events"),
                         sum(1 for e in events if e["account_id"]))
        for account in accounts:
            assert landed[account] == {account_partition(account, PARTITIONS)}, account

        def assigned() -> dict[str, list[int]]:
            out = {}
            for name, port in ports.items():
                status, doc = _get(port, "/ready")
                out[name] = doc["assigned_partitions"] if status in (200, 503) else []
            return out

        def split_between_both() -> bool:
            for child in workers.values():
                assert child.alive(), child.log_tail(60)
            held = assigned()
            return (all(held.values())
                    and sorted(held["a"] + held["b"]) == list(range(PARTITIONS)))

        wait_until(split_between_both, 240, what="both workers ready on disjoint partitions")
        held = assigned()
        owners = {account_partition(a, PARTITIONS) for a in accounts}
        assert owners & set(held["a"]) and owners & set(held["b"]), (held, owners)

        def answers(port: int, path: str) -> Any:
            status, doc = _get(port, path)
            return doc if status == 200 else None

        # Every account through both workers: 200 and the same answer (once folded).
        pages = [f"/accounts/{a}" for a in accounts]
        # A fixed as_of (mark ages count to it, not to each worker's clock); the query
        # string travels with the forwarded request.
        pages += [f"/accounts/{a}/positions?as_of=2027-01-01T00:00:00Z" for a in spot[:1]]
        pages += [f"/accounts/{a}/equity?as_of=2027-01-01T00:00:00Z" for a in spot[:1]]
        pages += [f"/accounts/{a}/trades?limit=3" for a in spot[:1]]
        wanted: dict[str, Any] = {}

        def all_answered() -> bool:
            for path in pages:
                if path in wanted:
                    continue
                docs = [answers(port, path) for port in ports.values()]
                if docs[0] is None or docs[0] != docs[1]:
                    return False
                wanted[path] = docs[0]
            return True

        try:
            wait_until(all_answered, 180, interval=1.0,
                       what="every account through both workers")
        except TimeoutError:
            pending = [p for p in pages if p not in wanted]
            seen = {p: [_get(port, p) for port in ports.values()] for p in pending[:3]}
            raise AssertionError(f"{len(pending)} pages unanswered, e.g. {seen}; "
                                 f"partitions {assigned()}") from None
        # Settled: the last event of every account is folded; ask once more, all at once.
        time.sleep(2.0)
        wanted.clear()
        assert all_answered()
        last_seq = {a: wanted[f"/accounts/{a}"] for a in accounts}
        for path in pages:
            for port in ports.values():
                assert answers(port, path) == wanted[path], path

        # The token is checked by the worker asked, and carried to the owner.
        foreign = next(a for a in accounts if account_partition(a, PARTITIONS) in held["b"])
        assert _get(ports["a"], f"/accounts/{foreign}", token=None)[0] == 401
        assert _get(ports["a"], f"/accounts/{foreign}", token="x" * 20)[0] == 401
        # A forwarded request is answered by its receiver or refused, never forwarded again.
        status, doc = _get(ports["a"], f"/accounts/{foreign}", headers={ROUTED_HEADER: "test"})
        assert status == 503 and doc["error"] == "unavailable", (status, doc)
        assert _get(ports["b"], f"/accounts/{foreign}",
                    headers={ROUTED_HEADER: "test"})[0] == 200
        # Unknown accounts are 404 wherever they are asked.
        for port in ports.values():
            status, doc = _get(port, "/accounts/no-such-account")
            assert status == 404 and doc["error"] == "account_not_found", (status, doc)

        # Stop b (SIGTERM): a clean stop leaves the group, a answers everything.
        stopped_at = time.monotonic()
        assert workers["b"].stop() == 0, workers["b"].log_tail(60)

        def survivor_answers_all() -> bool:
            assert workers["a"].alive(), workers["a"].log_tail(60)
            return all(answers(ports["a"], path) == wanted[path] for path in pages)

        try:
            wait_until(survivor_answers_all, 120, interval=0.5,
                       what="the survivor answering all")
        except TimeoutError:
            wrong = {p: _get(ports["a"], p) for p in pages
                     if answers(ports["a"], p) != wanted[p]}
            raise AssertionError(f"the survivor answers {len(wrong)} pages otherwise: "
                                 f"{dict(list(wrong.items())[:2])} wanted "
                                 f"{[wanted[p] for p in list(wrong)[:2]]}; "
                                 f"partitions {assigned()}") from None
        took = time.monotonic() - stopped_at
        wait_until(lambda: assigned()["a"] == list(range(PARTITIONS)), 30,
                   what="the survivor holding every partition")
        # Well under the 30 s session timeout: the stopped worker left the group.
        assert took < 25, f"survivor answered every account only after {took:.1f} s"
        assert last_seq == {a: wanted[f"/accounts/{a}"] for a in accounts}
        print(f"survivor answered every account {took:.1f} s after the stop")
    finally:
        for child in workers.values():
            child.stop()
        logs = Path(pipeline.root / "logs")
        for log in sorted(logs.glob("worker-*.log")):
            text = log.read_text(errors="replace")
            assert "Traceback" not in text, f"{log.name}:\n{text[-4000:]}"
