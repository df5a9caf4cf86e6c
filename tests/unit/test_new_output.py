"""A new output, declared the way a newcomer would, reaches every layer with nothing else edited.

The newcomer writes a schema (``FeeCharge.avsc``), one catalogue line (kind,
record, topic, table, the next wire id) and the table's columns; the fold
module that emits ``Output("fee", ...)`` is the fourth file. Here they live
in a temporary place (a copy of the packaged schema directory, a catalogue
and a table layout of this test), and the codec, the topology loader (the
packaged topology.yaml, unchanged), the DDL and the row builder all pick the
output up from them alone.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from sinks.ddl import LC, MONEY, TABLES, TIME, Table, create_statements
from sinks.exceptions import RowRejected
from sinks.rows import row_specs
from streams.catalogue import CATALOGUE, Entry, fold_sends
from streams.codec import Codec
from streams.codec.avro import checked_in_ids
from streams.resources import default_topology, schema_dir
from streams.topology import load_topology

#: 1. the schema
SCHEMA = {
    "type": "record", "name": "FeeCharge", "namespace": "twinledger.v1",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "account_id", "type": "string"},
        {"name": "event_seq", "type": "long"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "asset", "type": "string"},
        {"name": "fee", "type": {"type": "bytes", "logicalType": "decimal",
                                 "precision": 38, "scale": 18}},
        {"name": "rebate", "type": "boolean", "default": False},
    ],
}
#: 2. its catalogue line, with the next unused wire id
NEXT_ID = max(checked_in_ids()) + 1
CATALOGUE_WITH_FEES = (*CATALOGUE,
                       Entry("fee", "FeeCharge", "ledger.fees", "fee_charges", wire_id=NEXT_ID))
#: 3. its table: columns named as the record's fields, so no row builder of its own
FEE_CHARGES = Table("fee_charges", (
    ("account_id", "String"),
    ("event_id", "String"),
    ("event_seq", "UInt64"),
    ("ts", TIME),
    ("asset", LC),
    ("fee", MONEY),
    ("rebate", "Bool"),
))

RECORD = {"event_id": "f-1:fee", "account_id": "acc-1", "event_seq": 7,
          "ts": dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC), "asset": "USDT",
          "fee": Decimal("0.000000000000000001"), "rebate": True}


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    directory = tmp_path / "avro"
    shutil.copytree(schema_dir(), directory)
    (directory / "FeeCharge.avsc").write_text(json.dumps(SCHEMA))
    return directory


def test_the_codec_gives_the_new_record_its_catalogue_id_and_keeps_every_other(
        schemas: Path) -> None:
    codec = Codec.load(directory=schemas, catalogue=CATALOGUE_WITH_FEES)
    packaged = Codec.load()
    assert codec.schema_id("FeeCharge") == NEXT_ID
    for entry in CATALOGUE:
        assert codec.schema_id(entry.record) == packaged.schema_id(entry.record)
    data = codec.encode("FeeCharge", RECORD)
    assert data[:5] == b"\x00" + NEXT_ID.to_bytes(4, "big")
    assert codec.decode(data) == ("FeeCharge", RECORD)


def test_the_packaged_topology_gets_the_new_topic_sink_and_send(schemas: Path) -> None:
    names = {Path(f).stem for f in checked_in_ids(schemas, CATALOGUE_WITH_FEES).values()}
    topo = load_topology(default_topology(), names, catalogue=CATALOGUE_WITH_FEES)
    fees, trades = topo.topics["ledger.fees"], topo.topics["ledger.trades"]
    assert fees.value == "FeeCharge"
    # the declaration every output topic shares: what `twinledger topics` creates it with
    assert (fees.key, fees.partitions, fees.role, fees.cokeyed, dict(fees.config)) == (
        trades.key, trades.partitions, trades.role, trades.cokeyed, dict(trades.config))
    assert topo.sinks["fee_charges"] == "ledger.fees"
    sends = topo.agents["fold_account_events"]["sinks_to"]
    assert "ledger.fees" in sends and sends == fold_sends(CATALOGUE_WITH_FEES)
    # ...and the same file, read with the packaged catalogue, knows nothing of it
    assert "ledger.fees" not in load_topology(default_topology()).topics


def test_the_ddl_creates_the_new_table() -> None:
    stmts = create_statements("twinledger", tables={**TABLES, "fee_charges": FEE_CHARGES})
    assert len(stmts) == len(create_statements("twinledger")) + 1
    (create,) = [s for s in stmts if "twinledger.fee_charges " in s]
    assert "    fee Decimal(38, 18),\n    rebate Bool,\n    kafka_topic" in create
    assert "ORDER BY (account_id, event_id)" in create


def test_the_sink_builds_the_new_row_from_the_decoded_record(schemas: Path) -> None:
    codec = Codec.load(directory=schemas, catalogue=CATALOGUE_WITH_FEES)
    records = {e.table: e.record for e in CATALOGUE_WITH_FEES}
    spec = row_specs({"fee_charges": FEE_CHARGES}, records)["fee_charges"]
    name, rec = codec.decode(codec.encode("FeeCharge", RECORD))
    assert name == spec.record == "FeeCharge"
    row = spec.build(rec)
    assert dict(zip([c for c, _ in FEE_CHARGES.columns], row, strict=True)) == RECORD
    # checked as every hand-written builder checks: an empty key, a 19th decimal place
    with pytest.raises(RowRejected, match="event_id: empty"):
        spec.build({**rec, "event_id": ""})
    with pytest.raises(RowRejected, match="more than 18 decimal places"):
        spec.build({**rec, "fee": Decimal("1E-19")})


def test_a_column_no_field_can_fill_by_its_type_asks_for_a_builder() -> None:
    nested = Table("fee_batches", (("account_id", "String"), ("event_id", "String"),
                                   ("ts", TIME), ("legs", "Map(String, UInt64)")))
    with pytest.raises(ValueError, match="fee_batches.legs: no row builder for Map"):
        row_specs({"fee_batches": nested}, {"fee_batches": "FeeBatch"})
