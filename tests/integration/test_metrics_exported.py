"""Every metric the Grafana dashboard and the alert rules query is exported by a real worker or sink.

A worker and a sink run as processes with a token; records (one of them
undecodable) flow through. Their ``/metrics/prometheus`` and ``/metrics`` are
scraped as Prometheus would (bearer token, text exposition format), and each
``twinledger_*`` name in ``ops/grafana/twinledger.json`` and
``ops/prometheus/alerts.yml`` must be among what they export, with the labels
the queries select or group by. ``up`` is made by Prometheus itself.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from streams.ledger.synth import generate_events
from streams.procs import wait_until
from tests.integration.pipeline import Pipeline

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "ops" / "grafana" / "twinledger.json"
ALERTS = ROOT / "ops" / "prometheus" / "alerts.yml"
TOKEN = "t0ken-for-the-metrics-test"
#: labels Prometheus adds to every series it scrapes, and the histogram bucket label
SCRAPE_LABELS = {"instance", "job", "le"}
#: sample suffixes of each metric type in the text exposition format
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                             "_created"),
            "summary": ("_sum", "_count", "_created"), "gauge": (), "info": ("_info",),
            "unknown": ()}


def _scrape(url: str) -> tuple[str, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 - loopback test URL
        return resp.headers.get("Content-Type", ""), resp.read().decode("utf-8")


def _exported(text: str) -> dict[str, set[str]]:
    """Every series name a query may use -> the label names its samples carry."""
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        labels = {k for s in family.samples for k in s.labels}
        for name in {family.name, *(family.name + sfx for sfx in SUFFIXES[family.type])}:
            out.setdefault(name, set()).update(labels)
    return out


def _declared_labels() -> dict[str, set[str]]:
    """Label names of our metrics as declared in the code (a labelled metric that has
    counted nothing yet exports no sample, so its labels are not in a scrape)."""
    import prometheus_client

    import sinks.metrics
    import streams.app  # noqa: F401 - registers the worker's metrics

    out: dict[str, set[str]] = {}
    for registry in (prometheus_client.REGISTRY, sinks.metrics.REGISTRY):
        for name, collector in registry._names_to_collectors.items():  # noqa: SLF001
            labels = getattr(collector, "_labelnames", None)
            if labels is not None and name.startswith("twinledger_"):
                out.setdefault(name, set()).update(labels)
    return out


def _expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard target and every alert rule."""
    exprs: list[tuple[str, str]] = []

    def walk(node: Any, title: str = "") -> None:
        if isinstance(node, dict):
            title = node.get("title", title)
            if isinstance(node.get("expr"), str):
                exprs.append((f"dashboard panel {title!r}", node["expr"]))
            for value in node.values():
                walk(value, title)
        elif isinstance(node, list):
            for value in node:
                walk(value, title)

    walk(json.loads(DASHBOARD.read_text()))
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            exprs.append((f"alert {rule['alert']}", rule["expr"]))
    return exprs


def test_the_dashboard_and_the_alert_rules_parse_and_cover_what_operators_watch():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "twinledger" and dash["panels"]
    exprs = _expressions()
    text = " ".join(e for _, e in exprs)
    for wanted in ("twinledger_worker_events_total", "twinledger_sink_rows_inserted_total",
                   "twinledger_worker_partition_lag_records", "twinledger_sink_lag_records",
                   "twinledger_worker_dead_letters_total", "twinledger_sink_dead_letters_total",
                   "twinledger_worker_accounts", "twinledger_worker_stalled",
                   "twinledger_worker_ready", "twinledger_worker_skipped_records_total",
                   "twinledger_faust_"):
        assert wanted in text, wanted
    alerts = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    assert {"TwinledgerWorkerStalled", "TwinledgerWorkerLagGrowing", "TwinledgerSinkLagGrowing",
            "TwinledgerWorkerDeadLetters", "TwinledgerAccountsInError",
            "TwinledgerRecordsNeverFolded"} <= alerts
    for where, expr in exprs:
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), where
        assert expr.count("[") == expr.count("]"), where


def test_every_metric_the_dashboard_and_alerts_query_is_exported(pipeline: Pipeline):
    pipeline.env["TWINLEDGER_HTTP_TOKEN"] = TOKEN
    pipeline.start_worker()
    pipeline.start_sink()
    events = generate_events(300, 6, seed=5, spot_accounts=1)
    pipeline.produce(events)
    pipeline.produce_raw("venue.events", b"acc-5-0000", b"not avro")
    pipeline.producer.flush()
    worker_url = f"http://127.0.0.1:{pipeline.settings.worker_web_port}/metrics/prometheus"
    sink_url = f"http://127.0.0.1:{pipeline.settings.sink_http_port}/metrics"

    scraped: dict[str, dict[str, set[str]]] = {}
    texts: dict[str, str] = {}

    def both_report() -> bool:
        assert pipeline.worker is not None and pipeline.worker.alive(), pipeline.logs()
        try:
            for name, url in (("worker", worker_url), ("sink", sink_url)):
                ctype, texts[name] = _scrape(url)
                assert ctype.startswith("text/plain") and "version=" in ctype, ctype
                scraped[name] = _exported(texts[name])
        except OSError:
            return False
        worker, sink = scraped["worker"], scraped["sink"]
        # samples, not only families: the watchdog (10 s ticks) has measured the lag per
        # partition, a dead letter was counted, the sink consumer has positions.
        return ("partition" in worker.get("twinledger_worker_partition_lag_records", set())
                and "error_type" in worker.get("twinledger_worker_dead_letters_total", set())
                and "topic" in worker.get("twinledger_faust_messages_received_total", set())
                and "kind" in worker.get("twinledger_faust_offset", set())
                and "partition" in sink.get("twinledger_sink_lag_records", set())
                and "table" in sink.get("twinledger_sink_rows_inserted_total", set()))

    wait_until(both_report, 60, interval=2.0, what="worker and sink metrics with samples")
    exported: dict[str, set[str]] = {}
    for names in scraped.values():
        for name, labels in names.items():
            exported.setdefault(name, set()).update(labels)
    declared = _declared_labels()
    for name, labels in exported.items():
        if not labels:  # no sample yet: the labels the code declares
            labels.update(declared.get(name, set()))

    missing: list[str] = []
    for where, expr in _expressions():
        metrics = set(re.findall(r"\b(twinledger_[A-Za-z0-9_]+)", expr))
        assert metrics or "up{" in expr, f"{where} queries no twinledger metric: {expr}"
        for metric in sorted(metrics):
            if metric not in exported:
                missing.append(f"{where}: {metric}")
        for metric, matchers in re.findall(r"\b(twinledger_[A-Za-z0-9_]+)\{([^}]*)\}", expr):
            for label in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers):
                if label not in exported.get(metric, set()):
                    missing.append(f"{where}: label {label} of {metric}")
        grouped = {label.strip() for group in re.findall(r"\bby\s*\(([^)]*)\)", expr)
                   for label in group.split(",") if label.strip()}
        for label in grouped - SCRAPE_LABELS:
            if not any(label in exported.get(m, set()) for m in metrics):
                missing.append(f"{where}: no queried metric has label {label}")
    assert not missing, "\n".join(missing)

    # The values behind the panels make sense: ERROR/WARN/OK accounts add up to the
    # accounts folded, every source partition has a lag sample.
    worker_text = texts["worker"]
    accounts = {a for a in (e["account_id"] for e in events) if a}
    counts = {s.labels["status"]: s.value for f in text_string_to_metric_families(worker_text)
              if f.name == "twinledger_worker_accounts" for s in f.samples}
    assert set(counts) == {"OK", "WARN", "ERROR"}

    def all_accounts_counted() -> bool:
        _, text = _scrape(worker_url)
        values = [s.value for f in text_string_to_metric_families(text)
                  if f.name == "twinledger_worker_accounts" for s in f.samples]
        return sum(values) == len(accounts)

    wait_until(all_accounts_counted, 60, interval=1.0, what="every account counted by status")
    partitions = {s.labels["partition"] for f in text_string_to_metric_families(worker_text)
                  if f.name == "twinledger_worker_partition_lag_records" for s in f.samples}
    assert partitions == {str(p) for p in range(6)}
