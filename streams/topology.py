"""topology.yaml: the description of topics, tables, sinks and the dead-letter topic.

Owns: loading and validating the file into typed objects, completed from
``streams.catalogue``: a catalogue topic the file does not declare under
``topics:`` gets ``output_topic_defaults:`` (the one declaration every output
topic shares) with the catalogue's record as its value schema; ``sinks:``
(table -> topic) and the fold agent's ``sinks_to`` are the catalogue's unless
the file lists them, and whatever the file says must agree with the catalogue
(refused at load, every mismatch named); and checking it against the
partition counts a broker reports. Must not touch: wiring (the
Faust app builds agents in code) or Kafka clients (callers pass what the
broker said, so this module stays testable without one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streams.catalogue import CATALOGUE, Entry, disagreements, fold_sends
from streams.exceptions import PartitionsMismatch, TopologyError

ROLES = ("input", "output")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    value: str
    partitions: int
    role: str
    cokeyed: bool
    #: Kafka topic configs (retention, timestamp type, cleanup policy) the topic must have.
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Topology:
    topics: Mapping[str, TopicSpec]
    deadletter_topic: str
    sinks: Mapping[str, str]  # ClickHouse table -> topic
    agents: Mapping[str, Mapping[str, Any]]
    tables: Mapping[str, Mapping[str, Any]]

    @property
    def cokeyed(self) -> list[TopicSpec]:
        return [t for t in self.topics.values() if t.cokeyed]

    def partitions(self, topic: str) -> int:
        return self.topics[topic].partitions

    def check_broker(self, actual: Mapping[str, int], prefix: str = "") -> None:
        """Raise if the broker's partition counts disagree with this file.

        ``actual`` maps broker topic names (with ``prefix``) to partition counts.
        A missing topic or a co-keyed topic whose count differs from
        ``venue.events`` is refused with a message naming the topic.
        """
        missing = [prefix + n for n in self.topics if prefix + n not in actual]
        if missing:
            raise TopologyError(f"topics missing on the broker: {', '.join(missing)} "
                                "(create them with `twinledger topics`)")
        reference = self.cokeyed[0] if self.cokeyed else None
        for spec in self.topics.values():
            got = actual[prefix + spec.name]
            if spec.cokeyed and reference is not None:
                ref_count = actual[prefix + reference.name]
                if got != ref_count:
                    raise PartitionsMismatch(prefix + spec.name, ref_count, got,
                                             prefix + reference.name)
            if got != spec.partitions:
                raise PartitionsMismatch(prefix + spec.name, spec.partitions, got, "topology.yaml")

    def describe(self) -> dict[str, Any]:
        """What was resolved, for `twinledger topology`."""
        return {
            "topics": {n: {"key": t.key, "value": t.value, "partitions": t.partitions,
                           "role": t.role, "cokeyed": t.cokeyed, "config": dict(t.config)}
                       for n, t in self.topics.items()},
            "deadletter_topic": self.deadletter_topic,
            "agents": {k: dict(v) for k, v in self.agents.items()},
            "tables": {k: dict(v) for k, v in self.tables.items()},
            "sinks": dict(self.sinks),
        }


def load_topology(path: Path | str, schema_names: set[str] | None = None,
                  catalogue: tuple[Entry, ...] = CATALOGUE) -> Topology:
    """Parse and validate ``path``; ``schema_names`` (record names) checks value schemas exist.

    ``catalogue`` completes the file (output topics, ``sinks:``, ``sinks_to``)
    and is what it must agree with; tests pass their own.
    """
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TopologyError(f"cannot read topology {path}: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("topics"), dict):
        raise TopologyError(f"{path}: expected a mapping with 'topics'")
    topics: dict[str, TopicSpec] = {}
    for name, raw in doc["topics"].items():
        topics[name] = _topic_spec(path, name, raw, schema_names)
    defaults = doc.get("output_topic_defaults")
    if defaults is not None:
        if not isinstance(defaults, dict) or "value" in defaults:
            raise TopologyError(f"{path}: `output_topic_defaults:` must be a topic declaration "
                                "without `value` (each topic's value is its catalogue record)")
        for entry in catalogue:
            if entry.topic not in topics:
                topics[entry.topic] = _topic_spec(path, entry.topic,
                                                  {**defaults, "value": entry.record},
                                                  schema_names)
    cokeyed = [t for t in topics.values() if t.cokeyed]
    for spec in cokeyed[1:]:
        if spec.partitions != cokeyed[0].partitions:
            raise PartitionsMismatch(spec.name, cokeyed[0].partitions, spec.partitions,
                                     cokeyed[0].name)
    if "venue.events" in topics and topics["venue.events"].partitions < 3:
        raise TopologyError(f"{path}: venue.events needs at least 3 partitions")
    dlt = doc.get("deadletter_topic")
    if dlt not in topics:
        raise TopologyError(f"{path}: deadletter_topic {dlt!r} is not a declared topic")
    _require_forever(path, str(dlt), topics[str(dlt)].config)
    listed = doc.get("sinks") or {}
    if not isinstance(listed, dict):
        raise TopologyError(f"{path}: `sinks:` must map ClickHouse tables to topics")
    for table, topic in listed.items():
        if topic not in topics:
            raise TopologyError(f"{path}: sink {table!r} reads undeclared topic {topic!r}")
    # The catalogue's tables, then what the file lists (checked below): a listed
    # sink can only repeat the catalogue, an unlisted one is the catalogue's.
    sinks = {**{e.table: e.topic for e in catalogue}, **listed}
    agents = {name: dict(a) for name, a in (doc.get("agents") or {}).items()}
    sources = {e.topic for e in catalogue}
    sends: dict[str, list[str]] = {}
    for name, agent in agents.items():
        if agent.get("source") in sources:
            if "sinks_to" in agent:
                sends[name] = list(agent["sinks_to"])
            else:
                agent["sinks_to"] = fold_sends(catalogue)
    wrong = disagreements(sinks, {n: t.value for n, t in topics.items()}, str(dlt),
                          catalogue, sends)
    if wrong:
        raise TopologyError(f"{path} disagrees with the catalogue of outputs "
                            f"(streams/catalogue.py): {'; '.join(wrong)}")
    return Topology(topics=topics, deadletter_topic=str(dlt), sinks=sinks,
                    agents=agents, tables=doc.get("tables") or {})


def _topic_spec(path: Path | str, name: str, raw: Any,
                schema_names: set[str] | None) -> TopicSpec:
    """One ``topics:`` declaration (or ``output_topic_defaults:`` applied to ``name``)."""
    if not isinstance(raw, dict):
        raise TopologyError(f"{path}: topic {name!r} must be a mapping")
    parts = raw.get("partitions")
    if not isinstance(parts, int) or parts < 1:
        raise TopologyError(f"{path}: topic {name!r} needs partitions >= 1, got {parts!r}")
    role = raw.get("role", "output")
    if role not in ROLES:
        raise TopologyError(f"{path}: topic {name!r} role must be one of {ROLES}")
    value = str(raw.get("value", ""))
    if schema_names is not None and value not in schema_names:
        raise TopologyError(f"{path}: topic {name!r} value schema {value!r} not in schemas/avro")
    config = raw.get("config") or {}
    if not isinstance(config, dict) or not all(
            isinstance(k, str) and isinstance(v, str | int) and not isinstance(v, bool)
            for k, v in config.items()):
        raise TopologyError(f"{path}: topic {name!r} config must map Kafka topic config "
                            "names to string values")
    if role == "input" and name == "venue.events":
        _require_forever(path, name, config)
    return TopicSpec(name=name, key=str(raw.get("key", "")), value=value,
                     partitions=parts, role=role, cokeyed=bool(raw.get("cokeyed")),
                     config={k: str(v) for k, v in config.items()})


def _require_forever(path: Path | str, name: str, config: Mapping[str, Any]) -> None:
    """venue.events and the dead-letter topic are never deleted by time or size.

    venue.events is the system of record (every replay and backfill reads it)
    and a dead letter must never disappear; a topology that would let the
    broker delete either is refused rather than run.
    """
    policy = str(config.get("cleanup.policy", "delete"))
    if "compact" in policy:
        raise TopologyError(f"{path}: topic {name!r} must not be compacted (it keeps every record)")
    for key in ("retention.ms", "retention.bytes"):
        if str(config.get(key, "")) != "-1":
            raise TopologyError(f"{path}: topic {name!r} needs {key}: \"-1\" (it is never "
                                f"deleted by time or size), got {config.get(key)!r}")
