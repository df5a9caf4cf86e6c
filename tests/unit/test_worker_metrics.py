"""The worker's metrics that are not plain counters: accounts by reconcile status, lag labels."""

import asyncio
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY

import streams.app as app_module
from streams.config import load_settings
from streams.ledger import AccountState, encode_state, load_ledger_config
from streams.topology import load_topology


def _worker(table=None):
    settings = load_settings({})
    w = app_module.Worker(settings=settings, topology=load_topology(settings.topology_path),
                          codec=None, ledger_config=load_ledger_config(None),  # type: ignore[arg-type]
                          app=SimpleNamespace())
    w.ledger_table = table if table is not None else {}
    return w


def _accounts(status):
    return REGISTRY.get_sample_value("twinledger_worker_accounts", {"status": status})


@pytest.mark.parametrize("status", ["OK", "WARN", "ERROR"])
def test_the_status_is_read_from_the_first_line_of_a_stored_state(status):
    state = AccountState("acc-1", "synth")
    state.status = status
    assert app_module.reconcile_status_of(encode_state(state)) == status


def test_a_state_whose_status_cannot_be_read_is_unknown_not_an_error():
    assert app_module.reconcile_status_of(b"not a state at all") == "UNKNOWN"


def test_accounts_are_counted_once_under_their_latest_status_and_leave_with_their_partition():
    w = _worker()
    w.note_status(1, "a", "OK")
    w.note_status(1, "b", "ERROR")
    w.note_status(2, "c", "ERROR")
    w.note_status(1, "a", "WARN")  # a moved on: counted once, under WARN
    w.note_status(1, "b", "ERROR")
    assert w.status_counts == {"OK": 0, "WARN": 1, "ERROR": 2}
    assert _accounts("ERROR") == 2 and _accounts("WARN") == 1 and _accounts("OK") == 0
    w.forget_partition(1)  # revoked: another worker counts a and b now
    assert w.status_counts == {"OK": 0, "WARN": 0, "ERROR": 1}
    assert _accounts("ERROR") == 1 and _accounts("WARN") == 0


def test_a_scan_counts_every_held_account_by_its_stored_status():
    table = {}
    for i, status in enumerate(["OK", "OK", "ERROR", "WARN"]):
        state = AccountState(f"acc-{i}", "synth")
        state.status = status
        table[f"acc-{i}".encode()] = encode_state(state)
    w = _worker(table)
    assert asyncio.run(w.scan_statuses()) == 4
    assert w.status_counts == {"OK": 2, "ERROR": 1, "WARN": 1}
    assert asyncio.run(w.scan_statuses()) == 4  # again: nothing counted twice
    assert w.status_counts == {"OK": 2, "ERROR": 1, "WARN": 1}


def test_faust_sensors_are_read_from_its_monitor_at_scrape_time(tmp_path):
    from faust.sensors.monitor import Monitor, TableState
    from faust.sensors.prometheus import PrometheusMonitor
    from faust.types import TP

    settings = load_settings({"TWINLEDGER_DATA_DIR": str(tmp_path / "data"),
                              "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    worker = app_module.create_worker(settings)
    monitor = worker.app.monitor
    # Faust's plain monitor: no Prometheus update per record.
    assert type(monitor) is Monitor and not isinstance(monitor, PrometheusMonitor)
    monitor.messages_received_by_topic["venue.events"] += 3
    monitor.messages_sent_by_topic["ledger.trades"] += 2
    monitor.tables["account_to_ledger"] = TableState(None, keys_retrieved=5, keys_updated=4)
    monitor.send_latency.extend([0.002, 0.004])
    monitor.tp_end_offsets[TP("venue.events", 1)] = 10
    monitor.tp_committed_offsets[TP("venue.events", 1)] = 7
    value = REGISTRY.get_sample_value
    assert value("twinledger_faust_messages_received_total", {"topic": "venue.events"}) == 3
    assert value("twinledger_faust_messages_sent_total", {"topic": "ledger.trades"}) == 2
    assert value("twinledger_faust_table_operations_total",
                 {"table": "account_to_ledger", "operation": "set"}) == 4
    assert value("twinledger_faust_send_latency_seconds", {"stat": "max"}) == 0.004
    assert value("twinledger_faust_offset", {"topic": "venue.events", "partition": "1",
                                             "kind": "end"}) == 10
    assert value("twinledger_faust_offset", {"topic": "venue.events", "partition": "1",
                                             "kind": "committed"}) == 7
    assert value("twinledger_faust_rebalances_total") == 0
