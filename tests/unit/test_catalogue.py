"""The catalogue of outputs is the one list; everything that names an output agrees with it.

``streams.catalogue`` says, for every record that reaches ClickHouse, the fold
kind that emits it, its Avro record, its topic and its table. The Avro
schemas and their wire ids, the sink's tables and row builders, the packaged
topology.yaml and the fold itself must agree with it, and a topology that
does not is refused at load time with the mismatch named.
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
from sinks.rows import BUILDERS, SPECS
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
    disagreements,
)
from streams.codec import Codec
from streams.config import load_settings
from streams.exceptions import TopologyError
from streams.ledger import apply_event, load_ledger_config, parse_event
from streams.ledger.synth import generate_events
from streams.resources import default_topology, schema_dir
from streams.topology import load_topology

DOC = yaml.safe_load(default_topology().read_text())
IDS: dict[str, str] = json.loads((schema_dir() / "ids.json").read_text())["ids"]


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
        wire_id = codec.schema_id(entry.record)
        assert IDS[str(wire_id)] == path.name, f"{entry.record}: id {wire_id} is not its schema"


def test_every_table_has_a_layout_a_row_builder_and_takes_the_catalogue_record() -> None:
    assert set(TABLES) == set(BY_TABLE) == set(SPECS) == set(BUILDERS)
    for table, spec in SPECS.items():
        assert spec.table is TABLES[table]
        assert spec.record == RECORD_OF_TABLE[table]


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
    sends = set(topo.agents["fold_account_events"]["sinks_to"])
    assert sends == fold_topics | {topo.deadletter_topic}
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


@pytest.mark.parametrize("mutate,named", [
    (lambda d: d["sinks"].update(trade_events="ledger.anomalies"),
     "sink 'trade_events' reads topic 'ledger.anomalies', the catalogue says 'ledger.trades'"),
    (lambda d: d["sinks"].pop("balances"),
     "sink 'balances' is missing (the catalogue says `balances: ledger.balances`)"),
    (lambda d: d["sinks"].update(fills="ledger.trades"),
     "sink table 'fills' is not in the catalogue of outputs"),
    (lambda d: d["topics"]["ledger.cashflows"].update(value="CashFlow"),
     "topic 'ledger.cashflows' has value schema 'CashFlow', the catalogue says 'CashFlowEvent'"),
    (lambda d: (d["topics"].pop("ledger.portfolio"), d["sinks"].pop("portfolio_snapshots"),
                d["agents"]["fold_account_events"]["sinks_to"].remove("ledger.portfolio")),
     "topic 'ledger.portfolio' is not declared"),
], ids=["sink-topic", "sink-missing", "sink-unknown", "topic-value", "topic-missing"])
def test_a_topology_that_disagrees_with_the_catalogue_is_refused_naming_the_mismatch(
        tmp_path: Path, mutate: Callable[[dict[str, Any]], None], named: str) -> None:
    path = _write(tmp_path, mutate)
    with pytest.raises(TopologyError) as err:
        load_topology(path)
    assert "catalogue of outputs" in str(err.value) and named in str(err.value)


def test_a_sink_that_disagrees_with_the_catalogue_does_not_start(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda d: d["sinks"].update(balances="ledger.snapshots"))
    with pytest.raises(TopologyError, match="sink 'balances' reads topic 'ledger.snapshots'"):
        sink_topics(load_settings({"TWINLEDGER_TOPOLOGY": str(path)}))


def test_disagreements_of_an_agreeing_topology_are_none() -> None:
    values = {name: t["value"] for name, t in DOC["topics"].items()}
    assert disagreements(DOC["sinks"], values, DOC["deadletter_topic"]) == []
    assert disagreements(DOC["sinks"], values, "ledger.trades") == [
        "deadletter_topic is 'ledger.trades', the catalogue says 'ledger.deadletter'"]
