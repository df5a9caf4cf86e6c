"""The catalogue of outputs is the one list; everything that names an output agrees with it.

``streams.catalogue`` says, for every record that reaches ClickHouse, the fold
kind that emits it, its Avro record and wire id, its topic and its table. The
codec's ids, the sink's tables and row builders, the packaged topology.yaml
(whose output topics, ``sinks:`` and ``sinks_to`` are derived from it) and the
fold itself must agree with it, and a topology that does not is refused at
load time with the mismatch named.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from sinks.ddl import TABLES
from sinks.rows import BUILDERS, SPECS, columns_row
from sinks.runner import sink_topics
from streams import app
from streams.catalogue import (
    BY_KIND,
    BY_TABLE,
    BY_TOPIC,
    CATALOGUE,
    RECORD_OF_KIND,
    RECORD_OF_TABLE,
    TOPIC_OF_TABLE,
    Entry,
    disagreements,
    fold_sends,
)
from streams.codec import Codec
from streams.codec.avro import checked_in_ids
from streams.config import load_settings
from streams.exceptions import ConfigError, TopologyError
from streams.ledger import apply_event, load_ledger_config, parse_event
from streams.ledger.synth import generate_events
from streams.resources import default_topology, schema_dir
from streams.topology import load_topology
from tests.unit.sinks import samples

DOC = yaml.safe_load(default_topology().read_text())
LISTED: dict[str, str] = json.loads((schema_dir() / "ids.json").read_text())["ids"]


def test_every_kind_record_topic_and_table_appears_once() -> None:
    for field in ("record", "topic", "table"):
        values = [getattr(e, field) for e in CATALOGUE]
        assert len(values) == len(set(values)), field
    kinds = [e.kind for e in CATALOGUE if e.kind is not None]
    assert len(kinds) == len(set(kinds)) == len(BY_KIND)
    assert len(BY_TABLE) == len(BY_TOPIC) == len(CATALOGUE)


def test_every_record_has_a_schema_and_a_wire_id_for_its_current_version() -> None:
    codec = Codec.load()
    for entry in CATALOGUE:
        path = schema_dir() / f"{entry.record}.avsc"
        assert path.is_file(), f"{entry.record}: no schema {path.name}"
        schema = json.loads(path.read_text())
        assert schema["name"] == entry.record
        assert schema["namespace"] == DOC["schema_namespace"], entry.record
        assert codec.schema_id(entry.record) == entry.wire_id, entry.record
        assert path.name not in LISTED.values(), f"{entry.record}: a second id in ids.json"


def test_wire_ids_are_the_ones_records_on_the_topics_carry_and_none_is_lost() -> None:
    # Records already on topics carry these ids: they never change (a new output
    # or version adds an id; none of these moves).
    shipped = {"VenueEvent": 1, "AccountSnapshot": 11, "TradeEvent": 12, "ReconcileEvent": 4,
               "Anomaly": 6, "CashFlowEvent": 9, "BalanceChange": 10, "PortfolioSnapshot": 8,
               "DeadLetter": 7}
    assert {e.record: e.wire_id for e in CATALOGUE if e.record in shipped} == shipped
    listed = {2: "Mark.avsc", 3: "history/AccountSnapshot.v1.avsc",
              5: "history/TradeEvent.v1.avsc"}
    assert {int(k): v for k, v in LISTED.items() if int(k) in listed} == listed
    # 1..n with no gap: an id that disappeared from both lists could be handed out again.
    ids = checked_in_ids()
    assert list(ids) == list(range(1, len(ids) + 1))


@pytest.mark.parametrize("wire_id,named", [
    (3, "wire id 3 is given twice (ids.json: history/AccountSnapshot.v1.avsc; "
        "catalogue entry Fee: Fee.avsc); ids are never reused"),
    (6, "wire id 6 is given twice (catalogue entry Anomaly: Anomaly.avsc; "
        "catalogue entry Fee: Fee.avsc)"),
], ids=["retired-id", "current-id"])
def test_a_reused_wire_id_is_refused(wire_id: int, named: str) -> None:
    catalogue = (*CATALOGUE, Entry("fee", "Fee", "ledger.fees", "fees", wire_id=wire_id))
    with pytest.raises(ConfigError) as err:
        # Fee.avsc need not exist: the id is refused before the file is looked at.
        checked_in_ids(catalogue=catalogue)
    assert named in str(err.value)


def test_a_schema_with_two_wire_ids_is_refused() -> None:
    twice = (*CATALOGUE, Entry(None, "Anomaly", "ledger.anomalies2", "anomalies2",
                               wire_id=max(checked_in_ids()) + 1))
    with pytest.raises(ConfigError, match="Anomaly.avsc has two wire ids"):
        Codec.load(catalogue=twice)


def test_every_table_has_a_layout_a_row_builder_and_takes_the_catalogue_record() -> None:
    assert set(TABLES) == set(BY_TABLE) == set(SPECS)
    assert set(BUILDERS) <= set(TABLES)
    for table, spec in SPECS.items():
        assert spec.table is TABLES[table]
        assert spec.record == RECORD_OF_TABLE[table]


SAMPLES = {"trade_events": samples.trade, "anomaly_events": samples.anomaly,
           "cash_flows": samples.cash_flow, "balances": samples.balance_change}


@pytest.mark.parametrize("table", sorted(SAMPLES))
def test_a_table_that_mirrors_its_record_gets_the_hand_written_row_from_its_columns(
        table: str) -> None:
    # These tables' columns are their record's fields: the builder a new such
    # table gets from its columns alone gives the rows their own builders give.
    rec = samples.decoded(RECORD_OF_TABLE[table], SAMPLES[table]())
    row = columns_row(TABLES[table])(rec)
    assert row == BUILDERS[table](rec)
    assert len(row) == len(TABLES[table].columns)


def test_the_worker_sends_each_kind_to_the_catalogue_topic_as_the_catalogue_record() -> None:
    assert app.OUTPUT_TOPIC == {k: (e.topic, e.record) for k, e in BY_KIND.items()}


def test_every_kind_the_fold_emits_is_in_the_catalogue_and_every_fold_entry_is_emitted() -> None:
    config = load_ledger_config(None)
    states: dict[str, Any] = {}
    marks: dict[str, Decimal] = {}
    seen: set[str] = set()
    for d in generate_events(3_000, 6, seed=7, spot_accounts=3):
        ev = parse_event(d)
        if ev.kind == "mark":
            marks[ev.symbol] = ev.price
            continue
        res = apply_event(states.get(ev.account_id), ev, marks, config)
        states[ev.account_id] = res.state
        seen |= {o.kind for o in res.outputs}
    assert seen == set(RECORD_OF_KIND)


def test_the_packaged_topology_agrees_with_the_catalogue() -> None:
    topo = load_topology(default_topology())
    assert dict(topo.sinks) == TOPIC_OF_TABLE
    for entry in CATALOGUE:
        assert topo.topics[entry.topic].value == entry.record, entry.topic
    assert BY_TOPIC[topo.deadletter_topic].record == "DeadLetter"
    fold_topics = {e.topic for e in CATALOGUE if e.kind is not None}
    sends = topo.agents["fold_account_events"]["sinks_to"]
    assert sends == fold_sends() and len(sends) == len(set(sends))
    assert set(sends) == fold_topics | {topo.deadletter_topic}
    assert topo.agents["fold_account_events"]["source"] == BY_TABLE["venue_events"].topic


def test_the_sink_reads_the_catalogue_topics_through_the_topology_loader() -> None:
    assert sink_topics(load_settings({})) == {e.topic: e.table for e in CATALOGUE}
    prefixed = sink_topics(load_settings({"TWINLEDGER_TOPIC_PREFIX": "t1."}))
    assert prefixed == {f"t1.{e.topic}": e.table for e in CATALOGUE}


def _write(tmp_path: Path, mutate: Callable[[dict[str, Any]], None]) -> Path:
    doc = yaml.safe_load(default_topology().read_text())
    mutate(doc)
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _declare(doc: dict[str, Any], topic: str, **over: Any) -> None:
    """Declare ``topic`` under ``topics:`` as the defaults would, with ``over`` on top."""
    doc["topics"][topic] = {**doc["output_topic_defaults"], "value": BY_TOPIC[topic].record,
                            **over}


@pytest.mark.parametrize("mutate,named", [
    (lambda d: d.update(sinks={"trade_events": "ledger.anomalies"}),
     "sink 'trade_events' reads topic 'ledger.anomalies', the catalogue says 'ledger.trades'"),
    (lambda d: d["agents"]["fold_account_events"].update(
        sinks_to=[t for t in fold_sends() if t != "ledger.balances"]),
     "agent 'fold_account_events' sinks_to lacks ledger.balances (the catalogue sends there)"),
    (lambda d: d.update(sinks={"fills": "ledger.trades"}),
     "sink table 'fills' is not in the catalogue of outputs"),
    (lambda d: _declare(d, "ledger.cashflows", value="CashFlow"),
     "topic 'ledger.cashflows' has value schema 'CashFlow', the catalogue says 'CashFlowEvent'"),
    (lambda d: d.pop("output_topic_defaults"),
     "topic 'ledger.portfolio' is not declared"),
], ids=["sink-topic", "sinks-to", "sink-unknown", "topic-value", "topic-missing"])
def test_a_topology_that_disagrees_with_the_catalogue_is_refused_naming_the_mismatch(
        tmp_path: Path, mutate: Callable[[dict[str, Any]], None], named: str) -> None:
    path = _write(tmp_path, mutate)
    with pytest.raises(TopologyError) as err:
        load_topology(path)
    assert "catalogue of outputs" in str(err.value) and named in str(err.value)


def test_a_sink_that_disagrees_with_the_catalogue_does_not_start(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda d: d.update(sinks={"balances": "ledger.snapshots"}))
    with pytest.raises(TopologyError, match="sink 'balances' reads topic 'ledger.snapshots'"):
        sink_topics(load_settings({"TWINLEDGER_TOPOLOGY": str(path)}))


def test_disagreements_of_an_agreeing_topology_are_none() -> None:
    topo = load_topology(default_topology())
    values = {name: t.value for name, t in topo.topics.items()}
    sends = {"fold_account_events": fold_sends()}
    assert disagreements(TOPIC_OF_TABLE, values, DOC["deadletter_topic"], sends=sends) == []
    assert disagreements(TOPIC_OF_TABLE, values, "ledger.trades") == [
        "deadletter_topic is 'ledger.trades', the catalogue says 'ledger.deadletter'"]
    assert disagreements(TOPIC_OF_TABLE, values, sends={"a": [*fold_sends(), "x"]}) == [
        "agent 'a' sinks_to has x, which the catalogue sends nothing to"]
    assert disagreements({}, values) == [
        f"sink {e.table!r} is missing (the catalogue says `{e.table}: {e.topic}`)"
        for e in CATALOGUE]


def test_a_topology_that_lists_what_the_catalogue_says_loads_the_same(tmp_path: Path) -> None:
    # An operator's file written before the derivation (every topic, sinks:,
    # sinks_to spelled out) still loads, to the same topology.
    def spell_out(doc: dict[str, Any]) -> None:
        for entry in CATALOGUE:
            if entry.topic not in doc["topics"]:
                _declare(doc, entry.topic)
        doc.pop("output_topic_defaults")
        doc["sinks"] = dict(TOPIC_OF_TABLE)
        doc["agents"]["fold_account_events"]["sinks_to"] = list(reversed(fold_sends()))
    spelled = load_topology(_write(tmp_path, spell_out))
    derived = load_topology(default_topology())
    assert spelled.topics == derived.topics and spelled.sinks == derived.sinks


def test_output_topics_get_the_defaults_unless_topology_yaml_declares_them(
        tmp_path: Path) -> None:
    defaults = DOC["output_topic_defaults"]
    topo = load_topology(_write(tmp_path, lambda d: _declare(
        d, "ledger.trades", config={**defaults["config"], "retention.ms": "604800000"})))
    assert topo.topics["ledger.trades"].config["retention.ms"] == "604800000"
    for entry in CATALOGUE:
        spec = topo.topics[entry.topic]
        assert spec.value == entry.record
        if entry.topic in DOC["topics"] or entry.topic == "ledger.trades":
            continue
        assert (spec.key, spec.partitions, spec.role, spec.cokeyed) == (
            defaults["key"], defaults["partitions"], defaults["role"], defaults["cokeyed"])
        assert dict(spec.config) == {k: str(v) for k, v in defaults["config"].items()}


def test_output_topic_defaults_may_not_name_a_value_schema(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda d: d["output_topic_defaults"].update(value="Anomaly"))
    with pytest.raises(TopologyError, match="output_topic_defaults.*without `value`"):
        load_topology(path)
