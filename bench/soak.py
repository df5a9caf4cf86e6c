"""``make soak``: a year-old backfill through the whole pipeline, with a broker restart.

Produces N synthetic venue events over M accounts (default 200,000 / 1,000,
``--events``/``--accounts`` or ``TL_SOAK_EVENTS``/``TL_SOAK_ACCOUNTS``), every
timestamp shifted ``--days-back`` (400) days into the past so a time retention
would delete them, as fast as the producer goes, through a real worker and a
real sink (child processes, their own topic prefix, groups, ports and data
dir), on a broker this script starts itself on its own port and data dir
(``--port``, default a free pair below the OS's ephemeral port range, so nothing
else can take it while the broker is down; never the shared one). When half the events are
sent, that broker is stopped and started again (``ops/kafka/kafka.sh``).
With ``--second-worker-at 0.25``, a second worker joins the group when a
quarter is sent: the partitions it takes over may have no committed offset
yet, and a batch the first worker took before the rebalance is folded after
it (docs/operations.md says what such runs still find).

It ends when the worker's and the sink's committed offsets reach the end of
every topic they read, then checks every account's live state (worker
``GET /accounts/{account}``; the sink's last snapshot) against ``twinledger
fold`` of the same events and the row counts against the offline fold; then
stops the workers, deletes their local stores, starts them again and compares
their state, restored from the changelogs alone, once more; and runs
``twinledger verify`` with the soak's environment.

Output: one JSON line per progress tick and per finished phase, then the
verdict ``{"verdict": "pass"|"fail"|"stalled", ...}``. Every phase has a
timeout; a phase that exceeds it, or a drain that makes no progress for
``--stall-seconds``, is reported by name with the worker's ``/progress`` and
log tails, and the exit status is non-zero (1 mismatch or verify failed,
2 stalled or timed out, 3 the watchdog had to end a blocked phase).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.phases import Phases, PhaseTimeout, emit  # noqa: E402

KAFKA_SH = ROOT / "ops" / "kafka" / "kafka.sh"
#: Workers the soak starts again after they exited (a supervisor's job), at most.
MAX_WORKER_RESTARTS = 3


def worker_events_by_status(ports: list[int], timeout: float = 10.0) -> dict[str, int]:
    """``twinledger_worker_events_total`` by status, summed over the workers on ``ports``
    (their ``/metrics/prometheus``); OSError when one does not answer."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, int] = {}
    for port in ports:
        with urllib.request.urlopen(  # noqa: S310 - loopback URL of our own child
                f"http://127.0.0.1:{port}/metrics/prometheus", timeout=timeout) as resp:
            text = resp.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "twinledger_worker_events_total":
                    status = sample.labels["status"]
                    totals[status] = totals.get(status, 0) + int(sample.value)
    return totals


class OwnBroker:
    """The soak's own broker: ``kafka.sh`` with its own port and data dir, nothing shared."""

    def __init__(self, port: int, data_dir: Path, log_path: Path) -> None:
        self.port = port
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("TWINLEDGER_KAFKA_") and k != "KAFKA_BOOTSTRAP_SERVERS"}
        self.env.update({"TWINLEDGER_KAFKA_PORT": str(port),
                         "TWINLEDGER_DATA_DIR": str(data_dir)})
        self.data_dir = data_dir
        self.log_path = log_path
        self.started = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, action: str, timeout: float) -> None:
        with self.log_path.open("ab") as log:
            proc = subprocess.run(  # noqa: S603 - our own script, fixed argv
                ["bash", str(KAFKA_SH), action], env=self.env,  # noqa: S607
                stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"kafka.sh {action} on port {self.port} exited "
                               f"{proc.returncode}:\n{self.log_tail(30)}")

    def start(self, timeout: float = 180.0) -> None:
        if "TWINLEDGER_KAFKA_VERSION" not in self.env:
            # The restart must run the version the storage was formatted with, even
            # if the pin in ops/kafka/pom.xml changes while the soak runs.
            out = subprocess.run(  # noqa: S603 - our own script, fixed argv
                ["bash", str(KAFKA_SH), "env"], env=self.env,  # noqa: S607
                capture_output=True, text=True, timeout=30, check=True).stdout
            version = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
            self.env["TWINLEDGER_KAFKA_VERSION"] = version["KAFKA_VERSION"]
        self._run("start", timeout)
        self.started = True

    def stop(self, timeout: float = 90.0) -> None:
        if self.started:
            self._run("stop", timeout)

    def log_tail(self, lines: int = 20) -> str:
        out = []
        for path in (self.log_path, self.data_dir / "kafka" / "logs" / "server.log"):
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            out.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(out)


def ephemeral_low() -> int:
    """First port of the OS's ephemeral range (Linux: 32768), which bind(0) and
    outgoing connections take from."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair(low: int = 20_000) -> int:
    """A free client port whose controller port (+1) is free too, BELOW the ephemeral range.

    While the soak's broker is down for its restart its ports are free, and a port
    in the ephemeral range can be taken by any process on the machine (a client's
    outgoing connection, a test's bind(0)); the broker then cannot come back
    ("Address already in use", seen in a soak run). Ports below the range are never
    handed out by the OS.
    """
    import random

    high = min(ephemeral_low(), 65_535) - 2
    rng = random.Random()  # noqa: S311 - picking a port, not a secret
    for _ in range(500):
        port = rng.randrange(low, high)
        if port != 39092 and _bindable(port) and _bindable(port + 1):
            return port
    raise RuntimeError(f"no free port pair in {low}..{high}")


def make_events(n: int, accounts: int, spot: int, seed: int, days_back: float
                ) -> list[dict[str, Any]]:
    """``n`` venue events (no marks) over ``accounts`` + ``spot`` accounts, shifted into the past."""
    from streams.ledger.synth import generate_events

    extra = max(n // 20, 1_000)
    events = [e for e in generate_events(n + extra, accounts, seed=seed, spot_accounts=spot)
              if e["kind"] != "mark"][:n]
    shift = timedelta(days=days_back)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    for e in events:
        ts = datetime.strptime(e["ts"], fmt).replace(tzinfo=UTC) - shift
        e["ts"] = ts.strftime(fmt)
    return events


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(tempfile.mkdtemp(prefix="tl-soak-", dir=args.workdir))
        self.broker = OwnBroker(args.port, self.root / "broker", self.root / "kafka-sh.log")
        self.pipeline: Any = None
        self.second: Any = None  # the worker that joins midway (``--second-worker-at``)
        self.restarts: list[dict[str, Any]] = []  # workers ``_supervise`` started again
        self.phases = Phases(self._hard_stall)
        self.result: dict[str, Any] = {"events": args.events, "accounts": args.accounts,
                                       "spot_accounts": args.spot_accounts,
                                       "days_back": args.days_back, "workdir": str(self.root)}

    # -- what the pipeline says -----------------------------------------------------
    def worker_get(self, path: str, timeout: float = 5.0,
                   port: int | None = None) -> tuple[int, Any]:
        """(status, JSON) of a worker page: the first worker's, or the one on ``port``."""
        port = port or self.pipeline.settings.worker_web_port
        try:
            with urllib.request.urlopen(  # noqa: S310 - loopback URL of our own child
                    f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"{}")
            except ValueError:
                return exc.code, {}

    def worker_ports(self) -> list[int]:
        """The web ports of the running workers: the first one's, then the second's."""
        ports = [self.pipeline.settings.worker_web_port]
        if self.second is not None:
            ports.append(int(self.second.env["TWINLEDGER_WORKER_WEB_PORT"]))
        return ports

    def worker_duplicates(self) -> int | None:
        """How many venue events the workers answered "duplicate" (their metrics), or None."""
        counts = self.worker_events()
        return None if counts is None else counts.get("duplicate", 0)

    def worker_events(self) -> dict[str, int] | None:
        """The workers' ``twinledger_worker_events_total`` by status, summed, or None.

        Counted since each worker started (a restarted worker starts again at 0).
        """
        try:
            return worker_events_by_status(self.worker_ports())
        except OSError:
            return None

    def progress(self) -> dict[str, Any]:
        try:
            return dict(self.worker_get("/progress")[1])
        except (OSError, ValueError) as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}

    def offsets(self) -> dict[str, Any]:
        """Committed vs end offsets of the worker's and the sink's groups (Kafka, not ClickHouse)."""
        from streams.infra.kafka_admin import committed_offsets, watermarks
        from streams.topology import load_topology

        s = self.pipeline.settings
        source = s.topic("venue.events")
        sink_topics = sorted({s.topic(t) for t in load_topology(s.topology_path).sinks.values()})
        marks = watermarks(s.kafka_bootstrap, sorted({source, *sink_topics}))

        def lag_of(group: str, topics: list[str]) -> tuple[int, int]:
            done = lag = 0
            for tp, off in committed_offsets(s.kafka_bootstrap, group, topics).items():
                lo, hi = marks.get(tp, (0, 0))
                at = lo if off is None else max(off, lo)
                done += at
                lag += max(hi - at, 0)
            return done, lag

        w_done, w_lag = lag_of(s.app_id, [source])
        s_done, s_lag = lag_of(s.sink_group, sink_topics)
        return {"worker_committed": w_done, "worker_lag": w_lag,
                "sink_committed": s_done, "sink_lag": s_lag,
                "source_end": sum(hi for (t, _), (_, hi) in marks.items() if t == source)}

    def diagnose(self, phase: str, why: str) -> dict[str, Any]:
        doc: dict[str, Any] = {"stalled_phase": phase, "why": why}
        p = self.pipeline
        if p is not None:
            doc["worker_progress"] = self.progress()
            box: dict[str, Any] = {}
            t = threading.Thread(target=lambda: box.update(self._safe_offsets()), daemon=True)
            t.start()
            t.join(30)
            doc["offsets"] = box or "no answer from the broker within 30 s"
            for name, child in (("worker", p.worker), ("sink", p.sink),
                                ("second_worker", self.second)):
                if child is not None:
                    doc[f"{name}_alive"] = child.alive()
                    doc[f"{name}_log_tail"] = child.log_tail(40)
        doc["broker_log_tail"] = self.broker.log_tail(20)
        return doc

    def _safe_offsets(self) -> dict[str, Any]:
        try:
            return self.offsets()
        except Exception as exc:  # noqa: BLE001 - a diagnosis must not raise
            return {"error": f"{type(exc).__name__}: {exc}"}

    def _hard_stall(self, phase: str) -> None:
        doc = self.diagnose(phase, f"blocked past its timeout + {self.phases.hard_grace:.0f} s")
        emit({"stall": doc})
        self.cleanup(keep=True)
        emit({**self.result, "verdict": "stalled", "stalled_phase": phase,
              "phases": self.phases.seconds})

    def cleanup(self, keep: bool) -> None:
        if self.pipeline is not None:
            # Let go of the producer first: it would log every refused reconnect
            # once the broker is stopped.
            self.pipeline._producer = None
            for child in (self.second, self.pipeline.worker, self.pipeline.sink):
                if child is not None:
                    try:
                        child.stop(timeout=20)
                    except Exception as exc:  # noqa: BLE001 - clean up the rest anyway
                        emit({"cleanup_error": f"{child.command}: {exc}"})
        try:
            self.broker.stop()
        except Exception as exc:  # noqa: BLE001
            emit({"cleanup_error": f"broker: {exc}"})
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- the run ----------------------------------------------------------------------
    def run(self) -> int:
        a = self.args
        started = time.monotonic()
        status = 1
        try:
            status = self._run()
        except PhaseTimeout as exc:
            emit({"stall": self.diagnose(exc.phase, exc.why)})
            self.result.update(verdict="stalled", stalled_phase=exc.phase, why=exc.why)
            status = 2
        except Exception as exc:  # noqa: BLE001 - the verdict names any failure
            phase = self.phases.current or self.phases.failed or "setup"
            emit({"error": self.diagnose(phase, f"{type(exc).__name__}: {exc}")})
            self.result.update(verdict="fail", failed_phase=phase,
                               why=f"{type(exc).__name__}: {exc}")
            status = 1
        finally:
            self.phases.current = None
            self.cleanup(keep=a.keep or status != 0)
        self.result["phases"] = self.phases.seconds
        self.result["total_seconds"] = round(time.monotonic() - started, 1)
        emit(self.result)
        return status

    def _run(self) -> int:
        a = self.args
        from tests.integration.live_state import (
            expected_rows,
            offline_reference,
            sink_state_mismatches,
            worker_state_mismatches,
        )
        from tests.integration.pipeline import Pipeline

        ph = self.phases
        with ph.phase("broker_start", a.timeout_broker) as fig:
            self.broker.start(timeout=a.timeout_broker)
            fig["kafka_version"] = self.result["kafka_version"] = \
                self.broker.env.get("TWINLEDGER_KAFKA_VERSION")
        with ph.phase("generate", 120 + a.events / 1_000):
            events = make_events(a.events, a.accounts, a.spot_accounts, a.seed, a.days_back)
            accounts = {e["account_id"] for e in events}
            self.result.update(events=len(events), accounts_total=len(accounts),
                               first_ts=events[0]["ts"], last_ts=events[-1]["ts"])
            emit({"generated": len(events), "accounts": len(accounts),
                  "first_ts": events[0]["ts"], "last_ts": events[-1]["ts"]})
        with ph.phase("offline_fold", 120 + a.events / 500):
            ref = offline_reference(events)
            if ref.doc["rejected"]:
                raise RuntimeError(f"the offline fold rejected lines: {ref.doc['rejected'][:3]}")
        with ph.phase("start_pipeline", a.timeout_start):
            p = self.pipeline = Pipeline(self.broker.bootstrap, self.root / "pipeline", name="soak")
            p.create_topics()
            p.start_sink()
            p.start_worker()
            while self.worker_ready() is False:
                ph.check()
                time.sleep(0.5)
        with ph.phase("produce", a.timeout_produce):
            self._produce_with_restart(events)
        with ph.phase("drain", a.timeout_drain):
            self._drain(len(events))
        with ph.phase("log_order", 120 + a.events / 1_000):
            order = self.log_order(events)
            # Read now: the workers' counters start again at a restart.
            self.result["worker_events"] = self.worker_events()
            if order["doubled"]:
                order["duplicates_counted"] = self.worker_duplicates()
            self.result["log_order"] = order
            emit({"log_order": {k: v for k, v in order.items() if k != "examples"}})
        with ph.phase("compare", 300 + a.accounts / 10):
            prog = self.progress()
            self.result["gaps"] = prog.get("gaps")
            worker_bad = worker_state_mismatches(ref, self._account_view)
            rows = p.read("accounts", limit=10_000)
            sink_bad = sink_state_mismatches(ref, rows)
            counts = p.counts()
            want = expected_rows(ref)
            count_bad = [f"{t}: count {counts.get(t, {}).get('count')} uniq "
                         f"{counts.get(t, {}).get('uniq')} != expected {n}"
                         for t, n in want.items()
                         if not counts.get(t, {}).get("count") == counts.get(t, {}).get("uniq") == n]
            dead = counts.get("dead_letters", {}).get("count", 0)
            if dead:
                count_bad.append(f"dead_letters: {dead} rows, expected 0")
            self.result.update(accounts_compared=len(ref.doc["accounts"]),
                               worker_state_mismatches=worker_bad,
                               sink_state_mismatches=sink_bad, count_mismatches=count_bad,
                               rows=want)
            emit({"compared_accounts": len(ref.doc["accounts"]),
                  "worker_state_mismatches": len(worker_bad),
                  "sink_state_mismatches": len(sink_bad), "count_mismatches": len(count_bad)})
        restart_bad: list[str] = []
        if a.restart_workers:
            with ph.phase("restart_workers", a.timeout_start + 120 + a.accounts / 5):
                restart_bad = self._restart_workers(ref, worker_state_mismatches)
        with ph.phase("verify", a.timeout_verify):
            rc, out, err = self._verify()
            self.result["verify_exit"] = rc
            try:
                self.result["verify"] = json.loads(out)
            except ValueError:
                self.result["verify"] = out[-4000:]
            if err.strip():
                self.result["verify_stderr"] = err[-2000:]
            emit({"verify_exit": rc})
        dup_ok = True
        if order["doubled"]:
            counted = order["duplicates_counted"]
            dup_ok = counted is not None and counted >= order["doubled"]
        # Every worker log of the run (the restarted ones too): no stall, and no gap
        # report, as nothing deletes records in the soak (a gap report would be false).
        logs = {path.name: path.read_text(errors="replace")
                for path in sorted((p.root / "logs").glob("worker-*.log"))}
        stalled = sorted(name for name, text_ in logs.items() if "STALLED" in text_)
        false_gaps = sorted(name for name, text_ in logs.items()
                            if "RECORDS NEVER FOLDED" in text_)
        self.result["worker_logs"] = {"read": sorted(logs), "stalled": stalled,
                                      "false_gaps": false_gaps}
        workers_ok = not stalled and not false_gaps
        if self.second is not None:
            self.result["second_worker"]["alive"] = self.second.alive()
            workers_ok = workers_ok and self.second.alive()
        ok = (workers_ok and not (worker_bad or sink_bad or count_bad or restart_bad) and rc == 0
              and not self.result.get("gaps") and order["ok"] and dup_ok)
        self.result["verdict"] = "pass" if ok else "fail"
        return 0 if ok else 1

    def log_order(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Read ``venue.events`` back: is every event there, each account's in sent order?

        The fold is order-sensitive per account; a record the producer wrote
        out of order makes the live state differ from the offline fold however
        right the worker is, so this check tells the two apart.

        Order is judged on each event's first copy. A later copy of an event
        already in the log (``doubled``) is a re-send, not a reordering:
        librdkafka's idempotent producer re-sends batches that may have been
        written when it bumps its epoch across a broker restart
        (confluentinc/librdkafka#4953). Re-sends are reported, and the run
        still passes only if the worker answered each one "duplicate"
        (``duplicates_counted``, checked in ``run``) and its state equals
        the offline fold, as for any gateway re-send.
        """
        from confluent_kafka import Consumer, TopicPartition

        from streams.codec import Codec
        from streams.infra.kafka_admin import watermarks

        s = self.pipeline.settings
        source = s.topic("venue.events")
        index = {e["event_id"]: i for i, e in enumerate(events)}
        codec = Codec.load()
        marks = watermarks(s.kafka_bootstrap, [source])
        consumer = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": "soak-order",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        seen: dict[str, int] = {}
        inversions = 0
        accounts: set[str] = set()
        examples: list[dict[str, Any]] = []
        last: dict[str, tuple[int, str, int]] = {}
        todo = {tp: (lo, hi) for tp, (lo, hi) in marks.items() if hi > lo}
        try:
            consumer.assign([TopicPartition(t, p, lo) for (t, p), (lo, _) in todo.items()])
            while todo:
                self.phases.check()
                for m in consumer.consume(10_000, timeout=1.0):
                    if m.error() is not None:
                        continue
                    tp = (m.topic(), m.partition())
                    if tp in todo and m.offset() + 1 >= todo[tp][1]:
                        del todo[tp]
                    _, rec = codec.decode(m.value())
                    eid, acc = rec["event_id"], rec["account_id"]
                    seen[eid] = seen.get(eid, 0) + 1
                    if seen[eid] > 1:
                        continue  # a re-send: its first copy's place is what counts
                    i = index.get(eid, -1)
                    prev = last.get(acc)
                    if prev is not None and i < prev[0]:
                        inversions += 1
                        accounts.add(acc)
                        if len(examples) < 10:
                            examples.append({"partition": m.partition(), "offset": m.offset(),
                                             "event_id": eid, "after": prev[1],
                                             "after_offset": prev[2], "account": acc})
                    last[acc] = (max(i, prev[0]) if prev else i, eid, m.offset())
        finally:
            consumer.close()
        missing = sum(1 for e in index if e not in seen)
        doubled = sum(n - 1 for n in seen.values() if n > 1)
        unknown = sum(1 for e in seen if e not in index)
        return {"ok": not (inversions or missing or unknown),
                "records": sum(seen.values()), "missing": missing, "doubled": doubled,
                "unknown": unknown, "inversions": inversions,
                "accounts_out_of_order": len(accounts), "examples": examples}

    def worker_ready(self) -> bool:
        p = self.pipeline
        if not p.worker.alive():
            raise RuntimeError(f"the worker exited with {p.worker.proc.returncode}:\n"
                               f"{p.worker.log_tail(40)}")
        return self._ready(p.settings.worker_web_port)

    def _account_view(self, account: str) -> dict[str, Any] | None:
        self.phases.check()
        status, doc = self.worker_get(f"/accounts/{urllib.parse.quote(account, safe='')}",
                                      timeout=15)
        return None if status == 404 else dict(doc)

    def _produce_with_restart(self, events: list[dict[str, Any]]) -> None:
        """All events, as fast as the producer goes; the broker restarts when half are sent."""
        a, p = self.args, self.pipeline
        box: dict[str, Any] = {}
        # Made here, before the sender thread exists: Pipeline.producer is created on
        # first use, and two threads using it first at once made two producers; the
        # first records, sent through the one that lost, landed after later ones
        # (two producer ids in venue.events, the older events at the higher offsets).
        producer = p.producer

        def send_all() -> None:
            try:
                for e in events:
                    p.send_event(e)
                producer.flush(timeout=a.timeout_produce)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                box["error"] = exc

        restart_at = int(len(events) * a.restart_at)
        join_at = int(len(events) * a.second_worker_at) if a.second_worker_at >= 0 else None
        t0 = time.monotonic()
        sender = threading.Thread(target=send_all, name="soak-producer", daemon=True)
        sender.start()
        restarted = a.broker_down_seconds < 0
        last = 0.0
        while sender.is_alive():
            self.phases.check()
            self._supervise("produce")
            if join_at is not None and self.second is None and producer.sent >= join_at:
                self.second = p.start_another_worker("second")
                p.extra_workers = [self.second]
                self.result["second_worker"] = {"joined_at_produced": producer.sent}
                emit({"second_worker": "started", "produced": producer.sent,
                      "worker_progress": self.progress()})
            if not restarted and producer.sent >= restart_at:
                restarted = True
                r0 = time.monotonic()
                emit({"broker": "stopping", "produced": producer.sent,
                      "worker_progress": self.progress()})
                self.broker.stop()
                stopped = time.monotonic()
                time.sleep(a.broker_down_seconds)
                self.broker.start()
                self.result["broker_restart"] = {
                    "at_produced": restart_at, "stop_s": round(stopped - r0, 1),
                    "down_s": round(time.monotonic() - stopped, 1)}
                emit({"broker": "started", **self.result["broker_restart"]})
            if time.monotonic() - last >= a.progress_every:
                last = time.monotonic()
                doc = {"produced": producer.sent, "elapsed_s": round(last - t0, 1),
                       "worker": self.progress()}
                if producer.client_errors:  # why a producer stuck after the restart waits
                    doc["producer_client_errors"] = list(producer.client_errors)[-3:]
                emit(doc)
            time.sleep(0.2)
        if "error" in box:
            raise box["error"]
        took = time.monotonic() - t0
        self.result["produce_seconds"] = round(took, 1)
        self.result["produce_events_per_s"] = round(len(events) / took)
        emit({"produced": producer.sent, "seconds": round(took, 1),
              "events_per_s": round(len(events) / took)})

    def _drain(self, n: int) -> None:
        """Until the worker's and the sink's committed offsets reach the end of their topics."""
        a, p = self.args, self.pipeline
        t0 = time.monotonic()
        last_move, last_key, last_emit = t0, None, 0.0
        while True:
            self.phases.check()
            self._supervise("drain")
            if not p.sink.alive():
                raise RuntimeError(f"the sink exited with {p.sink.proc.returncode}")
            off = self.offsets()
            now = time.monotonic()
            done = off["worker_lag"] == 0 and off["sink_lag"] == 0 \
                and off["source_end"] >= n
            key = (off["worker_committed"], off["sink_committed"])
            if key != last_key:
                last_key, last_move = key, now
            if done or now - last_emit >= a.progress_every:
                last_emit = now
                emit({"drain_s": round(now - t0, 1), **off, "worker": self.progress()})
            if done:
                self.result["drain_seconds"] = round(now - t0, 1)
                return
            if now - last_move > a.stall_seconds:
                raise PhaseTimeout("drain", f"no committed offset moved for {a.stall_seconds:.0f} s")
            time.sleep(a.poll_seconds)

    def _supervise(self, phase: str) -> None:
        """Start a worker that exited again, as its supervisor would (at most 3 times).

        A worker starting while the broker restarts can fail in Faust's own
        start-up (a topic declared on a broker that just went away) and exit
        with status 1; the README's operations rely on a supervisor for that,
        and so does the soak. Each restart is in the result (``worker_restarts``).
        """
        p = self.pipeline
        for role in ("worker", "second"):
            child = p.worker if role == "worker" else self.second
            if child is None or child.alive():
                continue
            code = child.proc.returncode
            if len(self.restarts) >= MAX_WORKER_RESTARTS:
                raise RuntimeError(f"{child.log_path.name}: exited with {code}, after "
                                   f"{len(self.restarts)} restarts")
            self.restarts.append({"log": child.log_path.name, "exit": code, "phase": phase})
            self.result["worker_restarts"] = self.restarts
            emit({"worker_exited": child.log_path.name, "exit": code, "phase": phase,
                  "starting_again": True})
            if role == "worker":
                p.start_worker()
            else:
                self.second = p.start_another_worker(f"second-r{len(self.restarts)}")
                p.extra_workers = [self.second]

    def _restart_workers(self, ref: Any, mismatches: Any) -> list[str]:
        """Stop every worker, delete their local stores, start them again, compare again.

        Their tables come back from the changelog topics alone, so this checks
        what a later restart would find there: a state write that landed in
        the wrong order (a batch folded after its partition moved to the other
        worker, written after the new owner's) would bring an older state back.
        """
        p = self.pipeline
        for child in (self.second, p.worker):
            if child is not None:
                child.stop(timeout=30)
        stores = [p.root / "data" / "faust"]
        if self.second is not None:
            stores.append(Path(self.second.env["TWINLEDGER_DATA_DIR"]) / "faust")
        for store in stores:
            shutil.rmtree(store, ignore_errors=True)
        t0 = time.monotonic()
        p.start_worker()
        if self.second is not None:
            self.second = p.start_another_worker("second-again")
            p.extra_workers = [self.second]
        ports = self.worker_ports()
        while not all(self._ready(port) for port in ports):
            self.phases.check()
            for child in (p.worker, self.second):
                if child is not None and not child.alive():
                    raise RuntimeError(f"{child.log_path.name}: exited with "
                                       f"{child.proc.returncode} after the restart")
            time.sleep(0.5)
        ready = time.monotonic() - t0
        bad = mismatches(ref, self._account_view)
        self.result["restart_workers"] = {"stores_deleted": len(stores),
                                          "ready_seconds": round(ready, 1),
                                          "state_mismatches": bad}
        emit({"restart_workers": {"ready_seconds": round(ready, 1),
                                  "state_mismatches": len(bad)}})
        return list(bad)

    def _ready(self, port: int) -> bool:
        try:
            return self.worker_get("/ready", port=port)[0] == 200
        except (OSError, ValueError):
            return False

    def _verify(self) -> tuple[int, str, str]:
        """``twinledger verify`` as an operator runs it, with the soak's environment."""
        try:
            proc = subprocess.run(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "streams.cli", "verify"], env=self.pipeline.env,
                capture_output=True, text=True, timeout=self.args.timeout_verify - 10,
                check=False, cwd=ROOT)
        except subprocess.TimeoutExpired:
            raise PhaseTimeout("verify", "twinledger verify did not finish") from None
        return proc.returncode, proc.stdout, proc.stderr


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=_env_int("TL_SOAK_EVENTS", 200_000))
    ap.add_argument("--accounts", type=int, default=_env_int("TL_SOAK_ACCOUNTS", 1_000))
    ap.add_argument("--spot-accounts", type=int, default=None,
                    help="Kraken spot accounts on top of --accounts (default accounts/100)")
    ap.add_argument("--seed", type=int, default=_env_int("TL_SOAK_SEED", 14))
    ap.add_argument("--days-back", type=float, default=400.0,
                    help="shift every event time this many days into the past")
    ap.add_argument("--port", type=int, default=_env_int("TL_SOAK_KAFKA_PORT", 0),
                    help="client port of the soak's own broker (never the shared 39092); "
                         "default: a free pair below the ephemeral port range")
    ap.add_argument("--restart-at", type=float, default=0.5,
                    help="restart the broker when this share of the events is sent")
    ap.add_argument("--second-worker-at", type=float, default=-1.0,
                    help="start a second worker in the group when this share of the events "
                         "is sent, e.g. 0.25 (default: one worker; see docs/operations.md "
                         "for what two workers across a broker restart still show)")
    ap.add_argument("--no-restart-workers", dest="restart_workers", action="store_false",
                    help="skip restarting the workers from the changelogs after the compare")
    ap.add_argument("--broker-down-seconds", type=float, default=5.0,
                    help="how long the broker stays down (negative: no restart)")
    ap.add_argument("--stall-seconds", type=float, default=180.0,
                    help="a drain with no committed offset moving this long is a stall")
    ap.add_argument("--progress-every", type=float, default=10.0)
    ap.add_argument("--poll-seconds", type=float, default=2.0)
    ap.add_argument("--timeout-broker", type=float, default=180.0)
    ap.add_argument("--timeout-start", type=float, default=240.0)
    ap.add_argument("--timeout-produce", type=float, default=None)
    ap.add_argument("--timeout-drain", type=float, default=None)
    ap.add_argument("--timeout-verify", type=float, default=300.0)
    ap.add_argument("--workdir", default=None, help="parent of the run's temporary directory")
    ap.add_argument("--keep", action="store_true", help="keep the run's directory on success")
    args = ap.parse_args(argv)
    if args.spot_accounts is None:
        args.spot_accounts = args.accounts // 100
    if args.timeout_produce is None:
        args.timeout_produce = 300 + args.events / 500
    if args.timeout_drain is None:
        args.timeout_drain = 600 + args.events / 100
    if args.port == 39092:
        ap.error("--port 39092 is the shared broker; the soak stops and starts its own")
    if args.port == 0:
        args.port = free_port_pair()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    emit({"soak": "start", "events": args.events, "accounts": args.accounts,
          "port": args.port, "at": datetime.now(UTC).isoformat(timespec="seconds")})
    return Soak(args).run()


if __name__ == "__main__":
    raise SystemExit(main())
