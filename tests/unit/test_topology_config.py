"""topology.yaml validation and the one settings object."""

from pathlib import Path

import pytest
import yaml

from streams.codec.avro import checked_in_ids
from streams.config import PROJECT_ROOT, load_settings
from streams.exceptions import ConfigError, PartitionsMismatch, TopologyError
from streams.topology import load_topology

TOPOLOGY = PROJECT_ROOT / "topology.yaml"
# The records with a wire id (the catalogue's and avro/ids.json): what a topic may carry.
TOP_LEVEL = {Path(f).stem for f in checked_in_ids().values()}


def _write(tmp_path, mutate):
    doc = yaml.safe_load(TOPOLOGY.read_text())
    mutate(doc)
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_repository_topology_is_valid_and_cokeyed_counts_match():
    topo = load_topology(TOPOLOGY, TOP_LEVEL)
    counts = {t.partitions for t in topo.cokeyed}
    assert len(counts) == 1 and topo.partitions("venue.events") >= 3
    assert set(topo.sinks) == {"venue_events", "account_snapshots", "trade_events",
                               "reconcile_events", "anomaly_events", "dead_letters",
                               "cash_flows", "portfolio_snapshots", "balances"}


def test_cokeyed_partition_mismatch_in_file_names_the_topic(tmp_path):
    path = _write(tmp_path, lambda d: d["topics"].update({"ledger.trades": {
        **d["output_topic_defaults"], "value": "TradeEvent", "partitions": 4}}))
    with pytest.raises(PartitionsMismatch, match="ledger.trades"):
        load_topology(path)


def test_broker_partition_mismatch_names_the_topic():
    topo = load_topology(TOPOLOGY)
    actual = {n: t.partitions for n, t in topo.topics.items()}
    actual["ledger.snapshots"] = 3
    with pytest.raises(PartitionsMismatch, match="ledger.snapshots"):
        topo.check_broker(actual)


def test_missing_topic_on_broker_is_refused():
    topo = load_topology(TOPOLOGY)
    with pytest.raises(TopologyError, match="missing"):
        topo.check_broker({"venue.events": 6})


def test_unknown_value_schema_is_refused(tmp_path):
    path = _write(tmp_path, lambda d: d["topics"]["venue.events"].update(value="Nope"))
    with pytest.raises(TopologyError, match="Nope"):
        load_topology(path, TOP_LEVEL)


def test_venue_events_needs_three_partitions(tmp_path):
    def shrink(d):
        for t in (*d["topics"].values(), d["output_topic_defaults"]):
            if t.get("cokeyed"):
                t["partitions"] = 2
    with pytest.raises(TopologyError, match="at least 3"):
        load_topology(_write(tmp_path, shrink))


def test_settings_defaults_and_secrets_never_in_repr():
    s = load_settings({"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u",
                       "KAFKA_SASL_PASSWORD": "hunter2",
                       "CLICKHOUSE_URL": "http://bob:s3cret@ch:8123"})
    assert "hunter2" not in repr(s) and "s3cret" not in repr(s)
    red = s.redacted()
    assert "hunter2" not in str(red) and "s3cret" not in str(red)
    assert s.kafka_security["sasl.password"] == "hunter2"
    assert s.sink_http_host == "127.0.0.1" and s.worker_web_host == "127.0.0.1"
    assert s.topic("venue.events") == "venue.events"
    assert load_settings({"TWINLEDGER_TOPIC_PREFIX": "t1."}).topic("venue.events") == "t1.venue.events"


def test_the_settings_dataclass_defaults_are_those_of_the_environment_table():
    """A default is written in ENV_DOC (the README table); a field of ``Settings`` that
    has one of its own (for code that builds Settings directly) must not drift from it."""
    from dataclasses import MISSING, fields

    from streams.config import Settings

    loaded = load_settings({})
    with_defaults = [f for f in fields(Settings) if f.default is not MISSING]
    assert with_defaults  # the check below runs over something
    for f in with_defaults:
        assert getattr(loaded, f.name) == f.default, f.name


def test_malformed_numeric_setting_is_a_config_error():
    with pytest.raises(ConfigError, match="TWINLEDGER_SINK_BATCH_ROWS"):
        load_settings({"TWINLEDGER_SINK_BATCH_ROWS": "many"})


def test_system_of_record_and_dead_letters_are_never_deleted_by_time_or_size():
    topo = load_topology(TOPOLOGY)
    for name in ("venue.events", topo.deadletter_topic):
        cfg = topo.topics[name].config
        assert cfg["retention.ms"] == "-1" and cfg["retention.bytes"] == "-1", name
        assert "compact" not in cfg.get("cleanup.policy", "delete"), name


def test_derived_topics_count_retention_from_append_not_event_time():
    # Gateways stamp records with event time: a time retention on a CreateTime
    # topic would delete a backfilled year as soon as it lands.
    topo = load_topology(TOPOLOGY)
    for spec in topo.topics.values():
        if spec.role == "output" and spec.name != topo.deadletter_topic:
            assert spec.config["message.timestamp.type"] == "LogAppendTime", spec.name
            assert int(spec.config["retention.ms"]) >= 7 * 24 * 3600 * 1000, spec.name
    assert topo.topics["market.marks"].config["cleanup.policy"] == "compact"


@pytest.mark.parametrize("topic", ["venue.events", "ledger.deadletter"])
@pytest.mark.parametrize("key,value", [("retention.ms", "259200000"),
                                       ("retention.bytes", "1073741824")])
def test_a_topology_that_would_delete_the_record_of_truth_is_refused(tmp_path, topic, key,
                                                                     value):
    path = _write(tmp_path, lambda d: d["topics"][topic]["config"].update({key: value}))
    with pytest.raises(TopologyError, match=f"{topic}.*{key}"):
        load_topology(path)


def test_topic_config_values_must_be_strings_or_numbers(tmp_path):
    path = _write(tmp_path, lambda d: d["output_topic_defaults"].update(config=["x"]))
    with pytest.raises(TopologyError, match="config"):
        load_topology(path)
