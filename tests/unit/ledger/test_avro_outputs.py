"""Every output record fits its Avro schema exactly and survives a fastavro round trip."""

from __future__ import annotations

import io
from decimal import Decimal

import fastavro
from hypothesis import given

from streams.ledger import LedgerConfig, Output
from streams.ledger.synth import generate_events

from . import test_golden
from ._helpers import OUTPUT_SCHEMA, Run, avro_roundtrip, load_schemas
from .test_properties import PROPERTY, Fold, build, streams

SCHEMAS = load_schemas()


def check(outputs: list[Output]) -> int:
    for out in outputs:
        schema = SCHEMAS[OUTPUT_SCHEMA[out.kind]]
        field_names = [f["name"] for f in schema["fields"]]
        assert list(out.record) == field_names, out.kind  # no missing or extra fields
        back = avro_roundtrip(SCHEMAS, out)
        assert back == out.record, out.kind
        for k, v in out.record.items():
            if isinstance(v, Decimal):
                assert v.as_tuple().exponent >= -18, (k, v)  # type: ignore[operator]
            if k == "ts":
                assert v.tzinfo is not None and v.utcoffset().total_seconds() == 0
    return len(outputs)


def test_all_schemas_parse_together_with_named_types_resolved():
    assert set(OUTPUT_SCHEMA.values()) <= set(SCHEMAS)
    assert len(SCHEMAS) == 22
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, SCHEMAS["twinledger.v1.RuleResult"], {
        "rule": "R1", "status": "OK", "code": "OK", "field": "capital", "delta": Decimal(0),
        "explanation": "OK|capital|0"})
    assert buf.getvalue()


def test_golden_outputs_round_trip_through_avro():
    runs = []

    class Recording(Run):
        def __init__(self, config: LedgerConfig | None = None) -> None:
            super().__init__(config)
            runs.append(self)

    original = test_golden.Run
    test_golden.Run = Recording  # type: ignore[misc]
    try:
        for name in dir(test_golden):
            if name.startswith("test_c"):
                getattr(test_golden, name)()
    finally:
        test_golden.Run = original  # type: ignore[misc]
    n = sum(check(r.outputs) for r in runs)
    kinds = {o.kind for r in runs for o in r.outputs}
    assert kinds == {"snapshot", "trade", "reconcile", "anomaly"} and n > 40


def test_synthetic_stream_outputs_round_trip_through_avro():
    run = Run()
    run(*generate_events(3000, 12, seed=5))
    assert check(run.outputs) > 3000
    assert {o.kind for o in run.outputs} == {"snapshot", "trade", "reconcile", "anomaly",
                                             "cashflow"}


@PROPERTY
@given(streams)
def test_property_stream_outputs_round_trip_through_avro(steps):
    check(Fold().feed(build(steps), 0).outputs)
